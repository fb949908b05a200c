//! The LDAP connector, for officials whose accounts live in a directory (OpenLDAP, Active
//! Directory). The gateway shows its own login form; the password goes to the directory in
//! a bind over TLS (LDAPS or StartTLS, rustls) and is never stored or logged.
//!
//! One login: bind as the service account, search the user with the configured filter (the
//! name escaped), bind as the user's DN with the given password, then — only after success —
//! bind as the service account again to read the user's groups. When no single entry
//! matches, a bind to a random non-existent DN stands in for the user bind, so an unknown
//! name costs the same round trips as a wrong password; every failure is also held until
//! `min_failure_time` has passed since the form arrived, and both answer with the same form
//! and words. Failures are throttled per account name and per client address
//! ([`super::throttle`]); each attempt is counted before the bind, so concurrent guesses
//! cannot outrun the lockout.

use std::net::IpAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

use base64::Engine;
use futures::future::BoxFuture;
use ldap3::{LdapConnAsync, LdapConnSettings, Scope, SearchEntry, ldap_escape};
use serde_json::{Map, Value};

use super::audit;
use super::connector::{Answer, AttemptData, Connector, StartContext, Started, VerifiedLogin};
use super::error::BrokerError;
use super::throttle::{Reservation, Throttle};
use crate::config::{LdapSettings, SecretString, UpstreamSettings};
use crate::state::{StateStore, random_handle};

/// LDAP result code for a failed bind (RFC 4511 §4.1.9).
const INVALID_CREDENTIALS: u32 = 49;
const MAX_USERNAME: usize = 256;
const MAX_PASSWORD: usize = 1024;

pub struct LdapConnector {
    settings: UpstreamSettings,
    ldap: LdapSettings,
    tls: Option<Arc<rustls::ClientConfig>>,
    throttle: Throttle,
    /// Attributes read from the user's entry.
    attributes: Vec<String>,
}

impl LdapConnector {
    pub fn new(
        settings: UpstreamSettings,
        outbound_ca: Option<&std::path::Path>,
        store: StateStore,
    ) -> Result<Self, BrokerError> {
        let ldap = settings.ldap.clone().ok_or_else(|| BrokerError::Directory {
            upstream: settings.id.clone(),
            detail: "kind = \"ldap\" without [upstreams.ldap]".into(),
        })?;
        let tls_needed = ldap.starttls || ldap.url.starts_with("ldaps:");
        let tls = if tls_needed {
            Some(tls_config(&settings.id, [outbound_ca, ldap.ca_file.as_deref()])?)
        } else {
            None
        };
        let mut attributes: Vec<String> = Vec::new();
        let mut want = |a: &str| {
            if !a.is_empty() && !a.contains('.') && !attributes.iter().any(|x| x.eq_ignore_ascii_case(a)) {
                attributes.push(a.to_string());
            }
        };
        want(&ldap.subject_attribute);
        for name in settings.claims.names() {
            want(name);
        }
        for a in &ldap.attributes {
            want(a);
        }
        let throttle = Throttle::new(
            store,
            &settings.id,
            ldap.max_failures,
            ldap.max_failures_per_ip,
            ldap.failure_window,
            ldap.lockout,
        );
        Ok(LdapConnector { settings, ldap, tls, throttle, attributes })
    }

    fn id(&self) -> &str {
        &self.settings.id
    }

    fn directory_error(&self, e: impl std::fmt::Display) -> BrokerError {
        BrokerError::Directory { upstream: self.id().into(), detail: e.to_string() }
    }

    async fn complete(&self, answer: Answer<'_>) -> Result<VerifiedLogin, BrokerError> {
        let Answer::Password { username, password, client_ip } = answer else {
            return Err(BrokerError::MalformedCallback);
        };
        let arrived = Instant::now();
        let result = self.check(username, password, client_ip).await;
        if matches!(result, Err(BrokerError::InvalidCredentials { .. } | BrokerError::LockedOut { .. })) {
            let floor = self.ldap.min_failure_time;
            let elapsed = arrived.elapsed();
            if elapsed < floor {
                tokio::time::sleep(floor - elapsed).await;
            }
        }
        result
    }

