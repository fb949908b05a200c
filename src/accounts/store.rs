//! SQL access to accounts: one code path for SQLite and PostgreSQL through sqlx's `Any` driver
//! (queries use `$n` placeholders, which both backends accept). Only portable types cross the
//! driver: TEXT ↔ `String`, BIGINT ↔ `i64` (no booleans, no SQL dates), so both backends
//! decode every row the same way.
//!
//! Writes run in one transaction per operation. On SQLite the transaction starts with
//! `BEGIN IMMEDIATE` (the write lock is taken up front, so two writers queue instead of one
//! failing on lock upgrade); on PostgreSQL uniqueness (identity link primary key, unique
//! verified national ID) settles races and the loser retries.

use std::sync::Arc;
use std::time::Duration;

use sqlx::AnyConnection;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

use super::AccountError;
use super::migrations;
use super::model::{
    Account, AccountKind, AccountStatus, ClaimState, IdentityLink, OfficialProfile, OrgUnitState, UnitRef,
};

/// Which database the store talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// Handle on the account database (cheap to clone).
#[derive(Clone, Debug)]
pub struct AccountStore {
    pub(super) pool: AnyPool,
    dialect: Dialect,
    /// Recently read account records for the token endpoints (`find_for_tokens`); `None`
    /// unless the gateway enables it with [`AccountStore::with_cache`].
    cache: Option<moka::sync::Cache<String, Arc<Account>>>,
}

/// How many times a write that lost a uniqueness race is retried.
pub(super) const RACE_RETRIES: usize = 4;

pub(super) const ACCOUNT_COLUMNS: &str = "a.id, a.sub, a.kind, a.status, a.merged_into, a.national_id, \
     a.claimed_national_id, a.national_id_state, a.full_name, a.given_name, a.family_name, a.birthdate, \
     a.gender, a.email, a.phone, a.created_at, a.updated_at, o.official_code, o.former_province, \
     o.legacy_org_unit, o.org_unit, o.org_unit_state, o.position, o.roles";

pub(super) const ACCOUNT_FROM: &str = "accounts a LEFT JOIN official_profiles o ON o.account_id = a.id";

