//! `GET/POST /userinfo`: the claims that the access token's scopes release.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::claims::account_claims;
use super::error::BearerError;
use super::records::grant_revoked_key;
use super::tokens::AccessClaims;
use crate::accounts::AccountStatus;
use crate::app::AppState;

fn bearer(headers: &HeaderMap) -> Result<&str, BearerError> {
    let value = headers.get(header::AUTHORIZATION).ok_or(BearerError::MissingToken)?;
    let value =
        value.to_str().map_err(|_| BearerError::InvalidToken("malformed Authorization header".into()))?;
    match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() => {
            Ok(token.trim())
        }
        _ => Err(BearerError::MissingToken),
    }
}

/// Verifies one of our access tokens and checks it was not revoked.
pub async fn verify_access_token(app: &AppState, token: &str) -> Result<AccessClaims, BearerError> {
    let claims: AccessClaims = app
        .keys
        .verify(token, app.issuer(), Some(app.issuer()), Some("at+jwt"))
        .map_err(|e| BearerError::InvalidToken(e.to_string()))?;
    if let Some(gid) = &claims.gid
        && app.store.get(&grant_revoked_key(gid)).await?.is_some()
    {
        return Err(BearerError::InvalidToken("the token was revoked".into()));
    }
    if app.store.get(&super::records::revoked_jti_key(&claims.jti)).await?.is_some() {
        return Err(BearerError::InvalidToken("the token was revoked".into()));
    }
    Ok(claims)
}

pub async fn userinfo(State(app): State<AppState>, headers: HeaderMap) -> Response {
    match handle(&app, &headers).await {
        Ok(body) => {
            let mut res = Json(body).into_response();
            res.headers_mut().insert(header::CACHE_CONTROL, axum::http::HeaderValue::from_static("no-store"));
            res
        }
        Err(e) => e.into_response(),
    }
}

async fn handle(app: &AppState, headers: &HeaderMap) -> Result<Value, BearerError> {
    let token = bearer(headers)?;
    let claims = verify_access_token(app, token).await?;
    let scopes: Vec<String> = claims.scope.split_whitespace().map(str::to_string).collect();
    if !scopes.iter().any(|s| s == "openid") || claims.sid.is_none() {
        return Err(BearerError::InsufficientScope);
    }
    let account = app
        .accounts
        .find_by_sub(&claims.sub)
        .await?
        .ok_or_else(|| BearerError::InvalidToken("the account no longer exists".into()))?;
    if account.status == AccountStatus::Locked {
        return Err(BearerError::InvalidToken("the account is locked".into()));
    }
    let mut body = account_claims(&account, &scopes);
    body.insert("sub".into(), Value::String(account.sub));
    Ok(Value::Object(body))
}
