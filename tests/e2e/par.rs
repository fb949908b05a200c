//! Pushed authorization requests (RFC 9126, issue 14): a confidential client pushes its
//! request to `/par`, the browser brings only `client_id` + `request_uri` to `/authorize`,
//! and that `request_uri` works once, for a short time, for that client only — on any
//! replica. A client (or the whole gateway) can require pushing.

use crate::helpers::*;
use reqwest::StatusCode;
use serde_json::Value;

const PUSHER: &str = "par-app";
const PUSHER_SECRET: &str = "par-app-secret-0123456789";
const PUSHER_CB: &str = "http://127.0.0.1:9/par/cb";

fn config() -> String {
    format!(
        r#"
[[clients]]
client_id = "{PUSHER}"
client_secret = "{PUSHER_SECRET}"
redirect_uris = ["{PUSHER_CB}"]
require_pushed_authorization_requests = true
"#
    )
}

async fn start(options: Options) -> TestSystem {
    TestSystem::start_with(Options { extra_config: config(), ..options }).await
}

/// The parameters of an authorization URL (what a client would push instead).
fn query_of(url: &str) -> Vec<(String, String)> {
    url::Url::parse(url).unwrap().query_pairs().into_owned().collect()
}

/// Pushes `params` to `/par` as `auth` (HTTP Basic) with an optional DPoP proof.
pub async fn push(
    sys: &TestSystem,
    auth: Option<(&str, &str)>,
    params: &[(String, String)],
    proof: Option<&str>,
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let mut req = reqwest::Client::new().post(sys.url("/par")).form(params);
    if let Some((id, secret)) = auth {
        req = req.basic_auth(id, Some(secret));
    }
    if let Some(proof) = proof {
        req = req.header("DPoP", proof);
    }
    send(req).await
}

/// The `/authorize` URL that uses a pushed request.
pub fn pushed_url(sys: &TestSystem, client_id: &str, request_uri: &str) -> String {
    let mut url = url::Url::parse(&sys.url("/authorize")).unwrap();
    url.query_pairs_mut().append_pair("client_id", client_id).append_pair("request_uri", request_uri);
    url.to_string()
}

/// Pushes the RP's request; returns it (for the code exchange) and its `request_uri`.
async fn push_request(sys: &TestSystem, rp: &Rp, client: (&str, &str)) -> (AuthRequest, String) {
    let req = rp.authorize(&[]);
    let (status, headers, body) = push(sys, Some(client), &query_of(&req.url), None).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(body["expires_in"], 60);
    let request_uri = body["request_uri"].as_str().unwrap().to_string();
    assert!(request_uri.starts_with("urn:ietf:params:oauth:request_uri:"), "{request_uri}");
    (req, request_uri)
}

/// Where a browser lands at a pushed request's `/authorize` URL that is refused: a 400 page
/// naming `invalid_request_uri`, never a redirect.
async fn assert_refused(browser: &Browser, url: &str, stop: &str) {
    let (_, status, body) = browser.navigate(url, stop).await.page();
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("invalid_request_uri"), "{body}");
}

#[tokio::test]
async fn a_pushed_request_logs_in_and_its_request_uri_works_once() {
    let sys = start(Options::default()).await;
    let doc: Value =
        reqwest::get(sys.url("/.well-known/openid-configuration")).await.unwrap().json().await.unwrap();
    assert_eq!(doc["pushed_authorization_request_endpoint"], sys.url("/par"));
    assert_eq!(doc["require_pushed_authorization_requests"], false);
    let rp = sys.rp(PUSHER, Some(PUSHER_SECRET), PUSHER_CB).await;
    let (req, request_uri) = push_request(&sys, &rp, (PUSHER, PUSHER_SECRET)).await;
    let browser = Browser::new();
    let url = pushed_url(&sys, PUSHER, &request_uri);
    let cb = browser.login(&url, "hcm", HCM_USER, PUSHER_CB).await.callback();
    assert_eq!(param(&cb, "state").as_deref(), Some(req.state.as_str()), "the pushed state");
    let tokens = rp.exchange(&req, &param(&cb, "code").unwrap()).await.unwrap();
    assert_eq!(tokens.raw["nonce"], req.nonce.as_str(), "the pushed nonce");
    // The same request_uri again, even in the browser that has a session now.
    assert_refused(&browser, &url, PUSHER_CB).await;
}

