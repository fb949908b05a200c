//! The state store: everything short-lived (sessions, parked authorization requests,
//! upstream login attempts, codes, refresh-token families, revocation and replay records).
//!
//! Owns: one key/value + set + hash interface with TTLs and atomic single-use `take`, and its
//! backends (in-memory for one process; Redis, shared by replicas, behind the same interface). Must not: know what the
//! records mean — typed records live with their owners (`provider`, `broker`, `session`).
//!
//! Anonymous records are also attributed to the client address they were made for
//! ([`Origin`]: set per request by [`attributed`], from the layer in `limits`), so that each
//! address may hold only its share of the anonymous room ([`AddressShares`]).

mod memory;
mod redis;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use memory::{Capacity, MemoryStore, Usage};
pub use redis::{MasterAuth, RedisStore, RedisTopology};

/// The store could not answer; requests that need it fail with 503.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state store unavailable: {0}")]
    Unavailable(String),
    /// The store is full for records of this class (the embedded store's capacity, or Redis
    /// at `maxmemory` with `noeviction`): the write was refused, nothing was evicted. Browser
    /// routes answer with the "busy" page, OAuth endpoints with `temporarily_unavailable`.
    #[error("state store full: {} record refused", .0.name())]
    Full(Class),
    #[error("stored record is corrupt: {0}")]
    Corrupt(#[from] serde_json::Error),
    #[error("stored record is malformed: {0}")]
    Malformed(String),
}

/// Who a record is written for. Anonymous records (parked authorization requests, login
/// attempts, replay markers and counters made before anyone logged in) may use only their share
/// of a bounded store, so that a flood of anonymous requests cannot crowd out the sessions,
/// codes and refresh families of people who did log in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    Anonymous,
    Authenticated,
}

impl Class {
    /// The metric label.
    pub fn name(self) -> &'static str {
        match self {
            Class::Anonymous => "anonymous",
            Class::Authenticated => "authenticated",
        }
    }
}

/// Where anonymous records come from: the client's address as the gateway resolved it (with
/// `inbound.trusted_proxies`), an IPv6 address grouped by its /64 (what one subscriber or
/// host gets), an IPv4-mapped IPv6 address taken as IPv4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Origin(IpAddr);

impl Origin {
    pub fn of(ip: IpAddr) -> Self {
        match ip.to_canonical() {
            IpAddr::V4(v4) => Origin(IpAddr::V4(v4)),
            IpAddr::V6(v6) => Origin(IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !(u64::MAX as u128)))),
        }
    }

    /// The address (an IPv6 one as its /64's first address).
    pub fn ip(self) -> IpAddr {
        self.0
    }
}

tokio::task_local! {
    /// The origin of the request being served (see [`attributed`]).
    static REQUESTER: Option<Origin>;
}

/// Runs `f` (a request's handling) with the anonymous records it writes attributed to
/// `origin`.
pub async fn attributed<F: std::future::Future>(origin: Option<Origin>, f: F) -> F::Output {
    REQUESTER.scope(origin, f).await
}

/// The origin of the request being served, if any.
fn requester() -> Option<Origin> {
    REQUESTER.try_with(|o| *o).ok().flatten()
}

/// How the anonymous room (the embedded store's anonymous share, Redis' anonymous budget) is
/// shared between client addresses (`[sessions] anonymous_per_address`,
/// `anonymous_reserve_percent`, `anonymous_reserve_per_address`):
///
/// - an address may hold at most `per_address` bytes of anonymous records;
/// - only the first `100 − reserve_percent` % of the room is open to every address;
/// - the rest (the reserve) only to an address that holds at most `reserve_per_address`
///   bytes with the new record (a person starting a login or two), so that a flood from many
///   addresses holding more than that cannot take it.
///
/// A record that cannot be attributed to an address gets only the part open to every address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressShares {
    pub per_address: u64,
    pub reserve_percent: u8,
    pub reserve_per_address: u64,
}

impl AddressShares {
    /// No per-address limits (tools and tests that build a store by hand).
    pub const NONE: AddressShares =
        AddressShares { per_address: u64::MAX, reserve_percent: 0, reserve_per_address: 0 };

    /// The part of `room` that an address holding `held` bytes with the new record may fill;
    /// None if it holds more than its share.
    pub fn room_for(&self, room: u64, held: Option<u64>) -> Option<u64> {
        let general = percent_of(room, 100 - u64::from(self.reserve_percent.min(100)));
        match held {
            None => Some(general),
            Some(h) if h > self.per_address => None,
            Some(h) if h <= self.reserve_per_address => Some(room),
            Some(_) => Some(general),
        }
    }

    /// The part of the room open to every address.
    pub fn general(&self, room: u64) -> u64 {
        percent_of(room, 100 - u64::from(self.reserve_percent.min(100)))
    }
}

/// `pct` % of `n`, without overflow.
pub(crate) fn percent_of(n: u64, pct: u64) -> u64 {
    if n == u64::MAX && pct >= 100 { n } else { (n / 100).saturating_mul(pct) + n % 100 * pct / 100 }
}

/// Who writes a record: its class and, for an anonymous one, the address it is made for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Writer {
    pub class: Class,
    pub origin: Option<Origin>,
}

