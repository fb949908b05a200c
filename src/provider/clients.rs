//! The client (relying party) registry and client authentication at the token endpoint.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, header};
use base64::Engine;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::TokenError;
use crate::config::{ClientAuthMethod, ClientSettings, GrantType, Lifetimes, SubjectType};
use crate::keys::SigningAlg;

/// A registered relying party, ready for request-time checks.
#[derive(Debug, Clone)]
pub struct Client {
    pub client_id: String,
    pub name: String,
    /// SHA-256 of the secret; client secrets are high-entropy, so a fast digest compared in
    /// constant time is the right tool (a password hash would cap throughput for no gain).
    secret_digest: Option<[u8; 32]>,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
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
}

impl Client {
    pub fn from_settings(s: &ClientSettings, lifetimes: &Lifetimes) -> Self {
        Client {
            client_id: s.client_id.clone(),
            name: s.name.clone().unwrap_or_else(|| s.client_id.clone()),
            secret_digest: s
                .client_secret
                .as_ref()
                .and_then(|v| v.value())
                .map(|secret| Sha256::digest(secret.as_bytes()).into()),
            redirect_uris: s.redirect_uris.clone(),
            post_logout_redirect_uris: s.post_logout_redirect_uris.clone(),
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
        }
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
        self.redirect_uris.iter().any(|r| r == uri)
    }

    fn secret_matches(&self, presented: &str) -> bool {
        match &self.secret_digest {
            Some(expected) => {
                let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
                bool::from(digest.ct_eq(expected))
            }
            None => false,
        }
    }
}

/// All registered clients by id.
#[derive(Debug, Clone, Default)]
pub struct ClientRegistry {
    clients: Arc<HashMap<String, Arc<Client>>>,
}

impl ClientRegistry {
    pub fn new(settings: &[ClientSettings], lifetimes: &Lifetimes) -> Self {
        let clients = settings
            .iter()
            .map(|s| (s.client_id.clone(), Arc::new(Client::from_settings(s, lifetimes))))
            .collect();
        ClientRegistry { clients: Arc::new(clients) }
    }

    pub fn get(&self, client_id: &str) -> Option<Arc<Client>> {
        self.clients.get(client_id).cloned()
    }

    /// Authenticates a client by secret (RFC 6749 §2.3): `client_secret_basic`,
    /// `client_secret_post`, or `none` for public clients. `private_key_jwt` is handled in
    /// `client_auth` (it needs the state store and may fetch keys).
    pub fn authenticate_secret(
        &self,
        headers: &HeaderMap,
        form_client_id: Option<&str>,
        form_secret: Option<&str>,
    ) -> Result<Arc<Client>, TokenError> {
        let basic = basic_credentials(headers)?;
        let (client_id, secret, method) = match (basic, form_client_id, form_secret) {
            (Some(_), _, Some(_)) => {
                return Err(TokenError::InvalidRequest(
                    "use one client authentication method, not two".into(),
                ));
            }
            (Some((id, secret)), form_id, None) => {
                if form_id.is_some_and(|f| f != id) {
                    return Err(TokenError::InvalidRequest(
                        "client_id does not match the Authorization header".into(),
                    ));
                }
                (id, Some(secret), "basic")
            }
            (None, Some(id), secret) => (id.to_string(), secret.map(str::to_string), "post"),
            (None, None, _) => return Err(TokenError::InvalidClient { basic: false }),
        };
        let basic = method == "basic";
        let client = self.get(&client_id).ok_or(TokenError::InvalidClient { basic })?;
        if client.auth_method == ClientAuthMethod::PrivateKeyJwt {
            return Err(TokenError::InvalidClient { basic });
        }
        if client.auth_method == ClientAuthMethod::ClientSecretPost && basic {
            return Err(TokenError::InvalidClient { basic });
        }
        match (client.is_public(), secret) {
            (true, None) => Ok(client),
            (true, Some(_)) => Err(TokenError::InvalidClient { basic }),
            (false, Some(s)) if client.secret_matches(&s) => Ok(client),
            (false, _) => Err(TokenError::InvalidClient { basic }),
        }
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

    fn basic(id: &str, secret: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        let v = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
        h.insert(header::AUTHORIZATION, format!("Basic {v}").parse().unwrap());
        h
    }

    #[test]
    fn confidential_clients_authenticate_by_basic_or_post() {
        let r = registry();
        assert!(r.authenticate_secret(&basic("portal", "portal-secret-0123456789"), None, None).is_ok());
        assert!(
            r.authenticate_secret(&HeaderMap::new(), Some("portal"), Some("portal-secret-0123456789"))
                .is_ok()
        );
        assert!(matches!(
            r.authenticate_secret(&basic("portal", "wrong"), None, None),
            Err(TokenError::InvalidClient { basic: true })
        ));
        assert!(r.authenticate_secret(&HeaderMap::new(), Some("portal"), None).is_err());
        assert!(r.authenticate_secret(&HeaderMap::new(), Some("nobody"), Some("x")).is_err());
    }

    #[test]
    fn public_clients_have_no_secret() {
        let r = registry();
        assert!(r.authenticate_secret(&HeaderMap::new(), Some("spa"), None).unwrap().is_public());
        assert!(r.authenticate_secret(&HeaderMap::new(), Some("spa"), Some("guess")).is_err());
    }

    #[test]
    fn basic_credentials_are_form_urlencoded() {
        let r = registry();
        // '-' needs no escaping, but an escaped form of the same secret must still match.
        let h = basic("portal", "portal%2Dsecret%2D0123456789");
        assert!(r.authenticate_secret(&h, None, None).is_ok());
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
}