#[tokio::test]
async fn an_expired_request_uri_is_refused() {
    let sys = start(Options::default()).await;
    let rp = sys.rp(PUSHER, Some(PUSHER_SECRET), PUSHER_CB).await;
    let (_, request_uri) = push_request(&sys, &rp, (PUSHER, PUSHER_SECRET)).await;
    sys.clock.advance(61);
    assert_refused(&Browser::new(), &pushed_url(&sys, PUSHER, &request_uri), PUSHER_CB).await;
}

#[tokio::test]
async fn another_clients_request_uri_and_made_up_ones_are_refused() {
    let sys = start(Options::default()).await;
    let rp = sys.rp(PORTAL, Some(PORTAL_SECRET), PORTAL_CB).await;
    let (_, request_uri) = push_request(&sys, &rp, (PORTAL, PORTAL_SECRET)).await;
    let browser = Browser::new();
    assert_refused(&browser, &pushed_url(&sys, DOCS, &request_uri), DOCS_CB).await;
    for made_up in ["urn:ietf:params:oauth:request_uri:nope", "https://evil.example/request.jwt", ""] {
        assert_refused(&browser, &pushed_url(&sys, PORTAL, made_up), PORTAL_CB).await;
    }
    // Without client_id, a pushed request is not even looked up.
    let mut url = url::Url::parse(&sys.url("/authorize")).unwrap();
    url.query_pairs_mut().append_pair("request_uri", &request_uri);
    let (_, status, _) = browser.navigate(url.as_str(), PORTAL_CB).await.page();
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_client_that_must_push_cannot_send_its_request_to_authorize() {
    let sys = start(Options::default()).await;
    let rp = sys.rp(PUSHER, Some(PUSHER_SECRET), PUSHER_CB).await;
    let cb = Browser::new().navigate(&rp.authorize(&[]).url, PUSHER_CB).await.callback();
    assert_eq!(param(&cb, "error").as_deref(), Some("invalid_request"));
    // Other clients still may (pushing is optional for them).
    let portal = sys.rp(PORTAL, Some(PORTAL_SECRET), PORTAL_CB).await;
    let (url, status, _) = Browser::new().navigate(&portal.authorize(&[]).url, PORTAL_CB).await.page();
    assert_eq!(status, StatusCode::OK, "{url}");
}

#[tokio::test]
async fn par_required_globally_applies_to_every_confidential_client() {
    let options =
        Options { extra_config: "[par]\nrequired = true\nlifetime = \"90s\"\n".into(), ..Options::default() };
    let sys = TestSystem::start_with(options).await;
    let doc: Value =
        reqwest::get(sys.url("/.well-known/openid-configuration")).await.unwrap().json().await.unwrap();
    assert_eq!(doc["require_pushed_authorization_requests"], true);
    let portal = sys.rp(PORTAL, Some(PORTAL_SECRET), PORTAL_CB).await;
    let cb = Browser::new().navigate(&portal.authorize(&[]).url, PORTAL_CB).await.callback();
    assert_eq!(param(&cb, "error").as_deref(), Some("invalid_request"));
    let req = portal.authorize(&[]);
    let (status, _, body) = push(&sys, Some((PORTAL, PORTAL_SECRET)), &query_of(&req.url), None).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(body["expires_in"], 90);
    // A public client cannot push, so it is not held to it.
    let spa = sys.rp(SPA, None, SPA_CB).await;
    let (_, status, _) = Browser::new().navigate(&spa.authorize(&[]).url, SPA_CB).await.page();
    assert_eq!(status, StatusCode::OK);
}

/// Client authentication, parameters, expected status and error.
type Case<'a> = (Option<(&'a str, &'a str)>, Vec<(String, String)>, StatusCode, &'a str);

