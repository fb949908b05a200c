//! Protocol and web hardening of the provider (issue 11 §4): who may introspect, PKCE for
//! every client, what counts as an `id_token_hint`, HSTS, where forms may post, and a bounded
//! read of a client's `jwks_uri`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::helpers::*;
use crate::slapd::Slapd;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, LOCATION};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn authorize_url(sys: &TestSystem, params: &[(&str, &str)]) -> String {
    let mut url = url::Url::parse(&sys.url("/authorize")).unwrap();
    url.query_pairs_mut().extend_pairs(params);
    url.to_string()
}

/// GETs `url` and follows redirects (never to `stop_prefix`) to the page; its headers too.
async fn page_with_headers(browser: &Browser, url: &str) -> (String, StatusCode, HeaderMap, String) {
    let mut current = url.to_string();
    for _ in 0..20 {
        let res = browser.http.get(&current).send().await.unwrap();
        if res.status().is_redirection() {
            let location = res.headers()[LOCATION].to_str().unwrap();
            current = url::Url::parse(&current).unwrap().join(location).unwrap().to_string();
            assert!(!current.starts_with("http://127.0.0.1:9/"), "redirected to an RP: {current}");
            continue;
        }
        let status = res.status();
        let headers = res.headers().clone();
        return (current, status, headers, res.text().await.unwrap());
    }
    panic!("redirect loop from {url}");
}

/// The sources of the `form-action` directive of a response's CSP.
fn form_action(headers: &HeaderMap) -> Vec<String> {
    let csp = headers
        .get(reqwest::header::CONTENT_SECURITY_POLICY)
        .expect("a Content-Security-Policy")
        .to_str()
        .unwrap();
    let directive = csp
        .split(';')
        .map(str::trim)
        .find(|d| d.starts_with("form-action"))
        .unwrap_or_else(|| panic!("no form-action in {csp:?}"));
    directive.split_whitespace().skip(1).map(str::to_string).collect()
}

// --- 1. Introspection is for confidential clients -------------------------------------------

#[tokio::test]
async fn a_public_client_cannot_introspect_but_may_still_revoke() {
    let sys = TestSystem::start().await;
    let browser = Browser::new();
    portal_login(&sys, &browser, "hcm", HCM_USER).await;
    let spa = sys.rp(SPA, None, SPA_CB).await;
    let tokens = sso_login(&browser, &spa, SPA_CB).await;
    let res = reqwest::Client::new()
        .post(sys.url("/introspect"))
        .form(&[("client_id", SPA), ("token", tokens.access_token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(res.headers().contains_key(reqwest::header::WWW_AUTHENTICATE));
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "invalid_client", "{body}");
    assert!(body.get("active").is_none(), "nothing about the token is told: {body}");
    // RFC 7009 §5: a public client may revoke its own tokens.
    let res = reqwest::Client::new()
        .post(sys.url("/revoke"))
        .form(&[("client_id", SPA), ("token", tokens.access_token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(userinfo(&sys, &tokens.access_token).await.0, StatusCode::UNAUTHORIZED);
}

// --- 2. PKCE for every client ----------------------------------------------------------------

#[tokio::test]
async fn a_confidential_client_without_pkce_is_refused() {
    let sys = TestSystem::start().await;
    let url = authorize_url(
        &sys,
        &[
            ("client_id", PORTAL),
            ("redirect_uri", PORTAL_CB),
            ("response_type", "code"),
            ("scope", "openid"),
            ("state", "s1"),
        ],
    );
    let cb = match Browser::new().navigate(&url, PORTAL_CB).await {
        Landing::Callback(cb) => cb,
        Landing::Page { url, .. } => panic!("a request without PKCE was accepted and parked ({url})"),
    };
    assert_eq!(param(&cb, "error").as_deref(), Some("invalid_request"));
    assert!(param(&cb, "error_description").unwrap().contains("PKCE"));
    assert_eq!(param(&cb, "state").as_deref(), Some("s1"));
}

const LEGACY: &str = "legacy-rp";
const LEGACY_SECRET: &str = "legacy-rp-secret-0123456789";
const LEGACY_CB: &str = "http://127.0.0.1:9/legacy/cb";

#[tokio::test]
async fn a_legacy_confidential_client_may_opt_out_of_pkce() {
    let extra_config = format!(
        "\n[[clients]]\nclient_id = \"{LEGACY}\"\nclient_secret = \"{LEGACY_SECRET}\"\nredirect_uris = [\"{LEGACY_CB}\"]\nrequire_pkce = false\n"
    );
    let sys = TestSystem::start_with(Options { extra_config, ..Default::default() }).await;
    let url = authorize_url(
        &sys,
        &[
            ("client_id", LEGACY),
            ("redirect_uri", LEGACY_CB),
            ("response_type", "code"),
            ("scope", "openid"),
            ("state", "s2"),
            ("nonce", "n2"),
            ("idp_hint", "hcm"),
        ],
    );
    let cb = Browser::new().login(&url, "hcm", HCM_USER, LEGACY_CB).await.callback();
    let code = param(&cb, "code").expect("a code without PKCE for the opted-out client");
    let (status, _, body) = token_request(
        &sys,
        Some((LEGACY, LEGACY_SECRET)),
        &[("grant_type", "authorization_code"), ("code", &code), ("redirect_uri", LEGACY_CB)],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["id_token"].is_string());
}

fn gateway_binary() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_sso-gateway"))
}

#[test]
fn check_config_warns_about_a_pkce_opt_out_and_refuses_it_for_a_public_client() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.toml");
    let base = r#"
issuer = "https://sso.example"
[[clients]]
client_id = "legacy"
client_secret = "legacy-secret-0123456789"
redirect_uris = ["https://legacy.example/cb"]
require_pkce = false
"#;
    std::fs::write(&path, base).unwrap();
    let out = gateway_binary().args(["check-config", "--config"]).arg(&path).output().unwrap();
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "a warning does not fail check-config: {all}");
    assert!(all.contains("warning") && all.contains("clients[0].require_pkce"), "{all}");

    let public = format!(
        "{base}\n[[clients]]\nclient_id = \"spa\"\nredirect_uris = [\"https://spa.example/cb\"]\nrequire_pkce = false\n"
    );
    std::fs::write(&path, public).unwrap();
    let out = gateway_binary().args(["check-config", "--config"]).arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("clients[1].require_pkce"), "{err}");
}

// --- 3. id_token_hint is an ID token of ours, nothing else ---------------------------------

#[tokio::test]
async fn an_access_token_as_id_token_hint_does_not_end_the_session_without_asking() {
    let sys = TestSystem::start().await;
    let browser = Browser::new();
    let (rp, tokens) = portal_login(&sys, &browser, "hcm", HCM_USER).await;
    let mut url = url::Url::parse(&sys.url("/logout")).unwrap();
    url.query_pairs_mut().append_pair("id_token_hint", &tokens.access_token);
    let (_, status, page) = browser.navigate(url.as_str(), "http://127.0.0.1:9/").await.page();
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("Đăng xuất khỏi mọi dịch vụ"), "asked to confirm: {page}");
    let cb = browser.navigate(&rp.authorize(&[("prompt", "none")]).url, PORTAL_CB).await.callback();
    assert!(param(&cb, "code").is_some(), "the session survives");
}

