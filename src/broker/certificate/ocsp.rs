//! OCSP (RFC 6960) for certificate login: asks the responder a certificate names (its
//! Authority Information Access) whether it is revoked, and believes only an answer signed
//! by the certificate's issuer or by a responder certificate that issuer made for OCSP
//! signing.
//!
//! Owns: building the request and reading the response (typed DER of the `x509-ocsp` and
//! `x509-cert` crates, nothing parsed by hand), checking the answer (signature through
//! rustls-webpki and aws-lc-rs, certID, `thisUpdate`/`nextUpdate` at the gateway's clock) and
//! the bounded cache of answers (kept until their `nextUpdate`, so a login never waits for a
//! responder whose answer is cached). Must not: decide what an unavailable answer means — the
//! connector applies the upstream's `revocation` policy, as for CRLs.
//!
//! No nonce is sent: answers are cached and shared by every login until `nextUpdate`
//! (RFC 5019), so their freshness is bounded by `thisUpdate`/`nextUpdate` instead.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, UnixTime};
use sha2::{Digest, Sha256};
use x509_cert::Certificate;
use x509_cert::der::asn1::{AnyRef, Null, OctetString};
use x509_cert::der::oid::db::rfc5280::{ID_AD_OCSP, ID_PE_AUTHORITY_INFO_ACCESS};
use x509_cert::der::oid::db::rfc5912::ID_SHA_256;
use x509_cert::der::oid::db::rfc6960::ID_PKIX_OCSP_BASIC;
use x509_cert::der::{Decode, Encode};
use x509_cert::ext::pkix::AuthorityInfoAccessSyntax;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::spki::AlgorithmIdentifierOwned;
use x509_ocsp::{
    BasicOcspResponse, CertId, CertStatus, OcspRequest, OcspResponse, OcspResponseStatus, Request, TbsRequest,
};

/// id-kp-OCSPSigning (1.3.6.1.5.5.7.3.9), the value bytes webpki compares.
const OCSP_SIGNING: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x09];
/// Largest answer read from a responder.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// How far a responder's clock may run ahead of the gateway's.
const LEEWAY_SECS: i64 = 300;
/// How long an answer without `nextUpdate` is used (and may be old).
const NO_NEXT_UPDATE_SECS: i64 = 3600;
/// How long a failed exchange is remembered, so a dead responder does not cost every login
/// a timeout.
const FAILURE_TTL_SECS: i64 = 60;
/// Most answers kept (one per certificate and responder).
const MAX_ENTRIES: usize = 10_000;

/// What a responder said of one certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OcspStatus {
    Good,
    Revoked,
    /// The responder does not know the certificate.
    Unknown,
    /// No usable answer: the responder is down or slow, or its answer is unsigned, signed by
    /// another key, for another certificate or out of date.
    Unavailable(String),
}

#[derive(Clone)]
struct Cached {
    status: OcspStatus,
    until: i64,
}

/// The OCSP client of one certificate upstream.
pub struct Ocsp {
    http: reqwest::Client,
    timeout: Duration,
    cache: Mutex<HashMap<(String, Vec<u8>), Cached>>,
}

impl Ocsp {
    pub fn new(http: reqwest::Client, timeout: Duration) -> Self {
        Ocsp { http, timeout, cache: Mutex::new(HashMap::new()) }
    }

    /// The status of `leaf`, issued by `issuer`, from the responder at `url`, at `now`: the
    /// cached answer while it is current, else the responder's.
    pub async fn status(
        &self,
        url: &str,
        leaf: &Certificate,
        issuer: &CertificateDer<'_>,
        now: i64,
    ) -> OcspStatus {
        let cert_id = match cert_id(leaf, issuer) {
            Ok(id) => id,
            Err(e) => return OcspStatus::Unavailable(e),
        };
        let key = (url.to_string(), cert_id.to_der().unwrap_or_default());
        if let Some(hit) = self.cache.lock().ok().and_then(|c| c.get(&key).cloned())
            && hit.until > now
        {
            return hit.status;
        }
        let (status, until) = match self.ask(url, &cert_id, issuer, now).await {
            Ok((status, until)) => (status, until),
            Err(e) => (OcspStatus::Unavailable(e), now + FAILURE_TTL_SECS),
        };
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= MAX_ENTRIES {
                cache.retain(|_, c| c.until > now);
                if cache.len() >= MAX_ENTRIES {
                    cache.clear();
                }
            }
            cache.insert(key, Cached { status: status.clone(), until });
        }
        status
    }

    async fn ask(
        &self,
        url: &str,
        cert_id: &CertId,
        issuer: &CertificateDer<'_>,
        now: i64,
    ) -> Result<(OcspStatus, i64), String> {
        let request = OcspRequest {
            tbs_request: TbsRequest {
                request_list: vec![Request { req_cert: cert_id.clone(), single_request_extensions: None }],
                ..TbsRequest::default()
            },
            optional_signature: None,
        }
        .to_der()
        .map_err(|e| e.to_string())?;
        let exchange = async {
            let mut response = self
                .http
                .post(url)
                .header("content-type", "application/ocsp-request")
                .header("accept", "application/ocsp-response")
                .body(request)
                .timeout(self.timeout)
                .send()
                .await
                .map_err(|e| format!("responder: {e}"))?;
            if !response.status().is_success() {
                return Err(format!("responder answered HTTP {}", response.status()));
            }
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
                if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                    return Err(format!("answer larger than {MAX_RESPONSE_BYTES} bytes"));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(body)
        };
        let body = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| format!("no answer within {:?}", self.timeout))??;
        check_response(&body, cert_id, issuer, now)
    }
}

