//! The certificate checks and the extraction rules, against certificates made by a test CA.

use std::sync::OnceLock;

use rcgen::{ExtendedKeyUsagePurpose, KeyUsagePurpose};
use sso_test_services::pki::{Ca, Issued, Person};

use super::*;
use crate::config::{Protocol, Settings};

const CCCD: &str = "079203000123";

struct Cas {
    gov: Ca,
    other: Ca,
}

/// The authorities, made once for every test of this module.
fn cas() -> &'static Cas {
    static CAS: OnceLock<Cas> = OnceLock::new();
    CAS.get_or_init(|| Cas { gov: Ca::new("Test Government CA"), other: Ca::new("Unknown CA") })
}

fn now() -> i64 {
    crate::clock::Clock::system().now()
}

fn der(issued: &Issued) -> CertificateDer<'static> {
    CertificateDer::from(issued.cert_der.clone())
}

/// A connector trusting the government test CA, with `extra` lines in its section and
/// the CRL `crl` (DER) as its file when given.
fn connector(extra: &str, crl: Option<Vec<u8>>) -> (tempfile::TempDir, CertificateConnector) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), &cas().gov.cert_pem).unwrap();
    let crl_line = match crl {
        Some(bytes) => {
            std::fs::write(dir.path().join("ca.crl"), bytes).unwrap();
            format!("crl_files = [\"{}/ca.crl\"]", dir.path().display())
        }
        None => "revocation = \"fail_open\"".to_string(),
    };
    let text = format!(
        r#"
issuer = "https://sso.example"
[certificate]
url = "https://cert.sso.example"
[[upstreams]]
id = "chu-ky-so"
kind = "certificate"
name_vi = "Chữ ký số"
name_en = "Digital signature"
[upstreams.certificate]
ca_file = "{dir}/ca.pem"
{crl_line}
{extra}
"#,
        dir = dir.path().display()
    );
    let settings = Settings::from_toml(&text).unwrap();
    let u = &settings.upstreams[0];
    let Protocol::Certificate(cert) = &u.protocol else { panic!("not a certificate upstream") };
    let setup = ConnectorSetup {
        http: &reqwest::Client::new(),
        issuer: &settings.issuer,
        store: &crate::state::StateStore::memory(),
        attempt_ttl: Duration::from_secs(600),
    };
    let c = CertificateConnector::new(u.clone(), cert.clone(), settings.certificate.url.as_deref(), &setup)
        .unwrap();
    (dir, c)
}

fn failure(r: Result<Presented, (CertificateFailure, String)>) -> CertificateFailure {
    match r {
        Ok(p) => panic!("accepted: {p:?}"),
        Err((f, _)) => f,
    }
}

#[tokio::test]
async fn a_valid_certificate_gives_the_national_id_as_subject_and_claims() {
    let (_dir, c) = connector("", Some(cas().gov.current_crl(&[])));
    let mut person = Person::official("Nguyễn Văn An", CCCD, 100);
    person.email = Some("an.nv@tphcm.gov.vn".into());
    let presented = c.verify(&[der(&cas().gov.issue(&person))], now()).await.unwrap();
    assert_eq!(presented.subject, CCCD);
    assert_eq!(presented.claims["national_id"], CCCD);
    assert_eq!(presented.claims["cn"], "Nguyễn Văn An");
    assert_eq!(presented.claims["email"], "an.nv@tphcm.gov.vn", "from the alternative name");
    assert_eq!(presented.claims["o"], "UBND Thành phố Hồ Chí Minh");
    assert_eq!(presented.claims["ou"], "Sở Nội vụ");
    assert_eq!(presented.claims["uid"], format!("CCCD:{CCCD}"));
    assert_eq!(presented.claims[FINGERPRINT_CLAIM].as_str().unwrap().len(), 64);
    assert!(!presented.claims.contains_key(NATIONAL_ID_VERIFIED), "the internal mark never leaves");
}

