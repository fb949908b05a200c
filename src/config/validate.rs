//! Parsing with every problem reported at once, and the semantic checks behind `check-config`.

use std::collections::{BTreeMap, HashSet};

use serde::de::DeserializeOwned;
use url::Url;

pub(super) use crate::ids::is_loopback;
use crate::ids::{ClientId, RedirectUri, UpstreamId};

use super::{ClientSettings, ConfigError, GrantType, Protocol, Settings, SubjectType, UpstreamSettings};

/// One thing wrong with a configuration: where, what, and what is expected instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub message: String,
    pub expected: Option<String>,
}

impl Problem {
    pub(super) fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Problem { path: path.into(), message: message.into(), expected: None }
    }
    pub(super) fn expecting(mut self, expected: impl Into<String>) -> Self {
        self.expected = Some(expected.into());
        self
    }
    pub(super) fn list(problems: &[Problem]) -> String {
        problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n")
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let path = if self.path.is_empty() { "(top level)" } else { &self.path };
        write!(f, "{path}: {}", self.message)?;
        if let Some(e) = &self.expected {
            write!(f, " (expected {e})")?;
        }
        Ok(())
    }
}

pub(super) fn parse_and_validate(
    text: &str,
    env: &BTreeMap<String, String>,
) -> Result<Settings, ConfigError> {
    // A variable's text is first read as what it looks like (a number, a boolean, a list…);
    // where the settings expected something else, it is read again as they say (text, then
    // a list at most).
    let mut readings = BTreeMap::new();
    for _ in 0..2 {
        let (result, again) = parse_once(text, env, &readings);
        if result.is_ok() || again.iter().all(|(var, r)| readings.get(var) == Some(r)) {
            return result;
        }
        readings.extend(again);
    }
    parse_once(text, env, &readings).0
}

/// One pass of [`parse_and_validate`]; also returns how to read variables again.
fn parse_once(
    text: &str,
    env: &BTreeMap<String, String>,
    readings: &BTreeMap<String, super::environment::Reading>,
) -> (Result<Settings, ConfigError>, BTreeMap<String, super::environment::Reading>) {
    let mut problems = Vec::new();
    let mut table: toml::Table = match toml::from_str(text) {
        Ok(t) => t,
        Err(e) => {
            let message = e.message().to_string();
            let at = e
                .span()
                .map(|s| {
                    let line = text[..s.start.min(text.len())].matches('\n').count() + 1;
                    format!("line {line}")
                })
                .unwrap_or_default();
            let problem = Problem::new(at, format!("not valid TOML: {message}")).expecting("a TOML document");
            return (Err(ConfigError::Invalid(vec![problem])), BTreeMap::new());
        }
    };
    let file = table.clone();
    let mentioned = |var: &str| text.contains(&format!("\"{var}\""));
    let applied = super::environment::overlay(&mut table, env, readings, mentioned, &mut problems);

    let upstream_values = take_array(&mut table, "upstreams", &mut problems);
    let client_values = take_array(&mut table, "clients", &mut problems);
    let base: Option<Settings> = deserialize_at("", toml::Value::Table(table), &mut problems);
    // Where each parsed upstream stands in the file (one that cannot be parsed is left out).
    let mut positions = Vec::new();
    let upstreams: Vec<UpstreamSettings> = upstream_values
        .into_iter()
        .enumerate()
        .filter_map(|(i, v)| {
            // A profile may set the linking trust, but never over an explicit setting.
            let explicit_trust = v.get("linking").and_then(|l| l.get("trust_national_id")).is_some();
            let mut u = super::connectors::parse_upstream(&format!("upstreams[{i}]"), v, &mut problems)?;
            super::profiles::apply(&mut u, explicit_trust);
            positions.push(i);
            Some(u)
        })
        .collect();
    let clients: Vec<ClientSettings> = client_values
        .into_iter()
        .enumerate()
        .filter_map(|(i, v)| deserialize_at(&format!("clients[{i}]"), v, &mut problems))
        .collect();

    let Some(mut settings) = base else {
        let again = super::environment::attribute(&mut problems, &applied);
        return (Err(ConfigError::Invalid(problems)), again);
    };
    settings.upstreams = upstreams;
    settings.clients = clients;
    settings.origins = super::environment::origins(&file, &applied);
    let parsed = problems.len();
    resolve_secrets(&mut settings, env, &mut problems);
    problems.extend(validate(&settings));
    renumber_upstreams(&mut problems[parsed..], &positions);
    let again = super::environment::attribute(&mut problems, &applied);
    if problems.is_empty() { (Ok(settings), again) } else { (Err(ConfigError::Invalid(problems)), again) }
}

/// Problems found after parsing name upstreams by their place among the parsed ones; this
/// gives them their place in the file again (`positions[k]` is the file's index of the k-th).
fn renumber_upstreams(problems: &mut [Problem], positions: &[usize]) {
    for p in problems {
        let Some((n, tail)) = p.path.strip_prefix("upstreams[").and_then(|rest| rest.split_once(']')) else {
            continue;
        };
        if let Some(at) = n.parse::<usize>().ok().and_then(|k| positions.get(k)) {
            p.path = format!("upstreams[{at}]{tail}");
        }
    }
}

fn take_array(table: &mut toml::Table, key: &str, problems: &mut Vec<Problem>) -> Vec<toml::Value> {
    match table.remove(key) {
        None => Vec::new(),
        Some(toml::Value::Array(items)) => items,
        Some(other) => {
            problems.push(
                Problem::new(key, format!("is a {}", other.type_str()))
                    .expecting(format!("an array of tables ([[{key}]])")),
            );
            Vec::new()
        }
    }
}

pub(super) fn deserialize_at<T: DeserializeOwned>(
    prefix: &str,
    value: toml::Value,
    problems: &mut Vec<Problem>,
) -> Option<T> {
    match serde_path_to_error::deserialize::<_, T>(value) {
        Ok(v) => Some(v),
        Err(e) => {
            let inner = e.path().to_string();
            let path = match (prefix.is_empty(), inner == ".") {
                (true, _) => inner,
                (false, true) => prefix.to_string(),
                (false, false) => format!("{prefix}.{inner}"),
            };
            problems.push(Problem::new(path, e.into_inner().to_string()));
            None
        }
    }
}

fn resolve_secrets(settings: &mut Settings, env: &BTreeMap<String, String>, problems: &mut Vec<Problem>) {
    if let Some(salt) = &settings.accounts.pairwise_salt {
        match salt.resolve(env) {
            Ok(v) => settings.accounts.pairwise_salt = Some(v),
            Err(m) => problems.push(Problem::new("accounts.pairwise_salt", m)),
        }
    }
    for (i, u) in settings.upstreams.iter_mut().enumerate() {
        match &mut u.protocol {
            Protocol::Oidc(oidc) => {
                if let Some(secret) = &oidc.client_secret {
                    match secret.resolve(env) {
                        Ok(v) => oidc.client_secret = Some(v),
                        Err(m) => problems.push(Problem::new(format!("upstreams[{i}].client_secret"), m)),
                    }
                }
            }
            Protocol::Ldap(ldap) => match ldap.bind_password.resolve(env) {
                Ok(v) => ldap.bind_password = v,
                Err(m) => problems.push(Problem::new(format!("upstreams[{i}].ldap.bind_password"), m)),
            },
            Protocol::Cas(_) | Protocol::Certificate(_) => {}
        }
    }
    for (i, c) in settings.clients.iter_mut().enumerate() {
        if let Some(secret) = &c.client_secret {
            match secret.resolve(env) {
                Ok(v) => c.client_secret = Some(v),
                Err(m) => problems.push(Problem::new(format!("clients[{i}].client_secret"), m)),
            }
        }
    }
}

/// An http(s) URL that is https unless it points at this machine.
pub(super) fn check_web_url(path: &str, raw: &str, problems: &mut Vec<Problem>) -> Option<Url> {
    let expected = "an absolute https URL (http only for localhost/127.0.0.1)";
    match Url::parse(raw) {
        Err(e) => {
            problems.push(Problem::new(path, format!("{raw:?} is not a URL: {e}")).expecting(expected));
            None
        }
        Ok(u) if u.scheme() == "https" || (u.scheme() == "http" && is_loopback(&u)) => Some(u),
        Ok(_) => {
            problems.push(Problem::new(path, format!("{raw:?} is not allowed")).expecting(expected));
            None
        }
    }
}

