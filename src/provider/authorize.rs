//! `/authorize` (GET and POST): validates the request against the client registry, answers
//! at once from a satisfying SSO session, or parks the request and sends the browser to the
//! chooser / broker. Errors before the redirect URI is trusted are pages, never redirects.

use std::collections::HashMap;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde_json::json;
use url::Url;

use super::records::{self, AuthorizationRequest, CodeRecord, ResponseMode, UserGrant, code_key};
use crate::app::AppState;
use crate::config::GrantType;
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

/// Validates raw parameters into an authorization request.
pub fn validate(app: &AppState, raw: Vec<(String, String)>) -> Result<AuthorizationRequest, AuthorizeError> {
    let mut params: HashMap<String, String> = HashMap::new();
    let mut duplicated = None;
    for (k, v) in raw {
        match params.entry(k) {
            std::collections::hash_map::Entry::Occupied(e) => duplicated = Some(e.key().clone()),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(v);
            }
        }
    }
    let get = |k: &str| params.get(k).map(String::as_str).filter(|v| !v.is_empty());

    let Some(client_id) = get("client_id") else {
        return Err(bad_request_page(
            "Ứng dụng gửi yêu cầu thiếu mã ứng dụng (client_id).",
            "The application's request has no client_id.",
        ));
    };
    let Some(client) = app.clients.get(client_id) else {
        return Err(bad_request_page(
            "Ứng dụng gửi yêu cầu chưa được đăng ký với hệ thống đăng nhập.",
            "The requesting application (client_id) is not registered.",
        ));
    };
    let Some(redirect_uri) = get("redirect_uri").filter(|r| client.has_redirect_uri(r)) else {
        return Err(bad_request_page(
            "Địa chỉ quay lại (redirect_uri) không khớp với địa chỉ đã đăng ký của ứng dụng.",
            "The redirect_uri is missing or does not exactly match one registered for this application.",
        ));
    };
    if duplicated.as_deref().is_some_and(|k| k == "redirect_uri" || k == "client_id") {
        return Err(bad_request_page("Tham số bị lặp lại.", "A parameter was sent more than once."));
    }
    let response_mode = match get("response_mode") {
        None | Some("query") => ResponseMode::Query,
        Some("form_post") => ResponseMode::FormPost,
        Some(_) => ResponseMode::Query,
    };
    let mut to = ReturnTo {
        redirect_uri: redirect_uri.to_string(),
        response_mode,
        state: get("state").map(str::to_string),
    };
    if let Some(over) = oversized(&get) {
        // An oversized state is not echoed: the answer stays a short redirect.
        if over.name == "state" {
            to.state = None;
        }
        return Err(AuthorizeError::to_rp(&to, "invalid_request", over.to_string()));
    }
    if let Some(k) = duplicated {
        return Err(AuthorizeError::to_rp(&to, "invalid_request", format!("parameter {k} is repeated")));
    }
    if let Some(mode) = get("response_mode")
        && mode != "query"
        && mode != "form_post"
    {
        return Err(AuthorizeError::to_rp(
            &to,
            "invalid_request",
            format!("response_mode {mode} is not supported"),
        ));
    }
    if get("request").is_some() {
        return Err(AuthorizeError::to_rp(&to, "request_not_supported", "request objects are not supported"));
    }
    if get("request_uri").is_some() {
        return Err(AuthorizeError::to_rp(&to, "request_uri_not_supported", "request_uri is not supported"));
    }
    match get("response_type") {
        None => return Err(AuthorizeError::to_rp(&to, "invalid_request", "response_type is required")),
        Some("code") => {}
        Some(_) => {
            return Err(AuthorizeError::to_rp(
                &to,
                "unsupported_response_type",
                "only response_type=code is supported",
            ));
        }
    }
    if !client.allows_grant(GrantType::AuthorizationCode) {
        return Err(AuthorizeError::to_rp(
            &to,
            "unauthorized_client",
            "this client may not use the authorization code flow",
        ));
    }
    let scopes: Vec<String> = get("scope").unwrap_or("").split_whitespace().map(str::to_string).collect();
    if !scopes.iter().any(|s| s == "openid") {
        return Err(AuthorizeError::to_rp(&to, "invalid_scope", "scope must contain openid"));
    }
    if let Some(s) = scopes.iter().find(|s| !client.scopes.contains(s)) {
        return Err(AuthorizeError::to_rp(
            &to,
            "invalid_scope",
            format!("scope {s} is not allowed for this client"),
        ));
    }
    let mut unique_scopes: Vec<String> = Vec::with_capacity(scopes.len());
    for s in scopes {
        if !unique_scopes.contains(&s) {
            unique_scopes.push(s);
        }
    }
    let code_challenge = match (get("code_challenge"), get("code_challenge_method")) {
        (None, None) => None,
        (None, Some(_)) => {
            return Err(AuthorizeError::to_rp(
                &to,
                "invalid_request",
                "code_challenge_method without code_challenge",
            ));
        }
        (Some(_), Some(m)) if m != "S256" => {
            return Err(AuthorizeError::to_rp(
                &to,
                "invalid_request",
                "only code_challenge_method=S256 is supported",
            ));
        }
        (Some(_), None) => {
            return Err(AuthorizeError::to_rp(
                &to,
                "invalid_request",
                "code_challenge_method=S256 is required (plain is not supported)",
            ));
        }
        (Some(c), Some(_)) => {
            let well_formed =
                c.len() == 43 && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !well_formed {
                return Err(AuthorizeError::to_rp(
                    &to,
                    "invalid_request",
                    "code_challenge is not a base64url SHA-256",
                ));
            }
            Some(c.to_string())
        }
    };
    if client.requires_pkce() && code_challenge.is_none() {
        return Err(AuthorizeError::to_rp(
            &to,
            "invalid_request",
            "PKCE (code_challenge with S256) is required",
        ));
    }
    let nonce = get("nonce").map(str::to_string);
    let prompts: Vec<&str> = get("prompt").unwrap_or("").split_whitespace().collect();
    if prompts.contains(&"none") && prompts.len() > 1 {
        return Err(AuthorizeError::to_rp(&to, "invalid_request", "prompt=none cannot be combined"));
    }
    if let Some(p) = prompts.iter().find(|p| !matches!(**p, "none" | "login" | "consent" | "select_account"))
    {
        return Err(AuthorizeError::to_rp(&to, "invalid_request", format!("prompt {p} is not supported")));
    }
    let max_age = match get("max_age") {
        None => None,
        Some(v) => match v.parse::<i64>() {
            Ok(n) if n >= 0 => Some(n),
            _ => {
                return Err(AuthorizeError::to_rp(
                    &to,
                    "invalid_request",
                    "max_age must be a non-negative integer",
                ));
            }
        },
    };
    // Assurance: any level the RP lists in acr_values is acceptable, so the lowest one listed
    // is the minimum; the client's configured minimum applies on top. Values that are not
    // gateway levels are ignored (acr_values is a voluntary request, OIDC Core §3.1.2.1).
    let levels = &app.settings.assurance;
    let requested = get("acr_values").and_then(|v| v.split_whitespace().filter_map(|a| levels.rank(a)).min());
    let client_min = client.min_acr.as_deref().and_then(|a| levels.rank(a));
    let acr_accepted = requested.max(client_min).map(|rank| levels.at_least(rank)).unwrap_or_default();
    if !acr_accepted.is_empty() && !app.broker.can_satisfy(&acr_accepted) {
        return Err(AuthorizeError::to_rp(
            &to,
            "unmet_authentication_requirements",
            "no login system reaches the requested assurance level",
        ));
    }
    // DPoP (RFC 9449 §10): the code will only be redeemed with a proof of this key.
    let dpop_jkt = get("dpop_jkt").map(str::to_string);
    if dpop_jkt.as_deref().is_some_and(|j| !super::dpop::is_thumbprint(j)) {
        return Err(AuthorizeError::to_rp(
            &to,
            "invalid_request",
            "dpop_jkt is not a SHA-256 JWK thumbprint",
        ));
    }
    let idp_hint = get("idp_hint")
        .filter(|id| app.broker.has_upstream(id) && app.broker.upstream_can_satisfy(id, &acr_accepted))
        .map(str::to_string);
    // prompt=none is answered from the session or refused; it is never parked.
    Ok(AuthorizationRequest {
        client_id: client.client_id.clone(),
        redirect_uri: to.redirect_uri.clone(),
        response_mode,
        state: to.state.clone(),
        nonce,
        scopes: unique_scopes,
        code_challenge,
        force_login: prompts.contains(&"login") || prompts.contains(&"select_account"),
        max_age,
        login_hint: get("login_hint").map(str::to_string),
        lang: Lang::from_ui_locales(get("ui_locales")),
        idp_hint,
        acr_accepted,
        dpop_jkt,
    })
}

