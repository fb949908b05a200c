use crate::helpers::*;
use serde_json::Value;

#[tokio::test]
async fn discovery_document_lists_what_an_rp_library_needs() {
    let sys = TestSystem::start().await;
    let doc: Value =
        reqwest::get(sys.url("/.well-known/openid-configuration")).await.unwrap().json().await.unwrap();
    assert_eq!(doc["issuer"], sys.gateway.as_str());
    for (key, path) in [
        ("authorization_endpoint", "/authorize"),
        ("token_endpoint", "/token"),
        ("userinfo_endpoint", "/userinfo"),
        ("jwks_uri", "/jwks"),
    ] {
        assert_eq!(doc[key], sys.url(path).as_str(), "{key}");
    }
    assert_eq!(doc["response_types_supported"], serde_json::json!(["code"]));
    assert_eq!(doc["code_challenge_methods_supported"], serde_json::json!(["S256"]));
    assert_eq!(doc["authorization_response_iss_parameter_supported"], true);
    let algs = doc["id_token_signing_alg_values_supported"].as_array().unwrap();
    for alg in ["RS256", "ES256", "EdDSA"] {
        assert!(algs.iter().any(|a| a == alg), "{alg} missing");
    }
    for key in [
        "subject_types_supported",
        "scopes_supported",
        "claims_supported",
        "grant_types_supported",
        "token_endpoint_auth_methods_supported",
    ] {
        assert!(doc[key].as_array().is_some_and(|a| !a.is_empty()), "{key}");
    }
}

#[tokio::test]
async fn jwks_publishes_public_keys_with_kid_alg_and_use_only() {
    let sys = TestSystem::start().await;
    let jwks: Value = reqwest::get(sys.url("/jwks")).await.unwrap().json().await.unwrap();
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 3);
    for k in keys {
        assert!(k["kid"].is_string() && k["alg"].is_string());
        assert_eq!(k["use"], "sig");
        for private in ["d", "p", "q", "dp", "dq", "qi"] {
            assert!(k.get(private).is_none(), "private part {private} published");
        }
    }
}

#[tokio::test]
async fn health_and_readiness_answer() {
    let sys = TestSystem::start().await;
    assert_eq!(reqwest::get(sys.url("/healthz")).await.unwrap().status(), 200);
    let ready = reqwest::get(sys.url("/readyz")).await.unwrap();
    assert_eq!(ready.status(), 200);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["accounts"], true);
}
