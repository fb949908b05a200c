//! `authorize-flood`: anonymous `/authorize` requests with large `state` values (valid client
//! and redirect URI, so each would be parked), from one address and from many (named in
//! `X-Forwarded-For`, which the benchmark gateway trusts from loopback), while a real person
//! logs in — once the store has started refusing the flood (its anonymous room is full), or
//! once half the flood is sent if it never does. Measures what the flood makes the gateway keep: RSS growth of the gateway and
//! `used_memory` growth of Redis, per request; and whether the login succeeded.
//!
//! Bounded: a fixed number of requests per phase and a time bound; loopback only.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request};
use url::Url;

use crate::http::{Conn, addr_of, query_param};
use crate::procs;
use crate::redis::Redis;
use crate::scenarios::{Ctx, Kind, ScenarioWorker};
use crate::system::{RP_CALLBACK, RP_CLIENT, User};

/// How a flood runs.
#[derive(Debug, Clone, Copy)]
pub struct Flood {
    /// Requests per phase.
    pub requests: u64,
    /// Bytes of `state` in each request.
    pub state_bytes: usize,
    /// Concurrent connections sending the flood.
    pub connections: usize,
    /// Time bound per phase.
    pub within: Duration,
}

/// What the gateway answered, by kind.
#[derive(Debug, Default)]
struct Answers {
    /// Redirected to the chooser: the request was parked.
    parked: AtomicU64,
    /// 429 (rate limits).
    rate_limited: AtomicU64,
    /// `invalid_request` to the RP (a parameter over its cap).
    invalid: AtomicU64,
    /// `temporarily_unavailable` to the RP or a 503 (the store is full).
    busy: AtomicU64,
    other: AtomicU64,
}

impl Answers {
    fn total(&self) -> u64 {
        [&self.parked, &self.rate_limited, &self.invalid, &self.busy, &self.other]
            .iter()
            .map(|a| a.load(Ordering::Relaxed))
            .sum()
    }
}

/// One phase's figures.
struct Phase {
    sources: u32,
    sent: u64,
    elapsed: Duration,
    rss_growth_kib: i64,
    peak_growth_kib: i64,
    redis_growth: Option<i64>,
    answers: Answers,
    login: Result<Duration, String>,
    /// Whether the login started after the store had refused the flood (room full).
    login_when_full: bool,
}

