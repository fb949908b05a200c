//! The durable record of `sso-gateway accounts import` runs: when, who, which file, what the
//! run did, and its row errors (the first [`MAX_KEPT_ERRORS`] of a run; the count covers all),
//! for the admin API and console.
//!
//! Owns: the `import_runs` and `import_run_errors` tables. Must not: import anything (that is
//! [`super::import`]) or change accounts.

use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::AccountError;
use super::import::{ImportKind, ImportSummary, RowError};
use super::lists::{Page, more};
use super::search::MAX_PAGE;
use super::store::AccountStore;

/// Row errors kept per run (a file of a million bad rows must not fill the database).
pub const MAX_KEPT_ERRORS: usize = 10_000;

/// Row errors written per INSERT.
const ERROR_BATCH: usize = 200;

/// Longest file name or reason kept (longer ones are cut at a character boundary).
const MAX_TEXT: usize = 1000;

/// Who ran an import, on what.
#[derive(Debug, Clone)]
pub struct ImportRunMeta<'a> {
    pub actor: &'a str,
    /// The upstream whose identities the rows are.
    pub source: &'a str,
    pub file: &'a str,
    pub kind: ImportKind,
    pub strict: bool,
    pub started_at: i64,
    pub finished_at: i64,
}

/// One recorded import run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ImportRun {
    pub id: i64,
    pub started_at: i64,
    pub finished_at: i64,
    /// Who ran it (`--actor`, default the OS user).
    pub actor: String,
    /// The upstream (former province) whose identities the rows are.
    pub source: String,
    pub file: String,
    /// `citizen` or `official`.
    pub kind: String,
    pub strict: bool,
    /// Strict mode refused the file (or the file was unreadable): nothing was written.
    pub rejected: bool,
    pub rows: i64,
    pub created: i64,
    pub linked_by_national_id: i64,
    pub pending: i64,
    pub conflicts: i64,
    pub already_imported: i64,
    /// Rows not imported.
    pub errors: i64,
    /// Row errors kept (the first ones, at most [`MAX_KEPT_ERRORS`]).
    pub errors_kept: i64,
}

/// A row of an import run that was not imported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ImportRunError {
    /// The file's line.
    pub line: i64,
    pub reason: String,
}

const RUN_COLUMNS: &str = "id, started_at, finished_at, actor, source, file, kind, strict, rejected, rows_total, \
     created, linked_by_national_id, pending, conflicts, already_imported, errors, errors_kept";

fn run_from_row(r: &AnyRow) -> Result<ImportRun, sqlx::Error> {
    Ok(ImportRun {
        id: r.try_get("id")?,
        started_at: r.try_get("started_at")?,
        finished_at: r.try_get("finished_at")?,
        actor: r.try_get("actor")?,
        source: r.try_get("source")?,
        file: r.try_get("file")?,
        kind: r.try_get("kind")?,
        strict: r.try_get::<i64, _>("strict")? != 0,
        rejected: r.try_get::<i64, _>("rejected")? != 0,
        rows: r.try_get("rows_total")?,
        created: r.try_get("created")?,
        linked_by_national_id: r.try_get("linked_by_national_id")?,
        pending: r.try_get("pending")?,
        conflicts: r.try_get("conflicts")?,
        already_imported: r.try_get("already_imported")?,
        errors: r.try_get("errors")?,
        errors_kept: r.try_get("errors_kept")?,
    })
}

