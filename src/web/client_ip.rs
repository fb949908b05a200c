//! The client's address, for per-address throttling and rate limits (login, token
//! endpoints, browser routes) and for attributing what a request stores to its address. Behind a reverse proxy the peer is
//! the proxy; its `X-Forwarded-For` is believed only when the peer is in
//! `inbound.trusted_proxies`, and then the right-most address that is not itself a trusted
//! proxy is the client (addresses further left could be written by the client).

use std::net::{IpAddr, SocketAddr};

use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRef, FromRequestParts};
use axum::http::request::Parts;

/// The client's address, when known.
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub Option<IpAddr>);

/// The reverse proxies whose `X-Forwarded-For` is believed (`inbound.trusted_proxies`).
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(pub Arc<[ipnet::IpNet]>);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp
where
    TrustedProxies: FromRef<S>,
{
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
        let forwarded: Vec<&str> = parts
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .collect();
        let TrustedProxies(trusted) = TrustedProxies::from_ref(state);
        Ok(ClientIp(client_ip(peer, &forwarded, &trusted)))
    }
}

fn client_ip(peer: Option<IpAddr>, forwarded: &[&str], trusted: &[ipnet::IpNet]) -> Option<IpAddr> {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    let peer = peer?;
    if !is_trusted(&peer) {
        return Some(peer);
    }
    let mut client = peer;
    for hop in forwarded.iter().rev() {
        let Ok(ip) = hop.trim().parse::<IpAddr>() else { break };
        client = ip;
        if !is_trusted(&ip) {
            break;
        }
    }
    Some(client)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted: Vec<ipnet::IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        // A client talking to us directly cannot choose its address.
        assert_eq!(client_ip(Some(ip("203.0.113.9")), &["1.2.3.4"], &trusted), Some(ip("203.0.113.9")));
        // Through the balancer: the right-most untrusted hop, not what the client prepended.
        assert_eq!(
            client_ip(Some(ip("10.0.0.2")), &["1.2.3.4", " 198.51.100.7", "10.0.0.9"], &trusted),
            Some(ip("198.51.100.7"))
        );
        // A proxy that sent no header: the proxy is all we know.
        assert_eq!(client_ip(Some(ip("10.0.0.2")), &[], &trusted), Some(ip("10.0.0.2")));
        assert_eq!(client_ip(None, &["1.2.3.4"], &trusted), None);
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        fn hop() -> impl Strategy<Value = String> {
            prop_oneof![
                any::<[u8; 4]>().prop_map(|o| std::net::Ipv4Addr::from(o).to_string()),
                any::<[u8; 16]>().prop_map(|o| std::net::Ipv6Addr::from(o).to_string()),
                Just("10.0.0.9".to_string()),
                Just(" 10.1.2.3 ".to_string()),
                Just("unknown".to_string()),
                any::<String>(),
            ]
        }

        proptest! {
            #![proptest_config(crate::fuzzing::config(256))]

            /// The answer is the peer or an address a trusted proxy reported, never anything
            /// else a client wrote.
            #[test]
            fn the_client_is_the_peer_or_a_forwarded_hop(
                peer in prop::option::of(prop_oneof![Just(ip("10.0.0.2")), Just(ip("203.0.113.9"))]),
                hops in prop::collection::vec(hop(), 0..8),
            ) {
                let trusted: Vec<ipnet::IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
                let forwarded: Vec<&str> = hops.iter().map(String::as_str).collect();
                let found = client_ip(peer, &forwarded, &trusted);
                prop_assert_eq!(found.is_some(), peer.is_some());
                if let (Some(found), Some(peer)) = (found, peer) {
                    let from_hops = hops.iter().any(|h| h.trim().parse::<IpAddr>().ok() == Some(found));
                    prop_assert!(found == peer || (trusted[0].contains(&peer) && from_hops));
                }
            }
        }
    }
}
