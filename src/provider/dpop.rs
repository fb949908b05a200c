//! DPoP (RFC 9449): checking the proof a client sends in the `DPoP` header at `/par`,
//! `/token` and `/userinfo`, the key thumbprint (RFC 7638) tokens are bound to (`cnf.jkt`),
//! server nonces and the single use of each proof.
//!
//! Owns: proof verification (the signature through `jsonwebtoken` on aws-lc-rs, never by
//! hand), thumbprints, the nonce of the current period (shared by replicas through the state
//! store) and the replay guard of proof `jti`s. Must not: mint or bind tokens, or decide
//! which client needs DPoP (`token`, `userinfo` and `par` do).

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use axum::http::HeaderMap;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::Digest;

use super::ProviderState;
use crate::keys::LEEWAY_SECS;
use crate::state::{Class, StateStore, StoreError, hashed_key, random_handle};

/// Proof signature algorithms accepted (asymmetric only; `none` and MACs never).
pub const ALGORITHMS: [&str; 4] = ["ES256", "PS256", "RS256", "EdDSA"];

/// Longest proof read (an RSA-4096 key in the header fits several times).
const MAX_PROOF_BYTES: usize = 8 * 1024;
/// Longest `jti` accepted (it is hashed before it is stored).
const MAX_JTI_CHARS: usize = 256;

/// Why a proof was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProofError {
    /// Malformed, badly signed, for another request, stale, replayed.
    Invalid(String),
    /// The proof lacks the current server nonce (or carries an old one): retry with this one.
    UseNonce(String),
    /// The state store did not answer.
    Unavailable,
}

impl From<StoreError> for ProofError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "state store failure while checking a DPoP proof");
        ProofError::Unavailable
    }
}

impl From<ProofError> for super::error::TokenError {
    fn from(e: ProofError) -> Self {
        match e {
            ProofError::Invalid(d) => super::error::TokenError::InvalidDpopProof(d),
            ProofError::UseNonce(nonce) => super::error::TokenError::UseDpopNonce { nonce },
            ProofError::Unavailable => super::error::TokenError::TemporarilyUnavailable,
        }
    }
}

impl From<ProofError> for super::error::BearerError {
    fn from(e: ProofError) -> Self {
        match e {
            ProofError::Invalid(d) => super::error::BearerError::InvalidDpopProof(d),
            ProofError::UseNonce(nonce) => super::error::BearerError::UseDpopNonce { nonce },
            ProofError::Unavailable => super::error::BearerError::Unavailable,
        }
    }
}

fn invalid(d: impl Into<String>) -> ProofError {
    ProofError::Invalid(d.into())
}

/// What a verified proof says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proof {
    /// The RFC 7638 SHA-256 thumbprint of the proof's key (base64url): what tokens bind to.
    pub jkt: String,
    jti: String,
    iat: i64,
    nonce: Option<String>,
}

/// The request a proof must be for.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// `POST`, `GET`.
    pub method: &'a str,
    /// The endpoint's public URL (`{issuer}/token`), without query.
    pub url: &'a str,
    /// At a resource endpoint, the access token the proof must name (`ath`).
    pub access_token: Option<&'a str>,
    /// The thumbprint the proof's key must have (the `cnf.jkt` of that access token).
    pub jkt: Option<&'a str>,
    /// The same endpoint on the mTLS host (`{mtls.url}/token`, RFC 8705 §5), which `htu` may
    /// name instead of `url`; [`verify`] fills it in from the configuration.
    pub alias: Option<&'a str>,
}

/// The endpoint `url` (under the issuer) on the separate mTLS host, when `mtls.url` is set.
pub fn mtls_alias(app: &ProviderState, url: &str) -> Option<String> {
    let base = app.settings.mtls.url.as_deref()?.trim_end_matches('/');
    let path = url.strip_prefix(app.issuer())?;
    Some(format!("{base}{path}"))
}

#[derive(Debug, Deserialize)]
struct ProofClaims {
    jti: String,
    htm: String,
    htu: String,
    iat: i64,
    #[serde(default)]
    ath: Option<String>,
    #[serde(default)]
    nonce: Option<String>,
}

/// `base64url(SHA-256(access token))`: the `ath` of a proof presented with that token.
pub fn access_token_hash(token: &str) -> String {
    B64.encode(sha2::Sha256::digest(token.as_bytes()))
}