impl AccountStore {
    /// Connects and applies migrations. `url` is `sqlite://…` or `postgres://…`.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, AccountError> {
        sqlx::any::install_default_drivers();
        let dialect = if url.starts_with("sqlite:") {
            Dialect::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Dialect::Postgres
        } else {
            return Err(AccountError::UnsupportedUrl);
        };
        if dialect == Dialect::Sqlite {
            ensure_sqlite_dir(url);
        }
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        let pool = AnyPoolOptions::new()
            // One connection keeps an in-memory SQLite database alive and shared.
            .max_connections(if in_memory { 1 } else { max_connections.max(1) })
            .min_connections(if in_memory { 1 } else { 0 })
            .idle_timeout(if in_memory { None } else { Some(std::time::Duration::from_secs(600)) })
            .max_lifetime(if in_memory { None } else { Some(std::time::Duration::from_secs(1800)) })
            .acquire_timeout(std::time::Duration::from_secs(30))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if dialect == Dialect::Sqlite {
                        sqlx::query("PRAGMA foreign_keys = ON").execute(&mut *conn).await?;
                        sqlx::query("PRAGMA busy_timeout = 10000").execute(&mut *conn).await?;
                        sqlx::query("PRAGMA journal_mode = WAL").execute(&mut *conn).await?;
                        // WAL + NORMAL: durable across application crashes; a power loss may
                        // lose the last transactions but never corrupts the database.
                        sqlx::query("PRAGMA synchronous = NORMAL").execute(&mut *conn).await?;
                    }
                    Ok(())
                })
            })
            .connect(url)
            .await?;
        let store = AccountStore { pool, dialect, cache: None };
        store.migrate().await?;
        store.backfill_name_search().await?;
        // A store that never had units gets the compiled-in set (imported "at time 0", so any
        // set an admin imports later is newer and becomes the active one).
        store.seed_units_if_empty(0).await?;
        Ok(store)
    }

    /// Keeps account records read by [`find_for_tokens`](Self::find_for_tokens) for up to
    /// `ttl` (at most `capacity` of them). Writes through this handle forget what they change at
    /// once; writes by another process (admin CLI, another replica) are seen within `ttl`.
    /// A zero `ttl` leaves the cache off.
    pub fn with_cache(mut self, ttl: Duration, capacity: u64) -> Self {
        self.cache = (!ttl.is_zero())
            .then(|| moka::sync::Cache::builder().max_capacity(capacity).time_to_live(ttl).build());
        self
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Applies pending migrations (idempotent).
    pub async fn migrate(&self) -> Result<(), AccountError> {
        let migrations = match self.dialect {
            Dialect::Sqlite => migrations::SQLITE,
            Dialect::Postgres => migrations::POSTGRES,
        };
        migrations.migrator().await?.run(&self.pool).await?;
        Ok(())
    }

    /// Whether the database answers (for `/readyz`).
    pub async fn ping(&self) -> Result<(), AccountError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Closes every pooled connection.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Starts a write transaction (`BEGIN IMMEDIATE` on SQLite).
    pub(super) async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, AccountError> {
        Ok(match self.dialect {
            Dialect::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Dialect::Postgres => self.pool.begin().await?,
        })
    }

    /// The account with this id for minting tokens: from the cache when it was read within the
    /// cache's time-to-live, else from the database (see [`with_cache`](Self::with_cache)).
    /// Everything that decides about an account (linking, admin commands) reads
    /// [`find_by_id`](Self::find_by_id) instead.
    pub async fn find_for_tokens(&self, id: &str) -> Result<Option<Account>, AccountError> {
        let Some(cache) = &self.cache else { return self.find_by_id(id).await };
        if let Some(account) = cache.get(id) {
            return Ok(Some(Account::clone(&account)));
        }
        let account = self.find_by_id(id).await?;
        if let Some(a) = &account {
            cache.insert(a.id.clone(), Arc::new(a.clone()));
        }
        Ok(account)
    }

    /// Puts a record just read after a write into the cache (if there is one).
    pub(super) fn remember(&self, account: &Account) {
        if let Some(cache) = &self.cache {
            cache.insert(account.id.clone(), Arc::new(account.clone()));
        }
    }

    /// Commits a write that may change any account (admin commands, imports, merges) and
    /// forgets every cached record.
    pub(super) async fn commit_write(
        &self,
        tx: sqlx::Transaction<'static, sqlx::Any>,
    ) -> Result<(), AccountError> {
        tx.commit().await?;
        if let Some(cache) = &self.cache {
            cache.invalidate_all();
        }
        Ok(())
    }

    /// The account with this internal id, as stored (a merged account is returned as merged).
    pub async fn find_by_id(&self, id: &str) -> Result<Option<Account>, AccountError> {
        let mut conn = self.pool.acquire().await?;
        load_account(&mut conn, id).await
    }

    /// The account whose public `sub` this is, as stored.
    pub async fn find_by_sub(&self, sub: &str) -> Result<Option<Account>, AccountError> {
        let mut conn = self.pool.acquire().await?;
        let row = sqlx::query("SELECT id FROM accounts WHERE sub = $1")
            .bind(sub)
            .fetch_optional(&mut *conn)
            .await?;
        match row {
            Some(r) => load_account(&mut conn, &r.try_get::<String, _>("id")?).await,
            None => Ok(None),
        }
    }

    /// The account holding this number: its verified number, or a number it held before a
    /// re-key. The input is normalised first; anything but 12 digits finds nothing.
    pub async fn find_by_national_id(&self, number: &str) -> Result<Option<Account>, AccountError> {
        let Ok(number) = super::national_id::NationalId::parse(number) else { return Ok(None) };
        let mut conn = self.pool.acquire().await?;
        match holder_of(&mut conn, number.as_str()).await? {
            Some(id) => load_account(&mut conn, &id).await,
            None => Ok(None),
        }
    }

    /// The account an upstream identity is linked to.
    pub async fn find_by_link(&self, upstream: &str, subject: &str) -> Result<Option<Account>, AccountError> {
        let mut conn = self.pool.acquire().await?;
        match linked_account_id(&mut conn, upstream, subject).await? {
            Some(id) => load_account(&mut conn, &id).await,
            None => Ok(None),
        }
    }

    /// Follows `merged-into` from `id` to the surviving account.
    pub async fn surviving(&self, id: &str) -> Result<Option<Account>, AccountError> {
        let mut conn = self.pool.acquire().await?;
        let id = follow_merges(&mut conn, id).await?;
        load_account(&mut conn, &id).await
    }

    /// Identity links of an account.
    pub async fn links_of(&self, account_id: &str) -> Result<Vec<IdentityLink>, AccountError> {
        let rows = sqlx::query(
            "SELECT upstream, subject, account_id, link_method, linked_at, last_login_at FROM identity_links \
             WHERE account_id = $1 ORDER BY linked_at, upstream, subject",
        )
        .bind(account_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(IdentityLink {
                    upstream: r.try_get("upstream")?,
                    subject: r.try_get("subject")?,
                    account_id: r.try_get("account_id")?,
                    method: r.try_get("link_method")?,
                    linked_at: r.try_get("linked_at")?,
                    last_login_at: r.try_get("last_login_at")?,
                })
            })
            .collect()
    }

    /// Number of accounts (all statuses).
    pub async fn count_accounts(&self) -> Result<i64, AccountError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM accounts").fetch_one(&self.pool).await?;
        Ok(row.try_get("n")?)
    }
}

