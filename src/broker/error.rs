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
    #[error("logout token from upstream {upstream} rejected: {detail}")]
    InvalidLogoutToken { upstream: String, detail: String },
    #[error("callback without code or state")]
    MalformedCallback,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl BrokerError {
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
            BrokerError::Discovery { .. }
            | BrokerError::TokenExchange { .. }
            | BrokerError::UpstreamDenied { .. }
            | BrokerError::InvalidIdToken { .. }
            | BrokerError::UpstreamMismatch { .. }
            | BrokerError::InvalidLogoutToken { .. }
            | BrokerError::MalformedCallback => ErrorPage::new(
                StatusCode::BAD_GATEWAY,
                "Hệ thống đăng nhập cũ đang gặp sự cố",
                "The former login system is not working",
            )
            .detail(
                "Không thể xác nhận đăng nhập từ hệ thống này lúc này. Bạn có thể chọn hệ thống khác hoặc thử lại sau.",
                "Your login through this system could not be confirmed right now. You can choose another system or try again later.",
            ),
            BrokerError::Store(_) => ErrorPage::unavailable(),
        };
        match retry {
            Some(href) => page.action(href, "Chọn hệ thống đăng nhập khác", "Choose another login system"),
            None => page,
        }
    }
}
