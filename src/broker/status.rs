//! Upstream status for operators: when each upstream last answered a login exchange, when it
//! last failed and why, and how long its last exchanges took. Recorded by the broker where an
//! exchange with an upstream completes or fails (one place for every protocol), and by
//! `sso-gateway upstreams probe` ([`record_probe`]), kept in the shared state store so every
//! replica sees every replica's exchanges and every probe.
//!
//! Owns: the `upstream-status:{id}` hashes (bounded: one per configured upstream, at most
//! [`RECENT`] + 2 fields each) and their sequence counters. Must not: take part in a login (a
//! store failure here is logged and never fails the exchange).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::state::{StateStore, StoreError};

/// Exchanges kept per upstream for the latency figures.
pub const RECENT: u64 = 20;

/// How long an upstream's status outlives its last exchange.
const RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);

/// Longest failure reason kept.
const MAX_REASON: usize = 500;

fn key(upstream: &str) -> String {
    format!("upstream-status:{upstream}")
}

fn seq_key(upstream: &str) -> String {
    format!("upstream-status-seq:{upstream}")
}

/// One finished exchange.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Exchange {
    /// Unix seconds.
    pub at: i64,
    pub latency_ms: u64,
    /// The upstream answered (a wrong password or a refusal is an answer); false when it
    /// failed (unreachable, an error of its own, an answer that did not verify).
    pub ok: bool,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Recorded by `upstreams probe` rather than by a login.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub probe: bool,
}

/// What is known of one upstream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct UpstreamStatus {
    pub upstream: String,
    pub last_success: Option<Exchange>,
    pub last_failure: Option<Exchange>,
    /// The last exchanges (at most [`RECENT`]), newest first.
    pub recent: Vec<Exchange>,
}

fn cut(reason: &str) -> String {
    let mut end = reason.len().min(MAX_REASON);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason[..end].to_string()
}

/// Records one exchange with `upstream` (`Err(reason)`: it failed). Never fails: a store
/// error is logged.
pub async fn record(
    store: &StateStore,
    upstream: &str,
    at: i64,
    latency: Duration,
    outcome: Result<(), &str>,
) {
    save(store, upstream, exchange(at, latency, outcome, false)).await;
}

/// Records one run of `upstreams probe` against `upstream` (`Err(reason)`: a check failed),
/// like a login's exchange but marked as the probe's. Never fails: a store error is logged.
pub async fn record_probe(
    store: &StateStore,
    upstream: &str,
    at: i64,
    latency: Duration,
    outcome: Result<(), &str>,
) {
    save(store, upstream, exchange(at, latency, outcome, true)).await;
}

fn exchange(at: i64, latency: Duration, outcome: Result<(), &str>, probe: bool) -> Exchange {
    Exchange {
        at,
        latency_ms: u64::try_from(latency.as_millis()).unwrap_or(u64::MAX),
        ok: outcome.is_ok(),
        reason: outcome.err().map(cut),
        probe,
    }
}

async fn save(store: &StateStore, upstream: &str, exchange: Exchange) {
    if let Err(e) = write(store, upstream, &exchange).await {
        tracing::warn!(error = %e, upstream, "cannot record the upstream's status");
    }
}

async fn write(store: &StateStore, upstream: &str, exchange: &Exchange) -> Result<(), StoreError> {
    let seq = store.incr(&seq_key(upstream), RETENTION).await?;
    let json = serde_json::to_vec(exchange)?;
    let slot = format!("r{}", seq % RECENT);
    let last = if exchange.ok { "success" } else { "failure" };
    store.hash_set(&key(upstream), &[(slot.as_str(), &json), (last, &json)], RETENTION).await
}

/// The status of each of `upstreams`, in that order.
pub async fn read(store: &StateStore, upstreams: &[&str]) -> Result<Vec<UpstreamStatus>, StoreError> {
    let slots: Vec<String> = (0..RECENT).map(|i| format!("r{i}")).collect();
    let mut fields: Vec<&str> = slots.iter().map(String::as_str).collect();
    fields.extend(["success", "failure"]);
    let mut out = Vec::with_capacity(upstreams.len());
    for upstream in upstreams {
        let mut got = store.hash_get(&key(upstream), &fields).await?;
        let mut take = |f: &str| -> Result<Option<Exchange>, StoreError> {
            got.remove(f).map(|v| serde_json::from_slice(&v)).transpose().map_err(StoreError::from)
        };
        let last_success = take("success")?;
        let last_failure = take("failure")?;
        let mut recent = Vec::with_capacity(slots.len());
        for s in &slots {
            if let Some(e) = take(s)? {
                recent.push(e);
            }
        }
        recent.sort_by_key(|e| std::cmp::Reverse(e.at));
        out.push(UpstreamStatus { upstream: upstream.to_string(), last_success, last_failure, recent });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[tokio::test]
    async fn keeps_the_last_success_failure_and_a_bounded_window_of_exchanges() {
        let store = StateStore::memory();
        for i in 0..(RECENT as i64 + 5) {
            record(&store, "hcm", 100 + i, Duration::from_millis(10 + i as u64), Ok(())).await;
        }
        record(&store, "hcm", 1000, Duration::from_millis(3000), Err("token exchange failed: HTTP 500"))
            .await;
        let long = "é".repeat(MAX_REASON);
        record(&store, "bd", 7, Duration::from_millis(1), Err(&long)).await;
        let all = read(&store, &["hcm", "bd", "brvt"]).await.unwrap();
        let hcm = &all[0];
        assert_eq!(hcm.last_success.as_ref().unwrap().at, 100 + RECENT as i64 + 4);
        let failure = hcm.last_failure.as_ref().unwrap();
        assert_eq!((failure.at, failure.latency_ms, failure.ok), (1000, 3000, false));
        assert_eq!(failure.reason.as_deref(), Some("token exchange failed: HTTP 500"));
        assert_eq!(hcm.recent.len(), RECENT as usize, "bounded");
        assert_eq!(hcm.recent[0].at, 1000, "newest first");
        assert!(all[1].last_failure.as_ref().unwrap().reason.as_ref().unwrap().len() <= MAX_REASON);
        assert_eq!(
            all[2],
            UpstreamStatus {
                upstream: "brvt".into(),
                last_success: None,
                last_failure: None,
                recent: vec![]
            }
        );
    }
}
