//! The unified account store: one account per person, whichever old system they log in with.
//!
//! Owns: the durable account model (SQLite embedded default, PostgreSQL in production, via
//! sqlx), identity links `(upstream, subject) → account`, official profiles, national-ID and
//! name rules. Must not: know about HTTP, cookies, sessions or OIDC messages.

mod model;
pub mod names;
pub mod national_id;
mod store;

pub use model::{Account, AccountKind, AccountStatus, LinkMethod, OfficialProfile, Profile};
pub use store::AccountStore;

/// Why an account operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("account database unavailable: {0}")]
    Database(#[from] sqlx::Error),
    #[error("account database migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("unsupported account store URL (expected sqlite:// or postgres://)")]
    UnsupportedUrl,
    #[error("stored account data is inconsistent: {0}")]
    Corrupt(String),
}
