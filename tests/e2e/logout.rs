//! Logout that reaches everywhere: RP-initiated, back-channel and front-channel toward RPs,
//! upstream logout both ways, refresh tokens ending with the session.

use crate::helpers::*;
use legacy_idp::LogoutTokenKind;
use reqwest::StatusCode;
use std::time::{Duration, Instant};

const A: &str = "app-a";
const B: &str = "app-b";
const SECRET: &str = "logout-test-secret-0123";
const A_CB: &str = "http://127.0.0.1:9/a/cb";
const B_CB: &str = "http://127.0.0.1:9/b/cb";
const A_DONE: &str = "http://127.0.0.1:9/a/logged-out";

fn clients(a_receiver: &str, b_receiver: &str, extra: &str) -> String {
    format!(
        r#"
[[clients]]
client_id = "{A}"
client_secret = "{SECRET}"
redirect_uris = ["{A_CB}"]
post_logout_redirect_uris = ["{A_DONE}"]
backchannel_logout_uri = "{a_receiver}"
scopes = ["openid", "profile", "offline_access"]

[[clients]]
client_id = "{B}"
client_secret = "{SECRET}"
redirect_uris = ["{B_CB}"]
backchannel_logout_uri = "{b_receiver}"
frontchannel_logout_uri = "http://127.0.0.1:9/b/frontchannel"
id_token_signed_response_alg = "ES256"
{extra}
"#
    )
}

struct Setup {
    sys: TestSystem,
    a: Receiver,
    b: Receiver,
    browser: Browser,
    rp_a: Rp,
    rp_b: Rp,
}

async fn setup(redis: bool) -> Setup {
    let a = Receiver::start(Duration::ZERO).await;
    let b = Receiver::start(Duration::ZERO).await;
    let mut options = if redis { Options::redis_replicas(1) } else { Options::default() };
    options.extra_config = clients(&a.url, &b.url, "");
    let sys = TestSystem::start_with(options).await;
    let rp_a = sys.rp(A, Some(SECRET), A_CB).await;
    let rp_b = sys.rp(B, Some(SECRET), B_CB).await;
    Setup { sys, a, b, browser: Browser::new(), rp_a, rp_b }
}

async fn login_both(s: &Setup) -> (Tokens, Tokens) {
    let req = s.rp_a.authorize(&[("idp_hint", "hcm")]);
    let cb = s.browser.login(&req.url, "hcm", HCM_USER, A_CB).await.callback();
    let ta = s.rp_a.exchange(&req, &param(&cb, "code").unwrap()).await.unwrap();
    let tb = sso_login(&s.browser, &s.rp_b, B_CB).await;
    (ta, tb)
}

async fn refresh_fails(sys: &TestSystem, client: &str, rt: &str) -> bool {
    let (_, _, body) =
        token_request(sys, Some((client, SECRET)), &[("grant_type", "refresh_token"), ("refresh_token", rt)])
            .await;
    body["error"] == "invalid_grant"
}

async fn has_sso(s: &Setup) -> bool {
    let cb = s.browser.navigate(&s.rp_a.authorize(&[("prompt", "none")]).url, A_CB).await.callback();
    param(&cb, "code").is_some()
}

#[tokio::test]
async fn logout_at_one_rp_reaches_the_others_the_upstream_and_the_refresh_tokens() {
    let s = setup(true).await;
    let (ta, tb) = login_both(&s).await;
    let mut url = url::Url::parse(&s.sys.url("/logout")).unwrap();
    url.query_pairs_mut()
        .append_pair("id_token_hint", &ta.id_token)
        .append_pair("post_logout_redirect_uri", A_DONE)
        .append_pair("state", "bye");
    let started = Instant::now();
    // Through the upstream's own logout and back, then to A's registered page with state.
    let landing = s.browser.navigate(url.as_str(), A_DONE).await;
    let (_, status, page) = landing.page();
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("Bạn đã đăng xuất"), "{page}");
    let doc = scraper::Html::parse_document(&page);
    let iframe =
        doc.select(&scraper::Selector::parse("iframe").unwrap()).next().expect("front-channel iframe");
    let src = url::Url::parse(iframe.value().attr("src").unwrap()).unwrap();
    assert!(src.as_str().starts_with("http://127.0.0.1:9/b/frontchannel?"), "{src}");
    assert_eq!(param(&src, "iss").as_deref(), Some(s.sys.gateway.as_str()));
    assert_eq!(param(&src, "sid"), tb.raw["sid"].as_str().map(str::to_string));
    let next = doc.select(&scraper::Selector::parse("a#continue").unwrap()).next().expect("continue link");
    assert_eq!(next.value().attr("href"), Some(format!("{A_DONE}?state=bye").as_str()));
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(s.sys.idps["hcm"].logouts_received(), 1, "the upstream session was ended too");

    let token = s.b.wait_for_token(Duration::from_secs(5)).await.expect("B got a logout token");
    let header = jsonwebtoken::decode_header(&token).unwrap();
    assert_eq!(header.typ.as_deref(), Some("logout+jwt"));
    let claims = verify_with_jwks(&s.sys, &token, B).await;
    assert_eq!(claims["sid"], tb.raw["sid"]);
    assert_eq!(claims["sub"], tb.raw["sub"]);
    assert!(claims["events"]["http://schemas.openid.net/event/backchannel-logout"].is_object());
    assert!(claims.get("nonce").is_none() && claims["jti"].is_string());
    assert!(s.a.wait_for_token(Duration::from_secs(5)).await.is_some(), "A is told as well");

    assert!(refresh_fails(&s.sys, A, ta.refresh_token.as_deref().unwrap()).await);
    assert!(refresh_fails(&s.sys, B, tb.refresh_token.as_deref().unwrap()).await);
    assert_eq!(userinfo(&s.sys, &tb.access_token).await.0, StatusCode::UNAUTHORIZED);
    assert!(!has_sso(&s).await, "the session cookie no longer gives SSO");
}

