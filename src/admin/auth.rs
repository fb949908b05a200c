//! Who is calling the admin API: a bearer access token of this gateway, verified like
//! `/userinfo` verifies one (signature, issuer, audience, expiry through the verified-token
//! cache, then the revocation markers), carrying the configured admin scope. A
//! `client_credentials` token acts as its client (automation); a person's token acts as the
//! person, who must hold the configured role and have logged in at the configured `acr`.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::error::AdminError;
use crate::accounts::{Account, AccountStatus};
use crate::admin::AdminState;
use crate::config::{AdminSettings, AssuranceSettings};
use crate::provider::minting::AccessClaims;

/// The caller of an admin operation, as written into the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admin {
    /// `client:<client_id>` or `account:<account id>`.
    pub actor: String,
}

impl FromRequestParts<AdminState> for Admin {
    type Rejection = AdminError;

    async fn from_request_parts(parts: &mut Parts, app: &AdminState) -> Result<Admin, AdminError> {
        let (token, dpop) = crate::provider::userinfo::presented(&parts.headers)?;
        if dpop {
            return Err(AdminError::InvalidToken("present the access token as Bearer".into()));
        }
        let claims = crate::provider::userinfo::verify_access_token(&app.provider, token).await?;
        if claims.cnf.is_some() {
            return Err(AdminError::InvalidToken(
                "DPoP-bound tokens are not accepted by the admin API".into(),
            ));
        }
        check_scope(&claims, &app.settings.admin)?;
        match &claims.sid {
            // client_credentials: no session, the client acts on its own behalf.
            None => Ok(Admin { actor: format!("client:{}", claims.client_id) }),
            Some(_) => person(app, &claims).await,
        }
    }
}

fn check_scope(claims: &AccessClaims, settings: &AdminSettings) -> Result<(), AdminError> {
    if claims.scope.split_whitespace().any(|s| s == settings.scope) {
        Ok(())
    } else {
        Err(AdminError::InsufficientScope { scope: settings.scope.clone() })
    }
}

/// A person's token: the account behind its `sub` (public or pairwise, after merges), not
/// locked, holding the role, at the level.
async fn person(app: &AdminState, claims: &AccessClaims) -> Result<Admin, AdminError> {
    let settings = &app.settings.admin;
    let sector = app.clients.get(claims.client_id.as_str()).and_then(|c| c.pairwise_sector.clone());
    let account = app
        .accounts
        .resolve_subject(&claims.sub, sector.as_deref())
        .await?
        .ok_or_else(|| AdminError::InvalidToken("the account no longer exists".into()))?
        .account;
    may_administer(&account, claims.acr.as_deref(), settings, &app.settings.assurance)?;
    Ok(Admin { actor: format!("account:{}", account.id) })
}

/// Whether a person may administer: the account is not locked, holds the configured role, and
/// the login (at `acr`) reaches the configured minimum. The API (a person's token) and the
/// console (a person's session) both ask this.
pub fn may_administer(
    account: &Account,
    acr: Option<&str>,
    settings: &AdminSettings,
    levels: &AssuranceSettings,
) -> Result<(), AdminError> {
    if account.status == AccountStatus::Locked {
        return Err(AdminError::InvalidToken("the account is locked".into()));
    }
    let has_role = account.official.as_ref().is_some_and(|o| o.roles.iter().any(|r| r == &settings.role));
    if !has_role {
        return Err(AdminError::NotAdmin(format!("the account does not hold the role {}", settings.role)));
    }
    if !acr_reaches(acr, settings, levels) {
        let min = settings.min_acr.clone().unwrap_or_default();
        return Err(AdminError::InsufficientAuthentication { acr: min });
    }
    Ok(())
}

/// Whether a login at `acr` reaches `[admin] min_acr` (always, when none is configured).
pub fn acr_reaches(acr: Option<&str>, settings: &AdminSettings, levels: &AssuranceSettings) -> bool {
    match &settings.min_acr {
        None => true,
        Some(min) => {
            let needed = levels.rank(min);
            let have = acr.and_then(|a| levels.rank(a));
            have >= needed
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn claims(scope: &str) -> AccessClaims {
        serde_json::from_value(serde_json::json!({
            "iss": "https://sso.example", "sub": "c", "aud": "https://sso.example", "exp": 2, "iat": 1,
            "jti": "j", "client_id": "c", "scope": scope
        }))
        .unwrap()
    }

    #[test]
    fn the_admin_scope_must_be_one_of_the_tokens_scopes_not_a_substring() {
        let s = AdminSettings::default();
        assert!(check_scope(&claims("read admin"), &s).is_ok());
        for scope in ["", "administrator", "read", "admin:read"] {
            assert_eq!(
                check_scope(&claims(scope), &s),
                Err(AdminError::InsufficientScope { scope: "admin".into() }),
                "{scope:?}"
            );
        }
    }
}
