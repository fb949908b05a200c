//! Redis unreachable: clear 503s, readiness fails, nothing hangs; when Redis comes back
//! (with AOF persistence) service resumes by itself and no session is lost.

use crate::helpers::*;
use reqwest::StatusCode;
use sso_test_services::{OrExit, Redis};
use std::time::{Duration, Instant};

/// A private redis-server with AOF on (fsync at every write), on a free port, so the test can
/// kill it and start it again with the data it had written.
pub fn own_redis() -> Redis {
    Redis::start(&["--appendonly", "yes", "--appendfsync", "always"]).or_exit()
}

#[tokio::test]
async fn a_redis_outage_gives_clear_503s_and_service_resumes_without_losing_sessions() {
    let mut redis = own_redis();
    let options = Options { redis: Some(redis.url()), replicas: 1, ..Options::default() };
    let sys = TestSystem::start_with(options).await;
    let browser = Browser::new();
    let (rp, tokens) = portal_login(&sys, &browser, "hcm", HCM_USER).await;

    redis.kill();
    let started = Instant::now();
    let ready = reqwest::get(sys.url("/readyz")).await.unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let cb = browser.navigate(&rp.authorize(&[("prompt", "none")]).url, PORTAL_CB).await.callback();
    assert_eq!(param(&cb, "error").as_deref(), Some("temporarily_unavailable"));
    let (status, headers, body) = token_request(
        &sys,
        Some((PORTAL, PORTAL_SECRET)),
        &[("grant_type", "refresh_token"), ("refresh_token", tokens.refresh_token.as_deref().unwrap())],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("temporarily_unavailable"))
    );
    assert!(headers.contains_key("retry-after"));
    // Browser pages say so plainly, in both languages.
    let (_, status, page) = browser.navigate(&sys.url("/login?request=anything"), PORTAL_CB).await.page();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(page.contains("Hệ thống tạm thời gián đoạn") && page.contains("Service temporarily unavailable"));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "failures are bounded in time: {:?}",
        started.elapsed()
    );

    redis.restart().or_exit();
    // Service resumes by itself; the session written before the crash is still there.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if reqwest::get(sys.url("/readyz")).await.unwrap().status() == StatusCode::OK {
            break;
        }
        assert!(Instant::now() < deadline, "gateway did not recover");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let cb = browser.navigate(&rp.authorize(&[("prompt", "none")]).url, PORTAL_CB).await.callback();
    assert!(param(&cb, "code").is_some(), "SSO session survived the Redis restart: {cb}");
    let (status, _, _) = token_request(
        &sys,
        Some((PORTAL, PORTAL_SECRET)),
        &[("grant_type", "refresh_token"), ("refresh_token", tokens.refresh_token.as_deref().unwrap())],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "refresh tokens survived too");
}
