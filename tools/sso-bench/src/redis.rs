//! What the gateway keeps in Redis, read through the `redis` crate: `INFO memory`, `DBSIZE`,
//! `SCAN`, `MEMORY USAGE`, and the cost of one SSO session. Measurement only.

use std::collections::BTreeMap;

use anyhow::{Context, Result, anyhow, bail};
use redis::aio::MultiplexedConnection;

pub struct Redis {
    conn: MultiplexedConnection,
}

/// Namespace → (keys seen, mean `MEMORY USAGE` bytes of the sampled ones).
pub type Groups = BTreeMap<String, (u64, f64)>;

/// What the SSO sessions in Redis cost (see [`Redis::session_cost`]).
#[derive(Debug, Default)]
pub struct SessionCost {
    /// Session hashes (`…session:<sid>`), and how many of them hold one RP and one grant.
    pub sessions: u64,
    pub typical: u64,
    /// Mean `MEMORY USAGE` of a typical session hash.
    pub typical_hash: f64,
    /// `MEMORY USAGE` of the index keys (per-account, per-upstream-session), per session.
    pub index_share: f64,
    /// `used_memory` freed by deleting the typical session hashes, per hash; and by deleting
    /// every index key, per session (only measured on the bench's private Redis).
    pub freed_per_typical_hash: Option<f64>,
    pub freed_index_per_session: Option<f64>,
}

impl SessionCost {
    /// One session with one RP and one grant, its share of the indexes included.
    pub fn usage_per_session(&self) -> f64 {
        self.typical_hash + self.index_share
    }

    pub fn freed_per_session(&self) -> Option<f64> {
        Some(self.freed_per_typical_hash? + self.freed_index_per_session?)
    }
}

/// Which part of the session layout a key is, if any.
#[derive(Debug, PartialEq, Eq)]
enum SessionKey {
    Session,
    Index,
}

fn session_key_kind(key: &str) -> Option<SessionKey> {
    let ns = namespace(key);
    if ns.ends_with(":session") || ns == "session" {
        Some(SessionKey::Session)
    } else if ns.ends_with("account-sids") || ns.contains("upstream-session:") {
        Some(SessionKey::Index)
    } else {
        None
    }
}

impl Redis {
    pub async fn connect(addr: std::net::SocketAddr) -> Result<Self> {
        if !addr.ip().is_loopback() {
            bail!("Redis for the benchmark must be on loopback, not {addr}");
        }
        let client = redis::Client::open(format!("redis://{addr}"))?;
        let conn = client
            .get_multiplexed_async_connection()
            .await
            .with_context(|| format!("connecting to Redis at {addr}"))?;
        Ok(Redis { conn })
    }

    pub async fn used_memory(&mut self) -> Result<i64> {
        let info: redis::InfoDict = redis::cmd("INFO").arg("memory").query_async(&mut self.conn).await?;
        info.get("used_memory").ok_or_else(|| anyhow!("no used_memory in INFO"))
    }

    pub async fn dbsize(&mut self) -> Result<i64> {
        Ok(redis::cmd("DBSIZE").query_async(&mut self.conn).await?)
    }

    async fn memory_usage(&mut self, key: &str) -> Result<Option<i64>> {
        Ok(redis::cmd("MEMORY")
            .arg("USAGE")
            .arg(key)
            .arg("SAMPLES")
            .arg(0)
            .query_async(&mut self.conn)
            .await?)
    }

