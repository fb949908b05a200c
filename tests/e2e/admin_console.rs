//! The admin console (`/admin`) over HTTP, as a browser without JavaScript uses it: an
//! operator logs in through the gateway (the console is an RP of the gateway itself), needs
//! the role and `[admin] min_acr` (a weaker login is sent to step up through the chooser),
//! finds a conflict created by two logins, reviews the two records side by side and resolves
//! it with a reason; every write needs its reason and the console session's anti-forgery
//! token and is audited with who/when/what/why. On SQLite with in-memory sessions and on
//! PostgreSQL with Redis sessions.

use reqwest::StatusCode;
use sso_gateway::accounts::lists::AuditFilter;

use crate::helpers::*;

/// A prefix no redirect of these tests goes to: navigation always ends on a page.
const NOWHERE: &str = "http://nowhere.invalid/";
/// hcm "tuan" holds the role `quan-tri` (the default `[admin] role`); "tuan.vneid" is the
/// same person at VNeID level 1.
const ADMIN_USER: &str = "tuan";
const ADMIN_NUMBER: &str = "079082006631";
/// hcm "hoa" and bd "hoalt": the same number, different birthdates (a conflict).
const HOA_NUMBER: &str = "074185001276";
const LAN_NUMBER: &str = "079190004512";

#[derive(Clone, Copy, Debug)]
enum Stores {
    /// SQLite accounts, in-memory sessions (the embedded default).
    Embedded,
    /// PostgreSQL accounts, Redis sessions (production).
    Production,
}

