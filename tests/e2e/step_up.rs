//! Assurance (`acr`) and step-up, and the national e-ID (VNeID) profile.

use crate::helpers::*;
use reqwest::StatusCode;

const PASSWORD: &str = "urn:sso-gateway:acr:password";
const LEVEL1: &str = "urn:sso-gateway:acr:vneid-level1";
const LEVEL2: &str = "urn:sso-gateway:acr:vneid-level2";
const CERTIFICATE: &str = "urn:sso-gateway:acr:certificate";

#[tokio::test]
async fn discovery_lists_the_assurance_levels() {
    let sys = TestSystem::start().await;
    let doc: serde_json::Value =
        reqwest::get(sys.url("/.well-known/openid-configuration")).await.unwrap().json().await.unwrap();
    assert_eq!(doc["acr_values_supported"], serde_json::json!([PASSWORD, LEVEL1, LEVEL2, CERTIFICATE]));
}

#[tokio::test]
async fn the_vneid_profile_maps_its_claims_and_tells_the_level() {
    let sys = TestSystem::start().await;
    let (_, tokens) = portal_login(&sys, &Browser::new(), "vneid", "lan.vneid").await;
    assert_eq!(tokens.raw["idp"], "vneid");
    assert_eq!(tokens.raw["acr"], LEVEL2);
    let (_, _, info) = userinfo(&sys, &tokens.access_token).await;
    assert_eq!(info["name"], "Nguyễn Thị Lan");
    assert_eq!(info["birthdate"], "1990-03-14", "yyyyMMdd becomes ISO");
    let (_, tokens) = portal_login(&sys, &Browser::new(), "vneid", "tuan.vneid").await;
    assert_eq!(tokens.raw["acr"], LEVEL1, "a level-1 account is not claimed to be level 2");
    let (_, tokens) = portal_login(&sys, &Browser::new(), "hcm", HCM_USER).await;
    assert_eq!(tokens.raw["acr"], PASSWORD);
}

