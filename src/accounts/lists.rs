//! Paged review lists for administrators: linking conflicts, national-ID warnings and the
//! audit log. Each page is an index range after a keyset cursor (the last row's sort key),
//! never an OFFSET, so the thousandth page costs what the first does.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::AccountError;
use super::model::{AuditRecord, ConflictRecord, WarningRecord};
use super::search::MAX_PAGE;
use super::store::AccountStore;

/// Filters of the warnings list (all optional, combined with AND).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WarningFilter {
    /// Warning code (e.g. `birth_year_mismatch`).
    pub code: Option<String>,
    /// Where the number came from (an upstream id or an import source).
    pub source: Option<String>,
    pub account_id: Option<String>,
    /// Recorded at or after this time (Unix seconds).
    pub since: Option<i64>,
}

/// Filters of the audit list (all optional, combined with AND). Each is served by an index
/// that also holds the list's order (`at`, `id`), so a page costs an index range whatever the
/// log's size.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// What the line is about: an account id, `conflict:<id>`, `client:<id>`, …
    pub target: Option<String>,
    /// Who: `account:<id>`, `client:<id>`, `self-service`, an operator's login name.
    pub actor: Option<String>,
    pub action: Option<String>,
    /// Written at or after this time (Unix seconds).
    pub since: Option<i64>,
    /// Written before this time (Unix seconds).
    pub until: Option<i64>,
}

/// A page of rows and the cursor of the next page (None: the last page).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

fn bad_cursor() -> AccountError {
    AccountError::Invalid("the cursor is not one this list returned".into())
}

/// Numeric cursors (conflict and audit ids).
fn id_cursor(cursor: Option<&str>) -> Result<Option<i64>, AccountError> {
    cursor.map(|c| c.parse::<i64>().map_err(|_| bad_cursor())).transpose()
}

pub(super) fn conflict_from_row(r: &AnyRow) -> Result<ConflictRecord, sqlx::Error> {
    Ok(ConflictRecord {
        id: r.try_get("id")?,
        national_id: r.try_get("national_id")?,
        existing_account_id: r.try_get("existing_account_id")?,
        new_account_id: r.try_get("new_account_id")?,
        upstream: r.try_get("upstream")?,
        subject: r.try_get("subject")?,
        reason: r.try_get("reason")?,
        detail: r.try_get("detail")?,
        created_at: r.try_get("created_at")?,
        resolved_at: r.try_get("resolved_at")?,
        resolution: r.try_get("resolution")?,
    })
}

const CONFLICT_COLUMNS: &str = "id, national_id, existing_account_id, new_account_id, upstream, subject, reason, \
     detail, created_at, resolved_at, resolution";

impl AccountStore {
    /// Linking conflicts, oldest first, `limit` per page (open ones only unless
    /// `include_resolved`).
    pub async fn conflicts_page(
        &self,
        include_resolved: bool,
        limit: u32,
        cursor: Option<&str>,
    ) -> Result<Page<ConflictRecord>, AccountError> {
        let limit = limit.clamp(1, MAX_PAGE);
        let after = id_cursor(cursor)?.unwrap_or(0);
        let rows = sqlx::query(&format!(
            "SELECT {CONFLICT_COLUMNS} FROM link_conflicts WHERE ($1 = 1 OR resolved_at IS NULL) AND id > $2 \
             ORDER BY id LIMIT $3"
        ))
        .bind(i64::from(include_resolved))
        .bind(after)
        .bind(i64::from(limit) + 1)
        .fetch_all(&self.pool)
        .await?;
        let mut items = rows.iter().map(conflict_from_row).collect::<Result<Vec<_>, _>>()?;
        let next_cursor = more(&mut items, limit).map(|last| last.id.to_string());
        Ok(Page { items, next_cursor })
    }

