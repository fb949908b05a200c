//! The broker: everything about upstream login systems. Connectors (OpenID Connect, CAS,
//! LDAP) behind one interface ([`connector::Connector`]), the chooser page, login attempts
//! bound to the browser, the gateway's own password form for directory logins, the claim
//! mapping and the assurance (`acr`) of each login. Its output is one verified
//! [`UpstreamIdentity`], whatever the protocol.
//!
//! Must not: touch accounts or sessions (that is `login`'s job) or answer RPs (`provider`).

mod cas;
mod cas_logout;
pub mod cas_xml;
mod claims;
mod connector;
mod error;
mod http_client;
mod ldap;
mod oidc;
pub mod probe;
mod throttle;
mod upstream_key;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use serde_json::json;

pub use claims::{assurance, map_claims, normalize_date};
pub use error::BrokerError;
pub use http_client::UpstreamHttp;

use crate::accounts::Profile;
use crate::app::AppState;
use crate::config::{Protocol, SecretString, Settings};
use crate::provider::records as parked;
use crate::session::read_cookie;
use crate::state::{Class, StateStore, hashed_key, random_handle};
use crate::web::{self, Lang};
use connector::{Answer, AttemptData, Connector, StartContext, Started, VerifiedLogin};
pub use connector::{CallbackParams, Endpoint, Posted, Received, UpstreamLogout};
pub use oidc::BACKCHANNEL_EVENT;

/// Writes a security-relevant upstream event to the audit log (tracing target
/// `sso_gateway::audit`, so log pipelines can keep it apart).
pub(crate) fn audit(event: &str, upstream: &str, detail: &str) {
    tracing::warn!(target: "sso_gateway::audit", event, upstream, detail, "upstream security event");
}

/// A person as verified by an upstream, with claims mapped to gateway names.
#[derive(Debug, Clone)]
pub struct UpstreamIdentity {
    pub upstream: String,
    pub subject: String,
    pub profile: Profile,
    pub acr: String,
    pub amr: Vec<String>,
    /// The upstream's own session id (for upstream logout), when it sends one.
    pub upstream_session: Option<String>,
}

/// One login attempt at an upstream, stored under the hash of its id until it is answered.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct LoginAttempt {
    upstream: String,
    request_id: String,
    /// SHA-256 of the browser-binding cookie of the browser that started the attempt.
    browser: String,
    #[serde(default)]
    lang: Lang,
    #[serde(flatten)]
    data: AttemptData,
}

/// The login form of a password upstream, as posted.
#[derive(Debug, Deserialize)]
pub struct PasswordForm {
    /// The attempt id: single-use, bound to the browser, so it is also the CSRF token.
    #[serde(default)]
    pub attempt: String,
    #[serde(default)]
    pub username: String,
    #[serde(default = "empty_secret")]
    pub password: SecretString,
}

fn empty_secret() -> SecretString {
    SecretString::from("")
}

/// How a posted password form ends.
pub enum PasswordOutcome {
    /// Verified: the identity and the parked request to resume.
    Verified(Box<UpstreamIdentity>, String),
    /// Show the form again (wrong credentials, locked out), with a fresh attempt.
    Retry(Response),
    /// An error page; the link goes back to the chooser when the request is alive.
    Failed(BrokerError, Option<String>),
}

/// Upstream connectors by id, in configuration order (the chooser's order).
#[derive(Clone)]
pub struct Broker {
    connectors: Arc<BTreeMap<String, Arc<dyn Connector>>>,
    order: Arc<Vec<String>>,
    store: StateStore,
    attempt_ttl: Duration,
    browser_cookie: String,
    secure_cookies: bool,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker").field("upstreams", &self.order).finish()
    }
}

