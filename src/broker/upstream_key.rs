//! An upstream's signing key as `openidconnect` sees it, with the public key parsed once by
//! aws-lc-rs when the key set is fetched. ID tokens signed with RS256, ES256 or EdDSA are then
//! verified without re-parsing the key (and in aws-lc-rs rather than pure-Rust big-number
//! code); every other algorithm goes to `openidconnect`'s own key type unchanged.
//!
//! Owns: key parsing and signature checks for upstream ID tokens. Must not: decide which keys
//! or algorithms are acceptable — `openidconnect`'s verifier picks the key by `kid` and the
//! allowed algorithms, and the same key-use / key-type / `alg` checks apply on both paths.

use std::sync::Arc;

use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED, ED25519, ParsedPublicKey, RSA_PKCS1_2048_8192_SHA256, RsaPublicKeyComponents,
};
use base64::Engine;
use openidconnect::core::{CoreJsonWebKey, CoreJsonWebKeyUse, CoreJwsSigningAlgorithm};
use openidconnect::{
    JsonWebKey, JsonWebKeyAlgorithm, JsonWebKeyId, JsonWebKeyUse, JwsSigningAlgorithm,
    SignatureVerificationError,
};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// One key of an upstream's JWKS.
#[derive(Clone, Debug)]
pub struct UpstreamKey {
    core: CoreJsonWebKey,
    parsed: Arc<Parsed>,
}

/// Public keys parsed for the algorithms verified here (at most one is set: it follows `kty`).
#[derive(Debug, Default)]
struct Parsed {
    rs256: Option<ParsedPublicKey>,
    es256: Option<ParsedPublicKey>,
    eddsa: Option<ParsedPublicKey>,
}

impl Parsed {
    fn from_jwk(jwk: &Value) -> Parsed {
        let field = |name: &str| {
            jwk.get(name)
                .and_then(Value::as_str)
                .and_then(|v| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(v).ok())
        };
        let text = |name: &str| jwk.get(name).and_then(Value::as_str);
        let mut parsed = Parsed::default();
        match (text("kty"), text("crv")) {
            (Some("RSA"), _) => {
                // aws-lc-rs verifies 2048–8192-bit moduli; smaller keys (some legacy systems
                // still have 1024-bit ones) stay with `openidconnect`'s own check.
                let modulus_bits = |n: &[u8]| {
                    let n = &n[n.iter().take_while(|b| **b == 0).count()..];
                    (n.len() * 8).saturating_sub(n.first().map_or(0, |b| b.leading_zeros() as usize))
                };
                if let (Some(n), Some(e)) = (field("n"), field("e"))
                    && (2048..=8192).contains(&modulus_bits(&n))
                {
                    let components = RsaPublicKeyComponents { n: n.as_slice(), e: e.as_slice() };
                    parsed.rs256 = components.to_parsed_public_key(&RSA_PKCS1_2048_8192_SHA256).ok();
                }
            }
            (Some("EC"), Some("P-256")) => {
                if let (Some(x), Some(y)) = (field("x"), field("y"))
                    && x.len() == 32
                    && y.len() == 32
                {
                    let mut point = Vec::with_capacity(65);
                    point.push(0x04); // uncompressed SEC1 point
                    point.extend_from_slice(&x);
                    point.extend_from_slice(&y);
                    parsed.es256 = ParsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point).ok();
                }
            }
            (Some("OKP"), Some("Ed25519")) => {
                if let Some(x) = field("x") {
                    parsed.eddsa = ParsedPublicKey::new(&ED25519, x).ok();
                }
            }
            _ => {}
        }
        parsed
    }

    fn for_alg(&self, alg: &CoreJwsSigningAlgorithm) -> Option<&ParsedPublicKey> {
        match alg {
            CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256 => self.rs256.as_ref(),
            CoreJwsSigningAlgorithm::EcdsaP256Sha256 => self.es256.as_ref(),
            CoreJwsSigningAlgorithm::EdDsa => self.eddsa.as_ref(),
            _ => None,
        }
    }
}

