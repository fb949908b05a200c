//! Test-only support, never part of the product: private Redis, PostgreSQL and OpenLDAP
//! servers for sso-gateway's test suites, so that `cargo test` needs only Debian's packages
//! (`redis-server`, `postgresql`, `slapd`), not a running service.
//!
//! Owns: finding the binaries, starting each server on a free loopback port in a temporary
//! folder of its own, waiting for the server's "ready" log line (an event, not a poll), and
//! stopping it again: when its handle is dropped, and — for the servers shared by a whole test
//! binary, whose handles live in statics and are never dropped — when the test process ends,
//! however it ends (a watchdog shell waits on a pipe only the test process holds open).
//!
//! Must not touch: any system-wide service or folder. An external server is used only when the
//! suite is told so (`SSO_TEST_REDIS_URL`, `SSO_TEST_POSTGRES_URL`); the tests then isolate
//! themselves by key prefix or schema as they always do.

pub mod ocsp;
pub mod pki;
mod postgres;
mod redis;
mod server;

use std::fmt;
use std::path::PathBuf;

pub use postgres::{Postgres, postgres_url};
pub use redis::{Redis, redis_url};
pub use server::{Server, Spec, free_port};

/// Why a private server could not be started.
#[derive(Debug)]
pub enum Error {
    /// The binary is not installed; says which Debian package provides it.
    Missing {
        program: &'static str,
        package: &'static str,
    },
    /// The server (or a set-up command) ended or stayed silent before it was ready.
    NotReady {
        program: String,
        output: String,
    },
    Io {
        what: String,
        source: std::io::Error,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Missing { program, package } => write!(
                f,
                "`{program}` not found: the tests start their own server; install Debian's package \
                 `{package}` (apt-get install {package})"
            ),
            Error::NotReady { program, output } => {
                write!(f, "{program} did not start: {}", output.trim().replace('\n', " | "))
            }
            Error::Io { what, source } => write!(f, "{what}: {source}"),
        }
    }
}

impl std::error::Error for Error {}

pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

/// Ends the test process with one line on stderr instead of a panic in every test that
/// needs the server (a missing package is a fact about the machine, not about a test).
pub trait OrExit<T> {
    fn or_exit(self) -> T;
}

impl<T> OrExit<T> for Result<T, Error> {
    fn or_exit(self) -> T {
        match self {
            Ok(v) => v,
            Err(e) => {
                // Straight to the stream: libtest captures `eprintln!` of a test, and the
                // capture is lost when the process exits.
                use std::io::Write;
                let _ = writeln!(std::io::stderr(), "error: {e}");
                std::process::exit(101)
            }
        }
    }
}

/// The server `env` names if set, else the URL of a private server `start` starts (a failure
/// ends the process with one line).
pub(crate) fn external_or(env: &str, start: impl FnOnce() -> Result<String, Error>) -> String {
    match std::env::var(env) {
        Ok(url) if !url.is_empty() => url,
        _ => start().or_exit(),
    }
}

/// Finds a server binary: `PATH`, the sbin folders, then Debian's versioned PostgreSQL folders
/// (`/usr/lib/postgresql/<newest>/bin`), which are not on `PATH`.
pub fn binary(program: &'static str, package: &'static str) -> Result<PathBuf, Error> {
    let mut dirs: Vec<PathBuf> =
        std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect()).unwrap_or_default();
    dirs.extend(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from));
    if let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") {
        let mut versions: Vec<(u32, PathBuf)> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
            .collect();
        versions.sort();
        dirs.extend(versions.into_iter().rev().map(|(_, p)| p));
    }
    dirs.into_iter().map(|d| d.join(program)).find(|p| p.is_file()).ok_or(Error::Missing { program, package })
}
