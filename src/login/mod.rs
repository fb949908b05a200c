//! Login: the one place that knows the whole sequence. It takes the broker's verified
//! upstream identity, resolves it to a unified account, starts the SSO session and resumes
//! the parked authorization request in the provider — after asking the person to confirm a
//! proof-of-ownership link when the login suggests one (`link_confirm`).
//!
//! Must not: hold protocol details of either side (they live in `broker` and `provider`).

pub mod client_ip;
mod error;
mod link_confirm;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use crate::account::link as account_link;
use crate::accounts::LinkPolicy;
use crate::app::AppState;
use crate::broker::{BrokerError, CallbackParams, Endpoint, PasswordForm, PasswordOutcome, UpstreamIdentity};
use crate::provider::{authorize, records};
use crate::session::SsoSession;
use crate::web::ErrorPage;
use crate::web::params::{Form, Query};
pub use client_ip::ClientIp;

pub fn router() -> Router<AppState> {
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
    State(app): State<AppState>,
    Path(upstream): Path<String>,
    Query(params): Query<CallbackParams>,
    headers: HeaderMap,
) -> Response {
    let finished = app.broker.finish(&upstream, &params, &headers).await;
    complete(app, &upstream, finished, headers).await
}

/// An upstream POSTed to its callback (a CAS server's single-logout request, at the service
/// URL): its connector reads it; a logout is `logout`'s to carry out.
async fn callback_post(
    State(app): State<AppState>,
    Path(upstream): Path<String>,
    ClientIp(from): ClientIp,
    body: axum::body::Bytes,
) -> Response {
    crate::logout::upstream_message(&app, &upstream, Endpoint::Callback, from, &body).await
}

/// The password form of a directory upstream was posted.
async fn password_login(
    State(app): State<AppState>,
    Path(upstream): Path<String>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    Form(form): Form<PasswordForm>,
) -> Response {
    match app.broker.finish_password(&upstream, &form, &headers, ip).await {
        PasswordOutcome::Verified(identity, request_id) => {
            complete(app, &upstream, Ok((*identity, request_id)), headers).await
        }
        PasswordOutcome::Retry(form_again) => form_again,
        PasswordOutcome::Failed(e, retry) => complete(app, &upstream, Err((e, retry)), headers).await,
    }
}

