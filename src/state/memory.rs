//! In-process backend of the state store (embedded default, one gateway process).
//!
//! Bounded: it holds at most [`Capacity::max_entries`] entries and about
//! [`Capacity::max_bytes`] bytes, and records written for anonymous requests
//! ([`Class::Anonymous`]) may use only their share of both. A write that does not fit is
//! refused with [`StoreError::Full`]; nothing is ever evicted to make room, so a live session,
//! code or refresh family never disappears before its time.
//!
//! Within the anonymous share, each client address ([`Origin`]) may hold only its part
//! ([`AddressShares`]); the bytes each address holds are kept in a map with one entry per
//! address that holds a live record, each counted as [`ORIGIN_OVERHEAD`] bytes more in the
//! records it holds, so the bookkeeping is inside the share too.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{AddressShares, Class, Origin, StoreError, Writer};
use crate::clock::Clock;

/// How much the embedded store may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacity {
    /// Entries of every class together.
    pub max_entries: usize,
    /// Estimated bytes of every class together (keys, values and bookkeeping, see
    /// [`ENTRY_OVERHEAD`]).
    pub max_bytes: usize,
    /// The share (percent) of both limits that anonymous records may use.
    pub anonymous_percent: u8,
    /// How that share is divided between client addresses.
    pub shares: AddressShares,
}

impl Capacity {
    /// No limit (tests and tools that build a store by hand).
    pub const UNBOUNDED: Capacity = Capacity {
        max_entries: usize::MAX,
        max_bytes: usize::MAX,
        anonymous_percent: 100,
        shares: AddressShares::NONE,
    };

    fn limits(&self, class: Class) -> Usage {
        match class {
            Class::Authenticated => Usage { entries: self.max_entries, bytes: self.max_bytes },
            Class::Anonymous => {
                let share = |n: usize| {
                    let pct = usize::from(self.anonymous_percent.min(100));
                    if n == usize::MAX { n } else { (n / 100).saturating_mul(pct) + n % 100 * pct / 100 }
                };
                Usage { entries: share(self.max_entries), bytes: share(self.max_bytes) }
            }
        }
    }

    /// What anonymous records may use in all for a write from an address that would then
    /// hold `held` bytes (None: not attributed); None if the address is over its share. The
    /// reserve applies to entries and bytes alike.
    fn anonymous_room(&self, held: Option<usize>) -> Option<Usage> {
        let share = self.limits(Class::Anonymous);
        let to_u64 = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
        let held = held.map(to_u64);
        let bytes = self.shares.room_for(to_u64(share.bytes), held)?;
        let entries = if bytes == to_u64(share.bytes) {
            share.entries
        } else {
            usize::try_from(self.shares.general(to_u64(share.entries))).unwrap_or(usize::MAX)
        };
        Some(Usage { entries, bytes: usize::try_from(bytes).unwrap_or(usize::MAX) })
    }
}

impl Default for Capacity {
    fn default() -> Self {
        Capacity::UNBOUNDED
    }
}

/// Bytes counted for an entry beyond its key and value: the map slot, the entry, the boxed
/// key and value allocations. An estimate (the allocator rounds up), on the generous side.
pub const ENTRY_OVERHEAD: usize = 96;
/// Bytes counted for one field of a hash or member of a set beyond its text.
pub const FIELD_OVERHEAD: usize = 48;
/// Bytes counted for an anonymous record attributed to an address beyond its own size: its
/// part of the per-address bookkeeping (one map slot per address holding records).
pub const ORIGIN_OVERHEAD: usize = 64;

/// Values are stored exactly sized (`Box<[u8]>`, not a `Vec` with spare capacity) and the
/// collections boxed, so that an entry of the map stays small: with hundreds of thousands of
/// codes and refresh tokens alive, the map itself is most of the gateway's memory.
#[allow(clippy::box_collection, reason = "a boxed collection keeps every map entry small")]
#[derive(Clone)]
enum Value {
    Bytes(Box<[u8]>),
    Set(Box<HashSet<String>>),
    Hash(Box<HashMap<String, Vec<u8>>>),
}

