//! Test harness: starts four simulated upstream systems (three provinces and VNeID) and the
//! real gateway on ephemeral ports, and drives them as a browser (cookie jar, manual redirects, form submission) and as
//! an RP (the `openidconnect` crate).

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use legacy_idp::{Faults, IdpKeys, LegacyIdpConfig, RunningLegacyIdp};
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreIdTokenClaims, CoreProviderMetadata};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointMaybeSet, EndpointNotSet, EndpointSet,
    IssuerUrl, Nonce, OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope,
    TokenResponse,
};
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, LOCATION};
use serde_json::Value;
use sso_gateway::app::Application;
use sso_gateway::broker::UpstreamHttp;
use sso_gateway::clock::Clock;
use sso_gateway::config::Settings;
use sso_gateway::keys::{KeySet, SigningAlg};
use tokio::net::TcpListener;
use url::Url;

pub const PORTAL: &str = "portal";
pub const PORTAL_SECRET: &str = "portal-secret-0123456789";
pub const DOCS: &str = "documents";
pub const DOCS_SECRET: &str = "documents-secret-0123456789";
pub const SPA: &str = "spa";
pub const M2M: &str = "hotline-api";
pub const M2M_SECRET: &str = "hotline-secret-0123456789";
pub const PORTAL_CB: &str = "http://127.0.0.1:9/portal/cb";
pub const DOCS_CB: &str = "http://127.0.0.1:9/docs/cb";
pub const SPA_CB: &str = "http://127.0.0.1:9/spa/cb";
/// A confidential client with pairwise subject identifiers (its own sector).
pub const PAIRWISE: &str = "hotline-app";
pub const PAIRWISE_SECRET: &str = "hotline-app-secret-0123456789";
pub const PAIRWISE_CB: &str = "http://127.0.0.1:9/hotline/cb";

/// Users (username, upstream) known to the shipped legacy configs.
pub const HCM_USER: &str = "lan";
pub const BD_USER: &str = "lannt";
pub const BRVT_USER: &str = "hai";

pub struct TestSystem {
    /// The URL RPs and browsers use: the gateway itself, or the load balancer in front of
    /// several replicas.
    pub gateway: String,
    pub idps: HashMap<String, RunningLegacyIdp>,
    /// The first replica's state (for white-box checks).
    pub app: sso_gateway::app::AppState,
    pub clock: Clock,
    pub replicas: Vec<Replica>,
    pub balancer: Option<Balancer>,
    /// The certificate host's own TLS listener, when `Options::certificate_host`.
    pub certificate_addr: Option<std::net::SocketAddr>,
    /// The gateway's own mTLS listener, when `Options::mtls_host`.
    pub mtls_addr: Option<std::net::SocketAddr>,
    _dir: tempfile::TempDir,
}

