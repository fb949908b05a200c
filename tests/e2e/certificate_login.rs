//! Certificate login (`kind = "certificate"`): officials present the digital-signature
//! certificate of their token to the certificate host, over real TLS (the gateway's own
//! listener) or through a TLS-terminating proxy's header. The certificates come from test
//! authorities made once for this binary.

use std::sync::OnceLock;

use reqwest::StatusCode;
use sso_test_services::pki::{Ca, Issued, Person};

use crate::helpers::*;

const UPSTREAM: &str = "chu-ky-so";
const CERTIFICATE_ACR: &str = "urn:sso-gateway:acr:certificate";
/// Lan's personal number (the same in the simulated VNeID and Ho Chi Minh City systems).
const LAN_CCCD: &str = "079190004512";
const HEADER: &str = "X-SSL-Client-Cert";

struct Pki {
    /// The CA officials' certificates come from (trusted by the certificate upstream).
    gov: Ca,
    /// The authority of the certificate host's server certificate.
    tls: Ca,
    host: Issued,
    lan: Issued,
    revoked: Issued,
    expired: Issued,
    foreign: Issued,
}

/// The authorities and certificates, made once for this test binary.
fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| {
        let gov = Ca::new("Ban Cơ yếu Chính phủ (test)");
        let stranger = Ca::new("Unknown CA (test)");
        let tls = Ca::new("Certificate host TLS CA (test)");
        let host = tls.server(&["127.0.0.1", "localhost"]);
        let lan = gov.issue(&Person::official("Nguyễn Thị Lan", LAN_CCCD, 1001));
        let revoked = gov.issue(&Person::official("Trần Văn Bảo", "079085001234", 1002));
        let mut old = Person::official("Lê Thị Cúc", "079186002345", 1003);
        old.not_before -= 3 * 365 * 86_400;
        old.not_after = old.not_before + 2 * 365 * 86_400;
        let expired = gov.issue(&old);
        let foreign = stranger.issue(&Person::official("Nguyễn Thị Lan", LAN_CCCD, 1004));
        Pki { gov, tls, host, lan, revoked, expired, foreign }
    })
}

/// Writes the files the gateway reads and returns the configuration of the certificate
/// upstream and `[certificate]` (`extra` goes into `[certificate]`).
fn files_and_config(dir: &std::path::Path, listener: bool, extra: &str) -> String {
    let p = pki();
    std::fs::write(dir.join("gov-ca.pem"), &p.gov.cert_pem).unwrap();
    // CRL due in ten years, so that tests may move the clock.
    let now = sso_gateway::clock::Clock::system().now();
    std::fs::write(dir.join("gov.crl"), p.gov.crl(&[p.revoked.serial], now - 3600, now + 10 * 365 * 86_400))
        .unwrap();
    std::fs::write(dir.join("host.pem"), &p.host.cert_pem).unwrap();
    std::fs::write(dir.join("host.key"), &p.host.key_pem).unwrap();
    let d = dir.display();
    let listen = if listener {
        format!(
            "url = \"https://127.0.0.1:{{certificate_port}}\"\nlisten = \"127.0.0.1:{{certificate_port}}\"\ntls_cert = \"{d}/host.pem\"\ntls_key = \"{d}/host.key\"\n"
        )
    } else {
        format!("url = \"{{gateway}}\"\nforwarded_header = \"{HEADER}\"\n")
    };
    format!(
        r#"
[certificate]
{listen}{extra}

[[upstreams]]
id = "{UPSTREAM}"
kind = "certificate"
name_vi = "Chữ ký số cán bộ, công chức"
name_en = "Officials' digital signature"
[upstreams.certificate]
ca_file = "{d}/gov-ca.pem"
crl_files = ["{d}/gov.crl"]
[upstreams.linking]
trust_national_id = true
"#
    )
}

struct CertSystem {
    sys: TestSystem,
    _files: tempfile::TempDir,
}