impl Value {
    fn bytes(v: Vec<u8>) -> Self {
        Value::Bytes(v.into_boxed_slice())
    }

    /// The counted size of an entry with this value under `key`.
    fn size(&self, key: &str) -> usize {
        let value = match self {
            Value::Bytes(b) => b.len(),
            Value::Set(s) => s.iter().map(|m| m.len() + FIELD_OVERHEAD).sum(),
            Value::Hash(h) => h.iter().map(|(f, v)| f.len() + v.len() + FIELD_OVERHEAD).sum(),
        };
        ENTRY_OVERHEAD + key.len() + value
    }
}

#[derive(Clone)]
struct Entry {
    value: Value,
    expires_at: Instant,
    class: Class,
    /// The address an anonymous record is attributed to.
    origin: Option<Origin>,
    /// [`Entry::counted`] when it was last stored.
    size: usize,
}

impl Entry {
    /// The counted size of this entry under `key`.
    fn counted(&self, key: &str) -> usize {
        self.value.size(key) + if self.origin.is_some() { ORIGIN_OVERHEAD } else { 0 }
    }
}

/// Entries and bytes held by one class.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub entries: usize,
    pub bytes: usize,
}

/// A map with per-key expiry; expired entries are invisible and swept periodically. Expiry
/// follows the injected clock (a test that moves the clock forward sees entries expire).
#[derive(Default)]
pub struct MemoryStore {
    map: Mutex<Inner>,
    clock: Clock,
    capacity: Capacity,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<Box<str>, Entry>,
    writes_since_sweep: usize,
    /// Usage by class: `[anonymous, authenticated]`.
    used: [Usage; 2],
    /// Bytes of anonymous records held by each address that holds any.
    held: HashMap<Origin, usize>,
    /// When a full store may next be swept for room (at most once a second, so a flood
    /// against a full store does not scan the map at every request).
    next_sweep_for_room: Option<Instant>,
}

fn slot(class: Class) -> usize {
    match class {
        Class::Anonymous => 0,
        Class::Authenticated => 1,
    }
}

impl Inner {
    fn count(&mut self, e: &Entry) {
        let u = &mut self.used[slot(e.class)];
        u.entries += 1;
        u.bytes += e.size;
        if let Some(o) = e.origin {
            *self.held.entry(o).or_default() += e.size;
        }
    }

    fn uncount(&mut self, e: &Entry) {
        let u = &mut self.used[slot(e.class)];
        u.entries = u.entries.saturating_sub(1);
        u.bytes = u.bytes.saturating_sub(e.size);
        if let Some(o) = e.origin {
            release(&mut self.held, o, e.size);
        }
    }

    fn remove(&mut self, key: &str) -> Option<Entry> {
        let e = self.entries.remove(key)?;
        self.uncount(&e);
        Some(e)
    }

    fn live(&mut self, key: &str, now: Instant) -> Option<&mut Entry> {
        let expired = self.entries.get(key).is_some_and(|e| e.expires_at <= now);
        if expired {
            self.remove(key);
        }
        self.entries.get_mut(key)
    }

    fn sweep(&mut self, now: Instant) {
        let (used, held) = (&mut self.used, &mut self.held);
        self.entries.retain(|_, e| {
            let keep = e.expires_at > now;
            if !keep {
                let u = &mut used[slot(e.class)];
                u.entries = u.entries.saturating_sub(1);
                u.bytes = u.bytes.saturating_sub(e.size);
                if let Some(o) = e.origin {
                    release(held, o, e.size);
                }
            }
            keep
        });
        self.writes_since_sweep = 0;
    }

    fn total(&self) -> Usage {
        Usage {
            entries: self.used[0].entries + self.used[1].entries,
            bytes: self.used[0].bytes + self.used[1].bytes,
        }
    }

