//! Typed gateway settings: the TOML file, environment overrides and validation.
//!
//! Owns: the shape of `gateway.toml`, loading (file → `SSO_GATEWAY__…` environment → CLI),
//! secret indirection (`{ env = "…" }` / `{ file = "…" }`) and `check-config` diagnostics.
//! Must not: read environment variables or files for other parts (they receive typed values).

mod connectors;
mod environment;
mod mtls;
mod profiles;
mod secret;
mod validate;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub use environment::{Layer, Origin};
pub use mtls::{SubjectDn, root_store};
pub use profiles::UpstreamProfile;
pub use secret::{SecretString, SecretValue};
pub use validate::{Problem, validate};

use crate::keys::SigningAlg;

/// Everything the gateway needs to run, after loading and validation.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Public issuer URL; every endpoint URL is derived from it.
    pub issuer: String,
    /// Socket address to listen on.
    #[serde(default = "defaults::listen")]
    pub listen: SocketAddr,
    #[serde(default)]
    pub tls: Option<TlsSettings>,
    #[serde(default)]
    pub keys: KeySettings,
    #[serde(default)]
    pub accounts: AccountSettings,
    #[serde(default)]
    pub sessions: SessionSettings,
    #[serde(default)]
    pub lifetimes: Lifetimes,
    #[serde(default)]
    pub upstreams: Vec<UpstreamSettings>,
    #[serde(default)]
    pub clients: Vec<ClientSettings>,
    /// Where each value set in the file or the environment came from (`check-config
    /// --origins`); every other key has its default.
    #[serde(skip)]
    pub origins: Vec<Origin>,
    #[serde(default)]
    pub outbound: OutboundSettings,
    /// Assurance levels (`acr` values) the gateway asserts, lowest first.
    #[serde(default)]
    pub assurance: AssuranceSettings,
    /// Inbound requests: which proxies may name the client's address.
    #[serde(default)]
    pub inbound: InboundSettings,
    #[serde(default)]
    pub management: ManagementSettings,
    /// Request rate limits per client address and per client (see `crate::limits`).
    #[serde(default)]
    pub limits: LimitSettings,
    /// Pushed authorization requests (RFC 9126, `POST /par`).
    #[serde(default)]
    pub par: ParSettings,
    /// DPoP proofs and sender-constrained tokens (RFC 9449).
    #[serde(default)]
    pub dpop: DpopSettings,
    /// Where browsers present their client certificate for certificate login
    /// (`kind = "certificate"` upstreams): the gateway's own TLS listener, or a proxy.
    #[serde(default)]
    pub certificate: CertificateListener,
    /// The admin API (`/admin/api/v1`): who may use it.
    #[serde(default)]
    pub admin: AdminSettings,
    /// Mutual-TLS client authentication and certificate-bound tokens (RFC 8705).
    #[serde(default)]
    pub mtls: MtlsSettings,
}

/// The certificate step of certificate login, on a host name of its own so that no other page
/// ever makes the browser ask for a certificate. Either the gateway terminates TLS there
/// itself (`listen`, `tls_cert`, `tls_key`), or a TLS-terminating proxy asks for the
/// certificate and forwards it in `forwarded_header` (believed only from
/// `inbound.trusted_proxies`). Both may be set.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateListener {
    /// Public base URL of the certificate host (e.g. `https://cert.sso.example`), where the
    /// browser is sent for `/upstream/{id}/certificate`. Required when an upstream has
    /// `kind = "certificate"`.
    #[serde(default)]
    pub url: Option<String>,
    /// Address of the gateway's own TLS listener asking for client certificates; unset =
    /// none (a proxy in front asks).
    #[serde(default)]
    pub listen: Option<SocketAddr>,
    /// PEM certificate chain of that listener (for the certificate host name only).
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of that listener.
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// Request header in which a TLS-terminating proxy forwards the client certificate it
    /// verified, as URL-escaped PEM (nginx `$ssl_client_escaped_cert`) or base64 DER
    /// (HAProxy `%[ssl_c_der,base64]`). Believed only from `inbound.trusted_proxies`.
    #[serde(default)]
    pub forwarded_header: Option<String>,
}

/// The admin API under `/admin/api/v1`: it takes access tokens of this gateway that carry
/// `scope`. A `client_credentials` token acts as its client; a person's token also needs
/// `role` among the official's roles and an `acr` at least `min_acr`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSettings {
    /// The scope an access token must carry (grant it only to the clients that may administer).
    #[serde(default = "defaults::admin_scope")]
    pub scope: String,
    /// The role (from the officials' directory) a person must hold.
    #[serde(default = "defaults::admin_role")]
    pub role: String,
    /// The lowest `acr` of a person's token (one of `assurance.levels`); None = any level.
    #[serde(default)]
    pub min_acr: Option<String>,
}

impl Default for AdminSettings {
    fn default() -> Self {
        Self { scope: defaults::admin_scope(), role: defaults::admin_role(), min_acr: None }
    }
}

/// Mutual TLS for RPs (RFC 8705): where client certificates reach the gateway and which
/// roots `tls_client_auth` trusts. A certificate reaches the gateway over its own mTLS
/// listener (`listen`, `tls_cert`, `tls_key`; RFC 8705 §5, the host of `url`), or from a
/// TLS-terminating proxy in `certificate_header`. Both may be set.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MtlsSettings {
    /// Public base URL of a separate mTLS host (e.g. `https://mtls.sso.example`, on the
    /// proxy): discovery lists the endpoints under it in `mtls_endpoint_aliases`.
    #[serde(default)]
    pub url: Option<String>,
    /// PEM bundle of the CAs whose certificates `tls_client_auth` accepts (chain, validity,
    /// the clientAuth extended key usage). Needed by any `tls_client_auth` client.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Behind a TLS-terminating proxy: the request header in which it forwards the client's
    /// certificate (URL-encoded PEM as nginx's `$ssl_client_escaped_cert`, PEM, or base64
    /// DER). Believed only from `inbound.trusted_proxies`; anyone else's is ignored.
    #[serde(default)]
    pub certificate_header: Option<String>,
    /// Address of the gateway's own mTLS listener (serving `/token`, `/par`, `/introspect`,
    /// `/revoke` and `/userinfo`, asking every client for its certificate); unset = none.
    #[serde(default)]
    pub listen: Option<SocketAddr>,
    /// PEM certificate chain of that listener (for the host name of `url`).
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of that listener.
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// Which client certificates the listener's handshake accepts: `any` (the default: any
    /// certificate whose key the client proves it holds; the client's registration judges it,
    /// as `self_signed_tls_client_auth` needs) or `ca_file` (only chains to `ca_file`; a
    /// self-signed certificate then fails the handshake).
    #[serde(default)]
    pub client_certificates: MtlsHandshake,
}

