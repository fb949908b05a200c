//! OpenID Connect RP-Initiated Logout 1.0 at the discovery document's `end_session_endpoint`
//! (`/logout`), with Front-Channel Logout iframes on the logged-out page and a hop through
//! the upstream's own logout where it has one.

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;
use subtle::ConstantTimeEq;

use super::LogoutState;
use crate::ids::ClientId;
use crate::keys::KeySet;
use crate::provider::clients::{Client, ClientRegistry};
use crate::provider::minting::Audience;
use crate::session::SsoSession;
use crate::state::{hashed_key, random_handle};
use crate::web::params::{self, Controls};
use crate::web::{self, ErrorPage, Lang};

#[derive(Debug, Default, Deserialize)]
pub struct LogoutParams {
    id_token_hint: Option<String>,
    client_id: Option<String>,
    post_logout_redirect_uri: Option<String>,
    state: Option<String>,
    ui_locales: Option<String>,
    /// Confirmation form fields.
    csrf: Option<String>,
    confirm: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct HintClaims {
    aud: Audience,
    sid: Option<String>,
}

/// Verifies an `id_token_hint`: an ID token this gateway signed, expired or not (OIDC
/// RP-Initiated Logout §2). Our keys sign access tokens (`at+jwt`) and logout tokens
/// (`logout+jwt`) too; neither is a hint, whoever presents it.
fn verify_hint(keys: &KeySet, issuer: &str, token: &str) -> Result<HintClaims, String> {
    let header = jsonwebtoken::decode_header(token).map_err(|e| e.to_string())?;
    if let Some(typ) = header.typ.as_deref()
        && !typ.eq_ignore_ascii_case("JWT")
        && !typ.eq_ignore_ascii_case("application/jwt")
    {
        return Err(format!("typ {typ:?} is not an ID token's"));
    }
    let claims: serde_json::Map<String, serde_json::Value> =
        keys.verify_ignoring_expiry(token, issuer).map_err(|e| e.to_string())?;
    // Every ID token has these (OIDC Core §2) …
    if let Some(missing) = ["sub", "aud", "iat", "exp"].into_iter().find(|c| !claims.contains_key(*c)) {
        return Err(format!("no {missing} claim"));
    }
    // … and none of ours has the marks of a logout token or an access token (RFC 9068).
    if let Some(foreign) = ["events", "scope", "client_id"].into_iter().find(|c| claims.contains_key(*c)) {
        return Err(format!("has a {foreign} claim: not an ID token"));
    }
    serde_json::from_value(serde_json::Value::Object(claims)).map_err(|e| e.to_string())
}

/// Where the browser goes once everything is logged out, kept across the upstream hop.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Continuation {
    pub target: Option<String>,
    pub state: Option<String>,
    pub frontchannel: Vec<String>,
    pub lang: Lang,
}

pub async fn get(State(app): State<LogoutState>, headers: HeaderMap, RawQuery(q): RawQuery) -> Response {
    match params::deserialize(q.as_deref().unwrap_or("").as_bytes(), Controls::Refused) {
        Ok(p) => logout(app, headers, p, false).await,
        Err(e) => malformed(&e),
    }
}

pub async fn post(State(app): State<LogoutState>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    match params::deserialize(&body, Controls::Refused) {
        Ok(p) => logout(app, headers, p, true).await,
        Err(e) => malformed(&e),
    }
}

/// Repeated, non-UTF-8 or control-character parameters: nothing is logged out and nobody is
/// redirected (which of two `post_logout_redirect_uri` was meant cannot be known).
fn malformed(e: &params::ParamError) -> Response {
    tracing::info!(error = %e, "logout request with malformed parameters");
    ErrorPage::new(StatusCode::BAD_REQUEST, "Yêu cầu đăng xuất không hợp lệ", "Invalid logout request")
        .detail(
            "Yêu cầu chứa tham số không hợp lệ (lặp lại, sai mã hoá hoặc có ký tự điều khiển).",
            format!("The request carries an invalid parameter: {e}."),
        )
        .into_response()
}

