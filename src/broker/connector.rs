//! The one interface every upstream protocol implements.
//!
//! A connector knows how to start a login at its upstream, how to read and verify what comes
//! back to `/upstream/{id}/callback` (GET and POST), and how to verify its upstream's logout
//! messages. It owns its protocol's parameters, its attempt data (opaque to the broker) and
//! its section of the configuration ([`crate::config::Protocol`]). The broker around it owns
//! everything the protocols share: the login attempt (its id, single use, binding to the
//! browser, expiry), the claim mapping and the assurance (`acr`) of the result. Adding a
//! protocol means a new implementation of [`Connector`], its config variant and an arm in
//! [`super::Broker::new`]; nothing outside the broker changes.
//!
//! Two shapes of login exist:
//! - redirect protocols (OIDC, CAS) send the browser to the upstream and get it back at
//!   `/upstream/{id}/callback`;
//! - password protocols (LDAP) have the gateway show its own form, posted to
//!   `/upstream/{id}/login`.
//!
//! Must not: read or write the login attempts, touch accounts or sessions, or build pages
//! (errors are [`BrokerError`]s, mapped once in `error.rs`).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use futures::future::BoxFuture;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::error::BrokerError;
use crate::config::{SecretString, UpstreamSettings};
use crate::state::StateStore;
use crate::web::Lang;

/// What the broker hands every connector it builds (the parts all protocols share).
#[derive(Debug, Clone, Copy)]
pub struct ConnectorSetup<'a> {
    /// The gateway's outbound HTTP client (a connector adds its upstream's timeout).
    pub http: &'a reqwest::Client,
    /// The gateway's issuer URL, without a trailing slash: callback URLs are built on it.
    pub issuer: &'a str,
    /// Where a connector keeps what it remembers between requests (made for anonymous
    /// requests: ticket markers, failure counters, certificate outcomes).
    pub store: &'a StateStore,
    /// How long a login attempt lives (`lifetimes.login_attempt`).
    pub attempt_ttl: Duration,
}

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

/// A connector's own data, kept with the attempt until the answer arrives. Opaque to the
/// broker: only the connector that wrote it reads it back, under its own key (`oidc`, `cas`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(transparent)]
pub struct AttemptData(Map<String, Value>);

impl AttemptData {
    /// `value` under `key`. (Plain data structures always serialize; were one not to, the
    /// attempt would carry nothing and its answer be refused as unknown.)
    pub fn of<T: Serialize>(key: &str, value: &T) -> Self {
        let mut map = Map::new();
        if let Ok(v) = serde_json::to_value(value) {
            map.insert(key.into(), v);
        }
        AttemptData(map)
    }

    /// What was stored under `key`; an attempt without it is not one of this connector's.
    pub fn read<T: DeserializeOwned>(&self, key: &str) -> Result<T, BrokerError> {
        let value = self.0.get(key).cloned().ok_or(BrokerError::AttemptNotFound)?;
        serde_json::from_value(value).map_err(|_| BrokerError::AttemptNotFound)
    }
}

/// The parameters of a redirect back to `GET /upstream/{id}/callback`, strictly decoded (no
/// repeated names, no control characters: a bilingual 400 page otherwise). Which of them
/// matter is the connector's business ([`CallbackParams::read`]).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(transparent)]
pub struct CallbackParams(BTreeMap<String, String>);

impl CallbackParams {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// The parameters as a connector's own query type (unknown names are ignored).
    pub fn read<T: DeserializeOwned>(&self) -> Result<T, BrokerError> {
        let object: Map<String, Value> =
            self.0.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
        serde_json::from_value(Value::Object(object)).map_err(|_| BrokerError::MalformedCallback)
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for CallbackParams {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        CallbackParams(iter.into_iter().map(|(k, v)| (k.into(), v.into())).collect())
    }
}

/// What came back from the person or the upstream.
#[derive(Debug)]
pub enum Answer<'a> {
    /// The upstream redirected the browser to `/upstream/{id}/callback`.
    Redirect(&'a CallbackParams),
    /// The person posted the gateway's login form.
    Password { username: &'a str, password: &'a SecretString, client_ip: Option<IpAddr> },
}

/// Where an upstream POSTed a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `/upstream/{id}/callback` (CAS: the service URL).
    Callback,
    /// `/upstream/{id}/backchannel-logout` (OpenID Connect Back-Channel Logout).
    BackchannelLogout,
}