async fn start(listener: bool, extra_certificate: &str, extra: &str) -> CertSystem {
    let files = tempfile::tempdir().unwrap();
    let mut config = files_and_config(files.path(), listener, extra_certificate);
    config.push_str(extra);
    let sys = TestSystem::start_with(Options {
        extra_config: config,
        certificate_host: listener,
        ..Options::default()
    })
    .await;
    CertSystem { sys, _files: files }
}

/// A browser whose TLS client trusts the certificate host and presents `identity` when asked
/// (a person who picked that certificate in the browser's prompt), sending `headers` with
/// every request.
fn browser(identity: Option<&Issued>, headers: &[(&str, String)]) -> Browser {
    let mut default_headers = reqwest::header::HeaderMap::new();
    for (name, value) in headers {
        default_headers.insert(
            reqwest::header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(pki().tls.cert_pem.as_bytes()).unwrap())
        .cookie_store(true)
        .pool_max_idle_per_host(0)
        .redirect(reqwest::redirect::Policy::none())
        .default_headers(default_headers)
        .timeout(std::time::Duration::from_secs(20));
    if let Some(issued) = identity {
        builder = builder.identity(reqwest::Identity::from_pem(issued.identity_pem().as_bytes()).unwrap());
    }
    Browser { http: builder.build().unwrap() }
}

/// From an authorization request through the chooser's certificate entry to wherever it ends.
async fn certificate_login(browser: &Browser, authorize_url: &str) -> Landing {
    let (url, status, body) = browser.navigate(authorize_url, PORTAL_CB).await.page();
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("USB token"), "the chooser tells what the browser will ask: {body}");
    let link = chooser_link(&body, UPSTREAM);
    let target = url::Url::parse(&url).unwrap().join(&link).unwrap();
    browser.navigate(target.as_str(), PORTAL_CB).await
}

#[tokio::test]
async fn an_official_logs_in_with_the_certificate_of_the_token_over_tls() {
    let c = start(true, "", "").await;
    let rp = c.sys.rp(PORTAL, Some(PORTAL_SECRET), PORTAL_CB).await;
    let req = rp.authorize(&[]);
    let cb = certificate_login(&browser(Some(&pki().lan), &[]), &req.url).await.callback();
    let tokens = rp.exchange(&req, &param(&cb, "code").unwrap()).await.unwrap();
    assert_eq!(tokens.raw["idp"], UPSTREAM);
    assert_eq!(tokens.raw["acr"], CERTIFICATE_ACR);
    assert!(tokens.raw["amr"].as_array().unwrap().iter().any(|m| m == "hwk"), "{}", tokens.raw);
    let (_, _, info) = userinfo(&c.sys, &tokens.access_token).await;
    assert_eq!(info["name"], "Nguyễn Thị Lan");
}