pub async fn get(State(app): State<AppState>, headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    match params::parse(query.as_deref().unwrap_or("").as_bytes(), Controls::Refused) {
        Ok(raw) => authorize(app, headers, raw).await,
        Err(e) => malformed(&e),
    }
}

pub async fn post(State(app): State<AppState>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
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

async fn authorize(app: AppState, headers: HeaderMap, raw: Vec<(String, String)>) -> Response {
    // A pushed request (RFC 9126) stands in for the parameters sent.
    let (raw, pushed) = match super::par::resolve(&app, raw).await {
        Ok(resolved) => resolved,
        Err(e) => return e.into_response_for(app.issuer()),
    };
    let prompt_none = raw.iter().any(|(k, v)| k == "prompt" && v.split_whitespace().any(|p| p == "none"));
    let req = match validate(&app, raw) {
        Ok(req) => req,
        Err(e) => return e.into_response_for(app.issuer()),
    };
    let to = ReturnTo {
        redirect_uri: req.redirect_uri.clone(),
        response_mode: req.response_mode,
        state: req.state.clone(),
    };
    if !pushed && app.clients.get(&req.client_id).is_some_and(|c| super::par::required(&app, &c)) {
        return AuthorizeError::to_rp(
            &to,
            "invalid_request",
            "this client must push its authorization requests to /par",
        )
        .into_response_for(app.issuer());
    }
    let result = async {
        let session = app.sessions.current(&headers).await?;
        if let Some(session) = session
            && satisfies(&req, &session, app.clock.now())
        {
            return Ok(Some(issue_code(&app, &req, &session).await?));
        }
        Ok::<_, StoreError>(None)
    }
    .await;
    match result {
        Ok(Some(response)) => return response,
        Ok(None) => {}
        Err(e) => return store_failure(&app, &to, e),
    }
    if prompt_none {
        return AuthorizeError::to_rp(&to, "login_required", "no session satisfies the request")
            .into_response_for(app.issuer());
    }
    let id = match records::park(&app.store, &req, app.settings.lifetimes.login_attempt).await {
        Ok(id) => id,
        Err(e) => return store_failure(&app, &to, e),
    };
    let next = match &req.idp_hint {
        Some(upstream) => format!("/upstream/{upstream}/login?request={id}"),
        None => format!("/login?request={id}"),
    };
    Redirect::to(&next).into_response()
}

/// A state-store failure answering a trusted request: `temporarily_unavailable` to the RP,
/// "busy" when the store is full.
pub fn store_failure(app: &AppState, to: &ReturnTo, e: StoreError) -> Response {
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
    app: &AppState,
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
            assert!(validate(app, request(&[(name, fits)])).is_ok(), "{name} at its cap is accepted");
            let over = format!("{}x", "a".repeat(cap));
            let extra =
                if name == "state" { vec![(name, over)] } else { vec![(name, over), ("state", "st".into())] };
            let refused = validate(app, request(&extra));
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
            let refused = validate(app, request(&[(code_param, "a".repeat(200))]));
            assert!(
                matches!(refused, Err(AuthorizeError::Redirect { error: "invalid_request", .. })),
                "{code_param}"
            );
        }
    }

    #[test]
    fn a_nonce_must_be_printable_ascii() {
        let app = &crate::app::shared_test_state().app;
        assert!(validate(app, request(&[("nonce", "n-0.9~_ !#".into())])).is_ok());
        for bad in ["ngườidùng", "tab\there"] {
            let refused = validate(app, request(&[("nonce", bad.to_string())]));
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
        assert!(matches!(validate(app, raw), Err(AuthorizeError::Page(_))));
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
            let Ok(req) = validate(app, raw.clone()) else { return Ok(()) };
            let client = app.clients.get(&req.client_id).unwrap();
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
                let _ = validate(&shared.app, pairs);
            }
        }
    }
}
