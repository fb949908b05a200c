//! Claim mapping: turns one upstream's claim names and formats into the gateway's profile.
//! (What the gateway releases to RPs per scope is `provider/scope_claims.rs`.)

use serde_json::{Map, Value};

use crate::accounts::Profile;
use crate::accounts::national_id::Gender;
use crate::config::{ClaimMapping, DateFormat, UpstreamSettings};

/// Looks up a claim by name; `a.b` reaches into nested objects.
fn lookup<'a>(claims: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    if let Some(v) = claims.get(name) {
        return Some(v);
    }
    let mut parts = name.split('.');
    let mut current = claims.get(parts.next()?)?;
    for part in parts {
        current = current.as_object()?.get(part)?;
    }
    Some(current)
}

fn text(claims: &Map<String, Value>, name: Option<&String>) -> Option<String> {
    let value = lookup(claims, name?)?;
    let s = match value {
        Value::String(s) => s.trim().to_string(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => return None,
    };
    if s.is_empty() { None } else { Some(s) }
}

fn list(claims: &Map<String, Value>, name: Option<&String>) -> Vec<String> {
    let Some(value) = name.and_then(|n| lookup(claims, n)) else { return Vec::new() };
    match value {
        Value::Array(items) => items
            .iter()
            .filter_map(|v| v.as_str())
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect(),
        Value::String(s) => {
            s.split([',', ' ']).map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect()
        }
        _ => Vec::new(),
    }
}

/// Converts a legacy date to ISO `YYYY-MM-DD`; None when it is not a real date.
pub fn normalize_date(raw: &str, format: DateFormat) -> Option<String> {
    let raw = raw.trim();
    let (y, m, d) = match format {
        DateFormat::Iso => {
            let mut it = raw.splitn(3, '-');
            (it.next()?, it.next()?, it.next()?)
        }
        DateFormat::DayMonthYear => {
            let mut it = raw.splitn(3, '/');
            let (d, m, y) = (it.next()?, it.next()?, it.next()?);
            (y, m, d)
        }
        DateFormat::Compact => {
            if raw.len() != 8 || !raw.is_ascii() {
                return None;
            }
            (&raw[0..4], &raw[4..6], &raw[6..8])
        }
    };
    let year: i32 = y.parse().ok()?;
    let month: u8 = m.parse().ok()?;
    let day: u8 = d.parse().ok()?;
    let month = time::Month::try_from(month).ok()?;
    let date = time::Date::from_calendar_date(year, month, day).ok()?;
    Some(format!("{:04}-{:02}-{:02}", date.year(), date.month() as u8, date.day()))
}

/// The gateway `acr` of one login: the upstream's `acr_claim` looked up in `acr_map`, or the
/// upstream's fixed `acr` when it has no such claim or the value is not mapped.
pub fn assurance(settings: &UpstreamSettings, claims: &Map<String, Value>) -> String {
    if let Some(value) = text(claims, settings.acr_claim.as_ref()) {
        if let Some(acr) = settings.acr_map.get(&value) {
            return acr.clone();
        }
        tracing::info!(upstream = %settings.id, "unmapped assurance claim value; using the upstream's acr");
    }
    settings.acr.clone()
}

/// Applies `mapping` to an upstream's claims.
pub fn map_claims(mapping: &ClaimMapping, claims: &Map<String, Value>) -> Profile {
    let birthdate = mapping.birthdate.as_ref().and_then(|b| {
        let raw = text(claims, Some(&b.claim().to_string()))?;
        let iso = normalize_date(&raw, b.format());
        if iso.is_none() {
            tracing::warn!(claim = b.claim(), "upstream birthdate is not a valid date; ignored");
        }
        iso
    });
    let gender = text(claims, mapping.gender.as_ref()).and_then(|g| {
        Gender::from_claim(&g).map(|g| match g {
            Gender::Male => "male".to_string(),
            Gender::Female => "female".to_string(),
        })
    });
    Profile {
        name: text(claims, mapping.name.as_ref()),
        given_name: text(claims, mapping.given_name.as_ref()),
        family_name: text(claims, mapping.family_name.as_ref()),
        username: text(claims, mapping.username.as_ref()),
        email: text(claims, mapping.email.as_ref()),
        phone: text(claims, mapping.phone.as_ref()),
        birthdate,
        gender,
        national_id: text(claims, mapping.national_id.as_ref()),
        official_code: text(claims, mapping.official_code.as_ref()),
        org_unit: text(claims, mapping.org_unit.as_ref()),
        position: text(claims, mapping.position.as_ref()),
        roles: list(claims, mapping.roles.as_ref()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DateClaim;
    use serde_json::json;

    #[test]
    fn legacy_date_formats_become_iso() {
        assert_eq!(normalize_date("1990-02-28", DateFormat::Iso).as_deref(), Some("1990-02-28"));
        assert_eq!(normalize_date("05/04/2003", DateFormat::DayMonthYear).as_deref(), Some("2003-04-05"));
        assert_eq!(normalize_date("19851231", DateFormat::Compact).as_deref(), Some("1985-12-31"));
        assert_eq!(normalize_date("31/02/2003", DateFormat::DayMonthYear), None);
        assert_eq!(normalize_date("2003-13-01", DateFormat::Iso), None);
        assert_eq!(normalize_date("1985123", DateFormat::Compact), None);
        assert_eq!(normalize_date("ngày xưa", DateFormat::Compact), None);
    }

    #[test]
    fn assurance_comes_from_the_mapped_claim_or_the_upstream_default() {
        let s = crate::config::Settings::from_toml(
            r#"
            issuer = "http://127.0.0.1:1"
            [[upstreams]]
            id = "vneid"
            profile = "vneid"
            name_vi = "x"
            name_en = "x"
            issuer = "https://sso.vneid.example"
            client_id = "gw"
            "#,
        )
        .unwrap();
        let u = &s.upstreams[0];
        let at = |claims: serde_json::Value| assurance(u, claims.as_object().unwrap());
        assert_eq!(at(json!({"LoaiTaiKhoan": 2})), crate::config::ACR_VNEID_LEVEL2);
        assert_eq!(at(json!({"LoaiTaiKhoan": "1"})), crate::config::ACR_VNEID_LEVEL1);
        assert_eq!(at(json!({"LoaiTaiKhoan": "LoA2"})), crate::config::ACR_VNEID_LEVEL2);
        // Unknown or missing: the upstream's own (lowest) level, never a higher one.
        assert_eq!(at(json!({"LoaiTaiKhoan": 9})), crate::config::ACR_VNEID_LEVEL1);
        assert_eq!(at(json!({})), crate::config::ACR_VNEID_LEVEL1);
    }

    #[test]
    fn each_province_claim_names_map_to_one_profile() {
        let mapping = ClaimMapping {
            name: Some("ho_ten".into()),
            national_id: Some("so_dinh_danh".into()),
            birthdate: Some(DateClaim::Formatted {
                claim: "ngay_sinh".into(),
                format: DateFormat::DayMonthYear,
            }),
            gender: Some("gioi_tinh".into()),
            roles: Some("vai_tro".into()),
            org_unit: Some("don_vi.ma".into()),
            official_code: Some("ma_can_bo".into()),
            ..ClaimMapping::default()
        };
        let claims = json!({
            "ho_ten": "Trần Thị Bích",
            "so_dinh_danh": "074185000123",
            "ngay_sinh": "01/02/1985",
            "gioi_tinh": "Nữ",
            "vai_tro": ["chuyen-vien", "van-thu"],
            "don_vi": {"ma": "25747"},
            "ma_can_bo": 12345
        });
        let p = map_claims(&mapping, claims.as_object().unwrap());
        assert_eq!(p.name.as_deref(), Some("Trần Thị Bích"));
        assert_eq!(p.birthdate.as_deref(), Some("1985-02-01"));
        assert_eq!(p.gender.as_deref(), Some("female"));
        assert_eq!(p.roles, vec!["chuyen-vien", "van-thu"]);
        assert_eq!(p.org_unit.as_deref(), Some("25747"));
        assert_eq!(p.official_code.as_deref(), Some("12345"));
        assert_eq!(p.email, None, "unmapped claims stay empty");
    }
}
