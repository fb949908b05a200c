//! `POST /token`: the authorization_code, refresh_token and client_credentials grants, and
//! what their tokens are bound to (a DPoP key or the client's TLS certificate).

use std::collections::HashMap;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use sha2::Digest;
use subtle::ConstantTimeEq;

use super::ProviderState;
use super::client_auth::BackChannel;
use super::clients::Client;
use super::error::TokenError;
use super::mtls::ClientCertificate;
use super::records::{
    CodeRecord, FamilyEnded, RefreshRecord, UsedMarker, code_key, code_used_key, family_lifetime,
    grant_revoked_key, may_rotate, refresh_key, refresh_used_key, revocation_ttl,
};
use super::tokens::{Confirmation, Issue, TokenResponse, issue_bound_client_token, issue_user_tokens};
use crate::config::GrantType;
use crate::state::{Class, StoreError};

pub async fn post(State(app): State<ProviderState>, request: BackChannel) -> Response {
    match token(&app, &request).await {
        Ok(tokens) => {
            let mut res = Json(tokens).into_response();
            res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            res.headers_mut().insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
            super::dpop::offer_nonce(&app, &mut res).await;
            res
        }
        Err(e) => {
            tracing::info!(error = e.code(), detail = %e, "token request refused");
            metrics::counter!("sso_token_errors_total", "error" => e.code()).increment(1);
            e.into_response()
        }
    }
}

/// Parses a form body, refusing repeated parameters (RFC 6749 §3.2).
pub fn form(headers: &HeaderMap, body: &[u8]) -> Result<HashMap<String, String>, TokenError> {
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("application/x-www-form-urlencoded"));
    if !is_form {
        return Err(TokenError::InvalidRequest("expected application/x-www-form-urlencoded".into()));
    }
    let pairs = crate::web::params::parse(body, crate::web::params::Controls::Refused)
        .map_err(|e| TokenError::InvalidRequest(e.to_string()))?;
    let mut map = HashMap::new();
    for (k, v) in pairs {
        if map.insert(k.clone(), v).is_some() {
            return Err(TokenError::InvalidRequest(format!("parameter {k} is repeated")));
        }
    }
    Ok(map)
}

async fn token(app: &ProviderState, request: &BackChannel) -> Result<TokenResponse, TokenError> {
    let (params, auth) = super::client_auth::authenticate_form(app, "/token", request).await?;
    let client = auth.client;
    let get = |k: &str| params.get(k).map(String::as_str).filter(|v| !v.is_empty());
    // DPoP (RFC 9449): a proof binds the access token (and a public client's refresh token).
    let url = format!("{}/token", app.issuer());
    let target =
        super::dpop::Target { method: "POST", url: &url, access_token: None, jkt: None, alias: None };
    // A public client proved nothing yet: its proofs' markers are anonymous records.
    let caller = if client.is_public() { Class::Anonymous } else { Class::Authenticated };
    let proof = super::dpop::verify(app, &request.headers, target, caller).await?;
    let jkt = proof.as_ref().map(|p| p.jkt.as_str());
    if client.require_dpop && jkt.is_none() {
        return Err(TokenError::InvalidDpopProof("this client must send a DPoP proof".into()));
    }
    let certificate = request.certificate.as_ref();
    let cnf = confirmation(&client, auth.by_certificate, certificate, jkt)?;
    let cnf = cnf.as_ref();
    let grant_type = match get("grant_type") {
        None => return Err(TokenError::InvalidRequest("grant_type is required".into())),
        Some("authorization_code") => GrantType::AuthorizationCode,
        Some("refresh_token") => GrantType::RefreshToken,
        Some("client_credentials") => GrantType::ClientCredentials,
        Some(_) => return Err(TokenError::UnsupportedGrantType),
    };
    if !client.allows_grant(grant_type) {
        return Err(TokenError::UnauthorizedClient(format!(
            "this client may not use {}",
            grant_type.as_str()
        )));
    }
    match grant_type {
        GrantType::AuthorizationCode => {
            let code = get("code").ok_or_else(|| TokenError::InvalidRequest("code is required".into()))?;
            let pkce = (get("redirect_uri"), get("code_verifier"));
            authorization_code(app, &client, code, pkce, (jkt, cnf)).await
        }
        GrantType::RefreshToken => {
            let token = get("refresh_token")
                .ok_or_else(|| TokenError::InvalidRequest("refresh_token is required".into()))?;
            refresh(app, &client, token, get("scope"), Presenter { jkt, certificate, cnf }).await
        }
        GrantType::ClientCredentials => {
            let requested: Vec<String> =
                get("scope").unwrap_or("").split_whitespace().map(str::to_string).collect();
            if let Some(s) = requested.iter().find(|s| !client.scopes.contains(s) || *s == "openid") {
                return Err(TokenError::InvalidScope(format!(
                    "scope {s} is not allowed for client_credentials"
                )));
            }
            issue_bound_client_token(app, &client, &requested, cnf)
        }
    }
}

