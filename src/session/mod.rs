//! SSO sessions: one per person per browser, shared by all replicas through the state store.
//!
//! Owns: the session record, its cookie, idle (sliding) and absolute expiry, what a session
//! collected (the clients that got tokens in it, the grants issued in it), and the indexes
//! that let a session be found by account or by upstream session. Must not: know about OIDC
//! messages or upstream protocols.
//!
//! Layout, kept small because Redis stores small hashes compactly (listpack) and charges
//! every key: `session:<sid>` is one hash holding the record (one short field per value), the
//! SHA-256 of the cookie secret, a `c:<client_id>` field per client and a `g:<grant_id>` field
//! per grant; its time to live slides with use (idle timeout) but never past the absolute
//! lifetime. `account-sids:<account_id>` and `upstream-session:<upstream>:<hash>` are
//! hashes whose field names are sids, living for the absolute lifetime. The cookie carries
//! `<sid>.<secret>`: the sid is public (the `sid` claim), the secret is random on its own and
//! only its digest is stored.

use std::collections::HashMap;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, header};
use base64::Engine;
use sha2::Digest;
use subtle::ConstantTimeEq;

use crate::clock::Clock;
use crate::config::SessionSettings;
use crate::ids::UpstreamId;
use crate::state::{StateStore, StoreError, random_handle, random_token};

/// What the gateway remembers about a logged-in person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SsoSession {
    /// Public session id (the `sid` claim); not the cookie secret.
    pub sid: String,
    pub account_id: String,
    /// Upstream used for this login, and the identity and session it asserted.
    pub upstream: String,
    pub upstream_subject: String,
    pub upstream_sid: Option<String>,
    pub auth_time: i64,
    pub acr: String,
    pub amr: Vec<String>,
    pub created_at: i64,
    /// Anti-CSRF token for forms shown to this session's browser (self-service, logout).
    pub csrf: String,
}

/// What a session had collected when it ended.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Collected {
    /// Clients that received tokens in the session.
    pub clients: Vec<String>,
    /// Grants (token families) issued in the session that end with it, with the end of each
    /// family (None for grants recorded before family ends were).
    pub grants: Vec<(String, Option<i64>)>,
}

/// Whether a session created at `created_at` is within its absolute lifetime at `now`.
pub fn within_absolute_lifetime(created_at: i64, now: i64, absolute: Duration) -> bool {
    now.saturating_sub(created_at) < absolute.as_secs() as i64
}

// Field names in the session hash. Short on purpose: they are stored once per session.
const F_SECRET: &str = "k";
const F_ACCOUNT: &str = "a";
const F_UPSTREAM: &str = "u";
const F_SUBJECT: &str = "s";
const F_UPSTREAM_SID: &str = "us";
const F_AUTH_TIME: &str = "at";
const F_ACR: &str = "acr";
const F_AMR: &str = "amr";
const F_CREATED: &str = "ct";
const F_CSRF: &str = "x";
/// Every field of the record (what `current` and `by_sid` read, however many clients and
/// grants the session collected).
const RECORD_FIELDS: [&str; 10] = [
    F_SECRET,
    F_ACCOUNT,
    F_UPSTREAM,
    F_SUBJECT,
    F_UPSTREAM_SID,
    F_AUTH_TIME,
    F_ACR,
    F_AMR,
    F_CREATED,
    F_CSRF,
];
const CLIENT_PREFIX: &str = "c:";
const GRANT_PREFIX: &str = "g:";

fn session_key(sid: &str) -> String {
    format!("session:{sid}")
}

/// Not the older layout's `account-sessions:` name: that was a set, and a hash command on a
/// set left over from before an upgrade would fail.
fn account_key(account_id: &str) -> String {
    format!("account-sids:{account_id}")
}

