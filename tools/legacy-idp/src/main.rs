//! `legacy-idp`: runs one simulated legacy provincial OpenID Provider (TEST TOOLING).
//!
//! `legacy-idp --config config/legacy/hcm.toml --listen 127.0.0.1:9101`

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use legacy_idp::LegacyIdpConfig;
use tracing_subscriber::EnvFilter;

/// Simulated legacy provincial login system (OpenID Provider) for tests and demos.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Users file, e.g. config/legacy/hcm.toml.
    #[arg(long)]
    config: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
}

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .init();
    let args = Args::parse();
    let config = LegacyIdpConfig::load(&args.config)?;
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    let idp = legacy_idp::spawn(config, listener).await?;
    println!("{}", idp.issuer);
    tokio::signal::ctrl_c().await?;
    idp.shutdown_and_wait().await;
    Ok(())
}
