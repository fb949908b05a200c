//! Bulk import of accounts exported from a former province's system (CSV).
//!
//! Each row is one identity of that province's system, `(province, account_id)`, and goes
//! through the same linking rules as a login through that province's upstream (with its trust
//! setting). Importing is idempotent: a row already imported resolves to its existing link and
//! writes nothing when nothing changed. Invalid rows are reported with their line number and
//! reason while valid rows go in; in strict mode any invalid row rejects the whole file before
//! anything is written.
//!
//! Columns (header row required, UTF-8, comma separated, order free, unknown columns ignored):
//! `account_id` (required: the identity's subject at the former system), `full_name`
//! (required), `national_id`, `birthdate` (`YYYY-MM-DD`, `DD/MM/YYYY` or `YYYYMMDD`), `gender`
//! (`male`/`female`, `Nam`/`Nữ`, `M`/`F`), `email`, `phone`; officials also `official_code`
//! (required), `org_unit` (former commune code), `new_org_unit` (decided unit of the new
//! structure, optional), `position`, `roles` (separated by `;`).

use std::collections::{BTreeSet, HashSet};

use serde::Serialize;

use super::AccountError;
use super::linking::{Assertion, LinkOutcome, LinkPolicy, resolve_in};
use super::model::Profile;
use super::national_id::Gender;
use super::store::{AccountStore, RACE_RETRIES, is_unique_violation};

/// Which kind of people a file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ImportKind {
    Citizen,
    Official,
}

/// One valid row, ready to resolve.
#[derive(Debug, Clone)]
pub struct ImportRow {
    pub line: u64,
    pub subject: String,
    pub profile: Profile,
    pub decided_unit: Option<String>,
}

/// A row that was not imported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RowError {
    pub line: u64,
    pub reason: String,
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ImportSummary {
    pub rows: usize,
    pub created: usize,
    pub linked_by_national_id: usize,
    pub pending: usize,
    pub conflicts: usize,
    pub already_imported: usize,
    pub errors: Vec<RowError>,
    /// Strict mode refused the file: nothing was written.
    pub rejected: bool,
}

impl ImportSummary {
    pub fn imported(&self) -> usize {
        self.created + self.linked_by_national_id + self.pending + self.conflicts + self.already_imported
    }
}

/// Converts a date in one of the legacy layouts to ISO `YYYY-MM-DD`.
pub fn parse_date(raw: &str) -> Option<String> {
    let raw = raw.trim();
    let (y, m, d) = if raw.len() == 10 && raw.as_bytes().get(4) == Some(&b'-') {
        (raw.get(0..4)?, raw.get(5..7)?, raw.get(8..10)?)
    } else if raw.len() == 10 && raw.as_bytes().get(2) == Some(&b'/') {
        (raw.get(6..10)?, raw.get(3..5)?, raw.get(0..2)?)
    } else if raw.len() == 8 && raw.bytes().all(|b| b.is_ascii_digit()) {
        (raw.get(0..4)?, raw.get(4..6)?, raw.get(6..8)?)
    } else {
        return None;
    };
    let month = time::Month::try_from(m.parse::<u8>().ok()?).ok()?;
    let date = time::Date::from_calendar_date(y.parse().ok()?, month, d.parse().ok()?).ok()?;
    Some(format!("{:04}-{:02}-{:02}", date.year(), date.month() as u8, date.day()))
}

/// Parses a CSV file into valid rows and row errors (line numbers are the file's lines).
pub fn parse_csv(text: &str, kind: ImportKind) -> Result<(Vec<ImportRow>, Vec<RowError>), RowError> {
    let text = text.strip_prefix('\u{FEFF}').unwrap_or(text);
    let mut reader =
        csv::ReaderBuilder::new().trim(csv::Trim::All).flexible(false).from_reader(text.as_bytes());
    let headers = reader
        .headers()
        .map_err(|e| RowError { line: 1, reason: format!("unreadable header: {e}") })?
        .clone();
    let column = |name: &str| headers.iter().position(|h| h.eq_ignore_ascii_case(name));
    let mut required = vec!["account_id", "full_name"];
    if kind == ImportKind::Official {
        required.push("official_code");
    }
    for r in &required {
        if column(r).is_none() {
            return Err(RowError { line: 1, reason: format!("missing column {r:?}") });
        }
    }
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    let mut seen = HashSet::new();
    for rec in reader.records() {
        let rec = match rec {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                errors.push(RowError { line, reason: format!("malformed CSV row: {e}") });
                continue;
            }
        };
        let line = rec.position().map_or(0, |p| p.line());
        let get = |name: &str| {
            column(name).and_then(|i| rec.get(i)).map(str::trim).filter(|v| !v.is_empty()).map(str::to_string)
        };
        match parse_row(&get, kind) {
            Ok(row) => {
                if !seen.insert(row.subject.clone()) {
                    errors.push(RowError {
                        line,
                        reason: format!("account_id {:?} appears twice in the file", row.subject),
                    });
                    continue;
                }
                rows.push(ImportRow { line, ..row });
            }
            Err(reason) => errors.push(RowError { line, reason }),
        }
    }
    Ok((rows, errors))
}

