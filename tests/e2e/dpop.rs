//! DPoP (RFC 9449, issue 14): tokens bound to a key the client holds. A bound access token
//! works at `/userinfo` only with a fresh proof of that key for that request and token; a
//! public client's refresh token only for the holder of the key; `dpop_jkt` binds the code;
//! proofs are single-use (across replicas on Redis) and, when asked, carry a server nonce.

use crate::helpers::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

const STRICT: &str = "dpop-only";
const STRICT_SECRET: &str = "dpop-only-secret-0123456789";
const STRICT_CB: &str = "http://127.0.0.1:9/dpop/cb";

fn config() -> String {
    format!(
        r#"
[[clients]]
client_id = "{STRICT}"
client_secret = "{STRICT_SECRET}"
redirect_uris = ["{STRICT_CB}"]
require_dpop = true
"#
    )
}

async fn start(options: Options) -> TestSystem {
    let extra = format!("{}{}", config(), options.extra_config);
    TestSystem::start_with(Options { extra_config: extra, ..options }).await
}

/// A code for `client` from a fresh browser login (extra authorization parameters allowed).
async fn code_for(rp: &Rp, redirect: &str, extra: &[(&str, &str)]) -> (AuthRequest, String) {
    let req = rp.authorize(extra);
    let cb = Browser::new().login(&req.url, "hcm", HCM_USER, redirect).await.callback();
    let code = param(&cb, "code").unwrap_or_else(|| panic!("no code in {cb}"));
    (req, code)
}

/// Redeems a code with a DPoP proof of `key` (None: no proof).
async fn redeem(
    sys: &TestSystem,
    auth: Option<(&str, &str)>,
    client_id: &str,
    redirect: &str,
    (req, code): &(AuthRequest, String),
    key: Option<&DpopKey>,
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let proof = key.map(|k| k.proof("POST", &sys.url("/token"), None, None));
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", redirect),
        ("code_verifier", req.verifier.as_str()),
        ("client_id", client_id),
    ];
    dpop_token_request(sys, auth, &form, proof.as_deref()).await
}

async fn refresh_with(
    sys: &TestSystem,
    client_id: &str,
    rt: &str,
    key: Option<&DpopKey>,
) -> (StatusCode, Value) {
    let proof = key.map(|k| k.proof("POST", &sys.url("/token"), None, None));
    let form = [("grant_type", "refresh_token"), ("refresh_token", rt), ("client_id", client_id)];
    let (status, _, body) = dpop_token_request(sys, None, &form, proof.as_deref()).await;
    (status, body)
}

