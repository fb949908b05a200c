//! HTTP endpoints of the simulated provider: discovery, JWKS, authorization (login form),
//! token and userinfo, with Keycloak-style paths under the issuer.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, Header};
use rand::RngCore;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::Faults;
use super::config::{LegacyClient, LegacyIdpConfig};
use super::keys::SigningKey;

/// Endpoint paths relative to the issuer (Keycloak layout).
const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";
const AUTH_PATH: &str = "/protocol/openid-connect/auth";
const TOKEN_PATH: &str = "/protocol/openid-connect/token";
const USERINFO_PATH: &str = "/protocol/openid-connect/userinfo";
const CERTS_PATH: &str = "/protocol/openid-connect/certs";
const LOGOUT_PATH: &str = "/protocol/openid-connect/logout";
/// The attacker's key set that forged ID tokens point at (fault `id_token_injected_key`).
const INJECTED_JWKS_PATH: &str = "/injected-jwks";
/// The `events` member of a Back-Channel Logout token.
const BACKCHANNEL_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// How long a shown login form stays usable.
const PENDING_LIFETIME: Duration = Duration::from_secs(600);
/// Authorization codes are single-use and short-lived.
const CODE_LIFETIME: Duration = Duration::from_secs(60);
/// Lifetime of access tokens and ID tokens, in seconds.
const TOKEN_LIFETIME_SECS: u64 = 300;
/// How long the `slow_token_response` fault stalls the token endpoint.
const SLOW_TOKEN_DELAY: Duration = Duration::from_secs(30);

/// Claims the provider itself puts in ID tokens.
const PROTOCOL_CLAIMS: &[&str] =
    &["iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "sid", "amr", "acr", "at_hash"];

/// Everything the handlers share.
pub(crate) struct Shared {
    pub config: LegacyIdpConfig,
    pub issuer: String,
    pub faults: Arc<Faults>,
    pub key: SigningKey,
    /// A second key whose signatures must fail verification (fault `bad_signature`).
    pub rogue_key: SigningKey,
    pub templates: minijinja::Environment<'static>,
    pending: Mutex<HashMap<String, PendingAuth>>,
    codes: Mutex<HashMap<String, IssuedCode>>,
    tokens: Mutex<HashMap<String, AccessGrant>>,
    /// The latest session id handed out per username (for back-channel logout tokens).
    sessions: Mutex<HashMap<String, String>>,
    /// RP-initiated logouts received at the end-session endpoint.
    pub logouts: std::sync::atomic::AtomicUsize,
    /// Fetches of the attacker's key set (fault `id_token_injected_key`).
    pub injected_key_fetches: std::sync::atomic::AtomicUsize,
    /// CAS mode state.
    pub(crate) cas: super::cas::CasState,
}

/// An authorization request waiting for the user to submit the login form.
struct PendingAuth {
    client_id: String,
    redirect_uri: String,
    state: Option<String>,
    nonce: Option<String>,
    code_challenge: Option<String>,
    scope: String,
    created: Instant,
}

/// An authorization code handed to the client, redeemable once at the token endpoint.
struct IssuedCode {
    client_id: String,
    redirect_uri: String,
    username: String,
    nonce: Option<String>,
    code_challenge: Option<String>,
    scope: String,
    auth_time: u64,
    sid: String,
    created: Instant,
}

/// What an opaque access token stands for at the userinfo endpoint.
struct AccessGrant {
    username: String,
    expires: Instant,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("issuer", &self.issuer).finish_non_exhaustive()
    }
}

impl Shared {
    pub fn new(
        config: LegacyIdpConfig,
        issuer: String,
        faults: Arc<Faults>,
        key: SigningKey,
        rogue_key: SigningKey,
    ) -> anyhow::Result<Self> {
        let mut templates = minijinja::Environment::new();
        // The `.html` names switch on minijinja's HTML auto-escaping.
        templates.add_template("login.html", include_str!("templates/login.html"))?;
        templates.add_template("error.html", include_str!("templates/error.html"))?;
        Ok(Self {
            config,
            issuer,
            faults,
            key,
            rogue_key,
            templates,
            pending: Mutex::default(),
            codes: Mutex::default(),
            tokens: Mutex::default(),
            sessions: Mutex::default(),
            logouts: std::sync::atomic::AtomicUsize::new(0),
            injected_key_fetches: std::sync::atomic::AtomicUsize::new(0),
            cas: super::cas::CasState::default(),
        })
    }

