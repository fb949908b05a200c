//! `sso-bench`: the benchmark suite of sso-gateway (TOOLING, not the product).
//!
//! `cargo run --release --bin sso-bench -- --scenario all` starts three simulated provincial
//! systems and the gateway (child processes, loopback only, generated configuration in a
//! scratch directory), prepares real sessions and codes through real logins, warms up, then
//! runs each scenario for a bounded time and a bounded number of operations from this
//! process over keep-alive connections, and prints requests/s, latency percentiles, errors,
//! the gateway's CPU time per operation and its peak RSS. See BENCHMARKS.md.

mod credentials;
mod flood;
mod http;
mod load;
mod procs;
mod redis;
mod scenarios;
mod system;

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use clap::{Parser, Subcommand};
use legacy_idp::LegacyIdpConfig;

use crate::load::Outcome;
use crate::scenarios::{Ctx, Kind, ScenarioWorker};
use crate::system::{Options, Store, System};

/// The same allocator as the `sso-gateway` executable: this executable also runs the gateway
/// (`__gateway`) and must measure what operators run.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(name = "sso-bench", about = "Benchmark suite of sso-gateway (loopback only, bounded runs)")]
struct Args {
    /// `all`, or scenario names separated by commas: discovery, jwks, client_credentials,
    /// full_login, sso_login, authorization_code, refresh_token, userinfo, introspection,
    /// authorize-flood (not part of `all`); issue 14's (not part of `all`): dpop_token,
    /// dpop_refresh_token, dpop_userinfo, plain_authorize, par_authorize,
    /// mtls_client_credentials, cert_login, or `issue14` for all of them next to their
    /// baselines.
    #[arg(long, default_value = "all")]
    scenario: String,
    /// `authorize-flood`: requests per phase (one address, then 1 000 addresses).
    #[arg(long, default_value_t = 100_000)]
    flood_requests: u64,
    /// `authorize-flood`: bytes of `state` in each request.
    #[arg(long, default_value_t = 2048)]
    flood_state_bytes: usize,
    /// `authorize-flood`: time bound per phase, seconds.
    #[arg(long, default_value_t = 300.0)]
    flood_within: f64,
    /// Extra `[sessions.memory]` line(s) for the gateway config, e.g. `max_bytes = 33554432`
    /// (repeatable).
    #[arg(long)]
    memory_setting: Vec<String>,
    /// Measured time per scenario, seconds.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Warm-up time per scenario (not measured), seconds.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Concurrent workers, each with its own keep-alive connection(s).
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Upper bound of operations per measured scenario.
    #[arg(long, default_value_t = 2_000_000)]
    max_requests: u64,
    /// Authorization codes minted (through the SSO path) before `authorization_code`.
    #[arg(long)]
    codes: Option<u64>,
    /// State store of the gateway: `memory` (embedded default) or `redis`.
    #[arg(long, default_value = "memory")]
    store: String,
    /// With `--store redis`: use this Redis (loopback) instead of starting `redis-server`.
    #[arg(long)]
    redis_url: Option<String>,
    /// With `--store redis`: extra `[sessions]` line(s) for the gateway config, e.g.
    /// `key_prefix = "bench:"` (repeatable).
    #[arg(long)]
    redis_setting: Vec<String>,
    /// `[accounts] cache_ttl` of the gateway: `0s` measures the token path with an account
    /// read from the database on every code exchange and refresh.
    #[arg(long, default_value = "10s")]
    account_cache_ttl: String,
    /// Signing algorithm of the benchmark clients' tokens.
    #[arg(long, default_value = "ES256")]
    alg: String,
    /// Worker threads of this load generator.
    #[arg(long, default_value_t = 2)]
    client_threads: usize,
    /// Run this `sso-gateway` binary (`serve --config`) instead of this executable's copy.
    #[arg(long)]
    gateway_bin: Option<std::path::PathBuf>,
    /// `RUST_LOG` of the gateway (production default: info).
    #[arg(long, default_value = "info,sqlx=warn")]
    gateway_log: String,
    /// `[limits]` of the gateway: `high` (enabled, every request counted, ceilings no single
    /// load generator reaches: the limiter's cost), `default` (the shipped limits: the one
    /// load-generator address is refused beyond them) or `off`.
    #[arg(long, default_value = "high")]
    limits: String,
    /// Also print the results as a Markdown table.
    #[arg(long)]
    markdown: bool,
    #[command(subcommand)]
    child: Option<Child>,
}

