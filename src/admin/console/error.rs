//! The console's one error type and the one place it becomes a page (Vietnamese first,
//! English; every refusal says that nothing changed). Internal causes go to the log only.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::admin::AdminError;
use crate::state::StoreError;
use crate::web::ErrorPage;

#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// The logged-in person lacks the admin role, or the account is locked.
    #[error("not an administrator: {0}")]
    NotAdmin(String),
    /// Back from a login that still does not reach `[admin] min_acr`.
    #[error("the login does not reach {acr}")]
    TooWeak { acr: String },
    /// Back at the console's return point without a login session.
    #[error("no login session in this browser")]
    NotLoggedIn,
    /// A write without the console session's anti-forgery token.
    #[error("the form's anti-forgery token does not match the console session")]
    Forged,
    /// What an admin operation refused (missing reason, unknown account, contradiction, …).
    #[error(transparent)]
    Operation(#[from] AdminError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

const NOTHING_CHANGED_VI: &str = "Không có gì thay đổi.";
const NOTHING_CHANGED_EN: &str = "Nothing changed.";

impl From<crate::accounts::AccountError> for ConsoleError {
    fn from(e: crate::accounts::AccountError) -> Self {
        ConsoleError::Operation(e.into())
    }
}

impl ConsoleError {
    /// The page the operator sees.
    pub fn page(&self) -> ErrorPage {
        let home = |p: ErrorPage| p.action(super::PATH, "Về trang quản trị", "Back to the console");
        match self {
            ConsoleError::NotAdmin(_) => ErrorPage::new(
                StatusCode::FORBIDDEN,
                "Bạn không có quyền quản trị",
                "You may not use the admin console",
            )
            .detail(
                format!("Tài khoản đang đăng nhập không có vai trò quản trị (hoặc đã bị khoá). {NOTHING_CHANGED_VI} Hãy đăng xuất và đăng nhập bằng tài khoản quản trị."),
                format!("The account logged in does not hold the admin role (or is locked). {NOTHING_CHANGED_EN} Log out and log in with an administrator's account."),
            )
            .action("/logout", "Đăng xuất", "Log out"),
            ConsoleError::TooWeak { .. } => home(
                ErrorPage::new(
                    StatusCode::UNAUTHORIZED,
                    "Cần đăng nhập với mức bảo đảm cao hơn",
                    "A stronger login is needed",
                )
                .detail(
                    format!("Trang quản trị cần đăng nhập bằng một hệ thống có mức bảo đảm cao hơn (ví dụ VNeID). {NOTHING_CHANGED_VI}"),
                    format!("The console needs a login through a system of higher assurance (e.g. VNeID). {NOTHING_CHANGED_EN}"),
                ),
            ),
            ConsoleError::NotLoggedIn => home(
                ErrorPage::new(StatusCode::UNAUTHORIZED, "Bạn chưa đăng nhập", "You are not logged in").detail(
                    format!("Không có phiên đăng nhập nào trên trình duyệt này. {NOTHING_CHANGED_VI}"),
                    format!("There is no login session in this browser. {NOTHING_CHANGED_EN}"),
                ),
            ),
            ConsoleError::Forged => home(
                ErrorPage::new(StatusCode::FORBIDDEN, "Yêu cầu không hợp lệ", "Invalid request").detail(
                    format!("Biểu mẫu không hợp lệ hoặc đã hết hạn. {NOTHING_CHANGED_VI} Hãy tải lại trang và thử lại."),
                    format!("The form is not valid or has expired. {NOTHING_CHANGED_EN} Reload the page and try again."),
                ),
            ),
            ConsoleError::Operation(e) => home(operation_page(e)),
            ConsoleError::Store(e) => ErrorPage::for_store_error(e),
        }
    }
}

/// What an admin operation's refusal means to the operator.
fn operation_page(e: &AdminError) -> ErrorPage {
    match e {
        AdminError::BadRequest(why) => {
            let (vi, en) = if why.contains("reason") {
                ("Cần ghi lý do (không quá 1000 ký tự) cho mọi thay đổi.", "Every change needs a reason (at most 1000 characters).")
            } else {
                ("Dữ liệu nhập vào không hợp lệ.", "The input is not valid.")
            };
            ErrorPage::new(StatusCode::BAD_REQUEST, "Không thực hiện được", "Not done").detail(
                format!("{vi} {NOTHING_CHANGED_VI}"),
                format!("{en} ({why}) {NOTHING_CHANGED_EN}"),
            )
        }
        AdminError::NotFound(what) => ErrorPage::new(StatusCode::NOT_FOUND, "Không tìm thấy", "Not found")
            .detail(format!("Không có mục này. {NOTHING_CHANGED_VI}"), format!("No {what}. {NOTHING_CHANGED_EN}")),
        AdminError::Conflict(why) => {
            ErrorPage::new(StatusCode::CONFLICT, "Không thực hiện được", "Not done").detail(
                format!("Thao tác mâu thuẫn với trạng thái hiện tại (có thể người khác vừa xử lý). {NOTHING_CHANGED_VI}"),
                format!("The operation contradicts the current state ({why}). {NOTHING_CHANGED_EN}"),
            )
        }
        AdminError::Unavailable => ErrorPage::unavailable(),
        // Token refusals are the API's; a console session never carries a token.
        AdminError::MissingToken
        | AdminError::InvalidToken(_)
        | AdminError::InsufficientScope { .. }
        | AdminError::NotAdmin(_)
        | AdminError::InsufficientAuthentication { .. } => ErrorPage::new(
            StatusCode::FORBIDDEN,
            "Bạn không có quyền quản trị",
            "You may not use the admin console",
        )
        .detail(NOTHING_CHANGED_VI, NOTHING_CHANGED_EN),
    }
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        match &self {
            ConsoleError::Store(e) => tracing::error!(error = %e, "state store failure in the admin console"),
            ConsoleError::Operation(AdminError::Unavailable) => {
                tracing::error!("account store failure in the admin console")
            }
            other => tracing::info!(error = %other, "admin console request refused"),
        }
        self.page().into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(e: ConsoleError) -> u16 {
        e.into_response().status().as_u16()
    }

    #[test]
    fn a_person_without_the_role_is_403() {
        assert_eq!(status(ConsoleError::NotAdmin("no role".into())), 403);
    }

    #[test]
    fn a_login_still_too_weak_is_401() {
        assert_eq!(status(ConsoleError::TooWeak { acr: "urn:x".into() }), 401);
    }

    #[test]
    fn no_session_at_the_return_point_is_401() {
        assert_eq!(status(ConsoleError::NotLoggedIn), 401);
    }

    #[test]
    fn a_forged_form_is_403() {
        assert_eq!(status(ConsoleError::Forged), 403);
    }

    #[test]
    fn refused_operations_keep_their_meaning() {
        assert_eq!(
            status(ConsoleError::Operation(AdminError::BadRequest("a reason is required".into()))),
            400
        );
        assert_eq!(status(ConsoleError::Operation(AdminError::NotFound("account x".into()))), 404);
        assert_eq!(status(ConsoleError::Operation(AdminError::Conflict("already".into()))), 409);
        assert_eq!(status(ConsoleError::Operation(AdminError::Unavailable)), 503);
        assert_eq!(status(ConsoleError::Operation(AdminError::MissingToken)), 403);
    }

    #[test]
    fn a_missing_reason_says_so_in_both_languages() {
        let page = ConsoleError::Operation(AdminError::BadRequest("a reason is required".into())).page();
        assert!(page.detail_vi.contains("lý do") && page.detail_en.contains("reason"), "{page:?}");
    }

    #[test]
    fn store_failures_are_503_and_say_nothing_inside() {
        let page = ConsoleError::Store(StoreError::Unavailable("secret detail".into())).page();
        assert_eq!(page.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(!page.detail_en.contains("secret detail"));
        let page = ConsoleError::from(crate::accounts::AccountError::Corrupt("secret detail".into())).page();
        assert_eq!(page.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(!page.detail_en.contains("secret detail"));
    }

    #[test]
    fn every_refusal_is_bilingual_and_says_nothing_changed() {
        for e in [
            ConsoleError::NotAdmin("x".into()),
            ConsoleError::TooWeak { acr: "urn:x".into() },
            ConsoleError::NotLoggedIn,
            ConsoleError::Forged,
            ConsoleError::Operation(AdminError::BadRequest("x".into())),
            ConsoleError::Operation(AdminError::NotFound("x".into())),
            ConsoleError::Operation(AdminError::Conflict("x".into())),
        ] {
            let page = e.page();
            assert!(page.detail_vi.contains(NOTHING_CHANGED_VI), "{e}: {}", page.detail_vi);
            assert!(page.detail_en.contains(NOTHING_CHANGED_EN), "{e}: {}", page.detail_en);
        }
    }
}
