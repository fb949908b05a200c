//! Proof-of-ownership linking asks first: an unverified identity left in a shared browser is
//! merged into the next verified login only when that person confirms it on
//! `/account/link/confirm` (CSRF-bound, single-use, short-lived).

use crate::helpers::*;

/// The account a login through `upstream` as `subject` resolves to.
async fn account_of(sys: &TestSystem, upstream: &str, subject: &str) -> String {
    sys.app.accounts.find_by_link(upstream, subject).await.unwrap().expect("linked").id
}

/// Ba Ria-Vung Tau's stable subject of "lannguyen" (self-declared number 079190004512).
const BRVT_LAN: &str = "1008801";
/// The number VNeID verifies for "lan.vneid" and "lannguyen" declares.
const LAN_NUMBER: &str = "079190004512";

/// The account holding `LAN_NUMBER` verified.
async fn verified_holder(sys: &TestSystem) -> String {
    sys.app.accounts.find_by_national_id(LAN_NUMBER).await.unwrap().expect("a verified holder").id
}

#[tokio::test]
async fn kiosk_an_unverified_login_left_in_the_browser_is_not_merged_into_the_next_verified_login() {
    let sys = TestSystem::start().await;
    let kiosk = Browser::new();
    // The attacker logs in through the untrusted system, declaring the victim's number, and
    // walks away without logging out.
    let (rp, attacker) = portal_login(&sys, &kiosk, "brvt", "lannguyen").await;
    // The victim logs in with VNeID at the same kiosk ("use another account").
    let req = rp.authorize(&[("prompt", "login")]);
    // Whatever the gateway shows now, the victim does not confirm anything.
    let _shown = kiosk.login(&req.url, "vneid", "lan.vneid", PORTAL_CB).await;
    let victim = verified_holder(&sys).await;
    assert_ne!(
        account_of(&sys, "brvt", BRVT_LAN).await,
        victim,
        "the attacker's identity must not be merged into the victim's account"
    );
    // The attacker logging in again elsewhere is still only himself.
    let (_, again) = portal_login(&sys, &Browser::new(), "brvt", "lannguyen").await;
    assert_eq!(again.claims.subject(), attacker.claims.subject());
}

const CONFIRM: &str = "/account/link/confirm";

/// The kiosk: "lannguyen" logs in through Ba Ria-Vung Tau (untrusted, declaring
/// `LAN_NUMBER`) and leaves the session open; then "lan.vneid" logs in with VNeID in the same
/// browser. Returns the RP, the VNeID request and where the VNeID login landed.
async fn untrusted_then_verified(sys: &TestSystem, browser: &Browser) -> (Rp, AuthRequest, Landing) {
    let (rp, _) = portal_login(sys, browser, "brvt", "lannguyen").await;
    let req = rp.authorize(&[("prompt", "login")]);
    let landing = browser.login(&req.url, "vneid", "lan.vneid", PORTAL_CB).await;
    (rp, req, landing)
}

/// The value of the hidden `csrf` field of a page's form.
fn csrf_of(body: &str) -> String {
    let doc = scraper::Html::parse_document(body);
    let sel = scraper::Selector::parse("input[name=csrf]").unwrap();
    doc.select(&sel).next().and_then(|i| i.value().attr("value")).expect("a csrf field").to_string()
}

/// Posts an answer to the confirmation page with `browser`'s cookies.
async fn answer(sys: &TestSystem, browser: &Browser, csrf: &str, decision: &str) -> reqwest::Response {
    browser.http.post(sys.url(CONFIRM)).form(&[("csrf", csrf), ("decision", decision)]).send().await.unwrap()
}

/// Follows an answer's redirect to the RP.
async fn to_rp(browser: &Browser, res: reqwest::Response) -> url::Url {
    assert!(res.status().is_redirection(), "expected a redirect, got {}", res.status());
    let location = res.headers()[reqwest::header::LOCATION].to_str().unwrap().to_string();
    browser.navigate(&location, PORTAL_CB).await.callback()
}

/// The confirmation page shown after the VNeID login.
fn confirmation_page(landing: Landing) -> String {
    let (url, status, body) = landing.page();
    assert!(url.ends_with(CONFIRM), "{url}");
    assert_eq!(status, reqwest::StatusCode::OK, "{body}");
    body
}

