//! Mutual-TLS client certificates for RPs (RFC 8705): what a certificate says about a client
//! (`tls_client_auth` by chain and registered name, `self_signed_tls_client_auth` by key), the
//! thumbprint certificate-bound tokens carry (`cnf.x5t#S256`), and where the certificate of a
//! request comes from (the mTLS listener's handshake, or the header a trusted TLS-terminating
//! proxy forwards it in).
//!
//! Owns: certificate checks (chain through rustls/webpki, names and keys read with
//! x509-parser; nothing parsed by hand), the registered-name settings of a client, the
//! `[mtls]` roots. Must not: decide which method a client uses or issue tokens (that is
//! `client_auth` and `token`).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::HeaderName;
use axum::http::request::Parts;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD as B64};
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::ClientCertVerifier;
use sha2::Digest;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use super::ProviderState;
use crate::config::{ClientSettings, MtlsSettings, SubjectDn};
use axum::extract::FromRef;

/// Longest certificate header read from a proxy (a chain of a few certificates, URL-encoded).
const MAX_HEADER_BYTES: usize = 32 * 1024;

/// The certificate chain a client presented (leaf first), as the TLS handshake delivered it
/// or a trusted proxy forwarded it. Possession of the leaf's key was proven by the handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCertificate {
    chain: Arc<[CertificateDer<'static>]>,
}

impl ClientCertificate {
    /// A presented chain; None when it is empty.
    pub fn new(chain: Vec<CertificateDer<'static>>) -> Option<Self> {
        (!chain.is_empty()).then(|| ClientCertificate { chain: chain.into() })
    }

    pub fn leaf(&self) -> &CertificateDer<'static> {
        &self.chain[0]
    }

    /// The certificates after the leaf (intermediates the client sent).
    pub fn intermediates(&self) -> &[CertificateDer<'static>] {
        &self.chain[1..]
    }

    /// `x5t#S256`: base64url of the SHA-256 of the leaf's DER (RFC 8705 §3.1).
    pub fn thumbprint(&self) -> String {
        B64.encode(sha2::Sha256::digest(self.leaf().as_ref()))
    }

    /// Reads a certificate forwarded by a proxy: URL-encoded PEM (nginx
    /// `$ssl_client_escaped_cert`), PEM, or base64 DER (HAProxy `ssl_c_der,base64`).
    pub fn from_header(value: &[u8]) -> Option<Self> {
        if value.is_empty() || value.len() > MAX_HEADER_BYTES {
            return None;
        }
        let text = std::str::from_utf8(value).ok()?.trim();
        let decoded = percent_encoding::percent_decode_str(text).decode_utf8().ok()?;
        if decoded.contains("-----BEGIN") {
            // Proxies that cannot escape newlines send them as spaces or tabs.
            let pem = decoded
                .replace("-----BEGIN CERTIFICATE-----", "\u{0}B")
                .replace("-----END CERTIFICATE-----", "\u{0}E");
            let pem = pem
                .replace([' ', '\t'], "\n")
                .replace("\u{0}B", "-----BEGIN CERTIFICATE-----")
                .replace("\u{0}E", "-----END CERTIFICATE-----");
            let chain: Vec<CertificateDer<'static>> =
                CertificateDer::pem_slice_iter(pem.as_bytes()).collect::<Result<_, _>>().ok()?;
            // PEM is only base64: each certificate must also be one.
            if chain.iter().any(|c| X509Certificate::from_der(c).is_err()) {
                return None;
            }
            return Self::new(chain);
        }
        let der = STANDARD.decode(decoded.as_bytes()).ok()?;
        X509Certificate::from_der(&der).ok()?;
        Self::new(vec![CertificateDer::from(der)])
    }
}

/// The name a `tls_client_auth` client registered (RFC 8705 §2.1.2): its certificate must
/// carry exactly this subject, or this value among its subject alternative names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegisteredName {
    SubjectDn(SubjectDn),
    Dns(String),
    Uri(String),
    Ip(IpAddr),
    Email(String),
}

