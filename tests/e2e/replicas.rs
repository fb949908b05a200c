//! Several gateway replicas on one Redis: any replica serves any step.

use crate::helpers::*;
use reqwest::StatusCode;

#[tokio::test]
async fn a_login_started_on_one_replica_finishes_on_another() {
    let sys = TestSystem::start_with(Options::redis_replicas(2)).await;
    let browser = Browser::new();
    let rp = sys.rp(PORTAL, Some(PORTAL_SECRET), PORTAL_CB).await;
    let req = rp.authorize(&[("idp_hint", "bd")]);
    sys.route_to(0);
    // /authorize on A parks the request and starts the upstream attempt.
    let (url, status, body) = browser.navigate(&req.url, PORTAL_CB).await.page();
    assert_eq!(status, StatusCode::OK);
    // The upstream's callback reaches B, which finds the attempt and the parked request.
    sys.route_to(1);
    let cb = browser.login_form(&url, &body, BD_USER, "demo123", PORTAL_CB).await.callback();
    let tokens = rp.exchange(&req, &param(&cb, "code").unwrap()).await.unwrap();
    assert_eq!(tokens.raw["idp"], "bd");
}

#[tokio::test]
async fn an_sso_session_made_on_one_replica_is_honoured_by_another() {
    let sys = TestSystem::start_with(Options::redis_replicas(2)).await;
    let browser = Browser::new();
    sys.route_to(0);
    let (_, first) = portal_login(&sys, &browser, "hcm", HCM_USER).await;
    sys.route_to(1);
    let docs = sys.rp(DOCS, Some(DOCS_SECRET), DOCS_CB).await;
    let req = docs.authorize(&[("prompt", "none")]);
    let cb = browser.navigate(&req.url, DOCS_CB).await.callback();
    let second = docs.exchange(&req, &param(&cb, "code").unwrap()).await.unwrap();
    assert_eq!(first.claims.subject(), second.claims.subject());
}

#[tokio::test]
async fn a_replica_killed_mid_flow_does_not_lose_the_login() {
    let mut sys = TestSystem::start_with(Options::redis_replicas(2)).await;
    let browser = Browser::new();
    let rp = sys.rp(PORTAL, Some(PORTAL_SECRET), PORTAL_CB).await;
    // Killed after /authorize, before the upstream callback.
    let req = rp.authorize(&[("idp_hint", "hcm")]);
    sys.route_to(0);
    let (url, _, body) = browser.navigate(&req.url, PORTAL_CB).await.page();
    sys.replicas[0].kill();
    sys.route_to(1);
    let cb = browser.login_form(&url, &body, HCM_USER, "demo123", PORTAL_CB).await.callback();
    let code = param(&cb, "code").unwrap();
    // Killed after the code, before /token: another replica redeems it.
    rp.exchange(&req, &code).await.unwrap();
}

#[tokio::test]
async fn a_code_redeemed_concurrently_on_two_replicas_succeeds_once() {
    let sys = TestSystem::start_with(Options::redis_replicas(2)).await;
    let browser = Browser::new();
    let (rp, _) = portal_login(&sys, &browser, "hcm", HCM_USER).await;
    for _round in 0..3 {
        let req = rp.authorize(&[("prompt", "none")]);
        let cb = browser.navigate(&req.url, PORTAL_CB).await.callback();
        let code = param(&cb, "code").unwrap();
        let mut tasks = Vec::new();
        for i in 0..16 {
            let url = sys.replicas[i % 2].url("/token");
            let form = vec![
                ("grant_type".to_string(), "authorization_code".to_string()),
                ("code".to_string(), code.clone()),
                ("redirect_uri".to_string(), PORTAL_CB.to_string()),
                ("code_verifier".to_string(), req.verifier.clone()),
            ];
            tasks.push(tokio::spawn(async move {
                let res = reqwest::Client::new()
                    .post(url)
                    .basic_auth(PORTAL, Some(PORTAL_SECRET))
                    .form(&form)
                    .send()
                    .await
                    .unwrap();
                res.status()
            }));
        }
        let mut ok = 0;
        for t in tasks {
            let status = t.await.unwrap();
            if status == StatusCode::OK {
                ok += 1;
            } else {
                assert_eq!(status, StatusCode::BAD_REQUEST);
            }
        }
        assert_eq!(ok, 1, "exactly one redemption wins");
    }
}

