//! Probe of a directory upstream (OpenLDAP, Active Directory): the connection with the
//! configured TLS, the service account's bind, the user base, and — given a test user's login
//! name — that the user filter finds exactly that entry with the subject attribute, and its
//! groups. No user password is ever sent.

use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::time::Duration;

use ldap3::{LdapConnAsync, LdapConnSettings, LdapError, Scope, SearchEntry, ldap_escape};

use super::Check;
use crate::config::{LdapSettings, UpstreamSettings};

pub(super) async fn probe(
    u: &UpstreamSettings,
    outbound_ca: Option<&Path>,
    user: Option<&str>,
) -> Vec<Check> {
    let Some(ldap) = &u.ldap else {
        return vec![Check::fail("configuration", "kind = \"ldap\" without [upstreams.ldap]")];
    };
    let mut checks = Vec::new();
    // Each operation is bounded by `timeout`; the whole exchange by a few of them.
    let limit = u.timeout * 6;
    if tokio::time::timeout(limit, exchange(&u.id, ldap, u.timeout, outbound_ca, user, &mut checks))
        .await
        .is_err()
    {
        checks.push(Check::fail("directory", format!("no complete answer within {limit:?}")));
    }
    checks
}

fn describe(e: &LdapError) -> String {
    match e {
        LdapError::LdapResult { result } => {
            let name = match result.rc {
                32 => " (no such object)",
                49 => " (invalid credentials)",
                50 => " (insufficient access rights)",
                53 => " (unwilling to perform)",
                _ => "",
            };
            let text = if result.text.is_empty() { String::new() } else { format!(": {}", result.text) };
            format!("result code {}{name}{text}", result.rc)
        }
        other => super::chain(other),
    }
}

async fn exchange(
    id: &str,
    ldap: &LdapSettings,
    t: Duration,
    outbound_ca: Option<&Path>,
    user: Option<&str>,
    checks: &mut Vec<Check>,
) {
    let mut settings = LdapConnSettings::new().set_conn_timeout(t).set_starttls(ldap.starttls);
    if ldap.starttls || ldap.url.starts_with("ldaps:") {
        match crate::broker::ldap::tls_config(id, [outbound_ca, ldap.ca_file.as_deref()]) {
            Ok(tls) => settings = settings.set_config(tls),
            Err(e) => {
                checks.push(Check::fail("connection", e.to_string()));
                return;
            }
        }
    }
    let tls = if ldap.url.starts_with("ldaps:") {
        " (LDAPS)"
    } else if ldap.starttls {
        " (StartTLS)"
    } else {
        " (no TLS: only to this machine)"
    };
    let (conn, mut conn_ldap) = match LdapConnAsync::with_settings(settings, &ldap.url).await {
        Ok(c) => c,
        Err(e) => {
            checks.push(Check::fail("connection", format!("{}: {}", ldap.url, describe(&e))));
            return;
        }
    };
    ldap3::drive!(conn);
    checks.push(Check::ok("connection", format!("{}{tls}", ldap.url)));
    let password = ldap.bind_password.value().unwrap_or_default().to_string();
    match conn_ldap.with_timeout(t).simple_bind(&ldap.bind_dn, &password).await.and_then(|r| r.success()) {
        Ok(_) => checks.push(Check::ok("service account", format!("{} binds", ldap.bind_dn))),
        Err(e) => {
            checks.push(Check::fail(
                "service account",
                format!("{} cannot bind: {}", ldap.bind_dn, describe(&e)),
            ));
            let _ = conn_ldap.unbind().await;
            return;
        }
    }
    let bases = std::iter::once(("user base", &ldap.user_base))
        .chain(ldap.group_base.iter().map(|g| ("group base", g)));
    for (name, base) in bases {
        let found = conn_ldap
            .with_timeout(t)
            .search(base, Scope::Base, "(objectClass=*)", ["1.1"])
            .await
            .and_then(|r| r.success());
        checks.push(match found {
            Ok((entries, _)) if !entries.is_empty() => Check::ok(name, format!("{base} is readable")),
            Ok(_) => Check::fail(name, format!("{base}: not found or not readable by the service account")),
            Err(e) => Check::fail(name, format!("{base}: {}", describe(&e))),
        });
    }
    match user {
        None => checks.push(Check::warn(
            "test user",
            "not checked: pass --ldap-user NAME to look up one official as a login would",
        )),
        Some(name) => test_user(ldap, t, name, &mut conn_ldap, checks).await,
    }
    let _ = conn_ldap.unbind().await;
}

