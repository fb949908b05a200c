//! What the console's pages show, worked out from the operations' answers as plain values
//! (the templates only lay them out): the two records of a conflict row by row, the
//! operations facts with their labels, the language switch of a page, the audit page's day
//! bounds.
//!
//! Must not: read stores or change anything.

use serde::Serialize;
use serde_json::Value;

use crate::accounts::national_id::mask_any;
use crate::admin::ops::{ConflictReview, ConflictSide};
use crate::web::{self, Lang};

/// The same page in the other language: `path` with its query, `lang` replaced.
pub fn switch_lang_href(path: &str, query: Option<&str>, lang: Lang) -> String {
    let mut out = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        if k != "lang" && k != "done" {
            out.append_pair(&k, &v);
        }
    }
    out.append_pair("lang", lang.other().code());
    format!("{path}?{}", out.finish())
}

/// One line of the side-by-side comparison of a conflict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CompareRow {
    pub label_vi: &'static str,
    pub label_en: &'static str,
    pub existing: String,
    pub new: String,
    /// The two differ (the page marks it, in words as well as by style).
    pub differs: bool,
}

fn or_dash(v: Option<&str>) -> String {
    v.filter(|s| !s.is_empty()).unwrap_or("—").to_string()
}

/// What each former system asserted and when it was seen: `upstream/subject (linked …, last seen …)`.
fn identities(side: &ConflictSide) -> String {
    if side.links.is_empty() {
        return "—".into();
    }
    side.links
        .iter()
        .map(|l| {
            let seen = if l.last_login_at > 0 { web::vietnam_time(l.last_login_at) } else { "—".into() };
            format!("{} / {} ({} → {})", l.upstream, l.subject, web::vietnam_time(l.linked_at), seen)
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The two accounts of a conflict row by row, national IDs masked (the full numbers are on
/// each account's page, whose views are audited).
pub fn compare(review: &ConflictReview) -> Vec<CompareRow> {
    let (a, b) = (&review.existing, &review.new);
    let number = |s: &ConflictSide| {
        let verified = s.account.national_id.as_deref().map(mask_any);
        let claimed = s.account.claimed_national_id.as_deref().map(|n| format!("{} (?)", mask_any(n)));
        or_dash(verified.or(claimed).as_deref())
    };
    let rows: [(&str, &str, String, String); 8] = [
        (
            "Họ và tên",
            "Full name",
            or_dash(a.account.full_name.as_deref()),
            or_dash(b.account.full_name.as_deref()),
        ),
        (
            "Tên đã chuẩn hoá",
            "Folded name",
            or_dash(a.folded_name.as_deref()),
            or_dash(b.folded_name.as_deref()),
        ),
        (
            "Ngày sinh",
            "Birthdate",
            or_dash(a.account.birthdate.as_deref()),
            or_dash(b.account.birthdate.as_deref()),
        ),
        ("Giới tính", "Gender", or_dash(a.account.gender.as_deref()), or_dash(b.account.gender.as_deref())),
        ("Số định danh", "ID number", number(a), number(b)),
        ("Thư điện tử", "Email", or_dash(a.account.email.as_deref()), or_dash(b.account.email.as_deref())),
        (
            "Tạo lúc (giờ Việt Nam)",
            "Created (Vietnam time)",
            web::vietnam_time(a.account.created_at),
            web::vietnam_time(b.account.created_at),
        ),
        (
            "Hệ thống cũ (liên kết → lần cuối)",
            "Former systems (linked → last seen)",
            identities(a),
            identities(b),
        ),
    ];
    rows.into_iter()
        .map(|(label_vi, label_en, existing, new)| CompareRow {
            label_vi,
            label_en,
            differs: existing != new,
            existing,
            new,
        })
        .collect()
}

/// One fact of the operations page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Fact {
    pub key: String,
    pub label_vi: String,
    pub label_en: String,
    pub value: String,
}

/// The labels of the facts the console knows; others are shown under their own name, so
/// what `ops::operations` grows shows up without touching the page.
fn label(key: &str) -> Option<(&'static str, &'static str)> {
    Some(match key {
        "active_unit_set" => ("Bộ đơn vị hành chính đang dùng", "Active administrative-unit set"),
        "backchannel_logout_failures" => ("Đăng xuất kênh sau thất bại", "Failed back-channel logouts"),
        "accounts" => ("Số tài khoản", "Accounts"),
        "upstreams" => ("Hệ thống đăng nhập cũ", "Upstream login systems"),
        "import_runs" => ("Các lần nhập dữ liệu", "Import runs"),
        _ => return None,
    })
}

fn plain(v: &Value) -> String {
    match v {
        Value::Null => "—".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The facts of `ops::operations` (any serializable shape: each top-level field one fact).
pub fn facts(operations: &Value) -> Vec<Fact> {
    let Some(map) = operations.as_object() else { return Vec::new() };
    map.iter()
        .map(|(k, v)| {
            let (vi, en) = label(k).unwrap_or((k.as_str(), k.as_str()));
            Fact { key: k.clone(), label_vi: vi.to_string(), label_en: en.to_string(), value: plain(v) }
        })
        .collect()
}

/// The first second (Unix time) of a day in Vietnam (`YYYY-MM-DD`, as an `<input type=date>`
/// sends it), `days_after` days later; None for anything else.
pub fn vietnam_day_start(day: &str, days_after: i64) -> Option<i64> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let date = time::Date::parse(day.trim(), &format).ok()?;
    let date = date.checked_add(time::Duration::days(days_after))?;
    Some(date.midnight().assume_offset(time::macros::offset!(+7)).unix_timestamp())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::accounts::{Account, AccountKind, AccountStatus, ConflictRecord, IdentityLink};
    use serde_json::json;

    fn account(id: &str, birthdate: &str) -> Account {
        Account {
            id: id.into(),
            sub: format!("sub-{id}"),
            kind: AccountKind::Citizen,
            status: AccountStatus::Active,
            national_id: Some("074185001276".into()),
            claimed_national_id: None,
            claim_state: None,
            full_name: Some("Lê Thị Hòa".into()),
            given_name: None,
            family_name: None,
            birthdate: Some(birthdate.into()),
            gender: None,
            email: None,
            phone: None,
            official: None,
            created_at: 1_751_329_800,
            updated_at: 1,
        }
    }

    fn side(id: &str, birthdate: &str, upstream: &str) -> ConflictSide {
        ConflictSide {
            account: account(id, birthdate),
            folded_name: Some("le thi hoa".into()),
            links: vec![IdentityLink {
                upstream: upstream.into(),
                subject: format!("{upstream}-1"),
                account_id: id.into(),
                method: "first_login".into(),
                linked_at: 1_751_329_800,
                last_login_at: 0,
            }],
        }
    }

    #[test]
    fn a_conflict_is_compared_row_by_row_with_numbers_masked() {
        let review = ConflictReview {
            conflict: ConflictRecord {
                id: 1,
                national_id: "074185001276".into(),
                existing_account_id: "a".into(),
                new_account_id: "b".into(),
                upstream: "bd".into(),
                subject: "bd-1".into(),
                reason: "birthdate_mismatch".into(),
                detail: String::new(),
                created_at: 1,
                resolved_at: None,
                resolution: None,
            },
            existing: side("a", "1985-07-21", "hcm"),
            new: side("b", "1985-07-12", "bd"),
        };
        let rows = compare(&review);
        let birth = rows.iter().find(|r| r.label_en == "Birthdate").unwrap();
        assert!(birth.differs);
        assert_eq!((birth.existing.as_str(), birth.new.as_str()), ("1985-07-21", "1985-07-12"));
        let name = rows.iter().find(|r| r.label_en == "Folded name").unwrap();
        assert!(!name.differs);
        let systems = rows.last().unwrap();
        assert_eq!(systems.existing, "hcm / hcm-1 (07:30 01/07/2025 → —)");
        let text = serde_json::to_string(&rows).unwrap();
        assert!(!text.contains("074185001276"), "lists never show a whole number: {text}");
    }

    #[test]
    fn operations_facts_are_labelled_and_unknown_ones_still_shown() {
        let f = facts(&json!({ "active_unit_set": "2025-07", "accounts": 3, "new_thing": { "x": 1 } }));
        let by_key = |k: &str| f.iter().find(|x| x.key == k).unwrap().clone();
        assert_eq!(by_key("active_unit_set").label_en, "Active administrative-unit set");
        assert_eq!(by_key("accounts").value, "3");
        assert_eq!(by_key("new_thing").label_en, "new_thing");
        assert_eq!(by_key("new_thing").value, "{\"x\":1}");
        assert!(facts(&json!(null)).is_empty());
    }

    #[test]
    fn audit_days_are_vietnam_days() {
        // 00:00 on 1 July 2025 in Vietnam is 17:00 UTC the day before.
        assert_eq!(vietnam_day_start("2025-07-01", 0), Some(1_751_302_800));
        assert_eq!(vietnam_day_start("2025-07-01", 1), Some(1_751_302_800 + 86_400));
        for bad in ["", "01/07/2025", "2025-13-01", "2025-07-01T00:00"] {
            assert_eq!(vietnam_day_start(bad, 0), None, "{bad}");
        }
    }

    #[test]
    fn the_language_switch_keeps_the_page_and_drops_the_notice() {
        assert_eq!(
            switch_lang_href("/admin", Some("by=name&q=l%C3%AA&lang=vi&done=lock"), Lang::Vi),
            "/admin?by=name&q=l%C3%AA&lang=en"
        );
        assert_eq!(switch_lang_href("/admin/conflicts", None, Lang::En), "/admin/conflicts?lang=vi");
    }
}