impl From<Class> for Writer {
    fn from(class: Class) -> Self {
        Writer { class, origin: None }
    }
}

#[derive(Clone)]
enum Backend {
    Memory(Arc<MemoryStore>),
    Redis(Arc<RedisStore>),
}

/// Cheap-to-clone handle on the configured state backend. Its writes are of one [`Class`]
/// (authenticated unless made with [`StateStore::with_class`]).
#[derive(Clone)]
pub struct StateStore {
    backend: Backend,
    class: Class,
    /// Anonymous writes are attributed to this origin, else to the request's ([`attributed`]).
    origin: Option<Origin>,
}

impl std::fmt::Debug for StateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.backend {
            Backend::Memory(_) => f.write_str("StateStore(memory)"),
            Backend::Redis(_) => f.write_str("StateStore(redis)"),
        }
    }
}

/// Counts store failures (one metric for every backend) and refused writes (by class).
fn note<T>(r: Result<T, StoreError>) -> Result<T, StoreError> {
    match &r {
        Err(StoreError::Full(class)) => {
            metrics::counter!("sso_state_store_refused_total", "class" => class.name()).increment(1);
        }
        Err(_) => metrics::counter!("sso_state_store_errors_total").increment(1),
        Ok(_) => {}
    }
    r
}

/// Which store to open, with its limits: what `[sessions]` says, in the store's own terms.
#[derive(Debug, Clone)]
pub enum StorePlan {
    /// The embedded store (`store = "memory"`), bounded.
    Memory(Capacity),
    /// Redis, single, Sentinel or Cluster.
    Redis {
        topology: RedisTopology,
        key_prefix: String,
        timeout: Duration,
        anonymous_max_bytes: u64,
        shares: AddressShares,
    },
}

impl StateStore {
    /// On Redis, counts an anonymous write of `records` (key, value bytes) against the shared
    /// anonymous budget, or refuses it; authenticated writes are never counted nor refused.
    async fn admit(
        &self,
        r: &RedisStore,
        records: &[(&str, usize)],
        ttl: Duration,
    ) -> Result<(), StoreError> {
        if self.class != Class::Anonymous {
            return Ok(());
        }
        let bytes = records.iter().map(|(key, value)| r.counted(key, *value)).sum();
        r.admit_anonymous(bytes, ttl, self.writer().origin).await
    }

    /// This handle's class and, for anonymous writes, the origin they are attributed to.
    fn writer(&self) -> Writer {
        let origin = match self.class {
            Class::Anonymous => self.origin.or_else(requester),
            Class::Authenticated => None,
        };
        Writer { class: self.class, origin }
    }

    /// [`note`], with a refusal reported for this handle's class (Redis cannot tell).
    fn note<T>(&self, r: Result<T, StoreError>) -> Result<T, StoreError> {
        note(r.map_err(|e| match e {
            StoreError::Full(_) => StoreError::Full(self.class),
            other => other,
        }))
    }

    /// In-process store: the embedded default for a single gateway process.
    pub fn memory() -> Self {
        Self::from_backend(Backend::Memory(Arc::new(MemoryStore::default())))
    }

    /// In-process store whose expiry follows `clock` (tests move time instead of sleeping).
    pub fn memory_with_clock(clock: crate::clock::Clock) -> Self {
        Self::from_backend(Backend::Memory(Arc::new(MemoryStore::with_clock(clock))))
    }

    /// In-process store that holds at most `capacity`.
    pub fn memory_bounded(clock: crate::clock::Clock, capacity: Capacity) -> Self {
        Self::from_backend(Backend::Memory(Arc::new(MemoryStore::bounded(clock, capacity))))
    }

    fn from_backend(backend: Backend) -> Self {
        StateStore { backend, class: Class::Authenticated, origin: None }
    }

    /// The same store, writing records of `class`.
    pub fn with_class(&self, class: Class) -> StateStore {
        StateStore { backend: self.backend.clone(), class, origin: self.origin }
    }

    /// The same store, attributing its anonymous writes to `origin` (instead of the origin of
    /// the request being served).
    pub fn for_origin(&self, origin: Option<Origin>) -> StateStore {
        StateStore { backend: self.backend.clone(), class: self.class, origin }
    }

    /// What the embedded store holds by class, `(anonymous, authenticated)`; None on Redis.
    pub fn memory_usage(&self) -> Option<(Usage, Usage)> {
        match &self.backend {
            Backend::Memory(m) => Some(m.usage()),
            Backend::Redis(_) => None,
        }
    }

    /// Connects to Redis; see [`RedisStore::connect`]. No anonymous budget (tools and tests
    /// that write by hand); the gateway opens its store with [`Self::open`].
    pub async fn redis(
        topology: &RedisTopology,
        prefix: &str,
        timeout: Duration,
    ) -> Result<Self, StoreError> {
        let store = RedisStore::connect(topology, prefix, timeout).await?;
        Ok(Self::from_backend(Backend::Redis(Arc::new(store))))
    }