impl UpstreamKey {
    /// The checks `openidconnect` makes before any signature check: the key may sign, its
    /// type fits the algorithm, and its `alg` (when given) is this algorithm.
    fn usable_for(&self, alg: &CoreJwsSigningAlgorithm) -> Result<(), SignatureVerificationError> {
        let refuse = |why: &str| Err(SignatureVerificationError::InvalidKey(why.to_owned()));
        if self.core.key_use().is_some_and(|u| !u.allows_signature()) {
            return refuse("key usage not permitted for digital signatures");
        }
        if alg.key_type().as_ref() != Some(self.core.key_type()) {
            return refuse("key type does not match signature algorithm");
        }
        match self.core.signing_alg() {
            JsonWebKeyAlgorithm::Unspecified => Ok(()),
            JsonWebKeyAlgorithm::Algorithm(key_alg) if key_alg == alg => Ok(()),
            JsonWebKeyAlgorithm::Algorithm(_) => refuse("incompatible key algorithm"),
            JsonWebKeyAlgorithm::Unsupported => refuse("key algorithm is not a signing algorithm"),
        }
    }
}

impl Serialize for UpstreamKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.core.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for UpstreamKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        let core = CoreJsonWebKey::deserialize(&value).map_err(serde::de::Error::custom)?;
        Ok(UpstreamKey { core, parsed: Arc::new(Parsed::from_jwk(&value)) })
    }
}

impl JsonWebKey for UpstreamKey {
    type KeyUse = CoreJsonWebKeyUse;
    type SigningAlgorithm = CoreJwsSigningAlgorithm;

