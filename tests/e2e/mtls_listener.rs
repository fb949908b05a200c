//! The gateway's own mTLS listener (RFC 8705 §5, issue 14): RPs reach `/token`,
//! `/userinfo`, `/introspect`, `/revoke` and `/par` on a host of their own over real TLS,
//! presenting their client certificate in the handshake (certificates from the test
//! authorities of `sso_test_services::pki`); discovery lists that host in
//! `mtls_endpoint_aliases`, and DPoP proofs may name it.

use std::sync::OnceLock;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::Digest;
use sso_test_services::pki::{Ca, Issued, Person};

use crate::helpers::*;

/// `tls_client_auth`, registered by the e-mail address in its certificate.
const PKI_CLIENT: &str = "mtls-portal";
const PKI_CB: &str = "http://127.0.0.1:9/mtls/cb";
const PKI_EMAIL: &str = "cong-dvc@hcm.gov.vn";
/// `self_signed_tls_client_auth`.
const SELF_CLIENT: &str = "mtls-self";

struct Pki {
    /// Issues the listener's server certificate and the RPs' client certificates.
    ca: Ca,
    host: Issued,
    portal: Issued,
    /// Same e-mail address, another CA.
    forged: Issued,
    /// Self-signed, registered in `mtls-self`'s `jwks`: (certificate + key PEM, DER, JWK).
    own_identity: String,
    own_der: Vec<u8>,
    own_jwk: Value,
}

fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| {
        let ca = Ca::new("RP CA (test)");
        let other = Ca::new("Other CA (test)");
        let host = ca.server(&["127.0.0.1", "localhost"]);
        let mut person = Person::official("Cổng dịch vụ công", "079203000001", 21);
        person.email = Some(PKI_EMAIL.into());
        let portal = ca.issue(&person);
        person.serial = 22;
        let forged = other.issue(&person);
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, "rp-self");
        let own = params.self_signed(&key).unwrap();
        let point = key.public_key_raw();
        let own_jwk = json!({
            "kty": "EC", "crv": "P-256", "x": B64.encode(&point[1..33]), "y": B64.encode(&point[33..65]),
        });
        Pki {
            own_identity: format!("{}{}", own.pem(), key.serialize_pem()),
            own_der: own.der().to_vec(),
            own_jwk,
            ca,
            host,
            portal,
            forged,
        }
    })
}

fn thumbprint(der: &[u8]) -> String {
    B64.encode(sha2::Sha256::digest(der))
}

async fn start() -> (TestSystem, tempfile::TempDir) {
    let p = pki();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rp-ca.pem"), &p.ca.cert_pem).unwrap();
    std::fs::write(dir.path().join("host.pem"), &p.host.cert_pem).unwrap();
    std::fs::write(dir.path().join("host.key"), &p.host.key_pem).unwrap();
    let d = dir.path().display();
    let jwks = toml::Value::try_from(json!({ "keys": [p.own_jwk] })).unwrap();
    let extra = format!(
        r#"
[[clients]]
client_id = "{PKI_CLIENT}"
redirect_uris = ["{PKI_CB}"]
grant_types = ["authorization_code", "refresh_token", "client_credentials"]
scopes = ["openid", "profile", "api.read"]
token_endpoint_auth_method = "tls_client_auth"
tls_client_auth_san_email = "{PKI_EMAIL}"
[[clients]]
client_id = "{SELF_CLIENT}"
redirect_uris = []
grant_types = ["client_credentials"]
scopes = ["api.read"]
token_endpoint_auth_method = "self_signed_tls_client_auth"
jwks = {jwks}
[mtls]
listen = "127.0.0.1:{{mtls_port}}"
url = "https://127.0.0.1:{{mtls_port}}"
tls_cert = "{d}/host.pem"
tls_key = "{d}/host.key"
ca_file = "{d}/rp-ca.pem"
"#
    );
    let options = Options { extra_config: extra, mtls_host: true, ..Options::default() };
    (TestSystem::start_with(options).await, dir)
}

/// An HTTPS client of the mTLS host presenting `identity` (certificate + key PEM), if any.
fn client(identity: Option<&str>) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(pki().ca.cert_pem.as_bytes()).unwrap());
    if let Some(pem) = identity {
        builder = builder.identity(reqwest::Identity::from_pem(pem.as_bytes()).unwrap());
    }
    builder.build().unwrap()
}

fn mtls_url(sys: &TestSystem, path: &str) -> String {
    format!("https://127.0.0.1:{}{path}", sys.mtls_addr.unwrap().port())
}

async fn post(
    sys: &TestSystem,
    path: &str,
    identity: Option<&str>,
    form: &[(&str, &str)],
) -> (StatusCode, Value) {
    let (status, _, body) = send(client(identity).post(mtls_url(sys, path)).form(form)).await;
    (status, body)
}

fn client_credentials(client: &str) -> Vec<(&str, &str)> {
    vec![("grant_type", "client_credentials"), ("client_id", client), ("scope", "api.read")]
}

