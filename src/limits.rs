//! Request rate limits (`[limits]`): how many requests one client address, and one registered
//! client, may send per window.
//!
//! Owns: the counting (fixed windows aligned to the injected clock), the layer that limits the
//! browser routes by address (and attributes every request's anonymous records to its
//! address, `state::attributed`), the check that limits the back-channel endpoints by address and
//! by client, and the rejection metric. Must not: decide what a 429 looks like (the browser
//! page is `web::ErrorPage::rate_limited`, the OAuth body `provider::error::TokenError::SlowDown`)
//! or know addresses beyond [`ClientIp`] (which honours `inbound.trusted_proxies`).
//!
//! Addresses are counted as the state store attributes anonymous records ([`Origin`]): an IPv6
//! address by its /64.
//!
//! Where the counts live: always in a bounded in-process cache; with Redis as the state store
//! also in Redis, so that every replica sees the same counts (keys hold SHA-256 of addresses
//! and client ids and expire two windows after they were made). Those counters are written
//! before anyone proved anything (a client is counted before it authenticates), so they are
//! anonymous records of the request's address: they count against its share of the anonymous
//! budget, and where that is full the replica counts the address itself (as when Redis is
//! down, but without waiting to ask again). A replica reports its counts
//! to Redis with at most one pipelined round trip per request, and only every [`batch`]
//! requests of a key (1 % of the limit, at most [`MAX_BATCH`]): small limits are exact, large
//! ones may be exceeded by that 1 % per replica, and a request to a key already known to be
//! over its limit is refused without a round trip (a flood costs Redis nothing).
//!
//! Redis down: the limiter fails open to the replica's own count (the last count Redis gave
//! plus what the replica has seen since). It never refuses or delays a request because Redis
//! is down; the request goes on to meet the outage itself (a 503). After a failure it counts
//! locally for [`SHARED_RETRY`] seconds before asking Redis again, so an outage does not add
//! a Redis timeout to every request.

use std::net::IpAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{FromRef, FromRequestParts, MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::clock::Clock;
use crate::config::LimitSettings;
use crate::state::{Class, Origin, StateStore, StoreError, hashed_key};
use crate::web::client_ip::{ClientIp, TrustedProxies};

/// Distinct (bucket, address or client) counters one process keeps (about 200 B each).
/// Beyond it the least useful counters are dropped: a flood from more addresses than this per
/// window is not something per-address counting can stop anyway.
const LOCAL_CAPACITY: u64 = 100_000;

/// How long the limiter counts locally after Redis failed to answer, seconds.
pub const SHARED_RETRY: i64 = 10;

/// What a counter counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Bucket {
    /// Browser routes, per address.
    Browser,
    /// `/token`, `/par`, `/introspect`, `/revoke`, per address.
    Token,
    /// `/token`, `/par`, `/introspect`, `/revoke`, per registered client.
    Client,
}

impl Bucket {
    /// The metric label and key part.
    pub fn name(self) -> &'static str {
        match self {
            Bucket::Browser => "browser",
            Bucket::Token => "token",
            Bucket::Client => "client",
        }
    }
}

/// A request over a limit: which one, and how many seconds until its window ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    pub bucket: Bucket,
    pub retry_after: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Address(Bucket, IpAddr),
    Client(String),
}

impl Key {
    fn bucket(&self) -> Bucket {
        match self {
            Key::Address(b, _) => *b,
            Key::Client(_) => Bucket::Client,
        }
    }

    /// The state-store key of this counter in window number `window`.
    fn store_key(&self, window: i64) -> String {
        match self {
            Key::Address(b, ip) => hashed_key(&format!("ratelimit:{}:{window}", b.name()), &ip.to_string()),
            Key::Client(id) => hashed_key(&format!("ratelimit:client:{window}"), id),
        }
    }
}

/// One key's count in this process.
#[derive(Debug)]
struct Cell {
    /// The window counted.
    window: i64,
    /// The count the shared store last reported (always 0 without one).
    seen: u64,
    /// Requests counted here and not yet reported to the shared store.
    pending: u64,
    /// Whether this replica has reported the window's counter to the shared store (and so
    /// counted it against the anonymous budget) already.
    reported: bool,
}

