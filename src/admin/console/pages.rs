//! The console's handlers: each finds the operator ([`operator`]; a page without a console
//! session starts the login instead), checks a write's anti-forgery token, calls one function
//! of `admin::ops`, and renders or redirects. What a page shows is worked out in
//! [`super::views`].

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::ConsoleError;
use super::session::{self, ConsoleSession};
use super::views;
use crate::accounts::lists::WarningFilter;
use crate::admin::AdminError;
use crate::admin::auth::may_administer;
use crate::admin::ops::{self, Decision, SearchBy, Survivor};
use crate::app::AppState;
use crate::provider::store_records as records;
use crate::web::{self, ErrorPage, Lang};

/// Rows on one page of every list.
const PAGE: u32 = 50;

fn https(app: &AppState) -> bool {
    app.issuer().starts_with("https://")
}

/// The operator at the console: a live console session whose SSO session is still alive and
/// whose account may still administer. None: no (longer a) console session.
async fn operator(app: &AppState, headers: &HeaderMap) -> Result<Option<ConsoleSession>, ConsoleError> {
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

/// The operator of a write: without a console session, nothing is done.
async fn writer(app: &AppState, headers: &HeaderMap, csrf: &str) -> Result<ConsoleSession, ConsoleError> {
    let cs = operator(app, headers).await?.ok_or(ConsoleError::NotLoggedIn)?;
    if !cs.csrf_matches(csrf) {
        return Err(ConsoleError::Forged);
    }
    Ok(cs)
}

/// The console session of a page, or the response that starts one (the login, then back to
/// `uri`).
async fn reader(
    app: &AppState,
    headers: &HeaderMap,
    uri: &Uri,
    lang: Lang,
) -> Result<ConsoleSession, Response> {
    match operator(app, headers).await {
        Ok(Some(cs)) => Ok(cs),
        Ok(None) => {
            let next = uri.path_and_query().map(|p| p.as_str().to_string());
            Err(enter(app, headers, next.as_deref(), lang, false).await.unwrap_or_else(|e| e.into_response()))
        }
        Err(e) => Err(e.into_response()),
    }
}

/// Starts a console session from the browser's SSO session when it may administer; otherwise
/// (unless `returning` from a login, which must not loop) parks a console login request, with
/// `[admin] min_acr` as its accepted levels, and sends the browser to the chooser. A session
/// below the level logs in afresh there (step-up).
async fn enter(
    app: &AppState,
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
        client_id: super::CLIENT.to_string(),
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
    State(app): State<AppState>,
    headers: HeaderMap,
    web::params::Query(q): web::params::Query<CallbackQuery>,
) -> Response {
    let lang = q.lang.unwrap_or_default();
    enter(&app, &headers, q.next.as_deref(), lang, true).await.unwrap_or_else(|e| e.into_response())
}

/// What every console page gets: language, its switch, the navigation and the form token.
fn frame(cs: &ConsoleSession, uri: &Uri, lang: Lang, current: &str) -> Value {
    json!({
        "lang": lang.code(),
        "other_lang": lang.other().code(),
        "other_lang_href": views::switch_lang_href(uri.path(), uri.query(), lang),
        "csrf": cs.csrf,
        "current": current,
        "operator": cs.account_id,
    })
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

#[derive(Debug, Default, Deserialize)]
pub struct SearchQuery {
    by: Option<SearchBy>,
    #[serde(default)]
    q: String,
    upstream: Option<String>,
    cursor: Option<String>,
    lang: Option<Lang>,
}

/// GET `/admin`: the search page (and its results, national IDs masked).
pub async fn search(
    State(app): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    web::params::Query(q): web::params::Query<SearchQuery>,
) -> Response {
    let lang = q.lang.unwrap_or_default();
    let cs = match reader(&app, &headers, &uri, lang).await {
        Ok(cs) => cs,
        Err(r) => return r,
    };
    let by = q.by.unwrap_or(SearchBy::Name);
    let text = q.q.trim().to_string();
    let results = if text.is_empty() {
        None
    } else {
        match ops::search(&app, by, text.clone(), q.upstream.clone(), PAGE, q.cursor.as_deref()).await {
            Ok(p) => Some(p),
            Err(e) => return ConsoleError::from(e).into_response(),
        }
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
    let upstreams: Vec<Value> = app
        .broker
        .upstream_names()
        .into_iter()
        .map(|(id, vi, en)| json!({ "id": id, "name_vi": vi, "name_en": en }))
        .collect();
    let ctx = merge_json(
        frame(&cs, &uri, lang, "search"),
        json!({
            "by": by_code(by),
            "q": text,
            "upstream": q.upstream,
            "upstreams": upstreams,
            "results": results,
            "next_href": next_href,
        }),
    );
    page("admin_search.html", ctx)
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
    lang: Option<Lang>,
    /// Why the account is looked at (recorded with the view).
    reason: Option<String>,
    /// The write just done (a notice).
    done: Option<String>,
}

/// GET `/admin/accounts/{id}`: everything about one account, the full national ID included;
/// each view is written to the audit log first.
pub async fn account(
    State(app): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
    web::params::Query(q): web::params::Query<AccountQuery>,
) -> Response {
    let lang = q.lang.unwrap_or_default();
    let cs = match reader(&app, &headers, &uri, lang).await {
        Ok(cs) => cs,
        Err(r) => return r,
    };
    let detail = match ops::account_detail(&app, &id, &cs.actor(), q.reason.as_deref()).await {
        Ok(d) => d,
        Err(e) => return ConsoleError::from(e).into_response(),
    };
    let merged_into = match &detail.account.status {
        crate::accounts::AccountStatus::MergedInto(into) => Some(into.clone()),
        _ => None,
    };
    let upstreams: Vec<Value> = app
        .broker
        .upstream_names()
        .into_iter()
        .map(|(id, vi, en)| json!({ "id": id, "name_vi": vi, "name_en": en }))
        .collect();
    let ctx = merge_json(
        frame(&cs, &uri, lang, "account"),
        json!({
            "d": detail,
            "status": match &detail.account.status {
                crate::accounts::AccountStatus::Active => "active",
                crate::accounts::AccountStatus::Locked => "locked",
                crate::accounts::AccountStatus::MergedInto(_) => "merged",
            },
            "merged_into": merged_into,
            "upstreams": upstreams,
            "done": q.done,
        }),
    );
    page("admin_account.html", ctx)
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
}

/// Back to an account's page after a write, with a notice.
fn to_account(id: &str, lang: Lang, done: &str) -> Response {
    let path = format!(
        "/admin/accounts/{}",
        url::form_urlencoded::byte_serialize(id.as_bytes()).collect::<String>()
    );
    Redirect::to(&format!("{path}?lang={}&done={done}", lang.code())).into_response()
}

/// One account write: the operator, then the operation, then back to the page.
async fn write<F, Fut>(
    app: AppState,
    headers: HeaderMap,
    id: String,
    form: WriteForm,
    done: &str,
    op: F,
) -> Response
where
    F: FnOnce(AppState, String, String, WriteForm) -> Fut,
    Fut: std::future::Future<Output = Result<Option<String>, AdminError>>,
{
    let lang = form.lang.unwrap_or_default();
    let cs = match writer(&app, &headers, &form.csrf).await {
        Ok(cs) => cs,
        Err(e) => return e.into_response(),
    };
    match op(app, id.clone(), cs.actor(), form).await {
        Ok(then) => to_account(then.as_deref().unwrap_or(&id), lang, done),
        Err(e) => ConsoleError::from(e).into_response(),
    }
}

/// POST `/admin/accounts/{id}/lock`.
pub async fn lock(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    web::params::Form(form): web::params::Form<WriteForm>,
) -> Response {
    write(app, headers, id, form, "lock", |app, id, actor, f| async move {
        ops::set_locked(&app, &id, true, &actor, &f.reason).await.map(|_| None)
    })
    .await
}

/// POST `/admin/accounts/{id}/unlock`.
pub async fn unlock(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    web::params::Form(form): web::params::Form<WriteForm>,
) -> Response {
    write(app, headers, id, form, "unlock", |app, id, actor, f| async move {
        ops::set_locked(&app, &id, false, &actor, &f.reason).await.map(|_| None)
    })
    .await
}

/// POST `/admin/accounts/{id}/sessions/end`: every session, everywhere (back-channel logout).
pub async fn end_sessions(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    web::params::Form(form): web::params::Form<WriteForm>,
) -> Response {
    write(app, headers, id, form, "end-sessions", |app, id, actor, f| async move {
        ops::end_sessions(&app, &id, &actor, &f.reason).await.map(|_| None)
    })
    .await
}

/// POST `/admin/accounts/{id}/links`.
pub async fn link(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    web::params::Form(form): web::params::Form<WriteForm>,
) -> Response {
    write(app, headers, id, form, "link", |app, id, actor, f| async move {
        ops::link(&app, &id, f.upstream.trim(), f.subject.trim(), &actor, &f.reason).await.map(|_| None)
    })
    .await
}

/// POST `/admin/accounts/{id}/links/remove`.
pub async fn unlink(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    web::params::Form(form): web::params::Form<WriteForm>,
) -> Response {
    write(app, headers, id, form, "unlink", |app, id, actor, f| async move {
        ops::unlink(&app, &id, &f.upstream, &f.subject, &actor, &f.reason).await.map(|_| None)
    })
    .await
}

/// POST `/admin/accounts/{id}/merge`: merges this account into `into` (then shows the survivor).
pub async fn merge(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    web::params::Form(form): web::params::Form<WriteForm>,
) -> Response {
    write(app, headers, id, form, "merge", |app, id, actor, f| async move {
        let into = f.into.trim().to_string();
        ops::merge(&app, &id, &into, &actor, &f.reason).await.map(|survivor| Some(survivor.id))
    })
    .await
}

/// POST `/admin/accounts/{id}/unit`: an official's unit in the new structure.
pub async fn set_unit(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    web::params::Form(form): web::params::Form<WriteForm>,
) -> Response {
    write(app, headers, id, form, "unit", |app, id, actor, f| async move {
        ops::set_unit(&app, &id, f.unit.trim(), &actor, &f.reason).await.map(|_| None)
    })
    .await
}

#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    cursor: Option<String>,
    lang: Option<Lang>,
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
    State(app): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    web::params::Query(q): web::params::Query<ListQuery>,
) -> Response {
    let lang = q.lang.unwrap_or_default();
    let cs = match reader(&app, &headers, &uri, lang).await {
        Ok(cs) => cs,
        Err(r) => return r,
    };
    let include = q.include_resolved.unwrap_or(false);
    let list = match app.accounts.conflicts_page(include, PAGE, q.cursor.as_deref()).await {
        Ok(p) => p,
        Err(e) => return ConsoleError::from(e).into_response(),
    };
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
    let ctx = merge_json(
        frame(&cs, &uri, lang, "conflicts"),
        json!({
            "items": items,
            "include_resolved": include,
            "next_href": next_href("/admin/conflicts", &uri, list.next_cursor.as_ref()),
            "done": q.done,
        }),
    );
    page("admin_conflicts.html", ctx)
}

#[derive(Debug, Default, Deserialize)]
pub struct LangQuery {
    lang: Option<Lang>,
}

/// GET `/admin/conflicts/{id}`: the two records side by side and the decision.
pub async fn conflict(
    State(app): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<i64>,
    web::params::Query(q): web::params::Query<LangQuery>,
) -> Response {
    let lang = q.lang.unwrap_or_default();
    let cs = match reader(&app, &headers, &uri, lang).await {
        Ok(cs) => cs,
        Err(r) => return r,
    };
    let review = match ops::conflict_review(&app, id).await {
        Ok(r) => r,
        Err(e) => return ConsoleError::from(e).into_response(),
    };
    let ctx = merge_json(
        frame(&cs, &uri, lang, "conflicts"),
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
    );
    page("admin_conflict.html", ctx)
}

/// POST `/admin/conflicts/{id}/resolve`: same person (merge) or different people (keep apart).
pub async fn resolve(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    web::params::Form(form): web::params::Form<WriteForm>,
) -> Response {
    let lang = form.lang.unwrap_or_default();
    let cs = match writer(&app, &headers, &form.csrf).await {
        Ok(cs) => cs,
        Err(e) => return e.into_response(),
    };
    let Some(decision) = form.decision else {
        return ConsoleError::Operation(AdminError::BadRequest("choose a decision".into())).into_response();
    };
    let survivor = form.survivor.unwrap_or_default();
    match ops::resolve_conflict(&app, id, decision, survivor, &cs.actor(), &form.reason).await {
        Ok(c) => {
            let done = c.resolution.unwrap_or_default();
            let done: String = url::form_urlencoded::byte_serialize(done.as_bytes()).collect();
            Redirect::to(&format!("/admin/conflicts?lang={}&done={done}", lang.code())).into_response()
        }
        Err(e) => ConsoleError::from(e).into_response(),
    }
}

/// GET `/admin/warnings`: national-ID warnings with filters, numbers masked.
pub async fn warnings(
    State(app): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    web::params::Query(q): web::params::Query<ListQuery>,
) -> Response {
    let lang = q.lang.unwrap_or_default();
    let cs = match reader(&app, &headers, &uri, lang).await {
        Ok(cs) => cs,
        Err(r) => return r,
    };
    let some = |v: &Option<String>| v.as_ref().map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
    let filter = WarningFilter {
        code: some(&q.code),
        source: some(&q.source),
        account_id: some(&q.account_id),
        since: None,
    };
    let list = match ops::warnings(&app, &filter, PAGE, q.cursor.as_deref()).await {
        Ok(p) => p,
        Err(e) => return ConsoleError::from(e).into_response(),
    };
    let ctx = merge_json(
        frame(&cs, &uri, lang, "warnings"),
        json!({
            "items": list.items,
            "code": filter.code,
            "source": filter.source,
            "account_id": filter.account_id,
            "next_href": next_href("/admin/warnings", &uri, list.next_cursor.as_ref()),
        }),
    );
    page("admin_warnings.html", ctx)
}

/// GET `/admin/operations`: what `ops::operations` and the failed back-channel logouts say.
pub async fn operations(
    State(app): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    web::params::Query(q): web::params::Query<ListQuery>,
) -> Response {
    let lang = q.lang.unwrap_or_default();
    let cs = match reader(&app, &headers, &uri, lang).await {
        Ok(cs) => cs,
        Err(r) => return r,
    };
    let facts = match ops::operations(&app).await {
        Ok(o) => views::facts(&serde_json::to_value(o).unwrap_or(Value::Null)),
        Err(e) => return ConsoleError::from(e).into_response(),
    };
    let failures = match ops::logout_failures(&app, PAGE, q.cursor.as_deref()).await {
        Ok(f) => f,
        Err(e) => return ConsoleError::from(e).into_response(),
    };
    let ctx = merge_json(
        frame(&cs, &uri, lang, "operations"),
        json!({
            "facts": facts,
            "failures": failures.items,
            "next_href": next_href("/admin/operations", &uri, failures.next_cursor.as_ref()),
        }),
    );
    page("admin_operations.html", ctx)
}

/// POST `/admin/logout`: ends the console session (the SSO session stays).
pub async fn logout(
    State(app): State<AppState>,
    headers: HeaderMap,
    web::params::Form(form): web::params::Form<WriteForm>,
) -> Response {
    if let Err(e) = writer(&app, &headers, &form.csrf).await {
        return e.into_response();
    }
    let cookie = match session::end(&app.store, &headers, https(&app)).await {
        Ok(c) => c,
        Err(e) => return ConsoleError::from(e).into_response(),
    };
    let mut res = ErrorPage::new(StatusCode::OK, "Bạn đã rời trang quản trị", "You left the admin console")
        .detail(
            "Phiên quản trị đã kết thúc. Phiên đăng nhập một lần của bạn vẫn còn; hãy đăng xuất nếu dùng máy chung.",
            "The console session ended. Your single sign-on session remains; log out if this is a shared computer.",
        )
        .action(super::PATH, "Vào lại trang quản trị", "Open the console again")
        .action("/logout", "Đăng xuất", "Log out")
        .into_response();
    res.headers_mut().append(header::SET_COOKIE, cookie);
    res
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
                        "failures": [{ "client_id": "c", "uri": "u", "sid": "s", "at": 1, "error": "e" }],
                        "next_href": null,
                    }),
                ),
            );
            assert!(ops.contains("data-fact=\"accounts\">3<"));
        }
    }
}
