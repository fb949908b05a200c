//! Administrative units of the merged city: the new commune-level units, the former units of
//! the three old provinces, and the explicit, versioned former → new mapping.
//!
//! Old → new is not a function and not code equality: most new codes re-use an old code under
//! a different name, and split former units map to several new ones. An official whose legacy
//! system reports a former unit gets the new unit only when the mapping has exactly one
//! candidate; otherwise the claim says `ambiguous` (with the candidates) until an import row or
//! an admin decides. The most recently imported unit set is the active one.

use std::collections::BTreeSet;
use std::path::Path;

use sqlx::AnyConnection;
use sqlx::Row;

use super::AccountError;
use super::model::{OfficialProfile, OrgUnitState, UnitRef};
use super::store::AccountStore;

/// Version name of the unit data compiled into the binary.
pub const EMBEDDED_VERSION: &str = "nso-2025";

const EMBEDDED_NEW: &str = include_str!("../../config/units/hcm-2025-units.csv");
const EMBEDDED_OLD: &str = include_str!("../../config/units/hcm-bd-brvt-pre2025-units.csv");
const EMBEDDED_MAP: &str = include_str!("../../config/units/old-to-new.csv");
const EMBEDDED_SUPPLEMENT: &str = include_str!("../../config/units/supplement-old-to-new.csv");

/// A unit of the new structure.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct NewUnit {
    pub code: String,
    pub name: String,
    pub unit_type: String,
    pub name_en: Option<String>,
}

/// A former commune-level unit.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct FormerUnit {
    pub code: String,
    pub name: String,
    pub unit_type: String,
    pub province_code: String,
    pub district_code: String,
    pub district_name: String,
}

/// One former → new edge.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct UnitMapping {
    pub old_code: String,
    pub new_code: String,
    pub note: String,
}

/// A complete unit set, ready to import.
#[derive(Debug, Clone)]
pub struct UnitData {
    pub version: String,
    pub source: String,
    pub new_units: Vec<NewUnit>,
    pub former_units: Vec<FormerUnit>,
    pub mappings: Vec<UnitMapping>,
}

/// Why unit data could not be read.
#[derive(Debug, thiserror::Error)]
pub enum UnitDataError {
    #[error("{file}: {source}")]
    Io { file: String, source: std::io::Error },
    #[error("{file} line {line}: {message}")]
    Row { file: String, line: u64, message: String },
    #[error("unit data is inconsistent: {0}")]
    Inconsistent(String),
}

fn records(file: &str, text: &str, columns: &[&str]) -> Result<Vec<(u64, Vec<String>)>, UnitDataError> {
    let mut reader = csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(text.as_bytes());
    let headers = reader
        .headers()
        .map_err(|e| UnitDataError::Row { file: file.into(), line: 1, message: e.to_string() })?
        .clone();
    let mut index = Vec::new();
    for c in columns {
        let i = headers.iter().position(|h| h == *c).ok_or_else(|| UnitDataError::Row {
            file: file.into(),
            line: 1,
            message: format!("missing column {c:?}"),
        })?;
        index.push(i);
    }
    let mut out = Vec::new();
    for rec in reader.records() {
        let rec = rec.map_err(|e| UnitDataError::Row {
            file: file.into(),
            line: e.position().map_or(0, |p| p.line()),
            message: e.to_string(),
        })?;
        let line = rec.position().map_or(0, |p| p.line());
        let values: Vec<String> = index.iter().map(|i| rec.get(*i).unwrap_or("").to_string()).collect();
        if values.first().is_none_or(|v| v.is_empty()) {
            return Err(UnitDataError::Row { file: file.into(), line, message: "empty code".into() });
        }
        out.push((line, values));
    }
    Ok(out)
}

fn col(v: &[String], i: usize) -> String {
    v.get(i).cloned().unwrap_or_default()
}