impl Cell {
    fn new(window: i64) -> Self {
        Cell { window, seen: 0, pending: 0, reported: false }
    }
}

type LocalCounts = moka::sync::Cache<Key, Arc<Mutex<Cell>>>;

/// Most requests a replica counts before reporting them to the shared store (see [`batch`]).
pub const MAX_BATCH: u64 = 64;

/// The rate limiter of one gateway process.
pub struct RateLimiter {
    settings: LimitSettings,
    window_secs: i64,
    clock: Clock,
    local: LocalCounts,
    shared: Option<StateStore>,
    /// Clock second until which Redis is not asked (after a failure).
    shared_down_until: AtomicI64,
}

impl RateLimiter {
    /// Counts in `store` when it is shared by replicas (Redis), in the process otherwise.
    pub fn new(settings: &LimitSettings, store: &StateStore, clock: Clock) -> Self {
        let window_secs = i64::try_from(settings.window.as_secs()).unwrap_or(i64::MAX).max(1);
        let local = moka::sync::Cache::builder()
            .max_capacity(LOCAL_CAPACITY)
            // A counter unused for a whole window would start from zero anyway.
            .time_to_idle(Duration::from_secs(window_secs.unsigned_abs()))
            .build();
        RateLimiter {
            settings: settings.clone(),
            window_secs,
            clock,
            local,
            shared: store.is_shared().then(|| store.with_class(Class::Anonymous)),
            shared_down_until: AtomicI64::new(i64::MIN),
        }
    }

    pub fn enabled(&self) -> bool {
        self.settings.enabled
    }

    fn limit(&self, bucket: Bucket) -> u64 {
        u64::from(match bucket {
            Bucket::Browser => self.settings.browser_per_address,
            Bucket::Token => self.settings.token_per_address,
            Bucket::Client => self.settings.token_per_client,
        })
    }

    /// Counts a browser request from `ip`.
    pub async fn check_browser(&self, ip: IpAddr) -> Result<(), Limited> {
        self.check(vec![Key::Address(Bucket::Browser, Origin::of(ip).ip())]).await
    }

    /// Counts a back-channel request from `ip` (when known) naming `client` (a registered
    /// client id, when one is named), in one round trip.
    pub async fn check_back_channel(&self, ip: Option<IpAddr>, client: Option<&str>) -> Result<(), Limited> {
        let mut keys = Vec::with_capacity(2);
        if let Some(ip) = ip {
            keys.push(Key::Address(Bucket::Token, Origin::of(ip).ip()));
        }
        if let Some(id) = client {
            keys.push(Key::Client(id.to_string()));
        }
        self.check(keys).await
    }

