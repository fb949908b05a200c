//! Drives a spawned provider over real HTTP on 127.0.0.1:0.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use reqwest::StatusCode;
use reqwest::redirect::Policy;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::*;

const REDIRECT: &str = "http://127.0.0.1:9/callback";

fn shipped(id: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../../config/legacy/{id}.toml"))
}

async fn start(id: &str) -> RunningLegacyIdp {
    let config = LegacyIdpConfig::load(&shipped(id)).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    spawn(config, listener).await.unwrap()
}

fn browser() -> reqwest::Client {
    reqwest::Client::builder().redirect(Policy::none()).build().unwrap()
}

fn endpoint(idp: &RunningLegacyIdp, name: &str) -> String {
    format!("{}/protocol/openid-connect/{name}", idp.issuer)
}

/// (verifier, S256 challenge)
fn pkce_pair() -> (String, String) {
    let verifier = server::random_token(32);
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

fn auth_params<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut p = vec![
        ("client_id", "sso-gateway"),
        ("redirect_uri", REDIRECT),
        ("response_type", "code"),
        ("scope", "openid profile"),
        ("state", "st-123"),
    ];
    for (k, v) in extra {
        p.retain(|(pk, _)| pk != k);
        p.push((k, v));
    }
    p
}

fn request_id(html: &str) -> String {
    let doc = scraper::Html::parse_document(html);
    let sel = scraper::Selector::parse("input[name=request_id]").unwrap();
    let input = doc.select(&sel).next().expect("login form");
    input.value().attr("value").unwrap().to_owned()
}