fn check_redirect_uri(path: &str, raw: &str, problems: &mut Vec<Problem>) {
    if let Err(found) = RedirectUri::parse(raw) {
        problems
            .extend(found.into_iter().map(|e| Problem::new(path, e.to_string()).expecting(e.expecting())));
    }
}

/// Semantic checks of a parsed configuration; returns every problem found.
/// The longest an access token may live (`lifetimes.access_token`, per-client overrides).
pub const MAX_ACCESS_TOKEN: std::time::Duration = std::time::Duration::from_secs(24 * 3600);
/// The longest a refresh-token family may live, offline or not (and so a revocation marker).
pub const MAX_REFRESH_FAMILY: std::time::Duration = std::time::Duration::from_secs(90 * 24 * 3600);

/// The longest a parked authorization request or upstream login attempt may wait.
pub const MAX_LOGIN_ATTEMPT: std::time::Duration = std::time::Duration::from_secs(30 * 60);

/// `[sessions.memory]`: room for a working gateway, and a share for anonymous records that
/// leaves most of it to people who logged in.
fn check_memory_store(m: &super::MemoryStoreSettings, p: &mut Vec<Problem>) {
    if m.max_entries < 1_000 {
        p.push(Problem::new("sessions.memory.max_entries", "is below 1000").expecting("at least 1000"));
    }
    if m.max_bytes < 1 << 20 {
        p.push(
            Problem::new("sessions.memory.max_bytes", "is below 1 MiB")
                .expecting("at least 1048576 (bytes), e.g. 268_435_456 for 256 MiB"),
        );
    }
    if !(1..=90).contains(&m.anonymous_percent) {
        p.push(
            Problem::new("sessions.memory.anonymous_percent", "out of range")
                .expecting("a percentage between 1 and 90"),
        );
    }
}

/// `[sessions] anonymous_per_address`, `anonymous_reserve_percent`,
/// `anonymous_reserve_per_address`: an address has room for a login, and the reserve for a few.
fn check_address_shares(s: &super::SessionSettings, p: &mut Vec<Problem>) {
    if s.anonymous_per_address < 8 * 1024 {
        p.push(
            Problem::new("sessions.anonymous_per_address", "is below 8 KiB")
                .expecting("at least 8192 (bytes), e.g. 1_048_576 for 1 MiB"),
        );
    }
    if s.anonymous_reserve_percent > 90 {
        p.push(
            Problem::new("sessions.anonymous_reserve_percent", "out of range")
                .expecting("a percentage between 0 and 90"),
        );
    }
    if !(4 * 1024..=s.anonymous_per_address.max(4 * 1024)).contains(&s.anonymous_reserve_per_address) {
        p.push(
            Problem::new("sessions.anonymous_reserve_per_address", "out of range")
                .expecting("at least 4096 (bytes) and at most sessions.anonymous_per_address"),
        );
    }
}

/// `[sessions.redis] anonymous_max_bytes`: room for at least a few dozen parked requests.
fn check_redis_budget(r: &super::RedisSettings, p: &mut Vec<Problem>) {
    if r.anonymous_max_bytes < 64 * 1024 {
        p.push(
            Problem::new("sessions.redis.anonymous_max_bytes", "is below 64 KiB")
                .expecting("at least 65536 (bytes), e.g. 58_720_256 for 56 MiB"),
        );
    }
}

fn check_at_most(
    path: &str,
    d: std::time::Duration,
    max: std::time::Duration,
    text: &str,
    p: &mut Vec<Problem>,
) {
    if d > max {
        p.push(Problem::new(path, format!("is longer than {text}")).expecting(format!("at most {text}")));
    }
}

/// `[certificate]`: the certificate host's URL, its own TLS listener, the proxy header.
fn check_certificate_listener(s: &Settings, p: &mut Vec<Problem>) {
    let c = &s.certificate;
    // https (http only towards this machine, for tests): browsers present certificates
    // only over TLS, which a proxy or the gateway's own listener terminates.
    if let Some(url) = &c.url
        && let Some(u) = check_web_url("certificate.url", url, p)
        && (u.query().is_some() || u.fragment().is_some() || u.path() != "/")
    {
        p.push(
            Problem::new("certificate.url", "has a path, query or fragment")
                .expecting("scheme, host and optional port only"),
        );
    }
    if c.listen.is_some() {
        match (&c.tls_cert, &c.tls_key) {
            (Some(cert), Some(key)) => {
                let hints = crate::tls::ClientCerts::AnyPresented { hint_subjects: Vec::new() };
                if let Err(e) = crate::tls::server_config(cert, key, hints) {
                    p.push(
                        Problem::new("certificate.tls_cert", e.to_string())
                            .expecting("a readable PEM certificate chain and its private key"),
                    );
                }
            }
            _ => p.push(
                Problem::new("certificate.listen", "is set without tls_cert and tls_key")
                    .expecting("the certificate host's PEM certificate chain and key"),
            ),
        }
    }
    if let Some(name) = &c.forwarded_header {
        if axum::http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            p.push(
                Problem::new("certificate.forwarded_header", format!("{name:?} is not a header name"))
                    .expecting("e.g. \"X-SSL-Client-Cert\""),
            );
        }
        if s.inbound.trusted_proxies.is_empty() {
            p.push(
                Problem::new(
                    "certificate.forwarded_header",
                    "is set but inbound.trusted_proxies is empty: the header would never be believed",
                )
                .expecting("the proxies' networks in inbound.trusted_proxies"),
            );
        }
    }
}

fn check_positive(path: &str, d: std::time::Duration, p: &mut Vec<Problem>) {
    if d.is_zero() {
        p.push(Problem::new(path, "is zero").expecting("a positive duration such as \"10m\""));
    }
}

pub fn validate(s: &Settings) -> Vec<Problem> {
    let mut p = Vec::new();
    check_server(s, &mut p);
    check_stores(s, &mut p);
    check_lifetimes(s, &mut p);
    check_limits(&s.limits, &mut p);
    check_par_and_dpop(s, &mut p);
    check_mtls(s, &mut p);
    check_upstreams(s, &mut p);
    super::connectors::check_assurance(s, &mut p);
    check_clients(s, &mut p);
    check_accounts(s, &mut p);
    check_admin(s, &mut p);
    p
}

/// The issuer URL, the TLS files and the outbound CA bundle.
fn check_server(s: &Settings, p: &mut Vec<Problem>) {
    if let Some(u) = check_web_url("issuer", &s.issuer, p)
        && (u.query().is_some() || u.fragment().is_some())
    {
        p.push(
            Problem::new("issuer", "has a query or fragment")
                .expecting("scheme, host and optional path only"),
        );
    }
    if let Some(tls) = &s.tls {
        for (key, path) in [("tls.cert", &tls.cert), ("tls.key", &tls.key)] {
            if !path.is_file() {
                p.push(
                    Problem::new(key, format!("{} does not exist", path.display())).expecting("a PEM file"),
                );
            }
        }
    }
    check_certificate_listener(s, p);
    if let Some(ca) = &s.outbound.ca_file {
        match std::fs::read(ca) {
            Err(e) => p.push(
                Problem::new("outbound.ca_file", format!("cannot read {}: {e}", ca.display()))
                    .expecting("a PEM bundle"),
            ),
            Ok(bytes)
                if reqwest::Certificate::from_pem_bundle(&bytes).map(|c| c.is_empty()).unwrap_or(true) =>
            {
                p.push(
                    Problem::new("outbound.ca_file", "contains no PEM certificate").expecting("a PEM bundle"),
                )
            }
            Ok(_) => {}
        }
    }
}

