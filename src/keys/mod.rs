//! Signing keys: the key files in a directory, the JWKS we publish, and signing
//! and verifying our own JWTs (ID tokens, JWT access tokens, logout tokens).
//!
//! This module owns:
//! - loading PKCS#8 PEM private keys (`{kid}.pem`) from one directory, and
//!   generating new ones there (mode 0600);
//! - choosing the active key per algorithm (the greatest kid of that algorithm);
//! - the JWKS document (public parts of every loaded key), built once at load;
//! - compact JWS signing, and verification of tokens signed by our own keys
//!   (signature, `exp`, `iss`, optional `aud`, optional `typ`).
//!
//! It must not touch HTTP, config loading or what goes into a token: callers
//! pass a directory, an algorithm and a serializable claims value.
//!
//! Keys are parsed once at load (RSA parsing is expensive): signing uses the
//! parsed aws-lc-rs key pairs directly, verification uses prebuilt
//! `jsonwebtoken::DecodingKey`s made from the same public parts as the JWKS.

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize, PublicKeyComponents};
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RSA_PKCS1_SHA256,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use jsonwebtoken::jwk::{
    AlgorithmParameters, CommonParameters, EllipticCurve, EllipticCurveKeyParameters, EllipticCurveKeyType,
    Jwk, JwkSet, KeyAlgorithm, OctetKeyPairParameters, OctetKeyPairType, PublicKeyUse, RSAKeyParameters,
    RSAKeyType,
};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, errors::ErrorKind};

#[cfg(test)]
mod tests;

/// Leeway for `exp` (and `nbf`, if present) when verifying.
pub const LEEWAY_SECS: u64 = 30;

/// A JWS algorithm we can sign with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
pub enum SigningAlg {
    #[value(name = "RS256", alias = "rs256")]
    RS256,
    #[value(name = "ES256", alias = "es256")]
    ES256,
    #[value(name = "EdDSA", alias = "eddsa")]
    EdDSA,
}

impl SigningAlg {
    pub fn as_str(&self) -> &'static str {
        match self {
            SigningAlg::RS256 => "RS256",
            SigningAlg::ES256 => "ES256",
            SigningAlg::EdDSA => "EdDSA",
        }
    }

    pub fn all() -> [SigningAlg; 3] {
        [SigningAlg::RS256, SigningAlg::ES256, SigningAlg::EdDSA]
    }

    fn jwt_alg(self) -> Algorithm {
        match self {
            SigningAlg::RS256 => Algorithm::RS256,
            SigningAlg::ES256 => Algorithm::ES256,
            SigningAlg::EdDSA => Algorithm::EdDSA,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for SigningAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SigningAlg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SigningAlg::all()
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| format!("unknown signing algorithm {s:?} (expected RS256, ES256 or EdDSA)"))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("unreadable key file {}: {reason}", path.display())]
    Unreadable { path: PathBuf, reason: String },
    #[error(
        "unsupported key in {}: expected a PKCS#8 RSA (2048-8192 bit), EC P-256 or Ed25519 private key",
        path.display()
    )]
    Unsupported { path: PathBuf },
    #[error("key generation failed for {0}")]
    Generate(SigningAlg),
    #[error("no signing key for {0}")]
    NoKey(SigningAlg),
    #[error("signing failed: {0}")]
    Signing(String),
    #[error("invalid token: {0}")]
    InvalidToken(String),
    #[error("unknown key id {0:?}")]
    UnknownKid(String),
}

/// Parsed private key, kept for the lifetime of the set.
enum Signer {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
}

struct Key {
    kid: String,
    alg: SigningAlg,
    signer: Signer,
    decoding: DecodingKey,
    jwk: Jwk,
    /// `{"alg":"..","kid":"..",` — the JWS header minus `typ`.
    header_prefix: String,
}

struct Inner {
    keys: Vec<Key>,
    by_kid: HashMap<String, usize>,
    /// Index into `keys` of the active key, per `SigningAlg::index()`.
    active: [Option<usize>; 3],
    jwks: bytes::Bytes,
}

/// All our signing keys. Cheap to clone.
#[derive(Clone)]
pub struct KeySet {
    inner: Arc<Inner>,
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.inner.keys.iter().map(|k| (&k.kid, k.alg))).finish()
    }
}

impl KeySet {
    /// Loads every `*.pem` file (PKCS#8 "PRIVATE KEY" PEM) in `dir`; kid = file stem.
    /// Other files and dot-files (e.g. Kubernetes `..data`) are ignored.
    pub fn load_dir(dir: &Path) -> Result<KeySet, KeyError> {
        install_crypto_provider();
        let io = |source| KeyError::Io { path: dir.to_path_buf(), source };
        let mut paths = Vec::new();
        for entry in fs::read_dir(dir).map_err(io)? {
            let path = entry.map_err(io)?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or(".");
            if !name.starts_with('.') && name.ends_with(".pem") && path.is_file() {
                paths.push(path);
            }
        }
        paths.sort();
        let keys = paths.iter().map(|p| load_key(p)).collect::<Result<Vec<_>, _>>()?;
        Self::from_keys(keys)
    }