impl UnitData {
    /// Parses the three files (plus optional supplementary mappings) and checks that every
    /// mapping names a known former and new unit.
    pub fn parse(
        version: &str,
        source: &str,
        new_csv: &str,
        old_csv: &str,
        mapping_csvs: &[(&str, &str)],
    ) -> Result<UnitData, UnitDataError> {
        let new_units: Vec<NewUnit> =
            records("new units", new_csv, &["code", "name", "type", "name_en_if_available"])?
                .into_iter()
                .map(|(_, v)| NewUnit {
                    code: col(&v, 0),
                    name: col(&v, 1),
                    unit_type: col(&v, 2),
                    name_en: Some(col(&v, 3)).filter(|s| !s.is_empty()),
                })
                .collect();
        let former_units: Vec<FormerUnit> = records(
            "former units",
            old_csv,
            &["code", "name", "type", "province_code", "district_code", "district_name"],
        )?
        .into_iter()
        .map(|(_, v)| FormerUnit {
            code: col(&v, 0),
            name: col(&v, 1),
            unit_type: col(&v, 2),
            province_code: col(&v, 3),
            district_code: col(&v, 4),
            district_name: col(&v, 5),
        })
        .collect();
        let new_codes: BTreeSet<&str> = new_units.iter().map(|u| u.code.as_str()).collect();
        let mut mappings = Vec::new();
        for (file, text) in mapping_csvs {
            for (line, v) in records(file, text, &["old_code", "new_code", "source"])? {
                let m = UnitMapping { old_code: col(&v, 0), new_code: col(&v, 1), note: col(&v, 2) };
                if !new_codes.contains(m.new_code.as_str()) {
                    return Err(UnitDataError::Row {
                        file: file.to_string(),
                        line,
                        message: format!("new_code {} is not a new unit", m.new_code),
                    });
                }
                mappings.push(m);
            }
        }
        if new_units.is_empty() || mappings.is_empty() {
            return Err(UnitDataError::Inconsistent("no units or no mappings".into()));
        }
        let mut seen = BTreeSet::new();
        for u in &new_units {
            if !seen.insert(u.code.as_str()) {
                return Err(UnitDataError::Inconsistent(format!("new unit {} listed twice", u.code)));
            }
        }
        Ok(UnitData { version: version.into(), source: source.into(), new_units, former_units, mappings })
    }

    /// The copy compiled into the binary (`config/units/`).
    pub fn embedded() -> Result<UnitData, UnitDataError> {
        UnitData::parse(
            EMBEDDED_VERSION,
            "embedded copy of config/units (thanglequoc v2.4.1/v4.2.0, NSO conversion table 2025-10-23)",
            EMBEDDED_NEW,
            EMBEDDED_OLD,
            &[("old-to-new.csv", EMBEDDED_MAP), ("supplement-old-to-new.csv", EMBEDDED_SUPPLEMENT)],
        )
    }

    /// Reads a directory laid out like `config/units/` (the supplement file is optional).
    pub fn from_dir(dir: &Path, version: &str) -> Result<UnitData, UnitDataError> {
        let read = |name: &str| {
            std::fs::read_to_string(dir.join(name))
                .map_err(|source| UnitDataError::Io { file: dir.join(name).display().to_string(), source })
        };
        let new = read("hcm-2025-units.csv")?;
        let old = read("hcm-bd-brvt-pre2025-units.csv")?;
        let map = read("old-to-new.csv")?;
        let supplement = read("supplement-old-to-new.csv").ok();
        let mut maps = vec![("old-to-new.csv", map.as_str())];
        if let Some(s) = &supplement {
            maps.push(("supplement-old-to-new.csv", s.as_str()));
        }
        UnitData::parse(version, &format!("directory {}", dir.display()), &new, &old, &maps)
    }
}

/// What a unit import did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UnitImportSummary {
    pub version: String,
    /// False when the same version with the same content was already there.
    pub changed: bool,
    pub new_units: usize,
    pub former_units: usize,
    pub mappings: usize,
    pub split_former_units: usize,
}

