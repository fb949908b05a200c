//! The records the provider keeps in the state store between requests, and their keys:
//! parked (validated) authorization requests, authorization codes, refresh-token families,
//! used and revoked markers. Secrets are keyed by their hash. What a record allows is
//! decided by the endpoints, never here.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::state::{Class, StateStore, StoreError, hashed_key, random_handle};
use crate::web::Lang;

/// How the authorization response travels back to the RP.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum ResponseMode {
    #[default]
    Query,
    FormPost,
}

/// A validated authorization request, parked while the user logs in upstream.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AuthorizationRequest {
    pub client_id: String,
    pub redirect_uri: String,
    #[serde(default)]
    pub response_mode: ResponseMode,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub scopes: Vec<String>,
    pub code_challenge: Option<String>,
    /// `prompt=login` (or `select_account`): a fresh upstream login is required.
    pub force_login: bool,
    pub max_age: Option<i64>,
    pub login_hint: Option<String>,
    pub lang: Lang,
    pub idp_hint: Option<String>,
    /// Step-up: the `acr` values a session must have to answer this request (from the RP's
    /// `acr_values` and the client's `min_acr`); empty = any.
    #[serde(default)]
    pub acr_accepted: Vec<String>,
    /// DPoP (RFC 9449 §10): the thumbprint of the key the code must be redeemed with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dpop_jkt: Option<String>,
}

/// Parks a request; returns its handle for the chooser/broker URLs. The record is anonymous
/// (nobody has logged in yet): it counts against the store's anonymous share.
pub async fn park(
    store: &StateStore,
    req: &AuthorizationRequest,
    ttl: Duration,
) -> Result<String, StoreError> {
    let id = random_handle();
    store.with_class(Class::Anonymous).put(&format!("authreq:{id}"), encode(req), ttl).await?;
    Ok(id)
}

/// Reads a parked request without consuming it (the chooser may be shown twice).
pub async fn parked(store: &StateStore, id: &str) -> Result<Option<AuthorizationRequest>, StoreError> {
    if id.is_empty() || id.len() > 64 {
        return Ok(None);
    }
    store.get(&format!("authreq:{id}")).await?.map(|b| decode(&b)).transpose()
}

/// Consumes a parked request once the login finished.
pub async fn take_parked(store: &StateStore, id: &str) -> Result<Option<AuthorizationRequest>, StoreError> {
    if id.is_empty() || id.len() > 64 {
        return Ok(None);
    }
    store.take(&format!("authreq:{id}")).await?.map(|b| decode(&b)).transpose()
}

/// What the broker's login pages (the chooser, the start at an upstream) may know of a parked
/// request: what shapes the login, and the requesting application's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingLogin {
    /// The requesting application's display name, if it is still registered.
    pub client_name: Option<String>,
    /// The acr values the login must reach (empty: any).
    pub acr_accepted: Vec<String>,
    pub lang: Lang,
    pub force_login: bool,
    pub max_age: Option<i64>,
    pub login_hint: Option<String>,
    /// Where the answer will go (the password form's `form-action` must allow it).
    pub redirect_uri: String,
}

/// The broker's read-only window on parked requests: it reads them only through this, and
/// never sees the client registry or the record format.
#[derive(Clone)]
pub struct ParkedRequests {
    store: StateStore,
    clients: super::clients::ClientRegistry,
}

impl ParkedRequests {
    pub fn new(store: StateStore, clients: super::clients::ClientRegistry) -> Self {
        ParkedRequests { store, clients }
    }

    /// The login view of parked request `id`; None when it expired or never existed.
    pub async fn pending_login(&self, id: &str) -> Result<Option<PendingLogin>, StoreError> {
        let Some(req) = parked(&self.store, id).await? else { return Ok(None) };
        Ok(Some(PendingLogin {
            client_name: self.clients.get(req.client_id.as_str()).map(|c| c.name.clone()),
            acr_accepted: req.acr_accepted,
            lang: req.lang,
            force_login: req.force_login,
            max_age: req.max_age,
            login_hint: req.login_hint,
            redirect_uri: req.redirect_uri,
        }))
    }
}

/// First byte of the compact form of a parked request (JSON, the older form, starts with `{`).
const COMPACT_V1: u8 = 1;