#[tokio::test]
async fn validity_is_judged_at_the_gateway_clock() {
    let (_dir, c) = connector("", Some(cas().gov.crl(&[], now() - 3600, now() + 10 * 365 * 86_400)));
    let cert = der(&cas().gov.issue(&Person::official("A", CCCD, 101)));
    assert!(c.verify(std::slice::from_ref(&cert), now()).await.is_ok());
    let in_three_years = now() + 3 * 365 * 86_400;
    assert_eq!(
        failure(c.verify(std::slice::from_ref(&cert), in_three_years).await),
        CertificateFailure::Expired
    );
    let two_days_ago = now() - 2 * 86_400;
    assert_eq!(failure(c.verify(&[cert], two_days_ago).await), CertificateFailure::Expired, "not yet valid");
}

#[tokio::test]
async fn a_certificate_in_the_crl_is_revoked_and_others_pass() {
    let (_dir, c) = connector("", Some(cas().gov.current_crl(&[201, 202])));
    let revoked = der(&cas().gov.issue(&Person::official("A", CCCD, 202)));
    assert_eq!(failure(c.verify(&[revoked], now()).await), CertificateFailure::Revoked);
    let fine = der(&cas().gov.issue(&Person::official("B", "079203000124", 203)));
    assert!(c.verify(&[fine], now()).await.is_ok());
}

#[tokio::test]
async fn another_ca_is_unknown_and_no_certificate_is_missing() {
    let (_dir, c) = connector("", Some(cas().gov.current_crl(&[])));
    let foreign = der(&cas().other.issue(&Person::official("A", CCCD, 300)));
    assert_eq!(failure(c.verify(&[foreign], now()).await), CertificateFailure::UnknownIssuer);
    assert_eq!(failure(c.verify(&[], now()).await), CertificateFailure::Missing);
}

#[tokio::test]
async fn without_a_current_crl_fail_closed_refuses_and_fail_open_accepts() {
    let cert = der(&cas().gov.issue(&Person::official("A", CCCD, 400)));
    let stale = cas().gov.crl(&[401], now() - 3 * 86_400, now() - 86_400);
    let (_dir, closed) = connector("", Some(stale.clone()));
    assert_eq!(
        failure(closed.verify(std::slice::from_ref(&cert), now()).await),
        CertificateFailure::RevocationUnknown
    );
    let (_dir, open) = connector("revocation = \"fail_open\"", Some(stale));
    assert!(open.verify(std::slice::from_ref(&cert), now()).await.is_ok());
    // An expired CRL still tells of the revocations it lists.
    let listed = der(&cas().gov.issue(&Person::official("B", CCCD, 401)));
    assert_eq!(failure(open.verify(&[listed], now()).await), CertificateFailure::Revoked);
    let (_dir, no_crl) = connector("", None);
    assert!(no_crl.verify(&[cert], now()).await.is_ok(), "fail_open without any CRL");
}

#[tokio::test]
async fn key_usage_must_allow_authentication() {
    let (_dir, c) = connector("", Some(cas().gov.current_crl(&[])));
    let mut server_only = Person::official("A", CCCD, 500);
    server_only.eku = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = der(&cas().gov.issue(&server_only));
    assert_eq!(failure(c.verify(std::slice::from_ref(&cert), now()).await), CertificateFailure::NotUsable);
    let (_dir, any) = connector("extended_key_usage = \"any\"", Some(cas().gov.current_crl(&[])));
    assert!(any.verify(&[cert], now()).await.is_ok());
    let mut no_signature = Person::official("A", CCCD, 501);
    no_signature.key_usage = vec![KeyUsagePurpose::KeyEncipherment];
    let cert = der(&cas().gov.issue(&no_signature));
    assert_eq!(failure(c.verify(&[cert], now()).await), CertificateFailure::NotUsable);
    let mut unstated = Person::official("A", CCCD, 502);
    unstated.eku.clear();
    unstated.key_usage.clear();
    assert!(c.verify(&[der(&cas().gov.issue(&unstated))], now()).await.is_ok(), "no extensions: no limits");
}