#[tokio::test]
async fn logout_without_a_valid_hint_asks_first_and_resists_csrf() {
    let s = setup(false).await;
    login_both(&s).await;
    let (_, status, page) = s.browser.navigate(&s.sys.url("/logout?client_id=app-a"), A_DONE).await.page();
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("Đăng xuất khỏi mọi dịch vụ"), "{page}");
    assert!(has_sso(&s).await, "nothing ended before confirmation");
    // A cross-site form without the token changes nothing.
    let forged = s
        .browser
        .http
        .post(s.sys.url("/logout"))
        .form(&[("confirm", "yes"), ("csrf", "guess")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::OK);
    assert!(has_sso(&s).await);
    let doc = scraper::Html::parse_document(&page);
    let csrf = doc
        .select(&scraper::Selector::parse("input[name=csrf]").unwrap())
        .next()
        .and_then(|i| i.value().attr("value"))
        .unwrap()
        .to_string();
    let res = s
        .browser
        .http
        .post(s.sys.url("/logout"))
        .form(&[
            ("confirm", "yes"),
            ("csrf", csrf.as_str()),
            ("client_id", A),
            ("post_logout_redirect_uri", A_DONE),
        ])
        .send()
        .await
        .unwrap();
    assert!(res.status().is_redirection() || res.status().is_success());
    assert!(!has_sso(&s).await);
}

#[tokio::test]
async fn an_unregistered_post_logout_redirect_uri_is_not_followed() {
    let s = setup(false).await;
    let (ta, _) = login_both(&s).await;
    let mut url = url::Url::parse(&s.sys.url("/logout")).unwrap();
    url.query_pairs_mut()
        .append_pair("id_token_hint", &ta.id_token)
        .append_pair("post_logout_redirect_uri", "https://evil.example/");
    let (_, status, page) = s.browser.navigate(url.as_str(), "https://evil.example").await.page();
    assert_eq!(status, StatusCode::OK);
    assert!(!page.contains("evil.example"));
    assert!(!has_sso(&s).await);
}

