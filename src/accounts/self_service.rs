//! What a person may change on their own account (the "My account" pages call these; the
//! account store knows nothing of the pages): unlinking one of their identities, never the
//! last one, with the audit line written in the same transaction.

use serde_json::{Value, json};
use sqlx::Row;

use super::AccountError;
use super::admin::audit_in;
use super::store::{AccountStore, Dialect};

/// What an unlink by the account holder did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SelfUnlink {
    /// The link is gone (and the audit line written).
    Unlinked,
    /// The identity is not linked to this account (any more): nothing changed.
    NotLinked,
    /// It is the account's only link: refused, nothing changed.
    LastLink,
}

impl AccountStore {
    /// The holder of `account_id` removes the link of `upstream`/`subject` from it. Refused for
    /// the account's last link (the account would be unreachable). The check and the delete
    /// run in one write transaction that first locks the account row, so two unlinks at the
    /// same moment (on one replica or two) can never remove the last two links. `by` says who
    /// asked (the session), for the audit line `self-unlink`.
    pub async fn unlink_own(
        &self,
        account_id: &str,
        upstream: &str,
        subject: &str,
        by: &Value,
        now: i64,
    ) -> Result<SelfUnlink, AccountError> {
        let mut tx = self.begin_write().await?;
        if self.dialect() == Dialect::Postgres {
            // SQLite's BEGIN IMMEDIATE already serialises writers.
            sqlx::query("SELECT id FROM accounts WHERE id = $1 FOR UPDATE")
                .bind(account_id)
                .execute(&mut *tx)
                .await?;
        }
        let rows = sqlx::query("SELECT upstream, subject FROM identity_links WHERE account_id = $1")
            .bind(account_id)
            .fetch_all(&mut *tx)
            .await?;
        let mut found = false;
        for r in &rows {
            let (u, s): (String, String) = (r.try_get("upstream")?, r.try_get("subject")?);
            found |= u == upstream && s == subject;
        }
        if !found {
            return Ok(SelfUnlink::NotLinked);
        }
        if rows.len() <= 1 {
            return Ok(SelfUnlink::LastLink);
        }
        sqlx::query("DELETE FROM identity_links WHERE upstream = $1 AND subject = $2 AND account_id = $3")
            .bind(upstream)
            .bind(subject)
            .bind(account_id)
            .execute(&mut *tx)
            .await?;
        let detail = json!({ "upstream": upstream, "subject": subject, "by": by });
        audit_in(
            &mut tx,
            "self-service",
            "self-unlink",
            account_id,
            Some("the account holder unlinked this identity on the account page"),
            &detail,
            now,
        )
        .await?;
        self.commit_write(tx).await?;
        Ok(SelfUnlink::Unlinked)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{Backend, TestDb};
    use super::*;
    use crate::accounts::{LinkPolicy, Profile};

    const TRUSTED: LinkPolicy = LinkPolicy { trust_national_id: true };

    fn lan() -> Profile {
        Profile {
            name: Some("Nguyễn Thị Lan".into()),
            national_id: Some("079190004512".into()),
            birthdate: Some("1990-03-14".into()),
            ..Profile::default()
        }
    }

    /// An account with links from hcm and bd (same verified number).
    async fn two_links(s: &AccountStore) -> String {
        let a = s.resolve_login("hcm", "h-1", &lan(), TRUSTED, 1).await.unwrap().account.id;
        let b = s.resolve_login("bd", "b-1", &lan(), TRUSTED, 2).await.unwrap().account.id;
        assert_eq!(a, b);
        a
    }

    async fn one_of_several_links_is_removed_and_audited_but_never_the_last(b: Backend) {
        let db = TestDb::open(b).await;
        let s = &db.store;
        let id = two_links(s).await;
        let by = json!({ "sid": "s" });
        assert_eq!(s.unlink_own(&id, "bd", "b-1", &by, 10).await.unwrap(), SelfUnlink::Unlinked);
        assert_eq!(s.unlink_own(&id, "bd", "b-1", &by, 11).await.unwrap(), SelfUnlink::NotLinked, "replayed");
        assert_eq!(s.unlink_own(&id, "hcm", "h-1", &by, 12).await.unwrap(), SelfUnlink::LastLink);
        let links = s.links_of(&id).await.unwrap();
        assert_eq!(links.len(), 1);
        assert_eq!(links[0].upstream, "hcm");
        let audit = s.audit_log(Some(&id), 10).await.unwrap();
        assert_eq!(audit.iter().map(|a| a.action.as_str()).collect::<Vec<_>>(), vec!["self-unlink"]);
        assert!(audit[0].detail.contains("\"b-1\"") && audit[0].detail.contains("\"sid\""), "{audit:?}");
        db.finish().await;
    }

    async fn another_accounts_link_is_not_touched(b: Backend) {
        let db = TestDb::open(b).await;
        let s = &db.store;
        let id = two_links(s).await;
        let other =
            s.resolve_login("hcm", "someone", &Profile::default(), TRUSTED, 3).await.unwrap().account.id;
        let by = json!({});
        assert_eq!(s.unlink_own(&other, "bd", "b-1", &by, 10).await.unwrap(), SelfUnlink::NotLinked);
        assert_eq!(s.links_of(&id).await.unwrap().len(), 2);
        db.finish().await;
    }

    async fn two_unlinks_at_once_never_remove_the_last_link(b: Backend) {
        let db = TestDb::open(b).await;
        let s = &db.store;
        for round in 0..5 {
            let subject = format!("h-{round}");
            let profile = Profile { national_id: Some(format!("07919000{round:04}")), ..lan() };
            let id = s.resolve_login("hcm", &subject, &profile, TRUSTED, 1).await.unwrap().account.id;
            s.resolve_login("bd", &subject, &profile, TRUSTED, 2).await.unwrap();
            let by = json!({});
            let (x, y) = tokio::join!(
                s.unlink_own(&id, "hcm", &subject, &by, 3),
                s.unlink_own(&id, "bd", &subject, &by, 3)
            );
            let outcomes = [x.unwrap(), y.unwrap()];
            assert!(
                outcomes.contains(&SelfUnlink::Unlinked) && outcomes.contains(&SelfUnlink::LastLink),
                "{outcomes:?}"
            );
            assert_eq!(s.links_of(&id).await.unwrap().len(), 1);
        }
        db.finish().await;
    }

    macro_rules! on_both {
        ($($name:ident),*) => {
            mod sqlite { $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() { super::$name(super::Backend::Sqlite).await; }
            )* }
            mod postgres { $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() { super::$name(super::Backend::Postgres).await; }
            )* }
        };
    }

    on_both!(
        one_of_several_links_is_removed_and_audited_but_never_the_last,
        another_accounts_link_is_not_touched,
        two_unlinks_at_once_never_remove_the_last_link
    );
}
