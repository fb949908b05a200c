//! Our own JWT access tokens, checked once: signature, issuer, `typ` and expiry are verified
//! the first time a token is presented at `/introspect` or `/userinfo`, and the result is
//! remembered for that exact token (by its SHA-256) until it expires. A resource server that
//! introspects the same token on every API call then costs a hash lookup, not a signature
//! verification.
//!
//! Owns: the verification of access tokens and the bounded cache of verified ones. Must not:
//! cache anything that can change during a token's life — revocation (of the token or of its
//! grant) is checked by the caller on every request.

use std::sync::Arc;
use std::time::Duration;

use sha2::Digest;

use super::minting::AccessClaims;
use crate::keys::{KeySet, LEEWAY_SECS};

/// The longest a verified token is kept (its expiry comes first when sooner).
const MAX_KEEP: Duration = Duration::from_secs(15 * 60);

/// Tokens verified recently, by SHA-256 of the whole compact token.
#[derive(Clone)]
pub struct VerifiedTokens {
    cache: moka::sync::Cache<[u8; 32], Arc<AccessClaims>>,
}

impl std::fmt::Debug for VerifiedTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifiedTokens").field("entries", &self.cache.entry_count()).finish()
    }
}

impl VerifiedTokens {
    /// Keeps at most `capacity` tokens (about 0.5 KB each).
    pub fn new(capacity: u64) -> Self {
        VerifiedTokens {
            cache: moka::sync::Cache::builder().max_capacity(capacity).time_to_live(MAX_KEEP).build(),
        }
    }

    /// The claims of `token` if it is one of our unexpired access tokens (`typ` `at+jwt`,
    /// signed by one of `keys`, issued by `issuer`). `now` is the gateway's clock.
    pub fn check(&self, keys: &KeySet, issuer: &str, token: &str, now: i64) -> Option<Arc<AccessClaims>> {
        if token.len() > 8192 || token.split('.').count() != 3 {
            return None;
        }
        let digest: [u8; 32] = sha2::Sha256::digest(token.as_bytes()).into();
        if let Some(claims) = self.cache.get(&digest) {
            // Same bytes, same signature: only the time can have changed. The leeway is the
            // one `KeySet::verify` allows.
            let live = now < claims.exp.saturating_add(LEEWAY_SECS as i64) && claims.iss == issuer;
            return live.then_some(claims);
        }
        let claims: AccessClaims = keys.verify(token, issuer, None, Some("at+jwt")).ok()?;
        let claims = Arc::new(claims);
        self.cache.insert(digest, claims.clone());
        Some(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SigningAlg;
    use crate::provider::minting::Audience;

    fn claims(exp: i64) -> AccessClaims {
        AccessClaims {
            iss: "https://sso.example".into(),
            sub: "s".into(),
            aud: Audience::One("https://sso.example".into()),
            exp,
            iat: exp - 300,
            jti: "j".into(),
            client_id: "c".into(),
            scope: "openid".into(),
            auth_time: None,
            acr: None,
            sid: None,
            gid: None,
            cnf: None,
        }
    }

    fn keys() -> (tempfile::TempDir, KeySet) {
        let dir = tempfile::tempdir().unwrap();
        let keys = KeySet::load_or_generate(dir.path(), &[SigningAlg::ES256]).unwrap();
        (dir, keys)
    }

    #[test]
    fn a_remembered_token_still_expires_on_time() {
        let (_dir, keys) = keys();
        let now = crate::clock::Clock::system().now();
        let token = keys.sign(SigningAlg::ES256, "at+jwt", &claims(now + 60)).unwrap();
        let verified = VerifiedTokens::new(10);
        assert!(verified.check(&keys, "https://sso.example", &token, now).is_some());
        // Now from the cache: accepted within the leeway, refused after it.
        assert!(
            verified.check(&keys, "https://sso.example", &token, now + 60 + LEEWAY_SECS as i64 - 1).is_some()
        );
        assert!(
            verified.check(&keys, "https://sso.example", &token, now + 60 + LEEWAY_SECS as i64).is_none()
        );
    }

    #[test]
    fn forged_wrong_issuer_and_wrong_type_tokens_are_refused_every_time() {
        let (_dir, keys) = keys();
        let (_other_dir, other_keys) = self::keys();
        let now = crate::clock::Clock::system().now();
        let verified = VerifiedTokens::new(10);
        let good = keys.sign(SigningAlg::ES256, "at+jwt", &claims(now + 60)).unwrap();
        let id_token_typ = keys.sign(SigningAlg::ES256, "JWT", &claims(now + 60)).unwrap();
        let foreign = other_keys.sign(SigningAlg::ES256, "at+jwt", &claims(now + 60)).unwrap();
        let (head, _) = good.rsplit_once('.').unwrap();
        let tampered = format!("{head}.{}", foreign.rsplit_once('.').unwrap().1);
        for _ in 0..2 {
            assert!(verified.check(&keys, "https://sso.example", &id_token_typ, now).is_none());
            assert!(verified.check(&keys, "https://sso.example", &foreign, now).is_none());
            assert!(verified.check(&keys, "https://sso.example", &tampered, now).is_none());
            assert!(verified.check(&keys, "https://other.example", &good, now).is_none());
            assert!(verified.check(&keys, "https://sso.example", "a.b", now).is_none());
        }
        assert!(verified.check(&keys, "https://sso.example", &good, now).is_some());
    }
}
