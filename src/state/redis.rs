//! Redis backend of the state store: one Redis, Sentinel-managed Redis or Redis Cluster,
//! shared by every gateway replica. Every operation is bounded by a timeout; a dead Redis
//! gives `StoreError::Unavailable` (→ 503) and service resumes when it returns.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelServerType};
use redis::{Cmd, FromRedisValue, Pipeline};
use tokio::sync::{Mutex, RwLock};

use super::{AddressShares, Class, Origin, StoreError};

/// How to reach Redis. `Debug` redacts the passwords in URLs and of the master.
#[derive(Clone, PartialEq, Eq)]
pub enum RedisTopology {
    /// One server (or a proxy in front of a replicated pair): `redis://` or `rediss://`.
    Single(String),
    /// Redis Cluster, given some seed node URLs.
    Cluster(Vec<String>),
    /// Sentinel addresses, the name of the monitored master, and how to log in to it.
    Sentinel { sentinels: Vec<String>, master: String, auth: MasterAuth },
}

/// Credentials and transport for the master that Sentinel names.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct MasterAuth {
    pub username: Option<String>,
    pub password: Option<String>,
    pub db: i64,
    pub tls: bool,
}

/// A Redis URL fit for logs: its password (if any) replaced.
fn redacted_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("redacted"));
            }
            u.to_string()
        }
        Err(_) => "[unparsable Redis URL]".to_string(),
    }
}

impl std::fmt::Debug for RedisTopology {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let all = |urls: &[String]| urls.iter().map(|u| redacted_url(u)).collect::<Vec<_>>();
        match self {
            RedisTopology::Single(url) => f.debug_tuple("Single").field(&redacted_url(url)).finish(),
            RedisTopology::Cluster(nodes) => f.debug_tuple("Cluster").field(&all(nodes)).finish(),
            RedisTopology::Sentinel { sentinels, master, auth } => f
                .debug_struct("Sentinel")
                .field("sentinels", &all(sentinels))
                .field("master", master)
                .field("auth", auth)
                .finish(),
        }
    }
}

impl std::fmt::Debug for MasterAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterAuth")
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "[redacted]"))
            .field("db", &self.db)
            .field("tls", &self.tls)
            .finish()
    }
}

enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
    Sentinel(Arc<SentinelConn>),
}

/// Follows the master that Sentinel names; re-asks Sentinel after a connection failure.
struct SentinelConn {
    sentinel: Mutex<SentinelClient>,
    current: RwLock<Option<ConnectionManager>>,
    timeout: Duration,
}

impl SentinelConn {
    async fn manager(&self) -> Result<ConnectionManager, StoreError> {
        if let Some(m) = self.current.read().await.as_ref() {
            return Ok(m.clone());
        }
        let mut current = self.current.write().await;
        if let Some(m) = current.as_ref() {
            return Ok(m.clone());
        }
        let client = self.sentinel.lock().await.async_get_client().await.map_err(unavailable)?;
        let manager = ConnectionManager::new_with_config(client, manager_config(self.timeout))
            .await
            .map_err(unavailable)?;
        *current = Some(manager.clone());
        Ok(manager)
    }

    async fn forget(&self) {
        *self.current.write().await = None;
    }
}

fn manager_config(timeout: Duration) -> redis::aio::ConnectionManagerConfig {
    redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_millis(500))
}

/// A Redis failure as a store error: Redis at `maxmemory` under `noeviction` refusing a write
/// (`OOM`) is the store being full (the class is filled in by the caller), anything else is
/// the store being unavailable.
fn unavailable(e: redis::RedisError) -> StoreError {
    if is_out_of_memory(&e) {
        StoreError::Full(Class::Authenticated)
    } else {
        StoreError::Unavailable(e.to_string())
    }
}

/// `-OOM command not allowed when used memory > 'maxmemory'`, alone or as the reason a
/// transaction was discarded.
fn is_out_of_memory(e: &redis::RedisError) -> bool {
    e.code() == Some("OOM") || e.to_string().contains("command not allowed when used memory")
}

/// The Redis state backend.
pub struct RedisStore {
    conn: Conn,
    prefix: String,
    timeout: Duration,
    /// The anonymous budget, if any (see [`RedisStore::admit_anonymous`]).
    budget: Option<Budget>,
}

