//! "My account" (`/account`): what a person sees after logging in (the number masked to its
//! last three digits), linking a second former system (automatic when the system verifies
//! the number, confirmed by the person otherwise), unlinking with a confirmation step and
//! never the last link, "log out everywhere" reaching every session and every application's
//! back-channel, and forged or replayed forms changing nothing. On SQLite with in-memory
//! sessions and on PostgreSQL with Redis sessions.

use std::time::Duration;

use reqwest::StatusCode;

use crate::helpers::*;

/// A prefix no redirect of these tests goes to: navigation always ends on a page.
const NOWHERE: &str = "http://nowhere.invalid/";
/// The number Ho Chi Minh City and Binh Duong verify for "lan"/"lannt", VNeID for
/// "lan.vneid", and Ba Ria-Vung Tau's "lannguyen" declares unverified.
const LAN_NUMBER: &str = "079190004512";

/// Client with a back-channel logout receiver (for "log out everywhere").
const APP: &str = "account-test-app";
const APP_SECRET: &str = "account-test-secret-0123";
const APP_CB: &str = "http://127.0.0.1:9/account-app/cb";

#[derive(Clone, Copy, Debug)]
enum Stores {
    /// SQLite accounts, in-memory sessions (the embedded default).
    Embedded,
    /// PostgreSQL accounts, Redis sessions (production).
    Production,
}

async fn start(stores: Stores, extra_config: String) -> TestSystem {
    let options = match stores {
        Stores::Embedded => Options { extra_config, ..Options::default() },
        Stores::Production => Options {
            redis: Some(redis_url()),
            accounts_url: Some(postgres_accounts_url().await),
            extra_config,
            ..Options::default()
        },
    };
    TestSystem::start_with(options).await
}

/// Opens `/account` not logged in: the chooser, a login through `upstream` as `user`, and
/// back to the account page. Returns the page's body.
async fn login_to_account(sys: &TestSystem, browser: &Browser, upstream: &str, user: &str) -> String {
    let (url, status, body) = browser.login(&sys.url("/account"), upstream, user, NOWHERE).await.page();
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(url.starts_with(&sys.url("/account")), "{url}");
    body
}

async fn account_page(sys: &TestSystem, browser: &Browser, query: &str) -> (String, StatusCode, String) {
    browser.navigate(&sys.url(&format!("/account{query}")), NOWHERE).await.page()
}

