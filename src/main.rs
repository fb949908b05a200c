//! The `sso-gateway` executable: the library's commands (`sso_gateway::cli`) and, with the
//! `demo` feature (on by default), `demo` — the whole system with simulated login systems on
//! one machine. Production builds use `--no-default-features` and contain no simulator.

#[cfg(feature = "demo")]
mod demo;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc instead of the system allocator: the request path allocates many small, short-lived
/// objects; see BENCHMARKS.md.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "sso-gateway",
    version,
    about = "OpenID Connect identity broker: one login for the merged Ho Chi Minh City"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    #[command(flatten)]
    Gateway(sso_gateway::cli::Command),
    /// Run the whole system on this machine: gateway, four simulated login
    /// systems and two demo applications. No Redis or PostgreSQL needed.
    #[cfg(feature = "demo")]
    Demo {
        /// Gateway port; the provinces' simulated systems use the next three, the demo apps the
        /// two after, the simulated national e-ID the one after those (N+6), the certificate
        /// host of certificate login the last (N+7).
        #[arg(long, default_value_t = 8080)]
        port: u16,
        /// Where demo data (accounts database, keys, the demo certificates) is kept.
        #[arg(long, default_value = "data/demo")]
        data_dir: std::path::PathBuf,
        /// Print the gateway configuration the demo runs, and exit.
        #[arg(long)]
        print_config: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    sso_gateway::cli::start(async move {
        match cli.command {
            Command::Gateway(command) => sso_gateway::cli::run(command).await,
            #[cfg(feature = "demo")]
            Command::Demo { port, data_dir, print_config } => demo::run(port, data_dir, print_config).await,
        }
    })
}
