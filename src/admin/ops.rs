//! The admin operations as plain functions (the API handlers and the console call these):
//! each takes the actor and, for writes, a reason, and leaves a line in the audit log.
//! Operations data: upstream status, failed back-channel logouts (with retry), import runs.

use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;

use super::error::AdminError;
use crate::accounts::admin::AccountSelector;
use crate::accounts::import_runs::{ImportRun, ImportRunError};
use crate::accounts::lists::{AuditFilter, Page, WarningFilter};
use crate::accounts::search::{SearchPage, SearchQuery};
use crate::accounts::{Account, AuditRecord, ConflictRecord, IdentityLink, WarningRecord};
use crate::admin::AdminState;
use crate::broker::status::UpstreamStatus;
use crate::ids::ClientId;

/// Longest reason accepted (it goes into the audit log).
pub const MAX_REASON: usize = 1000;

/// Audit lines shown on an account's page.
const DETAIL_AUDIT_LINES: u32 = 50;

/// A write's reason: required, trimmed, bounded.
pub fn reason(raw: &str) -> Result<&str, AdminError> {
    let r = raw.trim();
    if r.is_empty() {
        return Err(AdminError::BadRequest("a reason is required".into()));
    }
    if r.len() > MAX_REASON {
        return Err(AdminError::BadRequest(format!("the reason is longer than {MAX_REASON} bytes")));
    }
    Ok(r)
}

/// A number the account held before a re-key.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FormerNumber {
    pub national_id: String,
    pub replaced_by: String,
    pub changed_at: i64,
}

/// A legacy identifier kept as an attribute (CMND, passport number).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Alias {
    pub kind: String,
    pub value: String,
    pub source: String,
}

/// One SSO session of the account.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SessionView {
    pub sid: String,
    pub upstream: String,
    pub auth_time: i64,
    pub acr: String,
    pub created_at: i64,
    /// Clients that received tokens in the session.
    pub clients: Vec<String>,
}

/// Everything about one account (the full national ID only here; each view is audited).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AccountDetail {
    pub account: Account,
    pub links: Vec<IdentityLink>,
    pub national_id_history: Vec<FormerNumber>,
    pub aliases: Vec<Alias>,
    pub warnings: Vec<WarningRecord>,
    pub conflicts: Vec<ConflictRecord>,
    pub sessions: Vec<SessionView>,
    /// The newest audit lines about the account (this view's own line first).
    pub audit: Vec<AuditRecord>,
}

async fn require(app: &AdminState, id: &str) -> Result<Account, AdminError> {
    app.accounts.find_by_id(id).await?.ok_or_else(|| AdminError::NotFound(format!("account {id}")))
}

/// The account page. Writes a `view` audit line first (it shows the full national ID).
pub async fn account_detail(
    app: &AdminState,
    id: &str,
    actor: &str,
    why: Option<&str>,
) -> Result<AccountDetail, AdminError> {
    let account = require(app, id).await?;
    let why = why.map(str::trim).filter(|r| !r.is_empty());
    if why.is_some_and(|r| r.len() > MAX_REASON) {
        return Err(AdminError::BadRequest(format!("the reason is longer than {MAX_REASON} bytes")));
    }
    let s = &app.accounts;
    s.audit(actor, "view", &account.id, why, &json!({ "national_id": "shown" }), app.clock.now()).await?;
    let sessions = app.sessions.list_for_account(&account.id).await?;
    let mut views = Vec::with_capacity(sessions.len());
    for x in sessions {
        let clients = app.sessions.clients(&x.sid).await?;
        views.push(SessionView {
            sid: x.sid,
            upstream: x.upstream,
            auth_time: x.auth_time,
            acr: x.acr,
            created_at: x.created_at,
            clients,
        });
    }
    let audit_filter =
        crate::accounts::lists::AuditFilter { target: Some(account.id.clone()), ..Default::default() };
    Ok(AccountDetail {
        links: s.links_of(&account.id).await?,
        national_id_history: s
            .number_history(&account.id)
            .await?
            .into_iter()
            .map(|(national_id, replaced_by, changed_at)| FormerNumber {
                national_id,
                replaced_by,
                changed_at,
            })
            .collect(),
        aliases: s
            .aliases_of(&account.id)
            .await?
            .into_iter()
            .map(|(kind, value, source)| Alias { kind, value, source })
            .collect(),
        warnings: s.warnings_of(&account.id).await?,
        conflicts: s.conflicts_of(&account.id, 100).await?,
        sessions: views,
        audit: s.audit_page(&audit_filter, DETAIL_AUDIT_LINES, None).await?.items,
        account,
    })
}