    /// Like `load_dir`, but first generates a key for every alg in `required`
    /// that has none in `dir` (creating `dir`).
    pub fn load_or_generate(dir: &Path, required: &[SigningAlg]) -> Result<KeySet, KeyError> {
        create_dir(dir)?;
        let set = Self::load_dir(dir)?;
        let missing: Vec<_> =
            SigningAlg::all().into_iter().filter(|a| required.contains(a) && !set.has(*a)).collect();
        if missing.is_empty() {
            return Ok(set);
        }
        for alg in missing {
            Self::generate(dir, alg)?;
        }
        Self::load_dir(dir)
    }

    /// Generates a new key for `alg` into `dir` as `{kid}.pem` (mode 0600) and returns the kid,
    /// `{alg lowercase}-{UTC yyyymmddHHMMSS}-{4 hex}`, so that kid order = age within one alg.
    pub fn generate(dir: &Path, alg: SigningAlg) -> Result<String, KeyError> {
        let failed = |_| KeyError::Generate(alg);
        let der: Vec<u8> = match alg {
            SigningAlg::RS256 => RsaKeyPair::generate(KeySize::Rsa2048)
                .and_then(|k| k.as_der())
                .map_err(failed)?
                .as_ref()
                .to_vec(),
            SigningAlg::ES256 => EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
                .and_then(|k| k.to_pkcs8v1())
                .map_err(failed)?
                .as_ref()
                .to_vec(),
            SigningAlg::EdDSA => {
                Ed25519KeyPair::generate().and_then(|k| k.to_pkcs8v1()).map_err(failed)?.as_ref().to_vec()
            }
        };
        let pem_text = pem::encode(&pem::Pem::new("PRIVATE KEY", der));

        create_dir(dir)?;
        let fmt = time::macros::format_description!("[year][month][day][hour][minute][second]");
        let stamp = time::OffsetDateTime::now_utc().format(fmt).map_err(|_| KeyError::Generate(alg))?;
        let (kid, path) = loop {
            let kid = format!("{}-{stamp}-{:04x}", alg.as_str().to_ascii_lowercase(), rand::random::<u16>());
            let path = dir.join(format!("{kid}.pem"));
            if !path.exists() {
                break (kid, path);
            }
        };
        // Write to a name the loader ignores, then rename: no half-written keys.
        let tmp = dir.join(format!(".{kid}.pem.tmp"));
        write_private(&tmp, pem_text.as_bytes()).and_then(|()| fs::rename(&tmp, &path)).map_err(
            |source| {
                let _ = fs::remove_file(&tmp);
                KeyError::Io { path, source }
            },
        )?;
        Ok(kid)
    }

    pub fn has(&self, alg: SigningAlg) -> bool {
        self.inner.active[alg.index()].is_some()
    }

    /// Algorithms that have a signing key, in RS256, ES256, EdDSA order.
    pub fn algorithms(&self) -> Vec<SigningAlg> {
        SigningAlg::all().into_iter().filter(|a| self.has(*a)).collect()
    }

    pub fn is_empty(&self) -> bool {
        self.inner.keys.is_empty()
    }

    /// The kid that `sign` uses for `alg` (the greatest kid of that alg).
    pub fn active_kid(&self, alg: SigningAlg) -> Option<&str> {
        self.inner.active[alg.index()].map(|i| self.inner.keys[i].kid.as_str())
    }

    /// The JWKS document `{"keys":[...]}` with the public parts of all loaded keys.
    pub fn jwks_json(&self) -> bytes::Bytes {
        self.inner.jwks.clone()
    }

    /// Signs `claims` as a compact JWS with the active key for `alg`; header `{alg, kid, typ}`.
    pub fn sign<T: serde::Serialize>(
        &self,
        alg: SigningAlg,
        typ: &str,
        claims: &T,
    ) -> Result<String, KeyError> {
        let key = self.inner.active[alg.index()].map(|i| &self.inner.keys[i]).ok_or(KeyError::NoKey(alg))?;
        let typ = serde_json::to_string(typ).map_err(|e| KeyError::Signing(e.to_string()))?;
        let header = format!("{}\"typ\":{typ}}}", key.header_prefix);
        let payload = serde_json::to_vec(claims).map_err(|e| KeyError::Signing(format!("claims: {e}")))?;
        let mut jws = B64.encode(header);
        jws.push('.');
        B64.encode_string(payload, &mut jws);
        let signature = key.signer.sign(jws.as_bytes())?;
        jws.push('.');
        B64.encode_string(signature, &mut jws);
        Ok(jws)
    }

