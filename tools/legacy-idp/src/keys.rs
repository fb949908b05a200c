//! The provider's in-memory RS256 signing key (plus a rogue key for the `bad_signature` fault).

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

impl SigningKey {
    /// Generates a fresh RSA 2048 key. CPU-bound: call from `spawn_blocking`.
    pub fn generate(kid: String) -> anyhow::Result<Self> {
        let pair = KeyPair::generate(KeySize::Rsa2048)
            .map_err(|e| anyhow::anyhow!("RSA key generation failed: {e}"))?;
        let pkcs8 = pair.as_der().map_err(|e| anyhow::anyhow!("PKCS#8 encoding failed: {e}"))?;
        // jsonwebtoken's raw-DER constructor wants PKCS#1; its PEM reader takes PKCS#8.
        let pem = pem::encode(&pem::Pem::new("PRIVATE KEY", pkcs8.as_ref().to_vec()));
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
