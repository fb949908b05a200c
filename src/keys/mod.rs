//! Signing keys: the key files in a directory, the JWKS we publish, and signing
//! and verifying our own JWTs (ID tokens, JWT access tokens, logout tokens).
//!
//! This module owns:
//! - loading PKCS#8 PEM private keys (`{kid}.pem`) from one directory, each with an optional
//!   schedule `{kid}.json` (`not_before`, `retire_after`; see `schedule.rs`), and generating
//!   new ones there (mode 0600);
//! - evaluating the schedules against the injected clock: which keys are published (JWKS,
//!   verification) and which one signs per algorithm. Replicas reading the same directory
//!   at the same time choose the same keys;
//! - reloading the directory while running (`reload`, `watch_dir`);
//! - rotation (`rotate`: publish first, sign later, retire after the last token expired)
//!   and pruning retired keys;
//! - the JWKS document, rebuilt only when the key set or the schedule stretch changes;
//! - compact JWS signing, and verification of tokens signed by our own keys
//!   (signature, `exp`, `iss`, optional `aud`, optional `typ`).
//!
//! It must not touch HTTP, config loading or what goes into a token: callers
//! pass a directory, an algorithm and a serializable claims value.
//!
//! Keys are parsed once per change of the directory (RSA parsing is expensive): signing uses
//! the parsed aws-lc-rs key pairs directly, verification uses prebuilt
//! `jsonwebtoken::DecodingKey`s made from the same public parts as the JWKS.

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, PoisonError, RwLock};

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

use crate::clock::Clock;

mod rotate;
mod schedule;

pub use rotate::{RETIRE_MARGIN, Rotation, prune, rotate};
pub use schedule::{KeyState, KeyStatus, Schedule, format_time};
use schedule::{parse_material, read_files, read_material};

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
    #[error("bad key schedule {}: {reason}", path.display())]
    BadSchedule { path: PathBuf, reason: String },
    #[error("cannot rotate: {0}")]
    Rotation(String),
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
    /// From the sidecar `{kid}.json`; none = the whole past and future.
    schedule: Schedule,
}

/// The keys read from the directory, with their schedules. Replaced as a whole on reload.
struct Material {
    keys: Vec<Key>,
    by_kid: HashMap<String, usize>,
    /// Digest of every file the keys were read from: a reload that finds the same digest
    /// keeps the parsed keys (RSA parsing is expensive).
    fingerprint: [u8; 32],
}

/// What the material means at one stretch of time `[from, until)`: which keys are published
/// (JWKS, verification) and which one signs per algorithm. Between two schedule boundaries
/// nothing changes, so a view is computed once per stretch and shared by every request.
struct View {
    material: Arc<Material>,
    from: i64,
    until: i64,
    published: Vec<bool>,
    /// Index into `material.keys` of the signing key, per `SigningAlg::index()`.
    active: [Option<usize>; 3],
    jwks: bytes::Bytes,
}

struct Shared {
    /// Where the keys came from (`None` for sets built in memory).
    dir: Option<PathBuf>,
    clock: Clock,
    view: RwLock<Arc<View>>,
    /// Counts material replacements (a reload that found changed files).
    generation: tokio::sync::watch::Sender<u64>,
}

/// All our signing keys and their schedules. Cheap to clone; clones share reloads.
#[derive(Clone)]
pub struct KeySet {
    inner: Arc<Shared>,
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let view = self.view();
        f.debug_map().entries(view.material.keys.iter().map(|k| (&k.kid, k.alg))).finish()
    }
}

impl KeySet {
    /// Loads every `*.pem` file (PKCS#8 "PRIVATE KEY" PEM) in `dir` with its optional
    /// schedule `{kid}.json`; kid = file stem. Schedules are evaluated against the system clock.
    /// Other files and dot-files (e.g. Kubernetes `..data`) are ignored.
    pub fn load_dir(dir: &Path) -> Result<KeySet, KeyError> {
        Self::open(dir, Clock::system())
    }

