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

use super::audit;
use super::cas_logout::LogoutGuard;
use super::cas_xml::{self, ServiceResponse};
use super::connector::{
    Answer, AttemptData, CallbackParams, Connector, ConnectorSetup, Endpoint, Posted, Received, StartContext,
    Started, UpstreamLogout, VerifiedLogin,
};
use super::error::BrokerError;
use super::http_client::{HttpError, UpstreamHttp};
use crate::config::{CasSettings, UpstreamSettings};
use crate::state::{StateStore, hashed_key};
use crate::web::params::{self, Controls};

/// What the connector keeps between the redirect and the callback.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CasAttempt {
    /// The exact `service` URL sent to the CAS server.
    pub service: String,
    /// `renew=true` was sent: the ticket must come from a fresh login.
    pub renew: bool,
}

/// Key of this connector's data in a login attempt.
const ATTEMPT_KEY: &str = "cas";

/// The parameters of the CAS server's redirect back to the service URL (CAS 3.0 §2.2.4),
/// besides the attempt id the gateway put in it (`attempt`, see `callback_attempt`).
#[derive(Debug, Default, Deserialize)]
pub struct CasCallback {
    /// The service ticket.
    pub ticket: Option<String>,
}

/// The service ticket of a callback: `ST-…`, bounded, printable (proxy tickets are not for
/// us); anything else cannot be an answer of the CAS server.
pub(crate) fn service_ticket(q: &CasCallback) -> Result<&str, BrokerError> {
    q.ticket
        .as_deref()
        .filter(|t| t.starts_with("ST-") && t.len() <= 256 && t.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or(BrokerError::MalformedCallback)
}

/// The form a CAS server POSTs to the service URL for single logout.
#[derive(Debug, Deserialize)]
struct LogoutForm {
    #[serde(rename = "logoutRequest")]
    logout_request: Option<String>,
}

/// The SAML `LogoutRequest` document of a single-logout POST (bounded; line breaks allowed,
/// since it is XML), or why there is none.
pub(crate) fn logout_document(upstream: &str, body: &[u8]) -> Result<String, BrokerError> {
    let malformed = |detail: String| BrokerError::MalformedMessage { upstream: upstream.into(), detail };
    let form: LogoutForm =
        params::deserialize(body, Controls::LineBreaks).map_err(|e| malformed(e.to_string()))?;
    form.logout_request
        .filter(|d| !d.is_empty() && d.len() <= 16 * 1024)
        .ok_or_else(|| malformed("logoutRequest is required".into()))
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
    /// `setup.attempt_ttl` is also how long a used ticket is remembered.
    pub fn new(
        settings: UpstreamSettings,
        cas: CasSettings,
        setup: &ConnectorSetup<'_>,
    ) -> Result<Self, BrokerError> {
        let callback = super::urls::callback(setup.issuer, &settings.id);
        let http = UpstreamHttp::new(setup.http.clone(), settings.timeout);
        let (store, ticket_memory) = (setup.store.clone(), setup.attempt_ttl);
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
        Ok(Started::Redirect { url: login.to_string(), data: AttemptData::of(ATTEMPT_KEY, &attempt) })
    }

    async fn complete(&self, data: &AttemptData, answer: Answer<'_>) -> Result<VerifiedLogin, BrokerError> {
        let Answer::Redirect(params) = answer else { return Err(BrokerError::MalformedCallback) };
        let attempt: CasAttempt = data.read(ATTEMPT_KEY)?;
        let attempt = &attempt;
        let query: CasCallback = params.read()?;
        let ticket = service_ticket(&query)?;
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
            BrokerError::InvalidLogoutRequest { upstream: self.id().into(), detail }
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

    /// CAS has no `state`: the attempt id rides in the service URL as `attempt`.
    fn callback_attempt<'p>(&self, params: &'p CallbackParams) -> Option<&'p str> {
        params.get("attempt")
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

    /// Single logout: the CAS server POSTs a SAML `LogoutRequest` to the service URL, i.e.
    /// the callback. Only its networks may, at a bounded rate; a repeated request ends
    /// nothing more, so no replay record is kept.
    fn receive<'a>(&'a self, posted: Posted<'a>) -> BoxFuture<'a, Result<Received, BrokerError>> {
        Box::pin(async move {
            if posted.at != Endpoint::Callback {
                return Err(BrokerError::NotAccepted { upstream: self.id().into(), at: posted.at });
            }
            let document = logout_document(self.id(), posted.body)?;
            self.single_logout(&document, posted.from, posted.now).await.map(Received::Logout)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn callback(pairs: &[(&str, &str)]) -> CasCallback {
        pairs.iter().copied().collect::<CallbackParams>().read().unwrap()
    }

    #[test]
    fn only_a_bounded_printable_service_ticket_is_an_answer() {
        assert_eq!(
            service_ticket(&callback(&[("ticket", "ST-1-abc"), ("attempt", "a")])).unwrap(),
            "ST-1-abc"
        );
        let long = format!("ST-{}", "x".repeat(254));
        for ticket in ["", "PT-1-proxy", "ST-1 space", "ST-1\u{e9}", long.as_str()] {
            let q = callback(&[("ticket", ticket)]);
            assert!(matches!(service_ticket(&q), Err(BrokerError::MalformedCallback)), "{ticket:?}");
        }
        assert!(matches!(service_ticket(&callback(&[])), Err(BrokerError::MalformedCallback)));
    }

    #[test]
    fn the_attempt_id_rides_in_the_service_url() {
        let params: CallbackParams =
            [("attempt", "a1"), ("ticket", "ST-1"), ("state", "s")].into_iter().collect();
        let c = connector(true, "10.20.0.0/24");
        assert_eq!(c.callback_attempt(&params), Some("a1"), "not the OIDC state");
        assert_eq!(c.callback_attempt(&CallbackParams::default()), None);
    }

    #[test]
    fn a_single_logout_post_carries_one_bounded_document_with_line_breaks_allowed() {
        let doc = logout_document("brvt", b"logoutRequest=%3Cx%3E%0D%0A%09%3C%2Fx%3E").unwrap();
        assert_eq!(doc, "<x>\r\n\t</x>");
        let huge = format!("logoutRequest={}", "d".repeat(16 * 1024 + 1));
        for body in [
            &b""[..],
            b"x=1",
            b"logoutRequest=",
            b"logoutRequest=a&logoutRequest=b",
            b"logoutRequest=%00",
            huge.as_bytes(),
        ] {
            let e = logout_document("brvt", body).unwrap_err();
            assert!(matches!(e, BrokerError::MalformedMessage { .. }), "{e:?}");
            assert_eq!(e.status(), axum::http::StatusCode::BAD_REQUEST);
        }
    }

    fn connector(single_logout: bool, logout_from: &str) -> CasConnector {
        let text = format!(
            "issuer = \"http://127.0.0.1:1\"\n[[upstreams]]\nid = \"brvt\"\nkind = \"cas\"\nname_vi = \"x\"\nname_en = \"x\"\n[upstreams.cas]\nserver = \"https://cas.example/cas\"\nsingle_logout = {single_logout}\nlogout_from = [\"{logout_from}\"]\n"
        );
        let settings = crate::config::Settings::from_toml(&text).unwrap();
        let u = settings.upstreams[0].clone();
        let crate::config::Protocol::Cas(cas) = u.protocol.clone() else { panic!("not CAS") };
        let setup = ConnectorSetup {
            http: &reqwest::Client::new(),
            issuer: "http://127.0.0.1:1",
            store: &StateStore::memory(),
            attempt_ttl: Duration::from_secs(600),
        };
        CasConnector::new(u, cas, &setup).unwrap()
    }

    const LOGOUT: &[u8] = b"logoutRequest=%3Csamlp%3ALogoutRequest+xmlns%3Asamlp%3D%22urn%3Aoasis%3Anames%3Atc%3ASAML%3A2.0%3Aprotocol%22%3E%3Csamlp%3ASessionIndex%3EST-42%3C%2Fsamlp%3ASessionIndex%3E%3C%2Fsamlp%3ALogoutRequest%3E";

    fn posted(at: Endpoint, from: &str) -> Posted<'static> {
        Posted { at, body: LOGOUT, from: from.parse().ok(), now: 1_000 }
    }

    #[tokio::test]
    async fn single_logout_at_the_callback_names_the_service_ticket() {
        let c = connector(true, "10.20.0.0/24");
        match c.receive(posted(Endpoint::Callback, "10.20.0.5")).await {
            Ok(Received::Logout(l)) => {
                assert_eq!(l.sid.as_deref(), Some("ST-42"));
                assert!(l.sub.is_none() && l.jti.is_none(), "no replay record for CAS");
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn single_logout_is_refused_from_elsewhere_when_off_and_at_the_wrong_endpoint() {
        let c = connector(true, "10.20.0.0/24");
        let refused = c.receive(posted(Endpoint::Callback, "192.0.2.1")).await;
        assert!(matches!(refused, Err(BrokerError::LogoutSourceRefused { .. })), "{refused:?}");
        let elsewhere = c.receive(posted(Endpoint::BackchannelLogout, "10.20.0.5")).await;
        assert!(matches!(elsewhere, Err(BrokerError::NotAccepted { .. })), "{elsewhere:?}");
        let off = connector(false, "10.20.0.0/24").receive(posted(Endpoint::Callback, "10.20.0.5")).await;
        assert!(matches!(off, Err(BrokerError::InvalidLogoutRequest { .. })), "{off:?}");
    }
}