/// How many bytes of anonymous records may be alive at once, and how finely their expiry
/// is tracked.
#[derive(Debug, Clone, Copy)]
struct Budget {
    max_bytes: u64,
    shares: AddressShares,
    bucket: Duration,
}

/// Expiry times are counted in buckets of this width: a record is counted until the end of
/// the bucket its expiry falls in (at most this much longer than it lives).
const BUDGET_BUCKET: Duration = Duration::from_secs(10);

/// Bytes counted for a record beyond its key and value: Redis' own bookkeeping per key (the
/// dictionary entry, the object header, the expiry entry) and the allocator's rounding.
pub const REDIS_RECORD_OVERHEAD: usize = 128;

/// Bytes counted, on top of the record, when an anonymous record is the first one its address
/// holds (the address's bookkeeping key) and when it is the first of its address to expire in
/// its bucket (one field of that key): so the per-address bookkeeping is inside the budget.
pub const ORIGIN_KEY_BYTES: usize = 192;
pub const ORIGIN_FIELD_BYTES: usize = 32;

impl RedisStore {
    /// Connects (bounded by `timeout`). Fails if Redis cannot be reached at start-up, so a
    /// misconfigured replica never reports ready.
    pub async fn connect(
        topology: &RedisTopology,
        prefix: &str,
        timeout: Duration,
    ) -> Result<Self, StoreError> {
        crate::install_crypto_provider();
        let connect = async {
            let conn = match topology {
                RedisTopology::Single(url) => {
                    let client = redis::Client::open(url.as_str()).map_err(unavailable)?;
                    Conn::Single(
                        ConnectionManager::new_with_config(client, manager_config(timeout))
                            .await
                            .map_err(unavailable)?,
                    )
                }
                RedisTopology::Cluster(nodes) => {
                    let client = redis::cluster::ClusterClientBuilder::new(nodes.clone())
                        .connection_timeout(timeout)
                        .response_timeout(timeout)
                        .build()
                        .map_err(unavailable)?;
                    Conn::Cluster(client.get_async_connection().await.map_err(unavailable)?)
                }
                RedisTopology::Sentinel { sentinels, master, auth } => {
                    let mut info = redis::RedisConnectionInfo::default().set_db(auth.db);
                    if let Some(u) = &auth.username {
                        info = info.set_username(u);
                    }
                    if let Some(p) = &auth.password {
                        info = info.set_password(p);
                    }
                    let mut node = redis::sentinel::SentinelNodeConnectionInfo::default()
                        .set_redis_connection_info(info);
                    if auth.tls {
                        node = node.set_tls_mode(redis::TlsMode::Secure);
                    }
                    let client = SentinelClient::build(
                        sentinels.clone(),
                        master.as_str(),
                        Some(node),
                        SentinelServerType::Master,
                    )
                    .map_err(unavailable)?;
                    let conn = Arc::new(SentinelConn {
                        sentinel: Mutex::new(client),
                        current: RwLock::new(None),
                        timeout,
                    });
                    conn.manager().await?;
                    Conn::Sentinel(conn)
                }
            };
            Ok::<_, StoreError>(conn)
        };
        let conn = tokio::time::timeout(timeout * 3, connect).await.map_err(|_| {
            StoreError::Unavailable(format!("no answer from Redis within {:?}", timeout * 3))
        })??;
        Ok(RedisStore { conn, prefix: prefix.to_string(), timeout, budget: None })
    }

    /// The same store, admitting anonymous records only while the ones alive (by their
    /// counted size, see [`Self::admit_anonymous`]) stay within `max_bytes`.
    /// `shares` divides it between client addresses.
    pub fn with_anonymous_budget(self, max_bytes: u64, shares: AddressShares) -> Self {
        RedisStore { budget: Some(Budget { max_bytes, shares, bucket: BUDGET_BUCKET }), ..self }
    }

    /// Tests: a budget whose expiry buckets are `bucket` wide (so that a test can wait for
    /// records to expire without waiting ten seconds).
    #[cfg(test)]
    pub fn with_budget_bucket(mut self, bucket: Duration) -> Self {
        if let Some(b) = &mut self.budget {
            b.bucket = bucket;
        }
        self
    }