#[tokio::test]
async fn a_certificate_without_a_personal_number_matches_no_account() {
    let (_dir, c) = connector("", Some(cas().gov.current_crl(&[])));
    let mut organisation = Person::official("Sở Nội vụ", CCCD, 600);
    organisation.uid = Some("MST:0301234567".into());
    let cert = der(&cas().gov.issue(&organisation));
    assert_eq!(failure(c.verify(std::slice::from_ref(&cert), now()).await), CertificateFailure::NoNationalId);
    let mut cmnd = Person::official("A", CCCD, 601);
    cmnd.uid = Some("CMND:023456789".into());
    let old = der(&cas().gov.issue(&cmnd));
    assert_eq!(failure(c.verify(std::slice::from_ref(&old), now()).await), CertificateFailure::NoNationalId);
    let (_dir, lenient) = connector("require_national_id = false", Some(cas().gov.current_crl(&[])));
    let p = lenient.verify(&[old], now()).await.unwrap();
    assert!(p.subject.starts_with("sha256:"), "{}", p.subject);
    assert_eq!(p.claims["national_id"], "023456789", "kept for accounts to record as an alias");
}

fn subject_of(person: &Person, rules: &[ExtractionRule]) -> Presented {
    read_subject(&der(&cas().gov.issue(person)), rules).unwrap()
}

fn rule(from: SubjectField, prefix: &str, claim: &str) -> ExtractionRule {
    ExtractionRule { from, prefix: prefix.into(), claim: claim.into() }
}

#[test]
fn the_default_rules_read_cccd_and_cmnd_from_uid() {
    let defaults = crate::config::CertificateLoginSettings::default_rules();
    let mut p = Person::official("A", CCCD, 700);
    p.uid = Some("cccd: 079 203 000 123".into());
    let s = subject_of(&p, &defaults);
    assert_eq!(s.claims["national_id"], "079 203 000 123", "prefix case ignored, value trimmed");
    assert_eq!(s.subject, CCCD, "the number as the national-ID rules normalise it");
    p.uid = Some("CMND:079203000123".into());
    assert_eq!(subject_of(&p, &defaults).subject, CCCD, "a 12-digit CMND is the personal number");
    p.uid = Some("HC:C1234567".into());
    let s = subject_of(&p, &defaults);
    assert!(!s.claims.contains_key("national_id"));
    assert!(s.subject.starts_with("sha256:"));
}

#[test]
fn configured_rules_read_other_fields_and_the_first_match_wins() {
    let rules = vec![
        rule(SubjectField::Uid, "MST:", "tax_code"),
        rule(SubjectField::Uid, "CMND:", "national_id"),
        rule(SubjectField::Uid, "CCCD:", "national_id"),
        rule(SubjectField::Ou, "", "agency"),
        rule(SubjectField::O, "", "agency"),
        rule(SubjectField::Cn, "Ông ", "cn"),
    ];
    let mut p = Person::official("Lê Văn C", CCCD, 701);
    let s = subject_of(&p, &rules);
    assert!(!s.claims.contains_key("tax_code"), "no value matched");
    assert_eq!(s.claims["national_id"], CCCD, "the CMND rule did not match, the CCCD one did");
    assert_eq!(s.claims["agency"], "Sở Nội vụ", "OU's rule comes first");
    assert_eq!(s.claims["cn"], "Lê Văn C", "no rule matched: the field itself");
    assert_eq!(s.subject, CCCD);
    p.uid = Some("MST:0301234567".into());
    p.cn = "Ông Lê Văn C".into();
    let s = subject_of(&p, &rules);
    assert_eq!(s.claims["tax_code"], "0301234567");
    assert_eq!(s.claims["cn"], "Lê Văn C", "a rule's claim wins over the field");
    assert!(s.subject.starts_with("sha256:"));
    assert!(
        apply_rule(&rule(SubjectField::Uid, "CCCD:", "x"), &[(SubjectField::Uid, "CCCD:".into())]).is_none()
    );
    assert!(
        apply_rule(&rule(SubjectField::Uid, "CCCD:", "x"), &[(SubjectField::Uid, "CC".into())]).is_none()
    );
    assert!(
        apply_rule(&rule(SubjectField::Uid, "CCCD:", "x"), &[(SubjectField::Uid, "Ấ".into())]).is_none(),
        "a prefix cut inside a character is no match"
    );
}

