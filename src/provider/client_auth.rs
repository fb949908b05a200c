//! Client authentication at `/token`, `/par`, `/introspect` and `/revoke`, in one place:
//! secrets (basic / post), `none` for public clients, `private_key_jwt` (RFC 7523) with
//! replay protection, and the mutual-TLS methods of RFC 8705 (`tls_client_auth`,
//! `self_signed_tls_client_auth`).
//!
//! Owns: which method a request uses, whether it is the one the client registered, and the
//! check of each method; the rate limit counted before any credential is checked. Must not:
//! look at what the request asks for beyond naming its client (the endpoints do).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::HeaderMap;
use jsonwebtoken::jwk::JwkSet;
use serde::Deserialize;

use super::ProviderState;
use super::clients::Client;
use super::error::TokenError;
use super::minting::Audience;
use super::mtls::{CertificateRefusal, ClientCertificate, PeerCertificate};
use crate::config::ClientAuthMethod;
use crate::ids::ClientId;
use crate::state::StoreError;
use crate::web::client_ip::ClientIp;

const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Most of a client's `jwks_uri` answer read: a JWK set of a few keys is a few KiB.
const MAX_CLIENT_JWKS_BYTES: usize = 64 * 1024;
/// Longest a `jwks_uri` fetch may take, body included.
const CLIENT_JWKS_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Deserialize)]
struct Assertion {
    iss: String,
    sub: String,
    #[serde(default)]
    aud: Option<Audience>,
    exp: i64,
    jti: String,
}

/// Why a client did not authenticate. Logged; every one is `invalid_client` on the wire.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the request names no client")]
    NoClientNamed,
    #[error("unknown client")]
    UnknownClient,
    #[error("the client is registered for {registered}, the request used {used}")]
    WrongMethod { registered: &'static str, used: &'static str },
    #[error("malformed client credentials")]
    Malformed,
    #[error("wrong client secret")]
    WrongSecret,
    #[error("client assertion refused: {0}")]
    BadAssertion(&'static str),
    #[error("replayed client assertion")]
    ReplayedAssertion,
    #[error("the client's registered keys cannot be read")]
    KeysUnavailable,
    #[error("no TLS client certificate was presented")]
    NoCertificate,
    #[error("client certificate refused: {0:?}")]
    Certificate(CertificateRefusal),
}

/// The one error of client authentication.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientAuthError {
    /// The credentials are not a well-formed request (two methods at once, half an assertion).
    #[error("invalid_request: {0}")]
    InvalidRequest(String),
    /// The client did not prove who it is; `basic` says whether HTTP Basic was used.
    #[error("invalid_client: {reason}")]
    Refused { reason: Refusal, basic: bool },
    /// The state store did not answer (assertion replay records, cached client keys).
    #[error("state store unavailable")]
    Unavailable,
}

impl From<StoreError> for ClientAuthError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "state store failure during client authentication");
        ClientAuthError::Unavailable
    }
}

impl From<ClientAuthError> for TokenError {
    fn from(e: ClientAuthError) -> Self {
        match e {
            ClientAuthError::InvalidRequest(d) => TokenError::InvalidRequest(d),
            ClientAuthError::Refused { reason, basic } => {
                tracing::info!(reason = %reason, "client authentication failed");
                TokenError::InvalidClient { basic }
            }
            ClientAuthError::Unavailable => TokenError::TemporarilyUnavailable,
        }
    }
}

fn refused(reason: Refusal) -> ClientAuthError {
    ClientAuthError::Refused { reason, basic: false }
}

/// A client that proved who it is.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub client: Arc<Client>,
    /// It proved it with its TLS client certificate (`tls_client_auth`,
    /// `self_signed_tls_client_auth`): its tokens are bound to that certificate.
    pub by_certificate: bool,
}

/// What a back-channel request (`/token`, `/par`, `/introspect`, `/revoke`) brings: the
/// client's address, the headers, the raw form body and the TLS client certificate.
#[derive(Debug)]
pub struct BackChannel {
    pub ip: Option<IpAddr>,
    pub headers: HeaderMap,
    pub body: bytes::Bytes,
    pub certificate: Option<ClientCertificate>,
}

impl<S: Send + Sync> FromRequest<S> for BackChannel
where
    ProviderState: axum::extract::FromRef<S>,
    crate::web::client_ip::TrustedProxies: axum::extract::FromRef<S>,
{
    type Rejection = axum::extract::rejection::BytesRejection;

    async fn from_request(req: Request, app: &S) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = req.into_parts();
        let Ok(ClientIp(ip)) = ClientIp::from_request_parts(&mut parts, app).await;
        let Ok(PeerCertificate(certificate)) = PeerCertificate::from_request_parts(&mut parts, app).await;
        let body = bytes::Bytes::from_request(Request::from_parts(parts.clone(), body), app).await?;
        Ok(BackChannel { ip, headers: parts.headers, body, certificate })
    }
}