impl Broker {
    /// Builds one connector per configured upstream.
    pub fn new(settings: &Settings, http: reqwest::Client, store: StateStore) -> Result<Self, BrokerError> {
        let issuer = settings.issuer();
        let https = issuer.starts_with("https://");
        let mut connectors: BTreeMap<String, Arc<dyn Connector>> = BTreeMap::new();
        for u in &settings.upstreams {
            let connector: Arc<dyn Connector> = match &u.protocol {
                Protocol::Oidc(oidc) => {
                    Arc::new(oidc::OidcConnector::new(u.clone(), oidc.clone(), http.clone(), issuer))
                }
                Protocol::Cas(cas) => Arc::new(cas::CasConnector::new(
                    u.clone(),
                    cas.clone(),
                    http.clone(),
                    issuer,
                    // What connectors store (ticket markers, failure counters) is made for
                    // anonymous requests.
                    store.with_class(Class::Anonymous),
                    settings.lifetimes.login_attempt,
                )?),
                Protocol::Ldap(ldap) => Arc::new(ldap::LdapConnector::new(
                    u.clone(),
                    ldap.clone(),
                    settings.outbound.ca_file.as_deref(),
                    store.with_class(Class::Anonymous),
                )?),
            };
            connectors.insert(u.id.clone(), connector);
        }
        Ok(Broker {
            connectors: Arc::new(connectors),
            order: Arc::new(settings.upstreams.iter().map(|u| u.id.clone()).collect()),
            store,
            attempt_ttl: settings.lifetimes.login_attempt,
            browser_cookie: if https { "__Host-sso_browser".into() } else { "sso_browser".into() },
            secure_cookies: https,
        })
    }

    /// Whether a login through upstream `id` can end at one of the `accepted` acr values
    /// (no requirement when `accepted` is empty).
    pub fn upstream_can_satisfy(&self, id: &str, accepted: &[String]) -> bool {
        self.connectors.get(id).is_some_and(|c| {
            accepted.is_empty() || c.settings().acr_values().iter().any(|a| accepted.iter().any(|x| x == a))
        })
    }

    /// Whether any upstream can satisfy the `accepted` acr values.
    pub fn can_satisfy(&self, accepted: &[String]) -> bool {
        self.order.iter().any(|id| self.upstream_can_satisfy(id, accepted))
    }

    /// The upstream's Vietnamese display name (for pages), or its id.
    pub fn display_name(&self, id: &str) -> String {
        self.connectors.get(id).map(|c| c.settings().name_vi.clone()).unwrap_or_else(|| id.to_string())
    }

    /// The upstream's Vietnamese and English display names, or its id twice.
    pub fn names(&self, id: &str) -> (String, String) {
        self.connectors
            .get(id)
            .map(|c| (c.settings().name_vi.clone(), c.settings().name_en.clone()))
            .unwrap_or_else(|| (id.to_string(), id.to_string()))
    }

    /// Every upstream in the chooser's order: `(id, Vietnamese name, English name)`.
    pub fn upstream_names(&self) -> Vec<(String, String, String)> {
        self.order
            .iter()
            .filter_map(|id| self.connectors.get(id))
            .map(|c| c.settings())
            .map(|s| (s.id.clone(), s.name_vi.clone(), s.name_en.clone()))
            .collect()
    }

    pub fn has_upstream(&self, id: &str) -> bool {
        self.connectors.contains_key(id)
    }

    /// The upstream's logout URL for RP-Initiated Logout, if it supports it.
    pub async fn logout_url(
        &self,
        upstream: &str,
        post_logout_redirect: &str,
        state: &str,
    ) -> Option<String> {
        self.connectors.get(upstream)?.logout_url(post_logout_redirect, state).await
    }

    /// Reads and verifies a message upstream `upstream` POSTed (its logout messages), through
    /// its connector; a message with an id (`jti`) is accepted once.
    pub async fn receive(&self, upstream: &str, posted: Posted<'_>) -> Result<Received, BrokerError> {
        let received = self.connector(upstream)?.receive(posted).await?;
        let Received::Logout(logout) = &received;
        if let Some(jti) = &logout.jti {
            let ttl = Duration::from_secs((logout.exp - posted.now).clamp(60, 24 * 3600) as u64);
            let key = hashed_key(&format!("upstream-logout-jti:{upstream}"), jti);
            if !self.store.put_new(&key, Vec::new(), ttl).await? {
                return Err(BrokerError::InvalidLogoutToken {
                    upstream: upstream.into(),
                    detail: "replayed jti".into(),
                });
            }
        }
        Ok(received)
    }