/// What the tokens of a request are bound to (one confirmation per token). A DPoP proof binds
/// them to its key, except for a client registered for certificate-bound tokens, which may
/// not send one; without a proof, a client that authenticated with its TLS certificate, or
/// is registered for certificate-bound tokens, gets them bound to that certificate
/// (`x5t#S256`, RFC 8705 §3); anyone else gets unbound tokens.
fn confirmation(
    client: &Client,
    by_certificate: bool,
    certificate: Option<&ClientCertificate>,
    jkt: Option<&str>,
) -> Result<Option<Confirmation>, TokenError> {
    match jkt {
        Some(_) if client.certificate_bound_tokens => Err(TokenError::InvalidRequest(
            "this client's tokens are bound to its TLS client certificate: send no DPoP proof".into(),
        )),
        Some(jkt) => Ok(Some(Confirmation::Dpop { jkt: jkt.to_string() })),
        None if by_certificate || client.certificate_bound_tokens => match certificate {
            Some(cert) => Ok(Some(Confirmation::Certificate { x5t_s256: cert.thumbprint() })),
            None => Err(TokenError::InvalidRequest(
                "this client's tokens are bound to its TLS client certificate: connect with it".into(),
            )),
        },
        None => Ok(None),
    }
}

/// How a refresh request proves it holds what a bound family is bound to.
#[derive(Debug, Clone, Copy)]
struct Presenter<'a> {
    /// The DPoP proof's key.
    jkt: Option<&'a str>,
    /// The TLS client certificate of the connection.
    certificate: Option<&'a ClientCertificate>,
    /// What the new tokens bind to.
    cnf: Option<&'a Confirmation>,
}

/// The longest access-token lifetime any client has (how long a revocation must at least last).
fn longest_access_lifetime(app: &ProviderState) -> Duration {
    let l = &app.settings.lifetimes;
    app.settings.clients.iter().filter_map(|c| c.access_token_lifetime).fold(l.access_token, Duration::max)
}

/// The longest a refresh family may live (when a revoked grant's own end is not known).
fn longest_family_lifetime(app: &ProviderState) -> Duration {
    let l = &app.settings.lifetimes;
    let client = app.settings.clients.iter().filter_map(|c| c.refresh_token_lifetime);
    client.fold(l.refresh_token.max(l.offline_refresh_token), Duration::max)
}

/// Revokes every token issued under a grant — replay, client mismatch, end of its session,
/// `/revoke` — for as long as any of them could be presented: until the family ends
/// (`family_end`; None = not known, the longest a family may live) and at least as long as
/// an access token.
pub async fn revoke_grant(
    app: &ProviderState,
    grant_id: &str,
    family_end: Option<i64>,
) -> Result<(), StoreError> {
    let now = app.clock.now();
    let end = family_end.unwrap_or_else(|| now.saturating_add(longest_family_lifetime(app).as_secs() as i64));
    let ttl = revocation_ttl(now, end, longest_access_lifetime(app));
    app.store.put(&grant_revoked_key(grant_id), Vec::new(), ttl).await
}

async fn is_revoked(app: &ProviderState, grant_id: &str) -> Result<bool, TokenError> {
    Ok(app.store.get(&grant_revoked_key(grant_id)).await?.is_some())
}

/// A replayed code or refresh token: revoke its grant (someone holds a copy).
async fn replayed(app: &ProviderState, marker: &UsedMarker, what: &str) -> Result<TokenError, TokenError> {
    revoke_grant(app, &marker.grant_id, marker.family_end).await?;
    tracing::warn!(grant_id = %marker.grant_id, "grant revoked after a replayed {what}");
    Ok(TokenError::InvalidGrant(format!("the {what} was already used")))
}

