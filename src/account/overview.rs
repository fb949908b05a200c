//! What the account page shows, worked out from plain values (the account, its links, the
//! configured upstreams): no store, no HTTP.

use serde::Serialize;

use crate::accounts::{Account, AccountKind, ClaimState, IdentityLink, OrgUnitState};
use crate::web;

/// A configured upstream as people know it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UpstreamName {
    pub id: String,
    pub name_vi: String,
    pub name_en: String,
}

impl UpstreamName {
    pub fn new(id: &str, name_vi: &str, name_en: &str) -> Self {
        UpstreamName { id: id.into(), name_vi: name_vi.into(), name_en: name_en.into() }
    }
}

/// One linked identity: a former system that knows the person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LinkView {
    pub upstream: String,
    /// The identity's subject at that system (names the link in the unlink form).
    pub subject: String,
    pub system_vi: String,
    pub system_en: String,
    /// When it was linked, Vietnam time.
    pub linked_at: String,
    /// When it was last used to log in, Vietnam time; None if never (imported or linked by
    /// an administrator and not used since).
    pub last_used: Option<String>,
    /// `upstream=…&subject=…`, percent-encoded: the query naming it on the unlink page.
    pub unlink_query: String,
}

/// An official's place in the new city structure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OfficialView {
    pub code: Option<String>,
    /// The unit's name and code, when determined.
    pub unit: Option<String>,
    /// `mapped`, `decided`, `ambiguous` (a split former unit, waiting for a decision) or
    /// `unknown`.
    pub unit_state: &'static str,
    pub position: Option<String>,
}

/// Everything "who I am" and "the systems that know me" show.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccountOverview {
    pub name: Option<String>,
    /// `citizen` or `official`.
    pub kind: &'static str,
    /// The number with only its last three digits shown (`—` without one).
    pub national_id: String,
    /// `verified`, `pending` (declared to a system that cannot verify it), `conflict` (held by
    /// another account, waiting for review) or `none`.
    pub national_id_state: &'static str,
    pub official: Option<OfficialView>,
    pub links: Vec<LinkView>,
    /// More than one link: any one of them may be unlinked (never the last).
    pub can_unlink: bool,
    /// Configured systems not linked yet, in the chooser's order.
    pub linkable: Vec<UpstreamName>,
}

/// The account page's view of `account` with its `links`, given the configured `upstreams`.
pub fn overview(account: &Account, links: &[IdentityLink], upstreams: &[UpstreamName]) -> AccountOverview {
    let name_of = |id: &str| {
        upstreams
            .iter()
            .find(|u| u.id == id)
            .map(|u| (u.name_vi.clone(), u.name_en.clone()))
            .unwrap_or_else(|| (id.to_string(), id.to_string()))
    };
    let (national_id, national_id_state) = match (&account.national_id, account.claim_state) {
        (Some(n), _) => (web::masked_number(Some(n)), "verified"),
        (None, Some(state)) => (
            web::masked_number(account.claimed_national_id.as_deref()),
            match state {
                ClaimState::Pending => "pending",
                ClaimState::Conflict => "conflict",
            },
        ),
        (None, None) => (web::masked_number(None), "none"),
    };
    let official = account.official.as_ref().map(|o| OfficialView {
        code: o.official_code.clone(),
        unit: o.org_unit.as_ref().map(|u| format!("{} ({})", u.name, u.code)),
        unit_state: match o.org_unit_state {
            OrgUnitState::Mapped => "mapped",
            OrgUnitState::Decided => "decided",
            OrgUnitState::Ambiguous => "ambiguous",
            OrgUnitState::Unknown => "unknown",
        },
        position: o.position.clone(),
    });
    let views: Vec<LinkView> = links
        .iter()
        .map(|l| {
            let (system_vi, system_en) = name_of(&l.upstream);
            LinkView {
                upstream: l.upstream.clone(),
                subject: l.subject.clone(),
                system_vi,
                system_en,
                linked_at: web::vietnam_time(l.linked_at),
                last_used: (l.last_login_at > 0).then(|| web::vietnam_time(l.last_login_at)),
                unlink_query: url::form_urlencoded::Serializer::new(String::new())
                    .append_pair("upstream", &l.upstream)
                    .append_pair("subject", &l.subject)
                    .finish(),
            }
        })
        .collect();
    let linkable = upstreams.iter().filter(|u| !links.iter().any(|l| l.upstream == u.id)).cloned().collect();
    AccountOverview {
        name: account.full_name.clone(),
        kind: match account.kind {
            AccountKind::Citizen => "citizen",
            AccountKind::Official => "official",
        },
        national_id,
        national_id_state,
        official,
        can_unlink: views.len() > 1,
        links: views,
        linkable,
    }
}

/// Whether the identity `upstream`/`subject` is one of `links` and may be unlinked: it must be
/// there, and not alone.
pub fn unlinkable<'a>(
    links: &'a [IdentityLink],
    upstream: &str,
    subject: &str,
) -> Result<&'a IdentityLink, Unlinkable> {
    let link =
        links.iter().find(|l| l.upstream == upstream && l.subject == subject).ok_or(Unlinkable::NotLinked)?;
    if links.len() < 2 {
        return Err(Unlinkable::LastLink);
    }
    Ok(link)
}

