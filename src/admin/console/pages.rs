//! The console's handlers: a page takes the [`Reader`] (the operator; without a console
//! session the login starts instead), a write takes the [`Writer`] (the operator, the form, and
//! its anti-forgery token checked; nothing is done otherwise); each then calls one function of
//! `admin::ops` and renders or redirects. What a page shows is worked out in [`super::views`].

use axum::extract::{FromRequest, FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::ConsoleError;
use super::session::{self, ConsoleSession};
use super::views;
use crate::accounts::lists::{AuditFilter, WarningFilter};
use crate::admin::auth::may_administer;
use crate::admin::ops::{self, Decision, SearchBy, Survivor};
use crate::admin::{AdminError, AdminState};
use crate::provider::store_records as records;
use crate::web::{self, ErrorPage, Lang};

/// Rows on one page of every list.
const PAGE: u32 = 50;

fn https(app: &AdminState) -> bool {
    app.issuer().starts_with("https://")
}

/// The operator at the console: a live console session whose SSO session is still alive and
/// whose account may still administer. None: no (longer a) console session.
async fn operator(app: &AdminState, headers: &HeaderMap) -> Result<Option<ConsoleSession>, ConsoleError> {
    let now = app.clock.now();
    let Some(cs) = session::current(&app.store, headers, now, https(app)).await? else { return Ok(None) };
    if !app.sessions.is_alive(&cs.sid).await? {
        return Ok(None);
    }
    let Some(account) = app.accounts.find_by_id(&cs.account_id).await? else { return Ok(None) };
    match may_administer(&account, Some(&cs.acr), &app.settings.admin, &app.settings.assurance) {
        Ok(()) => Ok(Some(cs)),
        // `[admin] min_acr` was raised since: log in again.
        Err(AdminError::InsufficientAuthentication { .. }) => Ok(None),
        Err(e) => Err(ConsoleError::NotAdmin(e.to_string())),
    }
}

/// The operator of a page and the page's language: a live console session, or the response
/// that starts one (the login, then back to this page). A malformed query (a `lang` that is
/// neither `vi` nor `en`, …) is a 400 page.
pub struct Reader {
    pub cs: ConsoleSession,
    pub uri: Uri,
    pub lang: Lang,
}

#[derive(Debug, Default, Deserialize)]
struct LangOnly {
    lang: Option<Lang>,
}

impl FromRequestParts<AdminState> for Reader {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &AdminState) -> Result<Self, Response> {
        let query = parts.uri.query().unwrap_or("").as_bytes();
        let lang = web::params::deserialize::<LangOnly>(query, web::params::Controls::Refused)
            .map_err(|e| e.page().into_response())?
            .lang
            .unwrap_or_default();
        match operator(app, &parts.headers).await {
            Ok(Some(cs)) => Ok(Reader { cs, uri: parts.uri.clone(), lang }),
            Ok(None) => {
                let next = parts.uri.path_and_query().map(|p| p.as_str().to_string());
                Err(enter(app, &parts.headers, next.as_deref(), lang, false)
                    .await
                    .unwrap_or_else(|e| e.into_response()))
            }
            Err(e) => Err(e.into_response()),
        }
    }
}

impl Reader {
    /// What every console page gets: language, its switch, the navigation and the form token.
    fn frame(&self, current: &str) -> Value {
        json!({
            "lang": self.lang.code(),
            "other_lang": self.lang.other().code(),
            "other_lang_href": views::switch_lang_href(self.uri.path(), self.uri.query(), self.lang),
            "csrf": self.cs.csrf,
            "current": current,
            "operator": self.cs.account_id,
        })
    }

    /// The page `template` with the frame and `extra`.
    fn page(&self, template: &str, current: &str, extra: Value) -> Response {
        page(template, merge_json(self.frame(current), extra))
    }
}

/// Every form of the console: its token, its reason, and the fields of the write it is.
#[derive(Debug, Default, Deserialize)]
pub struct WriteForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    reason: String,
    lang: Option<Lang>,
    #[serde(default)]
    upstream: String,
    #[serde(default)]
    subject: String,
    #[serde(default)]
    into: String,
    #[serde(default)]
    unit: String,
    decision: Option<Decision>,
    survivor: Option<Survivor>,
    #[serde(default)]
    client_id: String,
    #[serde(default)]
    sid: String,
}

