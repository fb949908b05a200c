//! What the provider parks in the state store between requests: validated authorization
//! requests, authorization codes and refresh-token grants. Secrets are keyed by their hash.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::state::{StateStore, StoreError, hashed_key, random_handle};
use crate::web::Lang;

/// How the authorization response travels back to the RP.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum ResponseMode {
    #[default]
    Query,
    FormPost,
}

/// A validated authorization request, parked while the user logs in upstream.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AuthorizationRequest {
    pub client_id: String,
    pub redirect_uri: String,
    #[serde(default)]
    pub response_mode: ResponseMode,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub scopes: Vec<String>,
    pub code_challenge: Option<String>,
    /// `prompt=login` (or `select_account`): a fresh upstream login is required.
    pub force_login: bool,
    pub max_age: Option<i64>,
    pub login_hint: Option<String>,
    pub lang: Lang,
    pub idp_hint: Option<String>,
}

/// Parks a request; returns its handle for the chooser/broker URLs.
pub async fn park(
    store: &StateStore,
    req: &AuthorizationRequest,
    ttl: Duration,
) -> Result<String, StoreError> {
    let id = random_handle();
    store.put_json(&format!("authreq:{id}"), req, ttl).await?;
    Ok(id)
}

/// Reads a parked request without consuming it (the chooser may be shown twice).
pub async fn parked(store: &StateStore, id: &str) -> Result<Option<AuthorizationRequest>, StoreError> {
    if id.is_empty() || id.len() > 64 {
        return Ok(None);
    }
    store.get_json(&format!("authreq:{id}")).await
}

/// Consumes a parked request once the login finished.
pub async fn take_parked(store: &StateStore, id: &str) -> Result<Option<AuthorizationRequest>, StoreError> {
    if id.is_empty() || id.len() > 64 {
        return Ok(None);
    }
    store.take_json(&format!("authreq:{id}")).await
}

/// The facts about a user authentication that tokens are minted from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct UserGrant {
    /// Groups every token of one code redemption and its refresh rotations (for revocation).
    pub grant_id: String,
    pub client_id: String,
    pub account_id: String,
    pub scopes: Vec<String>,
    pub sid: String,
    pub auth_time: i64,
    pub acr: String,
    pub amr: Vec<String>,
    pub idp: String,
}

/// An issued authorization code.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CodeRecord {
    pub grant: UserGrant,
    pub redirect_uri: String,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
}

pub fn code_key(code: &str) -> String {
    hashed_key("code", code)
}

pub fn code_used_key(code: &str) -> String {
    hashed_key("code-used", code)
}

pub fn refresh_key(token: &str) -> String {
    hashed_key("refresh", token)
}

pub fn refresh_used_key(token: &str) -> String {
    hashed_key("refresh-used", token)
}

/// A revoked access token (RFC 7009), kept until the token expires.
pub fn revoked_jti_key(jti: &str) -> String {
    format!("revoked-jti:{jti}")
}

pub fn grant_revoked_key(grant_id: &str) -> String {
    format!("grant-revoked:{grant_id}")
}

/// A live refresh token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RefreshRecord {
    pub grant: UserGrant,
    /// Absolute end of the family, unaffected by rotation.
    pub family_expires_at: i64,
}
