#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use serde_json::{Value, json};
use std::time::Duration;
use tempfile::TempDir;

const ISS: &str = "https://sso.example.test";

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

fn claims(exp_offset: i64) -> Value {
    json!({
        "iss": ISS,
        "aud": "client-1",
        "sub": "user-42",
        "exp": now() as i64 + exp_offset,
    })
}

fn dir_with(algs: &[SigningAlg]) -> (TempDir, KeySet) {
    let dir = TempDir::new().unwrap();
    let set = KeySet::load_or_generate(dir.path(), algs).unwrap();
    (dir, set)
}

fn invalid_reason(r: Result<Value, KeyError>) -> String {
    match r {
        Err(KeyError::InvalidToken(reason)) => reason,
        other => panic!("expected InvalidToken, got {other:?}"),
    }
}

#[test]
fn alg_names() {
    for alg in SigningAlg::all() {
        assert_eq!(alg.as_str().parse::<SigningAlg>().unwrap(), alg);
        assert_eq!(alg.to_string(), alg.as_str());
        assert_eq!(serde_json::to_value(alg).unwrap(), json!(alg.as_str()));
        assert_eq!(<SigningAlg as clap::ValueEnum>::from_str(alg.as_str(), false).unwrap(), alg);
    }
    assert!("HS256".parse::<SigningAlg>().is_err());
}

#[test]
fn generate_and_load_each_alg() {
    let dir = TempDir::new().unwrap();
    fs::write(dir.path().join("README.md"), "not a key").unwrap();
    assert!(KeySet::load_dir(dir.path()).unwrap().is_empty());
    for alg in SigningAlg::all() {
        let kid = KeySet::generate(dir.path(), alg).unwrap();
        let prefix = format!("{}-", alg.as_str().to_ascii_lowercase());
        assert!(kid.starts_with(&prefix), "{kid}");
        // {alg}-{14 digits}-{4 hex}
        let rest = &kid[prefix.len()..];
        let (stamp, hex) = rest.split_once('-').unwrap();
        assert_eq!(stamp.len(), 14);
        assert!(stamp.bytes().all(|b| b.is_ascii_digit()));
        assert_eq!(hex.len(), 4);
        assert!(hex.bytes().all(|b| b.is_ascii_hexdigit()));

        let set = KeySet::load_dir(dir.path()).unwrap();
        assert!(set.has(alg));
        assert_eq!(set.active_kid(alg).as_deref(), Some(kid.as_str()));
    }
    let set = KeySet::load_dir(dir.path()).unwrap();
    assert_eq!(set.algorithms(), SigningAlg::all().to_vec());
    assert!(!set.is_empty());
}

#[test]
fn load_or_generate_only_fills_gaps() {
    let dir = TempDir::new().unwrap();
    let keys_dir = dir.path().join("nested/keys");
    let set = KeySet::load_or_generate(&keys_dir, &[SigningAlg::ES256]).unwrap();
    assert_eq!(set.algorithms(), vec![SigningAlg::ES256]);
    let es = set.active_kid(SigningAlg::ES256);
    let set = KeySet::load_or_generate(&keys_dir, &[SigningAlg::ES256, SigningAlg::EdDSA]).unwrap();
    assert_eq!(set.algorithms(), vec![SigningAlg::ES256, SigningAlg::EdDSA]);
    assert_eq!(set.active_kid(SigningAlg::ES256), es);
    assert_eq!(fs::read_dir(&keys_dir).unwrap().count(), 2);
}

#[test]
fn sign_verify_round_trip_each_alg() {
    let (_dir, set) = dir_with(&SigningAlg::all());
    for alg in SigningAlg::all() {
        let token = set.sign(alg, "JWT", &claims(300)).unwrap();
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.alg, alg.jwt_alg());
        assert_eq!(header.kid.as_deref(), set.active_kid(alg).as_deref());
        assert_eq!(header.typ.as_deref(), Some("JWT"));

        let got: Value = set.verify(&token, ISS, Some("client-1"), Some("JWT")).unwrap();
        assert_eq!(got["sub"], "user-42");
        // No audience / typ requested: not checked.
        let got: Value = set.verify(&token, ISS, None, None).unwrap();
        assert_eq!(got["sub"], "user-42");
    }
}

