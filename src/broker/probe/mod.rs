//! `sso-gateway upstreams probe`: what an operator can check about each upstream from the
//! gateway's side before (and after) go-live, and the exact URLs the upstream's operator must
//! register on theirs.
//!
//! Owns: the probe of each kind (`oidc.rs`: discovery, issuer, endpoints, keys, client and
//! redirect URI; `cas.rs`: login page and ticket validation; `ldap.rs`: service-account bind,
//! bases and a test user), the registration list and the report (text and JSON). Every call is
//! bounded by the upstream's `timeout`. Must not: log in anyone, change anything at the
//! upstream, or print a secret.

mod cas;
mod ldap;
mod oidc;

use std::fmt::Write as _;

use serde::Serialize;

use super::http_client::UpstreamHttp;
use crate::config::{Protocol, Settings, UpstreamSettings};

/// The verdict of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    /// Works, but something an operator should know (a missing optional feature).
    Warn,
    Fail,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        }
    }
}

/// One thing checked, with what was seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub check: &'static str,
    pub status: Status,
    pub detail: String,
}

impl Check {
    pub fn ok(check: &'static str, detail: impl Into<String>) -> Self {
        Check { check, status: Status::Ok, detail: detail.into() }
    }
    pub fn warn(check: &'static str, detail: impl Into<String>) -> Self {
        Check { check, status: Status::Warn, detail: detail.into() }
    }
    pub fn fail(check: &'static str, detail: impl Into<String>) -> Self {
        Check { check, status: Status::Fail, detail: detail.into() }
    }
}

/// One item the upstream's operator must register or grant on their side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Registration {
    pub what: &'static str,
    pub value: String,
}

fn reg(what: &'static str, value: impl Into<String>) -> Registration {
    Registration { what, value: value.into() }
}

/// The probe of one upstream.
#[derive(Debug, Clone, Serialize)]
pub struct UpstreamReport {
    pub id: String,
    pub kind: &'static str,
    /// No check failed.
    pub ok: bool,
    pub checks: Vec<Check>,
    pub register: Vec<Registration>,
    /// How long the checks of this upstream took.
    pub latency_ms: u64,
}

/// What the command line adds to the configuration.
#[derive(Debug, Clone, Default)]
pub struct ProbeOptions {
    /// A login name the directory upstreams must find (`--ldap-user`).
    pub ldap_user: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("no upstream with id {0:?} in the configuration (known: {1})")]
    UnknownUpstream(String, String),
    #[error("cannot build the outbound HTTP client: {0}")]
    Http(String),
}

/// Probes every configured upstream, or only `only`, one after the other (each bounded by
/// its own `timeout`).
pub async fn probe(
    settings: &Settings,
    only: Option<&str>,
    options: &ProbeOptions,
) -> Result<Vec<UpstreamReport>, ProbeError> {
    let chosen: Vec<&UpstreamSettings> =
        settings.upstreams.iter().filter(|u| only.is_none_or(|id| u.id == id)).collect();
    if let Some(id) = only
        && chosen.is_empty()
    {
        let known: Vec<&str> = settings.upstreams.iter().map(|u| u.id.as_str()).collect();
        return Err(ProbeError::UnknownUpstream(id.to_string(), known.join(", ")));
    }
    let client = UpstreamHttp::build_client_with_roots(settings.outbound.ca_file.as_deref())
        .map_err(|e| ProbeError::Http(e.to_string()))?;
    let issuer = settings.issuer();
    let mut reports = Vec::with_capacity(chosen.len());
    for u in chosen {
        let started = std::time::Instant::now();
        let http = UpstreamHttp::new(client.clone(), u.timeout);
        let checks = match &u.protocol {
            Protocol::Oidc(o) => oidc::probe(u, o, &http, issuer).await,
            Protocol::Cas(c) => cas::probe(u, c, &http, issuer).await,
            Protocol::Ldap(l) => {
                ldap::probe(u, l, settings.outbound.ca_file.as_deref(), options.ldap_user.as_deref()).await
            }
            Protocol::Certificate(c) => certificate_checks(c, &client, u.timeout).await,
        };
        reports.push(UpstreamReport {
            id: u.id.clone(),
            kind: u.kind().as_str(),
            ok: checks.iter().all(|c| c.status != Status::Fail),
            checks,
            register: registration(issuer, u),
            latency_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        });
    }
    Ok(reports)
}