async fn audit_actions(sys: &TestSystem, account: &str) -> Vec<String> {
    sys.app.accounts.audit_log(Some(account), 20).await.unwrap().into_iter().map(|a| a.action).collect()
}

#[tokio::test]
async fn the_page_shows_both_logins_with_only_the_last_digits_of_the_number() {
    let sys = TestSystem::start().await;
    let browser = Browser::new();
    let (_, _, landing) = untrusted_then_verified(&sys, &browser).await;
    let body = confirmation_page(landing);
    assert!(body.contains("*********512"), "{body}");
    assert!(!body.contains(LAN_NUMBER), "never the whole number");
    assert!(!body.contains("079******512"), "not even the log form");
    assert!(body.contains("Tài khoản định danh điện tử VNeID"), "the verified system");
    assert!(body.contains("Tài khoản tỉnh Bà Rịa - Vũng Tàu (cũ)"), "the other system");
    assert!(body.contains("Nguyễn Thị Lan"));
    assert!(body.contains("gộp vĩnh viễn") && body.contains("merged into yours for good"), "the consequence");
    // Vietnamese first.
    assert!(body.find("Hai lần đăng nhập").unwrap() < body.find("Were both of these logins yours").unwrap());
    // Showing it (again) links nothing; the offer is in the audit log.
    let (_, status, _) = browser.navigate(&sys.url(CONFIRM), PORTAL_CB).await.page();
    assert_eq!(status, reqwest::StatusCode::OK);
    let victim = verified_holder(&sys).await;
    assert_ne!(account_of(&sys, "brvt", BRVT_LAN).await, victim);
    assert_eq!(audit_actions(&sys, &victim).await, vec!["proof-link-offered"]);
}

#[tokio::test]
async fn kiosk_the_victim_declines_links_nothing_and_reaches_the_application() {
    let sys = TestSystem::start().await;
    let kiosk = Browser::new();
    let (rp, req, landing) = untrusted_then_verified(&sys, &kiosk).await;
    let body = confirmation_page(landing);
    let cb = to_rp(&kiosk, answer(&sys, &kiosk, &csrf_of(&body), "decline").await).await;
    assert_eq!(param(&cb, "state").as_deref(), Some(req.state.as_str()), "the RP's request survived");
    let tokens = rp.exchange(&req, &param(&cb, "code").unwrap()).await.unwrap();
    let victim = verified_holder(&sys).await;
    let account = sys.app.accounts.find_by_sub(tokens.claims.subject().as_str()).await.unwrap().unwrap();
    assert_eq!(account.id, victim, "the victim is logged in as herself");
    assert_ne!(account_of(&sys, "brvt", BRVT_LAN).await, victim, "nothing linked");
    assert_eq!(audit_actions(&sys, &victim).await, vec!["proof-link-declined", "proof-link-offered"]);
    let declined = &sys.app.accounts.audit_log(Some(&victim), 1).await.unwrap()[0];
    assert_eq!(declined.actor, "self-service");
    assert!(declined.reason.as_deref().unwrap().contains("declined"));
    let detail: serde_json::Value = serde_json::from_str(&declined.detail).unwrap();
    assert_eq!(detail["pending"], account_of(&sys, "brvt", BRVT_LAN).await.as_str());
    assert_eq!(detail["by"]["upstream"], "vneid");
    assert_eq!(detail["other_login"]["upstream"], "brvt");
}

