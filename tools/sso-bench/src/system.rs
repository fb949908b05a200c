//! Starts the system under test on loopback: three simulated provincial systems
//! (`legacy-idp`), optionally a private Redis, and the gateway as a child process running
//! `sso-gateway serve` code with a generated configuration.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use legacy_idp::LegacyIdpConfig;
use url::Url;

use crate::credentials::{OFFICIALS_CA_FILE, OFFICIALS_CRL_FILE, RP_CA_FILE, RP_EMAIL};
use crate::http::Agent;
use crate::procs::{self, Proc};

pub const RP_CLIENT: &str = "bench-rp";
pub const RP_SECRET: &str = "bench-rp-secret-0123456789";
pub const RP_CALLBACK: &str = "http://127.0.0.1:9/bench/cb";
pub const M2M_CLIENT: &str = "bench-m2m";
pub const M2M_SECRET: &str = "bench-m2m-secret-0123456789";
pub const M2M_SCOPE: &str = "bench.read";
/// `tls_client_auth` by its certificate (`mtls_client_credentials`).
pub const MTLS_CLIENT: &str = "bench-mtls";
/// The certificate upstream (`cert_login`).
pub const CERT_UPSTREAM: &str = "chu-ky-so";
/// Where the TLS-terminating proxy (the load generator here) forwards a client certificate,
/// for the certificate host and for `[mtls]` alike.
pub const CERT_HEADER: &str = "x-ssl-client-cert";

/// Which state store the gateway uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Store {
    Memory,
    /// A `redis://` URL; `None` = start a private `redis-server` on a free loopback port.
    Redis(Option<String>),
}

pub struct Options {
    pub store: Store,
    pub alg: String,
    /// Extra `[sessions]` lines for the Redis backend (e.g. a key prefix), verbatim.
    pub redis_settings: Vec<String>,
    /// The gateway's `[accounts] cache_ttl`.
    pub account_cache_ttl: std::time::Duration,
    /// Run this binary instead of re-running sso-bench as the gateway.
    pub gateway_bin: Option<PathBuf>,
    pub gateway_log_level: String,
    /// The gateway's `[limits]`.
    pub limits: Limits,
    /// Extra `[sessions.memory]` lines, verbatim.
    pub memory_settings: Vec<String>,
}

/// What `[limits]` the benchmarked gateway runs with (`--limits`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limits {
    /// Enabled, every request counted, ceilings too high to refuse the single load-generator
    /// address: measures what the limiter costs.
    High,
    /// The shipped defaults: the load generator's one address is refused beyond them.
    Default,
    /// `enabled = false`.
    Off,
}

impl Limits {
    pub fn parse(s: &str) -> Option<Limits> {
        match s {
            "high" | "on" => Some(Limits::High),
            "default" => Some(Limits::Default),
            "off" => Some(Limits::Off),
            _ => None,
        }
    }

    /// The `[limits]` table appended to the gateway configuration.
    pub fn toml(self) -> &'static str {
        match self {
            Limits::High => {
                "\n[limits]\nenabled = true\nbrowser_per_address = 1000000000\ntoken_per_address = 1000000000\ntoken_per_client = 1000000000\n"
            }
            Limits::Default => "\n[limits]\nenabled = true\n",
            Limits::Off => "\n[limits]\nenabled = false\n",
        }
    }
}

/// A demo user of one simulated system.
#[derive(Debug, Clone)]
pub struct User {
    pub upstream: String,
    pub username: String,
    pub password: String,
}

pub struct System {
    pub gateway: Url,
    pub gateway_proc: Proc,
    pub idps: Vec<Proc>,
    pub redis: Option<(Proc, SocketAddr)>,
    pub redis_addr: Option<SocketAddr>,
    pub users: Vec<User>,
    /// The certificates the load generator forwards as a trusted proxy.
    pub pki: crate::credentials::Pki,
}

impl System {
    pub fn gateway_pid(&self) -> Result<u32> {
        self.gateway_proc.pid()
    }

    pub async fn stop(self) {
        self.gateway_proc.stop().await;
        for p in self.idps {
            p.stop().await;
        }
        if let Some((p, _)) = self.redis {
            p.stop().await;
        }
    }
}

