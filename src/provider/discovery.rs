//! The discovery document (OpenID Connect Discovery 1.0), serialised once and again only
//! when the set of signing algorithms changes (a key directory reload or a key retiring).

use std::sync::{PoisonError, RwLock};

use serde_json::json;

use super::claims::{SUPPORTED_CLAIMS, SUPPORTED_SCOPES};
use crate::keys::{KeySet, SigningAlg};

/// The serialised document for the algorithms it was last built with.
pub struct Discovery {
    issuer: String,
    acr_values: Vec<String>,
    require_par: bool,
    cached: RwLock<(Vec<SigningAlg>, bytes::Bytes)>,
}

impl Discovery {
    pub fn new(issuer: &str, acr_values: &[String], require_par: bool, keys: &KeySet) -> Discovery {
        let algs = keys.algorithms();
        let doc = bytes::Bytes::from(document(issuer, &algs, acr_values, require_par));
        Discovery {
            issuer: issuer.to_owned(),
            acr_values: acr_values.to_vec(),
            require_par,
            cached: RwLock::new((algs, doc)),
        }
    }

    /// The document for the keys signing now (rebuilt if their algorithms changed).
    pub fn bytes(&self, keys: &KeySet) -> bytes::Bytes {
        let algs = keys.algorithms();
        {
            let cached = self.cached.read().unwrap_or_else(PoisonError::into_inner);
            if cached.0 == algs {
                return cached.1.clone();
            }
        }
        let doc = bytes::Bytes::from(document(&self.issuer, &algs, &self.acr_values, self.require_par));
        *self.cached.write().unwrap_or_else(PoisonError::into_inner) = (algs, doc.clone());
        doc
    }
}

/// Serialises the provider metadata for `issuer`, the algorithms that have keys, the
/// assurance levels (`acr` values, lowest first) and whether every request must be pushed.
pub fn document(issuer: &str, algs: &[SigningAlg], acr_values: &[String], require_par: bool) -> String {
    let algs: Vec<&str> = algs.iter().map(|a| a.as_str()).collect();
    json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "userinfo_endpoint": format!("{issuer}/userinfo"),
        "jwks_uri": format!("{issuer}/jwks"),
        "end_session_endpoint": format!("{issuer}/logout"),
        "introspection_endpoint": format!("{issuer}/introspect"),
        "revocation_endpoint": format!("{issuer}/revoke"),
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt"],
        "backchannel_logout_supported": true,
        "backchannel_logout_session_supported": true,
        "frontchannel_logout_supported": true,
        "frontchannel_logout_session_supported": true,
        "scopes_supported": SUPPORTED_SCOPES,
        "claims_supported": SUPPORTED_CLAIMS,
        "response_types_supported": ["code"],
        "response_modes_supported": ["query", "form_post"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "subject_types_supported": ["public", "pairwise"],
        "id_token_signing_alg_values_supported": algs,
        "userinfo_signing_alg_values_supported": ["none"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"],
        "token_endpoint_auth_signing_alg_values_supported": ["RS256", "PS256", "ES256", "EdDSA"],
        "code_challenge_methods_supported": ["S256"],
        "prompt_values_supported": ["none", "login", "consent", "select_account"],
        "ui_locales_supported": ["vi", "en"],
        "acr_values_supported": acr_values,
        "claims_parameter_supported": false,
        "request_parameter_supported": false,
        "request_uri_parameter_supported": false,
        "authorization_response_iss_parameter_supported": true,
        "pushed_authorization_request_endpoint": format!("{issuer}/par"),
        "require_pushed_authorization_requests": require_par,
        "dpop_signing_alg_values_supported": super::dpop::ALGORITHMS,
    })
    .to_string()
}