/// A certificate upstream has no operator to register with: what can be checked is that
/// its CA bundle reads and each CRL loads (files read, URLs fetched as the gateway would).
async fn certificate_checks(
    c: &crate::config::CertificateLoginSettings,
    client: &reqwest::Client,
    timeout: std::time::Duration,
) -> Vec<Check> {
    let mut checks = vec![match crate::tls::read_anchors(&c.ca_file) {
        Ok(anchors) => Check::ok("CA bundle", format!("{} trusted CA(s)", anchors.len())),
        Err(e) => Check::fail("CA bundle", e),
    }];
    for path in &c.crl_files {
        let loaded = std::fs::read(path).map_err(|e| e.to_string()).and_then(|b| crate::tls::parse_crl(&b));
        checks.push(match loaded {
            Ok(_) => Check::ok("CRL file", path.display().to_string()),
            Err(e) => Check::fail("CRL file", format!("{}: {e}", path.display())),
        });
    }
    for url in &c.crl_urls {
        checks.push(match super::fetch_crl(client, url, timeout * super::CRL_TIMEOUT_FACTOR).await {
            Ok(_) => Check::ok("CRL download", url.clone()),
            Err(e) => Check::fail("CRL download", format!("{url}: {e}")),
        });
    }
    if c.crl_files.is_empty() && c.crl_urls.is_empty() {
        let what = match (c.ocsp, c.revocation) {
            (true, crate::config::RevocationPolicy::FailClosed) => {
                "none configured: only certificates naming an OCSP responder can log in"
            }
            (true, _) => {
                "none configured: revocation is checked by OCSP only, where a certificate names a responder"
            }
            (false, _) => "none configured: revocation is not checked (fail_open)",
        };
        checks.push(Check::warn("CRL", what));
    }
    checks
}

/// `{issuer}/upstream/{id}/{what}`: the gateway's URLs for one upstream.
pub fn upstream_url(issuer: &str, id: &str, what: &str) -> String {
    format!("{}/upstream/{id}/{what}", issuer.trim_end_matches('/'))
}

/// Claim (or attribute) names the upstream must release, from the claim mapping and the
/// assurance claim, in a stable order without repeats.
pub fn released_claims(u: &UpstreamSettings) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut add = |name: &str| {
        if !name.is_empty() && !out.iter().any(|x| x == name) {
            out.push(name.to_string());
        }
    };
    u.claims.names().for_each(&mut add);
    if let Some(acr) = &u.acr_claim {
        add(acr);
    }
    out
}

