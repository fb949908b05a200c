//! In-process backend of the state store (embedded default, one gateway process).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::clock::Clock;

/// Values are stored exactly sized (`Box<[u8]>`, not a `Vec` with spare capacity) and the
/// collections boxed, so that an entry of the map stays small: with hundreds of thousands of
/// codes and refresh tokens alive, the map itself is most of the gateway's memory.
#[allow(clippy::box_collection, reason = "a boxed collection keeps every map entry small")]
enum Value {
    Bytes(Box<[u8]>),
    Set(Box<HashSet<String>>),
    Hash(Box<HashMap<String, Vec<u8>>>),
}

struct Entry {
    value: Value,
    expires_at: Instant,
}

/// A map with per-key expiry; expired entries are invisible and swept periodically. Expiry
/// follows the injected clock (a test that moves the clock forward sees entries expire).
#[derive(Default)]
pub struct MemoryStore {
    map: Mutex<Inner>,
    clock: Clock,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<Box<str>, Entry>,
    writes_since_sweep: usize,
}

impl Inner {
    fn live(&mut self, key: &str, now: Instant) -> Option<&mut Entry> {
        let expired = self.entries.get(key).is_some_and(|e| e.expires_at <= now);
        if expired {
            self.entries.remove(key);
        }
        self.entries.get_mut(key)
    }

    fn insert(&mut self, key: &str, entry: Entry, now: Instant) {
        self.writes_since_sweep += 1;
        if self.writes_since_sweep >= 1024 && self.writes_since_sweep >= self.entries.len() / 2 {
            self.entries.retain(|_, e| e.expires_at > now);
            self.writes_since_sweep = 0;
        }
        self.entries.insert(key.into(), entry);
    }
}

impl MemoryStore {
    pub fn with_clock(clock: Clock) -> Self {
        MemoryStore { map: Mutex::default(), clock }
    }