/// One gateway process (in-process server task).
pub struct Replica {
    pub addr: std::net::SocketAddr,
    pub state: sso_gateway::app::AppState,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl Replica {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
    /// Stops accepting connections at once, as if the process died.
    pub fn kill(&mut self) {
        if let Some(s) = self.server.take() {
            s.abort();
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Options for a test system.
#[derive(Clone, Default)]
pub struct Options {
    /// Redis URL for shared state; None = in-memory store.
    pub redis: Option<String>,
    pub replicas: usize,
    pub extra_config: String,
    /// Extra keys for the CAS upstream's `[upstreams.cas]` table.
    pub cas_config: String,
    /// Bind a listener for the certificate host (`[certificate] listen`); `{certificate_port}`
    /// in `extra_config` is its port (and `{gateway}` anywhere the gateway's URL).
    pub certificate_host: bool,
    /// Bind a listener for the mTLS host (`[mtls] listen`); `{mtls_port}` in `extra_config`
    /// is its port.
    pub mtls_host: bool,
    /// The account store; None = a SQLite file in the test's folder (see
    /// [`postgres_accounts_url`]).
    pub accounts_url: Option<String>,
}

/// A fresh schema of the test binary's private PostgreSQL, as an account-store URL (the
/// gateway migrates it at start-up; the cluster goes when the tests end).
pub async fn postgres_accounts_url() -> String {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    let base = sso_test_services::postgres_url();
    let schema = format!("sso_e2e_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::AnyConnection::connect(&base).await.unwrap();
    sqlx::query(&format!("CREATE SCHEMA {schema}")).execute(&mut conn).await.unwrap();
    conn.close().await.unwrap();
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}options=-c%20search_path%3D{schema}")
}

impl Options {
    pub fn redis_replicas(n: usize) -> Self {
        Options { redis: Some(redis_url()), replicas: n, ..Options::default() }
    }
}

/// The test binary's shared private Redis (or `SSO_TEST_REDIS_URL`'s).
pub fn redis_url() -> String {
    sso_test_services::redis_url()
}

pub fn unique_prefix() -> String {
    format!("test-{}:", uuid::Uuid::new_v4().simple())
}

/// A TCP load balancer for tests: each new connection goes to the currently chosen replica.
pub struct Balancer {
    pub target: std::sync::Arc<std::sync::Mutex<std::net::SocketAddr>>,
    task: tokio::task::JoinHandle<()>,
}

impl Balancer {
    pub async fn start(listener: TcpListener, first: std::net::SocketAddr) -> Balancer {
        let target = std::sync::Arc::new(std::sync::Mutex::new(first));
        let t = target.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let to = *t.lock().unwrap();
                tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(to).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Balancer { target, task }
    }
    pub fn route_to(&self, addr: std::net::SocketAddr) {
        *self.target.lock().unwrap() = addr;
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub fn config_text(gateway: &str, idps: &HashMap<String, String>, dir: &std::path::Path) -> String {
    let demo = include_str!("../../config/demo.toml");
    // Reuse the demo's upstream sections (claim mappings of the three systems), then our clients.
    let upstreams_start = demo.find("[[upstreams]]").unwrap_or(0);
    let clients_start = demo.find("[[clients]]").unwrap_or(demo.len());
    let mut upstreams = demo[upstreams_start..clients_start].to_string();
    for (id, issuer) in idps {
        let from = match id.as_str() {
            "hcm" => "http://127.0.0.1:{hcm_port}/realms/hcm-dichvucong",
            "bd" => "http://127.0.0.1:{bd_port}/oidc",
            "brvt" => "http://127.0.0.1:{brvt_port}/cas",
            _ => "http://127.0.0.1:{vneid_port}/sso/realms/vneid",
        };
        upstreams = upstreams.replace(from, issuer);
    }
    upstreams = upstreams.replace(
        "scopes = [\"openid\", \"profile\", \"email\"]\n",
        "scopes = [\"openid\", \"profile\", \"email\"]\ntimeout = \"2s\"\n",
    );
    format!(
        r#"
issuer = "{gateway}"
[keys]
dir = "{dir}/keys"
generate_missing = true
[accounts]
url = "sqlite://{dir}/accounts.db?mode=rwc"
pairwise_salt = "e2e-pairwise-salt-0123456789abcdef"
[lifetimes]
authorization_code = "60s"

{upstreams}

[[clients]]
client_id = "{PORTAL}"
client_secret = "{PORTAL_SECRET}"
redirect_uris = ["{PORTAL_CB}"]
scopes = ["openid", "profile", "email", "phone", "national_id", "official"]

[[clients]]
client_id = "{DOCS}"
client_secret = "{DOCS_SECRET}"
redirect_uris = ["{DOCS_CB}"]
id_token_signed_response_alg = "ES256"

[[clients]]
client_id = "{SPA}"
redirect_uris = ["{SPA_CB}"]
id_token_signed_response_alg = "EdDSA"

[[clients]]
client_id = "{PAIRWISE}"
client_secret = "{PAIRWISE_SECRET}"
redirect_uris = ["{PAIRWISE_CB}"]
scopes = ["openid", "profile", "official"]
subject_type = "pairwise"
sector_identifier = "hotline.tphcm.example"

[[clients]]
client_id = "{M2M}"
client_secret = "{M2M_SECRET}"
redirect_uris = []
scopes = ["hotline.read"]
grant_types = ["client_credentials"]
"#,
        dir = dir.display()
    )
}

/// The gateway's signing keys (RS256, ES256, EdDSA; test-only, never leave the test process),
/// generated once per test binary — an RSA key takes a while — and held in memory as the
/// files `KeySet::generate` writes, so each test system gets the same keys in its own folder.
fn gateway_key_files() -> &'static [(std::ffi::OsString, Vec<u8>)] {
    static FILES: std::sync::OnceLock<Vec<(std::ffi::OsString, Vec<u8>)>> = std::sync::OnceLock::new();
    FILES.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        for alg in SigningAlg::all() {
            KeySet::generate(dir.path(), alg).unwrap();
        }
        std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap())
            .map(|e| (e.file_name(), std::fs::read(e.path()).unwrap()))
            .collect()
    })
}

/// The RSA keys of each simulated system (test-only), generated once per test binary: each
/// system keeps keys of its own, every test system reuses them.
pub fn simulator_keys(id: &str) -> &'static IdpKeys {
    static KEYS: std::sync::OnceLock<HashMap<String, IdpKeys>> = std::sync::OnceLock::new();
    &KEYS.get_or_init(|| {
        std::thread::scope(|scope| {
            let ids = legacy_idp::SYSTEMS.iter().map(|(id, _)| id.to_string());
            let handles: Vec<_> = ids.map(|id| (id, scope.spawn(|| IdpKeys::generate().unwrap()))).collect();
            handles.into_iter().map(|(id, h)| (id, h.join().unwrap())).collect()
        })
    })[id]
}

/// Writes the shared test keys into `dir` (mode 0600, as the gateway writes its own).
pub fn install_gateway_keys(dir: &std::path::Path) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::create_dir_all(dir).unwrap();
    for (name, bytes) in gateway_key_files() {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(dir.join(name))
            .unwrap();
        file.write_all(bytes).unwrap();
    }
}

