//! SSO sessions: one per person per browser, shared by all replicas through the state store.
//!
//! Owns: the session record, its cookie, idle (sliding) and absolute expiry, and the indexes
//! that let a session be found by its public `sid` or by account. Must not: know about OIDC
//! messages or upstream protocols.

use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, header};
use serde::{Deserialize, Serialize};

use crate::clock::Clock;
use crate::config::SessionSettings;
use crate::state::{StateStore, StoreError, hashed_key, random_handle};

/// What the gateway remembers about a logged-in person.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SsoSession {
    /// Public session id (the `sid` claim); not the cookie secret.
    pub sid: String,
    pub account_id: String,
    /// Upstream used for this login, and the identity and session it asserted.
    pub upstream: String,
    pub upstream_subject: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_sid: Option<String>,
    pub auth_time: i64,
    pub acr: String,
    pub amr: Vec<String>,
    pub created_at: i64,
    /// Anti-CSRF token for forms shown to this session's browser (self-service, logout).
    #[serde(default)]
    pub csrf: String,
}

/// Creates, finds and ends sessions.
#[derive(Clone, Debug)]
pub struct Sessions {
    store: StateStore,
    clock: Clock,
    cookie_name: String,
    secure: bool,
    idle: Duration,
    absolute: Duration,
}

impl Sessions {
    pub fn new(store: StateStore, clock: Clock, settings: &SessionSettings, https: bool) -> Self {
        let cookie_name =
            if https { format!("__Host-{}", settings.cookie_name) } else { settings.cookie_name.clone() };
        Sessions {
            store,
            clock,
            cookie_name,
            secure: https,
            idle: settings.idle_timeout,
            absolute: settings.absolute_timeout,
        }
    }

    pub fn cookie_name(&self) -> &str {
        &self.cookie_name
    }

    /// Starts a new session (always a new id) and returns it with its `Set-Cookie` value.
    pub async fn create(&self, mut session: SsoSession) -> Result<(SsoSession, HeaderValue), StoreError> {
        let secret = random_handle();
        session.sid = random_handle();
        session.csrf = random_handle();
        session.created_at = self.clock.now();
        let key = hashed_key("session", &secret);
        let ttl = self.idle.min(self.absolute);
        self.store.put_json(&key, &session, ttl).await?;
        self.store.put(&format!("sid:{}", session.sid), key.into_bytes(), self.absolute).await?;
        self.store
            .set_add(&format!("account-sessions:{}", session.account_id), &session.sid, self.absolute)
            .await?;
        // Indexes for upstream-initiated logout (by upstream session, else by upstream subject).
        if let Some(upstream_sid) = &session.upstream_sid {
            let key = hashed_key(&format!("upstream-session:{}", session.upstream), upstream_sid);
            self.store.set_add(&key, &session.sid, self.absolute).await?;
        }
        let key = hashed_key(&format!("upstream-subject:{}", session.upstream), &session.upstream_subject);
        self.store.set_add(&key, &session.sid, self.absolute).await?;
        Ok((session, self.cookie(&secret, self.absolute)))
    }

    /// The live session named by the request's cookie, with its idle timer reset.
    pub async fn current(&self, headers: &HeaderMap) -> Result<Option<SsoSession>, StoreError> {
        let Some(secret) = read_cookie(headers, &self.cookie_name) else { return Ok(None) };
        let key = hashed_key("session", &secret);
        let Some(session) = self.store.get_json::<SsoSession>(&key).await? else { return Ok(None) };
        let now = self.clock.now();
        let age = now.saturating_sub(session.created_at).max(0) as u64;
        if age >= self.absolute.as_secs() {
            self.end(&session).await?;
            return Ok(None);
        }
        let remaining = Duration::from_secs(self.absolute.as_secs() - age);
        self.store.touch(&key, self.idle.min(remaining)).await?;
        Ok(Some(session))
    }

    /// Remembers that `client_id` received tokens in this session (for logout).
    pub async fn record_client(&self, session: &SsoSession, client_id: &str) -> Result<(), StoreError> {
        self.store.set_add(&format!("session-clients:{}", session.sid), client_id, self.absolute).await
    }

    pub async fn clients(&self, sid: &str) -> Result<Vec<String>, StoreError> {
        self.store.set_members(&format!("session-clients:{sid}")).await
    }

    /// Whether the session with this public id is still alive.
    pub async fn is_alive(&self, sid: &str) -> Result<bool, StoreError> {
        let Some(key) = self.store.get(&format!("sid:{sid}")).await? else { return Ok(false) };
        let key = String::from_utf8_lossy(&key).into_owned();
        Ok(self.store.get(&key).await?.is_some())
    }

    /// The live session with this public id.
    pub async fn by_sid(&self, sid: &str) -> Result<Option<SsoSession>, StoreError> {
        let Some(key) = self.store.get(&format!("sid:{sid}")).await? else { return Ok(None) };
        self.store.get_json(&String::from_utf8_lossy(&key)).await
    }

    /// Live sessions created from one upstream session (`sid` of the upstream), or — when the
    /// upstream names only a subject — from any session of that upstream subject.
    pub async fn from_upstream(
        &self,
        upstream: &str,
        upstream_sid: Option<&str>,
        upstream_subject: Option<&str>,
    ) -> Result<Vec<SsoSession>, StoreError> {
        let index = match (upstream_sid, upstream_subject) {
            (Some(sid), _) => hashed_key(&format!("upstream-session:{upstream}"), sid),
            (None, Some(sub)) => hashed_key(&format!("upstream-subject:{upstream}"), sub),
            (None, None) => return Ok(Vec::new()),
        };
        let mut sessions = Vec::new();
        for sid in self.store.set_members(&index).await? {
            if let Some(s) = self.by_sid(&sid).await?
                && upstream_subject.is_none_or(|sub| s.upstream_subject == sub)
            {
                sessions.push(s);
            }
        }
        Ok(sessions)
    }

