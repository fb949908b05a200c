//! TLS listeners that ask the other side for a certificate: the gateway terminates TLS with
//! rustls (aws-lc-rs) and hands the certificate chain a client presented to the handlers, as
//! the request extension [`PeerCertificates`].
//!
//! Owns: reading the listener's certificate and key files (and, for whoever judges client
//! certificates, PEM CA bundles and CRLs), the rustls server configuration
//! (whether and how a client certificate is asked for) and serving a router over it with
//! graceful shutdown. Must not: decide what a presented certificate means — that is the
//! business of whoever handles the request (the certificate-login connector checks the chain
//! against its own CA bundle, at the gateway's clock; mTLS client authentication against a
//! client's registered certificate).
//!
//! A client certificate is *asked for*, never *required* at the handshake: a browser without
//! one (or whose person cancels the prompt) still reaches the handler, which can answer with
//! a readable page instead of a broken TLS connection.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::middleware::AddExtension;
use axum_server::accept::Accept;
use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
use futures::future::BoxFuture;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer, TrustAnchor, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ServerConfig, WebPkiClientVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tower::Layer;

/// How long in-flight requests may finish after shutdown was asked for.
const DRAIN: Duration = Duration::from_secs(10);

/// The certificate chain the client presented in the TLS handshake: the end-entity
/// certificate first, then whatever intermediates it sent; empty when it presented none.
/// Every request on a listener of this module carries it as an extension
/// (`Extension<PeerCertificates>`); a non-empty chain means the handshake proved the client
/// holds the end-entity certificate's key. What the chain is worth is for the handler to
/// decide.
#[derive(Debug, Clone, Default)]
pub struct PeerCertificates(Arc<[CertificateDer<'static>]>);

impl PeerCertificates {
    pub fn new(chain: Vec<CertificateDer<'static>>) -> Self {
        PeerCertificates(chain.into())
    }

    /// The client's own certificate, None when it presented none.
    pub fn end_entity(&self) -> Option<&CertificateDer<'static>> {
        self.0.first()
    }

    /// The certificates the client sent after its own (possibly none).
    pub fn intermediates(&self) -> &[CertificateDer<'static>] {
        self.0.get(1..).unwrap_or_default()
    }

    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// What the listener asks of clients.
#[derive(Debug, Clone)]
pub enum ClientCerts {
    /// Ask for a certificate and take any chain the client proves it holds the key of; the
    /// handler validates it (against its own trust anchors, at its own clock). The subjects
    /// are sent to the client as the accepted issuers (browsers offer only certificates of
    /// those CAs); empty sends none, and the browser offers every certificate it has.
    AnyPresented { hint_subjects: Vec<DistinguishedName> },
    /// Ask for a certificate and verify its chain to these roots in the handshake (a wrong
    /// chain fails the handshake); a client may still present none.
    Roots(Arc<RootCertStore>),
}

impl ClientCerts {
    /// [`ClientCerts::AnyPresented`] hinting the subjects of the CA certificates in `pem`.
    pub fn any_hinting_issuers_of(pem: &[u8]) -> Result<Self, TlsError> {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| TlsError::Pem(e.to_string()))?;
            roots.add(cert).map_err(|e| TlsError::Pem(e.to_string()))?;
        }
        Ok(ClientCerts::AnyPresented { hint_subjects: roots.subjects() })
    }
}

/// Why a TLS listener could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {detail}")]
    Read { path: PathBuf, detail: String },
    #[error("{0} contains no PEM certificate")]
    NoCertificate(PathBuf),
    #[error("PEM: {0}")]
    Pem(String),
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// Reads every PEM certificate of `path` (at least one).
pub fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{} contains no PEM certificate", path.display()));
    }
    Ok(certs)
}