/// See [`MtlsSettings::client_certificates`].
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum MtlsHandshake {
    #[default]
    Any,
    CaFile,
}

impl MtlsSettings {
    /// Whether a client certificate can reach the gateway at all.
    pub fn enabled(&self) -> bool {
        self.certificate_header.is_some() || self.listen.is_some()
    }
}

/// Pushed authorization requests (RFC 9126): a confidential client posts its authorization
/// request to `/par` and sends the browser to `/authorize` with the `request_uri` it got.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParSettings {
    /// Every confidential client must push its authorization requests
    /// (`require_pushed_authorization_requests` in discovery). Public clients cannot
    /// authenticate at `/par` and keep sending theirs to `/authorize`.
    #[serde(default)]
    pub required: bool,
    /// How long a `request_uri` may be used (once), 10 s to 10 min.
    #[serde(default = "defaults::par_lifetime", with = "humantime_serde")]
    pub lifetime: Duration,
}

impl Default for ParSettings {
    fn default() -> Self {
        Self { required: false, lifetime: defaults::par_lifetime() }
    }
}

/// DPoP (RFC 9449): how proofs are checked.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DpopSettings {
    /// Demand a nonce issued by the gateway in every proof (`use_dpop_nonce`), so a proof
    /// cannot be made in advance.
    #[serde(default)]
    pub require_nonce: bool,
    /// How old a proof's `iat` may be (5 s to 5 min); a proof from the future is accepted
    /// within the same clock leeway as other tokens.
    #[serde(default = "defaults::dpop_proof_max_age", with = "humantime_serde")]
    pub proof_max_age: Duration,
    /// How long one server nonce is handed out (the previous one stays valid as long again),
    /// 10 s to 1 h.
    #[serde(default = "defaults::dpop_nonce_lifetime", with = "humantime_serde")]
    pub nonce_lifetime: Duration,
}

impl Default for DpopSettings {
    fn default() -> Self {
        Self {
            require_nonce: false,
            proof_max_age: defaults::dpop_proof_max_age(),
            nonce_lifetime: defaults::dpop_nonce_lifetime(),
        }
    }
}

/// The acr ladder: every `acr` the gateway puts in ID tokens, from the lowest assurance to the
/// highest. A session at one level satisfies a request for that level or any lower one.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssuranceSettings {
    #[serde(default = "defaults::assurance_levels")]
    pub levels: Vec<String>,
}

impl Default for AssuranceSettings {
    fn default() -> Self {
        Self { levels: defaults::assurance_levels() }
    }
}

/// Provincial password login (the former systems, officials' directories).
pub const ACR_PASSWORD: &str = "urn:sso-gateway:acr:password";
/// National e-ID (VNeID) level 1: account registered online.
pub const ACR_VNEID_LEVEL1: &str = "urn:sso-gateway:acr:vneid-level1";
/// National e-ID (VNeID) level 2: identity verified in person (Decree 69/2024/ND-CP).
pub const ACR_VNEID_LEVEL2: &str = "urn:sso-gateway:acr:vneid-level2";
/// Digital-signature certificate (chữ ký số) presented over TLS: a key on a token, issued
/// after the CA verified the person.
pub const ACR_CERTIFICATE: &str = "urn:sso-gateway:acr:certificate";

impl AssuranceSettings {
    /// Position of `acr` on the ladder (0 = lowest), None when it is not a gateway level.
    pub fn rank(&self, acr: &str) -> Option<usize> {
        self.levels.iter().position(|l| l == acr)
    }

    /// Every level at or above `rank`.
    pub fn at_least(&self, rank: usize) -> Vec<String> {
        self.levels.iter().skip(rank).cloned().collect()
    }
}

/// Where requests come from. Behind a load balancer the peer address is the balancer's; the
/// client's address is then read from `X-Forwarded-For`, but only when the peer is trusted.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InboundSettings {
    /// Networks of reverse proxies / load balancers (CIDR, e.g. `"10.0.0.0/8"`).
    #[serde(default)]
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

/// Request rate limits: fixed windows of `window`, counted per client address (as
/// `inbound.trusted_proxies` determines it) and per registered client. Counted in Redis when
/// Redis is the state store (shared by every replica), in the process otherwise.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitSettings {
    /// `false` turns every rate limit off (e.g. when a proxy in front already limits).
    #[serde(default = "defaults::limits_enabled")]
    pub enabled: bool,
    /// Length of one counting window (whole seconds, 1s to 1h).
    #[serde(default = "defaults::limits_window", with = "humantime_serde")]
    pub window: Duration,
    /// Browser requests per address and window: `/authorize`, `/upstream/{id}/login`,
    /// `/upstream/{id}/callback`, and the form POSTs (`/logout`, `/sessions/end`).
    #[serde(default = "defaults::limits_browser_per_address")]
    pub browser_per_address: u32,
    /// Back-channel requests per address and window: `/token`, `/par`, `/introspect`, `/revoke`.
    #[serde(default = "defaults::limits_token_per_address")]
    pub token_per_address: u32,
    /// Back-channel requests per registered client and window (counted whether or not the
    /// client then authenticates).
    #[serde(default = "defaults::limits_token_per_client")]
    pub token_per_client: u32,
}

impl Default for LimitSettings {
    fn default() -> Self {
        Self {
            enabled: defaults::limits_enabled(),
            window: defaults::limits_window(),
            browser_per_address: defaults::limits_browser_per_address(),
            token_per_address: defaults::limits_token_per_address(),
            token_per_client: defaults::limits_token_per_client(),
        }
    }
}

/// The management listener: `/metrics` (Prometheus), `/healthz`, `/readyz`. Keep it on an
/// internal address.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManagementSettings {
    /// e.g. "127.0.0.1:9090" or "0.0.0.0:9090" inside a pod; unset = no management listener.
    #[serde(default)]
    pub listen: Option<SocketAddr>,
}

/// Outbound HTTPS (upstreams, RP back-channel logout, client key sets).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboundSettings {
    /// Extra trusted root certificates (PEM bundle), e.g. a government root CA that the
    /// public web PKI does not include.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeySettings {
    /// Directory of `{kid}.pem` signing keys.
    #[serde(default = "defaults::key_dir")]
    pub dir: PathBuf,
    /// Generate a key for every algorithm in use that has none (development and demo only).
    #[serde(default)]
    pub generate_missing: bool,
    /// How often a running gateway re-reads `dir` (new keys, schedules, removed keys); also
    /// on SIGHUP. `0s` = only on SIGHUP.
    #[serde(default = "defaults::key_reload_interval", with = "humantime_serde")]
    pub reload_interval: Duration,
}