/// The compact form of a parked request: a version byte, a flag byte, `max_age` when there
/// is one, then each string as a 4-byte length (plus one; 0 = absent) and its bytes, and each
/// list as a 4-byte count and its strings. Values are stored as sent, with no escaping: a
/// request is its parameters' size plus about 50 bytes (JSON would add field names and could
/// double a `state` full of quotes).
pub fn encode(req: &AuthorizationRequest) -> Vec<u8> {
    fn text(out: &mut Vec<u8>, s: Option<&str>) {
        let len = s.map_or(0, |s| u32::try_from(s.len()).unwrap_or(u32::MAX - 1) + 1);
        out.extend_from_slice(&len.to_be_bytes());
        if let Some(s) = s {
            out.extend_from_slice(&s.as_bytes()[..(len - 1) as usize]);
        }
    }
    fn list(out: &mut Vec<u8>, items: &[String]) {
        out.extend_from_slice(&u32::try_from(items.len()).unwrap_or(0).to_be_bytes());
        for item in items {
            text(out, Some(item));
        }
    }
    let flags = u8::from(req.response_mode == ResponseMode::FormPost)
        | u8::from(req.force_login) << 1
        | u8::from(req.lang == Lang::En) << 2
        | u8::from(req.max_age.is_some()) << 3;
    let mut out = Vec::with_capacity(
        64 + [&req.client_id, &req.redirect_uri].iter().map(|s| s.len()).sum::<usize>()
            + [&req.state, &req.nonce, &req.code_challenge, &req.login_hint, &req.idp_hint, &req.dpop_jkt]
                .iter()
                .map(|s| s.as_ref().map_or(0, String::len))
                .sum::<usize>()
            + req.scopes.iter().chain(&req.acr_accepted).map(|s| s.len() + 4).sum::<usize>(),
    );
    out.extend_from_slice(&[COMPACT_V1, flags]);
    if let Some(max_age) = req.max_age {
        out.extend_from_slice(&max_age.to_be_bytes());
    }
    for s in [Some(&req.client_id), Some(&req.redirect_uri)] {
        text(&mut out, s.map(String::as_str));
    }
    for s in [&req.state, &req.nonce, &req.code_challenge, &req.login_hint, &req.idp_hint, &req.dpop_jkt] {
        text(&mut out, s.as_deref());
    }
    list(&mut out, &req.scopes);
    list(&mut out, &req.acr_accepted);
    out
}

/// Reads a parked request in the compact form, or in JSON (written by an older gateway).
pub fn decode(bytes: &[u8]) -> Result<AuthorizationRequest, StoreError> {
    if bytes.first() == Some(&b'{') {
        return Ok(serde_json::from_slice(bytes)?);
    }
    let [COMPACT_V1, flags, rest @ ..] = bytes else {
        return Err(Reader::bad("unknown form"));
    };
    let flags = *flags;
    let mut r = Reader(rest);
    let max_age = if flags & 8 != 0 { Some(i64::from_be_bytes(r.array()?)) } else { None };
    let client_id = r.text()?.ok_or_else(|| Reader::bad("no client_id"))?;
    let redirect_uri = r.text()?.ok_or_else(|| Reader::bad("no redirect_uri"))?;
    let state = r.text()?;
    let nonce = r.text()?;
    let code_challenge = r.text()?;
    let login_hint = r.text()?;
    let idp_hint = r.text()?;
    let dpop_jkt = r.text()?;
    let scopes = r.list()?;
    let acr_accepted = r.list()?;
    Ok(AuthorizationRequest {
        client_id,
        redirect_uri,
        response_mode: if flags & 1 != 0 { ResponseMode::FormPost } else { ResponseMode::Query },
        state,
        nonce,
        scopes,
        code_challenge,
        force_login: flags & 2 != 0,
        max_age,
        login_hint,
        lang: if flags & 4 != 0 { Lang::En } else { Lang::Vi },
        idp_hint,
        acr_accepted,
        dpop_jkt,
    })
}

