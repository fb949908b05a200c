//! The handlers of `/admin/api/v1`: each reads its input, calls one function of
//! [`super::ops`] or the account store, and answers JSON. Their `#[utoipa::path]` attributes
//! are the OpenAPI document and the routes at once (see [`super::api_router`]).

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::Admin;
use super::error::AdminError;
use super::ops::{self, AccountDetail, Decision, ImportRunErrors, Operations, RetryOutcome, Survivor};
use crate::accounts::import_runs::ImportRun;
use crate::accounts::lists::{AuditFilter, WarningFilter};
use crate::accounts::search::SearchPage;
use crate::accounts::{Account, AuditRecord, ConflictRecord, IdentityLink, WarningRecord};
use crate::admin::AdminState;
use crate::broker::status::UpstreamStatus;

/// Default page size of every list.
const DEFAULT_PAGE: u32 = 50;

/// A JSON body; a malformed one is a 400 of the admin API's own shape.
pub struct Body<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = AdminError;

    async fn from_request(req: Request, state: &S) -> Result<Self, AdminError> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Body(v)),
            Err(e) => Err(AdminError::BadRequest(rejection_text(&e))),
        }
    }
}

/// Query parameters; malformed ones are a 400 of the admin API's own shape.
pub struct Params<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Params<T> {
    type Rejection = AdminError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AdminError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(Params(v)),
            Err(e) => Err(AdminError::BadRequest(query_text(&e))),
        }
    }
}

fn rejection_text(e: &JsonRejection) -> String {
    e.body_text()
}

fn query_text(e: &QueryRejection) -> String {
    e.body_text()
}

/// The error body of every failed request.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    /// `invalid_request`, `invalid_token`, `insufficient_scope`, `access_denied`,
    /// `insufficient_user_authentication`, `not_found`, `conflict` or `temporarily_unavailable`.
    pub error: String,
    pub error_description: String,
}