    /// Like [`load_dir`](Self::load_dir), with schedules evaluated against `clock`.
    pub fn open(dir: &Path, clock: Clock) -> Result<KeySet, KeyError> {
        install_crypto_provider();
        let material = read_material(dir)?;
        let now = clock.now();
        let view = View::at(Arc::new(material), now);
        Ok(KeySet {
            inner: Arc::new(Shared {
                dir: Some(dir.to_path_buf()),
                clock,
                view: RwLock::new(Arc::new(view)),
                generation: tokio::sync::watch::Sender::new(0),
            }),
        })
    }

    /// Like `load_dir`, but first generates a key for every alg in `required`
    /// that has none in `dir` (creating `dir`).
    pub fn load_or_generate(dir: &Path, required: &[SigningAlg]) -> Result<KeySet, KeyError> {
        Self::open_or_generate(dir, required, Clock::system())
    }

    /// Like [`load_or_generate`](Self::load_or_generate), evaluated against `clock`.
    pub fn open_or_generate(dir: &Path, required: &[SigningAlg], clock: Clock) -> Result<KeySet, KeyError> {
        create_dir(dir)?;
        let set = Self::open(dir, clock.clone())?;
        let missing: Vec<_> =
            SigningAlg::all().into_iter().filter(|a| required.contains(a) && !set.has(*a)).collect();
        if missing.is_empty() {
            return Ok(set);
        }
        for alg in missing {
            Self::generate(dir, alg)?;
        }
        Self::open(dir, clock)
    }

    /// Generates a new key for `alg` into `dir` as `{kid}.pem` (mode 0600) and returns the kid,
    /// `{alg lowercase}-{UTC yyyymmddHHMMSS}-{4 hex}`, so that kid order = age within one alg.
    /// The key has no schedule: it signs from the next load (see `rotate` for the safe way).
    pub fn generate(dir: &Path, alg: SigningAlg) -> Result<String, KeyError> {
        generate_key(dir, alg, None)
    }

    /// Whether some key signs for `alg` now.
    pub fn has(&self, alg: SigningAlg) -> bool {
        self.view().active[alg.index()].is_some()
    }

    /// Algorithms that have a signing key now, in RS256, ES256, EdDSA order.
    pub fn algorithms(&self) -> Vec<SigningAlg> {
        let view = self.view();
        SigningAlg::all().into_iter().filter(|a| view.active[a.index()].is_some()).collect()
    }

    /// No key is published now.
    pub fn is_empty(&self) -> bool {
        !self.view().published.contains(&true)
    }

    /// The kid that `sign` uses for `alg` now.
    pub fn active_kid(&self, alg: SigningAlg) -> Option<String> {
        let view = self.view();
        view.active[alg.index()].map(|i| view.material.keys[i].kid.clone())
    }

    /// The JWKS document `{"keys":[...]}` with the public parts of the keys published now
    /// (signing, scheduled to sign, or retiring), built once per schedule stretch.
    pub fn jwks_json(&self) -> bytes::Bytes {
        self.view().jwks.clone()
    }

    /// Every key and its state now (for `keys list` and logs), in alg then kid order.
    pub fn status(&self) -> Vec<KeyStatus> {
        let now = self.inner.clock.now();
        let view = self.view();
        view.material
            .keys
            .iter()
            .enumerate()
            .map(|(i, k)| KeyStatus {
                kid: k.kid.clone(),
                alg: k.alg,
                not_before: k.schedule.not_before,
                retire_after: k.schedule.retire_after,
                state: if view.active[k.alg.index()] == Some(i) {
                    KeyState::Signing
                } else if !view.published[i] {
                    KeyState::Retired
                } else if k.schedule.not_before.is_some_and(|t| t > now) {
                    KeyState::Published
                } else {
                    KeyState::Retiring
                },
            })
            .collect()
    }