    async fn check(&self, keys: Vec<Key>) -> Result<(), Limited> {
        if !self.settings.enabled || keys.is_empty() {
            return Ok(());
        }
        let now = self.clock.now();
        let window = now.div_euclid(self.window_secs);
        let retry_after = ((window + 1) * self.window_secs - now).max(1).unsigned_abs();
        let limited = |key: &Key| Limited { bucket: key.bucket(), retry_after };
        let cells: Vec<Arc<Mutex<Cell>>> = keys
            .iter()
            .map(|k| self.local.get_with_by_ref(k, || Arc::new(Mutex::new(Cell::new(window)))))
            .collect();
        let shared = self.shared_store();
        let mut report = false;
        let mut over = None;
        for (key, cell) in keys.iter().zip(&cells) {
            let mut c = lock(cell);
            if c.window != window {
                *c = Cell::new(window);
            }
            c.pending = c.pending.saturating_add(1);
            let limit = self.limit(key.bucket());
            if c.seen.saturating_add(c.pending) > limit {
                // Known to be over without asking anyone: other replicas only add to it.
                over.get_or_insert(limited(key));
            } else if shared.is_some() && c.pending >= batch(limit) {
                report = true;
            }
        }
        if let Some(l) = over {
            return Err(l);
        }
        let Some(store) = shared.filter(|_| report) else { return Ok(()) };
        // Report every pending count of this request in one round trip.
        let mut first = Vec::with_capacity(cells.len());
        let amounts: Vec<u64> = cells
            .iter()
            .map(|cell| {
                let mut c = lock(cell);
                if c.window != window {
                    first.push(false);
                    return 0;
                }
                first.push(!std::mem::replace(&mut c.reported, true));
                std::mem::take(&mut c.pending)
            })
            .collect();
        let names: Vec<String> = keys.iter().map(|k| k.store_key(window)).collect();
        let counters: Vec<(&str, u64)> =
            names.iter().map(String::as_str).zip(amounts.iter().copied()).collect();
        // Only a counter's first report in its window is counted against the anonymous budget.
        let new: Vec<&str> =
            names.iter().zip(&first).filter(|(_, first)| **first).map(|(n, _)| n.as_str()).collect();
        // Two windows: a replica whose clock runs a little behind still finds the counter.
        let ttl = Duration::from_secs(2 * self.window_secs.unsigned_abs());
        let origin = keys.iter().find_map(|k| match k {
            Key::Address(_, ip) => Some(Origin::of(*ip)),
            Key::Client(_) => None,
        });
        match store.for_origin(origin).incr_each_charging(&counters, &new, ttl).await {
            Ok(totals) if totals.len() == keys.len() => {
                let mut result = Ok(());
                for ((key, cell), total) in keys.iter().zip(&cells).zip(totals) {
                    let mut c = lock(cell);
                    if c.window == window {
                        c.seen = c.seen.max(total);
                    }
                    if total > self.limit(key.bucket()) && result.is_ok() {
                        result = Err(limited(key));
                    }
                }
                result
            }
            Err(StoreError::Full(_)) => {
                // The address's share of the anonymous budget (or the budget) is full: the
                // counts stay this replica's own, as reported, so the next report waits for
                // another batch rather than coming at every request.
                for ((cell, amount), first) in cells.iter().zip(amounts).zip(&first) {
                    let mut c = lock(cell);
                    if c.window == window {
                        c.seen = c.seen.saturating_add(amount);
                        // Nothing was written: the next report counts the counter again.
                        c.reported &= !first;
                    }
                }
                Ok(())
            }
            outcome => {
                if let Err(e) = outcome {
                    tracing::warn!(
                        error = %e,
                        retry_in_secs = SHARED_RETRY,
                        "rate limits counted per replica: the state store did not answer"
                    );
                    self.shared_down_until.store(self.clock.now() + SHARED_RETRY, Ordering::Relaxed);
                }
                // Fail open to this replica's own count: the requests stay counted here.
                for ((cell, amount), first) in cells.iter().zip(amounts).zip(&first) {
                    let mut c = lock(cell);
                    if c.window == window {
                        c.reported &= !first;
                        c.pending = c.pending.saturating_add(amount);
                    }
                }
                Ok(())
            }
        }
    }

    /// The shared store, unless there is none or it failed a moment ago.
    fn shared_store(&self) -> Option<&StateStore> {
        let store = self.shared.as_ref()?;
        (self.clock.now() >= self.shared_down_until.load(Ordering::Relaxed)).then_some(store)
    }
}

/// How many requests a replica counts before it reports them to the shared store: 1 % of the
/// limit, at least 1, at most [`MAX_BATCH`]. Replicas together may let a shared limit be
/// exceeded by that much each; small limits (below 200) are counted exactly.
fn batch(limit: u64) -> u64 {
    (limit / 100).clamp(1, MAX_BATCH)
}

fn lock(cell: &Mutex<Cell>) -> std::sync::MutexGuard<'_, Cell> {
    // A panic while holding the lock cannot leave two integers half-written; keep counting.
    cell.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Counts one rejection (labels: the matched route and the bucket, never who was refused).
