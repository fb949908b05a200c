use crate::helpers::*;
use reqwest::StatusCode;

#[tokio::test]
async fn a_reused_code_fails_and_revokes_what_the_first_redemption_issued() {
    let sys = TestSystem::start().await;
    let browser = Browser::new();
    let rp = sys.rp(PORTAL, Some(PORTAL_SECRET), PORTAL_CB).await;
    let req = rp.authorize(&[]);
    let cb = browser.login(&req.url, "hcm", HCM_USER, PORTAL_CB).await.callback();
    let code = param(&cb, "code").unwrap();
    let first = rp.exchange(&req, &code).await.unwrap();
    assert_eq!(userinfo(&sys, &first.access_token).await.0, StatusCode::OK);
    let again = rp.exchange(&req, &code).await;
    assert!(again.unwrap_err().contains("invalid_grant"));
    let (status, headers, _) = userinfo(&sys, &first.access_token).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(headers["www-authenticate"].to_str().unwrap().contains("invalid_token"));
    let (status, _, body) = token_request(
        &sys,
        Some((PORTAL, PORTAL_SECRET)),
        &[("grant_type", "refresh_token"), ("refresh_token", first.refresh_token.as_deref().unwrap())],
    )
    .await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")));
}

#[tokio::test]
async fn pkce_verifier_mismatch_is_invalid_grant() {
    let sys = TestSystem::start().await;
    let rp = sys.rp(PORTAL, Some(PORTAL_SECRET), PORTAL_CB).await;
    let mut req = rp.authorize(&[]);
    let cb = Browser::new().login(&req.url, "hcm", HCM_USER, PORTAL_CB).await.callback();
    req.verifier = "a".repeat(43);
    let err = rp.exchange(&req, &param(&cb, "code").unwrap()).await.unwrap_err();
    assert!(err.contains("invalid_grant"), "{err}");
}

