//! `sso-gateway clients explain`: what one client registration allows — flows, scopes, the
//! claims the client will see, its subject type, authentication, PKCE, logout wiring,
//! lifetimes, minimum assurance — and which of its settings are risky, in words an RP team and
//! a reviewer read.
//!
//! Owns: describing a validated registration. Must not: change settings or decide requests.
//! It reads the same [`Client`] the endpoints use (defaults applied) and the scope → claims
//! table the endpoints release claims by ([`super::scope_claims::SCOPE_CLAIMS`]), so what it says is
//! what the gateway does.

use std::fmt;
use std::time::Duration;

use super::clients::Client;
use super::scope_claims::{ID_TOKEN_CLAIMS, SCOPE_CLAIMS};
use crate::config::{ClientAuthMethod, ClientSettings, GrantType, Settings};

/// Access tokens longer than this outlive a session that ended without logout for too long.
const LONG_ACCESS_TOKEN: Duration = Duration::from_secs(15 * 60);
/// Refresh-token families longer than this outlive a working day's session.
const LONG_REFRESH_FAMILY: Duration = Duration::from_secs(24 * 3600);

/// How much a finding matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// Weakens the security of this client's users; change it unless there is a reason.
    Risk,
    /// Worth knowing when wiring the RP; not a weakness by itself.
    Note,
}

/// One remark on a setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub severity: Severity,
    /// The configuration key it is about (within the client's `[[clients]]` table).
    pub setting: String,
    pub message: String,
}

impl Finding {
    fn risk(setting: &str, message: impl Into<String>) -> Finding {
        Finding { severity: Severity::Risk, setting: setting.into(), message: message.into() }
    }
    fn note(setting: &str, message: impl Into<String>) -> Finding {
        Finding { severity: Severity::Note, setting: setting.into(), message: message.into() }
    }
}

/// The description of one registration: labelled lines, then the findings.
#[derive(Debug, Clone)]
pub struct Explanation {
    pub client_id: String,
    pub name: String,
    pub lines: Vec<(&'static str, Vec<String>)>,
    pub findings: Vec<Finding>,
}

impl Explanation {
    pub fn risks(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| f.severity == Severity::Risk)
    }
}

