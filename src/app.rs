//! Application assembly: builds every part from the settings, merges the routers in one
//! place with the middleware order written down, binds the listener and serves.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{FromRef, State};
use axum::http::{HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

use crate::accounts::AccountStore;
use crate::broker::{Broker, BrokerParts, BrokerState, UpstreamHttp};
use crate::clock::Clock;
use crate::config::Settings;
use crate::keys::KeySet;
use crate::login::{LoginParts, LoginState};
use crate::logout::{LogoutParts, LogoutState};
use crate::provider::clients::ClientRegistry;
use crate::provider::discovery;
use crate::provider::store_records::ParkedRequests;
use crate::provider::{ProviderParts, ProviderState};
use crate::session::Sessions;
use crate::state::StateStore;

/// Account records a replica keeps for minting (about 1 KB each).
const ACCOUNT_CACHE_CAPACITY: u64 = 100_000;

/// Verified access tokens a replica remembers (about 0.5 KB each).
const VERIFIED_TOKEN_CAPACITY: u64 = 100_000;

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("signing keys: {0} (create them with `sso-gateway keys generate --alg ALG --dir DIR`)")]
    Keys(#[from] crate::keys::KeyError),
    #[error(
        "no signing key for {0} in the key directory (run `sso-gateway keys generate --alg {0} --dir DIR`)"
    )]
    MissingKey(crate::keys::SigningAlg),
    #[error("account store: {0}")]
    Accounts(#[from] crate::accounts::AccountError),
    #[error("state store: {0}")]
    State(#[from] crate::state::StoreError),
    #[error("outbound HTTP client: {0}")]
    Http(String),
    #[error("upstream connector: {0}")]
    Upstream(#[from] crate::broker::BrokerError),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("TLS: {0}")]
    Tls(String),
    #[error("mtls: {0}")]
    Mtls(String),
    #[error("server: {0}")]
    Serve(std::io::Error),
}

/// Every part of the running gateway, behind one `Arc`. Handlers take their own part's state
/// instead (`State<ProviderState>`, …), each extracted by `FromRef` as one reference-count
/// increment, or given to the part's router (`admin`, `account`); the whole is for the probes
/// and the commands. No part imports it: only `app` (and `cli`, which starts it) does.
#[derive(Clone)]
pub struct AppState(Arc<AppParts>);

impl std::ops::Deref for AppState {
    type Target = AppParts;
    fn deref(&self) -> &AppParts {
        &self.0
    }
}

/// The parts themselves (reached through [`AppState`]). Handlers do not take the whole: each
/// part's handlers take that part's own state ([`ProviderState`], [`BrokerState`],
/// [`LoginState`], [`LogoutState`]), extracted with `FromRef` (one reference count each).
pub struct AppParts {
    pub settings: Arc<Settings>,
    pub keys: KeySet,
    pub store: StateStore,
    pub sessions: Sessions,
    pub accounts: AccountStore,
    pub clients: ClientRegistry,
    pub broker: Broker,
    pub clock: Clock,
    /// Request rate limits (`[limits]`).
    pub limits: Arc<crate::limits::RateLimiter>,
    /// Shared outbound HTTP client (keep-alive pool): upstreams, RP back-channel logout,
    /// client key sets.
    pub http: reqwest::Client,
    issuer: Arc<str>,
    provider: ProviderState,
    broker_pages: BrokerState,
    login: LoginState,
    logout: LogoutState,
    admin: crate::admin::AdminState,
    account_pages: crate::account::AccountPageState,
    certificate_step: crate::broker::CertificateStepState,
    trusted_proxies: crate::web::client_ip::TrustedProxies,
}

impl AppParts {
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The provider's state (what its handlers get).
    pub fn provider(&self) -> &ProviderState {
        &self.provider
    }

    /// The admin part's state (its operations, for the admin commands and tests).
    pub fn admin(&self) -> &crate::admin::AdminState {
        &self.admin
    }

    /// The logout part's state (ending sessions from other parts' pages).
    pub fn logout(&self) -> &LogoutState {
        &self.logout
    }
}

impl FromRef<AppState> for ProviderState {
    fn from_ref(app: &AppState) -> Self {
        app.provider.clone()
    }
}

impl FromRef<AppState> for BrokerState {
    fn from_ref(app: &AppState) -> Self {
        app.broker_pages.clone()
    }
}

impl FromRef<AppState> for LoginState {
    fn from_ref(app: &AppState) -> Self {
        app.login.clone()
    }
}

impl FromRef<AppState> for crate::web::client_ip::TrustedProxies {
    fn from_ref(app: &AppState) -> Self {
        app.trusted_proxies.clone()
    }
}

impl FromRef<AppState> for crate::broker::CertificateStepState {
    fn from_ref(app: &AppState) -> Self {
        app.certificate_step.clone()
    }
}

impl FromRef<AppState> for LogoutState {
    fn from_ref(app: &AppState) -> Self {
        app.logout.clone()
    }
}

impl AppState {
    /// Builds every part from validated settings.
    pub async fn build(settings: Settings, clock: Clock) -> Result<AppState, StartError> {
        let issuer: Arc<str> = Arc::from(settings.issuer());
        let algs = settings.algorithms_in_use();
        let keys = if settings.keys.generate_missing {
            let dir = settings.keys.dir.clone();
            let algs = algs.clone();
            let clock = clock.clone();
            tokio::task::spawn_blocking(move || KeySet::open_or_generate(&dir, &algs, clock))
                .await
                .map_err(|e| StartError::Tls(format!("key generation task failed: {e}")))??
        } else {
            KeySet::open(&settings.keys.dir, clock.clone())?
        };
        if let Some(missing) = algs.iter().find(|a| !keys.has(**a)) {
            return Err(StartError::MissingKey(*missing));
        }
        let store = StateStore::open(settings.sessions.store_plan(), &clock).await?;
        let accounts =
            AccountStore::connect(settings.accounts.url.expose(), settings.accounts.max_connections)
                .await?
                .with_cache(settings.accounts.cache_ttl, ACCOUNT_CACHE_CAPACITY);
        let https = issuer.starts_with("https://");
        let sessions = Sessions::new(store.clone(), clock.clone(), &settings.sessions, https);
        let http = UpstreamHttp::build_client_with_roots(settings.outbound.ca_file.as_deref())
            .map_err(|e| StartError::Http(e.to_string()))?;
        let broker = Broker::new(&settings, http.clone(), store.clone(), clock.clone())?;
        let clients = ClientRegistry::new(&settings.clients, &settings.lifetimes);
        let limits = Arc::new(crate::limits::RateLimiter::new(&settings.limits, &store, clock.clone()));
        let mtls = crate::provider::mtls::Mtls::new(&settings.mtls).map_err(StartError::Mtls)?;
        let settings = Arc::new(settings);
        let provider = ProviderState::new(ProviderParts {
            settings: settings.clone(),
            keys: keys.clone(),
            store: store.clone(),
            sessions: sessions.clone(),
            accounts: accounts.clone(),
            clients: clients.clone(),
            upstreams: broker.catalog(),
            clock: clock.clone(),
            limits: limits.clone(),
            verified_tokens: crate::provider::verified::VerifiedTokens::new(VERIFIED_TOKEN_CAPACITY),
            discovery: discovery::Discovery::new(&issuer, discovery::Features::of(&settings), &keys),
            dpop_nonces: crate::provider::dpop::Nonces::new(settings.dpop.nonce_lifetime),
            mtls,
            http: http.clone(),
            issuer: issuer.clone(),
        });
        let broker_pages = BrokerState::new(BrokerParts {
            broker: broker.clone(),
            parked: ParkedRequests::new(store.clone(), clients.clone()),
        });
        let logout = LogoutState::new(LogoutParts {
            provider: provider.clone(),
            broker: broker.clone(),
            sessions: sessions.clone(),
            store: store.clone(),
            accounts: accounts.clone(),
            keys: keys.clone(),
            clients: clients.clone(),
            clock: clock.clone(),
            http: http.clone(),
            continuation_ttl: settings.lifetimes.login_attempt,
            issuer: issuer.clone(),
        });
        let login = LoginState::new(LoginParts {
            broker: broker.clone(),
            accounts: accounts.clone(),
            sessions: sessions.clone(),
            store: store.clone(),
            clock: clock.clone(),
            provider: provider.clone(),
            logout: logout.clone(),
            proof_window: settings.accounts.proof_window,
            offer_ttl: settings.lifetimes.login_attempt,
        });
        let admin = crate::admin::AdminState::new(crate::admin::AdminParts {
            settings: settings.clone(),
            accounts: accounts.clone(),
            sessions: sessions.clone(),
            store: store.clone(),
            clients: clients.clone(),
            broker: broker.clone(),
            clock: clock.clone(),
            provider: provider.clone(),
            logout: logout.clone(),
            issuer: issuer.clone(),
        });
        let account_pages = crate::account::AccountPageState::new(crate::account::AccountPageParts {
            accounts: accounts.clone(),
            sessions: sessions.clone(),
            store: store.clone(),
            broker: broker.clone(),
            logout: logout.clone(),
            clock: clock.clone(),
            issuer: issuer.clone(),
            login_attempt: settings.lifetimes.login_attempt,
        });
        let certificate_step =
            crate::broker::CertificateStepState::new(crate::broker::CertificateStepParts {
                broker: broker.clone(),
                settings: settings.clone(),
                clock: clock.clone(),
            });
        let trusted_proxies =
            crate::web::client_ip::TrustedProxies(settings.inbound.trusted_proxies.clone().into());
        Ok(AppState(Arc::new(AppParts {
            settings,
            keys,
            store,
            sessions,
            accounts,
            clients,
            limits,
            broker,
            clock,
            http,
            issuer,
            provider,
            broker_pages,
            login,
            logout,
            admin,
            account_pages,
            certificate_step,
            trusted_proxies,
        })))
    }
}

/// The whole HTTP surface. Layers run outside-in in the order listed at the bottom:
/// request id first (so every log line has it), then sensitive-header marking (before
/// tracing sees headers), then tracing, then a body-size limit and a request timeout. After
/// routing: the metrics layer, then the rate limits of browser routes (so refusals are counted
/// by route too). HSTS (https issuers only) wraps everything, so every response carries it.
pub fn router(state: AppState) -> Router {
    let routes = Router::new()
        .merge(crate::provider::router())
        .merge(crate::broker::router())
        .merge(crate::login::router())
        .merge(crate::logout::router())
        .merge(crate::account::router().with_state(state.account_pages.clone()))
        .merge(crate::admin::router().with_state(state.admin.clone()))
        .merge(crate::admin::console::router().with_state(state.admin.clone()))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz));
    layered(routes, state)
}

