//! `POST /token`: the authorization_code, refresh_token and client_credentials grants, and
//! what their tokens are bound to (a DPoP key or the client's TLS certificate).
//!
//! Each grant is a decision over plain inputs — the stored record, the client, what the
//! request presents, the time — that returns what to issue or the exact OAuth error
//! ([`grant_request`], [`binding`], [`not_live`], [`redeem_code`], [`rotation`]); the async
//! shell around them only reads and claims records in the state store and mints. This file
//! must not mint tokens itself (`minting.rs` does) nor authenticate clients (`client_auth.rs`).

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
use super::minting::{Confirmation, Issue, TokenResponse, issue_bound_client_token, issue_user_tokens};
use super::mtls::ClientCertificate;
use super::scope_claims::Scope;
use super::store_records::{
    CodeRecord, FamilyEnded, RefreshRecord, UsedMarker, UserGrant, code_key, code_used_key, family_lifetime,
    grant_revoked_key, may_rotate, refresh_key, refresh_used_key, revocation_ttl,
};
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

/// The token request's own parameters, as sent (an empty value counts as absent).
#[derive(Debug, Clone, Copy, Default)]
pub struct TokenParams<'a> {
    pub grant_type: Option<&'a str>,
    pub code: Option<&'a str>,
    pub redirect_uri: Option<&'a str>,
    pub code_verifier: Option<&'a str>,
    pub refresh_token: Option<&'a str>,
    pub scope: Option<&'a str>,
}

impl<'a> TokenParams<'a> {
    pub fn from_form(form: &'a HashMap<String, String>) -> Self {
        let get = |k: &str| form.get(k).map(String::as_str).filter(|v| !v.is_empty());
        TokenParams {
            grant_type: get("grant_type"),
            code: get("code"),
            redirect_uri: get("redirect_uri"),
            code_verifier: get("code_verifier"),
            refresh_token: get("refresh_token"),
            scope: get("scope"),
        }
    }
}

/// What a token request asks for, once its grant type is one its client may use and the
/// grant's own parameters are present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrantRequest<'a> {
    AuthorizationCode {
        code: &'a str,
        redirect_uri: Option<&'a str>,
        verifier: Option<&'a str>,
    },
    RefreshToken {
        token: &'a str,
        scope: Option<&'a str>,
    },
    /// The scopes to grant the client itself (each registered for it; never `openid`).
    ClientCredentials {
        scopes: Vec<String>,
    },
}

/// Decides which grant a request of `client` asks for, or the error it gets.
pub fn grant_request<'a>(client: &Client, params: TokenParams<'a>) -> Result<GrantRequest<'a>, TokenError> {
    let grant_type = match params.grant_type {
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
    let required = |value: Option<&'a str>, name: &str| {
        value.ok_or_else(|| TokenError::InvalidRequest(format!("{name} is required")))
    };
    Ok(match grant_type {
        GrantType::AuthorizationCode => GrantRequest::AuthorizationCode {
            code: required(params.code, "code")?,
            redirect_uri: params.redirect_uri,
            verifier: params.code_verifier,
        },
        GrantType::RefreshToken => GrantRequest::RefreshToken {
            token: required(params.refresh_token, "refresh_token")?,
            scope: params.scope,
        },
        GrantType::ClientCredentials => {
            let scope = Scope::parse(params.scope);
            if let Some(s) = scope.names().iter().find(|s| *s == "openid" || !client.scopes.contains(s)) {
                return Err(TokenError::InvalidScope(format!(
                    "scope {s} is not allowed for client_credentials"
                )));
            }
            GrantRequest::ClientCredentials { scopes: scope.into_names() }
        }
    })
}

/// What a request's tokens are bound to (one confirmation per token). A client that must
/// send a DPoP proof and sent none is refused. A DPoP proof (its key's thumbprint `jkt`)
/// binds them to its key, except for a client registered for certificate-bound tokens,
/// which may not send one; without a proof, a client that authenticated with its TLS
/// certificate, or is registered for certificate-bound tokens, gets them bound to that
/// certificate (`x5t_s256`, RFC 8705 §3); anyone else gets unbound tokens.
pub fn binding(
    client: &Client,
    by_certificate: bool,
    x5t_s256: Option<&str>,
    jkt: Option<&str>,
) -> Result<Option<Confirmation>, TokenError> {
    match jkt {
        None if client.require_dpop => {
            Err(TokenError::InvalidDpopProof("this client must send a DPoP proof".into()))
        }
        Some(_) if client.certificate_bound_tokens => Err(TokenError::InvalidRequest(
            "this client's tokens are bound to its TLS client certificate: send no DPoP proof".into(),
        )),
        Some(jkt) => Ok(Some(Confirmation::Dpop { jkt: jkt.to_string() })),
        None if by_certificate || client.certificate_bound_tokens => match x5t_s256 {
            Some(x5t_s256) => Ok(Some(Confirmation::Certificate { x5t_s256: x5t_s256.to_string() })),
            None => Err(TokenError::InvalidRequest(
                "this client's tokens are bound to its TLS client certificate: connect with it".into(),
            )),
        },
        None => Ok(None),
    }
}