/// The `i`-th flood source address (10.x.y.z), named in `X-Forwarded-For`.
fn source(i: u32) -> String {
    // 10.0.0.1, 10.0.0.2, …: one address per source, none of them 10.0.0.0.
    let n = i + 1;
    format!("10.{}.{}.{}", (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff)
}

fn authorize_path(gateway: &Url, state: &str) -> Result<String> {
    let mut url = gateway.join("/authorize")?;
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", RP_CLIENT)
        .append_pair("redirect_uri", RP_CALLBACK)
        .append_pair("scope", "openid profile")
        .append_pair("code_challenge", "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM")
        .append_pair("code_challenge_method", "S256")
        .append_pair("state", state);
    Ok(url[url::Position::BeforePath..].to_string())
}

fn classify(answers: &Answers, status: hyper::StatusCode, location: Option<&str>) {
    let counter = if status == hyper::StatusCode::TOO_MANY_REQUESTS {
        &answers.rate_limited
    } else if status == hyper::StatusCode::SERVICE_UNAVAILABLE {
        &answers.busy
    } else if let Some(loc) = location.filter(|_| status.is_redirection()) {
        if loc.starts_with("/login") || loc.starts_with("/upstream/") {
            &answers.parked
        } else {
            match Url::parse(loc).ok().and_then(|u| query_param(&u, "error")).as_deref() {
                Some("invalid_request") => &answers.invalid,
                Some("temporarily_unavailable") => &answers.busy,
                _ => &answers.other,
            }
        }
    } else {
        &answers.other
    };
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Sends `flood.requests` requests from `sources` addresses, with a real login in the middle.
async fn phase(
    flood: Flood,
    sources: u32,
    gateway: &Url,
    ctx: Arc<Ctx>,
    user: &User,
    gw_pid: u32,
    redis: Option<&mut Redis>,
) -> Result<Phase> {
    let addr = addr_of(gateway)?;
    // A different state per request, so nothing can be shared between parked requests.
    let filler = "s".repeat(flood.state_bytes.saturating_sub(16));
    let before = procs::mem(gw_pid)?.rss_kib;
    let mut redis = redis;
    let redis_before = match redis.as_mut() {
        Some(r) => Some(r.used_memory().await?),
        None => None,
    };
    let answers = Arc::new(Answers::default());
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + flood.within;
    let sampler = procs::RssSampler::start(gw_pid, Duration::from_millis(100), flood.within);
    let mut tasks = Vec::new();
    for _ in 0..flood.connections.max(1) {
        let (answers, next, filler, gateway) =
            (answers.clone(), next.clone(), filler.clone(), gateway.clone());
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::new(addr)?;
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= flood.requests || Instant::now() >= deadline {
                    return Ok::<_, anyhow::Error>(());
                }
                let path = authorize_path(&gateway, &format!("{n:016}{filler}"))?;
                let from = HeaderValue::from_str(&source((n % u64::from(sources)) as u32))?;
                let req = Request::builder()
                    .method(Method::GET)
                    .uri(path)
                    .header("x-forwarded-for", from)
                    .body(Full::new(Bytes::new()))?;
                match conn.send(req).await {
                    Ok(r) => {
                        let loc = r.headers.get(header::LOCATION).and_then(|v| v.to_str().ok());
                        classify(&answers, r.status, loc);
                    }
                    Err(_) => {
                        answers.other.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    // The real login (from an address of its own, see below), once the store refuses the flood (its
    // anonymous room is full), or once half the flood is sent if it never does.
    let full = |a: &Answers| a.busy.load(Ordering::Relaxed) > 0;
    let login = {
        while !full(&answers)
            && next.load(Ordering::Relaxed) < flood.requests / 2
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if full(&answers) {
            // A little more flood against the full store before the person arrives.
            let at = next.load(Ordering::Relaxed) + 200;
            while next.load(Ordering::Relaxed) < at.min(flood.requests) && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        let login_when_full = full(&answers);
        let mut worker = ScenarioWorker::new(Kind::FullLogin, ctx);
        // A person at an address of their own (TEST-NET-1, named only in the header): not the
        // load generator's loopback address, which earlier phases and the sessions prepared at
        // start have already used within `lifetimes.login_attempt`.
        worker.browser.forwarded_for = Some(HeaderValue::from_static("192.0.2.10"));
        let t = Instant::now();
        let outcome = match worker.login(user).await {
            Ok(()) => Ok(t.elapsed()),
            Err(e) => Err(format!("{e:#}")),
        };
        (outcome, login_when_full)
    };
    let (login, login_when_full) = login;
    for t in tasks {
        t.await??;
    }
    let elapsed = started.elapsed();
    let peak = sampler.finish().await;
    // Let the allocator settle a moment before reading RSS again.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = procs::mem(gw_pid)?.rss_kib;
    let redis_growth = match (redis, redis_before) {
        (Some(r), Some(b)) => Some(r.used_memory().await? - b),
        _ => None,
    };
    let answers = Arc::try_unwrap(answers).unwrap_or_default();
    Ok(Phase {
        sources,
        sent: answers.total(),
        elapsed,
        rss_growth_kib: after as i64 - before as i64,
        peak_growth_kib: peak as i64 - before as i64,
        redis_growth,
        answers,
        login,
        login_when_full,
    })
}

/// Runs the flood from one address, then from 1 000, and describes both.
pub async fn run(
    flood: Flood,
    gateway: &Url,
    ctx: Arc<Ctx>,
    user: &User,
    gw_pid: u32,
    mut redis: Option<&mut Redis>,
) -> Result<String> {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nauthorize-flood: {} requests per phase, state of {} bytes, {} connections, a full login (`{}` at `{}`) once half is sent",
        flood.requests, flood.state_bytes, flood.connections, user.username, user.upstream
    );
    for sources in [1u32, 1_000] {
        eprintln!("sso-bench: authorize-flood from {sources} address(es) …");
        let p = phase(flood, sources, gateway, ctx.clone(), user, gw_pid, redis.as_deref_mut()).await?;
        let a = &p.answers;
        let per = |bytes: f64| bytes / p.sent.max(1) as f64;
        let _ = writeln!(
            out,
            "- from {} address(es): {} sent in {:.1} s ({:.0}/s); parked {}, rate-limited (429) {}, invalid_request {}, busy (store full) {}, other {}",
            p.sources,
            p.sent,
            p.elapsed.as_secs_f64(),
            p.sent as f64 / p.elapsed.as_secs_f64().max(1e-9),
            a.parked.load(Ordering::Relaxed),
            a.rate_limited.load(Ordering::Relaxed),
            a.invalid.load(Ordering::Relaxed),
            a.busy.load(Ordering::Relaxed),
            a.other.load(Ordering::Relaxed),
        );
        let _ = writeln!(
            out,
            "  - gateway RSS growth {:.1} MiB at the end, {:.1} MiB at the peak ({:.0} bytes per request)",
            p.rss_growth_kib as f64 / 1024.0,
            p.peak_growth_kib as f64 / 1024.0,
            per(p.rss_growth_kib as f64 * 1024.0)
        );
        if let Some(g) = p.redis_growth {
            let _ = writeln!(
                out,
                "  - Redis `used_memory` growth {:.1} MiB ({:.0} bytes per request)",
                g as f64 / 1048576.0,
                per(g as f64)
            );
        }
        let when = if p.login_when_full {
            "started once the store refused the flood (anonymous room full)"
        } else {
            "started once half the flood was sent (the store never refused it)"
        };
        match &p.login {
            Ok(t) => {
                let _ = writeln!(
                    out,
                    "  - the real login during the flood, {when}, succeeded in {:.0} ms",
                    t.as_secs_f64() * 1e3
                );
            }
            Err(e) => {
                let _ = writeln!(
                    out,
                    "  - the real login during the flood, {when}, FAILED: {}",
                    e.chars().take(300).collect::<String>()
                );
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_distinct_private_addresses() {
        let all: std::collections::HashSet<String> = (0..1_000).map(source).collect();
        assert_eq!(all.len(), 1_000);
        assert!(all.iter().all(|a| a.parse::<std::net::Ipv4Addr>().is_ok_and(|ip| ip.is_private())));
    }

    #[test]
    fn answers_are_told_apart() {
        let a = Answers::default();
        classify(&a, hyper::StatusCode::SEE_OTHER, Some("/login?request=x"));
        classify(&a, hyper::StatusCode::TOO_MANY_REQUESTS, None);
        classify(&a, hyper::StatusCode::SEE_OTHER, Some("http://127.0.0.1:9/bench/cb?error=invalid_request"));
        classify(
            &a,
            hyper::StatusCode::SEE_OTHER,
            Some("http://127.0.0.1:9/bench/cb?error=temporarily_unavailable"),
        );
        classify(&a, hyper::StatusCode::INTERNAL_SERVER_ERROR, None);
        let counts: Vec<u64> = [&a.parked, &a.rate_limited, &a.invalid, &a.busy, &a.other]
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        assert_eq!(counts, [1, 1, 1, 1, 1]);
    }
}
