//! Unified accounts seen from a relying party: one `sub` per person across the former
//! provinces' systems, conflicts kept apart, proof-of-ownership linking, merged subs at
//! /userinfo, official units and pairwise subjects.

use crate::helpers::*;
use reqwest::StatusCode;

#[tokio::test]
async fn the_same_national_id_through_two_trusted_systems_gives_the_same_sub() {
    let sys = TestSystem::start().await;
    // Nguyễn Thị Lan: hcm "lan" and bd "lannt" carry the same number and birthdate.
    let (_, hcm) = portal_login(&sys, &Browser::new(), "hcm", "lan").await;
    let (_, bd) = portal_login(&sys, &Browser::new(), "bd", "lannt").await;
    assert_eq!(hcm.claims.subject(), bd.claims.subject(), "one person, one sub");
    let (status, _, info) = userinfo(&sys, &bd.access_token).await;
    assert_eq!(status, StatusCode::OK, "{info}");
    assert_eq!(info["sub"], hcm.claims.subject().as_str());
    let account = sys.app.accounts.find_by_sub(hcm.claims.subject().as_str()).await.unwrap().unwrap();
    let mut upstreams: Vec<String> =
        sys.app.accounts.links_of(&account.id).await.unwrap().into_iter().map(|l| l.upstream).collect();
    upstreams.sort();
    assert_eq!(upstreams, vec!["bd", "hcm"]);
}

#[tokio::test]
async fn a_conflicting_birthdate_keeps_two_accounts_and_records_a_conflict() {
    let sys = TestSystem::start().await;
    // Lê Thị Hòa: same number in hcm and bd, but different birthdates.
    let (_, hcm) = portal_login(&sys, &Browser::new(), "hcm", "hoa").await;
    let (_, bd) = portal_login(&sys, &Browser::new(), "bd", "hoalt").await;
    assert_ne!(hcm.claims.subject(), bd.claims.subject());
    let conflicts = sys.app.accounts.conflicts(false).await.unwrap();
    assert_eq!(conflicts.len(), 1);
    assert_eq!(conflicts[0].reason, "birthdate_mismatch");
}

#[tokio::test]
async fn an_untrusted_system_links_by_proof_and_its_old_sub_still_resolves() {
    let sys = TestSystem::start().await;
    let browser = Browser::new();
    // First through Ba Ria-Vung Tau, whose numbers are not trusted: a pending account.
    let (rp, pending) = portal_login(&sys, &browser, "brvt", "lannguyen").await;
    let (_, verified) = portal_login(&sys, &Browser::new(), "hcm", "lan").await;
    assert_ne!(
        pending.claims.subject(),
        verified.claims.subject(),
        "an untrusted number never links by itself"
    );
    // Then, in the same browser, through Ho Chi Minh City's system: proof of owning both,
    // which the person confirms.
    let req = rp.authorize(&[("prompt", "login"), ("idp_hint", "hcm")]);
    let (url, _, body) = browser.navigate(&req.url, PORTAL_CB).await.page();
    let (url, status, page) = browser.login_form(&url, &body, "lan", "demo123", PORTAL_CB).await.page();
    assert!(url.ends_with("/account/link/confirm") && status == StatusCode::OK, "{url} {status}: {page}");
    let account = sys.app.accounts.find_by_link("brvt", "1008801").await.unwrap().unwrap();
    assert_eq!(account.sub, pending.claims.subject().as_str(), "asking links nothing");
    let csrf = {
        let doc = scraper::Html::parse_document(&page);
        let sel = scraper::Selector::parse("input[name=csrf]").unwrap();
        doc.select(&sel).next().and_then(|i| i.value().attr("value")).unwrap().to_string()
    };
    let res = browser
        .http
        .post(sys.url("/account/link/confirm"))
        .form(&[("csrf", csrf.as_str()), ("decision", "link")])
        .send()
        .await
        .unwrap();
    let location = res.headers()[reqwest::header::LOCATION].to_str().unwrap().to_string();
    let cb = browser.navigate(&location, PORTAL_CB).await.callback();
    let after = rp.exchange(&req, &param(&cb, "code").unwrap()).await.unwrap();
    assert_eq!(after.claims.subject(), verified.claims.subject());
    // The RP's old token for the merged account still works, and says where it went.
    let (status, _, info) = userinfo(&sys, &pending.access_token).await;
    assert_eq!(status, StatusCode::OK, "{info}");
    assert_eq!(info["sub"], pending.claims.subject().as_str());
    assert_eq!(info["merged_into_sub"], verified.claims.subject().as_str());
    // From now on the Ba Ria-Vung Tau identity is the same account.
    let (_, again) = portal_login(&sys, &Browser::new(), "brvt", "lannguyen").await;
    assert_eq!(again.claims.subject(), verified.claims.subject());
}