/// Locks or unlocks an account.
pub async fn set_locked(
    app: &AdminState,
    id: &str,
    locked: bool,
    actor: &str,
    why: &str,
) -> Result<Account, AdminError> {
    let why = reason(why)?;
    let selector = AccountSelector::Id(id.to_string());
    Ok(app.accounts.set_locked(&selector, locked, actor, Some(why), app.clock.now()).await?)
}

/// Ends every SSO session of an account everywhere (back-channel logout to the RPs); returns
/// how many ended.
pub async fn end_sessions(app: &AdminState, id: &str, actor: &str, why: &str) -> Result<usize, AdminError> {
    let why = reason(why)?;
    let account = require(app, id).await?;
    let ended = crate::logout::revoke_account_sessions(&app.logout, &account.sub, actor).await?;
    let detail = json!({ "sessions": ended });
    app.accounts.audit(actor, "end-sessions", &account.id, Some(why), &detail, app.clock.now()).await?;
    Ok(ended)
}

/// Links an upstream identity to an account (moving it from another account if needed).
pub async fn link(
    app: &AdminState,
    id: &str,
    upstream: &str,
    subject: &str,
    actor: &str,
    why: &str,
) -> Result<Vec<IdentityLink>, AdminError> {
    let why = reason(why)?;
    check_identity(app, upstream, subject)?;
    let to = AccountSelector::Id(id.to_string());
    app.accounts.link(upstream, subject, &to, actor, why, app.clock.now()).await?;
    Ok(app.accounts.links_of(id).await?)
}

/// Removes one of the account's links.
pub async fn unlink(
    app: &AdminState,
    id: &str,
    upstream: &str,
    subject: &str,
    actor: &str,
    why: &str,
) -> Result<Vec<IdentityLink>, AdminError> {
    let why = reason(why)?;
    let holder = app.accounts.find_by_link(upstream, subject).await?;
    if holder.as_ref().map(|a| a.id.as_str()) != Some(id) {
        return Err(AdminError::NotFound(format!("a link {upstream}/{subject} of account {id}")));
    }
    app.accounts.unlink(upstream, subject, actor, why, app.clock.now()).await?;
    Ok(app.accounts.links_of(id).await?)
}

fn check_identity(app: &AdminState, upstream: &str, subject: &str) -> Result<(), AdminError> {
    if !app.settings.upstreams.iter().any(|u| u.id == upstream) {
        return Err(AdminError::BadRequest(format!("{upstream:?} is not a configured upstream")));
    }
    if subject.trim().is_empty() || subject.len() > 255 {
        return Err(AdminError::BadRequest("the subject must be 1 to 255 bytes".into()));
    }
    Ok(())
}

/// Merges account `id` into `into` (the survivor).
pub async fn merge(
    app: &AdminState,
    id: &str,
    into: &str,
    actor: &str,
    why: &str,
) -> Result<Account, AdminError> {
    let why = reason(why)?;
    let (loser, winner) = (AccountSelector::Id(id.to_string()), AccountSelector::Id(into.to_string()));
    Ok(app.accounts.merge(&loser, &winner, actor, why, app.clock.now()).await?)
}

/// Decides an official's unit in the new structure.
pub async fn set_unit(
    app: &AdminState,
    id: &str,
    unit: &str,
    actor: &str,
    why: &str,
) -> Result<Account, AdminError> {
    let why = reason(why)?;
    let selector = AccountSelector::Id(id.to_string());
    Ok(app.accounts.decide_unit(&selector, unit, actor, why, app.clock.now()).await?)
}