/// Everything the upstream's operator must register or grant for this gateway, exactly.
pub fn registration(issuer: &str, u: &UpstreamSettings) -> Vec<Registration> {
    let url = |what: &str| upstream_url(issuer, &u.id, what);
    let claims = released_claims(u);
    let with_birthdate_format = |mut list: Vec<String>| {
        if let Some(b) = &u.claims.birthdate {
            let format = match b.format() {
                crate::config::DateFormat::Iso => "YYYY-MM-DD",
                crate::config::DateFormat::DayMonthYear => "DD/MM/YYYY",
                crate::config::DateFormat::Compact => "YYYYMMDD",
            };
            for item in list.iter_mut().filter(|c| *c == b.claim()) {
                item.push_str(&format!(" ({format})"));
            }
        }
        list
    };
    match &u.protocol {
        Protocol::Oidc(o) => {
            let mut out = vec![
                reg("client id", o.client_id.clone()),
                reg("redirect URI", url("callback")),
                reg("post-logout redirect URI", url("logged-out")),
                reg("back-channel logout URI (session required: sid)", url("backchannel-logout")),
                reg(
                    "client authentication",
                    if o.client_secret.is_some() {
                        "client_secret_basic (confidential client)"
                    } else {
                        "none (public client)"
                    },
                ),
                reg("grant", "authorization_code with PKCE S256; ID tokens signed RS256, ES256 or EdDSA"),
                reg("scopes", o.scopes.join(" ")),
            ];
            if !claims.is_empty() {
                out.push(reg("claims to release", with_birthdate_format(claims).join(", ")));
            }
            out
        }
        Protocol::Cas(cas) => {
            let pattern = format!(
                "^{}/upstream/{}/(callback|logged-out)(\\?.*)?$",
                regex_escape(issuer.trim_end_matches('/')),
                regex_escape(&u.id)
            );
            let single_logout = cas.single_logout;
            let mut attributes = claims;
            if let Some(subject) = cas.subject_attribute.clone() {
                attributes.retain(|a| *a != subject);
                attributes.insert(0, format!("{subject} (the stable subject)"));
            }
            attributes.retain(|a| a != "user");
            let mut out = vec![
                reg("service URL pattern (regex)", pattern),
                reg("service URL at login", format!("{}?attempt=…", url("callback"))),
                reg("service URL at logout", format!("{}?state=…", url("logged-out"))),
                reg(
                    "single logout",
                    if single_logout {
                        "back-channel: SAML LogoutRequest POSTed to the service URL (the gateway accepts it only from the CAS server's addresses)"
                    } else {
                        "off (cas.single_logout = false)"
                    },
                ),
                reg(
                    "protocol",
                    "CAS 3.0 (/p3/serviceValidate, attributes released); CAS 2.0 only without attributes",
                ),
            ];
            if !attributes.is_empty() {
                out.push(reg("attributes to release", with_birthdate_format(attributes).join(", ")));
            }
            out
        }
        Protocol::Certificate(c) => vec![
            reg("accepted CAs", c.ca_file.display().to_string()),
            reg(
                "certificates",
                "key usage digitalSignature, extended key usage clientAuth when listed; the personal number in the subject (e.g. UID CCCD:…)",
            ),
        ],
        Protocol::Ldap(l) => {
            let mut read = vec![l.subject_attribute.clone()];
            for a in claims.into_iter().chain(l.attributes.iter().cloned()) {
                if a != "groups" && !read.contains(&a) {
                    read.push(a);
                }
            }
            let mut out = vec![
                reg("service account", l.bind_dn.clone()),
                reg(
                    "service account rights",
                    format!("bind; search (subtree) under {} and read: {}", l.user_base, read.join(", ")),
                ),
            ];
            if let Some(groups) = &l.group_base {
                out.push(reg(
                    "group rights",
                    format!("search (subtree) under {groups} and read: {}", l.group_attribute),
                ));
            }
            out.push(reg(
                "users",
                "simple bind with their own DN and password (the directory's password policy applies)",
            ));
            out.push(reg(
                "network",
                format!(
                    "the gateway connects to {}{}",
                    l.url,
                    if l.starttls { " with StartTLS" } else { "" }
                ),
            ));
            out
        }
    }
}

fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Records each report in the upstream status the operations page and the admin API show
/// ([`super::status`], the shared state store): passed, or failed with its first failed
/// check as the reason, with the time the checks took, marked as the probe's.
pub async fn record(store: &crate::state::StateStore, reports: &[UpstreamReport], at: i64) {
    for r in reports {
        let failed = r.checks.iter().find(|c| c.status == Status::Fail);
        let reason = failed.map(|c| format!("{}: {}", c.check, c.detail));
        let latency = std::time::Duration::from_millis(r.latency_ms);
        super::status::record_probe(store, &r.id, at, latency, reason.as_deref().map_or(Ok(()), Err)).await;
    }
}

/// Whether every report passed (the command's exit status).
pub fn all_ok(reports: &[UpstreamReport]) -> bool {
    reports.iter().all(|r| r.ok)
}

