//! The unified account store: one account per person, whichever old system they log in with.
//!
//! Owns: the durable account model (SQLite embedded default, PostgreSQL in production, via
//! sqlx with migrations in `migrations/{sqlite,postgres}`), identity links
//! `(upstream, subject) → account`, the linking rules ([`linking`]), national-ID and name
//! rules, official profiles with units of the new administrative structure ([`units`]),
//! pairwise subjects ([`pairwise`]), admin operations with their append-only audit log
//! ([`admin`]), admin search ([`search`]), bulk import ([`import`]) and the record of its runs
//! ([`import_runs`]).
//! Must not: know about HTTP, cookies, sessions or OIDC messages.

pub mod admin;
pub mod import;
pub mod import_runs;
pub mod linking;
pub mod lists;
mod migrations;
mod model;
pub mod names;
pub mod national_id;
pub mod pairwise;
pub mod search;
pub mod self_service;
mod store;
pub mod units;

#[cfg(test)]
mod tests;

pub use admin::AccountSelector;
pub use linking::{LinkOutcome, LinkPolicy, ProofCandidate, Resolution};
pub use model::{
    Account, AccountKind, AccountStatus, AuditRecord, ClaimState, ConflictRecord, IdentityLink, LinkMethod,
    OfficialProfile, OrgUnitState, Profile, UnitRef, WarningRecord,
};
pub use pairwise::SubjectResolution;
pub use self_service::SelfUnlink;
pub use store::{AccountStore, Dialect};

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
    #[error("not found: {0}")]
    NotFound(String),
    #[error("refused: {0}")]
    Refused(String),
    /// Input that can never be valid (a malformed number, an empty search, a foreign cursor).
    #[error("invalid input: {0}")]
    Invalid(String),
}
