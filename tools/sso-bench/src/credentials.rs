//! What the sender-constrained and certificate scenarios present: DPoP proofs (RFC 9449) of
//! a key each worker holds, and the certificates of a test authority (officials for
//! `cert_login`, an RP for `mtls_client_credentials`) as a TLS-terminating proxy forwards
//! them. TOOLING only: signs with the product's JWT crate, issues with rcgen (through
//! `sso-test-services`); checks nothing the gateway checks.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result};
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use sha2::Digest;
use sso_test_services::pki::{Ca, Person};

/// A P-256 key that signs DPoP proofs; every proof has a `jti` of its own.
pub struct DpopKey {
    encoding: jsonwebtoken::EncodingKey,
    jwk: jsonwebtoken::jwk::Jwk,
    counter: AtomicU64,
}

impl DpopKey {
    pub fn generate() -> Result<Self> {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| anyhow::anyhow!("cannot generate a P-256 key"))?;
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref())
            .map_err(|_| anyhow::anyhow!("cannot read the P-256 key"))?;
        let public = pair.public_key().as_ref();
        let jwk = serde_json::json!({
            "kty": "EC", "crv": "P-256", "x": B64.encode(&public[1..33]), "y": B64.encode(&public[33..65]),
        });
        Ok(DpopKey {
            encoding: jsonwebtoken::EncodingKey::from_ec_der(pkcs8.as_ref()),
            jwk: serde_json::from_value(jwk)?,
            counter: AtomicU64::new(0),
        })
    }

    /// A fresh proof for `htm` `htu` (and, at a resource, the access token it names).
    pub fn proof(&self, htm: &str, htu: &str, access_token: Option<&str>) -> Result<String> {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let iat = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
        let mut claims =
            serde_json::json!({ "jti": format!("bench-{n}"), "htm": htm, "htu": htu, "iat": iat });
        if let Some(token) = access_token {
            claims["ath"] = B64.encode(sha2::Sha256::digest(token.as_bytes())).into();
        }
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.typ = Some("dpop+jwt".into());
        header.jwk = Some(self.jwk.clone());
        Ok(jsonwebtoken::encode(&header, &claims, &self.encoding)?)
    }
}

/// A certificate as a proxy forwards it (`$ssl_client_escaped_cert`: URL-escaped PEM).
fn escaped(pem: &str) -> String {
    percent_encoding::utf8_percent_encode(pem, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// How many officials' certificates `cert_login` cycles through (one account each).
pub const OFFICIALS: u64 = 16;

/// The certificates of a run, made in memory when the system starts; the CA files the
/// gateway reads are written into the scratch directory.
pub struct Pki {
    /// Officials' certificates (header values), for `cert_login`.
    pub officials: Vec<String>,
    /// The RP's certificate (header value), for `mtls_client_credentials`.
    pub rp: String,
}

/// File names in the scratch directory.
pub const OFFICIALS_CA_FILE: &str = "officials-ca.pem";
pub const OFFICIALS_CRL_FILE: &str = "officials.crl";
pub const RP_CA_FILE: &str = "rp-ca.pem";

/// The e-mail SAN the mTLS client registers (`tls_client_auth_san_email`).
pub const RP_EMAIL: &str = "bench-mtls@sso-bench.test";

impl Pki {
    /// Makes the authorities and certificates and writes the CA bundles and a current CRL
    /// (listing one revoked serial, so the revocation check has something to look through).
    pub fn create(dir: &Path) -> Result<Pki> {
        let gov = Ca::new("sso-bench officials CA");
        let officials = (0..OFFICIALS)
            .map(|i| {
                // 079 (Ho Chi Minh City), 1 (a woman born in the 1900s), 90, then a serial.
                let cccd = format!("0791900{:05}", 70_000 + i);
                escaped(&gov.issue(&Person::official(&format!("Cán bộ {i}"), &cccd, 5_000 + i)).cert_pem)
            })
            .collect();
        let write = |name: &str, bytes: &[u8]| {
            std::fs::write(dir.join(name), bytes).with_context(|| format!("writing {name}"))
        };
        write(OFFICIALS_CA_FILE, gov.cert_pem.as_bytes())?;
        write(OFFICIALS_CRL_FILE, &gov.current_crl(&[4_999]))?;
        let rp_ca = Ca::new("sso-bench RP CA");
        let mut rp = Person::official("bench-mtls", "000000000000", 7_000);
        rp.uid = None;
        rp.email = Some(RP_EMAIL.into());
        let rp = escaped(&rp_ca.issue(&rp).cert_pem);
        write(RP_CA_FILE, rp_ca.cert_pem.as_bytes())?;
        Ok(Pki { officials, rp })
    }
}
