//! The former Ba Ria-Vung Tau system as an Apereo CAS server: login, hostile answers, ticket
//! reuse, renew, the CAS 2.0 fallback and single logout.

use std::time::Duration;

use crate::helpers::*;
use reqwest::StatusCode;

const CAS: &str = "brvt";

/// Starts a login at the CAS upstream and submits its form; returns the landing.
async fn cas_login(
    sys: &TestSystem,
    browser: &Browser,
    rp: &Rp,
    extra: &[(&str, &str)],
) -> (AuthRequest, Landing) {
    let mut params = vec![("idp_hint", CAS)];
    params.extend_from_slice(extra);
    let req = rp.authorize(&params);
    let (url, status, body) = browser.navigate(&req.url, PORTAL_CB).await.page();
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(url.starts_with(&format!("{}/login?service=", sys.idps[CAS].issuer)), "{url}");
    let landing = browser.login_form(&url, &body, BRVT_USER, "demo123", PORTAL_CB).await;
    (req, landing)
}

/// Logs in, but stops at the gateway callback (the URL carrying the ticket).
async fn ticket_callback(sys: &TestSystem, browser: &Browser, rp: &Rp) -> String {
    let stop = sys.url("/upstream/brvt/callback");
    let req = rp.authorize(&[("idp_hint", CAS)]);
    let (url, _, body) = browser.navigate(&req.url, &stop).await.page();
    browser.login_form(&url, &body, BRVT_USER, "demo123", &stop).await.callback().to_string()
}

#[tokio::test]
async fn a_cas_login_uses_the_exact_service_url_and_maps_attributes() {
    let sys = TestSystem::start().await;
    let browser = Browser::new();
    let rp = sys.rp(PORTAL, Some(PORTAL_SECRET), PORTAL_CB).await;
    let callback = ticket_callback(&sys, &browser, &rp).await;
    let cb = url::Url::parse(&callback).unwrap();
    assert!(param(&cb, "attempt").is_some(), "the attempt travels in the service URL: {cb}");
    assert!(param(&cb, "ticket").unwrap().starts_with("ST-"));
    let landing = browser.navigate(&callback, PORTAL_CB).await;
    assert!(matches!(landing, Landing::Callback(_)), "{landing:?}");
    let (_, tokens) = portal_login(&sys, &Browser::new(), CAS, BRVT_USER).await;
    assert_eq!(tokens.raw["idp"], CAS);
    assert_eq!(tokens.raw["name"], "Ngô Thanh Hải");
    // The session's upstream handle is the service ticket (for single logout).
    let sid = tokens.raw["sid"].as_str().unwrap();
    let session = sys.app.sessions.by_sid(sid).await.unwrap().unwrap();
    assert!(session.upstream_sid.as_deref().is_some_and(|t| t.starts_with("ST-")), "{session:?}");
    assert_eq!(session.upstream_subject, "1004721", "subject from the uid attribute, not the login name");
}

#[tokio::test]
async fn a_used_ticket_is_refused_on_replay_and_in_another_attempt() {
    let sys = TestSystem::start().await;
    let browser = Browser::new();
    let rp = sys.rp(PORTAL, Some(PORTAL_SECRET), PORTAL_CB).await;
    let callback = ticket_callback(&sys, &browser, &rp).await;
    assert!(matches!(browser.navigate(&callback, PORTAL_CB).await, Landing::Callback(_)));
    // The same callback again: the attempt is gone.
    let (_, status, page) = browser.navigate(&callback, PORTAL_CB).await.page();
    assert_eq!(status, StatusCode::BAD_REQUEST, "{page}");
    // The ticket under a fresh attempt of the same browser: refused by the gateway itself.
    let ticket = param(&url::Url::parse(&callback).unwrap(), "ticket").unwrap();
    let stop = sys.url("/upstream/brvt/callback");
    let req = rp.authorize(&[("idp_hint", CAS), ("prompt", "login")]);
    let fresh = browser.navigate(&req.url, &stop).await;
    let (url, _, _) = fresh.page();
    let service = param(&url::Url::parse(&url).unwrap(), "service").unwrap();
    let mut forged = url::Url::parse(&service).unwrap();
    forged.query_pairs_mut().append_pair("ticket", &ticket);
    let (_, status, page) = browser.navigate(forged.as_str(), PORTAL_CB).await.page();
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{page}");
    assert!(page.contains("Đăng nhập không được xác nhận") && page.contains("could not be confirmed"));
}