/// A console write that may go ahead: the form read, then a live console session (none: 401)
/// whose anti-forgery token the form carries (else 403). A handler taking it says only what
/// differs: which operation, with which fields, and where to go after.
pub struct Writer {
    pub app: AdminState,
    pub actor: String,
    pub lang: Lang,
    pub form: WriteForm,
}

impl FromRequest<AdminState> for Writer {
    type Rejection = Response;

    async fn from_request(req: Request, app: &AdminState) -> Result<Self, Response> {
        let headers = req.headers().clone();
        let web::params::Form(form) = web::params::Form::<WriteForm>::from_request(req, app)
            .await
            .map_err(IntoResponse::into_response)?;
        let cs = operator(app, &headers).await.map_err(IntoResponse::into_response)?;
        let cs = cs.ok_or(ConsoleError::NotLoggedIn).map_err(IntoResponse::into_response)?;
        if !cs.csrf_matches(&form.csrf) {
            return Err(ConsoleError::Forged.into_response());
        }
        Ok(Writer { app: app.clone(), actor: cs.actor(), lang: form.lang.unwrap_or_default(), form })
    }
}

impl Writer {
    /// The write's reason as typed (`admin::ops` checks it).
    fn reason(&self) -> &str {
        &self.form.reason
    }

    /// Back to `path` with a notice of what was done.
    fn back(&self, path: &str, done: &str) -> Response {
        let done: String = url::form_urlencoded::byte_serialize(done.as_bytes()).collect();
        Redirect::to(&format!("{path}?lang={}&done={done}", self.lang.code())).into_response()
    }

    /// Back to an account's page with a notice.
    fn to_account(&self, id: &str, done: &str) -> Response {
        let id: String = url::form_urlencoded::byte_serialize(id.as_bytes()).collect();
        self.back(&format!("/admin/accounts/{id}"), done)
    }
}

/// Starts a console session from the browser's SSO session when it may administer; otherwise
/// (unless `returning` from a login, which must not loop) parks a console login request, with
/// `[admin] min_acr` as its accepted levels, and sends the browser to the chooser. A session
/// below the level logs in afresh there (step-up).
async fn enter(
    app: &AdminState,
    headers: &HeaderMap,
    next: Option<&str>,
    lang: Lang,
    returning: bool,
) -> Result<Response, ConsoleError> {
    let next = super::safe_next(next);
    let sso = app.sessions.current(headers).await?;
    let step_up = match &sso {
        None if returning => return Err(ConsoleError::NotLoggedIn),
        None => false,
        Some(s) => {
            let account = app.accounts.surviving(&s.account_id).await?.ok_or(ConsoleError::NotLoggedIn)?;
            match may_administer(&account, Some(&s.acr), &app.settings.admin, &app.settings.assurance) {
                Ok(()) => {
                    let cookie =
                        session::start(&app.store, &s.sid, &account.id, &s.acr, app.clock.now(), https(app))
                            .await?;
                    tracing::info!(
                        target: "sso_gateway::audit",
                        actor = %format!("account:{}", account.id),
                        action = "console-login",
                        sid = %s.sid,
                        acr = %s.acr,
                        "an operator opened the admin console"
                    );
                    let mut res = Redirect::to(&next).into_response();
                    res.headers_mut().append(header::SET_COOKIE, cookie);
                    return Ok(res);
                }
                Err(AdminError::InsufficientAuthentication { acr }) if returning => {
                    return Err(ConsoleError::TooWeak { acr });
                }
                Err(AdminError::InsufficientAuthentication { .. }) => true,
                Err(e) => return Err(ConsoleError::NotAdmin(e.to_string())),
            }
        }
    };
    let levels = &app.settings.assurance;
    let acr_accepted = app
        .settings
        .admin
        .min_acr
        .as_deref()
        .and_then(|min| levels.rank(min))
        .map(|rank| levels.at_least(rank))
        .unwrap_or_default();
    let back = format!(
        "{}{}?{}",
        app.issuer(),
        super::CALLBACK,
        url::form_urlencoded::Serializer::new(String::new())
            .append_pair("next", &next)
            .append_pair("lang", lang.code())
            .finish()
    );
    let req = records::AuthorizationRequest {
        client_id: super::client_id().into(),
        acr_accepted,
        ..crate::account::link::own_request(back, lang, step_up)
    };
    let id = records::park(&app.store, &req, app.settings.lifetimes.login_attempt).await?;
    Ok(Redirect::to(&format!("/login?request={id}&lang={}", lang.code())).into_response())
}

