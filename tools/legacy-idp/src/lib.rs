//! `legacy-idp`: TEST AND DEMO TOOLING, a crate beside the product (`tools/legacy-idp`).
//!
//! A small, spec-compliant OpenID Provider (OIDC Core authorization code flow with PKCE S256,
//! discovery, JWKS, userinfo) that simulates one of the three old provincial login systems
//! (Ho Chi Minh City, Binh Duong, Ba Ria-Vung Tau). It exists only so that `sso-gateway demo`
//! and the integration tests have upstream providers to federate; it runs in-process on an
//! ephemeral port, or standalone via the `legacy-idp` binary.
//!
//! The gateway library (`sso_gateway`) never depends on this crate: only the `demo` command
//! (the gateway binary's optional `demo` feature), the integration tests, `sso-bench` and the
//! `legacy-idp` binary use it.
//!
//! Each instance serves one users file (`config/legacy/*.toml`, see [`LegacyIdpConfig`]),
//! signs ID tokens with an RSA 2048 key generated in memory at [`spawn`], keeps all state
//! (pending logins, codes, access tokens) in memory, and exposes [`Faults`] that tests flip
//! to make it misbehave in specific ways.
//!
//! Endpoints (Keycloak layout, under the issuer):
//! `/.well-known/openid-configuration`, `/protocol/openid-connect/{auth,token,userinfo,certs}`.
//!
//! With `protocol = "cas"` it is an Apereo CAS server instead (the former Ba Ria-Vung Tau
//! system), see [`cas`]: `{base}/login`, `{base}/p3/serviceValidate`, `{base}/serviceValidate`
//! and `{base}/logout`, which sends SAML single-logout requests to every service that
//! received a ticket in the ended CAS session.

mod cas;
mod config;
mod keys;
mod server;

pub use keys::IdpKeys;
#[cfg(test)]
mod tests;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use config::{LegacyClient, LegacyIdpConfig, LegacyProtocol, LegacyUser};
pub use server::LogoutTokenKind;

/// The shipped users files (`config/legacy/*.toml`), compiled in so the demo, the tests and
/// `sso-bench` run from any directory: the three former provinces' systems (Ba Ria-Vung
/// Tau's speaks CAS) and the national e-ID, as `(id, TOML text)`.
pub const SYSTEMS: [(&str, &str); 4] = [
    ("hcm", include_str!("../../../config/legacy/hcm.toml")),
    ("bd", include_str!("../../../config/legacy/bd.toml")),
    ("brvt", include_str!("../../../config/legacy/brvt.toml")),
    ("vneid", include_str!("../../../config/legacy/vneid.toml")),
];

/// Fault switches that tests flip at run time (all false by default).
#[derive(Default, Debug)]
pub struct Faults {
    /// Sign ID tokens with a different key while still naming the published `kid`.
    pub bad_signature: AtomicBool,
    /// ID token `aud` is `"another-client"`.
    pub wrong_audience: AtomicBool,
    /// ID token `nonce` is `"not-the-nonce"`.
    pub wrong_nonce: AtomicBool,
    /// ID token `iss` is `"http://evil.example"`.
    pub wrong_issuer: AtomicBool,
    /// ID token `exp` lies an hour in the past.
    pub expired_id_token: AtomicBool,
    /// ID token `auth_time` lies two hours in the past: the system ignored `prompt=login` /
    /// `max_age` and reused an old single sign-on session.
    pub stale_auth_time: AtomicBool,
    /// The token endpoint answers 200 `text/html` `<html>oops</html>`.
    pub garbage_token_response: AtomicBool,
    /// The token endpoint sleeps 30 s before answering.
    pub slow_token_response: AtomicBool,
    /// CAS: `/p3/serviceValidate` answers 404 (a CAS 2.0 server).
    pub cas2_only: AtomicBool,
    /// CAS: validation answers with broken XML.
    pub cas_malformed_xml: AtomicBool,
    /// CAS: validation answers with a 1 MiB body.
    pub cas_huge_body: AtomicBool,
    /// CAS: validation answers with a DOCTYPE defining nested entities ("billion laughs").
    pub cas_entity_expansion: AtomicBool,
    /// ID token header says `alg: none`, with no signature.
    pub id_token_alg_none: AtomicBool,
    /// ID token is HS256-signed with the published public key (JWK JSON) as the HMAC secret.
    pub id_token_hs256_public_key: AtomicBool,
    /// ID token signed by a key of the attacker's, named in the header by an unknown `kid`,
    /// a `jku` and an `x5u` pointing at `{issuer}/injected-jwks` and an embedded `jwk`.
    pub id_token_injected_key: AtomicBool,
}