    /// Verifies a token signed by one of our keys and returns its claims: known kid, header alg
    /// equal to that key's alg, signature, `exp` (required, 30 s leeway), `iss == issuer`,
    /// `aud` only if `audience` is Some, `typ` only if `expected_typ` is Some.
    pub fn verify<T: serde::de::DeserializeOwned>(
        &self,
        token: &str,
        issuer: &str,
        audience: Option<&str>,
        expected_typ: Option<&str>,
    ) -> Result<T, KeyError> {
        self.verify_inner(token, issuer, audience, expected_typ, true)
    }

    /// Like [`verify`](Self::verify) but accepts an expired token: an `id_token_hint` at
    /// logout is a hint that may well have expired (OIDC RP-Initiated Logout §2).
    pub fn verify_ignoring_expiry<T: serde::de::DeserializeOwned>(
        &self,
        token: &str,
        issuer: &str,
    ) -> Result<T, KeyError> {
        self.verify_inner(token, issuer, None, None, false)
    }

    fn verify_inner<T: serde::de::DeserializeOwned>(
        &self,
        token: &str,
        issuer: &str,
        audience: Option<&str>,
        expected_typ: Option<&str>,
        check_expiry: bool,
    ) -> Result<T, KeyError> {
        let invalid = |reason: &str| KeyError::InvalidToken(reason.to_owned());
        let header = jsonwebtoken::decode_header(token).map_err(|e| token_error(&e))?;
        let kid = header.kid.ok_or_else(|| invalid("missing kid"))?;
        let key =
            self.inner.by_kid.get(&kid).map(|&i| &self.inner.keys[i]).ok_or(KeyError::UnknownKid(kid))?;
        if header.alg != key.alg.jwt_alg() {
            return Err(invalid("alg does not match the key"));
        }
        if let Some(expected) = expected_typ {
            let typ = header.typ.as_deref().unwrap_or("");
            if !normalize_typ(typ).eq_ignore_ascii_case(normalize_typ(expected)) {
                return Err(KeyError::InvalidToken(format!("typ {typ:?}, expected {expected:?}")));
            }
        }
        let mut validation = Validation::new(key.alg.jwt_alg());
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        validation.validate_exp = check_expiry;
        validation.set_issuer(&[issuer]);
        match audience {
            Some(aud) => {
                validation.set_audience(&[aud]);
                validation.set_required_spec_claims(&["exp", "iss", "aud"]);
            }
            None => {
                validation.validate_aud = false;
                validation.set_required_spec_claims(if check_expiry {
                    &["exp", "iss"][..]
                } else {
                    &["iss"][..]
                });
            }
        }
        jsonwebtoken::decode::<T>(token, &key.decoding, &validation)
            .map(|data| data.claims)
            .map_err(|e| token_error(&e))
    }

    fn from_keys(mut keys: Vec<Key>) -> Result<KeySet, KeyError> {
        keys.sort_by(|a, b| (a.alg.index(), &a.kid).cmp(&(b.alg.index(), &b.kid)));
        let mut active = [None; 3];
        let mut by_kid = HashMap::with_capacity(keys.len());
        for (i, key) in keys.iter().enumerate() {
            active[key.alg.index()] = Some(i); // sorted: the last one per alg is the greatest kid
            by_kid.insert(key.kid.clone(), i);
        }
        let jwks = JwkSet { keys: keys.iter().map(|k| k.jwk.clone()).collect() };
        let jwks = serde_json::to_string(&jwks).map_err(|e| KeyError::Signing(e.to_string()))?;
        Ok(KeySet { inner: Arc::new(Inner { keys, by_kid, active, jwks: jwks.into() }) })
    }
}

impl Signer {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, KeyError> {
        let failed = |_| KeyError::Signing("crypto backend error".into());
        Ok(match self {
            Signer::Rsa(k) => {
                let mut sig = vec![0; k.public_modulus_len()];
                k.sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), msg, &mut sig).map_err(failed)?;
                sig
            }
            Signer::Ec(k) => k.sign(&SystemRandom::new(), msg).map_err(failed)?.as_ref().to_vec(),
            Signer::Ed(k) => k.sign(msg).as_ref().to_vec(),
        })
    }
}

/// jsonwebtoken 10 picks its crypto backend from features; make the choice explicit
/// (aws-lc-rs) before any use. Idempotent: later calls (or an earlier install) are fine.
fn install_crypto_provider() {
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
}