/// Reads the compact form of a parked request front to back.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn bad(what: &str) -> StoreError {
        StoreError::Malformed(format!("parked request: {what}"))
    }

    fn bytes(&mut self, n: usize) -> Result<&[u8], StoreError> {
        if self.0.len() < n {
            return Err(Self::bad("truncated"));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], StoreError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.bytes(N)?);
        Ok(a)
    }

    fn text(&mut self) -> Result<Option<String>, StoreError> {
        match u32::from_be_bytes(self.array()?) {
            0 => Ok(None),
            n => {
                let b = self.bytes((n - 1) as usize)?;
                String::from_utf8(b.to_vec()).map(Some).map_err(|_| Self::bad("not UTF-8"))
            }
        }
    }

    fn list(&mut self) -> Result<Vec<String>, StoreError> {
        let n = u32::from_be_bytes(self.array()?);
        let mut items = Vec::new();
        for _ in 0..n {
            items.push(self.text()?.ok_or_else(|| Self::bad("absent list item"))?);
        }
        Ok(items)
    }
}

/// The facts about a user authentication that tokens are minted from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct UserGrant {
    /// Groups every token of one code redemption and its refresh rotations (for revocation).
    pub grant_id: String,
    pub client_id: String,
    pub account_id: String,
    pub scopes: Vec<String>,
    pub sid: String,
    pub auth_time: i64,
    pub acr: String,
    pub amr: Vec<String>,
    pub idp: String,
}

impl UserGrant {
    /// A grant `g1` of client `portal` with `scopes`, for tests.
    #[cfg(test)]
    pub fn example(scopes: &[&str]) -> Self {
        UserGrant {
            grant_id: "g1".into(),
            client_id: "portal".into(),
            account_id: "a".into(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            sid: "s".into(),
            auth_time: 0,
            acr: "1".into(),
            amr: vec![],
            idp: "hcm".into(),
        }
    }

    /// `offline_access` was granted: the family survives the SSO session (not revocation).
    pub fn is_offline(&self) -> bool {
        self.scopes.iter().any(|s| s == "offline_access")
    }
}

/// How long a refresh family started under `grant` lives: `offline` (the configured offline
/// lifetime) when `offline_access` was granted, else the client's refresh-token lifetime.
pub fn family_lifetime(grant: &UserGrant, client_refresh: Duration, offline: Duration) -> Duration {
    if grant.is_offline() { offline } else { client_refresh }
}

/// Why a refresh family may not rotate any more, if it may not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FamilyEnded {
    /// Revoked: replayed, logged out, revoked by the client, or its session expired.
    Revoked,
    /// Not offline and its SSO session ended (logout, idle or absolute timeout); the session
    /// may have simply vanished from the store, so this is checked at every rotation.
    SessionEnded,
}

/// Whether a family may rotate: never once revoked; a family without `offline_access` only
/// while the SSO session it was issued in is alive.
pub fn may_rotate(offline: bool, revoked: bool, session_alive: bool) -> Result<(), FamilyEnded> {
    if revoked {
        Err(FamilyEnded::Revoked)
    } else if !offline && !session_alive {
        Err(FamilyEnded::SessionEnded)
    } else {
        Ok(())
    }
}

/// An issued authorization code.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CodeRecord {
    pub grant: UserGrant,
    pub redirect_uri: String,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    /// The code is redeemed only with a DPoP proof of this key (`dpop_jkt`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dpop_jkt: Option<String>,
    /// When the code expires (the store forgets it then too; None in codes issued by an
    /// older gateway, which only the store's expiry bounds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
}

pub fn code_key(code: &str) -> String {
    hashed_key("code", code)
}

pub fn code_used_key(code: &str) -> String {
    hashed_key("code-used", code)
}

pub fn refresh_key(token: &str) -> String {
    hashed_key("refresh", token)
}

pub fn refresh_used_key(token: &str) -> String {
    hashed_key("refresh-used", token)
}

/// A revoked access token (RFC 7009), kept until the token expires.
pub fn revoked_jti_key(jti: &str) -> String {
    format!("revoked-jti:{jti}")
}

/// A revoked grant: every refresh token of its family and every access token issued under it
/// is refused while this marker lives, so it must live as long as the longest of them (see
/// [`revocation_ttl`]).
pub fn grant_revoked_key(grant_id: &str) -> String {
    format!("grant-revoked:{grant_id}")
}

