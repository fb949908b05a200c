//! Client authentication at `/token`, `/introspect` and `/revoke`: secrets (basic / post),
//! `none` for public clients, and `private_key_jwt` (RFC 7523) with replay protection.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderMap;
use jsonwebtoken::jwk::JwkSet;
use serde::Deserialize;

use super::ProviderState;
use super::clients::Client;
use super::error::TokenError;
use crate::config::ClientAuthMethod;

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
    aud: Audience,
    exp: i64,
    jti: String,
}

#[derive(Debug, Deserialize, Default)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
    #[default]
    None,
}

impl Audience {
    fn contains(&self, v: &str) -> bool {
        match self {
            Audience::One(a) => a == v,
            Audience::Many(all) => all.iter().any(|a| a == v),
            Audience::None => false,
        }
    }
}

/// Reads the form of a request to a back-channel endpoint (`/token`, `/introspect`,
/// `/revoke`) and authenticates its client. The request is first counted against `[limits]`
/// for its address and, when it names a registered client, for that client: whether or not
/// the client then authenticates, and also when the form is malformed. Over a limit it is
/// refused with `slow_down` before any credential is checked.
pub async fn authenticate_form(
    app: &ProviderState,
    endpoint: &'static str,
    ip: Option<IpAddr>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(HashMap<String, String>, Arc<Client>), TokenError> {
    let params = super::token::form(headers, body);
    if app.limits.enabled() {
        // Only registered clients get a count: made-up ids cannot grow the counters.
        let claimed = params
            .as_ref()
            .ok()
            .and_then(|p| claimed_client(headers, p))
            .filter(|id| app.clients.get(id).is_some());
        if let Err(limited) = app.limits.check_back_channel(ip, claimed.as_deref()).await {
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
    let client = authenticate(app, headers, &params).await?;
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

/// Authenticates the client of a request to one of the back-channel endpoints.
pub async fn authenticate(
    app: &ProviderState,
    headers: &HeaderMap,
    params: &HashMap<String, String>,
) -> Result<Arc<Client>, TokenError> {
    let get = |k: &str| params.get(k).map(String::as_str).filter(|v| !v.is_empty());
    match (get("client_assertion_type"), get("client_assertion")) {
        (None, None) => app.clients.authenticate_secret(headers, get("client_id"), get("client_secret")),
        (Some(JWT_BEARER), Some(assertion)) => {
            if headers.contains_key(axum::http::header::AUTHORIZATION) || get("client_secret").is_some() {
                return Err(TokenError::InvalidRequest(
                    "use one client authentication method, not two".into(),
                ));
            }
            private_key_jwt(app, assertion, get("client_id")).await
        }
        (Some(_), Some(_)) => Err(TokenError::InvalidClient { basic: false }),
        _ => Err(TokenError::InvalidRequest("client_assertion and client_assertion_type go together".into())),
    }
}

async fn private_key_jwt(
    app: &ProviderState,
    assertion: &str,
    client_id: Option<&str>,
) -> Result<Arc<Client>, TokenError> {
    let fail = || TokenError::InvalidClient { basic: false };
    // The issuer names the client; nothing from this unverified read is trusted beyond
    // choosing which client's keys to verify with.
    let unverified = jsonwebtoken::dangerous::insecure_decode::<Assertion>(assertion).map_err(|_| fail())?;
    let id = client_id.unwrap_or(&unverified.claims.iss);
    let client = app.clients.get(id).ok_or_else(fail)?;
    if client.auth_method != ClientAuthMethod::PrivateKeyJwt {
        return Err(fail());
    }
    let header = jsonwebtoken::decode_header(assertion).map_err(|_| fail())?;
    if !matches!(
        header.alg,
        jsonwebtoken::Algorithm::RS256
            | jsonwebtoken::Algorithm::PS256
            | jsonwebtoken::Algorithm::ES256
            | jsonwebtoken::Algorithm::EdDSA
    ) {
        return Err(fail());
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
        .ok_or_else(fail)?
        .claims;
    let token_endpoint = format!("{}/token", app.issuer());
    if claims.iss != client.client_id || claims.sub != client.client_id {
        return Err(fail());
    }
    if !(claims.aud.contains(&token_endpoint) || claims.aud.contains(app.issuer())) {
        return Err(fail());
    }
    let now = app.clock.now();
    if claims.exp - now > 600 {
        return Err(TokenError::InvalidClient { basic: false });
    }
    // Each assertion is single-use until it expires.
    let ttl = Duration::from_secs((claims.exp - now).max(1) as u64 + 60);
    let fresh =
        app.store.put_new(&format!("jti:{}:{}", client.client_id, claims.jti), Vec::new(), ttl).await?;
    if !fresh {
        tracing::warn!(client = %client.client_id, "replayed client assertion");
        return Err(fail());
    }
    Ok(client)
}

/// The client's registered keys: inline, or fetched from `jwks_uri` and cached briefly.
async fn client_keys(app: &ProviderState, client: &Client) -> Result<JwkSet, TokenError> {
    if let Some(keys) = &client.jwks {
        return Ok(keys.clone());
    }
    let Some(uri) = &client.jwks_uri else { return Err(TokenError::InvalidClient { basic: false }) };
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
            return Err(TokenError::InvalidClient { basic: false });
        }
        Err(_) => {
            tracing::warn!(client = %client.client_id, "the client's jwks_uri did not answer in time");
            return Err(TokenError::InvalidClient { basic: false });
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
            let result = shared.runtime.block_on(authenticate(shared.app.provider(), &HeaderMap::new(), &params));
            prop_assert!(result.is_err(), "authenticated as {:?}", result.map(|c| c.client_id.clone()));
            prop_assert!(shared.app.store.memory_entries() <= before, "a refused assertion stored a replay record");
        }
    }
}