#[tokio::test]
async fn officials_get_their_unit_in_the_new_city_structure() {
    let sys = TestSystem::start().await;
    let rp = sys.rp(PORTAL, Some(PORTAL_SECRET), PORTAL_CB).await;
    let req = rp.authorize(&[("scope", "official")]);
    let cb = Browser::new().login(&req.url, "hcm", "thu", PORTAL_CB).await.callback();
    let tokens = rp.exchange(&req, &param(&cb, "code").unwrap()).await.unwrap();
    let official = &tokens.raw["official"];
    // Former 26734 Phường Tân Định (Quận 1) became 26737 Phường Tân Định: never code equality.
    assert_eq!(official["org_unit"]["code"], "26737", "{official}");
    assert_eq!(official["org_unit"]["name"], "Phường Tân Định");
    assert_eq!(official["org_unit"]["status"], "mapped");
    assert_eq!(official["org_unit"]["former_code"], "26734");
    assert_eq!(tokens.raw["account_type"], "official");
}

#[tokio::test]
async fn pairwise_clients_get_their_own_stable_sub() {
    let sys = TestSystem::start().await;
    let browser = Browser::new();
    let (_, portal) = portal_login(&sys, &browser, "hcm", "lan").await;
    let rp = sys.rp(PAIRWISE, Some(PAIRWISE_SECRET), PAIRWISE_CB).await;
    let req = rp.authorize(&[]);
    let cb = browser.navigate(&req.url, PAIRWISE_CB).await.callback();
    let pairwise = rp.exchange(&req, &param(&cb, "code").unwrap()).await.unwrap();
    assert_ne!(pairwise.claims.subject(), portal.claims.subject(), "not correlatable with the public sub");
    let (status, _, info) = userinfo(&sys, &pairwise.access_token).await;
    assert_eq!(status, StatusCode::OK, "{info}");
    assert_eq!(info["sub"], pairwise.claims.subject().as_str());
    assert_eq!(info["name"], "Nguyễn Thị Lan");
    // Stable: the same person through another (trusted) system gets the same pairwise sub.
    let other = Browser::new();
    let req = rp.authorize(&[]);
    let cb = other.login(&req.url, "bd", "lannt", PAIRWISE_CB).await.callback();
    let again = rp.exchange(&req, &param(&cb, "code").unwrap()).await.unwrap();
    assert_eq!(again.claims.subject(), pairwise.claims.subject());
    let discovery: serde_json::Value =
        reqwest::get(sys.url("/.well-known/openid-configuration")).await.unwrap().json().await.unwrap();
    assert_eq!(discovery["subject_types_supported"], serde_json::json!(["public", "pairwise"]));
}

#[tokio::test]
async fn a_verified_session_left_open_does_not_pull_in_an_untrusted_identity() {
    let sys = TestSystem::start().await;
    let browser = Browser::new();
    let (rp, verified) = portal_login(&sys, &browser, "hcm", "lan").await;
    // Someone else at the same browser logs in through the untrusted system with that number.
    let req = rp.authorize(&[("prompt", "login"), ("idp_hint", "brvt")]);
    let (url, _, body) = browser.navigate(&req.url, PORTAL_CB).await.page();
    let cb = browser.login_form(&url, &body, "lannguyen", "demo123", PORTAL_CB).await.callback();
    let other = rp.exchange(&req, &param(&cb, "code").unwrap()).await.unwrap();
    assert_ne!(
        other.claims.subject(),
        verified.claims.subject(),
        "only a fresh login of the verified account proves"
    );
}
