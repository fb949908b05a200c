//! Which account attributes each scope releases toward RPs (and the `sub` each client
//! sees), shared by ID tokens, `/userinfo` and introspection. The upstream side of claims —
//! reading what a former login system sends — is `broker/claim_mapping.rs`.

use serde_json::{Map, Value, json};

use crate::accounts::{Account, AccountKind};

/// Scopes the gateway understands (advertised in discovery).
pub const SUPPORTED_SCOPES: &[&str] =
    &["openid", "profile", "email", "phone", "national_id", "official", "offline_access"];

/// A `scope` value, parsed (RFC 6749 §3.3): the space-separated names in the order sent,
/// each once. The endpoints compare scopes only through this type.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Scope(Vec<String>);

impl Scope {
    /// Parses a `scope` parameter (absent: the empty scope).
    pub fn parse(text: Option<&str>) -> Self {
        let mut names: Vec<String> = Vec::new();
        for name in text.unwrap_or("").split_whitespace() {
            if !names.iter().any(|n| n == name) {
                names.push(name.to_string());
            }
        }
        Scope(names)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.0.iter().any(|n| n == name)
    }

    /// The first name that `allowed` does not hold, if any.
    pub fn first_outside(&self, allowed: &[String]) -> Option<&str> {
        self.0.iter().find(|n| !allowed.contains(n)).map(String::as_str)
    }

    pub fn names(&self) -> &[String] {
        &self.0
    }

    pub fn into_names(self) -> Vec<String> {
        self.0
    }
}

/// Claims advertised in discovery.
pub const SUPPORTED_CLAIMS: &[&str] = &[
    "sub",
    "iss",
    "aud",
    "exp",
    "iat",
    "auth_time",
    "nonce",
    "acr",
    "amr",
    "sid",
    "idp",
    "at_hash",
    "name",
    "given_name",
    "family_name",
    "birthdate",
    "gender",
    "updated_at",
    "account_type",
    "email",
    "phone_number",
    "national_id",
    "official",
];

