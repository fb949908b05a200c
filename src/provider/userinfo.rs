//! `GET/POST /userinfo`: the claims that the access token's scopes release.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, Method, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::ProviderState;
use super::error::BearerError;
use super::minting::{AccessClaims, Confirmation};
use super::mtls::{ClientCertificate, PeerCertificate};
use super::scope_claims::{Scope, account_claims};
use super::store_records::grant_revoked_key;
use crate::accounts::AccountStatus;
use crate::state::Class;

/// The access token of a request and whether it came with the `DPoP` scheme (RFC 9449 §7.1)
/// rather than `Bearer`.
pub(crate) fn presented(headers: &HeaderMap) -> Result<(&str, bool), BearerError> {
    let value = headers.get(header::AUTHORIZATION).ok_or(BearerError::MissingToken)?;
    let value =
        value.to_str().map_err(|_| BearerError::InvalidToken("malformed Authorization header".into()))?;
    match value.split_once(' ') {
        Some((scheme, token)) if !token.trim().is_empty() => {
            if scheme.eq_ignore_ascii_case("bearer") {
                Ok((token.trim(), false))
            } else if scheme.eq_ignore_ascii_case("dpop") {
                Ok((token.trim(), true))
            } else {
                Err(BearerError::MissingToken)
            }
        }
        _ => Err(BearerError::MissingToken),
    }
}

/// A DPoP-bound token is used only with a proof of its key (`Authorization: DPoP` and a
/// `DPoP` proof naming this request and token); as `Bearer` it is refused, so a stolen copy
/// is worthless without the key. A certificate-bound token (RFC 8705 §3) is used as `Bearer`
/// over a connection with the same TLS client certificate only. An unbound token is used as
/// `Bearer` only.
async fn check_binding(
    app: &ProviderState,
    request: &Presentation<'_>,
    token: &str,
    dpop: bool,
    claims: &AccessClaims,
) -> Result<(), BearerError> {
    match (&claims.cnf, dpop) {
        (None, false) => Ok(()),
        (Some(Confirmation::Dpop { .. }), false) => Err(BearerError::InvalidToken(
            "the token is bound to a DPoP key: present it with Authorization: DPoP and a proof".into(),
        )),
        (None | Some(Confirmation::Certificate { .. }), true) => {
            Err(BearerError::InvalidToken("the token is not DPoP-bound: present it as Bearer".into()))
        }
        (Some(Confirmation::Certificate { x5t_s256 }), false) => {
            let presented = request.certificate.map(ClientCertificate::thumbprint);
            if presented.as_deref() == Some(x5t_s256.as_str()) {
                Ok(())
            } else {
                Err(BearerError::InvalidToken(
                    "the token is bound to a TLS client certificate: present it over a connection with that certificate"
                        .into(),
                ))
            }
        }
        (Some(Confirmation::Dpop { jkt }), true) => {
            let url = format!("{}/userinfo", app.issuer());
            let target = super::dpop::Target {
                method: request.method.as_str(),
                url: &url,
                access_token: Some(token),
                jkt: Some(jkt),
                alias: None,
            };
            match super::dpop::verify(app, request.headers, target, Class::Authenticated).await? {
                Some(_) => Ok(()),
                None => Err(BearerError::InvalidDpopProof("a DPoP proof is required".into())),
            }
        }
    }
}

/// What a request to a protected resource presents besides the token.
struct Presentation<'a> {
    method: &'a Method,
    headers: &'a HeaderMap,
    /// The TLS client certificate of the connection.
    certificate: Option<&'a ClientCertificate>,
}

/// Verifies one of our access tokens and checks it was not revoked.
pub async fn verify_access_token(app: &ProviderState, token: &str) -> Result<Arc<AccessClaims>, BearerError> {
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

/// Whether the access token, or the grant it was issued under, was revoked (one store round
/// trip for both markers).
pub async fn is_revoked(
    app: &ProviderState,
    claims: &AccessClaims,
) -> Result<bool, crate::state::StoreError> {
    let jti = super::store_records::revoked_jti_key(&claims.jti);
    match &claims.gid {
        Some(gid) => app.store.exists_any(&[&grant_revoked_key(gid), &jti]).await,
        None => app.store.exists_any(&[&jti]).await,
    }
}

pub async fn userinfo(
    State(app): State<ProviderState>,
    method: Method,
    PeerCertificate(certificate): PeerCertificate,
    headers: HeaderMap,
) -> Response {
    let request = Presentation { method: &method, headers: &headers, certificate: certificate.as_ref() };
    match handle(&app, &request).await {
        Ok(body) => {
            let mut res = Json(body).into_response();
            res.headers_mut().insert(header::CACHE_CONTROL, axum::http::HeaderValue::from_static("no-store"));
            super::dpop::offer_nonce(&app, &mut res).await;
            res
        }
        Err(e) => e.into_response(),
    }
}

async fn handle(app: &ProviderState, request: &Presentation<'_>) -> Result<Value, BearerError> {
    let (token, dpop) = presented(request.headers)?;
    let claims = verify_access_token(app, token).await?;
    check_binding(app, request, token, dpop, &claims).await?;
    let scope = Scope::parse(Some(&claims.scope));
    if !scope.contains("openid") || claims.sid.is_none() {
        return Err(BearerError::InsufficientScope);
    }
    // The token's `sub` stays valid after a merge: it resolves to the surviving account, and
    // the response says so (`merged_into_sub`) so the RP can move its records.
    let client = app.clients.get(claims.client_id.as_str());
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
    let mut body = account_claims(&account, scope.names());
    if resolved.merged_from.is_some()
        && let Some(client) = &client
    {
        let current = super::scope_claims::subject_for(app, client, &account).await?;
        body.insert("merged_into_sub".into(), Value::String(current));
    }
    body.insert("sub".into(), Value::String(claims.sub.clone()));
    Ok(Value::Object(body))
}