/// Names the index by a 128-bit digest of the upstream's session id (not the id itself:
/// CAS tickets are credentials until validated). A collision could only add sessions to a
/// lookup, and lookups keep only sessions whose record names this upstream session.
fn upstream_session_key(upstream: &str, upstream_sid: &str) -> String {
    let digest = sha2::Sha256::digest(upstream_sid.as_bytes());
    format!("upstream-session:{upstream}:{}", base64url(&digest[..16]))
}

fn base64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A fresh 128-bit random id, base64url (22 characters): unguessable, and shorter than a
/// secret handle because it is stored several times per session (the sid) or need not be
/// longer (the CSRF token).
fn random_id() -> String {
    random_token::<16>()
}

fn secret_digest(secret: &str) -> [u8; 32] {
    sha2::Sha256::digest(secret.as_bytes()).into()
}

/// The record's fields as stored (everything but the sid, which names the hash).
fn encode(session: &SsoSession) -> Result<Vec<(&'static str, Vec<u8>)>, StoreError> {
    let mut fields = vec![
        (F_ACCOUNT, session.account_id.as_bytes().to_vec()),
        (F_UPSTREAM, session.upstream.as_bytes().to_vec()),
        (F_SUBJECT, session.upstream_subject.as_bytes().to_vec()),
        (F_AUTH_TIME, session.auth_time.to_string().into_bytes()),
        (F_ACR, session.acr.as_bytes().to_vec()),
        (F_AMR, serde_json::to_vec(&session.amr)?),
        (F_CREATED, session.created_at.to_string().into_bytes()),
        (F_CSRF, session.csrf.as_bytes().to_vec()),
    ];
    if let Some(upstream_sid) = &session.upstream_sid {
        fields.push((F_UPSTREAM_SID, upstream_sid.as_bytes().to_vec()));
    }
    Ok(fields)
}

fn decode(sid: &str, fields: &HashMap<String, Vec<u8>>) -> Result<SsoSession, StoreError> {
    let text = |name: &str| -> Result<String, StoreError> {
        let bytes = fields
            .get(name)
            .ok_or_else(|| StoreError::Malformed(format!("session {sid} has no field {name}")))?;
        String::from_utf8(bytes.clone())
            .map_err(|_| StoreError::Malformed(format!("session {sid}: field {name} is not UTF-8")))
    };
    let number = |name: &str| -> Result<i64, StoreError> {
        text(name)?
            .parse()
            .map_err(|_| StoreError::Malformed(format!("session {sid}: field {name} is not a number")))
    };
    Ok(SsoSession {
        sid: sid.to_string(),
        account_id: text(F_ACCOUNT)?,
        upstream: text(F_UPSTREAM)?,
        upstream_subject: text(F_SUBJECT)?,
        upstream_sid: if fields.contains_key(F_UPSTREAM_SID) { Some(text(F_UPSTREAM_SID)?) } else { None },
        auth_time: number(F_AUTH_TIME)?,
        acr: text(F_ACR)?,
        amr: serde_json::from_str(&text(F_AMR)?)?,
        created_at: number(F_CREATED)?,
        csrf: text(F_CSRF)?,
    })
}