impl TestSystem {
    pub async fn start() -> TestSystem {
        Self::start_with(Options::default()).await
    }

    pub async fn start_with(options: Options) -> TestSystem {
        let dir = tempfile::tempdir().unwrap();
        install_gateway_keys(&dir.path().join("keys"));
        let mut idps = HashMap::new();
        let mut issuers = HashMap::new();
        for (id, text) in legacy_idp::SYSTEMS {
            let config = LegacyIdpConfig::from_toml_str(text).unwrap();
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let idp = legacy_idp::spawn_with_keys(config, listener, simulator_keys(id)).await.unwrap();
            issuers.insert(id.to_string(), idp.issuer.clone());
            idps.insert(id.to_string(), idp);
        }
        let count = options.replicas.max(1);
        let front = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let gateway = format!("http://{}", front.local_addr().unwrap());
        let mut text = config_text(&gateway, &issuers, dir.path());
        if let Some(redis) = &options.redis {
            text.push_str(&format!(
                "\n[sessions]\nstore = \"{redis}\"\n[sessions.redis]\nkey_prefix = \"{}\"\ntimeout = \"2s\"\n",
                unique_prefix()
            ));
        }
        if !options.cas_config.is_empty() {
            text =
                text.replacen("[upstreams.cas]\n", &format!("[upstreams.cas]\n{}\n", options.cas_config), 1);
        }
        if let Some(url) = &options.accounts_url {
            let sqlite = format!("url = \"sqlite://{}/accounts.db?mode=rwc\"", dir.path().display());
            assert!(text.contains(&sqlite));
            text = text.replacen(&sqlite, &format!("url = \"{url}\""), 1);
        }
        let mut certificate = None;
        let mut extra = options.extra_config.replace("{gateway}", &gateway);
        if options.certificate_host {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            extra = extra.replace("{certificate_port}", &listener.local_addr().unwrap().port().to_string());
            certificate = Some(listener);
        }
        let mut mtls = None;
        if options.mtls_host {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            extra = extra.replace("{mtls_port}", &listener.local_addr().unwrap().port().to_string());
            mtls = Some(listener);
        }
        let mtls_addr = mtls.as_ref().map(|l| l.local_addr().unwrap());
        text.push_str(&extra);
        let certificate_addr = certificate.as_ref().map(|l| l.local_addr().unwrap());
        let clock = Clock::system();
        let mut replicas = Vec::new();
        let mut front = Some(front);
        for i in 0..count {
            let settings = Settings::from_toml(&text).unwrap();
            // A single replica serves on the front port itself; several sit behind a balancer.
            let listener = if count == 1 {
                front.take().unwrap()
            } else {
                TcpListener::bind("127.0.0.1:0").await.unwrap()
            };
            let addr = listener.local_addr().unwrap();
            let app = Application::build_with_tls_listeners(
                settings,
                clock.clone(),
                listener,
                certificate.take(),
                mtls.take(),
            )
            .await
            .unwrap_or_else(|e| panic!("replica {i}: {e}"));
            let state = app.state().clone();
            let server = tokio::spawn(async move {
                let _ = app.run_until(std::future::pending()).await;
            });
            replicas.push(Replica { addr, state, server: Some(server) });
        }
        let balancer = match front {
            Some(listener) => Some(Balancer::start(listener, replicas[0].addr).await),
            None => None,
        };
        let app = replicas[0].state.clone();
        TestSystem { gateway, idps, app, clock, replicas, balancer, certificate_addr, mtls_addr, _dir: dir }
    }

