//! The handlers of the account pages: each reads the session, checks the form's token, calls
//! the account store or `logout`, and renders. What a page shows is worked out in
//! [`super::overview`]; what a returning link login means, in [`super::link`].

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::json;
use subtle::ConstantTimeEq;

use super::AccountPageState;
use super::error::AccountPageError;
use super::link::{self, LinkIntent};
use super::overview::{Unlinkable, UpstreamName, overview, unlinkable};
use crate::accounts::{Account, SelfUnlink};
use crate::ids::UpstreamId;
use crate::provider::store_records as records;
use crate::session::SsoSession;
use crate::web::{self, Lang};

fn other(lang: Lang) -> Lang {
    match lang {
        Lang::Vi => Lang::En,
        Lang::En => Lang::Vi,
    }
}

fn account_url(lang: Lang, extra: &str) -> String {
    format!("{}?lang={}{extra}", super::PATH, lang.code())
}

/// The configured upstreams as people know them.
fn upstream_names(app: &AccountPageState) -> Vec<UpstreamName> {
    app.broker
        .upstream_names()
        .into_iter()
        .map(|(id, name_vi, name_en)| UpstreamName { id, name_vi, name_en })
        .collect()
}

/// The session, or the refusal every write gets without one.
async fn session(app: &AccountPageState, headers: &HeaderMap) -> Result<SsoSession, AccountPageError> {
    app.sessions.current(headers).await?.ok_or(AccountPageError::NotLoggedIn)
}

/// The session's anti-forgery token must come back with every write.
fn check_token(session: &SsoSession, csrf: &str) -> Result<(), AccountPageError> {
    if bool::from(csrf.as_bytes().ct_eq(session.csrf.as_bytes())) && !csrf.is_empty() {
        Ok(())
    } else {
        Err(AccountPageError::Forged)
    }
}

/// The session's account (the survivor, should it have been merged since).
async fn account_of(app: &AccountPageState, session: &SsoSession) -> Result<Account, AccountPageError> {
    app.accounts.surviving(&session.account_id).await?.ok_or(AccountPageError::NotLoggedIn)
}

#[derive(Debug, Default, Deserialize)]
pub struct ShowQuery {
    lang: Option<Lang>,
    /// Set on the way back from a link: the system that was being linked.
    linking: Option<String>,
    /// Set after an unlink: the system that was unlinked.
    unlinked: Option<String>,
}

/// GET `/account`: the page, or the chooser (and back here) for a person not logged in.
pub async fn show(
    State(app): State<AccountPageState>,
    headers: HeaderMap,
    web::params::Query(q): web::params::Query<ShowQuery>,
) -> Response {
    let lang = q.lang.unwrap_or_default();
    match page(&app, &headers, &q, lang).await {
        Ok(r) => r,
        Err(AccountPageError::NotLoggedIn) => to_login(&app, lang).await,
        Err(e) => e.into_response(),
    }
}

/// Parks a request of the gateway's own that returns to the account page, and shows the
/// chooser. The record is anonymous and short-lived, like any parked request.
async fn to_login(app: &AccountPageState, lang: Lang) -> Response {
    let req = link::own_request(format!("{}{}", app.issuer(), account_url(lang, "")), lang, false);
    match records::park(&app.store, &req, app.login_attempt).await {
        Ok(id) => Redirect::to(&format!("/login?request={id}&lang={}", lang.code())).into_response(),
        Err(e) => AccountPageError::Store(e).into_response(),
    }
}

async fn page(
    app: &AccountPageState,
    headers: &HeaderMap,
    q: &ShowQuery,
    lang: Lang,
) -> Result<Response, AccountPageError> {
    let session = session(app, headers).await?;
    let account = account_of(app, &session).await?;
    let links = app.accounts.links_of(&account.id).await?;
    let upstreams = upstream_names(app);
    let o = overview(&account, &links, &upstreams);
    let sessions = crate::logout::session_rows(&app.logout, &session.account_id, &session.sid).await?;
    let name_of = |id: &str| upstreams.iter().find(|u| u.id == id).cloned();
    let notice = match (&q.linking, &q.unlinked) {
        (Some(id), _) => name_of(id).map(|u| {
            let linked = links.iter().any(|l| l.upstream == u.id);
            json!({ "kind": if linked { "linked" } else { "not_linked" }, "vi": u.name_vi, "en": u.name_en })
        }),
        (None, Some(id)) => {
            name_of(id).map(|u| json!({ "kind": "unlinked", "vi": u.name_vi, "en": u.name_en }))
        }
        (None, None) => None,
    };
    let html = web::render(
        "account.html",
        json!({
            "lang": lang.code(),
            "other_lang": other(lang).code(),
            "other_lang_href": account_url(other(lang), ""),
            "o": o,
            "sessions": sessions,
            "csrf": session.csrf,
            "notice": notice,
        }),
    );
    Ok(web::html_response(StatusCode::OK, html, web::CSP_PAGE))
}

#[derive(Debug, Deserialize)]
pub struct LinkForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    upstream: String,
    lang: Option<Lang>,
}

