//! Subject identifiers for relying parties: public (the account's `sub`, the same for every
//! client) or pairwise (OIDC Core §8.1: different per sector, so RPs of different sectors
//! cannot correlate a person).
//!
//! A pairwise `sub` is `base64url(HMAC-SHA256(salt, "sso-gateway/pairwise/v1" ‖ 0 ‖ sector ‖ 0 ‖
//! account id))`: stable for a sector and an account, not reversible without the server-side
//! salt, and not linkable across sectors. Changing the salt changes every pairwise `sub`, so
//! it is set once per deployment. Each issued pairwise `sub` is recorded (sector, sub → account)
//! so `/userinfo` and introspection can resolve it without reversing anything.

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use sqlx::Row;

use super::AccountError;
use super::model::{Account, AccountStatus};
use super::store::{AccountStore, follow_merges, load_account};

/// Computes the pairwise `sub` of an account for a sector.
pub fn pairwise_sub(salt: &[u8], sector: &str, account_id: &str) -> String {
    // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
    let mut mac = match Hmac::<Sha256>::new_from_slice(salt) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(b"sso-gateway/pairwise/v1\0");
    mac.update(sector.as_bytes());
    mac.update(b"\0");
    mac.update(account_id.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

/// How a `sub` presented by a relying party resolved.
#[derive(Debug, Clone)]
pub struct SubjectResolution {
    /// The surviving account (after following merges).
    pub account: Account,
    /// Set when the `sub` belongs to an account that was merged: its id.
    pub merged_from: Option<String>,
}

impl AccountStore {
    /// The pairwise `sub` of `account` for `sector`, recorded so it can be resolved later.
    pub async fn pairwise_subject(
        &self,
        account: &Account,
        sector: &str,
        salt: &[u8],
        now: i64,
    ) -> Result<String, AccountError> {
        let sub = pairwise_sub(salt, sector, &account.id);
        if sub.is_empty() {
            return Err(AccountError::Corrupt("pairwise subject could not be computed".into()));
        }
        let known = sqlx::query("SELECT account_id FROM pairwise_subjects WHERE sub = $1")
            .bind(&sub)
            .fetch_optional(&self.pool)
            .await?;
        if known.is_none() {
            sqlx::query(
                "INSERT INTO pairwise_subjects (sub, sector, account_id, created_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (sub) DO NOTHING",
            )
            .bind(&sub)
            .bind(sector)
            .bind(&account.id)
            .bind(now)
            .execute(&self.pool)
            .await?;
        }
        Ok(sub)
    }

    /// Resolves a `sub` a relying party holds: a public `sub` (when `sector` is `None`) or a
    /// pairwise one of that sector. A `sub` of a merged account resolves to the survivor, with
    /// `merged_from` set.
    pub async fn resolve_subject(
        &self,
        sub: &str,
        sector: Option<&str>,
    ) -> Result<Option<SubjectResolution>, AccountError> {
        let mut conn = self.pool.acquire().await?;
        let row = match sector {
            None => {
                sqlx::query("SELECT id AS account_id FROM accounts WHERE sub = $1")
                    .bind(sub)
                    .fetch_optional(&mut *conn)
                    .await?
            }
            Some(sector) => {
                sqlx::query("SELECT account_id FROM pairwise_subjects WHERE sub = $1 AND sector = $2")
                    .bind(sub)
                    .bind(sector)
                    .fetch_optional(&mut *conn)
                    .await?
            }
        };
        let Some(row) = row else { return Ok(None) };
        let id: String = row.try_get("account_id")?;
        let surviving = follow_merges(&mut conn, &id).await?;
        let Some(account) = load_account(&mut conn, &surviving).await? else { return Ok(None) };
        if matches!(account.status, AccountStatus::MergedInto(_)) {
            return Err(AccountError::Corrupt(format!(
                "account {surviving} is merged but ends a merge chain"
            )));
        }
        Ok(Some(SubjectResolution { merged_from: (surviving != id).then_some(id), account }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairwise_subs_are_stable_per_sector_and_differ_across_sectors_and_salts() {
        let a = pairwise_sub(b"salt-one-0123456789abcdef0123456", "portal.example", "acc-1");
        assert_eq!(a, pairwise_sub(b"salt-one-0123456789abcdef0123456", "portal.example", "acc-1"));
        assert_ne!(a, pairwise_sub(b"salt-one-0123456789abcdef0123456", "docs.example", "acc-1"));
        assert_ne!(a, pairwise_sub(b"salt-one-0123456789abcdef0123456", "portal.example", "acc-2"));
        assert_ne!(a, pairwise_sub(b"salt-two-0123456789abcdef0123456", "portal.example", "acc-1"));
        assert_eq!(a.len(), 43, "256-bit MAC, base64url without padding");
        assert!(!a.contains("acc-1"));
        // The separator keeps ("ab", "c") and ("a", "bc") apart.
        assert_ne!(pairwise_sub(b"s", "ab", "c"), pairwise_sub(b"s", "a", "bc"));
    }
}