#[tokio::test]
async fn confirming_links_the_pending_identity_and_the_audit_log_says_so() {
    let sys = TestSystem::start().await;
    let browser = Browser::new();
    let pending = {
        let (_, t) = portal_login(&sys, &Browser::new(), "brvt", "lannguyen").await;
        t.claims.subject().to_string()
    };
    let (rp, req, landing) = untrusted_then_verified(&sys, &browser).await;
    let body = confirmation_page(landing);
    let cb = to_rp(&browser, answer(&sys, &browser, &csrf_of(&body), "link").await).await;
    let tokens = rp.exchange(&req, &param(&cb, "code").unwrap()).await.unwrap();
    let verified = verified_holder(&sys).await;
    assert_eq!(account_of(&sys, "brvt", BRVT_LAN).await, verified, "linked");
    // Ba Ria-Vung Tau now logs in to the same account, and its old sub resolves to it.
    let (_, again) = portal_login(&sys, &Browser::new(), "brvt", "lannguyen").await;
    assert_eq!(again.claims.subject(), tokens.claims.subject());
    let old = sys.app.accounts.find_by_sub(&pending).await.unwrap().unwrap();
    assert_ne!(old.status, sso_gateway::accounts::AccountStatus::Active, "merged");
    let log = sys.app.accounts.audit_log(Some(&verified), 20).await.unwrap();
    let actions: Vec<&str> = log.iter().map(|a| a.action.as_str()).collect();
    assert_eq!(actions, vec!["proof-link", "proof-link-offered"]);
    assert!(log[0].reason.as_deref().unwrap().contains("confirmed"));
    let detail: serde_json::Value = serde_json::from_str(&log[0].detail).unwrap();
    assert_eq!(detail["into"], verified.as_str());
    assert_eq!(detail["by"]["upstream"], "vneid");
    assert_eq!(detail["other_login"]["upstream"], "brvt");
}

#[tokio::test]
async fn a_forged_confirmation_links_nothing() {
    let sys = TestSystem::start().await;
    let kiosk = Browser::new();
    let (_, _, landing) = untrusted_then_verified(&sys, &kiosk).await;
    let token = csrf_of(&confirmation_page(landing));
    // A wrong token.
    let res = answer(&sys, &kiosk, "not-the-token", "link").await;
    assert_eq!(res.status(), reqwest::StatusCode::FORBIDDEN);
    let res = kiosk.http.post(sys.url(CONFIRM)).form(&[("decision", "link")]).send().await.unwrap();
    assert_eq!(res.status(), reqwest::StatusCode::FORBIDDEN, "no token");
    // Another session's token (an attacker's own, from his "my sessions" page).
    let attacker = Browser::new();
    portal_login(&sys, &attacker, "hcm", "minh").await;
    let (_, _, sessions) = attacker.navigate(&sys.url("/sessions"), PORTAL_CB).await.page();
    let his = csrf_of(&sessions);
    assert_ne!(his, token);
    let res = answer(&sys, &kiosk, &his, "link").await;
    assert_eq!(res.status(), reqwest::StatusCode::FORBIDDEN);
    // The victim's token from another session (no offer there) or without any session.
    let res = answer(&sys, &attacker, &token, "link").await;
    assert_eq!(res.status(), reqwest::StatusCode::FORBIDDEN);
    let res = answer(&sys, &attacker, &his, "link").await;
    assert_eq!(res.status(), reqwest::StatusCode::NOT_FOUND, "his own session has nothing to confirm");
    let res = answer(&sys, &Browser::new(), &token, "link").await;
    assert_eq!(res.status(), reqwest::StatusCode::UNAUTHORIZED);
    // A decision that is neither answer.
    let res = answer(&sys, &kiosk, &token, "yes").await;
    assert_eq!(res.status(), reqwest::StatusCode::BAD_REQUEST);
    let victim = verified_holder(&sys).await;
    assert_ne!(account_of(&sys, "brvt", BRVT_LAN).await, victim, "nothing linked");
    assert_eq!(audit_actions(&sys, &victim).await, vec!["proof-link-offered"]);
    // None of them used up the offer: the person can still decline it.
    let res = answer(&sys, &kiosk, &token, "decline").await;
    assert!(res.status().is_redirection(), "{}", res.status());
    assert_ne!(account_of(&sys, "brvt", BRVT_LAN).await, victim);
}