pub fn record(route: &str, limited: Limited) {
    metrics::counter!(
        "sso_rate_limited_total",
        "route" => route.to_string(),
        "bucket" => limited.bucket.name()
    )
    .increment(1);
}

/// Whether a matched route is a browser route limited per address. The back-channel
/// endpoints are limited where the client is known (`provider::client_auth`), so that the
/// form is read once and both counts cost one round trip.
fn is_browser_route(method: &Method, route: &str) -> bool {
    match route {
        "/authorize" | "/upstream/{id}/login" | "/upstream/{id}/callback" => {
            method == Method::GET || method == Method::POST
        }
        "/upstream/{id}/certificate" => method == Method::GET,
        "/logout" | "/sessions/end" | "/account/link" | "/account/unlink" => method == Method::POST,
        // Parks a request for a browser that is not logged in.
        "/account" => method == Method::GET,
        // The admin console: any page parks a login request for a browser without a console
        // session (its JSON API is limited per client, like the back channel).
        r if r == "/admin" || (r.starts_with("/admin/") && !r.starts_with("/admin/api/")) => {
            method == Method::GET || method == Method::POST
        }
        _ => false,
    }
}

/// The layer on browser routes: a request over its address's limit gets the bilingual 429
/// page with `Retry-After` and goes no further.
///
/// Every route's handling runs attributed to the request's address (`state::attributed`), so
/// that the anonymous records it makes count against that address's share.
pub async fn enforce(State(layer): State<BrowserLimits>, req: Request, next: Next) -> Response {
    let (mut parts, body) = req.into_parts();
    let Ok(ClientIp(ip)) = ClientIp::from_request_parts(&mut parts, &layer).await;
    let req = Request::from_parts(parts, body);
    crate::state::attributed(ip.map(Origin::of), limit(layer.limiter, ip, req, next)).await
}

/// What the browser-route layer ([`enforce`]) uses: the limiter, and whose `X-Forwarded-For`
/// to believe for the request's address.
#[derive(Clone)]
pub struct BrowserLimits {
    pub limiter: Arc<RateLimiter>,
    pub proxies: TrustedProxies,
}

impl FromRef<BrowserLimits> for TrustedProxies {
    fn from_ref(layer: &BrowserLimits) -> Self {
        layer.proxies.clone()
    }
}

