//! Introspection (RFC 7662), revocation (RFC 7009) and private_key_jwt client authentication.

use crate::helpers::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn post(
    sys: &TestSystem,
    path: &str,
    auth: Option<(&str, &str)>,
    form: &[(&str, &str)],
) -> (StatusCode, Value) {
    let mut req = reqwest::Client::new().post(sys.url(path)).form(form);
    if let Some((id, secret)) = auth {
        req = req.basic_auth(id, Some(secret));
    }
    let res = req.send().await.unwrap();
    let status = res.status();
    (status, res.json().await.unwrap_or(Value::Null))
}

const API: &str = "document-api";
const API_SECRET: &str = "document-api-secret-01";

fn resource_server_config() -> String {
    format!(
        r#"
[[clients]]
client_id = "{API}"
client_secret = "{API_SECRET}"
redirect_uris = []
scopes = ["documents.read"]
grant_types = ["client_credentials"]

[[clients]]
client_id = "docs-web"
client_secret = "docs-web-secret-0123"
redirect_uris = ["http://127.0.0.1:9/docs-web/cb"]
audiences = ["{API}"]
"#
    )
}

#[tokio::test]
async fn introspection_answers_for_own_tokens_and_resource_servers_only() {
    let options = Options { extra_config: resource_server_config(), ..Default::default() };
    let sys = TestSystem::start_with(options).await;
    let browser = Browser::new();
    let (_, portal_tokens) = portal_login(&sys, &browser, "hcm", HCM_USER).await;
    let rp = sys.rp("docs-web", Some("docs-web-secret-0123"), "http://127.0.0.1:9/docs-web/cb").await;
    let docs_tokens = sso_login(&browser, &rp, "http://127.0.0.1:9/docs-web/cb").await;

    let (status, body) =
        post(&sys, "/introspect", Some((PORTAL, PORTAL_SECRET)), &[("token", &portal_tokens.access_token)])
            .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["active"], true);
    assert_eq!(body["client_id"], PORTAL);
    assert_eq!(body["sub"], portal_tokens.raw["sub"]);
    let (_, body) = post(
        &sys,
        "/introspect",
        Some((PORTAL, PORTAL_SECRET)),
        &[("token", portal_tokens.refresh_token.as_deref().unwrap())],
    )
    .await;
    assert_eq!(body["active"], true);
    assert_eq!(body["token_type"], "refresh_token");
    // Another client sees nothing.
    let (_, body) =
        post(&sys, "/introspect", Some((DOCS, DOCS_SECRET)), &[("token", &portal_tokens.access_token)]).await;
    assert_eq!(body, json!({"active": false}));
    // The resource server named in docs-web's audiences may introspect docs-web's tokens.
    let (_, body) =
        post(&sys, "/introspect", Some((API, API_SECRET)), &[("token", &docs_tokens.access_token)]).await;
    assert_eq!(body["active"], true);
    let (_, body) =
        post(&sys, "/introspect", Some((API, API_SECRET)), &[("token", &portal_tokens.access_token)]).await;
    assert_eq!(body["active"], false);
    let (_, body) = post(&sys, "/introspect", Some((PORTAL, PORTAL_SECRET)), &[("token", "garbage")]).await;
    assert_eq!(body, json!({"active": false}));
    let (status, body) = post(&sys, "/introspect", None, &[("token", &portal_tokens.access_token)]).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_client")));
}

