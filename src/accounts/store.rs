//! SQL access to accounts: one code path for SQLite and PostgreSQL through sqlx's `Any` driver
//! (queries use `$n` placeholders, which both backends accept).

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

use super::AccountError;
use super::model::{Account, AccountKind, AccountStatus, LinkMethod, OfficialProfile, Profile};
use super::names::normalize_full_name;
use super::national_id::NationalId;

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dialect {
    Sqlite,
    Postgres,
}

/// Handle on the account database (cheap to clone).
#[derive(Clone, Debug)]
pub struct AccountStore {
    pool: AnyPool,
    dialect: Dialect,
}

const ACCOUNT_COLUMNS: &str = "a.id, a.sub, a.kind, a.status, a.merged_into, a.national_id, a.full_name, \
     a.given_name, a.family_name, a.birthdate, a.gender, a.email, a.phone, a.created_at, a.updated_at, \
     o.official_code, o.former_province, o.org_unit, o.position, o.roles";

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
            .acquire_timeout(std::time::Duration::from_secs(5))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if dialect == Dialect::Sqlite {
                        sqlx::query("PRAGMA foreign_keys = ON").execute(&mut *conn).await?;
                        sqlx::query("PRAGMA busy_timeout = 5000").execute(&mut *conn).await?;
                        sqlx::query("PRAGMA journal_mode = WAL").execute(&mut *conn).await?;
                    }
                    Ok(())
                })
            })
            .connect(url)
            .await?;
        let store = AccountStore { pool, dialect };
        store.migrate().await?;
        Ok(store)
    }

    /// Applies pending migrations (idempotent).
    pub async fn migrate(&self) -> Result<(), AccountError> {
        match self.dialect {
            Dialect::Sqlite => SQLITE_MIGRATIONS.run(&self.pool).await?,
            Dialect::Postgres => POSTGRES_MIGRATIONS.run(&self.pool).await?,
        }
        Ok(())
    }

    /// Whether the database answers (for `/readyz`).
    pub async fn ping(&self) -> Result<(), AccountError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Finds the account linked to an upstream identity, creating account and link on the
    /// first login, and refreshes the stored attributes from the upstream's latest claims.
    pub async fn resolve_login(
        &self,
        upstream: &str,
        subject: &str,
        profile: &Profile,
        now: i64,
    ) -> Result<Account, AccountError> {
        if let Some(account) = self.login_existing(upstream, subject, profile, now).await? {
            return Ok(account);
        }
        match self.create_linked(upstream, subject, profile, now).await {
            Ok(account) => Ok(account),
            // Another replica or request created the link first: use theirs.
            Err(AccountError::Database(e)) if is_unique_violation(&e) => self
                .login_existing(upstream, subject, profile, now)
                .await?
                .ok_or_else(|| AccountError::Corrupt("link vanished after conflict".into())),
            Err(e) => Err(e),
        }
    }

    async fn login_existing(
        &self,
        upstream: &str,
        subject: &str,
        profile: &Profile,
        now: i64,
    ) -> Result<Option<Account>, AccountError> {
        let row = sqlx::query("SELECT account_id FROM identity_links WHERE upstream = $1 AND subject = $2")
            .bind(upstream)
            .bind(subject)
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let account_id: String = row.try_get("account_id")?;
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE identity_links SET last_login_at = $1 WHERE upstream = $2 AND subject = $3")
            .bind(now)
            .bind(upstream)
            .bind(subject)
            .execute(&mut *tx)
            .await?;
        update_attributes(&mut tx, &account_id, profile, upstream, now).await?;
        tx.commit().await?;
        self.find_by_id(&account_id).await
    }

    async fn create_linked(
        &self,
        upstream: &str,
        subject: &str,
        profile: &Profile,
        now: i64,
    ) -> Result<Account, AccountError> {
        let id = uuid::Uuid::now_v7().to_string();
        let sub = uuid::Uuid::new_v4().to_string();
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO accounts (id, sub, kind, status, created_at, updated_at) VALUES ($1, $2, $3, 'active', $4, $4)",
        )
        .bind(&id)
        .bind(&sub)
        .bind(profile.kind().as_str())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO identity_links (upstream, subject, account_id, link_method, linked_at, last_login_at) \
             VALUES ($1, $2, $3, $4, $5, $5)",
        )
        .bind(upstream)
        .bind(subject)
        .bind(&id)
        .bind(LinkMethod::FirstLogin.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        update_attributes(&mut tx, &id, profile, upstream, now).await?;
        tx.commit().await?;
        self.find_by_id(&id)
            .await?
            .ok_or_else(|| AccountError::Corrupt("account vanished after insert".into()))
    }

    pub async fn find_by_id(&self, id: &str) -> Result<Option<Account>, AccountError> {
        let sql = format!(
            "SELECT {ACCOUNT_COLUMNS} FROM accounts a LEFT JOIN official_profiles o ON o.account_id = a.id WHERE a.id = $1"
        );
        let row = sqlx::query(&sql).bind(id).fetch_optional(&self.pool).await?;
        row.map(|r| account_from_row(&r)).transpose()
    }

    pub async fn find_by_sub(&self, sub: &str) -> Result<Option<Account>, AccountError> {
        let sql = format!(
            "SELECT {ACCOUNT_COLUMNS} FROM accounts a LEFT JOIN official_profiles o ON o.account_id = a.id WHERE a.sub = $1"
        );
        let row = sqlx::query(&sql).bind(sub).fetch_optional(&self.pool).await?;
        row.map(|r| account_from_row(&r)).transpose()
    }
}