    fn key_id(&self) -> Option<&JsonWebKeyId> {
        self.core.key_id()
    }
    fn key_type(&self) -> &<CoreJwsSigningAlgorithm as JwsSigningAlgorithm>::KeyType {
        self.core.key_type()
    }
    fn key_use(&self) -> Option<&CoreJsonWebKeyUse> {
        self.core.key_use()
    }
    fn signing_alg(&self) -> JsonWebKeyAlgorithm<&CoreJwsSigningAlgorithm> {
        self.core.signing_alg()
    }
    fn new_symmetric(key: Vec<u8>) -> Self {
        UpstreamKey { core: CoreJsonWebKey::new_symmetric(key), parsed: Arc::default() }
    }
    fn verify_signature(
        &self,
        alg: &CoreJwsSigningAlgorithm,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), SignatureVerificationError> {
        match self.parsed.for_alg(alg) {
            Some(key) => {
                self.usable_for(alg)?;
                key.verify_sig(message, signature)
                    .map_err(|_| SignatureVerificationError::CryptoError("bad signature".to_owned()))
            }
            None => self.core.verify_signature(alg, message, signature),
        }
    }
    fn hash_bytes(&self, bytes: &[u8], alg: &CoreJwsSigningAlgorithm) -> Result<Vec<u8>, String> {
        self.core.hash_bytes(bytes, alg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{KeySet, SigningAlg};

    /// Signs "header.payload" with a fresh key of `alg` and returns the message, the signature
    /// and the key's public JWK.
    fn signed(alg: SigningAlg) -> (Vec<u8>, Vec<u8>, Value) {
        let dir = tempfile::tempdir().unwrap();
        let keys = KeySet::load_or_generate(dir.path(), &[alg]).unwrap();
        let jws = keys.sign(alg, "JWT", &serde_json::json!({"sub": "x"})).unwrap();
        let (message, sig) = jws.rsplit_once('.').unwrap();
        let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(sig).unwrap();
        let jwks: Value = serde_json::from_slice(&keys.jwks_json()).unwrap();
        (message.as_bytes().to_vec(), sig, jwks["keys"][0].clone())
    }

    fn alg_of(alg: SigningAlg) -> CoreJwsSigningAlgorithm {
        match alg {
            SigningAlg::RS256 => CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
            SigningAlg::ES256 => CoreJwsSigningAlgorithm::EcdsaP256Sha256,
            SigningAlg::EdDSA => CoreJwsSigningAlgorithm::EdDsa,
        }
    }

    #[test]
    fn parsed_keys_accept_exactly_what_openidconnect_accepts() {
        for alg in [SigningAlg::RS256, SigningAlg::ES256, SigningAlg::EdDSA] {
            let (message, sig, jwk) = signed(alg);
            let key: UpstreamKey = serde_json::from_value(jwk.clone()).unwrap();
            let core: CoreJsonWebKey = serde_json::from_value(jwk).unwrap();
            assert!(key.parsed.for_alg(&alg_of(alg)).is_some(), "{alg:?} key was not parsed");
            let mut tampered = message.clone();
            tampered[0] ^= 1;
            for (m, expect) in [(&message, true), (&tampered, false)] {
                assert_eq!(key.verify_signature(&alg_of(alg), m, &sig).is_ok(), expect, "{alg:?}");
                assert_eq!(core.verify_signature(&alg_of(alg), m, &sig).is_ok(), expect, "{alg:?}");
            }
        }
    }

    #[test]
    fn a_key_is_refused_for_another_algorithm_or_an_encryption_use() {
        let (message, sig, mut jwk) = signed(SigningAlg::ES256);
        let key: UpstreamKey = serde_json::from_value(jwk.clone()).unwrap();
        let wrong = key.verify_signature(&CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256, &message, &sig);
        assert!(matches!(wrong, Err(SignatureVerificationError::InvalidKey(_))));
        jwk["use"] = Value::String("enc".into());
        let enc: UpstreamKey = serde_json::from_value(jwk).unwrap();
        let refused = enc.verify_signature(&CoreJwsSigningAlgorithm::EcdsaP256Sha256, &message, &sig);
        assert!(matches!(refused, Err(SignatureVerificationError::InvalidKey(_))));
    }

    #[test]
    fn a_key_that_cannot_be_parsed_falls_back_to_openidconnect() {
        // An RSA key below 2048 bits is left to `openidconnect`.
        let jwk = serde_json::json!({"kty": "RSA", "n": "AQAB", "e": "AQAB", "kid": "small"});
        let key: UpstreamKey = serde_json::from_value(jwk).unwrap();
        assert!(key.parsed.for_alg(&CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256).is_none());
        assert!(key.verify_signature(&CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256, b"m", b"s").is_err());
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        fn b64_field() -> impl Strategy<Value = Value> {
            prop_oneof![
                prop::collection::vec(any::<u8>(), 0..600)
                    .prop_map(|b| Value::String(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b))),
                any::<String>().prop_map(Value::String),
                any::<i64>().prop_map(Value::from),
                Just(Value::Null),
            ]
        }

        /// A JWK as a hostile or broken upstream might publish it.
        fn jwk() -> impl Strategy<Value = Value> {
            (
                prop::sample::select(vec!["RSA", "EC", "OKP", "oct", "", "rsa"]),
                prop::sample::select(vec!["P-256", "P-384", "Ed25519", "X25519", "secp256k1", ""]),
                prop::option::of(prop::sample::select(vec!["sig", "enc", "other"])),
                prop::option::of(prop::sample::select(vec![
                    "RS256", "ES256", "EdDSA", "HS256", "none", "PS512",
                ])),
                (b64_field(), b64_field(), b64_field(), b64_field()),
                prop::option::of(any::<String>()),
            )
                .prop_map(|(kty, crv, use_, alg, (n, e, x, y), kid)| {
                    let mut k = serde_json::json!({ "kty": kty, "crv": crv, "n": n, "e": e, "x": x, "y": y });
                    if let Some(u) = use_ {
                        k["use"] = Value::from(u);
                    }
                    if let Some(a) = alg {
                        k["alg"] = Value::from(a);
                    }
                    if let Some(id) = kid {
                        k["kid"] = Value::from(id);
                    }
                    k
                })
        }

        proptest! {
            #![proptest_config(crate::fuzzing::config(256))]

            #[test]
            fn any_published_key_parses_or_is_refused_and_never_verifies_noise(
                jwk in jwk(),
                message in prop::collection::vec(any::<u8>(), 0..256),
                signature in prop::collection::vec(any::<u8>(), 0..600),
            ) {
                if let Ok(key) = serde_json::from_value::<UpstreamKey>(jwk) {
                    for alg in [
                        CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
                        CoreJwsSigningAlgorithm::RsaSsaPssSha256,
                        CoreJwsSigningAlgorithm::EcdsaP256Sha256,
                        CoreJwsSigningAlgorithm::EdDsa,
                        CoreJwsSigningAlgorithm::HmacSha256,
                        CoreJwsSigningAlgorithm::None,
                    ] {
                        prop_assert!(key.verify_signature(&alg, &message, &signature).is_err());
                    }
                }
            }

            #[test]
            fn arbitrary_json_as_a_key_set_never_panics(text in any::<String>()) {
                let _ = serde_json::from_str::<UpstreamKey>(&text);
                let _ = serde_json::from_str::<jsonwebtoken::jwk::JwkSet>(&text);
            }
        }
    }
}