/// A message an upstream POSTed to the gateway, as received.
#[derive(Debug, Clone, Copy)]
pub struct Posted<'a> {
    pub at: Endpoint,
    /// The form body, undecoded: each protocol decodes its own.
    pub body: &'a [u8],
    /// The sender's address (the client address, behind `inbound.trusted_proxies`).
    pub from: Option<IpAddr>,
    /// The gateway's clock, Unix seconds.
    pub now: i64,
}

/// A verified upstream logout: which upstream session or subject ended.
#[derive(Debug, Clone)]
pub struct UpstreamLogout {
    pub sid: Option<String>,
    pub sub: Option<String>,
    /// Unique id of the message, for replay detection (OIDC logout tokens).
    pub jti: Option<String>,
    pub exp: i64,
}

/// What a POSTed message meant, once verified.
#[derive(Debug, Clone)]
pub enum Received {
    /// One of the upstream's sessions ended (or all of one subject's).
    Logout(UpstreamLogout),
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

    /// The attempt id a redirect back to the callback carries (OIDC `state`, CAS `attempt`),
    /// None when the protocol has no redirect answer or the parameters carry none.
    fn callback_attempt<'p>(&self, _params: &'p CallbackParams) -> Option<&'p str> {
        None
    }

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

    /// Reads and verifies a message the upstream POSTed (its logout messages). Replay of a
    /// message with an id (`jti`) is checked by the broker.
    fn receive<'a>(&'a self, posted: Posted<'a>) -> BoxFuture<'a, Result<Received, BrokerError>> {
        let upstream = self.settings().id.clone();
        Box::pin(async move { Err(BrokerError::NotAccepted { upstream, at: posted.at }) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Mine {
        service: String,
        renew: bool,
    }

    #[test]
    fn attempt_data_is_read_back_only_under_its_own_key() {
        let mine = Mine { service: "https://gw/cb?attempt=a".into(), renew: true };
        let data = AttemptData::of("cas", &mine);
        assert_eq!(data.read::<Mine>("cas").unwrap(), mine);
        assert!(matches!(data.read::<Mine>("oidc"), Err(BrokerError::AttemptNotFound)));
        assert!(matches!(AttemptData::default().read::<Mine>("cas"), Err(BrokerError::AttemptNotFound)));
    }

    #[test]
    fn attempt_data_keeps_the_stored_shape_of_earlier_releases() {
        // Attempts stored before the data became opaque: `{"cas": {...}}` beside the broker's
        // own fields. They still read, and new ones are stored the same way.
        let stored = r#"{"cas":{"service":"s","renew":false}}"#;
        let data: AttemptData = serde_json::from_str(stored).unwrap();
        assert_eq!(data.read::<Mine>("cas").unwrap(), Mine { service: "s".into(), renew: false });
        assert_eq!(serde_json::to_value(&data).unwrap(), serde_json::from_str::<Value>(stored).unwrap());
    }

    #[test]
    fn callback_params_are_read_into_a_connectors_own_query() {
        #[derive(Deserialize)]
        struct Q {
            code: Option<String>,
            state: Option<String>,
        }
        let params: CallbackParams = [("code", "c"), ("ticket", "ST-1")].into_iter().collect();
        let q: Q = params.read().unwrap();
        assert_eq!(q.code.as_deref(), Some("c"));
        assert!(q.state.is_none(), "absent is None; foreign parameters are ignored");
        assert_eq!(params.get("ticket"), Some("ST-1"));
    }
}
