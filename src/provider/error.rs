//! Protocol errors of the OpenID Provider, each turned into its spec-mandated response here
//! and nowhere else: error pages or redirects at `/authorize`, RFC 6749 §5.2 JSON at `/token`,
//! RFC 6750 `WWW-Authenticate` at `/userinfo`. Internal causes are logged, never sent.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::accounts::AccountError;
use crate::keys::KeyError;
use crate::state::StoreError;

/// `/token` errors (RFC 6749 §5.2).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("invalid_request: {0}")]
    InvalidRequest(String),
    /// Client authentication failed; `basic` says whether HTTP Basic was used.
    #[error("invalid_client")]
    InvalidClient { basic: bool },
    #[error("invalid_grant: {0}")]
    InvalidGrant(String),
    #[error("unauthorized_client: {0}")]
    UnauthorizedClient(String),
    #[error("unsupported_grant_type")]
    UnsupportedGrantType,
    #[error("invalid_scope: {0}")]
    InvalidScope(String),
    #[error("temporarily_unavailable")]
    TemporarilyUnavailable,
    /// Over a `[limits]` rate limit (per address or per client): 429 with `Retry-After`.
    /// `slow_down` is the token-endpoint code registered for "too fast, wait" (RFC 8628
    /// §3.5), kept apart from `temporarily_unavailable` (503, the gateway's own outage).
    #[error("slow_down: rate limit reached, retry after {retry_after}s")]
    SlowDown { retry_after: u64 },
    #[error("server_error")]
    ServerError,
    /// A pushed authorization request (`/par`) that `/authorize` would refuse: the same
    /// error code it would send to the redirect URI (RFC 9126 §2.3).
    #[error("{error}: {description}")]
    AuthorizationRequest { error: &'static str, description: String },
    /// A missing, malformed, replayed or mismatched DPoP proof (RFC 9449 §5).
    #[error("invalid_dpop_proof: {0}")]
    InvalidDpopProof(String),
    /// The proof must carry this server nonce (RFC 9449 §8): 400 with `DPoP-Nonce`.
    #[error("use_dpop_nonce")]
    UseDpopNonce { nonce: String },
}

impl TokenError {
    pub fn code(&self) -> &'static str {
        match self {
            TokenError::InvalidRequest(_) => "invalid_request",
            TokenError::InvalidClient { .. } => "invalid_client",
            TokenError::InvalidGrant(_) => "invalid_grant",
            TokenError::UnauthorizedClient(_) => "unauthorized_client",
            TokenError::UnsupportedGrantType => "unsupported_grant_type",
            TokenError::InvalidScope(_) => "invalid_scope",
            TokenError::TemporarilyUnavailable => "temporarily_unavailable",
            TokenError::SlowDown { .. } => "slow_down",
            TokenError::ServerError => "server_error",
            TokenError::AuthorizationRequest { error, .. } => error,
            TokenError::InvalidDpopProof(_) => "invalid_dpop_proof",
            TokenError::UseDpopNonce { .. } => "use_dpop_nonce",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            TokenError::InvalidClient { .. } => StatusCode::UNAUTHORIZED,
            TokenError::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            TokenError::SlowDown { .. } => StatusCode::TOO_MANY_REQUESTS,
            TokenError::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    fn description(&self) -> Option<&str> {
        match self {
            TokenError::InvalidRequest(d)
            | TokenError::InvalidGrant(d)
            | TokenError::UnauthorizedClient(d)
            | TokenError::InvalidScope(d)
            | TokenError::InvalidDpopProof(d)
            | TokenError::AuthorizationRequest { description: d, .. } => Some(d),
            TokenError::UseDpopNonce { .. } => Some("the DPoP proof must carry the nonce in DPoP-Nonce"),
            TokenError::InvalidClient { .. } => Some("client authentication failed"),
            TokenError::UnsupportedGrantType => Some("grant_type not supported"),
            TokenError::TemporarilyUnavailable => Some("the service is temporarily unavailable, retry later"),
            TokenError::SlowDown { .. } => Some("too many requests, retry after the time in Retry-After"),
            TokenError::ServerError => None,
        }
    }
}

impl IntoResponse for TokenError {
    fn into_response(self) -> Response {
        let body = match self.description() {
            Some(d) => json!({ "error": self.code(), "error_description": d }),
            None => json!({ "error": self.code() }),
        };
        let mut res = (self.status(), Json(body)).into_response();
        let h = res.headers_mut();
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        if let TokenError::InvalidClient { basic } = self {
            let challenge = if basic {
                "Basic realm=\"sso-gateway\""
            } else {
                "Basic realm=\"sso-gateway\", error=\"invalid_client\""
            };
            h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
        }
        match self {
            TokenError::TemporarilyUnavailable => {
                h.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            TokenError::SlowDown { retry_after } => {
                h.insert(header::RETRY_AFTER, HeaderValue::from(retry_after.max(1)));
            }
            TokenError::UseDpopNonce { nonce } => {
                if let Ok(v) = HeaderValue::from_str(&nonce) {
                    h.insert(DPOP_NONCE, v);
                }
            }
            _ => {}
        }
        res
    }
}

/// The response header carrying a server nonce for DPoP proofs (RFC 9449 §8).
pub const DPOP_NONCE: header::HeaderName = header::HeaderName::from_static("dpop-nonce");

/// The `WWW-Authenticate` challenge of the DPoP scheme (RFC 9449 §7.1).
fn dpop_challenge(error: &str, description: &str) -> String {
    format!(
        "DPoP algs=\"{}\", error=\"{error}\", error_description=\"{}\"",
        super::dpop::ALGORITHMS.join(" "),
        description.replace(['"', '\\'], "'")
    )
}

impl From<StoreError> for TokenError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "state store failure at the token endpoint");
        TokenError::TemporarilyUnavailable
    }
}

