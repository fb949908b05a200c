//! The provider's in-memory RS256 signing key (plus a rogue key for the `bad_signature` fault).

use std::sync::Arc;

use anyhow::Context;
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::RSA_PKCS1_SHA256;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, EncodingKey, Header};

pub(crate) struct SigningKey {
    pub kid: String,
    /// The private key, parsed once (an RSA key is costly to parse and check).
    pair: KeyPair,
    /// The public half, as published at the JWKS endpoint.
    pub jwk: Jwk,
}

/// The RSA keys of one simulated system, as PKCS#8 DER: its signing key and the rogue key of
/// the `bad_signature` fault. Generating them is the costly part of starting a simulator; a
/// test suite makes one set per simulated system once and hands clones to every instance.
#[derive(Clone)]
pub struct IdpKeys {
    signing: Arc<[u8]>,
    rogue: Arc<[u8]>,
}

impl IdpKeys {
    /// Two fresh RSA 2048 keys. CPU-bound: call from `spawn_blocking`.
    pub fn generate() -> anyhow::Result<Self> {
        // Both at once, on two threads.
        let (signing, rogue) = std::thread::scope(|scope| {
            let rogue = scope.spawn(generate_rsa);
            (generate_rsa(), rogue.join())
        });
        let rogue = rogue.map_err(|_| anyhow::anyhow!("RSA key generation thread failed"))?;
        Ok(Self { signing: signing?.into(), rogue: rogue?.into() })
    }

    /// The signing key and the rogue key, both named `kid`.
    pub(crate) fn load(&self, kid: &str) -> anyhow::Result<(SigningKey, SigningKey)> {
        Ok((
            SigningKey::from_pkcs8(kid.to_owned(), &self.signing)?,
            SigningKey::from_pkcs8(kid.to_owned(), &self.rogue)?,
        ))
    }
}

fn generate_rsa() -> anyhow::Result<Vec<u8>> {
    let pair =
        KeyPair::generate(KeySize::Rsa2048).map_err(|e| anyhow::anyhow!("RSA key generation failed: {e}"))?;
    let pkcs8 = pair.as_der().map_err(|e| anyhow::anyhow!("PKCS#8 encoding failed: {e}"))?;
    Ok(pkcs8.as_ref().to_vec())
}

impl SigningKey {
    /// Loads an RSA key from PKCS#8 DER.
    fn from_pkcs8(kid: String, pkcs8: &[u8]) -> anyhow::Result<Self> {
        let pair = KeyPair::from_pkcs8(pkcs8).map_err(|e| anyhow::anyhow!("RSA key rejected: {e}"))?;
        // jsonwebtoken's raw-DER constructor wants PKCS#1; its PEM reader takes PKCS#8.
        let pem = pem::encode(&pem::Pem::new("PRIVATE KEY", pkcs8.to_vec()));
        let encoding_key = EncodingKey::from_rsa_pem(pem.as_bytes()).context("loading generated RSA key")?;
        let mut jwk = Jwk::from_encoding_key(&encoding_key, Algorithm::RS256)
            .context("building JWK from generated key")?;
        jwk.common.key_id = Some(kid.clone());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        Ok(Self { kid, pair, jwk })
    }

    /// Signs `claims` as an RS256 compact JWS with `header` (whose `alg` must be RS256).
    pub fn sign(&self, header: &Header, claims: &impl serde::Serialize) -> anyhow::Result<String> {
        anyhow::ensure!(header.alg == Algorithm::RS256, "the simulated system signs with RS256 only");
        let mut jws = URL_SAFE_NO_PAD.encode(serde_json::to_vec(header)?);
        jws.push('.');
        URL_SAFE_NO_PAD.encode_string(serde_json::to_vec(claims)?, &mut jws);
        let mut signature = vec![0; self.pair.public_modulus_len()];
        self.pair
            .sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), jws.as_bytes(), &mut signature)
            .map_err(|e| anyhow::anyhow!("RSA signing failed: {e}"))?;
        jws.push('.');
        URL_SAFE_NO_PAD.encode_string(signature, &mut jws);
        Ok(jws)
    }

    pub fn jwks(&self) -> JwkSet {
        JwkSet { keys: vec![self.jwk.clone()] }
    }
}
