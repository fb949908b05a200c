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

/// The key under which an account name is counted: the name as the directory compares it.
/// `uid` and `sAMAccountName` use caseIgnoreMatch, whose string preparation (RFC 4518)
/// applies compatibility normalisation (NFKC) and case folding and treats leading, trailing
/// and repeated spaces as insignificant; so `Lan`, ` lan `, `LAN` and the full-width `ｌａｎ`
/// are one account and share one count.
fn account_key(username: &str) -> String {
    let folded: String = username.nfkc().collect::<String>().to_lowercase().nfkc().collect();
    folded.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The answer to [`Throttle::reserve`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reservation {
    /// The attempt may go to the directory.
    Granted(Grant),
    /// The account name or the address is locked out, or its attempts in this window are
    /// used up: nothing may reach the directory.
    Refused,
}

/// A granted attempt: its place in the account's and in the address's count of the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    pub account: u64,
    /// 0 when the client's address is unknown.
    pub address: u64,
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
    async fn locked(&self, username: &str, ip: Option<IpAddr>) -> Result<bool, StoreError> {
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

    /// Reserves one attempt for the account and the address before the password goes to the
    /// directory. Both counts are raised first, atomically in the store (shared by
    /// replicas), and only the first `max_failures` attempts of an account's window (the
    /// first `max_failures_per_ip` of an address's) are granted: however many guesses arrive
    /// at once, at most that many reach the directory. What happens next gives the counts
    /// back or keeps them: [`Self::succeeded`], [`Self::release`], [`Self::failed`].
    pub async fn reserve(&self, username: &str, ip: Option<IpAddr>) -> Result<Reservation, StoreError> {
        if self.locked(username, ip).await? {
            return Ok(Reservation::Refused);
        }
        let (account_key, _) = self.keys("account", &account_key(username));
        let account = self.store.incr(&account_key, self.window).await?;
        if account > self.max_per_account {
            return Ok(Reservation::Refused);
        }
        let mut address = 0;
        if let Some(ip) = ip {
            let (ip_key, _) = self.keys("ip", &ip.to_string());
            address = self.store.incr(&ip_key, self.window).await?;
            if address > self.max_per_ip {
                // Nothing reaches the directory: the account's place is not used.
                self.store.decr(&account_key).await?;
                return Ok(Reservation::Refused);
            }
        }
        Ok(Reservation::Granted(Grant { account, address }))
    }

    /// Counts a failed login (its counts stay taken); locks the account or the address out
    /// when the attempt was its last one. The counts are left to run out with their window,
    /// so attempts racing with the lockout stay refused.
    pub async fn failed(&self, username: &str, grant: Grant, ip: Option<IpAddr>) -> Result<(), StoreError> {
        let mut locks = vec![("account", account_key(username), grant.account, self.max_per_account)];
        if let Some(ip) = ip {
            locks.push(("address", ip.to_string(), grant.address, self.max_per_ip));
        }
        for (kind, value, n, max) in locks {
            if n >= max {
                let kind_key = if kind == "address" { "ip" } else { kind };
                let (_, lock_key) = self.keys(kind_key, &value);
                self.store.put(&lock_key, Vec::new(), self.lockout).await?;
                audit(
                    "login_lockout",
                    &self.upstream,
                    &format!("{kind} locked out for {:?} after {n} failed logins", self.lockout),
                );
            }
        }
        Ok(())
    }

    /// Gives back a granted attempt that proved nothing (the directory could not be asked),
    /// so an outage does not lock people out.
    pub async fn release(&self, username: &str, ip: Option<IpAddr>) -> Result<(), StoreError> {
        let (account_key, _) = self.keys("account", &account_key(username));
        self.store.decr(&account_key).await?;
        self.give_back_address(ip).await
    }

    /// A successful login clears the account's count and gives the address its place back
    /// (without clearing it: one good password must not reset a password-guessing run from
    /// that address, and a busy office behind one address is not locked out by its own
    /// successful logins).
    pub async fn succeeded(&self, username: &str, ip: Option<IpAddr>) -> Result<(), StoreError> {
        let (account_key, _) = self.keys("account", &account_key(username));
        self.store.delete(&account_key).await?;
        self.give_back_address(ip).await
    }

    async fn give_back_address(&self, ip: Option<IpAddr>) -> Result<(), StoreError> {
        match ip {
            Some(ip) => self.store.decr(&self.keys("ip", &ip.to_string()).0).await,
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle(max_per_account: u32, max_per_ip: u32) -> Throttle {
        Throttle::new(
            StateStore::memory(),
            "dir",
            max_per_account,
            max_per_ip,
            Duration::from_secs(60),
            Duration::from_secs(60),
        )
    }

    /// A guess: reserve, then fail when granted. Returns whether it was granted.
    async fn guess(t: &Throttle, name: &str, ip: Option<IpAddr>) -> bool {
        match t.reserve(name, ip).await.unwrap() {
            Reservation::Granted(grant) => {
                t.failed(name, grant, ip).await.unwrap();
                true
            }
            Reservation::Refused => false,
        }
    }

    #[test]
    fn account_names_fold_the_way_the_directory_compares_them() {
        let lan = account_key("lan");
        for spelling in ["Lan", " lan ", "LAN", "ｌａｎ", "ＬＡＮ", "\tlan\n"] {
            assert_eq!(account_key(spelling), lan, "{spelling:?}");
        }
        assert_eq!(account_key("nguyen  van\u{3000}a"), account_key("Nguyen Van A"), "inner spaces");
        assert_eq!(account_key("Ngọc"), account_key("Ngo\u{323}c"), "composed and decomposed");
        assert_ne!(account_key("lan"), account_key("lan2"));
        assert_ne!(account_key("nguyen van"), account_key("nguyenvan"));
    }

    #[tokio::test]
    async fn accounts_and_addresses_lock_out_separately() {
        let t = throttle(3, 5);
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        assert!(guess(&t, "Minh.NV", Some(ip)).await);
        assert!(guess(&t, "minh.nv", Some(ip)).await);
        assert!(guess(&t, " MINH.nv ", Some(ip)).await);
        assert!(!guess(&t, "ｍｉｎｈ.ｎｖ", None).await, "the same name, however written");
        assert!(guess(&t, "other", None).await);
        // Two more failures from the address (for other names) lock the address.
        assert!(guess(&t, "a", Some(ip)).await);
        assert!(guess(&t, "b", Some(ip)).await);
        assert_eq!(t.reserve("c", Some(ip)).await.unwrap(), Reservation::Refused);
        assert!(matches!(
            t.reserve("c", Some("192.0.2.8".parse().unwrap())).await.unwrap(),
            Reservation::Granted(Grant { account: 1, address: 1 })
        ));
    }

    #[tokio::test]
    async fn concurrent_reservations_grant_at_most_the_limit() {
        let t = throttle(5, 1000);
        let all = futures::future::join_all((0..50).map(|_| t.reserve("lan", None))).await;
        let granted = all.iter().filter(|r| matches!(r, Ok(Reservation::Granted(_)))).count();
        assert_eq!(granted, 5);
        // The same for one address guessing many names.
        let t = throttle(1000, 7);
        let ip: IpAddr = "192.0.2.9".parse().unwrap();
        let names: Vec<String> = (0..50).map(|i| format!("user{i}")).collect();
        let all = futures::future::join_all(names.iter().map(|n| t.reserve(n, Some(ip)))).await;
        let granted = all.iter().filter(|r| matches!(r, Ok(Reservation::Granted(_)))).count();
        assert_eq!(granted, 7);
    }

    #[tokio::test]
    async fn an_attempt_the_directory_could_not_answer_is_given_back() {
        let t = throttle(2, 3);
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        for _ in 0..5 {
            let Reservation::Granted(grant) = t.reserve("lan", Some(ip)).await.unwrap() else {
                panic!("granted")
            };
            assert_eq!(grant, Grant { account: 1, address: 1 });
            t.release("lan", Some(ip)).await.unwrap();
        }
        assert!(guess(&t, "lan", Some(ip)).await);
        assert!(guess(&t, "lan", Some(ip)).await);
        assert_eq!(t.reserve("lan", Some(ip)).await.unwrap(), Reservation::Refused);
    }

    #[tokio::test]
    async fn successes_from_one_address_do_not_use_up_its_attempts() {
        let t = throttle(5, 3);
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        for i in 0..10 {
            let name = format!("official{i}");
            let Reservation::Granted(_) = t.reserve(&name, Some(ip)).await.unwrap() else {
                panic!("a busy office behind one address keeps logging in")
            };
            t.succeeded(&name, Some(ip)).await.unwrap();
        }
        // Failures still count: the address locks after three.
        for name in ["x", "y", "z"] {
            assert!(guess(&t, name, Some(ip)).await);
        }
        assert_eq!(t.reserve("w", Some(ip)).await.unwrap(), Reservation::Refused);
    }

    #[tokio::test]
    async fn success_clears_the_account_count() {
        let t = throttle(2, 50);
        assert!(guess(&t, "lan", None).await);
        let Reservation::Granted(_) = t.reserve("lan", None).await.unwrap() else { panic!("granted") };
        t.succeeded("lan", None).await.unwrap();
        assert!(guess(&t, "lan", None).await);
        assert!(matches!(
            t.reserve("lan", None).await.unwrap(),
            Reservation::Granted(Grant { account: 2, address: 0 })
        ));
    }
}