/// The RP behind a logout request, and where the browser may go once logged out.
#[derive(Debug)]
pub struct Requester {
    pub client: Option<Arc<Client>>,
    /// The `post_logout_redirect_uri`, only when it is registered for that client exactly.
    pub target: Option<String>,
}

/// The request's `client_id` is not the audience of its `id_token_hint`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientMismatch;

/// Which RP asks (the hint's audience, else `client_id`) and the post-logout target: only an
/// exact match with one of that client's registered URIs is ever redirected to.
pub fn requester(
    hint: Option<&HintClaims>,
    p: &LogoutParams,
    clients: &ClientRegistry,
) -> Result<Requester, ClientMismatch> {
    let hinted_client = hint.and_then(|h| h.aud.first());
    if let (Some(a), Some(b)) = (hinted_client, p.client_id.as_deref())
        && a != b
    {
        return Err(ClientMismatch);
    }
    // An id that cannot be a client id names no registered client: no client, as for an unknown one.
    let client = hinted_client
        .or(p.client_id.as_deref())
        .and_then(|id| ClientId::parse(id).ok())
        .and_then(|id| clients.get(&id));
    let target = p
        .post_logout_redirect_uri
        .clone()
        .filter(|u| client.as_ref().is_some_and(|c| c.has_post_logout_redirect_uri(u)));
    if p.post_logout_redirect_uri.is_some() && target.is_none() {
        tracing::info!("post_logout_redirect_uri not registered for the client; not redirecting");
    }
    Ok(Requester { client, target })
}

/// What a logout request does to the browser's session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogoutDecision {
    /// No session in this browser: nothing to end; on to the target (or the logged-out page).
    NoSession,
    /// Ask the person first: the request neither carries a hint of this very session nor is
    /// the person's own confirmation (a POST with "yes" and the session's anti-forgery token).
    Confirm,
    /// End the session everywhere.
    End,
}

/// Decides what a logout request with a verified `hint` (if any) does to `session`.
pub fn decide(
    hint: Option<&HintClaims>,
    p: &LogoutParams,
    session: Option<&SsoSession>,
    is_post: bool,
) -> LogoutDecision {
    let Some(session) = session else { return LogoutDecision::NoSession };
    let hint_matches = hint.and_then(|h| h.sid.as_deref()) == Some(session.sid.as_str());
    let confirmed = is_post
        && p.confirm.as_deref() == Some("yes")
        && p.csrf.as_deref().is_some_and(|c| bool::from(c.as_bytes().ct_eq(session.csrf.as_bytes())));
    if hint_matches || confirmed { LogoutDecision::End } else { LogoutDecision::Confirm }
}

fn client_mismatch() -> Response {
    ErrorPage::new(StatusCode::BAD_REQUEST, "Yêu cầu đăng xuất không hợp lệ", "Invalid logout request")
        .detail("client_id không khớp với id_token_hint.", "client_id does not match the id_token_hint.")
        .into_response()
}

