//! The certificate connector (`kind = "certificate"`): officials log in with the
//! digital-signature certificate (chữ ký số) on their token, presented by the browser over
//! TLS on the certificate host (`[certificate]`), never on the gateway's other pages.
//!
//! One login, like a redirect protocol whose "upstream" is the certificate host:
//! 1. `start` records a single-use marker for the attempt and sends the browser to
//!    `{certificate.url}/upstream/{id}/certificate?attempt=…`;
//! 2. there ([`present`]) the browser's certificate — from the TLS handshake of the gateway's
//!    own listener, or from the header a trusted TLS-terminating proxy forwards — is checked:
//!    chain to the configured CA bundle (webpki), validity at the gateway's clock, key usage,
//!    revocation by CRL (cached, see [`CrlCache`]), and the claims are read from the subject
//!    by the extraction rules. The outcome (a verified login or the reason for refusal) is
//!    stored under a fresh random handle, and the browser is sent back to the gateway's
//!    callback with the attempt id and that handle;
//! 3. `finish` takes the outcome (single use) and checks it was made for this attempt. The
//!    broker has already checked the attempt belongs to this browser, so a certificate step
//!    run by someone else's browser (a link planted with an attacker's attempt) can never be
//!    redeemed by the attacker: the handle only ever reaches the browser that presented the
//!    certificate.
//!
//! Owns: the certificate's checks and reading, its CRL cache, its markers in the state store.
//! Must not: touch accounts or sessions (the national ID it reads is linked by `accounts`
//! under the upstream's `linking` trust), build pages (errors are [`BrokerError`]s).

use std::net::IpAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use base64::Engine;
use futures::future::BoxFuture;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, TrustAnchor, UnixTime};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use webpki::{
    CertRevocationList, EndEntityCert, ExpirationPolicy, OwnedCertRevocationList, RevocationCheckDepth,
    RevocationOptionsBuilder, UnknownStatusPolicy,
};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use self::ocsp::OcspStatus;
use super::audit;
use super::connector::{
    Answer, AttemptData, CallbackParams, Connector, ConnectorSetup, StartContext, Started, VerifiedLogin,
};
use super::error::{BrokerError, CertificateFailure};
use crate::accounts::national_id::NationalId;
use crate::config::{
    CertificateLoginSettings, ExtendedKeyUsage, ExtractionRule, RevocationPolicy, SubjectField,
    UpstreamSettings,
};
use crate::state::{StateStore, hashed_key, random_handle};
use crate::tls::{parse_crl, read_anchors, read_certificates};

/// How much longer than an upstream's `timeout` a CRL download may take (CRLs are big).
pub const CRL_TIMEOUT_FACTOR: u32 = 6;
/// Largest CRL accepted from a URL (national CAs publish CRLs of several megabytes).
const MAX_CRL_BYTES: usize = 32 * 1024 * 1024;
/// Largest certificate a proxy may forward (a chain of a few certificates, escaped).
pub const MAX_FORWARDED_BYTES: usize = 32 * 1024;
/// Longest value kept of one subject attribute.
const MAX_VALUE_CHARS: usize = 256;

/// The claim holding the SHA-256 fingerprint of the certificate (hex).
pub const FINGERPRINT_CLAIM: &str = "certificate_sha256";

/// What the certificate step left for the callback, stored under the hash of its handle.
#[derive(Debug, Serialize, Deserialize)]
struct Outcome {
    attempt: String,
    result: Result<Presented, CertificateFailure>,
}

/// A verified certificate, as the login it makes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Presented {
    pub subject: String,
    pub claims: Map<String, Value>,
}

pub struct CertificateConnector {
    settings: UpstreamSettings,
    cert: CertificateLoginSettings,
    /// `{certificate.url}/upstream/{id}/certificate`
    present_url: String,
    /// `{issuer}/upstream/{id}/callback`
    callback_url: String,
    anchors: Vec<TrustAnchor<'static>>,
    /// The CA certificates of `ca_file` (an OCSP answer may be signed by one).
    ca_certs: Vec<CertificateDer<'static>>,
    intermediates: Vec<CertificateDer<'static>>,
    crls: CrlCache,
    ocsp: ocsp::Ocsp,
    store: StateStore,
    attempt_ttl: Duration,
}