pub async fn start(opts: &Options, dir: &Path) -> Result<System> {
    // 1. the simulated provincial systems, each in its own process
    let mut idps = Vec::new();
    let mut issuers = Vec::new();
    let mut users = Vec::new();
    for (index, (id, text)) in legacy_idp::SYSTEMS.iter().enumerate() {
        let config = LegacyIdpConfig::from_toml_str(text)?;
        for u in &config.users {
            users.push(User {
                upstream: id.to_string(),
                username: u.username.clone(),
                password: u.password.clone(),
            });
        }
        let log = dir.join(format!("legacy-{id}.log"));
        let args = vec!["__legacy-idp".to_string(), index.to_string()];
        let mut p = procs::spawn_self(&format!("legacy-idp {id}"), &args, &log, &[("RUST_LOG", "warn")])?;
        let issuer = procs::first_line(&mut p, Duration::from_secs(30)).await?;
        issuers.push((id.to_string(), issuer));
        idps.push(p);
    }

    // 2. Redis, when asked for
    let (redis, store_url) = match &opts.store {
        Store::Memory => (None, "memory".to_string()),
        Store::Redis(Some(url)) => (None, url.clone()),
        Store::Redis(None) => {
            let port = procs::free_port()?;
            let args: Vec<String> = [
                "--bind",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                &dir.display().to_string(),
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            let p = procs::spawn(
                "redis-server",
                Path::new("redis-server"),
                &args,
                &dir.join("redis.log"),
                &[],
            )
            .context(
                "`--store redis` starts `redis-server` (apt-get install redis-server), or pass --redis-url",
            )?;
            let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
            wait_for_tcp(addr, Duration::from_secs(10)).await?;
            (Some((p, addr)), format!("redis://127.0.0.1:{port}"))
        }
    };
    let redis_addr = match (&redis, &opts.store) {
        (Some((_, a)), _) => Some(*a),
        (None, Store::Redis(Some(url))) => {
            let u = Url::parse(url)?;
            Some(format!("{}:{}", u.host_str().unwrap_or("127.0.0.1"), u.port().unwrap_or(6379)).parse()?)
        }
        _ => None,
    };

    // 3. the certificates of officials and of the mTLS RP, and the CA files the gateway reads
    let pki = crate::credentials::Pki::create(dir)?;

    // 4. the gateway
    let port = procs::free_port()?;
    let gateway = Url::parse(&format!("http://127.0.0.1:{port}"))?;
    let mut config = gateway_config(
        port,
        dir,
        &issuers,
        &store_url,
        &opts.redis_settings,
        opts.account_cache_ttl,
        &opts.alg,
    )?;
    config.push_str(opts.limits.toml());
    if !opts.memory_settings.is_empty() {
        config.push_str(&format!("\n[sessions.memory]\n{}\n", opts.memory_settings.join("\n")));
    }
    let config_path = dir.join("gateway.toml");
    std::fs::write(&config_path, config)?;
    let log = dir.join("gateway.log");
    let env = [("RUST_LOG", opts.gateway_log_level.as_str())];
    let mut gateway_proc = match &opts.gateway_bin {
        Some(bin) => procs::spawn(
            "gateway",
            bin,
            &["serve".into(), "--config".into(), config_path.display().to_string()],
            &log,
            &env,
        )?,
        None => procs::spawn_self(
            "gateway",
            &["__gateway".into(), config_path.display().to_string()],
            &log,
            &env,
        )?,
    };
    wait_ready(&mut gateway_proc, &gateway, Duration::from_secs(60))
        .await
        .with_context(|| format!("gateway did not become ready; log: {}", log.display()))?;
    Ok(System { gateway, gateway_proc, idps, redis, redis_addr, users, pki })
}

async fn wait_for_tcp(addr: SocketAddr, within: Duration) -> Result<()> {
    let start = Instant::now();
    while start.elapsed() < within {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("nothing listens on {addr} after {within:?}")
}

async fn wait_ready(proc: &mut Proc, gateway: &Url, within: Duration) -> Result<()> {
    let start = Instant::now();
    let readyz = gateway.join("/readyz")?;
    let mut agent = Agent::default();
    while start.elapsed() < within {
        proc.check_running()?;
        if let Ok(r) = agent.get(&readyz).await
            && r.status.is_success()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(anyhow!("not ready after {within:?}"))
}

/// The gateway configuration: the demo's three upstreams (with their claim mappings) at the
/// running simulated systems, a certificate upstream (officials' certificates forwarded by a
/// trusted proxy; CA and CRL files written by `credentials::Pki`), and three benchmark
/// clients (an RP, a client_secret M2M client and a `tls_client_auth` one).
pub fn gateway_config(
    port: u16,
    dir: &Path,
    issuers: &[(String, String)],
    store: &str,
    redis_settings: &[String],
    account_cache_ttl: std::time::Duration,
    alg: &str,
) -> Result<String> {
    let demo = include_str!("../../../config/demo.toml");
    let start = demo.find("[[upstreams]]").ok_or_else(|| anyhow!("demo.toml has no upstreams"))?;
    let end = demo.find("[[clients]]").unwrap_or(demo.len());
    // Every simulated system the benchmark starts (LEGACY_CONFIGS: hcm, bd, brvt speaking
    // CAS, vneid) is one of the demo's upstreams; its login form is driven the same way.
    let mut upstreams = demo[start..end].to_string();
    for (id, issuer) in issuers {
        let placeholder = match id.as_str() {
            "hcm" => "http://127.0.0.1:{hcm_port}/realms/hcm-dichvucong",
            "bd" => "http://127.0.0.1:{bd_port}/oidc",
            "brvt" => "http://127.0.0.1:{brvt_port}/cas",
            _ => "http://127.0.0.1:{vneid_port}/sso/realms/vneid",
        };
        upstreams = upstreams.replace(placeholder, issuer);
    }
    let dir = dir.display();
    let sessions_extra = redis_settings.join("\n");
    let account_cache_ttl = humantime::format_duration(account_cache_ttl);
    Ok(format!(
        r#"# Generated by sso-bench.
issuer = "http://127.0.0.1:{port}"
listen = "127.0.0.1:{port}"

[keys]
dir = "{dir}/keys"
generate_missing = true

[accounts]
url = "sqlite://{dir}/accounts.db?mode=rwc"
cache_ttl = "{account_cache_ttl}"

[sessions]
store = "{store}"
{sessions_extra}

[lifetimes]
authorization_code = "10m"

# The load generator names flood sources in X-Forwarded-For (authorize-flood), and forwards
# client certificates as a TLS-terminating proxy would (cert_login, mtls_client_credentials).
[inbound]
trusted_proxies = ["127.0.0.0/8"]

[certificate]
url = "http://127.0.0.1:{port}"
forwarded_header = "{CERT_HEADER}"

[mtls]
ca_file = "{dir}/{RP_CA_FILE}"
certificate_header = "{CERT_HEADER}"

{upstreams}
[[upstreams]]
id = "{CERT_UPSTREAM}"
kind = "certificate"
name_vi = "Chữ ký số cán bộ, công chức"
name_en = "Officials' digital signature"
[upstreams.certificate]
ca_file = "{dir}/{OFFICIALS_CA_FILE}"
crl_files = ["{dir}/{OFFICIALS_CRL_FILE}"]
[upstreams.linking]
trust_national_id = true

[[clients]]
client_id = "{RP_CLIENT}"
name = "Benchmark RP"
client_secret = "{RP_SECRET}"
redirect_uris = ["{RP_CALLBACK}"]
scopes = ["openid", "profile", "email", "phone", "national_id", "official"]
id_token_signed_response_alg = "{alg}"
access_token_lifetime = "1h"

[[clients]]
client_id = "{M2M_CLIENT}"
client_secret = "{M2M_SECRET}"
redirect_uris = []
scopes = ["{M2M_SCOPE}"]
grant_types = ["client_credentials"]
id_token_signed_response_alg = "{alg}"

[[clients]]
client_id = "{MTLS_CLIENT}"
redirect_uris = []
scopes = ["{M2M_SCOPE}"]
grant_types = ["client_credentials"]
token_endpoint_auth_method = "tls_client_auth"
tls_client_auth_san_email = "{RP_EMAIL}"
id_token_signed_response_alg = "{alg}"
"#
    ))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_generated_configuration_is_valid() {
        let issuers = vec![
            ("hcm".to_string(), "http://127.0.0.1:1/realms/hcm-dichvucong".to_string()),
            ("bd".to_string(), "http://127.0.0.1:2/oidc".to_string()),
            ("brvt".to_string(), "http://127.0.0.1:3/cas".to_string()),
            ("vneid".to_string(), "http://127.0.0.1:5/sso/realms/vneid".to_string()),
        ];
        // The CA and CRL files the configuration names are read when it is loaded.
        let dir = std::env::temp_dir().join(format!("sso-bench-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pki = crate::credentials::Pki::create(&dir).unwrap();
        assert_eq!(pki.officials.len() as u64, crate::credentials::OFFICIALS);
        let text = gateway_config(4, &dir, &issuers, "memory", &[], Duration::ZERO, "ES256").unwrap();
        let settings = sso_gateway::config::Settings::from_toml(&text).unwrap();
        assert_eq!(settings.upstreams.len(), 5);
        assert_eq!(settings.clients.len(), 3);
        assert!(settings.upstreams.iter().any(|u| u.id == CERT_UPSTREAM));
        for limits in [Limits::High, Limits::Default, Limits::Off] {
            let with = sso_gateway::config::Settings::from_toml(&format!("{text}{}", limits.toml())).unwrap();
            assert_eq!(with.limits.enabled, limits != Limits::Off);
        }
        assert!(
            !text.contains("{hcm_port}") && !text.contains("{brvt_port}") && !text.contains("{vneid_port}")
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