/// The certificate host (`[certificate] listen`): only the certificate step of certificate
/// login, with the same layers as every other page.
pub fn certificate_router(state: AppState) -> Router {
    layered(crate::broker::certificate_router(), state)
}

/// The mTLS host (`[mtls] listen`): the back-channel endpoints, with the same layers.
pub fn mtls_router(state: AppState) -> Router {
    layered(crate::provider::mtls_router(), state)
}

/// `routes` with the gateway's middleware, in the order written at [`router`].
fn layered(routes: Router<AppState>, state: AppState) -> Router {
    let request_id = HeaderName::from_static("x-request-id");
    let hsts = crate::web::hsts(state.issuer());
    routes
        // Both run after routing, so they see the matched route; metrics outermost.
        .route_layer(axum::middleware::from_fn_with_state(
            crate::limits::BrowserLimits {
                limiter: state.limits.clone(),
                proxies: state.trusted_proxies.clone(),
            },
            crate::limits::enforce,
        ))
        .route_layer(axum::middleware::from_fn(crate::metrics::track))
        .fallback(not_found)
        .with_state(state)
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            Duration::from_secs(30),
        ))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(64 * 1024))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &axum::http::Request<_>| {
            // Name spans by the matched route, never the raw URI (it carries codes).
            let route =
                req.extensions().get::<axum::extract::MatchedPath>().map_or("unmatched", |p| p.as_str());
            let id = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("-");
            tracing::info_span!("http", method = %req.method(), route, request_id = id)
        }))
        .layer(SetSensitiveRequestHeadersLayer::new([
            axum::http::header::AUTHORIZATION,
            axum::http::header::COOKIE,
        ]))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
        .layer(SetResponseHeaderLayer::overriding(axum::http::header::STRICT_TRANSPORT_SECURITY, hsts))
}