/// Hidden: the roles this executable plays as a child process of a run.
#[derive(Debug, Subcommand)]
enum Child {
    /// Run the gateway exactly as `sso-gateway serve --config FILE` does.
    #[command(name = "__gateway", hide = true)]
    Gateway { config: std::path::PathBuf },
    /// Run the simulated provincial system number N of the demo's three.
    #[command(name = "__legacy-idp", hide = true)]
    LegacyIdp { index: usize },
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    match args.child {
        Some(Child::Gateway { ref config }) => return run_gateway(config),
        Some(Child::LegacyIdp { index }) => return run_legacy_idp(index),
        None => {}
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.client_threads.max(1))
        .enable_all()
        .build();
    let result = match runtime {
        Ok(rt) => rt.block_on(bench(args)),
        Err(e) => Err(e.into()),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sso-bench: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The gateway child: the same calls as `sso-gateway serve` (runtime, telemetry, settings,
/// `Application::build`, graceful run), stopping when the bench goes away.
fn run_gateway(config: &std::path::Path) -> std::process::ExitCode {
    sso_gateway::telemetry::init();
    let Ok(rt) = tokio::runtime::Builder::new_multi_thread().enable_all().build() else {
        return std::process::ExitCode::FAILURE;
    };
    rt.block_on(async {
        let settings = match sso_gateway::config::Settings::load(config) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("{}: {e}", config.display());
                return std::process::ExitCode::from(2);
            }
        };
        let app =
            match sso_gateway::app::Application::build(settings, sso_gateway::clock::Clock::system()).await {
                Ok(app) => app,
                Err(e) => {
                    eprintln!("error: {e}");
                    return std::process::ExitCode::FAILURE;
                }
            };
        let stop = async {
            tokio::select! {
                _ = sso_gateway::cli::shutdown_signal() => {},
                _ = procs::parent_gone() => {},
            }
        };
        match app.run_until(stop).await {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                std::process::ExitCode::FAILURE
            }
        }
    })
}

