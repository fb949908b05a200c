//! Mutual TLS for RPs (RFC 8705, issue 14): clients that authenticate with their TLS client
//! certificate (`tls_client_auth` against a CA, `self_signed_tls_client_auth` against
//! registered keys), access tokens bound to that certificate (`cnf.x5t#S256`) that work at
//! `/userinfo` only over a connection with the same certificate, introspection that reports
//! the binding, and discovery that says all of it.
//!
//! The certificate reaches the gateway the way a TLS-terminating proxy hands it over (the
//! verified certificate in `[mtls] certificate_header`, from an address in
//! `inbound.trusted_proxies`).

use std::sync::OnceLock;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::Digest;

use crate::helpers::*;

const HEADER: &str = "x-ssl-client-cert";
/// `tls_client_auth` with a subject DN, for people (authorization code) and itself.
const PKI_CLIENT: &str = "mtls-portal";
const PKI_CB: &str = "http://127.0.0.1:9/mtls/cb";
/// `self_signed_tls_client_auth`, for itself.
const SELF_CLIENT: &str = "mtls-self";
/// A public client registered for certificate-bound tokens.
const BOUND_SPA: &str = "mtls-spa";
const BOUND_SPA_CB: &str = "http://127.0.0.1:9/mtls-spa/cb";
const ALIAS: &str = "https://mtls.sso.test";

/// A certificate and its PEM as a proxy forwards it (URL-encoded).
struct Cert {
    der: Vec<u8>,
    header: String,
}

impl Cert {
    fn thumbprint(&self) -> String {
        B64.encode(sha2::Sha256::digest(&self.der))
    }
}

struct Pki {
    ca_pem: String,
    /// `CN=Cổng dịch vụ công, O=UBND TP.HCM, C=VN` from the CA.
    portal: Cert,
    /// Another subject from the same CA.
    stranger: Cert,
    /// Self-signed, registered in `mtls-self`'s `jwks`.
    own: Cert,
    own_jwk: Value,
}

fn cert(params: &CertificateParams, key: &KeyPair, issuer: Option<&Issuer<'_, KeyPair>>) -> Cert {
    let cert = match issuer {
        Some(issuer) => params.signed_by(key, issuer).unwrap(),
        None => params.self_signed(key).unwrap(),
    };
    let header =
        percent_encoding::utf8_percent_encode(&cert.pem(), percent_encoding::NON_ALPHANUMERIC).to_string();
    Cert { der: cert.der().to_vec(), header }
}

fn client_params(cn: &str) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    // rcgen starts with a CN of its own, which would stay first.
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CountryName, "VN");
    params.distinguished_name.push(DnType::OrganizationName, "UBND TP.HCM");
    params.distinguished_name.push(DnType::CommonName, cn);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params
}

/// Made once per test binary.
fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| {
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.distinguished_name.push(DnType::CommonName, "Test RP CA");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        let ca_key = KeyPair::generate().unwrap();
        let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
        let issuer = Issuer::new(ca, ca_key);
        let own_key = KeyPair::generate().unwrap();
        let point = own_key.public_key_raw();
        let own_jwk = json!({
            "kty": "EC", "crv": "P-256", "x": B64.encode(&point[1..33]), "y": B64.encode(&point[33..65]),
        });
        Pki {
            ca_pem,
            portal: cert(&client_params("Cổng dịch vụ công"), &KeyPair::generate().unwrap(), Some(&issuer)),
            stranger: cert(&client_params("Someone else"), &KeyPair::generate().unwrap(), Some(&issuer)),
            own: cert(&client_params("rp-self"), &own_key, None),
            own_jwk,
        }
    })
}

