//! Each upstream's configuration: parsing `kind` into its protocol's own section
//! ([`super::Protocol`]), and the `check-config` rules for each protocol and for the assurance
//! ladder. Every problem names its path, e.g. `upstreams[2].ldap.url`.

use std::collections::HashSet;

use url::Url;

use super::validate::{Problem, check_web_url, deserialize_at, is_loopback};
use super::{Protocol, Settings, UpstreamKind, UpstreamSettings};

/// Keys of an upstream's own table that only OpenID Connect uses (CAS and LDAP keep theirs
/// in `[upstreams.cas]` / `[upstreams.ldap]`).
const OIDC_KEYS: [&str; 7] =
    ["profile", "issuer", "client_id", "client_secret", "scopes", "use_userinfo", "discovery_ttl"];

/// Parses one `[[upstreams]]` table at path `at` (`upstreams[2]`): `kind` chooses the
/// protocol, which gets its own keys; keys of another kind are reported (a forgotten `kind`,
/// a copied block), as is a missing section. Every problem goes to `problems`.
pub(super) fn parse_upstream(
    at: &str,
    value: toml::Value,
    problems: &mut Vec<Problem>,
) -> Option<UpstreamSettings> {
    let toml::Value::Table(mut table) = value else {
        return deserialize_at(at, value, problems);
    };
    let path = |key: &str| format!("{at}.{key}");
    let kind: UpstreamKind = match table.remove("kind") {
        None => UpstreamKind::Oidc,
        Some(v) => deserialize_at(&path("kind"), v, problems)?,
    };
    let mut foreign = |table: &mut toml::Table, key: &str, owner: UpstreamKind| {
        let Some(value) = table.remove(key) else { return };
        // Only a value that says something counts (as before kinds had sections of their own).
        let set = match (key, &value) {
            ("issuer" | "client_id", toml::Value::String(s)) => !s.is_empty(),
            ("use_userinfo", toml::Value::Boolean(b)) => *b,
            ("scopes" | "discovery_ttl", _) => false,
            _ => true,
        };
        if set {
            problems.push(
                Problem::new(path(key), format!("is not used by kind = \"{}\"", kind.as_str()))
                    .expecting(format!("{key} only with kind = \"{}\"", owner.as_str())),
            );
        }
    };
    if kind != UpstreamKind::Oidc {
        for key in OIDC_KEYS {
            foreign(&mut table, key, UpstreamKind::Oidc);
        }
    }
    for (key, owner) in
        [("cas", UpstreamKind::Cas), ("ldap", UpstreamKind::Ldap), ("certificate", UpstreamKind::Certificate)]
    {
        if kind != owner {
            foreign(&mut table, key, owner);
        }
    }
    let section = |table: &mut toml::Table, key: &str, expected: &str, problems: &mut Vec<Problem>| {
        let found = table.remove(key);
        if found.is_none() {
            problems.push(
                Problem::new(path(key), format!("is missing for kind = \"{}\"", kind.as_str()))
                    .expecting(expected),
            );
        }
        found
    };
    let protocol = match kind {
        UpstreamKind::Oidc => {
            let own: toml::Table =
                OIDC_KEYS.iter().filter_map(|k| Some((k.to_string(), table.remove(*k)?))).collect();
            deserialize_at(at, toml::Value::Table(own), problems).map(Protocol::Oidc)
        }
        UpstreamKind::Cas => {
            section(&mut table, "cas", "[upstreams.cas] with server = \"https://…/cas\"", problems)
                .and_then(|v| deserialize_at(&path("cas"), v, problems))
                .map(Protocol::Cas)
        }
        UpstreamKind::Ldap => section(
            &mut table,
            "ldap",
            "[upstreams.ldap] with url, bind_dn, bind_password, user_base",
            problems,
        )
        .and_then(|v| deserialize_at(&path("ldap"), v, problems))
        .map(Protocol::Ldap),
        UpstreamKind::Certificate => {
            // What a certificate is worth and what it says, unless the file says otherwise.
            table.entry("acr").or_insert_with(|| super::ACR_CERTIFICATE.into());
            table.entry("claims").or_insert_with(|| {
                toml::Value::Table(
                    [("name", "cn"), ("email", "email"), ("national_id", "national_id")]
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), toml::Value::String(v.into())))
                        .collect(),
                )
            });
            section(&mut table, "certificate", "[upstreams.certificate] with ca_file", problems)
                .and_then(|v| deserialize_at(&path("certificate"), v, problems))
                .map(Protocol::Certificate)
        }
    };
    let shared: Option<UpstreamSettings> = deserialize_at(at, toml::Value::Table(table), problems);
    Some(UpstreamSettings { protocol: protocol?, ..shared? })
}

