//! A test OCSP responder (RFC 6960) for a test [`Ca`]: an HTTP server on a free loopback
//! port answering POSTed requests with basic responses signed by the CA's key (or, as a
//! test asks, by a delegated responder certificate, by a stranger's key, out of date, or not
//! at all), built as `x509-ocsp` types and signed with rcgen's key. It counts the requests it
//! answers, so tests can tell a cached answer from a fetched one.
//!
//! Owns: its listener and task (ended when the handle is dropped). Must not: be used outside
//! tests.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use rcgen::{CustomExtension, KeyPair, SigningKey};
use x509_cert::Certificate;
use x509_cert::der::asn1::{BitString, GeneralizedTime, Ia5String};
use x509_cert::der::oid::db::rfc5280::{ID_AD_OCSP, ID_PE_AUTHORITY_INFO_ACCESS};
use x509_cert::der::oid::db::rfc5912::ECDSA_WITH_SHA_256;
use x509_cert::der::{Decode, Encode};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{AccessDescription, AuthorityInfoAccessSyntax};
use x509_cert::spki::AlgorithmIdentifierOwned;
use x509_ocsp::{
    BasicOcspResponse, CertStatus, OcspGeneralizedTime, OcspRequest, OcspResponse, ResponderId, ResponseData,
    RevokedInfo, SingleResponse,
};

use crate::pki::{Ca, Issued};

/// The Authority Information Access extension naming `url` as the OCSP responder.
#[allow(clippy::panic)]
pub fn authority_info_access(url: &str) -> CustomExtension {
    let uri = Ia5String::new(url).unwrap_or_else(|e| panic!("OCSP URL {url}: {e}"));
    let aia = AuthorityInfoAccessSyntax(vec![AccessDescription {
        access_method: ID_AD_OCSP,
        access_location: GeneralName::UniformResourceIdentifier(uri),
    }]);
    let der = aia.to_der().unwrap_or_else(|e| panic!("AIA: {e}"));
    CustomExtension::from_oid_content(&oid_arcs(&ID_PE_AUTHORITY_INFO_ACCESS.to_string()), der)
}

fn oid_arcs(dotted: &str) -> Vec<u64> {
    dotted.split('.').filter_map(|a| a.parse().ok()).collect()
}

/// How the responder answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Signed by the CA, current for an hour.
    Signed,
    /// Signed by a delegated responder certificate of the CA (id-kp-OCSPSigning), included.
    Delegated,
    /// Signed by a key that is not the CA's (a forgery).
    ForeignKey,
    /// Signed by the CA, but its `nextUpdate` passed an hour ago.
    Stale,
    /// HTTP 503, no OCSP answer.
    Down,
}

struct Responder {
    ca_cert: Certificate,
    ca_key: KeyPair,
    delegated: (Issued, KeyPair),
    stranger: KeyPair,
    revoked: Vec<u64>,
    unknown: Vec<u64>,
    answer: Mutex<Answer>,
    hits: AtomicUsize,
}