/// What a request proves it holds, and what its new tokens bind to.
#[derive(Debug, Clone, Copy, Default)]
pub struct Holder<'a> {
    /// The DPoP proof's key thumbprint.
    pub jkt: Option<&'a str>,
    /// The SHA-256 thumbprint of the connection's TLS client certificate.
    pub x5t_s256: Option<&'a str>,
    /// What the new tokens bind to ([`binding`]).
    pub cnf: Option<&'a Confirmation>,
}

/// A refused grant. When the code or refresh token has leaked (replayed, presented by another
/// client, or outliving its session), the grant behind it is revoked with the refusal.
#[derive(Debug)]
pub struct Refusal {
    pub error: TokenError,
    /// The grant to revoke, and the end of its family (None: not known).
    pub revoke: Option<UsedMarker>,
}

impl Refusal {
    fn invalid_grant(description: &str) -> Self {
        Refusal { error: TokenError::InvalidGrant(description.into()), revoke: None }
    }

    fn revoking(description: &str, grant_id: &str, family_end: Option<i64>) -> Self {
        let revoke = UsedMarker { grant_id: grant_id.to_string(), family_end };
        Refusal { error: TokenError::InvalidGrant(description.into()), revoke: Some(revoke) }
    }
}

impl From<TokenError> for Refusal {
    fn from(error: TokenError) -> Self {
        Refusal { error, revoke: None }
    }
}

/// Why a code or refresh token (`what`) that is not in the store is refused: one redeemed
/// before (`used`, its marker) is a replay — someone holds a copy, so its grant is revoked;
/// anything else is unknown or expired.
pub fn not_live(what: &str, used: Option<UsedMarker>) -> Refusal {
    match used {
        Some(marker) => Refusal {
            error: TokenError::InvalidGrant(format!("the {what} was already used")),
            revoke: Some(marker),
        },
        None => Refusal::invalid_grant(&format!("the {what} is invalid or expired")),
    }
}

/// PKCE (RFC 7636 §4.6): the verifier must be well formed and hash to the challenge; a code
/// with a challenge needs a verifier, and one without needs none.
pub fn pkce(challenge: Option<&str>, verifier: Option<&str>) -> Result<(), TokenError> {
    match (challenge, verifier) {
        (Some(challenge), Some(verifier)) => {
            let valid_verifier = (43..=128).contains(&verifier.len())
                && verifier.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
            let computed = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(sha2::Sha256::digest(verifier.as_bytes()));
            if !valid_verifier || !bool::from(computed.as_bytes().ct_eq(challenge.as_bytes())) {
                return Err(TokenError::InvalidGrant("PKCE verification failed".into()));
            }
            Ok(())
        }
        (Some(_), None) => Err(TokenError::InvalidGrant("code_verifier is required".into())),
        (None, Some(_)) => {
            Err(TokenError::InvalidGrant("code_verifier sent but no code_challenge was".into()))
        }
        (None, None) => Ok(()),
    }
}

/// Decides what redeeming a claimed authorization code issues at `now`: tokens under its
/// grant, with a refresh family ending at `family_end` — or the refusal. A code presented by
/// another client revokes its grant. (The shell then checks that the login session is alive
/// and the account still exists.)
pub fn redeem_code<'r>(
    record: &'r CodeRecord,
    client: &Client,
    redirect_uri: Option<&str>,
    verifier: Option<&str>,
    holder: Holder<'r>,
    family_end: i64,
    now: i64,
) -> Result<Issue<'r>, Refusal> {
    let grant = &record.grant;
    if grant.client_id != client.client_id {
        return Err(Refusal::revoking(
            "the code was issued to another client",
            &grant.grant_id,
            Some(family_end),
        ));
    }
    if record.expires_at.is_some_and(|end| now >= end) {
        return Err(Refusal::invalid_grant("the authorization code is invalid or expired"));
    }
    if redirect_uri != Some(record.redirect_uri.as_str()) {
        return Err(Refusal::invalid_grant("redirect_uri does not match the authorization request"));
    }
    pkce(record.code_challenge.as_deref(), verifier)?;
    if let Some(bound) = &record.dpop_jkt
        && holder.jkt != Some(bound.as_str())
    {
        return Err(Refusal::invalid_grant("the code is bound to another DPoP key (dpop_jkt)"));
    }
    Ok(Issue {
        nonce: record.nonce.as_deref(),
        family_expires_at: Some(family_end),
        offline: grant.is_offline(),
        cnf: holder.cnf,
    })
}

