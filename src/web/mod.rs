//! Pages people see: templates (Vietnamese first, English second), the error page and the
//! security headers every HTML response carries; and what every part reads of a request the
//! same way: its parameters ([`params`]) and the client's address ([`client_ip`]).
//!
//! Owns: HTML rendering and wording. Must not: contain protocol or account logic; callers
//! pass plain values in. Templates are compiled into the binary and parsed once (constant
//! data, not configuration, so a process-wide instance is safe).

pub mod client_ip;
pub mod params;

use std::sync::LazyLock;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use minijinja::Environment;
use serde::Serialize;

static TEMPLATES: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::Html);
    // `{{ at | vntime }}`: a Unix time as people in Vietnam read it.
    env.add_filter("vntime", |at: i64| vietnam_time(at));
    // `{{ id | segment }}`: a value made safe as one path segment.
    env.add_filter("segment", |s: String| path_segment(&s));
    for (name, source) in [
        ("layout.html", include_str!("templates/layout.html")),
        ("error.html", include_str!("templates/error.html")),
        ("chooser.html", include_str!("templates/chooser.html")),
        ("form_post.html", include_str!("templates/form_post.html")),
        ("logout_confirm.html", include_str!("templates/logout_confirm.html")),
        ("logged_out.html", include_str!("templates/logged_out.html")),
        ("sessions.html", include_str!("templates/sessions.html")),
        ("link_confirm.html", include_str!("templates/link_confirm.html")),
        ("password_login.html", include_str!("templates/password_login.html")),
        ("account.html", include_str!("templates/account.html")),
        ("account_unlink.html", include_str!("templates/account_unlink.html")),
        ("account_link_start.html", include_str!("templates/account_link_start.html")),
        ("admin_frame.html", include_str!("templates/admin_frame.html")),
        ("admin_search.html", include_str!("templates/admin_search.html")),
        ("admin_account.html", include_str!("templates/admin_account.html")),
        ("admin_conflicts.html", include_str!("templates/admin_conflicts.html")),
        ("admin_conflict.html", include_str!("templates/admin_conflict.html")),
        ("admin_warnings.html", include_str!("templates/admin_warnings.html")),
        ("admin_audit.html", include_str!("templates/admin_audit.html")),
        ("admin_operations.html", include_str!("templates/admin_operations.html")),
    ] {
        if let Err(e) = env.add_template(name, source) {
            tracing::error!(template = name, error = %e, "built-in template does not parse");
        }
    }
    env
});

/// Language of a page, from `ui_locales` (space-separated, in preference order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    #[default]
    Vi,
    En,
}

impl Lang {
    pub fn from_ui_locales(ui_locales: Option<&str>) -> Lang {
        for tag in ui_locales.unwrap_or("").split_whitespace() {
            let primary = tag.split(['-', '_']).next().unwrap_or("").to_ascii_lowercase();
            match primary.as_str() {
                "vi" => return Lang::Vi,
                "en" => return Lang::En,
                _ => {}
            }
        }
        Lang::Vi
    }
    pub fn code(self) -> &'static str {
        match self {
            Lang::Vi => "vi",
            Lang::En => "en",
        }
    }

    /// The other language (for a page's language switch).
    pub fn other(self) -> Lang {
        match self {
            Lang::Vi => Lang::En,
            Lang::En => Lang::Vi,
        }
    }
}

/// Renders a built-in template; a rendering failure becomes a plain bilingual 500 page.
pub fn render<S: Serialize>(template: &str, ctx: S) -> Html<String> {
    match try_render(template, ctx) {
        Ok(html) => Html(html),
        Err(e) => {
            tracing::error!(template, error = %e, "template rendering failed");
            Html("<!doctype html><meta charset=utf-8><title>Lỗi / Error</title><p>Đã có lỗi. / Something went wrong.</p>".to_string())
        }
    }
}

/// A value percent-encoded as one URL path segment (no `/`, `?`, `#` or space left).
pub fn path_segment(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>().replace('+', "%20")
}

/// Renders a built-in template, or says why it cannot (for tests of the templates).
pub fn try_render<S: Serialize>(template: &str, ctx: S) -> Result<String, minijinja::Error> {
    TEMPLATES.get_template(template).and_then(|t| t.render(ctx))
}

