//! Signing-key rotation on a running pair of replicas sharing one key directory: the new key
//! is published before it signs, the old one stays published until the last token it signed
//! has expired, and both replicas make the same choice at the same moment.

use std::process::Command;

use crate::helpers::*;
use reqwest::StatusCode;
use serde_json::Value;
use sso_gateway::keys::SigningAlg;

fn kid_of(jwt: &str) -> String {
    jsonwebtoken::decode_header(jwt).unwrap().kid.unwrap()
}

async fn jwks_kids(base: &str) -> Vec<String> {
    let jwks: Value = reqwest::get(format!("{base}/jwks")).await.unwrap().json().await.unwrap();
    let mut kids: Vec<String> =
        jwks["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap().to_owned()).collect();
    kids.sort();
    kids
}

/// A fresh `client_credentials` access token (RS256) from the replica at `base`.
async fn m2m_token(base: &str) -> String {
    let res = reqwest::Client::new()
        .post(format!("{base}/token"))
        .basic_auth(M2M, Some(M2M_SECRET))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    body["access_token"].as_str().unwrap().to_owned()
}

async fn userinfo_status(base: &str, token: &str) -> StatusCode {
    reqwest::Client::new().get(format!("{base}/userinfo")).bearer_auth(token).send().await.unwrap().status()
}

async fn introspect(base: &str, token: &str) -> Value {
    reqwest::Client::new()
        .post(format!("{base}/introspect"))
        .basic_auth(PORTAL, Some(PORTAL_SECRET))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn keys_cli(args: &[&str], dir: &std::path::Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_sso-gateway"))
        .env_remove("SSO_GATEWAY_CONFIG")
        .arg("keys")
        .args(args)
        .arg("--dir")
        .arg(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "keys {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn a_rotation_publishes_first_switches_on_every_replica_at_once_and_retires_the_old_key_last() {
    let sys = TestSystem::start_with(Options::redis_replicas(2)).await;
    let dir = sys.app.settings.keys.dir.clone();
    let bases: Vec<String> = sys.replicas.iter().map(|r| r.url("")).collect();
    let browser = Browser::new();
    sys.route_to(0);
    let (_, before) = portal_login(&sys, &browser, "hcm", HCM_USER).await;
    let old = kid_of(&before.access_token);
    assert_eq!(kid_of(&before.id_token), old);

    // The operator rotates RS256: published in 2 minutes' time, tokens live at most 10 minutes.
    let out =
        keys_cli(&["rotate", "--alg", "RS256", "--publish-before", "2m", "--token-lifetime", "10m"], &dir);
    let new = sso_gateway::keys::KeySet::load_dir(&dir)
        .unwrap()
        .status()
        .into_iter()
        .find(|s| s.alg == SigningAlg::RS256 && s.kid != old)
        .unwrap()
        .kid;
    assert!(out.contains(&new), "{out}");
    let listing = keys_cli(&["list"], &dir);
    assert!(listing.lines().any(|l| l.starts_with(&new) && l.contains("published")), "{listing}");
    assert!(listing.lines().any(|l| l.starts_with(&old) && l.contains("signing")), "{listing}");
    // Each replica re-reads the directory (what its periodic reload and SIGHUP do).
    for r in &sys.replicas {
        assert!(r.state.keys.reload(&[SigningAlg::RS256, SigningAlg::ES256, SigningAlg::EdDSA]).unwrap());
    }

    // Before the switch: the new key is in /jwks, tokens are still signed by the old one.
    for base in &bases {
        assert_eq!(jwks_kids(base).await.iter().filter(|k| **k == old || **k == new).count(), 2);
        assert_eq!(kid_of(&m2m_token(base).await), old, "{base}");
    }

    // At the switch (+2 min): both replicas sign with the new key, the old one is still
    // published and the token signed before the rotation still works everywhere.
    sys.clock.advance(121);
    for base in &bases {
        let token = m2m_token(base).await;
        assert_eq!(kid_of(&token), new, "{base}");
        let kids = jwks_kids(base).await;
        assert!(kids.contains(&old) && kids.contains(&new), "{kids:?}");
        assert_eq!(userinfo_status(base, &before.access_token).await, StatusCode::OK, "{base}");
        assert_eq!(introspect(base, &before.access_token).await["active"], true, "{base}");
    }
    // An RP verifying against the published JWKS accepts both generations.
    verify_with_jwks(&sys, &before.id_token, PORTAL).await;
    let (_, after) = portal_login(&sys, &Browser::new(), "hcm", HCM_USER).await;
    assert_eq!(kid_of(&after.id_token), new);
    verify_with_jwks(&sys, &after.id_token, PORTAL).await;

    // After retire_after (switch + 10 min + 5 min margin): the old key is gone from /jwks.
    sys.clock.advance(15 * 60 + 1);
    for base in &bases {
        let kids = jwks_kids(base).await;
        assert!(!kids.contains(&old) && kids.contains(&new), "{kids:?}");
        assert_eq!(kid_of(&m2m_token(base).await), new);
    }
}