/// Claims of every ID token, whatever the scopes (`nonce` when the request had one).
pub const ID_TOKEN_CLAIMS: &[&str] =
    &["iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "acr", "amr", "idp", "sid", "azp", "at_hash"];

/// The account claims each scope releases (in ID tokens and at `/userinfo`), as
/// `account_claims` releases them for an account that has every attribute.
pub const SCOPE_CLAIMS: &[(&str, &[&str])] = &[
    ("profile", &["name", "given_name", "family_name", "birthdate", "gender", "updated_at", "account_type"]),
    ("email", &["email"]),
    ("phone", &["phone_number"]),
    ("national_id", &["national_id"]),
    ("official", &["official"]),
];

/// The account claims released by `scopes` (never `sub`; the caller sets it).
pub fn account_claims(account: &Account, scopes: &[String]) -> Map<String, Value> {
    let mut m = Map::new();
    let has = |s: &str| scopes.iter().any(|x| x == s);
    let mut put = |k: &str, v: &Option<String>| {
        if let Some(v) = v {
            m.insert(k.to_string(), Value::String(v.clone()));
        }
    };
    if has("profile") {
        put("name", &account.full_name);
        put("given_name", &account.given_name);
        put("family_name", &account.family_name);
        put("birthdate", &account.birthdate);
        put("gender", &account.gender);
    }
    if has("email") {
        put("email", &account.email);
    }
    if has("phone") {
        put("phone_number", &account.phone);
    }
    if has("national_id") {
        put("national_id", &account.national_id);
    }
    if has("profile") {
        m.insert("updated_at".into(), json!(account.updated_at));
        m.insert(
            "account_type".into(),
            json!(match account.kind {
                AccountKind::Citizen => "citizen",
                AccountKind::Official => "official",
            }),
        );
    }
    if has("official")
        && let Some(o) = &account.official
    {
        m.insert(
            "official".into(),
            json!({
                "code": o.official_code,
                // The unit in the new city structure: code and name when determined; when the
                // former unit was split, `status: "ambiguous"` with the candidates instead.
                "org_unit": {
                    "code": o.org_unit.as_ref().map(|u| &u.code),
                    "name": o.org_unit.as_ref().map(|u| &u.name),
                    "status": o.org_unit_state,
                    "candidates": o.org_unit_candidates,
                    "former_code": o.legacy_org_unit,
                },
                "former_province": o.former_province,
                "position": o.position,
                "roles": o.roles,
            }),
        );
    }
    m
}

/// The `sub` a client sees for an account: public, or pairwise for the client's sector
/// (recorded so `/userinfo` can resolve it).
pub async fn subject_for(
    app: &super::ProviderState,
    client: &super::clients::Client,
    account: &Account,
) -> Result<String, crate::accounts::AccountError> {
    match &client.pairwise_sector {
        None => Ok(account.sub.clone()),
        Some(sector) => {
            let salt =
                app.settings.accounts.pairwise_salt.as_ref().and_then(|s| s.value()).ok_or_else(|| {
                    crate::accounts::AccountError::Corrupt("accounts.pairwise_salt is not configured".into())
                })?;
            app.accounts.pairwise_subject(account, sector, salt.as_bytes(), app.clock.now()).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounts::{AccountStatus, OfficialProfile, OrgUnitState, UnitRef};

    fn full_account() -> Account {
        let some = |s: &str| Some(s.to_string());
        Account {
            id: "a1".into(),
            sub: "s1".into(),
            kind: AccountKind::Official,
            status: AccountStatus::Active,
            national_id: some("079190004512"),
            claimed_national_id: None,
            claim_state: None,
            full_name: some("Nguyễn Thị Lan"),
            given_name: some("Lan"),
            family_name: some("Nguyễn"),
            birthdate: some("1990-01-02"),
            gender: some("female"),
            email: some("lan@example.vn"),
            phone: some("+84900000000"),
            official: Some(OfficialProfile {
                official_code: some("CB-1"),
                former_province: some("hcm"),
                legacy_org_unit: some("26734"),
                org_unit: Some(UnitRef { code: "26734".into(), name: "Phường Bến Thành".into() }),
                org_unit_state: OrgUnitState::Mapped,
                org_unit_candidates: Vec::new(),
                position: some("chuyên viên"),
                roles: vec!["van-thu".into()],
            }),
            created_at: 1,
            updated_at: 2,
        }
    }

    #[test]
    fn a_scope_keeps_the_order_sent_and_each_name_once() {
        let scope = Scope::parse(Some("  openid profile\topenid email "));
        assert_eq!(scope.names(), ["openid", "profile", "email"]);
        assert!(scope.contains("profile") && !scope.contains("phone"));
        let allowed = ["openid".to_string(), "profile".to_string()];
        assert_eq!(scope.first_outside(&allowed), Some("email"));
        assert_eq!(Scope::parse(Some("profile openid")).first_outside(&allowed), None);
        assert_eq!(Scope::parse(None), Scope::parse(Some("  ")));
        assert!(Scope::parse(None).names().is_empty());
    }

    proptest::proptest! {
        /// Parsing what a parsed scope writes gives the same scope (the grant's `scope`
        /// string is read back at every refresh).
        #[test]
        fn a_scope_reads_back_what_it_writes(text in "[ a-z_\t]{0,40}") {
            let scope = Scope::parse(Some(&text));
            let written = scope.names().join(" ");
            proptest::prop_assert_eq!(Scope::parse(Some(&written)), scope);
        }
    }

    /// `clients explain` and the integration docs promise claims per scope from this table:
    /// it must say exactly what `account_claims` releases.
    #[test]
    fn the_scope_table_names_exactly_the_claims_each_scope_releases() {
        let account = full_account();
        for (scope, expected) in SCOPE_CLAIMS {
            let released = account_claims(&account, &[scope.to_string()]);
            let mut got: Vec<&str> = released.keys().map(String::as_str).collect();
            let mut want = expected.to_vec();
            got.sort_unstable();
            want.sort_unstable();
            assert_eq!(got, want, "scope {scope}");
        }
        for scope in ["openid", "offline_access"] {
            assert!(account_claims(&account, &[scope.to_string()]).is_empty(), "{scope}");
        }
        let listed: Vec<&str> = SCOPE_CLAIMS.iter().map(|(s, _)| *s).collect();
        for scope in SUPPORTED_SCOPES {
            assert!(listed.contains(scope) || ["openid", "offline_access"].contains(scope), "{scope}");
        }
    }
}
