//! The CAS connector (Apereo CAS protocol 3.0, falling back to 2.0), for the former
//! Ba Ria-Vung Tau system.
//!
//! CAS has no `state` parameter, so the attempt id travels inside the service URL:
//! `{issuer}/upstream/{id}/callback?attempt=…`. The exact service URL is stored with the
//! attempt and the ticket is validated with exactly that URL, so a ticket issued for another
//! attempt (another browser, another service) is refused by the CAS server. Tickets are also
//! single-use on the gateway's side. Validation responses are parsed by [`super::cas_xml`].
//!
//! Single logout: the CAS server POSTs a SAML `LogoutRequest` whose session index is the
//! service ticket; sessions created from a CAS login carry that ticket as their upstream
//! session handle. Such requests are unsigned, so they are taken only from the CAS server's
//! networks and at a bounded rate ([`super::cas_logout`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use url::Url;

use super::cas_logout::LogoutGuard;
use super::cas_xml::{self, ServiceResponse};
use super::connector::{Answer, AttemptData, Connector, LogoutMessage, StartContext, Started, VerifiedLogin};
use super::error::BrokerError;
use super::http_client::{HttpError, UpstreamHttp};
use super::{UpstreamLogout, audit};
use crate::config::{CasSettings, UpstreamSettings};
use crate::state::{StateStore, hashed_key};

/// What the connector keeps between the redirect and the callback.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CasAttempt {
    /// The exact `service` URL sent to the CAS server.
    pub service: String,
    /// `renew=true` was sent: the ticket must come from a fresh login.
    pub renew: bool,
}

pub struct CasConnector {
    settings: UpstreamSettings,
    cas: CasSettings,
    http: UpstreamHttp,
    store: StateStore,
    /// How long a redeemed ticket is remembered: as long as the login attempt it answers could
    /// have waited (a ticket for an attempt that no longer exists is refused anyway).
    ticket_memory: Duration,
    /// `{issuer}/upstream/{id}/callback`
    callback: String,
    /// The server answered 404 at `/p3/serviceValidate`: it speaks CAS 2.0 only.
    cas2_only: AtomicBool,
    /// Who may send single-logout requests, and how often.
    logout_guard: LogoutGuard,
}

impl CasConnector {
    pub fn new(
        settings: UpstreamSettings,
        http: reqwest::Client,
        gateway_issuer: &str,
        store: StateStore,
        ticket_memory: Duration,
    ) -> Result<Self, BrokerError> {
        let cas = settings.cas.clone().ok_or_else(|| BrokerError::Discovery {
            upstream: settings.id.clone(),
            detail: "kind = \"cas\" without [upstreams.cas]".into(),
        })?;
        let callback = format!("{gateway_issuer}/upstream/{}/callback", settings.id);
        let http = UpstreamHttp::new(http, settings.timeout);
        let logout_guard = LogoutGuard::new(
            &settings.id,
            &cas.server,
            cas.logout_from.as_deref(),
            store.clone(),
            settings.timeout,
        )?;
        Ok(CasConnector {
            settings,
            cas,
            http,
            store,
            ticket_memory,
            callback,
            cas2_only: AtomicBool::new(false),
            logout_guard,
        })
    }

    fn id(&self) -> &str {
        &self.settings.id
    }

    /// `{server}/{path}` as a URL.
    fn endpoint(&self, path: &str) -> Result<Url, BrokerError> {
        let base = self.cas.server.trim_end_matches('/');
        Url::parse(&format!("{base}/{path}"))
            .map_err(|e| BrokerError::Discovery { upstream: self.id().into(), detail: e.to_string() })
    }

    fn rejected(&self, detail: String) -> BrokerError {
        audit("cas_response_rejected", self.id(), &detail);
        BrokerError::TicketValidation { upstream: self.id().into(), detail }
    }

