//! The OpenID Provider that relying parties talk to: discovery, JWKS, `/authorize`,
//! `/token`, `/userinfo`, the client registry and token minting.
//!
//! Owns: OAuth 2.0 / OIDC request validation and responses toward RPs, and its own state
//! ([`ProviderState`]: client registry, verified-token cache, DPoP nonces, discovery
//! document). Must not: call upstream systems or build the broker's URLs (it parks requests
//! and asks the broker, through [`crate::broker::UpstreamCatalog`], where the login starts) or
//! write accounts.

pub mod authorize;
pub mod client_auth;
pub mod clients;
pub mod discovery;
pub mod dpop;
pub mod error;
pub mod explain;
pub mod introspect;
pub mod minting;
pub mod mtls;
pub mod par;
pub mod scope_claims;
pub mod store_records;
pub mod token_endpoint;
pub mod userinfo;
pub mod verified;

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::accounts::AccountStore;
use crate::broker::UpstreamCatalog;
use crate::clock::Clock;
use crate::config::Settings;
use crate::keys::KeySet;
use crate::session::Sessions;
use crate::state::StateStore;

/// What the provider's handlers get (cheap to clone: one reference count).
pub type ProviderState = crate::PartState<ProviderParts>;

/// The provider's parts: its own (client registry, verified tokens, DPoP nonces, discovery)
/// and the shared handles it uses.
pub struct ProviderParts {
    pub settings: Arc<Settings>,
    pub keys: KeySet,
    pub store: StateStore,
    pub sessions: Sessions,
    /// Read for claims and pairwise subjects; never written here.
    pub accounts: AccountStore,
    pub clients: clients::ClientRegistry,
    /// What the provider may ask of the broker: which upstreams exist, what assurance they
    /// reach, and where the login of a parked request starts.
    pub upstreams: UpstreamCatalog,
    pub clock: Clock,
    /// Back-channel rate limits (`[limits]`), counted where the client is known.
    pub limits: Arc<crate::limits::RateLimiter>,
    /// Access tokens already verified (for introspection and userinfo).
    pub verified_tokens: verified::VerifiedTokens,
    /// The discovery document, serialised again only when the signing algorithms change.
    pub discovery: discovery::Discovery,
    /// DPoP server nonces (`[dpop]`).
    pub dpop_nonces: dpop::Nonces,
    /// Mutual-TLS client certificates (`[mtls]`): the `tls_client_auth` roots and the proxy
    /// header.
    pub mtls: mtls::Mtls,
    /// Outbound HTTP (client key sets).
    pub http: reqwest::Client,
    pub(crate) issuer: Arc<str>,
}

impl ProviderParts {
    pub fn issuer(&self) -> &str {
        &self.issuer
    }
}

pub fn router<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    ProviderState: axum::extract::FromRef<S>,
    crate::web::client_ip::TrustedProxies: axum::extract::FromRef<S>,
{
    Router::new()
        .route("/.well-known/openid-configuration", get(discovery_handler))
        .route("/jwks", get(jwks_handler))
        .route("/authorize", get(authorize::get).post(authorize::post))
        .route("/par", post(par::post))
        .route("/token", post(token_endpoint::post))
        .route("/userinfo", get(userinfo::userinfo).post(userinfo::userinfo))
        .route("/introspect", post(introspect::introspect))
        .route("/revoke", post(introspect::revoke))
}

/// The endpoints of the mTLS host (`[mtls] listen`, RFC 8705 §5 `mtls_endpoint_aliases`):
/// the back-channel ones a client reaches with its certificate, nothing a browser visits.
pub fn mtls_router<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    ProviderState: axum::extract::FromRef<S>,
    crate::web::client_ip::TrustedProxies: axum::extract::FromRef<S>,
{
    Router::new()
        .route("/par", post(par::post))
        .route("/token", post(token_endpoint::post))
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

async fn discovery_handler(State(app): State<ProviderState>) -> Response {
    json_document(app.discovery.bytes(&app.keys), "public, max-age=300")
}

async fn jwks_handler(State(app): State<ProviderState>) -> Response {
    json_document(app.keys.jwks_json(), "public, max-age=300")
}