async fn start(stores: Stores, extra_config: &str) -> TestSystem {
    let extra_config = extra_config.to_string();
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

/// Opens `/admin` not logged in: the chooser, a login through `upstream` as `user`, and back.
async fn console_login(
    sys: &TestSystem,
    browser: &Browser,
    upstream: &str,
    user: &str,
) -> (String, StatusCode, String) {
    browser.login(&sys.url("/admin"), upstream, user, NOWHERE).await.page()
}

async fn open(sys: &TestSystem, browser: &Browser, path: &str) -> (String, StatusCode, String) {
    browser.navigate(&sys.url(path), NOWHERE).await.page()
}

async fn post(sys: &TestSystem, browser: &Browser, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
    browser.http.post(sys.url(path)).form(form).send().await.unwrap()
}

/// A write that worked: a redirect (303/302) back into the console; returns where.
fn redirected(res: &reqwest::Response) -> String {
    assert!(res.status().is_redirection(), "expected a redirect, got {}", res.status());
    res.headers()[reqwest::header::LOCATION].to_str().unwrap().to_string()
}

async fn account_with(sys: &TestSystem, number: &str) -> String {
    sys.app.accounts.find_by_national_id(number).await.unwrap().expect("an account").id
}

/// The audit lines written by `actor`, newest first: (action, target, reason).
async fn audit_by(sys: &TestSystem, actor: &str) -> Vec<(String, String, Option<String>)> {
    let filter = AuditFilter { actor: Some(actor.to_string()), ..Default::default() };
    let page = sys.app.accounts.audit_page(&filter, 200, None).await.unwrap();
    page.items.into_iter().map(|a| (a.action, a.target, a.reason)).collect()
}

async fn a_conflict_created_by_two_logins_is_found_reviewed_and_resolved(stores: Stores) {
    let sys = start(stores, "").await;
    portal_login(&sys, &Browser::new(), "hcm", "hoa").await;
    portal_login(&sys, &Browser::new(), "bd", "hoalt").await;
    let admin = Browser::new();
    let (url, status, home) = console_login(&sys, &admin, "hcm", ADMIN_USER).await;
    assert_eq!(status, StatusCode::OK, "{home}");
    assert!(url.starts_with(&sys.url("/admin")), "{url}");
    assert!(
        home.contains("<html lang=\"vi\">") && home.contains("Tìm tài khoản"),
        "Vietnamese first: {home}"
    );
    let operator = format!("account:{}", account_with(&sys, ADMIN_NUMBER).await);

    // Found: by folded name (no accents), both records, numbers masked in the list.
    let (_, status, found) = open(&sys, &admin, "/admin?by=name&q=le%20thi%20hoa").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(attr_all(&found, "tr.result", "data-account").len(), 2, "{found}");
    let masked = select_all(&found, "td.national-id");
    // The verified holder's number, masked; the other record's number is only claimed.
    assert!(masked.contains(&"074******276".to_string()), "{masked:?}");
    assert!(!found.contains(HOA_NUMBER), "lists never show a whole number");

    // The queue, and the two records side by side.
    let (_, _, queue) = open(&sys, &admin, "/admin/conflicts").await;
    let reviews = attr_all(&queue, "a.review", "href");
    assert_eq!(reviews.len(), 1, "{queue}");
    assert!(!queue.contains(HOA_NUMBER));
    let (_, status, review) = open(&sys, &admin, &reviews[0]).await;
    assert_eq!(status, StatusCode::OK);
    let differing = select_all(&review, "table.compare tr.differs th");
    assert!(differing.iter().any(|d| d.starts_with("Ngày sinh")), "{differing:?}");
    assert!(review.contains("1985-07-21") && review.contains("1985-07-12"), "both birthdates");
    assert!(select_all(&review, "table.compare td").iter().any(|c| c.starts_with("hcm /")), "upstream seen");
    let action = attr_all(&review, "form#resolve", "action").pop().expect("a decision form");
    let csrf = csrf_of(&review);
    let id: i64 = action.split('/').nth(3).unwrap().parse().unwrap();
    // Refused, nothing changed: no reason, a forged token, no token, no console session.
    let res = post(&sys, &admin, &action, &[("csrf", &csrf), ("decision", "merge"), ("reason", "  ")]).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let page = res.text().await.unwrap();
    assert!(page.contains("lý do") && page.contains("reason"), "says why, in both languages: {page}");
    let forged = "A".repeat(csrf.len());
    let res = post(&sys, &admin, &action, &[("csrf", &forged), ("decision", "merge"), ("reason", "x")]).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let res = post(&sys, &admin, &action, &[("decision", "merge"), ("reason", "x")]).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let stranger = Browser::new();
    let res =
        post(&sys, &stranger, &action, &[("csrf", &csrf), ("decision", "merge"), ("reason", "x")]).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(is_open(&sys, id).await);

    // Resolved: same person, merged, with the reason.
    let why = "same person: ID card checked at the ward office";
    let res = post(
        &sys,
        &admin,
        &action,
        &[("csrf", &csrf), ("decision", "merge"), ("survivor", "existing"), ("reason", why), ("lang", "vi")],
    )
    .await;
    let to = redirected(&res);
    assert_eq!(to, "/admin/conflicts?lang=vi&done=merged");
    let (_, _, after) = open(&sys, &admin, &to).await;
    assert!(select_all(&after, "#done")[0].contains("merged"), "{after}");
    assert!(attr_all(&after, "a.review", "href").is_empty(), "the queue is empty");
    assert!(!is_open(&sys, id).await);
    let conflict = sys.app.accounts.conflict(id).await.unwrap().unwrap();
    assert_eq!(conflict.resolution.as_deref(), Some("merged"));
    let lines = audit_by(&sys, &operator).await;
    assert!(lines.iter().any(|(a, _, r)| a == "merge" && r.as_deref() == Some(why)), "{lines:?}");

    // The survivor's page: the full number, and the view itself audited.
    let survivor = conflict.existing_account_id;
    let (_, status, page) = open(&sys, &admin, &format!("/admin/accounts/{survivor}?reason=follow-up")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(select_all(&page, "dd.national-id"), vec![HOA_NUMBER]);
    let mut systems = attr_all(&page, "tr.link", "data-upstream");
    systems.sort();
    assert_eq!(systems, ["bd", "hcm"]);
    let lines = audit_by(&sys, &operator).await;
    assert_eq!(lines[0], ("view".to_string(), survivor.clone(), Some("follow-up".to_string())));
    // The English switch keeps the page.
    let switch = attr_all(&page, "#lang-switch", "href").pop().unwrap();
    assert_eq!(switch, format!("/admin/accounts/{survivor}?reason=follow-up&lang=en"));
    let (_, _, en) = open(&sys, &admin, &switch).await;
    assert!(en.contains("<html lang=\"en\">") && en.contains("Former systems linked"), "{en}");
}

#[tokio::test]
async fn a_conflict_created_by_two_logins_is_found_reviewed_and_resolved_on_sqlite() {
    a_conflict_created_by_two_logins_is_found_reviewed_and_resolved(Stores::Embedded).await;
}

#[tokio::test]
async fn a_conflict_created_by_two_logins_is_found_reviewed_and_resolved_on_postgres() {
    a_conflict_created_by_two_logins_is_found_reviewed_and_resolved(Stores::Production).await;
}

async fn every_write_needs_a_reason_and_is_audited(stores: Stores) {
    let sys = start(stores, "").await;
    portal_login(&sys, &Browser::new(), "hcm", "lan").await;
    portal_login(&sys, &Browser::new(), "hcm", "khang").await;
    let admin = Browser::new();
    let (_, status, _) = console_login(&sys, &admin, "hcm", ADMIN_USER).await;
    assert_eq!(status, StatusCode::OK);
    let tuan = account_with(&sys, ADMIN_NUMBER).await;
    let operator = format!("account:{tuan}");
    let lan = account_with(&sys, LAN_NUMBER).await;
    let khang = account_with(&sys, "001075008823").await;
    let page_of = |id: &str| format!("/admin/accounts/{id}");
    let (_, _, page) = open(&sys, &admin, &page_of(&lan)).await;
    let csrf = csrf_of(&page);
    assert_eq!(select_all(&page, "tr.session").len(), 1, "her portal session");
    let write = |path: String, fields: Vec<(&'static str, String)>| {
        let (sys, admin, csrf) = (&sys, &admin, csrf.clone());
        async move {
            let mut form: Vec<(&str, String)> = vec![("csrf", csrf), ("lang", "vi".to_string())];
            form.extend(fields);
            let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
            post(sys, admin, &path, &pairs).await
        }
    };

    // No reason: refused, nothing changed.
    let res = write(format!("{}/lock", page_of(&lan)), vec![("reason", String::new())]).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        sys.app.accounts.find_by_id(&lan).await.unwrap().unwrap().status,
        sso_gateway::accounts::AccountStatus::Active
    );

    // Lock, unlock, end sessions, link, unlink: each done and audited with its reason.
    let steps = [
        ("lock", vec![]),
        ("unlock", vec![]),
        ("sessions/end", vec![]),
        ("links", vec![("upstream", "bd".to_string()), ("subject", "bd-lan-legacy".to_string())]),
        ("links/remove", vec![("upstream", "bd".to_string()), ("subject", "bd-lan-legacy".to_string())]),
    ];
    for (step, fields) in steps {
        let mut fields = fields;
        fields.push(("reason", format!("ticket for {step}")));
        let res = write(format!("{}/{step}", page_of(&lan)), fields).await;
        let to = redirected(&res);
        assert!(to.starts_with(&format!("{}?lang=vi&done=", page_of(&lan))), "{step}: {to}");
    }
    let (_, _, page) = open(&sys, &admin, &page_of(&lan)).await;
    assert!(select_all(&page, "tr.session").is_empty(), "her sessions ended: {page}");
    assert_eq!(attr_all(&page, "tr.link", "data-upstream"), ["hcm"]);
    let lines = audit_by(&sys, &operator).await;
    for (action, step) in [
        ("lock", "lock"),
        ("unlock", "unlock"),
        ("end-sessions", "sessions/end"),
        ("link", "links"),
        ("unlink", "links/remove"),
    ] {
        assert!(
            lines.iter().any(|(a, t, r)| a == action
                && t == &lan
                && r.as_deref() == Some(&format!("ticket for {step}"))),
            "{action}: {lines:?}"
        );
    }

    // An official's unit, from the form's own choices.
    let (_, _, own) = open(&sys, &admin, &page_of(&tuan)).await;
    let choices = attr_all(&own, "#unit-code option", "value");
    let unit = match choices.first() {
        Some(u) => u.clone(),
        None => current_unit(&sys, &tuan).await,
    };
    let res =
        write(format!("{}/unit", page_of(&tuan)), vec![("unit", unit), ("reason", "decision 12/QĐ".into())])
            .await;
    redirected(&res);
    let official = sys.app.accounts.find_by_id(&tuan).await.unwrap().unwrap().official.unwrap();
    assert_eq!(official.org_unit_state, sso_gateway::accounts::OrgUnitState::Decided);

    // A merge the rules refuse (two verified numbers): 409, bilingual, nothing changed.
    let res =
        write(format!("{}/merge", page_of(&khang)), vec![("into", lan.clone()), ("reason", "test".into())])
            .await;
    assert_eq!(res.status(), StatusCode::CONFLICT);
    let body = res.text().await.unwrap();
    assert!(body.contains("Không có gì thay đổi") && body.contains("Nothing changed"), "{body}");

    // Warnings and operations pages render.
    let (_, status, warnings) = open(&sys, &admin, "/admin/warnings?code=birth_year_mismatch").await;
    assert_eq!(status, StatusCode::OK);
    assert!(warnings.contains("Cảnh báo số định danh"), "{warnings}");
    let (_, status, ops) = open(&sys, &admin, "/admin/operations").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(select_all(&ops, "dd[data-fact=accounts]"), ["3"], "{ops}");
    assert_eq!(select_all(&ops, "dd[data-fact=active_unit_set]").len(), 1);

    // Leaving the console ends its session (the SSO session stays).
    let res = write("/admin/logout".to_string(), vec![]).await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = write(format!("{}/lock", page_of(&lan)), vec![("reason", "after leaving".into())]).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}

/// A failed back-channel logout made by the console itself (ending the sessions of someone
/// logged in to an RP whose back-channel endpoint is down) is retried from the operations
/// page once the RP is up: a retry without a reason or with a forged token changes nothing,
/// one while the RP is still down stays listed with its new error and says so, the one after
/// the RP is back takes the failure off the list; each retry's audit line names the operator
/// and the reason.
async fn a_failed_backchannel_logout_is_retried_from_the_operations_page(stores: Stores) {
    const FLAKY: &str = "flaky-rp";
    const FLAKY_SECRET: &str = "flaky-rp-secret-0123456789abcdef";
    const FLAKY_CB: &str = "http://127.0.0.1:9/flaky/cb";
    let receiver = crate::admin_api::FlakyReceiver::start().await;
    let extra = format!(
        "[[clients]]\nclient_id = \"{FLAKY}\"\nclient_secret = \"{FLAKY_SECRET}\"\n\
         redirect_uris = [\"{FLAKY_CB}\"]\nbackchannel_logout_uri = \"{}\"\n",
        receiver.url
    );
    let sys = start(stores, &extra).await;
    let lan_browser = Browser::new();
    portal_login(&sys, &lan_browser, "hcm", "lan").await;
    sso_login(&lan_browser, &sys.rp(FLAKY, Some(FLAKY_SECRET), FLAKY_CB).await, FLAKY_CB).await;
    let admin = Browser::new();
    let (_, status, _) = console_login(&sys, &admin, "hcm", ADMIN_USER).await;
    assert_eq!(status, StatusCode::OK);
    let operator = format!("account:{}", account_with(&sys, ADMIN_NUMBER).await);
    let lan = account_with(&sys, LAN_NUMBER).await;
    let (_, _, page) = open(&sys, &admin, &format!("/admin/accounts/{lan}")).await;
    let csrf = csrf_of(&page);
    let res = post(
        &sys,
        &admin,
        &format!("/admin/accounts/{lan}/sessions/end"),
        &[("csrf", &csrf), ("reason", "phone stolen"), ("lang", "vi")],
    )
    .await;
    redirected(&res);

    // The failure is on the operations page with its retry form.
    let (_, status, ops) = open(&sys, &admin, "/admin/operations").await;
    assert_eq!(status, StatusCode::OK, "{ops}");
    assert_eq!(attr_all(&ops, "tr.failure", "data-client"), [FLAKY], "{ops}");
    let sid = attr_all(&ops, "tr.failure", "data-sid").pop().unwrap();
    let action = attr_all(&ops, "tr.failure form.retry", "action").pop().expect("a retry form");
    assert_eq!(action, "/admin/operations/logout-failures/retry");
    assert_eq!(attr_all(&ops, "tr.failure form.retry input[name=sid]", "value"), std::slice::from_ref(&sid));
    assert_eq!(attr_all(&ops, "tr.failure form.retry textarea[name=reason]", "required").len(), 1);
    let csrf = csrf_of(&ops);
    let retries = || async {
        let filter = AuditFilter { action: Some("retry-backchannel-logout".into()), ..Default::default() };
        let page = sys.app.accounts.audit_page(&filter, 200, None).await.unwrap();
        page.items.into_iter().map(|a| (a.actor, a.target, a.reason)).collect::<Vec<_>>()
    };

    // Refused, nothing changed (still listed, nothing audited, nothing sent).
    receiver.accept.store(true, std::sync::atomic::Ordering::SeqCst);
    let form = |csrf: &str, reason: &str| {
        vec![
            ("csrf".to_string(), csrf.to_string()),
            ("client_id".to_string(), FLAKY.to_string()),
            ("sid".to_string(), sid.clone()),
            ("reason".to_string(), reason.to_string()),
            ("lang".to_string(), "vi".to_string()),
        ]
    };
    let send = |fields: Vec<(String, String)>| {
        let (sys, admin, action) = (&sys, &admin, action.clone());
        async move {
            let pairs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            post(sys, admin, &action, &pairs).await
        }
    };
    assert_eq!(send(form(&csrf, "  ")).await.status(), StatusCode::BAD_REQUEST);
    let forged = "A".repeat(csrf.len());
    assert_eq!(send(form(&forged, "RP is back")).await.status(), StatusCode::FORBIDDEN);
    let no_token: Vec<(String, String)> = form(&csrf, "RP is back").into_iter().skip(1).collect();
    assert_eq!(send(no_token).await.status(), StatusCode::FORBIDDEN);
    let (_, _, ops) = open(&sys, &admin, "/admin/operations").await;
    assert_eq!(attr_all(&ops, "tr.failure", "data-sid"), std::slice::from_ref(&sid), "still listed");
    assert!(retries().await.is_empty(), "nothing audited");
    assert!(receiver.taken.borrow().is_empty(), "nothing sent");

    // Still down: retried, failed again, still listed, and the page says so.
    receiver.accept.store(false, std::sync::atomic::Ordering::SeqCst);
    let to = redirected(&send(form(&csrf, "RP says it is back")).await);
    assert_eq!(to, "/admin/operations?lang=vi&done=retry-failed");
    let (_, _, ops) = open(&sys, &admin, &to).await;
    assert_eq!(attr_all(&ops, "#done", "data-done"), ["retry-failed"], "{ops}");
    assert_eq!(attr_all(&ops, "tr.failure", "data-sid"), std::slice::from_ref(&sid));

    // Up: delivered, off the list, and the page says so.
    receiver.accept.store(true, std::sync::atomic::Ordering::SeqCst);
    let to = redirected(&send(form(&csrf, "RP fixed, ticket 42")).await);
    assert_eq!(to, "/admin/operations?lang=vi&done=retry-delivered");
    let (_, _, ops) = open(&sys, &admin, &to).await;
    assert_eq!(attr_all(&ops, "#done", "data-done"), ["retry-delivered"], "{ops}");
    assert!(attr_all(&ops, "tr.failure", "data-sid").is_empty(), "off the list: {ops}");
    assert_eq!(receiver.taken.borrow().len(), 1, "one logout token delivered");
    let target = format!("client:{FLAKY}");
    assert_eq!(
        retries().await,
        [
            (operator.clone(), target.clone(), Some("RP fixed, ticket 42".to_string())),
            (operator, target, Some("RP says it is back".to_string())),
        ]
    );
}

#[tokio::test]
async fn a_failed_backchannel_logout_is_retried_from_the_operations_page_on_sqlite() {
    a_failed_backchannel_logout_is_retried_from_the_operations_page(Stores::Embedded).await;
}

#[tokio::test]
async fn a_failed_backchannel_logout_is_retried_from_the_operations_page_on_postgres() {
    a_failed_backchannel_logout_is_retried_from_the_operations_page(Stores::Production).await;
}

/// The audit log page: reached from the navigation, filtered by who, which account (`sub`),
/// what and which days (Vietnam time), national IDs masked, in both languages; looking at it
/// writes no line; a day that is not one is a 400 page.
async fn the_audit_page_filters_the_whole_log(stores: Stores) {
    let sys = start(stores, "").await;
    let (_, lan_tokens) = portal_login(&sys, &Browser::new(), "hcm", "lan").await;
    portal_login(&sys, &Browser::new(), "hcm", "khang").await;
    let admin = Browser::new();
    let (_, status, home) = console_login(&sys, &admin, "hcm", ADMIN_USER).await;
    assert_eq!(status, StatusCode::OK);
    let nav = attr_all(&home, "nav.console a", "href");
    assert!(nav.iter().any(|h| h.starts_with("/admin/audit?")), "linked from the navigation: {nav:?}");
    let operator = format!("account:{}", account_with(&sys, ADMIN_NUMBER).await);
    let lan = account_with(&sys, LAN_NUMBER).await;
    let khang = account_with(&sys, "001075008823").await;
    let csrf = csrf_of(&home);
    for (id, step, reason) in [
        (&lan, "lock", format!("CCCD {LAN_NUMBER} checked at the ward office")),
        (&lan, "unlock", "ticket 7".to_string()),
        (&khang, "lock", "ticket 8".to_string()),
    ] {
        let path = format!("/admin/accounts/{id}/{step}");
        redirected(&post(&sys, &admin, &path, &[("csrf", &csrf), ("reason", &reason)]).await);
    }
    let total = sys.app.accounts.audit_page(&AuditFilter::default(), 200, None).await.unwrap().items.len();
    let rows = |body: &str| -> Vec<String> {
        let actions = attr_all(body, "tr.audit-line", "data-action");
        let targets = select_all(body, "tr.audit-line td.target");
        actions.into_iter().zip(targets).map(|(a, t)| format!("{a} {t}")).collect()
    };

    let (_, status, page) = open(&sys, &admin, "/admin/audit").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("Nhật ký kiểm tra") && page.contains("<html lang=\"vi\">"), "{page}");
    assert!(!page.contains(LAN_NUMBER), "numbers masked: {page}");
    assert!(select_all(&page, "td.reason").iter().any(|r| r.contains("079******512")), "{page}");
    let by = |q: String| {
        let (sys, admin) = (&sys, &admin);
        async move {
            let (_, status, body) = open(sys, admin, &format!("/admin/audit?{q}")).await;
            assert_eq!(status, StatusCode::OK, "{q}: {body}");
            rows(&body)
        }
    };
    let actor = url::form_urlencoded::byte_serialize(operator.as_bytes()).collect::<String>();
    let lan_sub: String =
        url::form_urlencoded::byte_serialize(lan_tokens.claims.subject().as_bytes()).collect();
    assert_eq!(
        by(format!("actor={actor}&action=lock")).await,
        [format!("lock {khang}"), format!("lock {lan}")]
    );
    assert_eq!(
        by(format!("actor={actor}&sub={lan_sub}")).await,
        [format!("unlock {lan}"), format!("lock {lan}")]
    );
    let today = sso_gateway::web::vietnam_time(sys.clock.now());
    let (d, m, y) = (&today[6..8], &today[9..11], &today[12..16]);
    let today = format!("{y}-{m}-{d}");
    assert_eq!(by(format!("actor={actor}&from={today}&to={today}")).await.len(), 3);
    let yesterday = sso_gateway::web::vietnam_time(sys.clock.now() - 86_400);
    let yesterday = format!("{}-{}-{}", &yesterday[12..16], &yesterday[9..11], &yesterday[6..8]);
    assert!(by(format!("actor={actor}&to={yesterday}")).await.is_empty());
    // The filters stay in the form; English too.
    let (_, _, en) = open(&sys, &admin, "/admin/audit?action=lock&lang=en").await;
    assert!(en.contains("<html lang=\"en\">") && en.contains("Audit log"), "{en}");
    assert_eq!(attr_all(&en, "#filter-action", "value"), ["lock"]);
    // A day that is not one: 400, bilingual.
    let (_, status, bad) = open(&sys, &admin, "/admin/audit?from=03/12/2026").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    assert!(bad.contains("Nothing changed"), "{bad}");
    // Looking wrote nothing.
    let after = sys.app.accounts.audit_page(&AuditFilter::default(), 200, None).await.unwrap().items.len();
    assert_eq!(after, total);
}

