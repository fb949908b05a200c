//! The OpenID Connect upstream connector, built on the `openidconnect` crate: cached
//! discovery, authorization code flow with state, nonce and PKCE, full ID token validation.

use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use openidconnect::core::{
    CoreAuthDisplay, CoreAuthPrompt, CoreAuthenticationFlow, CoreClaimName, CoreClaimType,
    CoreClientAuthMethod, CoreErrorResponseType, CoreGenderClaim, CoreGrantType,
    CoreJweContentEncryptionAlgorithm, CoreJweKeyManagementAlgorithm, CoreJwsSigningAlgorithm,
    CoreResponseMode, CoreResponseType, CoreRevocableToken, CoreRevocationErrorResponse,
    CoreSubjectIdentifierType, CoreTokenIntrospectionResponse, CoreTokenType,
};
use openidconnect::{
    AccessToken, AdditionalClaims, AuthorizationCode, ClientId, ClientSecret, CsrfToken,
    EmptyExtraTokenFields, EndpointMaybeSet, EndpointNotSet, EndpointSet, IdTokenFields, IssuerUrl,
    LanguageTag, Nonce, OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope,
    StandardErrorResponse, StandardTokenResponse, TokenResponse,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::sync::RwLock;

use super::audit;
use super::connector::{
    Answer, AttemptData, CallbackParams, Connector, ConnectorSetup, Endpoint, Posted, Received, StartContext,
    Started, UpstreamLogout, VerifiedLogin,
};
use super::error::BrokerError;
use super::http_client::UpstreamHttp;
use super::upstream_key::UpstreamKey;
use crate::config::{OidcSettings, UpstreamSettings};
use crate::web::params::{self, Controls};

/// Every claim an upstream sends, kept so the claim mapping can read any of them.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct AllClaims {
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}
impl AdditionalClaims for AllClaims {}

type UpstreamTokenResponse = StandardTokenResponse<
    IdTokenFields<
        AllClaims,
        EmptyExtraTokenFields,
        CoreGenderClaim,
        CoreJweContentEncryptionAlgorithm,
        CoreJwsSigningAlgorithm,
    >,
    CoreTokenType,
>;

/// Discovery metadata with RP-Initiated Logout, keys parsed once (see `upstream_key`).
type UpstreamMetadata = openidconnect::ProviderMetadata<
    openidconnect::LogoutProviderMetadata<openidconnect::EmptyAdditionalProviderMetadata>,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    UpstreamKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;

type UpstreamClient = openidconnect::Client<
    AllClaims,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    UpstreamKey,
    CoreAuthPrompt,
    StandardErrorResponse<CoreErrorResponseType>,
    UpstreamTokenResponse,
    CoreTokenIntrospectionResponse,
    CoreRevocableToken,
    CoreRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

struct Discovered {
    client: UpstreamClient,
    /// RP-Initiated Logout endpoint, when the upstream has one.
    end_session: Option<String>,
    /// The upstream's signing keys, for logout tokens.
    jwks: jsonwebtoken::jwk::JwkSet,
    fetched: Instant,
}

/// The `events` member that marks a Back-Channel Logout token.
pub const BACKCHANNEL_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

#[derive(Debug, Deserialize)]
struct LogoutClaims {
    iat: i64,
    exp: i64,
    jti: Option<String>,
    sid: Option<String>,
    sub: Option<String>,
    nonce: Option<Value>,
    events: Option<Map<String, Value>>,
}

/// Key of this connector's data in a login attempt.
const ATTEMPT_KEY: &str = "oidc";

/// The parameters of the upstream's redirect back to the callback (RFC 6749 §4.1.2, RFC 9207),
/// besides `state`, the attempt id (see `callback_attempt`).
#[derive(Debug, Default, Deserialize)]
pub struct OidcCallback {
    pub code: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
    pub iss: Option<String>,
}