async fn authorization_code(
    app: &ProviderState,
    client: &Client,
    code: &str,
    (redirect_uri, verifier): (Option<&str>, Option<&str>),
    (jkt, cnf): (Option<&str>, Option<&Confirmation>),
) -> Result<TokenResponse, TokenError> {
    let Some(record) = app.store.get_json::<CodeRecord>(&code_key(code)).await? else {
        // A second use of a redeemed code revokes what the first redemption issued.
        if let Some(used) = app.store.get(&code_used_key(code)).await? {
            return Err(replayed(app, &UsedMarker::decode(&used), "authorization code").await?);
        }
        return Err(TokenError::InvalidGrant("the authorization code is invalid or expired".into()));
    };
    let grant = &record.grant;
    let now = app.clock.now();
    let client_refresh =
        app.clients.get(&grant.client_id).map_or(client.refresh_token_lifetime, |c| c.refresh_token_lifetime);
    let family = family_lifetime(grant, client_refresh, app.settings.lifetimes.offline_refresh_token);
    let family_end = now + family.as_secs() as i64;
    // Claim the code: exactly one presentation gets past this (the marker is written only if
    // absent), and it is written before the code is deleted, so any other presentation — at
    // the same moment or later, while the family may live — finds it and revokes the grant.
    let marker = UsedMarker { grant_id: grant.grant_id.clone(), family_end: Some(family_end) };
    let remember = family.max(Duration::from_secs(600));
    if !app.store.put_new(&code_used_key(code), marker.encode(), remember).await? {
        return Err(replayed(app, &marker, "authorization code").await?);
    }
    app.store.delete(&code_key(code)).await?;
    if grant.client_id != client.client_id {
        revoke_grant(app, &grant.grant_id, Some(family_end)).await?;
        return Err(TokenError::InvalidGrant("the code was issued to another client".into()));
    }
    if redirect_uri != Some(record.redirect_uri.as_str()) {
        return Err(TokenError::InvalidGrant("redirect_uri does not match the authorization request".into()));
    }
    match (&record.code_challenge, verifier) {
        (Some(challenge), Some(verifier)) => {
            let valid_verifier = (43..=128).contains(&verifier.len())
                && verifier.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
            let computed = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(sha2::Sha256::digest(verifier.as_bytes()));
            if !valid_verifier || !bool::from(computed.as_bytes().ct_eq(challenge.as_bytes())) {
                return Err(TokenError::InvalidGrant("PKCE verification failed".into()));
            }
        }
        (Some(_), None) => return Err(TokenError::InvalidGrant("code_verifier is required".into())),
        (None, Some(_)) => {
            return Err(TokenError::InvalidGrant("code_verifier sent but no code_challenge was".into()));
        }
        (None, None) => {}
    }
    if let Some(bound) = &record.dpop_jkt
        && jkt != Some(bound.as_str())
    {
        return Err(TokenError::InvalidGrant("the code is bound to another DPoP key (dpop_jkt)".into()));
    }
    if !app.sessions.is_alive(&grant.sid).await? {
        return Err(TokenError::InvalidGrant("the login session has ended".into()));
    }
    let account = app
        .accounts
        .find_for_tokens(&grant.account_id)
        .await?
        .ok_or_else(|| TokenError::InvalidGrant("the account no longer exists".into()))?;
    // offline_access (only for clients allowed to request it, checked at /authorize) gives a
    // long-lived family that survives the SSO session; anything else ends with the session.
    if !grant.is_offline() && !app.sessions.record_grant(&grant.sid, &grant.grant_id, family_end).await? {
        return Err(TokenError::InvalidGrant("the login session has ended".into()));
    }
    let issue = Issue {
        nonce: record.nonce.as_deref(),
        family_expires_at: Some(family_end),
        offline: grant.is_offline(),
        cnf,
    };
    issue_user_tokens(app, client, grant, &account, issue).await
}