    /// Sends new connections through the balancer to replica `i`.
    pub fn route_to(&self, i: usize) {
        self.balancer.as_ref().expect("a balancer (replicas > 1)").route_to(self.replicas[i].addr);
    }

    pub fn faults(&self, upstream: &str) -> &Faults {
        &self.idps[upstream].faults
    }

    pub fn set_fault(&self, upstream: &str, pick: impl Fn(&Faults) -> &std::sync::atomic::AtomicBool) {
        pick(self.faults(upstream)).store(true, Ordering::SeqCst);
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.gateway)
    }

    /// An RP for one registered client, driven through the `openidconnect` crate.
    pub async fn rp(&self, client_id: &str, secret: Option<&str>, redirect: &str) -> Rp {
        let http =
            UpstreamHttp::new(UpstreamHttp::build_client().unwrap(), std::time::Duration::from_secs(10));
        let metadata = CoreProviderMetadata::discover_async(
            IssuerUrl::new(self.gateway.clone()).unwrap(),
            &http.as_client(),
        )
        .await
        .unwrap();
        let client = CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(client_id.into()),
            secret.map(|s| ClientSecret::new(s.into())),
        )
        .set_redirect_uri(RedirectUrl::new(redirect.into()).unwrap());
        Rp { client, http }
    }
}

pub type GatewayClient = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

pub struct Rp {
    pub client: GatewayClient,
    pub http: UpstreamHttp,
}

/// What an RP keeps between /authorize and /token.
pub struct AuthRequest {
    pub url: String,
    pub state: String,
    pub nonce: String,
    pub verifier: String,
}

#[derive(Debug)]
pub struct Tokens {
    /// Every claim of the verified ID token (including `idp` and `sid`).
    pub raw: Value,
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub id_token: String,
    pub claims: CoreIdTokenClaims,
}

impl Rp {
    pub fn authorize(&self, extra: &[(&str, &str)]) -> AuthRequest {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut req = self
            .client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .set_pkce_challenge(challenge)
            .add_scope(Scope::new("profile".into()));
        for (k, v) in extra {
            if *k == "scope" {
                for scope in v.split_whitespace() {
                    req = req.add_scope(Scope::new(scope.into()));
                }
            } else {
                req = req.add_extra_param(*k, *v);
            }
        }
        let (url, state, nonce) = req.url();
        AuthRequest {
            url: url.to_string(),
            state: state.secret().clone(),
            nonce: nonce.secret().clone(),
            verifier: verifier.secret().clone(),
        }
    }