#[test]
fn sign_without_key_for_alg() {
    let (_dir, set) = dir_with(&[SigningAlg::ES256]);
    assert!(matches!(
        set.sign(SigningAlg::RS256, "JWT", &claims(60)),
        Err(KeyError::NoKey(SigningAlg::RS256))
    ));
}

#[test]
fn rejects_tampered_signature_same_kid() {
    let (dir_a, set_a) = dir_with(&[SigningAlg::ES256]);
    let kid = set_a.active_kid(SigningAlg::ES256).unwrap().to_owned();
    // An attacker's key carrying our kid.
    let dir_b = TempDir::new().unwrap();
    let other = KeySet::generate(dir_b.path(), SigningAlg::ES256).unwrap();
    fs::rename(dir_b.path().join(format!("{other}.pem")), dir_b.path().join(format!("{kid}.pem"))).unwrap();
    let set_b = KeySet::load_dir(dir_b.path()).unwrap();
    let forged = set_b.sign(SigningAlg::ES256, "JWT", &claims(300)).unwrap();
    assert_eq!(invalid_reason(set_a.verify(&forged, ISS, None, None)), "bad signature");

    // Payload swapped under a valid signature.
    let good = set_a.sign(SigningAlg::ES256, "JWT", &claims(300)).unwrap();
    let parts: Vec<&str> = good.split('.').collect();
    let mut evil = claims(300);
    evil["sub"] = json!("admin");
    let swapped = format!("{}.{}.{}", parts[0], B64.encode(serde_json::to_vec(&evil).unwrap()), parts[2]);
    assert_eq!(invalid_reason(set_a.verify(&swapped, ISS, None, None)), "bad signature");
    drop(dir_a);
}

#[test]
fn rejects_unknown_kid() {
    let (_a, set_a) = dir_with(&[SigningAlg::EdDSA]);
    let (_b, set_b) = dir_with(&[SigningAlg::EdDSA]);
    let token = set_b.sign(SigningAlg::EdDSA, "JWT", &claims(300)).unwrap();
    let kid = set_b.active_kid(SigningAlg::EdDSA).unwrap();
    match set_a.verify::<Value>(&token, ISS, None, None) {
        Err(KeyError::UnknownKid(k)) => assert_eq!(k, kid),
        other => panic!("expected UnknownKid, got {other:?}"),
    }
}

#[test]
fn rejects_alg_mismatch_and_garbage() {
    let (_dir, set) = dir_with(&[SigningAlg::ES256]);
    let kid = set.active_kid(SigningAlg::ES256).unwrap();
    let header = json!({"alg": "HS256", "kid": kid, "typ": "JWT"});
    let body = claims(300);
    let token =
        format!("{}.{}.{}", B64.encode(header.to_string()), B64.encode(body.to_string()), B64.encode(b"sig"));
    assert_eq!(invalid_reason(set.verify(&token, ISS, None, None)), "alg does not match the key");
    assert!(matches!(set.verify::<Value>("not.a.jwt", ISS, None, None), Err(KeyError::InvalidToken(_))));
    assert!(matches!(set.verify::<Value>("", ISS, None, None), Err(KeyError::InvalidToken(_))));
}

#[test]
fn rejects_wrong_issuer_audience_expired() {
    let (_dir, set) = dir_with(&[SigningAlg::RS256]);
    let token = set.sign(SigningAlg::RS256, "JWT", &claims(300)).unwrap();
    assert_eq!(invalid_reason(set.verify(&token, "https://evil.test", None, None)), "wrong issuer");
    assert_eq!(invalid_reason(set.verify(&token, ISS, Some("client-2"), None)), "wrong audience");

    let expired = set.sign(SigningAlg::RS256, "JWT", &claims(-120)).unwrap();
    assert_eq!(invalid_reason(set.verify(&expired, ISS, None, None)), "token expired");
    // Within the 30 s leeway: still accepted.
    let just_expired = set.sign(SigningAlg::RS256, "JWT", &claims(-10)).unwrap();
    assert!(set.verify::<Value>(&just_expired, ISS, None, None).is_ok());

    let no_exp = set.sign(SigningAlg::RS256, "JWT", &json!({"iss": ISS, "sub": "x"})).unwrap();
    assert_eq!(invalid_reason(set.verify(&no_exp, ISS, None, None)), "missing claim \"exp\"");
    let no_iss = set.sign(SigningAlg::RS256, "JWT", &json!({"exp": now() + 60})).unwrap();
    assert!(set.verify::<Value>(&no_iss, ISS, None, None).is_err());
    let no_aud = set.sign(SigningAlg::RS256, "JWT", &json!({"iss": ISS, "exp": now() + 60})).unwrap();
    assert!(set.verify::<Value>(&no_aud, ISS, Some("client-1"), None).is_err());
    assert!(set.verify::<Value>(&no_aud, ISS, None, None).is_ok());
}