impl RegisteredName {
    /// The name a client's settings register (`check-config` refuses more than one).
    pub fn from_settings(s: &ClientSettings) -> Result<Option<Self>, String> {
        let mut names = Vec::new();
        if let Some(dn) = &s.tls_client_auth_subject_dn {
            names.push(RegisteredName::SubjectDn(dn.clone()));
        }
        if let Some(v) = &s.tls_client_auth_san_dns {
            names.push(RegisteredName::Dns(v.trim_end_matches('.').to_ascii_lowercase()));
        }
        if let Some(v) = &s.tls_client_auth_san_uri {
            names.push(RegisteredName::Uri(v.clone()));
        }
        if let Some(v) = s.tls_client_auth_san_ip {
            names.push(RegisteredName::Ip(v));
        }
        if let Some(v) = &s.tls_client_auth_san_email {
            names.push(RegisteredName::Email(v.clone()));
        }
        match names.len() {
            0 | 1 => Ok(names.pop()),
            _ => Err("only one of tls_client_auth_subject_dn and tls_client_auth_san_* may be set".into()),
        }
    }

    /// Whether `cert` (DER) carries this name.
    pub fn matches(&self, cert: &X509Certificate<'_>) -> bool {
        match self {
            RegisteredName::SubjectDn(expected) => subject_rdns(cert).as_ref() == Some(expected),
            other => {
                let Ok(Some(san)) = cert.subject_alternative_name() else { return false };
                san.value.general_names.iter().any(|name| match (other, name) {
                    (RegisteredName::Dns(v), GeneralName::DNSName(d)) => {
                        d.trim_end_matches('.').eq_ignore_ascii_case(v)
                    }
                    (RegisteredName::Uri(v), GeneralName::URI(u)) => u == v,
                    (RegisteredName::Ip(v), GeneralName::IPAddress(bytes)) => ip_from(bytes) == Some(*v),
                    (RegisteredName::Email(v), GeneralName::RFC822Name(e)) => same_email(e, v),
                    _ => false,
                })
            }
        }
    }
}

fn ip_from(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

/// The local part as written, the domain in any case.
fn same_email(a: &str, b: &str) -> bool {
    match (a.rsplit_once('@'), b.rsplit_once('@')) {
        (Some((la, da)), Some((lb, db))) => la == lb && da.eq_ignore_ascii_case(db),
        _ => a == b,
    }
}

/// A certificate's subject in the form [`SubjectDn`] holds: most specific RDN first.
fn subject_rdns(cert: &X509Certificate<'_>) -> Option<SubjectDn> {
    let mut rdns = Vec::new();
    for rdn in cert.subject().iter() {
        let mut attributes = Vec::new();
        for attribute in rdn.iter() {
            attributes
                .push((attribute.attr_type().to_id_string(), SubjectDn::fold(attribute.as_str().ok()?)));
        }
        attributes.sort();
        rdns.push(attributes);
    }
    rdns.reverse();
    Some(SubjectDn::from_rdns(rdns))
}

/// Why a certificate does not authenticate a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertificateRefusal {
    /// Not an X.509 certificate this gateway can read.
    Unreadable,
    /// `tls_client_auth`: no chain to `mtls.ca_file`'s roots, expired, not for client
    /// authentication, or no roots configured.
    Untrusted(String),
    /// `tls_client_auth`: trusted, but not the subject / SAN the client registered.
    WrongSubject,
    /// `self_signed_tls_client_auth`: the key is not one of the client's registered keys.
    WrongKey,
}

/// The CAs `tls_client_auth` trusts (`mtls.ca_file`).
#[derive(Clone)]
pub struct Roots {
    verifier: Option<Arc<dyn ClientCertVerifier>>,
}

impl std::fmt::Debug for Roots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Roots").field("configured", &self.verifier.is_some()).finish()
    }
}

impl Roots {
    /// No roots: every `tls_client_auth` certificate is refused.
    pub fn none() -> Self {
        Roots { verifier: None }
    }

    /// The roots of a PEM bundle.
    pub fn from_pem(pem: &[u8]) -> Result<Self, String> {
        let store = crate::config::root_store(pem)?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(store), provider)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Roots { verifier: Some(verifier) })
    }

    /// The roots `[mtls]` names (none when `ca_file` is unset).
    pub fn load(settings: &MtlsSettings) -> Result<Self, String> {
        let Some(path) = &settings.ca_file else { return Ok(Self::none()) };
        let pem = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::from_pem(&pem).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// `tls_client_auth` (RFC 8705 §2.1): the chain leads to a configured root, is valid at
    /// `now` (unix seconds) and allows client authentication, and the leaf carries `name`.
    pub fn check(
        &self,
        cert: &ClientCertificate,
        name: &RegisteredName,
        now: i64,
    ) -> Result<(), CertificateRefusal> {
        let Some(verifier) = &self.verifier else {
            return Err(CertificateRefusal::Untrusted("no mtls.ca_file is configured".into()));
        };
        let now = UnixTime::since_unix_epoch(std::time::Duration::from_secs(now.max(0) as u64));
        verifier
            .verify_client_cert(cert.leaf(), cert.intermediates(), now)
            .map_err(|e| CertificateRefusal::Untrusted(e.to_string()))?;
        let (_, leaf) = X509Certificate::from_der(cert.leaf()).map_err(|_| CertificateRefusal::Unreadable)?;
        if name.matches(&leaf) { Ok(()) } else { Err(CertificateRefusal::WrongSubject) }
    }
}

