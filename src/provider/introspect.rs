//! Token introspection (RFC 7662) and revocation (RFC 7009). Both authenticate the client;
//! a client sees and revokes only its own tokens, or — for resource servers named in a
//! client's `audiences` — access tokens meant for it.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::ProviderState;
use super::client_auth::{BackChannel, authenticate_form};
use super::clients::Client;
use super::error::TokenError;
use super::minting::{AccessClaims, Confirmation};
use super::store_records::{RefreshRecord, grant_revoked_key, refresh_key, revoked_jti_key};

fn no_store(mut res: Response) -> Response {
    res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

pub async fn introspect(State(app): State<ProviderState>, request: BackChannel) -> Response {
    match introspect_inner(&app, &request).await {
        Ok(v) => no_store(Json(v).into_response()),
        Err(e) => e.into_response(),
    }
}

async fn introspect_inner(app: &ProviderState, request: &BackChannel) -> Result<Value, TokenError> {
    let (params, auth) = authenticate_form(app, "/introspect", request).await?;
    let client = auth.client;
    // RFC 7662 §2.1: introspection is for clients that authenticate; a public client's
    // `client_id` proves nothing, so it learns nothing about any token.
    if client.is_public() {
        return Err(TokenError::InvalidClient { basic: false });
    }
    let token = params
        .get("token")
        .filter(|t| !t.is_empty())
        .ok_or_else(|| TokenError::InvalidRequest("token is required".into()))?;
    let inactive = json!({ "active": false });
    if let Some(claims) = live_access_token(app, token).await? {
        if claims.client_id != client.client_id && !claims.aud.contains(client.client_id.as_str()) {
            return Ok(inactive);
        }
        let mut answer = json!({
            "active": true,
            "token_type": Confirmation::token_type(claims.cnf.as_ref()),
            "scope": claims.scope,
            "client_id": claims.client_id,
            "sub": claims.sub,
            "iss": claims.iss,
            "aud": claims.aud,
            "exp": claims.exp,
            "iat": claims.iat,
            "jti": claims.jti,
            "sid": claims.sid,
            "auth_time": claims.auth_time,
            "acr": claims.acr,
        });
        // What the token is bound to — a DPoP key (RFC 9449 §6.2) or a TLS client certificate
        // (RFC 8705 §3.2): the resource server checks the proof or the connection's certificate.
        if let Some(cnf) = &claims.cnf {
            answer["cnf"] = json!(cnf);
        }
        return Ok(answer);
    }
    if let Some(record) = app.store.get_json::<RefreshRecord>(&refresh_key(token)).await? {
        let grant = &record.grant;
        if grant.client_id != client.client_id
            || app.store.get(&grant_revoked_key(&grant.grant_id)).await?.is_some()
            || (!record.is_offline() && !app.sessions.is_alive(&grant.sid).await?)
        {
            return Ok(inactive);
        }
        // The sub this client sees (pairwise clients get their own).
        let sub = match app.accounts.find_for_tokens(&grant.account_id).await? {
            Some(account) => Some(super::scope_claims::subject_for(app, &client, &account).await?),
            None => None,
        };
        let mut answer = json!({
            "active": true,
            "token_type": "refresh_token",
            "scope": grant.scopes.join(" "),
            "client_id": grant.client_id,
            "sub": sub,
            "iss": app.issuer(),
            "exp": record.family_expires_at,
            "sid": grant.sid,
        });
        if let Some(jkt) = &record.jkt {
            answer["cnf"] = json!({ "jkt": jkt });
        }
        if let Some(x5t) = &record.x5t_s256 {
            answer["cnf"] = json!({ "x5t#S256": x5t });
        }
        return Ok(answer);
    }
    Ok(inactive)
}

/// One of our access tokens that verifies and was not revoked.
async fn live_access_token(
    app: &ProviderState,
    token: &str,
) -> Result<Option<Arc<AccessClaims>>, TokenError> {
    let Some(claims) = app.verified_tokens.check(&app.keys, app.issuer(), token, app.clock.now()) else {
        return Ok(None);
    };
    if super::userinfo::is_revoked(app, &claims).await? {
        return Ok(None);
    }
    Ok(Some(claims))
}

pub async fn revoke(State(app): State<ProviderState>, request: BackChannel) -> Response {
    match revoke_inner(&app, &request).await {
        Ok(()) => no_store(axum::http::StatusCode::OK.into_response()),
        Err(e) => e.into_response(),
    }
}

async fn revoke_inner(app: &ProviderState, request: &BackChannel) -> Result<(), TokenError> {
    let (params, auth) = authenticate_form(app, "/revoke", request).await?;
    let client = auth.client;
    let token = params
        .get("token")
        .filter(|t| !t.is_empty())
        .ok_or_else(|| TokenError::InvalidRequest("token is required".into()))?;
    match params.get("token_type_hint").map(String::as_str) {
        None | Some("access_token") | Some("refresh_token") => {}
        Some(_) => {} // RFC 7009 §2.1: an unknown hint is ignored and the token searched anyway.
    }
    if revoke_refresh(app, &client, token).await? {
        return Ok(());
    }
    if let Some(claims) = live_access_token(app, token).await? {
        if claims.client_id != client.client_id {
            return Err(TokenError::UnauthorizedClient("the token was issued to another client".into()));
        }
        let ttl = Duration::from_secs((claims.exp - app.clock.now()).max(1) as u64 + 60);
        app.store.put(&revoked_jti_key(&claims.jti), Vec::new(), ttl).await?;
        tracing::info!(client = %client.client_id, "access token revoked");
    }
    // Unknown, expired or already revoked tokens: nothing to do (RFC 7009 §2.2).
    Ok(())
}

/// Revokes a refresh token and its whole family; false if `token` is not a live refresh token.
async fn revoke_refresh(app: &ProviderState, client: &Client, token: &str) -> Result<bool, TokenError> {
    let Some(record) = app.store.get_json::<RefreshRecord>(&refresh_key(token)).await? else {
        return Ok(false);
    };
    if record.grant.client_id != client.client_id {
        return Err(TokenError::UnauthorizedClient("the token was issued to another client".into()));
    }
    app.store.delete(&refresh_key(token)).await?;
    super::token_endpoint::revoke_grant(app, &record.grant.grant_id, Some(record.family_expires_at)).await?;
    tracing::info!(client = %client.client_id, "refresh token family revoked");
    Ok(true)
}