    /// Connects to Redis with an anonymous budget of `anonymous_max_bytes` shared by every
    /// replica using the same key prefix (see [`RedisStore::admit_anonymous`]).
    pub async fn redis_bounded(
        topology: &RedisTopology,
        prefix: &str,
        timeout: Duration,
        anonymous_max_bytes: u64,
    ) -> Result<Self, StoreError> {
        let store = RedisStore::connect(topology, prefix, timeout)
            .await?
            .with_anonymous_budget(anonymous_max_bytes, AddressShares::NONE);
        Ok(Self::from_backend(Backend::Redis(Arc::new(store))))
    }

    /// Opens the store a [`StorePlan`] names (`[sessions]` makes one:
    /// `config::SessionSettings::store_plan`). The embedded store's expiry follows `clock`;
    /// Redis keeps its own time.
    pub async fn open(plan: StorePlan, clock: &crate::clock::Clock) -> Result<Self, StoreError> {
        match plan {
            StorePlan::Memory(capacity) => Ok(Self::memory_bounded(clock.clone(), capacity)),
            StorePlan::Redis { topology, key_prefix, timeout, anonymous_max_bytes, shares } => {
                let store = RedisStore::connect(&topology, &key_prefix, timeout)
                    .await?
                    .with_anonymous_budget(anonymous_max_bytes, shares);
                Ok(Self::from_backend(Backend::Redis(Arc::new(store))))
            }
        }
    }

    /// Whether state is shared between processes (admin commands need that).
    pub fn is_shared(&self) -> bool {
        matches!(self.backend, Backend::Redis(_))
    }

    /// How many unexpired records the in-process store holds (None on Redis, whose own
    /// `DBSIZE` counts every tenant of the server). Lets tests show that a refused request
    /// stored nothing.
    pub fn memory_entries(&self) -> Option<usize> {
        match &self.backend {
            Backend::Memory(m) => Some(m.live_entries()),
            Backend::Redis(_) => None,
        }
    }

