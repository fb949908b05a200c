//! Linking another former system from the account page.
//!
//! The person, logged in, chooses a system; the gateway parks one of its own requests (it
//! returns to the account page, never to a relying party), records a link intent bound to the
//! current session and account, and sends the browser to a fresh login at that upstream
//! (`prompt=login`: the upstream must ask for the credentials now). When that login comes back,
//! `login` resolves it by the ordinary linking rules and asks [`decide`] what it means:
//!
//! - it resolved to this account (a trusted upstream asserted this account's verified number,
//!   or the identity was linked already): done, and the current session simply continues;
//! - this account's number is only pending and the login is of the account holding it verified:
//!   the existing proof-of-ownership confirmation (`/account/link/confirm`) asks the person;
//! - anything else: nothing is linked, the current session continues, and the page says why
//!   (and, when the other account declares this account's number unverified, how to link by
//!   proving the other way round).
//!
//! The intent is single use and lives `lifetimes.login_attempt`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::accounts::{Account, ClaimState};
use crate::provider::store_records::{AuthorizationRequest, ResponseMode};
use crate::state::{StateStore, StoreError, hashed_key};
use crate::web::Lang;

/// A link started on the account page, waiting for the upstream login to come back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkIntent {
    /// The session that started it.
    pub sid: String,
    /// Its account.
    pub account_id: String,
    /// The system being linked.
    pub upstream: String,
}

fn intent_key(request_id: &str) -> String {
    hashed_key("account-link", request_id)
}

/// A request of the gateway's own pages, parked while the person logs in: it returns to
/// `redirect_uri` (the account page). `force_login` asks the upstream for a fresh login.
pub fn own_request(redirect_uri: String, lang: Lang, force_login: bool) -> AuthorizationRequest {
    AuthorizationRequest {
        client_id: super::pages_client().into(),
        redirect_uri,
        response_mode: ResponseMode::Query,
        state: None,
        nonce: None,
        scopes: vec!["openid".to_string()],
        code_challenge: None,
        force_login,
        max_age: None,
        login_hint: None,
        lang,
        idp_hint: None,
        acr_accepted: Vec::new(),
        dpop_jkt: None,
    }
}

/// Records the intent of the parked request `request_id`.
pub async fn record(
    store: &StateStore,
    request_id: &str,
    intent: &LinkIntent,
    ttl: Duration,
) -> Result<(), StoreError> {
    store.put_json(&intent_key(request_id), intent, ttl).await
}

/// Takes (single use) the link intent of the parked request `request_id`, if it is one.
pub async fn take(store: &StateStore, request_id: &str) -> Result<Option<LinkIntent>, StoreError> {
    store.take_json(&intent_key(request_id)).await
}

/// What the login that came back means for the link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkDecision {
    /// The login resolved to the session's own account: linked (or it already was). The
    /// current session continues.
    Linked,
    /// A proof-of-ownership link is possible: continue as a login, the person is asked.
    AskForProof,
    /// The login was not made from the session that started the link.
    SessionChanged,
    /// Another account, not joinable by the rules.
    OtherAccount,
    /// Another account that declares the session account's verified number unverified: the
    /// person can prove it the other way round.
    ProveTheOtherWay,
}

/// Decides what the login of `resolved` means for `intent`, made while the browser's session
/// was `session` = (sid, account id) of `session_account`. `proof` says whether the account
/// store found a proof-of-ownership candidate (session account pending, `resolved` verified).
pub fn decide(
    intent: &LinkIntent,
    session: (&str, &str),
    session_account: Option<&Account>,
    resolved: &Account,
    proof: bool,
) -> LinkDecision {
    let (sid, account_id) = session;
    if intent.sid != sid || intent.account_id != account_id {
        return LinkDecision::SessionChanged;
    }
    if resolved.id == account_id {
        return LinkDecision::Linked;
    }
    if proof {
        return LinkDecision::AskForProof;
    }
    let declares_ours = session_account.and_then(|a| a.national_id.as_ref()).is_some_and(|n| {
        resolved.claim_state == Some(ClaimState::Pending) && resolved.claimed_national_id.as_ref() == Some(n)
    });
    if declares_ours { LinkDecision::ProveTheOtherWay } else { LinkDecision::OtherAccount }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounts::{AccountKind, AccountStatus};

    fn account(id: &str, number: Option<&str>, claimed: Option<&str>) -> Account {
        Account {
            id: id.into(),
            sub: format!("sub-{id}"),
            kind: AccountKind::Citizen,
            status: AccountStatus::Active,
            national_id: number.map(str::to_string),
            claimed_national_id: claimed.map(str::to_string),
            claim_state: claimed.map(|_| ClaimState::Pending),
            full_name: None,
            given_name: None,
            family_name: None,
            birthdate: None,
            gender: None,
            email: None,
            phone: None,
            official: None,
            created_at: 1,
            updated_at: 1,
        }
    }

    fn intent() -> LinkIntent {
        LinkIntent { sid: "s1".into(), account_id: "a".into(), upstream: "bd".into() }
    }

    const N: &str = "079190004512";

    #[test]
    fn a_login_of_the_same_account_is_linked() {
        let a = account("a", Some(N), None);
        assert_eq!(decide(&intent(), ("s1", "a"), Some(&a), &a, false), LinkDecision::Linked);
    }

    #[test]
    fn only_the_session_that_started_it_can_finish_it() {
        let a = account("a", Some(N), None);
        assert_eq!(decide(&intent(), ("s2", "a"), Some(&a), &a, false), LinkDecision::SessionChanged);
        let b = account("b", Some(N), None);
        assert_eq!(decide(&intent(), ("s1", "b"), Some(&b), &b, false), LinkDecision::SessionChanged);
    }

    #[test]
    fn a_proof_candidate_is_asked_about() {
        let pending = account("a", None, Some(N));
        let verified = account("v", Some(N), None);
        assert_eq!(
            decide(&intent(), ("s1", "a"), Some(&pending), &verified, true),
            LinkDecision::AskForProof
        );
    }

    #[test]
    fn another_account_is_never_linked_here() {
        let a = account("a", Some(N), None);
        let unrelated = account("x", Some("079190000001"), None);
        assert_eq!(decide(&intent(), ("s1", "a"), Some(&a), &unrelated, false), LinkDecision::OtherAccount);
        let declares_other = account("y", None, Some("079190000001"));
        assert_eq!(
            decide(&intent(), ("s1", "a"), Some(&a), &declares_other, false),
            LinkDecision::OtherAccount
        );
        // Declaring our number without verification: only the proof the other way round.
        let declares_ours = account("z", None, Some(N));
        assert_eq!(
            decide(&intent(), ("s1", "a"), Some(&a), &declares_ours, false),
            LinkDecision::ProveTheOtherWay
        );
    }

    #[test]
    fn own_requests_ask_the_upstream_afresh_when_linking_and_name_no_client() {
        let req = own_request("https://sso.example/account".into(), Lang::En, true);
        assert!(req.force_login);
        assert_eq!(req.client_id, super::super::pages_client());
        assert!(req.acr_accepted.is_empty());
        // It survives the parked form.
        let back =
            crate::provider::store_records::decode(&crate::provider::store_records::encode(&req)).unwrap();
        assert_eq!(back, req);
    }
}