impl Default for KeySettings {
    fn default() -> Self {
        Self {
            dir: defaults::key_dir(),
            generate_missing: false,
            reload_interval: defaults::key_reload_interval(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountSettings {
    /// `sqlite://path?mode=rwc` (embedded default) or `postgres://…`.
    #[serde(default = "defaults::accounts_url")]
    pub url: SecretString,
    #[serde(default = "defaults::max_connections")]
    pub max_connections: u32,
    /// Server-side secret keying pairwise subject identifiers (required when a client uses
    /// `subject_type = "pairwise"`; at least 32 characters; never change it once issued).
    #[serde(default)]
    pub pairwise_salt: Option<SecretValue>,
    /// How recent a login in the same browser must be to prove ownership of a second account
    /// (linking a pending account to the verified one).
    #[serde(default = "defaults::proof_window", with = "humantime_serde")]
    pub proof_window: Duration,
    /// How long a replica may reuse an account record it read for minting tokens (code
    /// exchange, refresh, userinfo, introspection). A lock, merge or attribute change made by
    /// another process is seen within this time; `0s` reads the database every time.
    #[serde(default = "defaults::account_cache_ttl", with = "humantime_serde")]
    pub cache_ttl: Duration,
}

impl Default for AccountSettings {
    fn default() -> Self {
        Self {
            url: defaults::accounts_url(),
            max_connections: defaults::max_connections(),
            pairwise_salt: None,
            proof_window: defaults::proof_window(),
            cache_ttl: defaults::account_cache_ttl(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionSettings {
    /// `memory` (embedded default, one process only) or a Redis URL (`redis://`, `rediss://`).
    #[serde(default = "defaults::session_store")]
    pub store: SecretString,
    /// Redis details when `store` is a Redis URL.
    #[serde(default)]
    pub redis: RedisSettings,
    /// Cookie name; `__Host-` is prefixed automatically when the issuer is https.
    #[serde(default = "defaults::cookie_name")]
    pub cookie_name: String,
    /// A session unused for this long ends (sliding).
    #[serde(default = "defaults::idle_timeout", with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// A session ends this long after login whatever its use.
    #[serde(default = "defaults::absolute_timeout", with = "humantime_serde")]
    pub absolute_timeout: Duration,
    /// Capacity of the embedded store (`store = "memory"`).
    #[serde(default)]
    pub memory: MemoryStoreSettings,
    /// Most bytes of anonymous records one client address (IPv6: one /64) may hold at once,
    /// on either store (counted as the store counts them).
    #[serde(default = "defaults::anonymous_per_address")]
    pub anonymous_per_address: u64,
    /// Part (percent, 0 to 90) of the anonymous room kept for addresses holding at most
    /// `anonymous_reserve_per_address`: a flood from many addresses holding more cannot
    /// take it, so a person starting a login from another address still gets through.
    #[serde(default = "defaults::anonymous_reserve_percent")]
    pub anonymous_reserve_percent: u8,
    /// Most bytes an address may hold and still write into the reserve (a login or two).
    #[serde(default = "defaults::anonymous_reserve_per_address")]
    pub anonymous_reserve_per_address: u64,
}

/// How much the embedded state store may hold. When it is full, new records are refused (a
/// "busy" page, `temporarily_unavailable`), never made room for by evicting live sessions,
/// codes or refresh tokens. Records made for anonymous requests (parked authorization
/// requests, login attempts, replay markers, failure counters) may use only
/// `anonymous_percent` of it, so a flood of them cannot crowd out people who logged in.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryStoreSettings {
    /// Most records, of every kind together.
    #[serde(default = "defaults::memory_max_entries")]
    pub max_entries: usize,
    /// Most bytes (keys, values and an estimate of the bookkeeping per record), every kind
    /// together.
    #[serde(default = "defaults::memory_max_bytes")]
    pub max_bytes: usize,
    /// Share (percent, 1 to 90) of both limits that anonymous records may use.
    #[serde(default = "defaults::memory_anonymous_percent")]
    pub anonymous_percent: u8,
}

impl Default for MemoryStoreSettings {
    fn default() -> Self {
        Self {
            max_entries: defaults::memory_max_entries(),
            max_bytes: defaults::memory_max_bytes(),
            anonymous_percent: defaults::memory_anonymous_percent(),
        }
    }
}

impl MemoryStoreSettings {
    pub fn capacity(&self) -> crate::state::Capacity {
        crate::state::Capacity {
            max_entries: self.max_entries,
            max_bytes: self.max_bytes,
            anonymous_percent: self.anonymous_percent,
            // Set from `[sessions]` where the store is opened.
            shares: crate::state::AddressShares::NONE,
        }
    }
}

impl Default for SessionSettings {
    fn default() -> Self {
        Self {
            store: defaults::session_store(),
            redis: RedisSettings::default(),
            cookie_name: defaults::cookie_name(),
            idle_timeout: defaults::idle_timeout(),
            absolute_timeout: defaults::absolute_timeout(),
            memory: MemoryStoreSettings::default(),
            anonymous_per_address: defaults::anonymous_per_address(),
            anonymous_reserve_percent: defaults::anonymous_reserve_percent(),
            anonymous_reserve_per_address: defaults::anonymous_reserve_per_address(),
        }
    }
}

impl SessionSettings {
    /// How the anonymous room is shared between client addresses.
    pub fn address_shares(&self) -> crate::state::AddressShares {
        crate::state::AddressShares {
            per_address: self.anonymous_per_address,
            reserve_percent: self.anonymous_reserve_percent,
            reserve_per_address: self.anonymous_reserve_per_address,
        }
    }

    /// The state store these settings name, with its limits.
    pub fn store_plan(&self) -> crate::state::StorePlan {
        let shares = self.address_shares();
        match self.topology() {
            None => {
                crate::state::StorePlan::Memory(crate::state::Capacity { shares, ..self.memory.capacity() })
            }
            Some(topology) => crate::state::StorePlan::Redis {
                topology,
                key_prefix: self.redis.key_prefix.clone(),
                timeout: self.redis.timeout,
                anonymous_max_bytes: self.redis.anonymous_max_bytes,
                shares,
            },
        }
    }

    /// Where Redis is, or None for the in-memory store.
    pub fn topology(&self) -> Option<crate::state::RedisTopology> {
        use crate::state::RedisTopology;
        let url = self.store.expose();
        if url == "memory" {
            return None;
        }
        let mut all = vec![url.to_string()];
        all.extend(self.redis.nodes.iter().map(|n| n.expose().to_string()));
        Some(match self.redis.mode {
            RedisMode::Single => RedisTopology::Single(url.to_string()),
            RedisMode::Cluster => RedisTopology::Cluster(all),
            RedisMode::Sentinel => RedisTopology::Sentinel {
                sentinels: all,
                master: self.redis.sentinel_master.clone().unwrap_or_default(),
                auth: crate::state::MasterAuth {
                    username: self.redis.master_username.clone(),
                    password: self.redis.master_password.as_ref().map(|p| p.expose().to_string()),
                    db: self.redis.master_db,
                    tls: self.redis.master_tls,
                },
            },
        })
    }
}

/// How the Redis named by `sessions.store` is deployed.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum RedisMode {
    /// One server (`store` is its URL).
    #[default]
    Single,
    /// Redis Cluster: `store` and `nodes` are seed nodes.
    Cluster,
    /// Sentinel: `store` and `nodes` are sentinels; `sentinel_master` names the master.
    Sentinel,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSettings {
    #[serde(default)]
    pub mode: RedisMode,
    /// More cluster seed nodes or sentinels, as `redis://` URLs.
    #[serde(default)]
    pub nodes: Vec<SecretString>,
    #[serde(default)]
    pub sentinel_master: Option<String>,
    /// Sentinel mode: how to log in to the master Sentinel names (the sentinels' own
    /// credentials go in their URLs).
    #[serde(default)]
    pub master_username: Option<String>,
    #[serde(default)]
    pub master_password: Option<SecretString>,
    #[serde(default)]
    pub master_db: i64,
    #[serde(default)]
    pub master_tls: bool,
    /// Prepended to every key, so several gateways (or tests) can share one Redis.
    #[serde(default = "defaults::key_prefix")]
    pub key_prefix: String,
    /// Bound on every Redis operation.
    #[serde(default = "defaults::redis_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Most bytes of anonymous records (parked authorization requests, login attempts,
    /// replay markers and failure counters made before anyone logged in) alive at once, by
    /// their counted size, shared by every replica on this key prefix. Beyond it anonymous
    /// writes are refused (busy page, `temporarily_unavailable`); sessions, codes and refresh
    /// families never are.
    #[serde(default = "defaults::redis_anonymous_max_bytes")]
    pub anonymous_max_bytes: u64,
}

impl Default for RedisSettings {
    fn default() -> Self {
        Self {
            mode: RedisMode::Single,
            nodes: Vec::new(),
            sentinel_master: None,
            master_username: None,
            master_password: None,
            master_db: 0,
            master_tls: false,
            key_prefix: defaults::key_prefix(),
            timeout: defaults::redis_timeout(),
            anonymous_max_bytes: defaults::redis_anonymous_max_bytes(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lifetimes {
    #[serde(default = "defaults::code", with = "humantime_serde")]
    pub authorization_code: Duration,
    #[serde(default = "defaults::access_token", with = "humantime_serde")]
    pub access_token: Duration,
    #[serde(default = "defaults::id_token", with = "humantime_serde")]
    pub id_token: Duration,
    #[serde(default = "defaults::refresh_token", with = "humantime_serde")]
    pub refresh_token: Duration,
    /// How long a parked authorization request / upstream login attempt waits for the user.
    #[serde(default = "defaults::login_attempt", with = "humantime_serde")]
    pub login_attempt: Duration,
    /// Refresh-token family lifetime when `offline_access` was granted (survives logout).
    #[serde(default = "defaults::offline_refresh_token", with = "humantime_serde")]
    pub offline_refresh_token: Duration,
}

impl Default for Lifetimes {
    fn default() -> Self {
        Self {
            authorization_code: defaults::code(),
            access_token: defaults::access_token(),
            id_token: defaults::id_token(),
            refresh_token: defaults::refresh_token(),
            login_attempt: defaults::login_attempt(),
            offline_refresh_token: defaults::offline_refresh_token(),
        }
    }
}

/// Which upstream protocol a connector speaks: the upstream's `kind` key.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamKind {
    /// OpenID Connect (keys `issuer`, `client_id`, `client_secret`, `scopes`, …).
    #[default]
    Oidc,
    /// Apereo CAS protocol 3.0 / 2.0 (table `[upstreams.cas]`).
    Cas,
    /// An LDAP directory behind the gateway's own login form (table `[upstreams.ldap]`).
    Ldap,
    /// A client certificate presented over TLS (table `[upstreams.certificate]`).
    Certificate,
}

impl UpstreamKind {
    pub fn as_str(self) -> &'static str {
        match self {
            UpstreamKind::Oidc => "oidc",
            UpstreamKind::Cas => "cas",
            UpstreamKind::Ldap => "ldap",
            UpstreamKind::Certificate => "certificate",
        }
    }
}

/// One upstream: what every protocol shares (id, names, assurance, claim mapping, linking
/// trust) and its protocol's own section. Parsed by `connectors::parse_upstream`, which reads
/// `kind` and gives each protocol its keys.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSettings {
    /// `[a-z0-9-]+`; appears in `/upstream/{id}/callback` and the `idp` claim.
    pub id: String,
    pub name_vi: String,
    pub name_en: String,
    /// The protocol and its settings, chosen by `kind` (not a key of its own).
    #[serde(skip)]
    pub protocol: Protocol,
    /// Bound on every HTTP call to this upstream.
    #[serde(default = "defaults::upstream_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// `acr` the gateway asserts for logins through this upstream (one of
    /// `assurance.levels`); with `acr_claim`, the level when the claim says nothing known.
    #[serde(default = "defaults::upstream_acr")]
    pub acr: String,
    /// Upstream claim that tells the assurance of each login (e.g. the national e-ID level).
    #[serde(default)]
    pub acr_claim: Option<String>,
    /// Values of `acr_claim` → gateway `acr` (one of `assurance.levels`).
    #[serde(default)]
    pub acr_map: BTreeMap<String, String>,
    /// Which upstream claim holds each gateway attribute.
    #[serde(default)]
    pub claims: ClaimMapping,
    /// How far the account linking rules trust this upstream.
    #[serde(default)]
    pub linking: LinkingSettings,
}

impl UpstreamSettings {
    pub fn kind(&self) -> UpstreamKind {
        self.protocol.kind()
    }

    /// Every `acr` a login through this upstream can end with (for step-up).
    pub fn acr_values(&self) -> Vec<&str> {
        let mut all = vec![self.acr.as_str()];
        for v in self.acr_map.values() {
            if !all.contains(&v.as_str()) {
                all.push(v);
            }
        }
        all
    }
}

/// An upstream's protocol with the settings only that protocol uses, chosen by `kind`.
/// OpenID Connect keys sit in the upstream's own table (the default kind, so existing files
/// need no `kind`); CAS and LDAP have a table of their own (`[upstreams.cas]`,
/// `[upstreams.ldap]`). A new protocol is a new variant here and its connector in `broker`.
// Built once per upstream at start-up and never moved in a hot path: boxing buys nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Protocol {
    Oidc(OidcSettings),
    Cas(CasSettings),
    Ldap(LdapSettings),
    Certificate(CertificateLoginSettings),
}

impl Protocol {
    pub fn kind(&self) -> UpstreamKind {
        match self {
            Protocol::Oidc(_) => UpstreamKind::Oidc,
            Protocol::Cas(_) => UpstreamKind::Cas,
            Protocol::Ldap(_) => UpstreamKind::Ldap,
            Protocol::Certificate(_) => UpstreamKind::Certificate,
        }
    }
}

/// An upstream table with no keys of its own: OpenID Connect with every default (which
/// `check-config` then reports as missing its issuer and client id).
impl Default for Protocol {
    fn default() -> Self {
        Protocol::Oidc(OidcSettings::default())
    }
}

/// An OpenID Connect upstream (`kind = "oidc"`, the default).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcSettings {
    /// A ready-made set of claim names and assurance mapping (`"vneid"`); explicit keys win.
    #[serde(default)]
    pub profile: Option<UpstreamProfile>,
    /// The upstream's issuer; its `/.well-known/openid-configuration` is fetched and cached.
    #[serde(default)]
    pub issuer: String,
    /// The gateway's client id at the upstream.
    #[serde(default)]
    pub client_id: String,
    #[serde(default)]
    pub client_secret: Option<SecretValue>,
    #[serde(default = "defaults::upstream_scopes")]
    pub scopes: Vec<String>,
    /// Also call the upstream's userinfo endpoint and merge its claims.
    #[serde(default)]
    pub use_userinfo: bool,
    /// How long fetched discovery metadata and keys are reused.
    #[serde(default = "defaults::discovery_ttl", with = "humantime_serde")]
    pub discovery_ttl: Duration,
}

impl Default for OidcSettings {
    fn default() -> Self {
        OidcSettings {
            profile: None,
            issuer: String::new(),
            client_id: String::new(),
            client_secret: None,
            scopes: defaults::upstream_scopes(),
            use_userinfo: false,
            discovery_ttl: defaults::discovery_ttl(),
        }
    }
}

/// An Apereo CAS server (protocol 3.0, falling back to 2.0).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CasSettings {
    /// Base URL of the CAS server, e.g. `https://cas.example.gov.vn/cas`: the gateway uses
    /// `{server}/login`, `{server}/p3/serviceValidate` (then `{server}/serviceValidate`)
    /// and `{server}/logout`.
    pub server: String,
    /// Accept the server's single-logout requests (SAML `LogoutRequest` POSTs).
    #[serde(default = "defaults::yes")]
    pub single_logout: bool,
    /// Networks (CIDR) single-logout requests may come from (the client address, read behind
    /// `inbound.trusted_proxies`). Unset: the addresses the host of `server` resolves to.
    #[serde(default)]
    pub logout_from: Option<Vec<ipnet::IpNet>>,
    /// Take the upstream subject from this attribute instead of `<cas:user>` (which is the
    /// login name and may change).
    #[serde(default)]
    pub subject_attribute: Option<String>,
}

/// An LDAP directory (OpenLDAP, Active Directory) for officials' accounts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LdapSettings {
    /// `ldaps://host:636`, or `ldap://host:389` with `starttls = true`. Plain `ldap://`
    /// without StartTLS is refused except towards this machine (tests).
    pub url: String,
    #[serde(default)]
    pub starttls: bool,
    /// Extra trusted roots (PEM) for the directory's certificate, besides the public roots
    /// and `outbound.ca_file`.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Service account that searches for users.
    pub bind_dn: String,
    pub bind_password: SecretValue,
    /// Where users are searched (subtree).
    pub user_base: String,
    /// Search filter; `{username}` is replaced by the escaped login name.
    #[serde(default = "defaults::ldap_user_filter")]
    pub user_filter: String,
    /// Attribute holding the stable upstream subject (never the DN: DNs change on moves).
    #[serde(default = "defaults::ldap_subject_attribute")]
    pub subject_attribute: String,
    /// More attributes to read besides those named in `claims` (they become claims too).
    #[serde(default)]
    pub attributes: Vec<String>,
    /// Where groups are searched; unset = no group lookup.
    #[serde(default)]
    pub group_base: Option<String>,
    /// Group search filter; `{dn}` is the user's DN, `{username}` the login name (escaped).
    #[serde(default = "defaults::ldap_group_filter")]
    pub group_filter: String,
    /// Group attribute whose values become the `groups` claim.
    #[serde(default = "defaults::ldap_group_attribute")]
    pub group_attribute: String,
    /// Failed logins of one account name before it is locked out.
    #[serde(default = "defaults::ldap_max_failures")]
    pub max_failures: u32,
    /// Failed logins from one client address before it is locked out.
    #[serde(default = "defaults::ldap_max_failures_per_ip")]
    pub max_failures_per_ip: u32,
    /// Failures count within this window.
    #[serde(default = "defaults::ldap_failure_window", with = "humantime_serde")]
    pub failure_window: Duration,
    /// How long a lockout lasts.
    #[serde(default = "defaults::ldap_lockout", with = "humantime_serde")]
    pub lockout: Duration,
    /// Every failed login answers no sooner than this after the form was posted, so that an
    /// unknown account and a wrong password take the same time.
    #[serde(default = "defaults::ldap_min_failure_time", with = "humantime_serde")]
    pub min_failure_time: Duration,
}

/// Certificate login (`kind = "certificate"`): which certificates are accepted and what is
/// read from them. The browser presents its certificate at the host of `[certificate]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateLoginSettings {
    /// PEM bundle of the accepted root CAs (trust anchors).
    pub ca_file: PathBuf,
    /// PEM bundle of intermediate CAs, for browsers that send only their own certificate.
    #[serde(default)]
    pub intermediates_file: Option<PathBuf>,
    /// CRL files (DER or PEM), re-read every `crl_refresh`.
    #[serde(default)]
    pub crl_files: Vec<PathBuf>,
    /// CRL URLs, fetched through the outbound HTTP client every `crl_refresh` and cached in
    /// memory (a login never waits for a download).
    #[serde(default)]
    pub crl_urls: Vec<String>,
    /// How often CRLs are read and fetched again (1 min to 24 h).
    #[serde(default = "defaults::crl_refresh", with = "humantime_serde")]
    pub crl_refresh: Duration,
    /// What happens when the revocation status of a certificate cannot be known (no current
    /// CRL of its issuer: none configured, a download failed, or the CRL is past its
    /// `nextUpdate`): `fail_closed` (refuse, the default) or `fail_open` (accept, and log it).
    #[serde(default)]
    pub revocation: RevocationPolicy,
    /// Ask the OCSP responder a certificate names (Authority Information Access) about it,
    /// besides the CRLs: answers are cached until their `nextUpdate`; a revocation found by
    /// either refuses, and when neither can tell, `revocation` decides.
    #[serde(default = "defaults::yes")]
    pub ocsp: bool,
    /// The extended key usage a certificate must allow when it lists any: `client_auth`
    /// (TLS client authentication, the default) or `any`.
    #[serde(default)]
    pub extended_key_usage: ExtendedKeyUsage,
    /// Refuse certificates from which no valid 12-digit personal identification number is
    /// read (organisation certificates, passport-only subjects): the login cannot be matched
    /// to a person's account.
    #[serde(default = "defaults::yes")]
    pub require_national_id: bool,
    /// How claims are read from the subject. Unset: the national ID from `UID` values
    /// prefixed `CCCD:` or `CMND:`.
    #[serde(default = "defaults::certificate_rules")]
    pub extract: Vec<ExtractionRule>,
}

impl CertificateLoginSettings {
    /// The extraction rules used when `extract` is not set.
    pub fn default_rules() -> Vec<ExtractionRule> {
        defaults::certificate_rules()
    }
}

/// One extraction rule: every value of `from` that starts with `prefix` (ASCII case
/// ignored), the prefix removed, becomes claim `claim` (the first match wins per claim).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ExtractionRule {
    pub from: SubjectField,
    #[serde(default)]
    pub prefix: String,
    pub claim: String,
}

/// A field of a certificate the extraction rules read.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SubjectField {
    /// Subject `UID` (0.9.2342.19200300.100.1.1).
    Uid,
    /// Subject `serialNumber` (2.5.4.5).
    SerialNumber,
    /// Subject common name.
    Cn,
    /// Subject `emailAddress`, then the subject alternative name's e-mail addresses.
    Email,
    /// Subject organisation.
    O,
    /// Subject organisational unit.
    Ou,
    /// Subject title.
    Title,
    /// Subject locality.
    L,
    /// Subject state or province.
    St,
}

/// See [`CertificateLoginSettings::revocation`].
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum RevocationPolicy {
    #[default]
    FailClosed,
    FailOpen,
}

/// See [`CertificateLoginSettings::extended_key_usage`].
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum ExtendedKeyUsage {
    #[default]
    ClientAuth,
    Any,
}

/// Account-linking trust of one upstream (see README "Accounts").
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkingSettings {
    /// The upstream verified the national ID numbers it asserts: a valid number links a first
    /// login to the account already holding it. Untrusted (default): the number is recorded
    /// unverified and never links by itself.
    #[serde(default)]
    pub trust_national_id: bool,
}

/// Which `sub` a client receives.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum SubjectType {
    /// The account's `sub`, the same for every client.
    #[default]
    Public,
    /// A `sub` per sector identifier (OIDC Core §8.1).
    Pairwise,
}

