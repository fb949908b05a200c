//! Officials logging in against a real OpenLDAP directory through the gateway's own form.

use std::time::{Duration, Instant};

use crate::helpers::*;
use crate::slapd::Slapd;
use reqwest::StatusCode;

const DIR: &str = "officials";

async fn system(slapd: &Slapd, extra: &str) -> TestSystem {
    TestSystem::start_with(Options { extra_config: slapd.upstream_config(DIR, extra), ..Options::default() })
        .await
}

/// Opens the directory's login form for a new portal request: (rp, request, form url, body).
async fn open_form(sys: &TestSystem, browser: &Browser) -> (Rp, AuthRequest, String, String) {
    let rp = sys.rp(PORTAL, Some(PORTAL_SECRET), PORTAL_CB).await;
    let req = rp.authorize(&[("idp_hint", DIR), ("scope", "official")]);
    let (url, status, body) = browser.navigate(&req.url, PORTAL_CB).await.page();
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(url.contains(&format!("/upstream/{DIR}/login")), "{url}");
    (rp, req, url, body)
}

#[tokio::test]
async fn an_official_logs_in_with_the_directory_password_and_groups_become_roles() {
    let slapd = Slapd::start(false).await;
    let sys = system(&slapd, "").await;
    let browser = Browser::new();
    let (rp, req, url, body) = open_form(&sys, &browser).await;
    assert!(body.contains("Danh bạ cán bộ, công chức Thành phố"), "Vietnamese first: {body}");
    assert!(body.contains("name=\"attempt\""), "the form carries its CSRF token");
    let cb = browser.login_form(&url, &body, "tuan.pa", "demo123", PORTAL_CB).await.callback();
    let tokens = rp.exchange(&req, &param(&cb, "code").unwrap()).await.unwrap();
    assert_eq!(tokens.raw["idp"], DIR);
    assert_eq!(tokens.raw["acr"], "urn:sso-gateway:acr:password");
    let (status, _, info) = userinfo(&sys, &tokens.access_token).await;
    assert_eq!(status, StatusCode::OK, "{info}");
    assert_eq!(info["name"], "Phạm Anh Tuấn", "UTF-8 attributes survive");
    assert_eq!(info["account_type"], "official");
    let official = &info["official"];
    assert_eq!(official["code"], "CB-HCM-0417", "{info}");
    let roles: Vec<&str> = official["roles"].as_array().unwrap().iter().filter_map(|r| r.as_str()).collect();
    assert_eq!(roles, vec!["can-bo-mot-cua", "van-thu"], "group memberships → roles");
}

#[tokio::test]
async fn starttls_with_a_private_ca_protects_the_bind() {
    let slapd = Slapd::start(true).await;
    let sys = system(&slapd, "").await;
    let browser = Browser::new();
    let (rp, req, url, body) = open_form(&sys, &browser).await;
    let cb = browser.login_form(&url, &body, "phuc.lh", "demo123", PORTAL_CB).await.callback();
    rp.exchange(&req, &param(&cb, "code").unwrap()).await.unwrap();
}

/// Posts the form and measures how long the gateway took to answer.
async fn timed_attempt(sys: &TestSystem, user: &str, password: &str) -> (Duration, StatusCode, String) {
    let browser = Browser::new();
    let (_, _, url, body) = open_form(sys, &browser).await;
    let started = Instant::now();
    let (_, status, page) = browser.login_form(&url, &body, user, password, PORTAL_CB).await.page();
    (started.elapsed(), status, page)
}

#[tokio::test]
async fn a_wrong_password_and_an_unknown_user_are_answered_alike() {
    let slapd = Slapd::start(false).await;
    let sys =
        system(&slapd, "min_failure_time = \"400ms\"\nmax_failures = 50\nmax_failures_per_ip = 200").await;
    let mut wrong = Vec::new();
    let mut unknown = Vec::new();
    for _ in 0..4 {
        let (t, status, page) = timed_attempt(&sys, "hanh.lt", "not-her-password").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(page.contains("Tên đăng nhập hoặc mật khẩu không đúng."), "{page}");
        assert!(!page.contains("not-her-password"), "the password is never echoed");
        wrong.push(t);
        let (t, status, page2) = timed_attempt(&sys, "no.such.official", "whatever").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(page2.contains("Tên đăng nhập hoặc mật khẩu không đúng."));
        unknown.push(t);
    }
    // An empty password never reaches the directory as an unauthenticated bind.
    let (_, status, _) = timed_attempt(&sys, "hanh.lt", "").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    wrong.sort();
    unknown.sort();
    let floor = Duration::from_millis(400);
    assert!(wrong[0] >= floor && unknown[0] >= floor, "failures wait for the floor: {wrong:?} {unknown:?}");
    let median = |v: &[Duration]| v[v.len() / 2];
    let gap = median(&wrong).abs_diff(median(&unknown));
    assert!(gap < Duration::from_millis(150), "same timing class: {wrong:?} vs {unknown:?}");
}

