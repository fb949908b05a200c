use crate::helpers::*;
use legacy_idp::Faults;
use reqwest::StatusCode;
use std::sync::atomic::AtomicBool;

/// Logs in through `upstream` with a fault switched on; the login must end on an error page
/// that offers another system, without a session.
async fn rejected_with(pick: fn(&Faults) -> &AtomicBool) {
    let sys = TestSystem::start().await;
    sys.set_fault("hcm", pick);
    let browser = Browser::new();
    let rp = sys.rp(PORTAL, Some(PORTAL_SECRET), PORTAL_CB).await;
    let req = rp.authorize(&[]);
    let (_, status, body) = browser.login(&req.url, "hcm", HCM_USER, PORTAL_CB).await.page();
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert!(body.contains("Chọn hệ thống đăng nhập khác"), "offers another system");
    // No session was created: prompt=none still needs a login.
    let cb = browser.navigate(&rp.authorize(&[("prompt", "none")]).url, PORTAL_CB).await.callback();
    assert_eq!(param(&cb, "error").as_deref(), Some("login_required"));
}

#[tokio::test]
async fn upstream_id_token_with_a_bad_signature_is_rejected() {
    rejected_with(|f| &f.bad_signature).await;
}

#[tokio::test]
async fn upstream_id_token_for_another_audience_is_rejected() {
    rejected_with(|f| &f.wrong_audience).await;
}

#[tokio::test]
async fn upstream_id_token_with_the_wrong_nonce_is_rejected() {
    rejected_with(|f| &f.wrong_nonce).await;
}

#[tokio::test]
async fn upstream_id_token_from_another_issuer_is_rejected() {
    rejected_with(|f| &f.wrong_issuer).await;
}

#[tokio::test]
async fn expired_upstream_id_token_is_rejected() {
    rejected_with(|f| &f.expired_id_token).await;
}

#[tokio::test]
async fn garbage_from_an_upstream_token_endpoint_is_rejected() {
    rejected_with(|f| &f.garbage_token_response).await;
}

#[tokio::test]
async fn a_slow_upstream_is_cut_off_by_the_timeout() {
    let started = std::time::Instant::now();
    rejected_with(|f| &f.slow_token_response).await;
    assert!(started.elapsed() < std::time::Duration::from_secs(15), "bounded by the 2 s upstream timeout");
}

#[tokio::test]
async fn one_upstream_down_does_not_affect_the_others() {
    let mut sys = TestSystem::start().await;
    sys.idps.remove("bd").unwrap().shutdown_and_wait().await;
    let browser = Browser::new();
    let rp = sys.rp(PORTAL, Some(PORTAL_SECRET), PORTAL_CB).await;
    let req = rp.authorize(&[]);
    let (chooser_url, _, chooser) = browser.navigate(&req.url, PORTAL_CB).await.page();
    let link = url::Url::parse(&chooser_url).unwrap().join(&chooser_link(&chooser, "bd")).unwrap();
    let (_, status, body) = browser.navigate(link.as_str(), PORTAL_CB).await.page();
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert!(
        body.contains("Hệ thống đăng nhập cũ đang gặp sự cố")
            && body.contains("The former login system is not working")
    );
    // The same parked request can continue through another system.
    let link = url::Url::parse(&chooser_url).unwrap().join(&chooser_link(&chooser, "hcm")).unwrap();
    let (url, _, body) = browser.navigate(link.as_str(), PORTAL_CB).await.page();
    let cb = browser.login_form(&url, &body, HCM_USER, "demo123", PORTAL_CB).await.callback();
    rp.exchange(&req, &param(&cb, "code").unwrap()).await.unwrap();
}