    /// Counts an anonymous record of `bytes` (key, value and [`REDIS_RECORD_OVERHEAD`]) living
    /// `ttl` against the budget shared by every replica, or refuses it with
    /// `StoreError::Full(Class::Anonymous)` if the records still alive would then exceed the
    /// budget. One round trip (a script on one key, so also on Redis Cluster).
    ///
    /// The budget key is a hash of counted bytes by the bucket their records expire in, with
    /// their running total; each call first drops the buckets that have ended (records
    /// expire on their own in Redis, and their count goes with them). A record taken or
    /// deleted before its time is still counted until it would have expired: the count
    /// errs on the side of refusing. Time is Redis' own (`TIME`), so replicas agree.
    ///
    /// A record attributed to an `origin` is also counted, the same way, in a key of that
    /// address (next to the budget key, in the same Cluster slot), and admitted only within
    /// the address's share ([`AddressShares::room_for`]); both keys change in the one script.
    pub async fn admit_anonymous(
        &self,
        bytes: usize,
        ttl: Duration,
        origin: Option<Origin>,
    ) -> Result<(), StoreError> {
        let Some(budget) = self.budget else { return Ok(()) };
        let shares = budget.shares;
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(ADMIT_ANONYMOUS);
        match origin {
            Some(o) => cmd
                .arg(2)
                .arg(self.key(BUDGET_KEY))
                .arg(self.key(&super::hashed_key(BUDGET_KEY, &o.ip().to_string()))),
            None => cmd.arg(1).arg(self.key(BUDGET_KEY)),
        };
        cmd.arg(ttl_ms(budget.bucket))
            .arg(bytes as u64)
            .arg(ttl_ms(ttl))
            .arg(budget.max_bytes)
            .arg(shares.general(budget.max_bytes))
            .arg(shares.per_address)
            .arg(shares.reserve_per_address)
            .arg(ORIGIN_KEY_BYTES as u64)
            .arg(ORIGIN_FIELD_BYTES as u64);
        if self.query::<i64>(&cmd).await? == 1 { Ok(()) } else { Err(StoreError::Full(Class::Anonymous)) }
    }

    /// The counted size of a record under `key` holding `value_bytes`.
    pub fn counted(&self, key: &str, value_bytes: usize) -> usize {
        self.prefix.len() + key.len() + value_bytes + REDIS_RECORD_OVERHEAD
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T, StoreError> {
        let run = async {
            match &self.conn {
                Conn::Single(m) => cmd.query_async(&mut m.clone()).await.map_err(unavailable),
                Conn::Cluster(c) => cmd.query_async(&mut c.clone()).await.map_err(unavailable),
                Conn::Sentinel(s) => {
                    let mut m = s.manager().await?;
                    match cmd.query_async(&mut m).await {
                        Ok(v) => Ok(v),
                        Err(e) => {
                            if e.is_io_error()
                                || e.is_connection_dropped()
                                || e.is_connection_refusal()
                                || e.is_timeout()
                            {
                                s.forget().await;
                            }
                            Err(unavailable(e))
                        }
                    }
                }
            }
        };
        self.bounded(run).await
    }

    async fn query_pipe<T: FromRedisValue>(&self, pipe: &Pipeline) -> Result<T, StoreError> {
        let run = async {
            match &self.conn {
                Conn::Single(m) => pipe.query_async(&mut m.clone()).await.map_err(unavailable),
                Conn::Cluster(c) => pipe.query_async(&mut c.clone()).await.map_err(unavailable),
                Conn::Sentinel(s) => {
                    let mut m = s.manager().await?;
                    let result = pipe.query_async(&mut m).await;
                    if result.is_err() {
                        s.forget().await;
                    }
                    result.map_err(unavailable)
                }
            }
        };
        self.bounded(run).await
    }

    async fn bounded<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        tokio::time::timeout(self.timeout, f)
            .await
            .map_err(|_| StoreError::Unavailable(format!("no answer from Redis within {:?}", self.timeout)))?
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        let pong: String = self.query(&redis::cmd("PING")).await?;
        if pong == "PONG" {
            Ok(())
        } else {
            Err(StoreError::Unavailable(format!("unexpected PING answer {pong:?}")))
        }
    }