    pub(crate) fn fault(&self, pick: impl Fn(&Faults) -> &std::sync::atomic::AtomicBool) -> bool {
        pick(&self.faults).load(Ordering::Relaxed)
    }

    /// Province colour for the page header.
    pub(crate) fn brand_color(&self) -> &'static str {
        match self.config.id.as_str() {
            "hcm" => "#b91c1c",
            "bd" => "#1d4ed8",
            "brvt" => "#0f766e",
            "vneid" => "#c8102e",
            _ => "#374151",
        }
    }
}

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    let base = shared.config.issuer_path.clone();
    Router::new()
        .route(&format!("{base}{DISCOVERY_PATH}"), get(discovery))
        .route(&format!("{base}{CERTS_PATH}"), get(certs))
        .route(&format!("{base}{AUTH_PATH}"), get(authorize).post(login))
        .route(&format!("{base}{TOKEN_PATH}"), axum::routing::post(token))
        .route(&format!("{base}{USERINFO_PATH}"), get(userinfo).post(userinfo))
        .route(&format!("{base}{LOGOUT_PATH}"), get(end_session))
        .route(&format!("{base}{INJECTED_JWKS_PATH}"), get(injected_jwks))
        .with_state(shared)
}

// ---------------------------------------------------------------------------------------------
// discovery and keys

async fn discovery(State(s): State<Arc<Shared>>) -> Response {
    let iss = &s.issuer;
    let mut claims: BTreeSet<&str> = PROTOCOL_CLAIMS.iter().copied().collect();
    for user in &s.config.users {
        claims.extend(user.claims.keys().map(String::as_str));
    }
    let doc = json!({
        "issuer": iss,
        "authorization_endpoint": format!("{iss}{AUTH_PATH}"),
        "token_endpoint": format!("{iss}{TOKEN_PATH}"),
        "userinfo_endpoint": format!("{iss}{USERINFO_PATH}"),
        "jwks_uri": format!("{iss}{CERTS_PATH}"),
        "end_session_endpoint": format!("{iss}{LOGOUT_PATH}"),
        "backchannel_logout_supported": true,
        "backchannel_logout_session_supported": true,
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "scopes_supported": ["openid", "profile", "email", "phone"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "code_challenge_methods_supported": ["S256"],
        "claims_supported": claims,
        "claims_parameter_supported": false,
        "request_parameter_supported": false,
        "request_uri_parameter_supported": false,
    });
    axum::Json(doc).into_response()
}

/// RP-Initiated Logout: this simulated system keeps no browser session, so it only checks
/// the client and the return address, counts the logout and sends the browser back.
async fn end_session(State(s): State<Arc<Shared>>, RawQuery(query): RawQuery) -> Response {
    let params: HashMap<String, String> =
        serde_urlencoded::from_str(query.as_deref().unwrap_or("")).unwrap_or_default();
    let client = params.get("client_id").and_then(|id| s.config.clients.iter().find(|c| &c.client_id == id));
    let target = params.get("post_logout_redirect_uri");
    s.logouts.fetch_add(1, Ordering::SeqCst);
    match (client, target) {
        (Some(c), Some(uri)) if c.accepts_redirect_uri(uri) => {
            let mut p = Vec::new();
            if let Some(state) = params.get("state") {
                p.push(("state", state.as_str()));
            }
            redirect_with(uri, &p)
        }
        _ => error_page(&s, "Bạn đã đăng xuất.", "You are logged out."),
    }
}

/// Which Back-Channel Logout token to mint (tests use the broken ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogoutTokenKind {
    Valid,
    BadSignature,
    WrongAudience,
    WithNonce,
    WithoutEvent,
    /// Names only the subject, no `sid`.
    SubjectOnly,
}