/// Kind-specific checks of one upstream; `at("key")` is the path of a key of this upstream.
pub(super) fn check_upstream(
    s: &Settings,
    u: &UpstreamSettings,
    at: &dyn Fn(&str) -> String,
    p: &mut Vec<Problem>,
) {
    match &u.protocol {
        Protocol::Oidc(oidc) => {
            if oidc.issuer.is_empty() {
                p.push(Problem::new(at("issuer"), "is missing").expecting("the upstream's OIDC issuer URL"));
            } else {
                check_web_url(&at("issuer"), &oidc.issuer, p);
            }
            if oidc.client_id.is_empty() {
                p.push(
                    Problem::new(at("client_id"), "is empty")
                        .expecting("the client id registered at the upstream"),
                );
            }
            if !oidc.scopes.iter().any(|s| s == "openid") {
                p.push(
                    Problem::new(at("scopes"), "does not contain \"openid\"").expecting("[\"openid\", …]"),
                );
            }
        }
        Protocol::Cas(cas) => {
            if let Some(url) = check_web_url(&at("cas.server"), &cas.server, p)
                && (url.query().is_some() || url.fragment().is_some())
            {
                p.push(
                    Problem::new(at("cas.server"), "has a query or fragment")
                        .expecting("the CAS base URL, e.g. https://cas.example/cas"),
                );
            }
            if cas.single_logout && cas.logout_from.as_ref().is_some_and(Vec::is_empty) {
                p.push(
                    Problem::new(
                        at("cas.logout_from"),
                        "is empty: no single-logout request would be accepted",
                    )
                    .expecting(
                        "the CAS server's networks, e.g. [\"10.20.0.0/24\"], or single_logout = false",
                    ),
                );
            }
            if cas.subject_attribute.as_ref().is_some_and(|a| a.trim().is_empty()) {
                p.push(Problem::new(at("cas.subject_attribute"), "is empty").expecting("an attribute name"));
            }
        }
        Protocol::Ldap(ldap) => check_ldap(ldap, at, p),
        Protocol::Certificate(cert) => check_certificate(s, cert, at, p),
    }
    check_acr(s, &at("acr"), &u.acr, p);
    for (value, acr) in &u.acr_map {
        check_acr(s, &at(&format!("acr_map.{value}")), acr, p);
    }
    if !u.acr_map.is_empty() && u.acr_claim.is_none() {
        p.push(
            Problem::new(at("acr_claim"), "is missing, but acr_map is set")
                .expecting("the claim acr_map reads"),
        );
    }
}

