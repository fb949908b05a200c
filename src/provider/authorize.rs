//! `/authorize` (GET and POST): validates the request against the client registry, answers
//! at once from a satisfying SSO session, or parks the request and sends the browser to the
//! chooser / broker. Errors before the redirect URI is trusted are pages, never redirects.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde_json::json;
use url::Url;

use super::ProviderState;
use super::clients::{Client, ClientRegistry};
use super::scope_claims::Scope;
use super::store_records::{self, AuthorizationRequest, CodeRecord, ResponseMode, UserGrant, code_key};
use crate::broker::UpstreamCatalog;
use crate::config::{AssuranceSettings, GrantType};
use crate::ids::ClientId;
use crate::session::SsoSession;
use crate::state::{StoreError, random_handle};
use crate::web::params::{self, Controls};
use crate::web::{self, ErrorPage, Lang};

/// Where and how an error or code goes back to a trusted redirect URI.
#[derive(Debug, Clone)]
pub struct ReturnTo {
    pub redirect_uri: String,
    pub response_mode: ResponseMode,
    pub state: Option<String>,
}

impl ReturnTo {
    /// Where the answer to a validated request goes.
    pub fn of(req: &AuthorizationRequest) -> Self {
        ReturnTo {
            redirect_uri: req.redirect_uri.clone(),
            response_mode: req.response_mode,
            state: req.state.clone(),
        }
    }
}

/// Why an authorization request did not produce a code.
#[derive(Debug)]
pub enum AuthorizeError {
    /// The client or redirect URI cannot be trusted: show a page, never redirect.
    Page(Box<ErrorPage>),
    /// A protocol error to send back to the RP (RFC 6749 §4.1.2.1).
    Redirect { to: ReturnTo, error: &'static str, description: String },
}

/// Longest `error_description` sent back to an RP. Descriptions may quote what was sent; a
/// quoted 48 KiB parameter would make a Location header that proxies in front of the RP refuse.
const MAX_DESCRIPTION_CHARS: usize = 200;

impl AuthorizeError {
    fn to_rp(to: &ReturnTo, error: &'static str, description: impl Into<String>) -> Self {
        let mut description: String = description.into();
        if let Some((cut, _)) = description.char_indices().nth(MAX_DESCRIPTION_CHARS) {
            description.truncate(cut);
            description.push('…');
        }
        AuthorizeError::Redirect { to: to.clone(), error, description }
    }
}

/// Builds the authorization response (success or error) for a trusted redirect URI,
/// always with `iss` (RFC 9207).
pub fn respond(issuer: &str, to: &ReturnTo, mut params: Vec<(&'static str, String)>) -> Response {
    if let Some(state) = &to.state {
        params.push(("state", state.clone()));
    }
    params.push(("iss", issuer.to_string()));
    match to.response_mode {
        ResponseMode::Query => {
            let Ok(mut url) = Url::parse(&to.redirect_uri) else {
                return ErrorPage::new(
                    StatusCode::BAD_REQUEST,
                    "Địa chỉ chuyển hướng không hợp lệ",
                    "Invalid redirect URI",
                )
                .into_response();
            };
            url.query_pairs_mut().extend_pairs(params.iter().map(|(k, v)| (*k, v.as_str())));
            let mut res = Redirect::to(url.as_str()).into_response();
            res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            res
        }
        ResponseMode::FormPost => {
            let nonce = random_handle();
            let html = web::render(
                "form_post.html",
                json!({ "action": to.redirect_uri, "fields": params, "nonce": nonce }),
            );
            let mut res = web::html_response(StatusCode::OK, html, "");
            // The page's one form posts to the registered redirect URI, and nowhere else.
            let form_action = web::form_action(false, &[&to.redirect_uri]);
            let csp = format!(
                "default-src 'none'; script-src 'nonce-{nonce}'; {form_action}; frame-ancestors 'none'; base-uri 'none'"
            );
            if let Ok(v) = HeaderValue::from_str(&csp) {
                res.headers_mut().insert(header::CONTENT_SECURITY_POLICY, v);
            }
            res
        }
    }
}

impl AuthorizeError {
    pub fn into_response_for(self, issuer: &str) -> Response {
        match self {
            AuthorizeError::Page(page) => (*page).into_response(),
            AuthorizeError::Redirect { to, error, description } => {
                tracing::info!(error, %description, "authorization request refused");
                respond(issuer, &to, vec![("error", error.to_string()), ("error_description", description)])
            }
        }
    }
}

/// Longest value, in bytes, of each authorization parameter that may be parked with the
/// request or is parsed before it is parked: what the specifications and the RPs we serve need,
/// so that what an anonymous request can make the gateway store stays small (a parked request
/// is at most about 2 KiB with every limit reached).
pub const PARAMETER_CAPS: [(&str, usize); 9] = [
    // Opaque to us; RPs put a random value or a short signed blob in it.
    ("state", 1024),
    // Opaque, compared by the RP; printable ASCII only (checked in `oversized`).
    ("nonce", 256),
    // An e-mail address, user name or ID number.
    ("login_hint", 256),
    // A few acr URIs.
    ("acr_values", 512),
    // A few BCP 47 tags.
    ("ui_locales", 128),
    // Registered scope names, space-separated.
    ("scope", 1024),
    // base64url of a SHA-256 is 43 characters (RFC 7636 §4.2).
    ("code_challenge", 128),
    ("code_challenge_method", 64),
    ("prompt", 64),
];

/// An authorization parameter over its cap (or, for `nonce`, with a character outside
/// printable ASCII).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Oversized {
    pub name: &'static str,
    pub cap: usize,
}

impl std::fmt::Display for Oversized {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.name == "nonce" {
            write!(f, "nonce must be at most {} printable ASCII characters", self.cap)
        } else {
            write!(f, "{} is longer than {} bytes", self.name, self.cap)
        }
    }
}

