//! A small relying party for the demo: a "Cổng dịch vụ công"-style portal page that logs in
//! through the gateway with the `openidconnect` crate (code flow + PKCE) and shows who is
//! logged in and their claims. Demo tooling: part of the gateway binary only with the `demo`
//! feature, never of the library.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use minijinja::Environment;
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata, CoreUserInfoClaims};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, OAuth2TokenResponse,
    PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope, TokenResponse,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use sso_gateway::broker::UpstreamHttp;
use sso_gateway::state::random_handle;

/// A demo user shown on the page so a person can click through.
#[derive(Debug, Clone, Serialize)]
pub struct DemoUser {
    pub system: String,
    pub username: String,
    pub password: String,
    pub name: String,
    pub kind: String,
}

#[derive(Clone)]
pub struct DemoRp {
    pub title: String,
    pub client_id: String,
    pub client_secret: String,
    pub gateway: String,
    pub base_url: String,
    pub other_app: Option<(String, String)>,
    pub users: Vec<DemoUser>,
}

struct Pending {
    verifier: String,
    nonce: String,
}

#[derive(Clone, Serialize)]
struct LoggedIn {
    id_token_claims: Value,
    userinfo: Value,
    id_token: String,
}

struct Inner {
    rp: DemoRp,
    http: UpstreamHttp,
    templates: Environment<'static>,
    pending: Mutex<HashMap<String, Pending>>,
    sessions: Mutex<HashMap<String, LoggedIn>>,
}

const COOKIE: &str = "demo_rp_session";