/// Whether `value` looks like a SHA-256 thumbprint (`dpop_jkt`): 43 base64url characters.
pub fn is_thumbprint(value: &str) -> bool {
    value.len() == 43 && value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The RFC 7638 SHA-256 thumbprint of a public JWK, with the curve the algorithm needs.
/// None for a key of another type, a private key or a key the algorithm cannot use.
fn thumbprint(alg: jsonwebtoken::Algorithm, jwk: &Map<String, Value>) -> Option<String> {
    use jsonwebtoken::Algorithm as A;
    // A private or symmetric key in a proof header is refused outright.
    if ["d", "p", "q", "dp", "dq", "qi", "k"].iter().any(|m| jwk.contains_key(*m)) {
        return None;
    }
    let member =
        |k: &str| jwk.get(k).and_then(Value::as_str).map(|v| Value::String(v.to_owned()).to_string());
    let kty = jwk.get("kty").and_then(Value::as_str)?;
    let crv = jwk.get("crv").and_then(Value::as_str);
    // Members in lexicographic order, no whitespace (RFC 7638 §3.2).
    let canonical = match (alg, kty, crv) {
        (A::ES256, "EC", Some("P-256")) => {
            format!(r#"{{"crv":"P-256","kty":"EC","x":{},"y":{}}}"#, member("x")?, member("y")?)
        }
        (A::RS256 | A::PS256, "RSA", _) => {
            format!(r#"{{"e":{},"kty":"RSA","n":{}}}"#, member("e")?, member("n")?)
        }
        (A::EdDSA, "OKP", Some("Ed25519")) => {
            format!(r#"{{"crv":"Ed25519","kty":"OKP","x":{}}}"#, member("x")?)
        }
        _ => return None,
    };
    Some(B64.encode(sha2::Sha256::digest(canonical.as_bytes())))
}

/// Whether `htu` names `expected`: the same scheme, host, port and path; a query or fragment
/// in `htu` is ignored (RFC 9449 §4.3).
fn same_target(htu: &str, expected: &str) -> bool {
    let (Ok(htu), Ok(expected)) = (url::Url::parse(htu), url::Url::parse(expected)) else { return false };
    htu.scheme() == expected.scheme()
        && htu.host_str() == expected.host_str()
        && htu.port_or_known_default() == expected.port_or_known_default()
        && htu.path() == expected.path()
}

/// The JOSE header of a proof: what [`check`] reads of it, parsed once.
#[derive(Debug, Deserialize)]
struct ProofHeader {
    #[serde(default)]
    typ: Option<String>,
    alg: String,
    /// Kept as raw members: the thumbprint needs them verbatim, and a private key's `d` must
    /// be seen to be refused.
    #[serde(default)]
    jwk: Option<Map<String, Value>>,
}

/// The verifying key of a public JWK whose members [`thumbprint`] has already checked
/// against `alg`.
fn decoding_key(alg: jsonwebtoken::Algorithm, jwk: &Map<String, Value>) -> Option<jsonwebtoken::DecodingKey> {
    use jsonwebtoken::{Algorithm as A, DecodingKey};
    let member = |k: &str| jwk.get(k).and_then(Value::as_str);
    match alg {
        A::ES256 => DecodingKey::from_ec_components(member("x")?, member("y")?).ok(),
        A::RS256 | A::PS256 => DecodingKey::from_rsa_components(member("n")?, member("e")?).ok(),
        A::EdDSA => DecodingKey::from_ed_components(member("x")?).ok(),
        _ => None,
    }
}

/// Checks a proof on its own (RFC 9449 §4.3 steps 2–11 except nonce and replay, which need
/// the state store): explicit type, asymmetric algorithm, public key in the header, signature,
/// method, URL, age and, for a resource request, the access token hash.
///
/// Each part is decoded once: the header (into [`ProofHeader`], whose raw `jwk` members give
/// both the thumbprint and the key), the claims, and the signature, verified by
/// `jsonwebtoken::crypto::verify` on aws-lc-rs.
pub fn check(proof: &str, target: Target<'_>, now: i64, max_age: Duration) -> Result<Proof, ProofError> {
    use jsonwebtoken::Algorithm as A;
    if proof.len() > MAX_PROOF_BYTES {
        return Err(invalid("the DPoP proof is too large"));
    }
    let mut parts = proof.split('.');
    let (Some(header_b64), Some(claims_b64), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid("the DPoP proof is not a JWT"));
    };
    let header: ProofHeader = B64
        .decode(header_b64)
        .ok()
        .and_then(|h| serde_json::from_slice(&h).ok())
        .ok_or_else(|| invalid("the DPoP proof is not a JWT"))?;
    if !header.typ.as_deref().is_some_and(|t| t.eq_ignore_ascii_case("dpop+jwt")) {
        return Err(invalid("the DPoP proof's typ is not dpop+jwt"));
    }
    let alg = match header.alg.as_str() {
        "ES256" => A::ES256,
        "PS256" => A::PS256,
        "RS256" => A::RS256,
        "EdDSA" => A::EdDSA,
        _ => return Err(invalid("the DPoP proof's algorithm is not supported")),
    };
    let jwk = header.jwk.as_ref().ok_or_else(|| invalid("the DPoP proof has no jwk header"))?;
    let jkt = thumbprint(alg, jwk)
        .ok_or_else(|| invalid("the DPoP proof's jwk is not a public key for its algorithm"))?;
    let key = decoding_key(alg, jwk).ok_or_else(|| invalid("the DPoP proof's jwk is unusable"))?;
    let signed = &proof[..header_b64.len() + 1 + claims_b64.len()];
    if !jsonwebtoken::crypto::verify(signature, signed.as_bytes(), &key, alg).unwrap_or(false) {
        return Err(invalid("the DPoP proof's signature or claims are invalid"));
    }
    let claims: ProofClaims = B64
        .decode(claims_b64)
        .ok()
        .and_then(|c| serde_json::from_slice(&c).ok())
        .ok_or_else(|| invalid("the DPoP proof's signature or claims are invalid"))?;
    if claims.htm != target.method {
        return Err(invalid("the DPoP proof is for another HTTP method (htm)"));
    }
    if !same_target(&claims.htu, target.url) && !target.alias.is_some_and(|a| same_target(&claims.htu, a)) {
        return Err(invalid("the DPoP proof is for another URL (htu)"));
    }
    let age = now.saturating_sub(claims.iat);
    if age > max_age.as_secs() as i64 || age < -(LEEWAY_SECS as i64) {
        return Err(invalid("the DPoP proof's iat is too far from now"));
    }
    if claims.jti.is_empty() || claims.jti.chars().count() > MAX_JTI_CHARS {
        return Err(invalid("the DPoP proof's jti is missing or too long"));
    }
    if target.jkt.is_some_and(|expected| expected != jkt) {
        return Err(invalid("the DPoP proof is signed by another key than the token is bound to"));
    }
    match (target.access_token, claims.ath.as_deref()) {
        (Some(token), Some(ath)) if ath == access_token_hash(token) => {}
        (Some(_), Some(_)) => return Err(invalid("the DPoP proof is for another access token (ath)")),
        (Some(_), None) => return Err(invalid("the DPoP proof has no ath")),
        (None, _) => {}
    }
    Ok(Proof { jkt, jti: claims.jti, iat: claims.iat, nonce: claims.nonce })
}

/// The one `DPoP` header of a request: None without one, an error with several or a
/// non-text one.
pub fn header(headers: &HeaderMap) -> Result<Option<&str>, ProofError> {
    let mut all = headers.get_all("dpop").iter();
    let Some(first) = all.next() else { return Ok(None) };
    if all.next().is_some() {
        return Err(invalid("more than one DPoP header"));
    }
    first.to_str().map(Some).map_err(|_| invalid("the DPoP header is not text"))
}

/// Verifies the request's proof, if it has one, for `target`: [`check`], then the server
/// nonce (when `dpop.require_nonce`) and the single use of its `jti` (recorded in the state
/// store, so a proof replayed at another replica is refused too). The replay marker is a
/// record of `class`: [`Class::Anonymous`] when nothing the caller sent has been proven yet
/// (a public client's `client_id` proves nothing), so that fresh proofs from anyone use only
/// the store's anonymous share.
pub async fn verify(
    app: &ProviderState,
    headers: &HeaderMap,
    target: Target<'_>,
    class: Class,
) -> Result<Option<Proof>, ProofError> {
    let Some(proof) = header(headers)? else { return Ok(None) };
    let settings = &app.settings.dpop;
    let now = app.clock.now();
    // A client of the mTLS host names that host's URL (both hosts serve the endpoint).
    let alias = mtls_alias(app, target.url);
    let target = Target { alias: alias.as_deref(), ..target };
    let proof = check(proof, target, now, settings.proof_max_age)?;
    if settings.require_nonce {
        let valid = match &proof.nonce {
            Some(n) => app.dpop_nonces.is_valid(&app.store, now, n).await?,
            None => false,
        };
        if !valid {
            return Err(ProofError::UseNonce(app.dpop_nonces.current(&app.store, now).await?));
        }
    }
    // Remembered until the proof is too old anyway (its iat + max_age + leeway).
    let remaining = (proof.iat + settings.proof_max_age.as_secs() as i64 + LEEWAY_SECS as i64 - now).max(1);
    let key = hashed_key("dpop-jti", &format!("{}:{}", proof.jkt, proof.jti));
    if !app.store.with_class(class).put_new(&key, Vec::new(), Duration::from_secs(remaining as u64)).await? {
        tracing::warn!("replayed DPoP proof refused");
        return Err(invalid("the DPoP proof was already used"));
    }
    Ok(Some(proof))
}

/// With `dpop.require_nonce`, hands the current nonce out on a successful response too, so
/// the client's next proof carries it without a failed round trip (RFC 9449 §8.2).
pub async fn offer_nonce(app: &ProviderState, res: &mut axum::response::Response) {
    if !app.settings.dpop.require_nonce {
        return;
    }
    if let Ok(nonce) = app.dpop_nonces.current(&app.store, app.clock.now()).await
        && let Ok(v) = axum::http::HeaderValue::from_str(&nonce)
    {
        res.headers_mut().insert(super::error::DPOP_NONCE, v);
    }
}

/// Server nonces: one random value per period of `dpop.nonce_lifetime`, created by whichever
/// replica needs it first (set-if-absent in the state store, so every replica hands out the
/// same one) and remembered in the process. The current and the previous period's nonces
/// are accepted. The store holds at most two of them.
#[derive(Debug)]
pub struct Nonces {
    period: i64,
    cached: Mutex<Option<(i64, String, Option<String>)>>,
}

impl Nonces {
    pub fn new(lifetime: Duration) -> Self {
        Nonces { period: lifetime.as_secs().max(1) as i64, cached: Mutex::new(None) }
    }

    fn key(period: i64) -> String {
        format!("dpop-nonce:{period}")
    }

    /// This period's nonce and the previous one's (None if nobody asked for one then).
    async fn nonces(&self, store: &StateStore, now: i64) -> Result<(String, Option<String>), StoreError> {
        let period = now.div_euclid(self.period);
        if let Some((p, current, previous)) = &*self.cached.lock().unwrap_or_else(PoisonError::into_inner)
            && *p == period
        {
            return Ok((current.clone(), previous.clone()));
        }
        let ttl = Duration::from_secs(2 * self.period as u64 + 60);
        let candidate = random_handle();
        let current = if store.put_new(&Self::key(period), candidate.clone().into_bytes(), ttl).await? {
            candidate
        } else {
            match store.get(&Self::key(period)).await? {
                Some(v) => String::from_utf8(v).unwrap_or(candidate),
                None => candidate,
            }
        };
        let previous = store.get(&Self::key(period - 1)).await?.and_then(|v| String::from_utf8(v).ok());
        *self.cached.lock().unwrap_or_else(PoisonError::into_inner) =
            Some((period, current.clone(), previous.clone()));
        Ok((current, previous))
    }

    /// The nonce to hand out now (`DPoP-Nonce`).
    pub async fn current(&self, store: &StateStore, now: i64) -> Result<String, StoreError> {
        Ok(self.nonces(store, now).await?.0)
    }

    /// Whether `nonce` is this period's or the previous one's.
    pub async fn is_valid(&self, store: &StateStore, now: i64, nonce: &str) -> Result<bool, StoreError> {
        let (current, previous) = self.nonces(store, now).await?;
        Ok(nonce == current || previous.as_deref() == Some(nonce))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A P-256 key pair for proofs (generated with aws-lc-rs) and its public JWK.
    pub(crate) struct TestKey {
        encoding: jsonwebtoken::EncodingKey,
        pub jwk: Value,
    }

    pub(crate) fn test_key() -> TestKey {
        use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
        let public = pair.public_key().as_ref();
        let jwk = json!({
            "kty": "EC", "crv": "P-256",
            "x": B64.encode(&public[1..33]), "y": B64.encode(&public[33..65]),
        });
        TestKey { encoding: jsonwebtoken::EncodingKey::from_ec_der(pkcs8.as_ref()), jwk }
    }

    impl TestKey {
        pub(crate) fn proof(&self, header_extra: Value, claims: Value) -> String {
            let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
            header.typ = Some("dpop+jwt".into());
            header.jwk = serde_json::from_value(self.jwk.clone()).ok();
            let mut header_json = serde_json::to_value(&header).unwrap();
            if let (Some(h), Some(extra)) = (header_json.as_object_mut(), header_extra.as_object()) {
                for (k, v) in extra {
                    h.insert(k.clone(), v.clone());
                }
            }
            let input = format!("{}.{}", B64.encode(header_json.to_string()), B64.encode(claims.to_string()));
            let signature = jsonwebtoken::crypto::sign(input.as_bytes(), &self.encoding, header.alg).unwrap();
            format!("{input}.{signature}")
        }
    }

    const URL: &str = "https://sso.example/token";
    const NOW: i64 = 1_800_000_000;

    fn claims(extra: Value) -> Value {
        let mut c = json!({ "jti": "j-1", "htm": "POST", "htu": URL, "iat": NOW });
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    }

    fn target() -> Target<'static> {
        Target { method: "POST", url: URL, access_token: None, jkt: None, alias: None }
    }

    fn run(proof: &str, target: Target<'_>) -> Result<Proof, ProofError> {
        check(proof, target, NOW, Duration::from_secs(60))
    }

    #[test]
    fn a_good_proof_gives_the_rfc7638_thumbprint_of_its_key() {
        let key = test_key();
        let proof = run(&key.proof(json!({}), claims(json!({}))), target()).unwrap();
        let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(key.jwk.clone()).unwrap();
        assert_eq!(proof.jkt, jwk.thumbprint(jsonwebtoken::jwk::ThumbprintHash::SHA256));
        assert!(is_thumbprint(&proof.jkt));
        // A query in htu is ignored; scheme, host, port and path are not.
        let with_query = claims(json!({ "htu": "https://sso.example:443/token?x=1" }));
        assert!(run(&key.proof(json!({}), with_query), target()).is_ok());
    }

    #[test]
    fn proofs_for_another_request_or_time_are_refused() {
        let key = test_key();
        let cases = [
            ("htm", claims(json!({ "htm": "GET" }))),
            ("htu", claims(json!({ "htu": "https://sso.example/userinfo" }))),
            ("htu", claims(json!({ "htu": "http://sso.example/token" }))),
            ("iat", claims(json!({ "iat": NOW - 61 }))),
            ("iat", claims(json!({ "iat": NOW + 600 }))),
            ("jti", claims(json!({ "jti": "" }))),
        ];
        for (what, c) in cases {
            let err = run(&key.proof(json!({}), c), target()).unwrap_err();
            assert!(matches!(&err, ProofError::Invalid(d) if d.contains(what)), "{what}: {err:?}");
        }
    }

    #[test]
    fn a_proof_may_name_the_endpoint_on_the_mtls_host_but_no_other_host() {
        let key = test_key();
        let on_alias = claims(json!({ "htu": "https://mtls.sso.example/token" }));
        let proof = key.proof(json!({}), on_alias);
        assert!(run(&proof, target()).is_err(), "no alias configured");
        let with_alias = Target { alias: Some("https://mtls.sso.example/token"), ..target() };
        assert!(run(&proof, with_alias).is_ok());
        // The issuer's URL stays good on either host.
        assert!(run(&key.proof(json!({}), claims(json!({}))), with_alias).is_ok());
        let elsewhere = key.proof(json!({}), claims(json!({ "htu": "https://other.example/token" })));
        assert!(run(&elsewhere, with_alias).is_err());
    }

    #[test]
    fn the_access_token_hash_is_required_and_checked_at_resources() {
        let key = test_key();
        let at = Target {
            method: "GET",
            url: "https://sso.example/userinfo",
            access_token: Some("tok"),
            jkt: None,
            alias: None,
        };
        let base = json!({ "htm": "GET", "htu": "https://sso.example/userinfo" });
        let missing = run(&key.proof(json!({}), claims(base.clone())), at).unwrap_err();
        assert_eq!(missing, invalid("the DPoP proof has no ath"));
        let mut wrong = base.clone();
        wrong["ath"] = json!(access_token_hash("other"));
        assert!(run(&key.proof(json!({}), claims(wrong)), at).is_err());
        let mut right = base;
        right["ath"] = json!(access_token_hash("tok"));
        assert!(run(&key.proof(json!({}), claims(right)), at).is_ok());
    }

    #[test]
    fn forged_proofs_are_refused() {
        let key = test_key();
        let other = test_key();
        let good = key.proof(json!({}), claims(json!({})));
        // Signed by one key, naming another.
        let swapped = key.proof(json!({ "jwk": other.jwk }), claims(json!({})));
        // A private key member, a wrong type, a symmetric algorithm, no key at all.
        let mut private = key.jwk.clone();
        private["d"] = json!("AAAA");
        let cases = [
            swapped,
            key.proof(json!({ "jwk": private }), claims(json!({}))),
            key.proof(json!({ "typ": "JWT" }), claims(json!({}))),
            key.proof(json!({ "jwk": null }), claims(json!({}))),
            key.proof(
                json!({ "jwk": { "kty": "EC", "crv": "Ed25519", "x": "AAAA", "y": "AAAA" } }),
                claims(json!({})),
            ),
            format!("{}.e30.", B64.encode(r#"{"alg":"none","typ":"dpop+jwt"}"#)),
            format!("{}x", &good[..good.len() - 1]),
            "not a jwt".to_string(),
            "a".repeat(MAX_PROOF_BYTES + 1),
        ];
        for (i, proof) in cases.iter().enumerate() {
            assert!(run(proof, target()).is_err(), "case {i} accepted");
        }
        assert!(run(&good, target()).is_ok());
    }

    #[test]
    fn a_proof_of_other_than_three_parts_is_refused() {
        let key = test_key();
        let good = key.proof(json!({}), claims(json!({})));
        assert!(run(&good, target()).is_ok());
        for bad in [format!("{good}.x"), format!("{good}."), good.replacen('.', "", 1)] {
            assert_eq!(run(&bad, target()).unwrap_err(), invalid("the DPoP proof is not a JWT"), "{bad}");
        }
    }

    #[test]
    fn an_ed25519_proof_is_verified_and_thumbprinted() {
        use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&aws_lc_rs::rand::SystemRandom::new()).unwrap();
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let jwk = json!({ "kty": "OKP", "crv": "Ed25519", "x": B64.encode(pair.public_key().as_ref()) });
        let header = json!({ "typ": "dpop+jwt", "alg": "EdDSA", "jwk": jwk });
        let input =
            format!("{}.{}", B64.encode(header.to_string()), B64.encode(claims(json!({})).to_string()));
        let encoding = jsonwebtoken::EncodingKey::from_ed_der(pkcs8.as_ref());
        let signature =
            jsonwebtoken::crypto::sign(input.as_bytes(), &encoding, jsonwebtoken::Algorithm::EdDSA).unwrap();
        let proof = run(&format!("{input}.{signature}"), target()).unwrap();
        let typed: jsonwebtoken::jwk::Jwk = serde_json::from_value(jwk).unwrap();
        assert_eq!(proof.jkt, typed.thumbprint(jsonwebtoken::jwk::ThumbprintHash::SHA256));
        // The same proof with one claim changed after signing is refused.
        let tampered = format!(
            "{}.{}.{signature}",
            B64.encode(header.to_string()),
            B64.encode(claims(json!({ "jti": "j-2" })).to_string())
        );
        assert!(run(&tampered, target()).is_err());
    }

    #[tokio::test]
    async fn every_replica_hands_out_the_same_nonce_and_accepts_the_previous_one() {
        let store = StateStore::memory();
        let (a, b) = (Nonces::new(Duration::from_secs(60)), Nonces::new(Duration::from_secs(60)));
        let first = a.current(&store, 600).await.unwrap();
        assert_eq!(b.current(&store, 610).await.unwrap(), first, "one nonce per period");
        let second = b.current(&store, 660).await.unwrap();
        assert_ne!(second, first);
        assert!(a.is_valid(&store, 665, &first).await.unwrap(), "the previous period's still works");
        assert!(a.is_valid(&store, 665, &second).await.unwrap());
        assert!(!a.is_valid(&store, 725, &first).await.unwrap(), "but not older ones");
        assert!(!a.is_valid(&store, 725, "made-up").await.unwrap());
    }
}