fn check_ldap(ldap: &super::LdapSettings, at: &dyn Fn(&str) -> String, p: &mut Vec<Problem>) {
    let expected =
        "ldaps://host[:636], or ldap://host[:389] with starttls = true (plain ldap:// only to this machine)";
    match Url::parse(&ldap.url) {
        Err(e) => p.push(
            Problem::new(at("ldap.url"), format!("{:?} is not a URL: {e}", ldap.url)).expecting(expected),
        ),
        Ok(u) => {
            let ok = match u.scheme() {
                "ldaps" => !ldap.starttls,
                "ldap" => ldap.starttls || is_loopback(&u) || host_is_loopback(u.host_str()),
                _ => false,
            };
            if u.host_str().is_none_or(str::is_empty) {
                p.push(Problem::new(at("ldap.url"), "has no host").expecting(expected));
            } else if u.scheme() == "ldaps" && ldap.starttls {
                p.push(
                    Problem::new(at("ldap.starttls"), "set with an ldaps:// URL")
                        .expecting("ldaps:// (TLS from the start) or ldap:// with starttls, not both"),
                );
            } else if !ok {
                p.push(
                    Problem::new(at("ldap.url"), format!("{:?} would send passwords in clear", ldap.url))
                        .expecting(expected),
                );
            }
        }
    }
    if let Some(ca) = &ldap.ca_file {
        match std::fs::read(ca) {
            Err(e) => p.push(
                Problem::new(at("ldap.ca_file"), format!("cannot read {}: {e}", ca.display()))
                    .expecting("a PEM bundle"),
            ),
            Ok(bytes)
                if reqwest::Certificate::from_pem_bundle(&bytes).map(|c| c.is_empty()).unwrap_or(true) =>
            {
                p.push(
                    Problem::new(at("ldap.ca_file"), "contains no PEM certificate").expecting("a PEM bundle"),
                )
            }
            Ok(_) => {}
        }
    }
    for (key, value) in [("ldap.bind_dn", &ldap.bind_dn), ("ldap.user_base", &ldap.user_base)] {
        if value.trim().is_empty() {
            p.push(
                Problem::new(at(key), "is empty")
                    .expecting("a distinguished name, e.g. ou=people,dc=example"),
            );
        }
    }
    if ldap.bind_password.value().is_some_and(str::is_empty) {
        p.push(
            Problem::new(at("ldap.bind_password"), "is empty")
                .expecting("the service account's password (an empty one would be an anonymous bind)"),
        );
    }
    if !ldap.user_filter.contains("{username}") || !balanced(&ldap.user_filter) {
        p.push(
            Problem::new(
                at("ldap.user_filter"),
                format!("{:?} is not a filter naming {{username}}", ldap.user_filter),
            )
            .expecting("e.g. (&(objectClass=person)(uid={username}))"),
        );
    }
    if ldap.group_base.is_some()
        && (!(ldap.group_filter.contains("{dn}") || ldap.group_filter.contains("{username}"))
            || !balanced(&ldap.group_filter))
    {
        p.push(
            Problem::new(
                at("ldap.group_filter"),
                format!("{:?} names neither {{dn}} nor {{username}}", ldap.group_filter),
            )
            .expecting("e.g. (member={dn})"),
        );
    }
    for (key, value) in
        [("ldap.subject_attribute", &ldap.subject_attribute), ("ldap.group_attribute", &ldap.group_attribute)]
    {
        if !is_attribute_name(value) {
            p.push(
                Problem::new(at(key), format!("{value:?} is not an attribute name"))
                    .expecting("letters, digits and -"),
            );
        }
    }
    for (i, a) in ldap.attributes.iter().enumerate() {
        if !is_attribute_name(a) {
            p.push(
                Problem::new(at(&format!("ldap.attributes[{i}]")), format!("{a:?} is not an attribute name"))
                    .expecting("letters, digits and -"),
            );
        }
    }
    for (key, n) in
        [("ldap.max_failures", ldap.max_failures), ("ldap.max_failures_per_ip", ldap.max_failures_per_ip)]
    {
        if n == 0 || n > 1000 {
            p.push(Problem::new(at(key), "out of range").expecting("between 1 and 1000"));
        }
    }
    for (key, d) in [("ldap.failure_window", ldap.failure_window), ("ldap.lockout", ldap.lockout)] {
        if d.is_zero() || d > std::time::Duration::from_secs(24 * 3600) {
            p.push(Problem::new(at(key), "out of range").expecting("between 1s and 24h"));
        }
    }
    if ldap.min_failure_time > std::time::Duration::from_secs(5) {
        p.push(Problem::new(at("ldap.min_failure_time"), "longer than 5s").expecting("at most \"5s\""));
    }
}

