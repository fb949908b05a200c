//! A revoked token stays revoked (issue 11 §3): a family revoked for reuse stays dead for as
//! long as any of its tokens could be presented, session expiry (idle and absolute) ends the
//! session's refresh families as logout does, `offline_access` families survive the session
//! but not `/revoke`, and two concurrent presentations of one refresh token or code give one
//! success and revoke what it issued. Time moves through the injected clock.

use crate::helpers::*;
use reqwest::StatusCode;

const APP: &str = "lifecycle-app";
const SECRET: &str = "lifecycle-secret-0123456789";
const CB: &str = "http://127.0.0.1:9/lifecycle/cb";

/// A client whose families outlive the session (24 h), allowed `offline_access`; on the
/// embedded store, sessions idle out after 2 h and end after 3 h at the latest.
fn config(sessions: bool) -> String {
    let sessions =
        if sessions { "[sessions]\nidle_timeout = \"2h\"\nabsolute_timeout = \"3h\"\n" } else { "" };
    format!(
        r#"
{sessions}
[[clients]]
client_id = "{APP}"
client_secret = "{SECRET}"
redirect_uris = ["{CB}"]
scopes = ["openid", "profile", "offline_access"]
refresh_token_lifetime = "24h"
"#
    )
}

async fn start(redis: bool) -> TestSystem {
    let mut options = if redis { Options::redis_replicas(1) } else { Options::default() };
    // With Redis the harness writes the [sessions] table (and Redis keeps its own time).
    options.extra_config = config(!redis);
    TestSystem::start_with(options).await
}

async fn login(sys: &TestSystem, browser: &Browser, scope: &str) -> Tokens {
    let rp = sys.rp(APP, Some(SECRET), CB).await;
    let req = rp.authorize(&[("scope", scope)]);
    let cb = browser.login(&req.url, "hcm", HCM_USER, CB).await.callback();
    rp.exchange(&req, &param(&cb, "code").unwrap()).await.unwrap()
}

/// Refreshes; Ok((refresh token, access token)) or Err(error code).
async fn refresh(sys: &TestSystem, rt: &str) -> Result<(String, String), String> {
    let (status, _, body) =
        token_request(sys, Some((APP, SECRET)), &[("grant_type", "refresh_token"), ("refresh_token", rt)])
            .await;
    if status == StatusCode::OK {
        Ok((body["refresh_token"].as_str().unwrap().into(), body["access_token"].as_str().unwrap().into()))
    } else {
        Err(format!("{status} {}", body["error"].as_str().unwrap_or("?")))
    }
}

const HOUR: i64 = 3600;

#[tokio::test]
async fn a_family_revoked_for_reuse_stays_revoked_after_nine_hours() {
    let sys = start(false).await;
    let tokens = login(&sys, &Browser::new(), "offline_access").await;
    let first = tokens.refresh_token.unwrap();
    let (second, _) = refresh(&sys, &first).await.unwrap();
    assert!(refresh(&sys, &first).await.is_err(), "replay refused");
    sys.clock.advance(9 * HOUR);
    let late = refresh(&sys, &second).await;
    assert_eq!(late.err().as_deref(), Some("400 Bad Request invalid_grant"), "the family stays revoked");
    sys.clock.advance(20 * 24 * HOUR);
    assert!(refresh(&sys, &second).await.is_err(), "… for as long as the family could live");
}

#[tokio::test]
async fn an_idle_session_takes_its_refresh_families_with_it() {
    let sys = start(false).await;
    let tokens = login(&sys, &Browser::new(), "").await;
    let rt = tokens.refresh_token.unwrap();
    sys.clock.advance(HOUR);
    let (rt, _) = refresh(&sys, &rt).await.expect("the session is alive after an hour");
    // The browser does nothing for 2 h: the session idles out; the family (24 h) ends with it.
    sys.clock.advance(2 * HOUR + 60);
    assert_eq!(refresh(&sys, &rt).await.err().as_deref(), Some("400 Bad Request invalid_grant"));
}

#[tokio::test]
async fn a_session_past_its_absolute_lifetime_takes_its_refresh_families_with_it() {
    let sys = start(false).await;
    let browser = Browser::new();
    let tokens = login(&sys, &browser, "").await;
    let rp = sys.rp(APP, Some(SECRET), CB).await;
    let mut rt = tokens.refresh_token.unwrap();
    // The browser stays active (every 90 min) so only the absolute lifetime (3 h) ends it.
    for _ in 0..2 {
        sys.clock.advance(90 * 60 - 30);
        sso_login(&browser, &rp, CB).await;
        rt = refresh(&sys, &rt).await.expect("the session is alive").0;
    }
    sys.clock.advance(120);
    assert_eq!(refresh(&sys, &rt).await.err().as_deref(), Some("400 Bad Request invalid_grant"));
    let cb = browser.navigate(&rp.authorize(&[("prompt", "none")]).url, CB).await.callback();
    assert_eq!(param(&cb, "error").as_deref(), Some("login_required"), "the session ended");
}