/// The human-readable report: one `OK`/`FAIL` line per upstream, its checks, then what to
/// register.
pub fn render_text(reports: &[UpstreamReport]) -> String {
    let mut out = String::new();
    for r in reports {
        let verdict = if r.ok { "OK" } else { "FAIL" };
        let _ = writeln!(out, "{verdict} {} ({})", r.id, r.kind);
        for c in &r.checks {
            let _ = writeln!(out, "  {:<4} {:<22} {}", c.status.label(), c.check, c.detail);
        }
        if !r.register.is_empty() {
            let _ = writeln!(out, "  register at the upstream:");
            for item in &r.register {
                let _ = writeln!(out, "    {:<48} {}", item.what, item.value);
            }
        }
        out.push('\n');
    }
    let failed: Vec<&str> = reports.iter().filter(|r| !r.ok).map(|r| r.id.as_str()).collect();
    if failed.is_empty() {
        let _ = writeln!(out, "{} upstream(s) probed, all OK", reports.len());
    } else {
        let _ = writeln!(out, "{} upstream(s) probed, FAILED: {}", reports.len(), failed.join(", "));
    }
    out
}

/// The machine-readable report.
pub fn render_json(reports: &[UpstreamReport]) -> serde_json::Value {
    serde_json::json!({ "ok": all_ok(reports), "upstreams": reports })
}