    pub async fn put(&self, key: &str, value: Vec<u8>, ttl: Duration) -> Result<(), StoreError> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.key(key)).arg(value).arg("PX").arg(ttl_ms(ttl));
        self.query::<()>(&cmd).await
    }

    pub async fn put_new(&self, key: &str, value: Vec<u8>, ttl: Duration) -> Result<bool, StoreError> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.key(key)).arg(value).arg("NX").arg("PX").arg(ttl_ms(ttl));
        let stored: Option<String> = self.query(&cmd).await?;
        Ok(stored.is_some())
    }

    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.query(redis::cmd("GET").arg(self.key(key))).await
    }

    /// Whether any of `keys` exists, in one round trip (a pipeline of single-key `EXISTS`, so
    /// it also works when the keys live in different Cluster slots).
    pub async fn exists_any(&self, keys: &[&str]) -> Result<bool, StoreError> {
        let mut pipe = redis::pipe();
        for key in keys {
            pipe.cmd("EXISTS").arg(self.key(key));
        }
        let found: Vec<i64> = self.query_pipe(&pipe).await?;
        Ok(found.iter().any(|n| *n > 0))
    }

    /// `GETDEL` is atomic on the server: concurrent callers on any replica get the value at
    /// most once.
    pub async fn take(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.query(redis::cmd("GETDEL").arg(self.key(key))).await
    }

    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.query::<i64>(redis::cmd("DEL").arg(self.key(key))).await.map(|_| ())
    }

    pub async fn touch(&self, key: &str, ttl: Duration) -> Result<bool, StoreError> {
        let mut cmd = redis::cmd("PEXPIRE");
        cmd.arg(self.key(key)).arg(ttl_ms(ttl));
        Ok(self.query::<i64>(&cmd).await? == 1)
    }

    pub async fn set_add(&self, key: &str, member: &str, ttl: Duration) -> Result<(), StoreError> {
        let key = self.key(key);
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("SADD")
            .arg(&key)
            .arg(member)
            .ignore()
            .cmd("PEXPIRE")
            .arg(&key)
            .arg(ttl_ms(ttl))
            .ignore();
        self.query_pipe::<()>(&pipe).await
    }

    /// `SET NX PX` creates the counter with its window, `INCR` keeps that expiry; both in one
    /// transaction (Redis 6.2 has no `PEXPIRE … NX`).
    pub async fn incr(&self, key: &str, ttl: Duration) -> Result<u64, StoreError> {
        let key = self.key(key);
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("SET")
            .arg(&key)
            .arg(0)
            .arg("NX")
            .arg("PX")
            .arg(ttl_ms(ttl))
            .ignore()
            .cmd("INCR")
            .arg(&key);
        let (count,): (u64,) = self.query_pipe(&pipe).await?;
        Ok(count)
    }

    /// A server-side script, so that a counter that expired is not brought back without a
    /// time to live.
    pub async fn decr(&self, key: &str) -> Result<(), StoreError> {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(DECR_IF_POSITIVE).arg(1).arg(self.key(key));
        self.query::<i64>(&cmd).await.map(|_| ())
    }

    /// One pipeline (not a transaction, so the keys may be in different Cluster slots) of
    /// `SET NX PX` + `INCRBY` per key. A key could only lose its expiry if it expired between
    /// its two commands; callers give counters a lifetime well past their last use.
    pub async fn incr_each(&self, counters: &[(&str, u64)], ttl: Duration) -> Result<Vec<u64>, StoreError> {
        if counters.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for (key, by) in counters {
            let key = self.key(key);
            pipe.cmd("SET").arg(&key).arg(0).arg("NX").arg("PX").arg(ttl_ms(ttl)).ignore();
            pipe.cmd("INCRBY").arg(&key).arg(*by);
        }
        self.query_pipe(&pipe).await
    }

    pub async fn set_remove(&self, key: &str, member: &str) -> Result<(), StoreError> {
        self.query::<i64>(redis::cmd("SREM").arg(self.key(key)).arg(member)).await.map(|_| ())
    }

    pub async fn set_members(&self, key: &str) -> Result<Vec<String>, StoreError> {
        self.query(redis::cmd("SMEMBERS").arg(self.key(key))).await
    }

    /// `HSET` and `PEXPIRE` in one transaction on one key (one cluster slot).
    pub async fn hash_set(
        &self,
        key: &str,
        fields: &[(&str, &[u8])],
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let key = self.key(key);
        let mut pipe = redis::pipe();
        pipe.atomic().cmd("HSET").arg(&key);
        for (f, v) in fields {
            pipe.arg(*f).arg(*v);
        }
        pipe.ignore().cmd("PEXPIRE").arg(&key).arg(ttl_ms(ttl)).ignore();
        self.query_pipe::<()>(&pipe).await
    }

    /// A server-side script, so that a hash that expired or was deleted concurrently is not
    /// brought back (without a time to live) by a late `HSET`.
    pub async fn hash_set_existing(&self, key: &str, field: &str, value: &[u8]) -> Result<bool, StoreError> {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(HSET_IF_EXISTS).arg(1).arg(self.key(key)).arg(field).arg(value);
        Ok(self.query::<i64>(&cmd).await? == 1)
    }

    pub async fn hash_get(&self, key: &str, fields: &[&str]) -> Result<HashMap<String, Vec<u8>>, StoreError> {
        let values: Vec<Option<Vec<u8>>> =
            self.query(redis::cmd("HMGET").arg(self.key(key)).arg(fields)).await?;
        Ok(fields.iter().zip(values).filter_map(|(f, v)| Some(((*f).to_string(), v?))).collect())
    }

    pub async fn hash_keys(&self, key: &str) -> Result<Vec<String>, StoreError> {
        self.query(redis::cmd("HKEYS").arg(self.key(key))).await
    }

    pub async fn hash_contains(&self, key: &str, field: &str) -> Result<bool, StoreError> {
        Ok(self.query::<i64>(redis::cmd("HEXISTS").arg(self.key(key)).arg(field)).await? == 1)
    }

    pub async fn hash_remove(&self, key: &str, field: &str) -> Result<(), StoreError> {
        self.query::<i64>(redis::cmd("HDEL").arg(self.key(key)).arg(field)).await.map(|_| ())
    }

    /// `HGETALL` and `DEL` in one transaction: concurrent callers get the fields at most once.
    pub async fn hash_take(&self, key: &str) -> Result<HashMap<String, Vec<u8>>, StoreError> {
        let key = self.key(key);
        let mut pipe = redis::pipe();
        pipe.atomic().cmd("HGETALL").arg(&key).cmd("DEL").arg(&key).ignore();
        let (fields,): (HashMap<String, Vec<u8>>,) = self.query_pipe(&pipe).await?;
        Ok(fields)
    }
}