fn check_certificate(
    s: &Settings,
    cert: &super::CertificateLoginSettings,
    at: &dyn Fn(&str) -> String,
    p: &mut Vec<Problem>,
) {
    use crate::tls as files;
    if let Err(e) = files::read_anchors(&cert.ca_file) {
        p.push(Problem::new(at("certificate.ca_file"), e).expecting("a PEM bundle of CA certificates"));
    }
    if let Some(path) = &cert.intermediates_file
        && let Err(e) = files::read_certificates(path)
    {
        p.push(Problem::new(at("certificate.intermediates_file"), e).expecting("a PEM bundle"));
    }
    for (i, path) in cert.crl_files.iter().enumerate() {
        let read = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()));
        if let Err(e) = read.and_then(|b| files::parse_crl(&b)) {
            p.push(
                Problem::new(at(&format!("certificate.crl_files[{i}]")), e)
                    .expecting("a CRL file (DER or PEM)"),
            );
        }
    }
    for (i, url) in cert.crl_urls.iter().enumerate() {
        // CRLs are signed by their CA, so they are published over plain http as often as not.
        if !Url::parse(url).is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some()) {
            p.push(
                Problem::new(
                    at(&format!("certificate.crl_urls[{i}]")),
                    format!("{url:?} is not an http(s) URL"),
                )
                .expecting("e.g. http://crl.ca.example/ca.crl"),
            );
        }
    }
    if cert.crl_files.is_empty()
        && cert.crl_urls.is_empty()
        && !cert.ocsp
        && cert.revocation == super::RevocationPolicy::FailClosed
    {
        p.push(
            Problem::new(
                at("certificate.revocation"),
                "is fail_closed but neither a CRL nor OCSP is configured: every certificate would be refused",
            )
            .expecting("crl_files or crl_urls, ocsp = true, or revocation = \"fail_open\""),
        );
    }
    let d = cert.crl_refresh;
    if d < std::time::Duration::from_secs(60) || d > std::time::Duration::from_secs(24 * 3600) {
        p.push(Problem::new(at("certificate.crl_refresh"), "out of range").expecting("between 1m and 24h"));
    }
    for (i, rule) in cert.extract.iter().enumerate() {
        let claim = &rule.claim;
        if claim.is_empty()
            || claim.len() > 64
            || !claim.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            p.push(
                Problem::new(
                    at(&format!("certificate.extract[{i}].claim")),
                    format!("{claim:?} is not a claim name"),
                )
                .expecting("letters, digits and _"),
            );
        }
        if rule.prefix.len() > 32 || rule.prefix.chars().any(char::is_control) {
            p.push(
                Problem::new(
                    at(&format!("certificate.extract[{i}].prefix")),
                    "is too long or has control characters",
                )
                .expecting("e.g. \"CCCD:\""),
            );
        }
    }
    if s.certificate.url.is_none() {
        p.push(
            Problem::new("certificate.url", "is missing, but an upstream has kind = \"certificate\"")
                .expecting("the public URL of the certificate host, e.g. https://cert.sso.example"),
        );
    }
}

/// `ldap:` is not a special scheme for the URL parser, so its host stays text.
fn host_is_loopback(host: Option<&str>) -> bool {
    let Some(host) = host else { return false };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost")
        || bare.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn is_attribute_name(a: &str) -> bool {
    !a.is_empty() && a.len() <= 128 && a.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b';')
}

/// Parentheses open and close in order (a cheap guard against a broken filter template).
fn balanced(filter: &str) -> bool {
    let mut depth = 0i32;
    for c in filter.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            _ => {}
        }
        if depth < 0 {
            return false;
        }
    }
    depth == 0 && filter.starts_with('(')
}

/// `acr` must be one of `assurance.levels`.
pub(super) fn check_acr(s: &Settings, path: &str, acr: &str, p: &mut Vec<Problem>) {
    if s.assurance.rank(acr).is_none() {
        p.push(
            Problem::new(path, format!("{acr:?} is not an assurance level"))
                .expecting(format!("one of assurance.levels: {}", s.assurance.levels.join(", "))),
        );
    }
}

