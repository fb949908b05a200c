//! A private PostgreSQL cluster (`initdb` + `postgres`) shared by every test of a test binary.

use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

use crate::server::{Server, Spec, free_port, unprivileged_user};
use crate::{Error, binary, external_or, io};

/// The PostgreSQL for tests (they isolate themselves by schema): `SSO_TEST_POSTGRES_URL` if
/// set, else a private cluster started on first use and shared by the whole test binary; it
/// stops, and its folder goes, when the test process ends.
pub fn postgres_url() -> String {
    static SHARED: OnceLock<String> = OnceLock::new();
    SHARED.get_or_init(|| external_or("SSO_TEST_POSTGRES_URL", || Ok(Postgres::start()?.leak()))).clone()
}

/// A private cluster: superuser `postgres` (trust authentication on loopback), database
/// `postgres`, no fsync (test data need not survive a crash).
pub struct Postgres {
    pub port: u16,
    _server: Server,
}

impl Postgres {
    pub fn start() -> Result<Postgres, Error> {
        let initdb = binary("initdb", "postgresql")?;
        let postgres = binary("postgres", "postgresql")?;
        // PostgreSQL refuses to run as root: as root, the cluster belongs to `postgres`.
        let user = unprivileged_user();
        let dir = tempfile::Builder::new()
            .prefix("sso-test-postgres-")
            .tempdir()
            .map_err(io("temporary folder"))?
            .keep();
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
                .map_err(io("handing the folder to postgres"))?;
        }
        let data = dir.join("data");
        let mut command = Command::new(&initdb);
        command.arg("-D").arg(&data).args([
            "-U",
            "postgres",
            "--auth=trust",
            "--no-sync",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
        ]);
        if let Some((uid, gid)) = user {
            use std::os::unix::process::CommandExt;
            command.uid(uid).gid(gid);
        }
        let out = command.output().map_err(io("running initdb"))?;
        if !out.status.success() {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(Error::NotReady {
                program: "initdb".into(),
                output: format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ),
            });
        }
        let mut last = None;
        for _ in 0..5 {
            let port = free_port()?;
            match Server::start(spec(&postgres, &dir, &data, port, user)) {
                Ok(server) => return Ok(Postgres { port, _server: server }),
                Err(e @ Error::NotReady { .. }) if e.to_string().contains("in use") => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or(Error::NotReady { program: "postgres".into(), output: "no free port".into() }))
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The URL of a cluster that runs until the process ends (the watchdog stops it then).
    fn leak(self) -> String {
        let url = self.url();
        std::mem::forget(self);
        url
    }
}

fn spec(postgres: &Path, dir: &Path, data: &Path, port: u16, user: Option<(u32, u32)>) -> Spec {
    let mut args: Vec<std::ffi::OsString> = vec!["-D".into(), data.into(), "-k".into(), dir.into()];
    for setting in [
        "listen_addresses=127.0.0.1".to_string(),
        format!("port={port}"),
        "fsync=off".into(),
        "synchronous_commit=off".into(),
        "full_page_writes=off".into(),
        "max_connections=200".into(),
    ] {
        args.push("-c".into());
        args.push(setting.into());
    }
    Spec {
        program: postgres.to_path_buf(),
        args,
        ready: "database system is ready to accept connections",
        // Fast shutdown: connections are cut, no waiting for clients.
        stop: "INT",
        user,
        remove: Some(dir.to_path_buf()),
    }
}