/// The first parameter over its cap in [`PARAMETER_CAPS`], if any.
pub fn oversized<'a>(get: &impl Fn(&str) -> Option<&'a str>) -> Option<Oversized> {
    PARAMETER_CAPS.iter().find_map(|&(name, cap)| {
        let value = get(name)?;
        let bad = value.len() > cap || (name == "nonce" && !value.bytes().all(|b| (0x20..0x7f).contains(&b)));
        bad.then_some(Oversized { name, cap })
    })
}

pub(super) fn bad_request_page(vi: &str, en: &str) -> AuthorizeError {
    AuthorizeError::Page(Box::new(
        ErrorPage::new(StatusCode::BAD_REQUEST, "Yêu cầu đăng nhập không hợp lệ", "Invalid login request")
            .detail(vi, en),
    ))
}

/// What validating an authorization request reads: the client registry, the gateway's
/// assurance levels and what the upstreams can reach. Plain inputs, so the rules are
/// unit-tested without a running gateway.
#[derive(Clone, Copy)]
pub struct Checks<'a> {
    pub clients: &'a ClientRegistry,
    pub levels: &'a AssuranceSettings,
    pub upstreams: &'a UpstreamCatalog,
}

impl super::ProviderParts {
    /// What [`validate`] reads.
    pub fn authorize_checks(&self) -> Checks<'_> {
        Checks { clients: &self.clients, levels: &self.settings.assurance, upstreams: &self.upstreams }
    }
}

/// The raw parameters by name (empty values count as absent), and the last repeated name.
struct Params {
    values: HashMap<String, String>,
    duplicated: Option<String>,
}

impl Params {
    fn new(raw: Vec<(String, String)>) -> Self {
        let mut values: HashMap<String, String> = HashMap::new();
        let mut duplicated = None;
        for (k, v) in raw {
            match values.entry(k) {
                std::collections::hash_map::Entry::Occupied(e) => duplicated = Some(e.key().clone()),
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(v);
                }
            }
        }
        Params { values, duplicated }
    }

    fn get(&self, k: &str) -> Option<&str> {
        self.values.get(k).map(String::as_str).filter(|v| !v.is_empty())
    }
}

/// Validates raw parameters into an authorization request, against the provider's registry.
pub fn validate(
    app: &ProviderState,
    raw: Vec<(String, String)>,
) -> Result<AuthorizationRequest, AuthorizeError> {
    validate_with(app.authorize_checks(), raw)
}

/// Validates raw parameters into an authorization request.
pub fn validate_with(
    checks: Checks<'_>,
    raw: Vec<(String, String)>,
) -> Result<AuthorizationRequest, AuthorizeError> {
    let params = Params::new(raw);
    let (client, to) = trusted_return(checks.clients, &params)?;
    protocol(&params, &to, &client)?;
    let scopes = scopes(&params, &to, &client)?;
    let code_challenge = pkce(&params, &to, &client)?;
    let (force_login, max_age) = prompt_and_max_age(&params, &to)?;
    let acr_accepted = assurance(checks, &params, &to, &client)?;
    // DPoP (RFC 9449 §10): the code will only be redeemed with a proof of this key.
    let dpop_jkt = params.get("dpop_jkt").map(str::to_string);
    if dpop_jkt.as_deref().is_some_and(|j| !super::dpop::is_thumbprint(j)) {
        return Err(AuthorizeError::to_rp(
            &to,
            "invalid_request",
            "dpop_jkt is not a SHA-256 JWK thumbprint",
        ));
    }
    let idp_hint = params
        .get("idp_hint")
        .filter(|id| {
            checks.upstreams.has_upstream(id) && checks.upstreams.upstream_can_satisfy(id, &acr_accepted)
        })
        .map(str::to_string);
    // prompt=none is answered from the session or refused; it is never parked.
    Ok(AuthorizationRequest {
        client_id: client.client_id.to_string(),
        redirect_uri: to.redirect_uri.clone(),
        response_mode: to.response_mode,
        state: to.state.clone(),
        nonce: params.get("nonce").map(str::to_string),
        scopes,
        code_challenge,
        force_login,
        max_age,
        login_hint: params.get("login_hint").map(str::to_string),
        lang: Lang::from_ui_locales(params.get("ui_locales")),
        idp_hint,
        acr_accepted,
        dpop_jkt,
    })
}