impl Shared {
    /// A Back-Channel Logout token for `username`'s latest session, for client `client_id`.
    pub fn logout_token(
        &self,
        username: &str,
        client_id: &str,
        kind: LogoutTokenKind,
    ) -> anyhow::Result<String> {
        let user = self
            .config
            .users
            .iter()
            .find(|u| u.username == username)
            .ok_or_else(|| anyhow::anyhow!("unknown user {username}"))?;
        let sid = lock(&self.sessions).get(username).cloned();
        let now = unix_now();
        let mut claims = serde_json::Map::new();
        claims.insert("iss".into(), json!(self.issuer));
        claims.insert(
            "aud".into(),
            json!(if kind == LogoutTokenKind::WrongAudience { "another-client" } else { client_id }),
        );
        claims.insert("iat".into(), json!(now));
        claims.insert("exp".into(), json!(now + 120));
        claims.insert("jti".into(), json!(random_token(16)));
        claims.insert("sub".into(), json!(user.subject));
        if kind != LogoutTokenKind::SubjectOnly
            && let Some(sid) = sid
        {
            claims.insert("sid".into(), json!(sid));
        }
        if kind != LogoutTokenKind::WithoutEvent {
            claims.insert("events".into(), json!({ BACKCHANNEL_EVENT: {} }));
        }
        if kind == LogoutTokenKind::WithNonce {
            claims.insert("nonce".into(), json!("n"));
        }
        let mut header = Header::new(Algorithm::RS256);
        header.typ = Some("logout+jwt".to_owned());
        header.kid = Some(self.key.kid.clone());
        let key = if kind == LogoutTokenKind::BadSignature { &self.rogue_key } else { &self.key };
        key.sign(&header, &claims)
    }
}

async fn certs(State(s): State<Arc<Shared>>) -> Response {
    axum::Json(s.key.jwks()).into_response()
}

/// The rogue key's set, counted: a verifier that follows `jku`/`x5u` would come here.
async fn injected_jwks(State(s): State<Arc<Shared>>) -> Response {
    s.injected_key_fetches.fetch_add(1, Ordering::SeqCst);
    axum::Json(s.rogue_key.jwks()).into_response()
}

// ---------------------------------------------------------------------------------------------
// authorization endpoint: GET shows the login form, POST checks the password

async fn authorize(State(s): State<Arc<Shared>>, RawQuery(query): RawQuery) -> Response {
    let params = match parse_params(query.unwrap_or_default().as_bytes()) {
        Ok(p) => p,
        Err(msg) => return error_page(&s, &msg.0, &msg.1),
    };
    // Until client_id and redirect_uri are known good, errors go to the user, never to a redirect.
    let Some(client_id) = params.get("client_id") else {
        return error_page(&s, "Thiếu client_id.", "Missing client_id.");
    };
    let Some(client) = s.config.client(client_id) else {
        return error_page(&s, "Ứng dụng không được đăng ký.", "Unknown client_id.");
    };
    let Some(redirect_uri) = params.get("redirect_uri") else {
        return error_page(&s, "Thiếu redirect_uri.", "Missing redirect_uri.");
    };
    if !client.accepts_redirect_uri(redirect_uri) {
        return error_page(
            &s,
            "Địa chỉ chuyển hướng (redirect_uri) không hợp lệ.",
            "Invalid redirect_uri for this client.",
        );
    }
    let state = params.get("state").cloned();
    let fail = |error: &str, description: &str| {
        redirect_with(redirect_uri, &error_params(error, description, state.as_deref()))
    };

    if params.contains_key("request") {
        return fail("request_not_supported", "request objects are not supported");
    }
    if params.contains_key("request_uri") {
        return fail("request_uri_not_supported", "request_uri is not supported");
    }
    match params.get("response_type").map(String::as_str) {
        Some("code") => {}
        Some(_) => return fail("unsupported_response_type", "only response_type=code"),
        None => return fail("invalid_request", "response_type is required"),
    }
    let scope = params.get("scope").cloned().unwrap_or_default();
    if !scope.split(' ').any(|s| s == "openid") {
        return fail("invalid_scope", "scope must contain openid");
    }
    let challenge = params.get("code_challenge");
    match (challenge, params.get("code_challenge_method").map(String::as_str)) {
        (None, None) => {}
        (Some(c), Some("S256")) if is_s256_challenge(c) => {}
        (Some(_), Some("S256")) => return fail("invalid_request", "malformed code_challenge"),
        (Some(_), None | Some(_)) => {
            return fail("invalid_request", "only code_challenge_method=S256 is supported");
        }
        (None, Some(_)) => {
            return fail("invalid_request", "code_challenge_method without code_challenge");
        }
    }
    if params.get("prompt").is_some_and(|p| p.split(' ').any(|v| v == "none")) {
        // There is never a legacy session to reuse.
        return fail("login_required", "user must log in");
    }

    let request_id = random_token(24);
    let pending = PendingAuth {
        client_id: client.client_id.clone(),
        redirect_uri: redirect_uri.clone(),
        state,
        nonce: params.get("nonce").cloned(),
        code_challenge: challenge.cloned(),
        scope,
        created: Instant::now(),
    };
    {
        let mut map = lock(&s.pending);
        map.retain(|_, p| p.created.elapsed() < PENDING_LIFETIME);
        map.insert(request_id.clone(), pending);
    }
    let login_hint = params.get("login_hint").map(String::as_str).unwrap_or("");
    login_page(&s, &request_id, login_hint, None)
}

