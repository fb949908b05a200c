//! The broker: everything about upstream login systems. Connectors (OpenID Connect, CAS,
//! LDAP) behind one interface ([`connector::Connector`]), the chooser page, login attempts
//! bound to the browser, the gateway's own password form for directory logins, the claim
//! mapping and the assurance (`acr`) of each login. Its output is one verified
//! [`UpstreamIdentity`], whatever the protocol.
//!
//! Its pages get [`BrokerState`]: the connectors and a read-only window on the provider's
//! parked requests ([`ParkedRequests`]). The links into a login are built in [`urls`] only;
//! the provider asks for them through [`UpstreamCatalog`]. Every exchange with an upstream
//! finishes in one place (`Broker::exchange`), which records the upstream's status
//! ([`status`]) for operators.
//!
//! Must not: touch accounts or sessions (that is `login`'s job), answer RPs (`provider`), or
//! read the client registry or the parked-request records.

mod cas;
mod cas_logout;
pub mod cas_xml;
mod certificate;
mod claim_mapping;
mod connector;
mod error;
mod http_client;
mod ldap;
mod oidc;
pub mod probe;
pub mod status;
mod throttle;
mod upstream_key;
pub mod urls;

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

pub use certificate::{CRL_TIMEOUT_FACTOR, fetch_crl, forwarded_chain};
pub use claim_mapping::{assurance, map_claims, normalize_date};
pub use error::{BrokerError, CertificateFailure};
pub use http_client::UpstreamHttp;

use crate::accounts::Profile;
use crate::config::{Protocol, SecretString, Settings};
use crate::ids::UpstreamId;
use crate::provider::store_records::ParkedRequests;
use crate::session::read_cookie;
use crate::state::{Class, StateStore, hashed_key, random_handle};
use crate::web::{self, Lang};
use connector::{Answer, AttemptData, Connector, ConnectorSetup, StartContext, Started, VerifiedLogin};
pub use connector::{CallbackParams, Endpoint, Posted, Received, UpstreamLogout};
pub use oidc::BACKCHANNEL_EVENT;
pub use urls::LoginLink;

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
    /// The upstream verifies the national ID numbers it asserts (`linking.trust_national_id`):
    /// how far the account linking rules may trust this identity.
    pub trusts_national_id: bool,
}

/// One login attempt at an upstream, stored under the hash of its id until it is answered.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct LoginAttempt {
    upstream: String,
    /// The handle of the parked authorization request this login answers (stored under its
    /// older name, which replicas of an older version read).
    #[serde(rename = "request_id")]
    parked_id: String,
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
    /// Show the form again (wrong credentials, locked out), with a fresh attempt, for parked
    /// request `request` (whose redirect URI the page's `form-action` must still allow: a
    /// right password is answered by a redirect to the RP).
    Retry { page: Response, request: String },
    /// An error page; the link goes back to the chooser when the request is alive.
    Failed(BrokerError, Option<String>),
}

/// What the provider may ask of the broker when it answers an authorization request: which
/// upstreams exist, which assurance (`acr`) each can reach, and where the login of a parked
/// request starts. Plain data, built once from the connectors (cheap to clone).
#[derive(Debug, Clone, Default)]
pub struct UpstreamCatalog {
    /// Upstream id and the acr values its logins can end at, in the chooser's order.
    entries: Arc<Vec<(String, Vec<String>)>>,
}

impl UpstreamCatalog {
    /// A catalog of these upstreams (id, reachable acr values), in this order.
    pub fn new(entries: Vec<(String, Vec<String>)>) -> Self {
        UpstreamCatalog { entries: Arc::new(entries) }
    }

    pub fn has_upstream(&self, id: &str) -> bool {
        self.entries.iter().any(|(u, _)| u == id)
    }

    /// The upstream ids, in the chooser's order.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(id, _)| id.as_str())
    }

    /// Whether a login through upstream `id` can end at one of the `accepted` acr values
    /// (no requirement when `accepted` is empty).
    pub fn upstream_can_satisfy(&self, id: &str, accepted: &[String]) -> bool {
        self.entries
            .iter()
            .any(|(u, acrs)| u == id && (accepted.is_empty() || acrs.iter().any(|a| accepted.contains(a))))
    }

    /// Whether any upstream can satisfy the `accepted` acr values.
    pub fn can_satisfy(&self, accepted: &[String]) -> bool {
        self.entries.iter().any(|(id, _)| self.upstream_can_satisfy(id, accepted))
    }

    /// Where the login of parked request `request` starts: the hinted upstream, or the
    /// chooser.
    pub fn login_link<'a>(&self, idp_hint: Option<&'a str>, request: &'a str) -> LoginLink<'a> {
        LoginLink::to(idp_hint, request)
    }
}