/// An admin's decision on a linking conflict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Same person: merge the newer account into the existing one (or the other way round,
    /// with `survivor = "new"`).
    Merge,
    /// Different people: keep both accounts; the conflict is closed.
    KeepApart,
}

/// Which account of a conflict survives a merge.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Survivor {
    #[default]
    Existing,
    New,
}

/// Resolves an open conflict; returns it as resolved.
pub async fn resolve_conflict(
    app: &AdminState,
    id: i64,
    decision: Decision,
    survivor: Survivor,
    actor: &str,
    why: &str,
) -> Result<ConflictRecord, AdminError> {
    let why = reason(why)?;
    let c = app.accounts.conflict(id).await?.ok_or_else(|| AdminError::NotFound(format!("conflict {id}")))?;
    if c.resolved_at.is_some() {
        return Err(AdminError::Conflict(format!("conflict {id} is already resolved")));
    }
    let now = app.clock.now();
    match decision {
        Decision::Merge => {
            let (loser, winner) = match survivor {
                Survivor::Existing => (&c.new_account_id, &c.existing_account_id),
                Survivor::New => (&c.existing_account_id, &c.new_account_id),
            };
            let (l, w) = (AccountSelector::Id(loser.clone()), AccountSelector::Id(winner.clone()));
            app.accounts.merge(&l, &w, actor, why, now).await?;
            // The merge closes every open conflict between the two; this one if still open.
            if app.accounts.conflict(id).await?.is_some_and(|c| c.resolved_at.is_none()) {
                app.accounts.resolve_conflict(id, "merged", actor, why, now).await?;
            }
        }
        Decision::KeepApart => app.accounts.resolve_conflict(id, "kept-apart", actor, why, now).await?,
    }
    app.accounts.conflict(id).await?.ok_or_else(|| AdminError::NotFound(format!("conflict {id}")))
}

/// What an operator sees of the running system.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Operations {
    /// Version of the administrative-unit set new officials are mapped with.
    pub active_unit_set: Option<String>,
    /// Back-channel logout deliveries that failed after their retries (kept for a while).
    pub backchannel_logout_failures: usize,
    pub accounts: i64,
}

pub async fn operations(app: &AdminState) -> Result<Operations, AdminError> {
    Ok(Operations {
        active_unit_set: app.accounts.active_unit_version().await?,
        backchannel_logout_failures: crate::logout::failures(&app.logout).await?.len(),
        accounts: app.accounts.count_accounts().await?,
    })
}

/// What to search by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SearchBy {
    /// 12-digit personal identification number (current, former or claimed).
    NationalId,
    /// Public or pairwise `sub`.
    Sub,
    /// Subject at an upstream (`upstream` names it).
    Upstream,
    /// Official code from the officials' directory.
    OfficialCode,
    /// Beginning of the full name, family name first, accents optional.
    Name,
}

/// Searches accounts (national IDs masked in the results); `upstream` is needed with
/// [`SearchBy::Upstream`].
pub async fn search(
    app: &AdminState,
    by: SearchBy,
    q: String,
    upstream: Option<String>,
    limit: u32,
    cursor: Option<&str>,
) -> Result<SearchPage, AdminError> {
    let query = match by {
        SearchBy::NationalId => SearchQuery::NationalId(q),
        SearchBy::Sub => SearchQuery::Sub(q),
        SearchBy::OfficialCode => SearchQuery::OfficialCode(q),
        SearchBy::Name => SearchQuery::Name(q),
        SearchBy::Upstream => SearchQuery::Upstream {
            upstream: upstream
                .filter(|u| !u.is_empty())
                .ok_or_else(|| AdminError::BadRequest("by=upstream needs upstream".into()))?,
            subject: q,
        },
    };
    Ok(app.accounts.search(&query, limit, cursor).await?)
}