#[derive(serde::Deserialize)]
struct LoginForm {
    request_id: String,
    username: String,
    password: String,
}

async fn login(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    let Ok(form) = serde_urlencoded::from_bytes::<LoginForm>(&body) else {
        return error_page(&s, "Biểu mẫu không hợp lệ.", "Malformed login form.");
    };
    let known =
        lock(&s.pending).get(&form.request_id).is_some_and(|p| p.created.elapsed() < PENDING_LIFETIME);
    if !known {
        return error_page(
            &s,
            "Phiên đăng nhập đã hết hạn. Vui lòng quay lại ứng dụng và thử lại.",
            "The sign-in request expired or is unknown. Go back to the application and retry.",
        );
    }
    let user = s
        .config
        .user(&form.username)
        .filter(|u| bool::from(u.password.as_bytes().ct_eq(form.password.as_bytes())));
    let Some(user) = user else {
        tracing::info!(idp = %s.config.id, username = %form.username, "legacy login failed");
        return login_page(
            &s,
            &form.request_id,
            &form.username,
            Some("Tên đăng nhập hoặc mật khẩu không đúng. / Incorrect username or password."),
        );
    };
    // The request handle is single-use: take it out now.
    let Some(pending) = lock(&s.pending).remove(&form.request_id) else {
        return error_page(&s, "Phiên đăng nhập đã được dùng.", "Sign-in request already used.");
    };
    let code = random_token(32);
    let issued = IssuedCode {
        client_id: pending.client_id,
        redirect_uri: pending.redirect_uri.clone(),
        username: user.username.clone(),
        nonce: pending.nonce,
        code_challenge: pending.code_challenge,
        scope: pending.scope,
        auth_time: unix_now(),
        sid: random_token(16),
        created: Instant::now(),
    };
    lock(&s.sessions).insert(user.username.clone(), issued.sid.clone());
    {
        let mut codes = lock(&s.codes);
        codes.retain(|_, c| c.created.elapsed() < CODE_LIFETIME);
        codes.insert(code.clone(), issued);
    }
    tracing::info!(idp = %s.config.id, username = %user.username, "legacy login succeeded");
    let mut params = vec![("code", code.as_str())];
    if let Some(state) = pending.state.as_deref() {
        params.push(("state", state));
    }
    redirect_with(&pending.redirect_uri, &params)
}

fn login_page(s: &Shared, request_id: &str, username: &str, error: Option<&str>) -> Response {
    login_page_at(s, &format!("{}{AUTH_PATH}", s.config.issuer_path), request_id, username, error)
}

/// The login form, posting to `action`.
pub(crate) fn login_page_at(
    s: &Shared,
    action: &str,
    request_id: &str,
    username: &str,
    error: Option<&str>,
) -> Response {
    let ctx = minijinja::context! {
        name_vi => s.config.name_vi,
        name_en => s.config.name_en,
        color => s.brand_color(),
        action => action,
        request_id => request_id,
        username => username,
        error => error,
    };
    render(s, "login.html", ctx, StatusCode::OK)
}

pub(crate) fn error_page(s: &Shared, message_vi: &str, message_en: &str) -> Response {
    let ctx = minijinja::context! {
        name_vi => s.config.name_vi,
        name_en => s.config.name_en,
        color => s.brand_color(),
        message_vi => message_vi,
        message_en => message_en,
    };
    render(s, "error.html", ctx, StatusCode::BAD_REQUEST)
}

