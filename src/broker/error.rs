//! The broker's one error type and the answer each error gives, in one place: the HTTP
//! status ([`BrokerError::status`]), the bilingual page a person sees ([`BrokerError::page`])
//! and the JSON answer to an upstream's own POSTs ([`BrokerError::message_response`]).
//! Faults of the request (a broken or foreign callback, a message from the wrong sender) are
//! 4xx; faults of the upstream are 502; the state store's are 503. Upstream details go to the
//! log only.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use serde::{Deserialize, Serialize};

use super::connector::Endpoint;
use crate::state::StoreError;
use crate::web::ErrorPage;

/// Why a presented client certificate was not accepted for login (each has its own page).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CertificateFailure {
    /// The browser presented none (no token inserted, the prompt cancelled).
    Missing,
    /// Outside its validity period at the gateway's clock (expired or not yet valid).
    Expired,
    /// Revoked by its CA (found in a current CRL).
    Revoked,
    /// Does not chain to an accepted CA.
    UnknownIssuer,
    /// Not usable for login: key usage, extended key usage, bad signature or encoding.
    NotUsable,
    /// Carries no personal identification number to match to a person's account.
    NoNationalId,
    /// Its revocation status cannot be known now (no current CRL, no usable OCSP answer) and
    /// the policy is `fail_closed`.
    RevocationUnknown,
}

