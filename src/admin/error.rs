//! The admin API's one error type and its one mapping to HTTP.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::accounts::AccountError;
use crate::provider::error::BearerError;
use crate::state::StoreError;

/// Why an admin API request failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AdminError {
    /// No bearer access token: 401 with a `WWW-Authenticate` challenge.
    #[error("no access token")]
    MissingToken,
    /// Not a valid, unrevoked access token of this gateway: 401.
    #[error("invalid_token: {0}")]
    InvalidToken(String),
    /// The token lacks the admin scope: 403 `insufficient_scope`.
    #[error("insufficient_scope: the token lacks the scope {scope:?}")]
    InsufficientScope { scope: String },
    /// A person's token with the scope, but the person lacks the admin role: 403.
    #[error("access_denied: {0}")]
    NotAdmin(String),
    /// A person's token from a login below the configured `acr`: 401
    /// `insufficient_user_authentication` (RFC 9470) naming the level needed.
    #[error("insufficient_user_authentication: a login at {acr} or above is required")]
    InsufficientAuthentication { acr: String },
    /// Malformed or missing input (a reason, a parameter, a cursor): 400.
    #[error("invalid_request: {0}")]
    BadRequest(String),
    /// 404.
    #[error("not_found: {0}")]
    NotFound(String),
    /// The operation contradicts the current state (already locked, same account, …): 409.
    #[error("conflict: {0}")]
    Conflict(String),
    /// A store did not answer: 503 (details only in the log).
    #[error("temporarily unavailable")]
    Unavailable,
}

impl AdminError {
    fn parts(&self) -> (StatusCode, &'static str, String) {
        match self {
            AdminError::MissingToken => {
                (StatusCode::UNAUTHORIZED, "invalid_request", "no access token".into())
            }
            AdminError::InvalidToken(d) => (StatusCode::UNAUTHORIZED, "invalid_token", d.clone()),
            AdminError::InsufficientScope { scope } => {
                (StatusCode::FORBIDDEN, "insufficient_scope", format!("the token lacks the scope {scope}"))
            }
            AdminError::NotAdmin(d) => (StatusCode::FORBIDDEN, "access_denied", d.clone()),
            AdminError::InsufficientAuthentication { acr } => (
                StatusCode::UNAUTHORIZED,
                "insufficient_user_authentication",
                format!("log in at {acr} or above"),
            ),
            AdminError::BadRequest(d) => (StatusCode::BAD_REQUEST, "invalid_request", d.clone()),
            AdminError::NotFound(d) => (StatusCode::NOT_FOUND, "not_found", d.clone()),
            AdminError::Conflict(d) => (StatusCode::CONFLICT, "conflict", d.clone()),
            AdminError::Unavailable => {
                (StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable", "try again later".into())
            }
        }
    }

    /// The `WWW-Authenticate` challenge (RFC 6750 §3, RFC 9470 §3), for 401 and 403 answers.
    fn challenge(&self) -> Option<String> {
        let quote = |s: &str| s.replace(['"', '\\'], "'");
        match self {
            AdminError::MissingToken => Some("Bearer realm=\"sso-gateway-admin\"".into()),
            AdminError::InvalidToken(d) => Some(format!(
                "Bearer realm=\"sso-gateway-admin\", error=\"invalid_token\", error_description=\"{}\"",
                quote(d)
            )),
            AdminError::InsufficientScope { scope } => Some(format!(
                "Bearer realm=\"sso-gateway-admin\", error=\"insufficient_scope\", scope=\"{}\"",
                quote(scope)
            )),
            AdminError::InsufficientAuthentication { acr } => Some(format!(
                "Bearer realm=\"sso-gateway-admin\", error=\"insufficient_user_authentication\", acr_values=\"{}\"",
                quote(acr)
            )),
            _ => None,
        }
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let (status, error, description) = self.parts();
        let mut res =
            (status, Json(json!({ "error": error, "error_description": description }))).into_response();
        if let Some(v) = self.challenge().and_then(|c| HeaderValue::from_str(&c).ok()) {
            res.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
        res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        res
    }
}

impl From<AccountError> for AdminError {
    fn from(e: AccountError) -> Self {
        match e {
            AccountError::NotFound(what) => AdminError::NotFound(what),
            AccountError::Refused(why) => AdminError::Conflict(why),
            AccountError::Invalid(why) => AdminError::BadRequest(why),
            other => {
                tracing::error!(error = %other, "account store failure in the admin API");
                AdminError::Unavailable
            }
        }
    }
}

impl From<StoreError> for AdminError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "state store failure in the admin API");
        AdminError::Unavailable
    }
}