    /// Whether `entries` more entries and `bytes` more bytes of `w`'s class (and address)
    /// fit.
    fn fits(&self, capacity: &Capacity, w: Writer, entries: usize, bytes: usize) -> bool {
        let total = self.total();
        let own = self.used[slot(w.class)];
        let mine = match w.class {
            Class::Authenticated => capacity.limits(w.class),
            Class::Anonymous => {
                let held = w.origin.map(|o| self.held.get(&o).copied().unwrap_or(0).saturating_add(bytes));
                match capacity.anonymous_room(held) {
                    Some(room) => room,
                    None => return false,
                }
            }
        };
        total.entries.saturating_add(entries) <= capacity.max_entries
            && total.bytes.saturating_add(bytes) <= capacity.max_bytes
            && own.entries.saturating_add(entries) <= mine.entries
            && own.bytes.saturating_add(bytes) <= mine.bytes
    }

    /// Makes sure the growth fits, sweeping expired entries first if it does not (at most once
    /// a second); refuses with [`StoreError::Full`] otherwise.
    fn admit(
        &mut self,
        capacity: &Capacity,
        w: Writer,
        entries: usize,
        bytes: usize,
        now: Instant,
    ) -> Result<(), StoreError> {
        if self.fits(capacity, w, entries, bytes) {
            return Ok(());
        }
        if self.next_sweep_for_room.is_none_or(|t| now >= t) {
            self.sweep(now);
            self.next_sweep_for_room = Some(now + Duration::from_secs(1));
            if self.fits(capacity, w, entries, bytes) {
                return Ok(());
            }
        }
        Err(StoreError::Full(w.class))
    }

    /// Stores `value` under `key` (replacing what was there) if it fits.
    fn insert(
        &mut self,
        capacity: &Capacity,
        key: &str,
        value: Value,
        w: Writer,
        expires_at: Instant,
        now: Instant,
    ) -> Result<(), StoreError> {
        self.writes_since_sweep += 1;
        if self.writes_since_sweep >= 1024 && self.writes_since_sweep >= self.entries.len() / 2 {
            self.sweep(now);
        }
        let origin = w.origin.filter(|_| w.class == Class::Anonymous);
        let mut entry = Entry { value, expires_at, class: w.class, origin, size: 0 };
        entry.size = entry.counted(key);
        let size = entry.size;
        let old = self.remove(key);
        if let Err(e) = self.admit(capacity, Writer { class: w.class, origin }, 1, size, now) {
            if let Some(old) = old {
                self.count(&old);
                self.entries.insert(key.into(), old);
            }
            return Err(e);
        }
        self.count(&entry);
        self.entries.insert(key.into(), entry);
        Ok(())
    }

    /// Changes the live entry under `key` with `change` if the result fits (the entry keeps
    /// its class); None if there is no live entry, `change` answered None (nothing to do) or
    /// the change does not fit (then the entry is left as it was).
    fn update<R>(
        &mut self,
        capacity: &Capacity,
        key: &str,
        now: Instant,
        change: impl FnOnce(&mut Entry) -> Option<R>,
    ) -> Result<Option<R>, StoreError> {
        let Some(current) = self.live(key, now) else { return Ok(None) };
        let mut changed = current.clone();
        let Some(result) = change(&mut changed) else { return Ok(None) };
        changed.size = changed.counted(key);
        let grows = changed.size.saturating_sub(current.size);
        let (w, old_size) = (Writer { class: current.class, origin: current.origin }, current.size);
        if grows > 0 {
            self.admit(capacity, w, 0, grows, now)?;
        }
        let u = &mut self.used[slot(w.class)];
        u.bytes = u.bytes.saturating_sub(old_size) + changed.size;
        if let Some(o) = w.origin {
            release(&mut self.held, o, old_size);
            *self.held.entry(o).or_default() += changed.size;
        }
        self.entries.insert(key.into(), changed);
        Ok(Some(result))
    }
}