    async fn begin(&self, ctx: StartContext<'_>) -> Result<Started, BrokerError> {
        let mut service = Url::parse(&self.callback)
            .map_err(|e| BrokerError::Discovery { upstream: self.id().into(), detail: e.to_string() })?;
        service.query_pairs_mut().append_pair("attempt", ctx.attempt);
        // CAS cannot bound the age of its own single sign-on session, so any max_age asks for
        // a fresh login there too.
        let renew = ctx.force_login || ctx.max_age.is_some();
        let mut login = self.endpoint("login")?;
        {
            let mut q = login.query_pairs_mut();
            q.append_pair("service", service.as_str());
            if renew {
                q.append_pair("renew", "true");
            }
            q.append_pair("locale", ctx.lang.code());
        }
        let attempt = CasAttempt { service: service.to_string(), renew };
        Ok(Started::Redirect {
            url: login.to_string(),
            data: AttemptData { cas: Some(attempt), ..AttemptData::default() },
        })
    }

    async fn complete(&self, data: &AttemptData, answer: Answer<'_>) -> Result<VerifiedLogin, BrokerError> {
        let Answer::Redirect(query) = answer else { return Err(BrokerError::MalformedCallback) };
        let attempt = data.cas.as_ref().ok_or(BrokerError::AttemptNotFound)?;
        // CAS 3.0 §2.2.4: service tickets begin with "ST-"; proxy tickets are not for us.
        let ticket = query
            .ticket
            .as_deref()
            .filter(|t| t.starts_with("ST-") && t.len() <= 256 && t.bytes().all(|b| b.is_ascii_graphic()))
            .ok_or(BrokerError::MalformedCallback)?;
        let response = self.validate(ticket, attempt).await?;
        let (user, mut attributes) = match response {
            ServiceResponse::Success { user, attributes } => (user, attributes),
            ServiceResponse::Failure { code, message } => {
                audit("cas_authentication_failure", self.id(), &format!("{code}: {message}"));
                return Err(BrokerError::TicketRejected { upstream: self.id().into(), code, message });
            }
        };
        // Single use on our side too, whatever the server does. Remembered only once the
        // server vouched for the ticket: made-up tickets store nothing.
        if !self
            .store
            .put_new(
                &hashed_key(&format!("cas-ticket:{}", self.id()), ticket),
                Vec::new(),
                self.ticket_memory,
            )
            .await?
        {
            audit("cas_ticket_replayed", self.id(), "a service ticket was presented twice");
            return Err(BrokerError::TicketRejected {
                upstream: self.id().into(),
                code: "TICKET_REUSED".into(),
                message: "ticket already used at the gateway".into(),
            });
        }
        if attempt.renew && attributes.get("isFromNewLogin").and_then(Value::as_str) == Some("false") {
            return Err(self.rejected("renew was requested but the ticket is not from a new login".into()));
        }
        let subject = match &self.cas.subject_attribute {
            None => user.clone(),
            Some(attr) => match attributes.get(attr) {
                Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_string(),
                _ => {
                    return Err(
                        self.rejected(format!("attribute {attr} (the subject) is missing or repeated"))
                    );
                }
            },
        };
        attributes.insert("user".into(), Value::String(user));
        Ok(VerifiedLogin {
            subject,
            claims: attributes,
            amr: vec!["pwd".into()],
            session_id: Some(ticket.to_string()),
        })
    }

