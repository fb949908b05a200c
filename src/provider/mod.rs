//! The OpenID Provider that relying parties talk to: discovery, JWKS, `/authorize`,
//! `/token`, `/userinfo`, the client registry and token minting.
//!
//! Owns: OAuth 2.0 / OIDC request validation and responses toward RPs. Must not: call
//! upstream systems (it parks requests and hands the browser to the broker) or write accounts.

pub mod authorize;
pub mod claims;
pub mod client_auth;
pub mod clients;
pub mod discovery;
pub mod dpop;
pub mod error;
pub mod explain;
pub mod introspect;
pub mod mtls;
pub mod par;
pub mod records;
pub mod token;
pub mod tokens;
pub mod userinfo;
pub mod verified;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::app::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/.well-known/openid-configuration", get(discovery_handler))
        .route("/jwks", get(jwks_handler))
        .route("/authorize", get(authorize::get).post(authorize::post))
        .route("/par", post(par::post))
        .route("/token", post(token::post))
        .route("/userinfo", get(userinfo::userinfo).post(userinfo::userinfo))
        .route("/introspect", post(introspect::introspect))
        .route("/revoke", post(introspect::revoke))
}

/// A document serialised once (discovery, JWKS): each response shares its bytes.
fn json_document(body: bytes::Bytes, cache: &'static str) -> Response {
    let mut res = axum::body::Body::from(body).into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    res
}

async fn discovery_handler(State(app): State<AppState>) -> Response {
    json_document(app.discovery.bytes(&app.keys), "public, max-age=300")
}

async fn jwks_handler(State(app): State<AppState>) -> Response {
    json_document(app.keys.jwks_json(), "public, max-age=300")
}
