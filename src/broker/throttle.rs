//! Failed-login throttling for password upstreams: per account name and per client address,
//! counted in the state store so every replica sees the same counts. After `max_failures`
//! failures within `failure_window` the account name (or address) is locked out for
//! `lockout`. Account names are counted whether or not the account exists, so a lockout
//! says nothing about existence. Keys hold only hashes of names and addresses.

use std::net::IpAddr;
use std::time::Duration;

use unicode_normalization::UnicodeNormalization;

use super::audit;
use crate::state::{StateStore, StoreError, hashed_key};

#[derive(Debug, Clone)]
pub struct Throttle {
    store: StateStore,
    upstream: String,
    max_per_account: u64,
    max_per_ip: u64,
    window: Duration,
    lockout: Duration,
}

/// The key under which an account name is counted: trimmed, NFC, lower case.
fn account_key(username: &str) -> String {
    username.trim().nfc().collect::<String>().to_lowercase()
}

impl Throttle {
    pub fn new(
        store: StateStore,
        upstream: &str,
        max_per_account: u32,
        max_per_ip: u32,
        window: Duration,
        lockout: Duration,
    ) -> Self {
        Throttle {
            store,
            upstream: upstream.to_string(),
            max_per_account: u64::from(max_per_account),
            max_per_ip: u64::from(max_per_ip),
            window,
            lockout,
        }
    }

    fn keys(&self, kind: &str, value: &str) -> (String, String) {
        (
            hashed_key(&format!("login-failures:{}:{kind}", self.upstream), value),
            hashed_key(&format!("login-lockout:{}:{kind}", self.upstream), value),
        )
    }

    /// Whether the account name or the address is locked out now.
    pub async fn locked(&self, username: &str, ip: Option<IpAddr>) -> Result<bool, StoreError> {
        let (_, account_lock) = self.keys("account", &account_key(username));
        if self.store.get(&account_lock).await?.is_some() {
            return Ok(true);
        }
        if let Some(ip) = ip {
            let (_, ip_lock) = self.keys("ip", &ip.to_string());
            if self.store.get(&ip_lock).await?.is_some() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Counts a failed login; locks out when a limit is reached.
    pub async fn failed(&self, username: &str, ip: Option<IpAddr>) -> Result<(), StoreError> {
        let mut counters = vec![("account", account_key(username), self.max_per_account)];
        if let Some(ip) = ip {
            counters.push(("ip", ip.to_string(), self.max_per_ip));
        }
        for (kind, value, max) in counters {
            let (count_key, lock_key) = self.keys(kind, &value);
            let n = self.store.incr(&count_key, self.window).await?;
            if n >= max {
                self.store.put(&lock_key, Vec::new(), self.lockout).await?;
                self.store.delete(&count_key).await?;
                audit(
                    "login_lockout",
                    &self.upstream,
                    &format!("{kind} locked out for {:?} after {n} failed logins", self.lockout),
                );
            }
        }
        Ok(())
    }

    /// A successful login clears the account's failure count (not the address's: one good
    /// password must not reset a password-guessing run from that address).
    pub async fn succeeded(&self, username: &str) -> Result<(), StoreError> {
        let (count_key, _) = self.keys("account", &account_key(username));
        self.store.delete(&count_key).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn accounts_and_addresses_lock_out_separately() {
        let t = Throttle::new(
            StateStore::memory(),
            "dir",
            3,
            5,
            Duration::from_secs(60),
            Duration::from_secs(60),
        );
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        for _ in 0..2 {
            t.failed("Minh.NV", Some(ip)).await.unwrap();
        }
        assert!(!t.locked("minh.nv", Some(ip)).await.unwrap());
        t.failed(" MINH.nv ", Some(ip)).await.unwrap();
        assert!(t.locked("minh.nv", None).await.unwrap(), "the same name, however written");
        assert!(!t.locked("other", None).await.unwrap());
        // Two more failures from the address (for other names) lock the address.
        t.failed("a", Some(ip)).await.unwrap();
        assert!(!t.locked("b", Some(ip)).await.unwrap());
        t.failed("b", Some(ip)).await.unwrap();
        assert!(t.locked("c", Some(ip)).await.unwrap());
        assert!(!t.locked("c", Some("192.0.2.8".parse().unwrap())).await.unwrap());
    }

    #[tokio::test]
    async fn success_clears_the_account_count() {
        let t = Throttle::new(
            StateStore::memory(),
            "dir",
            2,
            50,
            Duration::from_secs(60),
            Duration::from_secs(60),
        );
        t.failed("lan", None).await.unwrap();
        t.succeeded("lan").await.unwrap();
        t.failed("lan", None).await.unwrap();
        assert!(!t.locked("lan", None).await.unwrap());
    }
}
