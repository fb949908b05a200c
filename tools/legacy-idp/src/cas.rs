//! CAS mode of the simulated system (TEST TOOLING): a small Apereo CAS protocol 3.0 server.
//!
//! - `GET {base}/login?service=…[&renew=true]`: with a live single sign-on cookie (`CASTGC`)
//!   and no `renew`, a ticket at once; otherwise the login form. A successful form login
//!   starts a CAS session and redirects to `service?ticket=ST-…`.
//! - `GET {base}/p3/serviceValidate` and `{base}/serviceValidate`: validates a ticket for
//!   exactly the service it was issued for, once; the user's claims are released as
//!   `<cas:attributes>`, plus `uid` (the user's stable subject), `isFromNewLogin` and
//!   `authenticationDate`.
//! - `GET {base}/logout[?service=…]`: ends the CAS session and POSTs a SAML single-logout
//!   `LogoutRequest` (session index = the ticket) to every service that received a ticket in
//!   it, before answering.
//!
//! Faults make the validation answer misbehave (`cas2_only`, `cas_malformed_xml`,
//! `cas_huge_body`, `cas_entity_expansion`).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::Value;
use subtle::ConstantTimeEq;

use super::config::is_loopback_http;
use super::server::{
    Shared, error_page, lock, login_page_at, parse_params, random_token, redirect_with, unix_now,
};

/// Service tickets are short-lived (Apereo's default is 10 s; tests need a little slack).
const TICKET_LIFETIME: Duration = Duration::from_secs(60);
const PENDING_LIFETIME: Duration = Duration::from_secs(600);
const TGC: &str = "CASTGC";

#[derive(Default)]
pub(crate) struct CasState {
    pending: Mutex<HashMap<String, Pending>>,
    tickets: Mutex<HashMap<String, Ticket>>,
    /// CAS single sign-on sessions by ticket-granting cookie.
    sessions: Mutex<HashMap<String, SsoSession>>,
    /// Every ticket issued, in order (for tests).
    issued: Mutex<Vec<String>>,
}

struct Pending {
    service: String,
    created: Instant,
}

struct Ticket {
    service: String,
    username: String,
    from_new_login: bool,
    auth_time: u64,
    created: Instant,
}

struct SsoSession {
    username: String,
    auth_time: u64,
    /// (service, ticket) pairs, for single logout.
    services: Vec<(String, String)>,
}

pub(crate) fn issued(s: &Shared) -> Vec<String> {
    lock(&s.cas.issued).clone()
}

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    let base = shared.config.issuer_path.clone();
    Router::new()
        .route(&format!("{base}/login"), get(login_form).post(login))
        .route(&format!("{base}/p3/serviceValidate"), get(validate_p3))
        .route(&format!("{base}/serviceValidate"), get(validate_cas2))
        .route(&format!("{base}/logout"), get(logout))
        .with_state(shared)
}

fn tgc(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, v)| *k == TGC && !v.is_empty())
        .map(|(_, v)| v.to_string())
}

/// Issues a ticket for `service`, records it in the CAS session, and redirects there.
fn grant(s: &Shared, tgc: &str, service: &str, from_new_login: bool) -> Option<Response> {
    let ticket = format!("ST-{}-{}", lock(&s.cas.issued).len() + 1, random_token(24));
    let (username, auth_time) = {
        let mut sessions = lock(&s.cas.sessions);
        let session = sessions.get_mut(tgc)?;
        session.services.push((service.to_string(), ticket.clone()));
        (session.username.clone(), session.auth_time)
    };
    {
        let mut tickets = lock(&s.cas.tickets);
        tickets.retain(|_, t| t.created.elapsed() < TICKET_LIFETIME);
        tickets.insert(
            ticket.clone(),
            Ticket {
                service: service.to_string(),
                username,
                from_new_login,
                auth_time,
                created: Instant::now(),
            },
        );
    }
    lock(&s.cas.issued).push(ticket.clone());
    Some(redirect_with(service, &[("ticket", &ticket)]))
}