#[tokio::test]
async fn a_dpop_bound_token_works_only_with_a_fresh_proof_of_its_key() {
    let sys = start(Options::default()).await;
    let doc: Value =
        reqwest::get(sys.url("/.well-known/openid-configuration")).await.unwrap().json().await.unwrap();
    assert!(doc["dpop_signing_alg_values_supported"].as_array().unwrap().contains(&json!("ES256")));
    let rp = sys.rp(PORTAL, Some(PORTAL_SECRET), PORTAL_CB).await;
    let key = DpopKey::new();
    let code = code_for(&rp, PORTAL_CB, &[]).await;
    let (status, _, body) =
        redeem(&sys, Some((PORTAL, PORTAL_SECRET)), PORTAL, PORTAL_CB, &code, Some(&key)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["token_type"], "DPoP");
    let at = body["access_token"].as_str().unwrap();
    assert_eq!(verify_with_jwks(&sys, at, sys.gateway.as_str()).await["cnf"]["jkt"], key.jkt.as_str());
    let userinfo_url = sys.url("/userinfo");

    let (status, _, claims) =
        userinfo_with(&sys, "DPoP", at, Some(&key.proof("GET", &userinfo_url, Some(at), None))).await;
    assert_eq!(status, StatusCode::OK, "{claims}");
    assert!(claims["sub"].is_string());

    // As a Bearer token, with or without a proof: refused.
    for proof in [None, Some(key.proof("GET", &userinfo_url, Some(at), None))] {
        let (status, headers, _) = userinfo_with(&sys, "Bearer", at, proof.as_deref()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(headers["www-authenticate"].to_str().unwrap().contains("invalid_token"));
    }
    let now = jsonwebtoken::get_current_timestamp();
    let claims_with = |extra: Value| {
        let mut c = json!({ "jti": uuid::Uuid::new_v4().to_string(), "htm": "GET", "htu": userinfo_url,
            "iat": now, "ath": jwt_ath(at) });
        for (k, v) in extra.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        c
    };
    let replayed = key.proof("GET", &userinfo_url, Some(at), None);
    assert_eq!(userinfo_with(&sys, "DPoP", at, Some(&replayed)).await.0, StatusCode::OK);
    let attacks = [
        ("no proof", None),
        ("replayed proof", Some(replayed)),
        ("another key", Some(DpopKey::new().proof("GET", &userinfo_url, Some(at), None))),
        ("wrong htm", Some(key.sign(&claims_with(json!({ "htm": "POST" }))))),
        ("wrong htu", Some(key.sign(&claims_with(json!({ "htu": sys.url("/token") }))))),
        ("stale iat", Some(key.sign(&claims_with(json!({ "iat": now - 600 }))))),
        ("missing ath", Some(key.sign(&claims_with(json!({ "ath": null }))))),
        ("another token's ath", Some(key.sign(&claims_with(json!({ "ath": jwt_ath("other") }))))),
    ];
    for (what, proof) in attacks {
        let (status, headers, body) = userinfo_with(&sys, "DPoP", at, proof.as_deref()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {body}");
        let challenge = headers["www-authenticate"].to_str().unwrap();
        assert!(
            challenge.starts_with("DPoP ") && challenge.contains("invalid_dpop_proof"),
            "{what}: {challenge}"
        );
    }

    // Introspection tells the resource server the key.
    let res = reqwest::Client::new()
        .post(sys.url("/introspect"))
        .basic_auth(PORTAL, Some(PORTAL_SECRET))
        .form(&[("token", at)])
        .send()
        .await
        .unwrap();
    let body: Value = res.json().await.unwrap();
    assert_eq!((body["active"].as_bool(), body["token_type"].as_str()), (Some(true), Some("DPoP")));
    assert_eq!(body["cnf"]["jkt"], key.jkt.as_str());
}

fn jwt_ath(token: &str) -> String {
    use base64::Engine;
    use sha2::Digest;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(token.as_bytes()))
}

#[tokio::test]
async fn an_unbound_token_stays_a_bearer_token() {
    let sys = start(Options::default()).await;
    let (_, tokens) = portal_login(&sys, &Browser::new(), "hcm", HCM_USER).await;
    assert_eq!(userinfo(&sys, &tokens.access_token).await.0, StatusCode::OK);
    let proof = DpopKey::new().proof("GET", &sys.url("/userinfo"), Some(&tokens.access_token), None);
    let (status, _, _) = userinfo_with(&sys, "DPoP", &tokens.access_token, Some(&proof)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "DPoP scheme with an unbound token");
}

#[tokio::test]
async fn token_endpoint_proofs_are_checked_and_single_use() {
    let sys = start(Options::default()).await;
    let rp = sys.rp(PORTAL, Some(PORTAL_SECRET), PORTAL_CB).await;
    let key = DpopKey::new();
    let token_url = sys.url("/token");
    let now = jsonwebtoken::get_current_timestamp();
    let used = key.proof("POST", &token_url, None, None);
    let code = code_for(&rp, PORTAL_CB, &[]).await;
    let form = |code: &(AuthRequest, String)| {
        vec![
            ("grant_type", "authorization_code".to_string()),
            ("code", code.1.clone()),
            ("redirect_uri", PORTAL_CB.to_string()),
            ("code_verifier", code.0.verifier.clone()),
        ]
    };
    let f = form(&code);
    let f: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, _, _) = dpop_token_request(&sys, Some((PORTAL, PORTAL_SECRET)), &f, Some(&used)).await;
    assert_eq!(status, StatusCode::OK);
    let bad = [
        ("replayed", used),
        ("wrong htm", key.sign(&json!({ "jti": "a1", "htm": "GET", "htu": token_url, "iat": now }))),
        ("wrong htu", key.sign(&json!({ "jti": "a2", "htm": "POST", "htu": sys.url("/par"), "iat": now }))),
        ("stale iat", key.sign(&json!({ "jti": "a3", "htm": "POST", "htu": token_url, "iat": now - 120 }))),
        ("no jti", key.sign(&json!({ "htm": "POST", "htu": token_url, "iat": now }))),
        ("garbage", "e30.e30.e30".to_string()),
    ];
    for (what, proof) in bad {
        let code = code_for(&rp, PORTAL_CB, &[]).await;
        let f = form(&code);
        let f: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (status, _, body) =
            dpop_token_request(&sys, Some((PORTAL, PORTAL_SECRET)), &f, Some(&proof)).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_dpop_proof")),
            "{what}"
        );
    }
}