#[tokio::test]
async fn a_backchannel_logout_token_as_id_token_hint_leads_nowhere() {
    const HINTED: &str = "hinted-rp";
    const SECRET: &str = "hinted-rp-secret-0123456789";
    const CB: &str = "http://127.0.0.1:9/hinted/cb";
    const DONE: &str = "http://127.0.0.1:9/hinted/logged-out";
    let receiver = Receiver::start(Duration::ZERO).await;
    let extra_config = format!(
        "\n[[clients]]\nclient_id = \"{HINTED}\"\nclient_secret = \"{SECRET}\"\nredirect_uris = [\"{CB}\"]\npost_logout_redirect_uris = [\"{DONE}\"]\nbackchannel_logout_uri = \"{}\"\n",
        receiver.url
    );
    let sys = TestSystem::start_with(Options { extra_config, ..Default::default() }).await;
    let browser = Browser::new();
    let rp = sys.rp(HINTED, Some(SECRET), CB).await;
    let req = rp.authorize(&[("idp_hint", "hcm")]);
    let cb = browser.login(&req.url, "hcm", HCM_USER, CB).await.callback();
    let tokens = rp.exchange(&req, &param(&cb, "code").unwrap()).await.unwrap();
    // Logging out with the ID token sends the client a back-channel logout token.
    let mut url = url::Url::parse(&sys.url("/logout")).unwrap();
    url.query_pairs_mut().append_pair("id_token_hint", &tokens.id_token);
    browser.navigate(url.as_str(), DONE).await.page();
    let logout_token = receiver.wait_for_token(Duration::from_secs(5)).await.expect("a logout token");
    assert_eq!(jsonwebtoken::decode_header(&logout_token).unwrap().typ.as_deref(), Some("logout+jwt"));

    let logout_with = |hint: &str| {
        let mut url = url::Url::parse(&sys.url("/logout")).unwrap();
        url.query_pairs_mut()
            .append_pair("id_token_hint", hint)
            .append_pair("post_logout_redirect_uri", DONE)
            .append_pair("state", "st");
        url.to_string()
    };
    // Shown as a hint, the logout token names no client: no redirect to its page.
    match Browser::new().navigate(&logout_with(&logout_token), DONE).await {
        Landing::Callback(u) => panic!("a logout token as id_token_hint redirected to {u}"),
        Landing::Page { status, body, .. } => {
            assert_eq!(status, StatusCode::OK);
            assert!(body.contains("Bạn đã đăng xuất"), "{body}");
        }
    }
    // The client's real (expired or not) ID token does lead back: only the hint differs.
    let back = Browser::new().navigate(&logout_with(&tokens.id_token), DONE).await.callback();
    assert_eq!(param(&back, "state").as_deref(), Some("st"));
}