#[tokio::test]
async fn a_replayed_confirmation_links_nothing() {
    let sys = TestSystem::start().await;
    let kiosk = Browser::new();
    let (_, _, landing) = untrusted_then_verified(&sys, &kiosk).await;
    let token = csrf_of(&confirmation_page(landing));
    let res = answer(&sys, &kiosk, &token, "decline").await;
    assert!(res.status().is_redirection(), "{}", res.status());
    // The same form again, and with the other button.
    for decision in ["decline", "link"] {
        let res = answer(&sys, &kiosk, &token, decision).await;
        assert_eq!(res.status(), reqwest::StatusCode::NOT_FOUND, "{decision}");
    }
    let (_, status, _) = kiosk.navigate(&sys.url(CONFIRM), PORTAL_CB).await.page();
    assert_eq!(status, reqwest::StatusCode::NOT_FOUND, "answered offers are gone");
    let victim = verified_holder(&sys).await;
    assert_ne!(account_of(&sys, "brvt", BRVT_LAN).await, victim, "nothing linked");
    assert_eq!(audit_actions(&sys, &victim).await, vec!["proof-link-declined", "proof-link-offered"]);
}

#[tokio::test]
async fn an_unanswered_offer_expires() {
    let sys = TestSystem::start().await;
    let kiosk = Browser::new();
    let (_, _, landing) = untrusted_then_verified(&sys, &kiosk).await;
    let token = csrf_of(&confirmation_page(landing));
    // Just under lifetimes.login_attempt later, it still waits; then it is gone.
    let ttl = sys.app.settings.lifetimes.login_attempt.as_secs() as i64;
    sys.clock.advance(ttl - 5);
    let (_, status, _) = kiosk.navigate(&sys.url(CONFIRM), PORTAL_CB).await.page();
    assert_eq!(status, reqwest::StatusCode::OK);
    sys.clock.advance(5);
    let (_, status, body) = kiosk.navigate(&sys.url(CONFIRM), PORTAL_CB).await.page();
    assert_eq!(status, reqwest::StatusCode::NOT_FOUND, "{body}");
    let res = answer(&sys, &kiosk, &token, "link").await;
    assert_eq!(res.status(), reqwest::StatusCode::NOT_FOUND);
    let victim = verified_holder(&sys).await;
    assert_ne!(account_of(&sys, "brvt", BRVT_LAN).await, victim, "nothing linked");
}

#[tokio::test]
async fn with_redis_any_replica_answers_and_two_concurrent_confirmations_link_once() {
    let sys = TestSystem::start_with(Options::redis_replicas(2)).await;
    let browser = Browser::new();
    sys.route_to(0);
    let (rp, req, landing) = untrusted_then_verified(&sys, &browser).await;
    let token = csrf_of(&confirmation_page(landing));
    // The answer reaches the other replica, twice at once (a double click, or a replay race).
    sys.route_to(1);
    let (a, b) = tokio::join!(answer(&sys, &browser, &token, "link"), answer(&sys, &browser, &token, "link"));
    let mut statuses = [a.status(), b.status()];
    statuses.sort();
    assert_eq!(
        statuses,
        [reqwest::StatusCode::SEE_OTHER, reqwest::StatusCode::NOT_FOUND],
        "one answer counts"
    );
    let winner = if a.status().is_redirection() { a } else { b };
    let cb = to_rp(&browser, winner).await;
    rp.exchange(&req, &param(&cb, "code").unwrap()).await.unwrap();
    let verified = verified_holder(&sys).await;
    assert_eq!(account_of(&sys, "brvt", BRVT_LAN).await, verified, "linked");
    let links = audit_actions(&sys, &verified).await.into_iter().filter(|a| a == "proof-link").count();
    assert_eq!(links, 1, "linked once");
}

#[tokio::test]
async fn logging_out_ends_the_offer() {
    let sys = TestSystem::start().await;
    let kiosk = Browser::new();
    let (_, _, landing) = untrusted_then_verified(&sys, &kiosk).await;
    let token = csrf_of(&confirmation_page(landing));
    // The victim logs out everywhere instead of answering (the session's token serves both forms).
    let res = kiosk
        .http
        .post(sys.url("/sessions/end"))
        .form(&[("sid", "all"), ("csrf", token.as_str())])
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success() || res.status().is_redirection(), "{}", res.status());
    // Whoever comes next finds nothing to confirm.
    let res = answer(&sys, &kiosk, &token, "link").await;
    assert_eq!(res.status(), reqwest::StatusCode::UNAUTHORIZED);
    let victim = verified_holder(&sys).await;
    assert_ne!(account_of(&sys, "brvt", BRVT_LAN).await, victim, "nothing linked");
}