fn render(s: &Shared, name: &str, ctx: minijinja::Value, status: StatusCode) -> Response {
    let html = s.templates.get_template(name).and_then(|t| t.render(ctx));
    match html {
        Ok(html) => {
            let mut resp = (status, Html(html)).into_response();
            let h = resp.headers_mut();
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
            h.insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(
                    "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
                ),
            );
            resp
        }
        Err(e) => {
            tracing::error!(error = %e, template = name, "template rendering failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "template error").into_response()
        }
    }
}

pub(crate) fn redirect_with(redirect_uri: &str, params: &[(&str, &str)]) -> Response {
    match url::Url::parse(redirect_uri) {
        Ok(mut url) => {
            url.query_pairs_mut().extend_pairs(params);
            (
                StatusCode::FOUND,
                [(header::LOCATION, url.to_string()), (header::CACHE_CONTROL, "no-store".to_owned())],
            )
                .into_response()
        }
        // Unreachable: redirect URIs are validated before any redirect.
        Err(_) => (StatusCode::BAD_REQUEST, "invalid redirect_uri").into_response(),
    }
}

fn error_params<'a>(error: &'a str, description: &'a str, state: Option<&'a str>) -> Vec<(&'a str, &'a str)> {
    let mut v = vec![("error", error), ("error_description", description)];
    if let Some(state) = state {
        v.push(("state", state));
    }
    v
}

// ---------------------------------------------------------------------------------------------
// token endpoint

async fn token(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    if s.fault(|f| &f.slow_token_response) {
        tokio::time::sleep(SLOW_TOKEN_DELAY).await;
    }
    match exchange_code(&s, &headers, &body) {
        Ok(_) if s.fault(|f| &f.garbage_token_response) => {
            (StatusCode::OK, [(header::CONTENT_TYPE, "text/html")], "<html>oops</html>").into_response()
        }
        Ok(body) => no_store(axum::Json(body).into_response()),
        Err(e) => e.into_response(),
    }
}

/// An RFC 6749 §5.2 error response.
struct OAuthError {
    status: StatusCode,
    error: &'static str,
    description: String,
}

fn oauth_err(status: StatusCode, error: &'static str, description: impl Into<String>) -> OAuthError {
    OAuthError { status, error, description: description.into() }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body = json!({ "error": self.error, "error_description": self.description });
        let mut resp = no_store((self.status, axum::Json(body)).into_response());
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"legacy-idp\""));
        }
        resp
    }
}

fn exchange_code(s: &Shared, headers: &HeaderMap, body: &[u8]) -> Result<Value, OAuthError> {
    let bad_request = StatusCode::BAD_REQUEST;
    let params = parse_params(body).map_err(|m| oauth_err(bad_request, "invalid_request", m.1))?;
    match params.get("grant_type").map(String::as_str) {
        Some("authorization_code") => {}
        Some(_) => {
            return Err(oauth_err(bad_request, "unsupported_grant_type", "only authorization_code"));
        }
        None => return Err(oauth_err(bad_request, "invalid_request", "grant_type is required")),
    }
    let client = authenticate_client(s, headers, &params)?;
    let code =
        params.get("code").ok_or_else(|| oauth_err(bad_request, "invalid_request", "code is required"))?;
    // Remove first: a code is consumed by any redemption attempt, successful or not.
    let issued = lock(&s.codes)
        .remove(code)
        .filter(|c| c.created.elapsed() < CODE_LIFETIME)
        .ok_or_else(|| oauth_err(bad_request, "invalid_grant", "unknown, expired or used code"))?;
    if issued.client_id != client.client_id {
        return Err(oauth_err(bad_request, "invalid_grant", "code was issued to another client"));
    }
    if params.get("redirect_uri") != Some(&issued.redirect_uri) {
        return Err(oauth_err(bad_request, "invalid_grant", "redirect_uri mismatch"));
    }
    let verifier = params.get("code_verifier");
    match (&issued.code_challenge, verifier) {
        (None, None) => {}
        (Some(challenge), Some(verifier)) => {
            if !is_pkce_verifier(verifier) {
                return Err(oauth_err(bad_request, "invalid_request", "malformed code_verifier"));
            }
            let computed = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
            if !bool::from(computed.as_bytes().ct_eq(challenge.as_bytes())) {
                return Err(oauth_err(bad_request, "invalid_grant", "PKCE verification failed"));
            }
        }
        (Some(_), None) => {
            return Err(oauth_err(bad_request, "invalid_grant", "code_verifier is required"));
        }
        (None, Some(_)) => {
            return Err(oauth_err(bad_request, "invalid_grant", "no code_challenge was sent"));
        }
    }
    let user = s
        .config
        .user(&issued.username)
        .ok_or_else(|| oauth_err(bad_request, "invalid_grant", "user no longer exists"))?;

    let access_token = random_token(32);
    let id_token = sign_id_token(s, &issued, &user.subject, &user.claims, &access_token).map_err(|e| {
        tracing::error!(error = %e, "signing ID token failed");
        oauth_err(StatusCode::INTERNAL_SERVER_ERROR, "server_error", "signing failed")
    })?;
    {
        let mut tokens = lock(&s.tokens);
        tokens.retain(|_, t| t.expires > Instant::now());
        tokens.insert(
            access_token.clone(),
            AccessGrant {
                username: user.username.clone(),
                expires: Instant::now() + Duration::from_secs(TOKEN_LIFETIME_SECS),
            },
        );
    }
    tracing::info!(idp = %s.config.id, username = %user.username, "tokens issued");
    Ok(json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": TOKEN_LIFETIME_SECS,
        "id_token": id_token,
        "scope": issued.scope,
    }))
}