/// Upstream claim names for each unified attribute. Unset = not provided by that upstream.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimMapping {
    pub name: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub username: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub birthdate: Option<DateClaim>,
    pub gender: Option<String>,
    pub national_id: Option<String>,
    pub official_code: Option<String>,
    pub org_unit: Option<String>,
    pub position: Option<String>,
    pub roles: Option<String>,
}

impl ClaimMapping {
    /// Every upstream claim name the mapping reads, in a fixed order (the birthdate's last).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        [
            &self.name,
            &self.given_name,
            &self.family_name,
            &self.username,
            &self.email,
            &self.phone,
            &self.gender,
            &self.national_id,
            &self.official_code,
            &self.org_unit,
            &self.position,
            &self.roles,
        ]
        .into_iter()
        .flatten()
        .map(String::as_str)
        .chain(self.birthdate.as_ref().map(DateClaim::claim))
    }
}

/// A date claim: its name and, when not ISO `YYYY-MM-DD`, its format.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum DateClaim {
    Iso(String),
    Formatted { claim: String, format: DateFormat },
}

impl DateClaim {
    pub fn claim(&self) -> &str {
        match self {
            DateClaim::Iso(c) | DateClaim::Formatted { claim: c, .. } => c,
        }
    }
    pub fn format(&self) -> DateFormat {
        match self {
            DateClaim::Iso(_) => DateFormat::Iso,
            DateClaim::Formatted { format, .. } => *format,
        }
    }
}