pub use super::ops::SearchBy;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchParams {
    /// What `q` is.
    pub by: SearchBy,
    /// The value searched for.
    pub q: String,
    /// The upstream (with `by=upstream`).
    pub upstream: Option<String>,
    /// Page size, 1 to 200 (default 50).
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

#[utoipa::path(get, path = "/admin/api/v1/accounts", tag = "accounts", params(SearchParams),
    responses((status = 200, body = SearchPage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
/// Searches accounts (national IDs masked in the results).
pub async fn search_accounts(
    State(app): State<AdminState>,
    _admin: Admin,
    Params(p): Params<SearchParams>,
) -> Result<Json<SearchPage>, AdminError> {
    let limit = p.limit.unwrap_or(DEFAULT_PAGE);
    let page = ops::search(&app, p.by, p.q, p.upstream, limit, p.cursor.as_deref()).await?;
    Ok(Json(page))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ViewParams {
    /// Why the account is looked at (recorded in the audit log).
    pub reason: Option<String>,
}

#[utoipa::path(get, path = "/admin/api/v1/accounts/{id}", tag = "accounts",
    params(("id" = String, Path, description = "Account id"), ViewParams),
    responses((status = 200, body = AccountDetail), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
/// One account with its links, number history, aliases, official profile, sessions and audit
/// lines. Shows the full national ID; every view is written to the audit log.
pub async fn account_detail(
    State(app): State<AdminState>,
    admin: Admin,
    Path(id): Path<String>,
    Params(p): Params<ViewParams>,
) -> Result<Json<AccountDetail>, AdminError> {
    Ok(Json(ops::account_detail(&app, &id, &admin.actor, p.reason.as_deref()).await?))
}

/// The reason of a write (required, recorded in the audit log).
#[derive(Debug, Deserialize, ToSchema)]
pub struct ReasonBody {
    pub reason: String,
}

#[utoipa::path(post, path = "/admin/api/v1/accounts/{id}/lock", tag = "accounts",
    params(("id" = String, Path, description = "Account id")), request_body = ReasonBody,
    responses((status = 200, body = Account), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
/// Locks an account: no login, no tokens, no userinfo.
pub async fn lock(
    State(app): State<AdminState>,
    admin: Admin,
    Path(id): Path<String>,
    Body(b): Body<ReasonBody>,
) -> Result<Json<Account>, AdminError> {
    Ok(Json(ops::set_locked(&app, &id, true, &admin.actor, &b.reason).await?))
}

#[utoipa::path(post, path = "/admin/api/v1/accounts/{id}/unlock", tag = "accounts",
    params(("id" = String, Path, description = "Account id")), request_body = ReasonBody,
    responses((status = 200, body = Account), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
/// Unlocks an account.
pub async fn unlock(
    State(app): State<AdminState>,
    admin: Admin,
    Path(id): Path<String>,
    Body(b): Body<ReasonBody>,
) -> Result<Json<Account>, AdminError> {
    Ok(Json(ops::set_locked(&app, &id, false, &admin.actor, &b.reason).await?))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SessionsEnded {
    pub ended: usize,
}

#[utoipa::path(post, path = "/admin/api/v1/accounts/{id}/sessions/end", tag = "accounts",
    params(("id" = String, Path, description = "Account id")), request_body = ReasonBody,
    responses((status = 200, body = SessionsEnded), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
/// Ends every session of the account everywhere (its RPs get back-channel logout tokens).
pub async fn end_sessions(
    State(app): State<AdminState>,
    admin: Admin,
    Path(id): Path<String>,
    Body(b): Body<ReasonBody>,
) -> Result<Json<SessionsEnded>, AdminError> {
    Ok(Json(SessionsEnded { ended: ops::end_sessions(&app, &id, &admin.actor, &b.reason).await? }))
}

/// An upstream identity and the reason for linking or unlinking it.
#[derive(Debug, Deserialize, ToSchema)]
pub struct LinkBody {
    pub upstream: String,
    pub subject: String,
    pub reason: String,
}

#[utoipa::path(post, path = "/admin/api/v1/accounts/{id}/links", tag = "accounts",
    params(("id" = String, Path, description = "Account id")), request_body = LinkBody,
    responses((status = 200, body = Vec<IdentityLink>), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
/// Links an upstream identity to the account (moving it from another account if needed).
pub async fn link(
    State(app): State<AdminState>,
    admin: Admin,
    Path(id): Path<String>,
    Body(b): Body<LinkBody>,
) -> Result<Json<Vec<IdentityLink>>, AdminError> {
    Ok(Json(ops::link(&app, &id, &b.upstream, &b.subject, &admin.actor, &b.reason).await?))
}

#[utoipa::path(post, path = "/admin/api/v1/accounts/{id}/links/remove", tag = "accounts",
    params(("id" = String, Path, description = "Account id")), request_body = LinkBody,
    responses((status = 200, body = Vec<IdentityLink>), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
/// Removes one of the account's links; the identity's next login follows the linking rules.
pub async fn unlink(
    State(app): State<AdminState>,
    admin: Admin,
    Path(id): Path<String>,
    Body(b): Body<LinkBody>,
) -> Result<Json<Vec<IdentityLink>>, AdminError> {
    Ok(Json(ops::unlink(&app, &id, &b.upstream, &b.subject, &admin.actor, &b.reason).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct MergeBody {
    /// The surviving account's id.
    pub into: String,
    pub reason: String,
}

#[utoipa::path(post, path = "/admin/api/v1/accounts/{id}/merge", tag = "accounts",
    params(("id" = String, Path, description = "The account that is merged away")), request_body = MergeBody,
    responses((status = 200, body = Account, description = "The surviving account"), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
/// Merges the account into another; its `sub` keeps resolving to the survivor.
pub async fn merge(
    State(app): State<AdminState>,
    admin: Admin,
    Path(id): Path<String>,
    Body(b): Body<MergeBody>,
) -> Result<Json<Account>, AdminError> {
    Ok(Json(ops::merge(&app, &id, &b.into, &admin.actor, &b.reason).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct UnitBody {
    /// Code of a unit of the active administrative structure (for an ambiguous former unit:
    /// one of `official.org_unit_candidates`).
    pub unit: String,
    pub reason: String,
}

#[utoipa::path(post, path = "/admin/api/v1/accounts/{id}/unit", tag = "accounts",
    params(("id" = String, Path, description = "Account id of an official")), request_body = UnitBody,
    responses((status = 200, body = Account), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
/// Sets an official's unit in the new structure.
pub async fn set_unit(
    State(app): State<AdminState>,
    admin: Admin,
    Path(id): Path<String>,
    Body(b): Body<UnitBody>,
) -> Result<Json<Account>, AdminError> {
    Ok(Json(ops::set_unit(&app, &id, &b.unit, &admin.actor, &b.reason).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ConflictParams {
    /// Also list resolved conflicts.
    pub include_resolved: Option<bool>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ConflictPage {
    pub items: Vec<ConflictRecord>,
    pub next_cursor: Option<String>,
}

#[utoipa::path(get, path = "/admin/api/v1/conflicts", tag = "review", params(ConflictParams),
    responses((status = 200, body = ConflictPage), (status = 400, body = ErrorBody)),
    security(("bearer" = [])))]
/// Linking conflicts waiting for a decision (oldest first); both accounts are in the account
/// pages.
pub async fn conflicts(
    State(app): State<AdminState>,
    _admin: Admin,
    Params(p): Params<ConflictParams>,
) -> Result<Json<ConflictPage>, AdminError> {
    let include = p.include_resolved.unwrap_or(false);
    let page =
        app.accounts.conflicts_page(include, p.limit.unwrap_or(DEFAULT_PAGE), p.cursor.as_deref()).await?;
    Ok(Json(ConflictPage { items: page.items, next_cursor: page.next_cursor }))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ResolveBody {
    pub decision: Decision,
    /// With `merge`: which account survives (default `existing`).
    pub survivor: Option<Survivor>,
    pub reason: String,
}

#[utoipa::path(post, path = "/admin/api/v1/conflicts/{id}/resolve", tag = "review",
    params(("id" = i64, Path, description = "Conflict id")), request_body = ResolveBody,
    responses((status = 200, body = ConflictRecord), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
/// Decides a conflict: the same person (merge) or different people (keep apart).
pub async fn resolve_conflict(
    State(app): State<AdminState>,
    admin: Admin,
    Path(id): Path<i64>,
    Body(b): Body<ResolveBody>,
) -> Result<Json<ConflictRecord>, AdminError> {
    let survivor = b.survivor.unwrap_or_default();
    Ok(Json(ops::resolve_conflict(&app, id, b.decision, survivor, &admin.actor, &b.reason).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WarningParams {
    /// Warning code.
    pub code: Option<String>,
    /// Upstream or import source.
    pub source: Option<String>,
    pub account_id: Option<String>,
    /// Recorded at or after (Unix seconds).
    pub since: Option<i64>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WarningPage {
    pub items: Vec<WarningRecord>,
    pub next_cursor: Option<String>,
}

#[utoipa::path(get, path = "/admin/api/v1/warnings", tag = "review", params(WarningParams),
    responses((status = 200, body = WarningPage), (status = 400, body = ErrorBody)),
    security(("bearer" = [])))]
/// National-ID warnings (structural oddities of asserted numbers), newest first.
pub async fn warnings(
    State(app): State<AdminState>,
    _admin: Admin,
    Params(p): Params<WarningParams>,
) -> Result<Json<WarningPage>, AdminError> {
    let filter = WarningFilter { code: p.code, source: p.source, account_id: p.account_id, since: p.since };
    let page = ops::warnings(&app, &filter, p.limit.unwrap_or(DEFAULT_PAGE), p.cursor.as_deref()).await?;
    Ok(Json(WarningPage { items: page.items, next_cursor: page.next_cursor }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// What the line is about: an account id, `conflict:<id>`, `client:<id>`, …
    pub target: Option<String>,
    /// The account's public or pairwise `sub`: the lines about that account.
    pub sub: Option<String>,
    /// Who: `client:<id>`, `account:<id>`, `self-service`, or the login name of an operator
    /// of the command line.
    pub actor: Option<String>,
    /// `lock`, `merge`, `view`, `retry-backchannel-logout`, …
    pub action: Option<String>,
    /// Written at or after (Unix seconds).
    pub since: Option<i64>,
    /// Written before (Unix seconds).
    pub until: Option<i64>,
    /// Page size, 1 to 200 (default 50).
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    pub items: Vec<AuditRecord>,
    pub next_cursor: Option<String>,
}

#[utoipa::path(get, path = "/admin/api/v1/audit", tag = "review", params(AuditParams),
    responses((status = 200, body = AuditPage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
/// The audit log (who, when, what, why), newest first; national IDs masked. Reading it is not
/// a write and leaves no line.
pub async fn audit(
    State(app): State<AdminState>,
    _admin: Admin,
    Params(p): Params<AuditParams>,
) -> Result<Json<AuditPage>, AdminError> {
    let filter =
        AuditFilter { target: p.target, actor: p.actor, action: p.action, since: p.since, until: p.until };
    let page = ops::audit(&app, filter, p.sub, p.limit.unwrap_or(DEFAULT_PAGE), p.cursor.as_deref()).await?;
    Ok(Json(AuditPage { items: page.items, next_cursor: page.next_cursor }))
}

#[utoipa::path(get, path = "/admin/api/v1/operations", tag = "operations",
    responses((status = 200, body = Operations), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
/// The active administrative-unit set and counts an operator watches.
pub async fn operations(
    State(app): State<AdminState>,
    _admin: Admin,
) -> Result<Json<Operations>, AdminError> {
    Ok(Json(ops::operations(&app).await?))
}

pub use super::ops::{LogoutFailure, LogoutFailurePage};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

#[utoipa::path(get, path = "/admin/api/v1/operations/logout-failures", tag = "operations", params(PageParams),
    responses((status = 200, body = LogoutFailurePage), (status = 400, body = ErrorBody)),
    security(("bearer" = [])))]
/// Failed back-channel logout deliveries, newest first (kept for a bounded time).
pub async fn logout_failures(
    State(app): State<AdminState>,
    _admin: Admin,
    Params(p): Params<PageParams>,
) -> Result<Json<LogoutFailurePage>, AdminError> {
    Ok(Json(ops::logout_failures(&app, p.limit.unwrap_or(DEFAULT_PAGE), p.cursor.as_deref()).await?))
}

#[utoipa::path(get, path = "/admin/api/v1/operations/upstreams", tag = "operations",
    responses((status = 200, body = Vec<UpstreamStatus>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
/// Each configured upstream's last success, last failure (with its reason) and the latency of
/// its last exchanges, as recorded by every replica.
pub async fn upstream_status(
    State(app): State<AdminState>,
    _admin: Admin,
) -> Result<Json<Vec<UpstreamStatus>>, AdminError> {
    Ok(Json(ops::upstream_status(&app).await?))
}

/// Which failed delivery to retry, and why.
#[derive(Debug, Deserialize, ToSchema)]
pub struct RetryBody {
    pub client_id: String,
    pub sid: String,
    pub reason: String,
}

#[utoipa::path(post, path = "/admin/api/v1/operations/logout-failures/retry", tag = "operations",
    request_body = RetryBody,
    responses((status = 200, body = RetryOutcome), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
/// Sends a fresh logout token for one failed back-channel logout, once; delivered, it leaves
/// the list; failed again, it stays with the new reason.
pub async fn retry_logout_failure(
    State(app): State<AdminState>,
    admin: Admin,
    Body(b): Body<RetryBody>,
) -> Result<Json<RetryOutcome>, AdminError> {
    Ok(Json(ops::retry_logout_failure(&app, &b.client_id, &b.sid, &admin.actor, &b.reason).await?))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ImportRunPage {
    pub items: Vec<ImportRun>,
    pub next_cursor: Option<String>,
}

#[utoipa::path(get, path = "/admin/api/v1/operations/imports", tag = "operations", params(PageParams),
    responses((status = 200, body = ImportRunPage), (status = 400, body = ErrorBody)),
    security(("bearer" = [])))]
/// Runs of `sso-gateway accounts import`, newest first: who, when, which file, what they did.
pub async fn import_runs(
    State(app): State<AdminState>,
    _admin: Admin,
    Params(p): Params<PageParams>,
) -> Result<Json<ImportRunPage>, AdminError> {
    let page = ops::import_runs(&app, p.limit.unwrap_or(DEFAULT_PAGE), p.cursor.as_deref()).await?;
    Ok(Json(ImportRunPage { items: page.items, next_cursor: page.next_cursor }))
}

#[utoipa::path(get, path = "/admin/api/v1/operations/imports/{id}/errors", tag = "operations",
    params(("id" = i64, Path, description = "Import run id"), PageParams),
    responses((status = 200, body = ImportRunErrors), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
/// One import run and a page of its row errors, in file order.
pub async fn import_run_errors(
    State(app): State<AdminState>,
    _admin: Admin,
    Path(id): Path<i64>,
    Params(p): Params<PageParams>,
) -> Result<Json<ImportRunErrors>, AdminError> {
    Ok(Json(ops::import_run_errors(&app, id, p.limit.unwrap_or(DEFAULT_PAGE), p.cursor.as_deref()).await?))
}
