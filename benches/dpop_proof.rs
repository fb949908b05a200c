//! What checking a DPoP proof costs against the signature verification RFC 9449 requires.
//!
//! `cargo bench --bench dpop_proof`. With one ES256 proof (a P-256 key generated at start, the
//! proof made once, as a client sends it to `/token`):
//! - `es256/verify_raw`: aws-lc-rs verifies the proof's signature over its signing input with
//!   the public key already parsed: the floor no implementation of RFC 9449 §4.3 can go below;
//! - `es256/check`: `provider::dpop::check`, the gateway's whole stateless check (header and
//!   claims parsed, algorithm and `typ`, RFC 7638 thumbprint, key built from the JWK,
//!   signature, `htm`/`htu`/`iat`/`jti`);
//! - `es256/sign_raw`: aws-lc-rs signs the same input (what an ES256 access token's signature
//!   costs the gateway), for scale.
//!
//! sso-bench measures the same against whole HTTP requests (`--scenario issue14`).

use std::hint::black_box;
use std::time::Duration;

use anyhow::{Result, anyhow};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair, UnparsedPublicKey,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use criterion::Criterion;
use sso_gateway::provider::dpop::{Target, check};

const URL: &str = "https://sso.example/token";
const NOW: i64 = 1_800_000_000;

fn run() -> Result<()> {
    let rng = SystemRandom::new();
    let pkcs8 =
        EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).map_err(|e| anyhow!("{e}"))?;
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref())
        .map_err(|e| anyhow!("{e}"))?;
    let public = pair.public_key().as_ref().to_vec();
    let (x, y) = (B64.encode(&public[1..33]), B64.encode(&public[33..65]));
    let header = format!(
        r#"{{"typ":"dpop+jwt","alg":"ES256","jwk":{{"kty":"EC","crv":"P-256","x":"{x}","y":"{y}"}}}}"#
    );
    let claims = format!(r#"{{"jti":"bench-proof-0001","htm":"POST","htu":"{URL}","iat":{NOW}}}"#);
    let input = format!("{}.{}", B64.encode(header), B64.encode(claims));
    let signature = pair.sign(&rng, input.as_bytes()).map_err(|e| anyhow!("{e}"))?;
    let proof = format!("{input}.{}", B64.encode(signature.as_ref()));
    let target = Target { method: "POST", url: URL, access_token: None, jkt: None, alias: None };
    check(&proof, target, NOW, Duration::from_secs(60))
        .map_err(|e| anyhow!("the bench proof is refused: {e:?}"))?;
    let key = UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, public);

    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    let mut group = c.benchmark_group("es256");
    group.bench_function("verify_raw", |b| {
        b.iter(|| black_box(key.verify(black_box(input.as_bytes()), black_box(signature.as_ref())).is_ok()))
    });
    group.bench_function("check", |b| {
        b.iter(|| black_box(check(black_box(&proof), target, NOW, Duration::from_secs(60)).is_ok()))
    });
    group.bench_function("sign_raw", |b| {
        b.iter(|| black_box(pair.sign(&rng, black_box(input.as_bytes())).is_ok()))
    });
    group.finish();
    c.final_summary();
    Ok(())
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dpop_proof: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
