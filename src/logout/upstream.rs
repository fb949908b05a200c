//! Logout coming from an upstream: the return from its RP-initiated logout, its Back-Channel
//! Logout tokens at `/upstream/{id}/backchannel-logout`, and CAS single-logout requests
//! POSTed to the service URL `/upstream/{id}/callback`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::rp_initiated::{Continuation, finish};
use crate::app::AppState;
use crate::broker::BrokerError;
use crate::login::ClientIp;
use crate::state::hashed_key;
use crate::web::params::{self, Controls};

#[derive(Debug, Deserialize)]
pub struct Returned {
    state: Option<String>,
}

/// The upstream ended its session and sent the browser back: continue to the RP.
pub async fn returned(
    State(app): State<AppState>,
    Path(_id): Path<String>,
    crate::web::params::Query(q): crate::web::params::Query<Returned>,
) -> Response {
    let cont = match q.state.as_deref().filter(|s| s.len() <= 128) {
        Some(state) => {
            app.store.take_json::<Continuation>(&hashed_key("logout-continue", state)).await.ok().flatten()
        }
        None => None,
    };
    finish(&app, cont.unwrap_or_default())
}

#[derive(Debug, Deserialize)]
pub struct BackchannelForm {
    logout_token: Option<String>,
}

fn error(status: StatusCode, description: &str) -> Response {
    let mut res = (status, Json(json!({ "error": "invalid_request", "error_description": description })))
        .into_response();
    res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// An upstream says one of its sessions ended: end every gateway session made from it, with
/// the same propagation to RPs as any other logout.
pub async fn backchannel(
    State(app): State<AppState>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let form: BackchannelForm = match params::deserialize(&body, Controls::Refused) {
        Ok(f) => f,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let Some(token) = form.logout_token.filter(|t| !t.is_empty() && t.len() <= 16 * 1024) else {
        return error(StatusCode::BAD_REQUEST, "logout_token is required");
    };
    if !app.broker.has_upstream(&id) {
        return error(StatusCode::NOT_FOUND, "unknown upstream");
    }
    let logout = match app.broker.verify_logout_token(&id, &token, app.clock.now()).await {
        Ok(l) => l,
        Err(BrokerError::Store(e)) => {
            tracing::error!(error = %e, "state store failure at upstream logout");
            return error(StatusCode::SERVICE_UNAVAILABLE, "temporarily unavailable");
        }
        Err(e) => {
            tracing::warn!(upstream = %id, error = %e, "upstream logout token rejected");
            return error(StatusCode::BAD_REQUEST, "invalid logout token");
        }
    };
    match super::end_upstream_sessions(&app, &id, logout.sid.as_deref(), logout.sub.as_deref()).await {
        Ok(n) => {
            tracing::info!(upstream = %id, sessions = n, "upstream back-channel logout");
            let mut res = StatusCode::OK.into_response();
            res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            res
        }
        Err(e) => {
            tracing::error!(error = %e, "state store failure at upstream logout");
            error(StatusCode::SERVICE_UNAVAILABLE, "temporarily unavailable")
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct CasLogoutForm {
    #[serde(rename = "logoutRequest")]
    logout_request: Option<String>,
}

/// A CAS server says the CAS session behind one service ticket ended: end every gateway
/// session made from that ticket, with the same propagation as any other logout.
/// Only the CAS server's networks may send these, at a bounded rate (checked by the
/// connector); others get 403 and nothing ends.
pub async fn cas_single_logout(
    State(app): State<AppState>,
    Path(id): Path<String>,
    ClientIp(from): ClientIp,
    body: axum::body::Bytes,
) -> Response {
    let form: CasLogoutForm = match params::deserialize(&body, Controls::LineBreaks) {
        Ok(f) => f,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let Some(document) = form.logout_request.filter(|d| !d.is_empty() && d.len() <= 16 * 1024) else {
        return error(StatusCode::BAD_REQUEST, "logoutRequest is required");
    };
    if !app.broker.has_upstream(&id) {
        return error(StatusCode::NOT_FOUND, "unknown upstream");
    }
    let logout = match app.broker.verify_cas_logout(&id, &document, from, app.clock.now()).await {
        Ok(l) => l,
        Err(e @ BrokerError::LogoutSourceRefused { .. }) => {
            tracing::warn!(upstream = %id, error = %e, "CAS logout request refused");
            return error(e.status(), "logout requests are accepted only from the CAS server");
        }
        Err(e @ BrokerError::LogoutRateLimited { .. }) => {
            tracing::warn!(upstream = %id, error = %e, "CAS logout request refused");
            let mut res = error(e.status(), "too many logout requests");
            res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
            return res;
        }
        Err(BrokerError::Store(e)) => {
            tracing::error!(error = %e, "state store failure at CAS single logout");
            return error(StatusCode::SERVICE_UNAVAILABLE, "temporarily unavailable");
        }
        Err(e) => {
            tracing::warn!(upstream = %id, error = %e, "CAS logout request rejected");
            return error(StatusCode::BAD_REQUEST, "invalid logout request");
        }
    };
    match super::end_upstream_sessions(&app, &id, logout.sid.as_deref(), None).await {
        Ok(n) => {
            tracing::info!(upstream = %id, sessions = n, "CAS single logout");
            let mut res = StatusCode::OK.into_response();
            res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            res
        }
        Err(e) => {
            tracing::error!(error = %e, "state store failure at CAS single logout");
            error(StatusCode::SERVICE_UNAVAILABLE, "temporarily unavailable")
        }
    }
}
