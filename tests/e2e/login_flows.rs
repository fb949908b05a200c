use crate::helpers::*;
use reqwest::StatusCode;

async fn login_through(upstream: &str, user: &str, expected_name: &str, expected_birthdate: &str) {
    let sys = TestSystem::start().await;
    let browser = Browser::new();
    let (_rp, tokens) = portal_login(&sys, &browser, upstream, user).await;
    let claims = &tokens.claims;
    let extra = &tokens.raw;
    assert_eq!(extra["idp"], upstream);
    assert!(extra["sid"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(claims.auth_time().is_some());
    assert_eq!(claims.auth_method_refs().map(|a| a.len()), Some(1));
    let (status, _, info) = userinfo(&sys, &tokens.access_token).await;
    assert_eq!(status, StatusCode::OK, "{info}");
    assert_eq!(info["sub"], claims.subject().as_str());
    assert_eq!(info["name"], expected_name);
    assert_eq!(info["birthdate"], expected_birthdate, "legacy date formats are normalised");
    assert!(tokens.refresh_token.is_some());
}

#[tokio::test]
async fn login_through_ho_chi_minh_city_system_gives_verified_tokens() {
    login_through("hcm", HCM_USER, "Nguyễn Thị Lan", "1990-03-14").await;
}

#[tokio::test]
async fn login_through_binh_duong_system_maps_its_claim_names() {
    login_through("bd", BD_USER, "Nguyễn Thị Lan", "1990-03-14").await;
}

#[tokio::test]
async fn login_through_ba_ria_vung_tau_system_maps_its_claim_names() {
    login_through("brvt", BRVT_USER, "Ngô Thanh Hải", &brvt_hai_birthdate()).await;
}

fn brvt_hai_birthdate() -> String {
    let text = include_str!("../../config/legacy/brvt.toml");
    let config = legacy_idp::LegacyIdpConfig::from_toml_str(text).unwrap();
    let user = config.users.iter().find(|u| u.username == BRVT_USER).unwrap();
    let dob = user.claims["dob"].as_str().unwrap();
    format!("{}-{}-{}", &dob[0..4], &dob[4..6], &dob[6..8])
}

#[tokio::test]
async fn a_second_rp_gets_a_code_without_any_login_prompt() {
    let sys = TestSystem::start().await;
    let browser = Browser::new();
    let (_portal, first) = portal_login(&sys, &browser, "hcm", HCM_USER).await;
    let docs = sys.rp(DOCS, Some(DOCS_SECRET), DOCS_CB).await;
    let req = docs.authorize(&[]);
    // No chooser, no upstream: /authorize redirects straight back with a code.
    let res = browser.http.get(&req.url).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let location = res.headers()["location"].to_str().unwrap().to_string();
    assert!(location.starts_with(DOCS_CB), "{location}");
    let cb = url::Url::parse(&location).unwrap();
    assert_eq!(param(&cb, "iss").as_deref(), Some(sys.gateway.as_str()), "RFC 9207 iss");
    let second = docs.exchange(&req, &param(&cb, "code").unwrap()).await.unwrap();
    assert_eq!(first.claims.subject(), second.claims.subject(), "one account, one sub");
    let sid = |t: &Tokens| t.raw["sid"].clone();
    assert_eq!(sid(&first), sid(&second), "same SSO session");
}

#[tokio::test]
async fn the_same_upstream_identity_keeps_its_sub_across_logins() {
    let sys = TestSystem::start().await;
    let (_, a) = portal_login(&sys, &Browser::new(), "bd", BD_USER).await;
    let (_, b) = portal_login(&sys, &Browser::new(), "bd", BD_USER).await;
    assert_eq!(a.claims.subject(), b.claims.subject());
    let (_, c) = portal_login(&sys, &Browser::new(), "hcm", "minh").await;
    assert_ne!(a.claims.subject(), c.claims.subject(), "different people, different subs");
}

#[tokio::test]
async fn prompt_none_without_a_session_returns_login_required() {
    let sys = TestSystem::start().await;
    let rp = sys.rp(PORTAL, Some(PORTAL_SECRET), PORTAL_CB).await;
    let req = rp.authorize(&[("prompt", "none")]);
    let cb = Browser::new().navigate(&req.url, PORTAL_CB).await.callback();
    assert_eq!(param(&cb, "error").as_deref(), Some("login_required"));
    assert_eq!(param(&cb, "state").as_deref(), Some(req.state.as_str()));
}

#[tokio::test]
async fn prompt_none_with_a_session_returns_a_code() {
    let sys = TestSystem::start().await;
    let browser = Browser::new();
    let (rp, _) = portal_login(&sys, &browser, "hcm", HCM_USER).await;
    let req = rp.authorize(&[("prompt", "none")]);
    let cb = browser.navigate(&req.url, PORTAL_CB).await.callback();
    let code = param(&cb, "code").expect("code");
    rp.exchange(&req, &code).await.unwrap();
}

#[tokio::test]
async fn prompt_login_and_exceeded_max_age_force_a_new_upstream_login() {
    let sys = TestSystem::start().await;
    let browser = Browser::new();
    let (rp, first) = portal_login(&sys, &browser, "hcm", HCM_USER).await;
    let within = rp.authorize(&[("max_age", "3600")]);
    assert!(matches!(browser.navigate(&within.url, PORTAL_CB).await, Landing::Callback(_)));
    sys.clock.advance(120);
    for extra in [[("prompt", "login")], [("max_age", "60")]] {
        let req = rp.authorize(&extra);
        let (url, status, _) = browser.navigate(&req.url, PORTAL_CB).await.page();
        assert_eq!(status, StatusCode::OK);
        assert!(url.contains("/login?request="), "expected the chooser, got {url}");
    }
    // Logging in again gives a newer auth_time and a new session id.
    let req = rp.authorize(&[("prompt", "login"), ("idp_hint", "hcm")]);
    let (url, _, body) = browser.navigate(&req.url, PORTAL_CB).await.page();
    assert!(url.contains("prompt=login"), "prompt=login is passed upstream: {url}");
    let cb = browser.login_form(&url, &body, HCM_USER, "demo123", PORTAL_CB).await.callback();
    let again = rp.exchange(&req, &param(&cb, "code").unwrap()).await.unwrap();
    assert!(again.claims.auth_time().unwrap() > first.claims.auth_time().unwrap());
    let sid = |t: &Tokens| t.raw["sid"].clone();
    assert_ne!(sid(&first), sid(&again));
}

#[tokio::test]
async fn idp_hint_skips_the_chooser() {
    let sys = TestSystem::start().await;
    let rp = sys.rp(PORTAL, Some(PORTAL_SECRET), PORTAL_CB).await;
    let req = rp.authorize(&[("idp_hint", "brvt")]);
    let (url, status, _) = Browser::new().navigate(&req.url, PORTAL_CB).await.page();
    assert_eq!(status, StatusCode::OK);
    assert!(url.starts_with(&sys.idps["brvt"].issuer), "{url}");
}

#[tokio::test]
async fn chooser_speaks_vietnamese_by_default_and_english_on_request() {
    let sys = TestSystem::start().await;
    let rp = sys.rp(PORTAL, Some(PORTAL_SECRET), PORTAL_CB).await;
    let (_, _, vi) = Browser::new().navigate(&rp.authorize(&[]).url, PORTAL_CB).await.page();
    assert!(vi.contains("Chọn hệ thống chứa tài khoản của bạn"));
    assert!(vi.contains("Tài khoản tỉnh Bà Rịa - Vũng Tàu (cũ)"));
    let (_, _, en) =
        Browser::new().navigate(&rp.authorize(&[("ui_locales", "en-US vi")]).url, PORTAL_CB).await.page();
    assert!(en.contains("Choose the system that holds your account"));
    assert!(en.contains("Former Ba Ria-Vung Tau province account"));
}

#[tokio::test]
async fn public_client_logs_in_with_pkce_and_eddsa_tokens() {
    let sys = TestSystem::start().await;
    let rp = sys.rp(SPA, None, SPA_CB).await;
    let req = rp.authorize(&[]);
    let cb = Browser::new().login(&req.url, "hcm", HCM_USER, SPA_CB).await.callback();
    let tokens = rp.exchange(&req, &param(&cb, "code").unwrap()).await.unwrap();
    assert!(tokens.id_token.starts_with("eyJ"));
    let header: serde_json::Value = serde_json::from_slice(
        &base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            tokens.id_token.split('.').next().unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(header["alg"], "EdDSA");
}

#[tokio::test]
async fn form_post_response_mode_returns_an_auto_submitting_form() {
    let sys = TestSystem::start().await;
    let browser = Browser::new();
    let (rp, _) = portal_login(&sys, &browser, "hcm", HCM_USER).await;
    let req = rp.authorize(&[("response_mode", "form_post")]);
    let (_, status, body) = browser.navigate(&req.url, PORTAL_CB).await.page();
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("method=\"post\""));
    assert!(body.contains("name=\"code\""));
    assert!(body.contains(&format!("value=\"{}\"", req.state)));
}

#[tokio::test]
async fn access_token_is_an_rfc9068_jwt_verified_by_the_gateway() {
    let sys = TestSystem::start().await;
    let (_, tokens) = portal_login(&sys, &Browser::new(), "hcm", HCM_USER).await;
    let header: serde_json::Value = serde_json::from_slice(
        &base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            tokens.access_token.split('.').next().unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(header["typ"], "at+jwt");
    let claims: serde_json::Value =
        sys.app.keys.verify(&tokens.access_token, sys.app.issuer(), None, Some("at+jwt")).unwrap();
    assert_eq!(claims["client_id"], PORTAL);
    assert!(claims["scope"].as_str().unwrap().contains("openid"));
}
