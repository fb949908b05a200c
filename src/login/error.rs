//! Errors of the link confirmation page and the page each one shows. Internal causes go to the
//! log only.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::accounts::AccountError;
use crate::state::StoreError;
use crate::web::ErrorPage;

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
