//! Bounded anonymous state (issue #11 §1): an anonymous `/authorize` can make the gateway store
//! only a small record, oversized parameters are refused before anything is stored, and a full
//! embedded store refuses anonymous records first, with a clear answer, while people who logged
//! in keep working.

use reqwest::StatusCode;
use reqwest::header::LOCATION;

use crate::helpers::*;

const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

fn client() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

/// A valid portal authorization request with `extra` parameters added or replaced.
fn authorize_url(sys: &TestSystem, extra: &[(&str, String)]) -> String {
    let mut url = url::Url::parse(&sys.url("/authorize")).unwrap();
    {
        let mut q = url.query_pairs_mut();
        let base = [
            ("client_id", PORTAL),
            ("redirect_uri", PORTAL_CB),
            ("response_type", "code"),
            ("scope", "openid"),
            ("code_challenge", CHALLENGE),
            ("code_challenge_method", "S256"),
            ("state", "st"),
        ];
        for (k, v) in base.iter().filter(|(k, _)| !extra.iter().any(|(e, _)| e == k)) {
            q.append_pair(k, v);
        }
        for (k, v) in extra {
            q.append_pair(k, v);
        }
    }
    url.to_string()
}

/// Where a redirect goes, as a URL.
fn location(res: &reqwest::Response) -> url::Url {
    let raw = res.headers().get(LOCATION).and_then(|v| v.to_str().ok()).unwrap_or_default();
    url::Url::parse(raw).or_else(|_| url::Url::parse("http://gateway.invalid").unwrap().join(raw)).unwrap()
}

#[tokio::test]
async fn oversized_authorization_parameters_are_refused_to_the_rp_and_store_nothing() {
    let sys = TestSystem::start().await;
    let http = client();
    let before = sys.app.store.memory_entries();
    let cases = [
        ("state", 1024),
        ("nonce", 256),
        ("login_hint", 256),
        ("acr_values", 512),
        ("ui_locales", 128),
        ("scope", 1024),
        ("code_challenge", 128),
    ];
    for (name, cap) in cases {
        let over = "a".repeat(cap + 1);
        let res = http.get(authorize_url(&sys, &[(name, over)])).send().await.unwrap();
        assert!(res.status().is_redirection(), "{name}: {}", res.status());
        let to = location(&res);
        assert!(to.as_str().starts_with(PORTAL_CB), "{name}: the error goes to the RP: {to}");
        assert_eq!(param(&to, "error").as_deref(), Some("invalid_request"), "{name}: {to}");
        assert!(param(&to, "error_description").unwrap().contains(name), "{name}: {to}");
        if name == "state" {
            assert_eq!(param(&to, "state"), None, "an oversized state is not echoed");
        } else {
            assert_eq!(param(&to, "state").as_deref(), Some("st"));
        }
    }
    // A nonce is printable ASCII.
    let res = http.get(authorize_url(&sys, &[("nonce", "số một".into())])).send().await.unwrap();
    assert_eq!(param(&location(&res), "error").as_deref(), Some("invalid_request"));
    assert_eq!(sys.app.store.memory_entries(), before, "no request was parked");
    // At their caps, the same parameters are parked.
    let at_caps = [
        ("state", "s".repeat(1024)),
        ("nonce", "n".repeat(256)),
        ("login_hint", "h".repeat(256)),
        ("ui_locales", format!("vi {}", "x".repeat(125))),
    ];
    let res = http.get(authorize_url(&sys, &at_caps)).send().await.unwrap();
    assert!(location(&res).path().starts_with("/login"), "{:?}", res.headers().get(LOCATION));
    assert_eq!(sys.app.store.memory_entries(), before.map(|n| n + 1));
}

/// A store of 1 000 records of which 5 % may be anonymous, so that 50 parked requests fill the
/// anonymous share.
fn small_store() -> Options {
    Options {
        extra_config: "\n[sessions.memory]\nmax_entries = 1000\nanonymous_percent = 5\n".into(),
        ..Options::default()
    }
}

