//! Proof-of-ownership linking, confirmed by the person.
//!
//! When a verified login follows, in the same browser and within `accounts.proof_window`, a
//! login of an account whose number is only pending (declared to an untrusted upstream), the
//! two may be one person's — or a previous user of a shared computer declared this person's
//! number. So nothing is merged at login: an offer is recorded in the state store, bound to the
//! new session and to exactly that pair of accounts, for `lifetimes.login_attempt`, and the
//! person is asked at [`PATH`]. The page shows both logins (system, name, the number's last
//! three digits, time) and what linking means. Its form carries the session's anti-forgery
//! token; answering takes the offer (single use), so a replayed form links nothing. Declining,
//! or never answering, links nothing. Both answers continue to the application's parked
//! request. The offer, the link and the refusal are written to the accounts' audit log and
//! as a tracing line with target `sso_gateway::audit`.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;
use subtle::ConstantTimeEq;

use super::LoginState;
use super::error::LinkConfirmError;
use crate::accounts::ProofCandidate;
use crate::session::SsoSession;
use crate::state::hashed_key;
use crate::web;

/// Where the person confirms or declines a link (GET shows, POST answers).
pub const PATH: &str = "/account/link/confirm";

/// The earlier login in the browser, of the pending account.
pub struct OtherLogin {
    pub upstream: String,
    pub auth_time: i64,
}

/// A link waiting for the person's answer.
#[derive(Debug, Serialize, Deserialize)]
struct LinkOffer {
    /// The session (the verified login) the offer belongs to.
    sid: String,
    /// The account carrying the number as pending, to be merged …
    pending: String,
    /// … into the account holding it verified (the session's account).
    verified: String,
    other_upstream: String,
    other_auth_time: i64,
    /// The parked authorization request both answers continue to.
    request: String,
    /// Checked against the injected clock, whatever the store's own expiry does.
    expires_at: i64,
}

fn offer_key(sid: &str) -> String {
    hashed_key("link-offer", sid)
}

/// Records the offer for the new `session` and returns the redirect to the confirmation page;
/// None when it could not be recorded (then nothing is linked and the login just continues).
pub async fn offer(
    app: &LoginState,
    session: &SsoSession,
    candidate: &ProofCandidate,
    other: OtherLogin,
    parked_id: &str,
) -> Option<Response> {
    let ttl = app.offer_ttl;
    let now = app.clock.now();
    let offer = LinkOffer {
        sid: session.sid.clone(),
        pending: candidate.pending.id.clone(),
        verified: candidate.verified.id.clone(),
        other_upstream: other.upstream,
        other_auth_time: other.auth_time,
        request: parked_id.to_string(),
        expires_at: now.saturating_add(ttl.as_secs() as i64),
    };
    if offer.verified != session.account_id {
        tracing::warn!("proof-of-ownership candidate is not the session's account; not offered");
        return None;
    }
    if let Err(e) = app.store.put_json(&offer_key(&session.sid), &offer, ttl).await {
        tracing::warn!(error = %e, "could not record a proof-of-ownership link offer; nothing linked");
        return None;
    }
    let reason = "a login of an account with this number pending preceded a verified login in the same browser; the person is asked";
    audit(app, "proof-link-offered", &offer, session, reason, now).await;
    Some(Redirect::to(PATH).into_response())
}

/// The offer waiting for `session`, if it is still live.
async fn live_offer(app: &LoginState, session: &SsoSession) -> Result<LinkOffer, LinkConfirmError> {
    let offer: Option<LinkOffer> = app.store.get_json(&offer_key(&session.sid)).await?;
    offer.filter(|o| is_for(o, session, app.clock.now())).ok_or(LinkConfirmError::NoOffer)
}

fn is_for(offer: &LinkOffer, session: &SsoSession, now: i64) -> bool {
    offer.sid == session.sid && offer.verified == session.account_id && now < offer.expires_at
}