#[tokio::test]
async fn the_audit_page_filters_the_whole_log_on_sqlite() {
    the_audit_page_filters_the_whole_log(Stores::Embedded).await;
}

#[tokio::test]
async fn the_audit_page_filters_the_whole_log_on_postgres() {
    the_audit_page_filters_the_whole_log(Stores::Production).await;
}

async fn is_open(sys: &TestSystem, id: i64) -> bool {
    sys.app.accounts.conflict(id).await.unwrap().unwrap().resolved_at.is_none()
}

async fn current_unit(sys: &TestSystem, id: &str) -> String {
    let official = sys.app.accounts.find_by_id(id).await.unwrap().unwrap().official.unwrap();
    official.org_unit.map(|u| u.code).expect("a unit")
}

#[tokio::test]
async fn every_write_needs_a_reason_and_is_audited_on_sqlite() {
    every_write_needs_a_reason_and_is_audited(Stores::Embedded).await;
}

#[tokio::test]
async fn every_write_needs_a_reason_and_is_audited_on_postgres() {
    every_write_needs_a_reason_and_is_audited(Stores::Production).await;
}

#[tokio::test]
async fn a_person_without_the_role_is_refused_and_gets_no_console_session() {
    let sys = start(Stores::Embedded, "").await;
    let browser = Browser::new();
    let (_, status, page) = console_login(&sys, &browser, "hcm", "lan").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{page}");
    assert!(
        page.contains("Bạn không có quyền quản trị") && page.contains("You may not use the admin console")
    );
    // Still refused on every page, and no write goes through.
    let (_, status, _) = open(&sys, &browser, "/admin/conflicts").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let lan = account_with(&sys, LAN_NUMBER).await;
    let res = post(&sys, &browser, &format!("/admin/accounts/{lan}/lock"), &[("reason", "x")]).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    // Her own account page works as before: the console did not touch the SSO session.
    let (_, status, _) = open(&sys, &browser, "/account").await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_login_below_min_acr_is_sent_to_step_up_and_then_let_in() {
    let sys = start(Stores::Embedded, "[admin]\nmin_acr = \"urn:sso-gateway:acr:vneid-level1\"\n").await;
    let browser = Browser::new();
    // Logged in with a password (an application's login), then the console.
    let rp = sys.rp(PORTAL, Some(PORTAL_SECRET), PORTAL_CB).await;
    let req = rp.authorize(&[]);
    browser.login(&req.url, "hcm", ADMIN_USER, PORTAL_CB).await.callback();
    // The return point refuses the weak login outright (it never loops).
    let (_, status, page) = open(&sys, &browser, "/admin/callback").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{page}");
    assert!(page.contains("Cần đăng nhập với mức bảo đảm cao hơn"));
    // The console sends the browser to the chooser, offering only what reaches the level.
    let (url, status, chooser) = open(&sys, &browser, "/admin/conflicts").await;
    assert_eq!(status, StatusCode::OK);
    assert!(url.contains("/login?request="), "{url}");
    let offered: Vec<String> = attr_all(&chooser, "a.button", "href")
        .iter()
        .filter_map(|h| h.strip_prefix("/upstream/").and_then(|r| r.split('/').next()).map(str::to_string))
        .collect();
    assert_eq!(offered, ["vneid"], "only what reaches the level (no password login): {chooser}");
    // Step up with VNeID: back on the page asked for.
    let (url, status, page) = browser.login(&url, "vneid", "tuan.vneid", NOWHERE).await.page();
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(url.ends_with("/admin/conflicts"), "{url}");
    assert!(page.contains("Xung đột liên kết"), "{page}");
    // The console session ends with the SSO session it came from.
    let tuan = account_with(&sys, ADMIN_NUMBER).await;
    for s in sys.app.sessions.list_for_account(&tuan).await.unwrap() {
        sys.app.sessions.end(&s).await.unwrap();
    }
    let (url, _, _) = open(&sys, &browser, "/admin/conflicts").await;
    assert!(url.contains("/login?request="), "back to the login: {url}");
}