/// The key of the anonymous budget (under the store's prefix); the keys of the addresses are
/// this and a digest of the address. The braces make them one Redis Cluster hash slot.
const BUDGET_KEY: &str = "{anonymous-budget}";

/// KEYS[1]: the budget hash; KEYS[2] (if the record has an origin): its address's hash.
/// ARGV: bucket width (ms), bytes, the record's time to live (ms), the budget (bytes), the
/// part of it open to every address, the most an address may hold, the most an address may
/// hold and still use the reserve, the bytes counted for a new address key and for a new
/// field of it. Fields of both hashes: `total` (bytes counted and not yet expired), `swept`
/// (the last bucket dropped), and one per expiry bucket `b` (records expiring by
/// `b × width`). Returns 1 if the record was counted, 0 if it was refused. Each hash lives as
/// long as its latest bucket, so an idle budget or address disappears with the last record
/// it counted.
const ADMIT_ANONYMOUS: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local width = tonumber(ARGV[1])
local bytes = tonumber(ARGV[2])
local cur = math.floor(now / width)
local b = math.ceil((now + tonumber(ARGV[3])) / width)
local field = string.format('%d', b)
local function sweep(key)
  local total = tonumber(redis.call('HGET', key, 'total')) or 0
  local swept = tonumber(redis.call('HGET', key, 'swept')) or cur
  if cur - swept > 4096 then
    for _, f in ipairs(redis.call('HKEYS', key)) do
      local n = tonumber(f)
      if f ~= 'total' and f ~= 'swept' and n and n <= cur then
        total = total - (tonumber(redis.call('HGET', key, f)) or 0)
        redis.call('HDEL', key, f)
      end
    end
  elseif cur > swept then
    for n = swept + 1, cur do
      local f = string.format('%d', n)
      local v = tonumber(redis.call('HGET', key, f))
      if v then
        total = total - v
        redis.call('HDEL', key, f)
      end
    end
  end
  if total < 0 then total = 0 end
  return total
