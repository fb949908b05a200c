//! The scenarios: what one operation is, how its workers are prepared (real logins through
//! the simulated systems, codes minted through the SSO path), and the flows themselves.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result, anyhow, bail, ensure};
use base64::Engine;
use bytes::Bytes;
use hyper::Method;
use hyper::header::{self, HeaderValue};
use sha2::Digest;
use url::Url;

use crate::credentials::DpopKey;
use crate::http::{Agent, hrefs_with_prefix, input_value, query_param};
use crate::load::{Step, Worker};
use crate::system::{
    CERT_HEADER, CERT_UPSTREAM, M2M_CLIENT, M2M_SCOPE, M2M_SECRET, MTLS_CLIENT, RP_CALLBACK, RP_CLIENT,
    RP_SECRET, User,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Discovery,
    Jwks,
    ClientCredentials,
    FullLogin,
    SsoLogin,
    AuthorizationCode,
    RefreshToken,
    Userinfo,
    Introspection,
    // issue 14 (not part of `all`; `issue14` runs them next to their baselines)
    DpopToken,
    DpopRefreshToken,
    DpopUserinfo,
    PlainAuthorize,
    ParAuthorize,
    MtlsClientCredentials,
    CertLogin,
}

impl Kind {
    /// Every scenario, in the order `all` runs them (logins first: they create the accounts
    /// and sessions the token scenarios use).
    pub const ALL: [Kind; 9] = [
        Kind::Discovery,
        Kind::Jwks,
        Kind::ClientCredentials,
        Kind::FullLogin,
        Kind::SsoLogin,
        Kind::AuthorizationCode,
        Kind::RefreshToken,
        Kind::Userinfo,
        Kind::Introspection,
    ];

    /// The scenarios of issue 14, each after the baseline it is compared with: what
    /// `--scenario issue14` runs, back to back.
    pub const ISSUE14: [Kind; 11] = [
        Kind::ClientCredentials,
        Kind::DpopToken,
        Kind::MtlsClientCredentials,
        Kind::RefreshToken,
        Kind::DpopRefreshToken,
        Kind::Userinfo,
        Kind::DpopUserinfo,
        Kind::PlainAuthorize,
        Kind::ParAuthorize,
        Kind::FullLogin,
        Kind::CertLogin,
    ];

    /// Every scenario there is.
    const EVERY: [Kind; 16] = [
        Kind::Discovery,
        Kind::Jwks,
        Kind::ClientCredentials,
        Kind::FullLogin,
        Kind::SsoLogin,
        Kind::AuthorizationCode,
        Kind::RefreshToken,
        Kind::Userinfo,
        Kind::Introspection,
        Kind::DpopToken,
        Kind::DpopRefreshToken,
        Kind::DpopUserinfo,
        Kind::PlainAuthorize,
        Kind::ParAuthorize,
        Kind::MtlsClientCredentials,
        Kind::CertLogin,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Discovery => "discovery",
            Kind::Jwks => "jwks",
            Kind::ClientCredentials => "client_credentials",
            Kind::FullLogin => "full_login",
            Kind::SsoLogin => "sso_login",
            Kind::AuthorizationCode => "authorization_code",
            Kind::RefreshToken => "refresh_token",
            Kind::Userinfo => "userinfo",
            Kind::Introspection => "introspection",
            Kind::DpopToken => "dpop_token",
            Kind::DpopRefreshToken => "dpop_refresh_token",
            Kind::DpopUserinfo => "dpop_userinfo",
            Kind::PlainAuthorize => "plain_authorize",
            Kind::ParAuthorize => "par_authorize",
            Kind::MtlsClientCredentials => "mtls_client_credentials",
            Kind::CertLogin => "cert_login",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::EVERY.into_iter().find(|k| k.name() == s)
    }

    /// The issue's target on this 2-core machine, per second.
    pub fn target(self) -> Option<f64> {
        match self {
            Kind::Discovery | Kind::Jwks => Some(50_000.0),
            Kind::ClientCredentials => Some(20_000.0),
            Kind::AuthorizationCode | Kind::RefreshToken => Some(8_000.0),
            Kind::Introspection => Some(30_000.0),
            Kind::FullLogin => Some(1_000.0),
            Kind::SsoLogin => Some(5_000.0),
            Kind::Userinfo
            | Kind::DpopToken
            | Kind::DpopRefreshToken
            | Kind::DpopUserinfo
            | Kind::PlainAuthorize
            | Kind::ParAuthorize
            | Kind::MtlsClientCredentials
            | Kind::CertLogin => None,
        }
    }