/// Upstream connectors by id, in configuration order (the chooser's order).
#[derive(Clone)]
pub struct Broker {
    connectors: Arc<BTreeMap<String, Arc<dyn Connector>>>,
    /// Ids and reachable assurance, in configuration order (the chooser's order).
    catalog: UpstreamCatalog,
    /// The certificate upstreams again, for their certificate step (`/upstream/{id}/certificate`).
    certificates: Arc<BTreeMap<String, Arc<certificate::CertificateConnector>>>,
    store: StateStore,
    /// The gateway's clock (injected in tests), for what the broker records.
    clock: crate::clock::Clock,
    attempt_ttl: Duration,
    browser_cookie: String,
    secure_cookies: bool,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker").field("upstreams", &self.catalog.ids().collect::<Vec<_>>()).finish()
    }
}

impl Broker {
    /// Builds one connector per configured upstream.
    pub fn new(
        settings: &Settings,
        http: reqwest::Client,
        store: StateStore,
        clock: crate::clock::Clock,
    ) -> Result<Self, BrokerError> {
        let issuer = settings.issuer();
        let https = issuer.starts_with("https://");
        let mut connectors: BTreeMap<String, Arc<dyn Connector>> = BTreeMap::new();
        let mut certificates = BTreeMap::new();
        // What connectors store (ticket markers, failure counters) is made for anonymous
        // requests.
        let connector_store = store.with_class(Class::Anonymous);
        let setup = ConnectorSetup {
            http: &http,
            issuer,
            store: &connector_store,
            attempt_ttl: settings.lifetimes.login_attempt,
        };
        for u in &settings.upstreams {
            let connector: Arc<dyn Connector> = match &u.protocol {
                Protocol::Oidc(oidc) => Arc::new(oidc::OidcConnector::new(u.clone(), oidc.clone(), &setup)),
                Protocol::Cas(cas) => Arc::new(cas::CasConnector::new(u.clone(), cas.clone(), &setup)?),
                Protocol::Ldap(ldap) => Arc::new(ldap::LdapConnector::new(
                    u.clone(),
                    ldap.clone(),
                    settings.outbound.ca_file.as_deref(),
                    connector_store.clone(),
                )?),
                Protocol::Certificate(cert) => {
                    let c = Arc::new(certificate::CertificateConnector::new(
                        u.clone(),
                        cert.clone(),
                        settings.certificate.url.as_deref(),
                        &setup,
                    )?);
                    certificates.insert(u.id.clone(), c.clone());
                    c
                }
            };
            connectors.insert(u.id.clone(), connector);
        }
        Ok(Broker {
            connectors: Arc::new(connectors),
            catalog: UpstreamCatalog::new(
                settings
                    .upstreams
                    .iter()
                    .map(|u| (u.id.clone(), u.acr_values().into_iter().map(str::to_string).collect()))
                    .collect(),
            ),
            certificates: Arc::new(certificates),
            store,
            clock,
            attempt_ttl: settings.lifetimes.login_attempt,
            browser_cookie: if https { "__Host-sso_browser".into() } else { "sso_browser".into() },
            secure_cookies: https,
        })
    }

    /// Whether a login through upstream `id` can end at one of the `accepted` acr values
    /// (no requirement when `accepted` is empty).
    pub fn upstream_can_satisfy(&self, id: &str, accepted: &[String]) -> bool {
        self.catalog.upstream_can_satisfy(id, accepted)
    }

    /// Whether any upstream logs in with a client certificate.
    pub fn has_certificate_upstreams(&self) -> bool {
        !self.certificates.is_empty()
    }

    /// Loads the CRLs of every certificate upstream (at start-up, so the first logins do not
    /// wait for them).
    pub async fn warm_up_certificates(&self, now: i64) {
        for c in self.certificates.values() {
            c.warm_up(now).await;
        }
    }