/// POST `/account/link`: starts a fresh login through the chosen system, bound to this
/// session, and shows the page that moves on to it; its outcome is decided when it comes back
/// (`login` asks [`link::decide`]).
pub async fn start_link(
    State(app): State<AccountPageState>,
    headers: HeaderMap,
    web::params::Form(form): web::params::Form<LinkForm>,
) -> Response {
    match begin_link(&app, &headers, &form).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn begin_link(
    app: &AccountPageState,
    headers: &HeaderMap,
    form: &LinkForm,
) -> Result<Response, AccountPageError> {
    let session = session(app, headers).await?;
    check_token(&session, &form.csrf)?;
    if !app.broker.has_upstream(&form.upstream) {
        return Err(AccountPageError::UnknownUpstream(form.upstream.clone()));
    }
    let lang = form.lang.unwrap_or_default();
    let back = format!("{}{}", app.issuer(), account_url(lang, &format!("&linking={}", form.upstream)));
    let ttl = app.login_attempt;
    let request = records::park(&app.store, &link::own_request(back, lang, true), ttl).await?;
    let intent = LinkIntent {
        sid: session.sid.clone(),
        account_id: session.account_id.clone(),
        upstream: form.upstream.clone(),
    };
    link::record(&app.store, &request, &intent, ttl).await?;
    tracing::info!(
        target: "sso_gateway::audit",
        actor = "self-service",
        action = "self-link-started",
        account = %session.account_id,
        sid = %session.sid,
        upstream = %form.upstream,
        "the account holder started linking another system"
    );
    // Not a redirect: the browser would check the upstream's login page against this form's
    // `form-action` (only the gateway). A page that moves on by itself (and says where) does
    // not need JavaScript either.
    let (system_vi, system_en) = app.broker.names(&form.upstream);
    let html = web::render(
        "account_link_start.html",
        json!({
            "lang": lang.code(),
            "href": format!("/upstream/{}/login?request={request}&lang={}", form.upstream, lang.code()),
            "system_vi": system_vi,
            "system_en": system_en,
        }),
    );
    Ok(web::html_response(StatusCode::OK, html, web::CSP_PAGE))
}

#[derive(Debug, Deserialize)]
pub struct UnlinkQuery {
    #[serde(default)]
    upstream: String,
    #[serde(default)]
    subject: String,
    lang: Option<Lang>,
}

/// GET `/account/unlink`: the confirmation step. Changes nothing.
pub async fn confirm_unlink(
    State(app): State<AccountPageState>,
    headers: HeaderMap,
    web::params::Query(q): web::params::Query<UnlinkQuery>,
) -> Response {
    match unlink_page(&app, &headers, &q).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn unlink_page(
    app: &AccountPageState,
    headers: &HeaderMap,
    q: &UnlinkQuery,
) -> Result<Response, AccountPageError> {
    let session = session(app, headers).await?;
    let account = account_of(app, &session).await?;
    let links = app.accounts.links_of(&account.id).await?;
    let upstreams = upstream_names(app);
    let link = unlinkable(&links, &q.upstream, &q.subject).map_err(|e| match e {
        Unlinkable::NotLinked => AccountPageError::NotLinked,
        Unlinkable::LastLink => AccountPageError::LastLink,
    })?;
    let o = overview(&account, std::slice::from_ref(link), &upstreams);
    let lang = q.lang.unwrap_or_default();
    let html = web::render(
        "account_unlink.html",
        json!({
            "lang": lang.code(),
            "link": o.links.first(),
            "current": session.upstream == link.upstream && session.upstream_subject == link.subject,
            "csrf": session.csrf,
            "cancel_href": account_url(lang, ""),
        }),
    );
    Ok(web::html_response(StatusCode::OK, html, web::CSP_PAGE))
}

#[derive(Debug, Deserialize)]
pub struct UnlinkForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    upstream: String,
    #[serde(default)]
    subject: String,
    lang: Option<Lang>,
}

/// POST `/account/unlink`: removes the link (never the last one), audited; other sessions
/// made from that identity end everywhere (back-channel logout included).
pub async fn unlink(
    State(app): State<AccountPageState>,
    headers: HeaderMap,
    web::params::Form(form): web::params::Form<UnlinkForm>,
) -> Response {
    match do_unlink(&app, &headers, &form).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn do_unlink(
    app: &AccountPageState,
    headers: &HeaderMap,
    form: &UnlinkForm,
) -> Result<Response, AccountPageError> {
    let session = session(app, headers).await?;
    check_token(&session, &form.csrf)?;
    let account = account_of(app, &session).await?;
    let by = json!({ "sid": session.sid, "upstream": session.upstream, "subject": session.upstream_subject });
    let now = app.clock.now();
    match app.accounts.unlink_own(&account.id, &form.upstream, &form.subject, &by, now).await? {
        SelfUnlink::Unlinked => {}
        SelfUnlink::NotLinked => return Err(AccountPageError::NotLinked),
        SelfUnlink::LastLink => return Err(AccountPageError::LastLink),
    }
    tracing::info!(
        target: "sso_gateway::audit",
        actor = "self-service",
        action = "self-unlink",
        account = %account.id,
        sid = %session.sid,
        upstream = %form.upstream,
        "the account holder unlinked a system"
    );
    // Sessions logged in with the identity just unlinked end (a person unlinking a login they
    // no longer trust expects that); the one asking stays.
    let made_from = match UpstreamId::parse(&form.upstream) {
        Ok(upstream) => app.sessions.from_upstream_subject(&account.id, &upstream, &form.subject).await?,
        // No upstream has such an id (and so no session was made from it).
        Err(_) => Vec::new(),
    };
    for s in made_from.iter().filter(|s| s.sid != session.sid) {
        crate::logout::end_session(&app.logout, s, "its identity was unlinked by the account holder").await?;
    }
    let lang = form.lang.unwrap_or_default();
    Ok(Redirect::to(&account_url(lang, &format!("&unlinked={}", form.upstream))).into_response())
}