#[derive(Debug, Default, Deserialize)]
pub struct CallbackQuery {
    next: Option<String>,
    lang: Option<Lang>,
}

/// GET `/admin/callback`: back from the console's login.
pub async fn callback(
    State(app): State<AdminState>,
    headers: HeaderMap,
    web::params::Query(q): web::params::Query<CallbackQuery>,
) -> Response {
    let lang = q.lang.unwrap_or_default();
    enter(&app, &headers, q.next.as_deref(), lang, true).await.unwrap_or_else(|e| e.into_response())
}

fn page(template: &str, ctx: Value) -> Response {
    web::html_response(StatusCode::OK, web::render(template, ctx), web::CSP_PAGE)
}

fn merge_json(mut base: Value, extra: Value) -> Value {
    if let (Some(b), Some(e)) = (base.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            b.insert(k.clone(), v.clone());
        }
    }
    base
}

/// The configured upstreams with their names, for the pages' choices.
fn upstream_names(app: &AdminState) -> Vec<Value> {
    app.broker
        .upstream_names()
        .into_iter()
        .map(|(id, vi, en)| json!({ "id": id, "name_vi": vi, "name_en": en }))
        .collect()
}

#[derive(Debug, Default, Deserialize)]
pub struct SearchQuery {
    by: Option<SearchBy>,
    #[serde(default)]
    q: String,
    upstream: Option<String>,
    cursor: Option<String>,
}

/// GET `/admin`: the search page (and its results, national IDs masked).
pub async fn search(
    State(app): State<AdminState>,
    web::params::Query(q): web::params::Query<SearchQuery>,
    r: Reader,
) -> Result<Response, ConsoleError> {
    let lang = r.lang;
    let by = q.by.unwrap_or(SearchBy::Name);
    let text = q.q.trim().to_string();
    let results = if text.is_empty() {
        None
    } else {
        Some(ops::search(&app, by, text.clone(), q.upstream.clone(), PAGE, q.cursor.as_deref()).await?)
    };
    let next_href = results.as_ref().and_then(|r| r.next_cursor.as_ref()).map(|c| {
        let mut s = url::form_urlencoded::Serializer::new(String::new());
        s.append_pair("by", by_code(by)).append_pair("q", &text);
        if let Some(u) = &q.upstream {
            s.append_pair("upstream", u);
        }
        s.append_pair("cursor", c).append_pair("lang", lang.code());
        format!("{}?{}", super::PATH, s.finish())
    });
    Ok(r.page(
        "admin_search.html",
        "search",
        json!({
            "by": by_code(by),
            "q": text,
            "upstream": q.upstream,
            "upstreams": upstream_names(&app),
            "results": results,
            "next_href": next_href,
        }),
    ))
}

