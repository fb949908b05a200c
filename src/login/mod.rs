//! Login: the one place that knows the whole sequence. It takes the broker's verified
//! upstream identity, resolves it to a unified account, starts the SSO session and resumes
//! the parked authorization request in the provider — after asking the person to confirm a
//! proof-of-ownership link when the login suggests one (`link_confirm`).
//!
//! Its state ([`LoginState`]) holds the four parts it joins. The handlers are thin over plain
//! functions with unit tests: [`browser`] (what the browser brings: its session and a link it
//! started), [`admit`] (the resolved account and the browser's previous session → refuse, or
//! start a session and perhaps check for a proof-of-ownership link) and [`start_session`] (the
//! previous session ends, a fresh one starts). Failures are [`LoginError`]s, mapped to pages
//! once in `error.rs`.
//!
//! Must not: hold protocol details of either side (they live in `broker` and `provider`) or
//! read another part's configuration (an upstream's linking trust comes with its identity).

mod error;
mod link_confirm;

use std::time::Duration;

use axum::Router;
use axum::extract::{FromRef, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use crate::account::link as account_link;
use crate::accounts::{AccountStatus, AccountStore, LinkPolicy};
use crate::broker::{
    Broker, BrokerError, CallbackParams, Endpoint, PasswordForm, PasswordOutcome, UpstreamIdentity,
};
use crate::clock::Clock;
use crate::logout::LogoutState;
use crate::provider::{ProviderState, authorize, store_records};
use crate::session::{Sessions, SsoSession};
use crate::state::StateStore;
use crate::web::ErrorPage;
use crate::web::client_ip::{ClientIp, TrustedProxies};
use crate::web::params::{Form, Query};
pub use error::LoginError;

/// What login's handlers get (cheap to clone: one reference count).
pub type LoginState = crate::PartState<LoginParts>;

/// The parts login joins.
pub struct LoginParts {
    /// Finishes upstream logins into verified identities.
    pub broker: Broker,
    /// Resolves identities to accounts; proof-of-ownership links.
    pub accounts: AccountStore,
    pub sessions: Sessions,
    /// Link offers, and the parked requests login resumes.
    pub store: StateStore,
    pub clock: Clock,
    /// Answers the parked request once logged in (codes are the provider's).
    pub provider: ProviderState,
    /// Carries out what an upstream POSTs to its callback (CAS single logout).
    pub logout: LogoutState,
    /// `accounts.proof_window`.
    pub proof_window: Duration,
    /// How long a link offer waits (`lifetimes.login_attempt`).
    pub offer_ttl: Duration,
}

pub fn router<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    LoginState: FromRef<S>,
    TrustedProxies: FromRef<S>,
{
    Router::new()
        // The connector's callback: the browser's return (GET) and what the upstream POSTs
        // there (CAS single logout).
        .route("/upstream/{id}/callback", get(callback).post(callback_post))
        // The gateway's own login form of password upstreams (LDAP); the broker shows it at
        // GET on the same path.
        .route("/upstream/{id}/login", post(password_login))
        // Proof-of-ownership linking, confirmed by the person (see `link_confirm`).
        .route(link_confirm::PATH, get(link_confirm::show).post(link_confirm::decide))
}

/// A redirect upstream (OIDC, CAS) sent the browser back.
async fn callback(
    State(app): State<LoginState>,
    Path(upstream): Path<String>,
    Query(params): Query<CallbackParams>,
    headers: HeaderMap,
) -> Response {
    let finished = match Broker::upstream_id(&upstream) {
        Ok(id) => app.broker.finish(&id, &params, &headers).await,
        Err(e) => Err((e, None)),
    };
    complete(app, &upstream, finished, headers).await
}

/// An upstream POSTed to its callback (a CAS server's single-logout request, at the service
/// URL): its connector reads it; a logout is `logout`'s to carry out.
async fn callback_post(
    State(app): State<LoginState>,
    Path(upstream): Path<String>,
    ClientIp(from): ClientIp,
    body: axum::body::Bytes,
) -> Response {
    crate::logout::upstream_message(&app.logout, &upstream, Endpoint::Callback, from, &body).await
}

/// The password form of a directory upstream was posted.
async fn password_login(
    State(app): State<LoginState>,
    Path(upstream): Path<String>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    Form(form): Form<PasswordForm>,
) -> Response {
    let outcome = match Broker::upstream_id(&upstream) {
        Ok(id) => app.broker.finish_password(&id, &form, &headers, ip).await,
        Err(e) => PasswordOutcome::Failed(e, None),
    };
    match outcome {
        PasswordOutcome::Verified(identity, parked_id) => {
            complete(app, &upstream, Ok((*identity, parked_id)), headers).await
        }
        PasswordOutcome::Retry { mut page, request } => {
            if let Ok(Some(req)) = store_records::parked(&app.store, &request).await {
                crate::web::allow_form_targets(&mut page, &[&req.redirect_uri]);
            }
            page
        }
        PasswordOutcome::Failed(e, retry) => complete(app, &upstream, Err((e, retry)), headers).await,
    }
}

/// What login does with the account an identity resolved to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission<'p> {
    /// The account may not log in (locked, or merged away): the person is told, no session
    /// starts and the browser's previous session stays.
    Refused,
    /// A fresh session starts (any previous one in the browser ends). `proof_check`: the
    /// browser's previous session, a recent login of another account, which may prove
    /// ownership of a pending number (the accounts decide whether it does; the person confirms).
    Admitted { proof_check: Option<&'p SsoSession> },
}

/// Decides a login of account `account_id` (status `status`) at `now`, in a browser whose
/// session was `previous`.
pub fn admit<'p>(
    account_id: &str,
    status: &AccountStatus,
    previous: Option<&'p SsoSession>,
    now: i64,
    proof_window: Duration,
    bound_link: bool,
) -> Admission<'p> {
    if *status != AccountStatus::Active {
        return Admission::Refused;
    }
    let proof_check = previous.filter(|p| {
        p.account_id != account_id && (bound_link || now - p.auth_time <= proof_window.as_secs() as i64)
    });
    Admission::Admitted { proof_check }
}