/// Date layouts seen in the legacy systems.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
pub enum DateFormat {
    #[serde(rename = "YYYY-MM-DD")]
    Iso,
    #[serde(rename = "DD/MM/YYYY")]
    DayMonthYear,
    #[serde(rename = "YYYYMMDD")]
    Compact,
}

/// OAuth grant types a client may use.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum GrantType {
    AuthorizationCode,
    RefreshToken,
    ClientCredentials,
}

impl GrantType {
    pub fn as_str(self) -> &'static str {
        match self {
            GrantType::AuthorizationCode => "authorization_code",
            GrantType::RefreshToken => "refresh_token",
            GrantType::ClientCredentials => "client_credentials",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientSettings {
    pub client_id: String,
    /// Human name shown in logs and pages.
    #[serde(default)]
    pub name: Option<String>,
    /// Absent = public client (PKCE S256 mandatory).
    #[serde(default)]
    pub client_secret: Option<SecretValue>,
    /// Every authorization request must carry a PKCE challenge (RFC 9700 §2.1.1). `false` is
    /// an opt-out for legacy confidential clients only (`check-config` warns about it).
    #[serde(default = "defaults::yes")]
    pub require_pkce: bool,
    /// Required (at least one) for the code flow; a `client_credentials`-only client has
    /// none.
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    #[serde(default)]
    pub post_logout_redirect_uris: Vec<String>,
    /// Scopes this client may request.
    #[serde(default = "defaults::client_scopes")]
    pub scopes: Vec<String>,
    #[serde(default = "defaults::grant_types")]
    pub grant_types: Vec<GrantType>,
    #[serde(default = "defaults::id_token_alg")]
    pub id_token_signed_response_alg: SigningAlg,
    #[serde(default, with = "humantime_serde")]
    pub access_token_lifetime: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub refresh_token_lifetime: Option<Duration>,
    /// How the client authenticates at /token, /par, /introspect and /revoke. Default:
    /// `client_secret_basic` (also accepting `client_secret_post`) with a secret, else `none`.
    #[serde(default)]
    pub token_endpoint_auth_method: Option<ClientAuthMethod>,
    /// Public keys for `private_key_jwt`, inline as a JWK set …
    #[serde(default)]
    pub jwks: Option<serde_json::Value>,
    /// … or fetched from this URL (cached).
    #[serde(default)]
    pub jwks_uri: Option<String>,
    /// Resource servers (client ids) this client's access tokens are also meant for; those
    /// may introspect them.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// OpenID Connect Back-Channel Logout 1.0 receiver.
    #[serde(default)]
    pub backchannel_logout_uri: Option<String>,
    #[serde(default = "defaults::yes")]
    pub backchannel_logout_session_required: bool,
    /// OpenID Connect Front-Channel Logout 1.0 page, loaded in an iframe at logout.
    #[serde(default)]
    pub frontchannel_logout_uri: Option<String>,
    #[serde(default = "defaults::yes")]
    pub frontchannel_logout_session_required: bool,
    /// The lowest assurance (`acr`, one of `assurance.levels`) this client accepts; sessions
    /// below it are stepped up whatever the request says.
    #[serde(default)]
    pub min_acr: Option<String>,
    /// `public` (default) or `pairwise`.
    #[serde(default)]
    pub subject_type: SubjectType,
    /// Sector of a pairwise client: clients sharing it see the same `sub`. Defaults to the
    /// host of the redirect URIs (which must then all share one host).
    #[serde(default)]
    pub sector_identifier: Option<String>,
    /// Authorization requests must be pushed to `/par` first (RFC 9126); a confidential
    /// client only.
    #[serde(default)]
    pub require_pushed_authorization_requests: bool,
    /// Token requests must carry a DPoP proof (RFC 9449): every access token of this client
    /// is bound to a key the client holds.
    #[serde(default)]
    pub require_dpop: bool,
    /// `tls_client_auth` (RFC 8705 §2.1.2): the subject DN (RFC 4514, most specific first,
    /// e.g. `"CN=portal,O=So TT&TT,C=VN"`) the client's certificate must have. Exactly one of
    /// this and the `tls_client_auth_san_*` settings.
    #[serde(default)]
    pub tls_client_auth_subject_dn: Option<SubjectDn>,
    /// `tls_client_auth`: a DNS name among the certificate's subject alternative names.
    #[serde(default)]
    pub tls_client_auth_san_dns: Option<String>,
    /// `tls_client_auth`: a URI among the certificate's subject alternative names.
    #[serde(default)]
    pub tls_client_auth_san_uri: Option<String>,
    /// `tls_client_auth`: an IP address among the certificate's subject alternative names.
    #[serde(default)]
    pub tls_client_auth_san_ip: Option<std::net::IpAddr>,
    /// `tls_client_auth`: an e-mail address among the certificate's subject alternative names.
    #[serde(default)]
    pub tls_client_auth_san_email: Option<String>,
    /// Every access token of this client is bound to its TLS client certificate
    /// (`cnf.x5t#S256`, RFC 8705 §3), and a public client's refresh tokens too, whatever
    /// authentication it uses; token requests without a certificate are refused. A client
    /// that authenticates with its certificate gets bound tokens without this.
    #[serde(default)]
    pub tls_client_certificate_bound_access_tokens: bool,
}

impl ClientSettings {
    /// Whether the client authenticates (a secret, a key or a certificate), as opposed to a
    /// public client.
    pub fn is_confidential(&self) -> bool {
        self.client_secret.is_some()
            || self.token_endpoint_auth_method.is_some_and(ClientAuthMethod::is_confidential)
    }

    /// The sector a pairwise `sub` is computed for: `sector_identifier`, or the single host of
    /// the redirect URIs.
    pub fn sector(&self) -> Option<String> {
        if let Some(s) = &self.sector_identifier {
            return Some(s.clone());
        }
        let hosts: std::collections::BTreeSet<String> = self
            .redirect_uris
            .iter()
            .filter_map(|u| url::Url::parse(u).ok())
            .filter_map(|u| u.host_str().map(str::to_string))
            .collect();
        if hosts.len() == 1 { hosts.into_iter().next() } else { None }
    }
}

/// Client authentication methods at the token, introspection and revocation endpoints.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuthMethod {
    ClientSecretBasic,
    ClientSecretPost,
    PrivateKeyJwt,
    /// RFC 8705 §2.1: a certificate from `mtls.ca_file`'s CAs with the registered subject.
    TlsClientAuth,
    /// RFC 8705 §2.2: a certificate whose key is one of the client's `jwks` / `jwks_uri`.
    SelfSignedTlsClientAuth,
    None,
}

impl ClientAuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            ClientAuthMethod::ClientSecretBasic => "client_secret_basic",
            ClientAuthMethod::ClientSecretPost => "client_secret_post",
            ClientAuthMethod::PrivateKeyJwt => "private_key_jwt",
            ClientAuthMethod::TlsClientAuth => "tls_client_auth",
            ClientAuthMethod::SelfSignedTlsClientAuth => "self_signed_tls_client_auth",
            ClientAuthMethod::None => "none",
        }
    }

    /// Whether the client proves itself with something it holds (not `none`).
    pub fn is_confidential(self) -> bool {
        self != ClientAuthMethod::None
    }
}