    /// Validates at `/p3/serviceValidate`, or `/serviceValidate` for a CAS 2.0 server.
    async fn validate(&self, ticket: &str, attempt: &CasAttempt) -> Result<ServiceResponse, BrokerError> {
        let paths: &[&str] = if self.cas2_only.load(Ordering::Relaxed) {
            &["serviceValidate"]
        } else {
            &["p3/serviceValidate", "serviceValidate"]
        };
        for path in paths {
            let mut url = self.endpoint(path)?;
            {
                let mut q = url.query_pairs_mut();
                q.append_pair("service", &attempt.service).append_pair("ticket", ticket);
                if attempt.renew {
                    q.append_pair("renew", "true");
                }
            }
            let request = http::Request::get(url.as_str())
                .header(http::header::ACCEPT, "application/xml, text/xml")
                .body(Vec::new())
                .map_err(|e| self.rejected(e.to_string()))?;
            let response = self.http.send(request).await.map_err(|e| match e {
                HttpError::TooLarge => self.rejected(e.to_string()),
                other => {
                    BrokerError::TicketValidation { upstream: self.id().into(), detail: other.to_string() }
                }
            })?;
            if response.status() == http::StatusCode::NOT_FOUND && *path == "p3/serviceValidate" {
                tracing::info!(upstream = self.id(), "no CAS 3.0 endpoint; using /serviceValidate (CAS 2.0)");
                self.cas2_only.store(true, Ordering::Relaxed);
                continue;
            }
            if !response.status().is_success() {
                return Err(BrokerError::TicketValidation {
                    upstream: self.id().into(),
                    detail: format!("{path} answered HTTP {}", response.status()),
                });
            }
            return cas_xml::parse_service_response(response.body())
                .map_err(|e| self.rejected(format!("{path}: {e}")));
        }
        Err(BrokerError::TicketValidation {
            upstream: self.id().into(),
            detail: "no validation endpoint".into(),
        })
    }

    async fn single_logout(
        &self,
        document: &str,
        from: Option<std::net::IpAddr>,
        now: i64,
    ) -> Result<UpstreamLogout, BrokerError> {
        let bad = |detail: String| {
            audit("cas_logout_rejected", self.id(), &detail);
            BrokerError::InvalidLogoutToken { upstream: self.id().into(), detail }
        };
        if !self.cas.single_logout {
            return Err(bad("single logout is switched off for this upstream".into()));
        }
        self.logout_guard.admit(from).await?;
        let ticket = cas_xml::parse_logout_request(document.as_bytes()).map_err(|e| bad(e.to_string()))?;
        Ok(UpstreamLogout { sid: Some(ticket), sub: None, jti: None, exp: now + 60 })
    }
}

impl Connector for CasConnector {
    fn settings(&self) -> &UpstreamSettings {
        &self.settings
    }

    fn start<'a>(&'a self, ctx: StartContext<'a>) -> BoxFuture<'a, Result<Started, BrokerError>> {
        Box::pin(self.begin(ctx))
    }

    fn finish<'a>(
        &'a self,
        data: &'a AttemptData,
        answer: Answer<'a>,
    ) -> BoxFuture<'a, Result<VerifiedLogin, BrokerError>> {
        Box::pin(self.complete(data, answer))
    }

    /// CAS logout ends the CAS single sign-on session and returns to `service`; the state
    /// rides in that URL since CAS has no parameter for it.
    fn logout_url<'a>(
        &'a self,
        post_logout_redirect: &'a str,
        state: &'a str,
    ) -> BoxFuture<'a, Option<String>> {
        Box::pin(async move {
            let mut back = Url::parse(post_logout_redirect).ok()?;
            back.query_pairs_mut().append_pair("state", state);
            let mut url = self.endpoint("logout").ok()?;
            url.query_pairs_mut().append_pair("service", back.as_str());
            Some(url.to_string())
        })
    }

    fn verify_logout<'a>(
        &'a self,
        message: LogoutMessage<'a>,
        now: i64,
    ) -> BoxFuture<'a, Result<UpstreamLogout, BrokerError>> {
        Box::pin(async move {
            match message {
                LogoutMessage::CasLogoutRequest { document, from } => {
                    self.single_logout(document, from, now).await
                }
                LogoutMessage::BackchannelToken(_) => Err(BrokerError::InvalidLogoutToken {
                    upstream: self.id().into(),
                    detail: "a CAS upstream sends logout requests, not logout tokens".into(),
                }),
            }
        })
    }
}