/// How long the marker of a grant revoked at `now` must live: until its refresh family ends
/// (`family_end`), and at least as long as an access token issued just before the revocation
/// (`longest_access`); plus a minute for requests in flight when it was written.
pub fn revocation_ttl(now: i64, family_end: i64, longest_access: Duration) -> Duration {
    let family = Duration::from_secs(family_end.saturating_sub(now).max(0) as u64);
    family.max(longest_access) + Duration::from_secs(60)
}

/// What a redeemed code or a rotated refresh token leaves behind (`code-used:`,
/// `refresh-used:`): the grant to revoke when it is presented again, and when the grant's
/// family ends (how long that revocation must last).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsedMarker {
    pub grant_id: String,
    /// None in markers written before the family end was recorded.
    pub family_end: Option<i64>,
}

impl UsedMarker {
    /// `<grant_id> <family_end>` (grant ids are base64url, without spaces).
    pub fn encode(&self) -> Vec<u8> {
        match self.family_end {
            Some(end) => format!("{} {end}", self.grant_id).into_bytes(),
            None => self.grant_id.clone().into_bytes(),
        }
    }

    /// Reads a marker; one holding only a grant id (the older form) has no family end.
    pub fn decode(bytes: &[u8]) -> Self {
        let text = String::from_utf8_lossy(bytes);
        match text.split_once(' ') {
            Some((grant_id, end)) => {
                UsedMarker { grant_id: grant_id.to_string(), family_end: end.trim().parse().ok() }
            }
            None => UsedMarker { grant_id: text.into_owned(), family_end: None },
        }
    }
}

/// A live refresh token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RefreshRecord {
    pub grant: UserGrant,
    /// Absolute end of the family, unaffected by rotation.
    pub family_expires_at: i64,
    /// The family was started with `offline_access` (kept when a refresh narrows the scope;
    /// stored only when true).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub offline: bool,
    /// DPoP (RFC 9449 §5): the family is bound to this key (a public client's families
    /// started with a proof); each refresh must prove possession of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jkt: Option<String>,
    /// Mutual TLS (RFC 8705 §4): the family of a public client is bound to the certificate
    /// with this SHA-256 (`x5t#S256`); each refresh must come over a connection with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x5t_s256: Option<String>,
}