#[tokio::test]
async fn slow_and_dead_receivers_delay_neither_the_logout_nor_the_other_rps() {
    let slow = Receiver::start(Duration::from_secs(30)).await;
    let fast = Receiver::start(Duration::ZERO).await;
    let dead = format!("http://{}/backchannel", {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    });
    let extra = format!(
        r#"
[[clients]]
client_id = "app-dead"
client_secret = "{SECRET}"
redirect_uris = ["http://127.0.0.1:9/dead/cb"]
backchannel_logout_uri = "{dead}"
"#
    );
    let options = Options { extra_config: clients(&slow.url, &fast.url, &extra), ..Default::default() };
    let sys = TestSystem::start_with(options).await;
    let browser = Browser::new();
    let rp_a = sys.rp(A, Some(SECRET), A_CB).await;
    let req = rp_a.authorize(&[]);
    let cb = browser.login(&req.url, "bd", BD_USER, A_CB).await.callback();
    let ta = rp_a.exchange(&req, &param(&cb, "code").unwrap()).await.unwrap();
    sso_login(&browser, &sys.rp(B, Some(SECRET), B_CB).await, B_CB).await;
    sso_login(
        &browser,
        &sys.rp("app-dead", Some(SECRET), "http://127.0.0.1:9/dead/cb").await,
        "http://127.0.0.1:9/dead/cb",
    )
    .await;
    let mut url = url::Url::parse(&sys.url("/logout")).unwrap();
    url.query_pairs_mut().append_pair("id_token_hint", &ta.id_token);
    let started = Instant::now();
    let (_, status, _) = browser.navigate(url.as_str(), A_DONE).await.page();
    assert_eq!(status, StatusCode::OK);
    assert!(started.elapsed() < Duration::from_secs(2), "logout took {:?}", started.elapsed());
    assert!(fast.wait_for_token(Duration::from_secs(2)).await.is_some(), "the healthy RP is not held up");
    // The dead receiver's failure is recorded for administrators after its retries.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let failures = sso_gateway::logout::failures(&sys.app).await.unwrap();
        if failures.iter().any(|f| f.client_id == "app-dead") {
            break;
        }
        assert!(Instant::now() < deadline, "no failure recorded for the dead receiver");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn an_upstream_backchannel_logout_ends_the_gateway_session_and_propagates() {
    let s = setup(true).await;
    let (ta, _) = login_both(&s).await;
    let endpoint = s.sys.url("/upstream/hcm/backchannel-logout");
    let status = s.sys.idps["hcm"].send_backchannel_logout(HCM_USER, "sso-gateway", &endpoint).await.unwrap();
    assert_eq!(status, 200);
    assert!(!has_sso(&s).await);
    assert!(s.b.wait_for_token(Duration::from_secs(5)).await.is_some(), "RPs are told");
    assert!(refresh_fails(&s.sys, A, ta.refresh_token.as_deref().unwrap()).await);
}

#[tokio::test]
async fn forged_replayed_or_misaddressed_upstream_logout_tokens_are_rejected() {
    let s = setup(false).await;
    login_both(&s).await;
    let idp = &s.sys.idps["hcm"];
    let endpoint = s.sys.url("/upstream/hcm/backchannel-logout");
    let post = |token: String| {
        let endpoint = endpoint.clone();
        async move {
            reqwest::Client::new()
                .post(endpoint)
                .form(&[("logout_token", token)])
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    for kind in [
        LogoutTokenKind::BadSignature,
        LogoutTokenKind::WrongAudience,
        LogoutTokenKind::WithNonce,
        LogoutTokenKind::WithoutEvent,
    ] {
        let token = idp.logout_token(HCM_USER, "sso-gateway", kind).unwrap();
        assert_eq!(post(token).await, StatusCode::BAD_REQUEST, "{kind:?}");
        assert!(has_sso(&s).await, "{kind:?} must not end the session");
    }
    // Sent to another upstream's endpoint: wrong issuer and keys there.
    let token = idp.logout_token(HCM_USER, "sso-gateway", LogoutTokenKind::Valid).unwrap();
    let wrong = reqwest::Client::new()
        .post(s.sys.url("/upstream/bd/backchannel-logout"))
        .form(&[("logout_token", &token)])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::BAD_REQUEST);
    assert!(has_sso(&s).await);
    assert_eq!(post(token.clone()).await, StatusCode::OK);
    assert!(!has_sso(&s).await);
    assert_eq!(post(token).await, StatusCode::BAD_REQUEST, "a replayed jti is refused");
    let garbage = reqwest::Client::new()
        .post(endpoint.clone())
        .form(&[("logout_token", "x.y.z")])
        .send()
        .await
        .unwrap();
    assert_eq!(garbage.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_subject_only_upstream_logout_ends_that_subjects_sessions() {
    let s = setup(false).await;
    login_both(&s).await;
    let token =
        s.sys.idps["hcm"].logout_token(HCM_USER, "sso-gateway", LogoutTokenKind::SubjectOnly).unwrap();
    let res = reqwest::Client::new()
        .post(s.sys.url("/upstream/hcm/backchannel-logout"))
        .form(&[("logout_token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(!has_sso(&s).await);
}

#[tokio::test]
async fn offline_access_refresh_tokens_survive_logout_and_others_do_not() {
    let s = setup(false).await;
    let req = s.rp_a.authorize(&[("scope", "offline_access")]);
    let cb = s.browser.login(&req.url, "hcm", HCM_USER, A_CB).await.callback();
    let offline = s.rp_a.exchange(&req, &param(&cb, "code").unwrap()).await.unwrap();
    let online = sso_login(&s.browser, &s.rp_b, B_CB).await;
    let mut url = url::Url::parse(&s.sys.url("/logout")).unwrap();
    url.query_pairs_mut().append_pair("id_token_hint", &online.id_token);
    s.browser.navigate(url.as_str(), A_DONE).await;
    assert!(!has_sso(&s).await);
    assert!(refresh_fails(&s.sys, B, online.refresh_token.as_deref().unwrap()).await);
    let (status, _, body) = token_request(
        &s.sys,
        Some((A, SECRET)),
        &[("grant_type", "refresh_token"), ("refresh_token", offline.refresh_token.as_deref().unwrap())],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // A client not allowed offline_access cannot ask for it.
    let req = s.rp_b.authorize(&[("scope", "offline_access")]);
    let cb = s.browser.navigate(&req.url, B_CB).await.callback();
    assert_eq!(param(&cb, "error").as_deref(), Some("invalid_scope"));
}
