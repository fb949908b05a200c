//! The broker: everything about upstream login systems. Connectors (OIDC now; CAS, SAML and
//! LDAP plug in beside it), the chooser page, login attempts bound to the browser, and the
//! claim mapping. Its output is one verified [`UpstreamIdentity`].
//!
//! Must not: touch accounts or sessions (that is `login`'s job) or answer RPs (`provider`).

mod claims;
mod error;
mod http_client;
mod oidc;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use serde_json::json;

pub use claims::{map_claims, normalize_date};
pub use error::BrokerError;
pub use http_client::UpstreamHttp;

use crate::accounts::Profile;
use crate::app::AppState;
use crate::config::UpstreamSettings;
use crate::provider::records as parked;
use crate::session::read_cookie;
use crate::state::{StateStore, hashed_key, random_handle};
use crate::web::{self, Lang};
pub use oidc::{BACKCHANNEL_EVENT, UpstreamLogout};
use oidc::{OidcAttempt, OidcConnector};

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

/// One login attempt at an upstream, stored under its `state` until the callback.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct LoginAttempt {
    upstream: String,
    request_id: String,
    /// SHA-256 of the browser-binding cookie of the browser that started the attempt.
    browser: String,
    oidc: OidcAttempt,
}

/// Upstream connectors by id, in configuration order (the chooser's order).
#[derive(Clone)]
pub struct Broker {
    connectors: Arc<BTreeMap<String, Arc<OidcConnector>>>,
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
    pub fn new(
        upstreams: &[UpstreamSettings],
        http: reqwest::Client,
        gateway_issuer: &str,
        store: StateStore,
        attempt_ttl: Duration,
    ) -> Self {
        let https = gateway_issuer.starts_with("https://");
        let connectors = upstreams
            .iter()
            .map(|u| (u.id.clone(), Arc::new(OidcConnector::new(u.clone(), http.clone(), gateway_issuer))))
            .collect();
        Broker {
            connectors: Arc::new(connectors),
            order: Arc::new(upstreams.iter().map(|u| u.id.clone()).collect()),
            store,
            attempt_ttl,
            browser_cookie: if https { "__Host-sso_browser".into() } else { "sso_browser".into() },
            secure_cookies: https,
        }
    }