/// The trust anchors (for webpki) of a PEM bundle of CA certificates.
pub fn read_anchors(path: &Path) -> Result<Vec<TrustAnchor<'static>>, String> {
    read_certificates(path)?
        .iter()
        .map(|der| {
            webpki::anchor_from_trusted_cert(der)
                .map(|a| a.to_owned())
                .map_err(|e| format!("{}: not a usable CA certificate: {e:?}", path.display()))
        })
        .collect()
}

/// A certificate revocation list, PEM (`X509 CRL`) or DER, parsed by webpki.
pub fn parse_crl(bytes: &[u8]) -> Result<webpki::OwnedCertRevocationList, String> {
    let der = if bytes.starts_with(b"-----") {
        CertificateRevocationListDer::from_pem_slice(bytes).map_err(|e| e.to_string())?.as_ref().to_vec()
    } else {
        bytes.to_vec()
    };
    webpki::OwnedCertRevocationList::from_der(&der).map_err(|e| format!("not a usable CRL: {e:?}"))
}

/// The rustls configuration of a listener serving `cert` (PEM chain) with `key` (PEM
/// PKCS#8, PKCS#1 or SEC1), asking clients for a certificate as `client` says. HTTP/2 and
/// HTTP/1.1 are offered.
pub fn server_config(cert: &Path, key: &Path, client: ClientCerts) -> Result<Arc<ServerConfig>, TlsError> {
    crate::install_crypto_provider();
    let read = |path: &Path, e: &dyn std::fmt::Display| TlsError::Read {
        path: path.to_path_buf(),
        detail: e.to_string(),
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| read(cert, &e))?
        .collect::<Result<_, _>>()
        .map_err(|e| read(cert, &e))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate(cert.to_path_buf()));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| read(key, &e))?;
    let provider = rustls::crypto::CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()));
    let verifier: Arc<dyn ClientCertVerifier> = match client {
        ClientCerts::AnyPresented { hint_subjects } => Arc::new(AnyPresented {
            hints: hint_subjects,
            algorithms: provider.signature_verification_algorithms,
        }),
        ClientCerts::Roots(roots) => WebPkiClientVerifier::builder_with_provider(roots, provider.clone())
            .allow_unauthenticated()
            .build()
            .map_err(|e| TlsError::Config(e.to_string()))?,
    };
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Serves `router` over TLS on `listener` until `shutdown` resolves, then lets in-flight
/// requests finish (at most 10 s). Handlers see the client's address
/// (`ConnectInfo<SocketAddr>`) and, when it presented one, its [`PeerCertificates`].
pub async fn serve(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let handle = axum_server::Handle::new();
    let h = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        h.graceful_shutdown(Some(DRAIN));
    });
    let acceptor = PeerCertificateAcceptor(RustlsAcceptor::new(RustlsConfig::from_config(config)));
    axum_server::from_tcp(listener.into_std()?)?
        .acceptor(acceptor)
        .handle(handle)
        .serve(router.into_make_service_with_connect_info::<SocketAddr>())
        .await
}

/// The rustls acceptor, adding the presented chain to every request of the connection.
#[derive(Clone)]
struct PeerCertificateAcceptor(RustlsAcceptor);

impl<I, S> Accept<I, S> for PeerCertificateAcceptor
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: Send + 'static,
{
    type Stream = <RustlsAcceptor as Accept<I, S>>::Stream;
    type Service = AddExtension<S, PeerCertificates>;
    type Future = BoxFuture<'static, io::Result<(Self::Stream, Self::Service)>>;

    fn accept(&self, stream: I, service: S) -> Self::Future {
        let inner = self.0.clone();
        Box::pin(async move {
            let (stream, service) = inner.accept(stream, service).await?;
            let chain = stream.get_ref().1.peer_certificates().map(<[_]>::to_vec).unwrap_or_default();
            let peer = PeerCertificates::new(chain);
            Ok((stream, axum::Extension(peer).layer(service)))
        })
    }
}