fn select_all(body: &str, css: &str) -> Vec<String> {
    let doc = scraper::Html::parse_document(body);
    let sel = scraper::Selector::parse(css).unwrap();
    doc.select(&sel)
        .map(|e| e.text().collect::<String>().split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

fn attr_all(body: &str, css: &str, attr: &str) -> Vec<String> {
    let doc = scraper::Html::parse_document(body);
    let sel = scraper::Selector::parse(css).unwrap();
    doc.select(&sel).filter_map(|e| e.value().attr(attr)).map(str::to_string).collect()
}

fn csrf_of(body: &str) -> String {
    attr_all(body, "input[name=csrf]", "value").into_iter().next().expect("a csrf field")
}

/// The upstreams of the links the page lists.
fn linked_systems(body: &str) -> Vec<String> {
    attr_all(body, "tr.link", "data-upstream")
}

/// Posts a form with `browser`'s cookies; returns the answer (redirects not followed).
async fn post(sys: &TestSystem, browser: &Browser, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
    browser.http.post(sys.url(path)).form(form).send().await.unwrap()
}

/// Follows a redirect answer to the page it ends on.
async fn follow(sys: &TestSystem, browser: &Browser, res: reqwest::Response) -> (String, StatusCode, String) {
    assert!(
        res.status().is_redirection(),
        "expected a redirect, got {}: {}",
        res.status(),
        res.text().await.unwrap()
    );
    let location = res.headers()[reqwest::header::LOCATION].to_str().unwrap().to_string();
    let target = url::Url::parse(&sys.url("/")).unwrap().join(&location).unwrap();
    browser.navigate(target.as_str(), NOWHERE).await.page()
}

/// The page `POST /account/link` answers moves on (by itself, `meta refresh`) to the
/// upstream's login; its link, which says the same.
async fn continue_href(res: reqwest::Response) -> String {
    assert_eq!(res.status(), StatusCode::OK);
    let body = res.text().await.unwrap();
    let href = attr_all(&body, "a#continue", "href").into_iter().next().expect("a continue link");
    let refresh = attr_all(&body, "meta[http-equiv=refresh]", "content");
    assert_eq!(refresh, vec![format!("0;url={href}")], "{body}");
    href
}

/// Links `upstream` from the account page, logging in there as `user`; returns where it ended.
async fn link(
    sys: &TestSystem,
    browser: &Browser,
    upstream: &str,
    user: &str,
) -> (String, StatusCode, String) {
    let (_, _, body) = account_page(sys, browser, "").await;
    let csrf = csrf_of(&body);
    let res =
        post(sys, browser, "/account/link", &[("csrf", &csrf), ("upstream", upstream), ("lang", "vi")]).await;
    let (url, status, body) = browser.navigate(&sys.url(&continue_href(res).await), NOWHERE).await.page();
    assert_eq!(status, StatusCode::OK, "the upstream's login page: {body}");
    browser.login_form(&url, &body, user, "demo123", NOWHERE).await.page()
}

async fn account_id(sys: &TestSystem, upstream: &str, user_subject: &str) -> Option<String> {
    sys.app.accounts.find_by_link(upstream, user_subject).await.unwrap().map(|a| a.id)
}

async fn audit_actions(sys: &TestSystem, account: &str) -> Vec<String> {
    sys.app.accounts.audit_log(Some(account), 50).await.unwrap().into_iter().map(|a| a.action).collect()
}

/// The account holding Lan's number verified.
async fn lans_account(sys: &TestSystem) -> String {
    sys.app.accounts.find_by_national_id(LAN_NUMBER).await.unwrap().expect("a verified holder").id
}

async fn what_a_citizen_sees_after_login(stores: Stores) {
    let sys = start(stores, String::new()).await;
    let browser = Browser::new();
    // Not logged in: the chooser, and back to the account page after the login.
    let (url, status, _) = account_page(&sys, &browser, "").await;
    assert!(url.contains("/login?request="), "{url}");
    assert_eq!(status, StatusCode::OK);
    let body = login_to_account(&sys, &browser, "hcm", HCM_USER).await;
    assert!(body.contains("<html lang=\"vi\">"), "Vietnamese first");
    assert!(body.contains("Tài khoản của tôi"));
    assert_eq!(select_all(&body, ".name"), vec!["Nguyễn Thị Lan"]);
    assert_eq!(select_all(&body, ".kind"), vec!["Công dân"]);
    let number = &select_all(&body, ".national-id")[0];
    assert!(number.starts_with("*********512") && number.ends_with("(đã xác minh)"), "{number}");
    assert!(!body.contains(LAN_NUMBER), "never the whole number");
    assert_eq!(linked_systems(&body), vec!["hcm"]);
    assert!(attr_all(&body, "a.unlink", "href").is_empty(), "the only link cannot be unlinked");
    // My sessions: this one, and the applications that received tokens in it.
    let rp = sys.rp(PORTAL, Some(PORTAL_SECRET), PORTAL_CB).await;
    sso_login(&browser, &rp, PORTAL_CB).await;
    let (_, _, body) = account_page(&sys, &browser, "").await;
    assert_eq!(select_all(&body, "tr.session.current").len(), 1, "{body}");
    assert_eq!(select_all(&body, "tr.session td.clients"), vec![PORTAL], "{body}");
    // The English switch.
    let switch = attr_all(&body, ".lang-switch a", "href");
    assert_eq!(switch, vec!["/account?lang=en"]);
    let (_, status, en) = account_page(&sys, &browser, "?lang=en").await;
    assert_eq!(status, StatusCode::OK);
    assert!(en.contains("<html lang=\"en\">") && en.contains("My account") && en.contains("Citizen"), "{en}");
    let number = &select_all(&en, ".national-id")[0];
    assert!(number.starts_with("*********512") && number.ends_with("(verified)"), "{number}");
    // The old "my sessions" page stays.
    let (_, status, sessions) = browser.navigate(&sys.url("/sessions"), NOWHERE).await.page();
    assert_eq!(status, StatusCode::OK);
    assert!(sessions.contains("Phiên đăng nhập của tôi"));
}

async fn an_official_sees_unit_and_position(stores: Stores) {
    let sys = start(stores, String::new()).await;
    let browser = Browser::new();
    // Binh Duong's "thuvtm" is an official (see config/legacy/bd.toml).
    let body = login_to_account(&sys, &browser, "bd", "thuvtm").await;
    assert_eq!(select_all(&body, ".kind"), vec!["Cán bộ, công chức"], "{body}");
    assert_eq!(select_all(&body, ".unit").len(), 1, "{body}");
    assert_eq!(select_all(&body, ".position").len(), 1, "{body}");
}

async fn linking_a_system_that_verifies_the_number_is_automatic(stores: Stores) {
    let sys = start(stores, String::new()).await;
    let browser = Browser::new();
    login_to_account(&sys, &browser, "hcm", HCM_USER).await;
    let (_, _, before) = account_page(&sys, &browser, "").await;
    let sid_before = attr_all(&before, "tr.session.current input[name=sid]", "value");
    let (url, status, body) = link(&sys, &browser, "bd", BD_USER).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(url.contains("/account?lang=vi&linking=bd"), "{url}");
    assert!(body.contains("đã được liên kết với tài khoản của bạn"), "{body}");
    let mut systems = linked_systems(&body);
    systems.sort();
    assert_eq!(systems, vec!["bd", "hcm"]);
    let account = lans_account(&sys).await;
    assert_eq!(sys.app.accounts.links_of(&account).await.unwrap().len(), 2);
    assert!(audit_actions(&sys, &account).await.contains(&"self-link".to_string()));
    // The session that asked simply continues (no new login replaced it).
    assert_eq!(attr_all(&body, "tr.session.current input[name=sid]", "value"), sid_before);
    assert_eq!(select_all(&body, "tr.session").len(), 1);
}

async fn linking_a_system_that_cannot_verify_asks_for_the_persons_confirmation(stores: Stores) {
    let sys = start(stores, String::new()).await;
    let browser = Browser::new();
    // Ba Ria-Vung Tau cannot verify numbers: "lannguyen"'s is pending.
    let body = login_to_account(&sys, &browser, "brvt", "lannguyen").await;
    assert!(select_all(&body, ".national-id")[0].contains("tự khai, chưa xác minh"), "{body}");
    // Linking VNeID (verified number): the existing confirmation page asks.
    let (url, status, confirm) = link(&sys, &browser, "vneid", "lan.vneid").await;
    assert!(url.ends_with("/account/link/confirm"), "{url}: {confirm}");
    assert_eq!(status, StatusCode::OK);
    assert!(confirm.contains("*********512") && !confirm.contains(LAN_NUMBER));
    let res =
        post(&sys, &browser, "/account/link/confirm", &[("csrf", &csrf_of(&confirm)), ("decision", "link")])
            .await;
    let (url, status, body) = follow(&sys, &browser, res).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(url.contains("linking=vneid"), "back on the account page: {url}");
    assert!(body.contains("đã được liên kết"), "{body}");
    let mut systems = linked_systems(&body);
    systems.sort();
    assert_eq!(systems, vec!["brvt", "vneid"]);
    assert!(select_all(&body, ".national-id")[0].contains("đã xác minh"), "{body}");
    let verified = sys.app.accounts.find_by_national_id(LAN_NUMBER).await.unwrap().unwrap().id;
    assert_eq!(account_id(&sys, "brvt", "1008801").await.as_deref(), Some(verified.as_str()));
    assert!(audit_actions(&sys, &verified).await.contains(&"proof-link".to_string()));
}

async fn a_verified_account_never_pulls_in_an_unverified_declaration(stores: Stores) {
    let sys = start(stores, String::new()).await;
    let browser = Browser::new();
    // A verified session (VNeID) links Ba Ria-Vung Tau, whose account only declares the
    // number: nothing is linked (a kiosk's next user could declare anyone's number); the page
    // says how to prove it the other way round.
    login_to_account(&sys, &browser, "vneid", "lan.vneid").await;
    let (_, status, body) = link(&sys, &browser, "brvt", "lannguyen").await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body.contains("Không có gì thay đổi") || body.contains("Chưa có gì được liên kết"), "{body}");
    assert!(body.contains("Nothing was linked yet"), "{body}");
    let verified = sys.app.accounts.find_by_national_id(LAN_NUMBER).await.unwrap().unwrap().id;
    assert_ne!(account_id(&sys, "brvt", "1008801").await.as_deref(), Some(verified.as_str()));
    // Still logged in as before.
    let (_, _, page) = account_page(&sys, &browser, "").await;
    assert_eq!(linked_systems(&page), vec!["vneid"]);
}

async fn unlinking_asks_first_and_never_removes_the_last_link(stores: Stores) {
    let sys = start(stores, String::new()).await;
    let browser = Browser::new();
    login_to_account(&sys, &browser, "hcm", HCM_USER).await;
    let (_, _, body) = link(&sys, &browser, "bd", BD_USER).await;
    let account = lans_account(&sys).await;
    assert_eq!(linked_systems(&body).len(), 2);
    let hrefs = attr_all(&body, "a.unlink", "href");
    assert_eq!(hrefs.len(), 2, "{body}");
    let bd = hrefs.iter().find(|h| h.contains("upstream=bd&")).unwrap().replace("&amp;", "&");
    // The confirmation step changes nothing by itself.
    let (_, status, confirm) = browser.navigate(&sys.url(&bd), NOWHERE).await.page();
    assert_eq!(status, StatusCode::OK, "{confirm}");
    assert!(confirm.contains("Huỷ liên kết") && confirm.contains("Không, giữ liên kết"), "{confirm}");
    assert_eq!(sys.app.accounts.links_of(&account).await.unwrap().len(), 2);
    let fields: Vec<(String, String)> = {
        let doc = scraper::Html::parse_document(&confirm);
        let sel = scraper::Selector::parse("form input").unwrap();
        doc.select(&sel)
            .map(|i| {
                (i.value().attr("name").unwrap().to_string(), i.value().attr("value").unwrap().to_string())
            })
            .collect()
    };
    let form: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let (url, status, page) =
        follow(&sys, &browser, post(&sys, &browser, "/account/unlink", &form).await).await;
    assert_eq!(status, StatusCode::OK);
    assert!(url.contains("unlinked=bd"), "{url}");
    assert!(page.contains("không còn liên kết"), "{page}");
    assert_eq!(linked_systems(&page), vec!["hcm"]);
    assert!(attr_all(&page, "a.unlink", "href").is_empty());
    assert!(audit_actions(&sys, &account).await.contains(&"self-unlink".to_string()));
    // Replaying the same form changes nothing.
    let res = post(&sys, &browser, "/account/unlink", &form).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let text = res.text().await.unwrap();
    assert!(text.contains("Không có gì thay đổi") && text.contains("Nothing changed"), "{text}");
    // The last link is refused, even when asked directly.
    let hcm_subject = sys.app.accounts.links_of(&account).await.unwrap()[0].subject.clone();
    let csrf = csrf_of(&page);
    let last = [("csrf", csrf.as_str()), ("upstream", "hcm"), ("subject", hcm_subject.as_str())];
    let res = post(&sys, &browser, "/account/unlink", &last).await;
    assert_eq!(res.status(), StatusCode::CONFLICT);
    let text = res.text().await.unwrap();
    assert!(
        text.contains("Không thể huỷ liên kết cuối cùng") && text.contains("The last link cannot be removed")
    );
    let (_, status, _) = browser
        .navigate(&sys.url(&format!("/account/unlink?upstream=hcm&subject={hcm_subject}")), NOWHERE)
        .await
        .page();
    assert_eq!(status, StatusCode::CONFLICT, "not even the confirmation page");
    assert_eq!(sys.app.accounts.links_of(&account).await.unwrap().len(), 1);
}

fn app_client(receiver: &str) -> String {
    format!(
        r#"
[[clients]]
client_id = "{APP}"
name = "Ứng dụng thử"
client_secret = "{APP_SECRET}"
redirect_uris = ["{APP_CB}"]
backchannel_logout_uri = "{receiver}"
"#
    )
}

async fn log_out_everywhere_ends_every_session_and_tells_each_application(stores: Stores) {
    let receiver = Receiver::start(Duration::ZERO).await;
    let sys = start(stores, app_client(&receiver.url)).await;
    let rp = sys.rp(APP, Some(APP_SECRET), APP_CB).await;
    // The same person in two browsers (Ho Chi Minh City and Binh Duong: one account), each
    // session with the application.
    let (here, there) = (Browser::new(), Browser::new());
    let mut sids = Vec::new();
    for (browser, upstream, user) in [(&here, "hcm", HCM_USER), (&there, "bd", BD_USER)] {
        let req = rp.authorize(&[("idp_hint", upstream)]);
        let cb = browser.login(&req.url, upstream, user, APP_CB).await.callback();
        let tokens = rp.exchange(&req, &param(&cb, "code").unwrap()).await.unwrap();
        sids.push(jwt_payload(&tokens.id_token)["sid"].as_str().unwrap().to_string());
    }
    let (_, _, body) = account_page(&sys, &here, "").await;
    assert_eq!(select_all(&body, "tr.session").len(), 2, "{body}");
    assert_eq!(select_all(&body, "tr.session td.clients"), vec!["Ứng dụng thử", "Ứng dụng thử"]);
    let res = post(&sys, &here, "/sessions/end", &[("sid", "all"), ("csrf", &csrf_of(&body))]).await;
    assert_eq!(res.status(), StatusCode::OK, "the logged-out page");
    // Every session ended: both browsers are sent to the chooser again.
    for browser in [&here, &there] {
        let (url, _, _) = account_page(&sys, browser, "").await;
        assert!(url.contains("/login?request="), "{url}");
    }
    // The application was told, once per session, by a signed logout token.
    let tokens = receiver.wait_for_tokens(2, Duration::from_secs(10)).await.expect("two logout tokens");
    let mut told: Vec<String> = Vec::new();
    for t in &tokens {
        let claims = verify_with_jwks(&sys, t, APP).await;
        assert!(claims["events"]["http://schemas.openid.net/event/backchannel-logout"].is_object());
        told.push(claims["sid"].as_str().unwrap().to_string());
    }
    told.sort();
    sids.sort();
    assert_eq!(told, sids);
}

async fn forged_and_replayed_posts_change_nothing(stores: Stores) {
    let sys = start(stores, String::new()).await;
    let browser = Browser::new();
    login_to_account(&sys, &browser, "hcm", HCM_USER).await;
    let (_, _, body) = link(&sys, &browser, "bd", BD_USER).await;
    let account = lans_account(&sys).await;
    let bd_subject = sys
        .app
        .accounts
        .links_of(&account)
        .await
        .unwrap()
        .into_iter()
        .find(|l| l.upstream == "bd")
        .unwrap()
        .subject;
    // Another person's session and token.
    let other = Browser::new();
    let other_page = login_to_account(&sys, &other, "hcm", "minh").await;
    let other_csrf = csrf_of(&other_page);
    let anonymous = Browser::new();
    let unlink = |csrf: &str| {
        vec![
            ("csrf".to_string(), csrf.to_string()),
            ("upstream".into(), "bd".into()),
            ("subject".into(), bd_subject.clone()),
        ]
    };
    for (who, csrf, expected) in [
        (&browser, String::new(), StatusCode::FORBIDDEN),
        (&browser, "forged".to_string(), StatusCode::FORBIDDEN),
        (&browser, other_csrf.clone(), StatusCode::FORBIDDEN),
        (&anonymous, csrf_of(&body), StatusCode::UNAUTHORIZED),
    ] {
        let form = unlink(&csrf);
        let res = who.http.post(sys.url("/account/unlink")).form(&form).send().await.unwrap();
        assert_eq!(res.status(), expected, "unlink with {csrf:?}");
        let text = res.text().await.unwrap();
        assert!(text.contains("Không có gì thay đổi") && text.contains("Nothing changed"), "{text}");
        let res = who
            .http
            .post(sys.url("/account/link"))
            .form(&[("csrf", csrf.as_str()), ("upstream", "vneid")])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), expected, "link with {csrf:?}");
        let res = who
            .http
            .post(sys.url("/sessions/end"))
            .form(&[("csrf", csrf.as_str()), ("sid", "all")])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), expected, "log out everywhere with {csrf:?}");
    }
    // Nothing changed: both links, and both people still logged in.
    assert_eq!(sys.app.accounts.links_of(&account).await.unwrap().len(), 2);
    for b in [&browser, &other] {
        let (url, status, _) = account_page(&sys, b, "").await;
        assert_eq!(status, StatusCode::OK);
        assert!(!url.contains("/login?"), "{url}");
    }
    // An unknown system is refused before any login starts.
    let res =
        post(&sys, &browser, "/account/link", &[("csrf", &csrf_of(&body)), ("upstream", "nowhere")]).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    // A link login that comes back to another session of the browser links nothing.
    let (_, _, page) = account_page(&sys, &browser, "").await;
    let res = post(&sys, &browser, "/account/link", &[("csrf", &csrf_of(&page)), ("upstream", "brvt")]).await;
    let location = continue_href(res).await;
    // The person logs in again in this browser (a new session) before the link comes back.
    login_to_account_again(&sys, &browser).await;
    let (url, _, upstream_page) = browser.navigate(&sys.url(&location), NOWHERE).await.page();
    let (_, status, refused) =
        browser.login_form(&url, &upstream_page, BRVT_USER, "demo123", NOWHERE).await.page();
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");
    assert!(
        refused.contains("it was not made") && refused.contains("still logged in as before"),
        "{refused}"
    );
    assert_eq!(sys.app.accounts.links_of(&account).await.unwrap().len(), 2, "Ba Ria-Vung Tau not linked");
    let (_, _, page) = account_page(&sys, &browser, "").await;
    let mut systems = linked_systems(&page);
    systems.sort();
    assert_eq!(systems, vec!["bd", "hcm"], "still Lan's session");
}

/// A fresh login of the same person in the same browser (a new session replaces the old).
async fn login_to_account_again(sys: &TestSystem, browser: &Browser) {
    let rp = sys.rp(PORTAL, Some(PORTAL_SECRET), PORTAL_CB).await;
    let req = rp.authorize(&[("prompt", "login"), ("idp_hint", "hcm")]);
    browser.login(&req.url, "hcm", HCM_USER, PORTAL_CB).await.callback();
}

macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(super::Stores::Embedded).await;
                }
            )*
        }
        mod production {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(super::Stores::Production).await;
                }
            )*
        }
    };
}

on_both_stores!(
    what_a_citizen_sees_after_login,
    an_official_sees_unit_and_position,
    linking_a_system_that_verifies_the_number_is_automatic,
    linking_a_system_that_cannot_verify_asks_for_the_persons_confirmation,
    a_verified_account_never_pulls_in_an_unverified_declaration,
    unlinking_asks_first_and_never_removes_the_last_link,
    log_out_everywhere_ends_every_session_and_tells_each_application,
    forged_and_replayed_posts_change_nothing,
);
