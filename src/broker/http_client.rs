//! The outbound HTTP client for upstream systems: bounded time, bounded body size, no
//! redirects followed (a discovery or token response must come from where we asked).

use std::time::Duration;

use openidconnect::{HttpRequest, HttpResponse};

/// Largest upstream response body accepted (discovery, JWKS, tokens, userinfo).
pub const MAX_BODY_BYTES: usize = 256 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("request to upstream failed: {0}")]
    Transport(String),
    #[error("upstream did not answer within {0:?}")]
    Timeout(Duration),
    #[error("upstream response body exceeds {MAX_BODY_BYTES} bytes")]
    TooLarge,
}

/// A shared reqwest client plus the per-upstream time bound.
#[derive(Clone, Debug)]
pub struct UpstreamHttp {
    client: reqwest::Client,
    timeout: Duration,
}

impl UpstreamHttp {
    pub fn new(client: reqwest::Client, timeout: Duration) -> Self {
        UpstreamHttp { client, timeout }
    }

    /// Builds the process-wide outbound client (keep-alive pool, rustls, no redirects).
    pub fn build_client() -> Result<reqwest::Client, HttpError> {
        Self::build_client_with_roots(None)
    }

    /// Like [`build_client`](Self::build_client), also trusting the roots in a PEM bundle.
    pub fn build_client_with_roots(ca_file: Option<&std::path::Path>) -> Result<reqwest::Client, HttpError> {
        let mut builder = reqwest::Client::builder();
        if let Some(path) = ca_file {
            let pem =
                std::fs::read(path).map_err(|e| HttpError::Transport(format!("{}: {e}", path.display())))?;
            for cert in reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| HttpError::Transport(e.to_string()))?
            {
                builder = builder.add_root_certificate(cert);
            }
        }
        builder
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(3))
            .pool_idle_timeout(Duration::from_secs(60))
            .user_agent(concat!("sso-gateway/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| HttpError::Transport(e.to_string()))
    }

    /// A closure usable as `openidconnect`'s async HTTP client; its futures own their data.
    pub fn as_client(
        &self,
    ) -> impl Fn(
        HttpRequest,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<HttpResponse, HttpError>> + Send>,
    > + use<> {
        let this = self.clone();
        move |request| {
            let this = this.clone();
            Box::pin(async move { this.send(request).await })
        }
    }

    /// Sends one request; the whole exchange, body included, is bounded by the timeout.
    pub async fn send(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        match tokio::time::timeout(self.timeout, self.send_unbounded(request)).await {
            Ok(result) => result,
            Err(_) => Err(HttpError::Timeout(self.timeout)),
        }
    }

    async fn send_unbounded(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        let request = reqwest::Request::try_from(request).map_err(|e| HttpError::Transport(e.to_string()))?;
        let mut response =
            self.client.execute(request).await.map_err(|e| HttpError::Transport(e.to_string()))?;
        if response.content_length().is_some_and(|n| n as usize > MAX_BODY_BYTES) {
            return Err(HttpError::TooLarge);
        }
        let mut builder = http::Response::builder().status(response.status());
        for (name, value) in response.headers() {
            builder = builder.header(name, value);
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| HttpError::Transport(e.to_string()))? {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(HttpError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        builder.body(body).map_err(|e| HttpError::Transport(e.to_string()))
    }
}