/// How far the account rules trust the national ID number of this identity.
fn link_policy(identity: &UpstreamIdentity) -> LinkPolicy {
    LinkPolicy { trust_national_id: identity.trusts_national_id }
}

/// What a browser brings to a login besides the identity: its session, and a link it
/// started from the account page.
#[derive(Debug, Default)]
pub struct Browser {
    pub previous: Option<SsoSession>,
    pub link: Option<account_link::LinkIntent>,
}

/// Reads the browser's session (one that cannot be read counts as none) and takes the link
/// intent of the parked request `parked_id` (only a browser with a session can have started
/// one, so none is taken without).
pub async fn browser(
    sessions: &Sessions,
    store: &StateStore,
    headers: &HeaderMap,
    parked_id: &str,
) -> Result<Browser, LoginError> {
    let previous = sessions.current(headers).await.ok().flatten();
    let link = match &previous {
        Some(_) => {
            account_link::take(store, parked_id).await.map_err(LoginError::store("reading a link intent"))?
        }
        None => None,
    };
    Ok(Browser { previous, link })
}

/// Starts the session of a login: a login always starts a fresh session, and any `previous`
/// one in this browser ends (a failure to end it is logged, not fatal).
pub async fn start_session(
    sessions: &Sessions,
    previous: Option<&SsoSession>,
    session: SsoSession,
) -> Result<(SsoSession, HeaderValue), LoginError> {
    if let Some(previous) = previous
        && let Err(e) = sessions.end(previous).await
    {
        tracing::warn!(error = %e, "could not end the previous session");
    }
    sessions.create(session).await.map_err(LoginError::store("creating a session"))
}