#[tokio::test]
async fn a_refresh_token_used_concurrently_on_two_replicas_rotates_once() {
    let sys = TestSystem::start_with(Options::redis_replicas(2)).await;
    let (_, tokens) = portal_login(&sys, &Browser::new(), "hcm", HCM_USER).await;
    let rt = tokens.refresh_token.unwrap();
    let mut tasks = Vec::new();
    for i in 0..16 {
        let url = sys.replicas[i % 2].url("/token");
        let form = vec![
            ("grant_type".to_string(), "refresh_token".to_string()),
            ("refresh_token".to_string(), rt.clone()),
        ];
        tasks.push(tokio::spawn(async move {
            reqwest::Client::new()
                .post(url)
                .basic_auth(PORTAL, Some(PORTAL_SECRET))
                .form(&form)
                .send()
                .await
                .unwrap()
                .status()
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    // At most one rotation succeeds. Concurrent presentation of one refresh token is a replay
    // (RFC 9700 §4.14.2): the losers may revoke the family, so zero successes is also correct.
    let ok = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    assert!(ok <= 1, "{statuses:?}");
    assert!(statuses.iter().all(|s| *s == StatusCode::OK || *s == StatusCode::BAD_REQUEST), "{statuses:?}");
}

#[tokio::test]
async fn a_person_lists_and_ends_their_own_sessions() {
    let sys = TestSystem::start_with(Options::redis_replicas(2)).await;
    let laptop = Browser::new();
    let phone = Browser::new();
    portal_login(&sys, &laptop, "hcm", HCM_USER).await;
    portal_login(&sys, &phone, "hcm", HCM_USER).await;
    let (_, status, page) = laptop.navigate(&sys.url("/sessions"), PORTAL_CB).await.page();
    assert_eq!(status, StatusCode::OK);
    let doc = scraper::Html::parse_document(&page);
    let forms: Vec<_> = doc.select(&scraper::Selector::parse("form.end-session").unwrap()).collect();
    assert_eq!(forms.len(), 2, "both sessions listed: {page}");
    // End the phone's session from the laptop.
    let other = forms
        .iter()
        .find(|f| f.select(&scraper::Selector::parse("input[name=current]").unwrap()).next().is_none())
        .unwrap();
    let fields: Vec<(String, String)> = other
        .select(&scraper::Selector::parse("input").unwrap())
        .filter_map(|i| {
            Some((i.value().attr("name")?.to_string(), i.value().attr("value").unwrap_or("").to_string()))
        })
        .collect();
    let res = laptop.http.post(sys.url("/sessions/end")).form(&fields).send().await.unwrap();
    assert!(res.status().is_redirection() || res.status().is_success());
    let rp = sys.rp(PORTAL, Some(PORTAL_SECRET), PORTAL_CB).await;
    let cb = phone.navigate(&rp.authorize(&[("prompt", "none")]).url, PORTAL_CB).await.callback();
    assert_eq!(param(&cb, "error").as_deref(), Some("login_required"), "phone session ended");
    let cb = laptop.navigate(&rp.authorize(&[("prompt", "none")]).url, PORTAL_CB).await.callback();
    assert!(param(&cb, "code").is_some(), "laptop session kept");
    // A forged form (wrong CSRF token) changes nothing.
    let res = phone
        .http
        .post(sys.url("/sessions/end"))
        .form(&[("sid", "x"), ("csrf", "forged")])
        .send()
        .await
        .unwrap();
    assert!(res.status().is_client_error());
}

#[tokio::test]
async fn an_admin_revokes_every_session_of_an_account() {
    let sys = TestSystem::start_with(Options::redis_replicas(2)).await;
    let a = Browser::new();
    let b = Browser::new();
    let (_, tokens) = portal_login(&sys, &a, "bd", BD_USER).await;
    portal_login(&sys, &b, "bd", BD_USER).await;
    let sub = tokens.claims.subject().as_str().to_string();
    let ended = sso_gateway::logout::revoke_account_sessions(&sys.app, &sub, "test admin").await.unwrap();
    assert_eq!(ended, 2);
    let rp = sys.rp(PORTAL, Some(PORTAL_SECRET), PORTAL_CB).await;
    for browser in [&a, &b] {
        let cb = browser.navigate(&rp.authorize(&[("prompt", "none")]).url, PORTAL_CB).await.callback();
        assert_eq!(param(&cb, "error").as_deref(), Some("login_required"));
    }
    // Their refresh tokens died with the sessions.
    let (_, _, body) = token_request(
        &sys,
        Some((PORTAL, PORTAL_SECRET)),
        &[("grant_type", "refresh_token"), ("refresh_token", tokens.refresh_token.as_deref().unwrap())],
    )
    .await;
    assert_eq!(body["error"], "invalid_grant");
}