#[tokio::test]
async fn revoking_a_refresh_token_ends_its_family_and_revoking_an_access_token_ends_it() {
    let sys = TestSystem::start().await;
    let browser = Browser::new();
    let (rp, tokens) = portal_login(&sys, &browser, "bd", BD_USER).await;
    let rt = tokens.refresh_token.clone().unwrap();
    let (status, _) = post(&sys, "/revoke", Some((DOCS, DOCS_SECRET)), &[("token", &rt)]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "another client cannot revoke it");
    let (status, _) = post(
        &sys,
        "/revoke",
        Some((PORTAL, PORTAL_SECRET)),
        &[("token", &rt), ("token_type_hint", "refresh_token")],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (_, _, body) = token_request(
        &sys,
        Some((PORTAL, PORTAL_SECRET)),
        &[("grant_type", "refresh_token"), ("refresh_token", &rt)],
    )
    .await;
    assert_eq!(body["error"], "invalid_grant");
    assert_eq!(
        userinfo(&sys, &tokens.access_token).await.0,
        StatusCode::UNAUTHORIZED,
        "its access tokens die with the family"
    );
    // An access token alone.
    let fresh = sso_login(&browser, &rp, PORTAL_CB).await;
    assert_eq!(userinfo(&sys, &fresh.access_token).await.0, StatusCode::OK);
    let token = [("token", fresh.access_token.as_str())];
    let introspect = || post(&sys, "/introspect", Some((PORTAL, PORTAL_SECRET)), &token);
    assert_eq!(introspect().await.1["active"], true);
    let (status, _) =
        post(&sys, "/revoke", Some((PORTAL, PORTAL_SECRET)), &[("token", &fresh.access_token)]).await;
    assert_eq!(status, StatusCode::OK);
    // The token was verified (and remembered as verified) before: revocation still counts.
    assert_eq!(userinfo(&sys, &fresh.access_token).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(introspect().await.1["active"], false);
    // Unknown tokens are fine (RFC 7009 §2.2).
    let (status, _) = post(&sys, "/revoke", Some((PORTAL, PORTAL_SECRET)), &[("token", "nope")]).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn private_key_jwt_authenticates_once_per_assertion() {
    let keydir = tempfile::tempdir().unwrap();
    sso_gateway::keys::KeySet::generate(keydir.path(), sso_gateway::keys::SigningAlg::ES256).unwrap();
    let client_keys = sso_gateway::keys::KeySet::load_dir(keydir.path()).unwrap();
    let jwks: Value = serde_json::from_slice(&client_keys.jwks_json()).unwrap();
    let options = Options {
        extra_config: format!(
            r#"
[[clients]]
client_id = "signer"
redirect_uris = []
scopes = ["hotline.read"]
grant_types = ["client_credentials"]
token_endpoint_auth_method = "private_key_jwt"
jwks = {}
"#,
            toml::Value::try_from(json!({ "keys": jwks["keys"] })).unwrap()
        ),
        ..Default::default()
    };
    let sys = TestSystem::start_with(options).await;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let assertion = |aud: &str, jti: &str| {
        client_keys
            .sign(
                sso_gateway::keys::SigningAlg::ES256,
                "JWT",
                &json!({ "iss": "signer", "sub": "signer", "aud": aud, "exp": now + 60, "iat": now, "jti": jti }),
            )
            .unwrap()
    };
    let token_url = sys.url("/token");
    let good = assertion(&token_url, "a1");
    let form = |a: &str| {
        vec![
            ("grant_type".to_string(), "client_credentials".to_string()),
            (
                "client_assertion_type".to_string(),
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".to_string(),
            ),
            ("client_assertion".to_string(), a.to_string()),
        ]
    };
    let send = |f: Vec<(String, String)>| {
        let url = token_url.clone();
        async move { reqwest::Client::new().post(url).form(&f).send().await.unwrap().status() }
    };
    assert_eq!(send(form(&good)).await, StatusCode::OK);
    assert_eq!(send(form(&good)).await, StatusCode::UNAUTHORIZED, "a replayed assertion is refused");
    assert_eq!(
        send(form(&assertion("https://elsewhere.example/token", "a2"))).await,
        StatusCode::UNAUTHORIZED
    );
    // A secret does not authenticate a private_key_jwt client.
    let (status, _, _) =
        token_request(&sys, Some(("signer", "whatever-secret")), &[("grant_type", "client_credentials")])
            .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}