    /// What one counted operation is.
    pub fn unit(self) -> &'static str {
        match self {
            Kind::FullLogin => "login: 7 HTTP exchanges (8 via the chooser) incl. /token",
            Kind::SsoLogin => "login: /authorize + /token",
            Kind::CertLogin => "login: 6 HTTP exchanges (7 via the chooser) incl. /token",
            Kind::ParAuthorize => "POST /par + GET /authorize?request_uri= (a code)",
            Kind::PlainAuthorize => "GET /authorize with a session (a code)",
            _ => "request",
        }
    }

    /// Whether workers need a logged-in browser and tokens.
    pub fn needs_session(self) -> bool {
        matches!(
            self,
            Kind::SsoLogin
                | Kind::AuthorizationCode
                | Kind::RefreshToken
                | Kind::Userinfo
                | Kind::Introspection
                | Kind::DpopRefreshToken
                | Kind::DpopUserinfo
                | Kind::PlainAuthorize
                | Kind::ParAuthorize
        )
    }

    /// Whether the worker holds a DPoP key (and its session's tokens are bound to it).
    pub fn uses_dpop(self) -> bool {
        matches!(self, Kind::DpopToken | Kind::DpopRefreshToken | Kind::DpopUserinfo)
    }
}

/// Shared, read-only facts of a run.
pub struct Ctx {
    pub gateway: Url,
    pub authorize: Url,
    pub token: Url,
    pub discovery: Url,
    pub jwks: Url,
    pub userinfo: Url,
    pub introspect: Option<Url>,
    pub par: Url,
    /// The parameters of [`Ctx::authorize`], for `/par`.
    pub authorize_params: Vec<(String, String)>,
    /// Officials' certificates as the proxy forwards them (`cert_login`).
    pub officials: Vec<HeaderValue>,
    /// The mTLS RP's certificate as the proxy forwards it (`mtls_client_credentials`).
    pub rp_certificate: Option<HeaderValue>,
    pub rp_basic: HeaderValue,
    pub m2m_basic: HeaderValue,
    pub verifier: String,
    pub users: Vec<User>,
    logins: AtomicU64,
    cert_logins: AtomicU64,
}

fn basic(id: &str, secret: &str) -> Result<HeaderValue> {
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let raw = format!("{}:{}", enc(id), enc(secret));
    Ok(HeaderValue::from_str(&format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(raw)))?)
}

impl Ctx {
    pub fn new(gateway: Url, users: Vec<User>, introspect: Option<Url>) -> Result<Ctx> {
        let verifier = "bench-pkce-verifier-0123456789-abcdefghijklmnopqrstuvwxyz".to_string();
        let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(sha2::Sha256::digest(verifier.as_bytes()));
        let mut authorize = gateway.join("/authorize")?;
        authorize
            .query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", RP_CLIENT)
            .append_pair("redirect_uri", RP_CALLBACK)
            .append_pair("scope", "openid profile email")
            .append_pair("state", "bench-state")
            .append_pair("nonce", "bench-nonce")
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256");
        let authorize_params =
            authorize.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
        Ok(Ctx {
            par: gateway.join("/par")?,
            authorize_params,
            officials: Vec::new(),
            rp_certificate: None,
            authorize,
            token: gateway.join("/token")?,
            discovery: gateway.join("/.well-known/openid-configuration")?,
            jwks: gateway.join("/jwks")?,
            userinfo: gateway.join("/userinfo")?,
            introspect,
            rp_basic: basic(RP_CLIENT, RP_SECRET)?,
            m2m_basic: basic(M2M_CLIENT, M2M_SECRET)?,
            verifier,
            users,
            gateway,
            logins: AtomicU64::new(0),
            cert_logins: AtomicU64::new(0),
        })
    }

    /// The certificates the proxy forwards (see `credentials::Pki`).
    pub fn with_certificates(mut self, officials: &[String], rp: &str) -> Result<Ctx> {
        self.officials = officials.iter().map(|c| HeaderValue::from_str(c)).collect::<Result<_, _>>()?;
        self.rp_certificate = Some(HeaderValue::from_str(rp)?);
        Ok(self)
    }

