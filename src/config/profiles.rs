//! Ready-made upstream profiles: claim names and assurance mapping of well-known systems, so
//! an operator writes `profile = "vneid"` instead of copying them. Keys set explicitly in
//! the upstream's table always win over the profile.

use serde::Deserialize;

use super::{
    ACR_PASSWORD, ACR_VNEID_LEVEL1, ACR_VNEID_LEVEL2, DateClaim, DateFormat, OidcSettings, Protocol,
    UpstreamSettings,
};

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamProfile {
    /// The national electronic identification (VNeID) / national public-service portal login
    /// (OpenID Connect). Its claims: `SoDinhDanh` (12-digit personal ID number), `HoVaTen`,
    /// `NgayThangNamSinh` (yyyyMMdd), `LoaiTaiKhoan` (assurance level of the account: 1 =
    /// registered online, 2 = verified in person). It verified the numbers it asserts, so it is
    /// trusted to link citizens by them (`linking.trust_national_id`, unless set explicitly).
    Vneid,
}

impl UpstreamProfile {
    pub fn as_str(self) -> &'static str {
        match self {
            UpstreamProfile::Vneid => "vneid",
        }
    }
}

/// Fills what the profile knows into `u` where the configuration left it unset
/// (`explicit_trust`: the table set `linking.trust_national_id` itself).
pub(super) fn apply(u: &mut UpstreamSettings, explicit_trust: bool) {
    let Protocol::Oidc(OidcSettings { profile: Some(profile), .. }) = u.protocol else { return };
    match profile {
        UpstreamProfile::Vneid => {
            let c = &mut u.claims;
            c.national_id.get_or_insert_with(|| "SoDinhDanh".into());
            c.name.get_or_insert_with(|| "HoVaTen".into());
            c.birthdate.get_or_insert_with(|| DateClaim::Formatted {
                claim: "NgayThangNamSinh".into(),
                format: DateFormat::Compact,
            });
            c.email.get_or_insert_with(|| "email".into());
            c.phone.get_or_insert_with(|| "phone_number".into());
            u.acr_claim.get_or_insert_with(|| "LoaiTaiKhoan".into());
            if u.acr_map.is_empty() {
                for (value, acr) in [
                    ("1", ACR_VNEID_LEVEL1),
                    ("2", ACR_VNEID_LEVEL2),
                    ("LoA1", ACR_VNEID_LEVEL1),
                    ("LoA2", ACR_VNEID_LEVEL2),
                ] {
                    u.acr_map.insert(value.into(), acr.into());
                }
            }
            // A login whose level the claim does not tell counts as the lower e-ID level.
            if u.acr == ACR_PASSWORD {
                u.acr = ACR_VNEID_LEVEL1.into();
            }
            // The national e-ID verified the numbers it asserts: link citizens by them.
            if !explicit_trust {
                u.linking.trust_national_id = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Settings;

    #[test]
    fn the_vneid_profile_fills_claims_and_assurance_but_explicit_keys_win() {
        let s = Settings::from_toml(
            r#"
            issuer = "http://127.0.0.1:1"
            [[upstreams]]
            id = "vneid"
            profile = "vneid"
            name_vi = "VNeID"
            name_en = "VNeID"
            issuer = "https://sso.vneid.example"
            client_id = "tphcm"
            [upstreams.claims]
            name = "ten_day_du"
            "#,
        )
        .unwrap();
        let u = &s.upstreams[0];
        assert_eq!(u.claims.national_id.as_deref(), Some("SoDinhDanh"));
        assert_eq!(u.claims.name.as_deref(), Some("ten_day_du"), "explicit keys win");
        assert_eq!(u.claims.birthdate.as_ref().map(|b| b.claim()), Some("NgayThangNamSinh"));
        assert_eq!(u.acr_claim.as_deref(), Some("LoaiTaiKhoan"));
        assert_eq!(u.acr_map["2"], super::ACR_VNEID_LEVEL2);
        assert_eq!(u.acr, super::ACR_VNEID_LEVEL1);
        assert_eq!(u.acr_values(), vec![super::ACR_VNEID_LEVEL1, super::ACR_VNEID_LEVEL2]);
        assert!(u.linking.trust_national_id, "the national e-ID verified its numbers");
    }

    #[test]
    fn an_explicit_linking_trust_wins_over_the_profile() {
        let s = Settings::from_toml(
            r#"
            issuer = "http://127.0.0.1:1"
            [[upstreams]]
            id = "vneid"
            profile = "vneid"
            name_vi = "VNeID"
            name_en = "VNeID"
            issuer = "https://sso.vneid.example"
            client_id = "tphcm"
            [upstreams.linking]
            trust_national_id = false
            "#,
        )
        .unwrap();
        assert!(!s.upstreams[0].linking.trust_national_id);
    }
}