// --- 4. HSTS under https ---------------------------------------------------------------------

/// A gateway with no upstreams on a plain-http loopback listener, announcing `issuer`
/// (https behind a TLS-terminating proxy, or http). Returns its base URL.
async fn bare_gateway(issuer: Option<&str>, dir: &std::path::Path) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let text = format!(
        "issuer = \"{}\"\n[keys]\ndir = \"{d}/keys\"\ngenerate_missing = true\n[accounts]\nurl = \"sqlite::memory:\"\n[[clients]]\nclient_id = \"rp\"\nclient_secret = \"rp-secret-0123456789ab\"\nredirect_uris = [\"https://rp.example/cb\"]\n",
        issuer.unwrap_or(base.as_str()),
        d = dir.display()
    );
    let settings = sso_gateway::config::Settings::from_toml(&text).unwrap();
    let app = sso_gateway::app::Application::build_with_listener(
        settings,
        sso_gateway::clock::Clock::system(),
        listener,
    )
    .await
    .unwrap();
    tokio::spawn(app.run_until(std::future::pending()));
    base
}

#[tokio::test]
async fn hsts_is_on_every_response_under_an_https_issuer_and_never_under_http() {
    let dir = tempfile::tempdir().unwrap();
    let https = bare_gateway(Some("https://sso.example"), &dir.path().join("a")).await;
    let http = bare_gateway(None, &dir.path().join("b")).await;
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    for (base, expected) in [(&https, Some("max-age=31536000")), (&http, None)] {
        let mut responses = Vec::new();
        for path in ["/.well-known/openid-configuration", "/jwks", "/healthz", "/no-such-page", "/authorize"]
        {
            responses.push((path, client.get(format!("{base}{path}")).send().await.unwrap()));
        }
        responses.push((
            "/token",
            client.post(format!("{base}/token")).form(&[("grant_type", "password")]).send().await.unwrap(),
        ));
        for (path, res) in responses {
            let hsts = res.headers().get(reqwest::header::STRICT_TRANSPORT_SECURITY);
            assert_eq!(hsts.map(|v| v.to_str().unwrap()), expected, "{base}{path} ({})", res.status());
        }
    }
}

// --- 5. CSP form-action ----------------------------------------------------------------------

#[tokio::test]
async fn a_form_post_page_may_post_only_to_the_registered_redirect_uri_and_other_pages_only_here() {
    let sys = TestSystem::start().await;
    let browser = Browser::new();
    let (rp, _) = portal_login(&sys, &browser, "hcm", HCM_USER).await;
    let req = rp.authorize(&[("response_mode", "form_post"), ("prompt", "none")]);
    let res = browser.http.get(&req.url).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(form_action(res.headers()), vec![PORTAL_CB.to_string()]);
    let body = res.text().await.unwrap();
    let doc = scraper::Html::parse_document(&body);
    let form = doc.select(&scraper::Selector::parse("form").unwrap()).next().expect("the form");
    assert_eq!(form.value().attr("action"), Some(PORTAL_CB), "{body}");

    // A page of the gateway that posts nowhere else: the chooser, an error page.
    let (url, status, headers, _) = page_with_headers(&Browser::new(), &rp.authorize(&[]).url).await;
    assert!(url.contains("/login?request="), "{url}");
    assert_eq!(status, StatusCode::OK);
    assert_eq!(form_action(&headers), vec!["'self'".to_string()]);
    let res = reqwest::get(sys.url("/no-such-page")).await.unwrap();
    assert_eq!(form_action(res.headers()), vec!["'self'".to_string()]);
}