/// A time as people in Vietnam read it (UTC+7), `HH:MM DD/MM/YYYY`; empty for an
/// impossible timestamp.
pub fn vietnam_time(at: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(at)
        .map(|t| t.to_offset(time::macros::offset!(+7)))
        .ok()
        .and_then(|t| {
            t.format(time::macros::format_description!("[hour]:[minute] [day]/[month]/[year]")).ok()
        })
        .unwrap_or_default()
}

/// A national ID number as a page shows it: only its last three digits (`*********512`);
/// `—` when there is none or it is too short to hide anything.
pub fn masked_number(number: Option<&str>) -> String {
    match number {
        Some(n) if n.len() > 3 && n.is_ascii() => {
            format!("{}{}", "*".repeat(n.len() - 3), n.get(n.len() - 3..).unwrap_or_default())
        }
        _ => "—".to_string(),
    }
}

/// Adds the headers every HTML page of the gateway carries.
pub fn html_response(status: StatusCode, html: Html<String>, csp: &'static str) -> Response {
    let mut res = (status, html).into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(csp));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    res
}

/// Content-Security-Policy for ordinary pages: no scripts at all; forms post only to the
/// gateway (see [`allow_form_targets`] for pages whose forms lead on to an RP).
pub const CSP_PAGE: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// `Strict-Transport-Security` for every response of a gateway whose issuer is https (set
/// even when TLS ends at a proxy in front: the browser saw https). None under http.
pub fn hsts(issuer: &str) -> Option<HeaderValue> {
    issuer.starts_with("https://").then(|| HeaderValue::from_static("max-age=31536000"))
}

/// A CSP source expression naming `url` as exactly as CSP can: scheme, host, port and path
/// (a query cannot be expressed, and CSP ignores it when matching). Private-use schemes of
/// native apps and IPv6 literals, which a host-source cannot hold, are named by scheme.
pub fn csp_source(url: &str) -> Option<String> {
    let u = url::Url::parse(url).ok()?;
    let scheme = u.scheme();
    let host = match u.host() {
        Some(url::Host::Domain(d)) => d.to_string(),
        Some(url::Host::Ipv4(ip)) => ip.to_string(),
        Some(url::Host::Ipv6(_)) | None => return Some(format!("{scheme}:")),
    };
    if !matches!(scheme, "http" | "https")
        || !host.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    {
        return Some(format!("{scheme}:"));
    }
    let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
    // The URL parser percent-encodes what a path may not hold, except the two characters
    // that delimit CSP itself (CSP 3 §2.3.1 asks for them encoded).
    let path = u.path().replace(';', "%3B").replace(',', "%2C");
    Some(format!("{scheme}://{host}{port}{path}"))
}

/// A `form-action` directive: the gateway itself if `include_self`, and each of `targets`.
pub fn form_action(include_self: bool, targets: &[&str]) -> String {
    let mut sources: Vec<String> = Vec::new();
    if include_self {
        sources.push("'self'".into());
    }
    for source in targets.iter().filter_map(|t| csp_source(t)) {
        if !sources.contains(&source) {
            sources.push(source);
        }
    }
    if sources.is_empty() {
        sources.push("'none'".into());
    }
    format!("form-action {}", sources.join(" "))
}

/// Lets a page's forms, which post to the gateway, lead on to `targets` (registered URLs the
/// gateway's answer redirects to): browsers check `form-action` on those redirects too.
pub fn allow_form_targets(res: &mut Response, targets: &[&str]) {
    let current = res
        .headers()
        .get(header::CONTENT_SECURITY_POLICY)
        .and_then(|v| v.to_str().ok())
        .unwrap_or(CSP_PAGE)
        .to_string();
    let directive = form_action(true, targets);
    let mut directives: Vec<String> = current
        .split(';')
        .map(str::trim)
        .filter(|d| !d.is_empty() && !d.starts_with("form-action"))
        .map(str::to_string)
        .collect();
    directives.push(directive);
    if let Ok(v) = HeaderValue::from_str(&directives.join("; ")) {
        res.headers_mut().insert(header::CONTENT_SECURITY_POLICY, v);
    }
}

/// `Retry-After` of the busy page (a full store frees up as anonymous records expire).
pub const BUSY_RETRY_AFTER_SECS: u64 = 30;