#[tokio::test]
async fn repeated_failures_lock_the_account_out_but_not_other_accounts() {
    let slapd = Slapd::start(false).await;
    let sys =
        system(&slapd, "min_failure_time = \"10ms\"\nmax_failures = 3\nmax_failures_per_ip = 100").await;
    for _ in 0..3 {
        let (_, status, _) = timed_attempt(&sys, "nam.tv", "guess").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    // Now even the right password is refused, with the lockout message.
    let (_, status, page) = timed_attempt(&sys, "nam.tv", "demo123").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{page}");
    assert!(page.contains("Đăng nhập sai quá nhiều lần"), "{page}");
    // An account name that does not exist locks the same way (no existence oracle).
    for _ in 0..3 {
        timed_attempt(&sys, "ghost.user", "guess").await;
    }
    let (_, status, _) = timed_attempt(&sys, "ghost.user", "guess").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    // Another official is not affected.
    let browser = Browser::new();
    let (rp, req, url, body) = open_form(&sys, &browser).await;
    let cb = browser.login_form(&url, &body, "hanh.lt", "demo123", PORTAL_CB).await.callback();
    rp.exchange(&req, &param(&cb, "code").unwrap()).await.unwrap();
}

const NAM_DN: &str = "uid=nam.tv,ou=people,dc=tphcm,dc=gov,dc=vn";

/// 50 wrong passwords for one official, posted at the same moment in every spelling the
/// directory matches to the same entry (case, surrounding spaces, full-width forms): with
/// `max_failures = 5` the directory sees at most 5 binds as that official, and then even the
/// right password is refused for the lockout.
async fn concurrent_guesses_bind_at_most_max_failures_times(options: Options) {
    let slapd = Slapd::start(false).await;
    let extra = "min_failure_time = \"50ms\"\nmax_failures = 5\nmax_failures_per_ip = 1000";
    let sys =
        TestSystem::start_with(Options { extra_config: slapd.upstream_config(DIR, extra), ..options }).await;
    let spellings = ["nam.tv", " NAM.TV ", "Nam.Tv", "ｎａｍ.ｔｖ", "ｎａｍ.TV"];
    let mut forms = Vec::new();
    for i in 0..50 {
        let browser = Browser::new();
        let (_, _, url, body) = open_form(&sys, &browser).await;
        forms.push((browser, url, body, spellings[i % spellings.len()]));
    }
    let posts = forms.iter().map(|(browser, url, body, user)| async move {
        browser.login_form(url, body, user, "wrong-guess", PORTAL_CB).await.page().1
    });
    let statuses = futures::future::join_all(posts).await;
    assert!(
        statuses.iter().all(|s| *s == StatusCode::UNAUTHORIZED || *s == StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
    let binds = slapd.binds_as(NAM_DN);
    assert!(binds <= 5, "{binds} binds as the official for 50 concurrent guesses (limit 5)");
    let (_, status, _) = timed_attempt(&sys, "nam.tv", "demo123").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "locked out after the guesses");
    assert!(slapd.binds_as(NAM_DN) <= 5, "no bind during the lockout");
}

#[tokio::test]
async fn concurrent_guesses_cannot_outrun_the_lockout() {
    concurrent_guesses_bind_at_most_max_failures_times(Options::default()).await;
}

#[tokio::test]
async fn concurrent_guesses_cannot_outrun_the_lockout_with_redis() {
    concurrent_guesses_bind_at_most_max_failures_times(Options {
        redis: Some(redis_url()),
        ..Options::default()
    })
    .await;
}

/// Failures in spellings the directory treats as the same name (`uid` is caseIgnoreMatch,
/// prepared with NFKC and case folding, RFC 4518) count against one account.
#[tokio::test]
async fn every_spelling_the_directory_matches_shares_one_failure_count() {
    let slapd = Slapd::start(false).await;
    let sys =
        system(&slapd, "min_failure_time = \"10ms\"\nmax_failures = 3\nmax_failures_per_ip = 100").await;
    for user in ["ｎａｍ.ｔｖ", " NAM.TV ", "Ｎａｍ.Ｔｖ"] {
        let (_, status, _) = timed_attempt(&sys, user, "guess").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{user}");
    }
    assert_eq!(slapd.binds_as(NAM_DN), 3, "the directory matched every spelling to the official");
    let (_, status, page) = timed_attempt(&sys, "nam.tv", "demo123").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{page}");
    assert_eq!(slapd.binds_as(NAM_DN), 3);
}

#[tokio::test]
async fn repeated_failures_from_one_address_lock_that_address_out() {
    let slapd = Slapd::start(false).await;
    let sys = system(&slapd, "min_failure_time = \"10ms\"\nmax_failures = 50\nmax_failures_per_ip = 4").await;
    for user in ["a.one", "b.two", "c.three", "d.four"] {
        let (_, status, _) = timed_attempt(&sys, user, "guess").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (_, status, _) = timed_attempt(&sys, "hanh.lt", "demo123").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "password spraying from one address stops");
}

#[tokio::test]
async fn the_form_is_bound_to_the_browser_and_single_use() {
    let slapd = Slapd::start(false).await;
    let sys = system(&slapd, "").await;
    let browser = Browser::new();
    let (_, _, url, body) = open_form(&sys, &browser).await;
    // Another browser (no binding cookie) posting the same form: refused (CSRF).
    let (_, status, page) =
        Browser::new().login_form(&url, &body, "tuan.pa", "demo123", PORTAL_CB).await.page();
    assert_eq!(status, StatusCode::BAD_REQUEST, "{page}");
    // The attempt was consumed by that post; the real browser must open the form again.
    let (_, status, _) = browser.login_form(&url, &body, "tuan.pa", "demo123", PORTAL_CB).await.page();
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn an_unreachable_directory_shows_a_clear_page() {
    let slapd = Slapd::start(false).await;
    let sys = system(&slapd, "").await;
    let browser = Browser::new();
    let (_, _, url, body) = open_form(&sys, &browser).await;
    drop(slapd);
    let (_, status, page) = browser.login_form(&url, &body, "tuan.pa", "demo123", PORTAL_CB).await.page();
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert!(page.contains("Danh bạ cán bộ tạm thời không truy cập được"), "{page}");
    assert!(page.contains("directory cannot be reached"));
}