#[test]
fn typ_checks() {
    let (_dir, set) = dir_with(&[SigningAlg::ES256]);
    let jwt = set.sign(SigningAlg::ES256, "JWT", &claims(300)).unwrap();
    let at = set.sign(SigningAlg::ES256, "at+jwt", &claims(300)).unwrap();
    let at_full = set.sign(SigningAlg::ES256, "application/at+jwt", &claims(300)).unwrap();
    let logout = set.sign(SigningAlg::ES256, "logout+jwt", &claims(300)).unwrap();

    assert!(invalid_reason(set.verify(&jwt, ISS, None, Some("at+jwt"))).contains("typ"));
    assert!(set.verify::<Value>(&logout, ISS, None, Some("at+jwt")).is_err());
    assert!(set.verify::<Value>(&at, ISS, None, Some("jwt")).is_err());
    for token in [&at, &at_full] {
        for expected in ["at+jwt", "application/at+jwt", "AT+JWT", "Application/At+JWT"] {
            assert!(set.verify::<Value>(token, ISS, None, Some(expected)).is_ok(), "{expected}");
        }
    }
    assert!(set.verify::<Value>(&jwt, ISS, None, Some("jwt")).is_ok());
    assert!(set.verify::<Value>(&logout, ISS, None, Some("logout+jwt")).is_ok());
}

#[test]
fn jwks_has_public_parts_only() {
    let (_dir, set) = dir_with(&SigningAlg::all());
    let jwks: Value = serde_json::from_slice(&set.jwks_json()).unwrap();
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 3);
    for (alg, kty, crv) in [
        (SigningAlg::RS256, "RSA", None),
        (SigningAlg::ES256, "EC", Some("P-256")),
        (SigningAlg::EdDSA, "OKP", Some("Ed25519")),
    ] {
        let kid = set.active_kid(alg).unwrap();
        let jwk = keys.iter().find(|k| k["kid"] == kid).unwrap();
        assert_eq!(jwk["kty"], kty);
        assert_eq!(jwk["alg"], alg.as_str());
        assert_eq!(jwk["use"], "sig");
        assert_eq!(jwk["crv"].as_str(), crv);
        let obj = jwk.as_object().unwrap();
        for private in ["d", "p", "q", "dp", "dq", "qi", "k"] {
            assert!(!obj.contains_key(private), "{private} in {jwk}");
        }
        let required: &[&str] = match alg {
            SigningAlg::RS256 => &["n", "e"],
            SigningAlg::ES256 => &["x", "y"],
            SigningAlg::EdDSA => &["x"],
        };
        for field in required {
            assert!(obj[*field].as_str().is_some_and(|s| !s.is_empty()));
        }
        // A third party building a key from the published JWK can verify our tokens.
        let parsed: Jwk = serde_json::from_value(jwk.clone()).unwrap();
        let decoding = DecodingKey::from_jwk(&parsed).unwrap();
        let token = set.sign(alg, "JWT", &claims(60)).unwrap();
        let mut v = Validation::new(alg.jwt_alg());
        v.set_audience(&["client-1"]);
        assert!(jsonwebtoken::decode::<Value>(&token, &decoding, &v).is_ok());
    }
    if let Some(n) = keys.iter().find(|k| k["kty"] == "RSA") {
        // 2048-bit modulus, e = 65537.
        assert_eq!(B64.decode(n["n"].as_str().unwrap()).unwrap().len(), 256);
        assert_eq!(n["e"], "AQAB");
    }
}

