//! Command line: `serve`, `check-config`, `keys generate|rotate|list|prune`, `migrate`, `healthcheck`,
//! `upstreams probe`, `accounts …` and `units …` (account administration, see `accounts.rs`),
//! `clients explain`.
//!
//! Owns: argument parsing and exit codes. Everything it runs lives in the library parts. The
//! `sso-gateway` binary (`src/main.rs`) parses these commands, flattened beside its own `demo`
//! command (tooling, not in the library), and runs them with [`start`] and [`run`].

mod accounts;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

use crate::app::Application;
use crate::clock::Clock;
use crate::config::{ConfigError, Settings};
use crate::keys::{KeySet, SigningAlg, format_time};

/// The gateway's commands (a clap subcommand set; the binary adds `demo`).
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway.
    Serve {
        #[arg(long, short, env = "SSO_GATEWAY_CONFIG")]
        config: PathBuf,
    },
    /// Validate a configuration file and list every problem found.
    CheckConfig {
        #[arg(long, short, env = "SSO_GATEWAY_CONFIG")]
        config: PathBuf,
        /// Also list where each value came from (file, environment, a file named by the
        /// environment); values are never printed.
        #[arg(long)]
        origins: bool,
    },
    /// Signing key management.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Apply account-store migrations and exit.
    Migrate {
        #[arg(long, short, env = "SSO_GATEWAY_CONFIG")]
        config: PathBuf,
    },
    /// SSO sessions in the shared state store (Redis).
    Sessions {
        #[arg(long, short, env = "SSO_GATEWAY_CONFIG")]
        config: PathBuf,
        #[command(subcommand)]
        command: SessionsCommand,
    },
    /// Probe a running gateway's /readyz (for container health checks).
    Healthcheck {
        /// Base URL of the gateway.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
    },
    /// The upstream login systems: check each from the gateway's side and print what its
    /// operator must register.
    Upstreams {
        #[command(subcommand)]
        command: UpstreamsCommand,
    },
    /// Account administration: import, show, link, unlink, merge, lock, unlock, re-key, review.
    Accounts {
        #[command(subcommand)]
        command: accounts::AccountsCommand,
    },
    /// Client (relying party) registrations: what each allows and which settings are risky.
    Clients {
        #[command(subcommand)]
        command: ClientsCommand,
    },
    /// Administrative units of the new city and the former → new mapping.
    Units {
        #[command(subcommand)]
        command: accounts::UnitsCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum ClientsCommand {
    /// What each client registration allows (flows, scopes, claims it will see, subject type,
    /// authentication, PKCE, logout wiring, lifetimes, minimum acr) and which settings are
    /// risky.
    Explain {
        #[arg(long, short, env = "SSO_GATEWAY_CONFIG")]
        config: PathBuf,
        /// Only this client.
        #[arg(long)]
        client: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum UpstreamsCommand {
    /// Check what can be checked from here (OIDC/VNeID: discovery, issuer, endpoints, keys,
    /// client id and redirect URI, client authentication; CAS: login page and ticket
    /// validation; LDAP: service-account bind, bases, a test user) and print the exact URLs to
    /// register at each upstream. Exit code 1 when a check failed, 2 for a configuration error.
    Probe {
        #[arg(long, short, env = "SSO_GATEWAY_CONFIG")]
        config: PathBuf,
        /// Probe only this upstream.
        #[arg(long)]
        id: Option<String>,
        /// A login name the directory (LDAP) upstreams must find, as a login would.
        #[arg(long)]
        ldap_user: Option<String>,
        #[arg(long, value_enum, default_value = "text")]
        format: ReportFormat,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ReportFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum SessionsCommand {
    /// List the live sessions of an account.
    List {
        #[arg(long)]
        sub: String,
    },
    /// End every session of an account (e.g. an official who left), with the same
    /// propagation as a logout: RPs are notified, refresh tokens die.
    Revoke {
        #[arg(long)]
        sub: String,
        /// Who does this (recorded in the log).
        #[arg(long, env = "USER", default_value = "admin")]
        actor: String,
    },
    /// Back-channel logout deliveries that failed after every retry (last 7 days).
    LogoutFailures,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Write a new signing key `{kid}.pem` (mode 0600) into DIR that signs at once (for a
    /// first key; to replace a key in service use `rotate`).
    Generate {
        #[arg(long, value_enum)]
        alg: SigningAlg,
        #[arg(long, default_value = "keys")]
        dir: PathBuf,
    },
    /// Replace the signing key of ALG safely: the new key is published now and signs only
    /// after PUBLISH_BEFORE; the keys it replaces leave the JWKS once every token they
    /// signed has expired (TOKEN_LIFETIME + 5 minutes after the switch).
    Rotate {
        #[arg(long, value_enum)]
        alg: SigningAlg,
        #[arg(long, default_value = "keys")]
        dir: PathBuf,
        /// How long the new key is published before it signs: at least as long as relying
        /// parties cache the JWKS (/jwks says max-age=300; many libraries keep it longer).
        #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
        publish_before: std::time::Duration,
        /// The longest lifetime of a token the old key may have signed: the greatest of
        /// `lifetimes.id_token`, `lifetimes.access_token` and every client's
        /// `access_token_lifetime` (logout tokens live 2 minutes).
        #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
        token_lifetime: std::time::Duration,
    },
    /// Show each key's state now: published (waiting to sign), signing, retiring, retired.
    #[command(alias = "status")]
    List {
        #[arg(long, default_value = "keys")]
        dir: PathBuf,
    },
    /// Delete the retired keys (and their schedules) from DIR.
    Prune {
        #[arg(long, default_value = "keys")]
        dir: PathBuf,
    },
}

/// Starts logging and the async runtime, then runs `command` (e.g. [`run`]) on it.
pub fn start(command: impl Future<Output = ExitCode>) -> ExitCode {
    crate::telemetry::init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(command)
}

/// Runs one of the gateway's commands to its end.
pub async fn run(command: Command) -> ExitCode {
    match command {
        Command::Serve { config } => match Settings::load(&config) {
            Ok(settings) => serve(settings).await,
            Err(e) => config_failure(&config, e),
        },
        Command::CheckConfig { config, origins } => match Settings::load(&config) {
            Ok(s) => {
                // Allowed but weakening: reported, without failing the check.
                for w in s.warnings() {
                    eprintln!("{}: warning: {w}", config.display());
                }
                if origins {
                    for o in &s.origins {
                        println!("{o}");
                    }
                    println!("(every other key: default, see config/README.md)");
                }
                println!(
                    "{}: OK ({} upstream(s), {} client(s), issuer {})",
                    config.display(),
                    s.upstreams.len(),
                    s.clients.len(),
                    s.issuer()
                );
                ExitCode::SUCCESS
            }
            Err(e) => config_failure(&config, e),
        },
        Command::Keys { command } => match tokio::task::spawn_blocking(move || keys(command)).await {
            Ok(Ok(())) => ExitCode::SUCCESS,
            Ok(Err(e)) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Migrate { config } => match Settings::load(&config) {
            Ok(s) => match crate::accounts::AccountStore::connect(s.accounts.url.expose(), 1).await {
                Ok(_) => {
                    println!("account store is up to date");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            },
            Err(e) => config_failure(&config, e),
        },
        Command::Sessions { config, command } => match Settings::load(&config) {
            Ok(s) => sessions(s, command).await,
            Err(e) => config_failure(&config, e),
        },
        Command::Healthcheck { url } => healthcheck(&url).await,
        Command::Upstreams { command: UpstreamsCommand::Probe { config, id, ldap_user, format } } => {
            match Settings::load(&config) {
                Ok(s) => probe(&s, id.as_deref(), ldap_user, format).await,
                Err(e) => config_failure(&config, e),
            }
        }
        Command::Accounts { command } => accounts::run_accounts(command).await,
        Command::Units { command } => accounts::run_units(command).await,
        Command::Clients { command: ClientsCommand::Explain { config, client } } => {
            match Settings::load(&config) {
                Ok(s) => explain_clients(&s, client.as_deref()),
                Err(e) => config_failure(&config, e),
            }
        }
    }
}

/// `keys …` (blocking: file I/O and key generation).
fn keys(command: KeysCommand) -> Result<(), crate::keys::KeyError> {
    let clock = Clock::system();
    match command {
        KeysCommand::Generate { alg, dir } => {
            let kid = KeySet::generate(&dir, alg)?;
            println!("wrote {}", dir.join(format!("{kid}.pem")).display());
        }
        KeysCommand::Rotate { alg, dir, publish_before, token_lifetime } => {
            let r = crate::keys::rotate(&dir, alg, publish_before, token_lifetime, &clock)?;
            match r.not_before {
                None => println!(
                    "wrote {}: the first {alg} key, it signs at once",
                    dir.join(format!("{}.pem", r.kid)).display()
                ),
                Some(at) => println!(
                    "wrote {} and {}.json: published now, signs from {}",
                    dir.join(format!("{}.pem", r.kid)).display(),
                    r.kid,
                    format_time(at)
                ),
            }
            for (kid, at) in &r.retiring {
                println!("{kid}: signs until then, removed from /jwks after {}", format_time(*at));
            }
            println!(
                "Copy the whole directory (.pem and .json files) to every replica now; they pick it \
                 up within keys.reload_interval or on SIGHUP. Run `keys prune` after the last retirement."
            );
        }
        KeysCommand::List { dir } => {
            let set = KeySet::open(&dir, clock.clone())?;
            println!("now {}", format_time(clock.now()));
            let when = |t: Option<i64>| t.map_or_else(|| "-".to_owned(), format_time);
            println!(
                "{:<32} {:<6} {:<10} {:<21} {:<21}",
                "kid", "alg", "state", "not_before", "retire_after"
            );
            for s in set.status() {
                println!(
                    "{:<32} {:<6} {:<10} {:<21} {:<21}",
                    s.kid,
                    s.alg.as_str(),
                    s.state.to_string(),
                    when(s.not_before),
                    when(s.retire_after)
                );
            }
            for alg in SigningAlg::all() {
                let of_alg = set.status().into_iter().filter(|s| s.alg == alg).count();
                if of_alg > 0 && !set.has(alg) {
                    println!("warning: no {alg} key signs now");
                }
            }
        }
        KeysCommand::Prune { dir } => {
            let removed = crate::keys::prune(&dir, &clock)?;
            println!("removed {} retired key(s)", removed.len());
            for kid in removed {
                println!("  {kid}");
            }
        }
    }
    Ok(())
}

/// `clients explain`: every registration (or one), each followed by its findings.
fn explain_clients(settings: &Settings, only: Option<&str>) -> ExitCode {
    let chosen: Vec<_> =
        settings.clients.iter().filter(|c| only.is_none_or(|id| c.client_id == id)).collect();
    if let Some(id) = only
        && chosen.is_empty()
    {
        let known: Vec<&str> = settings.clients.iter().map(|c| c.client_id.as_str()).collect();
        eprintln!("error: no client {id:?} in the configuration (registered: {})", known.join(", "));
        return ExitCode::FAILURE;
    }
    if chosen.is_empty() {
        println!("no clients registered");
    }
    let mut risky = 0;
    for (i, c) in chosen.iter().enumerate() {
        let Some(e) = crate::provider::explain::explain(settings, c) else { continue };
        risky += usize::from(e.risks().next().is_some());
        if i > 0 {
            println!();
        }
        print!("{e}");
    }
    if chosen.len() > 1 {
        println!("\n{} client(s), {risky} with risky settings", chosen.len());
    }
    ExitCode::SUCCESS
}

fn config_failure(path: &std::path::Path, e: ConfigError) -> ExitCode {
    eprintln!("{}: {e}", path.display());
    ExitCode::from(2)
}

async fn serve(settings: Settings) -> ExitCode {
    for w in settings.warnings() {
        tracing::warn!(warning = %w, "configuration weakens security");
    }
    let app = match Application::build(settings, Clock::system()).await {
        Ok(app) => app,
        Err(e) => {
            tracing::error!(error = %e, "gateway cannot start");
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(addr = %app.addr(), issuer = app.state().issuer(), "sso-gateway listening");
    match app.run_until(shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn sessions(settings: Settings, command: SessionsCommand) -> ExitCode {
    if settings.sessions.store.expose() == "memory" {
        eprintln!(
            "error: sessions.store is \"memory\": sessions live inside the running gateway process. \
             Session administration needs the shared Redis store."
        );
        return ExitCode::FAILURE;
    }
    let app = match crate::app::AppState::build(settings, Clock::system()).await {
        Ok(app) => app,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result: Result<(), String> = async {
        match command {
            SessionsCommand::List { sub } => {
                let account = app
                    .accounts
                    .find_by_sub(&sub)
                    .await
                    .map_err(|e| e.to_string())?
                    .ok_or(format!("no account with sub {sub}"))?;
                let sessions = app.sessions.list_for_account(&account.id).await.map_err(|e| e.to_string())?;
                println!("{} session(s) for {sub}", sessions.len());
                for s in sessions {
                    let clients = app.sessions.clients(&s.sid).await.map_err(|e| e.to_string())?;
                    println!(
                        "  sid={} upstream={} auth_time={} clients={}",
                        s.sid,
                        s.upstream,
                        s.auth_time,
                        clients.join(",")
                    );
                }
                Ok(())
            }
            SessionsCommand::Revoke { sub, actor } => {
                let n = crate::logout::revoke_account_sessions(&app, &sub, &actor)
                    .await
                    .map_err(|e| e.to_string())?;
                println!("ended {n} session(s) of {sub}");
                Ok(())
            }
            SessionsCommand::LogoutFailures => {
                let failures = crate::logout::failures(&app).await.map_err(|e| e.to_string())?;
                println!("{} failed back-channel logout deliveries", failures.len());
                for f in failures {
                    println!(
                        "  at={} client={} uri={} sid={} error={}",
                        f.at, f.client_id, f.uri, f.sid, f.error
                    );
                }
                Ok(())
            }
        }
    }
    .await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `upstreams probe`: exit 0 when every check passed (warnings allowed), 1 when one failed.
async fn probe(
    settings: &Settings,
    id: Option<&str>,
    ldap_user: Option<String>,
    format: ReportFormat,
) -> ExitCode {
    use crate::broker::probe;
    let options = probe::ProbeOptions { ldap_user };
    let reports = match probe::probe(settings, id, &options).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    match format {
        ReportFormat::Text => print!("{}", probe::render_text(&reports)),
        ReportFormat::Json => println!("{:#}", probe::render_json(&reports)),
    }
    record_probe(settings, &reports).await;
    if probe::all_ok(&reports) { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

/// Puts the probe's outcome where the gateways keep the upstream status (the shared store),
/// so the operations page and the admin API show it. With the in-memory store there is no
/// shared place: says so on stderr. Never changes the exit status.
async fn record_probe(settings: &Settings, reports: &[crate::broker::probe::UpstreamReport]) {
    if settings.sessions.store.expose() == "memory" {
        eprintln!(
            "note: sessions.store is \"memory\": the probe's outcome is not recorded in the upstream status \
             (only a shared Redis store is seen by the gateways)"
        );
        return;
    }
    let clock = Clock::system();
    match crate::state::StateStore::open(settings.sessions.store_plan(), &clock).await {
        Ok(store) => crate::broker::probe::record(&store, reports, clock.now()).await,
        Err(e) => eprintln!("note: the probe's outcome is not recorded in the upstream status: {e}"),
    }
}

async fn healthcheck(url: &str) -> ExitCode {
    let client = match reqwest::Client::builder().timeout(std::time::Duration::from_secs(3)).build() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match client.get(format!("{}/readyz", url.trim_end_matches('/'))).send().await {
        Ok(r) if r.status().is_success() => ExitCode::SUCCESS,
        Ok(r) => {
            eprintln!("not ready: HTTP {}", r.status());
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("unreachable: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
}