/// The registered client and the redirect URI errors may go to. Until both are known and
/// match exactly, every error is a page, never a redirect.
fn trusted_return(
    clients: &ClientRegistry,
    params: &Params,
) -> Result<(Arc<Client>, ReturnTo), AuthorizeError> {
    let Some(client_id) = params.get("client_id") else {
        return Err(bad_request_page(
            "Ứng dụng gửi yêu cầu thiếu mã ứng dụng (client_id).",
            "The application's request has no client_id.",
        ));
    };
    // An id that cannot be a client id is no registered client's: the same page.
    let Some(client) = ClientId::parse(client_id).ok().and_then(|id| clients.get(&id)) else {
        return Err(bad_request_page(
            "Ứng dụng gửi yêu cầu chưa được đăng ký với hệ thống đăng nhập.",
            "The requesting application (client_id) is not registered.",
        ));
    };
    let Some(redirect_uri) = params.get("redirect_uri").filter(|r| client.has_redirect_uri(r)) else {
        return Err(bad_request_page(
            "Địa chỉ quay lại (redirect_uri) không khớp với địa chỉ đã đăng ký của ứng dụng.",
            "The redirect_uri is missing or does not exactly match one registered for this application.",
        ));
    };
    if params.duplicated.as_deref().is_some_and(|k| k == "redirect_uri" || k == "client_id") {
        return Err(bad_request_page("Tham số bị lặp lại.", "A parameter was sent more than once."));
    }
    let response_mode = match params.get("response_mode") {
        Some("form_post") => ResponseMode::FormPost,
        _ => ResponseMode::Query,
    };
    let mut to = ReturnTo {
        redirect_uri: redirect_uri.to_string(),
        response_mode,
        state: params.get("state").map(str::to_string),
    };
    if let Some(over) = oversized(&|k| params.get(k)) {
        // An oversized state is not echoed: the answer stays a short redirect.
        if over.name == "state" {
            to.state = None;
        }
        return Err(AuthorizeError::to_rp(&to, "invalid_request", over.to_string()));
    }
    Ok((client, to))
}

/// The request's shape: no repeats, a supported response mode and type, no request objects,
/// and a client allowed the code flow.
fn protocol(params: &Params, to: &ReturnTo, client: &Client) -> Result<(), AuthorizeError> {
    if let Some(k) = &params.duplicated {
        return Err(AuthorizeError::to_rp(to, "invalid_request", format!("parameter {k} is repeated")));
    }
    if let Some(mode) = params.get("response_mode")
        && mode != "query"
        && mode != "form_post"
    {
        return Err(AuthorizeError::to_rp(
            to,
            "invalid_request",
            format!("response_mode {mode} is not supported"),
        ));
    }
    if params.get("request").is_some() {
        return Err(AuthorizeError::to_rp(to, "request_not_supported", "request objects are not supported"));
    }
    if params.get("request_uri").is_some() {
        return Err(AuthorizeError::to_rp(to, "request_uri_not_supported", "request_uri is not supported"));
    }
    match params.get("response_type") {
        None => return Err(AuthorizeError::to_rp(to, "invalid_request", "response_type is required")),
        Some("code") => {}
        Some(_) => {
            return Err(AuthorizeError::to_rp(
                to,
                "unsupported_response_type",
                "only response_type=code is supported",
            ));
        }
    }
    if !client.allows_grant(GrantType::AuthorizationCode) {
        return Err(AuthorizeError::to_rp(
            to,
            "unauthorized_client",
            "this client may not use the authorization code flow",
        ));
    }
    Ok(())
}

/// The requested scopes, without repeats: `openid` and only scopes the client may ask for.
fn scopes(params: &Params, to: &ReturnTo, client: &Client) -> Result<Vec<String>, AuthorizeError> {
    let scope = Scope::parse(params.get("scope"));
    if !scope.contains("openid") {
        return Err(AuthorizeError::to_rp(to, "invalid_scope", "scope must contain openid"));
    }
    if let Some(s) = scope.first_outside(&client.scopes) {
        return Err(AuthorizeError::to_rp(
            to,
            "invalid_scope",
            format!("scope {s} is not allowed for this client"),
        ));
    }
    Ok(scope.into_names())
}

/// The PKCE challenge (S256 only; required for clients that must use PKCE).
fn pkce(params: &Params, to: &ReturnTo, client: &Client) -> Result<Option<String>, AuthorizeError> {
    let code_challenge = match (params.get("code_challenge"), params.get("code_challenge_method")) {
        (None, None) => None,
        (None, Some(_)) => {
            return Err(AuthorizeError::to_rp(
                to,
                "invalid_request",
                "code_challenge_method without code_challenge",
            ));
        }
        (Some(_), Some(m)) if m != "S256" => {
            return Err(AuthorizeError::to_rp(
                to,
                "invalid_request",
                "only code_challenge_method=S256 is supported",
            ));
        }
        (Some(_), None) => {
            return Err(AuthorizeError::to_rp(
                to,
                "invalid_request",
                "code_challenge_method=S256 is required (plain is not supported)",
            ));
        }
        (Some(c), Some(_)) => {
            let well_formed =
                c.len() == 43 && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !well_formed {
                return Err(AuthorizeError::to_rp(
                    to,
                    "invalid_request",
                    "code_challenge is not a base64url SHA-256",
                ));
            }
            Some(c.to_string())
        }
    };
    if client.requires_pkce() && code_challenge.is_none() {
        return Err(AuthorizeError::to_rp(
            to,
            "invalid_request",
            "PKCE (code_challenge with S256) is required",
        ));
    }
    Ok(code_challenge)
}

/// `prompt` (none alone; none, login, consent, select_account) and `max_age`: whether a fresh
/// login is forced, and the oldest login that may answer.
fn prompt_and_max_age(params: &Params, to: &ReturnTo) -> Result<(bool, Option<i64>), AuthorizeError> {
    let prompts: Vec<&str> = params.get("prompt").unwrap_or("").split_whitespace().collect();
    if prompts.contains(&"none") && prompts.len() > 1 {
        return Err(AuthorizeError::to_rp(to, "invalid_request", "prompt=none cannot be combined"));
    }
    if let Some(p) = prompts.iter().find(|p| !matches!(**p, "none" | "login" | "consent" | "select_account"))
    {
        return Err(AuthorizeError::to_rp(to, "invalid_request", format!("prompt {p} is not supported")));
    }
    let max_age = match params.get("max_age") {
        None => None,
        Some(v) => match v.parse::<i64>() {
            Ok(n) if n >= 0 => Some(n),
            _ => {
                return Err(AuthorizeError::to_rp(
                    to,
                    "invalid_request",
                    "max_age must be a non-negative integer",
                ));
            }
        },
    };
    let force_login = prompts.contains(&"login") || prompts.contains(&"select_account");
    Ok((force_login, max_age))
}