#[test]
fn newest_kid_is_active_and_old_still_verifies() {
    let dir = TempDir::new().unwrap();
    let first = KeySet::generate(dir.path(), SigningAlg::ES256).unwrap();
    // Make the first key unambiguously older (both may share a timestamp second).
    let old = "es256-20000101000000-0000";
    fs::rename(dir.path().join(format!("{first}.pem")), dir.path().join(format!("{old}.pem"))).unwrap();
    let before = KeySet::load_dir(dir.path()).unwrap();
    let old_token = before.sign(SigningAlg::ES256, "JWT", &claims(300)).unwrap();

    let new = KeySet::generate(dir.path(), SigningAlg::ES256).unwrap();
    let after = KeySet::load_dir(dir.path()).unwrap();
    assert_eq!(after.active_kid(SigningAlg::ES256).as_deref(), Some(new.as_str()));
    let new_token = after.sign(SigningAlg::ES256, "JWT", &claims(300)).unwrap();
    let header = jsonwebtoken::decode_header(&new_token).unwrap();
    assert_eq!(header.kid.as_deref(), Some(new.as_str()));

    assert!(after.verify::<Value>(&old_token, ISS, None, None).is_ok());
    assert!(after.verify::<Value>(&new_token, ISS, None, None).is_ok());
    assert_eq!(after.algorithms(), vec![SigningAlg::ES256]);
    let jwks: Value = serde_json::from_slice(&after.jwks_json()).unwrap();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2);
}

#[test]
fn load_dir_errors_name_the_file() {
    let cases: Vec<(&str, String)> = vec![
        ("garbage.pem", "this is not pem".to_owned()),
        ("cert.pem", pem::encode(&pem::Pem::new("CERTIFICATE", vec![1, 2, 3]))),
        ("junk.pem", pem::encode(&pem::Pem::new("PRIVATE KEY", vec![1, 2, 3]))),
        (
            "p384.pem",
            pem::encode(&pem::Pem::new(
                "PRIVATE KEY",
                EcdsaKeyPair::generate(&aws_lc_rs::signature::ECDSA_P384_SHA384_FIXED_SIGNING)
                    .unwrap()
                    .to_pkcs8v1()
                    .unwrap()
                    .as_ref()
                    .to_vec(),
            )),
        ),
    ];
    for (name, contents) in cases {
        let dir = TempDir::new().unwrap();
        KeySet::generate(dir.path(), SigningAlg::EdDSA).unwrap();
        fs::write(dir.path().join(name), contents).unwrap();
        let err = KeySet::load_dir(dir.path()).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(name), "{msg}");
        assert!(matches!(err, KeyError::Unreadable { .. } | KeyError::Unsupported { .. }), "{err:?}");
    }
    let missing = TempDir::new().unwrap().path().join("nope");
    assert!(matches!(KeySet::load_dir(&missing), Err(KeyError::Io { .. })));
}

#[cfg(unix)]
#[test]
fn generated_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new().unwrap();
    let keys_dir = dir.path().join("keys");
    for alg in SigningAlg::all() {
        let kid = KeySet::generate(&keys_dir, alg).unwrap();
        let meta = fs::metadata(keys_dir.join(format!("{kid}.pem"))).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let text = fs::read_to_string(keys_dir.join(format!("{kid}.pem"))).unwrap();
        assert!(text.starts_with("-----BEGIN PRIVATE KEY-----"));
    }
    let dir_mode = fs::metadata(&keys_dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(dir_mode, 0o700);
    // No temp files left behind.
    assert_eq!(fs::read_dir(&keys_dir).unwrap().count(), 3);
}