/// What the callback says, before anything is redeemed: the upstream's error, an answer from
/// another issuer (RFC 9207 mix-up), no usable code, or the code to redeem.
pub(crate) fn read_callback<'q>(
    upstream: &str,
    issuer: &str,
    q: &'q OidcCallback,
) -> Result<&'q str, BrokerError> {
    if let Some(error) = &q.error {
        return Err(BrokerError::UpstreamDenied {
            upstream: upstream.into(),
            error: error.chars().take(64).collect(),
            description: q.error_description.clone().unwrap_or_default().chars().take(256).collect(),
        });
    }
    // RFC 9207: when the upstream names itself, it must be the one we sent the user to.
    if let Some(iss) = &q.iss
        && iss.trim_end_matches('/') != issuer.trim_end_matches('/')
    {
        return Err(BrokerError::IssuerMismatch {
            upstream: upstream.into(),
            iss: iss.chars().take(256).collect(),
        });
    }
    q.code.as_deref().filter(|c| !c.is_empty() && c.len() <= 4096).ok_or(BrokerError::MalformedCallback)
}

/// The form an upstream POSTs to `/upstream/{id}/backchannel-logout`.
#[derive(Debug, Deserialize)]
struct BackchannelForm {
    logout_token: Option<String>,
}

/// The logout token of a Back-Channel Logout POST (bounded), or why there is none.
fn read_backchannel(upstream: &str, body: &[u8]) -> Result<String, BrokerError> {
    let malformed = |detail: String| BrokerError::MalformedMessage { upstream: upstream.into(), detail };
    let form: BackchannelForm =
        params::deserialize(body, Controls::Refused).map_err(|e| malformed(e.to_string()))?;
    form.logout_token
        .filter(|t| !t.is_empty() && t.len() <= 16 * 1024)
        .ok_or_else(|| malformed("logout_token is required".into()))
}

/// What the connector needs to remember between redirect and callback.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OidcAttempt {
    pub nonce: String,
    pub pkce_verifier: String,
    /// The login must be fresh (`prompt=login` was sent upstream).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force_login: bool,
    /// The `max_age` sent upstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<i64>,
    /// When the attempt started (Unix seconds, wall clock: the time base of the upstream's
    /// `auth_time`, `iat` and `exp`).
    #[serde(default)]
    pub started: i64,
}

/// Tolerated difference between the gateway's and an upstream's clock, for `auth_time`.
const AUTH_TIME_SKEW: i64 = 60;

/// Checks that the upstream's `auth_time` honours the freshness the gateway asked for
/// (OIDC Core §3.1.2.1, §3.1.3.7 item 13): after the attempt started for `prompt=login`,
/// within `max_age` of `now` for `max_age`. Without a requirement anything goes; with one, a
/// missing `auth_time` proves nothing and is refused. `Err` carries the reason for the log.
pub(crate) fn check_auth_time(attempt: &OidcAttempt, auth_time: Option<i64>, now: i64) -> Result<(), String> {
    if !attempt.force_login && attempt.max_age.is_none() {
        return Ok(());
    }
    let Some(auth_time) = auth_time else {
        return Err("no auth_time although a fresh login was requested".into());
    };
    if attempt.force_login && auth_time < attempt.started - AUTH_TIME_SKEW {
        return Err(format!(
            "prompt=login, but auth_time {auth_time} is {} s before the attempt started",
            attempt.started - auth_time
        ));
    }
    if let Some(max_age) = attempt.max_age
        && now.saturating_sub(auth_time) > max_age.saturating_add(AUTH_TIME_SKEW)
    {
        return Err(format!("max_age={max_age}, but the login is {} s old", now - auth_time));
    }
    Ok(())
}

/// Seconds since the Unix epoch by the wall clock (the upstream's time base; the gateway's
/// injectable [`crate::clock::Clock`] may be moved by tests, the upstream's clock is not).
fn wall_clock() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Signature algorithms accepted from upstreams: asymmetric only.
const ACCEPTED_ALGS: [CoreJwsSigningAlgorithm; 7] = [
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha384,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha512,
    CoreJwsSigningAlgorithm::RsaSsaPssSha256,
    CoreJwsSigningAlgorithm::EcdsaP256Sha256,
    CoreJwsSigningAlgorithm::EcdsaP384Sha384,
    CoreJwsSigningAlgorithm::EdDsa,
];