    /// Signs `claims` as a compact JWS with the key that signs for `alg` now; header `{alg, kid, typ}`.
    pub fn sign<T: serde::Serialize>(
        &self,
        alg: SigningAlg,
        typ: &str,
        claims: &T,
    ) -> Result<String, KeyError> {
        let view = self.view();
        let key = view.active[alg.index()].map(|i| &view.material.keys[i]).ok_or(KeyError::NoKey(alg))?;
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

    /// Verifies a token signed by one of our keys published now and returns its claims: known
    /// kid, header alg equal to that key's alg, signature, `exp` (required, 30 s leeway),
    /// `iss == issuer`, `aud` only if `audience` is Some, `typ` only if `expected_typ` is Some.
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

    /// Re-reads the key directory; if any file changed, replaces the keys and schedules at
    /// once and returns `Ok(true)`. Refused (the loaded keys stay) when the directory cannot
    /// be read, a file is broken, or an algorithm in `required` would have no signing key now.
    /// Blocking: file I/O and key parsing.
    pub fn reload(&self, required: &[SigningAlg]) -> Result<bool, KeyError> {
        let Some(dir) = &self.inner.dir else { return Ok(false) };
        let files = read_files(dir)?;
        if files.fingerprint == self.view().material.fingerprint {
            return Ok(false);
        }
        let material = Arc::new(parse_material(files)?);
        let view = View::at(material, self.inner.clock.now());
        if let Some(missing) = required.iter().find(|a| view.active[a.index()].is_none()) {
            return Err(KeyError::NoKey(*missing));
        }
        *self.inner.view.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(view);
        self.inner.generation.send_modify(|g| *g += 1);
        Ok(true)
    }

    /// A receiver that sees every successful reload that changed the keys.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.generation.subscribe()
    }