    /// One conflict by id.
    pub async fn conflict(&self, id: i64) -> Result<Option<ConflictRecord>, AccountError> {
        let row = sqlx::query(&format!("SELECT {CONFLICT_COLUMNS} FROM link_conflicts WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(conflict_from_row).transpose()?)
    }

    /// Conflicts naming an account on either side (newest first, at most `limit`).
    pub async fn conflicts_of(
        &self,
        account_id: &str,
        limit: u32,
    ) -> Result<Vec<ConflictRecord>, AccountError> {
        let rows = sqlx::query(&format!(
            "SELECT {CONFLICT_COLUMNS} FROM link_conflicts WHERE existing_account_id = $1 OR new_account_id = $1 \
             ORDER BY id DESC LIMIT $2"
        ))
        .bind(account_id)
        .bind(i64::from(limit.clamp(1, MAX_PAGE)))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(conflict_from_row).collect::<Result<Vec<_>, _>>()?)
    }

    /// Recorded national-ID warnings, newest first.
    pub async fn warnings_page(
        &self,
        filter: &WarningFilter,
        limit: u32,
        cursor: Option<&str>,
    ) -> Result<Page<WarningRecord>, AccountError> {
        let limit = limit.clamp(1, MAX_PAGE);
        // The cursor is the last row's key: created_at, account_id, source, code.
        let key: Option<(i64, String, String, String)> = cursor
            .map(|c| {
                let bytes = base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, c)
                    .map_err(|_| bad_cursor())?;
                serde_json::from_slice(&bytes).map_err(|_| bad_cursor())
            })
            .transpose()?;
        let (at, account, source, code) =
            key.unwrap_or((i64::MAX, String::new(), String::new(), String::new()));
        let rows = sqlx::query(
            "SELECT account_id, source, code, national_id, detail, created_at FROM national_id_warnings \
             WHERE ($1 = '' OR code = $1) AND ($2 = '' OR source = $2) AND ($3 = '' OR account_id = $3) \
             AND created_at >= $4 \
             AND (created_at < $5 OR (created_at = $5 AND (account_id, source, code) > ($6, $7, $8))) \
             ORDER BY created_at DESC, account_id, source, code LIMIT $9",
        )
        .bind(filter.code.as_deref().unwrap_or(""))
        .bind(filter.source.as_deref().unwrap_or(""))
        .bind(filter.account_id.as_deref().unwrap_or(""))
        .bind(filter.since.unwrap_or(i64::MIN))
        .bind(at)
        .bind(account)
        .bind(source)
        .bind(code)
        .bind(i64::from(limit) + 1)
        .fetch_all(&self.pool)
        .await?;
        let mut items =
            rows.iter().map(super::admin::warning_from_row).collect::<Result<Vec<_>, sqlx::Error>>()?;
        let next_cursor = more(&mut items, limit).map(|w| {
            let key = (w.created_at, &w.account_id, &w.source, &w.code);
            base64::Engine::encode(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                serde_json::to_vec(&key).unwrap_or_default(),
            )
        });
        Ok(Page { items, next_cursor })
    }

    /// Audit lines, newest first (by time, then by id), `limit` per page. The cursor is the
    /// last line's `at.id`.
    pub async fn audit_page(
        &self,
        filter: &AuditFilter,
        limit: u32,
        cursor: Option<&str>,
    ) -> Result<Page<AuditRecord>, AccountError> {
        let limit = limit.clamp(1, MAX_PAGE);
        let before = audit_cursor(cursor)?;
        let sql = audit_sql(filter, before.is_some());
        let mut query = sqlx::query(&sql);
        for text in [&filter.target, &filter.actor, &filter.action].into_iter().flatten() {
            query = query.bind(text.as_str());
        }
        for n in [filter.since, filter.until].into_iter().flatten() {
            query = query.bind(n);
        }
        if let Some((at, id)) = before {
            query = query.bind(at).bind(id);
        }
        let rows = query.bind(i64::from(limit) + 1).fetch_all(&self.pool).await?;
        let mut items =
            rows.iter().map(super::admin::audit_record).collect::<Result<Vec<_>, sqlx::Error>>()?;
        let next_cursor = more(&mut items, limit).map(|last| format!("{}.{}", last.at, last.id));
        Ok(Page { items, next_cursor })
    }
}

/// The audit list's query: only the filters given are in it, so each one's index serves it
/// (a `$n = '' OR …` condition would keep the planner off every index). Parameters in order:
/// `target`, `actor`, `action`, `since`, `until` (those given), the cursor's `at` and `id`
/// (`after_cursor`), the row limit.
pub(super) fn audit_sql(filter: &AuditFilter, after_cursor: bool) -> String {
    let mut conditions: Vec<String> = Vec::new();
    let mut n = 0;
    let mut next = || {
        n += 1;
        format!("${n}")
    };
    for (column, value) in [("target", &filter.target), ("actor", &filter.actor), ("action", &filter.action)]
    {
        if value.is_some() {
            conditions.push(format!("{column} = {}", next()));
        }
    }
    if filter.since.is_some() {
        conditions.push(format!("at >= {}", next()));
    }
    if filter.until.is_some() {
        conditions.push(format!("at < {}", next()));
    }
    if after_cursor {
        let (at, id) = (next(), next());
        conditions.push(format!("(at, id) < ({at}, {id})"));
    }
    let limit = next();
    let where_ =
        if conditions.is_empty() { String::new() } else { format!("WHERE {} ", conditions.join(" AND ")) };
    format!(
        "SELECT id, at, actor, action, target, reason, detail FROM audit_log {where_}\
         ORDER BY at DESC, id DESC LIMIT {limit}"
    )
}

/// The audit list's cursor: the last line's `at.id`.
fn audit_cursor(cursor: Option<&str>) -> Result<Option<(i64, i64)>, AccountError> {
    cursor
        .map(|c| {
            let (at, id) = c.split_once('.').ok_or_else(bad_cursor)?;
            Ok((at.parse().map_err(|_| bad_cursor())?, id.parse().map_err(|_| bad_cursor())?))
        })
        .transpose()
}

/// Cuts the extra row fetched to see whether a next page exists; returns the last row kept
/// when there is one.
pub(super) fn more<T>(items: &mut Vec<T>, limit: u32) -> Option<&T> {
    if items.len() > limit as usize {
        items.truncate(limit as usize);
        items.last()
    } else {
        None
    }
}