/// The portal's refresh token (if it got one) still works.
async fn refreshes(sys: &TestSystem, tokens: &Tokens) {
    if let Some(refresh) = &tokens.refresh_token {
        let (status, _, body) = token_request(
            sys,
            Some((PORTAL, PORTAL_SECRET)),
            &[("grant_type", "refresh_token"), ("refresh_token", refresh)],
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
}

#[tokio::test]
async fn a_full_anonymous_share_refuses_new_logins_with_a_clear_answer_but_not_people_logged_in() {
    let sys = TestSystem::start_with(small_store()).await;
    // Someone logs in before the flood.
    let browser = Browser::new();
    let (rp, tokens) = portal_login(&sys, &browser, "hcm", HCM_USER).await;

    // The flood: anonymous authorization requests until the anonymous share is full.
    let http = client();
    let mut parked = Vec::new();
    let mut refused = 0;
    for n in 0..80 {
        let res = http.get(authorize_url(&sys, &[("state", format!("flood{n}"))])).send().await.unwrap();
        let to = location(&res);
        if to.path() == "/login" {
            parked.push(param(&to, "request").unwrap());
        } else {
            // Refused: temporarily_unavailable to the (trusted) redirect URI, with its state.
            assert!(to.as_str().starts_with(PORTAL_CB), "{to}");
            assert_eq!(param(&to, "error").as_deref(), Some("temporarily_unavailable"), "{to}");
            assert_eq!(param(&to, "state"), Some(format!("flood{n}")));
            refused += 1;
        }
    }
    assert!(parked.len() <= 50, "the anonymous share holds at most 50 records: {}", parked.len());
    assert!(refused >= 30, "{refused} refused");
    let (anonymous, _) = sys.app.store.memory_usage().unwrap();
    assert!(anonymous.entries <= 50, "{anonymous:?}");

    // Browser routes that would store an anonymous record show the bilingual busy page.
    let res = http.get(sys.url(&format!("/upstream/hcm/login?request={}", parked[0]))).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(res.headers().contains_key("retry-after"));
    let body = res.text().await.unwrap();
    assert!(body.contains("quá tải") && body.contains("busy"), "{body}");

    // The person who logged in is unaffected: a new code from the session, tokens, refresh.
    let docs = sys.rp(DOCS, Some(DOCS_SECRET), DOCS_CB).await;
    let more = sso_login(&browser, &docs, DOCS_CB).await;
    assert!(more.raw["sub"].is_string());
    let (status, _, _) = userinfo(&sys, &tokens.access_token).await;
    assert_eq!(status, StatusCode::OK);
    refreshes(&sys, &tokens).await;
    drop(rp);

    // Anonymous records expire with the login attempt lifetime; then logins start again.
    sys.clock.advance(11 * 60);
    let res = http.get(authorize_url(&sys, &[])).send().await.unwrap();
    assert_eq!(location(&res).path(), "/login", "{:?}", res.headers().get(LOCATION));
    let (_, fresh) = portal_login(&sys, &Browser::new(), "hcm", HCM_USER).await;
    assert!(fresh.raw["sub"].is_string());
}

#[tokio::test]
async fn refused_writes_are_counted_by_class() {
    let gw = start_bare_gateway(
        &format!(
            "[sessions.memory]\nmax_entries = 1000\nanonymous_percent = 1\n[[clients]]\nclient_id = \"{PORTAL}\"\nclient_secret = \"{PORTAL_SECRET}\"\nredirect_uris = [\"{PORTAL_CB}\"]\n"
        ),
        sso_gateway::clock::Clock::system(),
    )
    .await;
    let (public, management) = (gw.public.clone(), gw.management.clone());
    let http = client();
    let query = format!(
        "client_id={PORTAL}&redirect_uri={}&response_type=code&scope=openid&code_challenge={CHALLENGE}&code_challenge_method=S256",
        url::form_urlencoded::byte_serialize(PORTAL_CB.as_bytes()).collect::<String>()
    );
    let mut errors = Vec::new();
    for _ in 0..15 {
        let res = http.get(format!("{public}/authorize?{query}")).send().await.unwrap();
        errors.push(param(&location(&res), "error"));
    }
    assert_eq!(errors.iter().filter(|e| e.is_none()).count(), 10, "1 % of 1 000 records: {errors:?}");
    let metrics = reqwest::get(format!("{management}/metrics")).await.unwrap().text().await.unwrap();
    let line = metrics
        .lines()
        .find(|l| l.starts_with("sso_state_store_refused_total{class=\"anonymous\"}"))
        .unwrap_or_else(|| panic!("{metrics}"));
    let count: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(count >= 5.0, "{line}");
}

/// The gateway on the test Redis under a key prefix of its own, with `redis_settings` added
/// to its `[sessions.redis]` table.
fn on_redis(redis_settings: &str) -> Options {
    Options {
        extra_config: format!(
            "\n[sessions]\nstore = \"{}\"\n[sessions.redis]\nkey_prefix = \"{}\"\ntimeout = \"2s\"\n{redis_settings}\n",
            redis_url(),
            unique_prefix()
        ),
        ..Options::default()
    }
}

/// Redis is shared by every replica, so its anonymous budget is too: a flood of anonymous
/// authorization requests parks at most `anonymous_max_bytes` worth of records, then is
/// answered `temporarily_unavailable`, while the person who logged in keeps working.
#[tokio::test]
async fn on_redis_anonymous_records_stop_at_the_configured_budget_but_people_logged_in_do_not() {
    let sys = TestSystem::start_with(on_redis("anonymous_max_bytes = 65536")).await;
    let browser = Browser::new();
    let (rp, tokens) = portal_login(&sys, &browser, "hcm", HCM_USER).await;

    let http = client();
    let (mut parked, mut refused) = (0, 0);
    for n in 0..120 {
        let state = format!("{n:0>1000}");
        let res = http.get(authorize_url(&sys, &[("state", state.clone())])).send().await.unwrap();
        let to = location(&res);
        if to.path() == "/login" {
            parked += 1;
        } else {
            assert!(to.as_str().starts_with(PORTAL_CB), "{to}");
            assert_eq!(param(&to, "error").as_deref(), Some("temporarily_unavailable"), "{to}");
            assert_eq!(param(&to, "state"), Some(state));
            refused += 1;
        }
    }
    // Each parked request is counted at more than its 1 000-byte state: 64 KiB holds < 64.
    assert!(parked < 64, "the budget holds fewer than 64 such records: {parked} parked");
    assert!(parked >= 20, "the budget is used, not refused from the start: {parked} parked");
    assert_eq!(parked + refused, 120);

    // Sessions, codes and refresh families are not anonymous: the person is unaffected.
    let docs = sys.rp(DOCS, Some(DOCS_SECRET), DOCS_CB).await;
    let more = sso_login(&browser, &docs, DOCS_CB).await;
    assert!(more.raw["sub"].is_string());
    refreshes(&sys, &tokens).await;
    drop(rp);
}

/// `n` anonymous authorization requests with states of `state_bytes`, from `addresses`
/// addresses named by a trusted proxy (`X-Forwarded-For`) in turn: how many were parked, and
/// how many refused `temporarily_unavailable` per address.
async fn flood_from_many_addresses(
    sys: &TestSystem,
    addresses: usize,
    n: usize,
    state_bytes: usize,
) -> (usize, Vec<usize>) {
    let http = client();
    let mut parked = 0;
    let mut refused = vec![0; addresses];
    for i in 0..n {
        let from = format!("198.51.100.{}", i % addresses + 1);
        let state = format!("{i:0>state_bytes$}");
        let res = http
            .get(authorize_url(sys, &[("state", state.clone())]))
            .header("x-forwarded-for", from)
            .send()
            .await
            .unwrap();
        let to = location(&res);
        if to.path() == "/login" {
            parked += 1;
        } else {
            assert_eq!(param(&to, "error").as_deref(), Some("temporarily_unavailable"), "{to}");
            assert_eq!(param(&to, "state"), Some(state));
            refused[i % addresses] += 1;
        }
    }
    (parked, refused)
}

/// Many addresses flood until each is refused, so the anonymous budget is as full as they can
/// make it; then a person at another address (the test's own, 127.0.0.1: the trusted proxy
/// names no one else) still logs in end to end — authorize, upstream, code, token — while
/// the flooding addresses stay refused.
async fn a_fresh_address_logs_in_after_a_many_address_flood(sys: &TestSystem) {
    let (parked, refused) = flood_from_many_addresses(sys, 10, 700, 1000).await;
    assert!(parked >= 100, "the flood parked requests before it was refused: {parked}");
    assert!(refused.iter().all(|r| *r > 0), "every flooding address met the limit: {refused:?}");
    // Then small requests, to fill what room the large ones left.
    flood_from_many_addresses(sys, 10, 300, 1).await;

    let (_rp, tokens) = portal_login(sys, &Browser::new(), "hcm", HCM_USER).await;
    assert!(tokens.raw["sub"].is_string(), "{:?}", tokens.raw);
    let (status, _, _) = userinfo(sys, &tokens.access_token).await;
    assert_eq!(status, StatusCode::OK);

    // The flooding addresses are still refused: they used up their part of the budget.
    let (again, refused) = flood_from_many_addresses(sys, 10, 10, 1000).await;
    assert_eq!((again, refused.iter().sum::<usize>()), (0, 10), "{refused:?}");
}

const TRUST_LOOPBACK: &str = "\n[inbound]\ntrusted_proxies = [\"127.0.0.1/32\"]\n";

#[tokio::test]
async fn embedded_a_login_from_a_fresh_address_gets_through_a_many_address_flood() {
    let sys = TestSystem::start_with(Options {
        extra_config: format!(
            "{TRUST_LOOPBACK}[sessions.memory]\nmax_bytes = 1048576\nanonymous_percent = 50\n"
        ),
        ..Options::default()
    })
    .await;
    a_fresh_address_logs_in_after_a_many_address_flood(&sys).await;
}

#[tokio::test]
async fn on_redis_a_login_from_a_fresh_address_gets_through_a_many_address_flood() {
    let mut options = on_redis("anonymous_max_bytes = 524288");
    options.extra_config.push_str(TRUST_LOOPBACK);
    let sys = TestSystem::start_with(options).await;
    a_fresh_address_logs_in_after_a_many_address_flood(&sys).await;
}
