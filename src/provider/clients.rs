//! The client (relying party) registry: each registered client ready for request-time
//! checks (client authentication itself is `client_auth`).

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, header};
use base64::Engine;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::TokenError;
use crate::config::{ClientAuthMethod, ClientSettings, GrantType, Lifetimes, SubjectType};
use crate::ids::{ClientId, RedirectUri};
use crate::keys::SigningAlg;

/// A registered relying party, ready for request-time checks.
#[derive(Debug, Clone)]
pub struct Client {
    pub client_id: ClientId,
    pub name: String,
    /// SHA-256 of the secret; client secrets are high-entropy, so a fast digest compared in
    /// constant time is the right tool (a password hash would cap throughput for no gain).
    secret_digest: Option<[u8; 32]>,
    pub redirect_uris: Vec<RedirectUri>,
    pub post_logout_redirect_uris: Vec<RedirectUri>,
    pub scopes: Vec<String>,
    /// The lowest `acr` this client accepts (step-up below it).
    pub min_acr: Option<String>,
    pub grant_types: Vec<GrantType>,
    pub alg: SigningAlg,
    pub access_token_lifetime: Duration,
    pub refresh_token_lifetime: Duration,
    pub auth_method: ClientAuthMethod,
    /// Authorization requests must carry a PKCE challenge (always for public clients).
    pub require_pkce: bool,
    /// Inline keys for `private_key_jwt`.
    pub jwks: Option<jsonwebtoken::jwk::JwkSet>,
    pub jwks_uri: Option<String>,
    /// Resource servers (client ids) that also receive this client's access tokens.
    pub audiences: Vec<String>,
    pub backchannel_logout_uri: Option<String>,
    pub backchannel_logout_session_required: bool,
    pub frontchannel_logout_uri: Option<String>,
    pub frontchannel_logout_session_required: bool,
    /// `None`: public `sub`; `Some(sector)`: pairwise `sub` for that sector.
    pub pairwise_sector: Option<String>,
    /// Authorization requests must come through `/par` (RFC 9126).
    pub require_par: bool,
    /// Token requests must carry a DPoP proof (RFC 9449).
    pub require_dpop: bool,
    /// `tls_client_auth`: the subject or SAN its certificate must carry (RFC 8705 §2.1.2).
    pub tls_name: Option<super::mtls::RegisteredName>,
    /// Its access tokens (and a public client's refresh tokens) are bound to its TLS client
    /// certificate whatever the authentication (RFC 8705 §3).
    pub certificate_bound_tokens: bool,
}

impl Client {
    /// `None` when the registration's `client_id` is not one (validation refuses it first).
    pub fn from_settings(s: &ClientSettings, lifetimes: &Lifetimes) -> Option<Self> {
        Some(Client {
            client_id: ClientId::parse(&s.client_id).ok()?,
            name: s.name.clone().unwrap_or_else(|| s.client_id.clone()),
            secret_digest: s
                .client_secret
                .as_ref()
                .and_then(|v| v.value())
                .map(|secret| Sha256::digest(secret.as_bytes()).into()),
            // Validation refuses a registration with a URI that does not parse.
            redirect_uris: registered_uris(&s.redirect_uris),
            post_logout_redirect_uris: registered_uris(&s.post_logout_redirect_uris),
            scopes: s.scopes.clone(),
            min_acr: s.min_acr.clone(),
            grant_types: s.grant_types.clone(),
            alg: s.id_token_signed_response_alg,
            access_token_lifetime: s.access_token_lifetime.unwrap_or(lifetimes.access_token),
            refresh_token_lifetime: s.refresh_token_lifetime.unwrap_or(lifetimes.refresh_token),
            auth_method: s.token_endpoint_auth_method.unwrap_or(if s.client_secret.is_some() {
                ClientAuthMethod::ClientSecretBasic
            } else {
                ClientAuthMethod::None
            }),
            require_pkce: s.require_pkce,
            jwks: s.jwks.clone().and_then(|v| serde_json::from_value(v).ok()),
            jwks_uri: s.jwks_uri.clone(),
            audiences: s.audiences.clone(),
            backchannel_logout_uri: s.backchannel_logout_uri.clone(),
            backchannel_logout_session_required: s.backchannel_logout_session_required,
            frontchannel_logout_uri: s.frontchannel_logout_uri.clone(),
            frontchannel_logout_session_required: s.frontchannel_logout_session_required,
            pairwise_sector: match s.subject_type {
                SubjectType::Public => None,
                // Validation guarantees a sector for pairwise clients.
                SubjectType::Pairwise => Some(s.sector().unwrap_or_else(|| s.client_id.clone())),
            },
            require_par: s.require_pushed_authorization_requests,
            require_dpop: s.require_dpop,
            // Validation refuses a client whose name cannot be read.
            tls_name: super::mtls::RegisteredName::from_settings(s).ok().flatten(),
            certificate_bound_tokens: s.tls_client_certificate_bound_access_tokens,
        })
    }

    /// Public clients cannot authenticate and must use PKCE.
    pub fn is_public(&self) -> bool {
        self.auth_method == ClientAuthMethod::None
    }