impl From<crate::logout::LogoutError> for AdminError {
    fn from(e: crate::logout::LogoutError) -> Self {
        match e {
            crate::logout::LogoutError::Store(e) => e.into(),
            crate::logout::LogoutError::Accounts(e) => e.into(),
            crate::logout::LogoutError::UnknownAccount(sub) => {
                AdminError::NotFound(format!("account with sub {sub}"))
            }
        }
    }
}

impl From<BearerError> for AdminError {
    fn from(e: BearerError) -> Self {
        match e {
            BearerError::MissingToken => AdminError::MissingToken,
            BearerError::InsufficientScope => AdminError::InvalidToken("not an admin API token".into()),
            BearerError::Unavailable => AdminError::Unavailable,
            BearerError::InvalidToken(d) | BearerError::InvalidDpopProof(d) => AdminError::InvalidToken(d),
            BearerError::UseDpopNonce { .. } => {
                AdminError::InvalidToken("DPoP-bound tokens are not accepted by the admin API".into())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    async fn answer(e: AdminError) -> (StatusCode, Option<String>, serde_json::Value) {
        let res = e.into_response();
        let status = res.status();
        let challenge = res.headers().get(header::WWW_AUTHENTICATE).map(|v| v.to_str().unwrap().to_string());
        assert_eq!(res.headers()[header::CACHE_CONTROL], "no-store");
        let body = axum::body::to_bytes(res.into_body(), 4096).await.unwrap();
        (status, challenge, serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test]
    async fn missing_token_is_401_with_a_bare_bearer_challenge() {
        let (s, c, b) = answer(AdminError::MissingToken).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        assert_eq!(c.as_deref(), Some("Bearer realm=\"sso-gateway-admin\""));
        assert_eq!(b["error"], "invalid_request");
    }

    #[tokio::test]
    async fn invalid_token_is_401_invalid_token_with_a_quoted_description() {
        let (s, c, b) = answer(AdminError::InvalidToken("bad \"sig\"".into())).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        assert!(c.unwrap().contains("error=\"invalid_token\", error_description=\"bad 'sig'\""));
        assert_eq!(b["error"], "invalid_token");
    }

    #[tokio::test]
    async fn missing_scope_is_403_insufficient_scope_naming_the_scope() {
        let (s, c, b) = answer(AdminError::InsufficientScope { scope: "admin".into() }).await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        assert!(c.unwrap().contains("error=\"insufficient_scope\", scope=\"admin\""));
        assert_eq!(b["error"], "insufficient_scope");
    }

    #[tokio::test]
    async fn a_person_without_the_role_is_403_access_denied() {
        let (s, c, b) = answer(AdminError::NotAdmin("no role quan-tri".into())).await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        assert_eq!(c, None);
        assert_eq!(b["error"], "access_denied");
    }

    #[tokio::test]
    async fn a_weak_login_is_401_insufficient_user_authentication_with_acr_values() {
        let (s, c, b) = answer(AdminError::InsufficientAuthentication { acr: "urn:x:high".into() }).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        assert!(c.unwrap().contains("acr_values=\"urn:x:high\""));
        assert_eq!(b["error"], "insufficient_user_authentication");
    }

    #[tokio::test]
    async fn bad_input_is_400() {
        let (s, c, b) = answer(AdminError::BadRequest("reason is required".into())).await;
        assert_eq!((s, c), (StatusCode::BAD_REQUEST, None));
        assert_eq!(b["error_description"], "reason is required");
    }

    #[tokio::test]
    async fn unknown_things_are_404() {
        let (s, _, b) = answer(AdminError::NotFound("account x".into())).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        assert_eq!(b["error"], "not_found");
    }

    #[tokio::test]
    async fn contradictions_are_409() {
        let (s, _, b) = answer(AdminError::Conflict("already locked".into())).await;
        assert_eq!(s, StatusCode::CONFLICT);
        assert_eq!(b["error"], "conflict");
    }

    #[tokio::test]
    async fn store_failures_are_503_without_details() {
        let (s, _, b) = answer(AdminError::Unavailable).await;
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(b["error_description"], "try again later");
    }

    #[test]
    fn account_errors_map_to_their_http_meaning() {
        assert_eq!(AdminError::from(AccountError::NotFound("x".into())), AdminError::NotFound("x".into()));
        assert_eq!(AdminError::from(AccountError::Refused("x".into())), AdminError::Conflict("x".into()));
        assert_eq!(AdminError::from(AccountError::Invalid("x".into())), AdminError::BadRequest("x".into()));
        assert_eq!(AdminError::from(AccountError::Corrupt("x".into())), AdminError::Unavailable);
    }
}