#[tokio::test]
async fn a_public_clients_refresh_token_is_bound_to_its_key() {
    let sys = start(Options::default()).await;
    let rp = sys.rp(SPA, None, SPA_CB).await;
    let key = DpopKey::new();
    let code = code_for(&rp, SPA_CB, &[]).await;
    let (status, _, body) = redeem(&sys, None, SPA, SPA_CB, &code, Some(&key)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let rt = body["refresh_token"].as_str().unwrap().to_string();
    // A thief with the refresh token but not the key: refused, and nothing is used up.
    let (status, body) = refresh_with(&sys, SPA, &rt, Some(&DpopKey::new())).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant")),
        "wrong key"
    );
    let (status, body) = refresh_with(&sys, SPA, &rt, None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant")),
        "no proof"
    );
    let (status, body) = refresh_with(&sys, SPA, &rt, Some(&key)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["token_type"], "DPoP");
    let rt2 = body["refresh_token"].as_str().unwrap();
    let res = reqwest::Client::new()
        .post(sys.url("/introspect"))
        .basic_auth(PORTAL, Some(PORTAL_SECRET))
        .form(&[("token", rt2)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.json::<Value>().await.unwrap()["active"], false, "another client learns nothing");
    let (status, _) = refresh_with(&sys, SPA, rt2, Some(&key)).await;
    assert_eq!(status, StatusCode::OK, "the rotated token stays bound to the same key");
}

#[tokio::test]
async fn dpop_jkt_binds_the_code_to_a_key() {
    let sys = start(Options::default()).await;
    let rp = sys.rp(PORTAL, Some(PORTAL_SECRET), PORTAL_CB).await;
    let key = DpopKey::new();
    let auth = Some((PORTAL, PORTAL_SECRET));
    let code = code_for(&rp, PORTAL_CB, &[("dpop_jkt", key.jkt.as_str())]).await;
    let (status, _, body) = redeem(&sys, auth, PORTAL, PORTAL_CB, &code, Some(&DpopKey::new())).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant")),
        "another key"
    );
    let code = code_for(&rp, PORTAL_CB, &[("dpop_jkt", key.jkt.as_str())]).await;
    let (status, _, body) = redeem(&sys, auth, PORTAL, PORTAL_CB, &code, None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant")),
        "no proof"
    );
    let code = code_for(&rp, PORTAL_CB, &[("dpop_jkt", key.jkt.as_str())]).await;
    let (status, _, body) = redeem(&sys, auth, PORTAL, PORTAL_CB, &code, Some(&key)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn a_proof_sent_with_a_pushed_request_binds_its_code() {
    let sys = start(Options::default()).await;
    let rp = sys.rp(PORTAL, Some(PORTAL_SECRET), PORTAL_CB).await;
    let key = DpopKey::new();
    let req = rp.authorize(&[]);
    let params: Vec<(String, String)> =
        url::Url::parse(&req.url).unwrap().query_pairs().into_owned().collect();
    let proof = key.proof("POST", &sys.url("/par"), None, None);
    let (status, _, body) =
        crate::par::push(&sys, Some((PORTAL, PORTAL_SECRET)), &params, Some(&proof)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let url = crate::par::pushed_url(&sys, PORTAL, body["request_uri"].as_str().unwrap());
    let cb = Browser::new().login(&url, "hcm", HCM_USER, PORTAL_CB).await.callback();
    let code = (req, param(&cb, "code").unwrap());
    let (status, _, body) =
        redeem(&sys, Some((PORTAL, PORTAL_SECRET)), PORTAL, PORTAL_CB, &code, Some(&DpopKey::new())).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")), "{body}");
}

#[tokio::test]
async fn a_client_that_requires_dpop_gets_no_token_without_a_proof() {
    let sys = start(Options::default()).await;
    let rp = sys.rp(STRICT, Some(STRICT_SECRET), STRICT_CB).await;
    let auth = Some((STRICT, STRICT_SECRET));
    let code = code_for(&rp, STRICT_CB, &[]).await;
    let (status, _, body) = redeem(&sys, auth, STRICT, STRICT_CB, &code, None).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_dpop_proof")));
    let code = code_for(&rp, STRICT_CB, &[]).await;
    let key = DpopKey::new();
    let (status, _, body) = redeem(&sys, auth, STRICT, STRICT_CB, &code, Some(&key)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // A confidential client's refresh token is bound to its authentication, but its new
    // access tokens still need a proof.
    let rt = body["refresh_token"].as_str().unwrap();
    let form = [("grant_type", "refresh_token"), ("refresh_token", rt)];
    let (status, _, body) = dpop_token_request(&sys, auth, &form, None).await;
    assert_eq!(body["error"], "invalid_dpop_proof", "{status}");
    let proof = DpopKey::new().proof("POST", &sys.url("/token"), None, None);
    let (status, _, body) = dpop_token_request(&sys, auth, &form, Some(&proof)).await;
    assert_eq!((status, body["token_type"].as_str()), (StatusCode::OK, Some("DPoP")), "{body}");
}

/// With server nonces: a proof without one is answered `use_dpop_nonce` and the nonce, which
/// every replica accepts; a proof used at one replica is refused at the other.
#[tokio::test]
async fn server_nonces_and_replay_protection_hold_across_replicas_on_redis() {
    let mut options = Options::redis_replicas(2);
    options.extra_config = "[dpop]\nrequire_nonce = true\n".into();
    let sys = start(options).await;
    let token_url = sys.url("/token");
    let key = DpopKey::new();
    let form = [("grant_type", "client_credentials"), ("scope", "hotline.read")];
    let auth = Some((M2M, M2M_SECRET));
    sys.route_to(0);
    let (status, headers, body) =
        dpop_token_request(&sys, auth, &form, Some(&key.proof("POST", &token_url, None, None))).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("use_dpop_nonce")));
    let nonce = headers["dpop-nonce"].to_str().unwrap().to_string();
    sys.route_to(1);
    let proof = key.proof("POST", &token_url, None, Some(&nonce));
    let (status, headers, body) = dpop_token_request(&sys, auth, &form, Some(&proof)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["token_type"], "DPoP");
    assert_eq!(headers["dpop-nonce"].to_str().unwrap(), nonce, "one nonce for every replica");
    sys.route_to(0);
    let (status, _, body) = dpop_token_request(&sys, auth, &form, Some(&proof)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_dpop_proof")),
        "replayed"
    );
    let wrong = key.proof("POST", &token_url, None, Some("made-up"));
    let (_, _, body) = dpop_token_request(&sys, auth, &form, Some(&wrong)).await;
    assert_eq!(body["error"], "use_dpop_nonce");
}

/// A public client's `client_id` proves nothing, so the replay markers of proofs sent with
/// it are anonymous records: anyone can send a fresh proof (of a fresh key) with a made-up
/// code, and such markers must count against the anonymous share, not against the room of
/// people who logged in. A confidential client's proofs stay authenticated.
#[tokio::test]
async fn proofs_sent_by_anyone_with_a_public_client_id_are_counted_as_anonymous() {
    let sys = start(Options::default()).await;
    let usage = || sys.app.store.memory_usage().unwrap();
    let (anonymous_before, authenticated_before) = usage();
    for n in 0..20 {
        let proof = DpopKey::new().proof("POST", &sys.url("/token"), None, None);
        let form = [
            ("grant_type", "authorization_code"),
            ("code", &format!("made-up-{n}")),
            ("redirect_uri", SPA_CB),
            ("code_verifier", &"v".repeat(43)),
            ("client_id", SPA),
        ];
        let (status, _, body) = dpop_token_request(&sys, None, &form, Some(&proof)).await;
        assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")));
    }
    let (anonymous, authenticated) = usage();
    assert_eq!(authenticated.entries, authenticated_before.entries, "no authenticated record was made");
    assert_eq!(anonymous.entries, anonymous_before.entries + 20, "one anonymous marker per proof");

    // A confidential client authenticated itself: its proof markers are not anonymous.
    let proof = DpopKey::new().proof("POST", &sys.url("/token"), None, None);
    let form = [("grant_type", "authorization_code"), ("code", "made-up"), ("redirect_uri", PORTAL_CB)];
    let (status, _, _) = dpop_token_request(&sys, Some((PORTAL, PORTAL_SECRET)), &form, Some(&proof)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(usage().0.entries, anonymous.entries);
    assert_eq!(usage().1.entries, authenticated.entries + 1);
}