#[tokio::test]
async fn the_certificate_host_asks_only_there_and_nothing_else_is_served_on_it() {
    let c = start(true, "", "").await;
    let host = format!("https://{}", c.sys.certificate_addr.unwrap());
    let b = browser(Some(&pki().lan), &[]);
    for path in ["/authorize", "/login", "/.well-known/openid-configuration", "/token"] {
        let res = b.http.get(format!("{host}{path}")).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{path} is not served on the certificate host");
    }
    // A certificate step for an attempt that was never started stores nothing and says so.
    let res =
        b.http.get(format!("{host}/upstream/{UPSTREAM}/certificate?attempt=forged")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert!(res.text().await.unwrap().contains("The login has expired"));
}

/// Runs a certificate login for `identity` and returns the page it ends on.
async fn refused(c: &CertSystem, identity: Option<&Issued>) -> (StatusCode, String) {
    let rp = c.sys.rp(PORTAL, Some(PORTAL_SECRET), PORTAL_CB).await;
    let req = rp.authorize(&[]);
    let (url, status, body) = certificate_login(&browser(identity, &[]), &req.url).await.page();
    assert!(url.contains("/upstream/chu-ky-so/callback"), "the refusal is shown by the gateway: {url}");
    assert!(body.contains("login?request="), "another way in is offered: {body}");
    (status, body)
}

#[tokio::test]
async fn refused_certificates_end_on_pages_that_say_why() {
    let c = start(true, "", "").await;
    let p = pki();
    let (status, body) = refused(&c, Some(&p.revoked)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body.contains("Chứng thư số đã bị thu hồi") && body.contains("has been revoked"), "{body}");
    let (status, body) = refused(&c, Some(&p.expired)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body.contains("không còn hiệu lực") && body.contains("not valid now"), "{body}");
    let (status, body) = refused(&c, Some(&p.foreign)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body.contains("không được chấp nhận") && body.contains("not accepted"), "{body}");
    let (status, body) = refused(&c, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body.contains("Không nhận được chứng thư số") && body.contains("No certificate"), "{body}");
}

#[tokio::test]
async fn validity_follows_the_gateway_clock() {
    let c = start(true, "", "").await;
    c.sys.clock.advance(3 * 365 * 86_400);
    let (status, body) = refused(&c, Some(&pki().lan)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body.contains("not valid now"), "Lan's two-year certificate has run out: {body}");
}

#[tokio::test]
async fn a_certificate_links_to_the_account_already_holding_its_national_id() {
    let c = start(true, "", "").await;
    let (_, national) = portal_login(&c.sys, &Browser::new(), "vneid", "lan.vneid").await;
    let rp = c.sys.rp(PORTAL, Some(PORTAL_SECRET), PORTAL_CB).await;
    let req = rp.authorize(&[]);
    let cb = certificate_login(&browser(Some(&pki().lan), &[]), &req.url).await.callback();
    let by_certificate = rp.exchange(&req, &param(&cb, "code").unwrap()).await.unwrap();
    assert_eq!(by_certificate.claims.subject(), national.claims.subject(), "one person, one account");
    // Another official's certificate is another account.
    let mut other = Person::official("Phạm Văn Dũng", "079088007777", 1100);
    other.email = Some("dung.pv@tphcm.gov.vn".into());
    let other = pki().gov.issue(&other);
    let req = rp.authorize(&[("scope", "email")]);
    let cb = certificate_login(&browser(Some(&other), &[]), &req.url).await.callback();
    let tokens = rp.exchange(&req, &param(&cb, "code").unwrap()).await.unwrap();
    assert_ne!(tokens.claims.subject(), national.claims.subject());
    let (_, _, info) = userinfo(&c.sys, &tokens.access_token).await;
    assert_eq!(info["email"], "dung.pv@tphcm.gov.vn");
}

#[tokio::test]
async fn a_password_session_steps_up_to_the_certificate() {
    let c = start(true, "", "").await;
    let b = browser(Some(&pki().lan), &[]);
    let (rp, first) = portal_login(&c.sys, &b, "hcm", HCM_USER).await;
    assert_eq!(first.raw["acr"], "urn:sso-gateway:acr:password");
    let req = rp.authorize(&[("acr_values", CERTIFICATE_ACR)]);
    let (url, _, body) = b.navigate(&req.url, PORTAL_CB).await.page();
    assert!(url.contains("/login?request="), "the password session is not enough: {url}");
    let doc = scraper::Html::parse_document(&body);
    let links = scraper::Selector::parse("a.button").unwrap();
    let offered: Vec<&str> = doc.select(&links).filter_map(|a| a.value().attr("href")).collect();
    assert_eq!(offered.len(), 1, "only systems reaching the level are offered: {offered:?}");
    assert!(offered[0].starts_with(&format!("/upstream/{UPSTREAM}/login")), "{offered:?}");
    let target = url::Url::parse(&url).unwrap().join(&chooser_link(&body, UPSTREAM)).unwrap();
    let cb = b.navigate(target.as_str(), PORTAL_CB).await.callback();
    let stepped = rp.exchange(&req, &param(&cb, "code").unwrap()).await.unwrap();
    assert_eq!(stepped.raw["acr"], CERTIFICATE_ACR);
    assert_eq!(stepped.claims.subject(), first.claims.subject(), "Lan's number links both logins");
}

fn escaped_pem(issued: &Issued) -> String {
    percent_encoding::utf8_percent_encode(&issued.cert_pem, percent_encoding::NON_ALPHANUMERIC).to_string()
}

#[tokio::test]
async fn a_certificate_header_from_an_address_that_is_no_trusted_proxy_is_ignored() {
    // The gateway's listener is reached directly (127.0.0.1 is no trusted proxy): whoever
    // writes the header is not a proxy that checked a certificate.
    let c = start(false, "", "[inbound]\ntrusted_proxies = [\"10.0.0.0/8\"]\n").await;
    let rp = c.sys.rp(PORTAL, Some(PORTAL_SECRET), PORTAL_CB).await;
    let req = rp.authorize(&[]);
    let forged = browser(None, &[(HEADER, escaped_pem(&pki().lan))]);
    let (_, status, body) = certificate_login(&forged, &req.url).await.page();
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body.contains("No certificate was presented"), "{body}");
}