/// The OCSP responder URL a certificate names (its first `http(s)` one), if any.
pub fn responder_url(leaf: &Certificate) -> Option<String> {
    let extensions = leaf.tbs_certificate.extensions.as_ref()?;
    let aia = extensions.iter().find(|e| e.extn_id == ID_PE_AUTHORITY_INFO_ACCESS)?;
    let aia = AuthorityInfoAccessSyntax::from_der(aia.extn_value.as_bytes()).ok()?;
    aia.0.iter().filter(|d| d.access_method == ID_AD_OCSP).find_map(|d| match &d.access_location {
        GeneralName::UniformResourceIdentifier(uri) => {
            let uri = uri.to_string();
            (uri.starts_with("http://") || uri.starts_with("https://")).then_some(uri)
        }
        _ => None,
    })
}

/// The certificate among `candidates` whose subject is `leaf`'s issuer.
pub fn find_issuer<'a>(
    leaf: &Certificate,
    candidates: &'a [CertificateDer<'a>],
) -> Option<&'a CertificateDer<'a>> {
    let issuer = leaf.tbs_certificate.issuer.to_der().ok()?;
    candidates.iter().find(|c| {
        Certificate::from_der(c.as_ref())
            .ok()
            .and_then(|c| c.tbs_certificate.subject.to_der().ok())
            .is_some_and(|s| s == issuer)
    })
}

/// The certID of `leaf` (RFC 6960 §4.1.1, SHA-256): hashes of its issuer's name and key, and
/// its serial number.
pub fn cert_id(leaf: &Certificate, issuer: &CertificateDer<'_>) -> Result<CertId, String> {
    let issuer = Certificate::from_der(issuer.as_ref()).map_err(|e| format!("issuer: {e}"))?;
    let name = issuer.tbs_certificate.subject.to_der().map_err(|e| e.to_string())?;
    let key = issuer.tbs_certificate.subject_public_key_info.subject_public_key.raw_bytes();
    let octets = |b: &[u8]| OctetString::new(Sha256::digest(b).to_vec()).map_err(|e| e.to_string());
    Ok(CertId {
        hash_algorithm: AlgorithmIdentifierOwned { oid: ID_SHA_256, parameters: Some(Null.into()) },
        issuer_name_hash: octets(&name)?,
        issuer_key_hash: octets(key)?,
        serial_number: leaf.tbs_certificate.serial_number.clone(),
    })
}

/// Checks a responder's answer for `cert_id` at `now`: a successful basic response, signed
/// by `issuer` or by a certificate `issuer` made for OCSP signing, with a single response for
/// this certID that is current. The status and until when it may be used.
pub fn check_response(
    body: &[u8],
    cert_id: &CertId,
    issuer: &CertificateDer<'_>,
    now: i64,
) -> Result<(OcspStatus, i64), String> {
    let response = OcspResponse::from_der(body).map_err(|e| format!("not an OCSP response: {e}"))?;
    if response.response_status != OcspResponseStatus::Successful {
        return Err(format!("responder status {:?}", response.response_status));
    }
    let bytes = response.response_bytes.ok_or("a successful response without content")?;
    if bytes.response_type != ID_PKIX_OCSP_BASIC {
        return Err(format!("response type {} is not basic", bytes.response_type));
    }
    let basic = BasicOcspResponse::from_der(bytes.response.as_bytes())
        .map_err(|e| format!("not a basic OCSP response: {e}"))?;
    verify_signature(&basic, issuer, now)?;
    let single = basic
        .tbs_response_data
        .responses
        .iter()
        .find(|r| &r.cert_id == cert_id)
        .ok_or("the answer is not about this certificate (certID)")?;
    let this_update = unix(&single.this_update.0);
    if this_update > now + LEEWAY_SECS {
        return Err("thisUpdate is in the future".into());
    }
    let until = match &single.next_update {
        Some(next) => unix(&next.0),
        None => this_update + NO_NEXT_UPDATE_SECS,
    };
    if until + LEEWAY_SECS < now {
        return Err("the answer is out of date (nextUpdate passed)".into());
    }
    let status = match single.cert_status {
        CertStatus::Good(_) => OcspStatus::Good,
        CertStatus::Revoked(_) => OcspStatus::Revoked,
        CertStatus::Unknown(_) => OcspStatus::Unknown,
    };
    Ok((status, until.max(now + 1)))
}

