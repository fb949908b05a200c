//! Minting the tokens RPs receive: ID tokens (OIDC Core §2), JWT access tokens (RFC 9068)
//! and opaque rotating refresh tokens, and the claims they carry (`Audience`, `cnf`).
//! Whether a token may be issued at all is decided elsewhere (`token_endpoint.rs`,
//! `authorize.rs`); this file must not decide it.

use std::time::Duration;

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::Digest;

use super::ProviderState;
use super::clients::Client;
use super::error::TokenError;
use super::scope_claims::account_claims;
use super::store_records::{RefreshRecord, UserGrant, refresh_key};
use crate::accounts::{Account, AccountStatus};
use crate::config::GrantType;
use crate::keys::SigningAlg;
use crate::state::random_handle;

/// `aud`: one audience as a string, several as an array (RFC 7519 §4.1.3).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    /// The issuer (for `/userinfo`) plus any resource servers the client's tokens are for.
    pub fn for_client(issuer: &str, client: &Client) -> Self {
        if client.audiences.is_empty() {
            Audience::One(issuer.to_string())
        } else {
            let mut all = vec![issuer.to_string()];
            all.extend(client.audiences.iter().cloned());
            Audience::Many(all)
        }
    }
    pub fn contains(&self, v: &str) -> bool {
        match self {
            Audience::One(a) => a == v,
            Audience::Many(all) => all.iter().any(|a| a == v),
        }
    }

    /// The first audience named (an ID token's is the client it was issued to).
    pub fn first(&self) -> Option<&str> {
        match self {
            Audience::One(a) => Some(a),
            Audience::Many(all) => all.first().map(String::as_str),
        }
    }
}

/// Claims of our JWT access tokens.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub sub: String,
    pub aud: Audience,
    pub exp: i64,
    pub iat: i64,
    pub jti: String,
    pub client_id: String,
    pub scope: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acr: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// Grant id: revoking a grant (code or refresh-token reuse) invalidates its tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<String>,
    /// The DPoP key (RFC 9449 §6.1) or TLS client certificate (RFC 8705 §3.1) the token is
    /// bound to: without a proof of it the token is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cnf: Option<Confirmation>,
}

/// `cnf` of a sender-constrained access token: exactly one confirmation method per token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum Confirmation {
    /// DPoP (RFC 9449 §6.1): the SHA-256 thumbprint of the client's DPoP key; the token is
    /// presented as `Authorization: DPoP` with a proof of that key.
    Dpop { jkt: String },
    /// Mutual TLS (RFC 8705 §3.1): the SHA-256 of the client's certificate; the token is
    /// presented as `Bearer` over a connection with that certificate.
    Certificate {
        #[serde(rename = "x5t#S256")]
        x5t_s256: String,
    },
}

impl Confirmation {
    /// `token_type` of a response carrying a token bound so: `DPoP` for a DPoP-bound token
    /// (RFC 9449 §5), `Bearer` otherwise (RFC 8705 keeps `Bearer`).
    pub fn token_type(cnf: Option<&Confirmation>) -> &'static str {
        match cnf {
            Some(Confirmation::Dpop { .. }) => "DPoP",
            _ => "Bearer",
        }
    }
}

/// How one token response is issued, besides the grant: the ID token's `nonce`, the refresh
/// family's end and whether it is offline, and the key or certificate (if any) the tokens
/// bind to.
#[derive(Debug, Clone, Copy, Default)]
pub struct Issue<'a> {
    pub nonce: Option<&'a str>,
    pub family_expires_at: Option<i64>,
    pub offline: bool,
    /// What the access token is bound to; a public client's refresh token is bound to it too
    /// (a confidential client's is bound to its authentication).
    pub cnf: Option<&'a Confirmation>,
}

#[derive(Debug, Serialize)]
struct IdClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    exp: i64,
    iat: i64,
    auth_time: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    nonce: Option<&'a str>,
    acr: &'a str,
    amr: &'a [String],
    idp: &'a str,
    sid: &'a str,
    azp: &'a str,
    at_hash: String,
    #[serde(flatten)]
    profile: Map<String, Value>,
}

/// The JSON body of a successful token response.
#[derive(Debug, Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    pub scope: String,
}

/// `at_hash`: left half of the access token's hash with the ID token's hash algorithm.
pub fn at_hash(alg: SigningAlg, access_token: &str) -> String {
    let digest: Vec<u8> = match alg {
        SigningAlg::RS256 | SigningAlg::ES256 => sha2::Sha256::digest(access_token.as_bytes()).to_vec(),
        SigningAlg::EdDSA => sha2::Sha512::digest(access_token.as_bytes()).to_vec(),
    };
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..digest.len() / 2])
}

/// Refuses tokens for accounts that may not log in.
pub fn ensure_usable(account: &Account) -> Result<(), TokenError> {
    match account.status {
        AccountStatus::Active => Ok(()),
        AccountStatus::Locked => Err(TokenError::InvalidGrant("the account is locked".into())),
        AccountStatus::MergedInto(_) => {
            Err(TokenError::InvalidGrant("the account was merged into another".into()))
        }
    }
}