end
local function keep(key, total)
  if redis.call('EXISTS', key) == 1 then
    redis.call('HSET', key, 'total', string.format('%d', total), 'swept', string.format('%d', cur))
  end
end
local function add(key, total)
  redis.call('HINCRBY', key, field, bytes)
  redis.call('HSET', key, 'total', string.format('%d', total + bytes), 'swept', string.format('%d', cur))
  local life = (b + 1) * width - now
  if redis.call('PTTL', key) < life then
    redis.call('PEXPIRE', key, life)
  end
end
local total = sweep(KEYS[1])
local room = tonumber(ARGV[5])
local held = 0
if #KEYS == 2 then
  held = sweep(KEYS[2])
  if redis.call('EXISTS', KEYS[2]) == 0 then bytes = bytes + tonumber(ARGV[8]) end
  if redis.call('HEXISTS', KEYS[2], field) == 0 then bytes = bytes + tonumber(ARGV[9]) end
  if held + bytes > tonumber(ARGV[6]) then
    room = -1
  elseif held + bytes <= tonumber(ARGV[7]) then
    room = tonumber(ARGV[4])
  end
end
if total + bytes > room then
  keep(KEYS[1], total)
  if #KEYS == 2 then keep(KEYS[2], held) end
  return 0
end
add(KEYS[1], total)
if #KEYS == 2 then add(KEYS[2], held) end
return 1
"#;

/// `DECR` of a counter that exists and is above zero (`DECR` keeps the time to live).
const DECR_IF_POSITIVE: &str = "local v = tonumber(redis.call('GET', KEYS[1])) \
if v and v > 0 then return redis.call('DECR', KEYS[1]) end return 0";

/// `HSET KEYS[1] ARGV[1] ARGV[2]` only if the key exists (its time to live is kept).
const HSET_IF_EXISTS: &str = "if redis.call('EXISTS', KEYS[1]) == 1 then \
    redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) return 1 else return 0 end";

fn ttl_ms(ttl: Duration) -> u64 {
    (ttl.as_millis() as u64).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;

    const PASSWORD: &str = "s3cr3t-redis-pw";

    fn settings(mode: &str) -> Settings {
        Settings::from_toml(&format!(
            r#"
            issuer = "http://127.0.0.1:1"
            [sessions]
            store = "redis://gateway:{PASSWORD}@10.0.0.1:26379"
            [sessions.redis]
            mode = "{mode}"
            nodes = ["redis://gateway:{PASSWORD}@10.0.0.2:26379"]
            sentinel_master = "sso"
            master_username = "gateway"
            master_password = "{PASSWORD}"
            "#
        ))
        .unwrap()
    }

    #[test]
    fn redis_credentials_never_show_in_debug_output() {
        for mode in ["single", "cluster", "sentinel"] {
            let s = settings(mode);
            for text in [
                format!("{:?}", s.sessions),
                format!("{:?}", s.sessions.redis),
                format!("{s:?}"),
                format!("{:?}", s.sessions.topology().unwrap()),
            ] {
                assert!(!text.contains(PASSWORD), "{mode}: {text}");
            }
        }
    }

    #[test]
    fn the_topology_still_shows_where_redis_is() {
        let text = format!("{:?}", settings("sentinel").sessions.topology().unwrap());
        assert!(text.contains("10.0.0.1:26379") && text.contains("10.0.0.2:26379"), "{text}");
        assert!(text.contains("sso") && text.contains("gateway"), "{text}");
        // The connection itself still gets the real URL and password.
        let Some(RedisTopology::Sentinel { sentinels, auth, .. }) = settings("sentinel").sessions.topology()
        else {
            panic!("sentinel topology")
        };
        assert!(sentinels[0].contains(PASSWORD));
        assert_eq!(auth.password.as_deref(), Some(PASSWORD));
    }
}
