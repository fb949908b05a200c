//! The console's own session: short, separate from the SSO session's cookie (and so from
//! `/account`'s), minted from a live SSO session of a person allowed to administer. It
//! remembers which SSO session it came from (it ends when that one does), the login's `acr`,
//! and its own anti-forgery token, which every write must send back.
//!
//! Owns: the console cookie and its record in the state store. Must not: decide who may
//! administer (that is [`crate::admin::auth::may_administer`]) or start logins.

use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::state::{StateStore, StoreError, hashed_key, random_handle};

/// The console cookie's name (with `__Host-` under https).
pub const COOKIE: &str = "sso_admin";

/// How long a console session lasts without use.
pub const IDLE: Duration = Duration::from_secs(15 * 60);

/// How long a console session lasts at most, however busy.
pub const ABSOLUTE: Duration = Duration::from_secs(60 * 60);

/// A console session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsoleSession {
    /// The SSO session it was made from.
    pub sid: String,
    /// The operator's account.
    pub account_id: String,
    /// The assurance of the login behind it.
    pub acr: String,
    /// Anti-forgery token of the console's forms.
    pub csrf: String,
    pub created_at: i64,
}

impl ConsoleSession {
    /// Who the audit log names.
    pub fn actor(&self) -> String {
        format!("account:{}", self.account_id)
    }

    /// Whether `token` is this session's anti-forgery token (constant time).
    pub fn csrf_matches(&self, token: &str) -> bool {
        !token.is_empty() && bool::from(token.as_bytes().ct_eq(self.csrf.as_bytes()))
    }

    /// Whether it is still within its absolute lifetime at `now`.
    pub fn within_lifetime(&self, now: i64) -> bool {
        now.saturating_sub(self.created_at) < ABSOLUTE.as_secs() as i64
    }
}

fn key(secret: &str) -> String {
    hashed_key("admin-console", secret)
}

/// The cookie's name for an issuer (https: `__Host-`).
pub fn cookie_name(https: bool) -> String {
    if https { format!("__Host-{COOKIE}") } else { COOKIE.to_string() }
}

/// Starts a console session; returns its `Set-Cookie` value.
pub async fn start(
    store: &StateStore,
    sid: &str,
    account_id: &str,
    acr: &str,
    now: i64,
    https: bool,
) -> Result<HeaderValue, StoreError> {
    let secret = random_handle();
    let session = ConsoleSession {
        sid: sid.to_string(),
        account_id: account_id.to_string(),
        acr: acr.to_string(),
        csrf: random_handle(),
        created_at: now,
    };
    store.put_json(&key(&secret), &session, IDLE).await?;
    Ok(cookie(https, &secret, IDLE))
}

/// The console session the request's cookie names (its idle timer reset), if any is live.
pub async fn current(
    store: &StateStore,
    headers: &HeaderMap,
    now: i64,
    https: bool,
) -> Result<Option<ConsoleSession>, StoreError> {
    let Some(secret) = crate::session::read_cookie(headers, &cookie_name(https)) else { return Ok(None) };
    let k = key(&secret);
    let Some(session) = store.get_json::<ConsoleSession>(&k).await? else { return Ok(None) };
    if !session.within_lifetime(now) {
        store.delete(&k).await?;
        return Ok(None);
    }
    store.touch(&k, IDLE).await?;
    Ok(Some(session))
}

/// Ends the console session the request's cookie names; returns the `Set-Cookie` that
/// deletes the cookie.
pub async fn end(store: &StateStore, headers: &HeaderMap, https: bool) -> Result<HeaderValue, StoreError> {
    if let Some(secret) = crate::session::read_cookie(headers, &cookie_name(https)) {
        store.delete(&key(&secret)).await?;
    }
    Ok(cookie(https, "", Duration::ZERO))
}

/// The console cookie: only for the console's paths over plain http; host-only and secure
/// (`__Host-`, path `/`) under https; not sent with other sites' POSTs (`SameSite=Lax`). Not
/// `Strict`: a login comes back through a redirect chain started at the upstream's site, in
/// which a browser would not send a `Strict` cookie to the console page it ends on.
fn cookie(https: bool, value: &str, max_age: Duration) -> HeaderValue {
    let mut c = cookie::Cookie::build((cookie_name(https), value.to_string()))
        .path(if https { "/" } else { super::PATH })
        .http_only(true)
        .same_site(cookie::SameSite::Lax)
        .secure(https)
        .max_age(cookie::time::Duration::seconds(max_age.as_secs() as i64))
        .build();
    if max_age.is_zero() {
        c.make_removal();
    }
    HeaderValue::from_str(&c.to_string()).unwrap_or_else(|_| HeaderValue::from_static(""))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use axum::http::header;

    fn request_with(set_cookie: &HeaderValue) -> HeaderMap {
        let pair = set_cookie.to_str().unwrap().split(';').next().unwrap().to_string();
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_str(&pair).unwrap());
        h
    }

    #[tokio::test]
    async fn a_started_session_is_found_by_its_cookie_and_ends() {
        let store = StateStore::memory();
        let set = start(&store, "sid-1", "acc-1", "urn:a", 100, false).await.unwrap();
        let text = set.to_str().unwrap();
        assert!(text.starts_with("sso_admin=") && text.contains("HttpOnly") && text.contains("SameSite=Lax"));
        assert!(text.contains("Path=/admin"), "{text}");
        let found = current(&store, &request_with(&set), 200, false).await.unwrap().unwrap();
        assert_eq!(
            (found.sid.as_str(), found.account_id.as_str(), found.acr.as_str()),
            ("sid-1", "acc-1", "urn:a")
        );
        assert_eq!(found.actor(), "account:acc-1");
        assert!(
            found.csrf_matches(&found.csrf.clone()) && !found.csrf_matches("") && !found.csrf_matches("x")
        );
        end(&store, &request_with(&set), false).await.unwrap();
        assert!(current(&store, &request_with(&set), 200, false).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn the_sso_cookie_or_a_guessed_value_is_not_a_console_session() {
        let store = StateStore::memory();
        start(&store, "sid-1", "acc-1", "urn:a", 100, false).await.unwrap();
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_static("sso_session=sid-1.secret; sso_admin=guess"));
        assert!(current(&store, &h, 200, false).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_session_ends_at_its_absolute_lifetime_however_busy() {
        let store = StateStore::memory();
        let set = start(&store, "sid-1", "acc-1", "urn:a", 100, false).await.unwrap();
        let late = 100 + ABSOLUTE.as_secs() as i64;
        assert!(current(&store, &request_with(&set), late - 1, false).await.unwrap().is_some());
        assert!(current(&store, &request_with(&set), late, false).await.unwrap().is_none());
    }

    #[test]
    fn under_https_the_cookie_is_host_prefixed_and_secure() {
        let text = cookie(true, "v", IDLE).to_str().unwrap().to_string();
        assert!(
            text.starts_with("__Host-sso_admin=v")
                && text.contains("Secure")
                && text.contains("Path=/")
                && !text.contains("Path=/admin"),
            "{text}"
        );
    }
}