#[tokio::test]
async fn a_trusted_proxy_forwards_the_certificate_it_asked_for() {
    let c = start(false, "", "[inbound]\ntrusted_proxies = [\"127.0.0.1/32\"]\n").await;
    let rp = c.sys.rp(PORTAL, Some(PORTAL_SECRET), PORTAL_CB).await;
    let req = rp.authorize(&[]);
    let proxied = browser(None, &[(HEADER, escaped_pem(&pki().lan))]);
    let cb = certificate_login(&proxied, &req.url).await.callback();
    let tokens = rp.exchange(&req, &param(&cb, "code").unwrap()).await.unwrap();
    assert_eq!(tokens.raw["acr"], CERTIFICATE_ACR);
    // The proxy checks nothing for the gateway: a revoked certificate it forwards is refused.
    let req = rp.authorize(&[]);
    let revoked = browser(None, &[(HEADER, escaped_pem(&pki().revoked))]);
    let (_, status, body) = certificate_login(&revoked, &req.url).await.page();
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body.contains("has been revoked"), "{body}");
    // A proxy that got no certificate forwards an empty value.
    let req = rp.authorize(&[]);
    let none = browser(None, &[(HEADER, String::new())]);
    let (_, _, body) = certificate_login(&none, &req.url).await.page();
    assert!(body.contains("No certificate was presented"), "{body}");
}

#[tokio::test]
async fn the_outcome_of_a_certificate_step_belongs_to_the_browser_that_started_it() {
    // An attacker starts a login and gets a colleague to run the certificate step of the
    // attacker's attempt: the outcome goes to the colleague's browser, which did not start the
    // attempt, and the attacker never learns its handle.
    let c = start(true, "", "").await;
    let rp = c.sys.rp(PORTAL, Some(PORTAL_SECRET), PORTAL_CB).await;
    let attacker = browser(None, &[]);
    let req = rp.authorize(&[]);
    let (url, _, body) = attacker.navigate(&req.url, PORTAL_CB).await.page();
    let target = url::Url::parse(&url).unwrap().join(&chooser_link(&body, UPSTREAM)).unwrap();
    let res = attacker.http.get(target.as_str()).send().await.unwrap();
    let step = res.headers()[reqwest::header::LOCATION].to_str().unwrap().to_string();
    assert!(step.starts_with(&format!("https://{}/", c.sys.certificate_addr.unwrap())), "{step}");
    let victim = browser(Some(&pki().lan), &[]);
    let (_, status, body) = victim.navigate(&step, PORTAL_CB).await.page();
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("must finish in the browser that started it"), "{body}");
}
