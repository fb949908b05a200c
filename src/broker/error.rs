//! Broker errors and the page each one shows. Upstream details go to the log only.

use axum::http::StatusCode;

use crate::state::StoreError;
use crate::web::ErrorPage;

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("unknown upstream {0:?}")]
    UnknownUpstream(String),
    #[error("the parked authorization request expired or is unknown")]
    RequestExpired,
    #[error("discovery of upstream {upstream} failed: {detail}")]
    Discovery { upstream: String, detail: String },
    #[error("upstream {upstream} returned error {error}: {description}")]
    UpstreamDenied { upstream: String, error: String, description: String },
    #[error("login attempt unknown, expired or already used")]
    AttemptNotFound,
    #[error("login attempt was started in another browser")]
    BrowserMismatch,
    #[error("callback for upstream {path} carries an attempt for upstream {attempt}")]
    UpstreamMismatch { path: String, attempt: String },
    #[error("token exchange with upstream {upstream} failed: {detail}")]
    TokenExchange { upstream: String, detail: String },
    #[error("ID token from upstream {upstream} rejected: {detail}")]
    InvalidIdToken { upstream: String, detail: String },
    #[error("upstream {upstream} did not log the person in afresh as asked: {detail}")]
    StaleUpstreamLogin { upstream: String, detail: String },
    #[error("CAS logout request for upstream {upstream} from {from}, outside cas.logout_from")]
    LogoutSourceRefused { upstream: String, from: String },
    #[error("too many CAS logout requests for upstream {upstream} from one address")]
    LogoutRateLimited { upstream: String },
    #[error("logout token from upstream {upstream} rejected: {detail}")]
    InvalidLogoutToken { upstream: String, detail: String },
    #[error("callback without code or state")]
    MalformedCallback,
    #[error("ticket validation at upstream {upstream} failed: {detail}")]
    TicketValidation { upstream: String, detail: String },
    #[error("upstream {upstream} refused the ticket: {code}: {message}")]
    TicketRejected { upstream: String, code: String, message: String },
    #[error("wrong user name or password at upstream {upstream}")]
    InvalidCredentials { upstream: String },
    #[error("too many failed logins at upstream {upstream}: locked out")]
    LockedOut { upstream: String },
    #[error("directory of upstream {upstream} unavailable: {detail}")]
    Directory { upstream: String, detail: String },
    #[error("this upstream cannot reach the assurance level the application requires")]
    InsufficientAssurance,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl BrokerError {
    /// The message shown on the login form (Vietnamese, English) for errors that send the
    /// person back to it; None for errors that end the attempt with a page. The same words
    /// for an unknown account and a wrong password, so the form tells nothing about which.
    pub fn form_message(&self) -> Option<(&'static str, &'static str)> {
        match self {
            BrokerError::InvalidCredentials { .. } => {
                Some(("Tên đăng nhập hoặc mật khẩu không đúng.", "Incorrect user name or password."))
            }
            BrokerError::LockedOut { .. } => Some((
                "Đăng nhập sai quá nhiều lần. Vui lòng thử lại sau ít phút hoặc liên hệ bộ phận quản trị.",
                "Too many failed logins. Please try again in a few minutes or contact your administrator.",
            )),
            _ => None,
        }
    }

    /// The HTTP status of the page or form shown for this error.
    pub fn status(&self) -> StatusCode {
        match self {
            BrokerError::InvalidCredentials { .. } => StatusCode::UNAUTHORIZED,
            BrokerError::LockedOut { .. } => StatusCode::TOO_MANY_REQUESTS,
            _ => self.page(None).status,
        }
    }

    /// The page a person sees; `retry` links back to the chooser when the request is alive.
    pub fn page(&self, retry: Option<String>) -> ErrorPage {
        let page = match self {
            BrokerError::UnknownUpstream(_) => ErrorPage::new(StatusCode::NOT_FOUND, "Không tìm thấy hệ thống đăng nhập", "Login system not found")
                .detail("Hệ thống đăng nhập được chọn không tồn tại.", "The chosen login system does not exist."),
            BrokerError::RequestExpired | BrokerError::AttemptNotFound => ErrorPage::new(
                StatusCode::BAD_REQUEST,
                "Phiên đăng nhập đã hết hạn",
                "The login has expired",
            )
            .detail(
                "Yêu cầu đăng nhập đã hết hạn hoặc đã được sử dụng. Vui lòng quay lại ứng dụng và đăng nhập lại.",
                "This login request has expired or was already used. Please go back to the application and log in again.",
            ),
            BrokerError::BrowserMismatch => ErrorPage::new(StatusCode::BAD_REQUEST, "Không thể hoàn tất đăng nhập", "The login cannot be completed")
                .detail(
                    "Đăng nhập phải được hoàn tất trên cùng trình duyệt đã bắt đầu. Vui lòng đăng nhập lại.",
                    "A login must finish in the browser that started it. Please log in again.",
                ),
            BrokerError::UpstreamDenied { error, .. } if error == "access_denied" => {
                ErrorPage::new(StatusCode::FORBIDDEN, "Đăng nhập đã bị huỷ", "The login was cancelled").detail(
                    "Hệ thống đăng nhập cũ đã không xác nhận danh tính của bạn.",
                    "The former login system did not confirm your identity.",
                )
            }
            BrokerError::TicketRejected { .. } => ErrorPage::new(
                StatusCode::UNAUTHORIZED,
                "Đăng nhập không được xác nhận",
                "The login could not be confirmed",
            )
            .detail(
                "Hệ thống đăng nhập cũ không xác nhận lần đăng nhập này (phiếu đăng nhập không hợp lệ, đã dùng hoặc đã hết hạn). Vui lòng đăng nhập lại.",
                "The former login system did not confirm this login (the login ticket is invalid, already used or expired). Please log in again.",
            ),
            BrokerError::InvalidCredentials { .. } | BrokerError::LockedOut { .. } => {
                let (vi, en) = self.form_message().unwrap_or_default();
                ErrorPage::new(self.status(), "Không thể đăng nhập", "The login failed").detail(vi, en)
            }
            BrokerError::Directory { .. } => ErrorPage::new(
                StatusCode::BAD_GATEWAY,
                "Danh bạ cán bộ tạm thời không truy cập được",
                "The officials' directory cannot be reached",
            )
            .detail(
                "Không thể kiểm tra tài khoản lúc này. Vui lòng thử lại sau ít phút.",
                "Your account cannot be checked right now. Please try again in a few minutes.",
            ),
            BrokerError::InsufficientAssurance => ErrorPage::new(
                StatusCode::FORBIDDEN,
                "Cần đăng nhập với mức xác thực cao hơn",
                "A stronger login is required",
            )
            .detail(
                "Ứng dụng yêu cầu mức độ xác thực cao hơn mức mà hệ thống này cung cấp, ví dụ tài khoản định danh điện tử VNeID mức 2. Vui lòng chọn hệ thống đăng nhập khác.",
                "The application requires a higher level of assurance than this login system provides, for example a level-2 VNeID account. Please choose another login system.",
            ),
            BrokerError::LogoutSourceRefused { .. } => ErrorPage::new(StatusCode::FORBIDDEN, "Không được phép", "Not allowed")
                .detail(
                    "Yêu cầu đăng xuất này không đến từ hệ thống đăng nhập cũ.",
                    "This logout request does not come from the former login system.",
                ),
            BrokerError::LogoutRateLimited { .. } => ErrorPage::new(StatusCode::TOO_MANY_REQUESTS, "Quá nhiều yêu cầu", "Too many requests")
                .detail("Vui lòng thử lại sau ít phút.", "Please try again in a few minutes."),
            BrokerError::StaleUpstreamLogin { .. } => ErrorPage::new(
                StatusCode::BAD_GATEWAY,
                "Hệ thống đăng nhập cũ không yêu cầu đăng nhập lại",
                "The former login system did not ask you to log in again",
            )
            .detail(
                "Ứng dụng yêu cầu bạn vừa mới đăng nhập, nhưng hệ thống đăng nhập cũ đã dùng lại một phiên đăng nhập trước đó thay vì hỏi lại mật khẩu. Vì an toàn, lần đăng nhập này không được chấp nhận. Vui lòng đăng xuất khỏi hệ thống đó rồi thử lại, hoặc chọn hệ thống khác.",
                "The application requires a fresh login, but the former login system reused an earlier login instead of asking for your password again. For your safety this login was not accepted. Please log out of that system and try again, or choose another system.",
            ),
            // What the browser brought back cannot be an answer to any attempt of ours (no
            // attempt id or code, or an oversized one): the request is at fault, not the
            // upstream.
            BrokerError::MalformedCallback => ErrorPage::new(
                StatusCode::BAD_REQUEST,
                "Không thể hoàn tất đăng nhập",
                "The login cannot be completed",
            )
            .detail(
                "Địa chỉ quay về từ hệ thống đăng nhập không hợp lệ. Vui lòng quay lại ứng dụng và đăng nhập lại.",
                "The address the login system sent you back to is not valid. Please go back to the application and log in again.",
            ),
            BrokerError::Discovery { .. }
            | BrokerError::TicketValidation { .. }
            | BrokerError::TokenExchange { .. }
            | BrokerError::UpstreamDenied { .. }
            | BrokerError::InvalidIdToken { .. }
            | BrokerError::UpstreamMismatch { .. }
            | BrokerError::InvalidLogoutToken { .. } => ErrorPage::new(
                StatusCode::BAD_GATEWAY,
                "Hệ thống đăng nhập cũ đang gặp sự cố",
                "The former login system is not working",
            )
            .detail(
                "Không thể xác nhận đăng nhập từ hệ thống này lúc này. Bạn có thể chọn hệ thống khác hoặc thử lại sau.",
                "Your login through this system could not be confirmed right now. You can choose another system or try again later.",
            ),
            BrokerError::Store(e) => ErrorPage::for_store_error(e),
        };
        match retry {
            Some(href) => page.action(href, "Chọn hệ thống đăng nhập khác", "Choose another login system"),
            None => page,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_logout_request_from_a_foreign_address_is_forbidden() {
        let e = BrokerError::LogoutSourceRefused { upstream: "brvt".into(), from: "203.0.113.7".into() };
        assert_eq!(e.status(), StatusCode::FORBIDDEN);
        assert!(e.form_message().is_none());
        assert!(!format!("{:?}", e.page(None)).contains("203.0.113.7"), "details go to the log only");
    }

    #[test]
    fn too_many_logout_requests_are_a_429() {
        let e = BrokerError::LogoutRateLimited { upstream: "brvt".into() };
        assert_eq!(e.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(e.form_message().is_none());
    }

    #[test]
    fn a_stale_upstream_login_explains_itself_in_both_languages() {
        let e =
            BrokerError::StaleUpstreamLogin { upstream: "hcm".into(), detail: "auth_time 2 h old".into() };
        assert_eq!(e.status(), StatusCode::BAD_GATEWAY);
        assert!(e.form_message().is_none(), "ends the attempt, not a form retry");
        let page = e.page(Some("/login?request=r".into()));
        assert_eq!(page.status, StatusCode::BAD_GATEWAY);
        let text = format!("{page:?}");
        assert!(text.contains("không yêu cầu đăng nhập lại"), "{text}");
        assert!(text.contains("did not ask you to log in again"), "{text}");
        assert!(text.contains("/login?request=r"), "offers another system: {text}");
        assert!(!text.contains("auth_time 2 h old"), "upstream details go to the log only");
    }

    #[test]
    fn a_callback_that_answers_no_attempt_is_the_request_fault_not_the_upstream() {
        let page = BrokerError::MalformedCallback.page(None);
        assert_eq!(page.status, StatusCode::BAD_REQUEST);
        assert!(!page.detail_vi.is_empty() && !page.detail_en.is_empty());
        assert_eq!(BrokerError::MalformedCallback.status(), StatusCode::BAD_REQUEST);
        // A broken answer from the upstream itself stays a Bad Gateway.
        let forged = BrokerError::InvalidIdToken { upstream: "hcm".into(), detail: "alg none".into() };
        assert_eq!(forged.status(), StatusCode::BAD_GATEWAY);
    }
}