fn run_legacy_idp(index: usize) -> std::process::ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|rt| {
            rt.block_on(async {
                let (_, text) = legacy_idp::SYSTEMS
                    .get(index)
                    .ok_or_else(|| anyhow!("no legacy system number {index}"))?;
                let config = LegacyIdpConfig::from_toml_str(text)?;
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
                let idp = legacy_idp::spawn(config, listener).await?;
                println!("{}", idp.issuer);
                procs::parent_gone().await;
                idp.shutdown_and_wait().await;
                Ok::<_, anyhow::Error>(())
            })
        });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("legacy-idp: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The scenario that floods `/authorize` (see [`flood`]); run after the others.
const FLOOD: &str = "authorize-flood";

/// One measured scenario.
struct Row {
    kind: Kind,
    outcome: Option<Outcome>,
    /// CPU time of the gateway per operation, microseconds.
    gw_cpu_us: f64,
    /// CPU time of the three simulated systems (and the private Redis) per operation, µs.
    idp_cpu_us: f64,
    /// CPU time of this load generator per operation, microseconds.
    bench_cpu_us: f64,
    peak_rss_kib: u64,
    note: String,
}

struct Cpu {
    ticks_per_sec: f64,
}

impl Cpu {
    fn of(pids: &[u32]) -> u64 {
        pids.iter().filter_map(|p| procs::cpu_ticks(*p).ok()).sum()
    }
    fn us_per_op(&self, ticks: u64, ops: u64) -> f64 {
        if ops == 0 { 0.0 } else { ticks as f64 / self.ticks_per_sec * 1e6 / ops as f64 }
    }
}

async fn bench(args: Args) -> Result<()> {
    let kinds: Vec<Kind> = if args.scenario == "all" {
        Kind::ALL.to_vec()
    } else {
        let mut v = Vec::new();
        for name in args.scenario.split(',').map(str::trim).filter(|s| !s.is_empty() && *s != FLOOD) {
            if name == "issue14" {
                v.extend(Kind::ISSUE14);
                continue;
            }
            v.push(Kind::parse(name).ok_or_else(|| anyhow!("unknown scenario {name:?}"))?);
        }
        v
    };
    if !(1..=1_000_000).contains(&args.flood_requests)
        || args.flood_state_bytes > 64 * 1024
        || !(1.0..=1800.0).contains(&args.flood_within)
    {
        bail!("--flood-requests 1..1e6, --flood-state-bytes ≤ 64 KiB, --flood-within 1..1800 s");
    }
    if !(0.1..=600.0).contains(&args.duration) || !(0.0..=120.0).contains(&args.warmup) {
        bail!("--duration must be within 0.1..600 s and --warmup within 0..120 s");
    }
    let connections = args.connections.clamp(1, 1024);
    let store = match args.store.as_str() {
        "memory" => Store::Memory,
        "redis" => Store::Redis(args.redis_url.clone()),
        other => bail!("--store must be memory or redis, not {other:?}"),
    };
    let limits = system::Limits::parse(&args.limits)
        .ok_or_else(|| anyhow!("--limits must be high, default or off, not {:?}", args.limits))?;
    let scratch = procs::Scratch::new()?;
    let opts = Options {
        limits,
        store: store.clone(),
        alg: args.alg.clone(),
        redis_settings: args.redis_setting.clone(),
        account_cache_ttl: humantime::parse_duration(&args.account_cache_ttl)
            .map_err(|e| anyhow!("--account-cache-ttl: {e}"))?,
        gateway_bin: args.gateway_bin.clone(),
        gateway_log_level: args.gateway_log.clone(),
        memory_settings: args.memory_setting.clone(),
    };
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    eprintln!("sso-bench: starting the system under test in {} …", scratch.0.display());
    let system = system::start(&opts, &scratch.0).await?;
    let result = measure(&args, &kinds, connections, &system, cores).await;
    system.stop().await;
    let report = result?;
    println!("{report}");
    Ok(())
}

async fn measure(
    args: &Args,
    kinds: &[Kind],
    connections: usize,
    system: &System,
    cores: usize,
) -> Result<String> {
    let gw_pid = system.gateway_pid()?;
    // The other processes of the system under test: the simulated systems and Redis.
    let mut idp_pids: Vec<u32> = system.idps.iter().filter_map(|p| p.pid().ok()).collect();
    idp_pids.extend(system.redis.as_ref().and_then(|(p, _)| p.pid().ok()));
    let me = std::process::id();
    let cpu = Cpu { ticks_per_sec: procs::ticks_per_sec() as f64 };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle = procs::mem(gw_pid)?;

    // Is /introspect there? Discovery says so.
    let mut probe = http::Agent::default();
    let disco = probe.get(&system.gateway.join("/.well-known/openid-configuration")?).await?;
    let disco: serde_json::Value = serde_json::from_slice(&disco.body).context("discovery is not JSON")?;
    let introspect = disco
        .get("introspection_endpoint")
        .and_then(|v| v.as_str())
        .map(url::Url::parse)
        .transpose()?
        .map(|u| system.gateway.join(u.path()))
        .transpose()?;
    let ctx0 = Ctx::new(system.gateway.clone(), system.users.clone(), introspect.clone())?;

    // Every demo user logs in once (creates the accounts); keep those that can.
    let started = Instant::now();
    let mut users = Vec::new();
    let mut w = ScenarioWorker::new(Kind::FullLogin, Arc::new(ctx0));
    let mut skipped = Vec::new();
    for u in &system.users {
        match w.login(u).await {
            Ok(()) => users.push(u.clone()),
            Err(e) => skipped.push(format!("{}/{}: {e:#}", u.upstream, u.username)),
        }
    }
    if users.is_empty() {
        bail!("no demo user could log in: {}", skipped.join("; "));
    }
    for s in &skipped {
        eprintln!("sso-bench: user skipped: {s}");
    }
    eprintln!("sso-bench: {} users logged in once in {:.1?}", users.len(), started.elapsed());
    let ctx = Arc::new(
        Ctx::new(system.gateway.clone(), users.clone(), introspect.clone())?
            .with_certificates(&system.pki.officials, &system.pki.rp)?,
    );

    let mut redis = match system.redis_addr {
        Some(addr) => Some(redis::Redis::connect(addr).await?),
        None => None,
    };
    let mut redis_notes = String::new();
    let duration = Duration::from_secs_f64(args.duration);
    let warmup = Duration::from_secs_f64(args.warmup);
    let mut rows = Vec::new();
    for &kind in kinds {
        eprintln!("sso-bench: {} …", kind.name());
        if kind == Kind::Introspection && ctx.introspect.is_none() {
            rows.push(Row {
                kind,
                outcome: None,
                gw_cpu_us: 0.0,
                idp_cpu_us: 0.0,
                bench_cpu_us: 0.0,
                peak_rss_kib: 0,
                note: "not available: the gateway's discovery has no introspection_endpoint".into(),
            });
            continue;
        }
        // prepare workers
        let mut workers: Vec<ScenarioWorker> =
            (0..connections).map(|_| ScenarioWorker::new(kind, ctx.clone())).collect();
        let mut note = String::new();
        if kind.needs_session() {
            let prepared = prepare_sessions(&mut workers, &users).await?;
            workers = prepared;
        }
        if kind == Kind::AuthorizationCode {
            let total = args.codes.unwrap_or(((args.duration * 12_000.0) as u64).clamp(1_000, 400_000));
            let before = match redis.as_mut() {
                Some(r) => Some(r.used_memory().await?),
                None => None,
            };
            let t = Instant::now();
            workers = mint_codes(workers, total).await?;
            let minted: usize = workers.iter().map(|w| w.codes.len()).sum();
            note = format!("{minted} codes pre-minted via /authorize with a session in {:.1?}", t.elapsed());
            if let (Some(r), Some(before)) = (redis.as_mut(), before) {
                let after = r.used_memory().await?;
                let _ = writeln!(
                    redis_notes,
                    "- Redis `used_memory` grew by {} bytes for {minted} codes: **{:.0} bytes per code** (INFO delta)",
                    after - before,
                    (after - before) as f64 / minted.max(1) as f64
                );
                let groups = r.usage_by_namespace(200_000, 200).await?;
                let _ = writeln!(
                    redis_notes,
                    "- keys by namespace after minting (count, mean `MEMORY USAGE` bytes):"
                );
                for (ns, (count, mean)) in &groups {
                    let _ = writeln!(redis_notes, "  - `{ns}`: {count} keys, {mean:.0} B");
                }
            }
        }
        // warm up (not for pre-minted codes: they are the bounded work itself)
        if kind != Kind::AuthorizationCode && !warmup.is_zero() {
            let (w, o) = load::run(workers, warmup, args.max_requests, None).await;
            workers = w;
            if o.ok == 0 && o.errors > 0 {
                note = format!("warm-up failed: {}", o.first_error.unwrap_or_default());
            }
        }
        let redis_before = match redis.as_mut() {
            Some(r) => Some(r.used_memory().await?),
            None => None,
        };
        let (gw0, idp0, me0) = (Cpu::of(&[gw_pid]), Cpu::of(&idp_pids), Cpu::of(&[me]));
        let sampler =
            procs::RssSampler::start(gw_pid, Duration::from_millis(50), duration + Duration::from_secs(60));
        let (w, outcome) = load::run(workers, duration, args.max_requests, None).await;
        let peak = sampler.finish().await;
        let (gw1, idp1, me1) = (Cpu::of(&[gw_pid]), Cpu::of(&idp_pids), Cpu::of(&[me]));
        if kind == Kind::FullLogin
            && let (Some(r), Some(before)) = (redis.as_mut(), redis_before)
        {
            let after = r.used_memory().await?;
            let _ = writeln!(
                redis_notes,
                "- Redis `used_memory` grew by {:.0} bytes per completed full login (everything a login leaves: session hash, index entries, code-used marker, refresh family…)",
                (after - before) as f64 / outcome.ok.max(1) as f64
            );
        }
        if let Some(e) = &outcome.first_error {
            let _ =
                write!(note, "{}first error: {}", if note.is_empty() { "" } else { "; " }, truncate(e, 200));
        }
        if outcome.exhausted {
            let _ = write!(
                note,
                "{}work exhausted before the time bound",
                if note.is_empty() { "" } else { "; " }
            );
        }
        rows.push(Row {
            kind,
            gw_cpu_us: cpu.us_per_op(gw1 - gw0, outcome.ok),
            idp_cpu_us: cpu.us_per_op(idp1 - idp0, outcome.ok),
            bench_cpu_us: cpu.us_per_op(me1 - me0, outcome.ok),
            peak_rss_kib: peak,
            outcome: Some(outcome),
            note,
        });
        drop(w);
        // client_credentials: latency at half the measured rate (target p99 ≤ 5 ms there)
        if kind == Kind::ClientCredentials
            && let Some(rate) = rows.last().and_then(|r| r.outcome.as_ref()).map(|o| o.rate() / 2.0)
            && rate > 0.0
        {
            let workers: Vec<_> = (0..connections).map(|_| ScenarioWorker::new(kind, ctx.clone())).collect();
            let (_, o) = load::run(workers, duration, args.max_requests, Some(rate)).await;
            let _ = writeln!(
                redis_notes,
                "- client_credentials paced at half the measured rate ({:.0}/s, latency from the scheduled start): p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, {} errors (target p99 ≤ 5 ms)",
                o.rate(),
                o.quantile_ms(0.5),
                o.quantile_ms(0.99),
                o.quantile_ms(0.999),
                o.errors
            );
        }
    }
    if args.scenario.split(',').any(|s| s.trim() == FLOOD) {
        let flood = flood::Flood {
            requests: args.flood_requests,
            state_bytes: args.flood_state_bytes,
            connections,
            within: Duration::from_secs_f64(args.flood_within),
        };
        let notes =
            flood::run(flood, &system.gateway, ctx.clone(), &users[0], gw_pid, redis.as_mut()).await?;
        redis_notes.push_str(&notes);
    }
    if let Some(r) = redis.as_mut() {
        let keys = r.dbsize().await?;
        let used = r.used_memory().await?;
        let _ = writeln!(
            redis_notes,
            "- at the end: {keys} keys, `used_memory` {:.1} MiB",
            used as f64 / 1048576.0
        );
        let groups = r.usage_by_namespace(200_000, 200).await?;
        let _ = writeln!(redis_notes, "- keys by namespace at the end (count, mean `MEMORY USAGE` bytes):");
        for (ns, (count, mean)) in &groups {
            let _ = writeln!(redis_notes, "  - `{ns}`: {count} keys, {mean:.0} B");
        }
        // Deleting keys is only done to the bench's own redis-server, never to --redis-url.
        let private = system.redis.is_some();
        let cost = r.session_cost(400_000, private).await?;
        if cost.typical > 0 {
            let _ = writeln!(
                redis_notes,
                "- SSO sessions: {} session hashes, {} with one RP and one grant; such a session costs **{:.0} B** by `MEMORY USAGE` ({:.0} B its hash + {:.0} B its share of the per-account and per-upstream-session indexes)",
                cost.sessions,
                cost.typical,
                cost.usage_per_session(),
                cost.typical_hash,
                cost.index_share
            );
            if let (Some(total), Some(hash), Some(index)) =
                (cost.freed_per_session(), cost.freed_per_typical_hash, cost.freed_index_per_session)
            {
                let _ = writeln!(
                    redis_notes,
                    "- deleting them freed **{total:.0} B** of `used_memory` per session ({hash:.0} B per session hash, {index:.0} B of indexes per session; INFO deltas)"
                );
            }
        }
    }
    let end = procs::mem(gw_pid)?;
    Ok(render(args, connections, cores, idle, end, &rows, &redis_notes))
}

/// Gives each worker's browser an SSO session (a full brokered login) and tokens.
async fn prepare_sessions(
    workers: &mut Vec<ScenarioWorker>,
    users: &[system::User],
) -> Result<Vec<ScenarioWorker>> {
    let mut tasks = Vec::new();
    for (i, mut w) in std::mem::take(workers).into_iter().enumerate() {
        let user = users[i % users.len()].clone();
        tasks.push(tokio::spawn(async move {
            let r = w.login(&user).await;
            (w, r)
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        let (w, r) = t.await?;
        r.context("preparing a session")?;
        out.push(w);
    }
    Ok(out)
}

/// Mints `total` codes through `/authorize` with each worker's session.
async fn mint_codes(workers: Vec<ScenarioWorker>, total: u64) -> Result<Vec<ScenarioWorker>> {
    let per = total.div_ceil(workers.len().max(1) as u64) as usize;
    let mut tasks = Vec::new();
    for mut w in workers {
        tasks.push(tokio::spawn(async move {
            let ctx = w.ctx.clone();
            let deadline = Instant::now() + Duration::from_secs(300);
            let mut codes = Vec::with_capacity(per);
            while codes.len() < per && Instant::now() < deadline {
                match scenarios::sso_authorize(&mut w.browser, &ctx).await {
                    Ok(c) => codes.push(c),
                    Err(e) => return (w, Err(e)),
                }
            }
            w.codes = codes;
            (w, Ok(()))
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        let (w, r) = t.await?;
        r.context("minting codes")?;
        out.push(w);
    }
    Ok(out)
}

/// What `cores` would sustain if every process in the test (gateway, simulated systems,
/// load generator) were CPU-bound and nothing else ran: cores / CPU seconds per operation.
/// A noise-resistant companion to the measured rate on a shared machine.
fn cpu_bound(cores: usize, r: &Row) -> String {
    let per_op = r.gw_cpu_us + r.idp_cpu_us + r.bench_cpu_us;
    if per_op > 0.0 { format!("{:.0}", cores as f64 * 1e6 / per_op) } else { "-".into() }
}

/// Issue 14's cost figures: gateway CPU per operation of a scenario over its baseline's,
/// for the pairs measured in this run, with the issue's bound (None: reported only).
const COST_PAIRS: [(Kind, Kind, Option<f64>); 6] = [
    (Kind::DpopToken, Kind::ClientCredentials, Some(1.3)),
    (Kind::DpopRefreshToken, Kind::RefreshToken, Some(1.3)),
    (Kind::DpopUserinfo, Kind::Userinfo, Some(1.3)),
    (Kind::ParAuthorize, Kind::PlainAuthorize, Some(1.2)),
    (Kind::MtlsClientCredentials, Kind::ClientCredentials, None),
    (Kind::CertLogin, Kind::FullLogin, Some(1.5)),
];

fn cost_ratios(rows: &[Row]) -> String {
    let mut out = String::new();
    let cpu = |k: Kind| {
        rows.iter().find(|r| r.kind == k && r.outcome.as_ref().is_some_and(|o| o.ok > 0)).map(|r| r.gw_cpu_us)
    };
    for (kind, base, bound) in COST_PAIRS {
        let (Some(a), Some(b)) = (cpu(kind), cpu(base)) else { continue };
        if b <= 0.0 {
            continue;
        }
        let ratio = a / b;
        let verdict = match bound {
            Some(t) => format!(
                "target ≤ {t:.1}×: {:.2} of the bound ({})",
                ratio / t,
                if ratio <= t { "met" } else { "MISSED" }
            ),
            None => "no target".into(),
        };
        let _ = writeln!(
            out,
            "- cost: {} / {} = {a:.0} / {b:.0} µs gateway CPU = **{ratio:.2}×** ({verdict})",
            kind.name(),
            base.name()
        );
    }
    out
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

fn render(
    args: &Args,
    connections: usize,
    cores: usize,
    idle: procs::Mem,
    end: procs::Mem,
    rows: &[Row],
    notes: &str,
) -> String {
    let mib = |kib: u64| kib as f64 / 1024.0;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nsso-bench: {cores} cores (load generator included), {connections} connections, {} s per scenario, store {}, {} tokens",
        args.duration, args.store, args.alg
    );
    let _ = writeln!(
        out,
        "gateway RSS: idle {:.1} MiB, at the end {:.1} MiB, peak (VmHWM) {:.1} MiB\n",
        mib(idle.rss_kib),
        mib(end.rss_kib),
        mib(end.hwm_kib)
    );
    let header = [
        "scenario",
        "ops/s",
        "target",
        "vs target",
        "p50 ms",
        "p99 ms",
        "p99.9 ms",
        "ok",
        "errors",
        "gw CPU µs/op",
        "bench CPU µs/op",
        "CPU-bound ops/s",
        "gw peak RSS MiB",
    ];
    let mut table: Vec<Vec<String>> = Vec::new();
    for r in rows {
        let target = r.kind.target();
        let t = target.map(|t| format!("{t:.0}")).unwrap_or_else(|| "-".into());
        match &r.outcome {
            None => table.push(vec![r.kind.name().into(), "n/a".into(), t, "-".into()]),
            Some(o) => table.push(vec![
                r.kind.name().into(),
                format!("{:.0}", o.rate()),
                t,
                target.map(|t| format!("{:.2}×", o.rate() / t)).unwrap_or_else(|| "-".into()),
                format!("{:.2}", o.quantile_ms(0.5)),
                format!("{:.2}", o.quantile_ms(0.99)),
                format!("{:.2}", o.quantile_ms(0.999)),
                o.ok.to_string(),
                o.errors.to_string(),
                format!("{:.0}", r.gw_cpu_us),
                format!("{:.0}", r.bench_cpu_us),
                cpu_bound(cores, r),
                format!("{:.1}", mib(r.peak_rss_kib)),
            ]),
        }
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            table
                .iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .chain([header[i].chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<&str>| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:>w$}", w = widths[i]))
            .collect::<Vec<_>>()
            .join("  ")
    };
    let _ = writeln!(out, "{}", line(header.to_vec()));
    for r in &table {
        let _ = writeln!(out, "{}", line(r.iter().map(String::as_str).collect()));
    }
    let _ = writeln!(
        out,
        "\n- CPU-bound ops/s = {cores} cores / (CPU per op of gateway + simulated systems + Redis + load generator): what this machine would do with nothing else running"
    );
    for r in rows {
        if r.kind == Kind::FullLogin && r.outcome.is_some() {
            let _ = writeln!(
                out,
                "- full_login: the three simulated systems (and Redis, if started) used {:.0} µs CPU per login",
                r.idp_cpu_us
            );
        }
        if !r.note.is_empty() {
            let _ = writeln!(out, "- {}: {}", r.kind.name(), r.note);
        }
    }
    out.push_str(&cost_ratios(rows));
    for k in [Kind::FullLogin, Kind::SsoLogin, Kind::CertLogin, Kind::ParAuthorize, Kind::PlainAuthorize] {
        if rows.iter().any(|r| r.kind == k) {
            let _ = writeln!(out, "- one {} op = {}", k.name(), k.unit());
        }
    }
    out.push_str(notes);
    if args.markdown {
        let _ = writeln!(out, "\n| {} |", header.join(" | "));
        let _ = writeln!(out, "|{}|", header.iter().map(|_| "---").collect::<Vec<_>>().join("|"));
        for r in &table {
            let mut cells = r.clone();
            cells.resize(header.len(), String::new());
            let _ = writeln!(out, "| {} |", cells.join(" | "));
        }
    }
    out
}
