//! Child processes (the gateway, the simulated provincial systems, Redis) and what Linux
//! tells about them: resident memory (`/proc/PID/status`) and CPU time (`/proc/PID/stat`).
//!
//! The gateway and the legacy IdPs are this same executable re-run with a hidden subcommand,
//! so `cargo run --bin sso-bench` needs no other binary to be built first. Children exit when
//! their stdin closes, so they never outlive the bench even if it is killed.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A child process that is killed when dropped.
pub struct Proc {
    pub name: String,
    child: Child,
}

impl Proc {
    pub fn pid(&self) -> Result<u32> {
        self.child.id().ok_or_else(|| anyhow!("{} has exited", self.name))
    }

    /// Fails if the process already exited (e.g. a configuration error).
    pub fn check_running(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("{} exited early ({status}); see its log", self.name);
        }
        Ok(())
    }

    pub async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
    }
}

/// Runs this executable again with `args`; stdout is piped (for a first line), stderr goes
/// to `log`, stdin is a pipe whose closing tells the child to stop.
pub fn spawn_self(name: &str, args: &[String], log: &Path, env: &[(&str, &str)]) -> Result<Proc> {
    let exe = std::env::current_exe().context("cannot find the sso-bench executable")?;
    spawn(name, &exe, args, log, env)
}

pub fn spawn(name: &str, program: &Path, args: &[String], log: &Path, env: &[(&str, &str)]) -> Result<Proc> {
    let log_file = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log_file))
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd.spawn().with_context(|| format!("starting {name} ({})", program.display()))?;
    Ok(Proc { name: name.to_string(), child })
}

/// Reads the first line the child prints on stdout (bounded in time).
pub async fn first_line(proc: &mut Proc, within: Duration) -> Result<String> {
    let stdout = proc.child.stdout.take().ok_or_else(|| anyhow!("{}: no stdout", proc.name))?;
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(within, lines.next_line())
        .await
        .map_err(|_| anyhow!("{} printed nothing within {within:?}", proc.name))??
        .ok_or_else(|| anyhow!("{} exited before printing its address", proc.name))?;
    // Keep draining stdout so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(line.trim().to_string())
}

/// In a child: resolves when the parent closes our stdin (or dies).
pub async fn parent_gone() {
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 64];
    loop {
        match tokio::io::AsyncReadExt::read(&mut stdin, &mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// Memory figures of a process, in KiB.
#[derive(Debug, Clone, Copy, Default)]
pub struct Mem {
    pub rss_kib: u64,
    pub hwm_kib: u64,
}

pub fn mem(pid: u32) -> Result<Mem> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Ok(Mem { rss_kib: field("VmRSS:"), hwm_kib: field("VmHWM:") })
}

/// User + system CPU time of a process (all its threads), in clock ticks.
pub fn cpu_ticks(pid: u32) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name is in parentheses and may contain spaces: split after the last ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).ok_or_else(|| anyhow!("bad /proc stat"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state is field 3 of the full line, utime 14 and stime 15 → indexes 11 and 12.
    let utime: u64 = fields.get(11).ok_or_else(|| anyhow!("bad /proc stat"))?.parse()?;
    let stime: u64 = fields.get(12).ok_or_else(|| anyhow!("bad /proc stat"))?.parse()?;
    Ok(utime + stime)
}

/// Clock ticks per second of `/proc/PID/stat` (USER_HZ, 100 on Linux for x86 and ARM).
pub fn ticks_per_sec() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

/// Samples a process's RSS in the background; `peak()` is the highest sample seen.
pub struct RssSampler {
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl RssSampler {
    pub fn start(pid: u32, every: Duration, max_duration: Duration) -> Self {
        let peak = Arc::new(AtomicU64::new(mem(pid).map(|m| m.rss_kib).unwrap_or(0)));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (peak.clone(), stop.clone());
        let task = tokio::spawn(async move {
            let started = Instant::now();
            while !s.load(Ordering::Relaxed) && started.elapsed() < max_duration {
                if let Ok(m) = mem(pid) {
                    p.fetch_max(m.rss_kib, Ordering::Relaxed);
                }
                tokio::time::sleep(every).await;
            }
        });
        RssSampler { peak, stop, task }
    }

    pub async fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        self.peak.load(Ordering::Relaxed)
    }
}

/// A free TCP port on 127.0.0.1 (bound and released; a tiny race that is fine here).
pub fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// A fresh scratch directory for one run, removed by `Drop`.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new() -> Result<Self> {
        let dir = std::env::temp_dir().join(format!("sso-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::env::var_os("SSO_BENCH_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_figures_are_readable() {
        let pid = std::process::id();
        let m = mem(pid).unwrap();
        assert!(m.rss_kib > 0 && m.hwm_kib >= m.rss_kib);
        cpu_ticks(pid).unwrap();
    }
}
