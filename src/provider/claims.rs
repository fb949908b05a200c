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
    app: &crate::app::AppState,
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