pub struct OidcConnector {
    settings: UpstreamSettings,
    oidc: OidcSettings,
    http: UpstreamHttp,
    redirect_uri: String,
    discovered: RwLock<Option<Discovered>>,
}

/// How long stale metadata may still be used when the upstream cannot be reached.
const STALE_GRACE: Duration = Duration::from_secs(24 * 3600);

impl OidcConnector {
    pub fn new(settings: UpstreamSettings, oidc: OidcSettings, setup: &ConnectorSetup<'_>) -> Self {
        let redirect_uri = super::urls::callback(setup.issuer, &settings.id);
        let http = UpstreamHttp::new(setup.http.clone(), settings.timeout);
        OidcConnector { settings, oidc, http, redirect_uri, discovered: RwLock::new(None) }
    }

    fn id(&self) -> &str {
        &self.settings.id
    }

    /// The client built from discovery, refreshed when older than `discovery_ttl`.
    async fn client(
        &self,
        force_refresh: bool,
    ) -> Result<tokio::sync::RwLockReadGuard<'_, UpstreamClient>, BrokerError> {
        let guard = self.metadata(force_refresh).await?;
        Ok(tokio::sync::RwLockReadGuard::map(guard, |d| &d.client))
    }

    /// Discovered metadata, refreshed when older than `discovery_ttl`.
    async fn metadata(
        &self,
        force_refresh: bool,
    ) -> Result<tokio::sync::RwLockReadGuard<'_, Discovered>, BrokerError> {
        {
            let guard = self.discovered.read().await;
            let fresh = guard.as_ref().is_some_and(|d| d.fetched.elapsed() < self.oidc.discovery_ttl);
            if fresh && !force_refresh {
                return tokio::sync::RwLockReadGuard::try_map(guard, |d| d.as_ref()).map_err(|_| {
                    BrokerError::Discovery { upstream: self.id().into(), detail: "no metadata".into() }
                });
            }
        }
        let mut guard = self.discovered.write().await;
        // Another request may have refreshed while we waited for the lock.
        let fresh_now = guard.as_ref().is_some_and(|d| d.fetched.elapsed() < Duration::from_secs(5));
        if !fresh_now {
            match self.discover().await {
                Ok(discovered) => *guard = Some(discovered),
                Err(e) => {
                    let usable = guard.as_ref().is_some_and(|d| d.fetched.elapsed() < STALE_GRACE);
                    if !usable {
                        return Err(e);
                    }
                    tracing::warn!(upstream = self.id(), error = %e, "using cached upstream metadata");
                }
            }
        }
        let guard = guard.downgrade();
        tokio::sync::RwLockReadGuard::try_map(guard, |d| d.as_ref())
            .map_err(|_| BrokerError::Discovery { upstream: self.id().into(), detail: "no metadata".into() })
    }

    async fn discover(&self) -> Result<Discovered, BrokerError> {
        let err = |detail: String| BrokerError::Discovery { upstream: self.id().into(), detail };
        let issuer = IssuerUrl::new(self.oidc.issuer.clone()).map_err(|e| err(e.to_string()))?;
        let http = self.http.as_client();
        let metadata =
            UpstreamMetadata::discover_async(issuer, &http).await.map_err(|e| err(error_chain(&e)))?;
        let end_session =
            metadata.additional_metadata().end_session_endpoint.as_ref().map(|u| u.url().to_string());
        let jwks = serde_json::to_value(metadata.jwks())
            .ok()
            .and_then(|v| serde_json::from_value::<jsonwebtoken::jwk::JwkSet>(v).ok())
            .unwrap_or(jsonwebtoken::jwk::JwkSet { keys: Vec::new() });
        let redirect = RedirectUrl::new(self.redirect_uri.clone()).map_err(|e| err(e.to_string()))?;
        let secret = self
            .oidc
            .client_secret
            .as_ref()
            .and_then(|s| s.value())
            .map(|s| ClientSecret::new(s.to_string()));
        let client = UpstreamClient::from_provider_metadata(
            metadata,
            ClientId::new(self.oidc.client_id.clone()),
            secret,
        )
        .set_redirect_uri(redirect);
        Ok(Discovered { client, end_session, jwks, fetched: Instant::now() })
    }

    /// Where to send the browser to end the upstream session (RP-Initiated Logout), if the
    /// upstream supports it. It returns to `post_logout_redirect` with `state`.
    async fn end_session_url(&self, post_logout_redirect: &str, state: &str) -> Option<String> {
        let d = self.metadata(false).await.ok()?;
        let mut url = url::Url::parse(d.end_session.as_ref()?).ok()?;
        url.query_pairs_mut()
            .append_pair("client_id", &self.oidc.client_id)
            .append_pair("post_logout_redirect_uri", post_logout_redirect)
            .append_pair("state", state);
        Some(url.to_string())
    }

    /// Validates a Back-Channel Logout token from this upstream (OIDC Back-Channel Logout
    /// 1.0 §2.6): signature against the upstream's keys, `iss`, `aud`, `iat`, `exp`, the
    /// logout event, no `nonce`, and `sid` and/or `sub`. Replay is checked by the caller.
    async fn verify_logout_token(&self, token: &str, now: i64) -> Result<UpstreamLogout, BrokerError> {
        let bad = |detail: &str| BrokerError::InvalidLogoutToken {
            upstream: self.id().into(),
            detail: detail.into(),
        };
        let header = jsonwebtoken::decode_header(token).map_err(|_| bad("not a JWT"))?;
        if header.typ.as_deref().is_some_and(|t| {
            !t.eq_ignore_ascii_case("logout+jwt") && !t.eq_ignore_ascii_case("application/logout+jwt")
        }) {
            return Err(bad("typ is not logout+jwt"));
        }
        let verify =
            |keys: &jsonwebtoken::jwk::JwkSet| -> Option<Result<LogoutClaims, jsonwebtoken::errors::Error>> {
                let jwk = keys.keys.iter().find(|k| header.kid.is_none() || k.common.key_id == header.kid)?;
                let key = jsonwebtoken::DecodingKey::from_jwk(jwk).ok()?;
                let mut validation = jsonwebtoken::Validation::new(header.alg);
                validation.set_issuer(&[self.oidc.issuer.trim_end_matches('/'), &self.oidc.issuer]);
                validation.set_audience(&[&self.oidc.client_id]);
                validation.set_required_spec_claims(&["iss", "aud", "exp", "iat"]);
                validation.leeway = 30;
                Some(jsonwebtoken::decode::<LogoutClaims>(token, &key, &validation).map(|d| d.claims))
            };
        if matches!(
            header.alg,
            jsonwebtoken::Algorithm::HS256 | jsonwebtoken::Algorithm::HS384 | jsonwebtoken::Algorithm::HS512
        ) {
            return Err(bad("symmetric algorithms are not accepted"));
        }
        let first = {
            let d = self.metadata(false).await?;
            verify(&d.jwks)
        };
        let claims = match first {
            Some(Ok(c)) => c,
            // Unknown kid or bad signature: the upstream may have rotated keys; refetch once.
            _ => {
                let d = self.metadata(true).await?;
                match verify(&d.jwks) {
                    Some(Ok(c)) => c,
                    Some(Err(e)) => return Err(bad(&e.to_string())),
                    None => return Err(bad("no matching key")),
                }
            }
        };
        if claims.nonce.is_some() {
            return Err(bad("a logout token must not carry a nonce"));
        }
        if !claims.events.as_ref().and_then(|e| e.get(BACKCHANNEL_EVENT)).is_some_and(|v| v.is_object()) {
            return Err(bad("missing the back-channel logout event"));
        }
        if claims.sid.is_none() && claims.sub.is_none() {
            return Err(bad("neither sid nor sub"));
        }
        if claims.iat > now + 60 || claims.iat < now - 600 {
            return Err(bad("iat is out of range"));
        }
        let jti = claims.jti.ok_or_else(|| bad("missing jti"))?;
        Ok(UpstreamLogout { sid: claims.sid, sub: claims.sub, jti: Some(jti), exp: claims.exp })
    }

    /// The upstream authorization URL for a new attempt (`state` = the attempt id).
    async fn begin(&self, ctx: StartContext<'_>) -> Result<Started, BrokerError> {
        let client = self.client(false).await?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let state = ctx.attempt.to_string();
        let mut request = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                move || CsrfToken::new(state),
                Nonce::new_random,
            )
            .set_pkce_challenge(challenge)
            .add_ui_locale(LanguageTag::new(ctx.lang.code().to_string()));
        for scope in self.oidc.scopes.iter().filter(|s| *s != "openid") {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        if ctx.force_login {
            request = request.add_prompt(CoreAuthPrompt::Login);
        }
        if let Some(max_age) = ctx.max_age {
            request = request.set_max_age(Duration::from_secs(max_age.max(0) as u64));
        }
        if let Some(hint) = ctx.login_hint {
            request = request.add_extra_param("login_hint", hint.to_string());
        }
        let (url, _state, nonce) = request.url();
        let attempt = OidcAttempt {
            nonce: nonce.secret().clone(),
            pkce_verifier: verifier.secret().clone(),
            force_login: ctx.force_login,
            max_age: ctx.max_age,
            started: wall_clock(),
        };
        Ok(Started::Redirect { url: url.to_string(), data: AttemptData::of(ATTEMPT_KEY, &attempt) })
    }

    /// Checks the callback (error, RFC 9207 `iss`, code) and redeems the code.
    async fn complete(&self, data: &AttemptData, answer: Answer<'_>) -> Result<VerifiedLogin, BrokerError> {
        let Answer::Redirect(params) = answer else { return Err(BrokerError::MalformedCallback) };
        let attempt: OidcAttempt = data.read(ATTEMPT_KEY)?;
        let query: OidcCallback = params.read()?;
        let code = read_callback(self.id(), &self.oidc.issuer, &query)?;
        self.redeem(code, &attempt).await
    }

    /// Redeems the upstream code and fully validates the ID token.
    async fn redeem(&self, code: &str, attempt: &OidcAttempt) -> Result<VerifiedLogin, BrokerError> {
        let token_err = |detail: String| BrokerError::TokenExchange { upstream: self.id().into(), detail };
        let http = self.http.as_client();
        let response = {
            let client = self.client(false).await?;
            client
                .exchange_code(AuthorizationCode::new(code.to_string()))
                .map_err(|e| token_err(e.to_string()))?
                .set_pkce_verifier(PkceCodeVerifier::new(attempt.pkce_verifier.clone()))
                .request_async(&http)
                .await
                .map_err(|e| token_err(error_chain(&e)))?
        };
        let id_token =
            response.id_token().ok_or_else(|| token_err("no id_token in the token response".into()))?;
        let nonce = Nonce::new(attempt.nonce.clone());
        let verify = |client: &UpstreamClient| {
            let verifier = client.id_token_verifier().set_allowed_algs(ACCEPTED_ALGS);
            id_token.claims(&verifier, &nonce).cloned()
        };
        let first = {
            let client = self.client(false).await?;
            verify(&client)
        };
        let claims = match first {
            Ok(c) => c,
            // The upstream may have rotated its keys: refetch metadata and JWKS once.
            Err(openidconnect::ClaimsVerificationError::SignatureVerification(_)) => {
                let client = self.client(true).await?;
                verify(&client).map_err(|e| BrokerError::InvalidIdToken {
                    upstream: self.id().into(),
                    detail: e.to_string(),
                })?
            }
            Err(e) => {
                return Err(BrokerError::InvalidIdToken {
                    upstream: self.id().into(),
                    detail: e.to_string(),
                });
            }
        };
        let auth_time = claims.auth_time().map(|t| t.timestamp());
        if let Err(detail) = check_auth_time(attempt, auth_time, wall_clock()) {
            audit("upstream_login_not_fresh", self.id(), &detail);
            return Err(BrokerError::StaleUpstreamLogin { upstream: self.id().into(), detail });
        }
        let mut all = match serde_json::to_value(&claims) {
            Ok(Value::Object(m)) => m,
            _ => Map::new(),
        };
        all.extend(claims.additional_claims().rest.clone());
        if self.oidc.use_userinfo {
            let client = self.client(false).await?;
            let request = client
                .user_info(
                    AccessToken::new(response.access_token().secret().clone()),
                    Some(claims.subject().clone()),
                )
                .map_err(|e| token_err(format!("userinfo: {e}")))?;
            let info: openidconnect::UserInfoClaims<AllClaims, CoreGenderClaim> = request
                .request_async(&http)
                .await
                .map_err(|e| token_err(format!("userinfo: {}", error_chain(&e))))?;
            if let Ok(Value::Object(m)) = serde_json::to_value(&info) {
                for (k, v) in m {
                    all.entry(k).or_insert(v);
                }
            }
        }
        Ok(VerifiedLogin {
            subject: claims.subject().as_str().to_string(),
            amr: claims
                .auth_method_refs()
                .map(|v| v.iter().map(|a| a.as_str().to_string()).collect())
                .unwrap_or_default(),
            session_id: all.get("sid").and_then(|v| v.as_str()).map(str::to_string),
            claims: all,
        })
    }
}