/// Reads the form of a back-channel request and authenticates its client. The request is
/// first counted against `[limits]` for its address and, when it names a registered client,
/// for that client: whether or not the client then authenticates, and also when the form is
/// malformed. Over a limit it is refused with `slow_down` before any credential is checked.
pub async fn authenticate_form(
    app: &ProviderState,
    endpoint: &'static str,
    request: &BackChannel,
) -> Result<(HashMap<String, String>, Authenticated), TokenError> {
    let headers = &request.headers;
    let params = super::token_endpoint::form(headers, &request.body);
    if app.limits.enabled() {
        // Only registered clients get a count: made-up ids cannot grow the counters.
        let claimed = params
            .as_ref()
            .ok()
            .and_then(|p| claimed_client(headers, p))
            .and_then(|id| ClientId::parse(&id).ok())
            .filter(|id| app.clients.get(id).is_some());
        if let Err(limited) =
            app.limits.check_back_channel(request.ip, claimed.as_ref().map(ClientId::as_str)).await
        {
            crate::limits::record(endpoint, limited);
            tracing::debug!(
                endpoint,
                bucket = limited.bucket.name(),
                "back-channel request over the rate limit"
            );
            return Err(TokenError::SlowDown { retry_after: limited.retry_after });
        }
    }
    let params = params?;
    let client = authenticate(app, headers, &params, request.certificate.as_ref()).await?;
    Ok((params, client))
}

/// The client a request names, before it is authenticated: the HTTP Basic user, else
/// `client_id`, else the issuer of a client assertion.
fn claimed_client(headers: &HeaderMap, params: &HashMap<String, String>) -> Option<String> {
    if let Ok(Some((id, _))) = super::clients::basic_credentials(headers) {
        return Some(id);
    }
    if let Some(id) = params.get("client_id").filter(|v| !v.is_empty()) {
        return Some(id.clone());
    }
    let assertion = params.get("client_assertion")?;
    jsonwebtoken::dangerous::insecure_decode::<Assertion>(assertion).ok().map(|a| a.claims.iss)
}

/// The credentials a request carries, read before any client is looked up.
#[derive(Debug, PartialEq, Eq)]
enum Presented<'a> {
    /// `Authorization: Basic` (RFC 6749 §2.3.1).
    Basic { client_id: String, secret: String },
    /// `client_id` and `client_secret` in the form.
    Post { client_id: &'a str, secret: &'a str },
    /// A `private_key_jwt` assertion, and the `client_id` sent beside it, if any.
    Assertion { assertion: &'a str, client_id: Option<&'a str> },
    /// Only `client_id`: a public client, or one that proves itself with its TLS
    /// certificate (RFC 8705 §2: the client id still comes from the request).
    ClientId(&'a str),
}

impl Presented<'_> {
    /// The method these credentials are, as a client registers it (a lone `client_id` is
    /// `none` or a TLS method: the client's registration decides).
    fn method(&self) -> &'static str {
        match self {
            Presented::Basic { .. } => "client_secret_basic",
            Presented::Post { .. } => "client_secret_post",
            Presented::Assertion { .. } => "private_key_jwt",
            Presented::ClientId(_) => "none",
        }
    }

    /// Whether a client registered for `registered` may authenticate with these credentials
    /// (`client_secret_basic` clients may also post their secret).
    fn allowed_for(&self, registered: ClientAuthMethod) -> bool {
        use ClientAuthMethod as M;
        match self {
            Presented::Basic { .. } => registered == M::ClientSecretBasic,
            Presented::Post { .. } => matches!(registered, M::ClientSecretBasic | M::ClientSecretPost),
            Presented::Assertion { .. } => registered == M::PrivateKeyJwt,
            Presented::ClientId(_) => {
                matches!(registered, M::None | M::TlsClientAuth | M::SelfSignedTlsClientAuth)
            }
        }
    }
}

