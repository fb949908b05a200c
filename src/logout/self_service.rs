//! "My sessions": a person sees where they are logged in and ends any of those sessions
//! (`/sessions`, and the sessions part of the account page, which reads [`session_rows`]).

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;
use subtle::ConstantTimeEq;

use super::LogoutState;
use crate::state::StoreError;
use crate::web::{self, ErrorPage};

fn not_logged_in() -> Response {
    ErrorPage::new(StatusCode::UNAUTHORIZED, "Bạn chưa đăng nhập", "You are not logged in")
        .detail(
            "Không có phiên đăng nhập nào trên trình duyệt này.",
            "There is no login session in this browser.",
        )
        .into_response()
}

/// One session of an account as its holder sees it.
#[derive(Debug, Clone, Serialize)]
pub struct SessionRow {
    pub sid: String,
    /// The session of the browser asking.
    pub current: bool,
    /// Display name of the system the session was logged in with.
    pub upstream: String,
    /// When it started, Vietnam time.
    pub started: String,
    /// Names of the applications that received tokens in it.
    pub clients: Vec<String>,
}

/// Every live session of `account_id`, with the applications that received tokens in each.
pub async fn session_rows(
    app: &LogoutState,
    account_id: &str,
    current_sid: &str,
) -> Result<Vec<SessionRow>, StoreError> {
    let sessions = app.sessions.list_for_account(account_id).await?;
    let mut rows = Vec::new();
    for s in sessions {
        let clients = app.sessions.clients(&s.sid).await.unwrap_or_default();
        let names: Vec<String> = clients
            .iter()
            .map(|c| app.clients.get(c.as_str()).map(|c| c.name.clone()).unwrap_or_else(|| c.clone()))
            .collect();
        let started = time::OffsetDateTime::from_unix_timestamp(s.auth_time)
            .map(|t| t.to_offset(time::macros::offset!(+7)))
            .ok()
            .and_then(|t| {
                t.format(time::macros::format_description!("[day]/[month]/[year] [hour]:[minute]")).ok()
            })
            .unwrap_or_default();
        rows.push(SessionRow {
            current: s.sid == current_sid,
            upstream: app.broker.display_name(&s.upstream),
            sid: s.sid,
            started,
            clients: names,
        });
    }
    Ok(rows)
}

pub async fn list(State(app): State<LogoutState>, headers: HeaderMap) -> Response {
    let current = match app.sessions.current(&headers).await {
        Ok(Some(s)) => s,
        Ok(None) => return not_logged_in(),
        Err(_) => return ErrorPage::unavailable().into_response(),
    };
    let rows = match session_rows(&app, &current.account_id, &current.sid).await {
        Ok(rows) => rows,
        Err(_) => return ErrorPage::unavailable().into_response(),
    };
    let html = web::render("sessions.html", json!({ "sessions": rows, "csrf": current.csrf }));
    web::html_response(StatusCode::OK, html, web::CSP_PAGE)
}

#[derive(Debug, Deserialize)]
pub struct EndForm {
    sid: String,
    csrf: String,
    /// `account`: return to the account page (`/account`) instead of `/sessions`.
    #[serde(default)]
    next: Option<String>,
    /// The language of the page the form was on (kept on the way back).
    #[serde(default)]
    lang: Option<crate::web::Lang>,
}

pub async fn end(
    State(app): State<LogoutState>,
    headers: HeaderMap,
    web::params::Form(form): web::params::Form<EndForm>,
) -> Response {
    let current = match app.sessions.current(&headers).await {
        Ok(Some(s)) => s,
        Ok(None) => return not_logged_in(),
        Err(_) => return ErrorPage::unavailable().into_response(),
    };
    if !bool::from(form.csrf.as_bytes().ct_eq(current.csrf.as_bytes())) {
        return ErrorPage::new(StatusCode::FORBIDDEN, "Yêu cầu không hợp lệ", "Invalid request")
            .detail(
                "Biểu mẫu đã hết hạn. Vui lòng tải lại trang.",
                "The form has expired. Please reload the page.",
            )
            .into_response();
    }
    let targets = match app.sessions.list_for_account(&current.account_id).await {
        Ok(all) => all.into_iter().filter(|s| form.sid == "all" || s.sid == form.sid).collect::<Vec<_>>(),
        Err(_) => return ErrorPage::unavailable().into_response(),
    };
    let mut ended_current = false;
    for s in &targets {
        if let Err(e) = super::end_session(&app, s, "ended by the account holder").await {
            tracing::error!(error = %e, "state store failure ending a session");
            return ErrorPage::unavailable().into_response();
        }
        ended_current |= s.sid == current.sid;
    }
    if ended_current {
        let mut res = super::rp_initiated::finish(&app, Default::default());
        res.headers_mut().append(header::SET_COOKIE, app.sessions.clear_cookie());
        return res;
    }
    match (form.next.as_deref(), form.lang) {
        (Some("account"), Some(lang)) => {
            Redirect::to(&format!("/account?lang={}", lang.code())).into_response()
        }
        (Some("account"), None) => Redirect::to("/account").into_response(),
        _ => Redirect::to("/sessions").into_response(),
    }
}