#[tokio::test]
async fn an_offline_family_outlives_the_session_but_not_revocation() {
    let sys = start(false).await;
    let browser = Browser::new();
    let tokens = login(&sys, &browser, "offline_access").await;
    let mut rt = tokens.refresh_token.unwrap();
    // Idle timeout.
    sys.clock.advance(2 * HOUR + 60);
    rt = refresh(&sys, &rt).await.expect("survives the idle timeout").0;
    // Absolute timeout of a second session kept active, then logout of a third.
    let tokens = login(&sys, &browser, "offline_access").await;
    let mut rt2 = tokens.refresh_token.unwrap();
    let rp = sys.rp(APP, Some(SECRET), CB).await;
    for _ in 0..2 {
        sys.clock.advance(90 * 60 - 30);
        sso_login(&browser, &rp, CB).await;
    }
    sys.clock.advance(120);
    rt2 = refresh(&sys, &rt2).await.expect("survives the absolute timeout").0;
    let tokens = login(&sys, &browser, "offline_access").await;
    let mut url = url::Url::parse(&sys.url("/logout")).unwrap();
    url.query_pairs_mut().append_pair("id_token_hint", &tokens.id_token);
    browser.navigate(url.as_str(), CB).await;
    let (rt3, _) = refresh(&sys, tokens.refresh_token.as_deref().unwrap()).await.expect("survives logout");
    // Explicit revocation ends a family, and it stays ended.
    let (rt, access) = refresh(&sys, &rt).await.unwrap();
    let res = reqwest::Client::new()
        .post(sys.url("/revoke"))
        .basic_auth(APP, Some(SECRET))
        .form(&[("token", rt.as_str()), ("token_type_hint", "refresh_token")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(refresh(&sys, &rt).await.is_err());
    assert_eq!(userinfo(&sys, &access).await.0, StatusCode::UNAUTHORIZED, "its access token too");
    sys.clock.advance(9 * HOUR);
    assert!(refresh(&sys, &rt).await.is_err());
    // The other offline families were not touched.
    assert!(refresh(&sys, &rt2).await.is_ok());
    assert!(refresh(&sys, &rt3).await.is_ok());
}

/// Presents one refresh token twice at once, `rounds` times; every round must give exactly
/// one success and leave the family revoked (the winner's new tokens no longer work).
async fn concurrent_refreshes_give_one_success_and_revoke(redis: bool) {
    let sys = start(redis).await;
    for round in 0..8 {
        let rt = login(&sys, &Browser::new(), "").await.refresh_token.unwrap();
        let (a, b) = tokio::join!(refresh(&sys, &rt), refresh(&sys, &rt));
        let winners: Vec<(String, String)> = [a, b].into_iter().filter_map(Result::ok).collect();
        assert_eq!(winners.len(), 1, "round {round}: exactly one success");
        let (new_rt, new_access) = &winners[0];
        assert!(refresh(&sys, new_rt).await.is_err(), "round {round}: the family was revoked");
        assert_eq!(userinfo(&sys, new_access).await.0, StatusCode::UNAUTHORIZED, "round {round}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_refreshes_give_one_success_and_revoke_the_family() {
    concurrent_refreshes_give_one_success_and_revoke(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_refreshes_give_one_success_and_revoke_the_family_on_redis() {
    concurrent_refreshes_give_one_success_and_revoke(true).await;
}

/// Redeems one code twice at once; exactly one redemption succeeds and its tokens die.
async fn concurrent_code_redemptions_give_one_success_and_revoke(redis: bool) {
    let sys = start(redis).await;
    let browser = Browser::new();
    let rp = sys.rp(APP, Some(SECRET), CB).await;
    for round in 0..8 {
        let req = rp.authorize(&[]);
        let landing = if round == 0 {
            browser.login(&req.url, "hcm", HCM_USER, CB).await
        } else {
            browser.navigate(&req.url, CB).await
        };
        let code = param(&landing.callback(), "code").unwrap();
        let (a, b) = tokio::join!(rp.exchange(&req, &code), rp.exchange(&req, &code));
        let winners: Vec<Tokens> = [a, b].into_iter().filter_map(Result::ok).collect();
        assert_eq!(winners.len(), 1, "round {round}: exactly one success");
        let won = &winners[0];
        assert!(refresh(&sys, won.refresh_token.as_deref().unwrap()).await.is_err(), "round {round}");
        assert_eq!(userinfo(&sys, &won.access_token).await.0, StatusCode::UNAUTHORIZED, "round {round}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_code_redemptions_give_one_success_and_revoke_the_grant() {
    concurrent_code_redemptions_give_one_success_and_revoke(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_code_redemptions_give_one_success_and_revoke_the_grant_on_redis() {
    concurrent_code_redemptions_give_one_success_and_revoke(true).await;
}