/// What the store says of a refresh family besides its record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FamilyState {
    /// Its grant was revoked (replay, logout, `/revoke`).
    pub revoked: bool,
    /// The SSO session it was issued in is alive (only asked for an online family).
    pub session_alive: bool,
}

/// The next tokens of a refresh family: its grant (with the scopes narrowed as asked), and
/// how it is issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotation {
    pub grant: UserGrant,
    pub offline: bool,
    pub family_expires_at: i64,
}

/// Decides whether refresh token `record`, presented by `client` holding `holder` and
/// asking for `scope`, rotates at `now`, and into what. Refused: a family of another client
/// (revoked: its token leaked), a revoked family, an online family whose SSO session ended
/// (revoked, as logout would have: a session that idled out may just have vanished from the
/// store), a bound family presented without its DPoP key or TLS certificate (nothing is
/// revoked: the holder's next refresh still works), an ended family, and a wider scope
/// than was granted.
pub fn rotation(
    record: &RefreshRecord,
    client: &Client,
    scope: Option<&str>,
    holder: Holder<'_>,
    family: FamilyState,
    now: i64,
) -> Result<Rotation, Refusal> {
    let grant = &record.grant;
    let family_end = Some(record.family_expires_at);
    if grant.client_id != client.client_id {
        return Err(Refusal::revoking(
            "the refresh token was issued to another client",
            &grant.grant_id,
            family_end,
        ));
    }
    let offline = record.is_offline();
    match may_rotate(offline, family.revoked, family.session_alive) {
        Ok(()) => {}
        Err(FamilyEnded::Revoked) => return Err(Refusal::invalid_grant("the grant was revoked")),
        Err(FamilyEnded::SessionEnded) => {
            return Err(Refusal::revoking("the login session has ended", &grant.grant_id, family_end));
        }
    }
    // A bound family (RFC 9449 §5) rotates only for the holder of its key.
    if let Some(bound) = &record.jkt
        && holder.jkt != Some(bound.as_str())
    {
        return Err(Refusal::invalid_grant("the refresh token is bound to another DPoP key"));
    }
    // Likewise a public client's family bound to its certificate (RFC 8705 §4).
    if let Some(bound) = &record.x5t_s256
        && holder.x5t_s256 != Some(bound.as_str())
    {
        return Err(Refusal::invalid_grant("the refresh token is bound to another TLS certificate"));
    }
    if now >= record.family_expires_at {
        return Err(Refusal::invalid_grant("the refresh token is invalid or expired"));
    }
    let mut grant = grant.clone();
    if scope.is_some() {
        let narrowed = Scope::parse(scope);
        if let Some(s) = narrowed.first_outside(&grant.scopes) {
            return Err(TokenError::InvalidScope(format!("scope {s} was not granted originally")).into());
        }
        grant.scopes = narrowed.into_names();
    }
    Ok(Rotation { grant, offline, family_expires_at: record.family_expires_at })
}

