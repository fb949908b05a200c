//! Logout coming from an upstream: the return from its RP-initiated logout, and what follows
//! its logout messages (Back-Channel Logout tokens at `/upstream/{id}/backchannel-logout`,
//! CAS single-logout requests POSTed to the service URL `/upstream/{id}/callback`). Reading
//! and verifying those messages is the upstream's connector's job, not this module's.

use std::net::IpAddr;

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::LogoutState;
use super::rp_initiated::{Continuation, finish};
use crate::broker::{Broker, BrokerError, Endpoint, Posted, Received};
use crate::state::hashed_key;
use crate::web::client_ip::ClientIp;

#[derive(Debug, Deserialize)]
pub struct Returned {
    state: Option<String>,
}

/// The upstream ended its session and sent the browser back: continue to the RP.
pub async fn returned(
    State(app): State<LogoutState>,
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

/// An upstream POSTed a message to `/upstream/{id}/backchannel-logout` or to its callback
/// (CAS single logout): its connector reads and verifies it; a logout ends every gateway
/// session made from that upstream session (or subject), with the same propagation to RPs as
/// any other logout. A refusal is answered in JSON, mapped by the broker.
pub async fn received(
    app: &LogoutState,
    id: &str,
    at: Endpoint,
    from: Option<IpAddr>,
    body: &[u8],
) -> Response {
    let posted = Posted { at, body, from, now: app.clock.now() };
    let received = match Broker::upstream_id(id) {
        Ok(upstream) => app.broker.receive(&upstream, posted).await.map(|r| (upstream, r)),
        Err(e) => Err(e),
    };
    let (upstream, logout) = match received {
        Ok((upstream, Received::Logout(logout))) => (upstream, logout),
        Err(e) => {
            match &e {
                BrokerError::Store(_) => {
                    tracing::error!(upstream = %id, error = %e, "state store failure at upstream logout")
                }
                _ => tracing::warn!(upstream = %id, error = %e, "upstream logout message refused"),
            }
            return e.message_response();
        }
    };
    match super::end_upstream_sessions(app, &upstream, logout.sid.as_deref(), logout.sub.as_deref()).await {
        Ok(n) => {
            tracing::info!(upstream = %id, sessions = n, endpoint = ?at, "upstream logout");
            let mut res = StatusCode::OK.into_response();
            res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            res
        }
        Err(e) => {
            tracing::error!(error = %e, "state store failure at upstream logout");
            BrokerError::Store(crate::state::StoreError::Unavailable(e.to_string())).message_response()
        }
    }
}

/// An OpenID Connect upstream's Back-Channel Logout token.
pub async fn backchannel(
    State(app): State<LogoutState>,
    Path(id): Path<String>,
    ClientIp(from): ClientIp,
    body: axum::body::Bytes,
) -> Response {
    received(&app, &id, Endpoint::BackchannelLogout, from, &body).await
}