    /// Up to `max_keys` key names, by `SCAN`.
    async fn keys(&mut self, max_keys: usize) -> Result<Vec<String>> {
        let mut keys = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, batch): (u64, Vec<String>) =
                redis::cmd("SCAN").arg(cursor).arg("COUNT").arg(1000).query_async(&mut self.conn).await?;
            keys.extend(batch);
            cursor = next;
            if cursor == 0 || keys.len() >= max_keys {
                break;
            }
        }
        keys.truncate(max_keys);
        Ok(keys)
    }

    /// Samples up to `per_group` keys of each namespace (the key up to its last `:`).
    pub async fn usage_by_namespace(&mut self, max_keys: usize, per_group: usize) -> Result<Groups> {
        let mut groups: BTreeMap<String, (u64, u64, u64)> = BTreeMap::new();
        for key in self.keys(max_keys).await? {
            let entry = groups.entry(namespace(&key)).or_default();
            entry.0 += 1;
            if entry.1 < per_group as u64
                && let Some(bytes) = self.memory_usage(&key).await?
            {
                entry.1 += 1;
                entry.2 += bytes.max(0) as u64;
            }
        }
        Ok(groups
            .into_iter()
            .map(|(ns, (count, sampled, bytes))| {
                (ns, (count, if sampled > 0 { bytes as f64 / sampled as f64 } else { 0.0 }))
            })
            .collect())
    }

    /// What the SSO sessions cost: every session hash and index key is read (`HKEYS`,
    /// `MEMORY USAGE`). A typical session is one with one RP (`c:` field) and one grant
    /// (`g:` field). With `delete`, the session keys are then deleted — typical session
    /// hashes first, then the indexes — and the `used_memory` each step frees is reported
    /// (the dictionaries' bucket arrays shrink later, so this is a slight under-count).
    pub async fn session_cost(&mut self, max_keys: usize, delete: bool) -> Result<SessionCost> {
        let mut cost = SessionCost::default();
        let (mut typical, mut other, mut index) = (Vec::new(), Vec::new(), Vec::new());
        let mut typical_bytes = 0u64;
        let mut index_bytes = 0u64;
        for key in self.keys(max_keys).await? {
            match session_key_kind(&key) {
                Some(SessionKey::Session) => {
                    let fields: Vec<String> =
                        redis::cmd("HKEYS").arg(&key).query_async(&mut self.conn).await?;
                    let clients = fields.iter().filter(|f| f.starts_with("c:")).count();
                    let grants = fields.iter().filter(|f| f.starts_with("g:")).count();
                    if clients == 1 && grants == 1 {
                        typical_bytes += self.memory_usage(&key).await?.unwrap_or(0).max(0) as u64;
                        typical.push(key);
                    } else {
                        other.push(key);
                    }
                }
                Some(SessionKey::Index) => {
                    index_bytes += self.memory_usage(&key).await?.unwrap_or(0).max(0) as u64;
                    index.push(key);
                }
                None => {}
            }
        }
        cost.typical = typical.len() as u64;
        cost.sessions = (typical.len() + other.len()) as u64;
        cost.typical_hash = typical_bytes as f64 / cost.typical.max(1) as f64;
        cost.index_share = index_bytes as f64 / cost.sessions.max(1) as f64;
        if delete && cost.typical > 0 {
            self.delete(&other).await?;
            let before = self.used_memory().await?;
            self.delete(&typical).await?;
            let after_sessions = self.used_memory().await?;
            self.delete(&index).await?;
            let after_index = self.used_memory().await?;
            cost.freed_per_typical_hash = Some((before - after_sessions) as f64 / cost.typical as f64);
            cost.freed_index_per_session = Some((after_sessions - after_index) as f64 / cost.sessions as f64);
        }
        Ok(cost)
    }

    async fn delete(&mut self, keys: &[String]) -> Result<()> {
        for chunk in keys.chunks(500) {
            let _: i64 = redis::cmd("DEL").arg(chunk).query_async(&mut self.conn).await?;
        }
        Ok(())
    }
}

/// The key without its last `:`-separated part (the hash or id), e.g. `gw:session:AbC` →
/// `gw:session`.
pub fn namespace(key: &str) -> String {
    match key.rsplit_once(':') {
        Some((ns, _)) => ns.to_string(),
        None => key.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_drop_the_last_part() {
        assert_eq!(namespace("session:abc"), "session");
        assert_eq!(namespace("bench:sid:xyz"), "bench:sid");
        assert_eq!(namespace("plain"), "plain");
    }

    #[test]
    fn session_layout_keys_are_told_apart_from_other_state() {
        assert_eq!(session_key_kind("sso:session:abc"), Some(SessionKey::Session));
        assert_eq!(session_key_kind("session:abc"), Some(SessionKey::Session));
        assert_eq!(session_key_kind("sso:account-sids:0193-acc"), Some(SessionKey::Index));
        assert_eq!(session_key_kind("sso:upstream-session:hcm:AbC"), Some(SessionKey::Index));
        assert_eq!(session_key_kind("sso:code:AbC"), None);
        assert_eq!(session_key_kind("sso:logout-continue:AbC"), None);
        assert_eq!(session_key_kind("sso:refresh:AbC"), None);
    }
}