async fn token(app: &ProviderState, request: &BackChannel) -> Result<TokenResponse, TokenError> {
    let (form, auth) = super::client_auth::authenticate_form(app, "/token", request).await?;
    let client = auth.client;
    // DPoP (RFC 9449): a proof binds the access token (and a public client's refresh token).
    let url = format!("{}/token", app.issuer());
    let target =
        super::dpop::Target { method: "POST", url: &url, access_token: None, jkt: None, alias: None };
    // A public client proved nothing yet: its proofs' markers are anonymous records.
    let caller = if client.is_public() { Class::Anonymous } else { Class::Authenticated };
    let proof = super::dpop::verify(app, &request.headers, target, caller).await?;
    let jkt = proof.as_ref().map(|p| p.jkt.as_str());
    let thumbprint = request.certificate.as_ref().map(ClientCertificate::thumbprint);
    let cnf = binding(&client, auth.by_certificate, thumbprint.as_deref(), jkt)?;
    let holder = Holder { jkt, x5t_s256: thumbprint.as_deref(), cnf: cnf.as_ref() };
    match grant_request(&client, TokenParams::from_form(&form))? {
        GrantRequest::AuthorizationCode { code, redirect_uri, verifier } => {
            authorization_code(app, &client, code, (redirect_uri, verifier), holder).await
        }
        GrantRequest::RefreshToken { token, scope } => refresh(app, &client, token, scope, holder).await,
        GrantRequest::ClientCredentials { scopes } => {
            issue_bound_client_token(app, &client, &scopes, holder.cnf)
        }
    }
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

/// Carries out a refusal: revokes the grant it names, then answers with its error.
async fn refuse(app: &ProviderState, refusal: Refusal) -> TokenError {
    if let Some(grant) = &refusal.revoke {
        if let Err(e) = revoke_grant(app, &grant.grant_id, grant.family_end).await {
            return e.into();
        }
        tracing::warn!(grant_id = %grant.grant_id, reason = %refusal.error, "grant revoked");
    }
    refusal.error
}

/// The live record under `key`, or the refusal of a secret (`what`) that is not live: one
/// used before (its marker under `used_key` names the grant to revoke), or unknown or expired.
async fn live_record<T: serde::de::DeserializeOwned>(
    app: &ProviderState,
    key: &str,
    used_key: &str,
    what: &str,
) -> Result<T, TokenError> {
    if let Some(record) = app.store.get_json::<T>(key).await? {
        return Ok(record);
    }
    let used = app.store.get(used_key).await?.map(|b| UsedMarker::decode(&b));
    Err(refuse(app, not_live(what, used)).await)
}

async fn authorization_code(
    app: &ProviderState,
    client: &Client,
    code: &str,
    (redirect_uri, verifier): (Option<&str>, Option<&str>),
    holder: Holder<'_>,
) -> Result<TokenResponse, TokenError> {
    const WHAT: &str = "authorization code";
    // A second use of a redeemed code revokes what the first redemption issued.
    let record: CodeRecord = live_record(app, &code_key(code), &code_used_key(code), WHAT).await?;
    let grant = &record.grant;
    let now = app.clock.now();
    let client_refresh = app
        .clients
        .get(grant.client_id.as_str())
        .map_or(client.refresh_token_lifetime, |c| c.refresh_token_lifetime);
    let family = family_lifetime(grant, client_refresh, app.settings.lifetimes.offline_refresh_token);
    let family_end = now + family.as_secs() as i64;
    // Claim the code: exactly one presentation gets past this (the marker is written only if
    // absent), and it is written before the code is deleted, so any other presentation — at
    // the same moment or later, while the family may live — finds it and revokes the grant.
    let marker = UsedMarker { grant_id: grant.grant_id.clone(), family_end: Some(family_end) };
    let remember = family.max(Duration::from_secs(600));
    if !app.store.put_new(&code_used_key(code), marker.encode(), remember).await? {
        return Err(refuse(app, not_live(WHAT, Some(marker))).await);
    }
    app.store.delete(&code_key(code)).await?;
    let issue = match redeem_code(&record, client, redirect_uri, verifier, holder, family_end, now) {
        Ok(issue) => issue,
        Err(refusal) => return Err(refuse(app, refusal).await),
    };
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
    issue_user_tokens(app, client, grant, &account, issue).await
}

async fn refresh(
    app: &ProviderState,
    client: &Client,
    token: &str,
    scope: Option<&str>,
    holder: Holder<'_>,
) -> Result<TokenResponse, TokenError> {
    const WHAT: &str = "refresh token";
    // A rotated token presented again: someone holds a copy. Revoke the whole family.
    let record: RefreshRecord = live_record(app, &refresh_key(token), &refresh_used_key(token), WHAT).await?;
    let now = app.clock.now();
    let remaining = Duration::from_secs((record.family_expires_at - now).max(1) as u64);
    let grant = &record.grant;
    // Everything that refuses a family is decided before the token is claimed: a concurrent
    // replay revokes the family after the winner's checks, so the winner still gets its
    // answer (exactly one success) but its new tokens are refused from then on. A bound
    // family presented without its key claims nothing, so the key holder's next refresh
    // still works.
    let family = if grant.client_id == client.client_id {
        let revoked = is_revoked(app, &grant.grant_id).await?;
        let session_alive = revoked || record.is_offline() || app.sessions.is_alive(&grant.sid).await?;
        FamilyState { revoked, session_alive }
    } else {
        // Refused whatever the store says (and revoked): no need to ask it.
        FamilyState { revoked: false, session_alive: true }
    };
    let next = match rotation(&record, client, scope, holder, family, now) {
        Ok(next) => next,
        Err(refusal) => return Err(refuse(app, refusal).await),
    };
    // Claim the token (see `authorization_code`): of concurrent presentations exactly one
    // rotates and every other revokes the family, the winner's new tokens included.
    let marker = UsedMarker { grant_id: grant.grant_id.clone(), family_end: Some(record.family_expires_at) };
    if !app.store.put_new(&refresh_used_key(token), marker.encode(), remaining).await? {
        return Err(refuse(app, not_live(WHAT, Some(marker))).await);
    }
    app.store.delete(&refresh_key(token)).await?;
    let result = mint_rotation(app, client, &next, holder.cnf).await;
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

/// Mints the next tokens of a claimed family.
async fn mint_rotation(
    app: &ProviderState,
    client: &Client,
    next: &Rotation,
    cnf: Option<&Confirmation>,
) -> Result<TokenResponse, TokenError> {
    let account = app
        .accounts
        .find_for_tokens(&next.grant.account_id)
        .await?
        .ok_or_else(|| TokenError::InvalidGrant("the account no longer exists".into()))?;
    let issue =
        Issue { nonce: None, family_expires_at: Some(next.family_expires_at), offline: next.offline, cnf };
    issue_user_tokens(app, client, &next.grant, &account, issue).await
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

#[cfg(test)]
mod decisions {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;
    use crate::config::Settings;
    use crate::provider::clients::ClientRegistry;

    const NOW: i64 = 10_000;
    const FAMILY_END: i64 = NOW + 3_600;
    /// RFC 7636 appendix B.
    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
    const CB: &str = "https://portal.example/cb";

    /// `portal` (confidential, every grant), `docs` (another confidential client), `spa`
    /// (public, DPoP required), `m2m` (client_credentials only) and `bank` (certificate-bound
    /// tokens).
    fn clients() -> ClientRegistry {
        let settings = Settings::from_toml(
            r#"
            issuer = "https://sso.example"
            clients = [
              { client_id = "portal", client_secret = "portal-secret-0123456789", redirect_uris = ["https://portal.example/cb"], grant_types = ["authorization_code", "refresh_token"] },
              { client_id = "docs", client_secret = "docs-secret-0123456789", redirect_uris = ["https://docs.example/cb"] },
              { client_id = "spa", redirect_uris = ["https://spa.example/cb"], grant_types = ["authorization_code", "refresh_token"], require_dpop = true },
              { client_id = "m2m", client_secret = "m2m-secret-0123456789", grant_types = ["client_credentials"], scopes = ["hotline.read", "openid"] },
              { client_id = "bank", client_secret = "bank-secret-0123456789", redirect_uris = ["https://bank.example/cb"], tls_client_certificate_bound_access_tokens = true },
            ]
            [inbound]
            trusted_proxies = ["10.0.0.0/8"]
            [mtls]
            certificate_header = "X-SSL-Client-Cert"
            "#,
        )
        .unwrap();
        ClientRegistry::new(&settings.clients, &settings.lifetimes)
    }

    fn client(id: &str) -> Client {
        clients().get(id).map(|c| Client::clone(&c)).unwrap()
    }

    fn grant(scopes: &[&str]) -> UserGrant {
        UserGrant::example(scopes)
    }

    fn code() -> CodeRecord {
        CodeRecord {
            grant: grant(&["openid", "profile"]),
            redirect_uri: CB.into(),
            nonce: Some("n-1".into()),
            code_challenge: Some(CHALLENGE.into()),
            dpop_jkt: None,
            expires_at: Some(NOW + 60),
        }
    }

    fn family(scopes: &[&str]) -> RefreshRecord {
        RefreshRecord {
            grant: grant(scopes),
            family_expires_at: FAMILY_END,
            offline: false,
            jkt: None,
            x5t_s256: None,
        }
    }

    const ALIVE: FamilyState = FamilyState { revoked: false, session_alive: true };

    fn redeem(
        record: &CodeRecord,
        client_id: &str,
        redirect: Option<&str>,
        verifier: Option<&str>,
    ) -> Result<(), Refusal> {
        redeem_code(record, &client(client_id), redirect, verifier, Holder::default(), FAMILY_END, NOW)
            .map(|_| ())
    }

    /// Redeems `record` as `portal`, with the right redirect_uri and verifier, at `now`.
    fn redeem_as_portal<'r>(
        record: &'r CodeRecord,
        holder: Holder<'r>,
        now: i64,
    ) -> Result<Issue<'r>, Refusal> {
        redeem_code(record, &client("portal"), Some(CB), Some(VERIFIER), holder, FAMILY_END, now)
    }

    fn invalid_grant(result: Result<(), Refusal>, revoked: Option<&str>) -> String {
        let refusal = result.unwrap_err();
        assert_eq!(refusal.revoke.as_ref().map(|m| m.grant_id.as_str()), revoked, "{refusal:?}");
        match refusal.error {
            TokenError::InvalidGrant(description) => description,
            other => panic!("expected invalid_grant, got {other:?}"),
        }
    }

    #[test]
    fn a_grant_type_must_be_sent_known_and_allowed() {
        let params = |grant_type| TokenParams { grant_type, code: Some("c"), ..TokenParams::default() };
        let portal = client("portal");
        assert!(matches!(grant_request(&portal, params(None)), Err(TokenError::InvalidRequest(_))));
        assert!(matches!(
            grant_request(&portal, params(Some("password"))),
            Err(TokenError::UnsupportedGrantType)
        ));
        assert!(matches!(
            grant_request(&portal, params(Some("client_credentials"))),
            Err(TokenError::UnauthorizedClient(_))
        ));
        assert!(matches!(
            grant_request(&client("m2m"), params(Some("authorization_code"))),
            Err(TokenError::UnauthorizedClient(_))
        ));
        assert_eq!(
            grant_request(&portal, params(Some("authorization_code"))).unwrap(),
            GrantRequest::AuthorizationCode { code: "c", redirect_uri: None, verifier: None }
        );
    }

    #[test]
    fn each_grant_requires_its_own_parameter() {
        let portal = client("portal");
        let code = TokenParams { grant_type: Some("authorization_code"), ..TokenParams::default() };
        let refresh = TokenParams { grant_type: Some("refresh_token"), ..TokenParams::default() };
        for params in [code, refresh] {
            assert!(matches!(grant_request(&portal, params), Err(TokenError::InvalidRequest(_))));
        }
        let refresh = TokenParams { refresh_token: Some("rt"), scope: Some("openid"), ..refresh };
        assert_eq!(
            grant_request(&portal, refresh).unwrap(),
            GrantRequest::RefreshToken { token: "rt", scope: Some("openid") }
        );
    }

    #[test]
    fn client_credentials_grants_only_registered_scopes_and_never_openid() {
        let m2m = client("m2m");
        let asking =
            |scope| TokenParams { grant_type: Some("client_credentials"), scope, ..TokenParams::default() };
        assert_eq!(
            grant_request(&m2m, asking(Some("hotline.read"))).unwrap(),
            GrantRequest::ClientCredentials { scopes: vec!["hotline.read".into()] }
        );
        assert_eq!(
            grant_request(&m2m, asking(None)).unwrap(),
            GrantRequest::ClientCredentials { scopes: vec![] }
        );
        for scope in ["openid", "hotline.write", "hotline.read admin"] {
            assert!(
                matches!(grant_request(&m2m, asking(Some(scope))), Err(TokenError::InvalidScope(_))),
                "{scope}"
            );
        }
    }

    #[test]
    fn a_redeemed_code_presented_again_revokes_its_grant() {
        let used = UsedMarker { grant_id: "g1".into(), family_end: Some(FAMILY_END) };
        let refusal = not_live("authorization code", Some(used.clone()));
        assert_eq!(refusal.revoke, Some(used));
        assert!(matches!(refusal.error, TokenError::InvalidGrant(d) if d.contains("already used")));
        let unknown = not_live("authorization code", None);
        assert_eq!(unknown.revoke, None);
        assert!(matches!(unknown.error, TokenError::InvalidGrant(d) if d.contains("invalid or expired")));
    }

    #[test]
    fn a_code_redeems_with_its_redirect_uri_and_verifier() {
        let record = code();
        let cnf = Confirmation::Dpop { jkt: "k".into() };
        let holder = Holder { cnf: Some(&cnf), ..Holder::default() };
        let issue = redeem_as_portal(&record, holder, NOW).unwrap();
        assert_eq!(issue.nonce, Some("n-1"));
        assert_eq!(issue.family_expires_at, Some(FAMILY_END));
        assert!(!issue.offline);
        assert_eq!(issue.cnf, Some(&cnf));
    }

    #[test]
    fn a_code_from_another_client_is_refused_and_its_grant_revoked() {
        let description = invalid_grant(redeem(&code(), "docs", Some(CB), Some(VERIFIER)), Some("g1"));
        assert!(description.contains("another client"));
    }

    #[test]
    fn a_code_with_another_redirect_uri_is_refused() {
        for redirect in [None, Some("https://portal.example/cb/"), Some("https://evil.example/cb")] {
            let description = invalid_grant(redeem(&code(), "portal", redirect, Some(VERIFIER)), None);
            assert!(description.contains("redirect_uri"), "{redirect:?}");
        }
    }

    #[test]
    fn pkce_missing_wrong_or_unasked_is_refused() {
        let record = code();
        assert!(
            invalid_grant(redeem(&record, "portal", Some(CB), None), None)
                .contains("code_verifier is required")
        );
        let wrong = "x".repeat(43);
        assert!(invalid_grant(redeem(&record, "portal", Some(CB), Some(&wrong)), None).contains("PKCE"));
        // The right hash of a verifier too short to be one.
        let short = "abc";
        let hashed = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(short));
        let short_record = CodeRecord { code_challenge: Some(hashed), ..code() };
        assert!(invalid_grant(redeem(&short_record, "portal", Some(CB), Some(short)), None).contains("PKCE"));
        let plain = CodeRecord { code_challenge: None, ..code() };
        assert!(
            invalid_grant(redeem(&plain, "portal", Some(CB), Some(VERIFIER)), None)
                .contains("no code_challenge")
        );
        assert!(redeem(&plain, "portal", Some(CB), None).is_ok());
    }

    #[test]
    fn an_expired_code_is_refused_and_one_without_an_end_is_left_to_the_store() {
        let record = code();
        let at = |now| redeem_as_portal(&record, Holder::default(), now).map(|_| ());
        assert!(at(NOW + 59).is_ok());
        assert!(invalid_grant(at(NOW + 60), None).contains("expired"));
        let older = CodeRecord { expires_at: None, ..code() };
        assert!(redeem(&older, "portal", Some(CB), Some(VERIFIER)).is_ok());
    }

    #[test]
    fn a_code_bound_to_a_dpop_key_needs_a_proof_of_that_key() {
        let record = CodeRecord { dpop_jkt: Some("key-a".into()), ..code() };
        let with = |jkt| redeem_as_portal(&record, Holder { jkt, ..Holder::default() }, NOW).map(|_| ());
        assert!(with(Some("key-a")).is_ok());
        assert!(invalid_grant(with(Some("key-b")), None).contains("dpop_jkt"));
        assert!(invalid_grant(with(None), None).contains("dpop_jkt"));
    }

    #[test]
    fn an_offline_code_starts_an_offline_family() {
        let record = CodeRecord { grant: grant(&["openid", "offline_access"]), ..code() };
        let issue = redeem_as_portal(&record, Holder::default(), NOW).unwrap();
        assert!(issue.offline);
    }

    fn rotate(
        record: &RefreshRecord,
        client_id: &str,
        scope: Option<&str>,
        state: FamilyState,
    ) -> Result<Rotation, Refusal> {
        rotation(record, &client(client_id), scope, Holder::default(), state, NOW)
    }

    #[test]
    fn a_live_family_rotates_with_its_grant() {
        let next = rotate(&family(&["openid", "profile"]), "portal", None, ALIVE).unwrap();
        assert_eq!(
            next,
            Rotation { grant: grant(&["openid", "profile"]), offline: false, family_expires_at: FAMILY_END }
        );
    }

    #[test]
    fn a_refresh_token_from_another_client_is_refused_and_its_family_revoked() {
        let refusal = rotate(&family(&["openid"]), "docs", None, ALIVE).unwrap_err();
        assert_eq!(refusal.revoke, Some(UsedMarker { grant_id: "g1".into(), family_end: Some(FAMILY_END) }));
        assert!(matches!(refusal.error, TokenError::InvalidGrant(d) if d.contains("another client")));
    }

    #[test]
    fn a_revoked_family_is_refused_even_offline() {
        let revoked = FamilyState { revoked: true, session_alive: true };
        let offline = RefreshRecord { offline: true, ..family(&["openid"]) };
        for record in [family(&["openid"]), offline] {
            let description = invalid_grant(rotate(&record, "portal", None, revoked).map(|_| ()), None);
            assert!(description.contains("revoked"));
        }
    }

    #[test]
    fn an_online_family_ends_with_its_session_and_an_offline_one_does_not() {
        let ended = FamilyState { revoked: false, session_alive: false };
        let description =
            invalid_grant(rotate(&family(&["openid"]), "portal", None, ended).map(|_| ()), Some("g1"));
        assert!(description.contains("session has ended"));
        // Offline by its scope, or by its flag once a refresh narrowed the scope.
        let by_scope = family(&["openid", "offline_access"]);
        let by_flag = RefreshRecord { offline: true, ..family(&["openid"]) };
        for record in [by_scope, by_flag] {
            assert!(rotate(&record, "portal", None, ended).unwrap().offline);
        }
    }

    #[test]
    fn a_refresh_may_narrow_the_scope_but_not_widen_it() {
        let record = family(&["openid", "profile", "offline_access"]);
        let next = rotate(&record, "portal", Some("openid"), ALIVE).unwrap();
        assert_eq!(next.grant.scopes, vec!["openid".to_string()]);
        assert!(next.offline, "a narrowed offline family stays offline");
        let refusal = rotate(&record, "portal", Some("openid email"), ALIVE).unwrap_err();
        assert!(matches!(refusal.error, TokenError::InvalidScope(d) if d.contains("email")));
        assert_eq!(refusal.revoke, None);
    }

    #[test]
    fn an_ended_family_is_refused() {
        let record = family(&["openid"]);
        let at = |now| rotation(&record, &client("portal"), None, Holder::default(), ALIVE, now).map(|_| ());
        assert!(at(FAMILY_END - 1).is_ok());
        assert!(invalid_grant(at(FAMILY_END), None).contains("expired"));
    }

    #[test]
    fn a_bound_family_rotates_only_for_the_holder_of_its_key_or_certificate() {
        let by_key = RefreshRecord { jkt: Some("key-a".into()), ..family(&["openid"]) };
        let by_cert = RefreshRecord { x5t_s256: Some("cert-a".into()), ..family(&["openid"]) };
        let try_with = |record: &RefreshRecord, jkt, x5t_s256| {
            let holder = Holder { jkt, x5t_s256, cnf: None };
            rotation(record, &client("portal"), None, holder, ALIVE, NOW).map(|_| ())
        };
        assert!(try_with(&by_key, Some("key-a"), None).is_ok());
        assert!(invalid_grant(try_with(&by_key, Some("key-b"), None), None).contains("DPoP key"));
        assert!(invalid_grant(try_with(&by_key, None, Some("cert-a")), None).contains("DPoP key"));
        assert!(try_with(&by_cert, None, Some("cert-a")).is_ok());
        assert!(invalid_grant(try_with(&by_cert, None, Some("cert-b")), None).contains("TLS certificate"));
        assert!(invalid_grant(try_with(&by_cert, Some("cert-a"), None), None).contains("TLS certificate"));
    }

    #[test]
    fn tokens_bind_to_the_proof_the_certificate_or_nothing() {
        let portal = client("portal");
        assert_eq!(binding(&portal, false, None, None).unwrap(), None);
        assert_eq!(
            binding(&portal, false, Some("cert"), Some("key")).unwrap(),
            Some(Confirmation::Dpop { jkt: "key".into() })
        );
        assert_eq!(
            binding(&portal, true, Some("cert"), None).unwrap(),
            Some(Confirmation::Certificate { x5t_s256: "cert".into() })
        );
        assert!(matches!(binding(&portal, true, None, None), Err(TokenError::InvalidRequest(_))));
    }

    #[test]
    fn a_client_that_must_prove_a_key_or_bind_to_its_certificate_is_held_to_it() {
        let spa = client("spa");
        assert!(matches!(binding(&spa, false, None, None), Err(TokenError::InvalidDpopProof(_))));
        assert!(binding(&spa, false, None, Some("key")).is_ok());
        let bank = client("bank");
        assert!(matches!(
            binding(&bank, false, Some("cert"), Some("key")),
            Err(TokenError::InvalidRequest(_))
        ));
        assert!(matches!(binding(&bank, false, None, None), Err(TokenError::InvalidRequest(_))));
        assert_eq!(
            binding(&bank, false, Some("cert"), None).unwrap(),
            Some(Confirmation::Certificate { x5t_s256: "cert".into() })
        );
    }
}
