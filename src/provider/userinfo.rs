//! `GET/POST /userinfo`: the claims that the access token's scopes release.

use std::sync::Arc;

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
pub async fn verify_access_token(app: &AppState, token: &str) -> Result<Arc<AccessClaims>, BearerError> {
    let claims = app
        .verified_tokens
        .check(&app.keys, app.issuer(), token, app.clock.now())
        .ok_or_else(|| BearerError::InvalidToken("not a valid access token of this provider".into()))?;
    if !claims.aud.contains(app.issuer()) {
        return Err(BearerError::InvalidToken("the token is not meant for userinfo".into()));
    }
    if is_revoked(app, &claims).await? {
        return Err(BearerError::InvalidToken("the token was revoked".into()));
    }
    Ok(claims)
}

/// Whether the access token, or the grant it was issued under, was revoked, or — for a
/// token without `offline_access` — the SSO session it was issued in ended (logout, idle or
/// absolute timeout: a session that expired just vanishes from the store). One store round
/// trip for all of them.
pub async fn is_revoked(app: &AppState, claims: &AccessClaims) -> Result<bool, crate::state::StoreError> {
    let jti = super::records::revoked_jti_key(&claims.jti);
    let Some(gid) = &claims.gid else { return app.store.exists_any(&[&jti]).await };
    let grant = grant_revoked_key(gid);
    match claims.sid.as_deref().filter(|_| ends_with_session(&claims.scope)) {
        Some(sid) => {
            let session = crate::session::record_key(sid);
            let found = app.store.exists_each(&[&grant, &jti, &session]).await?;
            let [grant_revoked, token_revoked, session_alive] = found[..] else {
                return Err(crate::state::StoreError::Malformed("EXISTS answered the wrong count".into()));
            };
            Ok(revoked(grant_revoked, token_revoked, Some(session_alive)))
        }
        None => app.store.exists_any(&[&grant, &jti]).await,
    }
}

/// A user token ends with its session unless `offline_access` was granted.
fn ends_with_session(scope: &str) -> bool {
    !scope.split_whitespace().any(|s| s == "offline_access")
}

/// The decision: `session_alive` is None for tokens that do not end with a session.
fn revoked(grant_revoked: bool, token_revoked: bool, session_alive: Option<bool>) -> bool {
    grant_revoked || token_revoked || session_alive == Some(false)
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
    // The token's `sub` stays valid after a merge: it resolves to the surviving account, and
    // the response says so (`merged_into_sub`) so the RP can move its records.
    let client = app.clients.get(&claims.client_id);
    let sector = client.as_ref().and_then(|c| c.pairwise_sector.as_deref());
    let resolved = app
        .accounts
        .resolve_subject(&claims.sub, sector)
        .await?
        .ok_or_else(|| BearerError::InvalidToken("the account no longer exists".into()))?;
    let account = resolved.account;
    if account.status == AccountStatus::Locked {
        return Err(BearerError::InvalidToken("the account is locked".into()));
    }
    let mut body = account_claims(&account, &scopes);
    if resolved.merged_from.is_some()
        && let Some(client) = &client
    {
        let current = super::claims::subject_for(app, client, &account).await?;
        body.insert("merged_into_sub".into(), Value::String(current));
    }
    body.insert("sub".into(), Value::String(claims.sub.clone()));
    Ok(Value::Object(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_access_token_ends_with_its_grant_itself_or_its_session_unless_offline() {
        assert!(!revoked(false, false, Some(true)));
        assert!(!revoked(false, false, None), "offline: no session to outlive");
        assert!(revoked(false, false, Some(false)), "the session ended");
        assert!(revoked(true, false, None) && revoked(false, true, None) && revoked(true, true, Some(true)));
        assert!(ends_with_session("openid profile"));
        assert!(!ends_with_session("openid offline_access profile"));
        assert!(ends_with_session("openid offline_accessx"));
    }
}