impl CertificateFailure {
    /// The audit-log event name.
    pub fn event(self) -> &'static str {
        match self {
            CertificateFailure::Missing => "certificate_missing",
            CertificateFailure::Expired => "certificate_expired",
            CertificateFailure::Revoked => "certificate_revoked",
            CertificateFailure::UnknownIssuer => "certificate_unknown_issuer",
            CertificateFailure::NotUsable => "certificate_not_usable",
            CertificateFailure::NoNationalId => "certificate_without_national_id",
            CertificateFailure::RevocationUnknown => "certificate_revocation_unknown",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("unknown upstream {0:?}")]
    UnknownUpstream(String),
    #[error("upstream {upstream} cannot be set up: {detail}")]
    Setup { upstream: String, detail: String },
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
    #[error("callback for upstream {upstream} names another issuer {iss:?} (RFC 9207)")]
    IssuerMismatch { upstream: String, iss: String },
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
    #[error("CAS logout request for upstream {upstream} rejected: {detail}")]
    InvalidLogoutRequest { upstream: String, detail: String },
    #[error("message posted for upstream {upstream} cannot be read: {detail}")]
    MalformedMessage { upstream: String, detail: String },
    #[error("upstream {upstream} sends no messages to {at:?}")]
    NotAccepted { upstream: String, at: Endpoint },
    #[error("callback without the protocol's answer or attempt id")]
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
    #[error("certificate login through {upstream} refused ({reason:?}): {detail}")]
    CertificateRefused { upstream: String, reason: CertificateFailure, detail: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl BrokerError {
    /// The HTTP status of every answer to this error (page, form or JSON): the one mapping.
    pub fn status(&self) -> StatusCode {
        match self {
            BrokerError::UnknownUpstream(_) => StatusCode::NOT_FOUND,
            // What the browser or the sender brought cannot be an answer to anything of ours.
            BrokerError::RequestExpired
            | BrokerError::AttemptNotFound
            | BrokerError::BrowserMismatch
            | BrokerError::UpstreamMismatch { .. }
            | BrokerError::IssuerMismatch { .. }
            | BrokerError::MalformedCallback
            | BrokerError::MalformedMessage { .. }
            | BrokerError::NotAccepted { .. }
            | BrokerError::InvalidLogoutToken { .. }
            | BrokerError::InvalidLogoutRequest { .. } => StatusCode::BAD_REQUEST,
            BrokerError::UpstreamDenied { error, .. } if error == "access_denied" => StatusCode::FORBIDDEN,
            BrokerError::InvalidCredentials { .. } | BrokerError::TicketRejected { .. } => {
                StatusCode::UNAUTHORIZED
            }
            BrokerError::InsufficientAssurance | BrokerError::LogoutSourceRefused { .. } => {
                StatusCode::FORBIDDEN
            }
            // The gateway cannot tell whether the certificate was revoked: not the person's
            // fault, and it may pass later.
            BrokerError::CertificateRefused { reason: CertificateFailure::RevocationUnknown, .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            BrokerError::CertificateRefused { reason: CertificateFailure::NoNationalId, .. } => {
                StatusCode::FORBIDDEN
            }
            BrokerError::CertificateRefused { .. } => StatusCode::UNAUTHORIZED,
            BrokerError::LockedOut { .. } | BrokerError::LogoutRateLimited { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            // The upstream's answer or the upstream itself is at fault.
            BrokerError::Discovery { .. }
            | BrokerError::UpstreamDenied { .. }
            | BrokerError::TokenExchange { .. }
            | BrokerError::InvalidIdToken { .. }
            | BrokerError::StaleUpstreamLogin { .. }
            | BrokerError::TicketValidation { .. }
            | BrokerError::Directory { .. } => StatusCode::BAD_GATEWAY,
            BrokerError::Setup { .. } | BrokerError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

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

    /// The JSON answer to a message an upstream POSTed (its logout messages): RFC 6749-style
    /// `invalid_request` with a short description, never the upstream's details.
    pub fn message_response(&self) -> Response {
        let description = match self {
            BrokerError::UnknownUpstream(_) => "unknown upstream",
            BrokerError::LogoutSourceRefused { .. } => {
                "logout requests are accepted only from the CAS server"
            }
            BrokerError::LogoutRateLimited { .. } => "too many logout requests",
            BrokerError::InvalidLogoutToken { .. } => "invalid logout token",
            BrokerError::InvalidLogoutRequest { .. } => "invalid logout request",
            BrokerError::MalformedMessage { detail, .. } => detail.as_str(),
            BrokerError::NotAccepted { .. } => "this upstream sends no such message",
            BrokerError::Setup { .. } | BrokerError::Store(_) => "temporarily unavailable",
            _ => "invalid request",
        };
        let mut res =
            (self.status(), Json(json!({ "error": "invalid_request", "error_description": description })))
                .into_response();
        res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if self.status() == StatusCode::TOO_MANY_REQUESTS {
            res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
        }
        res
    }

    /// The page a person sees; `retry` links back to the chooser when the request is alive.
    pub fn page(&self, retry: Option<String>) -> ErrorPage {
        let status = self.status();
        let page = match self {
            BrokerError::UnknownUpstream(_) => ErrorPage::new(status, "Không tìm thấy hệ thống đăng nhập", "Login system not found")
                .detail("Hệ thống đăng nhập được chọn không tồn tại.", "The chosen login system does not exist."),
            BrokerError::RequestExpired | BrokerError::AttemptNotFound => ErrorPage::new(
                status,
                "Phiên đăng nhập đã hết hạn",
                "The login has expired",
            )
            .detail(
                "Yêu cầu đăng nhập đã hết hạn hoặc đã được sử dụng. Vui lòng quay lại ứng dụng và đăng nhập lại.",
                "This login request has expired or was already used. Please go back to the application and log in again.",
            ),
            BrokerError::BrowserMismatch => ErrorPage::new(status, "Không thể hoàn tất đăng nhập", "The login cannot be completed")
                .detail(
                    "Đăng nhập phải được hoàn tất trên cùng trình duyệt đã bắt đầu. Vui lòng đăng nhập lại.",
                    "A login must finish in the browser that started it. Please log in again.",
                ),
            BrokerError::UpstreamDenied { error, .. } if error == "access_denied" => {
                ErrorPage::new(status, "Đăng nhập đã bị huỷ", "The login was cancelled").detail(
                    "Hệ thống đăng nhập cũ đã không xác nhận danh tính của bạn.",
                    "The former login system did not confirm your identity.",
                )
            }
            BrokerError::TicketRejected { .. } => ErrorPage::new(
                status,
                "Đăng nhập không được xác nhận",
                "The login could not be confirmed",
            )
            .detail(
                "Hệ thống đăng nhập cũ không xác nhận lần đăng nhập này (phiếu đăng nhập không hợp lệ, đã dùng hoặc đã hết hạn). Vui lòng đăng nhập lại.",
                "The former login system did not confirm this login (the login ticket is invalid, already used or expired). Please log in again.",
            ),
            BrokerError::InvalidCredentials { .. } | BrokerError::LockedOut { .. } => {
                let (vi, en) = self.form_message().unwrap_or_default();
                ErrorPage::new(status, "Không thể đăng nhập", "The login failed").detail(vi, en)
            }
            BrokerError::Directory { .. } => ErrorPage::new(
                status,
                "Danh bạ cán bộ tạm thời không truy cập được",
                "The officials' directory cannot be reached",
            )
            .detail(
                "Không thể kiểm tra tài khoản lúc này. Vui lòng thử lại sau ít phút.",
                "Your account cannot be checked right now. Please try again in a few minutes.",
            ),
            BrokerError::InsufficientAssurance => ErrorPage::new(
                status,
                "Cần đăng nhập với mức xác thực cao hơn",
                "A stronger login is required",
            )
            .detail(
                "Ứng dụng yêu cầu mức độ xác thực cao hơn mức mà hệ thống này cung cấp, ví dụ tài khoản định danh điện tử VNeID mức 2. Vui lòng chọn hệ thống đăng nhập khác.",
                "The application requires a higher level of assurance than this login system provides, for example a level-2 VNeID account. Please choose another login system.",
            ),
            BrokerError::LogoutSourceRefused { .. } => ErrorPage::new(status, "Không được phép", "Not allowed")
                .detail(
                    "Yêu cầu đăng xuất này không đến từ hệ thống đăng nhập cũ.",
                    "This logout request does not come from the former login system.",
                ),
            BrokerError::LogoutRateLimited { .. } => ErrorPage::new(status, "Quá nhiều yêu cầu", "Too many requests")
                .detail("Vui lòng thử lại sau ít phút.", "Please try again in a few minutes."),
            BrokerError::StaleUpstreamLogin { .. } => ErrorPage::new(
                status,
                "Hệ thống đăng nhập cũ không yêu cầu đăng nhập lại",
                "The former login system did not ask you to log in again",
            )
            .detail(
                "Ứng dụng yêu cầu bạn vừa mới đăng nhập, nhưng hệ thống đăng nhập cũ đã dùng lại một phiên đăng nhập trước đó thay vì hỏi lại mật khẩu. Vì an toàn, lần đăng nhập này không được chấp nhận. Vui lòng đăng xuất khỏi hệ thống đó rồi thử lại, hoặc chọn hệ thống khác.",
                "The application requires a fresh login, but the former login system reused an earlier login instead of asking for your password again. For your safety this login was not accepted. Please log out of that system and try again, or choose another system.",
            ),
            // What the browser brought back cannot be an answer to this attempt (no attempt
            // id or answer, an oversized one, an attempt of another upstream, an answer that
            // names another issuer, a message no upstream of this kind sends): the request is
            // at fault, not the upstream.
            BrokerError::MalformedCallback
            | BrokerError::UpstreamMismatch { .. }
            | BrokerError::IssuerMismatch { .. }
            | BrokerError::MalformedMessage { .. }
            | BrokerError::NotAccepted { .. }
            | BrokerError::InvalidLogoutToken { .. }
            | BrokerError::InvalidLogoutRequest { .. } => ErrorPage::new(
                status,
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
            | BrokerError::InvalidIdToken { .. } => ErrorPage::new(
                status,
                "Hệ thống đăng nhập cũ đang gặp sự cố",
                "The former login system is not working",
            )
            .detail(
                "Không thể xác nhận đăng nhập từ hệ thống này lúc này. Bạn có thể chọn hệ thống khác hoặc thử lại sau.",
                "Your login through this system could not be confirmed right now. You can choose another system or try again later.",
            ),
            BrokerError::CertificateRefused { reason, .. } => certificate_page(status, *reason),
            BrokerError::Setup { .. } => ErrorPage::unavailable(),
            BrokerError::Store(e) => ErrorPage::for_store_error(e),
        };
        match retry {
            Some(href) => page.action(href, "Chọn hệ thống đăng nhập khác", "Choose another login system"),
            None => page,
        }
    }
}

/// The page of a refused certificate: what went wrong and what the person can do.
fn certificate_page(status: StatusCode, reason: CertificateFailure) -> ErrorPage {
    let (title_vi, title_en, vi, en) = match reason {
        CertificateFailure::Missing => (
            "Không nhận được chứng thư số",
            "No certificate was presented",
            "Trình duyệt không gửi chứng thư số nào. Hãy cắm thiết bị ký số (USB token), thử lại và chọn chứng thư số của bạn khi trình duyệt hỏi.",
            "Your browser sent no certificate. Insert your signing token (USB token), try again and choose your certificate when the browser asks.",
        ),
        CertificateFailure::Expired => (
            "Chứng thư số không còn hiệu lực",
            "The certificate is not valid now",
            "Chứng thư số đã hết hạn hoặc chưa đến ngày có hiệu lực. Vui lòng gia hạn chứng thư số với tổ chức cung cấp dịch vụ chứng thực, hoặc chọn cách đăng nhập khác.",
            "The certificate has expired or is not valid yet. Please renew it with your certification authority, or choose another way to log in.",
        ),
        CertificateFailure::Revoked => (
            "Chứng thư số đã bị thu hồi",
            "The certificate has been revoked",
            "Tổ chức cấp chứng thư số đã thu hồi chứng thư số này nên không thể dùng để đăng nhập. Vui lòng liên hệ tổ chức cấp chứng thư số.",
            "The certification authority has revoked this certificate, so it cannot be used to log in. Please contact your certification authority.",
        ),
        CertificateFailure::UnknownIssuer => (
            "Chứng thư số không được chấp nhận",
            "The certificate is not accepted",
            "Chứng thư số này không do một tổ chức cấp chứng thư số được hệ thống chấp nhận cấp. Hãy chọn đúng chứng thư số ký số công vụ của bạn khi trình duyệt hỏi.",
            "This certificate was not issued by a certification authority the service accepts. Choose your official signing certificate when the browser asks.",
        ),
        CertificateFailure::NotUsable => (
            "Chứng thư số không dùng được để đăng nhập",
            "The certificate cannot be used to log in",
            "Chứng thư số này không cho phép dùng để xác thực (mục đích sử dụng khoá không phù hợp) hoặc bị hỏng.",
            "This certificate does not allow authentication (its key usage does not fit) or is damaged.",
        ),
        CertificateFailure::NoNationalId => (
            "Không tìm thấy tài khoản phù hợp",
            "No matching account",
            "Chứng thư số không mang số định danh cá nhân (12 chữ số) nên không thể gắn với tài khoản của một người. Chứng thư số của tổ chức không dùng được để đăng nhập.",
            "The certificate carries no personal identification number (12 digits), so it cannot be matched to a person's account. Certificates of organisations cannot be used to log in.",
        ),
        CertificateFailure::RevocationUnknown => (
            "Chưa kiểm tra được tình trạng chứng thư số",
            "The certificate's status cannot be checked",
            "Hệ thống chưa xác minh được tình trạng chứng thư số với tổ chức cấp (danh sách thu hồi hoặc dịch vụ OCSP). Vui lòng thử lại sau ít phút hoặc chọn cách đăng nhập khác.",
            "The service cannot confirm the certificate's status with the certification authority (revocation list or OCSP) right now. Please try again in a few minutes or choose another way to log in.",
        ),
    };
    ErrorPage::new(status, title_vi, title_en).detail(vi, en)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(x: &str) -> String {
        x.to_string()
    }

    fn cert(reason: CertificateFailure) -> BrokerError {
        BrokerError::CertificateRefused { upstream: s("officials-cert"), reason, detail: s("bad sig") }
    }

    /// One of every variant, with the status it must answer with.
    fn every_variant() -> Vec<(BrokerError, StatusCode)> {
        use BrokerError as E;
        vec![
            (E::UnknownUpstream(s("x")), StatusCode::NOT_FOUND),
            (E::Setup { upstream: s("brvt"), detail: s("bad url") }, StatusCode::SERVICE_UNAVAILABLE),
            (E::RequestExpired, StatusCode::BAD_REQUEST),
            (E::Discovery { upstream: s("hcm"), detail: s("timeout") }, StatusCode::BAD_GATEWAY),
            (
                E::UpstreamDenied { upstream: s("hcm"), error: s("access_denied"), description: s("") },
                StatusCode::FORBIDDEN,
            ),
            (
                E::UpstreamDenied { upstream: s("hcm"), error: s("server_error"), description: s("") },
                StatusCode::BAD_GATEWAY,
            ),
            (E::AttemptNotFound, StatusCode::BAD_REQUEST),
            (E::BrowserMismatch, StatusCode::BAD_REQUEST),
            (E::UpstreamMismatch { path: s("bd"), attempt: s("hcm") }, StatusCode::BAD_REQUEST),
            (
                E::IssuerMismatch { upstream: s("hcm"), iss: s("https://evil.example") },
                StatusCode::BAD_REQUEST,
            ),
            (E::TokenExchange { upstream: s("hcm"), detail: s("500") }, StatusCode::BAD_GATEWAY),
            (E::InvalidIdToken { upstream: s("hcm"), detail: s("alg none") }, StatusCode::BAD_GATEWAY),
            (E::StaleUpstreamLogin { upstream: s("hcm"), detail: s("old") }, StatusCode::BAD_GATEWAY),
            (E::LogoutSourceRefused { upstream: s("brvt"), from: s("203.0.113.7") }, StatusCode::FORBIDDEN),
            (E::LogoutRateLimited { upstream: s("brvt") }, StatusCode::TOO_MANY_REQUESTS),
            (E::InvalidLogoutToken { upstream: s("hcm"), detail: s("bad sig") }, StatusCode::BAD_REQUEST),
            (E::InvalidLogoutRequest { upstream: s("brvt"), detail: s("DOCTYPE") }, StatusCode::BAD_REQUEST),
            (
                E::MalformedMessage { upstream: s("brvt"), detail: s("logoutRequest is required") },
                StatusCode::BAD_REQUEST,
            ),
            (E::NotAccepted { upstream: s("hcm"), at: Endpoint::Callback }, StatusCode::BAD_REQUEST),
            (E::MalformedCallback, StatusCode::BAD_REQUEST),
            (E::TicketValidation { upstream: s("brvt"), detail: s("huge") }, StatusCode::BAD_GATEWAY),
            (
                E::TicketRejected { upstream: s("brvt"), code: s("INVALID_TICKET"), message: s("") },
                StatusCode::UNAUTHORIZED,
            ),
            (E::InvalidCredentials { upstream: s("officials") }, StatusCode::UNAUTHORIZED),
            (E::LockedOut { upstream: s("officials") }, StatusCode::TOO_MANY_REQUESTS),
            (E::Directory { upstream: s("officials"), detail: s("down") }, StatusCode::BAD_GATEWAY),
            (E::InsufficientAssurance, StatusCode::FORBIDDEN),
            (cert(CertificateFailure::Missing), StatusCode::UNAUTHORIZED),
            (cert(CertificateFailure::Expired), StatusCode::UNAUTHORIZED),
            (cert(CertificateFailure::Revoked), StatusCode::UNAUTHORIZED),
            (cert(CertificateFailure::UnknownIssuer), StatusCode::UNAUTHORIZED),
            (cert(CertificateFailure::NotUsable), StatusCode::UNAUTHORIZED),
            (cert(CertificateFailure::NoNationalId), StatusCode::FORBIDDEN),
            (cert(CertificateFailure::RevocationUnknown), StatusCode::SERVICE_UNAVAILABLE),
            (E::Store(StoreError::Unavailable(s("down"))), StatusCode::SERVICE_UNAVAILABLE),
        ]
    }

    #[test]
    fn every_variant_answers_with_its_status_on_the_page_and_in_json() {
        for (e, status) in every_variant() {
            assert_eq!(e.status(), status, "{e}");
            let page = e.page(None);
            assert_eq!(page.status, status, "{e}");
            assert!(!page.detail_vi.is_empty() && !page.detail_en.is_empty(), "bilingual: {e}");
            assert_eq!(e.message_response().status(), status, "{e}");
        }
    }

    #[test]
    fn client_faults_are_4xx_and_only_the_upstream_or_the_gateway_is_5xx() {
        for (e, status) in every_variant() {
            let upstreams_fault = matches!(
                e,
                BrokerError::Discovery { .. }
                    | BrokerError::UpstreamDenied { .. }
                    | BrokerError::TokenExchange { .. }
                    | BrokerError::InvalidIdToken { .. }
                    | BrokerError::StaleUpstreamLogin { .. }
                    | BrokerError::TicketValidation { .. }
                    | BrokerError::Directory { .. }
            );
            let gateways_fault = matches!(
                e,
                BrokerError::Setup { .. }
                    | BrokerError::Store(_)
                    | BrokerError::CertificateRefused { reason: CertificateFailure::RevocationUnknown, .. }
            );
            if status.is_server_error() {
                assert!(upstreams_fault || gateways_fault, "{e} is a client fault but answers {status}");
            }
        }
        for e in [
            BrokerError::MalformedCallback,
            BrokerError::UpstreamMismatch { path: s("bd"), attempt: s("hcm") },
            BrokerError::IssuerMismatch { upstream: s("hcm"), iss: s("https://evil.example") },
        ] {
            assert_eq!(e.status(), StatusCode::BAD_REQUEST, "{e}");
        }
    }

    #[test]
    fn pages_and_json_never_show_upstream_details() {
        for (e, _) in every_variant() {
            let page = format!("{:?}", e.page(None));
            for secret in ["203.0.113.7", "bad sig", "alg none", "https://evil.example", "DOCTYPE", "bad url"]
            {
                assert!(!page.contains(secret), "{e}: {page}");
            }
        }
    }

    #[test]
    fn each_certificate_failure_has_its_own_bilingual_page() {
        let all = [
            CertificateFailure::Missing,
            CertificateFailure::Expired,
            CertificateFailure::Revoked,
            CertificateFailure::UnknownIssuer,
            CertificateFailure::NotUsable,
            CertificateFailure::NoNationalId,
            CertificateFailure::RevocationUnknown,
        ];
        let mut titles = std::collections::HashSet::new();
        let mut events = std::collections::HashSet::new();
        for reason in all {
            let page = cert(reason).page(Some(s("/login?request=r")));
            assert!(titles.insert(page.title_en.clone()), "{reason:?} shares a title");
            assert!(events.insert(reason.event()), "{reason:?} shares an audit event");
            assert!(!page.title_vi.is_empty() && !page.detail_vi.is_empty() && !page.detail_en.is_empty());
            assert!(format!("{page:?}").contains("/login?request=r"), "offers another way in");
        }
    }

    #[test]
    fn a_retry_link_leads_back_to_the_chooser() {
        let page = BrokerError::AttemptNotFound.page(Some(s("/login?request=r")));
        assert!(format!("{page:?}").contains("/login?request=r"));
    }

    #[test]
    fn rate_limited_messages_say_when_to_retry() {
        let res = BrokerError::LogoutRateLimited { upstream: s("brvt") }.message_response();
        assert_eq!(res.headers().get(header::RETRY_AFTER).and_then(|v| v.to_str().ok()), Some("60"));
        assert_eq!(res.headers().get(header::CACHE_CONTROL).and_then(|v| v.to_str().ok()), Some("no-store"));
    }

    #[test]
    fn only_password_failures_return_to_the_form() {
        for (e, _) in every_variant() {
            let form = matches!(e, BrokerError::InvalidCredentials { .. } | BrokerError::LockedOut { .. });
            assert_eq!(e.form_message().is_some(), form, "{e}");
        }
    }

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