fn parse_row(get: &dyn Fn(&str) -> Option<String>, kind: ImportKind) -> Result<ImportRow, String> {
    let subject = get("account_id").ok_or("account_id is empty")?;
    let name = get("full_name").ok_or("full_name is empty")?;
    let birthdate = match get("birthdate") {
        None => None,
        Some(raw) => Some(parse_date(&raw).ok_or_else(|| {
            format!("birthdate {raw:?} is not a date (YYYY-MM-DD, DD/MM/YYYY or YYYYMMDD)")
        })?),
    };
    let gender = match get("gender") {
        None => None,
        Some(raw) => Some(
            match Gender::from_claim(&raw)
                .ok_or_else(|| format!("gender {raw:?} is not male/female (nam/nữ)"))?
            {
                Gender::Male => "male".to_string(),
                Gender::Female => "female".to_string(),
            },
        ),
    };
    let email = get("email");
    if let Some(e) = &email
        && (!e.contains('@') || e.starts_with('@') || e.ends_with('@') || e.contains(char::is_whitespace))
    {
        return Err(format!("email {e:?} is not an e-mail address"));
    }
    let mut profile = Profile {
        name: Some(name),
        birthdate,
        gender,
        email,
        phone: get("phone"),
        national_id: get("national_id"),
        ..Profile::default()
    };
    let mut decided_unit = None;
    if kind == ImportKind::Official {
        profile.official_code = Some(get("official_code").ok_or("official_code is empty")?);
        profile.org_unit = get("org_unit");
        profile.position = get("position");
        profile.roles = get("roles")
            .map(|r| r.split(';').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect())
            .unwrap_or_default();
        decided_unit = get("new_org_unit");
    }
    Ok(ImportRow { line: 0, subject, profile, decided_unit })
}

/// Import rows per transaction.
const BATCH: usize = 500;

/// One import: the parsed rows of a file and where they go.
#[derive(Debug, Clone)]
pub struct ImportRequest<'a> {
    /// The upstream (province) the rows are identities of.
    pub province: &'a str,
    /// That upstream's linking policy.
    pub policy: LinkPolicy,
    /// The rows that parsed.
    pub rows: &'a [ImportRow],
    /// The rows that did not (they are reported with the summary).
    pub errors: Vec<RowError>,
    /// Refuse the whole file when any row is wrong (nothing is written).
    pub strict: bool,
    pub now: i64,
}