/// An upstream login that failed: logged, counted (for configured upstreams only, so that a
/// made-up id cannot grow the metric) and shown with the broker's page.
fn upstream_failed(broker: &Broker, upstream: &str, e: &BrokerError, retry: Option<String>) -> Response {
    tracing::warn!(upstream = %upstream, error = %e, "upstream login failed");
    if broker.has_upstream(upstream) {
        metrics::counter!("sso_upstream_login_failures_total", "upstream" => upstream.to_string())
            .increment(1);
    }
    e.page(retry).into_response()
}

/// `response` with the new session's cookie.
fn with_cookie(mut response: Response, cookie: HeaderValue) -> Response {
    response.headers_mut().append(header::SET_COOKIE, cookie);
    response
}

/// Identity → account → session → the parked request, whatever the protocol.
async fn complete(
    app: LoginState,
    upstream: &str,
    finished: Result<(UpstreamIdentity, String), (BrokerError, Option<String>)>,
    headers: HeaderMap,
) -> Response {
    match finished {
        Ok((identity, parked_id)) => {
            log_in(&app, &identity, &parked_id, &headers).await.unwrap_or_else(IntoResponse::into_response)
        }
        Err((e, retry)) => upstream_failed(&app.broker, upstream, &e, retry),
    }
}

/// The login of a verified `identity` for the parked request `parked_id`.
async fn log_in(
    app: &LoginState,
    identity: &UpstreamIdentity,
    parked_id: &str,
    headers: &HeaderMap,
) -> Result<Response, LoginError> {
    let now = app.clock.now();
    let account = app
        .accounts
        .resolve_login(&identity.upstream, &identity.subject, &identity.profile, link_policy(identity), now)
        .await?
        .account;
    let Browser { previous, link } = browser(&app.sessions, &app.store, headers, parked_id).await?;
    let admission =
        admit(&account.id, &account.status, previous.as_ref(), now, app.proof_window, link.is_some());
    let Admission::Admitted { proof_check } = admission else { return Err(LoginError::Refused) };
    let candidate = match proof_check {
        Some(previous) => proof_link(app, previous, &account.id, now).await,
        None => None,
    };
    if let (Some(intent), Some(previous)) = (&link, &previous)
        && let Some(done) =
            finish_link(app, intent, previous, &account, identity, candidate.is_some(), parked_id).await
    {
        return Ok(done);
    }
    let (session, cookie) =
        start_session(&app.sessions, previous.as_ref(), new_session(identity, &account.id, now)).await?;
    tracing::info!(upstream = %identity.upstream, sid = %session.sid, "login completed");
    metrics::counter!("sso_logins_total", "upstream" => identity.upstream.clone()).increment(1);
    // A possible link is offered before the application's request is answered; both answers
    // of the confirmation page continue to it.
    if let Some((candidate, other)) = candidate
        && let Some(response) = link_confirm::offer(app, &session, &candidate, other, parked_id).await
    {
        return Ok(with_cookie(response, cookie));
    }
    Ok(with_cookie(resume(app, parked_id, &session).await, cookie))
}

/// Proof of ownership: the browser's previous session is a recent login of an account whose
/// number is pending (from an untrusted upstream), and the person has just logged in afresh to
/// the account holding that number verified. Nothing is merged here: the person is asked first
/// (a kiosk's previous user may have declared someone else's number), see `link_confirm`. A
/// failure to check offers nothing.
async fn proof_link(
    app: &LoginState,
    previous: &SsoSession,
    account_id: &str,
    now: i64,
) -> Option<(crate::accounts::ProofCandidate, link_confirm::OtherLogin)> {
    match app.accounts.proof_candidate(&previous.account_id, account_id, now).await {
        Ok(Some(c)) => Some((
            c,
            link_confirm::OtherLogin { upstream: previous.upstream.clone(), auth_time: previous.auth_time },
        )),
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(error = %e, "could not check for a proof-of-ownership link");
            None
        }
    }
}