    /// Redeems a code and verifies the ID token against the gateway's JWKS (discovered).
    pub async fn exchange(&self, req: &AuthRequest, code: &str) -> Result<Tokens, String> {
        let tokens = self
            .client
            .exchange_code(AuthorizationCode::new(code.into()))
            .map_err(|e| e.to_string())?
            .set_pkce_verifier(PkceCodeVerifier::new(req.verifier.clone()))
            .request_async(&self.http.as_client())
            .await
            .map_err(|e| format!("{e:?}"))?;
        let id_token = tokens.id_token().ok_or("no id token")?;
        let verifier = self.client.id_token_verifier().set_allowed_algs([
            openidconnect::core::CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
            openidconnect::core::CoreJwsSigningAlgorithm::EcdsaP256Sha256,
            openidconnect::core::CoreJwsSigningAlgorithm::EdDsa,
        ]);
        let claims =
            id_token.claims(&verifier, &Nonce::new(req.nonce.clone())).map_err(|e| e.to_string())?.clone();
        // at_hash binds the access token to the ID token.
        let expected = claims.access_token_hash().ok_or("no at_hash")?;
        let actual = openidconnect::AccessTokenHash::from_token(
            tokens.access_token(),
            id_token.signing_alg().map_err(|e| e.to_string())?,
            id_token.signing_key(&verifier).map_err(|e| e.to_string())?,
        )
        .map_err(|e| e.to_string())?;
        if &actual != expected {
            return Err("at_hash mismatch".into());
        }
        Ok(Tokens {
            raw: jwt_payload(&id_token.to_string()),
            access_token: tokens.access_token().secret().clone(),
            refresh_token: tokens.refresh_token().map(|r| r.secret().clone()),
            id_token: id_token.to_string(),
            claims,
        })
    }
}

/// A browser: keeps cookies, follows redirects by hand, fills login forms.
pub struct Browser {
    pub http: reqwest::Client,
}

/// Where a navigation ended.
#[derive(Debug)]
pub enum Landing {
    /// Redirected to a URL starting with the watched prefix (an RP callback).
    Callback(Url),
    /// A page was shown.
    Page { url: String, status: StatusCode, body: String },
}

impl Landing {
    pub fn callback(self) -> Url {
        match self {
            Landing::Callback(u) => u,
            Landing::Page { url, status, body } => {
                panic!("expected a callback, got page {url} {status}: {body}")
            }
        }
    }
    pub fn page(self) -> (String, StatusCode, String) {
        match self {
            Landing::Page { url, status, body } => (url, status, body),
            Landing::Callback(u) => panic!("expected a page, got redirect to {u}"),
        }
    }
}