    fn connector(&self, id: &str) -> Result<&Arc<dyn Connector>, BrokerError> {
        self.connectors.get(id).ok_or_else(|| BrokerError::UnknownUpstream(id.to_string()))
    }

    /// Stores a login attempt under the hash of its id: an anonymous record (nobody has
    /// logged in yet), alive for `lifetimes.login_attempt`.
    async fn save_attempt(&self, id: &str, attempt: &LoginAttempt) -> Result<(), crate::state::StoreError> {
        self.store
            .with_class(Class::Anonymous)
            .put_json(&hashed_key("attempt", id), attempt, self.attempt_ttl)
            .await
    }

    /// Takes the attempt `id` (single use) and checks it belongs to `upstream` and to this
    /// browser.
    async fn take_attempt(
        &self,
        upstream: &str,
        id: Option<&str>,
        headers: &HeaderMap,
    ) -> Result<LoginAttempt, (BrokerError, Option<String>)> {
        let Some(id) = id.filter(|s| !s.is_empty() && s.len() <= 256) else {
            return Err((BrokerError::MalformedCallback, None));
        };
        let attempt: LoginAttempt = self
            .store
            .take_json(&hashed_key("attempt", id))
            .await
            .map_err(|e| (e.into(), None))?
            .ok_or((BrokerError::AttemptNotFound, None))?;
        let retry = Some(format!("/login?request={}", attempt.request_id));
        if attempt.upstream != upstream {
            return Err((
                BrokerError::UpstreamMismatch { path: upstream.into(), attempt: attempt.upstream },
                retry,
            ));
        }
        let browser = read_cookie(headers, &self.browser_cookie).map(|b| hashed_key("browser", &b));
        if browser.as_deref() != Some(attempt.browser.as_str()) {
            return Err((BrokerError::BrowserMismatch, retry));
        }
        Ok(attempt)
    }

    /// The verified login, with claims mapped and its assurance worked out.
    fn identity(&self, connector: &dyn Connector, login: VerifiedLogin) -> UpstreamIdentity {
        let settings = connector.settings();
        let profile = map_claims(&settings.claims, &login.claims);
        let acr = assurance(settings, &login.claims);
        let mut amr = login.amr;
        if amr.is_empty() {
            amr.push("pwd".into());
        }
        UpstreamIdentity {
            upstream: settings.id.clone(),
            subject: login.subject,
            profile,
            acr,
            amr,
            upstream_session: login.session_id,
        }
    }

    /// Redeems the callback of a redirect login (OIDC, CAS): the attempt must exist, belong
    /// to this upstream and this browser; the upstream's answer must verify. Returns the
    /// identity and the id of the parked authorization request to resume.
    pub async fn finish(
        &self,
        upstream: &str,
        params: &CallbackParams,
        headers: &HeaderMap,
    ) -> Result<(UpstreamIdentity, String), (BrokerError, Option<String>)> {
        let connector = self.connector(upstream).map_err(|e| (e, None))?;
        // Each protocol carries the attempt id its own way (OIDC `state`, CAS `attempt`).
        let id = connector.callback_attempt(params);
        let attempt = self.take_attempt(upstream, id, headers).await?;
        let retry = Some(format!("/login?request={}", attempt.request_id));
        let login =
            connector.finish(&attempt.data, Answer::Redirect(params)).await.map_err(|e| (e, retry))?;
        Ok((self.identity(connector.as_ref(), login), attempt.request_id))
    }