/// Reads which credentials a request carries; two methods at once are refused.
fn presented<'a>(
    headers: &HeaderMap,
    params: &'a HashMap<String, String>,
) -> Result<Presented<'a>, ClientAuthError> {
    let get = |k: &str| params.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let two = || ClientAuthError::InvalidRequest("use one client authentication method, not two".into());
    let basic = super::clients::basic_credentials(headers)
        .map_err(|_| ClientAuthError::Refused { reason: Refusal::Malformed, basic: true })?;
    match (get("client_assertion_type"), get("client_assertion")) {
        (None, None) => {}
        (Some(JWT_BEARER), Some(assertion)) => {
            if basic.is_some() || get("client_secret").is_some() {
                return Err(two());
            }
            return Ok(Presented::Assertion { assertion, client_id: get("client_id") });
        }
        (Some(_), Some(_)) => return Err(refused(Refusal::BadAssertion("unknown client_assertion_type"))),
        _ => {
            return Err(ClientAuthError::InvalidRequest(
                "client_assertion and client_assertion_type go together".into(),
            ));
        }
    }
    match (basic, get("client_id"), get("client_secret")) {
        (Some(_), _, Some(_)) => Err(two()),
        (Some((client_id, secret)), form_id, None) => {
            if form_id.is_some_and(|f| f != client_id) {
                return Err(ClientAuthError::InvalidRequest(
                    "client_id does not match the Authorization header".into(),
                ));
            }
            Ok(Presented::Basic { client_id, secret })
        }
        (None, Some(client_id), Some(secret)) => Ok(Presented::Post { client_id, secret }),
        (None, Some(client_id), None) => Ok(Presented::ClientId(client_id)),
        (None, None, _) => Err(refused(Refusal::NoClientNamed)),
    }
}

/// Authenticates the client of a back-channel request from its headers, form and TLS
/// client certificate: the one function every back-channel endpoint uses.
pub async fn authenticate(
    app: &ProviderState,
    headers: &HeaderMap,
    params: &HashMap<String, String>,
    certificate: Option<&ClientCertificate>,
) -> Result<Authenticated, ClientAuthError> {
    let presented = presented(headers, params)?;
    let basic = matches!(presented, Presented::Basic { .. });
    let refuse = |reason| ClientAuthError::Refused { reason, basic };
    if let Presented::Assertion { assertion, client_id } = presented {
        let client = private_key_jwt(app, assertion, client_id).await?;
        return Ok(Authenticated { client, by_certificate: false });
    }
    let client_id = match &presented {
        Presented::Basic { client_id, .. } => client_id.as_str(),
        Presented::Post { client_id, .. } | Presented::ClientId(client_id) => client_id,
        Presented::Assertion { .. } => return Err(refuse(Refusal::Malformed)),
    };
    // An id that cannot be a client id is no registered client's: the same refusal.
    let client = ClientId::parse(client_id)
        .ok()
        .and_then(|id| app.clients.get(&id))
        .ok_or_else(|| refuse(Refusal::UnknownClient))?;
    if !presented.allowed_for(client.auth_method) {
        let wrong =
            Refusal::WrongMethod { registered: client.auth_method.as_str(), used: presented.method() };
        return Err(refuse(wrong));
    }
    let by_certificate = match &presented {
        Presented::Basic { secret, .. } => check_secret(&client, secret).map_err(refuse)?,
        Presented::Post { secret, .. } => check_secret(&client, secret).map_err(refuse)?,
        Presented::ClientId(_) => match client.auth_method {
            ClientAuthMethod::TlsClientAuth | ClientAuthMethod::SelfSignedTlsClientAuth => {
                let cert = certificate.ok_or_else(|| refuse(Refusal::NoCertificate))?;
                check_certificate(app, &client, cert).await?;
                true
            }
            _ => false,
        },
        Presented::Assertion { .. } => false,
    };
    Ok(Authenticated { client, by_certificate })
}

fn check_secret(client: &Client, secret: &str) -> Result<bool, Refusal> {
    if client.secret_matches(secret) { Ok(false) } else { Err(Refusal::WrongSecret) }
}

/// RFC 8705 §2: the certificate of a `tls_client_auth` or `self_signed_tls_client_auth`
/// client.
async fn check_certificate(
    app: &ProviderState,
    client: &Client,
    cert: &ClientCertificate,
) -> Result<(), ClientAuthError> {
    let outcome = match (&client.auth_method, &client.tls_name) {
        (ClientAuthMethod::TlsClientAuth, Some(name)) => app.mtls.roots.check(cert, name, app.clock.now()),
        (ClientAuthMethod::SelfSignedTlsClientAuth, _) => {
            let keys = client_keys(app, client).await?;
            super::mtls::check_self_signed(cert, &keys)
        }
        // `check-config` makes a name mandatory; without one nothing can match.
        _ => Err(CertificateRefusal::WrongSubject),
    };
    outcome.map_err(|r| refused(Refusal::Certificate(r)))
}