fn bounded(s: &str) -> &str {
    if s.len() <= MAX_TEXT {
        return s;
    }
    let mut end = MAX_TEXT;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn id_cursor(cursor: Option<&str>) -> Result<Option<i64>, AccountError> {
    cursor
        .map(|c| {
            c.parse::<i64>()
                .map_err(|_| AccountError::Invalid("the cursor is not one this list returned".into()))
        })
        .transpose()
}

fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl AccountStore {
    /// Records a finished run and its first row errors in one transaction; returns its id.
    pub async fn record_import_run(
        &self,
        meta: &ImportRunMeta<'_>,
        summary: &ImportSummary,
    ) -> Result<i64, AccountError> {
        let kept: Vec<&RowError> = summary.errors.iter().take(MAX_KEPT_ERRORS).collect();
        let kind = match meta.kind {
            ImportKind::Citizen => "citizen",
            ImportKind::Official => "official",
        };
        let mut tx = self.begin_write().await?;
        let id: i64 = sqlx::query(
            "INSERT INTO import_runs (started_at, finished_at, actor, source, file, kind, strict, rejected, \
             rows_total, created, linked_by_national_id, pending, conflicts, already_imported, errors, errors_kept) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) RETURNING id",
        )
        .bind(meta.started_at)
        .bind(meta.finished_at)
        .bind(bounded(meta.actor))
        .bind(bounded(meta.source))
        .bind(bounded(meta.file))
        .bind(kind)
        .bind(i64::from(meta.strict))
        .bind(i64::from(summary.rejected))
        .bind(count(summary.rows))
        .bind(count(summary.created))
        .bind(count(summary.linked_by_national_id))
        .bind(count(summary.pending))
        .bind(count(summary.conflicts))
        .bind(count(summary.already_imported))
        .bind(count(summary.errors.len()))
        .bind(count(kept.len()))
        .fetch_one(&mut *tx)
        .await?
        .try_get(0)?;
        for (b, batch) in kept.chunks(ERROR_BATCH).enumerate() {
            let values: Vec<String> = (0..batch.len())
                .map(|k| format!("($1, ${}, ${}, ${})", 3 * k + 2, 3 * k + 3, 3 * k + 4))
                .collect();
            let sql = format!(
                "INSERT INTO import_run_errors (run_id, seq, line, reason) VALUES {}",
                values.join(", ")
            );
            let mut q = sqlx::query(&sql).bind(id);
            for (k, e) in batch.iter().enumerate() {
                q = q
                    .bind(count(b * ERROR_BATCH + k))
                    .bind(i64::try_from(e.line).unwrap_or(i64::MAX))
                    .bind(bounded(&e.reason));
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(id)
    }

    /// Import runs, newest first.
    pub async fn import_runs_page(
        &self,
        limit: u32,
        cursor: Option<&str>,
    ) -> Result<Page<ImportRun>, AccountError> {
        let limit = limit.clamp(1, MAX_PAGE);
        let before = id_cursor(cursor)?.unwrap_or(i64::MAX);
        let rows = sqlx::query(&format!(
            "SELECT {RUN_COLUMNS} FROM import_runs WHERE id < $1 ORDER BY id DESC LIMIT $2"
        ))
        .bind(before)
        .bind(i64::from(limit) + 1)
        .fetch_all(&self.pool)
        .await?;
        let mut items = rows.iter().map(run_from_row).collect::<Result<Vec<_>, _>>()?;
        let next_cursor = more(&mut items, limit).map(|last| last.id.to_string());
        Ok(Page { items, next_cursor })
    }

    /// One run.
    pub async fn import_run(&self, id: i64) -> Result<Option<ImportRun>, AccountError> {
        let row = sqlx::query(&format!("SELECT {RUN_COLUMNS} FROM import_runs WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(run_from_row).transpose()?)
    }

    /// A run's kept row errors in file order; [`AccountError::NotFound`] for an unknown run.
    pub async fn import_run_errors_page(
        &self,
        run: i64,
        limit: u32,
        cursor: Option<&str>,
    ) -> Result<Page<ImportRunError>, AccountError> {
        if self.import_run(run).await?.is_none() {
            return Err(AccountError::NotFound(format!("import run {run}")));
        }
        let limit = limit.clamp(1, MAX_PAGE);
        let after = id_cursor(cursor)?.unwrap_or(-1);
        let rows = sqlx::query(
            "SELECT seq, line, reason FROM import_run_errors WHERE run_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        )
        .bind(run)
        .bind(after)
        .bind(i64::from(limit) + 1)
        .fetch_all(&self.pool)
        .await?;
        let mut keyed = rows
            .iter()
            .map(|r| {
                Ok((
                    r.try_get::<i64, _>("seq")?,
                    ImportRunError { line: r.try_get("line")?, reason: r.try_get("reason")? },
                ))
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        let next_cursor = more(&mut keyed, limit).map(|(seq, _)| seq.to_string());
        Ok(Page { items: keyed.into_iter().map(|(_, e)| e).collect(), next_cursor })
    }
}