async fn login_form(State(s): State<Arc<Shared>>, headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    let params = match parse_params(query.unwrap_or_default().as_bytes()) {
        Ok(p) => p,
        Err(m) => return error_page(&s, &m.0, &m.1),
    };
    let Some(service) = params.get("service").filter(|u| is_loopback_http(u)) else {
        return error_page(
            &s,
            "Dịch vụ (service) không được phép dùng hệ thống này.",
            "The service is not allowed to use this CAS server.",
        );
    };
    let renew = params.get("renew").is_some_and(|v| v == "true");
    if !renew
        && let Some(cookie) = tgc(&headers)
        && let Some(res) = grant(&s, &cookie, service, false)
    {
        return res;
    }
    let request_id = random_token(24);
    {
        let mut pending = lock(&s.cas.pending);
        pending.retain(|_, p| p.created.elapsed() < PENDING_LIFETIME);
        pending.insert(request_id.clone(), Pending { service: service.clone(), created: Instant::now() });
    }
    login_page_at(&s, &format!("{}/login", s.config.issuer_path), &request_id, "", None)
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
    let action = format!("{}/login", s.config.issuer_path);
    let user = s
        .config
        .user(&form.username)
        .filter(|u| bool::from(u.password.as_bytes().ct_eq(form.password.as_bytes())));
    let Some(user) = user else {
        let known = lock(&s.cas.pending).contains_key(&form.request_id);
        if !known {
            return error_page(&s, "Phiên đăng nhập đã hết hạn.", "The sign-in request expired.");
        }
        return login_page_at(
            &s,
            &action,
            &form.request_id,
            &form.username,
            Some("Tên đăng nhập hoặc mật khẩu không đúng. / Incorrect username or password."),
        );
    };
    let Some(pending) =
        lock(&s.cas.pending).remove(&form.request_id).filter(|p| p.created.elapsed() < PENDING_LIFETIME)
    else {
        return error_page(&s, "Phiên đăng nhập đã hết hạn.", "The sign-in request expired.");
    };
    let cookie = random_token(24);
    lock(&s.cas.sessions).insert(
        cookie.clone(),
        SsoSession { username: user.username.clone(), auth_time: unix_now(), services: Vec::new() },
    );
    tracing::info!(idp = %s.config.id, username = %user.username, "CAS login succeeded");
    let Some(mut res) = grant(&s, &cookie, &pending.service, true) else {
        return error_page(&s, "Lỗi hệ thống.", "Internal error.");
    };
    let set = format!("{TGC}={cookie}; Path={}; HttpOnly; SameSite=Lax", path_or_root(&s.config.issuer_path));
    if let Ok(v) = HeaderValue::from_str(&set) {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
    res
}

fn path_or_root(p: &str) -> &str {
    if p.is_empty() { "/" } else { p }
}

async fn validate_p3(State(s): State<Arc<Shared>>, RawQuery(query): RawQuery) -> Response {
    if s.fault(|f| &f.cas2_only) {
        return (StatusCode::NOT_FOUND, "Not Found").into_response();
    }
    validate(&s, query.as_deref().unwrap_or(""))
}

async fn validate_cas2(State(s): State<Arc<Shared>>, RawQuery(query): RawQuery) -> Response {
    validate(&s, query.as_deref().unwrap_or(""))
}

fn xml_response(body: String) -> Response {
    let mut res = (StatusCode::OK, body).into_response();
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/xml;charset=UTF-8"));
    res
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn failure(code: &str, message: &str) -> Response {
    xml_response(format!(
        "<cas:serviceResponse xmlns:cas=\"http://www.yale.edu/tp/cas\">\n  <cas:authenticationFailure code=\"{code}\">{}</cas:authenticationFailure>\n</cas:serviceResponse>\n",
        escape(message)
    ))
}

fn validate(s: &Shared, query: &str) -> Response {
    if s.fault(|f| &f.cas_malformed_xml) {
        return xml_response("<cas:serviceResponse xmlns:cas=\"http://www.yale.edu/tp/cas\"><cas:authenticationSuccess><cas:user>admin".into());
    }
    if s.fault(|f| &f.cas_huge_body) {
        return xml_response(format!(
            "<cas:serviceResponse xmlns:cas=\"http://www.yale.edu/tp/cas\"><!--{}--></cas:serviceResponse>",
            "x".repeat(1024 * 1024)
        ));
    }
    if s.fault(|f| &f.cas_entity_expansion) {
        let mut dtd = String::from("<!ENTITY a0 \"lol\">");
        for i in 1..10 {
            dtd.push_str(&format!("<!ENTITY a{i} \"{}\">", format!("&a{};", i - 1).repeat(10)));
        }
        return xml_response(format!(
            "<?xml version=\"1.0\"?><!DOCTYPE r [{dtd}]><cas:serviceResponse xmlns:cas=\"http://www.yale.edu/tp/cas\"><cas:authenticationSuccess><cas:user>&a9;</cas:user></cas:authenticationSuccess></cas:serviceResponse>"
        ));
    }
    let Ok(params) = parse_params(query.as_bytes()) else {
        return failure("INVALID_REQUEST", "repeated parameters");
    };
    let (Some(service), Some(ticket)) = (params.get("service"), params.get("ticket")) else {
        return failure("INVALID_REQUEST", "service and ticket are required");
    };
    // Consumed by any validation attempt, successful or not (CAS 3.0 §3.1.1).
    let Some(t) = lock(&s.cas.tickets).remove(ticket).filter(|t| t.created.elapsed() < TICKET_LIFETIME)
    else {
        return failure("INVALID_TICKET", &format!("Ticket {ticket} not recognized"));
    };
    if &t.service != service {
        return failure("INVALID_SERVICE", &format!("Ticket {ticket} was not issued for this service"));
    }
    if params.get("renew").is_some_and(|v| v == "true") && !t.from_new_login {
        return failure("INVALID_TICKET", "renew was requested but the ticket is not from a new login");
    }
    let Some(user) = s.config.user(&t.username) else {
        return failure("INVALID_TICKET", "user no longer exists");
    };
    let mut attrs = String::new();
    let mut push = |k: &str, v: &str| attrs.push_str(&format!("      <cas:{k}>{}</cas:{k}>\n", escape(v)));
    push("uid", &user.subject);
    push("isFromNewLogin", if t.from_new_login { "true" } else { "false" });
    let date = time::OffsetDateTime::from_unix_timestamp(t.auth_time as i64)
        .ok()
        .and_then(|d| d.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default();
    push("authenticationDate", &date);
    for (k, v) in &user.claims {
        if !k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
            continue;
        }
        match v {
            Value::Array(items) => items.iter().for_each(|i| push(k, &scalar(i))),
            other => push(k, &scalar(other)),
        }
    }
    xml_response(format!(
        "<cas:serviceResponse xmlns:cas=\"http://www.yale.edu/tp/cas\">\n  <cas:authenticationSuccess>\n    <cas:user>{}</cas:user>\n    <cas:attributes>\n{attrs}    </cas:attributes>\n  </cas:authenticationSuccess>\n</cas:serviceResponse>\n",
        escape(&user.username)
    ))
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

async fn logout(State(s): State<Arc<Shared>>, headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    s.logouts.fetch_add(1, Ordering::SeqCst);
    let params = parse_params(query.unwrap_or_default().as_bytes()).unwrap_or_default();
    let ended = tgc(&headers).and_then(|c| lock(&s.cas.sessions).remove(&c));
    if let Some(session) = ended {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_default();
        for (service, ticket) in &session.services {
            let document = format!(
                "<samlp:LogoutRequest xmlns:samlp=\"urn:oasis:names:tc:SAML:2.0:protocol\" xmlns:saml=\"urn:oasis:names:tc:SAML:2.0:assertion\" ID=\"LR-{}\" Version=\"2.0\" IssueInstant=\"{}\"><saml:NameID>@NOT_USED@</saml:NameID><samlp:SessionIndex>{ticket}</samlp:SessionIndex></samlp:LogoutRequest>",
                random_token(12),
                unix_now()
            );
            let result = http.post(service).form(&[("logoutRequest", document)]).send().await;
            tracing::info!(idp = %s.config.id, ok = result.is_ok(), "CAS single logout request sent");
        }
    }
    let clear = format!("{TGC}=; Path={}; Max-Age=0", path_or_root(&s.config.issuer_path));
    let mut res = match params.get("service").filter(|u| is_loopback_http(u)) {
        Some(service) => redirect_with(service, &[]),
        None => error_page(&s, "Bạn đã đăng xuất.", "You are logged out."),
    };
    if let Ok(v) = HeaderValue::from_str(&clear) {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
    res
}