/// An error with its causes, on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        let text = inner.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        source = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        let demo = include_str!("../../../config/demo.toml")
            .replace("{gateway_port}", "8080")
            .replace("{data_dir}", "/tmp/x")
            .replace("{hcm_port}", "8081")
            .replace("{bd_port}", "8082")
            .replace("{brvt_port}", "8083")
            .replace("{vneid_port}", "8086")
            .replace("{portal_port}", "8084")
            .replace("{documents_port}", "8085")
            .replace("issuer = \"http://127.0.0.1:8080\"", "issuer = \"https://sso.tphcm.gov.vn/\"");
        Settings::from_toml(&demo).unwrap()
    }

    fn upstream<'a>(s: &'a Settings, id: &str) -> &'a UpstreamSettings {
        s.upstreams.iter().find(|u| u.id == id).unwrap()
    }

    fn value<'a>(list: &'a [Registration], what: &str) -> &'a str {
        &list.iter().find(|r| r.what == what).unwrap_or_else(|| panic!("no {what} in {list:?}")).value
    }

    #[test]
    fn an_oidc_upstream_registers_callback_post_logout_and_backchannel_uris() {
        let s = settings();
        let r = registration(s.issuer(), upstream(&s, "hcm"));
        assert_eq!(value(&r, "redirect URI"), "https://sso.tphcm.gov.vn/upstream/hcm/callback");
        assert_eq!(value(&r, "post-logout redirect URI"), "https://sso.tphcm.gov.vn/upstream/hcm/logged-out");
        assert_eq!(
            value(&r, "back-channel logout URI (session required: sid)"),
            "https://sso.tphcm.gov.vn/upstream/hcm/backchannel-logout"
        );
        assert_eq!(value(&r, "client id"), "sso-gateway");
        assert!(value(&r, "client authentication").starts_with("client_secret_basic"));
        assert_eq!(value(&r, "scopes"), "openid profile email");
        let claims = value(&r, "claims to release");
        assert!(claims.contains("citizen_id") && claims.contains("groups"), "{claims}");
    }

    #[test]
    fn vneid_releases_its_profile_claims_with_the_date_format_and_level() {
        let s = settings();
        let r = registration(s.issuer(), upstream(&s, "vneid"));
        let claims = value(&r, "claims to release");
        for c in ["SoDinhDanh", "HoVaTen", "NgayThangNamSinh (YYYYMMDD)", "LoaiTaiKhoan"] {
            assert!(claims.contains(c), "{c} missing in {claims}");
        }
    }

    #[test]
    fn a_cas_upstream_registers_one_pattern_for_login_and_logout_with_the_subject_first() {
        let s = settings();
        let r = registration(s.issuer(), upstream(&s, "brvt"));
        let pattern = value(&r, "service URL pattern (regex)");
        assert_eq!(pattern, r"^https://sso\.tphcm\.gov\.vn/upstream/brvt/(callback|logged-out)(\?.*)?$");
        assert!(value(&r, "single logout").starts_with("back-channel"));
        let attributes = value(&r, "attributes to release");
        assert!(attributes.starts_with("uid (the stable subject)"), "{attributes}");
        assert!(attributes.contains("dob (YYYYMMDD)"), "{attributes}");
        assert!(!attributes.split(", ").any(|a| a == "user"), "cas:user is not an attribute: {attributes}");
    }

    #[test]
    fn a_directory_upstream_lists_the_rights_of_its_service_account() {
        let s = Settings::from_toml(
            r#"
            issuer = "https://sso.tphcm.gov.vn"
            [[upstreams]]
            id = "officials"
            kind = "ldap"
            name_vi = "x"
            name_en = "x"
            [upstreams.ldap]
            url = "ldaps://dir.tphcm.gov.vn"
            bind_dn = "cn=sso-gateway,ou=services,dc=tphcm,dc=gov,dc=vn"
            bind_password = "pw-0123456789"
            user_base = "ou=people,dc=tphcm,dc=gov,dc=vn"
            group_base = "ou=groups,dc=tphcm,dc=gov,dc=vn"
            [upstreams.claims]
            name = "displayName"
            roles = "groups"
            "#,
        )
        .unwrap();
        let r = registration(s.issuer(), &s.upstreams[0]);
        assert_eq!(value(&r, "service account"), "cn=sso-gateway,ou=services,dc=tphcm,dc=gov,dc=vn");
        let rights = value(&r, "service account rights");
        assert!(rights.contains("under ou=people,dc=tphcm,dc=gov,dc=vn"), "{rights}");
        assert!(rights.contains("read: entryUUID, displayName"), "subject attribute first: {rights}");
        assert!(!rights.contains("groups"), "groups come from the group search: {rights}");
        assert!(value(&r, "group rights").ends_with("read: cn"));
        assert!(!format!("{r:?}").contains("pw-0123456789"), "no secret in the report");
    }

    #[test]
    fn the_text_report_has_one_verdict_line_per_upstream_and_the_json_the_same_verdicts() {
        let reports = vec![
            UpstreamReport {
                id: "hcm".into(),
                kind: "oidc",
                ok: true,
                checks: vec![Check::ok("discovery", "fetched"), Check::warn("logout", "no end_session")],
                register: vec![reg("redirect URI", "https://x/upstream/hcm/callback")],
                latency_ms: 12,
            },
            UpstreamReport {
                id: "brvt".into(),
                kind: "cas",
                ok: false,
                checks: vec![Check::fail("login page", "connection refused")],
                register: Vec::new(),
                latency_ms: 3,
            },
        ];
        let text = render_text(&reports);
        assert!(text.lines().any(|l| l == "OK hcm (oidc)"), "{text}");
        assert!(text.lines().any(|l| l == "FAIL brvt (cas)"), "{text}");
        assert!(text.contains("WARN logout"), "{text}");
        assert!(text.trim_end().ends_with("FAILED: brvt"), "{text}");
        assert!(!all_ok(&reports));
        let json = render_json(&reports);
        assert_eq!(json["ok"], false);
        assert_eq!(json["upstreams"][1]["checks"][0]["status"], "fail");
        assert_eq!(json["upstreams"][0]["register"][0]["value"], "https://x/upstream/hcm/callback");
    }

    #[tokio::test]
    async fn an_unknown_upstream_id_is_an_error_naming_the_known_ones() {
        let s = settings();
        let e = probe(&s, Some("nope"), &ProbeOptions::default()).await.unwrap_err();
        assert!(e.to_string().contains("hcm, bd, brvt, vneid"), "{e}");
    }
}