mod defaults {
    use super::*;
    pub fn limits_enabled() -> bool {
        true
    }
    pub fn limits_window() -> Duration {
        Duration::from_secs(60)
    }
    pub fn limits_browser_per_address() -> u32 {
        1_200
    }
    pub fn limits_token_per_address() -> u32 {
        6_000
    }
    pub fn limits_token_per_client() -> u32 {
        6_000
    }
    pub fn listen() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 8080))
    }
    pub fn key_dir() -> PathBuf {
        PathBuf::from("keys")
    }
    pub fn key_reload_interval() -> Duration {
        Duration::from_secs(60)
    }
    pub fn accounts_url() -> SecretString {
        SecretString::from("sqlite://data/accounts.db?mode=rwc")
    }
    pub fn max_connections() -> u32 {
        8
    }
    pub fn proof_window() -> Duration {
        Duration::from_secs(10 * 60)
    }
    pub fn account_cache_ttl() -> Duration {
        Duration::from_secs(10)
    }
    pub fn session_store() -> SecretString {
        SecretString::from("memory")
    }
    pub fn memory_max_entries() -> usize {
        2_000_000
    }
    pub fn memory_max_bytes() -> usize {
        1024 * 1024 * 1024
    }
    pub fn memory_anonymous_percent() -> u8 {
        5
    }
    /// 1 MiB: several hundred logins under way at once behind one address (an office's NAT).
    pub fn anonymous_per_address() -> u64 {
        1024 * 1024
    }
    pub fn anonymous_reserve_percent() -> u8 {
        50
    }
    /// 8 KiB: a person's login (parked request, login attempt, counters) two or three times.
    pub fn anonymous_reserve_per_address() -> u64 {
        8 * 1024
    }
    pub fn key_prefix() -> String {
        "sso:".into()
    }
    pub fn redis_timeout() -> Duration {
        Duration::from_secs(2)
    }
    /// 56 MiB counted: with Redis' allocator rounding, about 60 MiB of `used_memory`, within
    /// the 64 MiB that issue #11 allows an anonymous flood (the shipped Redis has 256 MiB).
    pub fn redis_anonymous_max_bytes() -> u64 {
        56 * 1024 * 1024
    }
    pub fn cookie_name() -> String {
        "sso_session".into()
    }
    pub fn idle_timeout() -> Duration {
        Duration::from_secs(30 * 60)
    }
    pub fn absolute_timeout() -> Duration {
        Duration::from_secs(12 * 3600)
    }
    pub fn code() -> Duration {
        Duration::from_secs(60)
    }
    pub fn access_token() -> Duration {
        Duration::from_secs(5 * 60)
    }
    pub fn id_token() -> Duration {
        Duration::from_secs(5 * 60)
    }
    pub fn refresh_token() -> Duration {
        Duration::from_secs(8 * 3600)
    }
    pub fn offline_refresh_token() -> Duration {
        Duration::from_secs(30 * 24 * 3600)
    }
    pub fn yes() -> bool {
        true
    }
    pub fn par_lifetime() -> Duration {
        Duration::from_secs(60)
    }
    pub fn admin_scope() -> String {
        "admin".into()
    }

    pub fn admin_role() -> String {
        "quan-tri".into()
    }

    pub fn dpop_proof_max_age() -> Duration {
        Duration::from_secs(60)
    }
    pub fn dpop_nonce_lifetime() -> Duration {
        Duration::from_secs(300)
    }
    pub fn login_attempt() -> Duration {
        Duration::from_secs(10 * 60)
    }
    pub fn upstream_scopes() -> Vec<String> {
        vec!["openid".into(), "profile".into(), "email".into()]
    }
    pub fn upstream_timeout() -> Duration {
        Duration::from_secs(5)
    }
    pub fn discovery_ttl() -> Duration {
        Duration::from_secs(15 * 60)
    }
    pub fn upstream_acr() -> String {
        ACR_PASSWORD.into()
    }
    pub fn assurance_levels() -> Vec<String> {
        vec![ACR_PASSWORD.into(), ACR_VNEID_LEVEL1.into(), ACR_VNEID_LEVEL2.into(), ACR_CERTIFICATE.into()]
    }
    pub fn crl_refresh() -> Duration {
        Duration::from_secs(3600)
    }
    pub fn certificate_rules() -> Vec<ExtractionRule> {
        ["CCCD:", "CMND:"]
            .into_iter()
            .map(|prefix| ExtractionRule {
                from: SubjectField::Uid,
                prefix: prefix.into(),
                claim: "national_id".into(),
            })
            .collect()
    }
    pub fn ldap_user_filter() -> String {
        "(&(objectClass=person)(uid={username}))".into()
    }
    pub fn ldap_subject_attribute() -> String {
        "entryUUID".into()
    }
    pub fn ldap_group_filter() -> String {
        "(member={dn})".into()
    }
    pub fn ldap_group_attribute() -> String {
        "cn".into()
    }
    pub fn ldap_max_failures() -> u32 {
        5
    }
    pub fn ldap_max_failures_per_ip() -> u32 {
        30
    }
    pub fn ldap_failure_window() -> Duration {
        Duration::from_secs(15 * 60)
    }
    pub fn ldap_lockout() -> Duration {
        Duration::from_secs(15 * 60)
    }
    pub fn ldap_min_failure_time() -> Duration {
        Duration::from_millis(600)
    }
    pub fn client_scopes() -> Vec<String> {
        ["openid", "profile", "email", "phone"].iter().map(|s| s.to_string()).collect()
    }
    pub fn grant_types() -> Vec<GrantType> {
        vec![GrantType::AuthorizationCode, GrantType::RefreshToken]
    }
    pub fn id_token_alg() -> SigningAlg {
        SigningAlg::RS256
    }
}