/// The acr values a session must have to answer (empty: any). Any level the RP lists in
/// acr_values is acceptable, so the lowest one listed is the minimum; the client's configured
/// minimum applies on top. Values that are not gateway levels are ignored (acr_values is a
/// voluntary request, OIDC Core §3.1.2.1). Refused when no upstream reaches them.
fn assurance(
    checks: Checks<'_>,
    params: &Params,
    to: &ReturnTo,
    client: &Client,
) -> Result<Vec<String>, AuthorizeError> {
    let levels = checks.levels;
    let requested =
        params.get("acr_values").and_then(|v| v.split_whitespace().filter_map(|a| levels.rank(a)).min());
    let client_min = client.min_acr.as_deref().and_then(|a| levels.rank(a));
    let acr_accepted = requested.max(client_min).map(|rank| levels.at_least(rank)).unwrap_or_default();
    if !acr_accepted.is_empty() && !checks.upstreams.can_satisfy(&acr_accepted) {
        return Err(AuthorizeError::to_rp(
            to,
            "unmet_authentication_requirements",
            "no login system reaches the requested assurance level",
        ));
    }
    Ok(acr_accepted)
}

pub async fn get(
    State(app): State<ProviderState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    match params::parse(query.as_deref().unwrap_or("").as_bytes(), Controls::Refused) {
        Ok(raw) => authorize(app, headers, raw).await,
        Err(e) => malformed(&e),
    }
}

pub async fn post(State(app): State<ProviderState>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    match params::parse(&body, Controls::Refused) {
        Ok(raw) => authorize(app, headers, raw).await,
        Err(e) => malformed(&e),
    }
}

/// Parameters that are not UTF-8 or carry control characters: which redirect URI they name
/// cannot be trusted either, so the answer is a page, never a redirect.
fn malformed(e: &params::ParamError) -> Response {
    tracing::info!(error = %e, "authorization request with malformed parameters");
    bad_request_page(
        "Yêu cầu chứa tham số không hợp lệ (sai mã hoá hoặc có ký tự điều khiển).",
        &format!("The request carries an invalid parameter: {e}."),
    )
    .into_response_for("")
}

/// What to do with a validated authorization request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthorizeDecision<'s> {
    /// The client must push its requests to `/par` and sent this one directly:
    /// `invalid_request` to the RP.
    PushRequired,
    /// The browser's session satisfies the request: a code at once (there is no consent step).
    IssueCode(&'s SsoSession),
    /// `prompt=none` and no session satisfies it: `login_required` to the RP.
    LoginRequired,
    /// Park the request and send the browser to the login (the hinted upstream or the
    /// chooser).
    Login,
}

/// What the session (if any) and the request's prompt make of a validated request, at `now`.
/// `must_push`: the client requires PAR and the request was not pushed (then the session is
/// not looked at).
pub fn decide<'s>(
    req: &AuthorizationRequest,
    session: Option<&'s SsoSession>,
    now: i64,
    prompt_none: bool,
    must_push: bool,
) -> AuthorizeDecision<'s> {
    if must_push {
        return AuthorizeDecision::PushRequired;
    }
    if let Some(session) = session.filter(|s| satisfies(req, s, now)) {
        AuthorizeDecision::IssueCode(session)
    } else if prompt_none {
        AuthorizeDecision::LoginRequired
    } else {
        AuthorizeDecision::Login
    }
}

/// Whether the raw parameters ask for `prompt=none`.
fn asks_prompt_none(raw: &[(String, String)]) -> bool {
    raw.iter().any(|(k, v)| k == "prompt" && v.split_whitespace().any(|p| p == "none"))
}

async fn authorize(app: ProviderState, headers: HeaderMap, raw: Vec<(String, String)>) -> Response {
    // A pushed request (RFC 9126) stands in for the parameters sent.
    let (raw, pushed) = match super::par::resolve(&app, raw).await {
        Ok(resolved) => resolved,
        Err(e) => return e.into_response_for(app.issuer()),
    };
    let prompt_none = asks_prompt_none(&raw);
    let req = match validate(&app, raw) {
        Ok(req) => req,
        Err(e) => return e.into_response_for(app.issuer()),
    };
    let to = ReturnTo::of(&req);
    let must_push =
        !pushed && app.clients.get(req.client_id.as_str()).is_some_and(|c| super::par::required(&app, &c));
    let session = if must_push {
        None
    } else {
        match app.sessions.current(&headers).await {
            Ok(session) => session,
            Err(e) => return store_failure(&app, &to, e),
        }
    };
    match decide(&req, session.as_ref(), app.clock.now(), prompt_none, must_push) {
        AuthorizeDecision::PushRequired => AuthorizeError::to_rp(
            &to,
            "invalid_request",
            "this client must push its authorization requests to /par",
        )
        .into_response_for(app.issuer()),
        AuthorizeDecision::IssueCode(session) => match issue_code(&app, &req, session).await {
            Ok(response) => response,
            Err(e) => store_failure(&app, &to, e),
        },
        AuthorizeDecision::LoginRequired => {
            AuthorizeError::to_rp(&to, "login_required", "no session satisfies the request")
                .into_response_for(app.issuer())
        }
        AuthorizeDecision::Login => {
            let id = match store_records::park(&app.store, &req, app.settings.lifetimes.login_attempt).await {
                Ok(id) => id,
                Err(e) => return store_failure(&app, &to, e),
            };
            let next = app.upstreams.login_link(req.idp_hint.as_deref(), &id).to_string();
            Redirect::to(&next).into_response()
        }
    }
}