pub fn param(url: &Url, name: &str) -> Option<String> {
    url.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

impl Default for Browser {
    fn default() -> Self {
        Self::new()
    }
}

impl Browser {
    pub fn new() -> Self {
        let http = reqwest::Client::builder()
            .cookie_store(true)
            // A new connection per request, so a test balancer can move us between replicas.
            .pool_max_idle_per_host(0)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(std::time::Duration::from_secs(20))
            .build()
            .unwrap();
        Browser { http }
    }

    /// GETs `url` and follows redirects until a page, or a redirect to `stop_prefix`.
    pub async fn navigate(&self, url: &str, stop_prefix: &str) -> Landing {
        let mut current = url.to_string();
        for _ in 0..20 {
            if current.starts_with(stop_prefix) {
                return Landing::Callback(Url::parse(&current).unwrap());
            }
            let res = self.http.get(&current).send().await.unwrap();
            if let Some(next) = redirect_target(&current, res.status(), res.headers()) {
                current = next;
                continue;
            }
            let status = res.status();
            return Landing::Page { url: current, status, body: res.text().await.unwrap() };
        }
        panic!("redirect loop from {url}");
    }

    /// Submits the legacy system's login form shown at `page_url`, then follows redirects.
    pub async fn login_form(
        &self,
        page_url: &str,
        body: &str,
        username: &str,
        password: &str,
        stop_prefix: &str,
    ) -> Landing {
        let (action, mut fields) = parse_form(body);
        fields.insert("username".into(), username.into());
        fields.insert("password".into(), password.into());
        let action = Url::parse(page_url).unwrap().join(&action).unwrap();
        let res = self.http.post(action.clone()).form(&fields).send().await.unwrap();
        match redirect_target(action.as_str(), res.status(), res.headers()) {
            Some(next) => self.navigate(&next, stop_prefix).await,
            None => {
                let status = res.status();
                Landing::Page { url: action.to_string(), status, body: res.text().await.unwrap() }
            }
        }
    }

    /// Full login from an RP authorization URL: chooser → upstream form → callback.
    pub async fn login(
        &self,
        authorize_url: &str,
        upstream: &str,
        username: &str,
        stop_prefix: &str,
    ) -> Landing {
        let (url, status, body) = self.navigate(authorize_url, stop_prefix).await.page();
        let upstream_page = if url.contains("/login?request=") {
            assert_eq!(status, StatusCode::OK, "{body}");
            let link = chooser_link(&body, upstream);
            let target = Url::parse(&url).unwrap().join(&link).unwrap();
            self.navigate(target.as_str(), stop_prefix).await.page()
        } else {
            (url, status, body)
        };
        let (url, status, body) = upstream_page;
        assert_eq!(status, StatusCode::OK, "upstream login page: {body}");
        self.login_form(&url, &body, username, "demo123", stop_prefix).await
    }
}

fn redirect_target(current: &str, status: StatusCode, headers: &HeaderMap) -> Option<String> {
    if !status.is_redirection() {
        return None;
    }
    let location = headers.get(LOCATION)?.to_str().ok()?;
    Some(Url::parse(current).ok()?.join(location).ok()?.to_string())
}

/// The chooser link for one upstream.
pub fn chooser_link(body: &str, upstream: &str) -> String {
    let doc = scraper::Html::parse_document(body);
    let sel = scraper::Selector::parse("a.button").unwrap();
    doc.select(&sel)
        .filter_map(|a| a.value().attr("href"))
        .find(|h| h.starts_with(&format!("/upstream/{upstream}/login")))
        .unwrap_or_else(|| panic!("no chooser link for {upstream} in {body}"))
        .to_string()
}

fn parse_form(body: &str) -> (String, HashMap<String, String>) {
    let doc = scraper::Html::parse_document(body);
    let form_sel = scraper::Selector::parse("form").unwrap();
    let input_sel = scraper::Selector::parse("input").unwrap();
    let form = doc.select(&form_sel).next().unwrap_or_else(|| panic!("no form in {body}"));
    let action = form.value().attr("action").unwrap_or("").to_string();
    let fields = form
        .select(&input_sel)
        .filter_map(|i| {
            Some((i.value().attr("name")?.to_string(), i.value().attr("value").unwrap_or("").to_string()))
        })
        .collect();
    (action, fields)
}

/// Posts a raw token request (for the error cases the RP library would not send).
pub async fn token_request(
    sys: &TestSystem,
    auth: Option<(&str, &str)>,
    form: &[(&str, &str)],
) -> (StatusCode, HeaderMap, Value) {
    let mut req = reqwest::Client::new().post(sys.url("/token")).form(form);
    if let Some((id, secret)) = auth {
        req = req.basic_auth(id, Some(secret));
    }
    let res = req.send().await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    (status, headers, res.json().await.unwrap_or(Value::Null))
}

pub async fn userinfo(sys: &TestSystem, access_token: &str) -> (StatusCode, HeaderMap, Value) {
    let res =
        reqwest::Client::new().get(sys.url("/userinfo")).bearer_auth(access_token).send().await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    (status, headers, res.json().await.unwrap_or(Value::Null))
}

/// Logs a browser in through `upstream` at the portal RP and returns the tokens.
pub async fn portal_login(sys: &TestSystem, browser: &Browser, upstream: &str, user: &str) -> (Rp, Tokens) {
    let rp = sys.rp(PORTAL, Some(PORTAL_SECRET), PORTAL_CB).await;
    let req = rp.authorize(&[]);
    let cb = browser.login(&req.url, upstream, user, PORTAL_CB).await.callback();
    assert_eq!(param(&cb, "state").as_deref(), Some(req.state.as_str()));
    let code = param(&cb, "code").expect("code");
    let tokens = rp.exchange(&req, &code).await.unwrap();
    (rp, tokens)
}

/// The payload of a JWT (tests only; call after verifying it).
pub fn jwt_payload(jwt: &str) -> Value {
    use base64::Engine;
    let part = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

/// A Back-Channel Logout receiver of a test RP: records every logout token it is sent.
pub struct Receiver {
    pub url: String,
    /// Every logout token received so far, in order; watched by `wait_for_token`.
    tokens: tokio::sync::watch::Receiver<Vec<String>>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    /// Starts a receiver that answers after `delay`.
    pub async fn start(delay: std::time::Duration) -> Receiver {
        use axum::routing::post;
        let (tx, tokens) = tokio::sync::watch::channel(Vec::new());
        let tx = std::sync::Arc::new(tx);
        let app = axum::Router::new().route(
            "/backchannel",
            post(move |axum::extract::Form(form): axum::extract::Form<HashMap<String, String>>| {
                let tx = tx.clone();
                async move {
                    tokio::time::sleep(delay).await;
                    if let Some(token) = form.get("logout_token") {
                        tx.send_modify(|t| t.push(token.clone()));
                    }
                    axum::http::StatusCode::OK
                }
            }),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/backchannel", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver { url, tokens, task }
    }

    /// The first `n` tokens received, as soon as they arrived (None if they do not come
    /// `within`).
    pub async fn wait_for_tokens(&self, n: usize, within: std::time::Duration) -> Option<Vec<String>> {
        let mut tokens = self.tokens.clone();
        let arrived = tokio::time::timeout(within, tokens.wait_for(|t| t.len() >= n)).await;
        Some(arrived.ok()?.ok()?.clone())
    }

    /// The first token received, as soon as it arrives (None if none comes `within`).
    pub async fn wait_for_token(&self, within: std::time::Duration) -> Option<String> {
        let mut tokens = self.tokens.clone();
        let arrived = tokio::time::timeout(within, tokens.wait_for(|t| !t.is_empty())).await;
        arrived.ok()?.ok()?.first().cloned()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Verifies a token the gateway signed against its published JWKS.
pub async fn verify_with_jwks(sys: &TestSystem, token: &str, audience: &str) -> Value {
    let jwks: jsonwebtoken::jwk::JwkSet = reqwest::get(sys.url("/jwks")).await.unwrap().json().await.unwrap();
    let header = jsonwebtoken::decode_header(token).unwrap();
    let jwk = jwks.find(header.kid.as_deref().unwrap()).expect("kid published in /jwks");
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
    let mut validation = jsonwebtoken::Validation::new(header.alg);
    validation.set_audience(&[audience]);
    validation.set_issuer(&[sys.gateway.as_str()]);
    jsonwebtoken::decode::<Value>(token, &key, &validation).unwrap().claims
}

/// Logs in through the SSO session at another client (no prompt) and returns its tokens.
pub async fn sso_login(browser: &Browser, rp: &Rp, redirect: &str) -> Tokens {
    let req = rp.authorize(&[("prompt", "none")]);
    let cb = browser.navigate(&req.url, redirect).await.callback();
    rp.exchange(&req, &param(&cb, "code").expect("code")).await.unwrap()
}

/// A client's DPoP key (P-256, generated with aws-lc-rs) that signs proofs (RFC 9449).
pub struct DpopKey {
    encoding: jsonwebtoken::EncodingKey,
    pub jwk: Value,
    /// The RFC 7638 thumbprint (what `cnf.jkt` and `dpop_jkt` carry).
    pub jkt: String,
}

impl Default for DpopKey {
    fn default() -> Self {
        Self::new()
    }
}

impl DpopKey {
    pub fn new() -> Self {
        use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
        let public = pair.public_key().as_ref();
        let jwk = serde_json::json!({
            "kty": "EC", "crv": "P-256", "x": b64.encode(&public[1..33]), "y": b64.encode(&public[33..65]),
        });
        let parsed: jsonwebtoken::jwk::Jwk = serde_json::from_value(jwk.clone()).unwrap();
        let jkt = parsed.thumbprint(jsonwebtoken::jwk::ThumbprintHash::SHA256);
        DpopKey { encoding: jsonwebtoken::EncodingKey::from_ec_der(pkcs8.as_ref()), jwk, jkt }
    }

    /// A fresh proof for `htm` `htu`, naming `access_token` (as `ath`) and `nonce` if given.
    pub fn proof(&self, htm: &str, htu: &str, access_token: Option<&str>, nonce: Option<&str>) -> String {
        let mut claims = serde_json::json!({
            "jti": uuid::Uuid::new_v4().to_string(),
            "htm": htm,
            "htu": htu,
            "iat": jsonwebtoken::get_current_timestamp(),
        });
        if let Some(token) = access_token {
            use base64::Engine;
            use sha2::Digest;
            claims["ath"] = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(sha2::Sha256::digest(token.as_bytes()))
                .into();
        }
        if let Some(nonce) = nonce {
            claims["nonce"] = nonce.into();
        }
        self.sign(&claims)
    }

    /// Signs any claims as a DPoP proof (for proofs with a wrong or missing claim).
    pub fn sign(&self, claims: &Value) -> String {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.typ = Some("dpop+jwt".into());
        header.jwk = Some(serde_json::from_value(self.jwk.clone()).unwrap());
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }
}

/// Posts a token request with a DPoP proof (and client authentication when given).
pub async fn dpop_token_request(
    sys: &TestSystem,
    auth: Option<(&str, &str)>,
    form: &[(&str, &str)],
    proof: Option<&str>,
) -> (StatusCode, HeaderMap, Value) {
    let mut req = reqwest::Client::new().post(sys.url("/token")).form(form);
    if let Some((id, secret)) = auth {
        req = req.basic_auth(id, Some(secret));
    }
    if let Some(proof) = proof {
        req = req.header("DPoP", proof);
    }
    send(req).await
}

/// Calls `/userinfo` with `Authorization: {scheme} {token}` and an optional DPoP proof.
pub async fn userinfo_with(
    sys: &TestSystem,
    scheme: &str,
    access_token: &str,
    proof: Option<&str>,
) -> (StatusCode, HeaderMap, Value) {
    let mut req = reqwest::Client::new()
        .get(sys.url("/userinfo"))
        .header("Authorization", format!("{scheme} {access_token}"));
    if let Some(proof) = proof {
        req = req.header("DPoP", proof);
    }
    send(req).await
}

/// Sends a request; its status, headers and JSON body (`Null` when it has none).
pub async fn send(req: reqwest::RequestBuilder) -> (StatusCode, HeaderMap, Value) {
    let res = req.send().await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    (status, headers, res.json().await.unwrap_or(Value::Null))
}

/// A gateway with no upstreams, keys generated in a temporary folder, accounts in memory and
/// a management listener: for tests about the gateway's own answers and metrics.
pub struct BareGateway {
    pub public: String,
    pub management: String,
    _dir: tempfile::TempDir,
}

/// Starts a [`BareGateway`] whose configuration ends with `extra` (TOML tables of the test).
pub async fn start_bare_gateway(extra: &str, clock: Clock) -> BareGateway {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "issuer = \"http://127.0.0.1:1\"\nlisten = \"127.0.0.1:0\"\n[keys]\ndir = \"{}/keys\"\ngenerate_missing = true\n[accounts]\nurl = \"sqlite::memory:\"\n[management]\nlisten = \"127.0.0.1:0\"\n{extra}",
        dir.path().display()
    );
    let settings = Settings::from_toml(&text).unwrap();
    let app = Application::build(settings, clock).await.unwrap();
    let public = format!("http://{}", app.addr());
    let management = format!("http://{}", app.management_addr().unwrap());
    tokio::spawn(app.run_until(std::future::pending()));
    BareGateway { public, management, _dir: dir }
}
