//! The discovery document (OpenID Connect Discovery 1.0), serialised once and again only
//! when the set of signing algorithms changes (a key directory reload or a key retiring).

use std::sync::{PoisonError, RwLock};

use serde_json::json;

use super::scope_claims::{SUPPORTED_CLAIMS, SUPPORTED_SCOPES};
use crate::keys::{KeySet, SigningAlg};

/// What the configuration turns on that discovery must say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Features {
    /// Assurance levels (`acr` values), lowest first.
    pub acr_values: Vec<String>,
    /// Every request must be pushed (`par.required`).
    pub require_par: bool,
    /// Client certificates can reach the gateway (`[mtls] certificate_header`).
    pub mtls: bool,
    /// `tls_client_auth` roots are configured (`mtls.ca_file`).
    pub tls_client_auth: bool,
    /// Base URL of a separate mTLS host (`mtls.url`), for `mtls_endpoint_aliases`.
    pub mtls_url: Option<String>,
}

impl Features {
    pub fn of(settings: &crate::config::Settings) -> Features {
        Features {
            acr_values: settings.assurance.levels.clone(),
            require_par: settings.par.required,
            mtls: settings.mtls.enabled(),
            tls_client_auth: settings.mtls.enabled() && settings.mtls.ca_file.is_some(),
            mtls_url: settings.mtls.url.as_deref().map(|u| u.trim_end_matches('/').to_string()),
        }
    }

    /// The client authentication methods of the back-channel endpoints.
    fn auth_methods(&self, public: bool) -> Vec<&'static str> {
        let mut methods = vec!["client_secret_basic", "client_secret_post", "private_key_jwt"];
        if self.tls_client_auth {
            methods.push("tls_client_auth");
        }
        if self.mtls {
            methods.push("self_signed_tls_client_auth");
        }
        if public {
            methods.push("none");
        }
        methods
    }
}

/// The serialised document for the algorithms it was last built with.
pub struct Discovery {
    issuer: String,
    features: Features,
    cached: RwLock<(Vec<SigningAlg>, bytes::Bytes)>,
}

impl Discovery {
    pub fn new(issuer: &str, features: Features, keys: &KeySet) -> Discovery {
        let algs = keys.algorithms();
        let doc = bytes::Bytes::from(document(issuer, &algs, &features));
        Discovery { issuer: issuer.to_owned(), features, cached: RwLock::new((algs, doc)) }
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
        let doc = bytes::Bytes::from(document(&self.issuer, &algs, &self.features));
        *self.cached.write().unwrap_or_else(PoisonError::into_inner) = (algs, doc.clone());
        doc
    }
}

/// Serialises the provider metadata for `issuer`, the algorithms that have keys and the
/// features the configuration turns on.
pub fn document(issuer: &str, algs: &[SigningAlg], features: &Features) -> String {
    let algs: Vec<&str> = algs.iter().map(|a| a.as_str()).collect();
    let back_channel_methods = features.auth_methods(false);
    let mut doc = json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "userinfo_endpoint": format!("{issuer}/userinfo"),
        "jwks_uri": format!("{issuer}/jwks"),
        "end_session_endpoint": format!("{issuer}/logout"),
        "introspection_endpoint": format!("{issuer}/introspect"),
        "revocation_endpoint": format!("{issuer}/revoke"),
        "introspection_endpoint_auth_methods_supported": back_channel_methods,
        "revocation_endpoint_auth_methods_supported": back_channel_methods,
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
        "token_endpoint_auth_methods_supported": features.auth_methods(true),
        "token_endpoint_auth_signing_alg_values_supported": ["RS256", "PS256", "ES256", "EdDSA"],
        "code_challenge_methods_supported": ["S256"],
        "prompt_values_supported": ["none", "login", "consent", "select_account"],
        "ui_locales_supported": ["vi", "en"],
        "acr_values_supported": features.acr_values,
        "claims_parameter_supported": false,
        "request_parameter_supported": false,
        "request_uri_parameter_supported": false,
        "authorization_response_iss_parameter_supported": true,
        "pushed_authorization_request_endpoint": format!("{issuer}/par"),
        "require_pushed_authorization_requests": features.require_par,
        "dpop_signing_alg_values_supported": super::dpop::ALGORITHMS,
        "tls_client_certificate_bound_access_tokens": features.mtls,
    });
    // RFC 8705 §5: where a client reaches the endpoints with its certificate.
    if let Some(base) = features.mtls_url.as_deref().filter(|_| features.mtls) {
        doc["mtls_endpoint_aliases"] = json!({
            "token_endpoint": format!("{base}/token"),
            "userinfo_endpoint": format!("{base}/userinfo"),
            "introspection_endpoint": format!("{base}/introspect"),
            "revocation_endpoint": format!("{base}/revoke"),
            "pushed_authorization_request_endpoint": format!("{base}/par"),
        });
    }
    doc.to_string()
}