impl RefreshRecord {
    /// Whether the family survives its SSO session.
    pub fn is_offline(&self) -> bool {
        self.offline || self.grant.is_offline()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(scopes: &[&str]) -> UserGrant {
        UserGrant::example(scopes)
    }

    fn parked_request(state: &str) -> AuthorizationRequest {
        AuthorizationRequest {
            client_id: "portal".into(),
            redirect_uri: "https://portal.example/cb".into(),
            response_mode: ResponseMode::FormPost,
            state: Some(state.into()),
            nonce: Some("n-1".into()),
            scopes: vec!["openid".into(), "profile".into()],
            code_challenge: Some("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".into()),
            force_login: true,
            max_age: Some(-7),
            login_hint: None,
            lang: Lang::En,
            idp_hint: Some("hcm".into()),
            acr_accepted: vec!["urn:a".into(), "urn:b c".into()],
            dpop_jkt: Some("0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I".into()),
        }
    }

    #[test]
    fn parked_requests_round_trip_in_the_compact_form() {
        let req = parked_request("s\"t\\ạ");
        assert_eq!(decode(&encode(&req)).unwrap(), req);
        let bare = AuthorizationRequest {
            state: None,
            nonce: None,
            code_challenge: None,
            idp_hint: None,
            dpop_jkt: None,
            max_age: None,
            force_login: false,
            lang: Lang::Vi,
            response_mode: ResponseMode::Query,
            scopes: vec![],
            acr_accepted: vec![],
            ..req.clone()
        };
        assert_eq!(decode(&encode(&bare)).unwrap(), bare);
        // Requests parked by an older gateway (JSON) still resume.
        assert_eq!(decode(&serde_json::to_vec(&req).unwrap()).unwrap(), req);
        for broken in [&b""[..], &b"\x01"[..], &b"\x09\x00"[..], &encode(&req)[..20]] {
            assert!(decode(broken).is_err(), "{broken:?}");
        }
    }

    /// With a state full of quotes JSON doubled it; the compact form stores it as sent, plus a
    /// fixed ~50 bytes of framing beyond the values.
    #[test]
    fn a_parked_request_costs_its_values_plus_a_little_framing() {
        let state = "\"".repeat(1024);
        let req = parked_request(&state);
        let values: usize = [
            req.client_id.as_str(),
            &req.redirect_uri,
            &state,
            "n-1",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
            "hcm",
            "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I",
        ]
        .iter()
        .map(|s| s.len())
        .sum::<usize>()
            + req.scopes.iter().chain(&req.acr_accepted).map(String::len).sum::<usize>();
        let compact = encode(&req).len();
        assert!(compact <= values + 68, "{compact} bytes for {values} bytes of values");
        assert!(serde_json::to_vec(&req).unwrap().len() > values + 1024, "JSON escaped every quote");
    }

    #[test]
    fn a_revocation_marker_outlives_the_family_and_its_access_tokens() {
        let access = Duration::from_secs(300);
        let thirty_days = 30 * 24 * 3600;
        // An offline family revoked at once lives 30 days: so does its marker (not 8 h).
        assert_eq!(revocation_ttl(1_000, 1_000 + thirty_days, access).as_secs(), thirty_days as u64 + 60);
        // A family about to end still has access tokens out: the marker covers them.
        assert_eq!(revocation_ttl(1_000, 1_010, access).as_secs(), 360);
        assert_eq!(revocation_ttl(1_000, 500, access).as_secs(), 360, "an ended family");
    }

    #[test]
    fn used_markers_carry_the_family_end_and_read_the_older_form() {
        let m = UsedMarker { grant_id: "abc-_1".into(), family_end: Some(1_700_000_000) };
        assert_eq!(m.encode(), b"abc-_1 1700000000");
        assert_eq!(UsedMarker::decode(&m.encode()), m);
        assert_eq!(UsedMarker::decode(b"abc-_1"), UsedMarker { grant_id: "abc-_1".into(), family_end: None });
    }

    #[test]
    fn offline_families_live_the_offline_lifetime_and_survive_the_session_only() {
        let (client, offline) = (Duration::from_secs(8 * 3600), Duration::from_secs(30 * 86400));
        let online = grant(&["openid"]);
        let off = grant(&["openid", "offline_access"]);
        assert_eq!(family_lifetime(&online, client, offline), client);
        assert_eq!(family_lifetime(&off, client, offline), offline);
        assert_eq!(may_rotate(false, false, true), Ok(()));
        assert_eq!(may_rotate(false, false, false), Err(FamilyEnded::SessionEnded));
        assert_eq!(may_rotate(true, false, false), Ok(()), "offline survives the session");
        assert_eq!(may_rotate(true, true, true), Err(FamilyEnded::Revoked), "but not revocation");
        assert_eq!(may_rotate(false, true, true), Err(FamilyEnded::Revoked));
    }

    #[test]
    fn a_family_stays_offline_when_a_refresh_narrows_its_scope() {
        let narrowed = RefreshRecord {
            grant: grant(&["openid"]),
            family_expires_at: 1,
            offline: true,
            jkt: None,
            x5t_s256: None,
        };
        assert!(narrowed.is_offline());
        let json = serde_json::to_string(&narrowed).unwrap();
        let back: RefreshRecord = serde_json::from_str(&json).unwrap();
        assert!(back.is_offline());
        // Records written before the flag existed: the scope says it.
        let mut older = serde_json::to_value(&narrowed).unwrap();
        older.as_object_mut().unwrap().remove("offline");
        let older: RefreshRecord = serde_json::from_value(older).unwrap();
        assert!(!older.is_offline());
        let online = RefreshRecord {
            grant: grant(&["openid"]),
            family_expires_at: 1,
            offline: false,
            jkt: None,
            x5t_s256: None,
        };
        assert!(!serde_json::to_string(&online).unwrap().contains("offline"), "stored only when true");
        let old_offline: RefreshRecord = serde_json::from_value(serde_json::json!({
            "grant": grant(&["openid", "offline_access"]), "family_expires_at": 1
        }))
        .unwrap();
        assert!(old_offline.is_offline());
    }
}
