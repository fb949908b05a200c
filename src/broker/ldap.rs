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
        ldap: LdapSettings,
        outbound_ca: Option<&std::path::Path>,
        store: StateStore,
    ) -> Result<Self, BrokerError> {
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
        let verified = if usable_credentials(username, pw) {
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

    /// The whole directory exchange: the service account's bind, the user search, the user's
    /// bind and (only after it succeeded) the group search. `Ok(None)`: wrong name or password.
    async fn exchange(&self, username: &str, password: &str) -> Result<Option<VerifiedLogin>, BrokerError> {
        let mut ldap = self.connect().await?;
        self.service_bind(&mut ldap).await?;
        let entry = self.find_user(&mut ldap, username).await?;
        // No single match: bind to a DN that cannot exist, so this path does what a wrong
        // password does.
        let bind_dn = match &entry {
            Some(e) => e.dn.clone(),
            None => absent_dn(&self.ldap.user_base),
        };
        let bound = self.user_bind(&mut ldap, &bind_dn, password).await?;
        let Some(entry) = entry.filter(|_| bound) else {
            let _ = ldap.unbind().await;
            return Ok(None);
        };
        let mut claims = entry_claims(&entry, &self.attributes);
        let Some(subject) = subject_of(&claims, &self.ldap.subject_attribute) else {
            let _ = ldap.unbind().await;
            return Err(self.directory_error(format!(
                "entry has no single {} (the subject attribute)",
                self.ldap.subject_attribute
            )));
        };
        let groups = match &self.ldap.group_base {
            Some(base) => {
                self.service_bind(&mut ldap).await?;
                self.groups_of(&mut ldap, base, &entry.dn, username).await?
            }
            None => Vec::new(),
        };
        let _ = ldap.unbind().await;
        claims.insert("dn".into(), Value::String(entry.dn));
        claims.insert("groups".into(), Value::Array(groups.into_iter().map(Value::String).collect()));
        Ok(Some(VerifiedLogin { subject, claims, amr: vec!["pwd".into()], session_id: None }))
    }

    /// Opens a connection (TLS as configured) and drives it in the background.
    async fn connect(&self) -> Result<ldap3::Ldap, BrokerError> {
        let mut conn_settings =
            LdapConnSettings::new().set_conn_timeout(self.settings.timeout).set_starttls(self.ldap.starttls);
        if let Some(tls) = &self.tls {
            conn_settings = conn_settings.set_config(tls.clone());
        }
        let (conn, ldap) = LdapConnAsync::with_settings(conn_settings, &self.ldap.url)
            .await
            .map_err(|e| self.directory_error(e))?;
        ldap3::drive!(conn);
        Ok(ldap)
    }

    /// Binds as the service account (to search users, and groups after the user's bind).
    async fn service_bind(&self, ldap: &mut ldap3::Ldap) -> Result<(), BrokerError> {
        let password = self.ldap.bind_password.value().unwrap_or_default();
        ldap.with_timeout(self.settings.timeout)
            .simple_bind(&self.ldap.bind_dn, password)
            .await
            .and_then(|r| r.success())
            .map(drop)
            .map_err(|e| self.directory_error(format!("service account bind: {e}")))
    }

    /// The one entry the user filter finds for `username`; None when none or several match.
    async fn find_user(
        &self,
        ldap: &mut ldap3::Ldap,
        username: &str,
    ) -> Result<Option<SearchEntry>, BrokerError> {
        let filter = user_filter(&self.ldap.user_filter, username);
        let (entries, _) = ldap
            .with_timeout(self.settings.timeout)
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
        match <[_; 1]>::try_from(entries) {
            Ok([only]) => std::panic::catch_unwind(AssertUnwindSafe(|| SearchEntry::construct(only)))
                .map(Some)
                .map_err(|_| self.directory_error("malformed search entry")),
            Err(_) => Ok(None),
        }
    }

    /// Binds as `dn` with the user's password: whether the directory accepted it.
    async fn user_bind(&self, ldap: &mut ldap3::Ldap, dn: &str, password: &str) -> Result<bool, BrokerError> {
        let bind = ldap
            .with_timeout(self.settings.timeout)
            .simple_bind(dn, password)
            .await
            .map_err(|e| self.directory_error(format!("user bind: {e}")))?;
        if bind.rc != 0 && bind.rc != INVALID_CREDENTIALS {
            tracing::info!(upstream = self.id(), rc = bind.rc, "user bind refused");
        }
        Ok(bind.rc == 0)
    }

    /// The names of the groups the user `dn` belongs to (sorted, once each).
    async fn groups_of(
        &self,
        ldap: &mut ldap3::Ldap,
        base: &str,
        dn: &str,
        username: &str,
    ) -> Result<Vec<String>, BrokerError> {
        let filter = group_filter(&self.ldap.group_filter, dn, username);
        let attribute = self.ldap.group_attribute.as_str();
        let (found, _) = ldap
            .with_timeout(self.settings.timeout)
            .search(base, Scope::Subtree, &filter, [attribute])
            .await
            .and_then(|r| r.success())
            .map_err(|e| self.directory_error(format!("group search: {e}")))?;
        let mut groups = Vec::new();
        for g in found {
            let g = std::panic::catch_unwind(AssertUnwindSafe(|| SearchEntry::construct(g)))
                .map_err(|_| self.directory_error("malformed group entry"))?;
            groups.extend(
                g.attrs.into_iter().filter(|(k, _)| k.eq_ignore_ascii_case(attribute)).flat_map(|(_, v)| v),
            );
        }
        groups.sort();
        groups.dedup();
        Ok(groups)
    }
}

/// Whether a name and password may go to the directory at all: an empty password would be
/// an unauthenticated bind, which many directories accept.
fn usable_credentials(username: &str, password: &str) -> bool {
    !username.is_empty()
        && username.len() <= MAX_USERNAME
        && !username.chars().any(char::is_control)
        && !password.is_empty()
        && password.len() <= MAX_PASSWORD
}

/// The user search filter: `{username}` replaced by the name, escaped (RFC 4515).
fn user_filter(template: &str, username: &str) -> String {
    template.replace("{username}", &ldap_escape(username))
}

/// The group search filter: `{dn}` and `{username}` replaced, escaped (RFC 4515).
fn group_filter(template: &str, dn: &str, username: &str) -> String {
    template.replace("{dn}", &ldap_escape(dn)).replace("{username}", &ldap_escape(username))
}

/// A DN under `base` that cannot exist, bound to when no single user matched.
fn absent_dn(base: &str) -> String {
    format!("cn=sso-gateway-absent-{},{base}", random_handle())
}

/// The claims read from a user's entry: each wanted attribute (names compared without case)
/// as a string, or a list when it has several values; binary values in base64url.
fn entry_claims(entry: &SearchEntry, wanted: &[String]) -> Map<String, Value> {
    let mut claims = Map::new();
    for name in wanted {
        let text = entry.attrs.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone());
        let binary = entry.bin_attrs.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| {
            v.iter().map(|b| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)).collect::<Vec<_>>()
        });
        match text.or(binary) {
            Some(mut values) if values.len() == 1 => {
                claims.insert(name.clone(), Value::String(values.remove(0)));
            }
            Some(values) if !values.is_empty() => {
                claims.insert(name.clone(), Value::Array(values.into_iter().map(Value::String).collect()));
            }
            _ => {}
        }
    }
    claims
}

