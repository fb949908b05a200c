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

use crate::http::{Agent, hrefs_with_prefix, input_value, query_param};
use crate::load::{Step, Worker};
use crate::system::{M2M_CLIENT, M2M_SCOPE, M2M_SECRET, RP_CALLBACK, RP_CLIENT, RP_SECRET, User};

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
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == s)
    }

    /// The target on this 2-core machine, per second.
    pub fn target(self) -> Option<f64> {
        match self {
            Kind::Discovery | Kind::Jwks => Some(50_000.0),
            Kind::ClientCredentials => Some(20_000.0),
            Kind::AuthorizationCode | Kind::RefreshToken => Some(8_000.0),
            Kind::Introspection => Some(30_000.0),
            Kind::FullLogin => Some(1_000.0),
            Kind::SsoLogin => Some(5_000.0),
            Kind::Userinfo => None,
        }
    }

    /// What one counted operation is.
    pub fn unit(self) -> &'static str {
        match self {
            Kind::FullLogin => "login: 7 HTTP exchanges (8 via the chooser) incl. /token",
            Kind::SsoLogin => "login: /authorize + /token",
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
        )
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
    pub rp_basic: HeaderValue,
    pub m2m_basic: HeaderValue,
    pub verifier: String,
    pub users: Vec<User>,
    logins: AtomicU64,
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
        Ok(Ctx {
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
        })
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

/// POST /token as the benchmark RP.
pub async fn token_request(rp: &mut Agent, ctx: &Ctx, body: Bytes) -> Result<Tokens> {
    let r = rp
        .send(Method::POST, &ctx.token, &[(header::AUTHORIZATION, ctx.rp_basic.clone())], Some(body))
        .await?;
    expect_status(&r, 200, "/token")?;
    parse_tokens(&r.body)
}

pub async fn exchange(rp: &mut Agent, ctx: &Ctx, code: &str) -> Result<Tokens> {
    let body = form(&[
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", RP_CALLBACK),
        ("code_verifier", &ctx.verifier),
    ]);
    let t = token_request(rp, ctx, body).await?;
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
    exchange(rp, ctx, &code).await
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
        }
    }

    /// Logs this worker's browser in (a full brokered login) and keeps its tokens.
    pub async fn login(&mut self, user: &User) -> Result<()> {
        let ctx = self.ctx.clone();
        self.tokens = Some(full_login(&mut self.browser, &mut self.rp, &ctx, user, false).await?);
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
                full_login(&mut self.browser, &mut self.rp, &ctx, user, n % 2 == 1).await?;
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
                let t = token_request(&mut self.rp, &ctx, body).await?;
                ensure!(t.refresh.is_some(), "no rotated refresh token");
                self.tokens = Some(t);
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