async fn limit(limiter: Arc<RateLimiter>, ip: Option<IpAddr>, req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str()).unwrap_or("");
    if !limiter.enabled() || !is_browser_route(req.method(), route) {
        return next.run(req).await;
    }
    let route = route.to_string();
    let Some(ip) = ip else { return next.run(req).await };
    match limiter.check_browser(ip).await {
        Ok(()) => next.run(req).await,
        Err(limited) => {
            record(&route, limited);
            tracing::debug!(route, retry_after = limited.retry_after, "browser request over the rate limit");
            crate::web::ErrorPage::rate_limited(limited.retry_after).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(browser: u32, token: u32, client: u32) -> LimitSettings {
        LimitSettings {
            enabled: true,
            window: Duration::from_secs(60),
            browser_per_address: browser,
            token_per_address: token,
            token_per_client: client,
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[tokio::test]
    async fn an_address_is_limited_per_window_and_others_are_not() {
        let clock = Clock::system();
        let l = RateLimiter::new(&settings(3, 100, 100), &StateStore::memory(), clock.clone());
        for _ in 0..3 {
            l.check_browser(ip("192.0.2.1")).await.unwrap();
        }
        let limited = l.check_browser(ip("192.0.2.1")).await.unwrap_err();
        assert_eq!(limited.bucket, Bucket::Browser);
        assert!((1..=60).contains(&limited.retry_after), "{limited:?}");
        l.check_browser(ip("192.0.2.2")).await.unwrap();
        // The back-channel count of the same address is a separate bucket.
        l.check_back_channel(Some(ip("192.0.2.1")), None).await.unwrap();
        // The next window starts from zero.
        clock.advance(60);
        l.check_browser(ip("192.0.2.1")).await.unwrap();
    }

    #[tokio::test]
    async fn retry_after_is_the_rest_of_the_window() {
        let clock = Clock::system();
        let l = RateLimiter::new(&settings(1, 1, 1), &StateStore::memory(), clock.clone());
        l.check_browser(ip("192.0.2.1")).await.unwrap();
        let now = clock.now();
        let limited = l.check_browser(ip("192.0.2.1")).await.unwrap_err();
        let rest = 60 - now.rem_euclid(60);
        // (one second less if the clock ticked between the two readings)
        assert!([rest, rest - 1].contains(&(limited.retry_after as i64)), "{limited:?} at {now}");
    }

    #[tokio::test]
    async fn clients_are_limited_across_addresses() {
        let l = RateLimiter::new(&settings(100, 100, 2), &StateStore::memory(), Clock::system());
        l.check_back_channel(Some(ip("192.0.2.1")), Some("portal")).await.unwrap();
        l.check_back_channel(Some(ip("192.0.2.2")), Some("portal")).await.unwrap();
        let limited = l.check_back_channel(Some(ip("192.0.2.3")), Some("portal")).await.unwrap_err();
        assert_eq!(limited.bucket, Bucket::Client);
        l.check_back_channel(Some(ip("192.0.2.3")), Some("documents")).await.unwrap();
        l.check_back_channel(None, None).await.unwrap();
    }

    #[tokio::test]
    async fn disabled_limits_count_nothing() {
        let mut s = settings(1, 1, 1);
        s.enabled = false;
        let l = RateLimiter::new(&s, &StateStore::memory(), Clock::system());
        for _ in 0..5 {
            l.check_browser(ip("192.0.2.1")).await.unwrap();
            l.check_back_channel(Some(ip("192.0.2.1")), Some("portal")).await.unwrap();
        }
    }

    #[tokio::test]
    async fn replicas_on_one_redis_share_counts() {
        let store_a = test_redis().await;
        let store_b = store_a.clone();
        let clock = Clock::system();
        let a = RateLimiter::new(&settings(3, 100, 100), &store_a, clock.clone());
        let b = RateLimiter::new(&settings(3, 100, 100), &store_b, clock.clone());
        a.check_browser(ip("192.0.2.1")).await.unwrap();
        b.check_browser(ip("192.0.2.1")).await.unwrap();
        a.check_browser(ip("192.0.2.1")).await.unwrap();
        assert!(b.check_browser(ip("192.0.2.1")).await.is_err(), "the fourth request, on either replica");
    }

    async fn test_redis() -> StateStore {
        let url = sso_test_services::redis_url();
        let prefix = format!("test-{}:", crate::state::random_handle());
        let topology = crate::state::RedisTopology::Single(url);
        StateStore::redis(&topology, &prefix, Duration::from_secs(2)).await.unwrap()
    }

    /// The per-address counters are anonymous records (anyone can send from a fresh
    /// address): on Redis they count against the anonymous budget, so a flood from many
    /// addresses cannot grow them past it. Beyond it an address is still limited, by this
    /// replica's own count, and Redis is not taken for down.
    #[tokio::test]
    async fn per_address_counters_are_anonymous_and_bounded_by_the_budget() {
        let url = sso_test_services::redis_url();
        let prefix = format!("test-{}:", crate::state::random_handle());
        let topology = crate::state::RedisTopology::Single(url);
        let store =
            StateStore::redis_bounded(&topology, &prefix, Duration::from_secs(2), 64 * 1024).await.unwrap();
        let l = RateLimiter::new(&settings(3, 3, 100), &store, Clock::system());
        for i in 0..1_000u32 {
            let from = IpAddr::V4(std::net::Ipv4Addr::from(0xC633_6400 + i));
            l.check_browser(from).await.unwrap();
        }
        let anonymous = store.with_class(crate::state::Class::Anonymous);
        let refused = anonymous.put("authreq:x", vec![0; 1000], Duration::from_secs(60)).await;
        assert!(
            matches!(refused, Err(crate::state::StoreError::Full(crate::state::Class::Anonymous))),
            "the counters used the anonymous budget: {refused:?}"
        );
        for _ in 0..3 {
            l.check_browser(ip("203.0.113.7")).await.unwrap();
        }
        assert!(l.check_browser(ip("203.0.113.7")).await.is_err(), "still limited past the budget");
        assert_eq!(l.shared_down_until.load(Ordering::Relaxed), i64::MIN, "a full budget is not an outage");
    }

    /// A counter is counted against the anonymous budget at its first report in a window, not
    /// at every report: one busy address reporting at every request (limit 100, batch 1) must
    /// not use up the room of everyone's anonymous records.
    #[tokio::test]
    async fn a_counter_is_counted_against_the_budget_once_per_window() {
        let url = sso_test_services::redis_url();
        let prefix = format!("test-{}:", crate::state::random_handle());
        let topology = crate::state::RedisTopology::Single(url);
        let store =
            StateStore::redis_bounded(&topology, &prefix, Duration::from_secs(2), 16 * 1024).await.unwrap();
        let l = RateLimiter::new(&settings(100, 100, 100), &store, Clock::system());
        for _ in 0..90 {
            l.check_browser(ip("198.51.100.9")).await.unwrap();
        }
        let anonymous = store.with_class(crate::state::Class::Anonymous);
        anonymous
            .put("authreq:after-the-busy-address", vec![0; 1000], Duration::from_secs(60))
            .await
            .expect("room left: the busy address's counter is counted once");
        assert!(l.check_browser(ip("198.51.100.9")).await.is_ok());
    }

    #[test]
    fn reports_are_batched_by_one_percent_of_the_limit() {
        assert_eq!(batch(5), 1);
        assert_eq!(batch(199), 1);
        assert_eq!(batch(1_200), 12);
        assert_eq!(batch(6_000), 60);
        assert_eq!(batch(1_000_000_000), MAX_BATCH);
    }

    #[tokio::test]
    async fn large_shared_limits_hold_within_a_batch_per_replica() {
        let store = test_redis().await;
        let clock = Clock::system();
        clock.advance(60 - clock.now().rem_euclid(60));
        // 1 000 per window: replicas report every 10 requests.
        let replicas: Vec<RateLimiter> =
            (0..2).map(|_| RateLimiter::new(&settings(1_000, 100, 100), &store, clock.clone())).collect();
        let mut accepted = 0;
        for i in 0..1_200 {
            if replicas[i % 2].check_browser(ip("192.0.2.1")).await.is_ok() {
                accepted += 1;
            }
        }
        assert!((1_000..=1_000 + 2 * batch(1_000)).contains(&accepted), "{accepted} accepted");
    }

    #[test]
    fn only_the_named_browser_routes_are_limited_by_the_layer() {
        for (m, r) in [
            (Method::GET, "/authorize"),
            (Method::POST, "/authorize"),
            (Method::GET, "/upstream/{id}/login"),
            (Method::POST, "/upstream/{id}/login"),
            (Method::GET, "/upstream/{id}/callback"),
            (Method::POST, "/upstream/{id}/callback"),
            (Method::POST, "/logout"),
            (Method::POST, "/sessions/end"),
            (Method::GET, "/account"),
            (Method::POST, "/account/link"),
            (Method::POST, "/account/unlink"),
            (Method::GET, "/admin"),
            (Method::GET, "/admin/callback"),
            (Method::GET, "/admin/accounts/{id}"),
            (Method::POST, "/admin/conflicts/{id}/resolve"),
        ] {
            assert!(is_browser_route(&m, r), "{m} {r}");
        }
        for (m, r) in [
            (Method::GET, "/.well-known/openid-configuration"),
            (Method::GET, "/jwks"),
            (Method::GET, "/healthz"),
            (Method::GET, "/readyz"),
            (Method::POST, "/token"),
            (Method::GET, "/logout"),
            (Method::GET, "/sessions"),
            (Method::GET, "/admin/api/v1/accounts"),
            (Method::GET, "/administrator"),
        ] {
            assert!(!is_browser_route(&m, r), "{m} {r}");
        }
    }
}