/// `self_signed_tls_client_auth` (RFC 8705 §2.2): the leaf is a certificate in a key's `x5c`,
/// or its public key is one of `keys`. Neither chain nor validity period is checked (the
/// registration is the trust); the handshake proved the key.
pub fn check_self_signed(cert: &ClientCertificate, keys: &JwkSet) -> Result<(), CertificateRefusal> {
    let (_, leaf) = X509Certificate::from_der(cert.leaf()).map_err(|_| CertificateRefusal::Unreadable)?;
    let spki = leaf.public_key();
    let found = keys.keys.iter().any(|jwk| {
        if let Some(first) = jwk.common.x509_chain.as_ref().and_then(|c| c.first()) {
            return STANDARD.decode(first).is_ok_and(|der| der == cert.leaf().as_ref());
        }
        let decode = |v: &str| B64.decode(v).ok();
        match (&jwk.algorithm, spki.parsed()) {
            (AlgorithmParameters::RSA(rsa), Ok(x509_parser::public_key::PublicKey::RSA(key))) => {
                let same = |a: &[u8], b: Option<Vec<u8>>| {
                    b.is_some_and(|b| strip_zeros(a) == strip_zeros(&b) && !strip_zeros(a).is_empty())
                };
                same(key.modulus, decode(&rsa.n)) && same(key.exponent, decode(&rsa.e))
            }
            (AlgorithmParameters::EllipticCurve(ec), Ok(x509_parser::public_key::PublicKey::EC(point))) => {
                let curve = match ec.curve {
                    EllipticCurve::P256 => "1.2.840.10045.3.1.7",
                    EllipticCurve::P384 => "1.3.132.0.34",
                    EllipticCurve::P521 => "1.3.132.0.35",
                    EllipticCurve::Ed25519 => return false,
                };
                let named = spki.algorithm.parameters.as_ref().and_then(|p| p.as_oid().ok());
                let (Some(x), Some(y)) = (decode(&ec.x), decode(&ec.y)) else { return false };
                let mut uncompressed = vec![4u8];
                uncompressed.extend_from_slice(&x);
                uncompressed.extend_from_slice(&y);
                named.is_some_and(|oid| oid.to_id_string() == curve) && point.data() == uncompressed
            }
            (AlgorithmParameters::OctetKeyPair(okp), _) => {
                okp.curve == EllipticCurve::Ed25519
                    && spki.algorithm.algorithm.to_id_string() == "1.3.101.112"
                    && decode(&okp.x).is_some_and(|x| x == spki.subject_public_key.data.as_ref())
            }
            _ => false,
        }
    });
    if found { Ok(()) } else { Err(CertificateRefusal::WrongKey) }
}

fn strip_zeros(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    &b[start..]
}

/// The client certificate of a request: the one a TLS listener put in the request (a
/// [`ClientCertificate`] extension, or the handshake's chain that the gateway's mTLS
/// listener adds as [`crate::tls::PeerCertificates`]), or
/// — from a peer in `inbound.trusted_proxies` only — the one in `mtls.certificate_header`.
#[derive(Debug, Clone, Default)]
pub struct PeerCertificate(pub Option<ClientCertificate>);

impl<S: Send + Sync> FromRequestParts<S> for PeerCertificate
where
    ProviderState: axum::extract::FromRef<S>,
{
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let app = ProviderState::from_ref(state);
        if let Some(cert) = parts.extensions.get::<ClientCertificate>() {
            return Ok(PeerCertificate(Some(cert.clone())));
        }
        // The gateway's own mTLS listener: the chain of the handshake.
        if let Some(peer) = parts.extensions.get::<crate::tls::PeerCertificates>()
            && let Some(cert) = ClientCertificate::new(peer.chain().to_vec())
        {
            return Ok(PeerCertificate(Some(cert)));
        }
        let Some(header) = &app.mtls.header else { return Ok(PeerCertificate(None)) };
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
        let trusted =
            peer.is_some_and(|ip| app.settings.inbound.trusted_proxies.iter().any(|n| n.contains(&ip)));
        if !trusted {
            return Ok(PeerCertificate(None));
        }
        let mut values = parts.headers.get_all(header).iter();
        let cert = match (values.next(), values.next()) {
            (Some(value), None) => ClientCertificate::from_header(value.as_bytes()),
            _ => None,
        };
        Ok(PeerCertificate(cert))
    }
}

