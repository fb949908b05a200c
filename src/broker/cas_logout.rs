//! Who may end sessions by CAS single logout. A `LogoutRequest` carries no signature: anyone
//! who learned a service ticket (it travels in browser URLs and logs) could end that person's
//! sessions. So requests are taken only from the CAS server's networks — `cas.logout_from`,
//! or by default the addresses the CAS server's host name resolves to — with the client
//! address read behind `inbound.trusted_proxies`, and each address may send only so many per
//! minute. Refused addresses store nothing.

use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::audit;
use super::error::BrokerError;
use crate::state::{StateStore, hashed_key};

/// Logout requests one address may send per minute. A CAS server sends one per service
/// ticket of each ended CAS session; this leaves room for busy hours and stops floods.
pub const LOGOUT_REQUESTS_PER_MINUTE: u64 = 600;

/// How long the CAS server's resolved addresses are used before resolving again.
const RESOLVED_TTL: Duration = Duration::from_secs(300);

/// How long old addresses are still used while the name cannot be resolved.
const RESOLVED_GRACE: Duration = Duration::from_secs(3600);

/// Where logout requests may come from.
#[derive(Debug, Clone)]
pub enum Sources {
    /// `cas.logout_from`.
    Networks(Vec<ipnet::IpNet>),
    /// The CAS server's own host: an address literal, or a name resolved when needed.
    Server { host: url::Host<String>, port: u16 },
}

#[derive(Debug)]
pub struct LogoutGuard {
    upstream: String,
    sources: Sources,
    store: StateStore,
    per_minute: u64,
    resolve_timeout: Duration,
    resolved: Mutex<Option<(Instant, Vec<IpAddr>)>>,
}

impl LogoutGuard {
    /// `server` is the CAS base URL (its host is the default source).
    pub fn new(
        upstream: &str,
        server: &str,
        logout_from: Option<&[ipnet::IpNet]>,
        store: StateStore,
        resolve_timeout: Duration,
    ) -> Result<Self, BrokerError> {
        let sources = match logout_from {
            Some(networks) => Sources::Networks(networks.to_vec()),
            None => {
                let bad = |detail: String| BrokerError::Setup { upstream: upstream.into(), detail };
                let url = url::Url::parse(server).map_err(|e| bad(format!("cas.server: {e}")))?;
                let host = url.host().ok_or_else(|| bad("cas.server has no host".into()))?.to_owned();
                Sources::Server { host, port: url.port_or_known_default().unwrap_or(443) }
            }
        };
        Ok(LogoutGuard {
            upstream: upstream.into(),
            sources,
            store,
            per_minute: LOGOUT_REQUESTS_PER_MINUTE,
            resolve_timeout,
            resolved: Mutex::new(None),
        })
    }

    /// Lets a logout request from `from` through, or says why not.
    pub async fn admit(&self, from: Option<IpAddr>) -> Result<(), BrokerError> {
        let refused = |from: String| {
            audit("cas_logout_source_refused", &self.upstream, &format!("logout request from {from}"));
            BrokerError::LogoutSourceRefused { upstream: self.upstream.clone(), from }
        };
        let Some(from) = from.map(|ip| ip.to_canonical()) else {
            return Err(refused("an unknown address".into()));
        };
        let allowed = match &self.sources {
            Sources::Networks(networks) => networks.iter().any(|n| n.contains(&from)),
            Sources::Server { .. } => self.server_addresses().await.iter().any(|a| a.to_canonical() == from),
        };
        if !allowed {
            return Err(refused(from.to_string()));
        }
        let key = hashed_key(&format!("cas-logout-rate:{}", self.upstream), &from.to_string());
        if self.store.incr(&key, Duration::from_secs(60)).await? > self.per_minute {
            return Err(BrokerError::LogoutRateLimited { upstream: self.upstream.clone() });
        }
        Ok(())
    }