/// The ladder itself: not empty, no duplicates.
pub(super) fn check_assurance(s: &Settings, p: &mut Vec<Problem>) {
    if s.assurance.levels.is_empty() {
        p.push(Problem::new("assurance.levels", "is empty").expecting("acr values, lowest assurance first"));
    }
    let mut seen = HashSet::new();
    for (i, l) in s.assurance.levels.iter().enumerate() {
        if l.trim().is_empty() || l.contains(char::is_whitespace) {
            p.push(
                Problem::new(format!("assurance.levels[{i}]"), "is empty or has spaces")
                    .expecting("an acr value (URI)"),
            );
        }
        if !seen.insert(l.as_str()) {
            p.push(
                Problem::new(format!("assurance.levels[{i}]"), format!("duplicate level {l:?}"))
                    .expecting("unique values"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{ConfigError, Protocol, Settings};

    fn problems(text: &str) -> Vec<String> {
        match Settings::from_toml(text) {
            Ok(_) => Vec::new(),
            Err(ConfigError::Invalid(p)) => p.iter().map(|p| p.to_string()).collect(),
            Err(e) => vec![e.to_string()],
        }
    }

    #[test]
    fn existing_oidc_upstreams_parse_unchanged() {
        let s = Settings::from_toml(
            r#"
            issuer = "http://127.0.0.1:1"
            [[upstreams]]
            id = "hcm"
            name_vi = "x"
            name_en = "x"
            issuer = "https://idp.example/realms/a"
            client_id = "gw"
            "#,
        )
        .unwrap();
        assert_eq!(s.upstreams[0].kind(), crate::config::UpstreamKind::Oidc);
    }

    #[test]
    fn cas_logout_from_takes_networks_and_refuses_an_empty_list() {
        let cas = |extra: &str| {
            format!(
                "issuer = \"http://127.0.0.1:1\"\n[[upstreams]]\nid = \"c\"\nkind = \"cas\"\nname_vi = \"x\"\nname_en = \"x\"\n[upstreams.cas]\nserver = \"https://cas.example/cas\"\n{extra}\n[[clients]]\nclient_id = \"portal\"\nclient_secret = \"portal-secret-0123456789\"\nredirect_uris = [\"https://portal.example/cb\"]\n"
            )
        };
        let logout_from = |s: &Settings| match &s.upstreams[0].protocol {
            Protocol::Cas(cas) => cas.logout_from.clone(),
            other => panic!("not CAS: {other:?}"),
        };
        let s = Settings::from_toml(&cas("logout_from = [\"10.20.0.0/24\", \"2001:db8::1/128\"]")).unwrap();
        assert_eq!(logout_from(&s).unwrap().len(), 2);
        let default = Settings::from_toml(&cas("")).unwrap();
        assert!(logout_from(&default).is_none(), "default: the server's addresses");
        let text = problems(&cas("logout_from = []")).join("\n");
        assert!(text.contains("upstreams[0].cas.logout_from: is empty"), "{text}");
        assert!(
            problems(&cas("logout_from = []\nsingle_logout = false")).is_empty(),
            "off: nothing to accept"
        );
        let text = problems(&cas("logout_from = [\"cas.example\"]")).join("\n");
        assert!(text.contains("logout_from"), "not a network: {text}");
    }

    #[test]
    fn each_kind_reports_its_own_problems_with_paths() {
        let p = problems(
            r#"
            issuer = "http://127.0.0.1:1"
            [[upstreams]]
            id = "a"
            name_vi = "x"
            name_en = "x"
            [[upstreams]]
            id = "b"
            kind = "cas"
            name_vi = "x"
            name_en = "x"
            issuer = "https://idp.example"
            [[upstreams]]
            id = "c"
            kind = "cas"
            name_vi = "x"
            name_en = "x"
            [upstreams.cas]
            server = "http://cas.example/cas"
            [[upstreams]]
            id = "d"
            kind = "ldap"
            name_vi = "x"
            name_en = "x"
            acr = "gold"
            [upstreams.ldap]
            url = "ldap://dir.example"
            bind_dn = "cn=gw,dc=example"
            bind_password = ""
            user_base = "ou=people,dc=example"
            user_filter = "(uid=admin)"
            max_failures = 0
            [[clients]]
            client_id = "portal"
            client_secret = "portal-secret-0123456789"
            redirect_uris = ["https://portal.example/cb"]
            min_acr = "urn:unknown"
            "#,
        );
        let text = p.join("\n");
        for expected in [
            "upstreams[0].issuer: is missing",
            "upstreams[0].client_id: is empty",
            "upstreams[1].issuer: is not used by kind = \"cas\"",
            "upstreams[1].cas: is missing for kind = \"cas\"",
            "upstreams[2].cas.server: \"http://cas.example/cas\" is not allowed",
            "upstreams[3].ldap.url: \"ldap://dir.example\" would send passwords in clear",
            "upstreams[3].ldap.bind_password: is empty",
            "upstreams[3].ldap.user_filter:",
            "upstreams[3].ldap.max_failures: out of range",
            "upstreams[3].acr: \"gold\" is not an assurance level",
            "clients[0].min_acr: \"urn:unknown\" is not an assurance level",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in\n{text}");
        }
    }

    #[test]
    fn ldap_over_tls_or_to_loopback_is_accepted() {
        for (url, starttls) in
            [("ldaps://dir.example", false), ("ldap://dir.example", true), ("ldap://127.0.0.1:3890", false)]
        {
            let p = problems(&format!(
                r#"
                issuer = "http://127.0.0.1:1"
                [[upstreams]]
                id = "officials"
                kind = "ldap"
                name_vi = "x"
                name_en = "x"
                [upstreams.ldap]
                url = "{url}"
                starttls = {starttls}
                bind_dn = "cn=gw,dc=example"
                bind_password = {{ env = "LDAP_PW_SECRET_NOT_SET" }}
                user_base = "ou=people,dc=example"
                "#
            ));
            // Only the unresolvable secret is reported.
            assert_eq!(p.len(), 1, "{url}: {p:?}");
            assert!(p[0].starts_with("upstreams[0].ldap.bind_password"), "{p:?}");
        }
    }

    #[test]
    fn certificate_settings_are_checked_with_paths() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        std::fs::write(dir.path().join("not-pem.txt"), "hello").unwrap();
        let text = format!(
            r#"
            issuer = "http://127.0.0.1:1"
            [certificate]
            listen = "127.0.0.1:0"
            forwarded_header = "X-SSL-Client-Cert"
            [[upstreams]]
            id = "a"
            kind = "certificate"
            name_vi = "x"
            name_en = "x"
            [upstreams.certificate]
            ca_file = "{d}/missing.pem"
            crl_files = ["{d}/not-pem.txt"]
            crl_urls = ["ftp://crl.example/x.crl"]
            crl_refresh = "10s"
            [[upstreams.certificate.extract]]
            from = "uid"
            prefix = "CCCD:"
            claim = "national id"
            [[upstreams]]
            id = "b"
            kind = "certificate"
            name_vi = "x"
            name_en = "x"
            [upstreams.certificate]
            ca_file = "{d}/not-pem.txt"
            [[upstreams.certificate.extract]]
            from = "street"
            claim = "x"
            "#
        );
        let text = problems(&text).join("\n");
        for expected in [
            "upstreams[0].certificate.ca_file: cannot read",
            "upstreams[0].certificate.crl_files[0]:",
            "upstreams[0].certificate.crl_urls[0]:",
            "upstreams[0].certificate.crl_refresh: out of range",
            "upstreams[0].certificate.extract[0].claim:",
            "upstreams[1].certificate.extract[0].from",
            "certificate.url: is missing",
            "certificate.listen: is set without tls_cert and tls_key",
            "certificate.forwarded_header: is set but inbound.trusted_proxies is empty",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in\n{text}");
        }
    }

    #[test]
    fn a_certificate_upstream_defaults_to_its_acr_rules_and_claims() {
        let dir = tempfile::tempdir().unwrap();
        let ca = sso_test_services::pki::Ca::new("CA");
        std::fs::write(dir.path().join("ca.pem"), &ca.cert_pem).unwrap();
        let text = format!(
            r#"
            issuer = "http://127.0.0.1:1"
            [certificate]
            url = "https://cert.example"
            [[upstreams]]
            id = "a"
            kind = "certificate"
            name_vi = "x"
            name_en = "x"
            [upstreams.certificate]
            ca_file = "{}/ca.pem"
            "#,
            dir.path().display()
        );
        // fail_closed needs a way to learn a status: a CRL or OCSP (on by default).
        assert!(problems(&text).is_empty(), "{:?}", problems(&text));
        let closed = problems(&text.replace("ca.pem\"", "ca.pem\"\nocsp = false")).join("\n");
        assert!(
            closed.contains("upstreams[0].certificate.revocation: is fail_closed but neither a CRL nor OCSP"),
            "{closed}"
        );
        let s =
            Settings::from_toml(&text.replace("ca.pem\"", "ca.pem\"\nrevocation = \"fail_open\"")).unwrap();
        let u = &s.upstreams[0];
        assert_eq!(u.acr, crate::config::ACR_CERTIFICATE);
        assert_eq!(u.claims.national_id.as_deref(), Some("national_id"));
        assert_eq!(u.claims.name.as_deref(), Some("cn"));
        let Protocol::Certificate(c) = &u.protocol else { panic!("not a certificate upstream") };
        assert_eq!(c.extract, crate::config::CertificateLoginSettings::default_rules());
        assert!(c.require_national_id);
    }
}