    /// The monotonic clock moved by the injected clock's offset.
    fn now(&self) -> Instant {
        let offset = self.clock.offset_secs();
        let now = Instant::now();
        if offset >= 0 {
            now.checked_add(Duration::from_secs(offset as u64)).unwrap_or(now)
        } else {
            now.checked_sub(Duration::from_secs(offset.unsigned_abs())).unwrap_or(now)
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave a map half-written; keep serving.
        self.map.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// How many unexpired entries the store holds.
    pub fn live_entries(&self) -> usize {
        let now = Instant::now();
        self.lock().entries.values().filter(|e| e.expires_at > now).count()
    }

    pub fn put(&self, key: &str, value: Vec<u8>, ttl: Duration) {
        let now = self.now();
        let entry = Entry { value: Value::Bytes(value.into_boxed_slice()), expires_at: now + ttl };
        self.lock().insert(key, entry, now);
    }

    pub fn put_new(&self, key: &str, value: Vec<u8>, ttl: Duration) -> bool {
        let now = self.now();
        let mut inner = self.lock();
        if inner.live(key, now).is_some() {
            return false;
        }
        inner.insert(
            key,
            Entry { value: Value::Bytes(value.into_boxed_slice()), expires_at: now + ttl },
            now,
        );
        true
    }

    pub fn exists_any(&self, keys: &[&str]) -> bool {
        let now = self.now();
        let mut inner = self.lock();
        keys.iter().any(|k| inner.live(k, now).is_some())
    }

    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        match self.lock().live(key, self.now()) {
            Some(Entry { value: Value::Bytes(b), .. }) => Some(b.to_vec()),
            _ => None,
        }
    }

    pub fn take(&self, key: &str) -> Option<Vec<u8>> {
        let now = self.now();
        let mut inner = self.lock();
        inner.live(key, now)?;
        match inner.entries.remove(key) {
            Some(Entry { value: Value::Bytes(b), .. }) => Some(b.into_vec()),
            _ => None,
        }
    }

    pub fn delete(&self, key: &str) {
        self.lock().entries.remove(key);
    }

    pub fn touch(&self, key: &str, ttl: Duration) -> bool {
        let now = self.now();
        match self.lock().live(key, now) {
            Some(e) => {
                e.expires_at = now + ttl;
                true
            }
            None => false,
        }
    }

    pub fn set_add(&self, key: &str, member: &str, ttl: Duration) {
        let now = self.now();
        let mut inner = self.lock();
        if let Some(Entry { value: Value::Set(s), expires_at }) = inner.live(key, now) {
            s.insert(member.to_string());
            *expires_at = (*expires_at).max(now + ttl);
            return;
        }
        let set = Box::new(HashSet::from([member.to_string()]));
        inner.insert(key, Entry { value: Value::Set(set), expires_at: now + ttl }, now);
    }

    /// Adds one to a counter; a new counter lives for `ttl` (a fixed window).
    pub fn incr(&self, key: &str, ttl: Duration) -> u64 {
        self.incr_by(key, 1, ttl)
    }

    /// Adds `by` to a counter; a new counter lives for `ttl` (a fixed window).
    pub fn incr_by(&self, key: &str, by: u64, ttl: Duration) -> u64 {
        let now = self.now();
        let mut inner = self.lock();
        let current = match inner.live(key, now) {
            Some(Entry { value: Value::Bytes(b), .. }) => {
                std::str::from_utf8(b).ok().and_then(|s| s.parse::<u64>().ok()).unwrap_or(0)
            }
            _ => 0,
        };
        let next = current.saturating_add(by);
        match inner.live(key, now) {
            Some(e) if current > 0 => e.value = Value::Bytes(next.to_string().into_bytes().into()),
            _ => inner.insert(
                key,
                Entry { value: Value::Bytes(next.to_string().into_bytes().into()), expires_at: now + ttl },
                now,
            ),
        }
        next
    }

    pub fn decr(&self, key: &str) {
        let mut inner = self.lock();
        if let Some(Entry { value: Value::Bytes(b), .. }) = inner.live(key, Instant::now()) {
            let current = std::str::from_utf8(b).ok().and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
            if current > 0 {
                *b = (current - 1).to_string().into_bytes().into();
            }
        }
    }

    pub fn set_remove(&self, key: &str, member: &str) {
        if let Some(Entry { value: Value::Set(s), .. }) = self.lock().live(key, self.now()) {
            s.remove(member);
        }
    }

    pub fn set_members(&self, key: &str) -> Vec<String> {
        match self.lock().live(key, self.now()) {
            Some(Entry { value: Value::Set(s), .. }) => s.iter().cloned().collect(),
            _ => Vec::new(),
        }
    }

    /// Sets the fields (creating the hash if needed) and sets its time to live to `ttl`.
    pub fn hash_set(&self, key: &str, fields: &[(&str, &[u8])], ttl: Duration) {
        let now = self.now();
        let mut inner = self.lock();
        if let Some(Entry { value: Value::Hash(h), expires_at }) = inner.live(key, now) {
            for (f, v) in fields {
                h.insert((*f).to_string(), v.to_vec());
            }
            *expires_at = now + ttl;
            return;
        }
        let hash = Box::new(fields.iter().map(|(f, v)| ((*f).to_string(), v.to_vec())).collect());
        inner.insert(key, Entry { value: Value::Hash(hash), expires_at: now + ttl }, now);
    }

    /// Sets one field of an existing hash, keeping its time to live; false if there is none.
    pub fn hash_set_existing(&self, key: &str, field: &str, value: &[u8]) -> bool {
        match self.lock().live(key, self.now()) {
            Some(Entry { value: Value::Hash(h), .. }) => {
                h.insert(field.to_string(), value.to_vec());
                true
            }
            _ => false,
        }
    }

    pub fn hash_get(&self, key: &str, fields: &[&str]) -> HashMap<String, Vec<u8>> {
        match self.lock().live(key, self.now()) {
            Some(Entry { value: Value::Hash(h), .. }) => {
                fields.iter().filter_map(|f| h.get(*f).map(|v| ((*f).to_string(), v.clone()))).collect()
            }
            _ => HashMap::new(),
        }
    }

    pub fn hash_keys(&self, key: &str) -> Vec<String> {
        match self.lock().live(key, self.now()) {
            Some(Entry { value: Value::Hash(h), .. }) => h.keys().cloned().collect(),
            _ => Vec::new(),
        }
    }

    pub fn hash_contains(&self, key: &str, field: &str) -> bool {
        match self.lock().live(key, self.now()) {
            Some(Entry { value: Value::Hash(h), .. }) => h.contains_key(field),
            _ => false,
        }
    }

    /// Removes one field; a hash left without fields is deleted (as Redis does).
    pub fn hash_remove(&self, key: &str, field: &str) {
        let mut inner = self.lock();
        let now_empty = match inner.live(key, self.now()) {
            Some(Entry { value: Value::Hash(h), .. }) => {
                h.remove(field);
                h.is_empty()
            }
            _ => false,
        };
        if now_empty {
            inner.entries.remove(key);
        }
    }

    /// Atomically reads every field and deletes the hash.
    pub fn hash_take(&self, key: &str) -> HashMap<String, Vec<u8>> {
        let now = self.now();
        let mut inner = self.lock();
        if !matches!(inner.live(key, now), Some(Entry { value: Value::Hash(_), .. })) {
            return HashMap::new();
        }
        match inner.entries.remove(key) {
            Some(Entry { value: Value::Hash(h), .. }) => *h,
            _ => HashMap::new(),
        }
    }
}