impl CertificateConnector {
    /// `certificate_url`: the gateway's `certificate.url` (the TLS listener that asks for
    /// client certificates), where the browser presents its certificate.
    pub fn new(
        settings: UpstreamSettings,
        cert: CertificateLoginSettings,
        certificate_url: Option<&str>,
        setup: &ConnectorSetup<'_>,
    ) -> Result<Self, BrokerError> {
        let unusable = |detail: String| BrokerError::Setup { upstream: settings.id.clone(), detail };
        let base = certificate_url
            .ok_or_else(|| unusable("certificate.url is not set".into()))?
            .trim_end_matches('/');
        let anchors = read_anchors(&cert.ca_file).map_err(unusable)?;
        let ca_certs = read_certificates(&cert.ca_file).map_err(unusable)?;
        let intermediates = match &cert.intermediates_file {
            Some(path) => read_certificates(path).map_err(unusable)?,
            None => Vec::new(),
        };
        let crls = CrlCache::new(&cert, setup.http.clone(), settings.timeout);
        let ocsp = ocsp::Ocsp::new(setup.http.clone(), settings.timeout);
        Ok(CertificateConnector {
            present_url: format!("{base}/upstream/{}/certificate", settings.id),
            callback_url: super::urls::callback(setup.issuer.trim_end_matches('/'), &settings.id),
            settings,
            cert,
            anchors,
            ca_certs,
            intermediates,
            crls,
            ocsp,
            store: setup.store.clone(),
            attempt_ttl: setup.attempt_ttl,
        })
    }

    fn id(&self) -> &str {
        &self.settings.id
    }

    /// Loads the CRLs once before the first login (files now, URLs fetched), so that a
    /// gateway starting up does not refuse its first certificates for want of a CRL.
    pub async fn warm_up(&self, now: i64) {
        self.crls.current(now).await;
    }