/// GET: the confirmation page.
pub async fn show(State(app): State<LoginState>, headers: HeaderMap) -> Response {
    match page(&app, &headers).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn page(app: &LoginState, headers: &HeaderMap) -> Result<Response, LinkConfirmError> {
    let session = app.sessions.current(headers).await?.ok_or(LinkConfirmError::NotLoggedIn)?;
    let offer = live_offer(app, &session).await?;
    let pending = app.accounts.find_by_id(&offer.pending).await?.ok_or(LinkConfirmError::NoOffer)?;
    let verified = app.accounts.find_by_id(&offer.verified).await?.ok_or(LinkConfirmError::NoOffer)?;
    let html = web::render(
        "link_confirm.html",
        json!({
            "action": PATH,
            "csrf": session.csrf,
            "this": {
                "system": app.broker.display_name(&session.upstream),
                "name": verified.full_name,
                "number": web::masked_number(verified.national_id.as_deref()),
                "time": web::vietnam_time(session.auth_time),
            },
            "other": {
                "system": app.broker.display_name(&offer.other_upstream),
                "name": pending.full_name,
                "number": web::masked_number(pending.claimed_national_id.as_deref()),
                "time": web::vietnam_time(offer.other_auth_time),
            },
            "expires": web::vietnam_time(offer.expires_at),
        }),
    );
    Ok(web::html_response(StatusCode::OK, html, web::CSP_PAGE))
}

#[derive(Debug, Default, Deserialize)]
struct DecisionForm {
    csrf: Option<String>,
    decision: Option<String>,
}

/// POST: the person's answer. Links only on "link", with the session's token, while the offer
/// lives; takes the offer either way; then continues to the application.
pub async fn decide(State(app): State<LoginState>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    match answer(&app, &headers, &body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn answer(app: &LoginState, headers: &HeaderMap, body: &[u8]) -> Result<Response, LinkConfirmError> {
    let form: DecisionForm = serde_urlencoded::from_bytes(body).unwrap_or_default();
    let session = app.sessions.current(headers).await?.ok_or(LinkConfirmError::NotLoggedIn)?;
    let token_ok =
        form.csrf.as_deref().is_some_and(|c| bool::from(c.as_bytes().ct_eq(session.csrf.as_bytes())));
    if !token_ok {
        return Err(LinkConfirmError::Forged);
    }
    let link = match form.decision.as_deref() {
        Some("link") => true,
        Some("decline") => false,
        _ => return Err(LinkConfirmError::BadDecision),
    };
    // Single use: whoever takes the offer answers it; a replay finds nothing.
    let now = app.clock.now();
    let offer: Option<LinkOffer> = app.store.take_json(&offer_key(&session.sid)).await?;
    let offer = offer.filter(|o| is_for(o, &session, now)).ok_or(LinkConfirmError::NoOffer)?;
    if link {
        let context = json!({ "by": who(&session), "other_login": other_login(&offer) });
        match app.accounts.link_by_proof(&offer.pending, &offer.verified, &context, now).await? {
            Some(_) => {
                tracing::info!(
                    target: "sso_gateway::audit",
                    actor = "self-service",
                    action = "proof-link",
                    merged = %offer.pending,
                    into = %offer.verified,
                    sid = %session.sid,
                    upstream = %session.upstream,
                    other_upstream = %offer.other_upstream,
                    "accounts linked by proof of ownership: the person confirmed"
                );
            }
            None => {
                // The pair changed since the offer (merged, locked, conflicting data).
                tracing::warn!(
                    target: "sso_gateway::audit",
                    actor = "self-service",
                    action = "proof-link",
                    pending = %offer.pending,
                    verified = %offer.verified,
                    sid = %session.sid,
                    "confirmed link no longer possible; nothing linked"
                );
            }
        }
    } else {
        let reason = "the person, logged in to the verified account, declined: the other login in this browser was not theirs";
        audit(app, "proof-link-declined", &offer, &session, reason, now).await;
    }
    Ok(super::resume(app, &offer.request, &session).await)
}

/// Who answered: the verified login of this session.
fn who(session: &SsoSession) -> serde_json::Value {
    json!({ "upstream": session.upstream, "subject": session.upstream_subject, "sid": session.sid })
}

fn other_login(offer: &LinkOffer) -> serde_json::Value {
    json!({ "upstream": offer.other_upstream, "at": offer.other_auth_time })
}

/// An audit line in the accounts' log and the tracing audit line. A failure to write the log
/// is logged; it never links anything.
async fn audit(
    app: &LoginState,
    action: &str,
    offer: &LinkOffer,
    session: &SsoSession,
    reason: &str,
    now: i64,
) {
    tracing::info!(
        target: "sso_gateway::audit",
        actor = "self-service",
        action,
        pending = %offer.pending,
        verified = %offer.verified,
        sid = %session.sid,
        upstream = %session.upstream,
        other_upstream = %offer.other_upstream,
        reason
    );
    let detail = json!({
        "pending": offer.pending,
        "verified": offer.verified,
        "by": who(session),
        "other_login": other_login(offer),
    });
    if let Err(e) =
        app.accounts.audit("self-service", action, &offer.verified, Some(reason), &detail, now).await
    {
        tracing::error!(error = %e, action, "could not write the audit line of a link offer");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer() -> LinkOffer {
        LinkOffer {
            sid: "s1".into(),
            pending: "p".into(),
            verified: "v".into(),
            other_upstream: "brvt".into(),
            other_auth_time: 1,
            request: "r".into(),
            expires_at: 100,
        }
    }

    fn session(sid: &str, account: &str) -> SsoSession {
        SsoSession {
            sid: sid.into(),
            account_id: account.into(),
            upstream: "vneid".into(),
            upstream_subject: "x".into(),
            upstream_sid: None,
            auth_time: 50,
            acr: String::new(),
            amr: Vec::new(),
            created_at: 50,
            csrf: "t".into(),
        }
    }

    #[test]
    fn an_offer_answers_only_its_own_session_and_account_while_it_lives() {
        let o = offer();
        assert!(is_for(&o, &session("s1", "v"), 99));
        assert!(!is_for(&o, &session("s1", "v"), 100), "expired");
        assert!(!is_for(&o, &session("s2", "v"), 99), "another session");
        assert!(!is_for(&o, &session("s1", "p"), 99), "another account");
    }
}