/// Takes `bytes` off what `origin` holds, forgetting an address that holds nothing.
fn release(held: &mut HashMap<Origin, usize>, origin: Origin, bytes: usize) {
    if let Some(n) = held.get_mut(&origin) {
        *n = n.saturating_sub(bytes);
        if *n == 0 {
            held.remove(&origin);
        }
    }
}

impl MemoryStore {
    pub fn with_clock(clock: Clock) -> Self {
        MemoryStore { map: Mutex::default(), clock, capacity: Capacity::UNBOUNDED }
    }

    /// A store that holds at most `capacity`.
    pub fn bounded(clock: Clock, capacity: Capacity) -> Self {
        MemoryStore { map: Mutex::default(), clock, capacity }
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
        let now = self.now();
        self.lock().entries.values().filter(|e| e.expires_at > now).count()
    }

    /// What each class holds, expired entries not yet swept included: `(anonymous,
    /// authenticated)`.
    pub fn usage(&self) -> (Usage, Usage) {
        let inner = self.lock();
        (inner.used[0], inner.used[1])
    }

    pub fn put(
        &self,
        w: impl Into<Writer>,
        key: &str,
        value: Vec<u8>,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let now = self.now();
        self.lock().insert(&self.capacity, key, Value::bytes(value), w.into(), now + ttl, now)
    }

    pub fn put_new(
        &self,
        w: impl Into<Writer>,
        key: &str,
        value: Vec<u8>,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let now = self.now();
        let mut inner = self.lock();
        if inner.live(key, now).is_some() {
            return Ok(false);
        }
        inner.insert(&self.capacity, key, Value::bytes(value), w.into(), now + ttl, now)?;
        Ok(true)
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
        if !matches!(inner.live(key, now), Some(Entry { value: Value::Bytes(_), .. })) {
            return None;
        }
        match inner.remove(key) {
            Some(Entry { value: Value::Bytes(b), .. }) => Some(b.into_vec()),
            _ => None,
        }
    }

