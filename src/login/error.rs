//! Login's errors and the page each one shows: a login's ([`LoginError`]) and the link
//! confirmation page's ([`LinkConfirmError`]). Internal causes go to the log only.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::accounts::AccountError;
use crate::state::StoreError;
use crate::web::ErrorPage;

/// Why a verified upstream identity did not become a session (an upstream's own failure is
/// the broker's error, shown by the broker's page).
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("the account may not log in (locked, or merged away)")]
    Refused,
    #[error("account store failure during login: {0}")]
    Accounts(#[from] AccountError),
    /// `during`: what login was doing (for the log).
    #[error("state store failure {during}: {source}")]
    Store { during: &'static str, source: StoreError },
}

impl LoginError {
    /// A state store failure while doing `during` ("reading a link intent").
    pub fn store(during: &'static str) -> impl FnOnce(StoreError) -> LoginError {
        move |source| LoginError::Store { during, source }
    }

    /// The page a person sees.
    pub fn page(&self) -> ErrorPage {
        match self {
            LoginError::Refused => {
                ErrorPage::new(StatusCode::FORBIDDEN, "Tài khoản đang bị khoá", "The account is locked")
                    .detail(
                        "Tài khoản của bạn hiện không thể đăng nhập. Vui lòng liên hệ tổng đài 1022.",
                        "Your account cannot log in at the moment. Please call the 1022 hotline.",
                    )
            }
            LoginError::Accounts(_) => ErrorPage::unavailable(),
            LoginError::Store { source, .. } => ErrorPage::for_store_error(source),
        }
    }
}

impl IntoResponse for LoginError {
    fn into_response(self) -> Response {
        match &self {
            LoginError::Refused => tracing::info!(error = %self, "login refused"),
            LoginError::Accounts(e) => tracing::error!(error = %e, "account store failure during login"),
            LoginError::Store { during, source } => {
                tracing::error!(error = %source, "state store failure {during}")
            }
        }
        self.page().into_response()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LinkConfirmError {
    #[error("no login session in this browser")]
    NotLoggedIn,
    #[error("the form's anti-forgery token does not match the session")]
    Forged,
    #[error("the form's decision is neither \"link\" nor \"decline\"")]
    BadDecision,
    #[error("no link offer waits for this session (answered, expired or never made)")]
    NoOffer,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Accounts(#[from] AccountError),
}

impl LinkConfirmError {
    /// The page a person sees.
    pub fn page(&self) -> ErrorPage {
        match self {
            LinkConfirmError::NotLoggedIn => {
                ErrorPage::new(StatusCode::UNAUTHORIZED, "Bạn chưa đăng nhập", "You are not logged in").detail(
                    "Không có phiên đăng nhập nào trên trình duyệt này. Không có tài khoản nào được liên kết.",
                    "There is no login session in this browser. No account was linked.",
                )
            }
            LinkConfirmError::Forged => {
                ErrorPage::new(StatusCode::FORBIDDEN, "Yêu cầu không hợp lệ", "Invalid request").detail(
                    "Biểu mẫu không hợp lệ hoặc đã hết hạn. Không có tài khoản nào được liên kết.",
                    "The form is not valid or has expired. No account was linked.",
                )
            }
            LinkConfirmError::BadDecision => {
                ErrorPage::new(StatusCode::BAD_REQUEST, "Yêu cầu không hợp lệ", "Invalid request").detail(
                    "Hãy chọn một trong hai nút của trang xác nhận. Không có tài khoản nào được liên kết.",
                    "Choose one of the two buttons of the confirmation page. No account was linked.",
                )
            }
            LinkConfirmError::NoOffer => ErrorPage::new(
                StatusCode::NOT_FOUND,
                "Không có yêu cầu liên kết nào đang chờ",
                "No account link is waiting",
            )
            .detail(
                "Yêu cầu liên kết tài khoản đã được trả lời hoặc đã hết hạn. Không có gì thay đổi. Hãy quay lại ứng dụng.",
                "The account link was already answered or has expired. Nothing changed. Go back to the application.",
            ),
            LinkConfirmError::Store(e) => ErrorPage::for_store_error(e),
            LinkConfirmError::Accounts(_) => ErrorPage::unavailable(),
        }
    }
}

impl IntoResponse for LinkConfirmError {
    fn into_response(self) -> Response {
        match &self {
            LinkConfirmError::Store(e) => {
                tracing::error!(error = %e, "state store failure at the link confirmation")
            }
            LinkConfirmError::Accounts(e) => {
                tracing::error!(error = %e, "account store failure at the link confirmation")
            }
            other => tracing::info!(error = %other, "link confirmation refused"),
        }
        self.page().into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(e: LinkConfirmError) -> u16 {
        e.into_response().status().as_u16()
    }

    #[test]
    fn a_refused_login_is_403_and_names_the_hotline() {
        let page = LoginError::Refused.page();
        assert_eq!(page.status, StatusCode::FORBIDDEN);
        assert!(page.detail_vi.contains("1022") && page.detail_en.contains("1022"));
        assert_eq!(LoginError::Refused.into_response().status(), StatusCode::FORBIDDEN);
    }

    #[test]
    fn an_account_store_failure_at_login_is_503_and_says_nothing_inside() {
        let e = LoginError::from(AccountError::Corrupt("secret detail".into()));
        let page = e.page();
        assert_eq!(page.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(!page.detail_en.contains("secret detail") && !page.detail_vi.contains("secret detail"));
    }

    #[test]
    fn a_state_store_failure_at_login_is_503_or_busy_when_full() {
        let down = LoginError::store("creating a session")(StoreError::Unavailable("down".into()));
        assert_eq!(down.into_response().status(), StatusCode::SERVICE_UNAVAILABLE);
        let full = LoginError::store("creating a session")(StoreError::Full(crate::state::Class::Anonymous));
        assert_eq!(full.page().title_en, ErrorPage::busy().title_en);
    }

    #[test]
    fn not_logged_in_is_401() {
        assert_eq!(status(LinkConfirmError::NotLoggedIn), 401);
    }

    #[test]
    fn a_forged_form_is_403() {
        assert_eq!(status(LinkConfirmError::Forged), 403);
    }

    #[test]
    fn a_bad_decision_is_400() {
        assert_eq!(status(LinkConfirmError::BadDecision), 400);
    }

    #[test]
    fn no_offer_is_404() {
        assert_eq!(status(LinkConfirmError::NoOffer), 404);
    }

    #[test]
    fn store_failures_are_503() {
        assert_eq!(status(LinkConfirmError::Store(StoreError::Unavailable("down".into()))), 503);
    }

    #[test]
    fn account_store_failures_are_503_and_say_nothing_inside() {
        let page = LinkConfirmError::Accounts(AccountError::Corrupt("secret detail".into())).page();
        assert_eq!(page.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(!page.detail_en.contains("secret detail"));
    }

    #[test]
    fn every_refusal_says_nothing_was_linked() {
        for e in [
            LinkConfirmError::NotLoggedIn,
            LinkConfirmError::Forged,
            LinkConfirmError::BadDecision,
            LinkConfirmError::NoOffer,
        ] {
            let page = e.page();
            assert!(!page.detail_vi.is_empty() && !page.detail_en.is_empty(), "bilingual: {e}");
            assert!(
                page.detail_en.contains("No account was linked")
                    || page.detail_en.contains("Nothing changed"),
                "{e}"
            );
        }
    }
}
