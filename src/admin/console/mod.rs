//! The admin console (`/admin`): the operators' pages, server-rendered, Vietnamese first with
//! an English switch, without JavaScript.
//!
//! The console is a relying party of the gateway itself: an operator without a console
//! session is sent through the ordinary login (a parked request of the reserved client
//! [`client_id`], with `[admin] min_acr` as its accepted `acr` levels, so the chooser offers only
//! the systems that reach it: the normal step-up path) and comes back to [`CALLBACK`], where a
//! live SSO session of a person allowed to administer ([`crate::admin::auth::may_administer`])
//! becomes a short console session of its own ([`session`]), separate from the SSO cookie that
//! `/account` uses. Every write is a POST carrying that session's anti-forgery token and a
//! reason, and calls one function of [`crate::admin::ops`] (the API calls the same ones), which
//! writes the audit line (who/when/what/why).
//!
//! Owns: the console's pages, its session and its error page mapping ([`error`]).
//! Must not: change accounts other than through `admin::ops`, decide who may administer
//! (`admin::auth` does), or know upstream protocols.

mod error;
mod pages;
pub mod session;
pub mod views;

use axum::Router;
use axum::routing::{get, post};

pub use error::ConsoleError;

use crate::admin::AdminState;
use crate::ids::ClientId;
use crate::provider::store_records::AuthorizationRequest;

/// The console's home (search).
pub const PATH: &str = "/admin";

/// Where a console login comes back.
pub const CALLBACK: &str = "/admin/callback";

/// The name of the console among the gateway's own clients.
pub const CLIENT_NAME: &str = "admin";

/// The `client_id` of the requests the console parks for its logins (`sso-gateway:admin`). It
/// holds a `:`, which no configured client id may, so no relying party can be confused with it.
pub fn client_id() -> ClientId {
    ClientId::gateway_own(CLIENT_NAME)
}

pub fn router() -> Router<AdminState> {
    Router::new()
        .route(PATH, get(pages::search))
        .route(CALLBACK, get(pages::callback))
        .route("/admin/logout", post(pages::logout))
        .route("/admin/accounts/{id}", get(pages::account))
        .route("/admin/accounts/{id}/lock", post(pages::lock))
        .route("/admin/accounts/{id}/unlock", post(pages::unlock))
        .route("/admin/accounts/{id}/sessions/end", post(pages::end_sessions))
        .route("/admin/accounts/{id}/links", post(pages::link))
        .route("/admin/accounts/{id}/links/remove", post(pages::unlink))
        .route("/admin/accounts/{id}/merge", post(pages::merge))
        .route("/admin/accounts/{id}/unit", post(pages::set_unit))
        .route("/admin/conflicts", get(pages::conflicts))
        .route("/admin/conflicts/{id}", get(pages::conflict))
        .route("/admin/conflicts/{id}/resolve", post(pages::resolve))
        .route("/admin/warnings", get(pages::warnings))
        .route("/admin/audit", get(pages::audit))
        .route("/admin/operations", get(pages::operations))
        .route("/admin/operations/logout-failures/retry", post(pages::retry_logout))
}

/// Whether a parked request is the console's.
pub fn is_console_request(req: &AuthorizationRequest) -> bool {
    req.client_id == client_id()
}

/// Where a console login continues: the console's return point the request names, never
/// anywhere else.
pub fn return_path(issuer: &str, req: &AuthorizationRequest) -> String {
    match req.redirect_uri.strip_prefix(issuer) {
        Some(path) if path == CALLBACK || path.starts_with("/admin/callback?") => path.to_string(),
        _ => CALLBACK.to_string(),
    }
}

/// A console page to go back to after a login: a path under `/admin` (not the return point
/// itself), else the console's home.
pub fn safe_next(next: Option<&str>) -> String {
    let ok = |n: &str| {
        let under = n == PATH || n.starts_with("/admin/") || n.starts_with("/admin?");
        under && !n.starts_with(CALLBACK) && !n.contains("//") && !n.contains('\\') && n.is_ascii()
    };
    match next {
        Some(n) if ok(n) => n.to_string(),
        _ => PATH.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn console(redirect_uri: &str) -> AuthorizationRequest {
        AuthorizationRequest {
            client_id: client_id().into(),
            ..crate::account::link::own_request(redirect_uri.into(), crate::web::Lang::Vi, false)
        }
    }

    #[test]
    fn console_requests_return_only_to_the_console_callback() {
        let issuer = "https://sso.example";
        assert_eq!(
            return_path(issuer, &console("https://sso.example/admin/callback?next=%2Fadmin")),
            "/admin/callback?next=%2Fadmin"
        );
        for elsewhere in [
            "https://evil.example/admin/callback",
            "https://sso.example/admin/callbackx",
            "https://sso.example.evil/admin/callback",
            "https://sso.example/account",
        ] {
            assert_eq!(return_path(issuer, &console(elsewhere)), CALLBACK, "{elsewhere}");
        }
        assert!(is_console_request(&console("https://sso.example/admin/callback")));
        let account = crate::account::link::own_request("x".into(), crate::web::Lang::Vi, false);
        assert!(!is_console_request(&account));
    }

    #[test]
    fn only_console_pages_are_gone_back_to() {
        for good in ["/admin", "/admin/conflicts/3", "/admin?by=name&q=le", "/admin/accounts/a1?lang=en"] {
            assert_eq!(safe_next(Some(good)), good);
        }
        for bad in [
            "https://evil.example/admin",
            "//evil.example/admin",
            "/admin//evil",
            "/administrator",
            "/account",
            "/admin/callback?next=/admin",
            "/admin/\\evil",
            "",
        ] {
            assert_eq!(safe_next(Some(bad)), "/admin", "{bad}");
        }
        assert_eq!(safe_next(None), "/admin");
    }
}