impl Connector for OidcConnector {
    fn settings(&self) -> &UpstreamSettings {
        &self.settings
    }

    fn start<'a>(&'a self, ctx: StartContext<'a>) -> BoxFuture<'a, Result<Started, BrokerError>> {
        Box::pin(self.begin(ctx))
    }

    /// The attempt id comes back as `state`.
    fn callback_attempt<'p>(&self, params: &'p CallbackParams) -> Option<&'p str> {
        params.get("state")
    }

    fn finish<'a>(
        &'a self,
        data: &'a AttemptData,
        answer: Answer<'a>,
    ) -> BoxFuture<'a, Result<VerifiedLogin, BrokerError>> {
        Box::pin(self.complete(data, answer))
    }

    fn logout_url<'a>(
        &'a self,
        post_logout_redirect: &'a str,
        state: &'a str,
    ) -> BoxFuture<'a, Option<String>> {
        Box::pin(self.end_session_url(post_logout_redirect, state))
    }

    /// Back-Channel Logout tokens, at `/upstream/{id}/backchannel-logout`.
    fn receive<'a>(&'a self, posted: Posted<'a>) -> BoxFuture<'a, Result<Received, BrokerError>> {
        Box::pin(async move {
            if posted.at != Endpoint::BackchannelLogout {
                return Err(BrokerError::NotAccepted { upstream: self.id().into(), at: posted.at });
            }
            let token = read_backchannel(self.id(), posted.body)?;
            self.verify_logout_token(&token, posted.now).await.map(Received::Logout)
        })
    }
}