    /// Checks a posted password form (LDAP). Wrong credentials and lockouts show the form
    /// again with a fresh attempt; nothing about the password is kept.
    pub async fn finish_password(
        &self,
        upstream: &str,
        form: &PasswordForm,
        headers: &HeaderMap,
        client_ip: Option<IpAddr>,
    ) -> PasswordOutcome {
        let connector = match self.connector(upstream) {
            Ok(c) => c.clone(),
            Err(e) => return PasswordOutcome::Failed(e, None),
        };
        let attempt = match self.take_attempt(upstream, Some(&form.attempt), headers).await {
            Ok(a) => a,
            Err((e, retry)) => return PasswordOutcome::Failed(e, retry),
        };
        let retry = Some(format!("/login?request={}", attempt.request_id));
        let username: String = form.username.trim().chars().take(256).collect();
        let answer = Answer::Password { username: &username, password: &form.password, client_ip };
        match connector.finish(&attempt.data, answer).await {
            Ok(login) => PasswordOutcome::Verified(
                Box::new(self.identity(connector.as_ref(), login)),
                attempt.request_id,
            ),
            Err(e) if e.form_message().is_some() => {
                let id = random_handle();
                let again = LoginAttempt { data: AttemptData::default(), ..attempt };
                if let Err(e) = self.save_attempt(&id, &again).await {
                    return PasswordOutcome::Failed(e.into(), None);
                }
                let status = e.status();
                let mut page = self.password_page(
                    connector.as_ref(),
                    &id,
                    &again.request_id,
                    again.lang,
                    &username,
                    e.form_message(),
                    status,
                );
                if let Ok(Some(req)) = parked::parked(&self.store, &again.request_id).await {
                    web::allow_form_targets(&mut page, &[&req.redirect_uri]);
                }
                PasswordOutcome::Retry(page)
            }
            Err(e) => PasswordOutcome::Failed(e, retry),
        }
    }

    /// The gateway's own login form for a password upstream.
    #[allow(clippy::too_many_arguments)]
    fn password_page(
        &self,
        connector: &dyn Connector,
        attempt: &str,
        request: &str,
        lang: Lang,
        username: &str,
        message: Option<(&'static str, &'static str)>,
        status: StatusCode,
    ) -> Response {
        let s = connector.settings();
        let other = match lang {
            Lang::Vi => Lang::En,
            Lang::En => Lang::Vi,
        };
        let html = web::render(
            "password_login.html",
            json!({
                "lang": lang.code(),
                "name_vi": s.name_vi,
                "name_en": s.name_en,
                "action": format!("/upstream/{}/login", s.id),
                "attempt": attempt,
                "username": username,
                "error_vi": message.map(|m| m.0),
                "error_en": message.map(|m| m.1),
                "chooser_href": format!("/login?request={request}&lang={}", lang.code()),
                "other_lang_href": format!("/upstream/{}/login?request={request}&lang={}", s.id, other.code()),
            }),
        );
        web::html_response(status, html, web::CSP_PAGE)
    }
}

pub fn router() -> Router<AppState> {
    Router::new().route("/login", get(chooser)).route("/upstream/{id}/login", get(start))
}

#[derive(Debug, Deserialize)]
pub struct ChooserQuery {
    #[serde(default)]
    request: String,
    lang: Option<Lang>,
}

/// The chooser: which former system holds your account?
async fn chooser(
    State(app): State<AppState>,
    web::params::Query(q): web::params::Query<ChooserQuery>,
) -> Response {
    let req = match parked::parked(&app.store, &q.request).await {
        Ok(Some(req)) => req,
        Ok(None) => return BrokerError::RequestExpired.page(None).into_response(),
        Err(e) => return BrokerError::Store(e).page(None).into_response(),
    };
    let lang = q.lang.unwrap_or(req.lang);
    let broker = &app.broker;
    // Step-up: only the systems whose logins reach the required assurance are offered.
    let upstreams: Vec<_> = broker
        .order
        .iter()
        .filter(|id| broker.upstream_can_satisfy(id, &req.acr_accepted))
        .filter_map(|id| broker.connectors.get(id))
        .map(|c| c.settings())
        .map(|s| {
            json!({
                "href": format!("/upstream/{}/login?request={}&lang={}", s.id, q.request, lang.code()),
                "name_vi": s.name_vi,
                "name_en": s.name_en,
            })
        })
        .collect();
    let other = match lang {
        Lang::Vi => Lang::En,
        Lang::En => Lang::Vi,
    };
    let client_name = app.clients.get(&req.client_id).map(|c| c.name.clone());
    let html = web::render(
        "chooser.html",
        json!({
            "lang": lang.code(),
            "upstreams": upstreams,
            "client_name": client_name,
            "step_up": !req.acr_accepted.is_empty(),
            "other_lang_href": format!("/login?request={}&lang={}", q.request, other.code()),
        }),
    );
    web::html_response(StatusCode::OK, html, web::CSP_PAGE)
}