#[tokio::test]
async fn the_logout_confirmation_may_post_only_here_and_to_where_that_logout_leads() {
    const APP: &str = "csp-app";
    const SECRET: &str = "csp-app-secret-0123456789";
    const CB: &str = "http://127.0.0.1:9/csp/cb";
    const DONE: &str = "http://127.0.0.1:9/csp/logged-out";
    let extra_config = format!(
        "\n[[clients]]\nclient_id = \"{APP}\"\nclient_secret = \"{SECRET}\"\nredirect_uris = [\"{CB}\"]\npost_logout_redirect_uris = [\"{DONE}\"]\n"
    );
    let sys = TestSystem::start_with(Options { extra_config, ..Default::default() }).await;
    let browser = Browser::new();
    let rp = sys.rp(APP, Some(SECRET), CB).await;
    let req = rp.authorize(&[("idp_hint", "hcm")]);
    browser.login(&req.url, "hcm", HCM_USER, CB).await.callback();
    let hcm = &sys.idps["hcm"].issuer;
    let discovery: Value =
        reqwest::get(format!("{hcm}/.well-known/openid-configuration")).await.unwrap().json().await.unwrap();
    let end_session = discovery["end_session_endpoint"].as_str().unwrap().to_string();

    let mut url = url::Url::parse(&sys.url("/logout")).unwrap();
    url.query_pairs_mut().append_pair("client_id", APP).append_pair("post_logout_redirect_uri", DONE);
    let (_, status, headers, page) = page_with_headers(&browser, url.as_str()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("Đăng xuất khỏi mọi dịch vụ"), "{page}");
    let mut sources = form_action(&headers);
    sources.sort();
    let mut expected = vec!["'self'".to_string(), DONE.to_string(), end_session];
    expected.sort();
    assert_eq!(sources, expected, "the gateway, the upstream's logout and the RP's page");
}

#[tokio::test]
async fn the_directory_password_form_may_post_here_and_lead_only_to_the_redirect_uri() {
    let slapd = Slapd::start(false).await;
    let sys = TestSystem::start_with(Options {
        extra_config: slapd.upstream_config("officials", ""),
        ..Options::default()
    })
    .await;
    let rp = sys.rp(PORTAL, Some(PORTAL_SECRET), PORTAL_CB).await;
    let req = rp.authorize(&[("idp_hint", "officials")]);
    let (url, status, headers, body) = page_with_headers(&Browser::new(), &req.url).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(url.contains("/upstream/officials/login"), "{url}");
    // The form posts to the gateway, whose answer redirects to the RP (browsers check
    // form-action on that redirect too).
    let mut sources = form_action(&headers);
    sources.sort();
    assert_eq!(sources, vec!["'self'".to_string(), PORTAL_CB.to_string()]);
}

// --- 7. A client's jwks_uri is read with a cap -----------------------------------------------

/// An HTTP server whose every answer is a JSON body that does not end; it stops writing after
/// `limit` bytes (so an unbounded reader cannot exhaust the test machine) and keeps the
/// connection open. Returns its URL and how many body bytes the peer accepted.
async fn endless_body_server(limit: usize) -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks", listener.local_addr().unwrap());
    let sent = Arc::new(AtomicUsize::new(0));
    let counter = sent.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let head =
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
                if socket.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let mut chunk = b"10000\r\n{\"keys\":[".to_vec();
                chunk.resize(7 + 0x10000, b' ');
                chunk.extend_from_slice(b"\r\n");
                while counter.load(Ordering::SeqCst) < limit {
                    if socket.write_all(&chunk).await.is_err() {
                        return;
                    }
                    counter.fetch_add(0x10000, Ordering::SeqCst);
                }
                // Keep the connection open, sending nothing more.
                let _ = socket.read(&mut buf).await;
            });
        }
    });
    (url, sent)
}

#[tokio::test]
async fn an_endless_jwks_uri_body_is_cut_off_while_streaming_and_the_client_refused() {
    const LIMIT: usize = 64 * 1024 * 1024;
    let (jwks_uri, sent) = endless_body_server(LIMIT).await;
    let extra_config = format!(
        "\n[[clients]]\nclient_id = \"streamer\"\nredirect_uris = []\nscopes = [\"hotline.read\"]\ngrant_types = [\"client_credentials\"]\ntoken_endpoint_auth_method = \"private_key_jwt\"\njwks_uri = \"{jwks_uri}\"\n"
    );
    let sys = TestSystem::start_with(Options { extra_config, ..Default::default() }).await;
    // The keys are never reached: a well-formed assertion is enough to make the gateway fetch.
    use base64::Engine;
    let b64 = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let assertion = format!(
        "{}.{}.c2lnbmF0dXJl",
        b64(json!({"alg": "ES256", "typ": "JWT", "kid": "k1"})),
        b64(
            json!({"iss": "streamer", "sub": "streamer", "aud": sys.url("/token"), "exp": now + 60, "jti": "j1"})
        )
    );
    let started = Instant::now();
    let res = reqwest::Client::new()
        .post(sys.url("/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
            ("client_assertion", assertion.as_str()),
        ])
        .send()
        .await
        .unwrap();
    let elapsed = started.elapsed();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "invalid_client");
    let sent = sent.load(Ordering::SeqCst);
    // 64 KiB read by the gateway plus what the two loopback socket buffers held.
    assert!(sent < 16 * 1024 * 1024, "the gateway kept reading: {sent} bytes accepted in {elapsed:?}");
    assert!(elapsed < Duration::from_secs(4), "the fetch ran into its timeout: {elapsed:?}");
}