/// Why a configuration could not be used; `check-config` prints every problem.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{} problem(s) in the configuration:\n{}", .0.len(), Problem::list(.0))]
    Invalid(Vec<Problem>),
}

/// The older names of five settings, still read besides the environment layer's own
/// `SSO_GATEWAY__SECTION__KEY` names (documented in config/README.md).
pub const ENV_OVERRIDES: &[(&str, &str)] = environment::LEGACY;
/// Prefix of the environment layer's variables (`SSO_GATEWAY__SESSIONS__STORE`).
pub const ENV_PREFIX: &str = environment::PREFIX;

impl Settings {
    /// Reads `path`, lays the process environment over it (`SSO_GATEWAY__SECTION__KEY`, see
    /// config/README.md) and validates. Every problem found is returned at once.
    pub fn load(path: &Path) -> Result<Settings, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        let env: BTreeMap<String, String> =
            std::env::vars().filter(|(k, _)| k.starts_with("SSO_GATEWAY_")).collect();
        Self::from_toml_with_env(&text, &env)
    }

    /// Parses and validates a TOML document with the given environment overrides.
    pub fn from_toml_with_env(text: &str, env: &BTreeMap<String, String>) -> Result<Settings, ConfigError> {
        validate::parse_and_validate(text, env)
    }

    /// Parses and validates a TOML document with no environment overrides.
    pub fn from_toml(text: &str) -> Result<Settings, ConfigError> {
        Self::from_toml_with_env(text, &BTreeMap::new())
    }

    /// What is allowed but weakens security (printed by `check-config`, logged by `serve`).
    pub fn warnings(&self) -> Vec<Problem> {
        validate::warnings(self)
    }

    /// The issuer without a trailing slash.
    pub fn issuer(&self) -> &str {
        self.issuer.trim_end_matches('/')
    }

    /// Every signing algorithm some client needs.
    pub fn algorithms_in_use(&self) -> Vec<SigningAlg> {
        let mut algs = vec![SigningAlg::RS256];
        for c in &self.clients {
            if !algs.contains(&c.id_token_signed_response_alg) {
                algs.push(c.id_token_signed_response_alg);
            }
        }
        algs
    }
}