fn by_code(by: SearchBy) -> &'static str {
    match by {
        SearchBy::NationalId => "national_id",
        SearchBy::Sub => "sub",
        SearchBy::Upstream => "upstream",
        SearchBy::OfficialCode => "official_code",
        SearchBy::Name => "name",
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct AccountQuery {
    /// Why the account is looked at (recorded with the view).
    reason: Option<String>,
    /// The write just done (a notice).
    done: Option<String>,
}

/// GET `/admin/accounts/{id}`: everything about one account, the full national ID included;
/// each view is written to the audit log first.
pub async fn account(
    State(app): State<AdminState>,
    Path(id): Path<String>,
    web::params::Query(q): web::params::Query<AccountQuery>,
    r: Reader,
) -> Result<Response, ConsoleError> {
    let detail = ops::account_detail(&app, &id, &r.cs.actor(), q.reason.as_deref()).await?;
    let merged_into = match &detail.account.status {
        crate::accounts::AccountStatus::MergedInto(into) => Some(into.clone()),
        _ => None,
    };
    Ok(r.page(
        "admin_account.html",
        "account",
        json!({
            "d": detail,
            "status": match &detail.account.status {
                crate::accounts::AccountStatus::Active => "active",
                crate::accounts::AccountStatus::Locked => "locked",
                crate::accounts::AccountStatus::MergedInto(_) => "merged",
            },
            "merged_into": merged_into,
            "upstreams": upstream_names(&app),
            "done": q.done,
        }),
    ))
}

/// POST `/admin/accounts/{id}/lock`.
pub async fn lock(Path(id): Path<String>, w: Writer) -> Result<Response, ConsoleError> {
    ops::set_locked(&w.app, &id, true, &w.actor, w.reason()).await?;
    Ok(w.to_account(&id, "lock"))
}

/// POST `/admin/accounts/{id}/unlock`.
pub async fn unlock(Path(id): Path<String>, w: Writer) -> Result<Response, ConsoleError> {
    ops::set_locked(&w.app, &id, false, &w.actor, w.reason()).await?;
    Ok(w.to_account(&id, "unlock"))
}

/// POST `/admin/accounts/{id}/sessions/end`: every session, everywhere (back-channel logout).
pub async fn end_sessions(Path(id): Path<String>, w: Writer) -> Result<Response, ConsoleError> {
    ops::end_sessions(&w.app, &id, &w.actor, w.reason()).await?;
    Ok(w.to_account(&id, "end-sessions"))
}

/// POST `/admin/accounts/{id}/links`.
pub async fn link(Path(id): Path<String>, w: Writer) -> Result<Response, ConsoleError> {
    let f = &w.form;
    ops::link(&w.app, &id, f.upstream.trim(), f.subject.trim(), &w.actor, w.reason()).await?;
    Ok(w.to_account(&id, "link"))
}

/// POST `/admin/accounts/{id}/links/remove`.
pub async fn unlink(Path(id): Path<String>, w: Writer) -> Result<Response, ConsoleError> {
    ops::unlink(&w.app, &id, &w.form.upstream, &w.form.subject, &w.actor, w.reason()).await?;
    Ok(w.to_account(&id, "unlink"))
}

/// POST `/admin/accounts/{id}/merge`: merges this account into `into` (then shows the survivor).
pub async fn merge(Path(id): Path<String>, w: Writer) -> Result<Response, ConsoleError> {
    let survivor = ops::merge(&w.app, &id, w.form.into.trim(), &w.actor, w.reason()).await?;
    Ok(w.to_account(&survivor.id, "merge"))
}

/// POST `/admin/accounts/{id}/unit`: an official's unit in the new structure.
pub async fn set_unit(Path(id): Path<String>, w: Writer) -> Result<Response, ConsoleError> {
    ops::set_unit(&w.app, &id, w.form.unit.trim(), &w.actor, w.reason()).await?;
    Ok(w.to_account(&id, "unit"))
}

#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    cursor: Option<String>,
    include_resolved: Option<bool>,
    done: Option<String>,
    code: Option<String>,
    source: Option<String>,
    account_id: Option<String>,
}

fn next_href(path: &str, uri: &Uri, cursor: Option<&String>) -> Option<String> {
    cursor.map(|c| {
        let mut s = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes()) {
            if k != "cursor" && k != "done" {
                s.append_pair(&k, &v);
            }
        }
        s.append_pair("cursor", c);
        format!("{path}?{}", s.finish())
    })
}

/// GET `/admin/conflicts`: the linking conflicts waiting for a decision, oldest first.
pub async fn conflicts(
    State(app): State<AdminState>,
    web::params::Query(q): web::params::Query<ListQuery>,
    r: Reader,
) -> Result<Response, ConsoleError> {
    let include = q.include_resolved.unwrap_or(false);
    let list = app.accounts.conflicts_page(include, PAGE, q.cursor.as_deref()).await?;
    let items: Vec<Value> = list
        .items
        .iter()
        .map(|c| {
            json!({
                "id": c.id,
                "national_id": crate::accounts::national_id::mask_any(&c.national_id),
                "reason": c.reason,
                "upstream": c.upstream,
                "created_at": c.created_at,
                "resolution": c.resolution,
            })
        })
        .collect();
    Ok(r.page(
        "admin_conflicts.html",
        "conflicts",
        json!({
            "items": items,
            "include_resolved": include,
            "next_href": next_href("/admin/conflicts", &r.uri, list.next_cursor.as_ref()),
            "done": q.done,
        }),
    ))
}