#[derive(Debug, Deserialize)]
pub struct StartQuery {
    #[serde(default)]
    request: String,
    lang: Option<Lang>,
}

/// Starts a login attempt at one upstream and sends the browser there.
async fn start(
    State(app): State<AppState>,
    Path(id): Path<String>,
    web::params::Query(q): web::params::Query<StartQuery>,
    headers: HeaderMap,
) -> Response {
    let broker = &app.broker;
    let retry = Some(format!("/login?request={}", q.request));
    let connector = match broker.connector(&id) {
        Ok(c) => c,
        Err(e) => return e.page(retry).into_response(),
    };
    let req = match parked::parked(&app.store, &q.request).await {
        Ok(Some(req)) => req,
        Ok(None) => return BrokerError::RequestExpired.page(None).into_response(),
        Err(e) => return BrokerError::Store(e).page(None).into_response(),
    };
    if !broker.upstream_can_satisfy(&id, &req.acr_accepted) {
        return BrokerError::InsufficientAssurance.page(retry).into_response();
    }
    let lang = q.lang.unwrap_or(req.lang);
    let attempt_id = random_handle();
    let ctx = StartContext {
        attempt: &attempt_id,
        force_login: req.force_login,
        max_age: req.max_age,
        login_hint: req.login_hint.as_deref(),
        lang,
    };
    let (url, data) = match connector.start(ctx).await {
        Ok(Started::Redirect { url, data }) => (Some(url), data),
        Ok(Started::PasswordForm { data }) => (None, data),
        Err(e) => {
            tracing::warn!(upstream = %id, error = %e, "cannot start upstream login");
            return e.page(retry).into_response();
        }
    };
    let (browser, new_cookie) = match read_cookie(&headers, &broker.browser_cookie) {
        Some(b) => (b, None),
        None => {
            let b = random_handle();
            (b.clone(), Some(b))
        }
    };
    let attempt = LoginAttempt {
        upstream: id.clone(),
        request_id: q.request.clone(),
        browser: hashed_key("browser", &browser),
        lang,
        data,
    };
    if let Err(e) = broker.save_attempt(&attempt_id, &attempt).await {
        return BrokerError::Store(e).page(None).into_response();
    }
    let mut res = match url {
        Some(url) => Redirect::to(&url).into_response(),
        None => {
            let mut page = broker.password_page(
                connector.as_ref(),
                &attempt_id,
                &q.request,
                lang,
                req.login_hint.as_deref().unwrap_or(""),
                None,
                StatusCode::OK,
            );
            // A right password is answered by a redirect to the RP (form-action applies).
            web::allow_form_targets(&mut page, &[&req.redirect_uri]);
            page
        }
    };
    res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(value) = new_cookie {
        let cookie = cookie::Cookie::build((broker.browser_cookie.clone(), value))
            .path("/")
            .http_only(true)
            .secure(broker.secure_cookies)
            .same_site(cookie::SameSite::Lax)
            .build();
        if let Ok(v) = HeaderValue::from_str(&cookie.to_string()) {
            res.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_attempt_keeps_the_connectors_data_opaque_and_in_its_old_place() {
        // As earlier releases stored it: the connector's data beside the broker's fields.
        let stored = r#"{"upstream":"hcm","request_id":"r","browser":"b","lang":"vi","oidc":{"nonce":"n","pkce_verifier":"v"}}"#;
        let attempt: LoginAttempt = serde_json::from_str(stored).unwrap();
        assert_eq!(attempt.upstream, "hcm");
        let oidc: oidc::OidcAttempt = attempt.data.read("oidc").unwrap();
        assert_eq!(oidc.nonce, "n");
        let again: serde_json::Value = serde_json::to_value(&attempt).unwrap();
        assert_eq!(again["oidc"]["pkce_verifier"], "v");
        assert!(again.get("data").is_none(), "flattened, not nested");
    }
}
