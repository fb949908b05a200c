//! Account data types shared by the store and its callers.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AccountKind {
    Citizen,
    Official,
}

impl AccountKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AccountKind::Citizen => "citizen",
            AccountKind::Official => "official",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "citizen" => Some(AccountKind::Citizen),
            "official" => Some(AccountKind::Official),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case", tag = "status", content = "into")]
pub enum AccountStatus {
    Active,
    Locked,
    /// Merged into the account with this id; the old `sub` still resolves.
    MergedInto(String),
}

/// Why an account carries a national ID number that is not (yet) its verified number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ClaimState {
    /// Asserted by an upstream that is not trusted to verify numbers: waits for proof of
    /// ownership of the account holding the number, or an admin.
    Pending,
    /// Another account holds the number with conflicting person data: waits for an admin.
    Conflict,
}

impl ClaimState {
    pub fn as_str(self) -> &'static str {
        match self {
            ClaimState::Pending => "pending",
            ClaimState::Conflict => "conflict",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(ClaimState::Pending),
            "conflict" => Some(ClaimState::Conflict),
            _ => None,
        }
    }
}

/// How an identity link came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkMethod {
    /// The first login (or import row) of this identity created its account.
    FirstLogin,
    /// Linked to the account holding the same verified national ID number.
    NationalId,
    /// The person proved they own both accounts (two logins in one browser session).
    Proof,
    /// An administrator linked it.
    Admin,
}

impl LinkMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            LinkMethod::FirstLogin => "first_login",
            LinkMethod::NationalId => "national_id",
            LinkMethod::Proof => "proof",
            LinkMethod::Admin => "admin",
        }
    }
}

/// Person attributes as asserted by an upstream, already mapped to gateway names.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    pub name: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub username: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    /// ISO `YYYY-MM-DD`.
    pub birthdate: Option<String>,
    pub gender: Option<String>,
    /// As asserted (not yet normalised).
    pub national_id: Option<String>,
    pub official_code: Option<String>,
    /// The organisational unit as the legacy system reports it: a former (pre-2025) commune
    /// code, translated through the unit mapping.
    pub org_unit: Option<String>,
    pub position: Option<String>,
    pub roles: Vec<String>,
}

impl Profile {
    pub fn kind(&self) -> AccountKind {
        if self.official_code.is_some() { AccountKind::Official } else { AccountKind::Citizen }
    }
}

/// How an official's unit in the new city structure was determined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrgUnitState {
    /// The former unit maps to exactly one new unit.
    Mapped,
    /// The former unit was split between several new units; an import or admin must decide.
    Ambiguous,
    /// No mapping is known for the reported unit (or no unit was reported).
    Unknown,
    /// Decided by an import row or an administrator.
    Decided,
}

impl OrgUnitState {
    pub fn as_str(self) -> &'static str {
        match self {
            OrgUnitState::Mapped => "mapped",
            OrgUnitState::Ambiguous => "ambiguous",
            OrgUnitState::Unknown => "unknown",
            OrgUnitState::Decided => "decided",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "mapped" => Some(OrgUnitState::Mapped),
            "ambiguous" => Some(OrgUnitState::Ambiguous),
            "unknown" => Some(OrgUnitState::Unknown),
            "decided" => Some(OrgUnitState::Decided),
            _ => None,
        }
    }
}

/// A unit of the new city's administrative structure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct UnitRef {
    pub code: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct OfficialProfile {
    pub official_code: Option<String>,
    /// Upstream (former province system) or import province the profile came from.
    pub former_province: Option<String>,
    /// The unit as the legacy system reported it (former commune code).
    pub legacy_org_unit: Option<String>,
    /// The unit in the new structure, when determined (`Mapped` or `Decided`).
    pub org_unit: Option<UnitRef>,
    pub org_unit_state: OrgUnitState,
    /// For `Ambiguous`: the new units the former unit was split into.
    pub org_unit_candidates: Vec<UnitRef>,
    pub position: Option<String>,
    pub roles: Vec<String>,
}

/// A unified account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Account {
    pub id: String,
    /// Public subject identifier given to relying parties; never changes.
    pub sub: String,
    pub kind: AccountKind,
    pub status: AccountStatus,
    /// The verified personal identification number (unique across accounts).
    pub national_id: Option<String>,
    /// A number asserted but not verified for this account, and why.
    pub claimed_national_id: Option<String>,
    pub claim_state: Option<ClaimState>,
    pub full_name: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub birthdate: Option<String>,
    pub gender: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub official: Option<OfficialProfile>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// One upstream identity linked to an account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct IdentityLink {
    pub upstream: String,
    pub subject: String,
    pub account_id: String,
    pub method: String,
    pub linked_at: i64,
    pub last_login_at: i64,
}

/// A recorded structural warning about an asserted number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct WarningRecord {
    pub account_id: String,
    pub source: String,
    pub code: String,
    pub national_id: Option<String>,
    pub detail: String,
    pub created_at: i64,
}

/// A recorded linking conflict, waiting for (or resolved by) an admin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ConflictRecord {
    pub id: i64,
    pub national_id: String,
    pub existing_account_id: String,
    pub new_account_id: String,
    pub upstream: String,
    pub subject: String,
    pub reason: String,
    pub detail: String,
    pub created_at: i64,
    pub resolved_at: Option<i64>,
    pub resolution: Option<String>,
}

/// One line of the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct AuditRecord {
    pub id: i64,
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub reason: Option<String>,
    pub detail: String,
}