/// The login's subject: the subject attribute's single, non-empty value.
fn subject_of(claims: &Map<String, Value>, attribute: &str) -> Option<String> {
    match claims.get(attribute) {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

/// TLS for the directory: the public web PKI (as for outbound HTTPS) plus the PEM roots in
/// `outbound.ca_file` and `ldap.ca_file`.
pub(super) fn tls_config<'a>(
    upstream: &str,
    ca_files: impl IntoIterator<Item = Option<&'a std::path::Path>>,
) -> Result<Arc<rustls::ClientConfig>, BrokerError> {
    crate::install_crypto_provider();
    let err = |detail: String| BrokerError::Setup { upstream: upstream.into(), detail };
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

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn entry(attrs: &[(&str, &[&str])], bin_attrs: &[(&str, &[&[u8]])]) -> SearchEntry {
        SearchEntry {
            dn: "uid=an,ou=people,dc=hcm".into(),
            attrs: attrs
                .iter()
                .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
                .collect(),
            bin_attrs: bin_attrs
                .iter()
                .map(|(k, v)| (k.to_string(), v.iter().map(|b| b.to_vec()).collect()))
                .collect::<HashMap<_, _>>(),
        }
    }

    #[test]
    fn only_a_plausible_name_and_a_non_empty_password_reach_the_directory() {
        assert!(usable_credentials("an", "secret"));
        assert!(!usable_credentials("an", ""), "an empty password is an unauthenticated bind");
        assert!(!usable_credentials("", "secret"));
        assert!(!usable_credentials("a\nb", "secret"));
        assert!(!usable_credentials(&"a".repeat(MAX_USERNAME + 1), "secret"));
        assert!(!usable_credentials("an", &"p".repeat(MAX_PASSWORD + 1)));
    }

    #[test]
    fn filters_escape_what_the_person_typed() {
        assert_eq!(user_filter("(uid={username})", "an"), "(uid=an)");
        assert_eq!(user_filter("(uid={username})", "*)(uid=*"), "(uid=\\2a\\29\\28uid=\\2a)");
        assert_eq!(
            group_filter("(|(member={dn})(memberUid={username}))", "uid=a*,dc=x", "a*"),
            "(|(member=uid=a\\2a,dc=x)(memberUid=a\\2a))"
        );
    }

    #[test]
    fn an_absent_dn_is_new_each_time_and_under_the_base() {
        let (a, b) = (absent_dn("ou=people,dc=hcm"), absent_dn("ou=people,dc=hcm"));
        assert_ne!(a, b);
        assert!(a.starts_with("cn=sso-gateway-absent-") && a.ends_with(",ou=people,dc=hcm"));
    }

    #[test]
    fn claims_are_the_wanted_attributes_single_or_listed_binary_in_base64url() {
        let e = entry(
            &[("UID", &["an"]), ("mail", &["a@x", "b@x"]), ("empty", &[]), ("other", &["x"])],
            &[("photo", &[&[0xfb, 0xff]])],
        );
        let wanted: Vec<String> = ["uid", "mail", "empty", "photo", "absent"].map(String::from).to_vec();
        let claims = entry_claims(&e, &wanted);
        assert_eq!(
            Value::Object(claims),
            serde_json::json!({ "uid": "an", "mail": ["a@x", "b@x"], "photo": "-_8" })
        );
    }

    #[test]
    fn the_subject_is_a_single_non_empty_value() {
        let claims = entry_claims(
            &entry(&[("uid", &["an"]), ("mail", &["a@x", "b@x"]), ("cn", &[""])], &[]),
            &["uid".into(), "mail".into(), "cn".into()],
        );
        assert_eq!(subject_of(&claims, "uid").as_deref(), Some("an"));
        assert_eq!(subject_of(&claims, "mail"), None);
        assert_eq!(subject_of(&claims, "cn"), None);
        assert_eq!(subject_of(&claims, "absent"), None);
    }
}