async fn healthz() -> &'static str {
    "ok"
}

/// Ready when the state store and account store answer and keys are loaded.
async fn readyz(State(app): State<AppState>) -> Response {
    let store = app.store.ping().await.is_ok();
    let accounts = app.accounts.ping().await.is_ok();
    let keys = !app.keys.is_empty();
    let body = serde_json::json!({ "state_store": store, "accounts": accounts, "keys": keys });
    let status = if store && accounts && keys { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, axum::Json(body)).into_response()
}

async fn not_found() -> Response {
    crate::web::ErrorPage::new(StatusCode::NOT_FOUND, "Không tìm thấy trang", "Page not found")
        .into_response()
}

/// The management surface: metrics and probes, on its own (internal) listener.
fn management_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(crate::metrics::render))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state)
}

/// A gateway bound to its listener, ready to serve.
pub struct Application {
    addr: SocketAddr,
    listener: TcpListener,
    management: Option<TcpListener>,
    /// The certificate host's own TLS listener (`[certificate] listen`).
    certificate: Option<(TcpListener, Arc<rustls::ServerConfig>)>,
    /// The gateway's own mTLS listener (`[mtls] listen`).
    mtls: Option<(TcpListener, Arc<rustls::ServerConfig>)>,
    router: Router,
    tls: Option<axum_server::tls_rustls::RustlsConfig>,
    state: AppState,
}