impl AccountStore {
    /// Imports parsed rows as identities of the request's province with its linking policy.
    /// `progress` is called with the number of rows processed so far.
    pub async fn import_rows(
        &self,
        request: ImportRequest<'_>,
        mut progress: impl FnMut(u64),
    ) -> Result<ImportSummary, AccountError> {
        let ImportRequest { province, policy, rows, mut errors, strict, now } = request;
        let mut summary = ImportSummary { rows: rows.len() + errors.len(), ..ImportSummary::default() };
        // Decided units must exist in the active structure; checked before anything is written.
        let mut known_units = BTreeSet::new();
        for row in rows {
            if let Some(unit) = &row.decided_unit
                && !known_units.contains(unit)
            {
                if self.new_unit(unit).await?.is_some() {
                    known_units.insert(unit.clone());
                } else {
                    errors.push(RowError {
                        line: row.line,
                        reason: format!(
                            "new_org_unit {unit} is not a unit of the active administrative structure"
                        ),
                    });
                }
            }
        }
        let bad_lines: HashSet<u64> = errors.iter().map(|e| e.line).collect();
        if strict && !errors.is_empty() {
            errors.sort_by_key(|e| e.line);
            summary.errors = errors;
            summary.rejected = true;
            return Ok(summary);
        }
        let mut done = 0u64;
        for batch in rows.chunks(BATCH) {
            let mut tx = self.begin_write().await?;
            for row in batch {
                done += 1;
                if bad_lines.contains(&row.line) {
                    continue;
                }
                let a = Assertion {
                    upstream: province,
                    subject: &row.subject,
                    profile: &row.profile,
                    policy,
                    login: false,
                    decided_unit: row.decided_unit.as_deref(),
                };
                // A concurrent import or login may create the same person first (unique
                // verified number): roll the row back to its savepoint and resolve it again.
                let mut attempt = 0;
                loop {
                    let mut savepoint = sqlx::Acquire::begin(&mut *tx).await?;
                    match resolve_in(&mut savepoint, &a, now).await {
                        Ok((_, outcome)) => {
                            savepoint.commit().await?;
                            match outcome {
                                LinkOutcome::Existing => summary.already_imported += 1,
                                LinkOutcome::Created => summary.created += 1,
                                LinkOutcome::LinkedByNationalId => summary.linked_by_national_id += 1,
                                LinkOutcome::CreatedPending => summary.pending += 1,
                                LinkOutcome::CreatedAfterConflict => summary.conflicts += 1,
                            }
                            break;
                        }
                        Err(e) if is_unique_violation(&e) && attempt < RACE_RETRIES => {
                            savepoint.rollback().await?;
                            attempt += 1;
                        }
                        Err(e) => {
                            savepoint.rollback().await?;
                            errors.push(RowError { line: row.line, reason: e.to_string() });
                            break;
                        }
                    }
                }
            }
            self.commit_write(tx).await?;
            progress(done);
        }
        errors.sort_by_key(|e| e.line);
        summary.errors = errors;
        Ok(summary)
    }
}

#[cfg(test)]
mod properties {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use proptest::prelude::*;

    use super::*;

    const COLUMNS: [&str; 14] = [
        "account_id",
        "full_name",
        "national_id",
        "birthdate",
        "gender",
        "email",
        "phone",
        "official_code",
        "org_unit",
        "new_org_unit",
        "position",
        "roles",
        "unknown",
        "",
    ];

    /// A cell an exported file might hold, or a hostile one: quotes, separators, line breaks,
    /// a byte-order mark, control characters, long text.
    fn cell() -> impl Strategy<Value = String> {
        prop_oneof![
            "[0-9]{0,14}",
            "[0-9]{1,2}/[0-9]{1,2}/[0-9]{2,5}",
            "[0-9]{4}-[0-9]{2}-[0-9]{2}",
            Just("Nữ".to_string()),
            Just("\"quoted, with \"\"escapes\"\"\"".to_string()),
            Just("\"unterminated".to_string()),
            Just("a\r\nb".to_string()),
            Just("\u{FEFF}".to_string()),
            Just("\u{0}\u{1b}\u{7f}".to_string()),
            Just("x".repeat(4096)),
            any::<String>(),
        ]
    }

    proptest! {
        #![proptest_config(crate::fuzzing::config(256))]

        #[test]
        fn arbitrary_text_is_rows_and_row_errors_never_a_panic(text in any::<String>()) {
            for kind in [ImportKind::Citizen, ImportKind::Official] {
                let _ = parse_csv(&text, kind);
            }
        }

        #[test]
        fn hostile_rows_are_each_accepted_or_reported(
            header in prop::collection::vec(prop::sample::select(COLUMNS.to_vec()), 0..8),
            rows in prop::collection::vec(prop::collection::vec(cell(), 0..9), 0..12),
            separator in prop::sample::select(vec![",", ";", "\t", ",,"]),
        ) {
            let mut text = header.join(separator);
            for row in &rows {
                text.push('\n');
                text.push_str(&row.join(separator));
            }
            for kind in [ImportKind::Citizen, ImportKind::Official] {
                let Ok((valid, errors)) = parse_csv(&text, kind) else { continue };
                for row in &valid {
                    prop_assert!(!row.subject.is_empty());
                    prop_assert!(row.profile.name.as_deref().is_some_and(|n| !n.is_empty()));
                    if let Some(date) = &row.profile.birthdate {
                        let again = parse_date(date);
                        prop_assert_eq!(again.as_deref(), Some(date.as_str()));
                    }
                }
                prop_assert!(errors.iter().all(|e| !e.reason.is_empty()));
            }
        }

        #[test]
        fn dates_are_iso_or_refused(raw in prop_oneof!["[0-9/ -]{0,12}", any::<String>()]) {
            if let Some(iso) = parse_date(&raw) {
                prop_assert_eq!(iso.len(), 10);
                prop_assert_eq!(parse_date(&iso), Some(iso.clone()));
            }
        }
    }
}
