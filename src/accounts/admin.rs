//! Administrative operations on accounts: find by sub / national ID / upstream identity,
//! merge, link, unlink, lock, unlock, re-key, unit decisions, review lists, and the
//! append-only audit log every operation writes (who, when, what, why).

use serde_json::{Value, json};
use sqlx::AnyConnection;
use sqlx::Row;

use super::AccountError;
use super::linking::load_raw;
use super::model::{
    Account, AccountStatus, AuditRecord, ConflictRecord, LinkMethod, OrgUnitState, WarningRecord,
};
use super::national_id::NationalId;
use super::store::{AccountStore, follow_merges, holder_of, linked_account_id};

/// How an admin names an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountSelector {
    Id(String),
    Sub(String),
    /// Current verified number, or one from its re-key history.
    NationalId(String),
    Upstream {
        upstream: String,
        subject: String,
    },
}

impl std::fmt::Display for AccountSelector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AccountSelector::Id(id) => write!(f, "account id {id}"),
            AccountSelector::Sub(s) => write!(f, "sub {s}"),
            AccountSelector::NationalId(n) => match NationalId::parse(n) {
                Ok(n) => write!(f, "national ID {}", n.masked()),
                Err(_) => write!(f, "national ID (invalid)"),
            },
            AccountSelector::Upstream { upstream, subject } => {
                write!(f, "upstream identity {upstream}/{subject}")
            }
        }
    }
}

impl AccountStore {
    /// The account a selector names, as stored (a merged account is returned as merged).
    pub async fn find(&self, selector: &AccountSelector) -> Result<Option<Account>, AccountError> {
        match selector {
            AccountSelector::Id(id) => self.find_by_id(id).await,
            AccountSelector::Sub(sub) => self.find_by_sub(sub).await,
            AccountSelector::NationalId(n) => self.find_by_national_id(n).await,
            AccountSelector::Upstream { upstream, subject } => self.find_by_link(upstream, subject).await,
        }
    }

    async fn require(&self, selector: &AccountSelector) -> Result<Account, AccountError> {
        self.find(selector).await?.ok_or_else(|| AccountError::NotFound(selector.to_string()))
    }

    /// Appends one line to the audit log.
    pub async fn audit(
        &self,
        actor: &str,
        action: &str,
        target: &str,
        reason: Option<&str>,
        detail: &Value,
        now: i64,
    ) -> Result<(), AccountError> {
        let mut conn = self.pool.acquire().await?;
        audit_in(&mut conn, actor, action, target, reason, detail, now).await
    }

    /// Merges `loser` into `winner`: links, history, aliases (and the official profile when
    /// the winner has none) move; the loser stays as `merged-into` so its `sub` still resolves.
    pub async fn merge(
        &self,
        loser: &AccountSelector,
        winner: &AccountSelector,
        actor: &str,
        reason: &str,
        now: i64,
    ) -> Result<Account, AccountError> {
        let l = self.require(loser).await?;
        let w = self.require(winner).await?;
        let mut tx = self.begin_write().await?;
        merge_in(&mut tx, &l.id, &w.id, None, now).await?;
        audit_in(&mut tx, actor, "merge", &w.id, Some(reason), &json!({ "merged": l.id, "into": w.id }), now)
            .await?;
        self.commit_write(tx).await?;
        self.require(&AccountSelector::Id(w.id)).await
    }