    /// Whether the backend answers (for `/readyz`).
    pub async fn ping(&self) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Memory(_) => Ok(()),
            Backend::Redis(r) => self.note(r.ping().await),
        }
    }

    pub async fn put(&self, key: &str, value: Vec<u8>, ttl: Duration) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Memory(m) => self.note(m.put(self.writer(), key, value, ttl)),
            Backend::Redis(r) => {
                self.note(self.admit(r, &[(key, value.len())], ttl).await)?;
                self.note(r.put(key, value, ttl).await)
            }
        }
    }

    /// Stores only if the key is absent; true when this call stored it (replay guards).
    pub async fn put_new(&self, key: &str, value: Vec<u8>, ttl: Duration) -> Result<bool, StoreError> {
        match &self.backend {
            Backend::Memory(m) => self.note(m.put_new(self.writer(), key, value, ttl)),
            Backend::Redis(r) => {
                self.note(self.admit(r, &[(key, value.len())], ttl).await)?;
                self.note(r.put_new(key, value, ttl).await)
            }
        }
    }

    /// Whether any of `keys` is present (one round trip on Redis): e.g. the revocation
    /// markers of a token and of its grant.
    pub async fn exists_any(&self, keys: &[&str]) -> Result<bool, StoreError> {
        match &self.backend {
            Backend::Memory(m) => Ok(m.exists_any(keys)),
            Backend::Redis(r) => self.note(r.exists_any(keys).await),
        }
    }

    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match &self.backend {
            Backend::Memory(m) => Ok(m.get(key)),
            Backend::Redis(r) => self.note(r.get(key).await),
        }
    }

    /// Atomically reads and deletes: at most one caller ever gets the value.
    pub async fn take(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match &self.backend {
            Backend::Memory(m) => Ok(m.take(key)),
            Backend::Redis(r) => self.note(r.take(key).await),
        }
    }

    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Memory(m) => {
                m.delete(key);
                Ok(())
            }
            Backend::Redis(r) => self.note(r.delete(key).await),
        }
    }

    /// Resets the time to live of an existing key; false if it is gone. For authenticated
    /// records only (sessions): on Redis an anonymous record is counted until the expiry it
    /// was written with, so it must not be made to live longer.
    pub async fn touch(&self, key: &str, ttl: Duration) -> Result<bool, StoreError> {
        match &self.backend {
            Backend::Memory(m) => Ok(m.touch(key, ttl)),
            Backend::Redis(r) => self.note(r.touch(key, ttl).await),
        }
    }

    /// Adds a member to a set and (re)sets the set's time to live.
    pub async fn set_add(&self, key: &str, member: &str, ttl: Duration) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Memory(m) => self.note(m.set_add(self.writer(), key, member, ttl)),
            Backend::Redis(r) => {
                self.note(self.admit(r, &[(key, member.len())], ttl).await)?;
                self.note(r.set_add(key, member, ttl).await)
            }
        }
    }

    /// Atomically adds one to a counter and returns the new count. A counter that did not
    /// exist starts at 1 and lives for `ttl` from then (a fixed window; later increments do
    /// not extend it). For rate limits shared by every replica.
    pub async fn incr(&self, key: &str, ttl: Duration) -> Result<u64, StoreError> {
        match &self.backend {
            Backend::Memory(m) => self.note(m.incr_by(self.writer(), key, 1, ttl)),
            Backend::Redis(r) => {
                self.note(self.admit(r, &[(key, COUNTER_BYTES)], ttl).await)?;
                self.note(r.incr(key, ttl).await)
            }
        }
    }

    /// Atomically takes one back from a counter made by [`Self::incr`] (e.g. a reservation
    /// that turned out not to count). Never goes below zero, never creates the counter and
    /// keeps its time to live.
    pub async fn decr(&self, key: &str) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Memory(m) => {
                m.decr(key);
                Ok(())
            }
            Backend::Redis(r) => self.note(r.decr(key).await),
        }
    }

    /// Adds to each counter (key, amount), in one round trip on Redis, and returns the new
    /// counts in order. Each counter behaves as with [`StateStore::incr`]; the counters are
    /// not changed together atomically (they may live in different Cluster slots).
    pub async fn incr_each(&self, counters: &[(&str, u64)], ttl: Duration) -> Result<Vec<u64>, StoreError> {
        let keys: Vec<&str> = counters.iter().map(|(k, _)| *k).collect();
        self.incr_each_charging(counters, &keys, ttl).await
    }

    /// [`Self::incr_each`], counting against the anonymous budget (Redis) only the counters
    /// named in `new`: those the caller has not reported in their window yet. A counter that
    /// exists is already counted until its expiry; counting it at every report would charge
    /// one key many times and add a round trip to every report.
    pub async fn incr_each_charging(
        &self,
        counters: &[(&str, u64)],
        new: &[&str],
        ttl: Duration,
    ) -> Result<Vec<u64>, StoreError> {
        match &self.backend {
            Backend::Memory(m) => {
                self.note(counters.iter().map(|(k, by)| m.incr_by(self.writer(), k, *by, ttl)).collect())
            }
            Backend::Redis(r) => {
                if !new.is_empty() {
                    let sizes: Vec<(&str, usize)> = new.iter().map(|k| (*k, COUNTER_BYTES)).collect();
                    self.note(self.admit(r, &sizes, ttl).await)?;
                }
                self.note(r.incr_each(counters, ttl).await)
            }
        }
    }

    pub async fn set_remove(&self, key: &str, member: &str) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Memory(m) => {
                m.set_remove(key, member);
                Ok(())
            }
            Backend::Redis(r) => self.note(r.set_remove(key, member).await),
        }
    }

    pub async fn set_members(&self, key: &str) -> Result<Vec<String>, StoreError> {
        match &self.backend {
            Backend::Memory(m) => Ok(m.set_members(key)),
            Backend::Redis(r) => self.note(r.set_members(key).await),
        }
    }

    /// Sets fields of a hash (creating it if needed) and sets the hash's time to live to
    /// `ttl`. Small hashes are the compact encoding in Redis (listpack) where sets are not.
    pub async fn hash_set(
        &self,
        key: &str,
        fields: &[(&str, &[u8])],
        ttl: Duration,
    ) -> Result<(), StoreError> {
        if fields.is_empty() {
            return Ok(());
        }
        match &self.backend {
            Backend::Memory(m) => self.note(m.hash_set(self.writer(), key, fields, ttl)),
            Backend::Redis(r) => {
                let bytes = fields.iter().map(|(f, v)| f.len() + v.len() + HASH_FIELD_BYTES).sum();
                self.note(self.admit(r, &[(key, bytes)], ttl).await)?;
                self.note(r.hash_set(key, fields, ttl).await)
            }
        }
    }

    /// Sets one field of a hash only if the hash exists, keeping its time to live; false if
    /// it does not (an expired or deleted hash is never brought back). Authenticated records
    /// only: an anonymous one must be written whole with [`Self::hash_set`], which counts it.
    pub async fn hash_set_existing(&self, key: &str, field: &str, value: &[u8]) -> Result<bool, StoreError> {
        match &self.backend {
            Backend::Memory(m) => self.note(m.hash_set_existing(key, field, value)),
            Backend::Redis(r) => self.note(r.hash_set_existing(key, field, value).await),
        }
    }

    /// The named fields of a hash that exist (none if there is no such hash); the other
    /// fields, however many, are not read.
    pub async fn hash_get(&self, key: &str, fields: &[&str]) -> Result<HashMap<String, Vec<u8>>, StoreError> {
        if fields.is_empty() {
            return Ok(HashMap::new());
        }
        match &self.backend {
            Backend::Memory(m) => Ok(m.hash_get(key, fields)),
            Backend::Redis(r) => self.note(r.hash_get(key, fields).await),
        }
    }

    /// The field names of a hash.
    pub async fn hash_keys(&self, key: &str) -> Result<Vec<String>, StoreError> {
        match &self.backend {
            Backend::Memory(m) => Ok(m.hash_keys(key)),
            Backend::Redis(r) => self.note(r.hash_keys(key).await),
        }
    }

    pub async fn hash_contains(&self, key: &str, field: &str) -> Result<bool, StoreError> {
        match &self.backend {
            Backend::Memory(m) => Ok(m.hash_contains(key, field)),
            Backend::Redis(r) => self.note(r.hash_contains(key, field).await),
        }
    }

    /// Removes one field; a hash left empty disappears.
    pub async fn hash_remove(&self, key: &str, field: &str) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Memory(m) => {
                m.hash_remove(key, field);
                Ok(())
            }
            Backend::Redis(r) => self.note(r.hash_remove(key, field).await),
        }
    }

    /// Atomically reads every field of a hash and deletes it: at most one caller gets them.
    pub async fn hash_take(&self, key: &str) -> Result<HashMap<String, Vec<u8>>, StoreError> {
        match &self.backend {
            Backend::Memory(m) => Ok(m.hash_take(key)),
            Backend::Redis(r) => self.note(r.hash_take(key).await),
        }
    }

    pub async fn put_json<T: Serialize>(
        &self,
        key: &str,
        value: &T,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        self.put(key, serde_json::to_vec(value)?, ttl).await
    }

    pub async fn get_json<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StoreError> {
        match self.get(key).await? {
            Some(bytes) => Ok(Some(serde_json::from_slice(&bytes)?)),
            None => Ok(None),
        }
    }

    pub async fn take_json<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StoreError> {
        match self.take(key).await? {
            Some(bytes) => Ok(Some(serde_json::from_slice(&bytes)?)),
            None => Ok(None),
        }
    }
}