    fn next_login(&self) -> (u64, &User) {
        let n = self.logins.fetch_add(1, Ordering::Relaxed);
        (n, &self.users[(n % self.users.len() as u64) as usize])
    }
}

/// Tokens from a /token response.
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    pub access: String,
    pub refresh: Option<String>,
    pub id_token: Option<String>,
}

fn parse_tokens(body: &[u8]) -> Result<Tokens> {
    let v: serde_json::Value = serde_json::from_slice(body).context("token response is not JSON")?;
    let s = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
    Ok(Tokens {
        access: s("access_token").ok_or_else(|| anyhow!("no access_token"))?,
        refresh: s("refresh_token"),
        id_token: s("id_token"),
    })
}

fn form(pairs: &[(&str, &str)]) -> Bytes {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    Bytes::from(s.finish())
}

fn expect_status(r: &crate::http::Resp, want: u16, what: &str) -> Result<()> {
    if r.status.as_u16() != want {
        let body: String = r.text().chars().take(200).collect();
        bail!("{what}: HTTP {} (expected {want}): {body}", r.status);
    }
    Ok(())
}

/// POST /token as the benchmark RP, with a fresh DPoP proof of `dpop` if given (then the
/// access token must come back DPoP-bound).
pub async fn token_request(rp: &mut Agent, ctx: &Ctx, body: Bytes, dpop: Option<&DpopKey>) -> Result<Tokens> {
    let mut headers = vec![(header::AUTHORIZATION, ctx.rp_basic.clone())];
    if let Some(key) = dpop {
        headers.push((DPOP.clone(), HeaderValue::from_str(&key.proof("POST", ctx.token.as_str(), None)?)?));
    }
    let r = rp.send(Method::POST, &ctx.token, &headers, Some(body)).await?;
    expect_status(&r, 200, "/token")?;
    if dpop.is_some() {
        ensure!(r.text().contains(r#""token_type":"DPoP""#), "not a DPoP-bound token: {}", r.text());
    }
    parse_tokens(&r.body)
}

static DPOP: header::HeaderName = header::HeaderName::from_static("dpop");

pub async fn exchange(rp: &mut Agent, ctx: &Ctx, code: &str) -> Result<Tokens> {
    exchange_with(rp, ctx, code, None).await
}

pub async fn exchange_with(rp: &mut Agent, ctx: &Ctx, code: &str, dpop: Option<&DpopKey>) -> Result<Tokens> {
    let body = form(&[
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", RP_CALLBACK),
        ("code_verifier", &ctx.verifier),
    ]);
    let t = token_request(rp, ctx, body, dpop).await?;
    ensure!(t.id_token.is_some(), "no id_token in the code exchange");
    Ok(t)
}

fn code_from(loc: &Url) -> Result<String> {
    ensure!(loc.as_str().starts_with(RP_CALLBACK), "redirected to {loc} instead of the RP");
    if let Some(e) = query_param(loc, "error") {
        bail!("the RP got error={e}: {}", query_param(loc, "error_description").unwrap_or_default());
    }
    query_param(loc, "code").ok_or_else(|| anyhow!("no code in {loc}"))
}

/// `/authorize` in a browser that has a session: the code comes straight back.
pub async fn sso_authorize(browser: &mut Agent, ctx: &Ctx) -> Result<String> {
    let r = browser.get(&ctx.authorize).await?;
    ensure!(r.status.is_redirection(), "/authorize with a session: HTTP {}", r.status);
    code_from(&r.location(&ctx.gateway)?)
}

/// A whole brokered login in a new browser profile: RP /authorize → (chooser or idp_hint)
/// → upstream login form → form POST → gateway callback (account resolution, session) →
/// code → /token. Returns the tokens; the browser keeps its new session cookie.
pub async fn full_login(
    browser: &mut Agent,
    rp: &mut Agent,
    ctx: &Ctx,
    user: &User,
    chooser: bool,
    dpop: Option<&DpopKey>,
) -> Result<Tokens> {
    browser.clear_cookies();
    let gw = &ctx.gateway;
    let mut url = ctx.authorize.clone();
    if !chooser {
        url.query_pairs_mut().append_pair("idp_hint", &user.upstream);
    }
    let r = browser.get(&url).await?;
    ensure!(r.status.is_redirection(), "/authorize: HTTP {}", r.status);
    let mut next = r.location(gw)?;
    if chooser {
        let r = browser.get(&next).await?;
        expect_status(&r, 200, "chooser")?;
        let prefix = format!("/upstream/{}/login", user.upstream);
        let href = hrefs_with_prefix(r.text(), &prefix).into_iter().next();
        next = gw.join(&href.ok_or_else(|| anyhow!("no {prefix} link on the chooser"))?)?;
    }
    // the broker starts the upstream login and sends the browser there
    let r = browser.get(&next).await?;
    ensure!(r.status.is_redirection(), "/upstream/…/login: HTTP {}", r.status);
    let upstream_auth = r.location(gw)?;
    let r = browser.get(&upstream_auth).await?;
    expect_status(&r, 200, "legacy login form")?;
    let request_id =
        input_value(r.text(), "request_id").ok_or_else(|| anyhow!("no request_id on the form"))?;
    let mut action = upstream_auth.clone();
    action.set_query(None);
    let body =
        form(&[("request_id", &request_id), ("username", &user.username), ("password", &user.password)]);
    let r = browser.send(Method::POST, &action, &[], Some(body)).await?;
    ensure!(
        r.status.is_redirection(),
        "legacy login POST: HTTP {}: {}",
        r.status,
        r.text().chars().take(200).collect::<String>()
    );
    let callback = r.location(&action)?;
    let r = browser.get(&callback).await?;
    ensure!(
        r.status.is_redirection(),
        "gateway callback: HTTP {}: {}",
        r.status,
        r.text().chars().take(300).collect::<String>()
    );
    let code = code_from(&r.location(gw)?)?;
    exchange_with(rp, ctx, &code, dpop).await
}

/// A whole certificate login in a new browser profile, through the forwarded-header
/// deployment: RP /authorize → (chooser or idp_hint) → `/upstream/{cert}/login` → the
/// certificate step (the proxy forwards `certificate`) → gateway callback → code → /token.
pub async fn cert_login(
    browser: &mut Agent,
    rp: &mut Agent,
    ctx: &Ctx,
    certificate: &HeaderValue,
    chooser: bool,
) -> Result<Tokens> {
    browser.clear_cookies();
    let gw = &ctx.gateway;
    let mut url = ctx.authorize.clone();
    if !chooser {
        url.query_pairs_mut().append_pair("idp_hint", CERT_UPSTREAM);
    }
    let r = browser.get(&url).await?;
    ensure!(r.status.is_redirection(), "/authorize: HTTP {}", r.status);
    let mut next = r.location(gw)?;
    if chooser {
        let r = browser.get(&next).await?;
        expect_status(&r, 200, "chooser")?;
        let prefix = format!("/upstream/{CERT_UPSTREAM}/login");
        let href = hrefs_with_prefix(r.text(), &prefix).into_iter().next();
        next = gw.join(&href.ok_or_else(|| anyhow!("no {prefix} link on the chooser"))?)?;
    }
    let r = browser.get(&next).await?;
    ensure!(r.status.is_redirection(), "/upstream/{CERT_UPSTREAM}/login: HTTP {}", r.status);
    let step = r.location(gw)?;
    ensure!(step.path().ends_with("/certificate"), "not sent to the certificate step: {step}");
    let header = header::HeaderName::from_static(CERT_HEADER);
    let r = browser.send(Method::GET, &step, &[(header, certificate.clone())], None).await?;
    ensure!(r.status.is_redirection(), "certificate step: HTTP {}: {}", r.status, r.text());
    let callback = r.location(&step)?;
    let r = browser.get(&callback).await?;
    ensure!(
        r.status.is_redirection(),
        "gateway callback: HTTP {}: {}",
        r.status,
        r.text().chars().take(300).collect::<String>()
    );
    let code = code_from(&r.location(gw)?)?;
    exchange(rp, ctx, &code).await
}

/// A pushed authorization request (`/par`, the RP's back channel) and the `/authorize` that
/// takes it (the browser, with a session): the code.
pub async fn par_authorize(browser: &mut Agent, rp: &mut Agent, ctx: &Ctx) -> Result<String> {
    let pairs: Vec<(&str, &str)> =
        ctx.authorize_params.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let r = rp
        .send(Method::POST, &ctx.par, &[(header::AUTHORIZATION, ctx.rp_basic.clone())], Some(form(&pairs)))
        .await?;
    expect_status(&r, 201, "/par")?;
    let v: serde_json::Value = serde_json::from_slice(&r.body).context("/par answer is not JSON")?;
    let request_uri =
        v.get("request_uri").and_then(|u| u.as_str()).ok_or_else(|| anyhow!("no request_uri"))?;
    let mut url = ctx.gateway.join("/authorize")?;
    url.query_pairs_mut().append_pair("client_id", RP_CLIENT).append_pair("request_uri", request_uri);
    let r = browser.get(&url).await?;
    ensure!(r.status.is_redirection(), "/authorize?request_uri= with a session: HTTP {}", r.status);
    code_from(&r.location(&ctx.gateway)?)
}

/// One worker of one scenario.
pub struct ScenarioWorker {
    pub kind: Kind,
    pub ctx: Arc<Ctx>,
    /// A browser (cookies); holds an SSO session when the scenario needs one.
    pub browser: Agent,
    /// The RP's back channel (no cookies).
    pub rp: Agent,
    pub codes: Vec<String>,
    pub tokens: Option<Tokens>,
    /// The key of this worker's DPoP proofs (the `dpop_*` scenarios).
    pub dpop: Option<DpopKey>,
}

impl ScenarioWorker {
    pub fn new(kind: Kind, ctx: Arc<Ctx>) -> Self {
        ScenarioWorker {
            kind,
            ctx,
            browser: Agent::default(),
            rp: Agent::default(),
            codes: Vec::new(),
            tokens: None,
            dpop: if kind.uses_dpop() { DpopKey::generate().ok() } else { None },
        }
    }

    /// Logs this worker's browser in (a full brokered login) and keeps its tokens.
    pub async fn login(&mut self, user: &User) -> Result<()> {
        let ctx = self.ctx.clone();
        let dpop = self.dpop.as_ref();
        self.tokens = Some(full_login(&mut self.browser, &mut self.rp, &ctx, user, false, dpop).await?);
        Ok(())
    }

    async fn op(&mut self) -> Result<bool> {
        let ctx = self.ctx.clone();
        match self.kind {
            Kind::Discovery => {
                let r = self.rp.get(&ctx.discovery).await?;
                expect_status(&r, 200, "discovery")?;
            }
            Kind::Jwks => {
                let r = self.rp.get(&ctx.jwks).await?;
                expect_status(&r, 200, "jwks")?;
            }
            Kind::ClientCredentials => {
                let body = Bytes::from(format!("grant_type=client_credentials&scope={M2M_SCOPE}"));
                let r = self
                    .rp
                    .send(
                        Method::POST,
                        &ctx.token,
                        &[(header::AUTHORIZATION, ctx.m2m_basic.clone())],
                        Some(body),
                    )
                    .await?;
                expect_status(&r, 200, "client_credentials")?;
            }
            Kind::FullLogin => {
                let (n, user) = ctx.next_login();
                full_login(&mut self.browser, &mut self.rp, &ctx, user, n % 2 == 1, None).await?;
            }
            Kind::SsoLogin => {
                let code = sso_authorize(&mut self.browser, &ctx).await?;
                exchange(&mut self.rp, &ctx, &code).await?;
            }
            Kind::AuthorizationCode => {
                let Some(code) = self.codes.pop() else { return Ok(false) };
                exchange(&mut self.rp, &ctx, &code).await?;
            }
            Kind::RefreshToken => {
                let Some(rt) = self.tokens.as_mut().and_then(|t| t.refresh.take()) else { return Ok(false) };
                let body = form(&[("grant_type", "refresh_token"), ("refresh_token", &rt)]);
                let t = token_request(&mut self.rp, &ctx, body, None).await?;
                ensure!(t.refresh.is_some(), "no rotated refresh token");
                self.tokens = Some(t);
            }
            Kind::DpopRefreshToken => {
                let Some(rt) = self.tokens.as_mut().and_then(|t| t.refresh.take()) else { return Ok(false) };
                let body = form(&[("grant_type", "refresh_token"), ("refresh_token", &rt)]);
                let t = token_request(&mut self.rp, &ctx, body, self.dpop.as_ref()).await?;
                ensure!(t.refresh.is_some(), "no rotated refresh token");
                self.tokens = Some(t);
            }
            Kind::DpopToken => {
                let key = self.dpop.as_ref().ok_or_else(|| anyhow!("no DPoP key"))?;
                let proof = HeaderValue::from_str(&key.proof("POST", ctx.token.as_str(), None)?)?;
                let body = Bytes::from(format!("grant_type=client_credentials&scope={M2M_SCOPE}"));
                let headers = [(header::AUTHORIZATION, ctx.m2m_basic.clone()), (DPOP.clone(), proof)];
                let r = self.rp.send(Method::POST, &ctx.token, &headers, Some(body)).await?;
                expect_status(&r, 200, "DPoP client_credentials")?;
                ensure!(r.text().contains(r#""token_type":"DPoP""#), "not DPoP-bound: {}", r.text());
            }
            Kind::DpopUserinfo => {
                let key = self.dpop.as_ref().ok_or_else(|| anyhow!("no DPoP key"))?;
                let access = self.tokens.as_ref().map(|t| t.access.as_str()).unwrap_or_default();
                let proof = HeaderValue::from_str(&key.proof("GET", ctx.userinfo.as_str(), Some(access))?)?;
                let scheme = HeaderValue::from_str(&format!("DPoP {access}"))?;
                let headers = [(header::AUTHORIZATION, scheme), (DPOP.clone(), proof)];
                let r = self.rp.send(Method::GET, &ctx.userinfo, &headers, None).await?;
                expect_status(&r, 200, "DPoP userinfo")?;
            }
            Kind::PlainAuthorize => {
                sso_authorize(&mut self.browser, &ctx).await?;
            }
            Kind::ParAuthorize => {
                par_authorize(&mut self.browser, &mut self.rp, &ctx).await?;
            }
            Kind::MtlsClientCredentials => {
                let cert = ctx.rp_certificate.clone().ok_or_else(|| anyhow!("no RP certificate"))?;
                let body = Bytes::from(format!(
                    "grant_type=client_credentials&client_id={MTLS_CLIENT}&scope={M2M_SCOPE}"
                ));
                let headers = [(header::HeaderName::from_static(CERT_HEADER), cert)];
                let r = self.rp.send(Method::POST, &ctx.token, &headers, Some(body)).await?;
                expect_status(&r, 200, "mTLS client_credentials")?;
                let access = parse_tokens(&r.body)?.access;
                let payload = access.split('.').nth(1).unwrap_or_default();
                let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload)?;
                ensure!(
                    std::str::from_utf8(&claims)?.contains("x5t#S256"),
                    "the token is not bound to the certificate"
                );
            }
            Kind::CertLogin => {
                let n = ctx.cert_logins.fetch_add(1, Ordering::Relaxed);
                let certificate = ctx
                    .officials
                    .get((n % ctx.officials.len().max(1) as u64) as usize)
                    .ok_or_else(|| anyhow!("no officials' certificates"))?
                    .clone();
                cert_login(&mut self.browser, &mut self.rp, &ctx, &certificate, n % 2 == 1).await?;
            }
            Kind::Userinfo => {
                let access = self.tokens.as_ref().map(|t| t.access.clone()).unwrap_or_default();
                let bearer = HeaderValue::from_str(&format!("Bearer {access}"))?;
                let r = self
                    .rp
                    .send(Method::GET, &ctx.userinfo, &[(header::AUTHORIZATION, bearer)], None)
                    .await?;
                expect_status(&r, 200, "userinfo")?;
            }
            Kind::Introspection => {
                let Some(url) = &ctx.introspect else { return Ok(false) };
                let access = self.tokens.as_ref().map(|t| t.access.clone()).unwrap_or_default();
                let body = form(&[("token", &access), ("token_type_hint", "access_token")]);
                let r = self
                    .rp
                    .send(Method::POST, url, &[(header::AUTHORIZATION, ctx.rp_basic.clone())], Some(body))
                    .await?;
                expect_status(&r, 200, "introspection")?;
                ensure!(r.text().contains("\"active\":true"), "token not active: {}", r.text());
            }
        }
        Ok(true)
    }
}

impl Worker for ScenarioWorker {
    async fn step(&mut self) -> Step {
        match self.op().await {
            Ok(true) => Step::Done,
            Ok(false) => Step::Exhausted,
            Err(e) => Step::Failed(format!("{e:#}")),
        }
    }
}