async fn refresh(
    app: &ProviderState,
    client: &Client,
    token: &str,
    scope: Option<&str>,
    presenter: Presenter<'_>,
) -> Result<TokenResponse, TokenError> {
    let Some(record) = app.store.get_json::<RefreshRecord>(&refresh_key(token)).await? else {
        // A rotated token presented again: someone holds a copy. Revoke the whole family.
        if let Some(used) = app.store.get(&refresh_used_key(token)).await? {
            return Err(replayed(app, &UsedMarker::decode(&used), "refresh token").await?);
        }
        return Err(TokenError::InvalidGrant("the refresh token is invalid or expired".into()));
    };
    let now = app.clock.now();
    let remaining = Duration::from_secs((record.family_expires_at - now).max(1) as u64);
    let marker =
        UsedMarker { grant_id: record.grant.grant_id.clone(), family_end: Some(record.family_expires_at) };
    // Everything that refuses a family is checked before the token is claimed: a concurrent
    // replay revokes the family after the winner's checks, so the winner still gets its
    // answer (exactly one success) but its new tokens are refused from then on.
    may_use_family(app, client, &record).await?;
    // A bound family (RFC 9449 §5) rotates only for the holder of its key; a presentation
    // without it claims nothing, so the key holder's next refresh still works.
    if let Some(bound) = &record.jkt
        && presenter.jkt != Some(bound.as_str())
    {
        return Err(TokenError::InvalidGrant("the refresh token is bound to another DPoP key".into()));
    }
    // Likewise a public client's family bound to its certificate (RFC 8705 §4).
    if let Some(bound) = &record.x5t_s256
        && presenter.certificate.map(ClientCertificate::thumbprint).as_deref() != Some(bound.as_str())
    {
        return Err(TokenError::InvalidGrant("the refresh token is bound to another TLS certificate".into()));
    }
    // Claim the token (see `authorization_code`): of concurrent presentations exactly one
    // rotates and every other revokes the family, the winner's new tokens included.
    if !app.store.put_new(&refresh_used_key(token), marker.encode(), remaining).await? {
        return Err(replayed(app, &marker, "refresh token").await?);
    }
    app.store.delete(&refresh_key(token)).await?;
    let result = rotate(app, client, record.clone(), scope, presenter.cnf).await;
    if matches!(result, Err(TokenError::TemporarilyUnavailable | TokenError::ServerError)) {
        // The token was consumed but nothing new was issued: put it back so a transient
        // failure does not log the person out (best effort; the store may still be down).
        let restored = async {
            app.store.delete(&refresh_used_key(token)).await?;
            app.store.put_json(&refresh_key(token), &record, remaining).await
        };
        if let Err(e) = restored.await {
            tracing::error!(error = %e, "could not restore a refresh token after a failed rotation");
        }
    }
    result
}

/// Refuses a family presented by another client (and revokes it: its token leaked), a
/// revoked family, and one without `offline_access` whose SSO session ended (revoking it as
/// logout would have: a session that idled out or reached its absolute lifetime may just have
/// vanished from the store, with no event to revoke its families, so this is checked at every
/// rotation).
async fn may_use_family(
    app: &ProviderState,
    client: &Client,
    record: &RefreshRecord,
) -> Result<(), TokenError> {
    let grant = &record.grant;
    let family_end = Some(record.family_expires_at);
    if grant.client_id != client.client_id {
        revoke_grant(app, &grant.grant_id, family_end).await?;
        return Err(TokenError::InvalidGrant("the refresh token was issued to another client".into()));
    }
    let offline = record.is_offline();
    let revoked = is_revoked(app, &grant.grant_id).await?;
    let session_alive = revoked || offline || app.sessions.is_alive(&grant.sid).await?;
    match may_rotate(offline, revoked, session_alive) {
        Ok(()) => Ok(()),
        Err(FamilyEnded::Revoked) => Err(TokenError::InvalidGrant("the grant was revoked".into())),
        Err(FamilyEnded::SessionEnded) => {
            revoke_grant(app, &grant.grant_id, family_end).await?;
            Err(TokenError::InvalidGrant("the login session has ended".into()))
        }
    }
}

