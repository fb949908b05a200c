//! The admin API: the operators' operations on accounts as JSON under `/admin/api/v1`, and its
//! OpenAPI 3.1 document at `/admin/api/openapi.json`, generated from the handlers and types
//! (the same attributes register the routes, so document and router cannot drift apart).
//!
//! Owns: authorising admin callers ([`auth`]: bearer access tokens of this gateway with the
//! `[admin]` scope; a person also needs the role and `acr`), the operations as plain functions
//! ([`ops`], for the API and the [`console`]), their HTTP handlers ([`api`]) and the one
//! error type of this boundary ([`error`]). Every write needs a reason and is audited with
//! who/when/what/why; lists are paged by cursor; national IDs are masked in lists and shown in
//! full only on an account's page, each such view audited.
//! Must not: change accounts other than through the account store's admin functions, or
//! mint tokens.

pub mod api;
pub mod auth;
pub mod console;
pub mod error;
pub mod ops;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::IntoResponse;
use axum::routing::get;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use std::sync::Arc;

use crate::accounts::AccountStore;
use crate::broker::Broker;
use crate::clock::Clock;
use crate::config::Settings;
use crate::logout::LogoutState;
use crate::provider::ProviderState;
use crate::provider::clients::ClientRegistry;
use crate::session::Sessions;
use crate::state::StateStore;

pub use error::AdminError;

/// What the admin API and console use of the gateway: its own handles, built once by `app`.
/// Operators administer every part, so the list is long, but it is a list: no handler here
/// reaches the rest of the gateway.
pub struct AdminParts {
    /// `[admin]` (scope, role, minimum acr), the assurance ladder, the upstream ids, the
    /// lifetime of a parked console login.
    pub settings: Arc<Settings>,
    pub accounts: AccountStore,
    /// Listing and ending a person's SSO sessions; the console's login.
    pub sessions: Sessions,
    /// Console sessions, parked console logins, the upstream status records.
    pub store: StateStore,
    /// A pairwise `sub`'s sector (who an admin token's person is).
    pub clients: ClientRegistry,
    /// Upstream names for the console's forms and its login.
    pub broker: Broker,
    pub clock: Clock,
    /// Verifying an admin caller's access token as `/userinfo` does.
    pub provider: ProviderState,
    /// Ending sessions (with their grants and RP logouts) and retrying back-channel logouts.
    pub logout: LogoutState,
    pub issuer: Arc<str>,
}

impl AdminParts {
    pub fn issuer(&self) -> &str {
        &self.issuer
    }
}

/// The admin part's state (what its handlers and extractors get).
pub type AdminState = crate::PartState<AdminParts>;

/// Where the OpenAPI document is served.
pub const OPENAPI_PATH: &str = "/admin/api/openapi.json";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "sso-gateway admin API",
        description = "Accounts, linking conflicts, warnings, audit and operations of the sso-gateway. \
            Authorise with a bearer access token of this gateway carrying the admin scope \
            (`[admin] scope`, default `admin`); a person's token also needs the admin role and \
            the configured minimum acr. Every write takes a `reason`, recorded in the audit log.",
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    modifiers(&BearerScheme),
    // Referenced by query parameters, which do not register their schemas themselves.
    components(schemas(api::SearchBy)),
    tags(
        (name = "accounts", description = "Search, account page, lock, sessions, links, merge, unit"),
        (name = "review", description = "Linking conflicts, national-ID warnings, audit log"),
        (name = "operations", description = "What operators watch")
    )
)]
struct ApiDoc;

/// Declares the `bearer` security scheme the operations name.
struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build(),
            ),
        );
    }
}

/// The routes of `/admin/api/v1` with their OpenAPI description.
pub fn api_router() -> OpenApiRouter<AdminState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(api::search_accounts))
        .routes(routes!(api::account_detail))
        .routes(routes!(api::lock))
        .routes(routes!(api::unlock))
        .routes(routes!(api::end_sessions))
        .routes(routes!(api::link))
        .routes(routes!(api::unlink))
        .routes(routes!(api::merge))
        .routes(routes!(api::set_unit))
        .routes(routes!(api::conflicts))
        .routes(routes!(api::resolve_conflict))
        .routes(routes!(api::warnings))
        .routes(routes!(api::audit))
        .routes(routes!(api::operations))
        .routes(routes!(api::logout_failures))
        .routes(routes!(api::retry_logout_failure))
        .routes(routes!(api::upstream_status))
        .routes(routes!(api::import_runs))
        .routes(routes!(api::import_run_errors))
}

/// The OpenAPI document of the admin API.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api_router().into_openapi()
}

/// The admin API's routes and its document.
pub fn router() -> Router<AdminState> {
    let (router, doc) = api_router().split_for_parts();
    let json = doc.to_pretty_json().unwrap_or_default();
    router.route(
        OPENAPI_PATH,
        get(move || {
            let json = json.clone();
            async move {
                ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], json).into_response()
            }
        }),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn the_document_is_openapi_3_1_and_parses_as_such() {
        let json = openapi().to_json().unwrap();
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["openapi"], "3.1.0");
        let spec = oas3::from_json(&json).unwrap();
        assert!(spec.paths.as_ref().is_some_and(|p| p.len() >= 13));
    }
}
