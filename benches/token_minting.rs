//! Token minting per algorithm against the raw signature of the same key.
//!
//! `cargo bench --bench token_minting`. For each of RS256, ES256 and EdDSA:
//! - `raw/ALG`: aws-lc-rs signs the signing input of a real token (header.payload), with a
//!   key pair parsed once from the very PEM file the gateway loaded;
//! - `sign/ALG`: `KeySet::sign`, the gateway's JWS path (header, claims serialisation,
//!   base64url, signature) with the claims of a user access token;
//! - `mint/ALG`: `issue_client_token`, the whole `client_credentials` minting path (claims
//!   built from the client, random `jti`, clock, signing, response struct).
//!
//! The issue's target: minting costs at most 1.5× the raw signature of the same algorithm.

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeyPair as RsaKeyPair;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, RSA_PKCS1_SHA256};
use criterion::Criterion;
use sso_gateway::app::AppState;
use sso_gateway::clock::Clock;
use sso_gateway::config::Settings;
use sso_gateway::keys::SigningAlg;
use sso_gateway::provider::minting::{AccessClaims, Audience, issue_client_token};

enum Raw {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
}

impl Raw {
    fn load(path: &Path) -> Result<Raw> {
        let bytes = std::fs::read(path).with_context(|| path.display().to_string())?;
        let der = pem::parse(&bytes)?.into_contents();
        if let Ok(k) = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der) {
            return Ok(Raw::Ed(k));
        }
        if let Ok(k) = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der) {
            return Ok(Raw::Ec(k));
        }
        Ok(Raw::Rsa(RsaKeyPair::from_pkcs8(&der).map_err(|e| anyhow!("{path:?}: {e}"))?))
    }

    fn sign(&self, rng: &SystemRandom, msg: &[u8], out: &mut [u8]) -> usize {
        match self {
            Raw::Rsa(k) => {
                let n = k.public_modulus_len().min(out.len());
                match k.sign(&RSA_PKCS1_SHA256, rng, msg, &mut out[..n]) {
                    Ok(()) => n,
                    Err(_) => 0,
                }
            }
            Raw::Ec(k) => k.sign(rng, msg).map(|s| s.as_ref().len()).unwrap_or(0),
            Raw::Ed(k) => k.sign(msg).as_ref().len(),
        }
    }
}

fn config(dir: &Path) -> String {
    let mut text = format!(
        "issuer = \"https://sso.example.gov.vn\"\n[keys]\ndir = \"{}/keys\"\ngenerate_missing = true\n\
         [accounts]\nurl = \"sqlite://{}/accounts.db?mode=rwc\"\n",
        dir.display(),
        dir.display()
    );
    for alg in SigningAlg::all() {
        text.push_str(&format!(
            "[[clients]]\nclient_id = \"m2m-{alg}\"\nclient_secret = \"bench-secret-0123456789\"\n\
             redirect_uris = []\nscopes = [\"hotline.read\"]\ngrant_types = [\"client_credentials\"]\n\
             id_token_signed_response_alg = \"{alg}\"\n"
        ));
    }
    text
}

fn run() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let settings = Settings::from_toml(&config(dir.path())).map_err(|e| anyhow!("{e}"))?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let app: AppState =
        runtime.block_on(AppState::build(settings, Clock::system())).map_err(|e| anyhow!("{e}"))?;
    let scopes = vec!["hotline.read".to_string()];
    let rng = SystemRandom::new();
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    for alg in SigningAlg::all() {
        let client =
            app.clients.get(format!("m2m-{alg}").as_str()).ok_or_else(|| anyhow!("no client for {alg}"))?;
        let kid = app.keys.active_kid(alg).ok_or_else(|| anyhow!("no key for {alg}"))?;
        let raw = Raw::load(&dir.path().join("keys").join(format!("{kid}.pem")))?;
        // The signing input of a real token, so both paths sign the same number of bytes.
        let token =
            issue_client_token(app.provider(), &client, &scopes).map_err(|e| anyhow!("{e}"))?.access_token;
        let input = token.rsplit_once('.').map(|(i, _)| i.to_string()).unwrap_or_default();
        let claims = AccessClaims {
            iss: app.issuer().to_string(),
            sub: "0190f5a2-7c1e-7a39-9a7e-6f1c2b3d4e5f".into(),
            aud: Audience::One(app.issuer().to_string()),
            exp: 1_900_000_000,
            iat: 1_899_999_700,
            jti: "q1w2e3r4t5y6u7i8o9p0a1s2d3f4g5h6j7k8l9z0x1c".into(),
            client_id: "cong-dich-vu-cong".into(),
            scope: "openid profile email".into(),
            auth_time: Some(1_899_999_000),
            acr: Some("urn:sso-gateway:acr:password".into()),
            sid: Some("Zk9sT2xkU2Vzc2lvbklkRm9yQmVuY2htYXJrMDAwMQ".into()),
            gid: Some("R3JhbnRJZEZvckJlbmNobWFya1B1cnBvc2VzMDAwMQ".into()),
            cnf: None,
        };
        let mut group = c.benchmark_group(alg.as_str());
        if alg == SigningAlg::RS256 {
            group.sample_size(20);
        }
        let mut sig = vec![0u8; 1024];
        group.bench_function("raw", |b| {
            b.iter(|| black_box(raw.sign(&rng, black_box(input.as_bytes()), &mut sig)))
        });
        group.bench_function("sign", |b| {
            b.iter(|| black_box(app.keys.sign(alg, "at+jwt", black_box(&claims)).ok()))
        });
        group.bench_function("mint", |b| {
            b.iter(|| black_box(issue_client_token(app.provider(), black_box(&client), &scopes).ok()))
        });
        group.finish();
    }
    c.final_summary();
    Ok(())
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("token_minting: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