#[tokio::test]
async fn a_callback_in_another_browser_is_refused() {
    let sys = TestSystem::start().await;
    let victim = Browser::new();
    let attacker = Browser::new();
    let rp = sys.rp(PORTAL, Some(PORTAL_SECRET), PORTAL_CB).await;
    let req = rp.authorize(&[("idp_hint", "hcm")]);
    // The attacker starts a login and completes it at the upstream, but hands the callback
    // URL (with their code) to the victim: login CSRF.
    let (url, _, body) = attacker.navigate(&req.url, PORTAL_CB).await.page();
    let callback =
        attacker.login_form(&url, &body, HCM_USER, "demo123", &sys.url("/upstream/")).await.callback();
    let (_, status, body) = victim.navigate(callback.as_str(), PORTAL_CB).await.page();
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    // And the attempt is spent: the attacker cannot use it afterwards either.
    let (_, status, _) = attacker.navigate(callback.as_str(), PORTAL_CB).await.page();
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_callback_on_the_wrong_upstream_path_is_refused() {
    let sys = TestSystem::start().await;
    let browser = Browser::new();
    let rp = sys.rp(PORTAL, Some(PORTAL_SECRET), PORTAL_CB).await;
    let req = rp.authorize(&[("idp_hint", "hcm")]);
    let (url, _, body) = browser.navigate(&req.url, PORTAL_CB).await.page();
    let callback =
        browser.login_form(&url, &body, HCM_USER, "demo123", &sys.url("/upstream/")).await.callback();
    let mixed = callback.as_str().replace("/upstream/hcm/", "/upstream/bd/");
    let (_, status, _) = browser.navigate(&mixed, PORTAL_CB).await.page();
    // The browser brought an answer to another upstream's attempt: the request's fault, not
    // the upstream's (issue #12: client faults are 4xx).
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn an_upstream_error_response_is_shown_not_swallowed() {
    let sys = TestSystem::start().await;
    let browser = Browser::new();
    let rp = sys.rp(PORTAL, Some(PORTAL_SECRET), PORTAL_CB).await;
    let req = rp.authorize(&[("idp_hint", "hcm")]);
    let (url, _, _) = browser.navigate(&req.url, PORTAL_CB).await.page();
    let state = param(&url::Url::parse(&url).unwrap(), "state").unwrap();
    let cb = format!("{}?error=access_denied&state={state}", sys.url("/upstream/hcm/callback"));
    let (_, status, body) = browser.navigate(&cb, PORTAL_CB).await.page();
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body.contains("Đăng nhập đã bị huỷ"));
}

/// The upstream ignores `prompt=login` / `max_age` and answers from an old single sign-on
/// session (its ID token's `auth_time` is two hours old): the gateway must not pass that off
/// as a fresh login. It refuses with a page that says why and creates no session.
#[tokio::test]
async fn an_upstream_that_ignores_prompt_login_or_max_age_is_refused() {
    let sys = TestSystem::start().await;
    sys.set_fault("hcm", |f| &f.stale_auth_time);
    let rp = sys.rp(PORTAL, Some(PORTAL_SECRET), PORTAL_CB).await;
    for extra in [("prompt", "login"), ("max_age", "300")] {
        let browser = Browser::new();
        let req = rp.authorize(&[extra, ("idp_hint", "hcm")]);
        let landing = browser.login(&req.url, "hcm", HCM_USER, PORTAL_CB).await;
        let Landing::Page { status, body, .. } = landing else {
            panic!("{extra:?}: a stale upstream login was accepted: {landing:?}");
        };
        assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
        assert!(body.contains("không yêu cầu đăng nhập lại"), "Vietnamese reason: {body}");
        assert!(body.contains("did not ask you to log in again"), "English reason: {body}");
        let cb = browser.navigate(&rp.authorize(&[("prompt", "none")]).url, PORTAL_CB).await.callback();
        assert_eq!(param(&cb, "error").as_deref(), Some("login_required"), "{extra:?}: no session");
    }
    // Without a freshness requirement the same answer is fine: the person just logged in there.
    let (_, tokens) = portal_login(&sys, &Browser::new(), "hcm", HCM_USER).await;
    assert_eq!(tokens.raw["idp"], "hcm");
}