    pub fn delete(&self, key: &str) {
        self.lock().remove(key);
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

    pub fn set_add(
        &self,
        w: impl Into<Writer>,
        key: &str,
        member: &str,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let now = self.now();
        let mut inner = self.lock();
        if let Some(Entry { value: Value::Set(_), .. }) = inner.live(key, now) {
            inner.update(&self.capacity, key, now, |e| {
                if let Value::Set(s) = &mut e.value {
                    s.insert(member.to_string());
                }
                e.expires_at = e.expires_at.max(now + ttl);
                Some(())
            })?;
            return Ok(());
        }
        let set = Box::new(HashSet::from([member.to_string()]));
        inner.insert(&self.capacity, key, Value::Set(set), w.into(), now + ttl, now)
    }

    /// Adds `by` to a counter; a new counter lives for `ttl` (a fixed window).
    pub fn incr_by(
        &self,
        w: impl Into<Writer>,
        key: &str,
        by: u64,
        ttl: Duration,
    ) -> Result<u64, StoreError> {
        let now = self.now();
        let mut inner = self.lock();
        let current = match inner.live(key, now) {
            Some(Entry { value: Value::Bytes(b), .. }) => {
                std::str::from_utf8(b).ok().and_then(|s| s.parse::<u64>().ok()).unwrap_or(0)
            }
            _ => 0,
        };
        let next = current.saturating_add(by);
        let text = next.to_string().into_bytes();
        if current > 0 {
            inner.update(&self.capacity, key, now, |e| {
                e.value = Value::bytes(text);
                Some(())
            })?;
        } else {
            inner.insert(&self.capacity, key, Value::bytes(text), w.into(), now + ttl, now)?;
        }
        Ok(next)
    }

    pub fn decr(&self, key: &str) {
        let now = self.now();
        let mut inner = self.lock();
        // Shrinks or keeps the size: never refused.
        let _ = inner.update(&self.capacity, key, now, |e| match &e.value {
            Value::Bytes(b) => {
                let current = std::str::from_utf8(b).ok().and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
                (current > 0).then(|| e.value = Value::bytes((current - 1).to_string().into_bytes()))
            }
            _ => None,
        });
    }

    pub fn set_remove(&self, key: &str, member: &str) {
        let now = self.now();
        let _ = self.lock().update(&self.capacity, key, now, |e| match &mut e.value {
            Value::Set(s) => s.remove(member).then_some(()),
            _ => None,
        });
    }

    pub fn set_members(&self, key: &str) -> Vec<String> {
        match self.lock().live(key, self.now()) {
            Some(Entry { value: Value::Set(s), .. }) => s.iter().cloned().collect(),
            _ => Vec::new(),
        }
    }

    /// Sets the fields (creating the hash if needed) and sets its time to live to `ttl`.
    pub fn hash_set(
        &self,
        w: impl Into<Writer>,
        key: &str,
        fields: &[(&str, &[u8])],
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let now = self.now();
        let mut inner = self.lock();
        if let Some(Entry { value: Value::Hash(_), .. }) = inner.live(key, now) {
            inner.update(&self.capacity, key, now, |e| {
                if let Value::Hash(h) = &mut e.value {
                    for (f, v) in fields {
                        h.insert((*f).to_string(), v.to_vec());
                    }
                }
                e.expires_at = now + ttl;
                Some(())
            })?;
            return Ok(());
        }
        let hash = Box::new(fields.iter().map(|(f, v)| ((*f).to_string(), v.to_vec())).collect());
        inner.insert(&self.capacity, key, Value::Hash(hash), w.into(), now + ttl, now)
    }

    /// Sets one field of an existing hash, keeping its time to live; false if there is none.
    pub fn hash_set_existing(&self, key: &str, field: &str, value: &[u8]) -> Result<bool, StoreError> {
        let now = self.now();
        let done = self.lock().update(&self.capacity, key, now, |e| match &mut e.value {
            Value::Hash(h) => {
                h.insert(field.to_string(), value.to_vec());
                Some(())
            }
            _ => None,
        })?;
        Ok(done.is_some())
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
        let now = self.now();
        let mut inner = self.lock();
        let now_empty = inner
            .update(&self.capacity, key, now, |e| match &mut e.value {
                Value::Hash(h) => {
                    h.remove(field);
                    Some(h.is_empty())
                }
                _ => None,
            })
            .ok()
            .flatten()
            .unwrap_or(false);
        if now_empty {
            inner.remove(key);
        }
    }

    /// Atomically reads every field and deletes the hash.
    pub fn hash_take(&self, key: &str) -> HashMap<String, Vec<u8>> {
        let now = self.now();
        let mut inner = self.lock();
        if !matches!(inner.live(key, now), Some(Entry { value: Value::Hash(_), .. })) {
            return HashMap::new();
        }
        match inner.remove(key) {
            Some(Entry { value: Value::Hash(h), .. }) => *h,
            _ => HashMap::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const TTL: Duration = Duration::from_secs(600);

    fn store(max_entries: usize, max_bytes: usize, anonymous_percent: u8) -> MemoryStore {
        MemoryStore::bounded(
            Clock::system(),
            Capacity { max_entries, max_bytes, anonymous_percent, shares: AddressShares::NONE },
        )
    }

    fn full(r: Result<(), StoreError>) -> Option<Class> {
        match r {
            Err(StoreError::Full(class)) => Some(class),
            _ => None,
        }
    }

    #[test]
    fn anonymous_records_are_refused_beyond_their_share_of_entries() {
        let s = store(100, usize::MAX, 25);
        for i in 0..25 {
            s.put(Class::Anonymous, &format!("authreq:{i}"), vec![1], TTL).unwrap();
        }
        assert_eq!(full(s.put(Class::Anonymous, "authreq:25", vec![1], TTL)), Some(Class::Anonymous));
        assert!(s.get("authreq:25").is_none(), "nothing stored");
        // Authenticated records still have the rest of the store.
        for i in 0..75 {
            s.put(Class::Authenticated, &format!("code:{i}"), vec![1], TTL).unwrap();
        }
        assert_eq!(full(s.put(Class::Authenticated, "code:75", vec![1], TTL)), Some(Class::Authenticated));
        // Nothing was evicted to make room.
        assert_eq!(s.live_entries(), 100);
        assert!((0..75).all(|i| s.get(&format!("code:{i}")).is_some()));
        // Taking a record gives its room back.
        assert!(s.take("authreq:0").is_some());
        s.put(Class::Anonymous, "authreq:new", vec![1], TTL).unwrap();
    }

    #[test]
    fn the_byte_budget_counts_keys_values_and_overhead() {
        let one = ENTRY_OVERHEAD + "k:0".len() + 1000;
        let s = store(usize::MAX, 10 * one, 50);
        for i in 0..5 {
            s.put(Class::Anonymous, &format!("k:{i}"), vec![0; 1000], TTL).unwrap();
        }
        assert_eq!(s.usage().0, Usage { entries: 5, bytes: 5 * one });
        assert_eq!(full(s.put(Class::Anonymous, "k:5", vec![0; 1000], TTL)), Some(Class::Anonymous));
        // A smaller anonymous record does not fit either: the share is in bytes.
        assert!(full(s.put(Class::Anonymous, "k:6", vec![0; 10], TTL)).is_some());
        // Replacing a record counts only the difference.
        s.put(Class::Anonymous, "k:4", vec![0; 900], TTL).unwrap();
        assert_eq!(s.usage().0.bytes, 5 * one - 100);
        for i in 0..5 {
            s.put(Class::Authenticated, &format!("a:{i}"), vec![0; 1000], TTL).unwrap();
        }
        assert!(full(s.put(Class::Authenticated, "a:5", vec![0; 1000], TTL)).is_some());
        // Growing a hash beyond the budget is refused and leaves it as it was.
        s.delete("a:4");
        s.hash_set(Class::Authenticated, "h", &[("f", b"v")], TTL).unwrap();
        let refused = s.hash_set(Class::Authenticated, "h", &[("g", &[0u8; 2000][..])], TTL);
        assert!(full(refused).is_some());
        assert_eq!(s.hash_keys("h"), ["f"]);
        assert!(matches!(s.hash_set_existing("h", "g", &[0u8; 2000]), Err(StoreError::Full(_))));
        assert!(s.hash_set_existing("h", "g", b"small").unwrap());
    }

    #[test]
    fn expired_records_make_room_when_the_store_is_full() {
        let clock = Clock::system();
        let s = MemoryStore::bounded(
            clock.clone(),
            Capacity {
                max_entries: 10,
                max_bytes: usize::MAX,
                anonymous_percent: 50,
                shares: AddressShares::NONE,
            },
        );
        for i in 0..5 {
            s.put(Class::Anonymous, &format!("attempt:{i}"), vec![], Duration::from_secs(60)).unwrap();
        }
        assert!(full(s.put(Class::Anonymous, "attempt:5", vec![], TTL)).is_some());
        clock.advance(61);
        s.put(Class::Anonymous, "attempt:5", vec![], TTL).unwrap();
        assert_eq!(s.usage().0.entries, 1, "the expired ones were swept and uncounted");
    }

    fn from(n: u8) -> Writer {
        Writer { class: Class::Anonymous, origin: Some(Origin::of([198, 51, 100, n].into())) }
    }

    /// An address holds at most its share; beyond the open part only an address holding
    /// little may write (into the reserve); what an address holds comes back as its records
    /// go, and its bookkeeping goes with the last of them.
    #[test]
    fn addresses_hold_their_share_and_the_reserve_is_for_addresses_holding_little() {
        let one = ENTRY_OVERHEAD + "k:0:00".len() + 1000 + ORIGIN_OVERHEAD;
        let shares = AddressShares {
            per_address: 5 * one as u64,
            reserve_percent: 50,
            reserve_per_address: 2 * one as u64,
        };
        let s = MemoryStore::bounded(
            Clock::system(),
            Capacity { max_entries: usize::MAX, max_bytes: 40 * one, anonymous_percent: 50, shares },
        );
        let put = |n: u8, i: usize| s.put(from(n), &format!("k:{n}:{i:02}"), vec![0; 1000], TTL);
        // One address: its share (5 records), no more.
        for i in 0..5 {
            put(1, i).unwrap();
        }
        assert_eq!(full(put(1, 5)), Some(Class::Anonymous), "over the address's share");
        // The open part (half of the 20-record anonymous share) fills at 10.
        for i in 0..5 {
            put(2, i).unwrap();
        }
        assert_eq!(full(put(3, 0).and(put(3, 1)).and(put(3, 2))), Some(Class::Anonymous));
        let (anonymous, _) = s.usage();
        assert_eq!(anonymous.entries, 12, "two more in the reserve for the address holding little");
        // A fresh address still gets in, up to the reserve's own limit per address.
        put(4, 0).unwrap();
        put(4, 1).unwrap();
        assert!(full(put(4, 2)).is_some());
        // Unattributed anonymous records get only the open part; authenticated ones are apart.
        assert!(full(s.put(Class::Anonymous, "x", vec![0; 10], TTL)).is_some());
        s.put(Class::Authenticated, "code:x", vec![0; 1000], TTL).unwrap();
        // Records taken give their address's room back; an address holding nothing is forgotten.
        for i in 0..5 {
            assert!(s.take(&format!("k:1:{i:02}")).is_some());
        }
        assert!(!s.lock().held.contains_key(&Origin::of([198, 51, 100, 1].into())));
        put(5, 0).unwrap();
    }

    #[test]
    fn ipv6_addresses_share_by_their_64_prefix() {
        let a = Origin::of("2001:db8:1:2:aaaa::1".parse().unwrap());
        assert_eq!(a, Origin::of("2001:db8:1:2:ffff:ffff:ffff:ffff".parse().unwrap()));
        assert_ne!(a, Origin::of("2001:db8:1:3::1".parse().unwrap()));
        assert_eq!(Origin::of("::ffff:192.0.2.1".parse().unwrap()), Origin::of("192.0.2.1".parse().unwrap()));
    }

    #[test]
    fn usage_follows_every_kind_of_change() {
        let s = store(usize::MAX, usize::MAX, 100);
        s.hash_set(Class::Authenticated, "h", &[("a", b"1"), ("b", b"2")], TTL).unwrap();
        s.hash_remove("h", "a");
        s.hash_remove("h", "b");
        assert_eq!(s.usage().1, Usage::default(), "an emptied hash is gone and uncounted");
        s.set_add(Class::Anonymous, "s", "m1", TTL).unwrap();
        s.set_add(Class::Anonymous, "s", "m2", TTL).unwrap();
        s.set_remove("s", "m1");
        assert_eq!(s.usage().0.bytes, ENTRY_OVERHEAD + 1 + 2 + FIELD_OVERHEAD);
        s.delete("s");
        assert_eq!(s.incr_by(Class::Anonymous, "n", 9, TTL).unwrap(), 9);
        assert_eq!(s.incr_by(Class::Anonymous, "n", 1, TTL).unwrap(), 10);
        assert_eq!(s.usage().0.bytes, ENTRY_OVERHEAD + 1 + 2);
        s.decr("n");
        assert_eq!(s.usage().0.bytes, ENTRY_OVERHEAD + 1 + 1);
        assert!(s.put_new(Class::Anonymous, "x", vec![1, 2], TTL).unwrap());
        assert!(!s.put_new(Class::Anonymous, "x", vec![1, 2, 3], TTL).unwrap());
        assert!(s.take("n").is_some());
        s.delete("x");
        assert_eq!(s.usage(), (Usage::default(), Usage::default()));
    }
}