    /// What the provider may know of the upstreams (see [`UpstreamCatalog`]).
    pub fn catalog(&self) -> UpstreamCatalog {
        self.catalog.clone()
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
        self.catalog
            .ids()
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
    pub async fn receive(&self, upstream: &UpstreamId, posted: Posted<'_>) -> Result<Received, BrokerError> {
        let received = self.connector(upstream.as_str())?.receive(posted).await?;
        let Received::Logout(logout) = &received;
        if let Some(jti) = &logout.jti {
            let ttl = Duration::from_secs((logout.exp - posted.now).clamp(60, 24 * 3600) as u64);
            let key = hashed_key(&format!("upstream-logout-jti:{upstream}"), jti);
            if !self.store.put_new(&key, Vec::new(), ttl).await? {
                return Err(BrokerError::InvalidLogoutToken {
                    upstream: upstream.to_string(),
                    detail: "replayed jti".into(),
                });
            }
        }
        Ok(received)
    }

    fn connector(&self, id: &str) -> Result<&Arc<dyn Connector>, BrokerError> {
        self.connectors.get(id).ok_or_else(|| BrokerError::UnknownUpstream(id.to_string()))
    }

    /// The upstream id in a URL path (`/upstream/{id}/…`), read once where the request comes
    /// in: text no upstream can have is an unknown upstream, as a configured-nowhere id is.
    pub fn upstream_id(raw: &str) -> Result<UpstreamId, BrokerError> {
        UpstreamId::parse(raw).map_err(|_| BrokerError::UnknownUpstream(raw.to_string()))
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
        upstream: &UpstreamId,
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
        let retry = Some(LoginLink::chooser(&attempt.parked_id).into());
        if attempt.upstream != *upstream {
            return Err((
                BrokerError::UpstreamMismatch { path: upstream.to_string(), attempt: attempt.upstream },
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
            trusts_national_id: settings.linking.trust_national_id,
        }
    }

    /// The one place an exchange with an upstream completes or fails: the connector checks
    /// the answer (redeeming a code or ticket, binding to the directory, …) and the outcome
    /// and its latency go into the upstream's status ([`status`]), shared by the replicas.
    /// An answer the person caused (a wrong password, a refusal) is a working upstream; a
    /// failure is an error the gateway answers with a 5xx (unreachable, its own error, an
    /// answer that does not verify).
    async fn exchange(
        &self,
        connector: &dyn Connector,
        data: &AttemptData,
        answer: Answer<'_>,
    ) -> Result<VerifiedLogin, BrokerError> {
        let started = std::time::Instant::now();
        let result = connector.finish(data, answer).await;
        let failure = match &result {
            Err(e) if e.status().is_server_error() => Some(e.to_string()),
            _ => None,
        };
        let outcome = failure.as_deref().map_or(Ok(()), Err);
        let now = self.clock.now();
        status::record(&self.store, &connector.settings().id, now, started.elapsed(), outcome).await;
        result
    }

    /// Redeems the callback of a redirect login (OIDC, CAS): the attempt must exist, belong
    /// to this upstream and this browser; the upstream's answer must verify. Returns the
    /// identity and the id of the parked authorization request to resume.
    pub async fn finish(
        &self,
        upstream: &UpstreamId,
        params: &CallbackParams,
        headers: &HeaderMap,
    ) -> Result<(UpstreamIdentity, String), (BrokerError, Option<String>)> {
        let connector = self.connector(upstream.as_str()).map_err(|e| (e, None))?;
        // Each protocol carries the attempt id its own way (OIDC `state`, CAS `attempt`).
        let id = connector.callback_attempt(params);
        let attempt = self.take_attempt(upstream, id, headers).await?;
        let retry = Some(LoginLink::chooser(&attempt.parked_id).into());
        let login = self
            .exchange(connector.as_ref(), &attempt.data, Answer::Redirect(params))
            .await
            .map_err(|e| (e, retry))?;
        Ok((self.identity(connector.as_ref(), login), attempt.parked_id))
    }

    /// Checks a posted password form (LDAP). Wrong credentials and lockouts show the form
    /// again with a fresh attempt; nothing about the password is kept.
    pub async fn finish_password(
        &self,
        upstream: &UpstreamId,
        form: &PasswordForm,
        headers: &HeaderMap,
        client_ip: Option<IpAddr>,
    ) -> PasswordOutcome {
        let connector = match self.connector(upstream.as_str()) {
            Ok(c) => c.clone(),
            Err(e) => return PasswordOutcome::Failed(e, None),
        };
        let attempt = match self.take_attempt(upstream, Some(&form.attempt), headers).await {
            Ok(a) => a,
            Err((e, retry)) => return PasswordOutcome::Failed(e, retry),
        };
        let retry = Some(LoginLink::chooser(&attempt.parked_id).into());
        let username: String = form.username.trim().chars().take(256).collect();
        let answer = Answer::Password { username: &username, password: &form.password, client_ip };
        match self.exchange(connector.as_ref(), &attempt.data, answer).await {
            Ok(login) => PasswordOutcome::Verified(
                Box::new(self.identity(connector.as_ref(), login)),
                attempt.parked_id,
            ),
            Err(e) if e.form_message().is_some() => {
                let id = random_handle();
                let again = LoginAttempt { data: AttemptData::default(), ..attempt };
                if let Err(e) = self.save_attempt(&id, &again).await {
                    return PasswordOutcome::Failed(e.into(), None);
                }
                let status = e.status();
                let form = PasswordPage {
                    attempt: &id,
                    parked_id: &again.parked_id,
                    lang: again.lang,
                    username: &username,
                    message: e.form_message(),
                };
                let page = password_page(connector.as_ref(), form, status);
                PasswordOutcome::Retry { page, request: again.parked_id }
            }
            Err(e) => PasswordOutcome::Failed(e, retry),
        }
    }
}

/// What the gateway's own login form of a password upstream shows besides the upstream.
struct PasswordPage<'a> {
    /// The login attempt the form answers (also its CSRF token).
    attempt: &'a str,
    /// The parked authorization request (for the links back to the chooser).
    parked_id: &'a str,
    lang: Lang,
    /// The name to fill in (what was typed, or the RP's `login_hint`).
    username: &'a str,
    /// The error to show (Vietnamese, English).
    message: Option<(&'static str, &'static str)>,
}

/// The gateway's own login form for a password upstream.
fn password_page(connector: &dyn Connector, form: PasswordPage<'_>, status: StatusCode) -> Response {
    let PasswordPage { attempt, parked_id, lang, username, message } = form;
    let s = connector.settings();
    let html = web::render(
        "password_login.html",
        json!({
            "lang": lang.code(),
            "name_vi": s.name_vi,
            "name_en": s.name_en,
            "action": urls::password_form_action(&s.id),
            "attempt": attempt,
            "username": username,
            "error_vi": message.map(|m| m.0),
            "error_en": message.map(|m| m.1),
            "chooser_href": LoginLink::chooser(parked_id).in_lang(lang).to_string(),
            "other_lang_href": LoginLink::upstream(&s.id, parked_id).in_lang(lang.other()).to_string(),
        }),
    );
    web::html_response(status, html, web::CSP_PAGE)
}

/// What the broker's pages get: the connectors, and a read-only window on the provider's
/// parked requests (never the client registry or the record format).
pub type BrokerState = crate::PartState<BrokerParts>;

/// What the certificate step uses: the certificate connectors, the settings of a forwarded
/// certificate (`[certificate] forwarded_header`, `[inbound] trusted_proxies`) and the clock.
pub struct CertificateStepParts {
    pub broker: Broker,
    pub settings: Arc<Settings>,
    pub clock: crate::clock::Clock,
}

/// The certificate step's state (`/upstream/{id}/certificate`, on the certificate host).
pub type CertificateStepState = crate::PartState<CertificateStepParts>;

pub struct BrokerParts {
    pub broker: Broker,
    pub parked: ParkedRequests,
}

pub fn router<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    BrokerState: axum::extract::FromRef<S>,
    CertificateStepState: axum::extract::FromRef<S>,
{
    Router::new()
        .route("/login", get(chooser))
        .route("/upstream/{id}/login", get(start))
        // Behind a TLS-terminating proxy, the certificate host's requests reach this listener.
        .merge(certificate_router())
}

/// The certificate step of certificate login alone: all the gateway's own certificate
/// listener serves (`[certificate] listen`), so that no other page makes the browser ask
/// for a certificate.
pub fn certificate_router<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    CertificateStepState: axum::extract::FromRef<S>,
{
    Router::new().route("/upstream/{id}/certificate", get(present_certificate))
}

#[derive(Debug, Deserialize)]
pub struct PresentQuery {
    #[serde(default)]
    attempt: String,
}

/// The certificate step: the certificate the browser presented in the TLS handshake (the
/// gateway's own listener) or that a trusted proxy forwarded is checked for the attempt, and
/// the browser goes back to the gateway's callback.
async fn present_certificate(
    State(app): State<CertificateStepState>,
    Path(id): Path<String>,
    web::params::Query(q): web::params::Query<PresentQuery>,
    request: axum::extract::Request,
) -> Response {
    let Some(connector) = app.broker.certificates.get(&id) else {
        return BrokerError::UnknownUpstream(id).page(None).into_response();
    };
    let peer =
        request.extensions().get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip());
    let chain = match request.extensions().get::<crate::tls::PeerCertificates>().filter(|p| !p.is_empty()) {
        Some(presented) => presented.chain().to_vec(),
        None => forwarded_certificate(&app.settings, &id, peer, request.headers()),
    };
    match connector.present(&q.attempt, &chain, peer, app.clock.now()).await {
        Ok(url) => {
            let mut res = Redirect::to(&url).into_response();
            res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            res
        }
        Err(e) => {
            tracing::warn!(upstream = %id, error = %e, "certificate step refused");
            e.page(None).into_response()
        }
    }
}

/// The chain a TLS-terminating proxy forwarded in `certificate.forwarded_header`, believed
/// only when the peer is one of `inbound.trusted_proxies` (anyone else could write the
/// header); empty otherwise.
fn forwarded_certificate(
    settings: &Settings,
    upstream: &str,
    peer: Option<IpAddr>,
    headers: &HeaderMap,
) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    let Some(name) = &settings.certificate.forwarded_header else { return Vec::new() };
    let Some(value) = headers.get(name.as_str()) else { return Vec::new() };
    let trusted = peer.is_some_and(|ip| settings.inbound.trusted_proxies.iter().any(|n| n.contains(&ip)));
    if !trusted {
        let from = peer.map(|ip| ip.to_string()).unwrap_or_else(|| "-".into());
        audit("certificate_header_untrusted", upstream, &format!("{name} from {from} ignored"));
        return Vec::new();
    }
    match value.to_str().map_err(|e| e.to_string()).and_then(forwarded_chain) {
        Ok(chain) => chain,
        Err(e) => {
            audit("certificate_header_unreadable", upstream, &e);
            Vec::new()
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct ChooserQuery {
    #[serde(default)]
    request: String,
    lang: Option<Lang>,
}

/// The chooser: which former system holds your account?
async fn chooser(
    State(app): State<BrokerState>,
    web::params::Query(q): web::params::Query<ChooserQuery>,
) -> Response {
    let req = match app.parked.pending_login(&q.request).await {
        Ok(Some(req)) => req,
        Ok(None) => return BrokerError::RequestExpired.page(None).into_response(),
        Err(e) => return BrokerError::Store(e).page(None).into_response(),
    };
    let lang = q.lang.unwrap_or(req.lang);
    let broker = &app.broker;
    // Step-up: only the systems whose logins reach the required assurance are offered.
    let upstreams: Vec<_> = broker
        .catalog
        .ids()
        .filter(|id| broker.upstream_can_satisfy(id, &req.acr_accepted))
        .filter_map(|id| broker.connectors.get(id))
        .map(|c| c.settings())
        .map(|s| {
            json!({
                "href": LoginLink::upstream(&s.id, &q.request).in_lang(lang).to_string(),
                "name_vi": s.name_vi,
                "name_en": s.name_en,
                "certificate": s.kind() == crate::config::UpstreamKind::Certificate,
            })
        })
        .collect();
    let client_name = req.client_name;
    let html = web::render(
        "chooser.html",
        json!({
            "lang": lang.code(),
            "upstreams": upstreams,
            "client_name": client_name,
            "step_up": !req.acr_accepted.is_empty(),
            "other_lang_href": LoginLink::chooser(&q.request).in_lang(lang.other()).to_string(),
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
    State(app): State<BrokerState>,
    Path(id): Path<String>,
    web::params::Query(q): web::params::Query<StartQuery>,
    headers: HeaderMap,
) -> Response {
    let broker = &app.broker;
    let retry = Some(LoginLink::chooser(&q.request).into());
    let connector = match broker.connector(&id) {
        Ok(c) => c,
        Err(e) => return e.page(retry).into_response(),
    };
    let req = match app.parked.pending_login(&q.request).await {
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
        parked_id: q.request.clone(),
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
            let form = PasswordPage {
                attempt: &attempt_id,
                parked_id: &q.request,
                lang,
                username: req.login_hint.as_deref().unwrap_or(""),
                message: None,
            };
            let mut page = password_page(connector.as_ref(), form, StatusCode::OK);
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
    fn an_upstream_id_in_a_path_is_read_once_and_bad_text_is_an_unknown_upstream() {
        assert_eq!(Broker::upstream_id("hcm").unwrap().as_str(), "hcm");
        for raw in ["HCM", "a/b", "", "x y"] {
            let e = Broker::upstream_id(raw).unwrap_err();
            assert!(matches!(&e, BrokerError::UnknownUpstream(id) if id == raw), "{e:?}");
            assert_eq!(e.status(), StatusCode::NOT_FOUND, "as for an id no upstream has");
        }
    }

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
