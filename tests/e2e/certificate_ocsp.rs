//! OCSP for certificate login (issue 14): certificates that name a responder (Authority
//! Information Access) are checked with it — good, revoked and unknown answers, a forged or
//! stale answer not believed, a delegated responder believed, a responder that is down
//! handled by the upstream's `revocation` policy, and answers cached until `nextUpdate`.
//! Each test has its own CA and responder (`sso_test_services::ocsp`); no CRL is configured,
//! so OCSP alone decides.

use reqwest::StatusCode;
use sso_test_services::ocsp::{Answer, OcspResponder};
use sso_test_services::pki::{Ca, Issued, Person};

use crate::helpers::*;

const UPSTREAM: &str = "chu-ky-so";

struct Setup {
    sys: TestSystem,
    tls: Ca,
    ocsp: OcspResponder,
    ca: Ca,
    _dir: tempfile::TempDir,
}

/// A gateway whose certificate upstream trusts a fresh CA with a responder that knows
/// `revoked` and `unknown` serials, under revocation policy `policy`.
async fn start(policy: &str, revoked: &[u64], unknown: &[u64]) -> Setup {
    let ca = Ca::new("CA có OCSP (test)");
    let tls = Ca::new("Certificate host TLS CA (test)");
    let host = tls.server(&["127.0.0.1", "localhost"]);
    let ocsp = OcspResponder::start(&ca, revoked, unknown).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), &ca.cert_pem).unwrap();
    std::fs::write(dir.path().join("host.pem"), &host.cert_pem).unwrap();
    std::fs::write(dir.path().join("host.key"), &host.key_pem).unwrap();
    let d = dir.path().display();
    let extra = format!(
        r#"
[certificate]
url = "https://127.0.0.1:{{certificate_port}}"
listen = "127.0.0.1:{{certificate_port}}"
tls_cert = "{d}/host.pem"
tls_key = "{d}/host.key"

[[upstreams]]
id = "{UPSTREAM}"
kind = "certificate"
name_vi = "Chữ ký số cán bộ, công chức"
name_en = "Officials' digital signature"
[upstreams.certificate]
ca_file = "{d}/ca.pem"
revocation = "{policy}"
"#
    );
    let sys =
        TestSystem::start_with(Options { extra_config: extra, certificate_host: true, ..Options::default() })
            .await;
    Setup { sys, tls, ocsp, ca, _dir: dir }
}

impl Setup {
    fn issue(&self, serial: u64) -> Issued {
        let person = Person::official("Nguyễn Thị Lan", "079190004512", serial);
        self.ca.issue_with_ocsp(&person, &self.ocsp.url)
    }

    /// A certificate login presenting `identity` over TLS; where it ends (the RP's callback
    /// when it succeeded).
    async fn login(&self, identity: &Issued) -> Landing {
        let http = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(self.tls.cert_pem.as_bytes()).unwrap())
            .identity(reqwest::Identity::from_pem(identity.identity_pem().as_bytes()).unwrap())
            .cookie_store(true)
            .pool_max_idle_per_host(0)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(std::time::Duration::from_secs(20))
            .build()
            .unwrap();
        let browser = Browser { http };
        let rp = self.sys.rp(PORTAL, Some(PORTAL_SECRET), PORTAL_CB).await;
        let req = rp.authorize(&[]);
        let (url, status, body) = browser.navigate(&req.url, PORTAL_CB).await.page();
        assert_eq!(status, StatusCode::OK, "{body}");
        let target = url::Url::parse(&url).unwrap().join(&chooser_link(&body, UPSTREAM)).unwrap();
        browser.navigate(target.as_str(), PORTAL_CB).await
    }

    async fn logs_in(&self, identity: &Issued, what: &str) {
        match self.login(identity).await {
            Landing::Callback(url) => assert!(param(&url, "code").is_some(), "{what}: {url}"),
            Landing::Page { url, status, body } => panic!("{what}: ended on {url} {status}: {body}"),
        }
    }

    async fn refused(&self, identity: &Issued, what: &str, (expected, vietnamese): (StatusCode, &str)) {
        let (url, status, body) = self.login(identity).await.page();
        assert_eq!(status, expected, "{what}: {url} {body}");
        assert!(body.contains(vietnamese), "{what}: {body}");
    }
}

const REVOKED: (StatusCode, &str) = (StatusCode::UNAUTHORIZED, "Chứng thư số đã bị thu hồi");
/// The status cannot be known (`fail_closed`).
const UNCHECKED: (StatusCode, &str) =
    (StatusCode::SERVICE_UNAVAILABLE, "Chưa kiểm tra được tình trạng chứng thư số");
/// OCSP `unknown`: the CA does not know the certificate.
const NOT_ACCEPTED: (StatusCode, &str) = (StatusCode::UNAUTHORIZED, "Chứng thư số không được chấp nhận");

#[tokio::test]
async fn the_responder_decides_good_revoked_and_unknown_and_good_answers_are_cached() {
    let s = start("fail_closed", &[2], &[3]).await;
    let good = s.issue(1);
    s.logs_in(&good, "good").await;
    assert_eq!(s.ocsp.hits(), 1);
    // The answer is current for an hour: the second login does not ask again.
    s.logs_in(&good, "good, cached").await;
    assert_eq!(s.ocsp.hits(), 1, "a cached answer is used");
    s.refused(&s.issue(2), "revoked", REVOKED).await;
    s.refused(&s.issue(3), "unknown", NOT_ACCEPTED).await;
    assert_eq!(s.ocsp.hits(), 3);
}

#[tokio::test]
async fn forged_and_stale_answers_are_not_believed_but_a_delegated_responder_is() {
    let s = start("fail_closed", &[], &[]).await;
    s.ocsp.set_answer(Answer::ForeignKey);
    s.refused(&s.issue(11), "signed by another key", UNCHECKED).await;
    s.ocsp.set_answer(Answer::Stale);
    s.refused(&s.issue(12), "nextUpdate passed", UNCHECKED).await;
    s.ocsp.set_answer(Answer::Delegated);
    s.logs_in(&s.issue(13), "delegated responder").await;
}

#[tokio::test]
async fn a_responder_that_is_down_fails_closed_or_open_as_configured() {
    let closed = start("fail_closed", &[], &[]).await;
    closed.ocsp.set_answer(Answer::Down);
    closed.refused(&closed.issue(21), "responder down, fail_closed", UNCHECKED).await;
    let open = start("fail_open", &[22], &[]).await;
    open.ocsp.set_answer(Answer::Down);
    open.logs_in(&open.issue(21), "responder down, fail_open").await;
    // fail_open never overrides an answer: a revocation still refuses.
    open.ocsp.set_answer(Answer::Signed);
    open.refused(&open.issue(22), "revoked, fail_open", REVOKED).await;
}