#[tokio::test]
async fn refresh_tokens_rotate_and_a_replayed_one_revokes_the_family() {
    let sys = TestSystem::start().await;
    let (_, tokens) = portal_login(&sys, &Browser::new(), "bd", BD_USER).await;
    let first = tokens.refresh_token.unwrap();
    let auth = Some((PORTAL, PORTAL_SECRET));
    let (status, _, body) =
        token_request(&sys, auth, &[("grant_type", "refresh_token"), ("refresh_token", &first)]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let second = body["refresh_token"].as_str().unwrap().to_string();
    let second_access = body["access_token"].as_str().unwrap().to_string();
    assert_ne!(first, second, "rotated");
    assert!(body["id_token"].is_string());
    assert_eq!(userinfo(&sys, &second_access).await.0, StatusCode::OK);
    // Replay of the rotated token: fails, and the whole family dies.
    let (status, _, body) =
        token_request(&sys, auth, &[("grant_type", "refresh_token"), ("refresh_token", &first)]).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")));
    let (_, _, body) =
        token_request(&sys, auth, &[("grant_type", "refresh_token"), ("refresh_token", &second)]).await;
    assert_eq!(body["error"], "invalid_grant");
    assert_eq!(userinfo(&sys, &second_access).await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn refresh_may_narrow_but_not_widen_scope() {
    let sys = TestSystem::start().await;
    let (_, tokens) = portal_login(&sys, &Browser::new(), "hcm", HCM_USER).await;
    let rt = tokens.refresh_token.unwrap();
    let auth = Some((PORTAL, PORTAL_SECRET));
    let (_, _, body) = token_request(
        &sys,
        auth,
        &[("grant_type", "refresh_token"), ("refresh_token", &rt), ("scope", "openid email")],
    )
    .await;
    assert_eq!(body["error"], "invalid_scope");
}

#[tokio::test]
async fn a_refresh_token_belongs_to_its_client() {
    let sys = TestSystem::start().await;
    let (_, tokens) = portal_login(&sys, &Browser::new(), "hcm", HCM_USER).await;
    let rt = tokens.refresh_token.unwrap();
    let (_, _, body) = token_request(
        &sys,
        Some((DOCS, DOCS_SECRET)),
        &[("grant_type", "refresh_token"), ("refresh_token", &rt)],
    )
    .await;
    assert_eq!(body["error"], "invalid_grant");
}

#[tokio::test]
async fn client_authentication_failures_are_401_with_www_authenticate() {
    let sys = TestSystem::start().await;
    for auth in [Some((PORTAL, "wrong-secret")), Some(("nobody", "x")), None] {
        let (status, headers, body) = token_request(
            &sys,
            auth,
            &[("grant_type", "authorization_code"), ("code", "x"), ("redirect_uri", PORTAL_CB)],
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{auth:?}");
        assert_eq!(body["error"], "invalid_client");
        assert!(headers.contains_key("www-authenticate"));
        assert_eq!(headers["cache-control"], "no-store");
    }
    let (status, _, body) = token_request(
        &sys,
        None,
        &[("grant_type", "client_credentials"), ("client_id", PORTAL), ("client_secret", PORTAL_SECRET)],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("unauthorized_client")),
        "client_secret_post works; grant not allowed"
    );
}

#[tokio::test]
async fn unknown_grant_types_and_bad_codes_get_rfc6749_errors() {
    let sys = TestSystem::start().await;
    let auth = Some((PORTAL, PORTAL_SECRET));
    let (_, _, body) = token_request(&sys, auth, &[("grant_type", "password"), ("username", "a")]).await;
    assert_eq!(body["error"], "unsupported_grant_type");
    let (_, _, body) = token_request(&sys, auth, &[("code", "x")]).await;
    assert_eq!(body["error"], "invalid_request");
    let (_, _, body) = token_request(
        &sys,
        auth,
        &[("grant_type", "authorization_code"), ("code", "forged"), ("redirect_uri", PORTAL_CB)],
    )
    .await;
    assert_eq!(body["error"], "invalid_grant");
}

#[tokio::test]
async fn client_credentials_issues_an_access_token_without_id_token() {
    let sys = TestSystem::start().await;
    let (status, _, body) = token_request(
        &sys,
        Some((M2M, M2M_SECRET)),
        &[("grant_type", "client_credentials"), ("scope", "hotline.read")],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert!(body.get("id_token").is_none() && body.get("refresh_token").is_none());
    let (status, _, _) = userinfo(&sys, body["access_token"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a client token is not a user token");
    let (_, _, body) = token_request(
        &sys,
        Some((M2M, M2M_SECRET)),
        &[("grant_type", "client_credentials"), ("scope", "openid")],
    )
    .await;
    assert_eq!(body["error"], "invalid_scope");
}

#[tokio::test]
async fn userinfo_rejects_missing_forged_and_foreign_tokens() {
    let sys = TestSystem::start().await;
    let res = reqwest::get(sys.url("/userinfo")).await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(res.headers()["www-authenticate"].to_str().unwrap().starts_with("Bearer"));
    let (status, headers, _) = userinfo(&sys, "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(headers["www-authenticate"].to_str().unwrap().contains("invalid_token"));
    // An ID token is not an access token (typ differs).
    let (_, tokens) = portal_login(&sys, &Browser::new(), "hcm", HCM_USER).await;
    assert_eq!(userinfo(&sys, &tokens.id_token).await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn userinfo_releases_claims_by_scope() {
    let sys = TestSystem::start().await;
    let browser = Browser::new();
    let rp = sys.rp(PORTAL, Some(PORTAL_SECRET), PORTAL_CB).await;
    let mut req = rp.authorize(&[]);
    // openid + profile only (the helper adds profile): no email, no national_id.
    let cb = browser.login(&req.url, "hcm", HCM_USER, PORTAL_CB).await.callback();
    let tokens = rp.exchange(&req, &param(&cb, "code").unwrap()).await.unwrap();
    let (_, _, info) = userinfo(&sys, &tokens.access_token).await;
    assert!(info.get("name").is_some());
    assert!(info.get("email").is_none() && info.get("national_id").is_none());
    req = rp.authorize(&[("scope", "email national_id")]);
    let cb = browser.navigate(&req.url, PORTAL_CB).await.callback();
    let tokens = rp.exchange(&req, &param(&cb, "code").unwrap()).await.unwrap();
    let (_, _, info) = userinfo(&sys, &tokens.access_token).await;
    assert_eq!(info["national_id"], "079190004512");
    assert!(info["email"].is_string());
}