impl From<AccountError> for TokenError {
    fn from(e: AccountError) -> Self {
        tracing::error!(error = %e, "account store failure at the token endpoint");
        TokenError::TemporarilyUnavailable
    }
}

impl From<KeyError> for TokenError {
    fn from(e: KeyError) -> Self {
        tracing::error!(error = %e, "signing failed at the token endpoint");
        TokenError::ServerError
    }
}

/// Bearer-token errors at resource endpoints (`/userinfo`), RFC 6750 §3.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BearerError {
    #[error("no access token")]
    MissingToken,
    #[error("invalid_token: {0}")]
    InvalidToken(String),
    #[error("insufficient_scope")]
    InsufficientScope,
    #[error("temporarily unavailable")]
    Unavailable,
    /// A DPoP-bound token without a valid proof, or with a proof of another key (RFC 9449 §7).
    #[error("invalid_dpop_proof: {0}")]
    InvalidDpopProof(String),
    /// The proof must carry this server nonce (RFC 9449 §9): 401 with `DPoP-Nonce`.
    #[error("use_dpop_nonce")]
    UseDpopNonce { nonce: String },
}

impl IntoResponse for BearerError {
    fn into_response(self) -> Response {
        let (status, challenge, body) = match &self {
            BearerError::MissingToken => (
                StatusCode::UNAUTHORIZED,
                "Bearer realm=\"sso-gateway\"".to_string(),
                json!({"error": "invalid_request", "error_description": "no access token"}),
            ),
            BearerError::InvalidToken(d) => (
                StatusCode::UNAUTHORIZED,
                format!(
                    "Bearer realm=\"sso-gateway\", error=\"invalid_token\", error_description=\"{}\"",
                    d.replace(['"', '\\'], "'")
                ),
                json!({"error": "invalid_token", "error_description": d}),
            ),
            BearerError::InsufficientScope => (
                StatusCode::FORBIDDEN,
                "Bearer realm=\"sso-gateway\", error=\"insufficient_scope\", scope=\"openid\"".to_string(),
                json!({"error": "insufficient_scope"}),
            ),
            BearerError::Unavailable => {
                (StatusCode::SERVICE_UNAVAILABLE, String::new(), json!({"error": "temporarily_unavailable"}))
            }
            BearerError::InvalidDpopProof(d) => (
                StatusCode::UNAUTHORIZED,
                dpop_challenge("invalid_dpop_proof", d),
                json!({"error": "invalid_dpop_proof", "error_description": d}),
            ),
            BearerError::UseDpopNonce { .. } => (
                StatusCode::UNAUTHORIZED,
                dpop_challenge("use_dpop_nonce", "the DPoP proof must carry the nonce in DPoP-Nonce"),
                json!({"error": "use_dpop_nonce"}),
            ),
        };
        let mut res = (status, Json(body)).into_response();
        if let Ok(v) = HeaderValue::from_str(&challenge)
            && !challenge.is_empty()
        {
            res.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
        if let BearerError::UseDpopNonce { nonce } = &self
            && let Ok(v) = HeaderValue::from_str(nonce)
        {
            res.headers_mut().insert(DPOP_NONCE, v);
        }
        res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        res
    }
}

impl From<StoreError> for BearerError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "state store failure at a bearer endpoint");
        BearerError::Unavailable
    }
}