    async fn check(
        &self,
        username: &str,
        password: &SecretString,
        ip: Option<IpAddr>,
    ) -> Result<VerifiedLogin, BrokerError> {
        let invalid = || BrokerError::InvalidCredentials { upstream: self.id().into() };
        // The attempt is counted before the directory sees the password, so concurrent
        // guesses cannot outrun the lockout.
        let grant = match self.throttle.reserve(username, ip).await? {
            Reservation::Granted(grant) => grant,
            Reservation::Refused => {
                audit("login_refused_locked_out", self.id(), "a login attempt during a lockout");
                return Err(BrokerError::LockedOut { upstream: self.id().into() });
            }
        };
        let pw = password.expose();
        // An empty password would be an unauthenticated bind, which many directories accept.
        let usable = !username.is_empty()
            && username.len() <= MAX_USERNAME
            && !username.chars().any(char::is_control)
            && !pw.is_empty()
            && pw.len() <= MAX_PASSWORD;
        let verified = if usable {
            match self.authenticate(username, pw).await {
                Ok(v) => v,
                Err(e) => {
                    self.throttle.release(username, ip).await?;
                    return Err(e);
                }
            }
        } else {
            None
        };
        match verified {
            Some(login) => {
                self.throttle.succeeded(username, ip).await?;
                Ok(login)
            }
            None => {
                self.throttle.failed(username, grant, ip).await?;
                audit("ldap_login_failed", self.id(), "wrong user name or password");
                Err(invalid())
            }
        }
    }

    /// The whole directory exchange, bounded in time. `Ok(None)`: wrong name or password.
    async fn authenticate(
        &self,
        username: &str,
        password: &str,
    ) -> Result<Option<VerifiedLogin>, BrokerError> {
        let limit = self.settings.timeout * 4;
        tokio::time::timeout(limit, self.exchange(username, password))
            .await
            .map_err(|_| self.directory_error(format!("no answer within {limit:?}")))?
    }

    async fn exchange(&self, username: &str, password: &str) -> Result<Option<VerifiedLogin>, BrokerError> {
        let t = self.settings.timeout;
        let mut conn_settings = LdapConnSettings::new().set_conn_timeout(t).set_starttls(self.ldap.starttls);
        if let Some(tls) = &self.tls {
            conn_settings = conn_settings.set_config(tls.clone());
        }
        let (conn, mut ldap) = LdapConnAsync::with_settings(conn_settings, &self.ldap.url)
            .await
            .map_err(|e| self.directory_error(e))?;
        ldap3::drive!(conn);
        let service_pw = self.ldap.bind_password.value().unwrap_or_default();
        let service_bind = |ldap: &mut ldap3::Ldap| {
            let dn = self.ldap.bind_dn.clone();
            let pw = service_pw.to_string();
            let mut ldap = ldap.clone();
            async move { ldap.with_timeout(t).simple_bind(&dn, &pw).await?.success() }
        };
        service_bind(&mut ldap)
            .await
            .map_err(|e| self.directory_error(format!("service account bind: {e}")))?;
        let filter = self.ldap.user_filter.replace("{username}", &ldap_escape(username));
        let (entries, _) = ldap
            .with_timeout(t)
            .search(&self.ldap.user_base, Scope::Subtree, &filter, &self.attributes)
            .await
            .and_then(|r| r.success())
            .map_err(|e| self.directory_error(format!("user search: {e}")))?;
        if entries.len() > 1 {
            tracing::warn!(
                upstream = self.id(),
                matches = entries.len(),
                "user filter matches several entries"
            );
        }
        let entry = match <[_; 1]>::try_from(entries) {
            Ok([only]) => Some(
                std::panic::catch_unwind(AssertUnwindSafe(|| SearchEntry::construct(only)))
                    .map_err(|_| self.directory_error("malformed search entry"))?,
            ),
            Err(_) => None,
        };
        // No single match: bind to a DN that cannot exist, so this path does what a wrong
        // password does.
        let bind_dn = match &entry {
            Some(e) => e.dn.clone(),
            None => format!("cn=sso-gateway-absent-{},{}", random_handle(), self.ldap.user_base),
        };
        let bind = ldap
            .with_timeout(t)
            .simple_bind(&bind_dn, password)
            .await
            .map_err(|e| self.directory_error(format!("user bind: {e}")))?;
        let Some(entry) = entry.filter(|_| bind.rc == 0) else {
            if bind.rc != 0 && bind.rc != INVALID_CREDENTIALS {
                tracing::info!(upstream = self.id(), rc = bind.rc, "user bind refused");
            }
            let _ = ldap.unbind().await;
            return Ok(None);
        };
        let mut claims = Map::new();
        for wanted in &self.attributes {
            let text =
                entry.attrs.iter().find(|(k, _)| k.eq_ignore_ascii_case(wanted)).map(|(_, v)| v.clone());
            let binary =
                entry.bin_attrs.iter().find(|(k, _)| k.eq_ignore_ascii_case(wanted)).map(|(_, v)| {
                    v.iter()
                        .map(|b| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b))
                        .collect::<Vec<_>>()
                });
            match text.or(binary) {
                Some(mut values) if values.len() == 1 => {
                    claims.insert(wanted.clone(), Value::String(values.remove(0)));
                }
                Some(values) if !values.is_empty() => {
                    claims.insert(
                        wanted.clone(),
                        Value::Array(values.into_iter().map(Value::String).collect()),
                    );
                }
                _ => {}
            }
        }
        let subject = match claims.get(&self.ldap.subject_attribute) {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            _ => {
                let _ = ldap.unbind().await;
                return Err(self.directory_error(format!(
                    "entry has no single {} (the subject attribute)",
                    self.ldap.subject_attribute
                )));
            }
        };
        let mut groups = Vec::new();
        if let Some(base) = &self.ldap.group_base {
            service_bind(&mut ldap)
                .await
                .map_err(|e| self.directory_error(format!("service account bind: {e}")))?;
            let filter = self
                .ldap
                .group_filter
                .replace("{dn}", &ldap_escape(entry.dn.as_str()))
                .replace("{username}", &ldap_escape(username));
            let (found, _) = ldap
                .with_timeout(t)
                .search(base, Scope::Subtree, &filter, [self.ldap.group_attribute.as_str()])
                .await
                .and_then(|r| r.success())
                .map_err(|e| self.directory_error(format!("group search: {e}")))?;
            for g in found {
                let g = std::panic::catch_unwind(AssertUnwindSafe(|| SearchEntry::construct(g)))
                    .map_err(|_| self.directory_error("malformed group entry"))?;
                for (k, values) in g.attrs {
                    if k.eq_ignore_ascii_case(&self.ldap.group_attribute) {
                        groups.extend(values);
                    }
                }
            }
            groups.sort();
            groups.dedup();
        }
        let _ = ldap.unbind().await;
        claims.insert("dn".into(), Value::String(entry.dn));
        claims.insert("groups".into(), Value::Array(groups.into_iter().map(Value::String).collect()));
        Ok(Some(VerifiedLogin { subject, claims, amr: vec!["pwd".into()], session_id: None }))
    }
}