async fn private_key_jwt(
    app: &ProviderState,
    assertion: &str,
    client_id: Option<&str>,
) -> Result<Arc<Client>, ClientAuthError> {
    let bad = |why| refused(Refusal::BadAssertion(why));
    // The issuer names the client; nothing from this unverified read is trusted beyond
    // choosing which client's keys to verify with.
    let unverified =
        jsonwebtoken::dangerous::insecure_decode::<Assertion>(assertion).map_err(|_| bad("unreadable"))?;
    let id = client_id.unwrap_or(&unverified.claims.iss);
    let client = ClientId::parse(id)
        .ok()
        .and_then(|id| app.clients.get(&id))
        .ok_or_else(|| refused(Refusal::UnknownClient))?;
    if client.auth_method != ClientAuthMethod::PrivateKeyJwt {
        let registered = client.auth_method.as_str();
        return Err(refused(Refusal::WrongMethod { registered, used: "private_key_jwt" }));
    }
    let header = jsonwebtoken::decode_header(assertion).map_err(|_| bad("unreadable header"))?;
    if !matches!(
        header.alg,
        jsonwebtoken::Algorithm::RS256
            | jsonwebtoken::Algorithm::PS256
            | jsonwebtoken::Algorithm::ES256
            | jsonwebtoken::Algorithm::EdDSA
    ) {
        return Err(bad("algorithm not accepted"));
    }
    let keys = client_keys(app, &client).await?;
    let candidates: Vec<_> = keys
        .keys
        .iter()
        .filter(|k| header.kid.is_none() || k.common.key_id == header.kid)
        .filter_map(|k| jsonwebtoken::DecodingKey::from_jwk(k).ok())
        .collect();
    let mut validation = jsonwebtoken::Validation::new(header.alg);
    validation.validate_aud = false;
    validation.leeway = 30;
    validation.set_required_spec_claims(&["exp", "iss", "sub"]);
    let claims = candidates
        .iter()
        .find_map(|key| jsonwebtoken::decode::<Assertion>(assertion, key, &validation).ok())
        .ok_or_else(|| bad("signature, expiry or claims"))?
        .claims;
    if claims.iss != client.client_id || claims.sub != client.client_id {
        return Err(bad("iss and sub must be the client id"));
    }
    let token_endpoint = format!("{}/token", app.issuer());
    let alias = app.settings.mtls.url.as_deref().map(|u| format!("{}/token", u.trim_end_matches('/')));
    let names = |v: &str| claims.aud.as_ref().is_some_and(|aud| aud.contains(v));
    let for_us = names(&token_endpoint) || names(app.issuer()) || alias.is_some_and(|a| names(&a));
    if !for_us {
        return Err(bad("aud is not this provider"));
    }
    let now = app.clock.now();
    if claims.exp - now > 600 {
        return Err(bad("expires too far ahead"));
    }
    // Each assertion is single-use until it expires.
    let ttl = Duration::from_secs((claims.exp - now).max(1) as u64 + 60);
    let fresh =
        app.store.put_new(&format!("jti:{}:{}", client.client_id, claims.jti), Vec::new(), ttl).await?;
    if !fresh {
        tracing::warn!(client = %client.client_id, "replayed client assertion");
        return Err(refused(Refusal::ReplayedAssertion));
    }
    Ok(client)
}

/// The client's registered keys: inline, or fetched from `jwks_uri` and cached briefly.
async fn client_keys(app: &ProviderState, client: &Client) -> Result<JwkSet, ClientAuthError> {
    if let Some(keys) = &client.jwks {
        return Ok(keys.clone());
    }
    let Some(uri) = &client.jwks_uri else { return Err(refused(Refusal::KeysUnavailable)) };
    let cache_key = format!("client-jwks:{}", client.client_id);
    if let Some(cached) = app.store.get(&cache_key).await?
        && let Ok(keys) = serde_json::from_slice::<JwkSet>(&cached)
    {
        return Ok(keys);
    }
    let fetch = async {
        let mut res = app.http.get(uri).send().await.map_err(|e| e.to_string())?;
        if !res.status().is_success() {
            return Err(format!("HTTP {}", res.status()));
        }
        let body = read_capped(&mut res, MAX_CLIENT_JWKS_BYTES).await?;
        let keys = serde_json::from_slice::<JwkSet>(&body).map_err(|e| e.to_string())?;
        Ok((keys, body))
    };
    let (keys, body) = match tokio::time::timeout(CLIENT_JWKS_TIMEOUT, fetch).await {
        Ok(Ok(fetched)) => fetched,
        Ok(Err(e)) => {
            tracing::warn!(client = %client.client_id, error = %e, "cannot use the client's jwks_uri");
            return Err(refused(Refusal::KeysUnavailable));
        }
        Err(_) => {
            tracing::warn!(client = %client.client_id, "the client's jwks_uri did not answer in time");
            return Err(refused(Refusal::KeysUnavailable));
        }
    };
    app.store.put(&cache_key, body, Duration::from_secs(300)).await?;
    Ok(keys)
}