impl Application {
    /// Builds the state and binds `settings.listen` (port 0 picks a free port).
    pub async fn build(settings: Settings, clock: Clock) -> Result<Application, StartError> {
        let listen = settings.listen;
        let listener =
            TcpListener::bind(listen).await.map_err(|source| StartError::Bind { addr: listen, source })?;
        Self::build_with_listener(settings, clock, listener).await
    }

    /// Like `build`, with a listener the caller already bound (tests and the demo, which
    /// must know the port before the issuer URL can be written).
    pub async fn build_with_listener(
        settings: Settings,
        clock: Clock,
        listener: TcpListener,
    ) -> Result<Application, StartError> {
        Self::build_with_listeners(settings, clock, listener, None).await
    }

    /// Like `build_with_listener`, with the certificate host's listener bound too (tests, which
    /// must know its port before `certificate.url` can be written). None binds
    /// `certificate.listen` when it is set.
    pub async fn build_with_listeners(
        settings: Settings,
        clock: Clock,
        listener: TcpListener,
        certificate: Option<TcpListener>,
    ) -> Result<Application, StartError> {
        Self::build_with_tls_listeners(settings, clock, listener, certificate, None).await
    }

    /// Like `build_with_listeners`, with the mTLS listener bound too (None binds
    /// `mtls.listen` when it is set).
    pub async fn build_with_tls_listeners(
        settings: Settings,
        clock: Clock,
        listener: TcpListener,
        certificate: Option<TcpListener>,
        mtls: Option<TcpListener>,
    ) -> Result<Application, StartError> {
        let mtls = match (mtls, settings.mtls.listen) {
            (Some(l), _) => Some(l),
            (None, Some(addr)) => {
                Some(TcpListener::bind(addr).await.map_err(|source| StartError::Bind { addr, source })?)
            }
            (None, None) => None,
        };
        let mtls = match mtls {
            Some(l) => Some((l, mtls_tls(&settings)?)),
            None => None,
        };
        let certificate = match (certificate, settings.certificate.listen) {
            (Some(l), _) => Some(l),
            (None, Some(addr)) => {
                Some(TcpListener::bind(addr).await.map_err(|source| StartError::Bind { addr, source })?)
            }
            (None, None) => None,
        };
        let certificate = match certificate {
            Some(l) => Some((l, certificate_tls(&settings)?)),
            None => None,
        };
        let tls = match &settings.tls {
            Some(tls) => {
                crate::install_crypto_provider();
                Some(
                    axum_server::tls_rustls::RustlsConfig::from_pem_file(&tls.cert, &tls.key)
                        .await
                        .map_err(|e| StartError::Tls(e.to_string()))?,
                )
            }
            None => None,
        };
        let management = match settings.management.listen {
            Some(addr) => {
                crate::metrics::handle();
                Some(TcpListener::bind(addr).await.map_err(|source| StartError::Bind { addr, source })?)
            }
            None => None,
        };
        let state = AppState::build(settings, clock).await?;
        let addr = listener.local_addr().map_err(StartError::Serve)?;
        let router = router(state.clone());
        Ok(Application { addr, listener, management, certificate, mtls, router, tls, state })
    }

    /// Address of the gateway's own mTLS listener, if configured.
    pub fn mtls_addr(&self) -> Option<SocketAddr> {
        self.mtls.as_ref().and_then(|(l, _)| l.local_addr().ok())
    }