    /// Links an upstream identity to an account (moving it if it was linked elsewhere).
    pub async fn link(
        &self,
        upstream: &str,
        subject: &str,
        to: &AccountSelector,
        actor: &str,
        reason: &str,
        now: i64,
    ) -> Result<(), AccountError> {
        let target = self.require(to).await?;
        if matches!(target.status, AccountStatus::MergedInto(_)) {
            return Err(AccountError::Refused(format!(
                "account {} was merged; link to the surviving account",
                target.id
            )));
        }
        let mut tx = self.begin_write().await?;
        let previous = linked_account_id(&mut tx, upstream, subject).await?;
        if previous.as_deref() == Some(target.id.as_str()) {
            return Err(AccountError::Refused("the identity is already linked to that account".into()));
        }
        if previous.is_some() {
            sqlx::query(
                "UPDATE identity_links SET account_id = $1, link_method = $2, linked_at = $3 WHERE upstream = $4 AND subject = $5",
            )
            .bind(&target.id)
            .bind(LinkMethod::Admin.as_str())
            .bind(now)
            .bind(upstream)
            .bind(subject)
            .execute(&mut *tx)
            .await?;
        } else {
            sqlx::query(
                "INSERT INTO identity_links (upstream, subject, account_id, link_method, linked_at, last_login_at) \
                 VALUES ($1, $2, $3, $4, $5, 0)",
            )
            .bind(upstream)
            .bind(subject)
            .bind(&target.id)
            .bind(LinkMethod::Admin.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        let detail = json!({ "upstream": upstream, "subject": subject, "previous_account": previous });
        audit_in(&mut tx, actor, "link", &target.id, Some(reason), &detail, now).await?;
        self.commit_write(tx).await?;
        Ok(())
    }

    /// Removes an upstream identity's link; its next login is resolved by the linking rules.
    pub async fn unlink(
        &self,
        upstream: &str,
        subject: &str,
        actor: &str,
        reason: &str,
        now: i64,
    ) -> Result<(), AccountError> {
        let mut tx = self.begin_write().await?;
        let Some(account) = linked_account_id(&mut tx, upstream, subject).await? else {
            return Err(AccountError::NotFound(format!("upstream identity {upstream}/{subject}")));
        };
        sqlx::query("DELETE FROM identity_links WHERE upstream = $1 AND subject = $2")
            .bind(upstream)
            .bind(subject)
            .execute(&mut *tx)
            .await?;
        audit_in(
            &mut tx,
            actor,
            "unlink",
            &account,
            Some(reason),
            &json!({ "upstream": upstream, "subject": subject }),
            now,
        )
        .await?;
        self.commit_write(tx).await?;
        Ok(())
    }

    /// Locks (no login, no tokens, no userinfo) or unlocks an account.
    pub async fn set_locked(
        &self,
        selector: &AccountSelector,
        locked: bool,
        actor: &str,
        reason: Option<&str>,
        now: i64,
    ) -> Result<Account, AccountError> {
        let a = self.require(selector).await?;
        let (from, to) = if locked { ("active", "locked") } else { ("locked", "active") };
        let mut tx = self.begin_write().await?;
        let done =
            sqlx::query("UPDATE accounts SET status = $1, updated_at = $2 WHERE id = $3 AND status = $4")
                .bind(to)
                .bind(now)
                .bind(&a.id)
                .bind(from)
                .execute(&mut *tx)
                .await?;
        if done.rows_affected() == 0 {
            return Err(AccountError::Refused(format!("account {} is not {from}", a.id)));
        }
        audit_in(&mut tx, actor, if locked { "lock" } else { "unlock" }, &a.id, reason, &json!({}), now)
            .await?;
        self.commit_write(tx).await?;
        self.require(&AccountSelector::Id(a.id)).await
    }

    /// Re-keys an account to a new verified number (the police re-issued it); the old number
    /// stays in the account's history and still finds it. On an account without a verified
    /// number this records the number as verified (an admin checked it).
    pub async fn rekey(
        &self,
        selector: &AccountSelector,
        new_number: &str,
        actor: &str,
        reason: &str,
        now: i64,
    ) -> Result<Account, AccountError> {
        let new = NationalId::parse(new_number).map_err(|e| AccountError::Refused(e.to_string()))?;
        let a = self.require(selector).await?;
        if matches!(a.status, AccountStatus::MergedInto(_)) {
            return Err(AccountError::Refused(format!("account {} was merged", a.id)));
        }
        let mut tx = self.begin_write().await?;
        if let Some(holder) = holder_of(&mut tx, new.as_str()).await?
            && holder != a.id
        {
            return Err(AccountError::Refused(format!(
                "number {} belongs to account {holder}; merge the accounts instead",
                new.masked()
            )));
        }
        if a.national_id.as_deref() == Some(new.as_str()) {
            return Err(AccountError::Refused("the account already holds that number".into()));
        }
        // The new number may be in this account's own history (re-key undone).
        sqlx::query("DELETE FROM national_id_history WHERE national_id = $1 AND account_id = $2")
            .bind(new.as_str())
            .bind(&a.id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE accounts SET national_id = NULL WHERE id = $1")
            .bind(&a.id)
            .execute(&mut *tx)
            .await?;
        if let Some(old) = &a.national_id {
            sqlx::query(
                "INSERT INTO national_id_history (national_id, account_id, replaced_by, changed_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(old)
            .bind(&a.id)
            .bind(new.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        let clear_claim = a.claimed_national_id.as_deref() == Some(new.as_str());
        sqlx::query(
            "UPDATE accounts SET national_id = $1, updated_at = $2, \
             claimed_national_id = CASE WHEN $3 = 1 THEN NULL ELSE claimed_national_id END, \
             national_id_state = CASE WHEN $3 = 1 THEN NULL ELSE national_id_state END WHERE id = $4",
        )
        .bind(new.as_str())
        .bind(now)
        .bind(i64::from(clear_claim))
        .bind(&a.id)
        .execute(&mut *tx)
        .await?;
        let detail = json!({ "from": a.national_id.as_deref().and_then(|n| NationalId::parse(n).ok()).map(|n| n.masked()), "to": new.masked() });
        audit_in(&mut tx, actor, "rekey", &a.id, Some(reason), &detail, now).await?;
        self.commit_write(tx).await?;
        self.require(&AccountSelector::Id(a.id)).await
    }

    /// Decides an official's unit in the new structure (e.g. for a split former unit).
    pub async fn decide_unit(
        &self,
        selector: &AccountSelector,
        unit_code: &str,
        actor: &str,
        reason: &str,
        now: i64,
    ) -> Result<Account, AccountError> {
        let a = self.require(selector).await?;
        if a.official.is_none() {
            return Err(AccountError::Refused(format!("account {} has no official profile", a.id)));
        }
        let Some(unit) = self.new_unit(unit_code).await? else {
            return Err(AccountError::Refused(format!(
                "{unit_code} is not a unit of the active administrative structure"
            )));
        };
        let mut tx = self.begin_write().await?;
        sqlx::query("UPDATE official_profiles SET org_unit = $1, org_unit_state = $2, updated_at = $3 WHERE account_id = $4")
            .bind(&unit.code)
            .bind(OrgUnitState::Decided.as_str())
            .bind(now)
            .bind(&a.id)
            .execute(&mut *tx)
            .await?;
        audit_in(
            &mut tx,
            actor,
            "decide-unit",
            &a.id,
            Some(reason),
            &json!({ "unit": unit.code, "name": unit.name }),
            now,
        )
        .await?;
        self.commit_write(tx).await?;
        self.require(&AccountSelector::Id(a.id)).await
    }

    /// Marks a conflict as reviewed without merging (e.g. two different people).
    pub async fn resolve_conflict(
        &self,
        id: i64,
        resolution: &str,
        actor: &str,
        reason: &str,
        now: i64,
    ) -> Result<(), AccountError> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "UPDATE link_conflicts SET resolved_at = $1, resolution = $2 WHERE id = $3 AND resolved_at IS NULL",
        )
        .bind(now)
        .bind(resolution)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(AccountError::NotFound(format!("open conflict {id}")));
        }
        audit_in(
            &mut tx,
            actor,
            "resolve-conflict",
            &format!("conflict:{id}"),
            Some(reason),
            &json!({ "resolution": resolution }),
            now,
        )
        .await?;
        self.commit_write(tx).await?;
        Ok(())
    }

    /// Recorded structural warnings, newest first.
    pub async fn warnings(&self, code: Option<&str>, limit: i64) -> Result<Vec<WarningRecord>, AccountError> {
        let rows = sqlx::query(
            "SELECT account_id, source, code, national_id, detail, created_at FROM national_id_warnings \
             WHERE ($1 = '' OR code = $1) ORDER BY created_at DESC, account_id LIMIT $2",
        )
        .bind(code.unwrap_or(""))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(warning_from_row).collect::<Result<_, sqlx::Error>>().map_err(AccountError::from)
    }

    /// Warnings recorded for one account.
    pub async fn warnings_of(&self, account_id: &str) -> Result<Vec<WarningRecord>, AccountError> {
        let all = sqlx::query(
            "SELECT account_id, source, code, national_id, detail, created_at FROM national_id_warnings \
             WHERE account_id = $1 ORDER BY created_at, code",
        )
        .bind(account_id)
        .fetch_all(&self.pool)
        .await?;
        all.iter().map(warning_from_row).collect::<Result<_, sqlx::Error>>().map_err(AccountError::from)
    }

    /// Linking conflicts, oldest first (open ones only unless `include_resolved`).
    pub async fn conflicts(&self, include_resolved: bool) -> Result<Vec<ConflictRecord>, AccountError> {
        let rows = sqlx::query(
            "SELECT id, national_id, existing_account_id, new_account_id, upstream, subject, reason, detail, \
             created_at, resolved_at, resolution FROM link_conflicts WHERE ($1 = 1 OR resolved_at IS NULL) ORDER BY id",
        )
        .bind(i64::from(include_resolved))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(super::lists::conflict_from_row)
            .collect::<Result<_, sqlx::Error>>()
            .map_err(AccountError::from)
    }

    /// Pending accounts (number from an untrusted upstream) whose number is now held verified by
    /// another account: `(pending account id, verified account id, number)`. Candidates for an
    /// admin merge (or for the person's proof of ownership).
    pub async fn pending_link_candidates(
        &self,
        limit: i64,
    ) -> Result<Vec<(String, String, String)>, AccountError> {
        let rows = sqlx::query(
            "SELECT p.id AS pending_id, v.id AS verified_id, p.claimed_national_id AS number \
             FROM accounts p JOIN accounts v ON v.national_id = p.claimed_national_id \
             WHERE p.national_id_state = 'pending' AND p.status = 'active' ORDER BY p.created_at, p.id LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("pending_id")?, r.try_get("verified_id")?, r.try_get("number")?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(AccountError::from)
    }

    /// Audit lines, newest first (by time, then id), optionally for one target: the audit
    /// list's own query (`lists::audit_sql`), so a target's lines are one index range however
    /// long the log (the `$1 = '' OR target = $1` form this had walked the whole log).
    pub async fn audit_log(
        &self,
        target: Option<&str>,
        limit: i64,
    ) -> Result<Vec<AuditRecord>, AccountError> {
        let filter = super::lists::AuditFilter { target: target.map(str::to_string), ..Default::default() };
        let sql = super::lists::audit_sql(&filter, false);
        let mut query = sqlx::query(&sql);
        if let Some(target) = target {
            query = query.bind(target);
        }
        let rows = query.bind(limit.max(0)).fetch_all(&self.pool).await?;
        rows.iter().map(audit_record).collect::<Result<_, sqlx::Error>>().map_err(AccountError::from)
    }

    /// Aliases (CMND, passport numbers) of an account: `(kind, value, source)`.
    pub async fn aliases_of(&self, account_id: &str) -> Result<Vec<(String, String, String)>, AccountError> {
        let rows = sqlx::query(
            "SELECT kind, value, source FROM account_aliases WHERE account_id = $1 ORDER BY kind, value",
        )
        .bind(account_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("kind")?, r.try_get("value")?, r.try_get("source")?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(AccountError::from)
    }

    /// Former numbers of an account: `(number, replaced_by, changed_at)`.
    pub async fn number_history(&self, account_id: &str) -> Result<Vec<(String, String, i64)>, AccountError> {
        let rows = sqlx::query(
            "SELECT national_id, replaced_by, changed_at FROM national_id_history WHERE account_id = $1 ORDER BY changed_at",
        )
        .bind(account_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("national_id")?, r.try_get("replaced_by")?, r.try_get("changed_at")?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(AccountError::from)
    }
}

pub(super) async fn audit_in(
    conn: &mut AnyConnection,
    actor: &str,
    action: &str,
    target: &str,
    reason: Option<&str>,
    detail: &Value,
    now: i64,
) -> Result<(), AccountError> {
    sqlx::query(
        "INSERT INTO audit_log (at, actor, action, target, reason, detail) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(now)
    .bind(actor)
    .bind(action)
    .bind(target)
    .bind(reason)
    .bind(detail.to_string())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Merges `loser` into `winner` inside a transaction. `method` relabels the moved links.
pub(super) async fn merge_in(
    conn: &mut AnyConnection,
    loser: &str,
    winner: &str,
    method: Option<LinkMethod>,
    now: i64,
) -> Result<(), AccountError> {
    let loser = follow_merges(conn, loser).await?;
    let winner = follow_merges(conn, winner).await?;
    if loser == winner {
        return Err(AccountError::Refused("the two selections are the same account".into()));
    }
    let l =
        load_raw(conn, &loser).await?.ok_or_else(|| AccountError::NotFound(format!("account {loser}")))?;
    let w =
        load_raw(conn, &winner).await?.ok_or_else(|| AccountError::NotFound(format!("account {winner}")))?;
    if let (Some(a), Some(b)) = (&l.national_id, &w.national_id)
        && a != b
    {
        return Err(AccountError::Refused(
            "the accounts hold different verified national ID numbers; re-key one of them first".into(),
        ));
    }
    match method {
        Some(m) => {
            sqlx::query("UPDATE identity_links SET account_id = $1, link_method = $2 WHERE account_id = $3")
                .bind(&winner)
                .bind(m.as_str())
                .bind(&loser)
                .execute(&mut *conn)
                .await?
        }
        None => {
            sqlx::query("UPDATE identity_links SET account_id = $1 WHERE account_id = $2")
                .bind(&winner)
                .bind(&loser)
                .execute(&mut *conn)
                .await?
        }
    };
    sqlx::query("UPDATE accounts SET merged_into = $1 WHERE merged_into = $2 AND status = 'merged'")
        .bind(&winner)
        .bind(&loser)
        .execute(&mut *conn)
        .await?;
    if let (Some(number), None) = (&l.national_id, &w.national_id) {
        sqlx::query("UPDATE accounts SET national_id = NULL WHERE id = $1")
            .bind(&loser)
            .execute(&mut *conn)
            .await?;
        sqlx::query(
            "UPDATE accounts SET national_id = $1, claimed_national_id = NULL, national_id_state = NULL WHERE id = $2",
        )
        .bind(number)
        .bind(&winner)
        .execute(&mut *conn)
        .await?;
    }
    sqlx::query("UPDATE national_id_history SET account_id = $1 WHERE account_id = $2")
        .bind(&winner)
        .bind(&loser)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "INSERT INTO account_aliases (account_id, kind, value, source, created_at) \
         SELECT $1, kind, value, source, created_at FROM account_aliases WHERE account_id = $2 \
         ON CONFLICT (account_id, kind, value) DO NOTHING",
    )
    .bind(&winner)
    .bind(&loser)
    .execute(&mut *conn)
    .await?;
    if w.official.is_none() && l.official.is_some() {
        sqlx::query("UPDATE official_profiles SET account_id = $1 WHERE account_id = $2")
            .bind(&winner)
            .bind(&loser)
            .execute(&mut *conn)
            .await?;
        sqlx::query("UPDATE accounts SET kind = 'official' WHERE id = $1")
            .bind(&winner)
            .execute(&mut *conn)
            .await?;
    }
    let number = w.national_id.as_ref().or(l.national_id.as_ref());
    if w.claim_state.is_some() && number.is_some() && w.claimed_national_id.as_ref() == number {
        sqlx::query("UPDATE accounts SET claimed_national_id = NULL, national_id_state = NULL WHERE id = $1")
            .bind(&winner)
            .execute(&mut *conn)
            .await?;
    }
    sqlx::query(
        "UPDATE accounts SET status = 'merged', merged_into = $1, claimed_national_id = NULL, national_id_state = NULL, \
         updated_at = $2 WHERE id = $3",
    )
    .bind(&winner)
    .bind(now)
    .bind(&loser)
    .execute(&mut *conn)
    .await?;
    sqlx::query("UPDATE accounts SET updated_at = $1 WHERE id = $2")
        .bind(now)
        .bind(&winner)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "UPDATE link_conflicts SET resolved_at = $1, resolution = 'merged' WHERE resolved_at IS NULL AND \
         ((existing_account_id = $2 AND new_account_id = $3) OR (existing_account_id = $3 AND new_account_id = $2))",
    )
    .bind(now)
    .bind(&winner)
    .bind(&loser)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// One row of `national_id_warnings`.
pub(super) fn warning_from_row(r: &sqlx::any::AnyRow) -> Result<WarningRecord, sqlx::Error> {
    Ok(WarningRecord {
        account_id: r.try_get("account_id")?,
        source: r.try_get("source")?,
        code: r.try_get("code")?,
        national_id: r.try_get("national_id")?,
        detail: r.try_get("detail")?,
        created_at: r.try_get("created_at")?,
    })
}

/// One row of `audit_log` (`id, at, actor, action, target, reason, detail`).
pub(super) fn audit_record(r: &sqlx::any::AnyRow) -> Result<AuditRecord, sqlx::Error> {
    Ok(AuditRecord {
        id: r.try_get("id")?,
        at: r.try_get("at")?,
        actor: r.try_get("actor")?,
        action: r.try_get("action")?,
        target: r.try_get("target")?,
        reason: r.try_get("reason")?,
        detail: r.try_get("detail")?,
    })
}