    /// Reloads the key directory every `every` (none if zero) and on SIGHUP, forever; run it
    /// as a task and abort it on shutdown. Failures are logged and the loaded keys kept.
    pub async fn watch_dir(self, every: std::time::Duration, required: Vec<SigningAlg>) {
        #[cfg(unix)]
        let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        let mut ticks = (!every.is_zero()).then(|| {
            let mut t = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            t
        });
        loop {
            let tick = async {
                match ticks.as_mut() {
                    Some(t) => {
                        t.tick().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            #[cfg(unix)]
            let hup = async {
                match hangup.as_mut() {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            #[cfg(not(unix))]
            let hup = std::future::pending::<()>();
            tokio::select! {
                () = tick => {}
                () = hup => tracing::info!("SIGHUP: reloading the signing key directory"),
            }
            let set = self.clone();
            let required = required.clone();
            match tokio::task::spawn_blocking(move || set.reload(&required)).await {
                Ok(Ok(true)) => {
                    let keys: Vec<String> =
                        self.status().iter().map(|s| format!("{} {}", s.kid, s.state)).collect();
                    tracing::info!(keys = ?keys, "signing keys reloaded");
                }
                Ok(Ok(false)) => {}
                Ok(Err(e)) => tracing::error!(
                    error = %e,
                    "signing key directory not reloaded; the keys loaded before stay in use"
                ),
                Err(e) => tracing::error!(error = %e, "signing key reload task failed"),
            }
        }
    }

    /// The view for the clock's current time, recomputed when a schedule boundary passed.
    fn view(&self) -> Arc<View> {
        let now = self.inner.clock.now();
        {
            let view = self.inner.view.read().unwrap_or_else(PoisonError::into_inner);
            if view.covers(now) {
                return view.clone();
            }
        }
        let mut view = self.inner.view.write().unwrap_or_else(PoisonError::into_inner);
        if !view.covers(now) {
            *view = Arc::new(View::at(view.material.clone(), now));
        }
        view.clone()
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
        let view = self.view();
        let key = match view.material.by_kid.get(&kid) {
            Some(&i) if view.published[i] => &view.material.keys[i],
            _ => return Err(KeyError::UnknownKid(kid)),
        };
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
}

impl View {
    /// Evaluates the schedules at `now`. A key is published from when its file appears until
    /// `retire_after` (inclusive). Per algorithm the published key with the latest
    /// `not_before <= now` signs (a key without one counts as the earliest; ties: the greatest
    /// kid). If every published key of an algorithm is still waiting, the one due first signs
    /// (the schedule has a gap; logged).
    fn at(material: Arc<Material>, now: i64) -> View {
        let keys = &material.keys;
        let mut published = vec![false; keys.len()];
        let mut active: [Option<usize>; 3] = [None; 3];
        let mut due_first: [Option<usize>; 3] = [None; 3];
        let (mut from, mut until) = (i64::MIN, i64::MAX);
        for (i, key) in keys.iter().enumerate() {
            let s = key.schedule;
            // Boundaries where this key's role changes: at not_before, and one second after retire_after.
            for edge in [s.not_before, s.retire_after.map(|t| t.saturating_add(1))].into_iter().flatten() {
                if edge <= now {
                    from = from.max(edge);
                } else {
                    until = until.min(edge);
                }
            }
            if s.retire_after.is_some_and(|t| now > t) {
                continue;
            }
            published[i] = true;
            let slot = key.alg.index();
            let since = s.not_before.unwrap_or(i64::MIN);
            if since <= now {
                // Sorted by kid: on equal not_before a later key wins.
                if active[slot].is_none_or(|j| since >= keys[j].schedule.not_before.unwrap_or(i64::MIN)) {
                    active[slot] = Some(i);
                }
            } else if due_first[slot].is_none_or(|j| since < keys[j].schedule.not_before.unwrap_or(i64::MIN))
            {
                due_first[slot] = Some(i);
            }
        }
        for alg in SigningAlg::all() {
            let slot = alg.index();
            if active[slot].is_none()
                && let Some(i) = due_first[slot]
            {
                tracing::error!(
                    kid = %keys[i].kid,
                    %alg,
                    "no {alg} key is due to sign now; signing early with the next scheduled one \
                     (check the key schedules: `sso-gateway keys list`)"
                );
                active[slot] = Some(i);
            }
        }
        let jwks = JwkSet {
            keys: keys.iter().zip(&published).filter(|(_, p)| **p).map(|(k, _)| k.jwk.clone()).collect(),
        };
        let jwks = serde_json::to_string(&jwks).unwrap_or_else(|e| {
            tracing::error!(error = %e, "cannot serialise the JWKS");
            r#"{"keys":[]}"#.to_owned()
        });
        View { material, from, until, published, active, jwks: jwks.into() }
    }

    fn covers(&self, now: i64) -> bool {
        self.from <= now && now < self.until
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

/// Writes a new key for `alg` into `dir`: first its schedule `{kid}.json` (if any), then
/// `{kid}.pem`, each under a name the loader ignores and renamed into place, so a replica
/// reading the directory meanwhile never sees the key without its schedule (it would sign
/// at once) nor a half-written file.
fn generate_key(dir: &Path, alg: SigningAlg, schedule: Option<Schedule>) -> Result<String, KeyError> {
    let failed = |_| KeyError::Generate(alg);
    let der: Vec<u8> = match alg {
        SigningAlg::RS256 => {
            RsaKeyPair::generate(KeySize::Rsa2048).and_then(|k| k.as_der()).map_err(failed)?.as_ref().to_vec()
        }
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
        // A left-over schedule of a deleted key must not attach itself to a new one.
        if !path.exists() && !dir.join(format!("{kid}.json")).exists() {
            break (kid, path);
        }
    };
    if let Some(schedule) = schedule {
        schedule::write_schedule(dir, &kid, &schedule)?;
    }
    write_atomically(dir, &path, pem_text.as_bytes())?;
    Ok(kid)
}

/// Writes `contents` to `path` (mode 0600) through a dot-file renamed into place.
fn write_atomically(dir: &Path, path: &Path, contents: &[u8]) -> Result<(), KeyError> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("key");
    let tmp = dir.join(format!(".{name}.tmp"));
    let _ = fs::remove_file(&tmp); // a left-over of an interrupted run
    write_private(&tmp, contents).and_then(|()| fs::rename(&tmp, path)).map_err(|source| {
        let _ = fs::remove_file(&tmp);
        KeyError::Io { path: path.to_path_buf(), source }
    })
}

fn load_key(path: &Path, bytes: &[u8], schedule: Schedule) -> Result<Key, KeyError> {
    let unreadable = |reason: String| KeyError::Unreadable { path: path.to_path_buf(), reason };
    let block = pem::parse(bytes).map_err(|e| unreadable(format!("not PEM: {e}")))?;
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
    Ok(Key { kid, alg, signer, decoding, jwk, header_prefix, schedule })
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