#[tokio::test]
async fn a_ticket_for_another_service_is_refused_by_the_server() {
    let sys = TestSystem::start().await;
    let rp = sys.rp(PORTAL, Some(PORTAL_SECRET), PORTAL_CB).await;
    // Victim and attacker each start an attempt; the attacker's ticket is pushed into the
    // victim's callback (login CSRF). The service URLs differ, so CAS says INVALID_SERVICE.
    let attacker = Browser::new();
    let attacker_cb = ticket_callback(&sys, &attacker, &rp).await;
    let ticket = param(&url::Url::parse(&attacker_cb).unwrap(), "ticket").unwrap();
    let victim = Browser::new();
    let stop = sys.url("/upstream/brvt/callback");
    let req = rp.authorize(&[("idp_hint", CAS)]);
    let (url, _, _) = victim.navigate(&req.url, &stop).await.page();
    let service = param(&url::Url::parse(&url).unwrap(), "service").unwrap();
    let mut forged = url::Url::parse(&service).unwrap();
    forged.query_pairs_mut().append_pair("ticket", &ticket);
    let (_, status, _) = victim.navigate(forged.as_str(), PORTAL_CB).await.page();
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn hostile_validation_answers_give_a_clear_page() {
    for fault in ["malformed", "huge", "entities"] {
        let sys = TestSystem::start().await;
        match fault {
            "malformed" => sys.set_fault(CAS, |f| &f.cas_malformed_xml),
            "huge" => sys.set_fault(CAS, |f| &f.cas_huge_body),
            _ => sys.set_fault(CAS, |f| &f.cas_entity_expansion),
        }
        let rp = sys.rp(PORTAL, Some(PORTAL_SECRET), PORTAL_CB).await;
        let (_, landing) = cas_login(&sys, &Browser::new(), &rp, &[]).await;
        let (_, status, page) = landing.page();
        assert_eq!(status, StatusCode::BAD_GATEWAY, "{fault}: {page}");
        assert!(page.contains("Hệ thống đăng nhập cũ đang gặp sự cố"), "{fault}: {page}");
        assert!(page.contains("The former login system is not working"));
        assert!(!page.contains("DOCTYPE") && !page.contains("cas:"), "no upstream detail leaks");
    }
}

#[tokio::test]
async fn a_cas_2_server_is_used_through_service_validate() {
    let sys = TestSystem::start().await;
    sys.set_fault(CAS, |f| &f.cas2_only);
    let (_, tokens) = portal_login(&sys, &Browser::new(), CAS, BRVT_USER).await;
    assert_eq!(tokens.raw["idp"], CAS);
}

#[tokio::test]
async fn prompt_login_sends_renew_and_the_cas_server_asks_again() {
    let sys = TestSystem::start().await;
    let browser = Browser::new();
    let rp = sys.rp(PORTAL, Some(PORTAL_SECRET), PORTAL_CB).await;
    let (req, landing) = cas_login(&sys, &browser, &rp, &[]).await;
    let first = rp.exchange(&req, &param(&landing.callback(), "code").unwrap()).await.unwrap();
    sys.clock.advance(5);
    // The CAS server has a single sign-on session now; prompt=login must not reuse it.
    let req = rp.authorize(&[("idp_hint", CAS), ("prompt", "login")]);
    let (url, status, body) = browser.navigate(&req.url, PORTAL_CB).await.page();
    assert_eq!(status, StatusCode::OK);
    assert!(url.contains("renew=true"), "{url}");
    assert!(body.contains("name=\"password\""), "the CAS server shows its form again");
    let cb = browser.login_form(&url, &body, BRVT_USER, "demo123", PORTAL_CB).await.callback();
    let again = rp.exchange(&req, &param(&cb, "code").unwrap()).await.unwrap();
    assert!(again.claims.auth_time().unwrap() > first.claims.auth_time().unwrap());
    assert_eq!(sys.idps[CAS].cas_tickets_issued().len(), 2, "one ticket per login");
}

#[tokio::test]
async fn cas_single_logout_ends_the_gateway_session_and_reaches_the_rps() {
    let receiver = Receiver::start(Duration::ZERO).await;
    let options = Options {
        extra_config: format!(
            "[[clients]]\nclient_id = \"slo-app\"\nclient_secret = \"slo-app-secret-0123456789\"\nredirect_uris = [\"http://127.0.0.1:9/slo/cb\"]\nbackchannel_logout_uri = \"{}\"\n",
            receiver.url
        ),
        ..Options::default()
    };
    let sys = TestSystem::start_with(options).await;
    let browser = Browser::new();
    let rp = sys.rp("slo-app", Some("slo-app-secret-0123456789"), "http://127.0.0.1:9/slo/cb").await;
    let req = rp.authorize(&[("idp_hint", CAS)]);
    let cb = browser.login(&req.url, CAS, BRVT_USER, "http://127.0.0.1:9/slo/cb").await.callback();
    let tokens = rp.exchange(&req, &param(&cb, "code").unwrap()).await.unwrap();
    let sid = tokens.raw["sid"].as_str().unwrap().to_string();
    assert!(sys.app.sessions.is_alive(&sid).await.unwrap());
    // The person logs out at the CAS server, which notifies every service it gave a ticket.
    let logout = format!("{}/logout", sys.idps[CAS].issuer);
    let (_, status, _) = browser.navigate(&logout, "http://127.0.0.1:9/never").await.page();
    assert_eq!(status, StatusCode::BAD_REQUEST, "the simulated server's 'logged out' page");
    assert!(!sys.app.sessions.is_alive(&sid).await.unwrap(), "the gateway session ended");
    let token = receiver.wait_for_token(Duration::from_secs(5)).await.expect("back-channel logout to the RP");
    let claims = verify_with_jwks(&sys, &token, "slo-app").await;
    assert_eq!(claims["sid"], sid.as_str());
    assert_eq!(sys.idps[CAS].logouts_received(), 1);
}

#[tokio::test]
async fn hostile_logout_requests_are_refused() {
    let sys = TestSystem::start().await;
    let post = |doc: String| {
        let url = sys.url("/upstream/brvt/callback?attempt=x");
        async move {
            reqwest::Client::new().post(url).form(&[("logoutRequest", doc)]).send().await.unwrap().status()
        }
    };
    let dtd = r#"<!DOCTYPE x [<!ENTITY a "ST-1">]><samlp:LogoutRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol"><samlp:SessionIndex>&a;</samlp:SessionIndex></samlp:LogoutRequest>"#;
    assert_eq!(post(dtd.into()).await, StatusCode::BAD_REQUEST);
    assert_eq!(post("<not-xml".into()).await, StatusCode::BAD_REQUEST);
    // A well-formed request for an unknown ticket ends nothing and is acknowledged.
    let ok = r#"<samlp:LogoutRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol"><samlp:SessionIndex>ST-unknown</samlp:SessionIndex></samlp:LogoutRequest>"#;
    assert_eq!(post(ok.into()).await, StatusCode::OK);
    // Only a CAS upstream accepts them.
    let res = reqwest::Client::new()
        .post(sys.url("/upstream/hcm/callback"))
        .form(&[("logoutRequest", ok)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
}

/// Logs in through the CAS upstream; returns the RP, the gateway session id and the service
/// ticket the session was made from (the SessionIndex of its single-logout request).
async fn cas_session(sys: &TestSystem, browser: &Browser) -> (Rp, String, String) {
    let rp = sys.rp(PORTAL, Some(PORTAL_SECRET), PORTAL_CB).await;
    let req = rp.authorize(&[("idp_hint", CAS)]);
    let cb = browser.login(&req.url, CAS, BRVT_USER, PORTAL_CB).await.callback();
    let tokens = rp.exchange(&req, &param(&cb, "code").unwrap()).await.unwrap();
    let sid = tokens.raw["sid"].as_str().unwrap().to_string();
    let session = sys.app.sessions.by_sid(&sid).await.unwrap().unwrap();
    let ticket = session.upstream_sid.clone().unwrap();
    (rp, sid, ticket)
}

/// POSTs a single-logout request for `ticket`, with optional `X-Forwarded-For`.
async fn post_logout_request(sys: &TestSystem, ticket: &str, forwarded_for: Option<&str>) -> StatusCode {
    let doc = format!(
        r#"<samlp:LogoutRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="LR-1" Version="2.0" IssueInstant="2026-01-01T00:00:00Z"><saml:NameID>hai.nt</saml:NameID><samlp:SessionIndex>{ticket}</samlp:SessionIndex></samlp:LogoutRequest>"#
    );
    let mut post =
        reqwest::Client::new().post(sys.url("/upstream/brvt/callback")).form(&[("logoutRequest", doc)]);
    if let Some(xff) = forwarded_for {
        post = post.header("x-forwarded-for", xff);
    }
    post.send().await.unwrap().status()
}

/// The session is alive and usable: prompt=none at the RP gives a code.
async fn session_still_works(sys: &TestSystem, browser: &Browser, rp: &Rp, sid: &str) {
    assert!(sys.app.sessions.is_alive(sid).await.unwrap(), "the session survives");
    let req = rp.authorize(&[("prompt", "none")]);
    let cb = browser.navigate(&req.url, PORTAL_CB).await.callback();
    assert!(param(&cb, "code").is_some(), "prompt=none still gives a code: {cb}");
}

#[tokio::test]
async fn a_logout_request_from_outside_logout_from_is_refused_and_the_session_survives() {
    let sys = TestSystem::start_with(Options {
        cas_config: "logout_from = [\"192.0.2.0/24\", \"2001:db8::/32\"]".into(),
        ..Options::default()
    })
    .await;
    let browser = Browser::new();
    let (rp, sid, ticket) = cas_session(&sys, &browser).await;
    // The test client posts from 127.0.0.1, which is not among the CAS server's networks.
    assert_eq!(post_logout_request(&sys, &ticket, None).await, StatusCode::FORBIDDEN);
    session_still_works(&sys, &browser, &rp, &sid).await;
}

#[tokio::test]
async fn by_default_only_the_cas_servers_own_addresses_may_end_sessions() {
    // Behind a trusted proxy (127.0.0.1), the client is the address the proxy reports.
    let sys = TestSystem::start_with(Options {
        extra_config: "[inbound]\ntrusted_proxies = [\"127.0.0.1/32\"]\n".into(),
        ..Options::default()
    })
    .await;
    let browser = Browser::new();
    let (rp, sid, ticket) = cas_session(&sys, &browser).await;
    // Anyone on the internet who learned a ticket: refused.
    assert_eq!(post_logout_request(&sys, &ticket, Some("203.0.113.7")).await, StatusCode::FORBIDDEN);
    // A spoofed hop to the left of the proxy's own entry changes nothing.
    assert_eq!(
        post_logout_request(&sys, &ticket, Some("127.0.0.1, 203.0.113.7")).await,
        StatusCode::FORBIDDEN
    );
    session_still_works(&sys, &browser, &rp, &sid).await;
    // The CAS server (its URL's host is 127.0.0.1), through the proxy: accepted.
    assert_eq!(post_logout_request(&sys, &ticket, Some("127.0.0.1")).await, StatusCode::OK);
    assert!(!sys.app.sessions.is_alive(&sid).await.unwrap(), "the session ended");
}

/// The gateway's replay marker of a service ticket: made only once the CAS server vouched for
/// the ticket (a made-up ticket stores nothing), and kept as long as a login attempt lives,
/// not a day.
#[tokio::test]
async fn a_ticket_is_remembered_only_once_validated_and_only_as_long_as_an_attempt() {
    use sso_gateway::state::hashed_key;
    let sys = TestSystem::start().await;
    let rp = sys.rp(PORTAL, Some(PORTAL_SECRET), PORTAL_CB).await;
    let marker = |ticket: &str| hashed_key("cas-ticket:brvt", ticket);

    // A made-up ticket in a real attempt: the server refuses it, nothing is remembered.
    let browser = Browser::new();
    let stop = sys.url("/upstream/brvt/callback");
    let req = rp.authorize(&[("idp_hint", CAS)]);
    let (url, _, _) = browser.navigate(&req.url, &stop).await.page();
    let service = param(&url::Url::parse(&url).unwrap(), "service").unwrap();
    let mut forged = url::Url::parse(&service).unwrap();
    forged.query_pairs_mut().append_pair("ticket", "ST-made-up-by-an-attacker");
    let (_, status, _) = browser.navigate(forged.as_str(), PORTAL_CB).await.page();
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(sys.app.store.get(&marker("ST-made-up-by-an-attacker")).await.unwrap(), None);

    // A real login: its ticket is remembered for the attempt lifetime (10 minutes here).
    let browser = Browser::new();
    let callback = ticket_callback(&sys, &browser, &rp).await;
    let ticket = param(&url::Url::parse(&callback).unwrap(), "ticket").unwrap();
    assert!(matches!(browser.navigate(&callback, PORTAL_CB).await, Landing::Callback(_)));
    assert!(sys.app.store.get(&marker(&ticket)).await.unwrap().is_some());
    sys.clock.advance(10 * 60 + 1);
    assert_eq!(sys.app.store.get(&marker(&ticket)).await.unwrap(), None, "gone with the attempt lifetime");
}