/// A page of national-ID warnings, newest first, numbers masked (a list).
pub async fn warnings(
    app: &AdminState,
    filter: &WarningFilter,
    limit: u32,
    cursor: Option<&str>,
) -> Result<Page<WarningRecord>, AdminError> {
    let page = app.accounts.warnings_page(filter, limit, cursor).await?;
    let items = page.items.into_iter().map(mask_warning).collect();
    Ok(Page { items, next_cursor: page.next_cursor })
}

/// A page of the audit log, newest first, with every national ID in a line masked (the full
/// number is only on an account's page, whose views are audited). `sub` (public or pairwise)
/// names the account whose lines are wanted; an empty filter value is no filter. Reading the
/// log is not a write: it leaves no line.
pub async fn audit(
    app: &AdminState,
    filter: AuditFilter,
    sub: Option<String>,
    limit: u32,
    cursor: Option<&str>,
) -> Result<Page<AuditRecord>, AdminError> {
    let given = |v: Option<String>| v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
    let mut filter = AuditFilter {
        target: given(filter.target),
        actor: given(filter.actor),
        action: given(filter.action),
        ..filter
    };
    if let Some(sub) = given(sub) {
        let found = app.accounts.search(&SearchQuery::Sub(sub), 1, None).await?;
        let nothing = Page { items: Vec::new(), next_cursor: None };
        let Some(account) = found.items.into_iter().next() else { return Ok(nothing) };
        if filter.target.as_ref().is_some_and(|t| *t != account.id) {
            return Ok(nothing);
        }
        filter.target = Some(account.id);
    }
    let page = app.accounts.audit_page(&filter, limit, cursor).await?;
    let items = page.items.into_iter().map(mask_audit).collect();
    Ok(Page { items, next_cursor: page.next_cursor })
}

fn mask_audit(mut a: AuditRecord) -> AuditRecord {
    use crate::accounts::national_id::mask_in_text;
    a.target = mask_in_text(&a.target);
    a.reason = a.reason.map(|r| mask_in_text(&r));
    a.detail = mask_in_text(&a.detail);
    a
}

/// Lists show national IDs masked.
fn mask_warning(mut w: WarningRecord) -> WarningRecord {
    w.national_id = w.national_id.map(|n| crate::accounts::national_id::mask_any(&n));
    w
}

/// One side of a conflict under review: the account and what its former systems asserted.
#[derive(Debug, Clone, Serialize)]
pub struct ConflictSide {
    pub account: Account,
    /// The full name folded as the linking rules compare it.
    pub folded_name: Option<String>,
    /// Its identities of former systems, with when each was linked and last seen.
    pub links: Vec<IdentityLink>,
}

/// A conflict and the two records it puts side by side.
#[derive(Debug, Clone, Serialize)]
pub struct ConflictReview {
    pub conflict: ConflictRecord,
    pub existing: ConflictSide,
    pub new: ConflictSide,
}

/// A conflict with both accounts, for a decision. Shows no full national ID beyond the one
/// the conflict is about (the caller masks it in lists).
pub async fn conflict_review(app: &AdminState, id: i64) -> Result<ConflictReview, AdminError> {
    let conflict =
        app.accounts.conflict(id).await?.ok_or_else(|| AdminError::NotFound(format!("conflict {id}")))?;
    let existing = side(app, &conflict.existing_account_id).await?;
    let new = side(app, &conflict.new_account_id).await?;
    Ok(ConflictReview { conflict, existing, new })
}

async fn side(app: &AdminState, id: &str) -> Result<ConflictSide, AdminError> {
    let account = require(app, id).await?;
    let folded_name = account.full_name.as_deref().map(crate::accounts::names::match_key);
    let links = app.accounts.links_of(&account.id).await?;
    Ok(ConflictSide { account, folded_name, links })
}

/// A back-channel logout that failed after its retries.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LogoutFailure {
    pub client_id: String,
    pub uri: String,
    pub sid: String,
    pub at: i64,
    pub error: String,
}

/// A page of failed back-channel logout deliveries, newest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LogoutFailurePage {
    pub items: Vec<LogoutFailure>,
    pub next_cursor: Option<String>,
}