/// Value bytes counted for a counter (its decimal number) on Redis.
const COUNTER_BYTES: usize = 16;
/// Bytes counted for one field of a hash on Redis beyond its name and value.
const HASH_FIELD_BYTES: usize = 16;

/// A store key for a secret handle (code, token, session id): only its SHA-256 is stored,
/// so a dump of the store does not hand out live credentials.
pub fn hashed_key(namespace: &str, secret: &str) -> String {
    use base64::Engine;
    use sha2::Digest;
    let digest = sha2::Sha256::digest(secret.as_bytes());
    format!("{namespace}:{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest))
}

/// A fresh 256-bit random handle, base64url (43 characters): what a secret carries (codes,
/// tokens, cookie secrets, store handles).
pub fn random_handle() -> String {
    random_token::<32>()
}

/// The gateway's one random-id generator: `BYTES` bytes from the operating system's
/// generator, base64url without padding. Use [`random_handle`] unless a shorter id is
/// enough (the session id: 16 bytes).
pub fn random_token<const BYTES: usize>() -> String {
    use base64::Engine;
    use rand::RngCore;
    let mut bytes = [0u8; BYTES];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn take_returns_a_value_exactly_once_under_concurrency() {
        let store = StateStore::memory();
        store.put("code:x", b"v".to_vec(), Duration::from_secs(60)).await.unwrap();
        let mut tasks = Vec::new();
        for _ in 0..32 {
            let s = store.clone();
            tasks.push(tokio::spawn(async move { s.take("code:x").await.unwrap().is_some() }));
        }
        let mut wins = 0;
        for t in tasks {
            if t.await.unwrap() {
                wins += 1;
            }
        }
        assert_eq!(wins, 1);
    }

    #[tokio::test]
    async fn entries_expire_after_their_ttl() {
        let store = StateStore::memory();
        store.put("k", b"v".to_vec(), Duration::from_millis(30)).await.unwrap();
        store.set_add("s", "a", Duration::from_millis(30)).await.unwrap();
        assert!(store.get("k").await.unwrap().is_some());
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert!(store.get("k").await.unwrap().is_none());
        assert!(store.set_members("s").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn put_new_refuses_an_existing_key() {
        let store = StateStore::memory();
        assert!(store.put_new("jti:1", vec![], Duration::from_secs(5)).await.unwrap());
        assert!(!store.put_new("jti:1", vec![], Duration::from_secs(5)).await.unwrap());
    }

    #[tokio::test]
    async fn counters_count_within_their_window_then_start_again() {
        let store = StateStore::memory();
        assert_eq!(store.incr("fail:a", Duration::from_millis(40)).await.unwrap(), 1);
        assert_eq!(store.incr("fail:a", Duration::from_millis(40)).await.unwrap(), 2);
        assert_eq!(store.incr("fail:b", Duration::from_millis(40)).await.unwrap(), 1);
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(store.incr("fail:a", Duration::from_millis(40)).await.unwrap(), 1);
    }

    /// `decr` gives back what `incr` counted; it never creates a counter, never goes below
    /// zero and leaves the window alone.
    async fn decr_gives_a_count_back(store: StateStore) {
        let window = Duration::from_millis(300);
        store.decr("n:none").await.unwrap();
        assert_eq!(store.get("n:none").await.unwrap(), None, "no counter is created");
        assert_eq!(store.incr("n:a", window).await.unwrap(), 1);
        assert_eq!(store.incr("n:a", window).await.unwrap(), 2);
        store.decr("n:a").await.unwrap();
        assert_eq!(store.incr("n:a", window).await.unwrap(), 2);
        for _ in 0..3 {
            store.decr("n:a").await.unwrap();
        }
        assert_eq!(store.incr("n:a", window).await.unwrap(), 1, "never below zero");
        tokio::time::sleep(Duration::from_millis(450)).await;
        store.decr("n:a").await.unwrap();
        assert_eq!(store.get("n:a").await.unwrap(), None, "the window still ends: not revived");
    }

    #[tokio::test]
    async fn memory_decr_gives_a_count_back() {
        decr_gives_a_count_back(StateStore::memory()).await;
    }

    #[tokio::test]
    async fn redis_decr_gives_a_count_back() {
        decr_gives_a_count_back(test_redis().await).await;
    }

    /// The hash contract every backend must keep (the session layout relies on it).
    async fn hashes_behave_alike(store: StateStore) {
        let ttl = Duration::from_secs(60);
        let every = ["a", "b", "c:portal", "late"];
        assert!(store.hash_get("h", &every).await.unwrap().is_empty());
        assert!(!store.hash_set_existing("h", "late", b"x").await.unwrap(), "no hash, nothing set");
        assert!(store.hash_keys("h").await.unwrap().is_empty(), "a missing hash is not created");

        store.hash_set("h", &[("a", b"1"), ("b", b"")], ttl).await.unwrap();
        assert!(store.hash_set_existing("h", "c:portal", b"").await.unwrap());
        let all = store.hash_get("h", &every).await.unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!(all.get("a").map(Vec::as_slice), Some(&b"1"[..]));
        assert_eq!(all.get("b").map(Vec::as_slice), Some(&b""[..]));
        let some = store.hash_get("h", &["b", "zz"]).await.unwrap();
        assert_eq!(some.len(), 1, "only the fields asked for, and only those that exist");
        assert!(some.contains_key("b"));
        let mut keys = store.hash_keys("h").await.unwrap();
        keys.sort();
        assert_eq!(keys, ["a", "b", "c:portal"]);
        assert!(store.hash_contains("h", "a").await.unwrap());
        assert!(!store.hash_contains("h", "zz").await.unwrap());

        store.hash_remove("h", "a").await.unwrap();
        assert!(!store.hash_contains("h", "a").await.unwrap());
        let taken = store.hash_take("h").await.unwrap();
        assert_eq!(taken.len(), 2);
        assert!(store.hash_take("h").await.unwrap().is_empty(), "taken once");
        assert!(!store.hash_set_existing("h", "c:late", b"").await.unwrap(), "a taken hash stays gone");

        store.hash_set("idx", &[("only", b"")], ttl).await.unwrap();
        store.hash_remove("idx", "only").await.unwrap();
        assert!(!store.hash_set_existing("idx", "x", b"").await.unwrap(), "an emptied hash is gone");

        // Time to live: hash_set (re)sets it, touch slides it, expiry removes every field.
        let short = Duration::from_millis(150);
        store.hash_set("e", &[("a", b"1")], short).await.unwrap();
        assert!(store.hash_set_existing("e", "b", b"2").await.unwrap());
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(store.touch("e", short).await.unwrap());
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(store.hash_get("e", &["a", "b"]).await.unwrap().len(), 2, "touch extended the hash");
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert!(store.hash_get("e", &["a", "b"]).await.unwrap().is_empty());
        assert!(!store.hash_set_existing("e", "c", b"").await.unwrap(), "an expired hash is not revived");
    }

    #[tokio::test]
    async fn memory_hashes_keep_the_hash_contract() {
        hashes_behave_alike(StateStore::memory()).await;
    }

    /// The test Redis (a private server, or `SSO_TEST_REDIS_URL`) under a key prefix of
    /// this test's own.
    async fn test_redis() -> StateStore {
        let url = sso_test_services::redis_url();
        let prefix = format!("test-{}:", random_handle());
        StateStore::redis(&RedisTopology::Single(url), &prefix, Duration::from_secs(2)).await.unwrap()
    }

    #[tokio::test]
    async fn redis_hashes_keep_the_hash_contract() {
        hashes_behave_alike(test_redis().await).await;
    }

    /// Revocation checks ask for two markers at once; either one present counts.
    async fn exists_any_finds_any_live_key(store: StateStore) {
        assert!(!store.exists_any(&["revoked:a", "revoked:b"]).await.unwrap());
        store.put("revoked:b", Vec::new(), Duration::from_millis(150)).await.unwrap();
        assert!(store.exists_any(&["revoked:a", "revoked:b"]).await.unwrap());
        assert!(!store.exists_any(&["revoked:a"]).await.unwrap());
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!store.exists_any(&["revoked:a", "revoked:b"]).await.unwrap(), "expired keys do not count");
    }

    /// Rate limits count several keys at once; each behaves as its own counter.
    async fn incr_each_counts_every_key(store: StateStore) {
        let ttl = Duration::from_millis(300);
        assert_eq!(store.incr_each(&[("rl:a", 1), ("rl:b", 1)], ttl).await.unwrap(), [1, 1]);
        assert_eq!(store.incr_each(&[("rl:a", 1)], ttl).await.unwrap(), [2]);
        assert_eq!(store.incr_each(&[("rl:b", 5), ("rl:a", 1)], ttl).await.unwrap(), [6, 3]);
        assert_eq!(store.incr("rl:a", ttl).await.unwrap(), 4, "the same counters as incr");
        assert!(store.incr_each(&[], ttl).await.unwrap().is_empty());
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(
            store.incr_each(&[("rl:a", 2), ("rl:b", 1)], ttl).await.unwrap(),
            [2, 1],
            "counters expire"
        );
    }

    #[tokio::test]
    async fn memory_incr_each_counts_every_key() {
        incr_each_counts_every_key(StateStore::memory()).await;
    }

    #[tokio::test]
    async fn redis_incr_each_counts_every_key() {
        incr_each_counts_every_key(test_redis().await).await;
    }

    #[tokio::test]
    async fn memory_exists_any_finds_any_live_key() {
        exists_any_finds_any_live_key(StateStore::memory()).await;
    }

    #[tokio::test]
    async fn redis_exists_any_finds_any_live_key() {
        exists_any_finds_any_live_key(test_redis().await).await;
    }

    #[tokio::test]
    async fn the_embedded_store_expires_entries_by_the_injected_clock() {
        let clock = crate::clock::Clock::system();
        let store = StateStore::memory_with_clock(clock.clone());
        store.put("k", b"v".to_vec(), Duration::from_secs(3600)).await.unwrap();
        store.hash_set("h", &[("a", b"1")], Duration::from_secs(3600)).await.unwrap();
        clock.advance(3599);
        assert!(store.get("k").await.unwrap().is_some());
        assert!(store.hash_contains("h", "a").await.unwrap());
        clock.advance(2);
        assert!(store.get("k").await.unwrap().is_none());
        assert!(!store.hash_contains("h", "a").await.unwrap());
    }

    #[tokio::test]
    async fn concurrent_hash_takes_get_the_fields_once() {
        let store = StateStore::memory();
        store.hash_set("s", &[("g:1", b"")], Duration::from_secs(60)).await.unwrap();
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let s = store.clone();
            tasks.push(tokio::spawn(async move { !s.hash_take("s").await.unwrap().is_empty() }));
        }
        let mut wins = 0;
        for t in tasks {
            if t.await.unwrap() {
                wins += 1;
            }
        }
        assert_eq!(wins, 1);
    }

    /// On Redis, anonymous writes are counted against a budget shared by every handle (and
    /// replica) on the key prefix: beyond it they are refused, authenticated writes never
    /// are, and a record that expired gives its room back.
    #[tokio::test]
    async fn redis_anonymous_writes_stop_at_the_budget_and_resume_as_records_expire() {
        let url = sso_test_services::redis_url();
        let prefix = format!("test-{}:", random_handle());
        let connect = || async {
            let store =
                RedisStore::connect(&RedisTopology::Single(url.clone()), &prefix, Duration::from_secs(2))
                    .await
                    .unwrap()
                    .with_anonymous_budget(16 * 1024, AddressShares::NONE)
                    .with_budget_bucket(Duration::from_millis(100));
            StateStore::from_backend(Backend::Redis(Arc::new(store))).with_class(Class::Anonymous)
        };
        // Two replicas of one gateway share the budget.
        let (a, b) = (connect().await, connect().await);
        let ttl = Duration::from_millis(600);
        let mut accepted = 0;
        for i in 0..40 {
            let replica = if i % 2 == 0 { &a } else { &b };
            match replica.put(&format!("authreq:{i:02}"), vec![b'x'; 1000], ttl).await {
                Ok(()) => accepted += 1,
                Err(StoreError::Full(Class::Anonymous)) => {}
                Err(e) => panic!("{e}"),
            }
        }
        // Each is counted as its key, its 1 000 bytes and the per-record overhead.
        let each = 1000 + prefix.len() + "authreq:10".len() + super::redis::REDIS_RECORD_OVERHEAD;
        assert_eq!(accepted, 16 * 1024 / each, "as many as fit in the budget, no more");
        let refused = a.put_new("marker", vec![b'x'; 1000], ttl).await;
        assert!(matches!(refused, Err(StoreError::Full(Class::Anonymous))), "{refused:?}");
        let refused = b.hash_set("attempt:y", &[("f", &[b'x'; 4000][..])], ttl).await;
        assert!(matches!(refused, Err(StoreError::Full(Class::Anonymous))), "{refused:?}");
        assert_eq!(a.get("marker").await.unwrap(), None, "a refused write stores nothing");

        // Authenticated writes are never counted nor refused.
        let authenticated = a.with_class(Class::Authenticated);
        for i in 0..40 {
            authenticated.put(&format!("code:{i}"), vec![b'x'; 1000], ttl).await.unwrap();
        }
        authenticated.hash_set("session:x", &[("a", &[b'x'; 4096][..])], ttl).await.unwrap();

        // The records expire on their own in Redis; the budget follows.
        tokio::time::sleep(ttl + Duration::from_millis(300)).await;
        assert_eq!(a.get("authreq:0").await.unwrap(), None);
        a.put("authreq:again", vec![b'x'; 1000], ttl).await.unwrap();
        b.hash_set("attempt:x", &[("f", b"v")], ttl).await.unwrap();
    }

    /// On Redis, each address holds at most its share of the budget, and the reserve is left
    /// to addresses holding little: after many addresses flooded, a fresh one still gets in,
    /// the flooding ones and unattributed writes do not, on any replica.
    #[tokio::test]
    async fn redis_addresses_hold_their_share_and_leave_the_reserve_to_fresh_ones() {
        let url = sso_test_services::redis_url();
        let prefix = format!("test-{}:", random_handle());
        let shares =
            AddressShares { per_address: 16 * 1024, reserve_percent: 50, reserve_per_address: 4 * 1024 };
        let connect = || async {
            let store =
                RedisStore::connect(&RedisTopology::Single(url.clone()), &prefix, Duration::from_secs(2))
                    .await
                    .unwrap()
                    .with_anonymous_budget(64 * 1024, shares);
            StateStore::from_backend(Backend::Redis(Arc::new(store))).with_class(Class::Anonymous)
        };
        let (a, b) = (connect().await, connect().await);
        let from = |n: u8| Some(Origin::of([198, 51, 100, n].into()));
        let ttl = Duration::from_secs(60);
        let mut accepted = Vec::new();
        for n in 1..=8u8 {
            let mut count = 0;
            for i in 0..20 {
                let replica = if i % 2 == 0 { &a } else { &b };
                match replica
                    .for_origin(from(n))
                    .put(&format!("authreq:{n}:{i:02}"), vec![b'x'; 1000], ttl)
                    .await
                {
                    Ok(()) => count += 1,
                    Err(StoreError::Full(Class::Anonymous)) => {}
                    Err(e) => panic!("{e}"),
                }
            }
            accepted.push(count);
        }
        assert!((8..=13).contains(&accepted[0]), "one address holds at most 16 KiB: {accepted:?}");
        assert!(accepted.iter().all(|n| *n < 20), "every address was refused: {accepted:?}");
        let total: usize = accepted.iter().sum();
        assert!(total * 1000 < 56 * 1024, "the reserve was not taken: {accepted:?}");
        // A fresh address gets in, through either replica; the flooding ones do not.
        a.for_origin(from(9)).put("authreq:fresh", vec![b'x'; 1000], ttl).await.unwrap();
        b.for_origin(from(9)).put("attempt:fresh", vec![b'x'; 500], ttl).await.unwrap();
        let refused = b.for_origin(from(1)).put("authreq:again", vec![b'x'; 100], ttl).await;
        assert!(matches!(refused, Err(StoreError::Full(Class::Anonymous))), "{refused:?}");
        let refused = a.put("authreq:unattributed", vec![b'x'; 100], ttl).await;
        assert!(matches!(refused, Err(StoreError::Full(Class::Anonymous))), "{refused:?}");
        // The request's origin is used when the handle names none.
        let fresh = attributed(from(10), a.put("authreq:scoped", vec![b'x'; 1000], ttl)).await;
        fresh.unwrap();
    }

    /// A Redis at `maxmemory` under `noeviction` (the shipped deploy configuration) refusing
    /// writes is the store being full, for the class of the handle that wrote, not an outage.
    #[tokio::test]
    async fn redis_out_of_memory_is_a_typed_refusal() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let dir = tempfile::tempdir().unwrap();
        let mut server = std::process::Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string(), "--save", "", "--appendonly", "no"])
            .args(["--maxmemory", "3mb", "--maxmemory-policy", "noeviction"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server (apt-get install redis-server)");
        let url = format!("redis://127.0.0.1:{port}");
        let mut store = None;
        for _ in 0..100 {
            if let Ok(s) =
                StateStore::redis(&RedisTopology::Single(url.clone()), "oom:", Duration::from_secs(2)).await
            {
                store = Some(s);
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let store = store.unwrap().with_class(Class::Anonymous);
        let ttl = Duration::from_secs(600);
        let mut refused = None;
        for i in 0..10_000 {
            if let Err(e) = store.put(&format!("authreq:{i}"), vec![b'x'; 4096], ttl).await {
                refused = Some(e);
                break;
            }
        }
        assert!(matches!(refused, Some(StoreError::Full(Class::Anonymous))), "{refused:?}");
        // Every kind of write, single commands, transactions and pipelines alike.
        let authenticated = store.with_class(Class::Authenticated);
        let results = [
            authenticated.put("code:x", vec![b'x'; 4096], ttl).await.err(),
            authenticated.hash_set("session:x", &[("a", &[b'x'; 4096][..])], ttl).await.err(),
            authenticated.set_add("set:x", &"m".repeat(4096), ttl).await.err(),
            authenticated.incr_each(&[("n:x", 1)], ttl).await.err(),
        ];
        for r in results {
            assert!(matches!(r, Some(StoreError::Full(Class::Authenticated))), "{r:?}");
        }
        // Reads still work.
        assert!(store.get("authreq:0").await.unwrap().is_some());
        let _ = server.kill();
        let _ = server.wait();
    }

    #[test]
    fn hashed_keys_do_not_contain_the_secret() {
        let k = hashed_key("code", "supersecretcode");
        assert!(k.starts_with("code:"));
        assert!(!k.contains("supersecret"));
        assert_ne!(random_handle(), random_handle());
    }

    #[test]
    fn random_tokens_are_base64url_of_the_asked_length() {
        let url_safe = |s: &str| s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        let (handle, short) = (random_handle(), random_token::<16>());
        assert_eq!((handle.len(), short.len()), (43, 22));
        assert!(url_safe(&handle) && url_safe(&short), "{handle} {short}");
        assert_ne!(random_token::<16>(), short);
    }
}
