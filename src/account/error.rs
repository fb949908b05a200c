//! Errors of the account pages and the page each one shows (Vietnamese first, English).
//! Every refusal says that nothing changed; internal causes go to the log only.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::accounts::AccountError;
use crate::state::StoreError;
use crate::web::ErrorPage;

#[derive(Debug, thiserror::Error)]
pub enum AccountPageError {
    #[error("no login session in this browser")]
    NotLoggedIn,
    #[error("the form's anti-forgery token does not match the session")]
    Forged,
    #[error("no configured upstream {0:?}")]
    UnknownUpstream(String),
    #[error("the identity is not linked to this account")]
    NotLinked,
    #[error("the account's last link cannot be unlinked")]
    LastLink,
    #[error("the link was started in another session of this browser")]
    SessionChanged,
    /// The login for the link resolved to another account, which the linking rules do not join
    /// to this one.
    #[error("the login through {upstream} belongs to another account")]
    OtherAccount { upstream: String, system_vi: String, system_en: String },
    /// The other account holds, unverified, this account's verified number: the person can link
    /// it by proving the other way round (that account's login first, then this one's).
    #[error("the login through {upstream} is an account declaring this account's number")]
    ProveTheOtherWay {
        upstream: String,
        system_vi: String,
        system_en: String,
        verified_vi: String,
        verified_en: String,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Accounts(#[from] AccountError),
}

const NOTHING_CHANGED_VI: &str = "Không có gì thay đổi.";
const NOTHING_CHANGED_EN: &str = "Nothing changed.";

impl AccountPageError {
    /// The page a person sees.
    pub fn page(&self) -> ErrorPage {
        let back = |p: ErrorPage| p.action(super::PATH, "Về trang tài khoản của tôi", "Back to my account");
        match self {
            AccountPageError::NotLoggedIn => back(
                ErrorPage::new(StatusCode::UNAUTHORIZED, "Bạn chưa đăng nhập", "You are not logged in").detail(
                    format!("Không có phiên đăng nhập nào trên trình duyệt này. {NOTHING_CHANGED_VI}"),
                    format!("There is no login session in this browser. {NOTHING_CHANGED_EN}"),
                ),
            ),
            AccountPageError::Forged => back(
                ErrorPage::new(StatusCode::FORBIDDEN, "Yêu cầu không hợp lệ", "Invalid request").detail(
                    format!("Biểu mẫu không hợp lệ hoặc đã hết hạn. {NOTHING_CHANGED_VI} Hãy tải lại trang tài khoản và thử lại."),
                    format!("The form is not valid or has expired. {NOTHING_CHANGED_EN} Reload the account page and try again."),
                ),
            ),
            AccountPageError::UnknownUpstream(_) => back(
                ErrorPage::new(StatusCode::BAD_REQUEST, "Không có hệ thống này", "No such system").detail(
                    format!("Hãy chọn một hệ thống trong danh sách của trang tài khoản. {NOTHING_CHANGED_VI}"),
                    format!("Choose a system from the list on the account page. {NOTHING_CHANGED_EN}"),
                ),
            ),
            AccountPageError::NotLinked => back(
                ErrorPage::new(
                    StatusCode::NOT_FOUND,
                    "Liên kết này không thuộc tài khoản của bạn",
                    "This link is not on your account",
                )
                .detail(
                    format!("Tài khoản này không (còn) liên kết với tài khoản của bạn, có thể đã được huỷ trước đó. {NOTHING_CHANGED_VI}"),
                    format!("That login is not (or no longer) linked to your account; it may have been unlinked already. {NOTHING_CHANGED_EN}"),
                ),
            ),
            AccountPageError::LastLink => back(
                ErrorPage::new(
                    StatusCode::CONFLICT,
                    "Không thể huỷ liên kết cuối cùng",
                    "The last link cannot be removed",
                )
                .detail(
                    format!("Đây là cách đăng nhập duy nhất vào tài khoản của bạn; nếu huỷ, bạn sẽ không vào được tài khoản nữa. {NOTHING_CHANGED_VI}"),
                    format!("It is the only way to log in to your account; without it you could not reach your account again. {NOTHING_CHANGED_EN}"),
                ),
            ),
            AccountPageError::SessionChanged => back(
                ErrorPage::new(StatusCode::CONFLICT, "Không liên kết được", "Nothing was linked").detail(
                    "Việc liên kết được bắt đầu từ một phiên đăng nhập khác trên trình duyệt này nên không được thực hiện. Bạn vẫn đăng nhập như trước. Hãy mở lại trang tài khoản và thử lại.",
                    "The link was started from another login session in this browser, so it was not made. You are still logged in as before. Open the account page again and retry.",
                ),
            ),
            AccountPageError::OtherAccount { system_vi, system_en, .. } => back(
                ErrorPage::new(StatusCode::CONFLICT, "Không liên kết được", "Nothing was linked").detail(
                    format!("Tài khoản {system_vi} vừa đăng nhập thuộc về một tài khoản khác và không thể tự động liên kết với tài khoản của bạn (số định danh không khớp hoặc chưa được xác minh). Bạn vẫn đăng nhập như trước. Nếu cả hai đều là của bạn, hãy gọi tổng đài 1022."),
                    format!("The {system_en} login you just used belongs to another account and cannot be linked to yours automatically (the ID numbers differ or are not verified). You are still logged in as before. If both are yours, call the 1022 hotline."),
                ),
            ),
            AccountPageError::ProveTheOtherWay { system_vi, system_en, verified_vi, verified_en, .. } => back(
                ErrorPage::new(StatusCode::CONFLICT, "Cần xác nhận theo chiều ngược lại", "Confirm the other way round").detail(
                    format!("Tài khoản {system_vi} tự khai cùng số định danh với bạn nhưng hệ thống đó không xác minh được số này. Để liên kết, hãy đăng xuất, đăng nhập bằng {system_vi}, mở trang Tài khoản của tôi và chọn liên kết {verified_vi}: bạn sẽ được hỏi xác nhận. Chưa có gì được liên kết; bạn vẫn đăng nhập như trước."),
                    format!("The {system_en} account declares your ID number, but that system cannot verify it. To link it, log out, log in with {system_en}, open My account and link {verified_en}: you will be asked to confirm. Nothing was linked yet; you are still logged in as before."),
                ),
            ),
            AccountPageError::Store(e) => ErrorPage::for_store_error(e),
            AccountPageError::Accounts(_) => ErrorPage::unavailable(),
        }
    }
}

impl IntoResponse for AccountPageError {
    fn into_response(self) -> Response {
        match &self {
            AccountPageError::Store(e) => {
                tracing::error!(error = %e, "state store failure on the account pages")
            }
            AccountPageError::Accounts(e) => {
                tracing::error!(error = %e, "account store failure on the account pages")
            }
            other => tracing::info!(error = %other, "account page request refused"),
        }
        self.page().into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(e: AccountPageError) -> u16 {
        e.into_response().status().as_u16()
    }

    fn other() -> AccountPageError {
        AccountPageError::OtherAccount {
            upstream: "bd".into(),
            system_vi: "BD".into(),
            system_en: "BD".into(),
        }
    }

    fn the_other_way() -> AccountPageError {
        AccountPageError::ProveTheOtherWay {
            upstream: "brvt".into(),
            system_vi: "Bà Rịa - Vũng Tàu (cũ)".into(),
            system_en: "Ba Ria-Vung Tau (former)".into(),
            verified_vi: "VNeID".into(),
            verified_en: "VNeID".into(),
        }
    }

    #[test]
    fn not_logged_in_is_401() {
        assert_eq!(status(AccountPageError::NotLoggedIn), 401);
    }

    #[test]
    fn a_forged_form_is_403() {
        assert_eq!(status(AccountPageError::Forged), 403);
    }

    #[test]
    fn an_unknown_upstream_is_400() {
        assert_eq!(status(AccountPageError::UnknownUpstream("x".into())), 400);
    }

    #[test]
    fn a_link_that_is_not_there_is_404() {
        assert_eq!(status(AccountPageError::NotLinked), 404);
    }

    #[test]
    fn the_last_link_is_409() {
        assert_eq!(status(AccountPageError::LastLink), 409);
    }

    #[test]
    fn a_link_finished_in_another_session_is_409() {
        assert_eq!(status(AccountPageError::SessionChanged), 409);
    }

    #[test]
    fn another_accounts_login_is_409() {
        assert_eq!(status(other()), 409);
    }

    #[test]
    fn an_unverified_declaration_of_this_number_is_409_and_says_how_to_link() {
        let page = the_other_way().page();
        assert_eq!(page.status, StatusCode::CONFLICT);
        assert!(page.detail_en.contains("log in with Ba Ria-Vung Tau (former)"), "{}", page.detail_en);
        assert!(page.detail_vi.contains("đăng nhập bằng Bà Rịa - Vũng Tàu (cũ)"), "{}", page.detail_vi);
    }

    #[test]
    fn store_failures_are_503() {
        assert_eq!(status(AccountPageError::Store(StoreError::Unavailable("down".into()))), 503);
    }

    #[test]
    fn account_store_failures_are_503_and_say_nothing_inside() {
        let page = AccountPageError::Accounts(AccountError::Corrupt("secret detail".into())).page();
        assert_eq!(page.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(!page.detail_en.contains("secret detail") && !page.detail_vi.contains("secret detail"));
    }

    #[test]
    fn every_refusal_is_bilingual_says_nothing_changed_and_leads_back() {
        for e in [
            AccountPageError::NotLoggedIn,
            AccountPageError::Forged,
            AccountPageError::UnknownUpstream("x".into()),
            AccountPageError::NotLinked,
            AccountPageError::LastLink,
            AccountPageError::SessionChanged,
            other(),
            the_other_way(),
        ] {
            let page = e.page();
            assert!(!page.detail_vi.is_empty() && !page.detail_en.is_empty(), "bilingual: {e}");
            assert!(
                page.detail_en.contains("Nothing changed")
                    || page.detail_en.contains("No account was linked")
                    || page.detail_en.contains("Nothing was linked")
                    || page.detail_en.contains("still logged in as before"),
                "{e}: {}",
                page.detail_en
            );
            assert_eq!(page.actions[0].href, "/account", "{e}");
        }
    }
}