async fn logout(app: LogoutState, headers: HeaderMap, p: LogoutParams, is_post: bool) -> Response {
    let lang = Lang::from_ui_locales(p.ui_locales.as_deref());
    let hint: Option<HintClaims> =
        p.id_token_hint.as_deref().and_then(|t| match verify_hint(&app.keys, app.issuer(), t) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::info!(error = %e, "id_token_hint at logout is not valid; asking the user");
                None
            }
        });
    let Ok(Requester { client, target }) = requester(hint.as_ref(), &p, &app.clients) else {
        return client_mismatch();
    };
    let session = match app.sessions.current(&headers).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "state store failure at logout");
            return ErrorPage::unavailable().into_response();
        }
    };
    let decision = decide(hint.as_ref(), &p, session.as_ref(), is_post);
    let Some(session) = session.filter(|_| decision != LogoutDecision::NoSession) else {
        let cont = Continuation { target, state: p.state, frontchannel: Vec::new(), lang };
        return with_cleared_cookie(&app, finish(&app, cont));
    };
    let back = crate::broker::urls::logged_out(app.issuer(), &session.upstream);
    if decision == LogoutDecision::Confirm {
        let mut page = confirm_page(&session, &p, client.as_deref(), lang);
        // Confirming leads on (by redirects the browser checks against form-action) to the
        // upstream's logout and then the registered post-logout page.
        let upstream_logout = app.broker.logout_url(&session.upstream, &back, "").await;
        let targets: Vec<&str> = target.iter().chain(upstream_logout.iter()).map(String::as_str).collect();
        web::allow_form_targets(&mut page, &targets);
        return page;
    }
    let clients = match super::end_session(&app, &session, "RP-initiated logout").await {
        Ok(ended) => ended.clients,
        Err(e) => {
            tracing::error!(error = %e, "state store failure ending a session");
            return ErrorPage::unavailable().into_response();
        }
    };
    let cont = Continuation {
        target,
        state: p.state,
        frontchannel: frontchannel_urls(&app, &session, &clients),
        lang,
    };
    // End the upstream session too, where the upstream supports RP-initiated logout.
    let handle = random_handle();
    if let Some(url) = app.broker.logout_url(&session.upstream, &back, &handle).await {
        let key = hashed_key("logout-continue", &handle);
        if app.store.put_json(&key, &cont, app.continuation_ttl).await.is_ok() {
            return with_cleared_cookie(&app, Redirect::to(&url).into_response());
        }
    }
    with_cleared_cookie(&app, finish(&app, cont))
}

fn frontchannel_urls(app: &LogoutState, session: &SsoSession, clients: &[Arc<Client>]) -> Vec<String> {
    clients
        .iter()
        .filter_map(|c| {
            let uri = c.frontchannel_logout_uri.as_ref()?;
            let mut url = url::Url::parse(uri).ok()?;
            if c.frontchannel_logout_session_required {
                url.query_pairs_mut().append_pair("iss", app.issuer()).append_pair("sid", &session.sid);
            }
            Some(url.to_string())
        })
        .collect()
}

fn with_cleared_cookie(app: &LogoutState, mut res: Response) -> Response {
    res.headers_mut().append(header::SET_COOKIE, app.sessions.clear_cookie());
    res
}

fn confirm_page(session: &SsoSession, p: &LogoutParams, client: Option<&Client>, lang: Lang) -> Response {
    let html = web::render(
        "logout_confirm.html",
        json!({
            "lang": lang.code(),
            "csrf": session.csrf,
            "client_id": client.map(|c| c.client_id.clone()),
            "client_name": client.map(|c| c.name.clone()),
            "post_logout_redirect_uri": p.post_logout_redirect_uri,
            "state": p.state,
            "ui_locales": p.ui_locales,
        }),
    );
    web::html_response(StatusCode::OK, html, web::CSP_PAGE)
}