pub fn router(rp: DemoRp, http: reqwest::Client) -> Router {
    let mut templates = Environment::new();
    templates.set_auto_escape_callback(|_| minijinja::AutoEscape::Html);
    if let Err(e) = templates.add_template("portal.html", include_str!("templates/portal.html")) {
        tracing::error!(error = %e, "demo template does not parse");
    }
    let inner = Arc::new(Inner {
        rp,
        http: UpstreamHttp::new(http, std::time::Duration::from_secs(10)),
        templates,
        pending: Mutex::new(HashMap::new()),
        sessions: Mutex::new(HashMap::new()),
    });
    Router::new()
        .route("/", get(home))
        .route("/login", get(login))
        .route("/callback", get(callback))
        .route("/logout", get(logout))
        .route("/backchannel-logout", axum::routing::post(backchannel_logout))
        .with_state(inner)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn page(status: StatusCode, html: String) -> Response {
    (status, Html(html)).into_response()
}

fn error(msg: &str) -> Response {
    page(
        StatusCode::BAD_GATEWAY,
        format!(
            "<!doctype html><meta charset=utf-8><h1>Lỗi / Error</h1><p>{}</p><p><a href=\"/\">Quay lại / Back</a></p>",
            html_escape(msg)
        ),
    )
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

async fn client(
    inner: &Inner,
) -> Result<
    CoreClient<
        openidconnect::EndpointSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointMaybeSet,
        openidconnect::EndpointMaybeSet,
    >,
    String,
> {
    let issuer = IssuerUrl::new(inner.rp.gateway.clone()).map_err(|e| e.to_string())?;
    let metadata = CoreProviderMetadata::discover_async(issuer, &inner.http.as_client())
        .await
        .map_err(|e| e.to_string())?;
    let redirect = RedirectUrl::new(format!("{}/callback", inner.rp.base_url)).map_err(|e| e.to_string())?;
    Ok(CoreClient::from_provider_metadata(
        metadata,
        ClientId::new(inner.rp.client_id.clone()),
        Some(ClientSecret::new(inner.rp.client_secret.clone())),
    )
    .set_redirect_uri(redirect))
}

async fn home(State(inner): State<Arc<Inner>>, headers: HeaderMap) -> Response {
    let session = sso_gateway::session::read_cookie(&headers, COOKIE)
        .and_then(|id| lock(&inner.sessions).get(&id).cloned());
    let pretty = |v: &Value| serde_json::to_string_pretty(v).unwrap_or_default();
    let ctx = json!({
        "title": inner.rp.title,
        "logged_in": session.is_some(),
        "name": session.as_ref().and_then(|s| s.userinfo.get("name").or(s.id_token_claims.get("name")).cloned()),
        "sub": session.as_ref().and_then(|s| s.id_token_claims.get("sub").cloned()),
        "idp": session.as_ref().and_then(|s| s.id_token_claims.get("idp").cloned()),
        "id_token_claims": session.as_ref().map(|s| pretty(&s.id_token_claims)),
        "userinfo": session.as_ref().map(|s| pretty(&s.userinfo)),
        "users": inner.rp.users,
        "account_url": format!("{}/account", inner.rp.gateway),
        "other_app": inner.rp.other_app.as_ref().map(|(name, url)| json!({"name": name, "url": url})),
    });
    match inner.templates.get_template("portal.html").and_then(|t| t.render(ctx)) {
        Ok(html) => page(StatusCode::OK, html),
        Err(e) => error(&e.to_string()),
    }
}

#[derive(Deserialize)]
struct LoginQuery {
    prompt: Option<String>,
}

async fn login(State(inner): State<Arc<Inner>>, Query(q): Query<LoginQuery>) -> Response {
    let client = match client(&inner).await {
        Ok(c) => c,
        Err(e) => return error(&format!("gateway discovery failed: {e}")),
    };
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let mut req = client
        .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
        .set_pkce_challenge(challenge);
    for s in ["profile", "email", "phone", "official", "national_id"] {
        req = req.add_scope(Scope::new(s.into()));
    }
    if q.prompt.as_deref() == Some("login") {
        req = req.add_prompt(openidconnect::core::CoreAuthPrompt::Login);
    }
    let (url, state, nonce) = req.url();
    lock(&inner.pending).insert(
        state.secret().clone(),
        Pending { verifier: verifier.secret().clone(), nonce: nonce.secret().clone() },
    );
    Redirect::to(url.as_str()).into_response()
}

#[derive(Deserialize)]
struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

async fn callback(State(inner): State<Arc<Inner>>, Query(q): Query<CallbackQuery>) -> Response {
    if let Some(e) = q.error {
        return error(&format!("{e}: {}", q.error_description.unwrap_or_default()));
    }
    let Some(pending) = q.state.and_then(|s| lock(&inner.pending).remove(&s)) else {
        return error("unknown state");
    };
    let Some(code) = q.code else { return error("no code") };
    let client = match client(&inner).await {
        Ok(c) => c,
        Err(e) => return error(&e),
    };
    let http = inner.http.as_client();
    let exchange = match client.exchange_code(AuthorizationCode::new(code)) {
        Ok(r) => r.set_pkce_verifier(PkceCodeVerifier::new(pending.verifier)),
        Err(e) => return error(&e.to_string()),
    };
    let tokens = match exchange.request_async(&http).await {
        Ok(t) => t,
        Err(e) => return error(&format!("token exchange failed: {e}")),
    };
    let Some(id_token) = tokens.id_token() else { return error("no id_token") };
    let claims = match id_token.claims(&client.id_token_verifier(), &Nonce::new(pending.nonce)) {
        Ok(c) => c.clone(),
        Err(e) => return error(&format!("ID token rejected: {e}")),
    };
    let raw_claims = id_token_payload(&id_token.to_string())
        .unwrap_or_else(|| serde_json::to_value(&claims).unwrap_or(Value::Null));
    let userinfo: Value =
        match client.user_info(tokens.access_token().clone(), Some(claims.subject().clone())) {
            Ok(req) => match req.request_async(&http).await {
                Ok(info) => {
                    let info: CoreUserInfoClaims = info;
                    serde_json::to_value(info).unwrap_or(Value::Null)
                }
                Err(e) => json!({ "error": e.to_string() }),
            },
            Err(e) => json!({ "error": e.to_string() }),
        };
    let id = random_handle();
    lock(&inner.sessions).insert(
        id.clone(),
        LoggedIn { id_token_claims: raw_claims, userinfo, id_token: id_token.to_string() },
    );
    let mut res = Redirect::to("/").into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("{COOKIE}={id}; Path=/; HttpOnly; SameSite=Lax")) {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    res
}

/// The verified ID token's payload, to show every claim (after verification above).
fn id_token_payload(jwt: &str) -> Option<Value> {
    use base64::Engine;
    let payload = jwt.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).ok()?;
    serde_json::from_slice(&bytes).ok()
}

#[derive(Deserialize)]
struct BackchannelForm {
    logout_token: String,
}

/// OIDC Back-Channel Logout receiver: the gateway says a session ended; forget it here too.
async fn backchannel_logout(
    State(inner): State<Arc<Inner>>,
    axum::extract::Form(form): axum::extract::Form<BackchannelForm>,
) -> Response {
    match verify_logout_token(&inner, &form.logout_token).await {
        Ok(sid) => {
            let mut sessions = lock(&inner.sessions);
            let before = sessions.len();
            sessions
                .retain(|_, s| s.id_token_claims.get("sid").and_then(Value::as_str) != Some(sid.as_str()));
            tracing::info!(app = %inner.rp.client_id, ended = before - sessions.len(), "back-channel logout received");
            StatusCode::OK.into_response()
        }
        Err(e) => {
            tracing::warn!(error = %e, "logout token rejected");
            StatusCode::BAD_REQUEST.into_response()
        }
    }
}

async fn verify_logout_token(inner: &Inner, token: &str) -> Result<String, String> {
    let jwks: jsonwebtoken::jwk::JwkSet = inner.http.as_client()(
        http::Request::get(format!("{}/jwks", inner.rp.gateway))
            .body(Vec::new())
            .map_err(|e| e.to_string())?,
    )
    .await
    .map_err(|e| e.to_string())
    .and_then(|res| serde_json::from_slice(res.body()).map_err(|e| e.to_string()))?;
    let header = jsonwebtoken::decode_header(token).map_err(|e| e.to_string())?;
    let jwk = header.kid.as_deref().and_then(|k| jwks.find(k)).ok_or("unknown kid")?;
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
    let mut validation = jsonwebtoken::Validation::new(header.alg);
    validation.set_audience(&[&inner.rp.client_id]);
    validation.set_issuer(&[&inner.rp.gateway]);
    let claims = jsonwebtoken::decode::<Value>(token, &key, &validation).map_err(|e| e.to_string())?.claims;
    if claims.get("events").and_then(|e| e.get(sso_gateway::broker::BACKCHANNEL_EVENT)).is_none() {
        return Err("not a logout token".into());
    }
    claims.get("sid").and_then(Value::as_str).map(str::to_string).ok_or_else(|| "no sid".into())
}

async fn logout(State(inner): State<Arc<Inner>>, headers: HeaderMap) -> Response {
    let session =
        sso_gateway::session::read_cookie(&headers, COOKIE).and_then(|id| lock(&inner.sessions).remove(&id));
    let mut url = match url::Url::parse(&format!("{}/logout", inner.rp.gateway)) {
        Ok(u) => u,
        Err(e) => return error(&e.to_string()),
    };
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("client_id", &inner.rp.client_id);
        q.append_pair("post_logout_redirect_uri", &format!("{}/", inner.rp.base_url));
        if let Some(s) = &session {
            q.append_pair("id_token_hint", &s.id_token);
        }
    }
    let mut res = Redirect::to(url.as_str()).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("{COOKIE}=; Path=/; Max-Age=0")) {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    res
}