fn load_key(path: &Path) -> Result<Key, KeyError> {
    let unreadable = |reason: String| KeyError::Unreadable { path: path.to_path_buf(), reason };
    let bytes = fs::read(path).map_err(|source| KeyError::Io { path: path.to_path_buf(), source })?;
    let block = pem::parse(&bytes).map_err(|e| unreadable(format!("not PEM: {e}")))?;
    if block.tag() != "PRIVATE KEY" {
        return Err(unreadable(format!(
            "expected a PKCS#8 \"PRIVATE KEY\" PEM block, found {:?} \
             (convert with `openssl pkcs8 -topk8 -nocrypt`)",
            block.tag()
        )));
    }
    let kid = path
        .file_stem()
        .and_then(|s| s.to_str())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| unreadable("file name is not a valid kid".into()))?
        .to_owned();
    let der = block.contents();

    let (alg, signer, params) = if let Ok(k) = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der) {
        let params = AlgorithmParameters::OctetKeyPair(OctetKeyPairParameters {
            key_type: OctetKeyPairType::OctetKeyPair,
            curve: EllipticCurve::Ed25519,
            x: B64.encode(k.public_key().as_ref()),
        });
        (SigningAlg::EdDSA, Signer::Ed(k), params)
    } else if let Ok(k) = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der) {
        // Uncompressed SEC1 point: 0x04 || x (32) || y (32).
        let point = k.public_key().as_ref();
        let (x, y) = match point {
            [4, xy @ ..] if xy.len() == 64 => xy.split_at(32),
            _ => return Err(unreadable("unexpected EC public key encoding".into())),
        };
        let params = AlgorithmParameters::EllipticCurve(EllipticCurveKeyParameters {
            key_type: EllipticCurveKeyType::EC,
            curve: EllipticCurve::P256,
            x: B64.encode(x),
            y: B64.encode(y),
        });
        (SigningAlg::ES256, Signer::Ec(k), params)
    } else if let Ok(k) = RsaKeyPair::from_pkcs8(der) {
        let public = PublicKeyComponents::<Vec<u8>>::from(k.public_key());
        let params = AlgorithmParameters::RSA(RSAKeyParameters {
            key_type: RSAKeyType::RSA,
            n: B64.encode(&public.n),
            e: B64.encode(&public.e),
        });
        (SigningAlg::RS256, Signer::Rsa(k), params)
    } else {
        return Err(KeyError::Unsupported { path: path.to_path_buf() });
    };

    let jwk = Jwk {
        common: CommonParameters {
            public_key_use: Some(PublicKeyUse::Signature),
            key_algorithm: Some(match alg {
                SigningAlg::RS256 => KeyAlgorithm::RS256,
                SigningAlg::ES256 => KeyAlgorithm::ES256,
                SigningAlg::EdDSA => KeyAlgorithm::EdDSA,
            }),
            key_id: Some(kid.clone()),
            ..Default::default()
        },
        algorithm: params,
    };
    let decoding = DecodingKey::from_jwk(&jwk).map_err(|e| unreadable(e.to_string()))?;
    let kid_json = serde_json::to_string(&kid).map_err(|e| unreadable(e.to_string()))?;
    let header_prefix = format!("{{\"alg\":\"{alg}\",\"kid\":{kid_json},");
    Ok(Key { kid, alg, signer, decoding, jwk, header_prefix })
}

/// `application/at+jwt` and `at+jwt` are the same media type (RFC 7515 §4.1.9).
fn normalize_typ(typ: &str) -> &str {
    match typ.get(..12) {
        Some(prefix) if prefix.eq_ignore_ascii_case("application/") => &typ[12..],
        _ => typ,
    }
}

fn token_error(e: &jsonwebtoken::errors::Error) -> KeyError {
    let reason = match e.kind() {
        ErrorKind::ExpiredSignature => "token expired".to_owned(),
        ErrorKind::ImmatureSignature => "token not yet valid (nbf)".to_owned(),
        ErrorKind::InvalidSignature => "bad signature".to_owned(),
        ErrorKind::InvalidIssuer => "wrong issuer".to_owned(),
        ErrorKind::InvalidAudience => "wrong audience".to_owned(),
        ErrorKind::InvalidAlgorithm => "alg does not match the key".to_owned(),
        ErrorKind::MissingRequiredClaim(c) => format!("missing claim {c:?}"),
        ErrorKind::InvalidClaimFormat(c) => format!("malformed claim {c:?}"),
        ErrorKind::Base64(_) | ErrorKind::Json(_) | ErrorKind::Utf8(_) | ErrorKind::InvalidToken => {
            format!("malformed token ({e})")
        }
        _ => e.to_string(),
    };
    KeyError::InvalidToken(reason)
}

fn create_dir(dir: &Path) -> Result<(), KeyError> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(|source| KeyError::Io { path: dir.to_path_buf(), source })
}

fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}