/// An error with its causes, for logs (never shown to users).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(force_login: bool, max_age: Option<i64>, started: i64) -> OidcAttempt {
        OidcAttempt { nonce: "n".into(), pkce_verifier: "v".into(), force_login, max_age, started }
    }

    #[test]
    fn without_a_freshness_requirement_any_auth_time_is_accepted() {
        let a = attempt(false, None, 10_000);
        assert!(check_auth_time(&a, None, 10_000).is_ok());
        assert!(check_auth_time(&a, Some(1), 10_000).is_ok());
    }

    #[test]
    fn prompt_login_needs_an_auth_time_after_the_attempt_started() {
        let a = attempt(true, None, 10_000);
        assert!(check_auth_time(&a, Some(10_030), 10_040).is_ok());
        assert!(check_auth_time(&a, Some(10_000 - AUTH_TIME_SKEW), 10_040).is_ok(), "clock skew");
        assert!(check_auth_time(&a, Some(10_000 - AUTH_TIME_SKEW - 1), 10_040).is_err());
        assert!(check_auth_time(&a, Some(10_000 - 7200), 10_040).is_err(), "an old session");
        assert!(check_auth_time(&a, None, 10_040).is_err(), "no auth_time proves nothing");
    }

    #[test]
    fn max_age_bounds_the_age_of_the_upstream_login() {
        let a = attempt(false, Some(300), 10_000);
        assert!(check_auth_time(&a, Some(9_800), 10_040).is_ok(), "a recent single sign-on is fine");
        assert!(check_auth_time(&a, Some(10_040 - 300 - AUTH_TIME_SKEW), 10_040).is_ok());
        assert!(check_auth_time(&a, Some(10_040 - 300 - AUTH_TIME_SKEW - 1), 10_040).is_err());
        assert!(check_auth_time(&a, None, 10_040).is_err());
        let zero = attempt(false, Some(0), 10_000);
        assert!(check_auth_time(&zero, Some(10_000 - 3600), 10_040).is_err());
    }

    fn callback(pairs: &[(&str, &str)]) -> OidcCallback {
        pairs.iter().copied().collect::<CallbackParams>().read().unwrap()
    }

    const ISSUER: &str = "https://idp.example/realms/hcm";

    #[test]
    fn a_callback_with_a_code_from_the_right_issuer_is_redeemed() {
        let q = callback(&[("code", "c1"), ("state", "a1"), ("iss", "https://idp.example/realms/hcm/")]);
        assert_eq!(read_callback("hcm", ISSUER, &q).unwrap(), "c1");
        let q = callback(&[("code", "c1"), ("unknown", "ignored")]);
        assert_eq!(read_callback("hcm", ISSUER, &q).unwrap(), "c1", "iss is optional (RFC 9207 §2.4)");
    }

    #[test]
    fn the_upstreams_error_is_passed_on_bounded() {
        let long = "d".repeat(1000);
        let q = callback(&[("error", "access_denied"), ("error_description", &long), ("code", "c")]);
        match read_callback("hcm", ISSUER, &q) {
            Err(BrokerError::UpstreamDenied { error, description, .. }) => {
                assert_eq!(error, "access_denied");
                assert_eq!(description.len(), 256);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_answer_from_another_issuer_is_a_mix_up_and_the_requests_fault() {
        let q = callback(&[("code", "c"), ("iss", "https://evil.example")]);
        let e = read_callback("hcm", ISSUER, &q).unwrap_err();
        assert!(matches!(e, BrokerError::IssuerMismatch { .. }), "{e:?}");
        assert_eq!(e.status(), axum::http::StatusCode::BAD_REQUEST);
    }

    #[test]
    fn no_usable_code_is_a_malformed_callback() {
        let huge = "c".repeat(4097);
        for q in [callback(&[]), callback(&[("code", "")]), callback(&[("code", &huge)])] {
            assert!(matches!(read_callback("hcm", ISSUER, &q), Err(BrokerError::MalformedCallback)));
        }
    }

    #[test]
    fn a_backchannel_post_must_carry_one_bounded_logout_token() {
        assert_eq!(read_backchannel("hcm", b"logout_token=a.b.c").unwrap(), "a.b.c");
        let huge = format!("logout_token={}", "t".repeat(16 * 1024 + 1));
        for body in [
            &b""[..],
            b"logout_token=",
            b"logout_token=a&logout_token=b",
            b"logout_token=%00",
            huge.as_bytes(),
        ] {
            let e = read_backchannel("hcm", body).unwrap_err();
            assert!(matches!(e, BrokerError::MalformedMessage { .. }), "{e:?}");
        }
    }

    #[test]
    fn attempts_stored_before_the_fields_existed_still_read() {
        let old: OidcAttempt = serde_json::from_str(r#"{"nonce":"n","pkce_verifier":"v"}"#).unwrap();
        assert!(!old.force_login && old.max_age.is_none());
    }
}