/// client_secret_basic (RFC 6749 §2.3.1, form-urlencoded id and secret) or client_secret_post.
fn authenticate_client<'a>(
    s: &'a Shared,
    headers: &HeaderMap,
    params: &HashMap<String, String>,
) -> Result<&'a LegacyClient, OAuthError> {
    let unauthorized = |m: &str| oauth_err(StatusCode::UNAUTHORIZED, "invalid_client", m);
    let basic = match headers.get(header::AUTHORIZATION) {
        None => None,
        Some(value) => Some(parse_basic(value).ok_or_else(|| unauthorized("malformed Basic authorization"))?),
    };
    let (client_id, secret) = match basic {
        Some(creds) => {
            if params.contains_key("client_secret") {
                return Err(oauth_err(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "use only one client authentication method",
                ));
            }
            if params.get("client_id").is_some_and(|id| *id != creds.0) {
                return Err(unauthorized("client_id does not match the credentials"));
            }
            creds
        }
        None => match (params.get("client_id"), params.get("client_secret")) {
            (Some(id), Some(secret)) => (id.clone(), secret.clone()),
            _ => return Err(unauthorized("client authentication required")),
        },
    };
    s.config
        .client(&client_id)
        .filter(|c| bool::from(c.client_secret.as_bytes().ct_eq(secret.as_bytes())))
        .ok_or_else(|| unauthorized("client authentication failed"))
}

fn parse_basic(value: &HeaderValue) -> Option<(String, String)> {
    let value = value.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    Some((form_decode(id)?, form_decode(secret)?))
}

/// Decodes one `application/x-www-form-urlencoded` component (`+` is a space, `%XX` a byte).
fn form_decode(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = [bytes.next()?, bytes.next()?];
                out.push(u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?);
            }
            other => out.push(other),
        }
    }
    String::from_utf8(out).ok()
}