/// Why a link cannot be unlinked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unlinkable {
    NotLinked,
    LastLink,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounts::{AccountStatus, OfficialProfile, UnitRef};

    fn account() -> Account {
        Account {
            id: "a1".into(),
            sub: "s1".into(),
            kind: AccountKind::Citizen,
            status: AccountStatus::Active,
            national_id: Some("079190004512".into()),
            claimed_national_id: None,
            claim_state: None,
            full_name: Some("Nguyễn Thị Lan".into()),
            given_name: None,
            family_name: None,
            birthdate: Some("1990-03-14".into()),
            gender: None,
            email: None,
            phone: None,
            official: None,
            created_at: 1,
            updated_at: 1,
        }
    }

    fn link(upstream: &str, linked_at: i64, last: i64) -> IdentityLink {
        IdentityLink {
            upstream: upstream.into(),
            subject: format!("{upstream}-subject"),
            account_id: "a1".into(),
            method: "first_login".into(),
            linked_at,
            last_login_at: last,
        }
    }

    fn upstreams() -> Vec<UpstreamName> {
        vec![
            UpstreamName::new("hcm", "TP.HCM (cũ)", "Ho Chi Minh City (former)"),
            UpstreamName::new("bd", "Bình Dương (cũ)", "Binh Duong (former)"),
            UpstreamName::new("vneid", "VNeID", "VNeID"),
        ]
    }

    #[test]
    fn a_citizen_sees_only_the_last_three_digits_and_each_linked_system() {
        // 2025-07-01 00:30 UTC = 07:30 Vietnam time.
        let o = overview(&account(), &[link("hcm", 1_751_329_800, 0)], &upstreams());
        assert_eq!(o.national_id, "*********512");
        assert_eq!(o.national_id_state, "verified");
        assert_eq!(o.kind, "citizen");
        assert!(o.official.is_none());
        assert_eq!(o.links.len(), 1);
        assert_eq!(o.links[0].system_vi, "TP.HCM (cũ)");
        assert_eq!(o.links[0].system_en, "Ho Chi Minh City (former)");
        assert_eq!(o.links[0].linked_at, "07:30 01/07/2025");
        assert_eq!(o.links[0].last_used, None, "never used since it was linked");
        assert_eq!(o.links[0].unlink_query, "upstream=hcm&subject=hcm-subject");
        assert!(!o.can_unlink, "the only link");
        let linkable: Vec<_> = o.linkable.iter().map(|u| u.id.as_str()).collect();
        assert_eq!(linkable, vec!["bd", "vneid"], "the chooser's order, without linked ones");
        assert!(!serde_json::to_string(&o).unwrap().contains("079190004512"), "never the whole number");
    }

    #[test]
    fn a_pending_number_is_shown_masked_and_marked_unverified() {
        let a = Account {
            national_id: None,
            claimed_national_id: Some("079190004512".into()),
            claim_state: Some(ClaimState::Pending),
            ..account()
        };
        let o = overview(&a, &[link("brvt", 1, 2), link("hcm", 1, 3)], &upstreams());
        assert_eq!((o.national_id.as_str(), o.national_id_state), ("*********512", "pending"));
        assert!(o.can_unlink);
        assert_eq!(o.links[0].system_vi, "brvt", "an upstream no longer configured keeps its id");
        assert!(o.links[1].last_used.is_some());
        let none = Account { national_id: None, ..account() };
        assert_eq!(overview(&none, &[], &[]).national_id_state, "none");
    }

    #[test]
    fn an_official_sees_unit_and_position() {
        let a = Account {
            kind: AccountKind::Official,
            official: Some(OfficialProfile {
                official_code: Some("CB-1".into()),
                former_province: Some("bd".into()),
                legacy_org_unit: Some("25741".into()),
                org_unit: Some(UnitRef { code: "25750".into(), name: "Phường Thủ Dầu Một".into() }),
                org_unit_state: OrgUnitState::Mapped,
                org_unit_candidates: Vec::new(),
                position: Some("Chuyên viên".into()),
                roles: Vec::new(),
            }),
            ..account()
        };
        let o = overview(&a, &[link("bd", 1, 1)], &upstreams());
        let official = o.official.unwrap();
        assert_eq!(o.kind, "official");
        assert_eq!(official.unit.as_deref(), Some("Phường Thủ Dầu Một (25750)"));
        assert_eq!(official.unit_state, "mapped");
        assert_eq!(official.position.as_deref(), Some("Chuyên viên"));
    }

    #[test]
    fn only_an_own_link_among_several_may_be_unlinked() {
        let two = [link("hcm", 1, 1), link("bd", 2, 2)];
        assert_eq!(unlinkable(&two, "bd", "bd-subject").unwrap().upstream, "bd");
        assert_eq!(unlinkable(&two, "bd", "someone-else").unwrap_err(), Unlinkable::NotLinked);
        assert_eq!(unlinkable(&two[..1], "hcm", "hcm-subject").unwrap_err(), Unlinkable::LastLink);
    }
}