/// TLS for the directory: the public web PKI (as for outbound HTTPS) plus the PEM roots in
/// `outbound.ca_file` and `ldap.ca_file`.
pub(super) fn tls_config<'a>(
    upstream: &str,
    ca_files: impl IntoIterator<Item = Option<&'a std::path::Path>>,
) -> Result<Arc<rustls::ClientConfig>, BrokerError> {
    crate::install_crypto_provider();
    let err = |detail: String| BrokerError::Directory { upstream: upstream.into(), detail };
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for path in ca_files.into_iter().flatten() {
        let bytes = std::fs::read(path).map_err(|e| err(format!("{}: {e}", path.display())))?;
        let blocks = pem::parse_many(&bytes).map_err(|e| err(format!("{}: {e}", path.display())))?;
        for block in blocks.into_iter().filter(|b| b.tag() == "CERTIFICATE") {
            roots
                .add(rustls::pki_types::CertificateDer::from(block.into_contents()))
                .map_err(|e| err(format!("{}: {e}", path.display())))?;
        }
    }
    let config = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
    Ok(Arc::new(config))
}

impl Connector for LdapConnector {
    fn settings(&self) -> &UpstreamSettings {
        &self.settings
    }

    fn start<'a>(&'a self, _ctx: StartContext<'a>) -> BoxFuture<'a, Result<Started, BrokerError>> {
        // Every login here is a fresh password check, so prompt=login and max_age hold.
        Box::pin(async { Ok(Started::PasswordForm { data: AttemptData::default() }) })
    }

    fn finish<'a>(
        &'a self,
        _data: &'a AttemptData,
        answer: Answer<'a>,
    ) -> BoxFuture<'a, Result<VerifiedLogin, BrokerError>> {
        Box::pin(self.complete(answer))
    }
}