/// A running responder; stops when dropped.
pub struct OcspResponder {
    /// Where it answers (`http://127.0.0.1:PORT/`), for [`Ca::issue_with_ocsp`].
    pub url: String,
    inner: Arc<Responder>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for OcspResponder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl OcspResponder {
    /// Starts a responder of `ca` on the current Tokio runtime: serials in `revoked` are
    /// revoked, those in `unknown` unknown, every other one good.
    #[allow(clippy::panic)]
    pub async fn start(ca: &Ca, revoked: &[u64], unknown: &[u64]) -> OcspResponder {
        let listener =
            tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("OCSP bind: {e}"));
        let port = listener.local_addr().map(|a| a.port()).unwrap_or_else(|e| panic!("OCSP addr: {e}"));
        let inner = Arc::new(Responder {
            ca_cert: Certificate::from_der(&ca.cert_der).unwrap_or_else(|e| panic!("CA certificate: {e}")),
            ca_key: ca.key_pair(),
            delegated: ca.ocsp_signer(),
            stranger: KeyPair::generate().unwrap_or_else(|e| panic!("key: {e}")),
            revoked: revoked.to_vec(),
            unknown: unknown.to_vec(),
            answer: Mutex::new(Answer::Signed),
            hits: AtomicUsize::new(0),
        });
        let app = axum::Router::new().route("/", axum::routing::post(answer)).with_state(inner.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        OcspResponder { url: format!("http://127.0.0.1:{port}/"), inner, task }
    }

    /// How many requests it has received.
    pub fn hits(&self) -> usize {
        self.inner.hits.load(Ordering::SeqCst)
    }

    /// How it answers from now on.
    pub fn set_answer(&self, answer: Answer) {
        if let Ok(mut a) = self.inner.answer.lock() {
            *a = answer;
        }
    }
}

async fn answer(State(r): State<Arc<Responder>>, body: Bytes) -> Response {
    r.hits.fetch_add(1, Ordering::SeqCst);
    let how = r.answer.lock().map(|a| *a).unwrap_or(Answer::Down);
    if how == Answer::Down {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    match respond(&r, how, &body) {
        Ok(der) => ([("content-type", "application/ocsp-response")], der).into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, e).into_response(),
    }
}

fn gtime(unix: i64) -> Result<OcspGeneralizedTime, String> {
    GeneralizedTime::from_unix_duration(Duration::from_secs(unix.max(0) as u64))
        .map(OcspGeneralizedTime)
        .map_err(|e| e.to_string())
}

fn serial_of(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0u64, |acc, b| acc.wrapping_shl(8) | u64::from(*b))
}

fn respond(r: &Responder, how: Answer, body: &[u8]) -> Result<Vec<u8>, String> {
    let request = OcspRequest::from_der(body).map_err(|e| format!("not an OCSP request: {e}"))?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let (this_update, next_update) = match how {
        Answer::Stale => (now - 3 * 3600, now - 3600),
        _ => (now - 60, now + 3600),
    };
    let mut responses = Vec::new();
    for one in &request.tbs_request.request_list {
        let serial = serial_of(one.req_cert.serial_number.as_bytes());
        let status = if r.revoked.contains(&serial) {
            CertStatus::Revoked(RevokedInfo {
                revocation_time: gtime(now - 86_400)?,
                revocation_reason: None,
            })
        } else if r.unknown.contains(&serial) {
            CertStatus::unknown()
        } else {
            CertStatus::good()
        };
        responses.push(SingleResponse {
            cert_id: one.req_cert.clone(),
            cert_status: status,
            this_update: gtime(this_update)?,
            next_update: Some(gtime(next_update)?),
            single_extensions: None,
        });
    }
    let tbs = ResponseData {
        version: Default::default(),
        responder_id: ResponderId::ByName(r.ca_cert.tbs_certificate.subject.clone()),
        produced_at: gtime(now)?,
        responses,
        response_extensions: None,
    };
    let signed = tbs.to_der().map_err(|e| e.to_string())?;
    let (key, certs) = match how {
        Answer::Delegated => {
            let cert = Certificate::from_der(&r.delegated.0.cert_der).map_err(|e| e.to_string())?;
            (&r.delegated.1, Some(vec![cert]))
        }
        Answer::ForeignKey => (&r.stranger, None),
        _ => (&r.ca_key, None),
    };
    let signature = key.sign(&signed).map_err(|e| e.to_string())?;
    let basic = BasicOcspResponse {
        tbs_response_data: tbs,
        signature_algorithm: AlgorithmIdentifierOwned { oid: ECDSA_WITH_SHA_256, parameters: None },
        signature: BitString::from_bytes(&signature).map_err(|e| e.to_string())?,
        certs,
    };
    OcspResponse::successful(basic).and_then(|r| r.to_der()).map_err(|e| e.to_string())
}
