//! Private `redis-server`s: one shared by every test of a test binary (`redis_url`), and
//! single ones a test owns (to kill and restart, or to give a password).

use std::path::PathBuf;
use std::sync::OnceLock;

use crate::server::{Server, Spec, free_port};
use crate::{Error, binary, external_or, io};

/// The Redis for tests that only need *a* Redis (they isolate themselves by key prefix):
/// `SSO_TEST_REDIS_URL` if set, else a private server started on first use and shared by
/// the whole test binary; it stops when the test process ends.
pub fn redis_url() -> String {
    static SHARED: OnceLock<String> = OnceLock::new();
    SHARED.get_or_init(|| external_or("SSO_TEST_REDIS_URL", || Ok(Redis::create(&[], true)?.leak()))).clone()
}

/// A private `redis-server` on a free loopback port, its data in a temporary folder of its own
/// (no snapshots unless `extra` asks for persistence). Stopped when dropped.
pub struct Redis {
    pub port: u16,
    server: Option<Server>,
    dir: PathBuf,
    /// Removes the folder when dropped (unless the watchdog does it for a shared server).
    _dir: Option<tempfile::TempDir>,
    extra: Vec<String>,
}

impl Redis {
    /// Starts a server with extra `redis-server` arguments (e.g. `--appendonly yes`).
    pub fn start(extra: &[&str]) -> Result<Redis, Error> {
        Redis::create(extra, false)
    }

    /// With `shared`, the watchdog removes the folder once the server stopped (for a server
    /// whose handle is never dropped); else dropping the handle does.
    fn create(extra: &[&str], shared: bool) -> Result<Redis, Error> {
        let tmp =
            tempfile::Builder::new().prefix("sso-test-redis-").tempdir().map_err(io("temporary folder"))?;
        let (dir, guard) = if shared { (tmp.keep(), None) } else { (tmp.path().to_path_buf(), Some(tmp)) };
        let mut redis = Redis {
            port: 0,
            server: None,
            dir,
            _dir: guard,
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        if let Err(e) = redis.launch(shared) {
            // A server that never ran leaves its folder to no watchdog.
            let _ = std::fs::remove_dir_all(&redis.dir);
            return Err(e);
        }
        Ok(redis)
    }

    fn launch(&mut self, remove: bool) -> Result<(), Error> {
        let program = binary("redis-server", "redis-server")?;
        let fixed = self.port != 0;
        let mut last = None;
        for _ in 0..5 {
            let port = if fixed { self.port } else { free_port()? };
            let mut args: Vec<std::ffi::OsString> = ["--port", &port.to_string(), "--bind", "127.0.0.1"]
                .iter()
                .chain(&["--save", "", "--appendonly", "no", "--logfile", ""])
                .map(Into::into)
                .collect();
            args.extend(self.extra.iter().map(Into::into));
            args.push("--dir".into());
            args.push(self.dir.clone().into());
            let spec = Spec {
                program: program.clone(),
                args,
                ready: "Ready to accept connections",
                stop: "TERM",
                user: None,
                remove: remove.then(|| self.dir.clone()),
            };
            match Server::start(spec) {
                Ok(server) => {
                    self.port = port;
                    self.server = Some(server);
                    return Ok(());
                }
                Err(e @ Error::NotReady { .. }) if !fixed && e.to_string().contains("in use") => {
                    last = Some(e)
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or(Error::NotReady { program: "redis-server".into(), output: "no free port".into() }))
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The URL of a server that runs until the process ends (the watchdog stops it then).
    fn leak(self) -> String {
        let url = self.url();
        std::mem::forget(self);
        url
    }

    /// SIGKILL: no clean shutdown; only what the append-only file already has survives.
    pub fn kill(&mut self) {
        if let Some(mut server) = self.server.take() {
            server.kill();
        }
    }

    /// Stops the server cleanly.
    pub fn stop(&mut self) {
        self.server = None;
    }

    /// Starts the server again on the same port with the same data folder.
    pub fn restart(&mut self) -> Result<(), Error> {
        self.kill();
        self.launch(false)
    }
}