async fn start() -> (TestSystem, tempfile::TempDir) {
    let pki = pki();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("rp-ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let jwks = toml::Value::try_from(json!({ "keys": [pki.own_jwk] })).unwrap();
    let extra = format!(
        r#"
[[clients]]
client_id = "{PKI_CLIENT}"
redirect_uris = ["{PKI_CB}"]
grant_types = ["authorization_code", "refresh_token", "client_credentials"]
scopes = ["openid", "profile", "api.read"]
token_endpoint_auth_method = "tls_client_auth"
tls_client_auth_subject_dn = "CN=Cổng dịch vụ công,O=UBND TP.HCM,C=VN"
[[clients]]
client_id = "{SELF_CLIENT}"
redirect_uris = []
grant_types = ["client_credentials"]
scopes = ["api.read"]
token_endpoint_auth_method = "self_signed_tls_client_auth"
jwks = {jwks}
[[clients]]
client_id = "{BOUND_SPA}"
redirect_uris = ["{BOUND_SPA_CB}"]
tls_client_certificate_bound_access_tokens = true
[inbound]
trusted_proxies = ["127.0.0.0/8"]
[mtls]
ca_file = "{ca}"
certificate_header = "{HEADER}"
url = "{ALIAS}"
"#,
        ca = ca.display()
    );
    (TestSystem::start_with(Options { extra_config: extra, ..Options::default() }).await, dir)
}

/// Posts a form to a back-channel endpoint as `client_id` over a connection with `cert`.
async fn post_as(
    sys: &TestSystem,
    path: &str,
    cert: Option<&Cert>,
    form: &[(&str, &str)],
) -> (StatusCode, Value) {
    let mut req = reqwest::Client::new().post(sys.url(path)).form(form);
    if let Some(cert) = cert {
        req = req.header(HEADER, &cert.header);
    }
    let (status, _, body) = send(req).await;
    (status, body)
}

async fn userinfo_over(sys: &TestSystem, token: &str, cert: Option<&Cert>) -> (StatusCode, Value) {
    let mut req = reqwest::Client::new().get(sys.url("/userinfo")).bearer_auth(token);
    if let Some(cert) = cert {
        req = req.header(HEADER, &cert.header);
    }
    let (status, _, body) = send(req).await;
    (status, body)
}

/// A person logs in at `client`; the code is redeemed over a connection with `cert`.
async fn log_in(sys: &TestSystem, client: &str, cb: &str, cert: Option<&Cert>) -> (StatusCode, Value) {
    let rp = sys.rp(client, None, cb).await;
    let req = rp.authorize(&[]);
    let landing = Browser::new().login(&req.url, "hcm", HCM_USER, cb).await.callback();
    let code = param(&landing, "code").unwrap();
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", cb),
        ("code_verifier", req.verifier.as_str()),
        ("client_id", client),
    ];
    post_as(sys, "/token", cert, &form).await
}

fn client_credentials(client: &str) -> Vec<(&str, &str)> {
    vec![("grant_type", "client_credentials"), ("client_id", client), ("scope", "api.read")]
}

#[tokio::test]
async fn clients_authenticate_with_their_certificates_and_get_tokens_bound_to_them() {
    let (sys, _dir) = start().await;
    let pki = pki();
    for (client, cert) in [(PKI_CLIENT, &pki.portal), (SELF_CLIENT, &pki.own)] {
        let (status, body) = post_as(&sys, "/token", Some(cert), &client_credentials(client)).await;
        assert_eq!(status, StatusCode::OK, "{client}: {body}");
        assert_eq!(body["token_type"], "Bearer", "RFC 8705 keeps Bearer");
        let claims = jwt_payload(body["access_token"].as_str().unwrap());
        assert_eq!(claims["cnf"], json!({ "x5t#S256": cert.thumbprint() }), "{client}");
        // Introspection (the client authenticates the same way) reports the binding.
        let token = body["access_token"].as_str().unwrap();
        let form = [("client_id", client), ("token", token)];
        let (status, answer) = post_as(&sys, "/introspect", Some(cert), &form).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(answer["active"], true);
        assert_eq!(answer["cnf"]["x5t#S256"], cert.thumbprint());
        assert_eq!(answer["token_type"], "Bearer");
    }
}

