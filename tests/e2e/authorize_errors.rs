use crate::helpers::*;
use reqwest::StatusCode;

fn authorize_url(sys: &TestSystem, params: &[(&str, &str)]) -> String {
    let mut url = url::Url::parse(&sys.url("/authorize")).unwrap();
    url.query_pairs_mut().extend_pairs(params);
    url.to_string()
}

const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

#[tokio::test]
async fn unknown_client_gets_an_error_page_and_no_redirect() {
    let sys = TestSystem::start().await;
    let url = authorize_url(
        &sys,
        &[
            ("client_id", "nobody"),
            ("redirect_uri", PORTAL_CB),
            ("response_type", "code"),
            ("scope", "openid"),
        ],
    );
    let res = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(url)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert!(res.headers().get("location").is_none());
    let body = res.text().await.unwrap();
    assert!(
        body.contains("Yêu cầu đăng nhập không hợp lệ") && body.contains("Invalid login request"),
        "bilingual page"
    );
}

#[tokio::test]
async fn a_redirect_uri_that_does_not_match_exactly_is_never_redirected_to() {
    let sys = TestSystem::start().await;
    for bad in [
        "http://127.0.0.1:9/portal/cb/",
        "http://127.0.0.1:9/portal/cb?x=1",
        "http://evil.example/portal/cb",
        "HTTP://127.0.0.1:9/portal/cb",
        "",
    ] {
        let url = authorize_url(
            &sys,
            &[
                ("client_id", PORTAL),
                ("redirect_uri", bad),
                ("response_type", "code"),
                ("scope", "openid"),
                ("state", "s"),
            ],
        );
        let res = Browser::new().http.get(&url).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{bad}");
        assert!(res.headers().get("location").is_none(), "{bad}");
        let body = res.text().await.unwrap();
        assert!(body.contains("redirect_uri"), "{bad}");
    }
}

async fn redirected_error(sys: &TestSystem, params: &[(&str, &str)]) -> (String, Option<String>) {
    let mut all = vec![("client_id", PORTAL), ("redirect_uri", PORTAL_CB), ("state", "xyz")];
    all.extend_from_slice(params);
    let cb = Browser::new().navigate(&authorize_url(sys, &all), PORTAL_CB).await.callback();
    assert_eq!(param(&cb, "state").as_deref(), Some("xyz"));
    assert_eq!(param(&cb, "iss").as_deref(), Some(sys.gateway.as_str()));
    (param(&cb, "error").expect("error parameter"), param(&cb, "error_description"))
}

#[tokio::test]
async fn protocol_errors_are_redirected_to_a_trusted_redirect_uri() {
    let sys = TestSystem::start().await;
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("scope", "openid")], "invalid_request"),
        (&[("response_type", "token"), ("scope", "openid")], "unsupported_response_type"),
        (&[("response_type", "code id_token"), ("scope", "openid")], "unsupported_response_type"),
        (&[("response_type", "code"), ("scope", "profile")], "invalid_scope"),
        (&[("response_type", "code"), ("scope", "openid admin")], "invalid_scope"),
        (
            &[
                ("response_type", "code"),
                ("scope", "openid"),
                ("code_challenge", CHALLENGE),
                ("code_challenge_method", "plain"),
            ],
            "invalid_request",
        ),
        (&[("response_type", "code"), ("scope", "openid"), ("code_challenge", CHALLENGE)], "invalid_request"),
        (&[("response_type", "code"), ("scope", "openid"), ("prompt", "none login")], "invalid_request"),
        (&[("response_type", "code"), ("scope", "openid"), ("max_age", "-1")], "invalid_request"),
        (&[("response_type", "code"), ("scope", "openid"), ("request", "eyJ")], "request_not_supported"),
    ];
    for (params, expected) in cases {
        let (error, description) = redirected_error(&sys, params).await;
        assert_eq!(&error, expected, "{params:?}: {description:?}");
    }
}

#[tokio::test]
async fn a_public_client_without_pkce_is_refused() {
    let sys = TestSystem::start().await;
    let url = authorize_url(
        &sys,
        &[
            ("client_id", SPA),
            ("redirect_uri", SPA_CB),
            ("response_type", "code"),
            ("scope", "openid"),
            ("state", "s"),
        ],
    );
    let cb = Browser::new().navigate(&url, SPA_CB).await.callback();
    assert_eq!(param(&cb, "error").as_deref(), Some("invalid_request"));
}

#[tokio::test]
async fn repeated_parameters_are_refused() {
    let sys = TestSystem::start().await;
    let url = format!(
        "{}&scope=openid",
        authorize_url(
            &sys,
            &[
                ("client_id", PORTAL),
                ("redirect_uri", PORTAL_CB),
                ("response_type", "code"),
                ("scope", "openid")
            ]
        )
    );
    let cb = Browser::new().navigate(&url, PORTAL_CB).await.callback();
    assert_eq!(param(&cb, "error").as_deref(), Some("invalid_request"));
}

#[tokio::test]
async fn authorize_accepts_post() {
    let sys = TestSystem::start().await;
    let browser = Browser::new();
    let res = browser
        .http
        .post(sys.url("/authorize"))
        .form(&[
            ("client_id", PORTAL),
            ("redirect_uri", PORTAL_CB),
            ("response_type", "code"),
            ("scope", "openid"),
            ("prompt", "none"),
            ("code_challenge", CHALLENGE),
            ("code_challenge_method", "S256"),
        ])
        .send()
        .await
        .unwrap();
    assert!(res.status().is_redirection());
    let location = res.headers()["location"].to_str().unwrap();
    assert!(location.starts_with(PORTAL_CB) && location.contains("error=login_required"), "{location}");
}

#[tokio::test]
async fn an_expired_or_unknown_login_request_shows_a_clear_page() {
    let sys = TestSystem::start().await;
    let (_, status, body) =
        Browser::new().navigate(&sys.url("/login?request=does-not-exist"), PORTAL_CB).await.page();
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("Phiên đăng nhập đã hết hạn") && body.contains("The login has expired"));
    let (_, status, _) = Browser::new().navigate(&sys.url("/no-such-page"), PORTAL_CB).await.page();
    assert_eq!(status, StatusCode::NOT_FOUND);
}