    /// The CAS server's addresses: the literal, or the name resolved (cached for a while;
    /// resolving is bounded in time, and a failure falls back to recent addresses).
    async fn server_addresses(&self) -> Vec<IpAddr> {
        let Sources::Server { host, port } = &self.sources else { return Vec::new() };
        let name = match host {
            url::Host::Ipv4(ip) => return vec![IpAddr::V4(*ip)],
            url::Host::Ipv6(ip) => return vec![IpAddr::V6(*ip)],
            url::Host::Domain(name) => name,
        };
        let cached = self.cached();
        if let Some((at, addresses)) = &cached
            && at.elapsed() < RESOLVED_TTL
        {
            return addresses.clone();
        }
        let lookup = tokio::net::lookup_host((name.as_str(), *port));
        match tokio::time::timeout(self.resolve_timeout, lookup).await {
            Ok(Ok(found)) => {
                let mut addresses: Vec<IpAddr> = found.map(|a| a.ip().to_canonical()).collect();
                addresses.sort();
                addresses.dedup();
                if let Ok(mut slot) = self.resolved.lock() {
                    *slot = Some((Instant::now(), addresses.clone()));
                }
                addresses
            }
            failure => {
                let detail = match failure {
                    Ok(Err(e)) => e.to_string(),
                    _ => format!("no answer within {:?}", self.resolve_timeout),
                };
                tracing::warn!(upstream = %self.upstream, host = %name, error = %detail, "cannot resolve the CAS server for single logout");
                match cached {
                    Some((at, addresses)) if at.elapsed() < RESOLVED_GRACE => addresses,
                    _ => Vec::new(),
                }
            }
        }
    }

    fn cached(&self) -> Option<(Instant, Vec<IpAddr>)> {
        self.resolved.lock().ok().and_then(|slot| slot.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(server: &str, logout_from: Option<&[ipnet::IpNet]>) -> LogoutGuard {
        LogoutGuard::new("brvt", server, logout_from, StateStore::memory(), Duration::from_secs(2)).unwrap()
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    fn refused(r: Result<(), BrokerError>) -> bool {
        matches!(r, Err(BrokerError::LogoutSourceRefused { .. }))
    }

    #[tokio::test]
    async fn configured_networks_are_the_only_sources() {
        let nets: Vec<ipnet::IpNet> = vec!["10.20.0.0/16".parse().unwrap(), "2001:db8::/32".parse().unwrap()];
        let g = guard("https://cas.example/cas", Some(&nets));
        assert!(g.admit(ip("10.20.3.4")).await.is_ok());
        assert!(g.admit(ip("2001:db8::5")).await.is_ok());
        assert!(g.admit(ip("::ffff:10.20.3.4")).await.is_ok(), "an IPv4-mapped address is the IPv4 one");
        assert!(refused(g.admit(ip("10.21.0.1")).await));
        assert!(refused(g.admit(None).await), "an unknown address is refused");
        let none = guard("https://cas.example/cas", Some(&[]));
        assert!(refused(none.admit(ip("10.20.3.4")).await));
    }

    #[tokio::test]
    async fn by_default_the_cas_servers_address_literal_is_the_source() {
        let g = guard("http://127.0.0.1:8443/cas", None);
        assert!(g.admit(ip("127.0.0.1")).await.is_ok());
        assert!(g.admit(ip("::ffff:127.0.0.1")).await.is_ok());
        assert!(refused(g.admit(ip("127.0.0.2")).await));
        let v6 = guard("https://[2001:db8::7]/cas", None);
        assert!(v6.admit(ip("2001:db8::7")).await.is_ok());
        assert!(refused(v6.admit(ip("2001:db8::8")).await));
    }

    #[tokio::test]
    async fn by_default_the_cas_servers_name_is_resolved() {
        let g = guard("http://localhost:8443/cas", None);
        let local = tokio::net::lookup_host(("localhost", 8443)).await.unwrap().next().unwrap().ip();
        assert!(g.admit(Some(local)).await.is_ok(), "{local}");
        assert!(refused(g.admit(ip("192.0.2.1")).await));
        assert!(g.cached().is_some(), "the answer is kept for a while");
        let unknown = guard("https://cas.invalid/cas", None);
        assert!(refused(unknown.admit(ip("192.0.2.1")).await), "an unresolvable name admits nobody");
    }

    #[tokio::test]
    async fn each_address_is_rate_limited() {
        let nets: Vec<ipnet::IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let mut g = guard("https://cas.example/cas", Some(&nets));
        g.per_minute = 3;
        for _ in 0..3 {
            assert!(g.admit(ip("10.0.0.1")).await.is_ok());
        }
        assert!(matches!(g.admit(ip("10.0.0.1")).await, Err(BrokerError::LogoutRateLimited { .. })));
        assert!(g.admit(ip("10.0.0.2")).await.is_ok(), "other addresses are not affected");
    }
}
