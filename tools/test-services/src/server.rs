//! One supervised server process: started through a watchdog shell, ready when its log says
//! so, stopped on drop or when the test process ends.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::{Error, io};

/// How long a server may take to say it is ready (a loaded CI machine can be slow).
const READY_WITHIN: Duration = Duration::from_secs(60);

/// Lines of output kept to explain a server that did not start.
const KEEP_LINES: usize = 40;

/// Runs the server in the background, then waits on its standard input — a pipe whose other
/// end only the test process holds. A line names a signal to send at once; end of file (the
/// handle dropped, or the test process gone, however it ended) sends `$STOP`. Then it waits for
/// the server and removes `$REMOVE`, the server's temporary folder, if set.
const WATCHDOG: &str = r#""$@" </dev/null 2>&1 &
pid=$!
exec >/dev/null 2>&1
IFS= read -r sig || sig=
kill -s "${sig:-$STOP}" "$pid"
wait "$pid"
if [ -n "$REMOVE" ]; then rm -rf "$REMOVE"; fi
"#;

/// What to start.
pub struct Spec {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    /// A fragment of the log line that says the server accepts connections.
    pub ready: &'static str,
    /// The signal that stops the server cleanly (`TERM`, or `INT` for PostgreSQL's fast shutdown).
    pub stop: &'static str,
    /// Run as this (uid, gid): PostgreSQL refuses to run as root.
    pub user: Option<(u32, u32)>,
    /// A folder to remove once the server has stopped.
    pub remove: Option<PathBuf>,
}

/// A running server. Dropping it stops the server (with `Spec::stop`) and waits for it.
pub struct Server {
    program: String,
    watchdog: Child,
    control: Option<ChildStdin>,
}

impl Server {
    /// Starts the server and returns once it logged `Spec::ready`; an error (with the last
    /// lines it printed) if it ended first or stayed silent for a minute.
    pub fn start(spec: Spec) -> Result<Server, Error> {
        let program = spec.program.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let mut command = Command::new("/bin/sh");
        command
            .arg("-c")
            .arg(WATCHDOG)
            .arg(&program)
            .arg(&spec.program)
            .args(&spec.args)
            .env("STOP", spec.stop)
            .env("REMOVE", spec.remove.as_deref().map(|p| p.as_os_str()).unwrap_or_default())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if let Some((uid, gid)) = spec.user {
            use std::os::unix::process::CommandExt;
            command.uid(uid).gid(gid);
        }
        let mut watchdog = command.spawn().map_err(io(format!("starting {program}")))?;
        let control = watchdog.stdin.take();
        let Some(output) = watchdog.stdout.take() else {
            return Err(Error::NotReady { program, output: "no output pipe".into() });
        };
        let (tx, rx) = mpsc::channel();
        let ready = spec.ready;
        // Reads the server's log for as long as it runs (so the pipe never fills up) and tells
        // the starter when the ready line came, or what was said before the server ended.
        std::thread::spawn(move || {
            let mut reader = BufReader::new(output);
            let mut last = VecDeque::new();
            let mut tx = Some(tx);
            let mut line = Vec::new();
            while reader.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
                let text = String::from_utf8_lossy(&line).into_owned();
                line.clear();
                if let Some(t) = tx.as_ref() {
                    if text.contains(ready) {
                        let _ = t.send(Ok(()));
                        tx = None;
                    } else {
                        last.push_back(text);
                        if last.len() > KEEP_LINES {
                            last.pop_front();
                        }
                    }
                }
            }
            if let Some(t) = tx {
                let _ = t.send(Err(last.into_iter().collect::<String>()));
            }
        });
        let mut server = Server { program: program.clone(), watchdog, control };
        match rx.recv_timeout(READY_WITHIN) {
            Ok(Ok(())) => Ok(server),
            Ok(Err(output)) => {
                server.stop();
                Err(Error::NotReady { program, output })
            }
            Err(_) => {
                server.kill();
                Err(Error::NotReady { program, output: format!("no `{ready}` within {READY_WITHIN:?}") })
            }
        }
    }

    /// Stops the server with SIGKILL (no clean shutdown, as if it crashed) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut control) = self.control.take() {
            let _ = control.write_all(b"KILL\n");
        }
        let _ = self.watchdog.wait();
    }

    /// Stops the server with its clean-shutdown signal and waits for it.
    pub fn stop(&mut self) {
        self.control = None;
        let _ = self.watchdog.wait();
    }

    pub fn program(&self) -> &str {
        &self.program
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A loopback port that was free a moment ago (the server binds it next; starters retry on
/// the rare clash).
pub fn free_port() -> Result<u16, Error> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(io("finding a free loopback port"))
}

/// The user to run servers as that refuse root: `postgres` (Debian's package creates it),
/// else `nobody`; None when the tests do not run as root.
pub(crate) fn unprivileged_user() -> Option<(u32, u32)> {
    use std::os::unix::fs::MetadataExt;
    let me = std::fs::metadata("/proc/self").map(|m| m.uid()).ok()?;
    if me != 0 {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    ["postgres", "nobody"].iter().find_map(|name| {
        passwd.lines().find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            (fields.len() > 3 && fields[0] == *name)
                .then(|| Some((fields[2].parse().ok()?, fields[3].parse().ok()?)))
                .flatten()
        })
    })
}
