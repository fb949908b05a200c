//! The account database's schema migrations, compiled into the binary (`migrations/sqlite/`
//! and `migrations/postgres/`), and the sqlx [`Migrator`] that applies them.
//!
//! The files are listed here by name and embedded with `include_str!`, so cargo rebuilds the
//! gateway when one changes. They are resolved exactly as sqlx resolves a migrations folder
//! (version before the first `_`, description after it with `_` read as a space, checksum over
//! the file's text), so a database migrated by any earlier build keeps matching. Two tests
//! hold that: one checks this list against the folders, the other checks every field against
//! sqlx's own folder resolver. Adding a migration means adding its file to both folders and
//! its name to both lists below.
//!
//! This module owns only the schema's history; the queries live in [`super::store`].

use std::borrow::Cow;

use futures::future::BoxFuture;
use sqlx::error::BoxDynError;
use sqlx::migrate::{MigrateError, Migration, MigrationSource, MigrationType, Migrator};

/// One migration file: its name in the folder and its text.
#[derive(Debug)]
struct File {
    name: &'static str,
    sql: &'static str,
}

/// The migrations of one backend, in the order their names sort.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Embedded {
    folder: &'static str,
    files: &'static [File],
}

macro_rules! embed {
    ($folder:literal: $($name:literal),+ $(,)?) => {
        Embedded {
            folder: $folder,
            files: &[$(File {
                name: $name,
                sql: include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/", $folder, "/", $name)),
            }),+],
        }
    };
}

pub(crate) const SQLITE: Embedded = embed!("sqlite":
    "20261127000001_accounts.sql",
    "20261128000001_linking_units_audit.sql",
    "20261203000001_admin_search.sql",
    "20261203000002_admin_ops.sql",
    "20261203000003_audit_index.sql",
);

pub(crate) const POSTGRES: Embedded = embed!("postgres":
    "20261127000001_accounts.sql",
    "20261128000001_linking_units_audit.sql",
    "20261203000001_admin_search.sql",
    "20261203000002_admin_ops.sql",
    "20261203000003_audit_index.sql",
);

impl Embedded {
    /// The migrator that brings a database of this backend up to date.
    pub(crate) async fn migrator(self) -> Result<Migrator, MigrateError> {
        Migrator::new(self).await
    }

    /// The files as sqlx migrations.
    fn migrations(&self) -> Result<Vec<Migration>, String> {
        self.files.iter().map(|file| file.migration(self.folder)).collect()
    }
}

impl File {
    /// Resolves the file as sqlx's folder resolver does: `<version>_<description>.sql`.
    fn migration(&self, folder: &str) -> Result<Migration, String> {
        let unreadable = || {
            format!(
                "migration file name migrations/{folder}/{} is not <version>_<description>.sql",
                self.name
            )
        };
        let stem = self.name.strip_suffix(".sql").ok_or_else(unreadable)?;
        let (version, description) = stem.split_once('_').ok_or_else(unreadable)?;
        let version: i64 = version.parse().map_err(|_| unreadable())?;
        let migration_type = MigrationType::from_filename(self.name);
        if migration_type != MigrationType::Simple {
            return Err(format!(
                "migrations/{folder}/{} is reversible; the gateway's migrations are simple",
                self.name
            ));
        }
        let description = description.replace('_', " ");
        let no_tx = self.sql.starts_with("-- no-transaction");
        Ok(Migration::new(version, Cow::Owned(description), migration_type, Cow::Borrowed(self.sql), no_tx))
    }
}

impl<'s> MigrationSource<'s> for Embedded {
    fn resolve(self) -> BoxFuture<'s, Result<Vec<Migration>, BoxDynError>> {
        Box::pin(async move { self.migrations().map_err(BoxDynError::from) })
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn folder(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("migrations").join(name)
    }

    /// A file added to a folder but not to its list would never run: every `.sql` file in the
    /// folder must be listed, with the same text.
    #[test]
    fn every_migration_file_in_the_folders_is_embedded() {
        for embedded in [SQLITE, POSTGRES] {
            let mut on_disk: Vec<String> = std::fs::read_dir(folder(embedded.folder))
                .unwrap()
                .map(|entry| entry.unwrap().file_name().into_string().unwrap())
                .filter(|name| name.ends_with(".sql"))
                .collect();
            on_disk.sort();
            let listed: Vec<&str> = embedded.files.iter().map(|file| file.name).collect();
            assert_eq!(
                on_disk, listed,
                "migrations/{} and its list in accounts/migrations.rs",
                embedded.folder
            );
            for file in embedded.files {
                let text = std::fs::read_to_string(folder(embedded.folder).join(file.name)).unwrap();
                assert_eq!(text, file.sql, "{}", file.name);
            }
        }
    }

    /// Databases migrated by earlier builds (which used `sqlx::migrate!`) hold each
    /// migration's version and checksum; the embedded migrations must resolve to exactly what
    /// sqlx's own resolver makes of the folders, or those databases would refuse to start.
    #[tokio::test]
    async fn embedded_migrations_resolve_as_sqlx_resolves_the_folders() {
        for embedded in [SQLITE, POSTGRES] {
            let ours = embedded.migrator().await.unwrap();
            let path = folder(embedded.folder);
            let sqlx_own = Migrator::new(path.as_path()).await.unwrap();
            let fields = |m: &Migrator| {
                m.iter()
                    .map(|m| {
                        (
                            m.version,
                            m.description.to_string(),
                            m.migration_type,
                            m.sql.to_string(),
                            m.checksum.to_vec(),
                            m.no_tx,
                        )
                    })
                    .collect::<Vec<_>>()
            };
            assert_eq!(fields(&ours), fields(&sqlx_own), "migrations/{}", embedded.folder);
            assert_eq!(ours.iter().count(), embedded.files.len());
        }
    }

    /// A database the folder resolver migrated (what every earlier build did) opens with the
    /// embedded migrations; one migrated from a file whose text has since changed is refused
    /// (sqlx's checksum check), so the first test's equality is what upgrades rely on.
    #[tokio::test]
    async fn a_store_migrated_by_the_folder_opens_and_a_changed_file_is_refused() {
        sqlx::any::install_default_drivers();
        let dir = tempfile::tempdir().unwrap();
        let changed = dir.path().join("changed");
        std::fs::create_dir(&changed).unwrap();
        for file in SQLITE.files {
            let text = if file.name == SQLITE.files[0].name {
                format!("{}\n-- edited", file.sql)
            } else {
                file.sql.into()
            };
            std::fs::write(changed.join(file.name), text).unwrap();
        }
        for (name, from, opens) in [("same", folder("sqlite"), true), ("changed", changed, false)] {
            let url = format!("sqlite://{}/{name}.db?mode=rwc", dir.path().display());
            let pool = sqlx::AnyPool::connect(&url).await.unwrap();
            Migrator::new(from.as_path()).await.unwrap().run(&pool).await.unwrap();
            pool.close().await;
            let opened = crate::accounts::AccountStore::connect(&url, 1).await;
            assert_eq!(opened.is_ok(), opens, "{name}: {:?}", opened.err());
        }
    }

    #[test]
    fn a_file_name_without_a_version_is_refused() {
        for name in
            ["accounts.sql", "x1_accounts.sql", "20261127000001_accounts.txt", "20261127000001_x.up.sql"]
        {
            let file = File { name, sql: "SELECT 1;" };
            assert!(file.migration("sqlite").is_err(), "{name}");
        }
    }
}