    /// Whether an authorization request of this client must carry a PKCE challenge: always,
    /// unless a confidential client was registered with `require_pkce = false`.
    pub fn requires_pkce(&self) -> bool {
        self.require_pkce || self.is_public()
    }

    pub fn allows_grant(&self, grant: GrantType) -> bool {
        self.grant_types.contains(&grant)
    }

    /// Exact string comparison, as OAuth 2.0 Security BCP requires.
    pub fn has_redirect_uri(&self, uri: &str) -> bool {
        self.redirect_uris.iter().any(|r| r.matches(uri))
    }

    /// Whether `uri` is one of the registered post-logout redirect URIs (compared exactly).
    pub fn has_post_logout_redirect_uri(&self, uri: &str) -> bool {
        self.post_logout_redirect_uris.iter().any(|r| r.matches(uri))
    }

    /// Whether `presented` is this client's secret (compared in constant time).
    pub(super) fn secret_matches(&self, presented: &str) -> bool {
        match &self.secret_digest {
            Some(expected) => {
                let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
                bool::from(digest.ct_eq(expected))
            }
            None => false,
        }
    }
}

fn registered_uris(raw: &[String]) -> Vec<RedirectUri> {
    raw.iter().filter_map(|u| RedirectUri::parse(u).ok()).collect()
}

/// All registered clients by id.
#[derive(Debug, Clone, Default)]
pub struct ClientRegistry {
    clients: Arc<HashMap<ClientId, Arc<Client>>>,
}

impl ClientRegistry {
    pub fn new(settings: &[ClientSettings], lifetimes: &Lifetimes) -> Self {
        let clients = settings
            .iter()
            .filter_map(|s| Client::from_settings(s, lifetimes))
            .map(|c| (c.client_id.clone(), Arc::new(c)))
            .collect();
        ClientRegistry { clients: Arc::new(clients) }
    }

    /// The client with this id: a [`ClientId`] parsed where the request came in, or the `&str`
    /// of an id the gateway stored or signed itself.
    pub fn get<Q>(&self, client_id: &Q) -> Option<Arc<Client>>
    where
        ClientId: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.clients.get(client_id).cloned()
    }
}

/// Decodes `Authorization: Basic` credentials; both parts are form-urlencoded (RFC 6749 §2.3.1).
pub(super) fn basic_credentials(headers: &HeaderMap) -> Result<Option<(String, String)>, TokenError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else { return Ok(None) };
    let bad = || TokenError::InvalidClient { basic: true };
    let value = value.to_str().map_err(|_| bad())?;
    let Some((scheme, encoded)) = value.split_once(' ') else { return Err(bad()) };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(bad());
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).map_err(|_| bad())?;
    let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
    let (id, secret) = decoded.split_once(':').ok_or_else(bad)?;
    let unescape = |s: &str| form_urlencoded_decode(s).ok_or_else(bad);
    Ok(Some((unescape(id)?, unescape(secret)?)))
}

fn form_urlencoded_decode(s: &str) -> Option<String> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(&format!("v={s}")).ok()?;
    pairs.into_iter().next().map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;

    fn registry() -> ClientRegistry {
        let s = Settings::from_toml(
            r#"
            issuer = "http://127.0.0.1:1"
            [[clients]]
            client_id = "portal"
            client_secret = "portal-secret-0123456789"
            redirect_uris = ["https://portal.example/cb"]
            post_logout_redirect_uris = ["https://portal.example/bye"]
            [[clients]]
            client_id = "spa"
            redirect_uris = ["https://spa.example/cb"]
            [[clients]]
            client_id = "legacy"
            client_secret = "legacy-secret-0123456789"
            redirect_uris = ["https://legacy.example/cb"]
            require_pkce = false
            "#,
        )
        .unwrap();
        ClientRegistry::new(&s.clients, &s.lifetimes)
    }

    #[test]
    fn pkce_is_required_unless_a_confidential_client_opted_out() {
        let r = registry();
        assert!(r.get("portal").unwrap().requires_pkce());
        assert!(r.get("spa").unwrap().requires_pkce());
        assert!(!r.get("legacy").unwrap().requires_pkce());
    }

    #[test]
    fn redirect_uris_match_exactly() {
        let c = registry().get("portal").unwrap();
        assert!(c.has_redirect_uri("https://portal.example/cb"));
        assert!(!c.has_redirect_uri("https://portal.example/cb/"));
        assert!(!c.has_redirect_uri("https://portal.example/cb?x=1"));
    }

    #[test]
    fn post_logout_redirect_uris_match_exactly_and_apart_from_redirect_uris() {
        let c = registry().get("portal").unwrap();
        assert!(c.has_post_logout_redirect_uri("https://portal.example/bye"));
        assert!(!c.has_post_logout_redirect_uri("https://portal.example/bye/"));
        assert!(!c.has_post_logout_redirect_uri("https://portal.example/cb"));
        assert!(!c.has_redirect_uri("https://portal.example/bye"));
    }
}