/// A link or button offered on an error page.
#[derive(Debug, Clone, Serialize)]
pub struct Action {
    pub href: String,
    pub label_vi: String,
    pub label_en: String,
}

/// A readable error page, always in Vietnamese and English. Internal causes are logged by the
/// caller, never shown.
#[derive(Debug, Clone, Serialize)]
pub struct ErrorPage {
    #[serde(skip)]
    pub status: StatusCode,
    pub title_vi: String,
    pub title_en: String,
    pub detail_vi: String,
    pub detail_en: String,
    pub actions: Vec<Action>,
    /// Seconds to send in `Retry-After` (pages that ask the person to come back later).
    #[serde(skip)]
    pub retry_after: Option<u64>,
}

impl ErrorPage {
    pub fn new(status: StatusCode, title_vi: &str, title_en: &str) -> Self {
        ErrorPage {
            status,
            title_vi: title_vi.into(),
            title_en: title_en.into(),
            detail_vi: String::new(),
            detail_en: String::new(),
            actions: Vec::new(),
            retry_after: None,
        }
    }
    pub fn detail(mut self, vi: impl Into<String>, en: impl Into<String>) -> Self {
        self.detail_vi = vi.into();
        self.detail_en = en.into();
        self
    }
    pub fn action(mut self, href: impl Into<String>, vi: &str, en: &str) -> Self {
        self.actions.push(Action { href: href.into(), label_vi: vi.into(), label_en: en.into() });
        self
    }

    /// The page shown when the state store or account database is down.
    pub fn unavailable() -> Self {
        ErrorPage::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Hệ thống tạm thời gián đoạn",
            "Service temporarily unavailable",
        )
        .detail("Vui lòng thử lại sau ít phút.", "Please try again in a few minutes.")
    }

    /// The page shown when the state store is full (503 with `Retry-After`): the gateway is
    /// busy, nothing is wrong with the request.
    pub fn busy() -> Self {
        let mut page = ErrorPage::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Hệ thống đang quá tải",
            "The login service is busy",
        )
        .detail(
            "Hệ thống đăng nhập đang phục vụ quá nhiều yêu cầu. Vui lòng thử lại sau ít phút.",
            "The login service is handling too many requests. Please try again in a few minutes.",
        );
        page.retry_after = Some(BUSY_RETRY_AFTER_SECS);
        page
    }

    /// The page for a state-store failure: [`ErrorPage::busy`] when the store is full (a
    /// refused write), [`ErrorPage::unavailable`] when it cannot answer.
    pub fn for_store_error(e: &crate::state::StoreError) -> Self {
        match e {
            crate::state::StoreError::Full(_) => ErrorPage::busy(),
            _ => ErrorPage::unavailable(),
        }
    }

    /// The page shown when an address sends more requests than `[limits]` allow (429 with
    /// `Retry-After`).
    pub fn rate_limited(retry_after_secs: u64) -> Self {
        let minutes = retry_after_secs.div_ceil(60).max(1);
        let mut page = ErrorPage::new(
            StatusCode::TOO_MANY_REQUESTS,
            "Quá nhiều yêu cầu",
            "Too many requests",
        )
        .detail(
            format!(
                "Có quá nhiều yêu cầu đăng nhập từ địa chỉ mạng của bạn. Vui lòng thử lại sau khoảng {minutes} phút."
            ),
            format!(
                "Too many login requests came from your network address. Please try again in about {minutes} minute(s)."
            ),
        );
        page.retry_after = Some(retry_after_secs.max(1));
        page
    }
}