impl AccountStore {
    /// Imports a unit set (idempotent: the same version with the same content changes nothing;
    /// the same version with different content is replaced). The imported version becomes the
    /// active one. Officials' stored units are translated again on their next login or import.
    pub async fn import_units(&self, data: &UnitData, now: i64) -> Result<UnitImportSummary, AccountError> {
        let mut splits = std::collections::BTreeMap::<&str, usize>::new();
        for m in &data.mappings {
            *splits.entry(m.old_code.as_str()).or_default() += 1;
        }
        let mut summary = UnitImportSummary {
            version: data.version.clone(),
            changed: false,
            new_units: data.new_units.len(),
            former_units: data.former_units.len(),
            mappings: data.mappings.len(),
            split_former_units: splits.values().filter(|n| **n > 1).count(),
        };
        let mut tx = self.begin_write().await?;
        if stored_equal(&mut tx, data).await? {
            return Ok(summary);
        }
        for table in ["unit_mappings", "admin_units", "former_units", "unit_sets"] {
            sqlx::query(&format!("DELETE FROM {table} WHERE version = $1"))
                .bind(&data.version)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("INSERT INTO unit_sets (version, source, imported_at) VALUES ($1, $2, $3)")
            .bind(&data.version)
            .bind(&data.source)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        for chunk in data.new_units.chunks(100) {
            let sql = multi_insert(
                "admin_units",
                &["version", "code", "name", "unit_type", "name_en"],
                chunk.len(),
            );
            let mut q = sqlx::query(&sql);
            for u in chunk {
                q = q
                    .bind(&data.version)
                    .bind(&u.code)
                    .bind(&u.name)
                    .bind(&u.unit_type)
                    .bind(u.name_en.clone());
            }
            q.execute(&mut *tx).await?;
        }
        for chunk in data.former_units.chunks(100) {
            let sql = multi_insert(
                "former_units",
                &["version", "code", "name", "unit_type", "province_code", "district_code", "district_name"],
                chunk.len(),
            );
            let mut q = sqlx::query(&sql);
            for u in chunk {
                q = q
                    .bind(&data.version)
                    .bind(&u.code)
                    .bind(&u.name)
                    .bind(&u.unit_type)
                    .bind(&u.province_code)
                    .bind(&u.district_code)
                    .bind(&u.district_name);
            }
            q.execute(&mut *tx).await?;
        }
        for chunk in data.mappings.chunks(100) {
            let sql =
                multi_insert("unit_mappings", &["version", "old_code", "new_code", "note"], chunk.len());
            let mut q = sqlx::query(&sql);
            for m in chunk {
                q = q.bind(&data.version).bind(&m.old_code).bind(&m.new_code).bind(&m.note);
            }
            q.execute(&mut *tx).await?;
        }
        self.commit_write(tx).await?;
        summary.changed = true;
        Ok(summary)
    }

    /// Seeds the compiled-in unit set when no unit set was ever imported.
    pub async fn seed_units_if_empty(&self, now: i64) -> Result<(), AccountError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM unit_sets").fetch_one(&self.pool).await?;
        if row.try_get::<i64, _>("n")? > 0 {
            return Ok(());
        }
        let data = UnitData::embedded().map_err(|e| AccountError::Corrupt(e.to_string()))?;
        match self.import_units(&data, now).await {
            Ok(_) => Ok(()),
            // Another replica seeded at the same moment.
            Err(e) if super::store::is_unique_violation(&e) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The active unit set version, if any.
    pub async fn active_unit_version(&self) -> Result<Option<String>, AccountError> {
        let mut conn = self.pool.acquire().await?;
        active_version(&mut conn).await
    }

    /// A unit of the active set's new structure.
    pub async fn new_unit(&self, code: &str) -> Result<Option<UnitRef>, AccountError> {
        let mut conn = self.pool.acquire().await?;
        let Some(version) = active_version(&mut conn).await? else { return Ok(None) };
        unit_ref(&mut conn, &version, code).await
    }
}

/// `INSERT INTO t (cols) VALUES ($1, …), (…)` for `rows` rows.
pub(super) fn multi_insert(table: &str, columns: &[&str], rows: usize) -> String {
    let mut sql = format!("INSERT INTO {table} ({}) VALUES ", columns.join(", "));
    let mut n = 0;
    for r in 0..rows {
        if r > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for c in 0..columns.len() {
            if c > 0 {
                sql.push_str(", ");
            }
            n += 1;
            sql.push_str(&format!("${n}"));
        }
        sql.push(')');
    }
    sql
}

async fn stored_equal(conn: &mut AnyConnection, data: &UnitData) -> Result<bool, AccountError> {
    let exists = sqlx::query("SELECT version FROM unit_sets WHERE version = $1")
        .bind(&data.version)
        .fetch_optional(&mut *conn)
        .await?
        .is_some();
    if !exists {
        return Ok(false);
    }
    let rows = sqlx::query("SELECT code, name, unit_type, name_en FROM admin_units WHERE version = $1")
        .bind(&data.version)
        .fetch_all(&mut *conn)
        .await?;
    let stored: BTreeSet<NewUnit> = rows
        .iter()
        .map(|r| {
            Ok(NewUnit {
                code: r.try_get("code")?,
                name: r.try_get("name")?,
                unit_type: r.try_get("unit_type")?,
                name_en: r.try_get("name_en")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()?;
    if stored != data.new_units.iter().cloned().collect() {
        return Ok(false);
    }
    let rows = sqlx::query("SELECT old_code, new_code, note FROM unit_mappings WHERE version = $1")
        .bind(&data.version)
        .fetch_all(&mut *conn)
        .await?;
    let stored: BTreeSet<UnitMapping> = rows
        .iter()
        .map(|r| {
            Ok(UnitMapping {
                old_code: r.try_get("old_code")?,
                new_code: r.try_get("new_code")?,
                note: r.try_get("note")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()?;
    if stored != data.mappings.iter().cloned().collect() {
        return Ok(false);
    }
    let row = sqlx::query("SELECT COUNT(*) AS n FROM former_units WHERE version = $1")
        .bind(&data.version)
        .fetch_one(&mut *conn)
        .await?;
    Ok(row.try_get::<i64, _>("n")? == data.former_units.len() as i64)
}

pub(super) async fn active_version(conn: &mut AnyConnection) -> Result<Option<String>, AccountError> {
    let row = sqlx::query("SELECT version FROM unit_sets ORDER BY imported_at DESC, version DESC LIMIT 1")
        .fetch_optional(&mut *conn)
        .await?;
    Ok(row.map(|r| r.try_get("version")).transpose()?)
}

async fn unit_ref(
    conn: &mut AnyConnection,
    version: &str,
    code: &str,
) -> Result<Option<UnitRef>, AccountError> {
    let row = sqlx::query("SELECT code, name FROM admin_units WHERE version = $1 AND code = $2")
        .bind(version)
        .bind(code)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(row
        .map(|r| Ok::<_, sqlx::Error>(UnitRef { code: r.try_get("code")?, name: r.try_get("name")? }))
        .transpose()?)
}

async fn candidates(
    conn: &mut AnyConnection,
    version: &str,
    old_code: &str,
) -> Result<Vec<UnitRef>, AccountError> {
    let rows = sqlx::query(
        "SELECT m.new_code AS code, u.name AS name FROM unit_mappings m \
         JOIN admin_units u ON u.version = m.version AND u.code = m.new_code \
         WHERE m.version = $1 AND m.old_code = $2 ORDER BY m.new_code",
    )
    .bind(version)
    .bind(old_code)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|r| Ok(UnitRef { code: r.try_get("code")?, name: r.try_get("name")? }))
        .collect::<Result<_, sqlx::Error>>()
        .map_err(AccountError::from)
}

/// Translates a former unit code through the active mapping.
pub(super) async fn translate(
    conn: &mut AnyConnection,
    legacy: Option<&str>,
) -> Result<(Option<String>, OrgUnitState), AccountError> {
    let Some(legacy) = legacy.map(str::trim).filter(|c| !c.is_empty()) else {
        return Ok((None, OrgUnitState::Unknown));
    };
    let Some(version) = active_version(conn).await? else { return Ok((None, OrgUnitState::Unknown)) };
    let found = candidates(conn, &version, legacy).await?;
    Ok(match found.as_slice() {
        [] => (None, OrgUnitState::Unknown),
        [one] => (Some(one.code.clone()), OrgUnitState::Mapped),
        _ => (None, OrgUnitState::Ambiguous),
    })
}

/// Fills in unit names (and candidates for an ambiguous unit) from the active set.
pub(super) async fn describe(
    conn: &mut AnyConnection,
    official: &mut OfficialProfile,
) -> Result<(), AccountError> {
    let Some(version) = active_version(conn).await? else { return Ok(()) };
    if let Some(unit) = official.org_unit.take() {
        official.org_unit = Some(
            unit_ref(conn, &version, &unit.code)
                .await?
                .unwrap_or(UnitRef { code: unit.code, name: String::new() }),
        );
    }
    if official.org_unit_state == OrgUnitState::Ambiguous
        && let Some(legacy) = official.legacy_org_unit.clone()
    {
        official.org_unit_candidates = candidates(conn, &version, &legacy).await?;
    }
    Ok(())
}