/// A provider serving in a background task. Stops when [`shutdown`](Self::shutdown) is
/// called or when dropped.
#[derive(Debug)]
pub struct RunningLegacyIdp {
    pub addr: SocketAddr,
    /// `http://127.0.0.1:{port}{issuer_path}`, no trailing slash.
    pub issuer: String,
    pub faults: Arc<Faults>,
    shared: Arc<server::Shared>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl RunningLegacyIdp {
    /// A Back-Channel Logout token for the latest session of `username` at client
    /// `client_id` (the gateway), as this system would send it when the user logs out here.
    pub fn logout_token(
        &self,
        username: &str,
        client_id: &str,
        kind: LogoutTokenKind,
    ) -> anyhow::Result<String> {
        self.shared.logout_token(username, client_id, kind)
    }

    /// Sends a valid Back-Channel Logout token for `username` to `uri` (as the real system
    /// would after the user logged out there); returns the HTTP status.
    pub async fn send_backchannel_logout(
        &self,
        username: &str,
        client_id: &str,
        uri: &str,
    ) -> anyhow::Result<u16> {
        let token = self.logout_token(username, client_id, LogoutTokenKind::Valid)?;
        let body = serde_urlencoded::to_string([("logout_token", token)])?;
        let res = reqwest::Client::new()
            .post(uri)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await?;
        Ok(res.status().as_u16())
    }

    /// CAS mode: the service tickets issued so far, oldest first (tests replay them).
    pub fn cas_tickets_issued(&self) -> Vec<String> {
        cas::issued(&self.shared)
    }

    /// How many times the attacker's key set named by `id_token_injected_key` was fetched.
    pub fn injected_key_fetches(&self) -> usize {
        self.shared.injected_key_fetches.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// How many RP-initiated logouts this system received.
    pub fn logouts_received(&self) -> usize {
        self.shared.logouts.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Stops accepting connections at once; in-flight requests finish in the background.
    pub fn shutdown(self) {
        drop(self);
    }

    /// Like [`shutdown`](Self::shutdown), but waits until in-flight requests are done
    /// (which takes up to 30 s while `slow_token_response` holds a token request).
    pub async fn shutdown_and_wait(mut self) {
        self.signal_shutdown();
        if let Some(task) = self.task.take() {
            // A JoinError only means the task panicked or was cancelled: it is stopped either way.
            let _ = task.await;
        }
    }

    fn signal_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            // The receiver is gone only if the server already stopped.
            let _ = tx.send(());
        }
    }
}

impl Drop for RunningLegacyIdp {
    fn drop(&mut self) {
        self.signal_shutdown();
    }
}

/// Serves `config` on `listener` (already bound, e.g. to `127.0.0.1:0`) in a tokio task and
/// returns immediately. Generating the RSA keys takes a moment (done off the async threads).
pub async fn spawn(config: LegacyIdpConfig, listener: TcpListener) -> anyhow::Result<RunningLegacyIdp> {
    config.validate()?;
    let keys =
        tokio::task::spawn_blocking(IdpKeys::generate).await.context("key generation task failed")??;
    spawn_with_keys(config, listener, &keys).await
}

/// As [`spawn`], with keys made beforehand (a test suite makes them once per simulated system).
pub async fn spawn_with_keys(
    config: LegacyIdpConfig,
    listener: TcpListener,
    keys: &IdpKeys,
) -> anyhow::Result<RunningLegacyIdp> {
    config.validate()?;
    let addr = listener.local_addr().context("listener has no local address")?;
    let issuer = format!("http://{}{}", public_addr(addr), config.issuer_path);
    let kid = format!("{}-{}", config.id, server::random_token(6));
    let (key, rogue_key) = keys.load(&kid)?;

    let faults = Arc::new(Faults::default());
    let shared = Arc::new(server::Shared::new(config, issuer.clone(), faults.clone(), key, rogue_key)?);
    let app = match shared.config.protocol {
        config::LegacyProtocol::Oidc => server::router(shared.clone()),
        config::LegacyProtocol::Cas => cas::router(shared.clone()),
    };

    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let stop = async {
            // Either a signal or a dropped sender means stop.
            let _ = rx.await;
        };
        if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(stop).await {
            tracing::error!(error = %e, "legacy IdP server failed");
        }
    });
    tracing::info!(%issuer, "legacy IdP listening");
    Ok(RunningLegacyIdp { addr, issuer, faults, shared, shutdown: Some(tx), task: Some(task) })
}

/// The address to put in URLs: a wildcard bind address is reached via loopback.
fn public_addr(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        ip if ip.is_unspecified() && ip.is_ipv4() => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port())
        }
        ip if ip.is_unspecified() => SocketAddr::new(IpAddr::V6(std::net::Ipv6Addr::LOCALHOST), addr.port()),
        _ => addr,
    }
}