/// Takes any chain whose key the client proves it holds (the handshake signature is checked
/// with the provider's algorithms); the chain itself is the handler's to judge.
#[derive(Debug)]
struct AnyPresented {
    hints: Vec<DistinguishedName>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AnyPresented {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use sso_test_services::pki::{Ca, Person};

    struct Pki {
        dir: tempfile::TempDir,
        ca_pem: String,
        client_pem: String,
        other_client_pem: String,
    }

    fn pki() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::new("Test CA");
        let server = ca.server(&["localhost", "127.0.0.1"]);
        std::fs::write(dir.path().join("server.pem"), &server.cert_pem).unwrap();
        std::fs::write(dir.path().join("server.key"), &server.key_pem).unwrap();
        let other = Ca::new("Other CA");
        Pki {
            ca_pem: ca.cert_pem.clone(),
            client_pem: ca.issue(&Person::official("Nguyễn Văn A", "079203000001", 7)).identity_pem(),
            other_client_pem: other.issue(&Person::official("Trần Thị B", "079203000002", 8)).identity_pem(),
            dir,
        }
    }

    async fn start(pki: &Pki, client: ClientCerts) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
        let config =
            server_config(&pki.dir.path().join("server.pem"), &pki.dir.path().join("server.key"), client)
                .unwrap();
        let router = Router::new().route(
            "/who",
            get(|axum::Extension(peer): axum::Extension<PeerCertificates>| async move {
                match peer.end_entity() {
                    Some(_) => format!("chain of {}", peer.chain().len()),
                    None => "no certificate".to_string(),
                }
            }),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(serve(listener, config, router, async move {
            let _ = rx.await;
        }));
        (addr, tx)
    }

    async fn get_who(pki: &Pki, addr: SocketAddr, identity: Option<&str>) -> reqwest::Result<String> {
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(pki.ca_pem.as_bytes()).unwrap());
        if let Some(pem) = identity {
            builder = builder.identity(reqwest::Identity::from_pem(pem.as_bytes()).unwrap());
        }
        builder
            .build()
            .unwrap()
            .get(format!("https://127.0.0.1:{}/who", addr.port()))
            .send()
            .await?
            .text()
            .await
    }

    #[tokio::test]
    async fn a_presented_chain_reaches_the_handler_and_none_is_not_refused() {
        let pki = pki();
        let (addr, _stop) =
            start(&pki, ClientCerts::any_hinting_issuers_of(pki.ca_pem.as_bytes()).unwrap()).await;
        assert_eq!(get_who(&pki, addr, Some(&pki.client_pem)).await.unwrap(), "chain of 1");
        assert_eq!(get_who(&pki, addr, None).await.unwrap(), "no certificate");
        // Any chain: judging it is the handler's business.
        assert_eq!(get_who(&pki, addr, Some(&pki.other_client_pem)).await.unwrap(), "chain of 1");
    }

    #[tokio::test]
    async fn with_roots_a_foreign_chain_fails_the_handshake_but_none_passes() {
        let pki = pki();
        let mut roots = RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(pki.ca_pem.as_bytes()) {
            roots.add(c.unwrap()).unwrap();
        }
        let (addr, _stop) = start(&pki, ClientCerts::Roots(Arc::new(roots))).await;
        assert_eq!(get_who(&pki, addr, Some(&pki.client_pem)).await.unwrap(), "chain of 1");
        assert_eq!(get_who(&pki, addr, None).await.unwrap(), "no certificate");
        assert!(get_who(&pki, addr, Some(&pki.other_client_pem)).await.is_err());
    }

    #[test]
    fn unreadable_or_empty_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let hints = ClientCerts::AnyPresented { hint_subjects: Vec::new() };
        let err = server_config(&missing, &missing, hints.clone()).unwrap_err();
        assert!(err.to_string().contains("missing.pem"), "{err}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        assert!(matches!(server_config(&empty, &empty, hints), Err(TlsError::NoCertificate(_))));
    }
}