/// A state-store failure answering a trusted request: `temporarily_unavailable` to the RP,
/// "busy" when the store is full.
pub fn store_failure(app: &ProviderState, to: &ReturnTo, e: StoreError) -> Response {
    let description = match &e {
        StoreError::Full(_) => {
            tracing::warn!(error = %e, "state store full: authorization request refused");
            "the login service is busy; try again in a few minutes"
        }
        _ => {
            tracing::error!(error = %e, "state store failure answering an authorization request");
            "the login service is temporarily unavailable"
        }
    };
    AuthorizeError::to_rp(to, "temporarily_unavailable", description).into_response_for(app.issuer())
}

/// Whether an existing session may answer the request without a new login.
pub fn satisfies(req: &AuthorizationRequest, session: &SsoSession, now: i64) -> bool {
    if req.force_login || !acr_satisfied(req, session) {
        return false;
    }
    match req.max_age {
        Some(max_age) => now - session.auth_time <= max_age,
        None => true,
    }
}

/// Whether the session's assurance is one the request accepts (step-up otherwise).
pub fn acr_satisfied(req: &AuthorizationRequest, session: &SsoSession) -> bool {
    req.acr_accepted.is_empty() || req.acr_accepted.contains(&session.acr)
}

/// Issues an authorization code for `req` in `session` and builds the redirect to the RP.
pub async fn issue_code(
    app: &ProviderState,
    req: &AuthorizationRequest,
    session: &SsoSession,
) -> Result<Response, StoreError> {
    let code = random_handle();
    let record = CodeRecord {
        grant: UserGrant {
            grant_id: random_handle(),
            client_id: req.client_id.clone(),
            account_id: session.account_id.clone(),
            scopes: req.scopes.clone(),
            sid: session.sid.clone(),
            auth_time: session.auth_time,
            acr: session.acr.clone(),
            amr: session.amr.clone(),
            idp: session.upstream.clone(),
        },
        redirect_uri: req.redirect_uri.clone(),
        nonce: req.nonce.clone(),
        code_challenge: req.code_challenge.clone(),
        dpop_jkt: req.dpop_jkt.clone(),
        expires_at: Some(app.clock.now() + app.settings.lifetimes.authorization_code.as_secs() as i64),
    };
    app.store.put_json(&code_key(&code), &record, app.settings.lifetimes.authorization_code).await?;
    app.sessions.record_client(session, &req.client_id).await?;
    let to = ReturnTo {
        redirect_uri: req.redirect_uri.clone(),
        response_mode: req.response_mode,
        state: req.state.clone(),
    };
    Ok(respond(app.issuer(), &to, vec![("code", code)]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_description_quoting_a_huge_parameter_is_cut() {
        let to = ReturnTo {
            redirect_uri: "https://rp.example/cb".into(),
            response_mode: ResponseMode::Query,
            state: None,
        };
        let quoted = format!("prompt {} is not supported", "p".repeat(48 * 1024));
        let AuthorizeError::Redirect { description, .. } =
            AuthorizeError::to_rp(&to, "invalid_request", quoted)
        else {
            unreachable!()
        };
        assert_eq!(description.chars().count(), MAX_DESCRIPTION_CHARS + 1);
        assert!(description.starts_with("prompt ppp") && description.ends_with('…'));
        let short = AuthorizeError::to_rp(&to, "invalid_request", "state is too long");
        assert!(
            matches!(short, AuthorizeError::Redirect { description, .. } if description == "state is too long")
        );
    }

    #[test]
    fn a_client_id_that_cannot_be_one_gets_the_unknown_client_page() {
        let shared = crate::app::shared_test_state();
        let answer = |client_id: &str| {
            let raw = vec![
                ("client_id".to_string(), client_id.to_string()),
                ("redirect_uri".to_string(), "https://portal.example/cb".to_string()),
                ("response_type".to_string(), "code".to_string()),
                ("scope".to_string(), "openid".to_string()),
            ];
            format!("{:?}", validate(shared.app.provider(), raw).map(|_| ()))
        };
        let unknown = answer("nobody");
        assert!(unknown.contains("is not registered"), "{unknown}");
        for not_an_id in ["sso-gateway:account", "sso-gateway:admin", "port\u{7f}al"] {
            assert_eq!(answer(not_an_id), unknown, "{not_an_id:?}");
        }
    }
}

#[cfg(test)]
mod decisions {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;
    use crate::config::{ACR_PASSWORD, ACR_VNEID_LEVEL1, ACR_VNEID_LEVEL2, Settings};

    const NOW: i64 = 10_000;

    fn request() -> AuthorizationRequest {
        AuthorizationRequest {
            client_id: "portal".into(),
            redirect_uri: "https://portal.example/cb".into(),
            response_mode: ResponseMode::Query,
            state: None,
            nonce: None,
            scopes: vec!["openid".into()],
            code_challenge: None,
            force_login: false,
            max_age: None,
            login_hint: None,
            lang: Lang::Vi,
            idp_hint: None,
            acr_accepted: Vec::new(),
            dpop_jkt: None,
        }
    }

    /// A session whose login was `age` seconds ago, at assurance `acr`.
    fn session(age: i64, acr: &str) -> SsoSession {
        SsoSession::example("sid-1", "a1", NOW - age, acr)
    }

    #[test]
    fn prompt_none_without_session_redirects_login_required() {
        assert_eq!(decide(&request(), None, NOW, true, false), AuthorizeDecision::LoginRequired);
    }

    #[test]
    fn without_a_session_the_request_is_parked_for_a_login() {
        assert_eq!(decide(&request(), None, NOW, false, false), AuthorizeDecision::Login);
    }

    #[test]
    fn a_satisfying_session_gets_a_code_at_once_even_with_prompt_none() {
        let s = session(60, ACR_PASSWORD);
        assert_eq!(decide(&request(), Some(&s), NOW, false, false), AuthorizeDecision::IssueCode(&s));
        assert_eq!(decide(&request(), Some(&s), NOW, true, false), AuthorizeDecision::IssueCode(&s));
    }

    #[test]
    fn prompt_login_asks_for_a_fresh_login_despite_a_session() {
        let s = session(1, ACR_PASSWORD);
        let req = AuthorizationRequest { force_login: true, ..request() };
        assert_eq!(decide(&req, Some(&s), NOW, false, false), AuthorizeDecision::Login);
    }

    #[test]
    fn max_age_accepts_a_login_exactly_that_old_and_not_older() {
        let req = AuthorizationRequest { max_age: Some(300), ..request() };
        let fresh = session(300, ACR_PASSWORD);
        assert_eq!(decide(&req, Some(&fresh), NOW, false, false), AuthorizeDecision::IssueCode(&fresh));
        let stale = session(301, ACR_PASSWORD);
        assert_eq!(decide(&req, Some(&stale), NOW, false, false), AuthorizeDecision::Login);
        assert_eq!(decide(&req, Some(&stale), NOW, true, false), AuthorizeDecision::LoginRequired);
        let zero = AuthorizationRequest { max_age: Some(0), ..request() };
        assert_eq!(
            decide(&zero, Some(&session(0, ACR_PASSWORD)), NOW, false, false),
            AuthorizeDecision::IssueCode(&session(0, ACR_PASSWORD))
        );
    }

    #[test]
    fn a_session_below_the_accepted_acr_needs_a_step_up_login() {
        let req = AuthorizationRequest { acr_accepted: vec![ACR_VNEID_LEVEL2.into()], ..request() };
        let low = session(10, ACR_PASSWORD);
        assert_eq!(decide(&req, Some(&low), NOW, false, false), AuthorizeDecision::Login);
        assert_eq!(decide(&req, Some(&low), NOW, true, false), AuthorizeDecision::LoginRequired);
        let high = session(10, ACR_VNEID_LEVEL2);
        assert_eq!(decide(&req, Some(&high), NOW, false, false), AuthorizeDecision::IssueCode(&high));
    }

    #[test]
    fn a_client_that_must_push_is_refused_whatever_the_session() {
        let s = session(10, ACR_PASSWORD);
        assert_eq!(decide(&request(), Some(&s), NOW, false, true), AuthorizeDecision::PushRequired);
        assert_eq!(decide(&request(), None, NOW, true, true), AuthorizeDecision::PushRequired);
    }

    #[test]
    fn prompt_none_is_read_from_the_raw_parameters() {
        let raw = |v: &str| vec![("prompt".to_string(), v.to_string())];
        assert!(asks_prompt_none(&raw("none")));
        assert!(asks_prompt_none(&raw(" none ")));
        assert!(!asks_prompt_none(&raw("login")));
        assert!(!asks_prompt_none(&raw("nonesuch")));
        assert!(!asks_prompt_none(&[]));
    }

    /// A registry with `portal` (no minimum) and `tax` (minimum VNeID level 1), and the
    /// upstreams `upstreams` (id, reachable acr values).
    fn with_upstreams(upstreams: &[(&str, &[&str])], test: impl FnOnce(Checks<'_>)) {
        let settings = Settings::from_toml(&format!(
            r#"
            issuer = "https://sso.example"
            [[clients]]
            client_id = "portal"
            client_secret = "portal-secret-0123456789"
            redirect_uris = ["https://portal.example/cb"]
            [[clients]]
            client_id = "tax"
            client_secret = "tax-secret-0123456789"
            redirect_uris = ["https://tax.example/cb"]
            min_acr = "{ACR_VNEID_LEVEL1}"
            "#
        ))
        .unwrap();
        let clients = ClientRegistry::new(&settings.clients, &settings.lifetimes);
        let upstreams = UpstreamCatalog::new(
            upstreams
                .iter()
                .map(|(id, acrs)| (id.to_string(), acrs.iter().map(|a| a.to_string()).collect()))
                .collect(),
        );
        test(Checks { clients: &clients, levels: &settings.assurance, upstreams: &upstreams });
    }

    /// [`with_upstreams`] with `hcm` (password) and `vneid` (VNeID levels 1 and 2).
    fn with_checks(test: impl FnOnce(Checks<'_>)) {
        with_upstreams(&[("hcm", &[ACR_PASSWORD]), ("vneid", &[ACR_VNEID_LEVEL1, ACR_VNEID_LEVEL2])], test);
    }

    fn raw(client: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut raw = vec![
            ("client_id".to_string(), client.to_string()),
            ("redirect_uri".to_string(), format!("https://{client}.example/cb")),
            ("response_type".to_string(), "code".to_string()),
            ("scope".to_string(), "openid".to_string()),
            ("code_challenge".to_string(), "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".to_string()),
            ("code_challenge_method".to_string(), "S256".to_string()),
        ];
        raw.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        raw
    }

    #[test]
    fn acr_values_accept_the_lowest_listed_level_and_above() {
        with_checks(|checks| {
            let listed = format!("{ACR_VNEID_LEVEL2} {ACR_VNEID_LEVEL1} urn:unknown");
            let req = validate_with(checks, raw("portal", &[("acr_values", &listed)])).unwrap();
            // Every level from the lowest accepted up, certificate login at the top of the ladder.
            let expected = [ACR_VNEID_LEVEL1, ACR_VNEID_LEVEL2, crate::config::ACR_CERTIFICATE];
            assert_eq!(req.acr_accepted, expected.map(str::to_string));
            let none = validate_with(checks, raw("portal", &[("acr_values", "urn:unknown")])).unwrap();
            assert!(none.acr_accepted.is_empty(), "unknown values are ignored");
        });
    }

    #[test]
    fn the_clients_minimum_acr_applies_on_top_of_the_request() {
        with_checks(|checks| {
            let req = validate_with(checks, raw("tax", &[("acr_values", ACR_PASSWORD)])).unwrap();
            // Every level from the lowest accepted up, certificate login at the top of the ladder.
            let expected = [ACR_VNEID_LEVEL1, ACR_VNEID_LEVEL2, crate::config::ACR_CERTIFICATE];
            assert_eq!(req.acr_accepted, expected.map(str::to_string));
        });
    }

    #[test]
    fn an_idp_hint_is_kept_only_for_an_upstream_that_reaches_the_assurance() {
        with_checks(|checks| {
            let hinted = validate_with(checks, raw("portal", &[("idp_hint", "hcm")])).unwrap();
            assert_eq!(hinted.idp_hint.as_deref(), Some("hcm"));
            let unknown = validate_with(checks, raw("portal", &[("idp_hint", "nowhere")])).unwrap();
            assert_eq!(unknown.idp_hint, None);
            let too_low = validate_with(checks, raw("tax", &[("idp_hint", "hcm")])).unwrap();
            assert_eq!(too_low.idp_hint, None, "hcm cannot reach the client's minimum");
            let high = validate_with(checks, raw("tax", &[("idp_hint", "vneid")])).unwrap();
            assert_eq!(high.idp_hint.as_deref(), Some("vneid"));
        });
    }

    #[test]
    fn an_assurance_no_upstream_reaches_is_unmet_authentication_requirements() {
        with_upstreams(&[("hcm", &[ACR_PASSWORD])], |checks| {
            let refused =
                validate_with(checks, raw("portal", &[("acr_values", ACR_VNEID_LEVEL2), ("state", "s")]));
            let Err(AuthorizeError::Redirect { error, to, .. }) = refused else { panic!("{refused:?}") };
            assert_eq!(error, "unmet_authentication_requirements");
            assert_eq!(to.state.as_deref(), Some("s"));
        });
    }

    #[test]
    fn prompt_login_and_select_account_force_a_fresh_login() {
        with_checks(|checks| {
            for prompt in ["login", "select_account", "consent login"] {
                let req = validate_with(checks, raw("portal", &[("prompt", prompt)])).unwrap();
                assert!(req.force_login, "{prompt}");
            }
            for prompt in ["none", "consent"] {
                let req = validate_with(checks, raw("portal", &[("prompt", prompt)])).unwrap();
                assert!(!req.force_login, "{prompt}");
            }
            let combined = validate_with(checks, raw("portal", &[("prompt", "none login")]));
            assert!(matches!(combined, Err(AuthorizeError::Redirect { error: "invalid_request", .. })));
        });
    }

    #[test]
    fn max_age_must_be_a_non_negative_integer() {
        with_checks(|checks| {
            let req = validate_with(checks, raw("portal", &[("max_age", "0")])).unwrap();
            assert_eq!(req.max_age, Some(0));
            for bad in ["-1", "1.5", "soon", "99999999999999999999"] {
                let refused = validate_with(checks, raw("portal", &[("max_age", bad)]));
                assert!(
                    matches!(refused, Err(AuthorizeError::Redirect { error: "invalid_request", .. })),
                    "{bad}"
                );
            }
        });
    }
}

#[cfg(test)]
mod caps {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;

    fn request(extra: &[(&str, String)]) -> Vec<(String, String)> {
        let mut raw: Vec<(String, String)> = [
            ("client_id", "portal"),
            ("redirect_uri", "https://portal.example/cb"),
            ("response_type", "code"),
            ("scope", "openid"),
            ("code_challenge", "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"),
            ("code_challenge_method", "S256"),
        ]
        .iter()
        .filter(|(k, _)| !extra.iter().any(|(e, _)| e == k))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        raw.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
        raw
    }

    /// Each parameter at its cap is accepted; one byte more is an `invalid_request` sent to the
    /// (trusted) redirect URI, naming the parameter, and nothing is built to park.
    #[test]
    fn authorization_parameters_over_their_caps_are_refused_to_the_redirect_uri() {
        let app = &crate::app::shared_test_state().app;
        let at_cap = |name: &str, cap: usize| match name {
            "scope" => format!("openid{}", " openid".repeat((cap - 6) / 7)),
            "acr_values" | "ui_locales" | "prompt" => "x".repeat(cap),
            _ => "a".repeat(cap),
        };
        for (name, cap) in [
            ("state", 1024),
            ("nonce", 256),
            ("login_hint", 256),
            ("acr_values", 512),
            ("ui_locales", 128),
            ("scope", 1024),
        ] {
            assert!(PARAMETER_CAPS.contains(&(name, cap)), "{name} ≤ {cap}");
            let fits = at_cap(name, cap);
            assert!(fits.len() <= cap);
            assert!(
                validate(app.provider(), request(&[(name, fits)])).is_ok(),
                "{name} at its cap is accepted"
            );
            let over = format!("{}x", "a".repeat(cap));
            let extra =
                if name == "state" { vec![(name, over)] } else { vec![(name, over), ("state", "st".into())] };
            let refused = validate(app.provider(), request(&extra));
            let Err(AuthorizeError::Redirect { to, error, description }) = refused else {
                panic!("{name} over its cap: {refused:?}")
            };
            assert_eq!(error, "invalid_request", "{name}");
            assert!(description.contains(name), "{name}: {description}");
            assert_eq!(to.redirect_uri, "https://portal.example/cb");
            if name == "state" {
                assert_eq!(to.state, None, "an oversized state is not echoed");
            } else {
                assert_eq!(to.state.as_deref(), Some("st"));
            }
        }
        for code_param in ["code_challenge", "code_challenge_method", "prompt"] {
            let refused = validate(app.provider(), request(&[(code_param, "a".repeat(200))]));
            assert!(
                matches!(refused, Err(AuthorizeError::Redirect { error: "invalid_request", .. })),
                "{code_param}"
            );
        }
    }

    #[test]
    fn a_nonce_must_be_printable_ascii() {
        let app = &crate::app::shared_test_state().app;
        assert!(validate(app.provider(), request(&[("nonce", "n-0.9~_ !#".into())])).is_ok());
        for bad in ["ngườidùng", "tab\there"] {
            let refused = validate(app.provider(), request(&[("nonce", bad.to_string())]));
            assert!(
                matches!(&refused, Err(AuthorizeError::Redirect { error: "invalid_request", description, .. }) if description.contains("printable ASCII")),
                "{bad}: {refused:?}"
            );
        }
    }

    /// An oversized value in a request whose redirect URI cannot be trusted still gets the
    /// page, never a redirect.
    #[test]
    fn an_oversized_parameter_with_an_unregistered_redirect_uri_is_a_page() {
        let app = &crate::app::shared_test_state().app;
        let raw = request(&[("redirect_uri", "https://evil.example/cb".into()), ("state", "a".repeat(5000))]);
        assert!(matches!(validate(app.provider(), raw), Err(AuthorizeError::Page(_))));
    }
}

#[cfg(test)]
mod properties {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use proptest::prelude::*;

    use super::*;

    const NAMES: [&str; 21] = [
        "client_id",
        "redirect_uri",
        "response_type",
        "scope",
        "state",
        "nonce",
        "code_challenge",
        "code_challenge_method",
        "response_mode",
        "prompt",
        "max_age",
        "login_hint",
        "ui_locales",
        "acr_values",
        "idp_hint",
        "request",
        "request_uri",
        "dpop_jkt",
        "id_token_hint",
        "claims",
        "",
    ];

    /// Values that get past some checks (registered clients and URIs, well-formed PKCE) mixed
    /// with hostile ones, so deeper checks are reached too.
    fn value() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::sample::select(vec![
                "portal",
                "spa",
                "signer",
                "https://portal.example/cb",
                "https://spa.example/cb",
                "code",
                "openid",
                "openid profile offline_access",
                "S256",
                "plain",
                "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
                "none",
                "login consent",
                "none login",
                "-1",
                "99999999999999999999",
                "form_post",
                "query",
                "fragment",
                "vi en",
            ])
            .prop_map(str::to_string),
            any::<String>(),
            "[a-z0-9 ._~-]{0,64}",
            (0usize..3000).prop_map(|n| "s".repeat(n)),
        ]
    }

    proptest! {
        #![proptest_config(crate::fuzzing::config(256))]

        #[test]
        fn any_parameters_are_a_valid_request_or_an_error(
            pairs in prop::collection::vec((prop::sample::select(NAMES.to_vec()), value()), 0..24),
        ) {
            let shared = crate::app::shared_test_state();
            let app = &shared.app;
            let raw: Vec<(String, String)> = pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
            let Ok(req) = validate(app.provider(), raw.clone()) else { return Ok(()) };
            let client = app.clients.get(req.client_id.as_str()).unwrap();
            prop_assert!(client.has_redirect_uri(&req.redirect_uri));
            prop_assert!(req.scopes.iter().any(|s| s == "openid"));
            prop_assert!(req.scopes.iter().all(|s| client.scopes.contains(s)));
            prop_assert!(req.state.as_ref().is_none_or(|s| s.len() <= 1024));
            prop_assert!(req.nonce.as_ref().is_none_or(|n| n.len() <= 256 && n.bytes().all(|b| (0x20..0x7f).contains(&b))));
            prop_assert!(req.login_hint.as_ref().is_none_or(|h| h.len() <= 256));
            prop_assert!(req.code_challenge.as_ref().is_none_or(|c| c.len() == 43));
            prop_assert!(!client.is_public() || req.code_challenge.is_some());
            prop_assert!(req.max_age.is_none_or(|m| m >= 0));
            let names: Vec<&str> = raw.iter().map(|(k, _)| k.as_str()).collect();
            prop_assert!(params::first_repeated(&raw).is_none(), "repeated parameters accepted: {names:?}");
        }

        #[test]
        fn any_query_string_is_decoded_and_validated_without_panic(raw in prop::collection::vec(any::<u8>(), 0..1024)) {
            let shared = crate::app::shared_test_state();
            if let Ok(pairs) = params::parse(&raw, Controls::Refused) {
                let _ = validate(shared.app.provider(), pairs);
            }
        }
    }
}