/// Failed back-channel logout deliveries, newest first (the list is small and bounded: the
/// cursor is the position of the next item).
pub async fn logout_failures(
    app: &AdminState,
    limit: u32,
    cursor: Option<&str>,
) -> Result<LogoutFailurePage, AdminError> {
    let all = crate::logout::failures(&app.logout).await?;
    let limit = limit.clamp(1, crate::accounts::search::MAX_PAGE) as usize;
    let start = match cursor {
        None => 0,
        Some(c) => c.parse::<usize>().map_err(|_| AdminError::BadRequest("unknown cursor".into()))?,
    };
    let items: Vec<LogoutFailure> = all
        .iter()
        .skip(start)
        .take(limit)
        .map(|f| LogoutFailure {
            client_id: f.client_id.clone(),
            uri: f.uri.clone(),
            sid: f.sid.clone(),
            at: f.at,
            error: f.error.clone(),
        })
        .collect();
    let next = start + items.len();
    let next_cursor = (next < all.len()).then(|| next.to_string());
    Ok(LogoutFailurePage { items, next_cursor })
}

/// The status of every configured upstream (last success, last failure with its reason, the
/// latency of the last exchanges), as recorded by every replica.
pub async fn upstream_status(app: &AdminState) -> Result<Vec<UpstreamStatus>, AdminError> {
    let ids: Vec<&str> = app.settings.upstreams.iter().map(|u| u.id.as_str()).collect();
    Ok(crate::broker::status::read(&app.store, &ids).await?)
}

/// What retrying a failed back-channel logout did.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RetryOutcome {
    /// The RP took the logout token; the failure is no longer listed.
    pub delivered: bool,
    /// Why it failed again (the failure stays listed with this reason).
    pub error: Option<String>,
}

/// Retries one failed back-channel logout delivery (the client's id and the session's `sid`)
/// once; on success it leaves the list. Audited either way.
pub async fn retry_logout_failure(
    app: &AdminState,
    client_id: &str,
    sid: &str,
    actor: &str,
    why: &str,
) -> Result<RetryOutcome, AdminError> {
    let why = reason(why)?;
    let not_found =
        || AdminError::NotFound(format!("a failed back-channel logout to {client_id} for session {sid}"));
    // An id that cannot be a client id has no failed delivery: the same answer as an unknown one.
    let id = ClientId::parse(client_id).map_err(|_| not_found())?;
    let retried = crate::logout::retry_failure(&app.logout, &id, sid).await?.ok_or_else(not_found)?;
    let outcome = match retried {
        crate::logout::Retried::Delivered(_) => RetryOutcome { delivered: true, error: None },
        crate::logout::Retried::Failed(f) => RetryOutcome { delivered: false, error: Some(f.error) },
    };
    let detail = json!({ "sid": sid, "delivered": outcome.delivered, "error": outcome.error });
    let target = format!("client:{client_id}");
    app.accounts
        .audit(actor, "retry-backchannel-logout", &target, Some(why), &detail, app.clock.now())
        .await?;
    Ok(outcome)
}

/// Import runs, newest first.
pub async fn import_runs(
    app: &AdminState,
    limit: u32,
    cursor: Option<&str>,
) -> Result<crate::accounts::lists::Page<ImportRun>, AdminError> {
    Ok(app.accounts.import_runs_page(limit, cursor).await?)
}

/// One import run with a page of its row errors (in file order).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ImportRunErrors {
    pub run: ImportRun,
    pub items: Vec<ImportRunError>,
    pub next_cursor: Option<String>,
}

pub async fn import_run_errors(
    app: &AdminState,
    id: i64,
    limit: u32,
    cursor: Option<&str>,
) -> Result<ImportRunErrors, AdminError> {
    let run =
        app.accounts.import_run(id).await?.ok_or_else(|| AdminError::NotFound(format!("import run {id}")))?;
    let page = app.accounts.import_run_errors_page(id, limit, cursor).await?;
    Ok(ImportRunErrors { run, items: page.items, next_cursor: page.next_cursor })
}