fn sign_id_token(
    s: &Shared,
    issued: &IssuedCode,
    subject: &str,
    user_claims: &serde_json::Map<String, Value>,
    access_token: &str,
) -> anyhow::Result<String> {
    let now = unix_now();
    let (iat, exp) = if s.fault(|f| &f.expired_id_token) {
        (now.saturating_sub(3900), now.saturating_sub(3600))
    } else {
        (now, now + TOKEN_LIFETIME_SECS)
    };
    let iss = if s.fault(|f| &f.wrong_issuer) { "http://evil.example" } else { &s.issuer };
    let aud = if s.fault(|f| &f.wrong_audience) { "another-client" } else { &issued.client_id };
    let nonce = if s.fault(|f| &f.wrong_nonce) { Some("not-the-nonce") } else { issued.nonce.as_deref() };
    // OIDC Core §3.1.3.6: left half of SHA-256 of the access token.
    let digest = Sha256::digest(access_token.as_bytes());
    let at_hash = URL_SAFE_NO_PAD.encode(&digest[..digest.len() / 2]);

    // Configured claims first, so the protocol claims below always win.
    let mut claims = user_claims.clone();
    let mut set = |k: &str, v: Value| {
        claims.insert(k.to_owned(), v);
    };
    set("iss", json!(iss));
    set("sub", json!(subject));
    set("aud", json!(aud));
    set("exp", json!(exp));
    set("iat", json!(iat));
    // `stale_auth_time`: as if an old single sign-on session had been reused although the
    // client asked for a fresh login (prompt=login, max_age).
    let auth_time = if s.fault(|f| &f.stale_auth_time) {
        issued.auth_time.saturating_sub(7200)
    } else {
        issued.auth_time
    };
    set("auth_time", json!(auth_time));
    if let Some(nonce) = nonce {
        set("nonce", json!(nonce));
    }
    set("sid", json!(issued.sid));
    set("amr", json!(["pwd"]));
    set("acr", json!("1"));
    set("at_hash", json!(at_hash));

    let mut header = Header::new(Algorithm::RS256);
    header.typ = Some("JWT".to_owned());
    header.kid = Some(s.key.kid.clone());
    if s.fault(|f| &f.id_token_alg_none) {
        let header = json!({ "alg": "none", "typ": "JWT", "kid": s.key.kid });
        return Ok(format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header)?),
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims)?)
        ));
    }
    if s.fault(|f| &f.id_token_hs256_public_key) {
        use hmac::Mac;
        let header = json!({ "alg": "HS256", "typ": "JWT", "kid": s.key.kid });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header)?),
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims)?)
        );
        let secret = serde_json::to_vec(&s.key.jwk)?;
        let mut mac = hmac::Hmac::<Sha256>::new_from_slice(&secret).map_err(|e| anyhow::anyhow!("{e}"))?;
        mac.update(signing_input.as_bytes());
        let tag = mac.finalize().into_bytes();
        return Ok(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(tag)));
    }
    if s.fault(|f| &f.id_token_injected_key) {
        let fetch = format!("{}{INJECTED_JWKS_PATH}", s.issuer);
        header.kid = Some("injected-kid/../../rogue".to_owned());
        header.jku = Some(fetch.clone());
        header.x5u = Some(fetch);
        header.jwk = Some(s.rogue_key.jwk.clone());
        return s.rogue_key.sign(&header, &claims);
    }
    let key = if s.fault(|f| &f.bad_signature) { &s.rogue_key } else { &s.key };
    key.sign(&header, &claims)
}

// ---------------------------------------------------------------------------------------------
// userinfo endpoint

async fn userinfo(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim().to_owned());
    let Some(token) = token else {
        // RFC 6750 §3.1: no error code when the request carried no token at all.
        return bearer_challenge("Bearer realm=\"legacy-idp\"");
    };
    let username =
        lock(&s.tokens).get(&token).filter(|g| g.expires > Instant::now()).map(|g| g.username.clone());
    let Some(user) = username.and_then(|u| s.config.user(&u)) else {
        return bearer_challenge(
            "Bearer realm=\"legacy-idp\", error=\"invalid_token\", \
             error_description=\"unknown or expired access token\"",
        );
    };
    let mut body = user.claims.clone();
    body.insert("sub".to_owned(), json!(user.subject));
    no_store(axum::Json(body).into_response())
}

fn bearer_challenge(challenge: &'static str) -> Response {
    (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, challenge)]).into_response()
}

// ---------------------------------------------------------------------------------------------
// helpers

/// Parses form/query parameters. Empty values count as absent (RFC 6749 §3.1); repeated
/// parameters are an error. The error carries (Vietnamese, English) messages.
pub(crate) fn parse_params(raw: &[u8]) -> Result<HashMap<String, String>, (String, String)> {
    let mut map = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(raw) {
        if v.is_empty() {
            continue;
        }
        if map.insert(k.to_string(), v.into_owned()).is_some() {
            return Err((format!("Tham số {k} bị lặp lại."), format!("parameter {k} is repeated")));
        }
    }
    Ok(map)
}

/// RFC 7636 §4.1: 43–128 characters from the unreserved set.
fn is_pkce_verifier(v: &str) -> bool {
    (43..=128).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

/// An S256 challenge is the unpadded base64url encoding of a SHA-256 hash: 43 characters.
fn is_s256_challenge(c: &str) -> bool {
    c.len() == 43 && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A random URL-safe string carrying `bytes` bytes of OS randomness.
pub(crate) fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut buf);
    URL_SAFE_NO_PAD.encode(buf)
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default()
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn no_store(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    resp
}