fn human(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

fn list_or(items: &[impl AsRef<str>], empty: &str) -> String {
    if items.is_empty() {
        empty.to_string()
    } else {
        items.iter().map(AsRef::as_ref).collect::<Vec<_>>().join(" ")
    }
}

/// Explains `settings.clients` entry `c` (settings already validated: `None` only for a
/// registration whose `client_id` is not one, which validation refuses).
pub fn explain(settings: &Settings, c: &ClientSettings) -> Option<Explanation> {
    let client = Client::from_settings(c, &settings.lifetimes)?;
    let mut lines: Vec<(&'static str, Vec<String>)> = Vec::new();
    let code_flow = client.allows_grant(GrantType::AuthorizationCode);
    let refresh = client.allows_grant(GrantType::RefreshToken);

    lines.push(("kind", vec![kind(&client)]));

    let mut flows = Vec::new();
    if code_flow {
        flows.push(if client.requires_pkce() {
            "authorization_code (response_type=code) with PKCE S256 required".to_string()
        } else {
            "authorization_code (response_type=code), PKCE optional (require_pkce = false)".to_string()
        });
    }
    if refresh {
        flows.push("refresh_token (rotated on every use; a replayed one revokes the family)".into());
    }
    if client.allows_grant(GrantType::ClientCredentials) {
        flows.push("client_credentials (machine to machine, no user)".into());
    }
    lines.push(("flows", flows));

    if code_flow {
        lines.push((
            "redirect_uris",
            client.redirect_uris.iter().map(|u| format!("{u} (compared exactly)")).collect(),
        ));
    }
    lines.push(("scopes", vec![list_or(&client.scopes, "(none)")]));
    if code_flow {
        lines.push(("claims", claims(&client)));
        lines.push(("subject", vec![subject(&client)]));
        lines.push(("id_token alg", vec![client.alg.as_str().to_string()]));
    } else {
        lines.push(("claims", vec!["none: no person logs in, the token names only the client".into()]));
    }
    lines.push(("lifetimes", lifetimes(settings, &client, refresh)));
    if code_flow {
        lines.push(("assurance", vec![assurance(settings, &client)]));
        lines.push(("logout", logout(&client)));
    }
    if !client.audiences.is_empty() {
        lines.push((
            "audiences",
            vec![format!(
                "{} (these clients may introspect this client's access tokens)",
                client.audiences.join(" ")
            )],
        ));
    }
    Some(Explanation {
        client_id: client.client_id.to_string(),
        name: client.name.clone(),
        findings: findings(settings, &client),
        lines,
    })
}

fn kind(client: &Client) -> String {
    match client.auth_method {
        ClientAuthMethod::None => {
            "public (no secret: a browser or mobile app); authenticates nowhere, so it cannot \
             introspect"
                .into()
        }
        ClientAuthMethod::ClientSecretBasic => {
            "confidential; client_secret_basic at /token, /introspect and \
                                                /revoke (client_secret_post also accepted)"
                .into()
        }
        ClientAuthMethod::ClientSecretPost => {
            "confidential; client_secret_post at /token, /introspect and /revoke".into()
        }
        ClientAuthMethod::PrivateKeyJwt => {
            let keys = match &client.jwks_uri {
                Some(uri) => format!("keys from {uri}"),
                None => "inline keys".into(),
            };
            format!("confidential; private_key_jwt ({keys}; each assertion single-use)")
        }
        ClientAuthMethod::TlsClientAuth => "confidential; tls_client_auth (a certificate from \
             mtls.ca_file's CAs with the registered subject; tokens bound to it)"
            .into(),
        ClientAuthMethod::SelfSignedTlsClientAuth => {
            let keys = match &client.jwks_uri {
                Some(uri) => format!("keys from {uri}"),
                None => "inline keys".into(),
            };
            format!(
                "confidential; self_signed_tls_client_auth (a certificate of one of its {keys}; tokens bound to it)"
            )
        }
    }
}

fn claims(client: &Client) -> Vec<String> {
    let mut out = vec![format!("ID token: {}", ID_TOKEN_CLAIMS.join(" "))];
    for (scope, names) in SCOPE_CLAIMS {
        if client.scopes.iter().any(|s| s == scope) {
            out.push(format!("scope {scope}: {}", names.join(" ")));
        }
    }
    out.push(
        "scope claims only when requested; in the ID token and at /userinfo (with sub, and \
         merged_into_sub after an account merge)"
            .into(),
    );
    out
}

fn subject(client: &Client) -> String {
    match &client.pairwise_sector {
        None => "public: the account's sub, the same at every public client".into(),
        Some(sector) => format!(
            "pairwise for sector {sector:?}: a sub of its own, the same only for clients of that sector"
        ),
    }
}

fn lifetimes(settings: &Settings, client: &Client, refresh: bool) -> Vec<String> {
    let mut out = vec![format!("access token {}", human(client.access_token_lifetime))];
    if refresh {
        out.push(format!(
            "refresh-token family {} (ends with the SSO session: logout, idle or absolute timeout)",
            human(client.refresh_token_lifetime)
        ));
        if client.scopes.iter().any(|s| s == "offline_access") {
            out.push(format!(
                "with offline_access: {} and survives logout",
                human(settings.lifetimes.offline_refresh_token)
            ));
        }
    } else {
        out.push("no refresh tokens".into());
    }
    out
}

fn assurance(settings: &Settings, client: &Client) -> String {
    match &client.min_acr {
        Some(min) => {
            let accepted = settings.assurance.rank(min).map(|r| settings.assurance.at_least(r));
            format!(
                "min_acr {min}: sessions below it are stepped up whatever the request says (accepted: {})",
                accepted.map(|a| a.join(" ")).unwrap_or_default()
            )
        }
        None => format!(
            "any level; the RP may ask for more with acr_values (levels, lowest first: {})",
            settings.assurance.levels.join(" ")
        ),
    }
}

fn logout(client: &Client) -> Vec<String> {
    let with_sid = |required: bool| if required { " (with iss and sid)" } else { "" };
    vec![
        match &client.backchannel_logout_uri {
            Some(uri) => format!(
                "back-channel: {uri}{}",
                if client.backchannel_logout_session_required { " (logout token carries sid)" } else { "" }
            ),
            None => "back-channel: none".into(),
        },
        match &client.frontchannel_logout_uri {
            Some(uri) => {
                format!("front-channel: {uri}{}", with_sid(client.frontchannel_logout_session_required))
            }
            None => "front-channel: none".into(),
        },
        format!(
            "post-logout redirect: {}",
            list_or(&client.post_logout_redirect_uris, "none (the person stays on the gateway's page)")
        ),
    ]
}

/// The risky and noteworthy settings of one registration.
pub fn findings(settings: &Settings, client: &Client) -> Vec<Finding> {
    let mut f = Vec::new();
    let code_flow = client.allows_grant(GrantType::AuthorizationCode);
    let has_scope = |s: &str| client.scopes.iter().any(|x| x == s);

    if code_flow && !client.requires_pkce() {
        f.push(Finding::risk(
            "require_pkce",
            "false: an intercepted code can be redeemed by whoever holds the secret; send \
             code_challenge and remove the exemption",
        ));
    }
    let uris = client
        .redirect_uris
        .iter()
        .map(|u| ("redirect_uris", u.as_str()))
        .chain(client.post_logout_redirect_uris.iter().map(|u| ("post_logout_redirect_uris", u.as_str())))
        .chain(client.backchannel_logout_uri.iter().map(|u| ("backchannel_logout_uri", u.as_str())))
        .chain(client.frontchannel_logout_uri.iter().map(|u| ("frontchannel_logout_uri", u.as_str())));
    for (key, uri) in uris {
        f.extend(uri_findings(key, uri));
    }
    if client.allows_grant(GrantType::RefreshToken) && client.refresh_token_lifetime > LONG_REFRESH_FAMILY {
        f.push(Finding::risk(
            "refresh_token_lifetime",
            format!(
                "{}: a stolen refresh token stays usable that long while the session lives; \
                 8h (the default) covers a working day",
                human(client.refresh_token_lifetime)
            ),
        ));
    }
    if client.access_token_lifetime > LONG_ACCESS_TOKEN {
        f.push(Finding::risk(
            "access_token_lifetime",
            format!(
                "{}: access tokens of a session that ended without logout keep working until they \
                 expire; keep it at 15m or less (default 5m) and refresh",
                human(client.access_token_lifetime)
            ),
        ));
    }
    if has_scope("offline_access") && client.allows_grant(GrantType::RefreshToken) {
        if client.is_public() {
            f.push(Finding::risk(
                "scopes",
                format!(
                    "offline_access for a public client: a refresh token living {} and surviving \
                     logout is kept in a browser or device that cannot authenticate",
                    human(settings.lifetimes.offline_refresh_token)
                ),
            ));
        } else {
            f.push(Finding::note(
                "scopes",
                format!(
                    "offline_access allowed: such refresh tokens live {} and survive logout; \
                     revoke them (/revoke) when the person unlinks the service",
                    human(settings.lifetimes.offline_refresh_token)
                ),
            ));
        }
    }
    if has_scope("national_id") && client.pairwise_sector.is_some() {
        f.push(Finding::risk(
            "scopes",
            "national_id for a pairwise client: the personal ID number is the same everywhere, \
             so it links the person across sectors and undoes the pairwise sub",
        ));
    }
    if code_flow && client.backchannel_logout_uri.is_none() && client.frontchannel_logout_uri.is_none() {
        f.push(Finding::note(
            "backchannel_logout_uri",
            "no logout channel: the RP does not learn that the person logged out elsewhere; \
             register a back-channel receiver or keep the RP's own session short",
        ));
    }
    if code_flow && client.allows_grant(GrantType::ClientCredentials) {
        f.push(Finding::note(
            "grant_types",
            "one registration both logs people in and acts as a machine: a leaked secret gives \
             both; consider two clients",
        ));
    }
    if client.is_public() && client.allows_grant(GrantType::RefreshToken) && !has_scope("offline_access") {
        f.push(Finding::note(
            "grant_types",
            "a public client gets refresh tokens: they rotate and a replay revokes the family, \
             but store them where scripts of other origins cannot read them",
        ));
    }
    f
}

fn uri_findings(key: &str, raw: &str) -> Vec<Finding> {
    let mut f = Vec::new();
    let Ok(url) = url::Url::parse(raw) else { return f };
    if raw.contains('*') {
        f.push(Finding::risk(
            key,
            format!(
                "{raw}: '*' is no wildcard here; URIs are compared exactly, so this one matches \
                 only itself, literally — register each real URI"
            ),
        ));
    }
    if url.scheme() == "http" {
        f.push(Finding::risk(
            key,
            format!("{raw}: plain http (allowed only on this machine): for development, never in production"),
        ));
    }
    if key == "redirect_uris" && url.scheme() != "http" && url.scheme() != "https" {
        f.push(Finding::note(
            key,
            format!(
                "{raw}: a custom scheme any app on the device may claim; a claimed https link \
                 (App Links / Universal Links) cannot be taken over"
            ),
        ));
    }
    if key == "redirect_uris" && url.query().is_some() {
        f.push(Finding::note(
            key,
            format!("{raw}: has a query; the RP must send it byte for byte (no reordering or re-encoding)"),
        ));
    }
    if key == "redirect_uris" && url.path() == "/" {
        f.push(Finding::note(
            key,
            format!(
                "{raw}: the site root as callback; a dedicated path (e.g. /auth/callback) is clearer to audit"
            ),
        ));
    }
    f
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.name == self.client_id {
            writeln!(f, "client {}", self.client_id)?;
        } else {
            writeln!(f, "client {} ({})", self.client_id, self.name)?;
        }
        for (label, values) in &self.lines {
            let mut values = values.iter();
            writeln!(f, "  {label:<14}{}", values.next().map_or("", String::as_str))?;
            for v in values {
                writeln!(f, "  {:<14}{v}", "")?;
            }
        }
        if self.findings.is_empty() {
            writeln!(f, "  risks         none found")?;
        }
        let risks = self.findings.iter().filter(|x| x.severity == Severity::Risk);
        let notes = self.findings.iter().filter(|x| x.severity == Severity::Note);
        for x in risks.chain(notes) {
            let tag = match x.severity {
                Severity::Risk => "RISK",
                Severity::Note => "note",
            };
            writeln!(f, "  {tag:<5} {}: {}", x.setting, x.message)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(clients: &str) -> Settings {
        let text = format!(
            "issuer = \"https://sso.tphcm.gov.vn\"\n[accounts]\npairwise_salt = \
             \"0123456789abcdef0123456789abcdef\"\n{clients}"
        );
        match Settings::from_toml(&text) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        }
    }

    fn explain_first(clients: &str) -> Explanation {
        let s = settings(clients);
        explain(&s, &s.clients[0]).unwrap()
    }

    fn risk_settings(e: &Explanation) -> Vec<&str> {
        e.risks().map(|f| f.setting.as_str()).collect()
    }

    const PORTAL: &str = r#"
        [[clients]]
        client_id = "portal"
        name = "Cổng dịch vụ công"
        client_secret = "portal-secret-0123456789"
        redirect_uris = ["https://dichvucong.example/auth/callback"]
        post_logout_redirect_uris = ["https://dichvucong.example/auth/logged-out"]
        backchannel_logout_uri = "https://dichvucong.example/auth/backchannel-logout"
        scopes = ["openid", "profile", "national_id"]
    "#;

    #[test]
    fn a_well_registered_confidential_client_has_no_findings_and_is_described_in_full() {
        let e = explain_first(PORTAL);
        assert!(e.findings.is_empty(), "{:?}", e.findings);
        let text = e.to_string();
        for expected in [
            "client portal (Cổng dịch vụ công)",
            "client_secret_basic",
            "PKCE S256 required",
            "https://dichvucong.example/auth/callback (compared exactly)",
            "scope national_id: national_id",
            "scope profile: name given_name family_name birthdate gender updated_at account_type",
            "public: the account's sub",
            "access token 5m",
            "refresh-token family 8h",
            "back-channel: https://dichvucong.example/auth/backchannel-logout (logout token carries sid)",
            "post-logout redirect: https://dichvucong.example/auth/logged-out",
            "any level",
            "risks         none found",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in\n{text}");
        }
        assert!(!text.contains("scope email"), "email is not allowed: {text}");
    }

    #[test]
    fn a_pkce_exemption_is_a_risk() {
        let e = explain_first(&PORTAL.replace("scopes =", "require_pkce = false\nscopes ="));
        assert_eq!(risk_settings(&e), ["require_pkce"]);
        assert!(e.to_string().contains("PKCE optional"));
    }

    #[test]
    fn long_refresh_and_access_token_lifetimes_are_risks() {
        let e = explain_first(&PORTAL.replace(
            "scopes =",
            "refresh_token_lifetime = \"7d\"\naccess_token_lifetime = \"1h\"\nscopes =",
        ));
        assert_eq!(risk_settings(&e), ["refresh_token_lifetime", "access_token_lifetime"]);
        // Exactly at the limits is fine.
        let e = explain_first(&PORTAL.replace(
            "scopes =",
            "refresh_token_lifetime = \"1d\"\naccess_token_lifetime = \"15m\"\nscopes =",
        ));
        assert!(e.findings.is_empty(), "{:?}", e.findings);
    }

    #[test]
    fn loopback_http_and_star_uris_are_risks() {
        let e = explain_first(
            r#"
            [[clients]]
            client_id = "dev"
            client_secret = "dev-secret-0123456789"
            redirect_uris = ["http://127.0.0.1:3000/cb", "https://*.tphcm.gov.vn/cb"]
            backchannel_logout_uri = "https://dev.example/bc"
            "#,
        );
        let risks: Vec<&str> = e.risks().map(|f| f.message.as_str()).collect();
        assert_eq!(risks.len(), 2, "{risks:?}");
        assert!(risks[0].contains("plain http"), "{risks:?}");
        assert!(risks[1].contains("'*' is no wildcard"), "{risks:?}");
    }

    #[test]
    fn offline_access_is_a_risk_for_public_clients_and_a_note_for_confidential_ones() {
        let public = explain_first(
            r#"
            [[clients]]
            client_id = "app"
            redirect_uris = ["https://app.example/cb"]
            frontchannel_logout_uri = "https://app.example/fc"
            scopes = ["openid", "offline_access"]
            "#,
        );
        assert_eq!(risk_settings(&public), ["scopes"]);
        assert!(public.to_string().contains("public (no secret"));
        assert!(public.to_string().contains("with offline_access: 30days and survives logout"));
        let confidential = explain_first(&PORTAL.replace("\"national_id\"]", "\"offline_access\"]"));
        assert!(confidential.risks().next().is_none(), "{:?}", confidential.findings);
        assert!(confidential.findings.iter().any(|f| f.severity == Severity::Note && f.setting == "scopes"));
    }

    #[test]
    fn national_id_undoes_a_pairwise_subject() {
        let e = explain_first(&PORTAL.replace("scopes =", "subject_type = \"pairwise\"\nscopes ="));
        assert_eq!(risk_settings(&e), ["scopes"]);
        assert!(e.to_string().contains("pairwise for sector \"dichvucong.example\""));
    }

    #[test]
    fn a_client_without_logout_channel_gets_a_note() {
        let e = explain_first(
            r#"
            [[clients]]
            client_id = "mail"
            client_secret = "mail-secret-0123456789"
            redirect_uris = ["https://mail.example/oidc/callback?provider=sso"]
            "#,
        );
        assert!(e.risks().next().is_none(), "{:?}", e.findings);
        let notes: Vec<&str> = e.findings.iter().map(|f| f.setting.as_str()).collect();
        assert_eq!(notes, ["redirect_uris", "backchannel_logout_uri"]);
        let app = explain_first(
            r#"
            [[clients]]
            client_id = "app"
            redirect_uris = ["vn.gov.tphcm.app:/cb"]
            backchannel_logout_uri = "https://app.example/bc"
            "#,
        );
        assert!(app.findings.iter().any(|f| f.message.contains("a custom scheme")), "{:?}", app.findings);
        assert!(e.to_string().contains("back-channel: none"));
    }

    #[test]
    fn min_acr_lists_the_accepted_levels() {
        let e = explain_first(
            &PORTAL.replace("scopes =", "min_acr = \"urn:sso-gateway:acr:vneid-level2\"\nscopes ="),
        );
        assert!(
            e.to_string().contains(
                "min_acr urn:sso-gateway:acr:vneid-level2: sessions below it are stepped up whatever \
                 the request says (accepted: urn:sso-gateway:acr:vneid-level2 urn:sso-gateway:acr:certificate)"
            ),
            "{e}"
        );
    }

    #[test]
    fn a_machine_client_is_described_without_browser_settings() {
        let e = explain_first(
            r#"
            [[clients]]
            client_id = "hotline-api"
            client_secret = "hotline-secret-0123456789"
            redirect_uris = []
            scopes = ["hotline.read"]
            grant_types = ["client_credentials"]
            "#,
        );
        let text = e.to_string();
        assert!(text.contains("client_credentials (machine to machine"), "{text}");
        assert!(text.contains("no refresh tokens"), "{text}");
        for absent in ["redirect_uris", "logout", "ID token", "assurance", "subject"] {
            assert!(!text.contains(absent), "{absent} in {text}");
        }
        assert!(e.findings.is_empty(), "{:?}", e.findings);
    }
}