/// The account database URL and the session store (memory or Redis).
fn check_stores(s: &Settings, p: &mut Vec<Problem>) {
    let url = s.accounts.url.expose();
    if !(url.starts_with("sqlite:") || url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        p.push(
            Problem::new("accounts.url", "unsupported database URL")
                .expecting("sqlite://PATH?mode=rwc or postgres://…"),
        );
    }
    let store = s.sessions.store.expose();
    if store != "memory" && !store.starts_with("redis://") && !store.starts_with("rediss://") {
        p.push(
            Problem::new("sessions.store", "unsupported session store")
                .expecting("\"memory\", redis://host:6379 or rediss://host:6379"),
        );
    }
    if store == "memory" && s.sessions.redis.mode != super::RedisMode::Single {
        p.push(
            Problem::new("sessions.redis.mode", "set, but sessions.store is \"memory\"")
                .expecting("a Redis URL in sessions.store"),
        );
    }
    if s.sessions.redis.mode == super::RedisMode::Sentinel && s.sessions.redis.sentinel_master.is_none() {
        p.push(
            Problem::new("sessions.redis.sentinel_master", "is missing")
                .expecting("the name of the master Sentinel monitors"),
        );
    }
    for (i, node) in s.sessions.redis.nodes.iter().enumerate() {
        let n = node.expose();
        if !n.starts_with("redis://") && !n.starts_with("rediss://") {
            p.push(
                Problem::new(format!("sessions.redis.nodes[{i}]"), "not a Redis URL")
                    .expecting("redis://host:port"),
            );
        }
    }
    if s.sessions.redis.timeout.is_zero() || s.sessions.redis.timeout > std::time::Duration::from_secs(30) {
        p.push(Problem::new("sessions.redis.timeout", "out of range").expecting("between 1ms and 30s"));
    }
    if s.sessions.cookie_name.is_empty()
        || !s.sessions.cookie_name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        p.push(
            Problem::new("sessions.cookie_name", "not a valid cookie name")
                .expecting("letters, digits, _ and -"),
        );
    }
}

/// Session timeouts and token lifetimes: positive, and bounded where revocation must
/// outlast them.
fn check_lifetimes(s: &Settings, p: &mut Vec<Problem>) {
    let durations = [
        ("sessions.idle_timeout", s.sessions.idle_timeout),
        ("sessions.absolute_timeout", s.sessions.absolute_timeout),
        ("lifetimes.authorization_code", s.lifetimes.authorization_code),
        ("lifetimes.access_token", s.lifetimes.access_token),
        ("lifetimes.id_token", s.lifetimes.id_token),
        ("lifetimes.refresh_token", s.lifetimes.refresh_token),
        ("lifetimes.login_attempt", s.lifetimes.login_attempt),
        ("lifetimes.offline_refresh_token", s.lifetimes.offline_refresh_token),
    ];
    for (key, d) in durations {
        if d.is_zero() {
            p.push(Problem::new(key, "is zero").expecting("a positive duration such as \"10m\""));
        }
    }
    // Revocation must outlast every token of a revoked grant: bounded lifetimes keep what it
    // stores bounded too (see config/README.md).
    let bounded = [
        ("lifetimes.access_token", s.lifetimes.access_token, MAX_ACCESS_TOKEN, "\"1d\""),
        ("lifetimes.refresh_token", s.lifetimes.refresh_token, MAX_REFRESH_FAMILY, "\"90d\""),
        ("lifetimes.offline_refresh_token", s.lifetimes.offline_refresh_token, MAX_REFRESH_FAMILY, "\"90d\""),
    ];
    for (key, d, max, text) in bounded {
        check_at_most(key, d, max, text, p);
    }
    // Parked requests and login attempts are made for anonymous requests: short-lived.
    check_at_most("lifetimes.login_attempt", s.lifetimes.login_attempt, MAX_LOGIN_ATTEMPT, "\"30m\"", p);
    check_memory_store(&s.sessions.memory, p);
    check_redis_budget(&s.sessions.redis, p);
    check_address_shares(&s.sessions, p);
    if s.lifetimes.authorization_code > std::time::Duration::from_secs(600) {
        p.push(
            Problem::new("lifetimes.authorization_code", "is longer than 10 minutes")
                .expecting("at most \"10m\" (RFC 6749 §4.1.2)"),
        );
    }
}

/// Each upstream: its id, its protocol section (checked by `connectors`), timeout and names.
fn check_upstreams(s: &Settings, p: &mut Vec<Problem>) {
    let mut ids = HashSet::new();
    for (i, u) in s.upstreams.iter().enumerate() {
        let at = |k: &str| format!("upstreams[{i}].{k}");
        if let Err(e) = UpstreamId::parse(&u.id) {
            p.push(Problem::new(at("id"), e.to_string()).expecting(e.expecting()));
        }
        if !ids.insert(u.id.as_str()) {
            p.push(
                Problem::new(at("id"), format!("duplicate upstream id {:?}", u.id)).expecting("unique ids"),
            );
        }
        super::connectors::check_upstream(s, u, &at, p);
        if u.timeout.is_zero() || u.timeout > std::time::Duration::from_secs(60) {
            p.push(Problem::new(at("timeout"), "out of range").expecting("between 1ms and 60s"));
        }
        if u.name_vi.trim().is_empty() || u.name_en.trim().is_empty() {
            p.push(
                Problem::new(at("name_vi"), "display names must not be empty")
                    .expecting("name_vi and name_en"),
            );
        }
    }
}

/// Each client registration.
fn check_clients(s: &Settings, p: &mut Vec<Problem>) {
    let mut client_ids = HashSet::new();
    let mut pairwise_salt_reported = false;
    for (i, c) in s.clients.iter().enumerate() {
        let at = |k: &str| format!("clients[{i}].{k}");
        if let Err(e) = ClientId::parse(&c.client_id) {
            p.push(Problem::new(at("client_id"), e.to_string()).expecting(e.expecting()));
        }
        if !client_ids.insert(c.client_id.as_str()) {
            p.push(
                Problem::new(at("client_id"), format!("duplicate client id {:?}", c.client_id))
                    .expecting("unique ids"),
            );
        }
        check_client_flows(c, &at, p);
        check_client_uris(c, &at, p);
        check_client_auth(c, &at, p);
        if let Some(min) = &c.min_acr {
            super::connectors::check_acr(s, &at("min_acr"), min, p);
        }
        if c.subject_type == SubjectType::Pairwise {
            if c.sector().is_none_or(|s| s.trim().is_empty()) {
                p.push(
                    Problem::new(at("sector_identifier"), "a pairwise client needs a sector")
                        .expecting("sector_identifier, or redirect_uris that all share one host"),
                );
            }
            let salt_ok =
                s.accounts.pairwise_salt.as_ref().and_then(|v| v.value()).is_some_and(|v| v.len() >= 32);
            if !salt_ok && !pairwise_salt_reported {
                pairwise_salt_reported = true;
                p.push(
                    Problem::new(
                        "accounts.pairwise_salt",
                        "missing or shorter than 32 characters, but a client is pairwise",
                    )
                    .expecting("a random secret of 32+ characters, set once per deployment"),
                );
            }
        }
    }
}

