//! `sso-gateway upstreams probe` as an operator runs it, against the simulated provincial
//! systems, the simulated VNeID and a real `slapd`: for each kind a reachable upstream passes,
//! a down one (a closed port) and a misconfigured one (wrong issuer or secret, wrong CAS
//! base URL, wrong bind password) fail with a reason, and the exit status says so.

use std::path::Path;
use std::process::Output;

use serde_json::Value;

use crate::helpers::*;
use crate::slapd::{SERVICE_DN, SUFFIX, Slapd};

/// A loopback port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn oidc(id: &str, issuer: &str, client_id: &str, secret: &str, extra: &str) -> String {
    format!(
        "[[upstreams]]\nid = \"{id}\"\nname_vi = \"{id}\"\nname_en = \"{id}\"\nissuer = \"{issuer}\"\n\
         client_id = \"{client_id}\"\nclient_secret = \"{secret}\"\ntimeout = \"2s\"\n{extra}\n"
    )
}

fn cas(id: &str, server: &str) -> String {
    format!(
        "[[upstreams]]\nid = \"{id}\"\nkind = \"cas\"\nname_vi = \"{id}\"\nname_en = \"{id}\"\ntimeout = \"2s\"\n\
         [upstreams.cas]\nserver = \"{server}\"\nsubject_attribute = \"uid\"\n[upstreams.claims]\nname = \"fullName\"\n"
    )
}

/// Writes a gateway configuration with these upstreams and runs the probe on it.
async fn probe(upstreams: &str, args: &[&str]) -> (Output, String) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gateway.toml");
    let text = format!(
        "issuer = \"http://127.0.0.1:8080\"\n[accounts]\nurl = \"sqlite://{}/accounts.db?mode=rwc\"\n{upstreams}",
        dir.path().display()
    );
    std::fs::write(&config, text).unwrap();
    // tokio's process: the simulated systems run on this test's runtime while the probe runs.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_sso-gateway"))
        .env_remove("SSO_GATEWAY_CONFIG")
        .args(["upstreams", "probe", "--config"])
        .arg(&config)
        .args(args)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    (out, stdout)
}

/// The check lines of one upstream's section of the text report.
fn section<'a>(report: &'a str, id: &str) -> Vec<&'a str> {
    let mut lines = report.lines().skip_while(|l| !(l.ends_with(')') && l.split(' ').nth(1) == Some(id)));
    let mut out: Vec<&str> = lines.next().into_iter().collect();
    out.extend(lines.take_while(|l| !l.is_empty()));
    out
}

fn assert_line(report: &str, id: &str, starts: &str, contains: &str) {
    let lines = section(report, id);
    assert!(
        lines.iter().any(|l| l.trim_start().starts_with(starts) && l.contains(contains)),
        "{id}: no line starting {starts:?} containing {contains:?} in\n{report}"
    );
}