    /// The upstream's Vietnamese display name (for pages), or its id.
    pub fn display_name(&self, id: &str) -> String {
        self.connectors.get(id).map(|c| c.settings.name_vi.clone()).unwrap_or_else(|| id.to_string())
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

    /// Verifies an upstream's Back-Channel Logout token, including replay (`jti`).
    pub async fn verify_logout_token(
        &self,
        upstream: &str,
        token: &str,
        now: i64,
    ) -> Result<UpstreamLogout, BrokerError> {
        let connector = self.connector(upstream)?;
        let logout = connector.verify_logout_token(token, now).await?;
        let ttl = Duration::from_secs((logout.exp - now).clamp(60, 24 * 3600) as u64);
        let key = hashed_key(&format!("upstream-logout-jti:{upstream}"), &logout.jti);
        if !self.store.put_new(&key, Vec::new(), ttl).await? {
            return Err(BrokerError::InvalidLogoutToken {
                upstream: upstream.into(),
                detail: "replayed jti".into(),
            });
        }
        Ok(logout)
    }

    fn connector(&self, id: &str) -> Result<&Arc<OidcConnector>, BrokerError> {
        self.connectors.get(id).ok_or_else(|| BrokerError::UnknownUpstream(id.to_string()))
    }

    /// Redeems the callback of an upstream login: the attempt must exist, belong to this
    /// upstream and this browser; the upstream's tokens must verify. Returns the identity and
    /// the id of the parked authorization request to resume.
    pub async fn finish(
        &self,
        upstream: &str,
        query: &CallbackQuery,
        headers: &HeaderMap,
    ) -> Result<(UpstreamIdentity, String), (BrokerError, Option<String>)> {
        let connector = self.connector(upstream).map_err(|e| (e, None))?;
        let Some(state) = query.state.as_deref().filter(|s| !s.is_empty() && s.len() <= 256) else {
            return Err((BrokerError::MalformedCallback, None));
        };
        let attempt: LoginAttempt = self
            .store
            .take_json(&hashed_key("attempt", state))
            .await
            .map_err(|e| (e.into(), None))?
            .ok_or((BrokerError::AttemptNotFound, None))?;
        let retry = Some(format!("/login?request={}", attempt.request_id));
        let fail = |e: BrokerError| (e, retry.clone());
        if attempt.upstream != upstream {
            return Err(fail(BrokerError::UpstreamMismatch {
                path: upstream.into(),
                attempt: attempt.upstream,
            }));
        }
        let browser = read_cookie(headers, &self.browser_cookie).map(|b| hashed_key("browser", &b));
        if browser.as_deref() != Some(attempt.browser.as_str()) {
            return Err(fail(BrokerError::BrowserMismatch));
        }
        if let Some(error) = &query.error {
            return Err(fail(BrokerError::UpstreamDenied {
                upstream: upstream.into(),
                error: error.chars().take(64).collect(),
                description: query.error_description.clone().unwrap_or_default().chars().take(256).collect(),
            }));
        }
        // RFC 9207: when the upstream names itself, it must be the one we sent the user to.
        if let Some(iss) = &query.iss
            && iss.trim_end_matches('/') != connector.settings.issuer.trim_end_matches('/')
        {
            return Err(fail(BrokerError::UpstreamMismatch { path: upstream.into(), attempt: iss.clone() }));
        }
        let code = query
            .code
            .as_deref()
            .filter(|c| !c.is_empty() && c.len() <= 4096)
            .ok_or_else(|| fail(BrokerError::MalformedCallback))?;
        let login = connector.finish(code, &attempt.oidc).await.map_err(fail)?;
        let profile = map_claims(&connector.settings.claims, &login.claims);
        let mut amr = login.amr;
        if amr.is_empty() {
            amr.push("pwd".into());
        }
        let identity = UpstreamIdentity {
            upstream: upstream.to_string(),
            subject: login.subject,
            profile,
            acr: connector.settings.acr.clone(),
            amr,
            upstream_session: login.session_id,
        };
        Ok((identity, attempt.request_id))
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
async fn chooser(State(app): State<AppState>, Query(q): Query<ChooserQuery>) -> Response {
    let req = match parked::parked(&app.store, &q.request).await {
        Ok(Some(req)) => req,
        Ok(None) => return BrokerError::RequestExpired.page(None).into_response(),
        Err(e) => return BrokerError::Store(e).page(None).into_response(),
    };
    let lang = q.lang.unwrap_or(req.lang);
    let broker = &app.broker;
    let upstreams: Vec<_> = broker
        .order
        .iter()
        .filter_map(|id| broker.connectors.get(id))
        .map(|c| {
            json!({
                "href": format!("/upstream/{}/login?request={}&lang={}", c.settings.id, q.request, lang.code()),
                "name_vi": c.settings.name_vi,
                "name_en": c.settings.name_en,
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
    Query(q): Query<StartQuery>,
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
    let lang = q.lang.unwrap_or(req.lang);
    let (url, state, oidc) =
        match connector.start(req.force_login, req.login_hint.as_deref(), lang.code()).await {
            Ok(v) => v,
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
        oidc,
    };
    if let Err(e) = broker.store.put_json(&hashed_key("attempt", &state), &attempt, broker.attempt_ttl).await
    {
        return BrokerError::Store(e).page(None).into_response();
    }
    let mut res = Redirect::to(&url).into_response();
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

/// Query parameters of an upstream's redirect back to `/upstream/{id}/callback`.
#[derive(Debug, Default, Deserialize)]
pub struct CallbackQuery {
    pub code: Option<String>,
    pub state: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
    pub iss: Option<String>,
}