/// GET `/admin/conflicts/{id}`: the two records side by side and the decision.
pub async fn conflict(
    State(app): State<AdminState>,
    Path(id): Path<i64>,
    r: Reader,
) -> Result<Response, ConsoleError> {
    let review = ops::conflict_review(&app, id).await?;
    Ok(r.page(
        "admin_conflict.html",
        "conflicts",
        json!({
            "c": {
                "id": review.conflict.id,
                "national_id": crate::accounts::national_id::mask_any(&review.conflict.national_id),
                "reason": review.conflict.reason,
                "detail": review.conflict.detail,
                "upstream": review.conflict.upstream,
                "created_at": review.conflict.created_at,
                "resolved_at": review.conflict.resolved_at,
                "resolution": review.conflict.resolution,
                "existing_account_id": review.existing.account.id,
                "new_account_id": review.new.account.id,
            },
            "rows": views::compare(&review),
        }),
    ))
}

/// POST `/admin/conflicts/{id}/resolve`: same person (merge) or different people (keep apart).
pub async fn resolve(Path(id): Path<i64>, w: Writer) -> Result<Response, ConsoleError> {
    let decision = w.form.decision.ok_or_else(|| AdminError::BadRequest("choose a decision".into()))?;
    let survivor = w.form.survivor.unwrap_or_default();
    let c = ops::resolve_conflict(&w.app, id, decision, survivor, &w.actor, w.reason()).await?;
    Ok(w.back("/admin/conflicts", &c.resolution.unwrap_or_default()))
}

/// GET `/admin/warnings`: national-ID warnings with filters, numbers masked.
pub async fn warnings(
    State(app): State<AdminState>,
    web::params::Query(q): web::params::Query<ListQuery>,
    r: Reader,
) -> Result<Response, ConsoleError> {
    let some = |v: &Option<String>| v.as_ref().map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
    let filter = WarningFilter {
        code: some(&q.code),
        source: some(&q.source),
        account_id: some(&q.account_id),
        since: None,
    };
    let list = ops::warnings(&app, &filter, PAGE, q.cursor.as_deref()).await?;
    Ok(r.page(
        "admin_warnings.html",
        "warnings",
        json!({
            "items": list.items,
            "code": filter.code,
            "source": filter.source,
            "account_id": filter.account_id,
            "next_href": next_href("/admin/warnings", &r.uri, list.next_cursor.as_ref()),
        }),
    ))
}

/// GET `/admin/operations`: what `ops::operations` says, each upstream's status, and the
/// failed back-channel logouts, each with its retry form.
pub async fn operations(
    State(app): State<AdminState>,
    web::params::Query(q): web::params::Query<ListQuery>,
    r: Reader,
) -> Result<Response, ConsoleError> {
    let facts = views::facts(&serde_json::to_value(ops::operations(&app).await?).unwrap_or(Value::Null));
    let upstreams = ops::upstream_status(&app).await?;
    let failures = ops::logout_failures(&app, PAGE, q.cursor.as_deref()).await?;
    Ok(r.page(
        "admin_operations.html",
        "operations",
        json!({
            "facts": facts,
            "upstreams": upstreams,
            "failures": failures.items,
            "next_href": next_href("/admin/operations", &r.uri, failures.next_cursor.as_ref()),
            "done": q.done,
        }),
    ))
}

/// POST `/admin/operations/logout-failures/retry`: one fresh logout token for a failed
/// back-channel logout (`client_id`, `sid`); back to the operations page saying whether it
/// was delivered (then it left the list) or failed again.
pub async fn retry_logout(w: Writer) -> Result<Response, ConsoleError> {
    let (client_id, sid) = (w.form.client_id.trim(), w.form.sid.trim());
    let outcome = ops::retry_logout_failure(&w.app, client_id, sid, &w.actor, w.reason()).await?;
    Ok(w.back("/admin/operations", if outcome.delivered { "retry-delivered" } else { "retry-failed" }))
}

#[derive(Debug, Default, Deserialize)]
pub struct AuditPageQuery {
    actor: Option<String>,
    sub: Option<String>,
    action: Option<String>,
    /// First day shown (`YYYY-MM-DD`, Vietnam time).
    from: Option<String>,
    /// Last day shown (`YYYY-MM-DD`, Vietnam time).
    to: Option<String>,
    cursor: Option<String>,
}