#[tokio::test]
async fn par_refuses_unauthenticated_clients_and_requests_authorize_would_refuse() {
    let sys = start(Options::default()).await;
    let rp = sys.rp(PORTAL, Some(PORTAL_SECRET), PORTAL_CB).await;
    let good = query_of(&rp.authorize(&[]).url);
    let with = |k: &str, v: &str| {
        let mut p: Vec<(String, String)> = good.iter().filter(|(n, _)| n != k).cloned().collect();
        p.push((k.into(), v.into()));
        p
    };
    let cases: Vec<Case> = vec![
        (Some((PORTAL, "wrong-secret-0123456789")), good.clone(), StatusCode::UNAUTHORIZED, "invalid_client"),
        (None, good.clone(), StatusCode::UNAUTHORIZED, "invalid_client"),
        (
            None,
            query_of(&sys.rp(SPA, None, SPA_CB).await.authorize(&[]).url),
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        ),
        (
            Some((PORTAL, PORTAL_SECRET)),
            with("request_uri", "urn:x"),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (Some((PORTAL, PORTAL_SECRET)), with("client_id", DOCS), StatusCode::BAD_REQUEST, "invalid_request"),
        (
            Some((PORTAL, PORTAL_SECRET)),
            with("redirect_uri", "https://evil.example/cb"),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            Some((PORTAL, PORTAL_SECRET)),
            with("response_type", "token"),
            StatusCode::BAD_REQUEST,
            "unsupported_response_type",
        ),
        (Some((PORTAL, PORTAL_SECRET)), with("scope", "profile"), StatusCode::BAD_REQUEST, "invalid_scope"),
        (
            Some((PORTAL, PORTAL_SECRET)),
            with("dpop_jkt", "short"),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
    ];
    let before = sys.app.store.memory_entries();
    for (i, (auth, params, status, error)) in cases.into_iter().enumerate() {
        let (got, _, body) = push(&sys, auth, &params, None).await;
        assert_eq!((got, body["error"].as_str()), (status, Some(error)), "case {i}: {body}");
    }
    assert_eq!(sys.app.store.memory_entries(), before, "refused pushes stored nothing");
}

#[tokio::test]
async fn pushes_are_rate_limited_like_the_token_endpoint() {
    let options = Options {
        extra_config: format!("{}\n[limits]\ntoken_per_client = 3\n", config()),
        ..Options::default()
    };
    let sys = TestSystem::start_with(options).await;
    let rp = sys.rp(PORTAL, Some(PORTAL_SECRET), PORTAL_CB).await;
    let params = query_of(&rp.authorize(&[]).url);
    for _ in 0..3 {
        assert_eq!(push(&sys, Some((PORTAL, PORTAL_SECRET)), &params, None).await.0, StatusCode::CREATED);
    }
    let (status, headers, body) = push(&sys, Some((PORTAL, PORTAL_SECRET)), &params, None).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(body["error"], "slow_down");
    assert!(headers.contains_key("retry-after"));
}

#[tokio::test]
async fn a_request_pushed_at_one_replica_is_used_once_across_replicas_on_redis() {
    let sys = start(Options::redis_replicas(2)).await;
    let rp = sys.rp(PUSHER, Some(PUSHER_SECRET), PUSHER_CB).await;
    sys.route_to(0);
    let (req, request_uri) = push_request(&sys, &rp, (PUSHER, PUSHER_SECRET)).await;
    sys.route_to(1);
    let browser = Browser::new();
    let url = pushed_url(&sys, PUSHER, &request_uri);
    let cb = browser.login(&url, "hcm", HCM_USER, PUSHER_CB).await.callback();
    rp.exchange(&req, &param(&cb, "code").unwrap()).await.unwrap();
    sys.route_to(0);
    assert_refused(&browser, &url, PUSHER_CB).await;
}
