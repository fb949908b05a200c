//! Rate limits (`[limits]`): one address cannot flood the browser routes, one client cannot
//! flood the back-channel endpoints, `X-Forwarded-For` counts only from trusted proxies,
//! replicas on one Redis share the counts, and a refusal is a 429 with `Retry-After` in the
//! shape the endpoint's callers understand.

use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::*;

/// Moves the gateway's clock to the start of a counting window (60 s by default), so a test
/// never straddles two windows.
fn at_window_start(sys: &TestSystem) {
    sys.clock.advance(60 - sys.clock.now().rem_euclid(60));
}

fn authorize_url(base: &str, n: usize) -> String {
    format!(
        "{base}/authorize?client_id={PORTAL}&redirect_uri={}&response_type=code&scope=openid&state=s{n}&nonce=n{n}&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256",
        url::form_urlencoded::byte_serialize(PORTAL_CB.as_bytes()).collect::<String>()
    )
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

/// GET /authorize, optionally with an `X-Forwarded-For`; the status and the response.
async fn authorize(http: &reqwest::Client, base: &str, n: usize, xff: Option<&str>) -> reqwest::Response {
    let mut req = http.get(authorize_url(base, n));
    if let Some(xff) = xff {
        req = req.header("x-forwarded-for", xff);
    }
    req.send().await.unwrap()
}

/// The bilingual browser page of a refusal, with its Retry-After.
async fn assert_browser_429(res: reqwest::Response) {
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = res.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    assert!(res.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let body = res.text().await.unwrap();
    assert!(body.contains("Quá nhiều yêu cầu") && body.contains("Too many requests"), "{body}");
}

#[tokio::test]
async fn a_flood_of_authorize_requests_from_one_address_is_refused_with_429() {
    // Default configuration: no [limits] table at all.
    let sys = TestSystem::start().await;
    at_window_start(&sys);
    let http = client();
    let statuses: Vec<StatusCode> = futures::stream::iter(0..1_300)
        .map(|n| {
            let http = http.clone();
            let base = sys.gateway.clone();
            async move { authorize(&http, &base, n, None).await.status() }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let refused = statuses.iter().filter(|s| **s == StatusCode::TOO_MANY_REQUESTS).count();
    let accepted = statuses.len() - refused;
    assert!(
        statuses.iter().all(|s| *s == StatusCode::TOO_MANY_REQUESTS || s.is_redirection() || s.is_success()),
        "only acceptances and refusals: {statuses:?}"
    );
    assert_eq!(accepted, 1_200, "the default allows 1 200 per address and minute; {refused} refused");
    assert_browser_429(authorize(&http, &sys.gateway, 0, None).await).await;
    // Discovery, JWKS and health are never limited.
    for path in ["/.well-known/openid-configuration", "/jwks", "/healthz", "/readyz"] {
        assert_eq!(http.get(sys.url(path)).send().await.unwrap().status(), StatusCode::OK, "{path}");
    }
    // The next window lets the address in again.
    sys.clock.advance(60);
    assert_ne!(authorize(&http, &sys.gateway, 0, None).await.status(), StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn a_forwarded_for_from_an_untrusted_peer_does_not_give_a_fresh_count() {
    let options =
        Options { extra_config: "\n[limits]\nbrowser_per_address = 5\n".into(), ..Options::default() };
    let sys = TestSystem::start_with(options).await;
    at_window_start(&sys);
    let http = client();
    for n in 0..5 {
        let xff = format!("198.51.100.{n}");
        let res = authorize(&http, &sys.gateway, n, Some(&xff)).await;
        assert_ne!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    }
    // Each request claimed another address; the peer (not a trusted proxy) is what counts.
    assert_browser_429(authorize(&http, &sys.gateway, 9, Some("198.51.100.99")).await).await;
}

#[tokio::test]
async fn a_forwarded_for_from_a_trusted_proxy_names_the_counted_address() {
    let options = Options {
        extra_config: "\n[inbound]\ntrusted_proxies = [\"127.0.0.0/8\"]\n[limits]\nbrowser_per_address = 5\n"
            .into(),
        ..Options::default()
    };
    let sys = TestSystem::start_with(options).await;
    at_window_start(&sys);
    let http = client();
    for n in 0..5 {
        // What the client wrote on the left is not believed; the proxy's entry is.
        let res = authorize(&http, &sys.gateway, n, Some(&format!("10.9.9.{n}, 198.51.100.7"))).await;
        assert_ne!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    }
    assert_browser_429(authorize(&http, &sys.gateway, 5, Some("198.51.100.7")).await).await;
    // Another person behind the same proxy has a count of their own.
    let other = authorize(&http, &sys.gateway, 6, Some("198.51.100.8")).await;
    assert_ne!(other.status(), StatusCode::TOO_MANY_REQUESTS);
}

async fn client_credentials(
    sys: &TestSystem,
    secret: &str,
    xff: &str,
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let res = reqwest::Client::new()
        .post(sys.url("/token"))
        .basic_auth(M2M, Some(secret))
        .header("x-forwarded-for", xff)
        .form(&[("grant_type", "client_credentials"), ("scope", "hotline.read")])
        .send()
        .await
        .unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    (status, headers, res.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn one_client_is_limited_at_the_token_endpoints_whatever_its_address() {
    let options = Options {
        extra_config: "\n[inbound]\ntrusted_proxies = [\"127.0.0.0/8\"]\n[limits]\ntoken_per_client = 6\n"
            .into(),
        ..Options::default()
    };
    let sys = TestSystem::start_with(options).await;
    at_window_start(&sys);
    for n in 0..4 {
        let (status, _, body) = client_credentials(&sys, M2M_SECRET, &format!("198.51.100.{n}")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    // Failed authentications count too (a guessed secret spends the client's allowance).
    let (status, _, _) = client_credentials(&sys, "wrong-secret-0123456789", "198.51.100.50").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, body) = client_credentials(&sys, M2M_SECRET, "198.51.100.51").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The seventh request in the window, from yet another address.
    let (status, headers, body) = client_credentials(&sys, M2M_SECRET, "198.51.100.52").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(body["error"], "slow_down", "{body}");
    assert!(body["error_description"].is_string());
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry));
    assert_eq!(headers["cache-control"], "no-store");
    // The same count covers introspection and revocation by that client (client_secret_post).
    for path in ["/introspect", "/revoke"] {
        let res = reqwest::Client::new()
            .post(sys.url(path))
            .form(&[("client_id", M2M), ("client_secret", M2M_SECRET), ("token", "x")])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS, "{path}");
        assert_eq!(res.json::<Value>().await.unwrap()["error"], "slow_down");
    }
    // Other clients are not affected, nor are made-up client ids given counts of their own.
    let (status, _, body) = token_request(
        &sys,
        Some((PORTAL, PORTAL_SECRET)),
        &[("grant_type", "refresh_token"), ("refresh_token", "unknown")],
    )
    .await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")));
    for _ in 0..8 {
        let (status, _, _) =
            token_request(&sys, Some(("nobody", "x")), &[("grant_type", "client_credentials")]).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    // A new window, a new allowance.
    sys.clock.advance(60);
    let (status, _, body) = client_credentials(&sys, M2M_SECRET, "198.51.100.53").await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn one_address_is_limited_at_the_token_endpoints_even_with_malformed_requests() {
    let options =
        Options { extra_config: "\n[limits]\ntoken_per_address = 3\n".into(), ..Options::default() };
    let sys = TestSystem::start_with(options).await;
    at_window_start(&sys);
    let http = reqwest::Client::new();
    for _ in 0..3 {
        let res = http.post(sys.url("/token")).body("not a form").send().await.unwrap();
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    }
    let res = http.post(sys.url("/token")).body("not a form").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(res.headers().contains_key("retry-after"));
    assert_eq!(res.json::<Value>().await.unwrap()["error"], "slow_down");
    // Browser routes keep their own count.
    assert_ne!(authorize(&client(), &sys.gateway, 0, None).await.status(), StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn replicas_on_one_redis_share_the_counts() {
    let mut options = Options::redis_replicas(2);
    options.extra_config = "\n[limits]\nbrowser_per_address = 4\n".into();
    let sys = TestSystem::start_with(options).await;
    at_window_start(&sys);
    let http = client();
    let a = format!("http://{}", sys.replicas[0].addr);
    let b = format!("http://{}", sys.replicas[1].addr);
    for (n, base) in [&a, &b, &a, &b].into_iter().enumerate() {
        assert_ne!(authorize(&http, base, n, None).await.status(), StatusCode::TOO_MANY_REQUESTS);
    }
    // Each replica has seen two requests; together they have seen the allowance.
    assert_browser_429(authorize(&http, &a, 4, None).await).await;
    assert_browser_429(authorize(&http, &b, 5, None).await).await;
}

#[tokio::test]
async fn limits_can_be_turned_off() {
    let options = Options {
        extra_config: "\n[limits]\nenabled = false\nbrowser_per_address = 1\ntoken_per_client = 1\n".into(),
        ..Options::default()
    };
    let sys = TestSystem::start_with(options).await;
    let http = client();
    for n in 0..5 {
        assert_ne!(authorize(&http, &sys.gateway, n, None).await.status(), StatusCode::TOO_MANY_REQUESTS);
        let (status, _, body) = client_credentials(&sys, M2M_SECRET, "198.51.100.1").await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
}

#[tokio::test]
async fn during_a_redis_outage_the_limiter_fails_open_to_the_replicas_own_count() {
    let mut redis = crate::redis_outage::own_redis();
    let options = Options {
        redis: Some(redis.url()),
        replicas: 1,
        extra_config: "\n[limits]\nbrowser_per_address = 3\n".into(),
        ..Options::default()
    };
    let sys = TestSystem::start_with(options).await;
    at_window_start(&sys);
    let http = client();
    // Two requests counted in Redis.
    for n in 0..2 {
        assert_ne!(authorize(&http, &sys.gateway, n, None).await.status(), StatusCode::TOO_MANY_REQUESTS);
    }
    redis.kill();
    // Redis is gone: the limiter neither refuses nor delays the request because of that (the
    // request meets the outage itself: a 503 or an error redirect, not a 429)…
    let res = authorize(&http, &sys.gateway, 2, None).await;
    assert_ne!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    // …and goes on counting in the process from the last count Redis gave (2 + 1 here).
    assert_browser_429(authorize(&http, &sys.gateway, 3, None).await).await;
}

#[tokio::test]
async fn refusals_are_counted_by_route_and_bucket_never_by_address() {
    let clock = sso_gateway::clock::Clock::system();
    clock.advance(60 - clock.now().rem_euclid(60));
    let gw = start_bare_gateway("[limits]\nbrowser_per_address = 1\ntoken_per_address = 1\n", clock).await;
    let (public, management) = (gw.public.clone(), gw.management.clone());
    let http = client();
    let mut last = StatusCode::OK;
    for _ in 0..2 {
        last = http.get(format!("{public}/authorize")).send().await.unwrap().status();
        http.post(format!("{public}/token")).form(&[("grant_type", "x")]).send().await.unwrap();
    }
    assert_eq!(last, StatusCode::TOO_MANY_REQUESTS);
    let metrics = reqwest::get(format!("{management}/metrics")).await.unwrap().text().await.unwrap();
    let refusals: Vec<&str> = metrics.lines().filter(|l| l.starts_with("sso_rate_limited_total")).collect();
    assert!(
        refusals.iter().any(|l| l.contains("route=\"/authorize\"") && l.contains("bucket=\"browser\"")),
        "{metrics}"
    );
    assert!(
        refusals.iter().any(|l| l.contains("route=\"/token\"") && l.contains("bucket=\"token\"")),
        "{metrics}"
    );
    assert!(refusals.iter().all(|l| !l.contains("127.0.0.1")), "{refusals:?}");
}

/// The account page and the admin console are served by routers with their own state; the
/// browser limit counts them like every other browser route, and their JSON API is not.
#[tokio::test]
async fn the_account_page_and_the_console_count_against_the_browser_limit() {
    let options =
        Options { extra_config: "\n[limits]\nbrowser_per_address = 4\n".into(), ..Options::default() };
    let sys = TestSystem::start_with(options).await;
    at_window_start(&sys);
    let http = client();
    for path in ["/account", "/admin", "/account", "/admin"] {
        let res = http.get(sys.url(path)).send().await.unwrap();
        assert_ne!(res.status(), StatusCode::TOO_MANY_REQUESTS, "{path}");
    }
    assert_browser_429(http.get(sys.url("/account")).send().await.unwrap()).await;
    assert_browser_429(http.get(sys.url("/admin")).send().await.unwrap()).await;
    // The admin API is limited per client (bearer), not per browser address.
    let api = http.get(sys.url("/admin/api/v1/accounts")).send().await.unwrap();
    assert_eq!(api.status(), StatusCode::UNAUTHORIZED);
}