    /// The certificate step: checks `chain` (end entity first; empty when none was presented)
    /// for the attempt `attempt` at time `now`, stores the outcome and returns where to send
    /// the browser (the gateway's callback). An attempt that was not started here, or whose
    /// step already ran, is refused without storing anything.
    pub async fn present(
        &self,
        attempt: &str,
        chain: &[CertificateDer<'_>],
        from: Option<IpAddr>,
        now: i64,
    ) -> Result<String, BrokerError> {
        if attempt.is_empty() || attempt.len() > 256 {
            return Err(BrokerError::MalformedCallback);
        }
        if self.store.take(&hashed_key("certificate-step", attempt)).await?.is_none() {
            return Err(BrokerError::AttemptNotFound);
        }
        let result = self.verify(chain, now).await;
        match &result {
            Ok(p) => tracing::info!(
                upstream = self.id(),
                fingerprint =
                    p.claims.get(FINGERPRINT_CLAIM).and_then(serde_json::Value::as_str).unwrap_or(""),
                "certificate accepted"
            ),
            Err((reason, detail)) => audit(
                reason.event(),
                self.id(),
                &format!("{detail} (from {})", from.map(|ip| ip.to_string()).unwrap_or_else(|| "-".into())),
            ),
        }
        let handle = random_handle();
        let outcome = Outcome { attempt: attempt.to_string(), result: result.map_err(|(reason, _)| reason) };
        self.store.put_json(&hashed_key("certificate-outcome", &handle), &outcome, self.attempt_ttl).await?;
        let query = serde_urlencoded::to_string([("attempt", attempt), ("outcome", handle.as_str())])
            .unwrap_or_default();
        Ok(format!("{}?{query}", self.callback_url))
    }

    /// Every check of one presented chain; the failure with what the log should say.
    pub async fn verify(
        &self,
        chain: &[CertificateDer<'_>],
        now: i64,
    ) -> Result<Presented, (CertificateFailure, String)> {
        let Some(end_entity) = chain.first() else {
            return Err((CertificateFailure::Missing, "no certificate presented".into()));
        };
        let crls = self.crls.current(now).await;
        self.check_chain(end_entity, &chain[1..], &crls, now).await?;
        let presented =
            read_subject(end_entity, &self.cert.extract).map_err(|e| (CertificateFailure::NotUsable, e))?;
        if self.cert.require_national_id && !presented.claims.contains_key(NATIONAL_ID_VERIFIED) {
            return Err((
                CertificateFailure::NoNationalId,
                "no 12-digit personal identification number in the subject".into(),
            ));
        }
        let mut presented = presented;
        presented.claims.remove(NATIONAL_ID_VERIFIED);
        Ok(presented)
    }

    /// The chain to the CA bundle, validity and key usage, then revocation: CRLs and, when
    /// the certificate names a responder, OCSP. Either one knowing the status is enough (a
    /// revocation found by either refuses); when neither can tell, the `revocation` policy
    /// decides. An OCSP `unknown` (the CA's responder does not know the certificate) refuses it
    /// as a certificate of an unknown CA.
    async fn check_chain(
        &self,
        end_entity: &CertificateDer<'_>,
        sent: &[CertificateDer<'_>],
        crls: &[CertRevocationList<'static>],
        now: i64,
    ) -> Result<(), (CertificateFailure, String)> {
        let cert = EndEntityCert::try_from(end_entity)
            .map_err(|e| (CertificateFailure::NotUsable, format!("not a certificate: {e:?}")))?;
        let mut intermediates: Vec<CertificateDer<'_>> = sent.to_vec();
        intermediates.extend(self.intermediates.iter().cloned());
        let time = UnixTime::since_unix_epoch(Duration::from_secs(now.max(0) as u64));
        let algorithms = rustls::crypto::aws_lc_rs::default_provider().signature_verification_algorithms.all;
        let refs: Vec<&CertRevocationList<'_>> = crls.iter().collect();
        // `deny`: an unknown status is an error (did the CRLs tell?); else it passes.
        let check = |deny: bool, expiration: ExpirationPolicy| {
            let revocation = RevocationOptionsBuilder::new(&refs).ok().map(|b| {
                b.with_depth(RevocationCheckDepth::Chain)
                    .with_status_policy(if deny {
                        UnknownStatusPolicy::Deny
                    } else {
                        UnknownStatusPolicy::Allow
                    })
                    .with_expiration_policy(expiration)
                    .build()
            });
            if revocation.is_none() && deny {
                return Err(webpki::Error::UnknownRevocationStatus);
            }
            let usage = Usage(self.cert.extended_key_usage);
            cert.verify_for_usage(algorithms, &self.anchors, &intermediates, time, usage, revocation, None)
                .map(|_| ())
        };
        let crl_known = match check(true, ExpirationPolicy::Enforce) {
            Ok(()) => true,
            Err(webpki::Error::UnknownRevocationStatus | webpki::Error::CrlExpired { .. }) => {
                // The chain still has to hold, and a CRL past its next update still tells of
                // the revocations it lists.
                check(false, ExpirationPolicy::Ignore).map_err(|e| (failure_of(&e), format!("{e:?}")))?;
                false
            }
            Err(e) => return Err((failure_of(&e), format!("{e:?}"))),
        };
        check_key_usage(end_entity).map_err(|e| (CertificateFailure::NotUsable, e))?;
        let ocsp = self.ocsp_status(end_entity, &intermediates, now).await;
        let unknown = |why: String| match self.cert.revocation {
            RevocationPolicy::FailClosed => Err((CertificateFailure::RevocationUnknown, why)),
            RevocationPolicy::FailOpen => {
                tracing::warn!(upstream = self.id(), reason = %why, "certificate accepted without a revocation status (fail_open)");
                Ok(())
            }
        };
        match ocsp {
            Some(OcspStatus::Good) => Ok(()),
            Some(OcspStatus::Revoked) => Err((CertificateFailure::Revoked, "revoked (OCSP)".into())),
            // The CA says it did not issue it: refused as a certificate of an unknown CA.
            Some(OcspStatus::Unknown) => Err((
                CertificateFailure::UnknownIssuer,
                "the CA's OCSP responder does not know it (OCSP unknown)".into(),
            )),
            Some(OcspStatus::Unavailable(why)) if !crl_known => {
                unknown(format!("no CRL status; OCSP: {why}"))
            }
            Some(OcspStatus::Unavailable(why)) => {
                tracing::warn!(upstream = self.id(), reason = %why, "OCSP unavailable; the CRL said good");
                Ok(())
            }
            None if crl_known => Ok(()),
            None => unknown("no current CRL of its issuer and no OCSP responder".into()),
        }
    }

    /// The OCSP answer for `end_entity`, when checking is on and it names a responder.
    async fn ocsp_status(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: i64,
    ) -> Option<OcspStatus> {
        if !self.cert.ocsp {
            return None;
        }
        use x509_cert::der::Decode;
        let leaf = x509_cert::Certificate::from_der(end_entity.as_ref()).ok()?;
        let url = ocsp::responder_url(&leaf)?;
        let mut candidates: Vec<CertificateDer<'_>> = intermediates.to_vec();
        candidates.extend(self.ca_certs.iter().cloned());
        let Some(issuer) = ocsp::find_issuer(&leaf, &candidates) else {
            return Some(OcspStatus::Unavailable("its issuer's certificate is not known".into()));
        };
        Some(self.ocsp.status(&url, &leaf, issuer, now).await)
    }
}

/// What a webpki error means for the person.
fn failure_of(e: &webpki::Error) -> CertificateFailure {
    use webpki::Error as E;
    match e {
        E::CertExpired { .. } | E::CertNotValidYet { .. } | E::InvalidCertValidity => {
            CertificateFailure::Expired
        }
        E::CertRevoked => CertificateFailure::Revoked,
        E::UnknownIssuer => CertificateFailure::UnknownIssuer,
        E::UnknownRevocationStatus | E::CrlExpired { .. } => CertificateFailure::RevocationUnknown,
        _ => CertificateFailure::NotUsable,
    }
}

/// The extended key usage check webpki applies (only when the certificate lists any).
struct Usage(ExtendedKeyUsage);

impl webpki::ExtendedKeyUsageValidator for Usage {
    fn validate(&self, iter: webpki::KeyPurposeIdIter<'_, '_>) -> Result<(), webpki::Error> {
        match self.0 {
            ExtendedKeyUsage::ClientAuth => webpki::KeyUsage::client_auth().validate(iter),
            ExtendedKeyUsage::Any => Ok(()),
        }
    }
}

/// A certificate that states its key usage must allow digital signatures (the TLS handshake
/// signature is one).
fn check_key_usage(der: &CertificateDer<'_>) -> Result<(), String> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| format!("cannot read certificate: {e}"))?;
    match cert.key_usage() {
        Ok(Some(ku)) if !ku.value.digital_signature() => Err("key usage lacks digitalSignature".into()),
        Ok(_) => Ok(()),
        Err(e) => Err(format!("key usage extension: {e}")),
    }
}

/// Marks (internally, removed before the login leaves the connector) that `national_id` is
/// a valid 12-digit number.
const NATIONAL_ID_VERIFIED: &str = "\u{0}national_id_valid";

/// Reads a certificate's subject into claims: every field under its own name (`cn`, `email`,
/// `o`, `ou`, `uid`, `serial_number`, `title`, `l`, `st`; the first value of each), the
/// issuer, serial and fingerprint, then the claims of the extraction rules (which win over a
/// field of the same name). The upstream subject is the personal identification number when
/// the `national_id` claim is a valid 12-digit one, else the certificate's fingerprint.
pub fn read_subject(der: &CertificateDer<'_>, rules: &[ExtractionRule]) -> Result<Presented, String> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| format!("cannot read certificate: {e}"))?;
    let fields = subject_fields(&cert);
    let mut claims = Map::new();
    for (field, name) in FIELD_NAMES {
        if let Some((_, v)) = fields.iter().find(|(f, _)| *f == field) {
            claims.insert(name.to_string(), Value::String(v.clone()));
        }
    }
    let fingerprint = hex(&Sha256::digest(der.as_ref()));
    claims.insert(FINGERPRINT_CLAIM.into(), Value::String(fingerprint.clone()));
    claims.insert("certificate_issuer".into(), Value::String(cert.issuer().to_string()));
    claims.insert("certificate_serial".into(), Value::String(cert.raw_serial_as_string()));
    let mut ruled: Vec<&str> = Vec::new();
    for rule in rules {
        if ruled.contains(&rule.claim.as_str()) {
            continue;
        }
        if let Some(value) = apply_rule(rule, &fields) {
            claims.insert(rule.claim.clone(), Value::String(value));
            ruled.push(&rule.claim);
        }
    }
    let national = claims.get("national_id").and_then(Value::as_str).and_then(|v| NationalId::parse(v).ok());
    let subject = match national {
        Some(id) => {
            claims.insert(NATIONAL_ID_VERIFIED.into(), Value::Bool(true));
            id.as_str().to_string()
        }
        None => format!("sha256:{fingerprint}"),
    };
    Ok(Presented { subject, claims })
}

/// Claim names of the subject fields.
const FIELD_NAMES: [(SubjectField, &str); 9] = [
    (SubjectField::Cn, "cn"),
    (SubjectField::Email, "email"),
    (SubjectField::O, "o"),
    (SubjectField::Ou, "ou"),
    (SubjectField::Uid, "uid"),
    (SubjectField::SerialNumber, "serial_number"),
    (SubjectField::Title, "title"),
    (SubjectField::L, "l"),
    (SubjectField::St, "st"),
];

/// The first value of `rule.from` starting with its prefix (ASCII case ignored), prefix
/// removed and trimmed; None when no value matches or what remains is empty.
fn apply_rule(rule: &ExtractionRule, fields: &[(SubjectField, String)]) -> Option<String> {
    fields.iter().filter(|(f, _)| *f == rule.from).find_map(|(_, v)| {
        let head = v.get(..rule.prefix.len())?;
        if !head.eq_ignore_ascii_case(&rule.prefix) {
            return None;
        }
        let rest = v[rule.prefix.len()..].trim();
        (!rest.is_empty()).then(|| rest.to_string())
    })
}

/// Every subject attribute the rules can read, in order, then the subject alternative
/// name's e-mail addresses (as `Email`). Values that are not text are skipped; control
/// characters are refused by dropping the value.
fn subject_fields(cert: &X509Certificate<'_>) -> Vec<(SubjectField, String)> {
    let mut out = Vec::new();
    for attr in cert.subject().iter_attributes() {
        let field = match attr.attr_type().to_id_string().as_str() {
            "0.9.2342.19200300.100.1.1" => SubjectField::Uid,
            "2.5.4.5" => SubjectField::SerialNumber,
            "2.5.4.3" => SubjectField::Cn,
            "1.2.840.113549.1.9.1" => SubjectField::Email,
            "2.5.4.10" => SubjectField::O,
            "2.5.4.11" => SubjectField::Ou,
            "2.5.4.12" => SubjectField::Title,
            "2.5.4.7" => SubjectField::L,
            "2.5.4.8" => SubjectField::St,
            _ => continue,
        };
        if let Ok(v) = attr.as_str()
            && !v.chars().any(char::is_control)
        {
            out.push((field, v.chars().take(MAX_VALUE_CHARS).collect()));
        }
    }
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let GeneralName::RFC822Name(mail) = name
                && !mail.chars().any(char::is_control)
            {
                out.push((SubjectField::Email, mail.chars().take(MAX_VALUE_CHARS).collect()));
            }
        }
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A certificate a TLS-terminating proxy forwarded in a header: URL-escaped PEM (nginx
/// `$ssl_client_escaped_cert`, possibly a chain) or base64 DER (HAProxy `ssl_c_der,base64`).
/// An empty value or `-`/`(null)` means the browser presented none.
pub fn forwarded_chain(value: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let value = value.trim();
    if value.is_empty() || value == "-" || value == "(null)" {
        return Ok(Vec::new());
    }
    if value.len() > MAX_FORWARDED_BYTES {
        return Err("forwarded certificate too large".into());
    }
    let decoded = percent_encoding::percent_decode_str(value).collect::<Vec<u8>>();
    if decoded.starts_with(b"-----BEGIN") {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&decoded)
            .collect::<Result<_, _>>()
            .map_err(|e| format!("forwarded PEM: {e}"))?;
        return Ok(chain);
    }
    let der = base64::engine::general_purpose::STANDARD
        .decode(value.as_bytes())
        .map_err(|e| format!("forwarded certificate is neither escaped PEM nor base64 DER: {e}"))?;
    Ok(vec![CertificateDer::from(der)])
}

impl Connector for CertificateConnector {
    fn settings(&self) -> &UpstreamSettings {
        &self.settings
    }

    fn start<'a>(&'a self, ctx: StartContext<'a>) -> BoxFuture<'a, Result<Started, BrokerError>> {
        Box::pin(async move {
            // The certificate step runs once per attempt: its marker is taken there. A
            // presented certificate is a fresh login every time (prompt=login, max_age hold).
            self.store
                .put(&hashed_key("certificate-step", ctx.attempt), Vec::new(), self.attempt_ttl)
                .await?;
            let query = serde_urlencoded::to_string([("attempt", ctx.attempt)]).unwrap_or_default();
            Ok(Started::Redirect {
                url: format!("{}?{query}", self.present_url),
                data: AttemptData::default(),
            })
        })
    }

    fn callback_attempt<'p>(&self, params: &'p CallbackParams) -> Option<&'p str> {
        params.get("attempt")
    }

    fn finish<'a>(
        &'a self,
        _data: &'a AttemptData,
        answer: Answer<'a>,
    ) -> BoxFuture<'a, Result<VerifiedLogin, BrokerError>> {
        Box::pin(async move {
            let Answer::Redirect(params) = answer else {
                return Err(BrokerError::MalformedCallback);
            };
            let (Some(attempt), Some(handle)) = (params.get("attempt"), params.get("outcome")) else {
                return Err(BrokerError::MalformedCallback);
            };
            if handle.is_empty() || handle.len() > 256 {
                return Err(BrokerError::MalformedCallback);
            }
            let outcome: Outcome = self
                .store
                .take_json(&hashed_key("certificate-outcome", handle))
                .await?
                .ok_or(BrokerError::AttemptNotFound)?;
            if outcome.attempt != attempt {
                return Err(BrokerError::AttemptNotFound);
            }
            match outcome.result {
                Ok(p) => Ok(VerifiedLogin {
                    subject: p.subject,
                    claims: p.claims,
                    // RFC 8176: proof of possession of a key (hardware token: `hwk`).
                    amr: vec!["hwk".into(), "x509".into()],
                    session_id: None,
                }),
                Err(reason) => Err(BrokerError::CertificateRefused {
                    upstream: self.id().into(),
                    reason,
                    detail: "refused at the certificate step".into(),
                }),
            }
        })
    }
}