    /// Every live session of an account (oldest first); forgets ids of sessions that expired.
    pub async fn list_for_account(&self, account_id: &str) -> Result<Vec<SsoSession>, StoreError> {
        let index = format!("account-sessions:{account_id}");
        let mut sessions = Vec::new();
        for sid in self.store.set_members(&index).await? {
            match self.by_sid(&sid).await? {
                Some(s) => sessions.push(s),
                None => self.store.set_remove(&index, &sid).await?,
            }
        }
        sessions.sort_by_key(|s| s.created_at);
        Ok(sessions)
    }

    /// Ends a session everywhere.
    pub async fn end(&self, session: &SsoSession) -> Result<(), StoreError> {
        if let Some(key) = self.store.take(&format!("sid:{}", session.sid)).await? {
            self.store.delete(&String::from_utf8_lossy(&key)).await?;
        }
        self.store.set_remove(&format!("account-sessions:{}", session.account_id), &session.sid).await?;
        self.store.delete(&format!("session-clients:{}", session.sid)).await
    }

    /// A `Set-Cookie` value that deletes the session cookie.
    pub fn clear_cookie(&self) -> HeaderValue {
        self.cookie("", Duration::ZERO)
    }

    fn cookie(&self, value: &str, max_age: Duration) -> HeaderValue {
        let mut c = cookie::Cookie::build((self.cookie_name.clone(), value.to_string()))
            .path("/")
            .http_only(true)
            .same_site(cookie::SameSite::Lax)
            .secure(self.secure)
            .max_age(cookie::time::Duration::seconds(max_age.as_secs() as i64))
            .build();
        if max_age.is_zero() {
            c.make_removal();
        }
        HeaderValue::from_str(&c.to_string()).unwrap_or_else(|_| HeaderValue::from_static(""))
    }
}

/// Reads a cookie by name from the request headers.
pub fn read_cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| cookie::Cookie::split_parse(v.to_string()))
        .filter_map(Result::ok)
        .find(|c| c.name() == name && !c.value().is_empty())
        .map(|c| c.value().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sessions(https: bool) -> Sessions {
        let settings = SessionSettings::default();
        Sessions::new(StateStore::memory(), Clock::system(), &settings, https)
    }

    fn sample() -> SsoSession {
        SsoSession {
            sid: String::new(),
            account_id: "acc".into(),
            upstream: "hcm".into(),
            upstream_subject: "u1".into(),
            upstream_sid: None,
            auth_time: 0,
            acr: "1".into(),
            amr: vec!["pwd".into()],
            created_at: 0,
            csrf: String::new(),
        }
    }

    fn headers_with(set_cookie: &HeaderValue) -> HeaderMap {
        let pair = set_cookie.to_str().unwrap().split(';').next().unwrap().to_string();
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_str(&pair).unwrap());
        h
    }

    #[tokio::test]
    async fn a_created_session_is_found_by_its_cookie_and_ends() {
        let s = sessions(false);
        let (created, cookie) = s.create(sample()).await.unwrap();
        let text = cookie.to_str().unwrap();
        assert!(text.contains("HttpOnly") && text.contains("SameSite=Lax") && !text.contains("Secure"));
        let found = s.current(&headers_with(&cookie)).await.unwrap().unwrap();
        assert_eq!(found, created);
        assert!(s.is_alive(&created.sid).await.unwrap());
        s.end(&found).await.unwrap();
        assert!(s.current(&headers_with(&cookie)).await.unwrap().is_none());
        assert!(!s.is_alive(&created.sid).await.unwrap());
    }

    #[tokio::test]
    async fn sessions_are_listed_per_account_and_ended_ones_disappear() {
        let s = sessions(false);
        let (a, _) = s.create(sample()).await.unwrap();
        let (b, _) = s.create(sample()).await.unwrap();
        let listed: Vec<String> =
            s.list_for_account("acc").await.unwrap().into_iter().map(|x| x.sid).collect();
        assert_eq!(listed.len(), 2);
        assert!(listed.contains(&a.sid) && listed.contains(&b.sid));
        s.end(&a).await.unwrap();
        let listed = s.list_for_account("acc").await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].sid, b.sid);
        assert!(s.list_for_account("other").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn every_login_gets_a_new_session_id() {
        let s = sessions(false);
        let (a, ca) = s.create(sample()).await.unwrap();
        let (b, cb) = s.create(sample()).await.unwrap();
        assert_ne!(a.sid, b.sid);
        assert_ne!(ca, cb);
    }

    #[tokio::test]
    async fn https_cookies_are_host_prefixed_and_secure() {
        let s = sessions(true);
        let (_, cookie) = s.create(sample()).await.unwrap();
        let text = cookie.to_str().unwrap();
        assert!(text.starts_with("__Host-sso_session="), "{text}");
        assert!(text.contains("Secure") && text.contains("Path=/"));
    }

    #[tokio::test]
    async fn sessions_past_their_absolute_lifetime_are_gone() {
        let s = sessions(false);
        let (_, cookie) = s.create(sample()).await.unwrap();
        s.clock.advance(13 * 3600);
        assert!(s.current(&headers_with(&cookie)).await.unwrap().is_none());
    }
}