/// GET `/admin/audit`: the whole audit log, newest first, filtered by who, which account
/// (`sub`), what and which days; national IDs masked. Looking is not a write: no line.
pub async fn audit(
    State(app): State<AdminState>,
    web::params::Query(q): web::params::Query<AuditPageQuery>,
    r: Reader,
) -> Result<Response, ConsoleError> {
    let day = |d: &Option<String>, after: i64| -> Result<Option<i64>, AdminError> {
        match d.as_deref().map(str::trim).filter(|d| !d.is_empty()) {
            None => Ok(None),
            Some(d) => views::vietnam_day_start(d, after)
                .map(Some)
                .ok_or_else(|| AdminError::BadRequest(format!("{d:?} is not a day (YYYY-MM-DD)"))),
        }
    };
    let filter = AuditFilter {
        target: None,
        actor: q.actor.clone(),
        action: q.action.clone(),
        since: day(&q.from, 0)?,
        until: day(&q.to, 1)?,
    };
    let list = ops::audit(&app, filter, q.sub.clone(), PAGE, q.cursor.as_deref()).await?;
    Ok(r.page(
        "admin_audit.html",
        "audit",
        json!({
            "items": list.items,
            "actor": q.actor,
            "sub": q.sub,
            "action": q.action,
            "from": q.from,
            "to": q.to,
            "next_href": next_href("/admin/audit", &r.uri, list.next_cursor.as_ref()),
        }),
    ))
}