fn chooser_entries(body: &str) -> Vec<String> {
    let doc = scraper::Html::parse_document(body);
    let sel = scraper::Selector::parse("a.button").unwrap();
    doc.select(&sel)
        .filter_map(|a| a.value().attr("href"))
        .filter_map(|h| h.strip_prefix("/upstream/"))
        .filter_map(|h| h.split('/').next())
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn a_password_session_is_stepped_up_to_the_national_e_id() {
    let sys = TestSystem::start().await;
    let browser = Browser::new();
    let (rp, first) = portal_login(&sys, &browser, "hcm", HCM_USER).await;
    assert_eq!(first.raw["acr"], PASSWORD);
    // A request the password session satisfies is answered at once …
    let req = rp.authorize(&[("acr_values", PASSWORD)]);
    assert!(matches!(browser.navigate(&req.url, PORTAL_CB).await, Landing::Callback(_)));
    // … one that needs level 2 is not, even with prompt=none.
    let req = rp.authorize(&[("acr_values", LEVEL2), ("prompt", "none")]);
    let cb = browser.navigate(&req.url, PORTAL_CB).await.callback();
    assert_eq!(param(&cb, "error").as_deref(), Some("login_required"));
    // Without prompt=none: the chooser offers only the systems that reach level 2, and a
    // hint towards one that cannot is ignored.
    let req = rp.authorize(&[("acr_values", LEVEL2), ("idp_hint", "hcm")]);
    let (url, status, body) = browser.navigate(&req.url, PORTAL_CB).await.page();
    assert_eq!(status, StatusCode::OK);
    assert!(url.contains("/login?request="), "{url}");
    assert_eq!(chooser_entries(&body), vec!["vneid"]);
    assert!(body.contains("yêu cầu mức xác thực cao hơn"), "{body}");
    let link = chooser_link(&body, "vneid");
    let target = url::Url::parse(&url).unwrap().join(&link).unwrap();
    let (url, _, body) = browser.navigate(target.as_str(), PORTAL_CB).await.page();
    let cb = browser.login_form(&url, &body, "lan.vneid", "demo123", PORTAL_CB).await.callback();
    let stepped = rp.exchange(&req, &param(&cb, "code").unwrap()).await.unwrap();
    assert_eq!(stepped.raw["acr"], LEVEL2, "the ID token tells the truth");
    assert_eq!(stepped.raw["idp"], "vneid");
    // Choosing a system that cannot reach the level directly is refused too.
    let req = rp.authorize(&[("acr_values", LEVEL2), ("prompt", "login")]);
    let (url, _, _) = browser.navigate(&req.url, PORTAL_CB).await.page();
    let request = param(&url::Url::parse(&url).unwrap(), "request").unwrap();
    let (_, status, page) =
        browser.navigate(&sys.url(&format!("/upstream/hcm/login?request={request}")), PORTAL_CB).await.page();
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(page.contains("Cần đăng nhập với mức xác thực cao hơn"), "{page}");
}

#[tokio::test]
async fn a_login_below_the_required_level_does_not_answer_the_request() {
    let sys = TestSystem::start().await;
    let browser = Browser::new();
    let rp = sys.rp(PORTAL, Some(PORTAL_SECRET), PORTAL_CB).await;
    let req = rp.authorize(&[("acr_values", LEVEL2)]);
    let (_, status, page) = browser.login(&req.url, "vneid", "tuan.vneid", PORTAL_CB).await.page();
    assert_eq!(status, StatusCode::FORBIDDEN, "a level-1 account cannot satisfy level 2: {page}");
    assert!(page.contains("A stronger login is required"));
    // The request is still alive: the page leads back to the chooser.
    assert!(page.contains("login?request="), "{page}");
}

#[tokio::test]
async fn a_client_minimum_applies_whatever_the_request_says() {
    let options = Options {
        extra_config: r#"
[[clients]]
client_id = "internal-docs"
client_secret = "internal-docs-secret-0123456789"
redirect_uris = ["http://127.0.0.1:9/internal/cb"]
min_acr = "urn:sso-gateway:acr:vneid-level1"
"#
        .into(),
        ..Options::default()
    };
    let sys = TestSystem::start_with(options).await;
    let browser = Browser::new();
    portal_login(&sys, &browser, "hcm", HCM_USER).await;
    let rp = sys
        .rp("internal-docs", Some("internal-docs-secret-0123456789"), "http://127.0.0.1:9/internal/cb")
        .await;
    let req = rp.authorize(&[("acr_values", PASSWORD)]);
    let (_, _, body) = browser.navigate(&req.url, "http://127.0.0.1:9/internal/cb").await.page();
    assert_eq!(chooser_entries(&body), vec!["vneid"], "the password session is not enough");
    let req = rp.authorize(&[]);
    let cb =
        browser.login(&req.url, "vneid", "tuan.vneid", "http://127.0.0.1:9/internal/cb").await.callback();
    let tokens = rp.exchange(&req, &param(&cb, "code").unwrap()).await.unwrap();
    assert_eq!(tokens.raw["acr"], LEVEL1);
}

#[tokio::test]
async fn unknown_acr_values_are_ignored() {
    let sys = TestSystem::start().await;
    let browser = Browser::new();
    let (rp, _) = portal_login(&sys, &browser, "hcm", HCM_USER).await;
    let req = rp.authorize(&[("acr_values", "urn:example:gold LoA9")]);
    assert!(matches!(browser.navigate(&req.url, PORTAL_CB).await, Landing::Callback(_)));
}

#[tokio::test]
async fn the_national_e_id_links_a_citizen_to_the_provincial_account_by_number() {
    let sys = TestSystem::start().await;
    // Lan has used the former Ho Chi Minh City system; now she arrives through VNeID.
    let (_, provincial) = portal_login(&sys, &Browser::new(), "hcm", HCM_USER).await;
    let (_, national) = portal_login(&sys, &Browser::new(), "vneid", "lan.vneid").await;
    assert_eq!(
        national.claims.subject(),
        provincial.claims.subject(),
        "one person, one account: linked by the verified national ID number"
    );
    assert_eq!(national.raw["acr"], LEVEL2);
    let (_, _, info) = userinfo(&sys, &national.access_token).await;
    assert_eq!(info["sub"], provincial.claims.subject().as_str());
    // Someone VNeID knows but no former system does gets an account of her own.
    let (_, other) = portal_login(&sys, &Browser::new(), "vneid", "thu.vneid").await;
    assert_ne!(other.claims.subject(), provincial.claims.subject());
}

#[tokio::test]
async fn a_provincial_login_after_the_national_e_id_finds_the_same_account() {
    let sys = TestSystem::start().await;
    let (_, national) = portal_login(&sys, &Browser::new(), "vneid", "lan.vneid").await;
    let (_, provincial) = portal_login(&sys, &Browser::new(), "bd", BD_USER).await;
    assert_eq!(national.claims.subject(), provincial.claims.subject());
}