/// Reads a response body chunk by chunk, giving up as soon as it passes `cap` bytes: what is
/// held never exceeds `cap` plus one chunk, however much the server would send.
async fn read_capped(res: &mut reqwest::Response, cap: usize) -> Result<Vec<u8>, String> {
    let too_large = || format!("the body exceeds {cap} bytes");
    if res.content_length().is_some_and(|n| n > cap as u64) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = res.chunk().await.map_err(|e| e.to_string())? {
        if body.len() + chunk.len() > cap {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Serves one canned head, then `body` forever (or once), on a loopback port.
    async fn server(head: &'static str, body: &'static [u8], endless: bool) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks", listener.local_addr().unwrap());
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 2048];
                    let _ = socket.read(&mut buf).await;
                    if socket.write_all(head.as_bytes()).await.is_err() {
                        return;
                    }
                    loop {
                        if socket.write_all(body).await.is_err() || !endless {
                            break;
                        }
                    }
                    let _ = socket.read(&mut buf).await;
                });
            }
        });
        url
    }

    /// An HTTP/1.0-style body that ends only when the connection does.
    const UNTIL_CLOSE: &str = "HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n";
    const CHUNK: &[u8] = &[b' '; 1024];

    #[tokio::test]
    async fn an_endless_body_is_abandoned_at_the_cap() {
        let url = server(UNTIL_CLOSE, CHUNK, true).await;
        let mut res = reqwest::get(&url).await.unwrap();
        let read = tokio::time::timeout(Duration::from_secs(5), read_capped(&mut res, 64 * 1024)).await;
        assert!(read.expect("gave up without waiting for the end").is_err());
    }

    #[tokio::test]
    async fn a_declared_oversized_body_is_refused_unread_and_a_small_one_read_whole() {
        let url = server("HTTP/1.1 200 OK\r\ncontent-length: 1000000\r\n\r\n", b"{}", false).await;
        let mut res = reqwest::get(&url).await.unwrap();
        assert!(read_capped(&mut res, 64 * 1024).await.is_err());
        let url = server("HTTP/1.1 200 OK\r\ncontent-length: 11\r\n\r\n", b"{\"keys\":[]}", false).await;
        let mut res = reqwest::get(&url).await.unwrap();
        assert_eq!(read_capped(&mut res, 64 * 1024).await.unwrap(), b"{\"keys\":[]}");
    }
}