/// The CRLs of one certificate upstream: files re-read and URLs fetched every
/// `crl_refresh`, kept in memory. A login reads the cache; when it is due, one login starts
/// the refresh in the background (only the very first waits for it, as no CRL was loaded
/// yet). A source that cannot be read keeps its previous CRL until that CRL's next update
/// passes (then the revocation policy decides).
#[derive(Clone)]
struct CrlCache {
    inner: Arc<CrlInner>,
}

/// The CRLs in force, shared by every login until the next reload.
type CrlSet = Arc<Vec<CertRevocationList<'static>>>;

struct CrlInner {
    files: Vec<std::path::PathBuf>,
    urls: Vec<String>,
    refresh: i64,
    http: reqwest::Client,
    timeout: Duration,
    state: RwLock<Loaded>,
    /// Held by the one reload in progress.
    reloading: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct Loaded {
    /// When the sources were last read (gateway clock); None before the first load.
    at: Option<i64>,
    /// Each source's CRL (files first, then URLs), None when it never loaded.
    by_source: Vec<Option<OwnedCertRevocationList>>,
    current: CrlSet,
}

impl CrlCache {
    fn new(cert: &CertificateLoginSettings, http: reqwest::Client, timeout: Duration) -> Self {
        CrlCache {
            inner: Arc::new(CrlInner {
                files: cert.crl_files.clone(),
                urls: cert.crl_urls.clone(),
                refresh: cert.crl_refresh.as_secs() as i64,
                http,
                // A CRL is bigger than an upstream's usual answer: more time for it.
                timeout: timeout * CRL_TIMEOUT_FACTOR,
                state: RwLock::new(Loaded::default()),
                reloading: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// The CRLs to check against at `now`.
    async fn current(&self, now: i64) -> CrlSet {
        let inner = &self.inner;
        if inner.files.is_empty() && inner.urls.is_empty() {
            return CrlSet::default();
        }
        let (at, crls) = inner.snapshot();
        match at {
            None => {
                // Nothing loaded yet: wait for the first load (one at a time).
                let _guard = inner.reloading.lock().await;
                if inner.snapshot().0.is_none() {
                    inner.reload(now).await;
                }
                inner.snapshot().1
            }
            Some(at) if now - at >= inner.refresh => {
                if inner.reloading.try_lock().is_ok() {
                    let inner = inner.clone();
                    tokio::spawn(async move {
                        let _guard = inner.reloading.lock().await;
                        if inner.snapshot().0.is_some_and(|at| now - at >= inner.refresh) {
                            inner.reload(now).await;
                        }
                    });
                }
                crls
            }
            Some(_) => crls,
        }
    }
}

impl CrlInner {
    fn snapshot(&self) -> (Option<i64>, CrlSet) {
        match self.state.read() {
            Ok(s) => (s.at, s.current.clone()),
            Err(_) => (None, CrlSet::default()),
        }
    }

    async fn reload(&self, now: i64) {
        let previous: Vec<Option<OwnedCertRevocationList>> =
            self.state.read().map(|s| s.by_source.clone()).unwrap_or_default();
        let mut next = Vec::with_capacity(self.files.len() + self.urls.len());
        for path in &self.files {
            let loaded = tokio::fs::read(path).await.map_err(|e| e.to_string()).and_then(|b| parse_crl(&b));
            next.push(
                loaded.map_err(|e| tracing::warn!(crl = %path.display(), error = %e, "cannot read CRL")).ok(),
            );
        }
        for url in &self.urls {
            let loaded = self.fetch(url).await;
            next.push(loaded.map_err(|e| tracing::warn!(crl = %url, error = %e, "cannot fetch CRL")).ok());
        }
        // A source that failed keeps what it had.
        for (i, slot) in next.iter_mut().enumerate() {
            if slot.is_none() {
                *slot = previous.get(i).cloned().flatten();
            }
        }
        let current: CrlSet =
            Arc::new(next.iter().flatten().cloned().map(CertRevocationList::from).collect());
        if let Ok(mut s) = self.state.write() {
            *s = Loaded { at: Some(now), by_source: next, current };
        }
    }

    async fn fetch(&self, url: &str) -> Result<OwnedCertRevocationList, String> {
        fetch_crl(&self.http, url, self.timeout).await
    }
}

/// Downloads and parses one CRL (at most 32 MiB, within `timeout` whole).
pub async fn fetch_crl(
    http: &reqwest::Client,
    url: &str,
    timeout: Duration,
) -> Result<OwnedCertRevocationList, String> {
    let exchange = async {
        let mut response = http.get(url).timeout(timeout).send().await.map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("HTTP {}", response.status()));
        }
        if response.content_length().is_some_and(|n| n as usize > MAX_CRL_BYTES) {
            return Err(format!("larger than {MAX_CRL_BYTES} bytes"));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
            if body.len() + chunk.len() > MAX_CRL_BYTES {
                return Err(format!("larger than {MAX_CRL_BYTES} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        parse_crl(&body)
    };
    tokio::time::timeout(timeout, exchange).await.map_err(|_| format!("no answer within {timeout:?}"))?
}

mod ocsp;

#[cfg(test)]
mod tests;