/// The account id linked to an upstream identity.
pub(super) async fn linked_account_id(
    conn: &mut AnyConnection,
    upstream: &str,
    subject: &str,
) -> Result<Option<String>, AccountError> {
    let row = sqlx::query("SELECT account_id FROM identity_links WHERE upstream = $1 AND subject = $2")
        .bind(upstream)
        .bind(subject)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(row.map(|r| r.try_get("account_id")).transpose()?)
}

/// The id of the account holding `number` (verified, or in its re-key history).
pub(super) async fn holder_of(
    conn: &mut AnyConnection,
    number: &str,
) -> Result<Option<String>, AccountError> {
    let row = sqlx::query("SELECT id FROM accounts WHERE national_id = $1")
        .bind(number)
        .fetch_optional(&mut *conn)
        .await?;
    if let Some(r) = row {
        return Ok(Some(r.try_get("id")?));
    }
    let row = sqlx::query("SELECT account_id FROM national_id_history WHERE national_id = $1")
        .bind(number)
        .fetch_optional(&mut *conn)
        .await?;
    match row {
        Some(r) => Ok(Some(follow_merges(conn, &r.try_get::<String, _>("account_id")?).await?)),
        None => Ok(None),
    }
}

/// Follows `merged_into` links (bounded, in case of corrupt cycles).
pub(super) async fn follow_merges(conn: &mut AnyConnection, id: &str) -> Result<String, AccountError> {
    let mut current = id.to_string();
    for _ in 0..16 {
        let row = sqlx::query("SELECT merged_into FROM accounts WHERE id = $1 AND status = 'merged'")
            .bind(&current)
            .fetch_optional(&mut *conn)
            .await?;
        match row.map(|r| r.try_get::<Option<String>, _>("merged_into")).transpose()?.flatten() {
            Some(next) => current = next,
            None => return Ok(current),
        }
    }
    Err(AccountError::Corrupt(format!("merge chain from account {id} does not end")))
}