#[tokio::test]
async fn discovery_points_the_aliases_at_the_mtls_listener() {
    let (sys, _dir) = start().await;
    let doc: Value =
        reqwest::get(sys.url("/.well-known/openid-configuration")).await.unwrap().json().await.unwrap();
    let aliases = &doc["mtls_endpoint_aliases"];
    for (key, path) in [
        ("token_endpoint", "/token"),
        ("userinfo_endpoint", "/userinfo"),
        ("introspection_endpoint", "/introspect"),
        ("revocation_endpoint", "/revoke"),
        ("pushed_authorization_request_endpoint", "/par"),
    ] {
        assert_eq!(aliases[key], mtls_url(&sys, path), "{key}");
    }
    assert_eq!(doc["tls_client_certificate_bound_access_tokens"], true);
    let methods = doc["token_endpoint_auth_methods_supported"].as_array().unwrap();
    assert!(
        methods.contains(&json!("tls_client_auth"))
            && methods.contains(&json!("self_signed_tls_client_auth"))
    );
    // The listener serves the back channel only: no login pages on the mTLS host.
    let res = client(None).get(mtls_url(&sys, "/authorize")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn tls_client_auth_at_the_listener_gives_tokens_bound_to_the_handshake_certificate() {
    let (sys, _dir) = start().await;
    let p = pki();
    let portal = p.portal.identity_pem();
    let rp = sys.rp(PKI_CLIENT, None, PKI_CB).await;
    let req = rp.authorize(&[]);
    let landing = Browser::new().login(&req.url, "hcm", HCM_USER, PKI_CB).await.callback();
    let code = param(&landing, "code").unwrap();
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", PKI_CB),
        ("code_verifier", req.verifier.as_str()),
        ("client_id", PKI_CLIENT),
    ];
    let (status, tokens) = post(&sys, "/token", Some(&portal), &form).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let access = tokens["access_token"].as_str().unwrap();
    assert_eq!(jwt_payload(access)["cnf"]["x5t#S256"], thumbprint(&p.portal.cert_der));

    let userinfo = |identity: Option<String>| {
        let url = mtls_url(&sys, "/userinfo");
        async move {
            let (status, _, body) = send(client(identity.as_deref()).get(url).bearer_auth(access)).await;
            (status, body)
        }
    };
    let (status, body) = userinfo(Some(portal.clone())).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["sub"].is_string());
    for (identity, what) in [(None, "no certificate"), (Some(p.forged.identity_pem()), "another certificate")]
    {
        let (status, body) = userinfo(identity).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("invalid_token")),
            "{what}"
        );
    }
    // Without the handshake's certificate, the issuer's own host cannot use the token either.
    let (status, _, _) = send(reqwest::Client::new().get(sys.url("/userinfo")).bearer_auth(access)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // Introspection on the listener reports the binding.
    let (status, answer) =
        post(&sys, "/introspect", Some(&portal), &[("client_id", PKI_CLIENT), ("token", access)]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["cnf"]["x5t#S256"], thumbprint(&p.portal.cert_der));
}

#[tokio::test]
async fn self_signed_clients_use_the_listener_and_wrong_certificates_are_refused() {
    let (sys, _dir) = start().await;
    let p = pki();
    let (status, body) = post(&sys, "/token", Some(&p.own_identity), &client_credentials(SELF_CLIENT)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let claims = jwt_payload(body["access_token"].as_str().unwrap());
    assert_eq!(claims["cnf"]["x5t#S256"], thumbprint(&p.own_der));
    let cases = [
        (PKI_CLIENT, Some(p.forged.identity_pem()), "the registered e-mail from another CA"),
        (PKI_CLIENT, Some(p.own_identity.clone()), "a self-signed certificate"),
        (PKI_CLIENT, None, "no certificate"),
        (SELF_CLIENT, Some(p.portal.identity_pem()), "a certificate of another key"),
        (SELF_CLIENT, None, "no certificate"),
    ];
    for (id, identity, what) in cases {
        let (status, body) = post(&sys, "/token", identity.as_deref(), &client_credentials(id)).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("invalid_client")),
            "{id}: {what}"
        );
    }
}

#[tokio::test]
async fn dpop_proofs_may_name_the_mtls_host_but_no_other() {
    let (sys, _dir) = start().await;
    let key = DpopKey::new();
    let form = [("grant_type", "client_credentials"), ("scope", "hotline.read")];
    let request = |htu: String| {
        let proof = key.proof("POST", &htu, None, None);
        client(None)
            .post(mtls_url(&sys, "/token"))
            .basic_auth(M2M, Some(M2M_SECRET))
            .header("DPoP", proof)
            .form(&form)
    };
    let (status, _, body) = send(request(mtls_url(&sys, "/token"))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["token_type"], "DPoP");
    assert_eq!(jwt_payload(body["access_token"].as_str().unwrap())["cnf"]["jkt"], key.jkt);
    // The issuer's URL for the same endpoint is good too (both hosts serve it) ...
    let (status, _, body) = send(request(sys.url("/token"))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // ... any other host is not.
    let (status, _, body) = send(request("https://elsewhere.example/token".into())).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_dpop_proof")),
        "{body}"
    );
}
