//! Account data types shared by the store and its callers.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "status", content = "into")]
pub enum AccountStatus {
    Active,
    Locked,
    /// Merged into the account with this id; the old `sub` still resolves.
    MergedInto(String),
}

/// How an identity link came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkMethod {
    FirstLogin,
    NationalId,
    Admin,
}

impl LinkMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            LinkMethod::FirstLogin => "first_login",
            LinkMethod::NationalId => "national_id",
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
    pub org_unit: Option<String>,
    pub position: Option<String>,
    pub roles: Vec<String>,
}

impl Profile {
    pub fn kind(&self) -> AccountKind {
        if self.official_code.is_some() { AccountKind::Official } else { AccountKind::Citizen }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OfficialProfile {
    pub official_code: Option<String>,
    pub former_province: Option<String>,
    pub org_unit: Option<String>,
    pub position: Option<String>,
    pub roles: Vec<String>,
}

/// A unified account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Account {
    pub id: String,
    /// Public subject identifier given to relying parties; never changes.
    pub sub: String,
    pub kind: AccountKind,
    pub status: AccountStatus,
    pub national_id: Option<String>,
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
