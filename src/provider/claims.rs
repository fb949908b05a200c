//! Which account attributes each scope releases, shared by ID tokens and `/userinfo`.

use serde_json::{Map, Value, json};

use crate::accounts::{Account, AccountKind};

/// Scopes the gateway understands (advertised in discovery).
pub const SUPPORTED_SCOPES: &[&str] =
    &["openid", "profile", "email", "phone", "national_id", "official", "offline_access"];

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
                "org_unit": o.org_unit,
                "former_province": o.former_province,
                "position": o.position,
                "roles": o.roles,
            }),
        );
    }
    m
}
