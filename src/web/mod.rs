//! Pages people see: templates (Vietnamese first, English second), the error page and the
//! security headers every HTML response carries.
//!
//! Owns: HTML rendering and wording. Must not: contain protocol or account logic; callers
//! pass plain values in. Templates are compiled into the binary and parsed once (constant
//! data, not configuration, so a process-wide instance is safe).

pub mod params;

use std::sync::LazyLock;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use minijinja::Environment;
use serde::Serialize;

static TEMPLATES: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::Html);
    for (name, source) in [
        ("layout.html", include_str!("templates/layout.html")),
        ("error.html", include_str!("templates/error.html")),
        ("chooser.html", include_str!("templates/chooser.html")),
        ("form_post.html", include_str!("templates/form_post.html")),
        ("logout_confirm.html", include_str!("templates/logout_confirm.html")),
        ("logged_out.html", include_str!("templates/logged_out.html")),
        ("sessions.html", include_str!("templates/sessions.html")),
        ("password_login.html", include_str!("templates/password_login.html")),
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
}

/// Renders a built-in template; a rendering failure becomes a plain bilingual 500 page.
pub fn render<S: Serialize>(template: &str, ctx: S) -> Html<String> {
    match TEMPLATES.get_template(template).and_then(|t| t.render(ctx)) {
        Ok(html) => Html(html),
        Err(e) => {
            tracing::error!(template, error = %e, "template rendering failed");
            Html("<!doctype html><meta charset=utf-8><title>Lỗi / Error</title><p>Đã có lỗi. / Something went wrong.</p>".to_string())
        }
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

/// Content-Security-Policy for ordinary pages: no scripts at all.
pub const CSP_PAGE: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action *; frame-ancestors 'none'; base-uri 'none'";

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
}

impl IntoResponse for ErrorPage {
    fn into_response(self) -> Response {
        let status = self.status;
        html_response(status, render("error.html", &self), CSP_PAGE)
    }
}