#[test]
fn a_forwarded_certificate_is_read_as_escaped_pem_or_base64_der() {
    let issued = cas().gov.issue(&Person::official("A", CCCD, 800));
    let escaped: String =
        percent_encoding::utf8_percent_encode(&issued.cert_pem, percent_encoding::NON_ALPHANUMERIC)
            .to_string();
    assert_eq!(forwarded_chain(&escaped).unwrap(), vec![der(&issued)]);
    let b64 = base64::engine::general_purpose::STANDARD.encode(&issued.cert_der);
    assert_eq!(forwarded_chain(&b64).unwrap(), vec![der(&issued)]);
    for none in ["", "  ", "-", "(null)"] {
        assert!(forwarded_chain(none).unwrap().is_empty(), "{none:?}");
    }
    assert!(forwarded_chain("not a certificate!").is_err());
    assert!(forwarded_chain(&"A".repeat(MAX_FORWARDED_BYTES + 4)).is_err());
}

#[tokio::test]
async fn the_certificate_step_runs_once_per_started_attempt_and_its_outcome_once() {
    let (_dir, c) = connector("", Some(cas().gov.current_crl(&[])));
    let cert = der(&cas().gov.issue(&Person::official("A", CCCD, 900)));
    assert!(matches!(
        c.present("never-started", std::slice::from_ref(&cert), None, now()).await,
        Err(BrokerError::AttemptNotFound)
    ));
    let ctx = StartContext {
        attempt: "a1",
        force_login: false,
        max_age: None,
        login_hint: None,
        lang: Default::default(),
    };
    let Started::Redirect { url, data } = c.start(ctx).await.unwrap() else { panic!("a redirect") };
    assert_eq!(url, "https://cert.sso.example/upstream/chu-ky-so/certificate?attempt=a1");
    let back = c.present("a1", std::slice::from_ref(&cert), None, now()).await.unwrap();
    assert!(
        back.starts_with("https://sso.example/upstream/chu-ky-so/callback?attempt=a1&outcome="),
        "{back}"
    );
    assert!(matches!(c.present("a1", &[cert], None, now()).await, Err(BrokerError::AttemptNotFound)), "once");
    let query: Vec<(String, String)> = serde_urlencoded::from_str(back.split_once('?').unwrap().1).unwrap();
    let params: CallbackParams = query.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let other: CallbackParams =
        [("attempt", "a2"), ("outcome", params.get("outcome").unwrap())].into_iter().collect();
    assert!(
        matches!(c.finish(&data, Answer::Redirect(&other)).await, Err(BrokerError::AttemptNotFound)),
        "another attempt's"
    );
    // The mismatched try used the outcome up: redeemed once, whoever tries.
    assert!(matches!(c.finish(&data, Answer::Redirect(&params)).await, Err(BrokerError::AttemptNotFound)));
}

#[tokio::test]
async fn a_refused_certificate_is_redeemed_as_its_reason() {
    let (_dir, c) = connector("", Some(cas().gov.current_crl(&[])));
    let ctx = StartContext {
        attempt: "b1",
        force_login: false,
        max_age: None,
        login_hint: None,
        lang: Default::default(),
    };
    let Started::Redirect { data, .. } = c.start(ctx).await.unwrap() else { panic!("a redirect") };
    let back = c.present("b1", &[], None, now()).await.unwrap();
    let query: Vec<(String, String)> = serde_urlencoded::from_str(back.split_once('?').unwrap().1).unwrap();
    let params: CallbackParams = query.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    match c.finish(&data, Answer::Redirect(&params)).await {
        Err(BrokerError::CertificateRefused { reason: CertificateFailure::Missing, .. }) => {}
        other => panic!("{other:?}"),
    }
}