/// Mints ID, access and (if the client may refresh) refresh tokens for a user grant.
pub async fn issue_user_tokens(
    app: &ProviderState,
    client: &Client,
    grant: &UserGrant,
    account: &Account,
    issue: Issue<'_>,
) -> Result<TokenResponse, TokenError> {
    let Issue { nonce, family_expires_at, offline, cnf } = issue;
    ensure_usable(account)?;
    let subject = super::scope_claims::subject_for(app, client, account).await?;
    let now = app.clock.now();
    let issuer = app.issuer();
    let scope = grant.scopes.join(" ");
    let access_lifetime = client.access_token_lifetime.as_secs() as i64;
    let access = AccessClaims {
        iss: issuer.to_string(),
        sub: subject.clone(),
        aud: Audience::for_client(issuer, client),
        exp: now + access_lifetime,
        iat: now,
        jti: random_handle(),
        client_id: client.client_id.to_string(),
        scope: scope.clone(),
        auth_time: Some(grant.auth_time),
        acr: Some(grant.acr.clone()),
        sid: Some(grant.sid.clone()),
        gid: Some(grant.grant_id.clone()),
        cnf: cnf.cloned(),
    };
    let access_token = app.keys.sign(client.alg, "at+jwt", &access)?;
    let id_claims = IdClaims {
        iss: issuer,
        sub: &subject,
        aud: client.client_id.as_str(),
        exp: now + app.settings.lifetimes.id_token.as_secs() as i64,
        iat: now,
        auth_time: grant.auth_time,
        nonce,
        acr: &grant.acr,
        amr: &grant.amr,
        idp: &grant.idp,
        sid: &grant.sid,
        azp: client.client_id.as_str(),
        at_hash: at_hash(client.alg, &access_token),
        profile: account_claims(account, &grant.scopes),
    };
    let id_token = app.keys.sign(client.alg, "JWT", &id_claims)?;

    let refresh_token = if client.allows_grant(GrantType::RefreshToken) {
        let family_end = family_expires_at.unwrap_or(now + client.refresh_token_lifetime.as_secs() as i64);
        let ttl = family_end - now;
        if ttl > 0 {
            let token = random_handle();
            let bound = cnf.filter(|_| client.is_public());
            let jkt = bound.and_then(|c| match c {
                Confirmation::Dpop { jkt } => Some(jkt.clone()),
                Confirmation::Certificate { .. } => None,
            });
            let x5t_s256 = bound.and_then(|c| match c {
                Confirmation::Certificate { x5t_s256 } => Some(x5t_s256.clone()),
                Confirmation::Dpop { .. } => None,
            });
            let record =
                RefreshRecord { grant: grant.clone(), family_expires_at: family_end, offline, jkt, x5t_s256 };
            app.store.put_json(&refresh_key(&token), &record, Duration::from_secs(ttl as u64)).await?;
            Some(token)
        } else {
            None
        }
    } else {
        None
    };
    Ok(TokenResponse {
        access_token,
        token_type: Confirmation::token_type(cnf),
        expires_in: access_lifetime as u64,
        id_token: Some(id_token),
        refresh_token,
        scope,
    })
}

/// Mints an access token for a client acting on its own behalf (`client_credentials`).
pub fn issue_client_token(
    app: &ProviderState,
    client: &Client,
    scopes: &[String],
) -> Result<TokenResponse, TokenError> {
    issue_bound_client_token(app, client, scopes, None)
}

/// [`issue_client_token`], bound to a DPoP key or a certificate when `cnf` is given.
pub fn issue_bound_client_token(
    app: &ProviderState,
    client: &Client,
    scopes: &[String],
    cnf: Option<&Confirmation>,
) -> Result<TokenResponse, TokenError> {
    let now = app.clock.now();
    let lifetime = client.access_token_lifetime.as_secs() as i64;
    let scope = scopes.join(" ");
    let claims = AccessClaims {
        iss: app.issuer().to_string(),
        sub: client.client_id.to_string(),
        aud: Audience::for_client(app.issuer(), client),
        exp: now + lifetime,
        iat: now,
        jti: random_handle(),
        client_id: client.client_id.to_string(),
        scope: scope.clone(),
        auth_time: None,
        acr: None,
        sid: None,
        gid: None,
        cnf: cnf.cloned(),
    };
    Ok(TokenResponse {
        access_token: app.keys.sign(client.alg, "at+jwt", &claims)?,
        token_type: Confirmation::token_type(cnf),
        expires_in: lifetime as u64,
        id_token: None,
        refresh_token: None,
        scope,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_confirmation_is_one_member_named_as_the_rfcs_name_it() {
        let dpop = Confirmation::Dpop { jkt: "k".into() };
        let cert = Confirmation::Certificate { x5t_s256: "c".into() };
        assert_eq!(serde_json::to_value(&dpop).unwrap(), serde_json::json!({ "jkt": "k" }));
        assert_eq!(serde_json::to_value(&cert).unwrap(), serde_json::json!({ "x5t#S256": "c" }));
        for cnf in [dpop, cert] {
            let back: Confirmation = serde_json::from_value(serde_json::to_value(&cnf).unwrap()).unwrap();
            assert_eq!(back, cnf);
        }
        assert_eq!(Confirmation::token_type(Some(&Confirmation::Dpop { jkt: "k".into() })), "DPoP");
        assert_eq!(
            Confirmation::token_type(Some(&Confirmation::Certificate { x5t_s256: "c".into() })),
            "Bearer"
        );
        assert_eq!(Confirmation::token_type(None), "Bearer");
    }

    #[test]
    fn at_hash_is_the_left_half_of_the_sha256_for_rs256() {
        // Left half of SHA-256 is 16 bytes; of SHA-512 (EdDSA) 32 bytes.
        let h = at_hash(SigningAlg::RS256, "token");
        assert_eq!(h.len(), 22); // 16 bytes base64url
        assert_eq!(h, at_hash(SigningAlg::ES256, "token"));
        assert_eq!(at_hash(SigningAlg::EdDSA, "token").len(), 43); // 32 bytes
    }
}