/// A client's grant types, token lifetimes, PKCE, secret and scopes.
fn check_client_flows(c: &super::ClientSettings, at: &dyn Fn(&str) -> String, p: &mut Vec<Problem>) {
    if c.grant_types.is_empty() {
        p.push(
            Problem::new(at("grant_types"), "is empty")
                .expecting("authorization_code, refresh_token and/or client_credentials"),
        );
    }
    if let Some(d) = c.access_token_lifetime {
        check_positive(&at("access_token_lifetime"), d, p);
        check_at_most(&at("access_token_lifetime"), d, MAX_ACCESS_TOKEN, "\"1d\"", p);
    }
    if let Some(d) = c.refresh_token_lifetime {
        check_positive(&at("refresh_token_lifetime"), d, p);
        check_at_most(&at("refresh_token_lifetime"), d, MAX_REFRESH_FAMILY, "\"90d\"", p);
    }
    let code_flow = c.grant_types.contains(&GrantType::AuthorizationCode);
    if code_flow && c.redirect_uris.is_empty() {
        p.push(
            Problem::new(at("redirect_uris"), "is missing or empty")
                .expecting("at least one redirect URI for authorization_code"),
        );
    }
    if c.grant_types.contains(&GrantType::RefreshToken) && !code_flow {
        p.push(
            Problem::new(at("grant_types"), "refresh_token without authorization_code")
                .expecting("authorization_code as well"),
        );
    }
    let confidential = c.is_confidential();
    if !c.require_pkce && !confidential {
        p.push(
            Problem::new(at("require_pkce"), "a public client cannot go without PKCE")
                .expecting("require_pkce = true (the default) for a client without a secret"),
        );
    }
    if c.grant_types.contains(&GrantType::ClientCredentials) && !confidential {
        p.push(
            Problem::new(at("grant_types"), "client_credentials needs a confidential client")
                .expecting("a client_secret"),
        );
    }
    if let Some(secret) = c.client_secret.as_ref().and_then(|s| s.value())
        && secret.len() < 16
    {
        p.push(
            Problem::new(at("client_secret"), "is shorter than 16 characters")
                .expecting("a high-entropy secret of 16+ characters"),
        );
    }
    if code_flow && !c.scopes.iter().any(|s| s == "openid") {
        p.push(
            Problem::new(at("scopes"), "does not allow \"openid\"")
                .expecting("\"openid\" among the allowed scopes"),
        );
    }
}

/// A client's redirect, logout and key-set URIs.
fn check_client_uris(c: &super::ClientSettings, at: &dyn Fn(&str) -> String, p: &mut Vec<Problem>) {
    for (j, uri) in c.redirect_uris.iter().enumerate() {
        check_redirect_uri(&at(&format!("redirect_uris[{j}]")), uri, p);
    }
    for (j, uri) in c.post_logout_redirect_uris.iter().enumerate() {
        check_redirect_uri(&at(&format!("post_logout_redirect_uris[{j}]")), uri, p);
    }
    for (key, uri) in [
        ("backchannel_logout_uri", &c.backchannel_logout_uri),
        ("frontchannel_logout_uri", &c.frontchannel_logout_uri),
        ("jwks_uri", &c.jwks_uri),
    ] {
        if let Some(uri) = uri
            && let Some(u) = check_web_url(&at(key), uri, p)
            && u.fragment().is_some()
        {
            p.push(Problem::new(at(key), "has a fragment").expecting("no #fragment"));
        }
    }
}

/// A client's authentication method against its secret and keys.
fn check_client_auth(c: &super::ClientSettings, at: &dyn Fn(&str) -> String, p: &mut Vec<Problem>) {
    use super::ClientAuthMethod as M;
    match (c.token_endpoint_auth_method, c.client_secret.is_some()) {
        (Some(M::ClientSecretBasic | M::ClientSecretPost), false) => p.push(
            Problem::new(at("token_endpoint_auth_method"), "needs a client_secret")
                .expecting("a client_secret, or another method"),
        ),
        (Some(M::None), true) => p.push(
            Problem::new(at("client_secret"), "set for a client with token_endpoint_auth_method = \"none\"")
                .expecting("no secret for a public client"),
        ),
        (Some(M::PrivateKeyJwt), _) if c.jwks.is_none() == c.jwks_uri.is_none() => p.push(
            Problem::new(
                at("token_endpoint_auth_method"),
                "private_key_jwt needs exactly one of jwks or jwks_uri",
            )
            .expecting("jwks = { keys = [...] } or jwks_uri = \"https://…\""),
        ),
        _ => {}
    }
    if let Some(jwks) = &c.jwks
        && serde_json::from_value::<jsonwebtoken::jwk::JwkSet>(jwks.clone()).is_err()
    {
        p.push(Problem::new(at("jwks"), "is not a JWK set").expecting("{ keys = [ { kty = …, … } ] }"));
    }
}

/// The account rules' windows.
fn check_accounts(s: &Settings, p: &mut Vec<Problem>) {
    if s.accounts.proof_window.is_zero() || s.accounts.proof_window > std::time::Duration::from_secs(3600) {
        p.push(Problem::new("accounts.proof_window", "out of range").expecting("between 1s and 1h"));
    }
    if s.accounts.cache_ttl > std::time::Duration::from_secs(300) {
        p.push(
            Problem::new("accounts.cache_ttl", "too long: a locked account could keep getting tokens")
                .expecting("at most 5m (0s turns the cache off)"),
        );
    }
}

/// Settings that are valid but weaken security: `check-config` prints them without failing,
/// `serve` logs them at start-up.
pub fn warnings(s: &Settings) -> Vec<Problem> {
    let mut w = Vec::new();
    for (i, c) in s.clients.iter().enumerate() {
        if !c.require_pkce && c.grant_types.contains(&GrantType::AuthorizationCode) {
            w.push(
                Problem::new(
                    format!("clients[{i}].require_pkce"),
                    format!("is false: codes of {:?} are not bound to PKCE (RFC 9700 §2.1.1)", c.client_id),
                )
                .expecting("true, unless this legacy confidential client cannot send code_challenge"),
            );
        }
    }
    w
}

/// `[limits]`: a window of whole seconds the counters can align to, and counts that let
/// at least one request through.
/// `[par]`, `[dpop]` and the clients' `require_pushed_authorization_requests`.
fn check_par_and_dpop(s: &Settings, p: &mut Vec<Problem>) {
    use std::time::Duration as D;
    let ranges = [
        ("par.lifetime", s.par.lifetime, D::from_secs(10), D::from_secs(600), "between 10s and 10m"),
        ("dpop.proof_max_age", s.dpop.proof_max_age, D::from_secs(5), D::from_secs(300), "between 5s and 5m"),
        (
            "dpop.nonce_lifetime",
            s.dpop.nonce_lifetime,
            D::from_secs(10),
            D::from_secs(3600),
            "between 10s and 1h",
        ),
    ];
    for (key, d, min, max, text) in ranges {
        if d < min || d > max || d.subsec_nanos() != 0 {
            p.push(Problem::new(key, "out of range").expecting(format!("whole seconds {text}")));
        }
    }
    for (i, c) in s.clients.iter().enumerate() {
        let confidential = c.is_confidential();
        if c.require_pushed_authorization_requests && !confidential {
            p.push(
                Problem::new(
                    format!("clients[{i}].require_pushed_authorization_requests"),
                    "a public client cannot authenticate at /par",
                )
                .expecting("a client_secret or private_key_jwt, or no PAR requirement"),
            );
        }
        if c.require_pushed_authorization_requests && !c.grant_types.contains(&GrantType::AuthorizationCode) {
            p.push(
                Problem::new(
                    format!("clients[{i}].require_pushed_authorization_requests"),
                    "set for a client without authorization_code",
                )
                .expecting("authorization_code among grant_types"),
            );
        }
    }
}

/// `[admin]`: a scope name that can be requested, a role, and an `acr` of the ladder.
fn check_admin(s: &Settings, p: &mut Vec<Problem>) {
    let a = &s.admin;
    if a.scope.is_empty() || a.scope == "openid" || !a.scope.chars().all(|c| c.is_ascii_graphic() && c != '"')
    {
        p.push(
            Problem::new("admin.scope", "not a usable scope name")
                .expecting("a non-empty scope token other than \"openid\" (e.g. \"admin\")"),
        );
    }
    if a.role.trim().is_empty() {
        p.push(Problem::new("admin.role", "is empty").expecting("a role of the officials' directory"));
    }
    if let Some(acr) = &a.min_acr
        && s.assurance.rank(acr).is_none()
    {
        p.push(
            Problem::new("admin.min_acr", format!("{acr:?} is not an assurance level"))
                .expecting(format!("one of assurance.levels: {}", s.assurance.levels.join(", "))),
        );
    }
}

