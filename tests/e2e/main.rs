//! End-to-end tests: the real gateway and the simulated login systems (three provinces and
//! VNeID, `legacy_idp::SYSTEMS`) on ephemeral ports, driven over HTTP as an RP and a browser
//! would. One binary, one module per area.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod helpers;
mod key_rotation;
mod slapd;

mod account_page;
mod accounts;
mod admin_api;
mod admin_cli;
mod admin_console;
mod authorize_errors;
mod bounded_state;
mod browser;
mod cas;
mod certificate_login;
mod certificate_ocsp;
mod demo_certificate;
mod discovery;
mod dpop;
mod hardening;
mod hostile;
mod integration_kit;
mod interop;
mod ldap;
mod link_confirm;
mod login_flows;
mod logout;
mod mtls;
mod mtls_listener;
mod operations;
mod par;
mod rate_limits;
mod redis_outage;
mod redis_topologies;
mod replicas;
mod step_up;
mod token_lifecycle;
mod token_management;
mod token_revocation;
mod upstream_failures;
mod upstream_probe;
