//! "My account": the person's own account pages, for every logged-in person (`/account`).
//!
//! Owns: the account page (who I am, with the national ID masked to its last three digits;
//! the former systems linked to the account, when linked and when last used; my sessions and
//! the applications that received tokens in each; "log out everywhere"), starting a link of
//! another former system (a fresh login through that upstream bound to the current session,
//! resolved by the existing linking rules, see [`link`]), unlinking one of several links after
//! a confirmation step, and sending a person who is not logged in through the chooser and back
//! here. Every write is a POST bound to the session's anti-forgery token.
//!
//! Uses: `session` (who is asking), `accounts` (reads, [`crate::accounts::AccountStore::unlink_own`]
//! and the audit log), `logout` (the session list and ending sessions everywhere, back-channel
//! notifications included), `provider::store_records` (a parked request that returns here after a
//! login), the broker's upstream names.
//! Must not: know upstream protocols (a link is an ordinary login through the broker; the
//! linking rules are the account store's), or decide links itself.

mod error;
pub mod link;
pub mod overview;
mod pages;

use axum::Router;
use axum::routing::{get, post};

pub use error::AccountPageError;
pub use overview::{AccountOverview, overview};

use std::sync::Arc;
use std::time::Duration;

use crate::accounts::AccountStore;
use crate::broker::Broker;
use crate::clock::Clock;
use crate::ids::ClientId;
use crate::logout::LogoutState;
use crate::provider::store_records::AuthorizationRequest;
use crate::session::Sessions;
use crate::state::StateStore;

/// What the account pages use of the gateway, built once by `app`.
pub struct AccountPageParts {
    /// The account, its links, the audit of what the holder changes.
    pub accounts: AccountStore,
    /// The holder's SSO session (the cookie) and the sessions an unlink ends.
    pub sessions: Sessions,
    /// Parked logins of the pages themselves and pending link intents.
    pub store: StateStore,
    /// Upstream names and whether an upstream exists.
    pub broker: Broker,
    /// Ending a session (grants, RP logouts) and listing the holder's sessions.
    pub logout: LogoutState,
    pub clock: Clock,
    pub issuer: Arc<str>,
    /// How long a parked login of these pages (or a link) waits for its upstream
    /// (`[lifetimes] login_attempt`).
    pub login_attempt: Duration,
}

impl AccountPageParts {
    pub fn issuer(&self) -> &str {
        &self.issuer
    }
}

/// The account pages' state (what their handlers get).
pub type AccountPageState = crate::PartState<AccountPageParts>;

/// The account page.
pub const PATH: &str = "/account";

/// The name of the account pages among the gateway's own clients.
pub const PAGES_CLIENT_NAME: &str = "account";

/// The `client_id` of requests the gateway parks for its own pages (a login that returns to
/// `/account`, a link): `sso-gateway:account`. It holds a `:`, which no configured client id
/// may (`check-config` refuses it), so no relying party can ever be confused with it.
pub fn pages_client() -> ClientId {
    ClientId::gateway_own(PAGES_CLIENT_NAME)
}

pub fn router() -> Router<AccountPageState> {
    Router::new()
        .route(PATH, get(pages::show))
        .route("/account/link", post(pages::start_link))
        .route("/account/unlink", get(pages::confirm_unlink).post(pages::unlink))
}

/// Whether a parked request is one of the gateway's own (its login ends on the account page or
/// the admin console, not at a relying party).
pub fn is_own_request(req: &AuthorizationRequest) -> bool {
    req.client_id == pages_client() || crate::admin::console::is_console_request(req)
}

/// Where a login for the gateway's own pages continues: the account page the request names,
/// never anywhere else.
pub fn return_path(issuer: &str, req: &AuthorizationRequest) -> String {
    // The admin console's logins go back to the console (see `admin::console`).
    if crate::admin::console::is_console_request(req) {
        return crate::admin::console::return_path(issuer, req);
    }
    match req.redirect_uri.strip_prefix(issuer) {
        Some(path) if path == PATH || path.starts_with("/account?") => path.to_string(),
        _ => PATH.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn own(redirect_uri: &str) -> AuthorizationRequest {
        link::own_request(redirect_uri.to_string(), crate::web::Lang::Vi, false)
    }

    #[test]
    fn own_requests_return_only_to_the_account_page() {
        let issuer = "https://sso.example";
        assert_eq!(return_path(issuer, &own("https://sso.example/account?lang=en")), "/account?lang=en");
        assert_eq!(return_path(issuer, &own("https://sso.example/account")), "/account");
        for elsewhere in [
            "https://evil.example/account",
            "https://sso.example/accounts",
            "https://sso.example.evil/account",
        ] {
            assert_eq!(return_path(issuer, &own(elsewhere)), "/account", "{elsewhere}");
        }
        assert!(is_own_request(&own("https://sso.example/account")));
    }
}