/// The browser part: show the form, submit it. Returns the response to the form POST.
async fn submit_login(
    http: &reqwest::Client,
    idp: &RunningLegacyIdp,
    params: &[(&str, &str)],
    username: &str,
    password: &str,
) -> reqwest::Response {
    let form = http.get(endpoint(idp, "auth")).query(params).send().await.unwrap();
    assert_eq!(form.status(), StatusCode::OK);
    let rid = request_id(&form.text().await.unwrap());
    let body = serde_urlencoded::to_string([
        ("request_id", rid.as_str()),
        ("username", username),
        ("password", password),
    ])
    .unwrap();
    http.post(endpoint(idp, "auth"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap()
}

fn query_of(location: &str) -> HashMap<String, String> {
    url::Url::parse(location).unwrap().query_pairs().into_owned().collect()
}

/// Logs in as `lan` and returns the authorization code.
async fn code_for(http: &reqwest::Client, idp: &RunningLegacyIdp, extra: &[(&str, &str)]) -> String {
    let resp = submit_login(http, idp, &auth_params(extra), "lan", "demo123").await;
    assert_eq!(resp.status(), StatusCode::FOUND);
    let location = resp.headers()["location"].to_str().unwrap();
    assert!(location.starts_with(REDIRECT));
    let q = query_of(location);
    assert_eq!(q["state"], "st-123");
    q["code"].clone()
}

/// Redeems with client_secret_basic.
async fn redeem(
    http: &reqwest::Client,
    idp: &RunningLegacyIdp,
    code: &str,
    verifier: Option<&str>,
) -> reqwest::Response {
    try_redeem(http, idp, code, verifier).await.unwrap()
}

async fn try_redeem(
    http: &reqwest::Client,
    idp: &RunningLegacyIdp,
    code: &str,
    verifier: Option<&str>,
) -> reqwest::Result<reqwest::Response> {
    let mut form = vec![("grant_type", "authorization_code"), ("code", code), ("redirect_uri", REDIRECT)];
    form.extend(verifier.map(|v| ("code_verifier", v)));
    http.post(endpoint(idp, "token"))
        .basic_auth("sso-gateway", Some("gateway-secret-hcm"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string(&form).unwrap())
        .send()
        .await
}

/// A full PKCE flow; returns the token response JSON.
async fn tokens(http: &reqwest::Client, idp: &RunningLegacyIdp) -> Value {
    let (verifier, challenge) = pkce_pair();
    let code = code_for(
        http,
        idp,
        &[("nonce", "n-0S6"), ("code_challenge", &challenge), ("code_challenge_method", "S256")],
    )
    .await;
    let resp = redeem(http, idp, &code, Some(&verifier)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    resp.json().await.unwrap()
}

/// Verifies an ID token against the published JWKS, as a relying party would.
async fn verify(
    http: &reqwest::Client,
    idp: &RunningLegacyIdp,
    id_token: &str,
) -> Result<Value, jsonwebtoken::errors::Error> {
    let jwks: JwkSet = http.get(endpoint(idp, "certs")).send().await.unwrap().json().await.unwrap();
    let header = jsonwebtoken::decode_header(id_token)?;
    assert_eq!(header.typ.as_deref(), Some("JWT"));
    let jwk = jwks.find(header.kid.as_deref().unwrap()).expect("kid is published");
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&["sso-gateway"]);
    validation.set_issuer(&[&idp.issuer]);
    jsonwebtoken::decode::<Value>(id_token, &DecodingKey::from_jwk(jwk)?, &validation).map(|d| d.claims)
}

// ---------------------------------------------------------------------------------------------

/// The simulated national e-ID uses VNeID's claim names, with numbers consistent with the
/// birthdates and both assurance levels present.
#[test]
fn the_vneid_users_file_uses_the_national_claim_names() {
    let text = std::fs::read_to_string(shipped("vneid")).unwrap();
    assert!(unicode_normalization::is_nfc(&text));
    let cfg = LegacyIdpConfig::from_toml_str(&text).unwrap();
    let mut levels = Vec::new();
    for u in &cfg.users {
        let nid = u.claims["SoDinhDanh"].as_str().unwrap();
        let dob = u.claims["NgayThangNamSinh"].as_str().unwrap();
        assert!(nid.len() == 12 && nid.bytes().all(|b| b.is_ascii_digit()));
        assert_eq!(&nid[4..6], &dob[2..4], "{}: birth year", u.username);
        levels.push(u.claims["LoaiTaiKhoan"].as_i64().unwrap());
    }
    assert!(levels.contains(&1) && levels.contains(&2));
}

/// Shipped users files load, are NFC, hold structurally valid national IDs consistent with the
/// birthdate and gender claims, and contain the cross-province cases the linking tests need.
#[test]
fn shipped_configs_load_and_hold_linking_cases() {
    // (province, username, national id, ISO birthdate)
    let mut people: Vec<(String, String, String, String)> = Vec::new();
    for id in ["hcm", "bd", "brvt"] {
        let text = std::fs::read_to_string(shipped(id)).unwrap();
        assert!(unicode_normalization::is_nfc(&text), "{id}: not NFC");
        let cfg = LegacyIdpConfig::from_toml_str(&text).unwrap();
        assert_eq!(cfg.id, id);
        assert!((5..=7).contains(&cfg.users.len()), "{id}: user count");
        if cfg.protocol == LegacyProtocol::Cas {
            // The former Ba Ria-Vung Tau system is a CAS server: it has services, not clients.
            assert_eq!(id, "brvt");
            assert!(cfg.clients.is_empty());
        } else {
            let client = cfg.client("sso-gateway").unwrap();
            assert_eq!(client.client_secret, format!("gateway-secret-{id}"));
            assert!(client.redirect_uris.is_empty());
            assert!(client.accepts_redirect_uri("http://localhost:54321/cb"));
            assert!(!client.accepts_redirect_uri("https://evil.example/cb"));
        }
        for u in &cfg.users {
            assert_eq!(u.password, "demo123");
            let s = |k: &str| u.claims[k].as_str().unwrap().to_owned();
            let (nid, date, female) = match id {
                "hcm" => (s("citizen_id"), s("birthdate"), s("gender") == "female"),
                "bd" => {
                    let d = s("ngay_sinh");
                    let iso = format!("{}-{}-{}", &d[6..10], &d[3..5], &d[0..2]);
                    (s("so_dinh_danh"), iso, s("gioi_tinh") == "Nữ")
                }
                _ => {
                    let d = s("dob");
                    let iso = format!("{}-{}-{}", &d[0..4], &d[4..6], &d[6..8]);
                    (s("cccd"), iso, s("sex") == "F")
                }
            };
            assert!(nid.len() == 12 && nid.bytes().all(|b| b.is_ascii_digit()));
            let g = u32::from(nid.as_bytes()[3] - b'0');
            let year = (19 + g / 2) * 100 + nid[4..6].parse::<u32>().unwrap();
            assert_eq!(year.to_string(), date[0..4], "{id}/{}: birth year", u.username);
            assert_eq!(g % 2 == 1, female, "{id}/{}: gender digit", u.username);
            people.push((id.into(), u.username.clone(), nid, date));
        }
    }
    let pairs = |same_date: bool| {
        let mut n = 0;
        for (i, a) in people.iter().enumerate() {
            for b in &people[i + 1..] {
                if a.0 != b.0 && a.2 == b.2 && (a.3 == b.3) == same_date {
                    n += 1;
                }
            }
        }
        n
    };
    assert!(pairs(true) >= 2, "two people in two provinces with the same ID and birthdate");
    assert!(pairs(false) >= 1, "one same-ID, different-birthdate conflict");

    // Validation beyond serde.
    let minimal = |extra: &str| {
        format!(
            "id = \"x\"\nname_vi = \"X\"\nname_en = \"X\"\n{extra}\n\
             [[clients]]\nclient_id = \"c\"\nclient_secret = \"s\"\n\
             [[users]]\nusername = \"u\"\npassword = \"p\"\nsubject = \"1\"\n"
        )
    };
    assert_eq!(LegacyIdpConfig::from_toml_str(&minimal("")).unwrap().issuer_path, "/oidc");
    assert!(LegacyIdpConfig::from_toml_str(&minimal("issuer_path = \"/sso/\"")).is_err());
    assert!(LegacyIdpConfig::from_toml_str(&minimal("colour = \"red\"")).is_err());
    let reserved = minimal("") + "[users.claims]\nsub = \"spoof\"\n";
    assert!(LegacyIdpConfig::from_toml_str(&reserved).is_err());
}

#[tokio::test]
async fn discovery_and_authorization_errors() {
    let idp = start("hcm").await;
    assert_eq!(idp.issuer, format!("http://127.0.0.1:{}/realms/hcm-dichvucong", idp.addr.port()));
    let http = browser();

    let meta: Value = http
        .get(format!("{}/.well-known/openid-configuration", idp.issuer))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(meta["issuer"], idp.issuer.as_str());
    assert_eq!(meta["authorization_endpoint"], endpoint(&idp, "auth").as_str());
    assert_eq!(meta["token_endpoint"], endpoint(&idp, "token").as_str());
    assert_eq!(meta["userinfo_endpoint"], endpoint(&idp, "userinfo").as_str());
    assert_eq!(meta["jwks_uri"], endpoint(&idp, "certs").as_str());
    assert_eq!(meta["response_types_supported"], serde_json::json!(["code"]));
    assert_eq!(meta["subject_types_supported"], serde_json::json!(["public"]));
    assert_eq!(meta["id_token_signing_alg_values_supported"], serde_json::json!(["RS256"]));
    assert_eq!(meta["code_challenge_methods_supported"], serde_json::json!(["S256"]));
    assert_eq!(
        meta["token_endpoint_auth_methods_supported"],
        serde_json::json!(["client_secret_basic", "client_secret_post"])
    );
    let claims = meta["claims_supported"].as_array().unwrap();
    assert!(claims.contains(&"citizen_id".into()) && claims.contains(&"sub".into()));

    let jwks: Value = http.get(endpoint(&idp, "certs")).send().await.unwrap().json().await.unwrap();
    let key = &jwks["keys"][0];
    assert_eq!((key["kty"].as_str(), key["alg"].as_str()), (Some("RSA"), Some("RS256")));
    assert_eq!(key["use"], "sig");
    assert!(key["kid"].is_string() && key["n"].is_string() && key["e"].is_string());

    // Unknown client or foreign redirect_uri: an error page, never a redirect.
    for bad in [
        auth_params(&[("client_id", "intruder")]),
        auth_params(&[("redirect_uri", "https://evil.example/cb")]),
    ] {
        let resp = http.get(endpoint(&idp, "auth")).query(&bad).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        assert!(resp.headers().get("location").is_none());
        assert!(resp.text().await.unwrap().contains("Không thể đăng nhập"));
    }
    // Other errors go back to the (valid) redirect_uri, with state.
    for (extra, error) in [
        (vec![("scope", "profile")], "invalid_scope"),
        (vec![("response_type", "token")], "unsupported_response_type"),
        (vec![("code_challenge", "abc"), ("code_challenge_method", "plain")], "invalid_request"),
    ] {
        let resp = http.get(endpoint(&idp, "auth")).query(&auth_params(&extra)).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::FOUND);
        let q = query_of(resp.headers()["location"].to_str().unwrap());
        assert_eq!((q["error"].as_str(), q["state"].as_str()), (error, "st-123"));
    }

    // The form escapes what it echoes.
    let form = http
        .get(endpoint(&idp, "auth"))
        .query(&auth_params(&[("login_hint", "<script>x</script>")]))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(form.contains("Đăng nhập") && form.contains("&lt;script&gt;"));
    assert!(!form.contains("<script>"));

    // Wrong password: the form again, with an error, no redirect.
    let resp = submit_login(&http, &idp, &auth_params(&[]), "lan", "wrong").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers().get("location").is_none());
    let html = resp.text().await.unwrap();
    assert!(html.contains("Incorrect username or password"));
    assert!(!request_id(&html).is_empty());

    // Shutdown closes the listener.
    let addr = idp.addr;
    idp.shutdown_and_wait().await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn code_flow_with_pkce() {
    let idp = start("hcm").await;
    let http = browser();

    let token = tokens(&http, &idp).await;
    assert_eq!(token["token_type"], "Bearer");
    assert_eq!(token["expires_in"], 300);
    assert_eq!(token["scope"], "openid profile");
    let access_token = token["access_token"].as_str().unwrap();
    let claims = verify(&http, &idp, token["id_token"].as_str().unwrap()).await.unwrap();
    assert_eq!(claims["iss"], idp.issuer.as_str());
    assert_eq!(claims["aud"], "sso-gateway");
    assert_eq!(claims["sub"], "3f6d2a9e-8c41-4b7a-9e2f-51c0d7a4b813");
    assert_eq!(claims["nonce"], "n-0S6");
    assert_eq!(claims["amr"], serde_json::json!(["pwd"]));
    assert_eq!(claims["acr"], "1");
    assert!(claims["sid"].is_string() && claims["auth_time"].is_u64());
    assert_eq!(claims["citizen_id"], "079190004512");
    assert_eq!(claims["name"], "Nguyễn Thị Lan");
    assert_eq!(claims["birthdate"], "1990-03-14");
    let digest = Sha256::digest(access_token.as_bytes());
    assert_eq!(claims["at_hash"], URL_SAFE_NO_PAD.encode(&digest[..16]).as_str());

    // userinfo
    let info: Value = http
        .get(endpoint(&idp, "userinfo"))
        .bearer_auth(access_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["sub"], claims["sub"]);
    assert_eq!(info["phone_number"], "+84908123456");
    let resp = http.get(endpoint(&idp, "userinfo")).bearer_auth("forged").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let challenge = resp.headers()["www-authenticate"].to_str().unwrap();
    assert!(challenge.starts_with("Bearer") && challenge.contains("error=\"invalid_token\""));

    // A code works once.
    let (verifier, challenge) = pkce_pair();
    let pkce = [("code_challenge", challenge.as_str()), ("code_challenge_method", "S256")];
    let code = code_for(&http, &idp, &pkce).await;
    assert_eq!(redeem(&http, &idp, &code, Some(&verifier)).await.status(), StatusCode::OK);
    let again = redeem(&http, &idp, &code, Some(&verifier)).await;
    assert_eq!(again.status(), StatusCode::BAD_REQUEST);
    assert_eq!(again.json::<Value>().await.unwrap()["error"], "invalid_grant");

    // A wrong PKCE verifier fails (and burns the code).
    let code = code_for(&http, &idp, &pkce).await;
    let wrong = redeem(&http, &idp, &code, Some(&pkce_pair().0)).await;
    assert_eq!(wrong.status(), StatusCode::BAD_REQUEST);
    assert_eq!(wrong.json::<Value>().await.unwrap()["error"], "invalid_grant");

    // client_secret_post, no PKCE; a wrong secret is invalid_client (401).
    let code = code_for(&http, &idp, &[]).await;
    let post = |secret: &'static str, code: String| {
        let body = serde_urlencoded::to_string([
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", REDIRECT),
            ("client_id", "sso-gateway"),
            ("client_secret", secret),
        ])
        .unwrap();
        http.post(endpoint(&idp, "token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };
    let resp = post("nope", code.clone()).await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(resp.json::<Value>().await.unwrap()["error"], "invalid_client");
    let resp = post("gateway-secret-hcm", code).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let token: Value = resp.json().await.unwrap();
    let claims = verify(&http, &idp, token["id_token"].as_str().unwrap()).await.unwrap();
    assert!(claims.get("nonce").is_none());
}

#[tokio::test]
async fn fault_switches_change_the_token() {
    let idp = start("hcm").await;
    let http = browser();
    let f = idp.faults.clone();
    let with = |flag: &AtomicBool| flag.store(true, Ordering::Relaxed);
    let reset = |flag: &AtomicBool| flag.store(false, Ordering::Relaxed);

    let check: [(&AtomicBool, Option<ErrorKind>); 4] = [
        (&f.bad_signature, Some(ErrorKind::InvalidSignature)),
        (&f.wrong_audience, Some(ErrorKind::InvalidAudience)),
        (&f.wrong_issuer, Some(ErrorKind::InvalidIssuer)),
        (&f.expired_id_token, Some(ErrorKind::ExpiredSignature)),
    ];
    for (flag, expected) in check {
        with(flag);
        let token = tokens(&http, &idp).await;
        let err = verify(&http, &idp, token["id_token"].as_str().unwrap()).await.unwrap_err();
        assert_eq!(Some(err.kind().clone()), expected);
        reset(flag);
    }

    with(&f.wrong_nonce);
    let token = tokens(&http, &idp).await;
    let claims = verify(&http, &idp, token["id_token"].as_str().unwrap()).await.unwrap();
    assert_eq!(claims["nonce"], "not-the-nonce");
    reset(&f.wrong_nonce);

    with(&f.garbage_token_response);
    let (verifier, challenge) = pkce_pair();
    let code =
        code_for(&http, &idp, &[("code_challenge", &challenge), ("code_challenge_method", "S256")]).await;
    let resp = redeem(&http, &idp, &code, Some(&verifier)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "text/html");
    assert_eq!(resp.text().await.unwrap(), "<html>oops</html>");
    reset(&f.garbage_token_response);

    with(&f.slow_token_response);
    let impatient = reqwest::Client::builder().timeout(Duration::from_millis(500)).build().unwrap();
    let code = code_for(&http, &idp, &[]).await;
    let err = try_redeem(&impatient, &idp, &code, None).await.unwrap_err();
    assert!(err.is_timeout());
}

/// The gateway's real client library accepts this provider end to end.
#[tokio::test]
async fn openidconnect_client_interop() {
    use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata, CoreUserInfoClaims};
    use openidconnect::{
        AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, OAuth2TokenResponse,
        PkceCodeChallenge, RedirectUrl, TokenResponse,
    };

    let idp = start("bd").await;
    let http = browser();
    let transport = |req: openidconnect::HttpRequest| {
        let http = http.clone();
        async move {
            let (parts, body) = req.into_parts();
            let resp = http
                .request(parts.method, parts.uri.to_string())
                .headers(parts.headers)
                .body(body)
                .send()
                .await?;
            let mut out = http::Response::builder().status(resp.status());
            for (k, v) in resp.headers() {
                out = out.header(k, v);
            }
            Ok::<_, reqwest::Error>(out.body(resp.bytes().await?.to_vec()).unwrap())
        }
    };

    let metadata =
        CoreProviderMetadata::discover_async(IssuerUrl::new(idp.issuer.clone()).unwrap(), &transport)
            .await
            .unwrap();
    let client = CoreClient::from_provider_metadata(
        metadata,
        ClientId::new("sso-gateway".into()),
        Some(ClientSecret::new("gateway-secret-bd".into())),
    )
    .set_redirect_uri(RedirectUrl::new(REDIRECT.into()).unwrap());
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (auth_url, csrf, nonce) = client
        .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
        .set_pkce_challenge(challenge)
        .url();

    let form = http.get(auth_url).send().await.unwrap().text().await.unwrap();
    assert!(form.contains("Bình Dương"));
    let body = serde_urlencoded::to_string([
        ("request_id", request_id(&form).as_str()),
        ("username", "thuvtm"),
        ("password", "demo123"),
    ])
    .unwrap();
    let resp = http
        .post(format!("{}/protocol/openid-connect/auth", idp.issuer))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    let q = query_of(resp.headers()["location"].to_str().unwrap());
    assert_eq!(&q["state"], csrf.secret());

    let token = client
        .exchange_code(AuthorizationCode::new(q["code"].clone()))
        .unwrap()
        .set_pkce_verifier(verifier)
        .request_async(&transport)
        .await
        .unwrap();
    let id_token = token.id_token().unwrap();
    let claims = id_token.claims(&client.id_token_verifier(), &nonce).unwrap();
    assert_eq!(claims.subject().as_str(), "bd-cb-000871");

    let info: CoreUserInfoClaims = client
        .user_info(token.access_token().clone(), Some(claims.subject().clone()))
        .unwrap()
        .request_async(&transport)
        .await
        .unwrap();
    assert_eq!(info.subject().as_str(), "bd-cb-000871");
}