/// Mints the next tokens of a claimed family (already checked by `may_use_family`).
async fn rotate(
    app: &ProviderState,
    client: &Client,
    record: RefreshRecord,
    scope: Option<&str>,
    cnf: Option<&Confirmation>,
) -> Result<TokenResponse, TokenError> {
    let offline = record.is_offline();
    let mut grant = record.grant;
    if let Some(scope) = scope {
        let narrowed: Vec<String> = scope.split_whitespace().map(str::to_string).collect();
        if let Some(s) = narrowed.iter().find(|s| !grant.scopes.contains(s)) {
            return Err(TokenError::InvalidScope(format!("scope {s} was not granted originally")));
        }
        grant.scopes = narrowed;
    }
    let account = app
        .accounts
        .find_for_tokens(&grant.account_id)
        .await?
        .ok_or_else(|| TokenError::InvalidGrant("the account no longer exists".into()))?;
    let issue = Issue { nonce: None, family_expires_at: Some(record.family_expires_at), offline, cnf };
    issue_user_tokens(app, client, &grant, &account, issue).await
}

#[cfg(test)]
mod properties {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use proptest::prelude::*;

    use super::*;

    const NAMES: [&str; 14] = [
        "grant_type",
        "code",
        "redirect_uri",
        "code_verifier",
        "refresh_token",
        "scope",
        "client_id",
        "client_secret",
        "client_assertion",
        "client_assertion_type",
        "token",
        "token_type_hint",
        "x",
        "",
    ];

    fn value() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::sample::select(vec![
                "authorization_code",
                "refresh_token",
                "client_credentials",
                "password",
                "portal",
                "m2m",
                "spa",
                "signer",
                "portal-secret-0123456789",
                "m2m-secret-0123456789",
                "api.read",
                "openid",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                "eyJhbGciOiJub25lIn0.eyJpc3MiOiJzaWduZXIifQ.",
                "https://portal.example/cb",
            ])
            .prop_map(str::to_string),
            any::<String>(),
            (0usize..9000).prop_map(|n| "v".repeat(n)),
        ]
    }

    fn authorization() -> impl Strategy<Value = Option<Vec<u8>>> {
        prop::option::of(prop_oneof![
            Just(b"Basic bTJtOm0ybS1zZWNyZXQtMDEyMzQ1Njc4OQ==".to_vec()),
            Just(b"Basic cG9ydGFsOndyb25n".to_vec()),
            Just(b"Basic ".to_vec()),
            Just(b"Bearer x".to_vec()),
            prop::collection::vec(any::<u8>(), 0..64),
        ])
    }

    proptest! {
        #![proptest_config(crate::fuzzing::config(256))]

        #[test]
        fn any_body_is_a_form_or_invalid_request(
            body in prop::collection::vec(any::<u8>(), 0..2048),
            form_type in any::<bool>(),
        ) {
            let mut headers = HeaderMap::new();
            if form_type {
                headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-www-form-urlencoded"));
            }
            match form(&headers, &body) {
                Ok(map) => {
                    prop_assert!(form_type);
                    prop_assert!(map.iter().all(|(k, v)| !k.chars().chain(v.chars()).any(char::is_control)));
                }
                Err(e) => prop_assert_eq!(e.code(), "invalid_request"),
            }
        }

        /// Nothing but `client_credentials` for a client that proved itself can come out:
        /// no code or refresh token exists, whatever is sent.
        #[test]
        fn any_token_request_is_an_oauth_answer(
            pairs in prop::collection::vec((prop::sample::select(NAMES.to_vec()), value()), 0..12),
            authorization in authorization(),
        ) {
            let shared = crate::app::shared_test_state();
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-www-form-urlencoded"));
            if let Some(v) = authorization.and_then(|a| HeaderValue::from_bytes(&a).ok()) {
                headers.insert(header::AUTHORIZATION, v);
            }
            let body = serde_urlencoded::to_string(&pairs).unwrap();
            let request = BackChannel { ip: None, headers, body: body.clone().into(), certificate: None };
            let result = shared.runtime.block_on(token(shared.app.provider(), &request));
            match result {
                Ok(_) => {
                    let grant = pairs.iter().find(|(k, _)| *k == "grant_type").map(|(_, v)| v.as_str());
                    prop_assert_eq!(grant, Some("client_credentials"));
                }
                Err(e) => {
                    prop_assert!(e.status().is_client_error(), "{e:?} for {body}");
                }
            }
        }
    }
}