fn rfc3339(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

fn jwks_kids(set: &KeySet) -> Vec<String> {
    let jwks: Value = serde_json::from_slice(&set.jwks_json()).unwrap();
    let mut kids: Vec<String> =
        jwks["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap().to_owned()).collect();
    kids.sort();
    kids
}

/// A key whose sidecar says it may sign only from a later time is published at once but
/// does not sign until then: RPs that cache the JWKS must see a kid before tokens carry it.
#[test]
fn a_scheduled_key_is_published_before_it_signs() {
    let dir = TempDir::new().unwrap();
    let first = KeySet::generate(dir.path(), SigningAlg::ES256).unwrap();
    let old = "es256-20000101000000-0000";
    fs::rename(dir.path().join(format!("{first}.pem")), dir.path().join(format!("{old}.pem"))).unwrap();
    let new = KeySet::generate(dir.path(), SigningAlg::ES256).unwrap();
    let in_an_hour = now() as i64 + 3600;
    fs::write(
        dir.path().join(format!("{new}.json")),
        json!({ "not_before": rfc3339(in_an_hour) }).to_string(),
    )
    .unwrap();

    let set = KeySet::load_dir(dir.path()).unwrap();
    assert_eq!(set.active_kid(SigningAlg::ES256).as_deref(), Some(old), "the new key must not sign yet");
    let token = set.sign(SigningAlg::ES256, "JWT", &claims(300)).unwrap();
    assert_eq!(jsonwebtoken::decode_header(&token).unwrap().kid.as_deref(), Some(old));
    let mut both = vec![old.to_owned(), new.clone()];
    both.sort();
    assert_eq!(jwks_kids(&set), both, "the new key is published ahead of use");
}

const HOUR: i64 = 3600;

fn es256_token(set: &KeySet) -> String {
    // Valid for three days of real time: `verify` checks `exp` against the system time.
    set.sign(SigningAlg::ES256, "JWT", &claims(3 * 24 * HOUR)).unwrap()
}

fn kid_of(token: &str) -> String {
    jsonwebtoken::decode_header(token).unwrap().kid.unwrap()
}

fn sorted(mut kids: Vec<String>) -> Vec<String> {
    kids.sort();
    kids
}

/// A directory with one plain (unscheduled) ES256 key, opened on a clock tests can move.
fn plain_dir() -> (TempDir, Clock, KeySet, String) {
    let dir = TempDir::new().unwrap();
    let kid = KeySet::generate(dir.path(), SigningAlg::ES256).unwrap();
    let clock = Clock::system();
    let set = KeySet::open(dir.path(), clock.clone()).unwrap();
    (dir, clock, set, kid)
}

#[test]
fn rotation_publishes_first_switches_later_and_retires_after_the_last_token() {
    let (dir, clock, set, old) = plain_dir();
    let before = es256_token(&set);
    assert_eq!(kid_of(&before), old);

    let publish = Duration::from_secs(HOUR as u64);
    let lifetime = Duration::from_secs(600);
    let r = rotate(dir.path(), SigningAlg::ES256, publish, lifetime, &clock).unwrap();
    let start = clock.now();
    let switch = r.not_before.unwrap();
    assert!((switch - start - HOUR).abs() <= 1, "{switch} vs {start}");
    let retire = switch + 600 + RETIRE_MARGIN.as_secs() as i64;
    assert_eq!(r.retiring, vec![(old.clone(), retire)]);
    assert!(set.reload(&[SigningAlg::ES256]).unwrap(), "the running set picks up the new files");

    // Published, not signing.
    assert_eq!(jwks_kids(&set), sorted(vec![old.clone(), r.kid.clone()]));
    assert_eq!(kid_of(&es256_token(&set)), old);
    let states: Vec<_> = set.status().into_iter().map(|s| (s.kid, s.state)).collect();
    assert!(states.contains(&(r.kid.clone(), KeyState::Published)), "{states:?}");
    assert!(states.contains(&(old.clone(), KeyState::Signing)), "{states:?}");

    // One second before the switch: still the old key.
    clock.advance(switch - clock.now() - 1);
    assert_eq!(set.active_kid(SigningAlg::ES256).as_deref(), Some(old.as_str()));
    // At the switch: the new key signs, the old one still verifies and is published.
    clock.advance(1);
    let after = es256_token(&set);
    assert_eq!(kid_of(&after), r.kid);
    assert_eq!(jwks_kids(&set), sorted(vec![old.clone(), r.kid.clone()]));
    assert!(set.verify::<Value>(&before, ISS, None, None).is_ok());
    let states: Vec<_> = set.status().into_iter().map(|s| (s.kid, s.state)).collect();
    assert!(states.contains(&(old.clone(), KeyState::Retiring)), "{states:?}");

    // Up to and including retire_after the old key stays; one second later it is gone.
    clock.advance(retire - clock.now());
    assert!(set.verify::<Value>(&before, ISS, None, None).is_ok());
    assert_eq!(jwks_kids(&set).len(), 2);
    clock.advance(1);
    assert_eq!(jwks_kids(&set), vec![r.kid.clone()]);
    assert!(
        matches!(set.verify::<Value>(&before, ISS, None, None), Err(KeyError::UnknownKid(k)) if k == old)
    );
    assert!(set.verify::<Value>(&after, ISS, None, None).is_ok());
    assert_eq!(set.algorithms(), vec![SigningAlg::ES256]);

    // Prune deletes exactly the retired key (both files).
    assert_eq!(prune(dir.path(), &clock).unwrap(), vec![old.clone()]);
    assert!(!dir.path().join(format!("{old}.pem")).exists());
    assert!(!dir.path().join(format!("{old}.json")).exists());
    let reopened = KeySet::open(dir.path(), clock.clone()).unwrap();
    assert_eq!(reopened.active_kid(SigningAlg::ES256), Some(r.kid));
}

#[test]
fn two_replicas_reading_one_directory_agree_at_every_moment() {
    let (dir, clock, a, _) = plain_dir();
    // A second plain key (ties on "no not_before": the greatest kid signs).
    KeySet::generate(dir.path(), SigningAlg::ES256).unwrap();
    let b = KeySet::open(dir.path(), clock.clone()).unwrap();
    a.reload(&[]).unwrap();
    assert_eq!(a.active_kid(SigningAlg::ES256), b.active_kid(SigningAlg::ES256));

    let first =
        rotate(dir.path(), SigningAlg::ES256, Duration::from_secs(60), Duration::from_secs(60), &clock)
            .unwrap();
    // A second rotation while the first is pending is accepted if it starts later.
    let second =
        rotate(dir.path(), SigningAlg::ES256, Duration::from_secs(120), Duration::from_secs(60), &clock)
            .unwrap();
    a.reload(&[]).unwrap();
    b.reload(&[]).unwrap();
    let c = KeySet::open(dir.path(), clock.clone()).unwrap();
    let mut seen = Vec::new();
    for _ in 0..20 {
        let kid = a.active_kid(SigningAlg::ES256);
        assert_eq!(kid, b.active_kid(SigningAlg::ES256));
        assert_eq!(kid, c.active_kid(SigningAlg::ES256));
        assert_eq!(a.jwks_json(), c.jwks_json());
        assert_eq!(kid_of(&es256_token(&a)), kid_of(&es256_token(&c)));
        if seen.last() != kid.as_ref() {
            seen.push(kid.clone().unwrap());
        }
        clock.advance(30);
    }
    // Old → first (at +60 s) → second (at +120 s).
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert_eq!(seen[1], first.kid);
    assert_eq!(seen[2], second.kid);
}

#[test]
fn rotation_refuses_to_undercut_a_pending_one_and_starts_an_empty_directory() {
    let dir = TempDir::new().unwrap();
    let clock = Clock::system();
    let first =
        rotate(dir.path(), SigningAlg::EdDSA, Duration::from_secs(3600), Duration::ZERO, &clock).unwrap();
    assert_eq!(first.not_before, None, "the first key of an algorithm signs at once");
    assert!(!dir.path().join(format!("{}.json", first.kid)).exists());
    rotate(dir.path(), SigningAlg::EdDSA, Duration::from_secs(3600), Duration::ZERO, &clock).unwrap();
    let err =
        rotate(dir.path(), SigningAlg::EdDSA, Duration::from_secs(60), Duration::ZERO, &clock).unwrap_err();
    assert!(matches!(err, KeyError::Rotation(_)), "{err}");
    // Nothing was written by the refused rotation.
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 4, "two keys, two schedules");
}

#[test]
fn reload_keeps_the_loaded_keys_when_the_directory_is_broken() {
    let (dir, _clock, set, old) = plain_dir();
    assert!(!set.reload(&[SigningAlg::ES256]).unwrap(), "nothing changed");
    let changes = set.changes();

    // A broken sidecar: refused, the old key keeps signing.
    let new = KeySet::generate(dir.path(), SigningAlg::ES256).unwrap();
    fs::write(dir.path().join(format!("{new}.json")), r#"{"not_befor": "2030-01-01T00:00:00Z"}"#).unwrap();
    let err = set.reload(&[SigningAlg::ES256]).unwrap_err();
    assert!(
        matches!(&err, KeyError::BadSchedule { path, .. } if path.ends_with(format!("{new}.json"))),
        "{err}"
    );
    assert_eq!(set.active_kid(SigningAlg::ES256), Some(old.clone()));
    assert!(!changes.has_changed().unwrap());

    // Removing every key of a required algorithm is refused too.
    fs::remove_dir_all(dir.path()).unwrap();
    fs::create_dir(dir.path()).unwrap();
    assert!(matches!(set.reload(&[SigningAlg::ES256]), Err(KeyError::NoKey(SigningAlg::ES256))));
    assert_eq!(set.active_kid(SigningAlg::ES256), Some(old));
    assert!(!changes.has_changed().unwrap());
    // Not required: accepted.
    assert!(set.reload(&[]).unwrap());
    assert!(set.is_empty());
    assert!(changes.has_changed().unwrap());
}

#[test]
fn bad_schedules_name_the_file() {
    for (text, expect) in [
        ("not json", "expected"),
        (r#"{"not_before": "tomorrow"}"#, "RFC 3339"),
        (r#"{"not_before": 1764720000}"#, "invalid type"),
        (r#"{"retire_after": "2030-01-01T00:00:00Z", "extra": 1}"#, "unknown field"),
        (r#"{"not_before": "2030-01-02T00:00:00Z", "retire_after": "2030-01-01T00:00:00Z"}"#, "never sign"),
    ] {
        let dir = TempDir::new().unwrap();
        let kid = KeySet::generate(dir.path(), SigningAlg::EdDSA).unwrap();
        fs::write(dir.path().join(format!("{kid}.json")), text).unwrap();
        let err = KeySet::load_dir(dir.path()).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, KeyError::BadSchedule { .. }), "{msg}");
        assert!(msg.contains(&format!("{kid}.json")) && msg.contains(expect), "{text}: {msg}");
    }
    // A schedule whose key is gone is ignored; one with times in the past is fine.
    let dir = TempDir::new().unwrap();
    fs::write(dir.path().join("gone.json"), "not json").unwrap();
    let kid = KeySet::generate(dir.path(), SigningAlg::EdDSA).unwrap();
    fs::write(
        dir.path().join(format!("{kid}.json")),
        r#"{"not_before": "2001-01-01T00:00:00Z", "retire_after": "2999-01-01T00:00:00+07:00"}"#,
    )
    .unwrap();
    let set = KeySet::load_dir(dir.path()).unwrap();
    assert_eq!(set.active_kid(SigningAlg::EdDSA), Some(kid));
}

#[test]
fn a_key_due_later_signs_if_nothing_else_can() {
    // Only a scheduled key (the operator copied the new key but not the old one): signing
    // early is better than not signing at all; both replicas do the same.
    let dir = TempDir::new().unwrap();
    let kid = KeySet::generate(dir.path(), SigningAlg::ES256).unwrap();
    fs::write(
        dir.path().join(format!("{kid}.json")),
        json!({"not_before": rfc3339(now() as i64 + 60)}).to_string(),
    )
    .unwrap();
    let set = KeySet::load_dir(dir.path()).unwrap();
    assert_eq!(set.active_kid(SigningAlg::ES256), Some(kid.clone()));
    let states: Vec<_> = set.status().into_iter().map(|s| s.state).collect();
    assert_eq!(states, vec![KeyState::Signing]);
}

#[tokio::test]
async fn a_running_set_picks_up_a_rotation_without_restart() {
    let (dir, clock, set, old) = plain_dir();
    let mut changes = set.changes();
    let watcher = tokio::spawn(set.clone().watch_dir(Duration::from_millis(20), vec![SigningAlg::ES256]));
    let r = rotate(dir.path(), SigningAlg::ES256, Duration::from_secs(60), Duration::from_secs(60), &clock)
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), changes.changed()).await.unwrap().unwrap();
    watcher.abort();
    assert_eq!(jwks_kids(&set), sorted(vec![old.clone(), r.kid.clone()]));
    assert_eq!(set.active_kid(SigningAlg::ES256), Some(old));
    clock.advance(60);
    assert_eq!(set.active_kid(SigningAlg::ES256), Some(r.kid));
}

mod properties {
    use proptest::prelude::*;

    use super::*;

    /// One key set for every case (generating RSA keys per case would dominate the run).
    fn keys() -> &'static (TempDir, KeySet) {
        static KEYS: std::sync::OnceLock<(TempDir, KeySet)> = std::sync::OnceLock::new();
        KEYS.get_or_init(|| dir_with(&SigningAlg::all()))
    }

    fn b64(bytes: &[u8]) -> String {
        B64.encode(bytes)
    }

    /// A JWS header an attacker might send: any `alg` (including `none` and HMAC), our kid or
    /// another, key-location headers that must never be followed.
    fn header() -> impl Strategy<Value = Value> {
        let jwks: Value = serde_json::from_slice(&keys().1.jwks_json()).unwrap();
        let kids: Vec<String> =
            jwks["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap().to_owned()).collect();
        (
            prop::sample::select(vec![
                "none", "None", "HS256", "HS512", "RS256", "ES256", "EdDSA", "PS256", "", "rs256",
            ]),
            prop_oneof![
                prop::sample::select(kids),
                any::<String>(),
                Just("../../../../dev/null".to_string())
            ],
            prop::option::of(prop::sample::select(vec![
                "JWT",
                "at+jwt",
                "logout+jwt",
                "application/at+jwt",
                "application/",
            ])),
            any::<bool>(),
        )
            .prop_map(|(alg, kid, typ, inject)| {
                let mut h = json!({ "alg": alg, "kid": kid });
                if let Some(t) = typ {
                    h["typ"] = json!(t);
                }
                if inject {
                    h["jku"] = json!("http://127.0.0.1:1/jwks");
                    h["x5u"] = json!("http://127.0.0.1:1/cert");
                    h["jwk"] = json!({ "kty": "oct", "k": "AAAA" });
                }
                h
            })
    }

    proptest! {
        #![proptest_config(crate::fuzzing::config(256))]

        #[test]
        fn arbitrary_text_never_verifies(token in any::<String>()) {
            let (_, set) = keys();
            prop_assert!(set.verify::<Value>(&token, ISS, None, None).is_err());
            prop_assert!(set.verify_ignoring_expiry::<Value>(&token, ISS).is_err());
        }

        #[test]
        fn a_token_we_did_not_sign_never_verifies(
            header in header(),
            exp_offset in -1000i64..100_000,
            signature in prop_oneof![
                prop::collection::vec(any::<u8>(), 0..600),
                Just(Vec::new()),
            ],
            hmac_with_our_public_key in any::<bool>(),
        ) {
            let (_, set) = keys();
            let input = format!("{}.{}", b64(header.to_string().as_bytes()), b64(claims(exp_offset).to_string().as_bytes()));
            let signature = if hmac_with_our_public_key {
                use hmac::Mac;
                let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&set.jwks_json()).unwrap();
                mac.update(input.as_bytes());
                mac.finalize().into_bytes().to_vec()
            } else {
                signature
            };
            let token = format!("{input}.{}", b64(&signature));
            prop_assert!(set.verify::<Value>(&token, ISS, None, None).is_err(), "{token}");
            prop_assert!(set.verify::<Value>(&token, ISS, Some("client-1"), Some("JWT")).is_err());
            prop_assert!(set.verify_ignoring_expiry::<Value>(&token, ISS).is_err());
        }

        #[test]
        fn a_changed_token_verifies_only_as_what_we_signed(
            alg in prop::sample::select(SigningAlg::all().to_vec()),
            at in any::<prop::sample::Index>(),
            to in any::<u8>(),
        ) {
            let (_, set) = keys();
            let original = claims(600);
            let token = set.sign(alg, "JWT", &original).unwrap();
            let mut bytes = token.into_bytes();
            let i = at.index(bytes.len());
            bytes[i] = to;
            let changed = String::from_utf8_lossy(&bytes).into_owned();
            if let Ok(claims) = set.verify::<Value>(&changed, ISS, None, None) {
                prop_assert_eq!(claims, original);
            }
        }
    }
}
