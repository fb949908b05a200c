//! The one interface every upstream protocol implements.
//!
//! A connector knows how to start a login at its upstream and how to verify what comes back;
//! the broker around it owns everything the protocols share: the login attempt (its id,
//! single use, binding to the browser, expiry), the claim mapping and the assurance (`acr`)
//! of the result. Adding a protocol means a new implementation of [`Connector`] and a new
//! arm in [`super::Broker::new`]; nothing outside the broker changes.
//!
//! Two shapes of login exist:
//! - redirect protocols (OIDC, CAS) send the browser to the upstream and get it back at
//!   `/upstream/{id}/callback`;
//! - password protocols (LDAP) have the gateway show its own form, posted to
//!   `/upstream/{id}/login`.

use std::net::IpAddr;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::error::BrokerError;
use super::{CallbackQuery, UpstreamLogout};
use crate::config::{SecretString, UpstreamSettings};
use crate::web::Lang;

/// What a connector is told when a login attempt starts.
#[derive(Debug, Clone)]
pub struct StartContext<'a> {
    /// The attempt's random id. Redirect protocols must get it back with the answer (OIDC
    /// `state`, CAS `attempt` in the service URL); the password form carries it as its CSRF
    /// token.
    pub attempt: &'a str,
    /// The RP asked for a fresh login (`prompt=login`).
    pub force_login: bool,
    /// The RP's `max_age`, when it set one.
    pub max_age: Option<i64>,
    pub login_hint: Option<&'a str>,
    pub lang: Lang,
}

/// How the browser continues after a connector started an attempt.
#[derive(Debug)]
pub enum Started {
    /// Send the browser to the upstream.
    Redirect { url: String, data: AttemptData },
    /// Show the gateway's own login form.
    PasswordForm { data: AttemptData },
}

/// Per-protocol secrets kept with the attempt until the answer arrives.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AttemptData {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oidc: Option<super::oidc::OidcAttempt>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cas: Option<super::cas::CasAttempt>,
}

/// What came back from the person or the upstream.
#[derive(Debug)]
pub enum Answer<'a> {
    /// The upstream redirected the browser to `/upstream/{id}/callback`.
    Redirect(&'a CallbackQuery),
    /// The person posted the gateway's login form.
    Password { username: &'a str, password: &'a SecretString, client_ip: Option<IpAddr> },
}

/// A message from an upstream that one of its sessions ended.
#[derive(Debug, Clone, Copy)]
pub enum LogoutMessage<'a> {
    /// OIDC Back-Channel Logout token.
    BackchannelToken(&'a str),
    /// CAS single logout: the SAML `LogoutRequest` document, and the address it came from
    /// (the client address, behind `inbound.trusted_proxies`).
    CasLogoutRequest { document: &'a str, from: Option<IpAddr> },
}

/// The verified result of an upstream login, before claim mapping.
#[derive(Debug, Clone, Default)]
pub struct VerifiedLogin {
    pub subject: String,
    /// Every attribute the upstream asserted, by its own names.
    pub claims: Map<String, Value>,
    pub amr: Vec<String>,
    /// Handle of the upstream's session, for upstream-initiated logout.
    pub session_id: Option<String>,
}

/// An upstream protocol.
pub trait Connector: Send + Sync {
    fn settings(&self) -> &UpstreamSettings;

    /// Begins a login attempt.
    fn start<'a>(&'a self, ctx: StartContext<'a>) -> BoxFuture<'a, Result<Started, BrokerError>>;

    /// Verifies the answer to the attempt whose data is `data`. The broker has already
    /// checked the attempt exists, is unused, belongs to this upstream and this browser.
    fn finish<'a>(
        &'a self,
        data: &'a AttemptData,
        answer: Answer<'a>,
    ) -> BoxFuture<'a, Result<VerifiedLogin, BrokerError>>;

    /// Where to send the browser to end the upstream session too, if the upstream can.
    fn logout_url<'a>(
        &'a self,
        _post_logout_redirect: &'a str,
        _state: &'a str,
    ) -> BoxFuture<'a, Option<String>> {
        Box::pin(async { None })
    }

    /// Verifies an upstream-initiated logout message.
    fn verify_logout<'a>(
        &'a self,
        _message: LogoutMessage<'a>,
        _now: i64,
    ) -> BoxFuture<'a, Result<UpstreamLogout, BrokerError>> {
        let upstream = self.settings().id.clone();
        Box::pin(async move {
            Err(BrokerError::InvalidLogoutToken {
                upstream,
                detail: "this upstream sends no such logout".into(),
            })
        })
    }
}