/// The end of every logout: straight back to the RP, or the logged-out page with the
/// front-channel iframes (then on to the RP).
pub fn finish(_app: &LogoutState, cont: Continuation) -> Response {
    let target = cont.target.as_ref().and_then(|t| {
        let mut url = url::Url::parse(t).ok()?;
        if let Some(state) = &cont.state {
            url.query_pairs_mut().append_pair("state", state);
        }
        Some(url.to_string())
    });
    if cont.frontchannel.is_empty()
        && let Some(target) = &target
    {
        return Redirect::to(target).into_response();
    }
    let nonce = random_handle();
    let html = web::render(
        "logged_out.html",
        json!({ "lang": cont.lang.code(), "iframes": cont.frontchannel, "target": target, "nonce": nonce }),
    );
    let mut res = web::html_response(StatusCode::OK, html, web::CSP_PAGE);
    let csp = format!(
        "default-src 'none'; style-src 'unsafe-inline'; frame-src http: https:; script-src 'nonce-{nonce}'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    );
    if let Ok(v) = HeaderValue::from_str(&csp) {
        res.headers_mut().insert(header::CONTENT_SECURITY_POLICY, v);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SigningAlg;
    use serde_json::{Value, json};

    const ISSUER: &str = "https://sso.example";

    fn keys() -> (tempfile::TempDir, KeySet) {
        let dir = tempfile::tempdir().unwrap();
        KeySet::generate(dir.path(), SigningAlg::ES256).unwrap();
        let keys = KeySet::load_dir(dir.path()).unwrap();
        (dir, keys)
    }

    fn id_claims() -> Value {
        json!({ "iss": ISSUER, "sub": "s1", "aud": "portal", "iat": 1_000, "exp": 1_300,
                "sid": "sid-1", "azp": "portal", "auth_time": 1_000 })
    }

    fn with(mut v: Value, k: &str, x: Value) -> Value {
        v[k] = x;
        v
    }

    fn without(mut v: Value, k: &str) -> Value {
        v.as_object_mut().unwrap().remove(k);
        v
    }

    #[test]
    fn only_our_id_tokens_are_hints_even_expired_ones() {
        let (_dir, keys) = keys();
        let sign = |typ: &str, claims: &Value| keys.sign(SigningAlg::ES256, typ, claims).unwrap();
        let hint = verify_hint(&keys, ISSUER, &sign("JWT", &id_claims())).expect("an expired ID token");
        assert_eq!(hint.aud.first(), Some("portal"));
        assert_eq!(hint.sid.as_deref(), Some("sid-1"));

        let access = json!({ "iss": ISSUER, "sub": "s1", "aud": ISSUER, "iat": 1_000, "exp": 1_300,
                             "jti": "j", "client_id": "portal", "scope": "openid", "sid": "sid-1" });
        let logout = json!({ "iss": ISSUER, "sub": "s1", "aud": "portal", "iat": 1_000, "exp": 1_300,
                             "jti": "j", "sid": "sid-1",
                             "events": { "http://schemas.openid.net/event/backchannel-logout": {} } });
        let refused = [
            ("an access token", sign("at+jwt", &access)),
            ("an access token typed JWT", sign("JWT", &access)),
            ("a logout token", sign("logout+jwt", &logout)),
            ("a logout token typed JWT", sign("JWT", &logout)),
            ("an ID token typed otherwise", sign("application/at+jwt", &id_claims())),
            ("without sub", sign("JWT", &without(id_claims(), "sub"))),
            ("without aud", sign("JWT", &without(id_claims(), "aud"))),
            ("without iat", sign("JWT", &without(id_claims(), "iat"))),
            ("another issuer", sign("JWT", &with(id_claims(), "iss", json!("https://other.example")))),
            ("another key", {
                let (_d, other) = super::tests::keys();
                other.sign(SigningAlg::ES256, "JWT", &id_claims()).unwrap()
            }),
            ("not a JWT", "eyJhbGciOiJub25lIn0.e30.".to_string()),
        ];
        for (what, token) in refused {
            assert!(verify_hint(&keys, ISSUER, &token).is_err(), "{what} was taken as a hint");
        }
    }

    mod decisions {
        use super::super::*;

        fn registry() -> ClientRegistry {
            let s = crate::config::Settings::from_toml(
                r#"
                issuer = "https://sso.example"
                [[clients]]
                client_id = "portal"
                client_secret = "portal-secret-0123456789"
                redirect_uris = ["https://portal.example/cb"]
                post_logout_redirect_uris = ["https://portal.example/bye"]
                [[clients]]
                client_id = "spa"
                redirect_uris = ["https://spa.example/cb"]
                post_logout_redirect_uris = ["https://spa.example/bye"]
                "#,
            )
            .unwrap();
            ClientRegistry::new(&s.clients, &s.lifetimes)
        }

        fn hint(aud: &str, sid: Option<&str>) -> HintClaims {
            HintClaims { aud: Audience::One(aud.into()), sid: sid.map(str::to_string) }
        }

        fn params(client_id: Option<&str>, target: Option<&str>) -> LogoutParams {
            LogoutParams {
                client_id: client_id.map(str::to_string),
                post_logout_redirect_uri: target.map(str::to_string),
                ..LogoutParams::default()
            }
        }

        fn session() -> SsoSession {
            SsoSession::example("sid-1", "a1", 1_000, "loa2")
        }

        fn confirmation(csrf: &str) -> LogoutParams {
            LogoutParams { confirm: Some("yes".into()), csrf: Some(csrf.into()), ..LogoutParams::default() }
        }

        #[test]
        fn a_client_id_other_than_the_hints_audience_is_refused() {
            let refused = requester(Some(&hint("portal", None)), &params(Some("spa"), None), &registry());
            assert!(matches!(refused, Err(ClientMismatch)));
            let same = requester(Some(&hint("portal", None)), &params(Some("portal"), None), &registry());
            assert_eq!(same.unwrap().client.unwrap().client_id, "portal");
        }

        #[test]
        fn a_client_id_that_cannot_be_one_names_no_client_like_an_unknown_one() {
            let bye = Some("https://portal.example/bye");
            let answer = |id| format!("{:?}", requester(None, &params(Some(id), bye), &registry()));
            let unknown = answer("nobody");
            assert!(unknown.contains("client: None, target: None"), "{unknown}");
            for not_an_id in ["sso-gateway:account", "port\u{7f}al"] {
                assert_eq!(answer(not_an_id), unknown, "{not_an_id:?}");
            }
        }

        #[test]
        fn the_hints_audience_names_the_client_when_client_id_is_absent() {
            let p = params(None, Some("https://portal.example/bye"));
            let r = requester(Some(&hint("portal", None)), &p, &registry()).unwrap();
            assert_eq!(r.client.unwrap().client_id, "portal");
            assert_eq!(r.target.as_deref(), Some("https://portal.example/bye"));
        }

        #[test]
        fn only_a_uri_registered_for_that_client_is_a_post_logout_target() {
            let r = registry();
            let own = requester(None, &params(Some("spa"), Some("https://spa.example/bye")), &r).unwrap();
            assert_eq!(own.target.as_deref(), Some("https://spa.example/bye"));
            for (client, uri) in [
                (Some("spa"), "https://portal.example/bye"),
                (Some("spa"), "https://spa.example/bye/"),
                (Some("spa"), "https://evil.example/"),
                (Some("unknown"), "https://spa.example/bye"),
                (None, "https://spa.example/bye"),
            ] {
                let found = requester(None, &params(client, Some(uri)), &r).unwrap();
                assert_eq!(found.target, None, "{client:?} {uri}");
            }
        }

        #[test]
        fn without_a_session_there_is_nothing_to_end() {
            let d = decide(Some(&hint("portal", Some("sid-1"))), &confirmation("csrf-token"), None, true);
            assert_eq!(d, LogoutDecision::NoSession);
        }

        #[test]
        fn a_hint_of_this_session_ends_it_without_asking() {
            let s = session();
            let d = decide(Some(&hint("portal", Some("sid-1"))), &params(None, None), Some(&s), false);
            assert_eq!(d, LogoutDecision::End);
        }

        #[test]
        fn a_hint_of_another_session_or_none_asks_the_person_first() {
            let s = session();
            for h in [None, Some(hint("portal", Some("sid-2"))), Some(hint("portal", None))] {
                assert_eq!(decide(h.as_ref(), &params(None, None), Some(&s), false), LogoutDecision::Confirm);
            }
        }

        #[test]
        fn a_confirmation_ends_the_session_only_posted_with_yes_and_the_sessions_token() {
            let s = session();
            assert_eq!(decide(None, &confirmation("csrf-token"), Some(&s), true), LogoutDecision::End);
            assert_eq!(decide(None, &confirmation("csrf-token"), Some(&s), false), LogoutDecision::Confirm);
            assert_eq!(decide(None, &confirmation("forged"), Some(&s), true), LogoutDecision::Confirm);
            let no = LogoutParams { confirm: Some("no".into()), ..confirmation("csrf-token") };
            assert_eq!(decide(None, &no, Some(&s), true), LogoutDecision::Confirm);
            let tokenless = LogoutParams { csrf: None, ..confirmation("csrf-token") };
            assert_eq!(decide(None, &tokenless, Some(&s), true), LogoutDecision::Confirm);
        }
    }
}