/// `[mtls]` and the clients' RFC 8705 settings: a certificate must be able to reach the
/// gateway for any of them to work, `tls_client_auth` needs roots and one registered name,
/// `self_signed_tls_client_auth` one key set, and certificate-bound tokens exclude DPoP.
fn check_mtls(s: &Settings, p: &mut Vec<Problem>) {
    let m = &s.mtls;
    if let Some(url) = &m.url {
        if let Some(u) = check_web_url("mtls.url", url, p)
            && (u.query().is_some() || u.fragment().is_some())
        {
            p.push(
                Problem::new("mtls.url", "has a query or fragment")
                    .expecting("scheme, host and optional path"),
            );
        }
        if !m.enabled() {
            p.push(
                Problem::new("mtls.url", "set, but no certificate can reach the gateway")
                    .expecting("mtls.listen or mtls.certificate_header"),
            );
        }
    }
    if let Some(h) = &m.certificate_header {
        if axum::http::HeaderName::try_from(h.as_str()).is_err() {
            p.push(
                Problem::new("mtls.certificate_header", "is not a header name")
                    .expecting("e.g. \"x-ssl-client-cert\""),
            );
        }
        if s.inbound.trusted_proxies.is_empty() {
            p.push(
                Problem::new("mtls.certificate_header", "set, but no proxy is trusted to send it")
                    .expecting("the proxy's network in inbound.trusted_proxies"),
            );
        }
    }
    check_mtls_listener(m, p);
    if let Some(ca) = &m.ca_file {
        let read = std::fs::read(ca).map_err(|e| format!("cannot read {}: {e}", ca.display()));
        if let Err(e) = read.and_then(|pem| super::root_store(&pem)) {
            p.push(Problem::new("mtls.ca_file", e).expecting("a PEM bundle of CA certificates"));
        }
    }
    use super::ClientAuthMethod as M;
    for (i, c) in s.clients.iter().enumerate() {
        let at = |k: &str| format!("clients[{i}].{k}");
        let method = c.token_endpoint_auth_method;
        let names = [
            ("tls_client_auth_subject_dn", c.tls_client_auth_subject_dn.is_some()),
            ("tls_client_auth_san_dns", c.tls_client_auth_san_dns.is_some()),
            ("tls_client_auth_san_uri", c.tls_client_auth_san_uri.is_some()),
            ("tls_client_auth_san_ip", c.tls_client_auth_san_ip.is_some()),
            ("tls_client_auth_san_email", c.tls_client_auth_san_email.is_some()),
        ];
        let named: Vec<&str> = names.iter().filter(|(_, set)| *set).map(|(k, _)| *k).collect();
        let by_certificate = matches!(method, Some(M::TlsClientAuth | M::SelfSignedTlsClientAuth));
        if method == Some(M::TlsClientAuth) {
            if named.len() != 1 {
                p.push(
                    Problem::new(at("token_endpoint_auth_method"), "tls_client_auth needs exactly one registered name")
                        .expecting("one of tls_client_auth_subject_dn, tls_client_auth_san_dns, _san_uri, _san_ip, _san_email"),
                );
            }
            if m.ca_file.is_none() {
                p.push(
                    Problem::new(at("token_endpoint_auth_method"), "tls_client_auth needs mtls.ca_file")
                        .expecting("the CA bundle client certificates chain to"),
                );
            }
        } else if let Some(first) = named.first() {
            p.push(
                Problem::new(at(first), "set for a client that does not use tls_client_auth")
                    .expecting("token_endpoint_auth_method = \"tls_client_auth\""),
            );
        }
        if method == Some(M::SelfSignedTlsClientAuth) && c.jwks.is_none() == c.jwks_uri.is_none() {
            p.push(
                Problem::new(
                    at("token_endpoint_auth_method"),
                    "self_signed_tls_client_auth needs exactly one of jwks or jwks_uri",
                )
                .expecting("the client's certificate (x5c) or key in jwks, or jwks_uri"),
            );
        }
        if by_certificate && c.client_secret.is_some() {
            p.push(
                Problem::new(at("client_secret"), "set for a client that authenticates with its certificate")
                    .expecting("no secret"),
            );
        }
        if (by_certificate || c.tls_client_certificate_bound_access_tokens) && !m.enabled() {
            let key = if by_certificate {
                "token_endpoint_auth_method"
            } else {
                "tls_client_certificate_bound_access_tokens"
            };
            p.push(
                Problem::new(at(key), "needs a client certificate, but none can reach the gateway")
                    .expecting("mtls.listen or mtls.certificate_header"),
            );
        }
        if c.tls_client_certificate_bound_access_tokens && c.require_dpop {
            p.push(
                Problem::new(at("require_dpop"), "set with tls_client_certificate_bound_access_tokens")
                    .expecting("one sender constraint: DPoP or the TLS certificate"),
            );
        }
    }
}

/// The gateway's own mTLS listener: its certificate and key load, and a handshake that
/// checks chains has a CA bundle to check them against.
fn check_mtls_listener(m: &super::MtlsSettings, p: &mut Vec<Problem>) {
    let ca_handshake = m.client_certificates == super::MtlsHandshake::CaFile;
    if ca_handshake && m.ca_file.is_none() {
        p.push(
            Problem::new("mtls.client_certificates", "is \"ca_file\" but mtls.ca_file is not set")
                .expecting("mtls.ca_file, or client_certificates = \"any\""),
        );
    }
    if m.listen.is_none() {
        for (key, set) in [("mtls.tls_cert", m.tls_cert.is_some()), ("mtls.tls_key", m.tls_key.is_some())] {
            if set {
                p.push(Problem::new(key, "set, but mtls.listen is not").expecting("mtls.listen"));
            }
        }
        return;
    }
    if m.url.is_none() {
        p.push(
            Problem::new("mtls.listen", "is set without mtls.url")
                .expecting("the public base URL of the mTLS host, for discovery's mtls_endpoint_aliases"),
        );
    }
    match (&m.tls_cert, &m.tls_key) {
        (Some(cert), Some(key)) => {
            let any = crate::tls::ClientCerts::AnyPresented { hint_subjects: Vec::new() };
            if let Err(e) = crate::tls::server_config(cert, key, any) {
                p.push(
                    Problem::new("mtls.tls_cert", e.to_string())
                        .expecting("a readable PEM certificate chain and its private key"),
                );
            }
        }
        _ => p.push(
            Problem::new("mtls.listen", "is set without tls_cert and tls_key")
                .expecting("the mTLS host's PEM certificate chain and key"),
        ),
    }
}