/// POST `/admin/logout`: ends the console session (the SSO session stays).
pub async fn logout(headers: HeaderMap, w: Writer) -> Result<Response, ConsoleError> {
    let cookie = session::end(&w.app.store, &headers, https(&w.app)).await?;
    let mut res = ErrorPage::new(StatusCode::OK, "Bạn đã rời trang quản trị", "You left the admin console")
        .detail(
            "Phiên quản trị đã kết thúc. Phiên đăng nhập một lần của bạn vẫn còn; hãy đăng xuất nếu dùng máy chung.",
            "The console session ended. Your single sign-on session remains; log out if this is a shared computer.",
        )
        .action(super::PATH, "Vào lại trang quản trị", "Open the console again")
        .action("/logout", "Đăng xuất", "Log out")
        .into_response();
    res.headers_mut().append(header::SET_COOKIE, cookie);
    Ok(res)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn frame_ctx(lang: &str, extra: Value) -> Value {
        merge_json(
            json!({
                "lang": lang, "other_lang": "en", "other_lang_href": "/admin?lang=en",
                "csrf": "tok", "current": "search", "operator": "a1",
            }),
            extra,
        )
    }

    fn account_json() -> Value {
        json!({
            "id": "a1", "sub": "s1", "kind": "official", "status": { "status": "active" },
            "national_id": "079082006631", "claimed_national_id": null, "claim_state": null,
            "full_name": "Phạm Anh Tuấn", "birthdate": "1982-05-09", "gender": "male", "email": null,
            "phone": null, "created_at": 1_751_329_800, "updated_at": 1,
            "official": {
                "official_code": "CB-1", "former_province": "hcm", "legacy_org_unit": "26740",
                "org_unit": null, "org_unit_state": "ambiguous",
                "org_unit_candidates": [{ "code": "26734", "name": "Phường Sài Gòn" }],
                "position": "Chuyên viên", "roles": ["quan-tri"]
            }
        })
    }

    fn render_ok(template: &str, ctx: Value) -> String {
        match web::try_render(template, ctx) {
            Ok(html) => html,
            Err(e) => panic!("{template}: {e:#}"),
        }
    }

    #[test]
    fn every_console_page_renders_in_both_languages() {
        for lang in ["vi", "en"] {
            let search = render_ok(
                "admin_search.html",
                frame_ctx(
                    lang,
                    json!({
                        "by": "name", "q": "le", "upstream": null,
                        "upstreams": [{ "id": "hcm", "name_vi": "TP", "name_en": "City" }],
                        "results": { "items": [{ "id": "a1", "sub": "s", "kind": "citizen", "status": "active",
                            "merged_into": null, "full_name": "Lê Thị Hòa", "birthdate": null,
                            "national_id_masked": "074******276", "official_code": null }], "next_cursor": "c" },
                        "next_href": "/admin?cursor=c",
                    }),
                ),
            );
            assert!(search.contains("074******276") && search.contains("/admin/accounts/a1"), "{search}");
            let account = render_ok(
                "admin_account.html",
                frame_ctx(
                    lang,
                    json!({
                        "d": {
                            "account": account_json(),
                            "links": [{ "upstream": "hcm", "subject": "x", "account_id": "a1", "method": "first_login", "linked_at": 1, "last_login_at": 2 }],
                            "national_id_history": [{ "national_id": "1", "replaced_by": "2", "changed_at": 3 }],
                            "aliases": [{ "kind": "cmnd", "value": "123456789", "source": "import" }],
                            "warnings": [], "conflicts": [{ "id": 4, "reason": "birthdate_mismatch", "resolution": null }],
                            "sessions": [{ "sid": "s", "upstream": "hcm", "auth_time": 1, "acr": "urn:a", "created_at": 1, "clients": ["portal"] }],
                            "audit": [{ "id": 1, "at": 1, "actor": "account:a1", "action": "view", "target": "a1", "reason": null, "detail": "{}" }]
                        },
                        "status": "active", "merged_into": null, "done": "lock",
                        "upstreams": [{ "id": "bd", "name_vi": "BD", "name_en": "BD" }],
                    }),
                ),
            );
            assert!(
                account.contains("079082006631")
                    && account.contains("26734")
                    && account.contains("/admin/conflicts/4")
            );
            assert_eq!(
                account.matches("name=\"csrf\" value=\"tok\"").count(),
                7,
                "the console's forms and each write"
            );
            let conflicts = render_ok(
                "admin_conflicts.html",
                frame_ctx(
                    lang,
                    json!({
                        "items": [{ "id": 4, "national_id": "074******276", "reason": "r", "upstream": "bd", "created_at": 1, "resolution": null }],
                        "include_resolved": false, "next_href": null, "done": "merged",
                    }),
                ),
            );
            assert!(conflicts.contains("/admin/conflicts/4?lang="));
            let conflict = render_ok(
                "admin_conflict.html",
                frame_ctx(
                    lang,
                    json!({
                        "c": { "id": 4, "national_id": "074******276", "reason": "r", "detail": "d", "upstream": "bd",
                            "created_at": 1, "resolved_at": null, "resolution": null,
                            "existing_account_id": "a1", "new_account_id": "a2" },
                        "rows": [{ "label_vi": "Ngày sinh", "label_en": "Birthdate", "existing": "1", "new": "2", "differs": true }],
                    }),
                ),
            );
            assert!(conflict.contains("id=\"resolve\"") && conflict.contains("class=\"differs\""));
            let warnings = render_ok(
                "admin_warnings.html",
                frame_ctx(
                    lang,
                    json!({
                        "items": [{ "account_id": "a1", "source": "hcm", "code": "c", "national_id": "07*", "detail": "d", "created_at": 1 }],
                        "code": null, "source": "hcm", "account_id": null, "next_href": null,
                    }),
                ),
            );
            assert!(warnings.contains("value=\"hcm\""));
            let ops = render_ok(
                "admin_operations.html",
                frame_ctx(
                    lang,
                    json!({
                        "facts": views::facts(&json!({ "accounts": 3 })),
                        "upstreams": [{ "upstream": "hcm", "last_success": { "at": 1, "latency_ms": 40, "ok": true, "probe": true },
                            "last_failure": { "at": 2, "latency_ms": 9, "ok": false, "reason": "discovery: refused" },
                            "recent": [{ "at": 2, "latency_ms": 9, "ok": false }, { "at": 1, "latency_ms": 40, "ok": true }] }],
                        "failures": [{ "client_id": "c", "uri": "u", "sid": "s", "at": 1, "error": "e" }],
                        "next_href": null, "done": "retry-failed",
                    }),
                ),
            );
            assert!(ops.contains("data-fact=\"accounts\">3<"));
            assert!(
                ops.contains("discovery: refused") && ops.contains("data-done=\"retry-failed\""),
                "{ops}"
            );
            assert_eq!(ops.matches("name=\"csrf\" value=\"tok\"").count(), 2, "leaving and the retry");
            let audit = render_ok(
                "admin_audit.html",
                frame_ctx(
                    lang,
                    json!({
                        "items": [{ "id": 9, "at": 1, "actor": "account:a1", "action": "lock", "target": "a2",
                            "reason": "r", "detail": "{}" }],
                        "actor": "account:a1", "sub": null, "action": null, "from": "2026-12-01", "to": null,
                        "next_href": "/admin/audit?cursor=1.9",
                    }),
                ),
            );
            assert!(
                audit.contains("data-action=\"lock\"") && audit.contains("value=\"2026-12-01\""),
                "{audit}"
            );
        }
    }
}