/// Loads an account with its official profile and unit names.
pub(super) async fn load_account(
    conn: &mut AnyConnection,
    id: &str,
) -> Result<Option<Account>, AccountError> {
    let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM {ACCOUNT_FROM} WHERE a.id = $1");
    let Some(row) = sqlx::query(&sql).bind(id).fetch_optional(&mut *conn).await? else { return Ok(None) };
    let mut account = account_from_row(&row)?;
    if let Some(official) = account.official.as_mut() {
        super::units::describe(conn, official).await?;
    }
    Ok(Some(account))
}

pub(super) fn account_from_row(r: &AnyRow) -> Result<Account, AccountError> {
    let kind: String = r.try_get("kind")?;
    let status: String = r.try_get("status")?;
    let merged_into: Option<String> = r.try_get("merged_into")?;
    let status = match (status.as_str(), merged_into) {
        ("active", _) => AccountStatus::Active,
        ("locked", _) => AccountStatus::Locked,
        ("merged", Some(into)) => AccountStatus::MergedInto(into),
        (other, _) => return Err(AccountError::Corrupt(format!("unknown account status {other:?}"))),
    };
    let claim_state: Option<String> = r.try_get("national_id_state")?;
    let claim_state = match claim_state {
        None => None,
        Some(s) => Some(
            ClaimState::parse(&s)
                .ok_or_else(|| AccountError::Corrupt(format!("unknown national id state {s:?}")))?,
        ),
    };
    let roles: Option<String> = r.try_get("roles")?;
    let official = match roles {
        Some(roles) => {
            let state: Option<String> = r.try_get("org_unit_state")?;
            let org_unit: Option<String> = r.try_get("org_unit")?;
            Some(OfficialProfile {
                official_code: r.try_get("official_code")?,
                former_province: r.try_get("former_province")?,
                legacy_org_unit: r.try_get("legacy_org_unit")?,
                // Names are filled in by `units::describe`.
                org_unit: org_unit.map(|code| UnitRef { code, name: String::new() }),
                org_unit_state: state
                    .as_deref()
                    .and_then(OrgUnitState::parse)
                    .unwrap_or(OrgUnitState::Unknown),
                org_unit_candidates: Vec::new(),
                position: r.try_get("position")?,
                roles: serde_json::from_str(&roles).map_err(|e| AccountError::Corrupt(e.to_string()))?,
            })
        }
        None => None,
    };
    Ok(Account {
        id: r.try_get("id")?,
        sub: r.try_get("sub")?,
        kind: AccountKind::parse(&kind)
            .ok_or_else(|| AccountError::Corrupt(format!("unknown account kind {kind:?}")))?,
        status,
        national_id: r.try_get("national_id")?,
        claimed_national_id: r.try_get("claimed_national_id")?,
        claim_state,
        full_name: r.try_get("full_name")?,
        given_name: r.try_get("given_name")?,
        family_name: r.try_get("family_name")?,
        birthdate: r.try_get("birthdate")?,
        gender: r.try_get("gender")?,
        email: r.try_get("email")?,
        phone: r.try_get("phone")?,
        official,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

/// Whether an error is a uniqueness violation (a lost race on a link or a verified number).
pub(super) fn is_unique_violation(e: &AccountError) -> bool {
    matches!(e, AccountError::Database(sqlx::Error::Database(db)) if db.is_unique_violation())
}

/// Creates the directory of a `sqlite://dir/file.db` URL so a fresh checkout just works.
fn ensure_sqlite_dir(url: &str) {
    let path = url.trim_start_matches("sqlite://").trim_start_matches("sqlite:");
    let path = path.split('?').next().unwrap_or("");
    if path.is_empty() || path.contains(":memory:") {
        return;
    }
    if let Some(parent) = std::path::Path::new(path).parent()
        && !parent.as_os_str().is_empty()
    {
        let _ = std::fs::create_dir_all(parent);
    }
}
