//! sso-gateway: an OpenID Connect identity broker for the merged Ho Chi Minh City.
//!
//! Parts (see README "Architecture"): `provider` answers relying parties, `broker` talks to
//! the former provincial login systems, `login` joins them, `accounts` keeps unified
//! accounts, `session` and `state` keep short-lived state, `keys` signs, `web` renders,
//! `config` loads settings, `cli` is the command line. The tooling lives beside the product,
//! never in this library: the simulated login systems in `tools/legacy-idp`, the benchmark in
//! `tools/sso-bench`, the `demo` command in the binary (`src/main.rs`, feature `demo`).

pub mod account;
pub mod accounts;
pub mod admin;
pub mod app;
pub mod broker;
pub mod cli;
pub mod clock;
pub mod config;
pub mod ids;
pub mod keys;
pub mod limits;
pub mod login;
pub mod logout;
pub mod metrics;
pub mod provider;
pub mod session;
pub mod state;
pub mod telemetry;
pub mod tls;
pub mod web;

/// Installs aws-lc-rs as the process-wide rustls crypto provider (idempotent).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// One part's state (`provider::ProviderState`, `broker::BrokerState`, `login::LoginState`,
/// `logout::LogoutState`, `admin::AdminState`, `account::AccountPageState`,
/// `broker::CertificateStepState`): the handles that part uses, behind one `Arc`, so that a handler's
/// copy costs one reference count. `app` builds each once and hands it out by `FromRef`.
pub struct PartState<T>(std::sync::Arc<T>);

impl<T> PartState<T> {
    pub fn new(parts: T) -> Self {
        PartState(std::sync::Arc::new(parts))
    }
}

impl<T> Clone for PartState<T> {
    fn clone(&self) -> Self {
        PartState(self.0.clone())
    }
}

impl<T> std::ops::Deref for PartState<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// Shared settings of the property tests beside the code.
#[cfg(test)]
pub(crate) mod fuzzing {
    /// `cases` per property in CI; `PROPTEST_CASES` overrides it for a longer local run
    /// (`PROPTEST_CASES=100000 cargo test --lib ...`, see README "Hostile input").
    pub fn config(cases: u32) -> proptest::test_runner::Config {
        let cases = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(cases);
        proptest::test_runner::Config { cases, failure_persistence: None, ..Default::default() }
    }
}