    /// Address of the certificate host's own listener, if configured.
    pub fn certificate_addr(&self) -> Option<SocketAddr> {
        self.certificate.as_ref().and_then(|(l, _)| l.local_addr().ok())
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Address of the management listener, if configured.
    pub fn management_addr(&self) -> Option<SocketAddr> {
        self.management.as_ref().and_then(|l| l.local_addr().ok())
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` resolves, then drains in-flight requests.
    pub async fn run_until(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), StartError> {
        // One shutdown signal for both listeners.
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        });
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        // Signing keys: new files and schedules in the key directory are picked up while running.
        let reload = self
            .state
            .keys
            .clone()
            .watch_dir(self.state.settings.keys.reload_interval, self.state.settings.algorithms_in_use());
        let stop = stopped(stop_rx.clone());
        tokio::spawn(async move {
            tokio::select! {
                () = reload => {}
                () = stop => {}
            }
        });
        if let Some(listener) = self.management {
            let router = management_router(self.state.clone());
            let stop = stopped(stop_rx.clone());
            tokio::spawn(async move {
                if let Err(e) = axum::serve(listener, router).with_graceful_shutdown(stop).await {
                    tracing::error!(error = %e, "management listener failed");
                }
            });
        }
        if let Some((listener, config)) = self.certificate {
            let router = certificate_router(self.state.clone());
            let stop = stopped(stop_rx.clone());
            tokio::spawn(async move {
                if let Err(e) = crate::tls::serve(listener, config, router, stop).await {
                    tracing::error!(error = %e, "certificate listener failed");
                }
            });
        }
        if let Some((listener, config)) = self.mtls {
            let router = mtls_router(self.state.clone());
            let stop = stopped(stop_rx.clone());
            tokio::spawn(async move {
                if let Err(e) = crate::tls::serve(listener, config, router, stop).await {
                    tracing::error!(error = %e, "mTLS listener failed");
                }
            });
        }
        if self.state.broker.has_certificate_upstreams() {
            // The CRLs are loaded before the first certificate arrives, if they can be.
            let state = self.state.clone();
            tokio::spawn(async move { state.broker.warm_up_certificates(state.clock.now()).await });
        }
        let shutdown = stopped(stop_rx);
        // Connection info gives handlers the peer address (login throttling per address).
        let service = self.router.into_make_service_with_connect_info::<SocketAddr>();
        match self.tls {
            None => axum::serve(self.listener, service)
                .with_graceful_shutdown(shutdown)
                .await
                .map_err(StartError::Serve),
            Some(tls) => {
                let handle = axum_server::Handle::new();
                let h = handle.clone();
                tokio::spawn(async move {
                    shutdown.await;
                    h.graceful_shutdown(Some(Duration::from_secs(10)));
                });
                let std_listener = self.listener.into_std().map_err(StartError::Serve)?;
                axum_server::from_tcp_rustls(std_listener, tls)
                    .map_err(StartError::Serve)?
                    .handle(handle)
                    .serve(service)
                    .await
                    .map_err(StartError::Serve)
            }
        }
    }
}

/// The certificate host's TLS: its own certificate and key, asking browsers for a client
/// certificate and naming the CAs of every certificate upstream as the accepted issuers (the
/// browser then offers only certificates that can log in). The chain is judged by the
/// connector, not the handshake, so a wrong certificate gets a readable page.
fn certificate_tls(settings: &Settings) -> Result<Arc<rustls::ServerConfig>, StartError> {
    let c = &settings.certificate;
    let (Some(cert), Some(key)) = (&c.tls_cert, &c.tls_key) else {
        return Err(StartError::Tls("certificate.listen needs certificate.tls_cert and tls_key".into()));
    };
    let mut bundle = Vec::new();
    for u in &settings.upstreams {
        if let crate::config::Protocol::Certificate(login) = &u.protocol {
            let pem = std::fs::read(&login.ca_file)
                .map_err(|e| StartError::Tls(format!("{}: {e}", login.ca_file.display())))?;
            bundle.extend_from_slice(&pem);
            bundle.push(b'\n');
        }
    }
    let client = crate::tls::ClientCerts::any_hinting_issuers_of(&bundle)
        .map_err(|e| StartError::Tls(e.to_string()))?;
    crate::tls::server_config(cert, key, client).map_err(|e| StartError::Tls(e.to_string()))
}

/// The mTLS host's TLS: its own certificate and key, asking every client for a certificate.
/// With `client_certificates = "any"` any chain whose key the client proves reaches the
/// handlers (its registration judges it); with `"ca_file"` the handshake also checks the
/// chain to `mtls.ca_file`. A client may present none (a public or secret client).
fn mtls_tls(settings: &Settings) -> Result<Arc<rustls::ServerConfig>, StartError> {
    let m = &settings.mtls;
    let (Some(cert), Some(key)) = (&m.tls_cert, &m.tls_key) else {
        return Err(StartError::Tls("mtls.listen needs mtls.tls_cert and tls_key".into()));
    };
    let bundle = match &m.ca_file {
        Some(ca) => std::fs::read(ca).map_err(|e| StartError::Tls(format!("{}: {e}", ca.display())))?,
        None => Vec::new(),
    };
    let client = match m.client_certificates {
        crate::config::MtlsHandshake::Any => {
            crate::tls::ClientCerts::AnyPresented { hint_subjects: Vec::new() }
        }
        crate::config::MtlsHandshake::CaFile => {
            let roots = crate::config::root_store(&bundle).map_err(StartError::Tls)?;
            crate::tls::ClientCerts::Roots(Arc::new(roots))
        }
    };
    crate::tls::server_config(cert, key, client).map_err(|e| StartError::Tls(e.to_string()))
}

/// A whole gateway state for unit tests of request parsing: in-memory state store, SQLite
/// accounts and generated keys in a temporary directory, four clients (`portal`
/// confidential, `spa` public, `signer` with `private_key_jwt`, `m2m` for
/// `client_credentials`) and no upstream. Returns the directory (keep it alive), the state
/// and `signer`'s key set.
#[cfg(test)]
pub(crate) async fn test_state() -> (tempfile::TempDir, AppState, KeySet) {
    test_state_with(|_| String::new()).await
}

/// [`test_state`] with more configuration: `extra(dir)` returns TOML appended to the file
/// (after the clients), and may write files into `dir` first.
#[cfg(test)]
pub(crate) async fn test_state_with(
    extra: impl FnOnce(&std::path::Path) -> String,
) -> (tempfile::TempDir, AppState, KeySet) {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    let dir = tempfile::tempdir().unwrap();
    let signer = dir.path().join("signer");
    KeySet::generate(&signer, crate::keys::SigningAlg::ES256).unwrap();
    let signer = KeySet::load_dir(&signer).unwrap();
    let jwks: serde_json::Value = serde_json::from_slice(&signer.jwks_json()).unwrap();
    let text = format!(
        r#"
issuer = "http://127.0.0.1:1"
[keys]
dir = "{dir}/keys"
generate_missing = true
[accounts]
url = "sqlite://{dir}/accounts.db?mode=rwc"
[[clients]]
client_id = "portal"
client_secret = "portal-secret-0123456789"
redirect_uris = ["https://portal.example/cb"]
scopes = ["openid", "profile", "email", "offline_access"]
[[clients]]
client_id = "spa"
redirect_uris = ["https://spa.example/cb"]
[[clients]]
client_id = "signer"
redirect_uris = []
scopes = ["api.read"]
grant_types = ["client_credentials"]
token_endpoint_auth_method = "private_key_jwt"
jwks = {jwks}
[[clients]]
client_id = "m2m"
client_secret = "m2m-secret-0123456789"
redirect_uris = []
scopes = ["api.read"]
grant_types = ["client_credentials"]
"#,
        dir = dir.path().display(),
        jwks = toml::Value::try_from(serde_json::json!({ "keys": jwks["keys"] })).unwrap()
    );
    let text = text + &extra(dir.path());
    let settings = Settings::from_toml(&text).unwrap();
    let state = AppState::build(settings, Clock::system()).await.unwrap();
    (dir, state, signer)
}

/// One [`test_state`] for every property test of the process, with the runtime it lives on
/// (`block_on` it for async calls).
#[cfg(test)]
pub(crate) struct SharedTestState {
    pub runtime: tokio::runtime::Runtime,
    pub app: AppState,
    pub signer: KeySet,
    _dir: tempfile::TempDir,
}

#[cfg(test)]
pub(crate) fn shared_test_state() -> &'static SharedTestState {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    static SHARED: std::sync::OnceLock<SharedTestState> = std::sync::OnceLock::new();
    SHARED.get_or_init(|| {
        let runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let (dir, app, signer) = runtime.block_on(test_state());
        SharedTestState { runtime, app, signer, _dir: dir }
    })
}