fn unix(t: &x509_cert::der::asn1::GeneralizedTime) -> i64 {
    t.to_unix_duration().as_secs() as i64
}

/// The signature of the answer: by the issuer's key, or by a delegated responder
/// certificate in the answer that the issuer signed, valid now and allowed
/// id-kp-OCSPSigning (checked by webpki with the issuer as the only trust anchor).
fn verify_signature(basic: &BasicOcspResponse, issuer: &CertificateDer<'_>, now: i64) -> Result<(), String> {
    let tbs = basic.tbs_response_data.to_der().map_err(|e| e.to_string())?;
    let signature = basic.signature.as_bytes().ok_or("the signature is not whole bytes")?;
    let alg = basic.signature_algorithm.to_der().map_err(|e| e.to_string())?;
    let alg = AnyRef::from_der(&alg).map_err(|e| e.to_string())?;
    let algorithms = rustls::crypto::aws_lc_rs::default_provider().signature_verification_algorithms.all;
    let by = |signer: &CertificateDer<'_>| -> bool {
        let Ok(cert) = webpki::EndEntityCert::try_from(signer) else { return false };
        algorithms
            .iter()
            .filter(|a| a.signature_alg_id().as_ref() == alg.value())
            .any(|a| cert.verify_signature(*a, &tbs, signature).is_ok())
    };
    if by(issuer) {
        return Ok(());
    }
    let anchor = webpki::anchor_from_trusted_cert(issuer).map_err(|e| format!("issuer: {e:?}"))?;
    let time = UnixTime::since_unix_epoch(Duration::from_secs(now.max(0) as u64));
    for cert in basic.certs.iter().flatten() {
        let Ok(der) = cert.to_der() else { continue };
        let der = CertificateDer::from(der);
        let Ok(responder) = webpki::EndEntityCert::try_from(&der) else { continue };
        let delegated = responder
            .verify_for_usage(
                algorithms,
                std::slice::from_ref(&anchor),
                &[],
                time,
                webpki::KeyUsage::required(OCSP_SIGNING),
                None,
                None,
            )
            .is_ok();
        if delegated && by(&der) {
            return Ok(());
        }
    }
    Err("the answer is not signed by the certificate's issuer or its OCSP responder".into())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use sso_test_services::ocsp::OcspResponder;
    use sso_test_services::pki::{Ca, Person};

    #[tokio::test]
    async fn an_answer_counts_only_for_its_certid_and_the_responder_is_read_from_the_certificate() {
        let ca = Ca::new("OCSP unit CA");
        let responder = OcspResponder::start(&ca, &[], &[]).await;
        let issued = ca.issue_with_ocsp(&Person::official("A", "079203000001", 7), &responder.url);
        let other = ca.issue(&Person::official("B", "079203000002", 8));
        let leaf = Certificate::from_der(&issued.cert_der).unwrap();
        assert_eq!(responder_url(&leaf).as_deref(), Some(responder.url.as_str()));
        assert_eq!(responder_url(&Certificate::from_der(&other.cert_der).unwrap()), None);
        let issuer = CertificateDer::from(ca.cert_der.clone());
        let id = cert_id(&leaf, &issuer).unwrap();
        let now = time_now();
        let ocsp = Ocsp::new(reqwest::Client::new(), Duration::from_secs(5));
        let body = {
            let request = OcspRequest {
                tbs_request: TbsRequest {
                    request_list: vec![Request { req_cert: id.clone(), single_request_extensions: None }],
                    ..TbsRequest::default()
                },
                optional_signature: None,
            };
            ocsp.http
                .post(&responder.url)
                .body(request.to_der().unwrap())
                .send()
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap()
        };
        assert_eq!(check_response(&body, &id, &issuer, now).unwrap().0, OcspStatus::Good);
        let other_id = cert_id(&Certificate::from_der(&other.cert_der).unwrap(), &issuer).unwrap();
        let err = check_response(&body, &other_id, &issuer, now).unwrap_err();
        assert!(err.contains("certID"), "{err}");
        // Signed by the issuer named: another CA's key does not verify it.
        let stranger = CertificateDer::from(Ca::new("Other CA").cert_der.clone());
        assert!(check_response(&body, &id, &stranger, now).is_err());
        assert!(check_response(b"not DER", &id, &issuer, now).is_err());
        // Cached after the first status: the responder is asked once.
        let before = responder.hits();
        assert_eq!(ocsp.status(&responder.url, &leaf, &issuer, now).await, OcspStatus::Good);
        assert_eq!(ocsp.status(&responder.url, &leaf, &issuer, now).await, OcspStatus::Good);
        assert_eq!(responder.hits(), before + 1);
    }

    fn time_now() -> i64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
    }
}