/// The session a login of `account_id` by `identity` starts at `now` (the session store
/// fills in its id and anti-forgery token).
fn new_session(identity: &UpstreamIdentity, account_id: &str, now: i64) -> SsoSession {
    SsoSession {
        sid: String::new(),
        account_id: account_id.to_string(),
        upstream: identity.upstream.clone(),
        upstream_subject: identity.subject.clone(),
        upstream_sid: identity.upstream_session.clone(),
        auth_time: now,
        acr: identity.acr.clone(),
        amr: identity.amr.clone(),
        created_at: now,
        csrf: String::new(),
    }
}

/// A login made to link another system from the account page (`intent`), while the browser's
/// session was `previous`: what the linking rules made of it decides. The current session
/// continues unless a proof-of-ownership confirmation is due (then None: the login goes on as
/// usual and the person is asked).
async fn finish_link(
    app: &LoginState,
    intent: &account_link::LinkIntent,
    previous: &SsoSession,
    account: &crate::accounts::Account,
    identity: &UpstreamIdentity,
    proof: bool,
    parked_id: &str,
) -> Option<Response> {
    let session_account = app.accounts.find_by_id(&previous.account_id).await.ok().flatten();
    let decision = account_link::decide(
        intent,
        (&previous.sid, &previous.account_id),
        session_account.as_ref(),
        account,
        proof,
    );
    tracing::info!(
        target: "sso_gateway::audit",
        actor = "self-service",
        action = "self-link",
        account = %previous.account_id,
        sid = %previous.sid,
        upstream = %identity.upstream,
        decision = ?decision,
        "a login to link another system came back"
    );
    let (system_vi, system_en) = app.broker.names(&identity.upstream);
    let refusal = match decision {
        account_link::LinkDecision::AskForProof => return None,
        account_link::LinkDecision::Linked => {
            let detail = serde_json::json!({
                "upstream": identity.upstream,
                "subject": identity.subject,
                "sid": previous.sid,
            });
            let reason =
                "the account holder linked this system from the account page; the linking rules joined it";
            if let Err(e) = app
                .accounts
                .audit("self-service", "self-link", &account.id, Some(reason), &detail, app.clock.now())
                .await
            {
                tracing::error!(error = %e, "could not write the audit line of a self-service link");
            }
            None
        }
        account_link::LinkDecision::SessionChanged => Some(crate::account::AccountPageError::SessionChanged),
        account_link::LinkDecision::OtherAccount => Some(crate::account::AccountPageError::OtherAccount {
            upstream: identity.upstream.clone(),
            system_vi,
            system_en,
        }),
        account_link::LinkDecision::ProveTheOtherWay => {
            let (verified_vi, verified_en) = app.broker.names(&previous.upstream);
            Some(crate::account::AccountPageError::ProveTheOtherWay {
                upstream: identity.upstream.clone(),
                system_vi,
                system_en,
                verified_vi,
                verified_en,
            })
        }
    };
    // The link request is answered here either way; the browser's session stays as it was.
    let parked = store_records::take_parked(&app.store, parked_id).await.ok().flatten();
    Some(match (refusal, parked) {
        (Some(refusal), _) => refusal.into_response(),
        (None, Some(req)) => {
            Redirect::to(&crate::account::return_path(app.provider.issuer(), &req)).into_response()
        }
        (None, None) => Redirect::to(crate::account::PATH).into_response(),
    })
}