/// Writes the attributes an upstream asserted; absent claims keep what is stored.
async fn update_attributes(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    account_id: &str,
    p: &Profile,
    upstream: &str,
    now: i64,
) -> Result<(), AccountError> {
    let national_id = p.national_id.as_deref().and_then(|raw| NationalId::parse(raw).ok());
    let full_name = p.name.as_deref().map(normalize_full_name);
    sqlx::query(
        "UPDATE accounts SET \
           national_id = COALESCE($1, national_id), full_name = COALESCE($2, full_name), \
           given_name = COALESCE($3, given_name), family_name = COALESCE($4, family_name), \
           birthdate = COALESCE($5, birthdate), gender = COALESCE($6, gender), \
           email = COALESCE($7, email), phone = COALESCE($8, phone), updated_at = $9 \
         WHERE id = $10",
    )
    .bind(national_id.as_ref().map(|n| n.as_str().to_string()))
    .bind(full_name)
    .bind(p.given_name.as_deref().map(normalize_full_name))
    .bind(p.family_name.as_deref().map(normalize_full_name))
    .bind(p.birthdate.clone())
    .bind(p.gender.clone())
    .bind(p.email.clone())
    .bind(p.phone.clone())
    .bind(now)
    .bind(account_id)
    .execute(&mut **tx)
    .await?;
    if p.kind() == AccountKind::Official {
        let roles = serde_json::to_string(&p.roles).map_err(|e| AccountError::Corrupt(e.to_string()))?;
        sqlx::query("UPDATE accounts SET kind = 'official' WHERE id = $1")
            .bind(account_id)
            .execute(&mut **tx)
            .await?;
        let updated = sqlx::query(
            "UPDATE official_profiles SET official_code = $1, former_province = $2, org_unit = $3, \
             position = $4, roles = $5, updated_at = $6 WHERE account_id = $7",
        )
        .bind(p.official_code.clone())
        .bind(upstream)
        .bind(p.org_unit.clone())
        .bind(p.position.clone())
        .bind(&roles)
        .bind(now)
        .bind(account_id)
        .execute(&mut **tx)
        .await?;
        if updated.rows_affected() == 0 {
            sqlx::query(
                "INSERT INTO official_profiles (account_id, official_code, former_province, org_unit, position, roles, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(account_id)
            .bind(p.official_code.clone())
            .bind(upstream)
            .bind(p.org_unit.clone())
            .bind(p.position.clone())
            .bind(&roles)
            .bind(now)
            .execute(&mut **tx)
            .await?;
        }
    }
    Ok(())
}

fn account_from_row(r: &AnyRow) -> Result<Account, AccountError> {
    let kind: String = r.try_get("kind")?;
    let status: String = r.try_get("status")?;
    let merged_into: Option<String> = r.try_get("merged_into")?;
    let status = match (status.as_str(), merged_into) {
        ("active", _) => AccountStatus::Active,
        ("locked", _) => AccountStatus::Locked,
        ("merged", Some(into)) => AccountStatus::MergedInto(into),
        (other, _) => return Err(AccountError::Corrupt(format!("unknown account status {other:?}"))),
    };
    let official_code: Option<String> = r.try_get("official_code")?;
    let roles: Option<String> = r.try_get("roles")?;
    let org_unit: Option<String> = r.try_get("org_unit")?;
    let official = if roles.is_some() {
        Some(OfficialProfile {
            official_code,
            former_province: r.try_get("former_province")?,
            org_unit,
            position: r.try_get("position")?,
            roles: roles
                .as_deref()
                .map(serde_json::from_str)
                .transpose()
                .map_err(|e| AccountError::Corrupt(e.to_string()))?
                .unwrap_or_default(),
        })
    } else {
        None
    };
    Ok(Account {
        id: r.try_get("id")?,
        sub: r.try_get("sub")?,
        kind: AccountKind::parse(&kind)
            .ok_or_else(|| AccountError::Corrupt(format!("unknown account kind {kind:?}")))?,
        status,
        national_id: r.try_get("national_id")?,
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

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
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

#[cfg(test)]
mod tests {
    use super::*;

    async fn memory_store() -> AccountStore {
        AccountStore::connect("sqlite::memory:", 1).await.unwrap()
    }

    fn citizen() -> Profile {
        Profile {
            name: Some("Nguye\u{0302}\u{0303}n Văn An".into()),
            national_id: Some("079 203 001 234".into()),
            birthdate: Some("2003-04-05".into()),
            ..Profile::default()
        }
    }

    #[tokio::test]
    async fn first_login_creates_an_account_and_second_login_finds_it() {
        let store = memory_store().await;
        let a = store.resolve_login("hcm", "u-1", &citizen(), 100).await.unwrap();
        let b = store.resolve_login("hcm", "u-1", &citizen(), 200).await.unwrap();
        assert_eq!(a.sub, b.sub);
        assert_eq!(b.national_id.as_deref(), Some("079203001234"));
        assert_eq!(b.full_name.as_deref(), Some("Nguyễn Văn An"), "names are stored NFC");
        let other = store.resolve_login("bd", "u-1", &citizen(), 300).await.unwrap();
        assert_ne!(other.sub, a.sub, "linking across upstreams is decided by the linking rules, not here");
        assert_eq!(store.find_by_sub(&a.sub).await.unwrap().unwrap().id, a.id);
    }

    #[tokio::test]
    async fn officials_get_a_profile_with_roles() {
        let store = memory_store().await;
        let p = Profile {
            official_code: Some("CB-001".into()),
            org_unit: Some("26734".into()),
            roles: vec!["van-thu".into()],
            ..citizen()
        };
        let a = store.resolve_login("bd", "cb1", &p, 1).await.unwrap();
        assert_eq!(a.kind, AccountKind::Official);
        let o = a.official.unwrap();
        assert_eq!(o.roles, vec!["van-thu".to_string()]);
        assert_eq!(o.former_province.as_deref(), Some("bd"));
    }

    #[tokio::test]
    async fn concurrent_first_logins_of_one_identity_make_one_account() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/a.db?mode=rwc", dir.path().display());
        let store = AccountStore::connect(&url, 4).await.unwrap();
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let s = store.clone();
            tasks.push(tokio::spawn(async move {
                s.resolve_login("hcm", "same", &citizen(), 1).await.unwrap().sub
            }));
        }
        let mut subs = Vec::new();
        for t in tasks {
            subs.push(t.await.unwrap());
        }
        subs.dedup();
        assert_eq!(subs.len(), 1);
    }

    #[tokio::test]
    async fn accounts_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/nested/a.db?mode=rwc", dir.path().display());
        let sub = {
            let store = AccountStore::connect(&url, 2).await.unwrap();
            store.resolve_login("hcm", "u", &citizen(), 1).await.unwrap().sub
        };
        let store = AccountStore::connect(&url, 2).await.unwrap();
        assert_eq!(store.resolve_login("hcm", "u", &citizen(), 2).await.unwrap().sub, sub);
    }
}