/// Every decision of client authentication, on a whole gateway state with secret, public,
/// `tls_client_auth` and `self_signed_tls_client_auth` clients and certificates made by rcgen.
#[cfg(test)]
mod decisions {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use axum::http::{HeaderValue, header};
    use base64::Engine;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD as B64};
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
        KeyUsagePurpose, SanType,
    };
    use rustls::pki_types::CertificateDer;

    use super::*;

    /// The certificates of these tests: made once.
    struct Pki {
        ca_pem: String,
        /// From the CA: `CN=portal-mtls, O=HCMC, C=VN`, SAN e-mail `rp@portal.example`.
        right: ClientCertificate,
        /// From the CA, another subject.
        other_subject: ClientCertificate,
        /// The right subject, from another CA.
        other_ca: ClientCertificate,
        /// The right subject from the CA, expired.
        expired: ClientCertificate,
        /// Self-signed; its key is registered for `mtls-self`.
        registered_key: ClientCertificate,
        registered_jwk: serde_json::Value,
        /// Self-signed with another key.
        other_key: ClientCertificate,
    }

    fn cert(
        params: &CertificateParams,
        issuer: Option<&Issuer<'_, KeyPair>>,
    ) -> (ClientCertificate, KeyPair) {
        let key = KeyPair::generate().unwrap();
        let cert = match issuer {
            Some(issuer) => params.signed_by(&key, issuer).unwrap(),
            None => params.self_signed(&key).unwrap(),
        };
        (ClientCertificate::new(vec![CertificateDer::from(cert.der().to_vec())]).unwrap(), key)
    }

    fn client_params(cn: &str, days: i64) -> CertificateParams {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        // rcgen starts with a CN of its own, which would stay first.
        params.distinguished_name = rcgen::DistinguishedName::new();
        for (t, v) in
            [(DnType::CountryName, "VN"), (DnType::OrganizationName, "HCMC"), (DnType::CommonName, cn)]
        {
            params.distinguished_name.push(t, v);
        }
        params.subject_alt_names.push(SanType::Rfc822Name("rp@portal.example".try_into().unwrap()));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(30);
        params.not_after = now + time::Duration::days(days);
        params
    }

    fn ca(name: &str) -> (Issuer<'static, KeyPair>, String) {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap();
        let pem = params.self_signed(&key).unwrap().pem();
        (Issuer::new(params, key), pem)
    }

    fn pki() -> &'static Pki {
        static PKI: std::sync::OnceLock<Pki> = std::sync::OnceLock::new();
        PKI.get_or_init(|| {
            let (issuer, ca_pem) = ca("Test CA");
            let (stranger, _) = ca("Other CA");
            let (registered_key, key) = cert(&client_params("rp-self", 365), None);
            let point = key.public_key_raw();
            let registered_jwk = serde_json::json!({
                "kty": "EC", "crv": "P-256", "x": B64.encode(&point[1..33]), "y": B64.encode(&point[33..65]),
            });
            Pki {
                ca_pem,
                right: cert(&client_params("portal-mtls", 365), Some(&issuer)).0,
                other_subject: cert(&client_params("someone-else", 365), Some(&issuer)).0,
                other_ca: cert(&client_params("portal-mtls", 365), Some(&stranger)).0,
                expired: cert(&client_params("portal-mtls", -1), Some(&issuer)).0,
                registered_key,
                registered_jwk,
                other_key: cert(&client_params("rp-self", 365), None).0,
            }
        })
    }

    async fn state() -> (tempfile::TempDir, ProviderState) {
        let pki = pki();
        let (dir, app, _) = crate::app::test_state_with(|dir| {
            std::fs::write(dir.join("ca.pem"), &pki.ca_pem).unwrap();
            let jwks = toml::Value::try_from(serde_json::json!({ "keys": [pki.registered_jwk] })).unwrap();
            format!(
                r#"
[[clients]]
client_id = "mtls-pki"
redirect_uris = []
scopes = ["api.read"]
grant_types = ["client_credentials"]
token_endpoint_auth_method = "tls_client_auth"
tls_client_auth_subject_dn = "CN=portal-mtls,O=HCMC,C=VN"
[[clients]]
client_id = "mtls-san"
redirect_uris = []
scopes = ["api.read"]
grant_types = ["client_credentials"]
token_endpoint_auth_method = "tls_client_auth"
tls_client_auth_san_email = "rp@portal.example"
[[clients]]
client_id = "mtls-self"
redirect_uris = []
scopes = ["api.read"]
grant_types = ["client_credentials"]
token_endpoint_auth_method = "self_signed_tls_client_auth"
jwks = {jwks}
[inbound]
trusted_proxies = ["127.0.0.1/32"]
[mtls]
ca_file = "{ca}"
certificate_header = "x-ssl-client-cert"
"#,
                ca = dir.join("ca.pem").display()
            )
        })
        .await;
        (dir, app.provider().clone())
    }

    fn form(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn basic(id: &str, secret: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        let v = STANDARD.encode(format!("{id}:{secret}"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(&format!("Basic {v}")).unwrap());
        h
    }

    fn reason(result: Result<Authenticated, ClientAuthError>) -> Refusal {
        match result {
            Err(ClientAuthError::Refused { reason, .. }) => reason,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    async fn by_cert(
        app: &ProviderState,
        client: &str,
        cert: Option<&ClientCertificate>,
    ) -> Result<Authenticated, ClientAuthError> {
        authenticate(app, &HeaderMap::new(), &form(&[("client_id", client)]), cert).await
    }

    #[tokio::test]
    async fn the_right_certificate_authenticates_each_tls_client() {
        let (_dir, app) = state().await;
        let pki = pki();
        for (client, cert) in
            [("mtls-pki", &pki.right), ("mtls-san", &pki.right), ("mtls-self", &pki.registered_key)]
        {
            let auth = by_cert(&app, client, Some(cert)).await.unwrap();
            assert_eq!(auth.client.client_id, client);
            assert!(auth.by_certificate, "{client}");
        }
    }

    #[tokio::test]
    async fn a_trusted_certificate_of_another_subject_is_refused() {
        let (_dir, app) = state().await;
        let got = reason(by_cert(&app, "mtls-pki", Some(&pki().other_subject)).await);
        assert_eq!(got, Refusal::Certificate(CertificateRefusal::WrongSubject));
        // The registered e-mail SAN matches, but the DN client wants its DN.
        assert!(by_cert(&app, "mtls-san", Some(&pki().other_subject)).await.is_ok(), "same SAN e-mail");
        let got = reason(by_cert(&app, "mtls-san", Some(&pki().registered_key)).await);
        assert!(matches!(got, Refusal::Certificate(CertificateRefusal::Untrusted(_))), "{got:?}");
    }

    #[tokio::test]
    async fn a_certificate_of_another_ca_or_expired_is_untrusted() {
        let (_dir, app) = state().await;
        for cert in [&pki().other_ca, &pki().expired, &pki().registered_key] {
            let got = reason(by_cert(&app, "mtls-pki", Some(cert)).await);
            assert!(matches!(got, Refusal::Certificate(CertificateRefusal::Untrusted(_))), "{got:?}");
        }
    }

    #[tokio::test]
    async fn a_self_signed_certificate_of_another_key_is_refused() {
        let (_dir, app) = state().await;
        for cert in [&pki().other_key, &pki().right] {
            let got = reason(by_cert(&app, "mtls-self", Some(cert)).await);
            assert_eq!(got, Refusal::Certificate(CertificateRefusal::WrongKey));
        }
    }

    #[tokio::test]
    async fn a_tls_client_without_a_certificate_is_refused() {
        let (_dir, app) = state().await;
        for client in ["mtls-pki", "mtls-san", "mtls-self"] {
            assert_eq!(reason(by_cert(&app, client, None).await), Refusal::NoCertificate);
        }
    }

    #[tokio::test]
    async fn each_client_uses_only_the_method_it_registered() {
        let (_dir, app) = state().await;
        let right = Some(&pki().right);
        // A TLS client that sends a secret, Basic or form.
        let got =
            reason(authenticate(&app, &basic("mtls-pki", "guess-guess-guess"), &form(&[]), right).await);
        assert_eq!(got, Refusal::WrongMethod { registered: "tls_client_auth", used: "client_secret_basic" });
        let post = form(&[("client_id", "mtls-self"), ("client_secret", "guess-guess-guess")]);
        let got = reason(authenticate(&app, &HeaderMap::new(), &post, Some(&pki().registered_key)).await);
        assert_eq!(
            got,
            Refusal::WrongMethod { registered: "self_signed_tls_client_auth", used: "client_secret_post" }
        );
        // A secret client with a certificate but no secret.
        let got = reason(by_cert(&app, "portal", right).await);
        assert_eq!(got, Refusal::WrongMethod { registered: "client_secret_basic", used: "none" });
        // A public client stays public with a certificate: no binding without registration.
        let spa = by_cert(&app, "spa", right).await.unwrap();
        assert!(spa.client.is_public() && !spa.by_certificate);
        assert_eq!(reason(by_cert(&app, "nobody", right).await), Refusal::UnknownClient);
    }

    #[tokio::test]
    async fn a_client_id_that_cannot_be_one_is_refused_as_an_unknown_client() {
        let (_dir, app) = state().await;
        for not_an_id in ["sso-gateway:admin", "sso-gateway:account", "port\u{7f}al"] {
            assert_eq!(reason(by_cert(&app, not_an_id, None).await), Refusal::UnknownClient, "{not_an_id:?}");
            let post = form(&[("client_id", not_an_id), ("client_secret", "portal-secret-0123456789")]);
            let got = reason(authenticate(&app, &HeaderMap::new(), &post, None).await);
            assert_eq!(got, Refusal::UnknownClient, "{not_an_id:?}");
        }
        // HTTP Basic splits at the first ':', so an escaped one is the only way to send it.
        let escaped = basic("sso-gateway%3Aadmin", "portal-secret-0123456789");
        let got = authenticate(&app, &escaped, &form(&[]), None).await;
        assert!(matches!(got, Err(ClientAuthError::Refused { reason: Refusal::UnknownClient, basic: true })));
    }

    #[tokio::test]
    async fn secrets_authenticate_by_basic_or_post_and_only_the_right_one() {
        let (_dir, app) = state().await;
        let none = HeaderMap::new();
        let ok = authenticate(&app, &basic("portal", "portal-secret-0123456789"), &form(&[]), None).await;
        assert!(!ok.unwrap().by_certificate);
        let post = form(&[("client_id", "portal"), ("client_secret", "portal-secret-0123456789")]);
        assert!(authenticate(&app, &none, &post, None).await.is_ok());
        // '-' needs no escaping, but an escaped form of the same secret still matches.
        let escaped = basic("portal", "portal%2Dsecret%2D0123456789");
        assert!(authenticate(&app, &escaped, &form(&[]), None).await.is_ok());
        let wrong = authenticate(&app, &basic("portal", "wrong"), &form(&[]), None).await;
        assert_eq!(
            wrong.unwrap_err(),
            ClientAuthError::Refused { reason: Refusal::WrongSecret, basic: true }
        );
        let guess = form(&[("client_id", "spa"), ("client_secret", "guess")]);
        assert!(matches!(reason(authenticate(&app, &none, &guess, None).await), Refusal::WrongMethod { .. }));
        assert_eq!(reason(authenticate(&app, &none, &form(&[]), None).await), Refusal::NoClientNamed);
        let two = authenticate(&app, &basic("portal", "x"), &form(&[("client_secret", "y")]), None).await;
        assert!(matches!(two, Err(ClientAuthError::InvalidRequest(_))));
    }

    #[test]
    fn every_client_auth_error_is_one_token_error() {
        let cases = [
            (ClientAuthError::InvalidRequest("x".into()), "invalid_request", 400),
            (
                ClientAuthError::Refused { reason: Refusal::NoCertificate, basic: false },
                "invalid_client",
                401,
            ),
            (ClientAuthError::Refused { reason: Refusal::WrongSecret, basic: true }, "invalid_client", 401),
            (ClientAuthError::Unavailable, "temporarily_unavailable", 503),
        ];
        for (e, code, status) in cases {
            let t = TokenError::from(e);
            assert_eq!((t.code(), t.status().as_u16()), (code, status));
        }
        let basic = TokenError::from(ClientAuthError::Refused { reason: Refusal::WrongSecret, basic: true });
        assert_eq!(basic, TokenError::InvalidClient { basic: true });
    }
}

#[cfg(test)]
mod properties {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    /// A client assertion for `signer` that `signer`'s key did not sign: `alg: none`, HMAC
    /// keyed with its public key, another key named by `kid`/`jku`/`x5u`, or noise.
    fn forged() -> impl Strategy<Value = String> {
        (
            prop::sample::select(vec!["none", "HS256", "ES256", "RS256", "EdDSA", "PS256", "ES384"]),
            prop::option::of(any::<String>()),
            any::<bool>(),
            prop::collection::vec(any::<u8>(), 0..300),
            any::<bool>(),
            -100i64..1000,
        )
            .prop_map(|(alg, kid, inject, noise, hmac, exp)| {
                let shared = crate::app::shared_test_state();
                let kid = kid.or_else(|| shared.signer.active_kid(crate::keys::SigningAlg::ES256));
                let mut header = json!({ "alg": alg, "kid": kid });
                if inject {
                    header["jku"] = json!("http://127.0.0.1:1/jwks");
                    header["x5u"] = json!("http://127.0.0.1:1/x5u");
                }
                let now = shared.app.clock.now();
                let claims = json!({
                    "iss": "signer", "sub": "signer", "aud": "http://127.0.0.1:1/token",
                    "exp": now + exp, "jti": uuid::Uuid::new_v4().to_string(),
                });
                let input = format!("{}.{}", B64.encode(header.to_string()), B64.encode(claims.to_string()));
                let signature = if hmac {
                    use hmac::Mac;
                    let mut mac =
                        hmac::Hmac::<sha2::Sha256>::new_from_slice(&shared.signer.jwks_json()).unwrap();
                    mac.update(input.as_bytes());
                    mac.finalize().into_bytes().to_vec()
                } else {
                    noise
                };
                format!("{input}.{}", B64.encode(signature))
            })
    }

    proptest! {
        #![proptest_config(crate::fuzzing::config(256))]

        #[test]
        fn a_forged_or_garbled_assertion_never_authenticates(
            assertion in prop_oneof![forged(), any::<String>().prop_filter("an assertion", |s| !s.is_empty())],
            client_id in prop::option::of(prop::sample::select(vec!["signer", "portal", "spa", "nobody"])),
            assertion_type in prop::sample::select(vec![JWT_BEARER, "urn:other", ""]),
        ) {
            let shared = crate::app::shared_test_state();
            let mut params = HashMap::new();
            params.insert("client_assertion".to_string(), assertion);
            params.insert("client_assertion_type".to_string(), assertion_type.to_string());
            if let Some(id) = client_id {
                params.insert("client_id".to_string(), id.to_string());
            }
            let before = shared.app.store.memory_entries();
            let result = shared.runtime.block_on(authenticate(shared.app.provider(), &HeaderMap::new(), &params, None));
            prop_assert!(result.is_err(), "authenticated as {:?}", result.map(|c| c.client.client_id.clone()));
            prop_assert!(shared.app.store.memory_entries() <= before, "a refused assertion stored a replay record");
        }
    }
}