#[tokio::test]
async fn oidc_and_vneid_upstreams_pass_when_reachable_and_fail_when_down_or_misconfigured() {
    let sys = TestSystem::start().await;
    let hcm = &sys.idps["hcm"].issuer;
    let vneid = &sys.idps["vneid"].issuer;
    let upstreams = [
        oidc("hcm", hcm, "sso-gateway", "gateway-secret-hcm", ""),
        oidc("vneid", vneid, "sso-gateway-tphcm", "gateway-secret-vneid", "profile = \"vneid\""),
        oidc("down", &format!("http://127.0.0.1:{}/realms/x", closed_port()), "gw", "s", ""),
        // The same system under a name it does not call itself.
        oidc("wrong-issuer", &hcm.replace("127.0.0.1", "localhost"), "sso-gateway", "gateway-secret-hcm", ""),
        oidc("wrong-secret", hcm, "sso-gateway", "not-the-secret", ""),
    ]
    .concat();
    let (out, report) = probe(&upstreams, &[]).await;
    assert_eq!(out.status.code(), Some(1), "a failed upstream fails the command:\n{report}");
    for ok in ["hcm", "vneid"] {
        assert!(report.lines().any(|l| l == format!("OK {ok} (oidc)")), "{ok} passes:\n{report}");
        assert_line(&report, ok, "OK   issuer", "matches the configuration");
        assert_line(&report, ok, "OK   keys", "signing key(s)");
        assert_line(&report, ok, "OK   client and redirect", "accepts");
        assert_line(&report, ok, "OK   client authentication", "accepts the client credentials");
        assert_line(
            &report,
            ok,
            "post-logout redirect URI",
            &format!("http://127.0.0.1:8080/upstream/{ok}/logged-out"),
        );
        assert_line(&report, ok, "redirect URI", &format!("http://127.0.0.1:8080/upstream/{ok}/callback"));
        assert_line(&report, ok, "back-channel logout URI", "/backchannel-logout");
    }
    assert_line(&report, "vneid", "claims to release", "SoDinhDanh");
    assert!(report.lines().any(|l| l == "FAIL down (oidc)"), "{report}");
    assert_line(&report, "down", "FAIL discovery", "/.well-known/openid-configuration");
    assert!(report.lines().any(|l| l == "FAIL wrong-issuer (oidc)"), "{report}");
    assert_line(&report, "wrong-issuer", "FAIL issuer", hcm);
    assert!(report.lines().any(|l| l == "FAIL wrong-secret (oidc)"), "{report}");
    assert_line(&report, "wrong-secret", "FAIL client authentication", "client_secret");
    assert!(
        !report.contains("not-the-secret") && !report.contains("gateway-secret-hcm"),
        "no secret printed"
    );
    assert!(report.trim_end().ends_with("FAILED: down, wrong-issuer, wrong-secret"), "{report}");

    // One upstream, as JSON: exit 0 when it passes.
    let (out, json) = probe(&upstreams, &["--id", "vneid", "--format", "json"]).await;
    assert!(out.status.success(), "{json}\n{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["upstreams"].as_array().unwrap().len(), 1);
    assert_eq!(v["upstreams"][0]["id"], "vneid");
    let (out, _) = probe(&upstreams, &["--id", "nope"]).await;
    assert_eq!(out.status.code(), Some(2), "an unknown id is a usage error");
    assert!(String::from_utf8_lossy(&out.stderr).contains("hcm, vneid, down"));
}

#[tokio::test]
async fn cas_upstreams_pass_when_reachable_and_fail_when_down_or_misconfigured() {
    let sys = TestSystem::start().await;
    let brvt = &sys.idps["brvt"].issuer;
    let upstreams = [
        cas("brvt", brvt),
        cas("down", &format!("http://127.0.0.1:{}/cas", closed_port())),
        // A base URL that is not the CAS server's.
        cas("wrong-base", &format!("{brvt}/wrong")),
    ]
    .concat();
    let (out, report) = probe(&upstreams, &[]).await;
    assert_eq!(out.status.code(), Some(1), "{report}");
    assert!(report.lines().any(|l| l == "OK brvt (cas)"), "{report}");
    assert_line(&report, "brvt", "OK   login page", "answered");
    assert_line(&report, "brvt", "OK   ticket validation", "CAS 3.0");
    assert_line(&report, "brvt", "OK   single logout", "127.0.0.1");
    assert_line(
        &report,
        "brvt",
        "service URL pattern",
        r"^http://127\.0\.0\.1:8080/upstream/brvt/(callback|logged-out)(\?.*)?$",
    );
    assert_line(&report, "brvt", "attributes to release", "uid (the stable subject), fullName");
    assert!(report.lines().any(|l| l == "FAIL down (cas)"), "{report}");
    assert_line(&report, "down", "FAIL login page", "/cas/login");
    assert!(report.lines().any(|l| l == "FAIL wrong-base (cas)"), "{report}");
    assert_line(&report, "wrong-base", "FAIL login page", "404");

    // The CAS 2.0 fallback is found and named.
    sys.set_fault("brvt", |f| &f.cas2_only);
    let (out, report) = probe(&upstreams, &["--id", "brvt"]).await;
    assert!(out.status.success(), "{report}");
    assert_line(&report, "brvt", "WARN ticket validation", "CAS 2.0 only");
}

fn ldap(id: &str, port: u16, password: &str) -> String {
    format!(
        "[[upstreams]]\nid = \"{id}\"\nkind = \"ldap\"\nname_vi = \"{id}\"\nname_en = \"{id}\"\ntimeout = \"2s\"\n\
         [upstreams.ldap]\nurl = \"ldap://127.0.0.1:{port}\"\nbind_dn = \"{SERVICE_DN}\"\n\
         bind_password = \"{password}\"\nuser_base = \"ou=people,{SUFFIX}\"\n\
         user_filter = \"(&(objectClass=inetOrgPerson)(uid={{username}}))\"\nsubject_attribute = \"uid\"\n\
         group_base = \"ou=groups,{SUFFIX}\"\n"
    )
}

#[tokio::test]
async fn directory_upstreams_pass_when_reachable_and_fail_when_down_or_the_bind_password_is_wrong() {
    let slapd = Slapd::start(false).await;
    let upstreams = [
        ldap("officials", slapd.port, crate::slapd::SERVICE_PASSWORD),
        ldap("down", closed_port(), crate::slapd::SERVICE_PASSWORD),
        ldap("wrong-password", slapd.port, "not-the-password"),
    ]
    .concat();
    let (out, report) = probe(&upstreams, &["--ldap-user", "tuan.pa"]).await;
    assert_eq!(out.status.code(), Some(1), "{report}");
    assert!(report.lines().any(|l| l == "OK officials (ldap)"), "{report}");
    assert_line(&report, "officials", "OK   service account", "binds");
    assert_line(&report, "officials", "OK   user base", "readable");
    assert_line(&report, "officials", "OK   test user", "tuan.pa is uid=");
    assert_line(&report, "officials", "OK   groups", "can-bo-mot-cua, van-thu");
    assert_line(&report, "officials", "service account rights", &format!("under ou=people,{SUFFIX}"));
    assert!(report.lines().any(|l| l == "FAIL down (ldap)"), "{report}");
    assert_line(&report, "down", "FAIL connection", "ldap://127.0.0.1");
    assert!(report.lines().any(|l| l == "FAIL wrong-password (ldap)"), "{report}");
    assert_line(&report, "wrong-password", "FAIL service account", "invalid credentials");
    assert!(!report.contains("not-the-password"), "no secret printed");

    // A name the directory does not know fails; no name is a warning only.
    let (out, report) = probe(&upstreams, &["--id", "officials", "--ldap-user", "no.such.official"]).await;
    assert_eq!(out.status.code(), Some(1), "{report}");
    assert_line(&report, "officials", "FAIL test user", "no entry");
    let (out, report) = probe(&upstreams, &["--id", "officials"]).await;
    assert!(out.status.success(), "{report}");
    assert_line(&report, "officials", "WARN test user", "--ldap-user");
}

/// The first ```toml block of a page in docs/upstreams/.
fn documented_config(page: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/upstreams").join(page);
    let text = std::fs::read_to_string(&path).unwrap();
    let start =
        text.find("```toml\n").unwrap_or_else(|| panic!("{page} has no toml block")) + "```toml\n".len();
    let end = start + text[start..].find("```").unwrap();
    text[start..end].to_string()
}

#[tokio::test]
async fn the_configurations_in_docs_upstreams_probe_ok_against_the_simulators() {
    let sys = TestSystem::start().await;
    let slapd = Slapd::start(false).await;
    let replace = |page: &str, from: &str, to: &str| {
        let snippet = documented_config(page);
        assert!(snippet.contains(from), "{page}: the snippet names {from}");
        snippet.replace(from, to)
    };
    let upstreams = [
        replace(
            "keycloak-oidc.md",
            "https://dichvucong.hochiminhcity.gov.vn/realms/hcm",
            &sys.idps["hcm"].issuer,
        ),
        replace("apereo-cas.md", "https://sso.baria-vungtau.gov.vn/cas", &sys.idps["brvt"].issuer),
        replace("vneid.md", "https://sso.vneid.gov.vn/realms/vneid", &sys.idps["vneid"].issuer),
        replace(
            "ldap-active-directory.md",
            "ldaps://ldap.tphcm.gov.vn",
            &format!("ldap://127.0.0.1:{}", slapd.port),
        ),
    ]
    .concat();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gateway.toml");
    std::fs::write(&config, format!("issuer = \"http://127.0.0.1:8080\"\n{upstreams}")).unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_sso-gateway"))
        .env_remove("SSO_GATEWAY_CONFIG")
        .env("HCM_CLIENT_SECRET", "gateway-secret-hcm")
        .env("VNEID_CLIENT_SECRET", "gateway-secret-vneid")
        .env("LDAP_BIND_PASSWORD", crate::slapd::SERVICE_PASSWORD)
        .args(["upstreams", "probe", "--ldap-user", "tuan.pa", "--config"])
        .arg(&config)
        .output()
        .await
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{report}\n{}", String::from_utf8_lossy(&out.stderr));
    for verdict in ["OK hcm (oidc)", "OK brvt (cas)", "OK vneid (oidc)", "OK officials (ldap)"] {
        assert!(report.lines().any(|l| l == verdict), "{verdict} in\n{report}");
    }
    assert_line(&report, "officials", "OK   test user", "with one entryUUID");
}

/// A probe run by an operator (or a cron job) records each upstream's outcome and latency in
/// the shared state store, where the gateways record their logins: the operations page and
/// `GET /admin/api/v1/operations/upstreams` show it (`ops::upstream_status`, which both use).
#[tokio::test]
async fn a_probe_feeds_the_upstream_status_the_console_and_the_api_show() {
    let sys = TestSystem::start_with(Options::redis_replicas(1)).await;
    let hcm = &sys.idps["hcm"].issuer;
    let upstreams = [
        oidc("hcm", hcm, "sso-gateway", "gateway-secret-hcm", ""),
        oidc("bd", &format!("http://127.0.0.1:{}/realms/x", closed_port()), "gw", "s", ""),
    ]
    .concat();
    let shared = format!(
        "[sessions]\nstore = \"{}\"\n[sessions.redis]\nkey_prefix = \"{}\"\n{upstreams}",
        redis_url(),
        sys.app.settings.sessions.redis.key_prefix
    );
    let before = sso_gateway::admin::ops::upstream_status(sys.app.admin()).await.unwrap();
    assert!(before.iter().all(|u| u.recent.is_empty()), "nothing recorded yet: {before:?}");
    let (out, report) = probe(&shared, &[]).await;
    assert_eq!(out.status.code(), Some(1), "{report}\n{}", String::from_utf8_lossy(&out.stderr));

    let status = sso_gateway::admin::ops::upstream_status(sys.app.admin()).await.unwrap();
    let of = |id: &str| status.iter().find(|u| u.upstream == id).unwrap().clone();
    let hcm = of("hcm");
    let ok = hcm.last_success.as_ref().expect("the probe's success is recorded");
    assert!(ok.ok && ok.probe, "{hcm:?}");
    assert!(hcm.last_failure.is_none(), "{hcm:?}");
    assert_eq!(hcm.recent.len(), 1, "{hcm:?}");
    let bd = of("bd");
    let failed = bd.last_failure.as_ref().expect("the probe's failure is recorded");
    assert!(!failed.ok && failed.probe, "{bd:?}");
    let reason = failed.reason.as_deref().unwrap_or_default();
    assert!(reason.contains("discovery"), "the failed check says why: {reason}");
    assert!(bd.last_success.is_none(), "{bd:?}");
    assert!(of("brvt").recent.is_empty(), "an upstream not probed is untouched");
}
