//! The users file: one simulated legacy provider, its registered clients and its demo users.

use std::collections::HashSet;
use std::path::Path;

use anyhow::{Context, bail, ensure};
use serde::Deserialize;

/// Claims the provider sets itself; a user's `claims` table may not override them.
const PROTOCOL_CLAIMS: &[&str] = &[
    "iss",
    "sub",
    "aud",
    "exp",
    "iat",
    "nbf",
    "jti",
    "auth_time",
    "nonce",
    "sid",
    "amr",
    "acr",
    "azp",
    "at_hash",
    "c_hash",
];

fn default_issuer_path() -> String {
    "/oidc".to_owned()
}

/// Which protocol the simulated system speaks.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LegacyProtocol {
    /// OpenID Connect (Keycloak-style paths under the issuer).
    #[default]
    Oidc,
    /// Apereo CAS protocol 3.0 (`{issuer}/login`, `/p3/serviceValidate`, `/serviceValidate`,
    /// `/logout`; the issuer path is the CAS base, e.g. `/cas`).
    Cas,
}

/// One simulated legacy login system, as read from `config/legacy/*.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LegacyIdpConfig {
    /// Short id: `"hcm"`, `"bd"`, `"brvt"` or `"vneid"`.
    pub id: String,
    #[serde(default)]
    pub protocol: LegacyProtocol,
    pub name_vi: String,
    pub name_en: String,
    /// Path part of the issuer URL (e.g. `/realms/hcm-dichvucong`); empty means the root.
    /// Must start with `/` and must not end with `/`.
    #[serde(default = "default_issuer_path")]
    pub issuer_path: String,
    /// OIDC relying parties (unused in CAS mode: any loopback service URL is accepted).
    #[serde(default)]
    pub clients: Vec<LegacyClient>,
    pub users: Vec<LegacyUser>,
}

/// A relying party registered at the legacy provider (in practice: the gateway).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LegacyClient {
    pub client_id: String,
    pub client_secret: String,
    /// Exact redirect URIs. Empty = accept any `http(s)` redirect URI on a loopback host
    /// (`127.0.0.1`, `localhost`, `[::1]`), because tests and the demo use ephemeral ports.
    #[serde(default)]
    pub redirect_uris: Vec<String>,
}

/// A demo account. `claims` are released as-is in the ID token and at the userinfo endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LegacyUser {
    pub username: String,
    pub password: String,
    /// The `sub` claim: the legacy system's stable user id.
    pub subject: String,
    #[serde(default)]
    pub claims: serde_json::Map<String, serde_json::Value>,
}

impl LegacyIdpConfig {
    /// Reads and validates a users file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading legacy IdP config {}", path.display()))?;
        Self::from_toml_str(&text).with_context(|| format!("in legacy IdP config {}", path.display()))
    }

    /// Parses and validates a users file from a string.
    pub fn from_toml_str(s: &str) -> anyhow::Result<Self> {
        let config: Self = toml::from_str(s).context("invalid legacy IdP config")?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what serde cannot: uniqueness, the issuer path shape, reserved claim names.
    pub fn validate(&self) -> anyhow::Result<()> {
        ensure!(!self.id.trim().is_empty(), "id must not be empty");
        let p = &self.issuer_path;
        if !p.is_empty() {
            ensure!(
                p.starts_with('/') && !p.ends_with('/'),
                "issuer_path {p:?} must start with '/' and must not end with '/'"
            );
            ensure!(
                !p.contains("//") && p.chars().all(|c| c.is_ascii_alphanumeric() || "/-._~".contains(c)),
                "issuer_path {p:?} may only contain letters, digits and / - . _ ~"
            );
        }
        ensure!(
            self.protocol == LegacyProtocol::Cas || !self.clients.is_empty(),
            "at least one client is required"
        );
        let mut ids = HashSet::new();
        for c in &self.clients {
            ensure!(!c.client_id.is_empty(), "client_id must not be empty");
            ensure!(ids.insert(c.client_id.as_str()), "duplicate client_id {:?}", c.client_id);
            for uri in &c.redirect_uris {
                let parsed = url::Url::parse(uri)
                    .with_context(|| format!("client {:?}: bad redirect_uri {uri:?}", c.client_id))?;
                ensure!(parsed.fragment().is_none(), "redirect_uri {uri:?} must not have a fragment");
            }
        }
        let mut usernames = HashSet::new();
        let mut subjects = HashSet::new();
        for u in &self.users {
            ensure!(!u.username.is_empty(), "username must not be empty");
            ensure!(!u.subject.is_empty(), "subject of {:?} must not be empty", u.username);
            ensure!(usernames.insert(u.username.as_str()), "duplicate username {:?}", u.username);
            ensure!(subjects.insert(u.subject.as_str()), "duplicate subject {:?}", u.subject);
            if let Some(reserved) = u.claims.keys().find(|k| PROTOCOL_CLAIMS.contains(&k.as_str())) {
                bail!("user {:?}: claim {reserved:?} is set by the provider itself", u.username);
            }
        }
        Ok(())
    }

    pub(crate) fn client(&self, client_id: &str) -> Option<&LegacyClient> {
        self.clients.iter().find(|c| c.client_id == client_id)
    }

    pub(crate) fn user(&self, username: &str) -> Option<&LegacyUser> {
        self.users.iter().find(|u| u.username == username)
    }
}

/// Whether `uri` is an `http(s)` URI on a loopback host without credentials or fragment
/// (tests and the demo use ephemeral ports).
pub(crate) fn is_loopback_http(uri: &str) -> bool {
    let Ok(parsed) = url::Url::parse(uri) else {
        return false;
    };
    let loopback = match parsed.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    matches!(parsed.scheme(), "http" | "https")
        && loopback
        && parsed.fragment().is_none()
        && parsed.username().is_empty()
        && parsed.password().is_none()
}

impl LegacyClient {
    /// Whether `uri` may be used as this client's redirect URI (exact match, or any loopback
    /// `http(s)` URI when no redirect URIs are registered).
    pub(crate) fn accepts_redirect_uri(&self, uri: &str) -> bool {
        if !self.redirect_uris.is_empty() {
            return self.redirect_uris.iter().any(|r| r == uri);
        }
        is_loopback_http(uri)
    }
}