/// Answers the parked authorization request `parked_id` from `session`: a code for the RP,
/// unless the login is below the assurance the request requires (then it stays parked and the
/// person may choose a system that reaches it).
async fn resume(app: &LoginState, parked_id: &str, session: &SsoSession) -> Response {
    if let Ok(Some(req)) = store_records::parked(&app.store, parked_id).await
        && !authorize::acr_satisfied(&req, session)
    {
        tracing::info!(upstream = %session.upstream, acr = %session.acr, "login below the required assurance");
        return BrokerError::InsufficientAssurance
            .page(Some(crate::broker::LoginLink::chooser(parked_id).into()))
            .into_response();
    }
    match store_records::take_parked(&app.store, parked_id).await {
        // The gateway's own pages: back to the account page.
        Ok(Some(req)) if crate::account::is_own_request(&req) => {
            Redirect::to(&crate::account::return_path(app.provider.issuer(), &req)).into_response()
        }
        // The request is trusted (validated when parked): a failure goes back to the RP.
        Ok(Some(req)) => match authorize::issue_code(&app.provider, &req, session).await {
            Ok(r) => r,
            Err(e) => authorize::store_failure(&app.provider, &authorize::ReturnTo::of(&req), e),
        },
        // Logged in, but the application's request is gone: say so instead of guessing.
        Ok(None) => ErrorPage::new(StatusCode::OK, "Bạn đã đăng nhập", "You are logged in")
            .detail(
                "Yêu cầu của ứng dụng đã hết hạn. Hãy quay lại ứng dụng và chọn Đăng nhập lần nữa; bạn sẽ không phải nhập lại mật khẩu.",
                "The application's request expired. Go back to the application and log in again; you will not need your password.",
            )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "state store failure resuming a request");
            ErrorPage::for_store_error(&e).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 50_000;
    const WINDOW: Duration = Duration::from_secs(600);

    /// The browser's previous session: account `account`, logged in `age` seconds ago.
    fn previous(account: &str, age: i64) -> SsoSession {
        SsoSession::example("sid-0", account, NOW - age, "urn:sso-gateway:acr:password")
    }

    #[test]
    fn a_locked_or_merged_account_is_refused() {
        for status in [AccountStatus::Locked, AccountStatus::MergedInto("a2".into())] {
            assert_eq!(admit("a1", &status, None, NOW, WINDOW, false), Admission::Refused, "{status:?}");
            let p = previous("a9", 10);
            assert_eq!(admit("a1", &status, Some(&p), NOW, WINDOW, false), Admission::Refused, "{status:?}");
        }
    }

    #[test]
    fn a_first_login_in_the_browser_starts_a_session_with_nothing_to_prove() {
        let admitted = admit("a1", &AccountStatus::Active, None, NOW, WINDOW, false);
        assert_eq!(admitted, Admission::Admitted { proof_check: None });
    }

    #[test]
    fn a_recent_login_of_another_account_is_checked_for_proof_of_ownership() {
        let p = previous("a9", 600);
        let admitted = admit("a1", &AccountStatus::Active, Some(&p), NOW, WINDOW, false);
        assert_eq!(admitted, Admission::Admitted { proof_check: Some(&p) });
    }

    #[test]
    fn a_link_started_from_the_account_page_is_checked_whatever_the_session_age() {
        let old = previous("a9", 601);
        assert_eq!(
            admit("a1", &AccountStatus::Active, Some(&old), NOW, WINDOW, true),
            Admission::Admitted { proof_check: Some(&old) }
        );
        let same = previous("a1", 601);
        assert_eq!(
            admit("a1", &AccountStatus::Active, Some(&same), NOW, WINDOW, true),
            Admission::Admitted { proof_check: None }
        );
    }

    #[test]
    fn an_older_login_or_one_of_the_same_account_proves_nothing() {
        let old = previous("a9", 601);
        assert_eq!(
            admit("a1", &AccountStatus::Active, Some(&old), NOW, WINDOW, false),
            Admission::Admitted { proof_check: None }
        );
        let same = previous("a1", 5);
        assert_eq!(
            admit("a1", &AccountStatus::Active, Some(&same), NOW, WINDOW, false),
            Admission::Admitted { proof_check: None }
        );
    }

    fn sessions(store: &StateStore) -> Sessions {
        Sessions::new(store.clone(), Clock::system(), &crate::config::SessionSettings::default(), false)
    }

    /// The request headers of a browser holding the cookie `set_cookie` sets.
    fn holding(set_cookie: &HeaderValue) -> HeaderMap {
        let pair = set_cookie.to_str().unwrap().split(';').next().unwrap().to_string();
        HeaderMap::from_iter([(header::COOKIE, HeaderValue::from_str(&pair).unwrap())])
    }

    fn intent(sid: &str) -> account_link::LinkIntent {
        account_link::LinkIntent { sid: sid.into(), account_id: "a9".into(), upstream: "vneid".into() }
    }

    #[tokio::test]
    async fn a_browser_without_a_session_brings_nothing_and_its_link_intent_stays() {
        let store = StateStore::memory();
        account_link::record(&store, "req-1", &intent("sid-x"), WINDOW).await.unwrap();
        let b = browser(&sessions(&store), &store, &HeaderMap::new(), "req-1").await.unwrap();
        assert!(b.previous.is_none() && b.link.is_none(), "{b:?}");
        assert!(account_link::take(&store, "req-1").await.unwrap().is_some(), "not taken");
    }

    #[tokio::test]
    async fn a_browser_with_a_session_brings_it_and_takes_the_link_it_started_once() {
        let store = StateStore::memory();
        let s = sessions(&store);
        let now = Clock::system().now();
        let (created, cookie) = s.create(SsoSession::example("", "a9", now, "acr")).await.unwrap();
        account_link::record(&store, "req-1", &intent(&created.sid), WINDOW).await.unwrap();
        let b = browser(&s, &store, &holding(&cookie), "req-1").await.unwrap();
        assert_eq!(b.previous.map(|p| p.sid), Some(created.sid.clone()));
        assert_eq!(b.link, Some(intent(&created.sid)));
        let again = browser(&s, &store, &holding(&cookie), "req-1").await.unwrap();
        assert!(again.previous.is_some() && again.link.is_none(), "single use: {again:?}");
    }

    #[tokio::test]
    async fn a_login_ends_the_browsers_previous_session_and_starts_a_fresh_one() {
        let store = StateStore::memory();
        let s = sessions(&store);
        let now = Clock::system().now();
        let (previous, old_cookie) = s.create(SsoSession::example("", "a9", now, "acr")).await.unwrap();
        let (session, cookie) =
            start_session(&s, Some(&previous), SsoSession::example("", "a1", now, "acr")).await.unwrap();
        assert_ne!(session.sid, previous.sid);
        assert!(s.current(&holding(&old_cookie)).await.unwrap().is_none(), "the previous session ended");
        let current = s.current(&holding(&cookie)).await.unwrap().unwrap();
        assert_eq!((current.sid, current.account_id.as_str()), (session.sid, "a1"));
    }

    #[test]
    fn the_new_sessions_cookie_is_added_to_whatever_answers_the_login() {
        let mut page = Redirect::to("/x").into_response();
        page.headers_mut().append(header::SET_COOKIE, HeaderValue::from_static("lang=vi"));
        let answered = with_cookie(page, HeaderValue::from_static("sso=abc"));
        let cookies: Vec<_> = answered.headers().get_all(header::SET_COOKIE).iter().collect();
        assert_eq!(cookies, [HeaderValue::from_static("lang=vi"), HeaderValue::from_static("sso=abc")]);
    }

    #[test]
    fn a_new_session_records_the_login_and_the_upstreams_trust_goes_to_linking() {
        let identity = |trusts| UpstreamIdentity {
            upstream: "vneid".into(),
            subject: "s-42".into(),
            profile: Default::default(),
            acr: "urn:sso-gateway:acr:vneid-level2".into(),
            amr: vec!["hwk".into()],
            upstream_session: Some("up-sid".into()),
            trusts_national_id: trusts,
        };
        let session = new_session(&identity(true), "a1", NOW);
        assert_eq!(session.account_id, "a1");
        assert_eq!((session.upstream.as_str(), session.upstream_subject.as_str()), ("vneid", "s-42"));
        assert_eq!(session.upstream_sid.as_deref(), Some("up-sid"));
        assert_eq!((session.auth_time, session.created_at), (NOW, NOW));
        assert_eq!(session.acr, "urn:sso-gateway:acr:vneid-level2");
        assert_eq!(session.amr, vec!["hwk".to_string()]);
        assert!(link_policy(&identity(true)).trust_national_id);
        assert!(!link_policy(&identity(false)).trust_national_id);
    }
}