impl From<AccountError> for BearerError {
    fn from(e: AccountError) -> Self {
        tracing::error!(error = %e, "account store failure at a bearer endpoint");
        BearerError::Unavailable
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_errors_map_to_rfc6749_status_and_body() {
        let cases = [
            (TokenError::InvalidRequest("x".into()), 400, "invalid_request"),
            (TokenError::InvalidClient { basic: true }, 401, "invalid_client"),
            (TokenError::InvalidGrant("x".into()), 400, "invalid_grant"),
            (TokenError::UnauthorizedClient("x".into()), 400, "unauthorized_client"),
            (TokenError::UnsupportedGrantType, 400, "unsupported_grant_type"),
            (TokenError::InvalidScope("x".into()), 400, "invalid_scope"),
            (TokenError::TemporarilyUnavailable, 503, "temporarily_unavailable"),
            (TokenError::SlowDown { retry_after: 7 }, 429, "slow_down"),
            (
                TokenError::AuthorizationRequest {
                    error: "unsupported_response_type",
                    description: "x".into(),
                },
                400,
                "unsupported_response_type",
            ),
            (TokenError::InvalidDpopProof("x".into()), 400, "invalid_dpop_proof"),
            (TokenError::UseDpopNonce { nonce: "n".into() }, 400, "use_dpop_nonce"),
        ];
        for (err, status, code) in cases {
            assert_eq!(err.code(), code);
            let res = err.into_response();
            assert_eq!(res.status().as_u16(), status);
            assert_eq!(res.headers()[header::CACHE_CONTROL], "no-store");
        }
    }

    #[tokio::test]
    async fn slow_down_is_429_json_with_retry_after() {
        let res = TokenError::SlowDown { retry_after: 17 }.into_response();
        assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(res.headers()[header::RETRY_AFTER], "17");
        assert_eq!(res.headers()[header::CACHE_CONTROL], "no-store");
        let body = axum::body::to_bytes(res.into_body(), 1 << 16).await.unwrap();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["error"], "slow_down");
        assert!(json["error_description"].is_string());
    }

    #[test]
    fn invalid_client_carries_www_authenticate() {
        let res = TokenError::InvalidClient { basic: true }.into_response();
        assert!(res.headers()[header::WWW_AUTHENTICATE].to_str().unwrap().starts_with("Basic"));
    }

    #[test]
    fn bearer_errors_follow_rfc6750() {
        let res = BearerError::InvalidToken("expired".into()).into_response();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        assert!(
            res.headers()[header::WWW_AUTHENTICATE].to_str().unwrap().contains("error=\"invalid_token\"")
        );
        assert_eq!(BearerError::InsufficientScope.into_response().status(), StatusCode::FORBIDDEN);
        assert_eq!(BearerError::Unavailable.into_response().status(), StatusCode::SERVICE_UNAVAILABLE);
    }

    #[test]
    fn dpop_errors_carry_the_dpop_challenge_and_the_nonce() {
        let res = TokenError::UseDpopNonce { nonce: "n-1".into() }.into_response();
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
        assert_eq!(res.headers()[DPOP_NONCE], "n-1");
        for (err, code) in [
            (BearerError::InvalidDpopProof("wrong \"key\"".into()), "invalid_dpop_proof"),
            (BearerError::UseDpopNonce { nonce: "n-2".into() }, "use_dpop_nonce"),
        ] {
            let nonce = matches!(err, BearerError::UseDpopNonce { .. });
            let res = err.into_response();
            assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
            let challenge = res.headers()[header::WWW_AUTHENTICATE].to_str().unwrap();
            assert!(
                challenge.starts_with("DPoP algs=\"") && challenge.contains(&format!("error=\"{code}\""))
            );
            assert_eq!(res.headers().contains_key(DPOP_NONCE), nonce);
        }
    }
}