/// Identity → account → session → the parked request, whatever the protocol.
async fn complete(
    app: AppState,
    upstream: &str,
    finished: Result<(UpstreamIdentity, String), (BrokerError, Option<String>)>,
    headers: HeaderMap,
) -> Response {
    let (identity, request_id) = match finished {
        Ok(v) => v,
        Err((e, retry)) => {
            tracing::warn!(upstream = %upstream, error = %e, "upstream login failed");
            if app.broker.has_upstream(upstream) {
                metrics::counter!("sso_upstream_login_failures_total", "upstream" => upstream.to_string())
                    .increment(1);
            }
            return e.page(retry).into_response();
        }
    };
    let now = app.clock.now();
    let policy = app
        .settings
        .upstreams
        .iter()
        .find(|u| u.id == identity.upstream)
        .map(|u| LinkPolicy { trust_national_id: u.linking.trust_national_id })
        .unwrap_or_default();
    let resolution = match app
        .accounts
        .resolve_login(&identity.upstream, &identity.subject, &identity.profile, policy, now)
        .await
    {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "account store failure during login");
            return ErrorPage::unavailable().into_response();
        }
    };
    let account = resolution.account;
    let previous = app.sessions.current(&headers).await.ok().flatten();
    // A link started on the account page (only a browser with a session can have started one).
    let link = match &previous {
        Some(_) => match account_link::take(&app.store, &request_id).await {
            Ok(link) => link,
            Err(e) => {
                tracing::error!(error = %e, "state store failure reading a link intent");
                return ErrorPage::for_store_error(&e).into_response();
            }
        },
        None => None,
    };
    if account.status != crate::accounts::AccountStatus::Active {
        return ErrorPage::new(StatusCode::FORBIDDEN, "Tài khoản đang bị khoá", "The account is locked")
            .detail(
                "Tài khoản của bạn hiện không thể đăng nhập. Vui lòng liên hệ tổng đài 1022.",
                "Your account cannot log in at the moment. Please call the 1022 hotline.",
            )
            .into_response();
    }
    // Proof of ownership: this browser's session is a recent login of an account whose number
    // is pending (from an untrusted upstream), and the person has just logged in afresh to the
    // account holding that number verified. Nothing is merged here: the person is asked first
    // (a kiosk's previous user may have declared someone else's number), see `link_confirm`.
    // A link started on the account page is bound to that session: its age does not matter.
    let mut candidate = None;
    if let Some(previous) = &previous
        && previous.account_id != account.id
        && (link.is_some() || now - previous.auth_time <= app.settings.accounts.proof_window.as_secs() as i64)
    {
        match app.accounts.proof_candidate(&previous.account_id, &account.id, now).await {
            Ok(Some(c)) => candidate = Some((c, previous.upstream.clone(), previous.auth_time)),
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "could not check for a proof-of-ownership link"),
        }
    }
    if let (Some(intent), Some(previous)) = (&link, &previous)
        && let Some(done) =
            finish_link(&app, intent, previous, &account, &identity, candidate.is_some(), &request_id).await
    {
        return done;
    }
    // A login always starts a fresh session; any previous one in this browser ends.
    if let Some(previous) = previous
        && let Err(e) = app.sessions.end(&previous).await
    {
        tracing::warn!(error = %e, "could not end the previous session");
    }
    let session = SsoSession {
        sid: String::new(),
        account_id: account.id.clone(),
        upstream: identity.upstream.clone(),
        upstream_subject: identity.subject.clone(),
        upstream_sid: identity.upstream_session.clone(),
        auth_time: now,
        acr: identity.acr.clone(),
        amr: identity.amr.clone(),
        created_at: now,
        csrf: String::new(),
    };
    let (session, cookie) = match app.sessions.create(session).await {
        Ok(v) => v,
        Err(e) => {
            tracing::error!(error = %e, "state store failure creating a session");
            return ErrorPage::for_store_error(&e).into_response();
        }
    };
    tracing::info!(upstream = %identity.upstream, sid = %session.sid, "login completed");
    metrics::counter!("sso_logins_total", "upstream" => identity.upstream.clone()).increment(1);
    // A possible link is offered before the application's request is answered; both answers
    // of the confirmation page continue to it.
    if let Some((candidate, other_upstream, other_auth_time)) = candidate
        && let Some(mut response) = link_confirm::offer(
            &app,
            &session,
            &candidate,
            link_confirm::OtherLogin { upstream: other_upstream, auth_time: other_auth_time },
            &request_id,
        )
        .await
    {
        response.headers_mut().append(header::SET_COOKIE, cookie);
        return response;
    }
    let mut response = resume(&app, &request_id, &session).await;
    response.headers_mut().append(header::SET_COOKIE, cookie);
    response
}

/// A login made to link another system from the account page (`intent`), while the browser's
/// session was `previous`: what the linking rules made of it decides. The current session
/// continues unless a proof-of-ownership confirmation is due (then None: the login goes on as
/// usual and the person is asked).
async fn finish_link(
    app: &AppState,
    intent: &account_link::LinkIntent,
    previous: &SsoSession,
    account: &crate::accounts::Account,
    identity: &UpstreamIdentity,
    proof: bool,
    request_id: &str,
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
    let parked = records::take_parked(&app.store, request_id).await.ok().flatten();
    Some(match (refusal, parked) {
        (Some(refusal), _) => refusal.into_response(),
        (None, Some(req)) => Redirect::to(&crate::account::return_path(app.issuer(), &req)).into_response(),
        (None, None) => Redirect::to(crate::account::PATH).into_response(),
    })
}

/// Answers the parked authorization request `request_id` from `session`: a code for the RP,
/// unless the login is below the assurance the request requires (then it stays parked and the
/// person may choose a system that reaches it).
async fn resume(app: &AppState, request_id: &str, session: &SsoSession) -> Response {
    if let Ok(Some(req)) = records::parked(&app.store, request_id).await
        && !authorize::acr_satisfied(&req, session)
    {
        tracing::info!(upstream = %session.upstream, acr = %session.acr, "login below the required assurance");
        return BrokerError::InsufficientAssurance
            .page(Some(format!("/login?request={request_id}")))
            .into_response();
    }
    match records::take_parked(&app.store, request_id).await {
        // The gateway's own pages: back to the account page.
        Ok(Some(req)) if crate::account::is_own_request(&req) => {
            Redirect::to(&crate::account::return_path(app.issuer(), &req)).into_response()
        }
        // The request is trusted (validated when parked): a failure goes back to the RP.
        Ok(Some(req)) => match authorize::issue_code(app, &req, session).await {
            Ok(r) => r,
            Err(e) => authorize::store_failure(app, &authorize::ReturnTo::of(&req), e),
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