/// Splits a cookie value `<sid>.<secret>`; both are base64url handles.
fn split_cookie(value: &str) -> Option<(&str, &str)> {
    let (sid, secret) = value.split_once('.')?;
    let handle = |s: &str| {
        (16..=128).contains(&s.len())
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    (handle(sid) && handle(secret)).then_some((sid, secret))
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
        session.sid = random_id();
        session.csrf = random_id();
        session.created_at = self.clock.now();
        let digest = secret_digest(&secret);
        let record = encode(&session)?;
        let mut fields: Vec<(&str, &[u8])> = record.iter().map(|(f, v)| (*f, v.as_slice())).collect();
        fields.push((F_SECRET, &digest));
        self.store.hash_set(&session_key(&session.sid), &fields, self.idle.min(self.absolute)).await?;
        let member = [(session.sid.as_str(), &b""[..])];
        self.store.hash_set(&account_key(&session.account_id), &member, self.absolute).await?;
        // Index for upstream-initiated logout by upstream session (CAS tickets, OIDC `sid`).
        if let Some(upstream_sid) = &session.upstream_sid {
            let key = upstream_session_key(&session.upstream, upstream_sid);
            self.store.hash_set(&key, &member, self.absolute).await?;
        }
        let cookie = self.cookie(&format!("{}.{secret}", session.sid), self.absolute);
        Ok((session, cookie))
    }

    /// The live session named by the request's cookie, with its idle timer reset.
    pub async fn current(&self, headers: &HeaderMap) -> Result<Option<SsoSession>, StoreError> {
        let Some(cookie) = read_cookie(headers, &self.cookie_name) else { return Ok(None) };
        let Some((sid, secret)) = split_cookie(&cookie) else { return Ok(None) };
        let key = session_key(sid);
        let fields = self.store.hash_get(&key, &RECORD_FIELDS).await?;
        let Some(stored) = fields.get(F_SECRET) else { return Ok(None) };
        if !bool::from(secret_digest(secret).as_slice().ct_eq(stored.as_slice())) {
            return Ok(None);
        }
        let session = decode(sid, &fields)?;
        let now = self.clock.now();
        let age = now.saturating_sub(session.created_at).max(0) as u64;
        if !within_absolute_lifetime(session.created_at, now, self.absolute) {
            self.end(&session).await?;
            return Ok(None);
        }
        let remaining = Duration::from_secs(self.absolute.as_secs() - age);
        self.store.touch(&key, self.idle.min(remaining)).await?;
        Ok(Some(session))
    }

    /// Remembers that `client_id` received tokens in this session (for logout). Nothing is
    /// recorded for a session that has just ended.
    pub async fn record_client(&self, session: &SsoSession, client_id: &str) -> Result<(), StoreError> {
        let field = format!("{CLIENT_PREFIX}{client_id}");
        self.store.hash_set_existing(&session_key(&session.sid), &field, b"").await.map(|_| ())
    }

    /// Remembers a grant that must be revoked when the session ends, and when its family
    /// ends (how long that revocation must last); false (and nothing recorded) if the session
    /// is no longer alive.
    pub async fn record_grant(&self, sid: &str, grant_id: &str, family_end: i64) -> Result<bool, StoreError> {
        let field = format!("{GRANT_PREFIX}{grant_id}");
        self.store.hash_set_existing(&session_key(sid), &field, family_end.to_string().as_bytes()).await
    }

    /// Clients that received tokens in the session.
    pub async fn clients(&self, sid: &str) -> Result<Vec<String>, StoreError> {
        let fields = self.store.hash_keys(&session_key(sid)).await?;
        Ok(fields.into_iter().filter_map(|f| f.strip_prefix(CLIENT_PREFIX).map(str::to_string)).collect())
    }

    /// Whether the session with this public id is still alive: in the store (not ended, not
    /// idled out) and within its absolute lifetime (checked here too, not only by the store's
    /// time to live). Does not count as use (the idle timer is the browser's).
    pub async fn is_alive(&self, sid: &str) -> Result<bool, StoreError> {
        let fields = self.store.hash_get(&session_key(sid), &[F_SECRET, F_CREATED]).await?;
        if !fields.contains_key(F_SECRET) {
            return Ok(false);
        }
        let created = fields.get(F_CREATED).and_then(|v| std::str::from_utf8(v).ok()?.parse::<i64>().ok());
        Ok(created.is_some_and(|c| within_absolute_lifetime(c, self.clock.now(), self.absolute)))
    }

    /// The live session with this public id.
    pub async fn by_sid(&self, sid: &str) -> Result<Option<SsoSession>, StoreError> {
        let fields = self.store.hash_get(&session_key(sid), &RECORD_FIELDS).await?;
        if !fields.contains_key(F_SECRET) {
            return Ok(None);
        }
        decode(sid, &fields).map(Some)
    }

    /// Live sessions created from one upstream session (`sid` of the upstream), optionally
    /// only those of one upstream subject.
    pub async fn from_upstream_session(
        &self,
        upstream: &UpstreamId,
        upstream_sid: &str,
        upstream_subject: Option<&str>,
    ) -> Result<Vec<SsoSession>, StoreError> {
        let index = upstream_session_key(upstream.as_str(), upstream_sid);
        let mut sessions = Vec::new();
        for sid in self.store.hash_keys(&index).await? {
            match self.by_sid(&sid).await? {
                Some(s)
                    if s.upstream == *upstream
                        && s.upstream_sid.as_deref() == Some(upstream_sid)
                        && upstream_subject.is_none_or(|sub| s.upstream_subject == sub) =>
                {
                    sessions.push(s)
                }
                Some(_) => {}
                None => self.store.hash_remove(&index, &sid).await?,
            }
        }
        Ok(sessions)
    }

    /// Live sessions of an account that were made by logging in at `upstream` as
    /// `upstream_subject` (upstream logout that names only the subject).
    pub async fn from_upstream_subject(
        &self,
        account_id: &str,
        upstream: &UpstreamId,
        upstream_subject: &str,
    ) -> Result<Vec<SsoSession>, StoreError> {
        let mut sessions = self.list_for_account(account_id).await?;
        sessions.retain(|s| s.upstream == *upstream && s.upstream_subject == upstream_subject);
        Ok(sessions)
    }

    /// Every live session of an account (oldest first); forgets ids of sessions that expired.
    pub async fn list_for_account(&self, account_id: &str) -> Result<Vec<SsoSession>, StoreError> {
        let index = account_key(account_id);
        let mut sessions = Vec::new();
        for sid in self.store.hash_keys(&index).await? {
            match self.by_sid(&sid).await? {
                Some(s) => sessions.push(s),
                None => self.store.hash_remove(&index, &sid).await?,
            }
        }
        sessions.sort_by_key(|s| s.created_at);
        Ok(sessions)
    }

    /// Ends a session everywhere and returns what it had collected (once: a concurrent end
    /// of the same session gets nothing).
    pub async fn end(&self, session: &SsoSession) -> Result<Collected, StoreError> {
        let fields = self.store.hash_take(&session_key(&session.sid)).await?;
        self.store.hash_remove(&account_key(&session.account_id), &session.sid).await?;
        if let Some(upstream_sid) = &session.upstream_sid {
            self.store
                .hash_remove(&upstream_session_key(&session.upstream, upstream_sid), &session.sid)
                .await?;
        }
        let mut collected = Collected::default();
        for (field, value) in fields {
            if let Some(client) = field.strip_prefix(CLIENT_PREFIX) {
                collected.clients.push(client.to_string());
            } else if let Some(grant) = field.strip_prefix(GRANT_PREFIX) {
                let end = std::str::from_utf8(&value).ok().and_then(|v| v.parse().ok());
                collected.grants.push((grant.to_string(), end));
            }
        }
        Ok(collected)
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
impl SsoSession {
    /// A session for unit tests of decisions: `sid` of account `account_id`, logged in through
    /// `hcm` with a password at `auth_time` at assurance `acr`; anti-forgery token `csrf-token`.
    pub(crate) fn example(sid: &str, account_id: &str, auth_time: i64, acr: &str) -> SsoSession {
        SsoSession {
            sid: sid.into(),
            account_id: account_id.into(),
            upstream: "hcm".into(),
            upstream_subject: "u1".into(),
            upstream_sid: None,
            auth_time,
            acr: acr.into(),
            amr: vec!["pwd".into()],
            created_at: auth_time,
            csrf: "csrf-token".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(id: &str) -> UpstreamId {
        UpstreamId::parse(id).unwrap()
    }

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

    fn cookie_value(set_cookie: &HeaderValue) -> String {
        let pair = set_cookie.to_str().unwrap().split(';').next().unwrap();
        pair.split_once('=').unwrap().1.to_string()
    }

    fn cookie_header(name: &str, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_str(&format!("{name}={value}")).unwrap());
        h
    }

    #[tokio::test]
    async fn the_cookie_secret_is_not_the_sid_and_is_not_stored() {
        let s = sessions(false);
        let (created, cookie) = s.create(sample()).await.unwrap();
        let value = cookie_value(&cookie);
        let (sid, secret) = value.split_once('.').unwrap();
        assert_eq!(sid, created.sid);
        assert_ne!(secret, sid);
        assert_eq!(secret.len(), 43, "256 random bits");
        assert_eq!(sid.len(), 22, "128 random bits");
        let stored = s.store.hash_take(&session_key(sid)).await.unwrap();
        assert!(!stored.is_empty());
        for (field, v) in &stored {
            assert!(!field.contains(secret));
            assert!(!String::from_utf8_lossy(v).contains(secret), "field {field} holds the secret");
        }
    }

    #[tokio::test]
    async fn a_known_sid_with_a_wrong_secret_finds_no_session() {
        let s = sessions(false);
        let (created, cookie) = s.create(sample()).await.unwrap();
        let forged = format!("{}.{}", created.sid, random_handle());
        assert!(s.current(&cookie_header("sso_session", &forged)).await.unwrap().is_none());
        let truncated = cookie_value(&cookie);
        let truncated = &truncated[..truncated.len() - 1];
        assert!(s.current(&cookie_header("sso_session", truncated)).await.unwrap().is_none());
        assert!(s.current(&cookie_header("sso_session", &created.sid)).await.unwrap().is_none(), "sid alone");
        assert!(s.current(&headers_with(&cookie)).await.unwrap().is_some(), "the real cookie still works");
    }

    #[tokio::test]
    async fn clients_and_grants_of_a_session_are_handed_over_once_when_it_ends() {
        let s = sessions(false);
        let (created, _) = s.create(sample()).await.unwrap();
        s.record_client(&created, "portal").await.unwrap();
        s.record_client(&created, "portal").await.unwrap();
        s.record_client(&created, "tax").await.unwrap();
        assert!(s.record_grant(&created.sid, "g1", 1_700_000_000).await.unwrap());
        let mut clients = s.clients(&created.sid).await.unwrap();
        clients.sort();
        assert_eq!(clients, ["portal", "tax"]);
        let mut collected = s.end(&created).await.unwrap();
        collected.clients.sort();
        assert_eq!(
            collected,
            Collected {
                clients: vec!["portal".into(), "tax".into()],
                grants: vec![("g1".into(), Some(1_700_000_000))]
            }
        );
        assert_eq!(s.end(&created).await.unwrap(), Collected::default(), "a second end gets nothing");
    }

    #[tokio::test]
    async fn nothing_is_recorded_in_a_session_that_ended() {
        let s = sessions(false);
        let (created, _) = s.create(sample()).await.unwrap();
        s.end(&created).await.unwrap();
        assert!(!s.record_grant(&created.sid, "g1", 1_700_000_000).await.unwrap());
        s.record_client(&created, "portal").await.unwrap();
        assert!(!s.is_alive(&created.sid).await.unwrap(), "recording did not revive the session");
        assert!(s.clients(&created.sid).await.unwrap().is_empty());
        assert!(s.by_sid(&created.sid).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn sessions_are_found_by_upstream_session_and_by_upstream_subject() {
        let s = sessions(false);
        let mut with_sid = sample();
        with_sid.upstream_sid = Some("up-sid-1".into());
        let (a, _) = s.create(with_sid.clone()).await.unwrap();
        let (other, _) = s.create(SsoSession { upstream_subject: "u2".into(), ..sample() }).await.unwrap();
        let found = s.from_upstream_session(&up("hcm"), "up-sid-1", None).await.unwrap();
        assert_eq!(found, vec![a.clone()], "the record round-trips, upstream sid included");
        assert!(s.from_upstream_session(&up("hcm"), "up-sid-1", Some("u2")).await.unwrap().is_empty());
        assert!(s.from_upstream_session(&up("bd"), "up-sid-1", None).await.unwrap().is_empty());
        let by_subject = s.from_upstream_subject("acc", &up("hcm"), "u1").await.unwrap();
        assert_eq!(by_subject, vec![a.clone()]);
        assert_eq!(s.from_upstream_subject("acc", &up("hcm"), "u2").await.unwrap(), vec![other]);
        assert!(s.from_upstream_subject("acc", &up("bd"), "u1").await.unwrap().is_empty());
        s.end(&a).await.unwrap();
        assert!(s.from_upstream_session(&up("hcm"), "up-sid-1", None).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn an_upstream_session_index_only_yields_sessions_made_from_that_upstream_session() {
        let s = sessions(false);
        let (a, _) =
            s.create(SsoSession { upstream_sid: Some("up-sid-1".into()), ..sample() }).await.unwrap();
        let (stray, _) =
            s.create(SsoSession { upstream_sid: Some("up-sid-2".into()), ..sample() }).await.unwrap();
        // As if two upstream session ids had the same digest.
        let index = upstream_session_key("hcm", "up-sid-1");
        s.store.hash_set(&index, &[(stray.sid.as_str(), &b""[..])], Duration::from_secs(60)).await.unwrap();
        assert_eq!(s.from_upstream_session(&up("hcm"), "up-sid-1", None).await.unwrap(), vec![a]);
        assert_eq!(s.from_upstream_session(&up("hcm"), "up-sid-2", None).await.unwrap(), vec![stray]);
    }

    #[tokio::test]
    async fn an_unused_session_idles_out_and_use_keeps_it_alive() {
        let settings =
            SessionSettings { idle_timeout: Duration::from_millis(300), ..SessionSettings::default() };
        let s = Sessions::new(StateStore::memory(), Clock::system(), &settings, false);
        let (used, used_cookie) = s.create(sample()).await.unwrap();
        let (idle, _) = s.create(sample()).await.unwrap();
        s.record_client(&used, "portal").await.unwrap();
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_millis(150)).await;
            assert!(s.current(&headers_with(&used_cookie)).await.unwrap().is_some());
        }
        assert!(!s.is_alive(&idle.sid).await.unwrap(), "idle timeout");
        assert!(s.is_alive(&used.sid).await.unwrap());
        assert_eq!(s.clients(&used.sid).await.unwrap(), ["portal"], "what it collected slides with it");
        let listed: Vec<String> =
            s.list_for_account("acc").await.unwrap().into_iter().map(|x| x.sid).collect();
        assert_eq!(listed, vec![used.sid.clone()]);
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(s.current(&headers_with(&used_cookie)).await.unwrap().is_none());
    }

    #[test]
    fn the_absolute_lifetime_ends_exactly_at_its_length() {
        let twelve_hours = Duration::from_secs(12 * 3600);
        assert!(within_absolute_lifetime(1_000, 1_000, twelve_hours));
        assert!(within_absolute_lifetime(1_000, 1_000 + 12 * 3600 - 1, twelve_hours));
        assert!(!within_absolute_lifetime(1_000, 1_000 + 12 * 3600, twelve_hours));
    }

    #[tokio::test]
    async fn a_session_past_its_absolute_lifetime_is_not_alive_even_if_the_store_still_holds_it() {
        // The store keeps real time; only the sessions' clock moves.
        let s = sessions(false);
        let (created, _) = s.create(sample()).await.unwrap();
        s.clock.advance(12 * 3600 - 10);
        assert!(s.is_alive(&created.sid).await.unwrap());
        s.clock.advance(10);
        assert!(s.store.hash_contains(&session_key(&created.sid), F_SECRET).await.unwrap());
        assert!(!s.is_alive(&created.sid).await.unwrap());
    }

    #[tokio::test]
    async fn a_session_unused_past_the_idle_timeout_is_not_alive() {
        let clock = Clock::system();
        let settings = SessionSettings::default();
        let s = Sessions::new(StateStore::memory_with_clock(clock.clone()), clock.clone(), &settings, false);
        let (created, cookie) = s.create(sample()).await.unwrap();
        clock.advance(settings.idle_timeout.as_secs() as i64 - 10);
        assert!(s.is_alive(&created.sid).await.unwrap(), "is_alive is not use");
        clock.advance(20);
        assert!(!s.is_alive(&created.sid).await.unwrap());
        assert!(s.current(&headers_with(&cookie)).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn cookies_of_the_old_layout_find_no_session() {
        let s = sessions(false);
        s.create(sample()).await.unwrap();
        let old = random_handle();
        assert!(s.current(&cookie_header("sso_session", &old)).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn keys_left_in_redis_by_the_older_layout_do_not_break_logins() {
        let url = sso_test_services::redis_url();
        let prefix = format!("test-{}:", random_handle());
        let topology = crate::state::RedisTopology::Single(url);
        let store = StateStore::redis(&topology, &prefix, Duration::from_secs(2)).await.unwrap();
        // What a session of the older layout left behind: sets and strings.
        let ttl = Duration::from_secs(60);
        let old_sid = random_handle();
        store.put("session:oldcookiehash", b"{}".to_vec(), ttl).await.unwrap();
        store.put(&format!("sid:{old_sid}"), b"session:oldcookiehash".to_vec(), ttl).await.unwrap();
        store.set_add("account-sessions:acc", &old_sid, ttl).await.unwrap();
        store.set_add(&format!("session-clients:{old_sid}"), "portal", ttl).await.unwrap();
        let s = Sessions::new(store, Clock::system(), &SessionSettings::default(), false);
        let (created, cookie) = s.create(sample()).await.unwrap();
        assert!(s.current(&headers_with(&cookie)).await.unwrap().is_some());
        assert_eq!(s.list_for_account("acc").await.unwrap(), vec![created.clone()]);
        assert!(!s.is_alive(&old_sid).await.unwrap());
        s.end(&created).await.unwrap();
    }
}

#[cfg(test)]
mod properties {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use proptest::prelude::*;

    use super::*;

    fn cookie_header() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            prop::collection::vec(any::<u8>(), 0..512),
            ("[A-Za-z0-9_-]{0,140}", "[A-Za-z0-9_.-]{0,140}")
                .prop_map(|(sid, secret)| format!("sso_session={sid}.{secret}").into_bytes()),
            any::<String>().prop_map(|s| format!("a=b; sso_session={s}; sso_session=x.y").into_bytes()),
        ]
    }

    proptest! {
        #![proptest_config(crate::fuzzing::config(256))]

        /// Whatever a browser sends as cookies finds no session and stores nothing.
        #[test]
        fn any_cookie_header_is_no_session(cookies in prop::collection::vec(cookie_header(), 0..3)) {
            let mut headers = HeaderMap::new();
            for c in &cookies {
                if let Ok(v) = axum::http::HeaderValue::from_bytes(c) {
                    headers.append(header::COOKIE, v);
                }
            }
            if let Some(value) = read_cookie(&headers, "sso_session")
                && let Some((sid, secret)) = split_cookie(&value)
            {
                prop_assert!(sid.len() <= 128 && secret.len() <= 128);
            }
            let store = StateStore::memory();
            let sessions = Sessions::new(store.clone(), Clock::system(), &SessionSettings::default(), false);
            let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
            prop_assert!(runtime.block_on(sessions.current(&headers)).unwrap().is_none());
            prop_assert_eq!(store.memory_entries(), Some(0));
        }
    }
}