impl IntoResponse for ErrorPage {
    fn into_response(self) -> Response {
        let status = self.status;
        let retry_after = self.retry_after;
        let mut res = html_response(status, render("error.html", &self), CSP_PAGE);
        if let Some(secs) = retry_after {
            res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn rate_limited_page_is_429_bilingual_with_retry_after() {
        let res = ErrorPage::rate_limited(42).into_response();
        assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(res.headers()[header::RETRY_AFTER], "42");
        assert_eq!(res.headers()[header::CACHE_CONTROL], "no-store");
        let body = axum::body::to_bytes(res.into_body(), 1 << 20).await.unwrap();
        let html = String::from_utf8(body.to_vec()).unwrap();
        assert!(html.contains("Quá nhiều yêu cầu") && html.contains("Too many requests"), "{html}");
        assert!(html.contains("1 phút") && html.contains("1 minute"), "42 s rounds up to a minute: {html}");
        let busy =
            ErrorPage::for_store_error(&crate::state::StoreError::Full(crate::state::Class::Anonymous))
                .into_response();
        assert_eq!(busy.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(busy.headers()[header::RETRY_AFTER], "30");
        let body = axum::body::to_bytes(busy.into_body(), 1 << 20).await.unwrap();
        let html = String::from_utf8(body.to_vec()).unwrap();
        assert!(html.contains("quá tải") && html.contains("busy"), "{html}");
        let down = ErrorPage::for_store_error(&crate::state::StoreError::Unavailable("x".into()));
        assert_eq!(down.title_en, "Service temporarily unavailable");
        // Other pages carry no Retry-After.
        assert!(!ErrorPage::unavailable().into_response().headers().contains_key(header::RETRY_AFTER));
    }
}

#[cfg(test)]
mod display_tests {
    use super::*;

    #[test]
    fn only_the_last_three_digits_are_shown() {
        assert_eq!(masked_number(Some("079190004512")), "*********512");
        assert_eq!(masked_number(Some("512")), "—");
        assert_eq!(masked_number(None), "—");
        assert_eq!(masked_number(Some("07919000451é")), "—", "never slices inside a character");
    }

    #[test]
    fn times_are_shown_in_vietnam_time() {
        // 2025-07-01 00:30 UTC is 07:30 in Ho Chi Minh City.
        assert_eq!(vietnam_time(1_751_329_800), "07:30 01/07/2025");
    }
}

#[cfg(test)]
mod csp_tests {
    use super::*;

    #[test]
    fn hsts_only_under_an_https_issuer() {
        assert_eq!(hsts("https://sso.example").unwrap(), "max-age=31536000");
        assert!(hsts("http://127.0.0.1:8080").is_none());
    }

    #[test]
    fn csp_sources_name_the_target_exactly_where_csp_can() {
        let cases = [
            ("https://rp.example/cb", "https://rp.example/cb"),
            ("https://rp.example:8443/a/cb?x=1", "https://rp.example:8443/a/cb"),
            ("http://127.0.0.1:9/portal/cb", "http://127.0.0.1:9/portal/cb"),
            ("https://rp.example/a;b,c", "https://rp.example/a%3Bb%2Cc"),
            ("https://rp.example/a b'", "https://rp.example/a%20b'"),
            ("https://bücher.example/cb", "https://xn--bcher-kva.example/cb"),
            ("vn.gov.tphcm.vanban:/oauth/callback", "vn.gov.tphcm.vanban:"),
            ("http://[::1]:53682/cb", "http:"),
        ];
        for (url, source) in cases {
            assert_eq!(csp_source(url).as_deref(), Some(source), "{url}");
        }
        assert_eq!(csp_source("not a url"), None);
    }

    #[test]
    fn form_action_lists_self_and_the_targets_once() {
        assert_eq!(form_action(true, &[]), "form-action 'self'");
        assert_eq!(form_action(false, &["https://rp.example/cb"]), "form-action https://rp.example/cb");
        assert_eq!(
            form_action(true, &["https://rp.example/cb", "https://rp.example/cb?again"]),
            "form-action 'self' https://rp.example/cb"
        );
        assert_eq!(form_action(false, &["not a url"]), "form-action 'none'");
    }

    #[test]
    fn ordinary_pages_post_only_here_and_targets_can_be_added() {
        assert!(CSP_PAGE.contains("form-action 'self';"));
        assert!(!CSP_PAGE.contains('*'));
        let mut res = ErrorPage::new(StatusCode::BAD_REQUEST, "x", "x").into_response();
        allow_form_targets(&mut res, &["https://rp.example/cb"]);
        let csp = res.headers()[header::CONTENT_SECURITY_POLICY].to_str().unwrap().to_string();
        assert!(csp.ends_with("form-action 'self' https://rp.example/cb"), "{csp}");
        assert_eq!(csp.matches("form-action").count(), 1, "{csp}");
        assert!(csp.starts_with("default-src 'none'") && csp.contains("frame-ancestors 'none'"), "{csp}");
    }
}