/// What the provider keeps of `[mtls]` at run time.
#[derive(Debug, Clone)]
pub struct Mtls {
    pub roots: Roots,
    /// The header a trusted proxy forwards the certificate in.
    pub header: Option<HeaderName>,
}

impl Mtls {
    pub fn new(settings: &MtlsSettings) -> Result<Self, String> {
        let header = match &settings.certificate_header {
            Some(h) => {
                Some(HeaderName::try_from(h.as_str()).map_err(|e| format!("certificate_header: {e}"))?)
            }
            None => None,
        };
        Ok(Mtls { roots: Roots::load(settings)?, header })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn a_forwarded_certificate_is_read_in_the_forms_proxies_send() {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert =
            rcgen::CertificateParams::new(vec!["rp.example".into()]).unwrap().self_signed(&key).unwrap();
        let pem = cert.pem();
        let expected = ClientCertificate::new(vec![cert.der().clone()]).unwrap();
        let escaped =
            percent_encoding::utf8_percent_encode(&pem, percent_encoding::NON_ALPHANUMERIC).to_string();
        let spaced = pem.replace('\n', " ");
        let der = STANDARD.encode(cert.der());
        for form in [pem.as_str(), &escaped, &spaced, &der] {
            assert_eq!(ClientCertificate::from_header(form.as_bytes()).as_ref(), Some(&expected), "{form}");
        }
        for junk in
            ["", "not a certificate", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----", "AAAA"]
        {
            assert!(ClientCertificate::from_header(junk.as_bytes()).is_none(), "{junk}");
        }
        assert!(ClientCertificate::from_header(&vec![b'A'; MAX_HEADER_BYTES + 1]).is_none());
    }

    #[tokio::test]
    async fn a_forwarded_certificate_is_believed_only_from_a_trusted_proxy() {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert =
            rcgen::CertificateParams::new(vec!["rp.example".into()]).unwrap().self_signed(&key).unwrap();
        let (_dir, app, _) = crate::app::test_state_with(|_| {
            "[inbound]\ntrusted_proxies = [\"10.0.0.0/8\"]\n[mtls]\ncertificate_header = \"x-ssl-client-cert\"\n".into()
        })
        .await;
        let from = |peer: &str, values: &[&str]| {
            let mut req = axum::http::Request::builder().uri("/token");
            for v in values {
                req = req.header("x-ssl-client-cert", *v);
            }
            let (mut parts, ()) = req.body(()).unwrap().into_parts();
            parts.extensions.insert(ConnectInfo(SocketAddr::new(peer.parse().unwrap(), 443)));
            parts
        };
        let pem = cert.pem();
        let mut trusted = from("10.1.2.3", &[&pem.replace('\n', " ")]);
        let Ok(PeerCertificate(found)) = PeerCertificate::from_request_parts(&mut trusted, &app).await;
        assert_eq!(found.map(|c| c.leaf().to_vec()), Some(cert.der().to_vec()));
        for (peer, values) in
            [("203.0.113.7", vec![pem.as_str()]), ("10.1.2.3", vec![pem.as_str(), pem.as_str()])]
        {
            let values: Vec<String> = values.iter().map(|v| v.replace('\n', " ")).collect();
            let refs: Vec<&str> = values.iter().map(String::as_str).collect();
            let mut parts = from(peer, &refs);
            let Ok(PeerCertificate(found)) = PeerCertificate::from_request_parts(&mut parts, &app).await;
            assert!(found.is_none(), "{peer} with {} headers", refs.len());
        }
        // What the TLS listener delivers wins over any header.
        let mut parts = from("203.0.113.7", &[]);
        let delivered = ClientCertificate::new(vec![cert.der().clone()]).unwrap();
        parts.extensions.insert(delivered.clone());
        let Ok(PeerCertificate(found)) = PeerCertificate::from_request_parts(&mut parts, &app).await;
        assert_eq!(found, Some(delivered));
    }
}