/// Finds `name` as a login does and reads the attributes and groups a login would.
async fn test_user(
    ldap: &LdapSettings,
    t: Duration,
    name: &str,
    conn: &mut ldap3::Ldap,
    checks: &mut Vec<Check>,
) {
    let filter = ldap.user_filter.replace("{username}", &ldap_escape(name));
    let wanted = [ldap.subject_attribute.as_str()];
    let found = conn
        .with_timeout(t)
        .search(&ldap.user_base, Scope::Subtree, &filter, wanted)
        .await
        .and_then(|r| r.success());
    let entries = match found {
        Ok((entries, _)) => entries,
        Err(e) => {
            checks.push(Check::fail("test user", format!("search {filter}: {}", describe(&e))));
            return;
        }
    };
    let entry = match <[_; 1]>::try_from(entries) {
        Ok([only]) => match std::panic::catch_unwind(AssertUnwindSafe(|| SearchEntry::construct(only))) {
            Ok(entry) => entry,
            Err(_) => {
                checks.push(Check::fail("test user", "the directory sent a malformed entry"));
                return;
            }
        },
        Err(entries) if entries.is_empty() => {
            checks.push(Check::fail(
                "test user",
                format!("no entry under {} matches {filter}", ldap.user_base),
            ));
            return;
        }
        Err(entries) => {
            checks.push(Check::fail(
                "test user",
                format!("{} entries match {filter}: a login needs exactly one", entries.len()),
            ));
            return;
        }
    };
    let subject = entry
        .attrs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(&ldap.subject_attribute))
        .map(|(_, v)| v.len())
        .or_else(|| {
            entry
                .bin_attrs
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(&ldap.subject_attribute))
                .map(|(_, v)| v.len())
        });
    checks.push(match subject {
        Some(1) => Check::ok("test user", format!("{name} is {} with one {}", entry.dn, ldap.subject_attribute)),
        _ => Check::fail(
            "test user",
            format!(
                "{name} is {}, but it has no single {} (the subject attribute): grant the service account read \
                 access to it, or set ldap.subject_attribute",
                entry.dn, ldap.subject_attribute
            ),
        ),
    });
    let Some(base) = &ldap.group_base else { return };
    let filter = ldap
        .group_filter
        .replace("{dn}", &ldap_escape(entry.dn.as_str()))
        .replace("{username}", &ldap_escape(name));
    let found = conn
        .with_timeout(t)
        .search(base, Scope::Subtree, &filter, [ldap.group_attribute.as_str()])
        .await
        .and_then(|r| r.success());
    checks.push(match found {
        Ok((groups, _)) => {
            let mut names: Vec<String> = groups
                .into_iter()
                .filter_map(|g| std::panic::catch_unwind(AssertUnwindSafe(|| SearchEntry::construct(g))).ok())
                .flat_map(|g| {
                    g.attrs
                        .into_iter()
                        .filter(|(k, _)| k.eq_ignore_ascii_case(&ldap.group_attribute))
                        .flat_map(|(_, v)| v)
                })
                .collect();
            names.sort();
            names.dedup();
            Check::ok("groups", format!("{} group(s): {}", names.len(), names.join(", ")))
        }
        Err(e) => Check::fail("groups", format!("search {filter}: {}", describe(&e))),
    });
}