fn check_limits(l: &super::LimitSettings, p: &mut Vec<Problem>) {
    let w = l.window;
    if w < std::time::Duration::from_secs(1)
        || w > std::time::Duration::from_secs(3600)
        || w.subsec_nanos() != 0
    {
        p.push(Problem::new("limits.window", "out of range").expecting("whole seconds between 1s and 1h"));
    }
    for (key, n) in [
        ("limits.browser_per_address", l.browser_per_address),
        ("limits.token_per_address", l.token_per_address),
        ("limits.token_per_client", l.token_per_client),
    ] {
        if n == 0 {
            p.push(
                Problem::new(key, "is zero (no request would pass)")
                    .expecting("a positive count, or limits.enabled = false"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(text: &str) -> Vec<Problem> {
        match Settings::from_toml(text) {
            Ok(_) => Vec::new(),
            Err(ConfigError::Invalid(p)) => p,
            Err(e) => vec![Problem::new("", e.to_string())],
        }
    }

    #[test]
    fn minimal_config_is_valid_and_uses_embedded_defaults() {
        let s = Settings::from_toml("issuer = \"http://127.0.0.1:8080\"").unwrap();
        assert_eq!(s.sessions.store.expose(), "memory");
        assert!(s.accounts.url.expose().starts_with("sqlite:"));
        assert_eq!(s.lifetimes.authorization_code.as_secs(), 60);
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let p = problems(
            r#"
            issuer = "http://example.com"
            unknown_key = 1
            [[upstreams]]
            id = "Bad_ID"
            name_vi = "x"
            name_en = "x"
            issuer = "https://idp.example"
            client_id = "gw"
            [[clients]]
            client_id = "portal"
            redirect_uris = ["https://portal.example/cb#frag"]
            id_token_signed_response_alg = "HS256"
            [[clients]]
            client_id = "api"
            redirect_uris = ["http://not-local.example/cb"]
            grant_types = ["client_credentials"]
            "#,
        );
        let paths: Vec<&str> = p.iter().map(|p| p.path.as_str()).collect();
        assert!(paths.contains(&"unknown_key"), "{p:?}");
        assert!(paths.contains(&"clients[0].id_token_signed_response_alg"), "{p:?}");
        // Semantic checks need the whole document to parse; unknown keys stop them.
        let p = problems(
            r#"
            issuer = "http://example.com"
            [[upstreams]]
            id = "Bad_ID"
            name_vi = "x"
            name_en = "x"
            issuer = "https://idp.example"
            client_id = "gw"
            [[clients]]
            client_id = "api"
            redirect_uris = ["http://not-local.example/cb#x"]
            grant_types = ["client_credentials"]
            "#,
        );
        let paths: Vec<&str> = p.iter().map(|p| p.path.as_str()).collect();
        for expected in ["issuer", "upstreams[0].id", "clients[0].grant_types", "clients[0].redirect_uris[0]"]
        {
            assert!(paths.contains(&expected), "missing {expected} in {p:?}");
        }
    }

    #[test]
    fn token_lifetimes_are_bounded_so_revocations_can_outlast_them() {
        let p = problems(
            r#"issuer = "https://sso.example"
[lifetimes]
access_token = "2d"
refresh_token = "91d"
offline_refresh_token = "1y"
[[clients]]
client_id = "a"
client_secret = "0123456789abcdef0123"
redirect_uris = ["https://a.example/cb"]
access_token_lifetime = "25h"
refresh_token_lifetime = "100d"
[[clients]]
client_id = "b"
client_secret = "0123456789abcdef0123"
redirect_uris = ["https://b.example/cb"]
access_token_lifetime = "1d"
refresh_token_lifetime = "90d"
[[clients]]
client_id = "c"
client_secret = "0123456789abcdef0123"
redirect_uris = ["https://c.example/cb"]
refresh_token_lifetime = "0s"
"#,
        );
        let mut paths: Vec<&str> = p.iter().map(|x| x.path.as_str()).collect();
        paths.sort();
        assert_eq!(
            paths,
            [
                "clients[0].access_token_lifetime",
                "clients[0].refresh_token_lifetime",
                "clients[2].refresh_token_lifetime",
                "lifetimes.access_token",
                "lifetimes.offline_refresh_token",
                "lifetimes.refresh_token",
            ],
            "{p:?}"
        );
        assert!(p.iter().any(|x| x.to_string().contains("at most \"90d\"")), "{p:?}");
    }

    #[test]
    fn durations_are_human_readable() {
        let s = Settings::from_toml(
            "issuer = \"https://sso.example\"\n[lifetimes]\naccess_token = \"10m\"\nrefresh_token = \"1day\"",
        )
        .unwrap();
        assert_eq!(s.lifetimes.access_token.as_secs(), 600);
        assert_eq!(s.lifetimes.refresh_token.as_secs(), 86400);
    }

    #[test]
    fn secrets_come_from_env_and_never_print() {
        let mut env = BTreeMap::new();
        env.insert("PORTAL_SECRET".to_string(), "0123456789abcdef-secret".to_string());
        env.insert("SSO_GATEWAY_ISSUER".to_string(), "https://sso.tphcm.example".to_string());
        let s = Settings::from_toml_with_env(
            r#"
            issuer = "http://127.0.0.1:1"
            [[clients]]
            client_id = "portal"
            client_secret = { env = "PORTAL_SECRET" }
            redirect_uris = ["https://portal.example/cb"]
            "#,
            &env,
        )
        .unwrap();
        assert_eq!(s.issuer, "https://sso.tphcm.example");
        let secret = s.clients[0].client_secret.as_ref().unwrap();
        assert_eq!(secret.value(), Some("0123456789abcdef-secret"));
        assert!(!format!("{s:?}").contains("0123456789abcdef"));
    }

    #[test]
    fn missing_secret_env_is_a_problem() {
        let p = problems(
            r#"
            issuer = "http://127.0.0.1:1"
            [[clients]]
            client_id = "portal"
            client_secret = { env = "DEFINITELY_NOT_SET_SSO_TEST" }
            redirect_uris = ["https://portal.example/cb"]
            "#,
        );
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].path, "clients[0].client_secret");
    }

    #[test]
    fn example_config_parses() {
        let text = include_str!("../../config/gateway.example.toml");
        let mut env = BTreeMap::new();
        env.insert("HCM_CLIENT_SECRET".to_string(), "x".repeat(20));
        env.insert("BD_CLIENT_SECRET".to_string(), "x".repeat(20));
        env.insert("BRVT_CLIENT_SECRET".to_string(), "x".repeat(20));
        env.insert("PORTAL_CLIENT_SECRET".to_string(), "x".repeat(20));
        env.insert("HOTLINE_CLIENT_SECRET".to_string(), "x".repeat(20));
        env.insert("VNEID_CLIENT_SECRET".to_string(), "x".repeat(20));
        env.insert("OFFICIALS_DIRECTORY_PASSWORD".to_string(), "x".repeat(20));
        env.insert("PAIRWISE_SALT".to_string(), "s".repeat(40));
        match Settings::from_toml_with_env(text, &env) {
            Ok(s) => {
                assert!(s.upstreams[0].linking.trust_national_id);
                assert!(!s.upstreams[1].linking.trust_national_id, "untrusted by default");
                assert_eq!(s.clients[2].subject_type, SubjectType::Pairwise);
            }
            Err(e) => panic!("example config invalid: {e}"),
        }
    }

    #[test]
    fn pairwise_clients_need_a_salt_and_a_sector() {
        let base = r#"
            issuer = "http://127.0.0.1:8080"
            [[clients]]
            client_id = "a"
            client_secret = "secret-0123456789abcdef"
            redirect_uris = ["https://a.example/cb", "https://b.example/cb"]
            subject_type = "pairwise"
        "#;
        let paths: Vec<String> = problems(base).into_iter().map(|p| p.path).collect();
        assert!(paths.contains(&"accounts.pairwise_salt".to_string()), "{paths:?}");
        assert!(paths.contains(&"clients[0].sector_identifier".to_string()), "two hosts: {paths:?}");
        let ok = base.replace(
            "issuer = \"http://127.0.0.1:8080\"",
            "issuer = \"http://127.0.0.1:8080\"\n[accounts]\npairwise_salt = \"0123456789abcdef0123456789abcdef\"",
        ) + "sector_identifier = \"example\"\n";
        assert!(problems(&ok).is_empty(), "{:?}", problems(&ok));
        let one_host = r#"
            issuer = "http://127.0.0.1:8080"
            [accounts]
            pairwise_salt = "0123456789abcdef0123456789abcdef"
            [[clients]]
            client_id = "a"
            redirect_uris = ["https://a.example/cb", "https://a.example/other"]
            subject_type = "pairwise"
        "#;
        let s = Settings::from_toml(one_host).unwrap();
        assert_eq!(s.clients[0].sector().as_deref(), Some("a.example"));
        let typo = one_host.replace("subject_type = \"pairwise\"", "subject_type = \"pairwyse\"");
        assert!(!problems(&typo).is_empty());
    }

    #[test]
    fn check_config_bounds_par_and_dpop_and_refuses_par_for_public_clients() {
        let base = r#"
            issuer = "https://sso.example"
            [[clients]]
            client_id = "portal"
            client_secret = "portal-secret-0123456789"
            redirect_uris = ["https://portal.example/cb"]
            require_pushed_authorization_requests = true
            require_dpop = true
            [[clients]]
            client_id = "spa"
            redirect_uris = ["https://spa.example/cb"]
            require_dpop = true
        "#;
        let s = Settings::from_toml(base).unwrap();
        assert_eq!((s.par.lifetime.as_secs(), s.par.required), (60, false), "defaults");
        assert_eq!((s.dpop.proof_max_age.as_secs(), s.dpop.require_nonce), (60, false));
        assert!(s.clients[0].require_pushed_authorization_requests && s.clients[1].require_dpop);

        let out_of_range = format!(
            "{base}\n[par]\nlifetime = \"1h\"\n[dpop]\nproof_max_age = \"1s\"\nnonce_lifetime = \"2h\"\n"
        );
        let paths: Vec<String> = problems(&out_of_range).into_iter().map(|p| p.path).collect();
        assert_eq!(paths, ["par.lifetime", "dpop.proof_max_age", "dpop.nonce_lifetime"]);

        let (head, _) = base.rsplit_once("require_dpop = true").unwrap();
        let public_pusher = format!("{head}require_pushed_authorization_requests = true\n");
        let found = problems(&public_pusher);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].path, "clients[1].require_pushed_authorization_requests");
    }

    #[test]
    fn pkce_is_required_by_default_and_only_a_confidential_client_may_opt_out_with_a_warning() {
        let confidential = r#"
            issuer = "https://sso.example"
            [[clients]]
            client_id = "legacy"
            client_secret = "legacy-secret-0123456789"
            redirect_uris = ["https://legacy.example/cb"]
        "#;
        let s = Settings::from_toml(confidential).unwrap();
        assert!(s.clients[0].require_pkce, "the default");
        assert!(s.warnings().is_empty());

        let opted_out = format!("{confidential}require_pkce = false\n");
        let s = Settings::from_toml(&opted_out).unwrap();
        let w = s.warnings();
        assert_eq!(w.len(), 1, "{w:?}");
        assert_eq!(w[0].path, "clients[0].require_pkce");
        assert!(w[0].to_string().contains("legacy"), "{}", w[0]);

        let public = r#"
            issuer = "https://sso.example"
            [[clients]]
            client_id = "spa"
            redirect_uris = ["https://spa.example/cb"]
            require_pkce = false
        "#;
        let paths: Vec<String> = problems(public).into_iter().map(|p| p.path).collect();
        assert_eq!(paths, vec!["clients[0].require_pkce".to_string()]);
        let none_method = format!("{public}token_endpoint_auth_method = \"none\"\n");
        assert!(!problems(&none_method).is_empty());
    }

    #[test]
    fn the_embedded_store_is_bounded_and_login_attempts_short() {
        let s = Settings::from_toml("issuer = \"http://127.0.0.1:8080\"").unwrap();
        assert_eq!(s.sessions.memory.max_entries, 2_000_000);
        assert_eq!(s.sessions.memory.max_bytes, 1 << 30);
        assert_eq!(s.sessions.memory.anonymous_percent, 5);
        let base = "issuer = \"http://127.0.0.1:8080\"\n";
        let paths = |extra: &str| -> Vec<String> {
            problems(&format!("{base}{extra}")).into_iter().map(|p| p.path).collect()
        };
        assert!(
            paths("[sessions.memory]\nmax_entries = 5000\nmax_bytes = 8_388_608\nanonymous_percent = 50")
                .is_empty()
        );
        assert_eq!(paths("[sessions.memory]\nmax_entries = 10"), ["sessions.memory.max_entries"]);
        assert_eq!(paths("[sessions.memory]\nmax_bytes = 1000"), ["sessions.memory.max_bytes"]);
        assert_eq!(paths("[sessions.memory]\nanonymous_percent = 0"), ["sessions.memory.anonymous_percent"]);
        assert_eq!(paths("[sessions.memory]\nanonymous_percent = 95"), ["sessions.memory.anonymous_percent"]);
        assert!(!paths("[sessions.memory]\nmax_records = 5").is_empty(), "unknown keys are refused");
        assert!(paths("[lifetimes]\nlogin_attempt = \"30m\"").is_empty());
        assert_eq!(paths("[lifetimes]\nlogin_attempt = \"31m\""), ["lifetimes.login_attempt"]);
    }

    #[test]
    fn only_clients_of_the_code_flow_need_redirect_uris() {
        let machine = r#"
            issuer = "https://sso.example"
            [[clients]]
            client_id = "batch"
            client_secret = "batch-secret-0123456789abcdef"
            grant_types = ["client_credentials"]
        "#;
        let s = Settings::from_toml(machine).unwrap_or_else(|e| panic!("{e}"));
        assert!(s.clients[0].redirect_uris.is_empty());
        for code_flow in [
            "grant_types = [\"authorization_code\"]",
            "grant_types = [\"authorization_code\", \"client_credentials\"]",
            "",
        ] {
            let text =
                format!("{machine}{code_flow}\n").replace("grant_types = [\"client_credentials\"]\n", "");
            let found = problems(&text);
            assert_eq!(found.len(), 1, "{code_flow}: {found:?}");
            assert_eq!(found[0].path, "clients[0].redirect_uris", "{code_flow}");
            assert!(found[0].to_string().contains("missing or empty"), "{}", found[0]);
        }
    }

    #[test]
    fn the_redis_anonymous_budget_defaults_to_56_mib_and_has_a_floor() {
        let s = Settings::from_toml("issuer = \"http://127.0.0.1:8080\"").unwrap();
        assert_eq!(s.sessions.redis.anonymous_max_bytes, 56 << 20);
        let base = "issuer = \"http://127.0.0.1:8080\"\n[sessions.redis]\n";
        let paths = |extra: &str| -> Vec<String> {
            problems(&format!("{base}{extra}")).into_iter().map(|p| p.path).collect()
        };
        assert!(paths("anonymous_max_bytes = 65536").is_empty());
        assert_eq!(paths("anonymous_max_bytes = 65535"), ["sessions.redis.anonymous_max_bytes"]);
    }

    /// `[sessions]` names the state store the gateway opens: the bounded embedded store by
    /// default, else Redis with its prefix, timeout, budget and the per-address shares.
    #[test]
    fn the_sessions_section_names_the_state_store_to_open() {
        use crate::state::{RedisTopology, StorePlan};
        let s = Settings::from_toml("issuer = \"http://127.0.0.1:8080\"").unwrap();
        let StorePlan::Memory(capacity) = s.sessions.store_plan() else { panic!("memory by default") };
        assert_eq!(capacity.max_entries, s.sessions.memory.max_entries);
        assert_eq!(capacity.shares.per_address, 1 << 20);
        let s = Settings::from_toml(
            "issuer = \"http://127.0.0.1:8080\"\n[sessions]\nstore = \"redis://127.0.0.1:6379\"\nanonymous_per_address = 65536\n\
             [sessions.redis]\nkey_prefix = \"city:\"\ntimeout = \"250ms\"",
        )
        .unwrap();
        let StorePlan::Redis { topology, key_prefix, timeout, anonymous_max_bytes, shares } =
            s.sessions.store_plan()
        else {
            panic!("a redis:// store is Redis")
        };
        assert_eq!(topology, RedisTopology::Single("redis://127.0.0.1:6379".into()));
        assert_eq!(key_prefix, "city:");
        assert_eq!(timeout, std::time::Duration::from_millis(250));
        assert_eq!(anonymous_max_bytes, 56 << 20);
        assert_eq!(shares.per_address, 65536);
    }

    #[test]
    fn anonymous_shares_per_address_have_defaults_and_checked_ranges() {
        let s = Settings::from_toml("issuer = \"http://127.0.0.1:8080\"").unwrap();
        assert_eq!(s.sessions.anonymous_per_address, 1 << 20);
        assert_eq!(s.sessions.anonymous_reserve_percent, 50);
        assert_eq!(s.sessions.anonymous_reserve_per_address, 8 << 10);
        let base = "issuer = \"http://127.0.0.1:8080\"\n[sessions]\n";
        let paths = |extra: &str| -> Vec<String> {
            problems(&format!("{base}{extra}")).into_iter().map(|p| p.path).collect()
        };
        assert!(paths("anonymous_per_address = 8192\nanonymous_reserve_per_address = 8192").is_empty());
        assert!(paths("anonymous_reserve_percent = 0").is_empty());
        assert_eq!(
            paths("anonymous_per_address = 8191\nanonymous_reserve_per_address = 4096"),
            ["sessions.anonymous_per_address"]
        );
        assert_eq!(paths("anonymous_reserve_percent = 91"), ["sessions.anonymous_reserve_percent"]);
        assert_eq!(paths("anonymous_reserve_per_address = 4095"), ["sessions.anonymous_reserve_per_address"]);
        assert_eq!(
            paths("anonymous_per_address = 16384\nanonymous_reserve_per_address = 16385"),
            ["sessions.anonymous_reserve_per_address"]
        );
    }

    #[test]
    fn limits_have_production_defaults_and_checked_ranges() {
        let s = Settings::from_toml("issuer = \"http://127.0.0.1:8080\"").unwrap();
        assert!(s.limits.enabled);
        assert_eq!(s.limits.window.as_secs(), 60);
        assert!(s.limits.browser_per_address >= 600, "generous for many people behind one NAT");
        let base = "issuer = \"http://127.0.0.1:8080\"\n[limits]\n";
        assert!(problems(&format!("{base}window = \"30s\"\ntoken_per_client = 10")).is_empty());
        let paths = |extra: &str| -> Vec<String> {
            problems(&format!("{base}{extra}")).into_iter().map(|p| p.path).collect()
        };
        assert_eq!(paths("window = \"1500ms\""), ["limits.window"]);
        assert_eq!(paths("window = \"2h\""), ["limits.window"]);
        assert_eq!(paths("window = \"0s\""), ["limits.window"]);
        assert_eq!(paths("browser_per_address = 0"), ["limits.browser_per_address"]);
        assert_eq!(paths("token_per_address = 0"), ["limits.token_per_address"]);
        assert_eq!(paths("token_per_client = 0"), ["limits.token_per_client"]);
        assert!(!paths("per_address = 5").is_empty(), "unknown keys are refused");
    }

    mod properties {
        #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

        use proptest::prelude::*;

        use super::*;

        const EXAMPLE: &str = include_str!("../../config/gateway.example.toml");

        fn hostile_value() -> impl Strategy<Value = toml::Value> {
            let leaf = prop_oneof![
                prop::sample::select(vec![
                    "",
                    "0s",
                    "-1s",
                    "1ns",
                    "18446744073709551616s",
                    "999999999999d",
                    "5 parsecs",
                    "http://",
                    "https://",
                    "redis://:password@127.0.0.1:6379",
                    "rediss://",
                    "memory",
                    "sqlite://",
                    "postgres://u:p@h/db",
                    "../../etc/passwd",
                    "0.0.0.0:99999",
                    "[::1]:0",
                    "RS256",
                    "HS256",
                    "none",
                    "private_key_jwt",
                    "pairwise",
                    "10.0.0.0/33",
                    "oidc",
                    "cas",
                    "ldap",
                ])
                .prop_map(|s| toml::Value::String(s.to_string())),
                any::<String>().prop_map(toml::Value::String),
                any::<i64>().prop_map(toml::Value::Integer),
                any::<bool>().prop_map(toml::Value::Boolean),
                (-1e300f64..1e300).prop_map(toml::Value::Float),
            ];
            leaf.prop_recursive(2, 8, 4, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..4).prop_map(toml::Value::Array),
                    prop::collection::btree_map("[a-z_]{1,12}", inner, 0..3)
                        .prop_map(|m| toml::Value::Table(m.into_iter().collect())),
                ]
            })
        }

        /// Where `choices` lead from `v` (each picks a key or an element, modulo the count).
        fn walk<'a>(v: &'a mut toml::Value, choices: &[usize]) -> &'a mut toml::Value {
            let Some((&c, rest)) = choices.split_first() else { return v };
            let has_child = match &*v {
                toml::Value::Table(t) => !t.is_empty(),
                toml::Value::Array(a) => !a.is_empty(),
                _ => false,
            };
            if !has_child {
                return v;
            }
            match v {
                toml::Value::Table(t) => {
                    let k = t.keys().nth(c % t.len()).unwrap().clone();
                    walk(t.get_mut(&k).unwrap(), rest)
                }
                toml::Value::Array(a) => {
                    let i = c % a.len();
                    walk(&mut a[i], rest)
                }
                other => other,
            }
        }

        /// Walks `choices` down from the root and replaces, adds beside or removes what it
        /// reaches.
        fn mutate(root: &mut toml::Value, choices: &[usize], op: u8, new: toml::Value) {
            let cur = walk(root, choices);
            match (op % 3, cur) {
                (1, toml::Value::Table(t)) => {
                    t.insert("fuzzed_key".into(), new);
                }
                (2, toml::Value::Table(t)) => {
                    if let Some(k) = t.keys().next().cloned() {
                        t.remove(&k);
                    }
                }
                (_, cur) => *cur = new,
            }
        }

        proptest! {
            #![proptest_config(crate::fuzzing::config(256))]

            #[test]
            fn arbitrary_text_is_settings_or_problems(text in any::<String>()) {
                let _ = Settings::from_toml(&text);
            }

            #[test]
            fn a_mutated_example_is_settings_or_problems(
                mutations in prop::collection::vec(
                    (prop::collection::vec(any::<usize>(), 0..5), any::<u8>(), hostile_value()),
                    1..6,
                ),
                env in prop::collection::btree_map(
                    prop::sample::select(vec![
                        "SSO_GATEWAY_ISSUER", "SSO_GATEWAY_LISTEN", "SSO_GATEWAY_KEYS_DIR",
                        "SSO_GATEWAY_ACCOUNTS_URL", "SSO_GATEWAY_SESSION_STORE", "PAIRWISE_SALT",
                        "HCM_CLIENT_SECRET", "SSO_GATEWAY__SESSIONS__MEMORY__MAX_ENTRIES",
                        "SSO_GATEWAY__CLIENTS__PORTAL__SCOPES", "SSO_GATEWAY__LIMITS__ENABLED",
                        "SSO_GATEWAY__UPSTREAMS__HCM__TIMEOUT", "SSO_GATEWAY____X",
                    ]).prop_map(str::to_string),
                    any::<String>(),
                    0..4,
                ),
            ) {
                let mut doc: toml::Value = toml::from_str(EXAMPLE).unwrap();
                for (choices, op, new) in mutations {
                    mutate(&mut doc, &choices, op, new);
                }
                let text = toml::to_string(&doc).unwrap_or_default();
                let _ = Settings::from_toml_with_env(&text, &env);
            }

            #[test]
            fn a_garbled_example_is_settings_or_problems(at in any::<prop::sample::Index>(), bytes in prop::collection::vec(any::<u8>(), 1..16)) {
                let mut raw = EXAMPLE.as_bytes().to_vec();
                let i = at.index(raw.len());
                raw.splice(i..i, bytes);
                let _ = Settings::from_toml(&String::from_utf8_lossy(&raw));
            }
        }
    }

    #[test]
    fn the_mtls_listener_needs_its_certificate_and_a_ca_for_a_checking_handshake() {
        let paths = |extra: &str| -> Vec<String> {
            problems(&format!("issuer = \"http://127.0.0.1:8080\"\n[mtls]\n{extra}"))
                .into_iter()
                .map(|p| p.path)
                .collect()
        };
        assert!(paths("listen = \"127.0.0.1:8443\"").contains(&"mtls.listen".to_string()));
        let unreadable = paths(
            "listen = \"127.0.0.1:8443\"\ntls_cert = \"/nonexistent/c.pem\"\ntls_key = \"/nonexistent/k.pem\"",
        );
        assert!(unreadable.contains(&"mtls.tls_cert".to_string()), "{unreadable:?}");
        assert!(paths("tls_cert = \"/x.pem\"").contains(&"mtls.tls_cert".to_string()));
        assert!(
            paths("certificate_header = \"x-cert\"\nclient_certificates = \"ca_file\"")
                .contains(&"mtls.client_certificates".to_string())
        );
        // A listener alone lets certificates reach the gateway: mtls.url is then fine.
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert =
            rcgen::CertificateParams::new(vec!["mtls.sso.test".into()]).unwrap().self_signed(&key).unwrap();
        std::fs::write(dir.path().join("c.pem"), cert.pem()).unwrap();
        std::fs::write(dir.path().join("k.pem"), key.serialize_pem()).unwrap();
        let d = dir.path().display();
        let fine = paths(&format!(
            "listen = \"127.0.0.1:8443\"\nurl = \"https://mtls.sso.test\"\ntls_cert = \"{d}/c.pem\"\ntls_key = \"{d}/k.pem\""
        ));
        assert!(fine.is_empty(), "{fine:?}");
    }
}