#[tokio::test]
async fn a_wrong_or_missing_certificate_is_invalid_client() {
    let (sys, _dir) = start().await;
    let pki = pki();
    let cases = [
        (PKI_CLIENT, Some(&pki.stranger), "another subject of the same CA"),
        (PKI_CLIENT, Some(&pki.own), "a self-signed certificate"),
        (PKI_CLIENT, None, "no certificate"),
        (SELF_CLIENT, Some(&pki.portal), "a certificate of another key"),
        (SELF_CLIENT, None, "no certificate"),
    ];
    for (client, cert, what) in cases {
        let (status, body) = post_as(&sys, "/token", cert, &client_credentials(client)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{client} with {what}: {body}");
        assert_eq!(body["error"], "invalid_client", "{client} with {what}");
    }
    // A certificate client may not fall back to a secret either.
    let (status, _, body) =
        token_request(&sys, Some((PKI_CLIENT, "guess-guess-guess")), &client_credentials(PKI_CLIENT)[..1])
            .await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_client")));
}

#[tokio::test]
async fn a_bound_access_token_works_at_userinfo_only_with_the_same_certificate() {
    let (sys, _dir) = start().await;
    let pki = pki();
    let (status, tokens) = log_in(&sys, PKI_CLIENT, PKI_CB, Some(&pki.portal)).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let access = tokens["access_token"].as_str().unwrap();
    assert_eq!(jwt_payload(access)["cnf"]["x5t#S256"], pki.portal.thumbprint());

    let (status, body) = userinfo_over(&sys, access, Some(&pki.portal)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["sub"].is_string());
    for (cert, what) in [(None, "no certificate"), (Some(&pki.stranger), "another certificate")] {
        let (status, body) = userinfo_over(&sys, access, cert).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}");
        assert_eq!(body["error"], "invalid_token", "{what}");
    }
    // The refresh (the client authenticates with its certificate again) stays bound.
    let rt = tokens["refresh_token"].as_str().unwrap();
    let form = [("grant_type", "refresh_token"), ("refresh_token", rt), ("client_id", PKI_CLIENT)];
    let (status, refreshed) = post_as(&sys, "/token", Some(&pki.portal), &form).await;
    assert_eq!(status, StatusCode::OK, "{refreshed}");
    let access = refreshed["access_token"].as_str().unwrap();
    assert_eq!(jwt_payload(access)["cnf"]["x5t#S256"], pki.portal.thumbprint());
}

#[tokio::test]
async fn a_public_clients_refresh_token_is_bound_to_its_certificate() {
    let (sys, _dir) = start().await;
    let pki = pki();
    // Registered for bound tokens: without a certificate nothing is issued.
    let (status, body) = log_in(&sys, BOUND_SPA, BOUND_SPA_CB, None).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_request")));
    let (status, tokens) = log_in(&sys, BOUND_SPA, BOUND_SPA_CB, Some(&pki.own)).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    assert_eq!(
        jwt_payload(tokens["access_token"].as_str().unwrap())["cnf"]["x5t#S256"],
        pki.own.thumbprint()
    );
    let rt = tokens["refresh_token"].as_str().unwrap();
    let refresh = [("grant_type", "refresh_token"), ("refresh_token", rt), ("client_id", BOUND_SPA)];
    // Another certificate cannot use it, and does not use it up.
    let (status, body) = post_as(&sys, "/token", Some(&pki.stranger), &refresh).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")));
    let (status, body) = post_as(&sys, "/token", Some(&pki.own), &refresh).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn discovery_lists_the_mtls_methods_binding_and_aliases() {
    let (sys, _dir) = start().await;
    let doc: Value =
        reqwest::get(sys.url("/.well-known/openid-configuration")).await.unwrap().json().await.unwrap();
    assert_eq!(doc["tls_client_certificate_bound_access_tokens"], true);
    for key in ["token_endpoint_auth_methods_supported", "introspection_endpoint_auth_methods_supported"] {
        let methods = doc[key].as_array().unwrap();
        assert!(methods.contains(&json!("tls_client_auth")), "{key}");
        assert!(methods.contains(&json!("self_signed_tls_client_auth")), "{key}");
    }
    let aliases = &doc["mtls_endpoint_aliases"];
    assert_eq!(aliases["token_endpoint"], format!("{ALIAS}/token"));
    assert_eq!(aliases["userinfo_endpoint"], format!("{ALIAS}/userinfo"));
    assert_eq!(aliases["introspection_endpoint"], format!("{ALIAS}/introspect"));
    assert_eq!(aliases["pushed_authorization_request_endpoint"], format!("{ALIAS}/par"));
}
