//! Redis unreachable: clear 503s, readiness fails, nothing hangs; when Redis comes back
//! (with AOF persistence) service resumes by itself and no session is lost.

use crate::helpers::*;
use reqwest::StatusCode;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A private redis-server with AOF on, on a free port, so the test can kill it.
pub struct OwnRedis {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    extra: Vec<String>,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl OwnRedis {
    pub fn start() -> OwnRedis {
        Self::start_with(&[])
    }

    pub fn start_with(extra: &[&str]) -> OwnRedis {
        let extra = extra.iter().map(|s| s.to_string()).collect();
        let mut r = OwnRedis { port: free_port(), dir: tempfile::tempdir().unwrap(), child: None, extra };
        r.spawn();
        r
    }

    fn spawn(&mut self) {
        let port = self.port.to_string();
        let base = [
            "--port",
            &port,
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
        ];
        let child = Command::new("redis-server")
            .args(base)
            .args(&self.extra)
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (.ci/run installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL: no graceful save; only what AOF already has survives.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

#[tokio::test]
async fn a_redis_outage_gives_clear_503s_and_service_resumes_without_losing_sessions() {
    let mut redis = OwnRedis::start();
    let options = Options { redis: Some(redis.url()), replicas: 1, ..Options::default() };
    let sys = TestSystem::start_with(options).await;
    let browser = Browser::new();
    let (rp, tokens) = portal_login(&sys, &browser, "hcm", HCM_USER).await;

    redis.kill();
    let started = Instant::now();
    let ready = reqwest::get(sys.url("/readyz")).await.unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let cb = browser.navigate(&rp.authorize(&[("prompt", "none")]).url, PORTAL_CB).await.callback();
    assert_eq!(param(&cb, "error").as_deref(), Some("temporarily_unavailable"));
    let (status, headers, body) = token_request(
        &sys,
        Some((PORTAL, PORTAL_SECRET)),
        &[("grant_type", "refresh_token"), ("refresh_token", tokens.refresh_token.as_deref().unwrap())],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("temporarily_unavailable"))
    );
    assert!(headers.contains_key("retry-after"));
    // Browser pages say so plainly, in both languages.
    let (_, status, page) = browser.navigate(&sys.url("/login?request=anything"), PORTAL_CB).await.page();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(page.contains("Hệ thống tạm thời gián đoạn") && page.contains("Service temporarily unavailable"));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "failures are bounded in time: {:?}",
        started.elapsed()
    );

    redis.spawn();
    // Service resumes by itself; the session written before the crash is still there.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if reqwest::get(sys.url("/readyz")).await.unwrap().status() == StatusCode::OK {
            break;
        }
        assert!(Instant::now() < deadline, "gateway did not recover");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let cb = browser.navigate(&rp.authorize(&[("prompt", "none")]).url, PORTAL_CB).await.callback();
    assert!(param(&cb, "code").is_some(), "SSO session survived the Redis restart: {cb}");
    let (status, _, _) = token_request(
        &sys,
        Some((PORTAL, PORTAL_SECRET)),
        &[("grant_type", "refresh_token"), ("refresh_token", tokens.refresh_token.as_deref().unwrap())],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "refresh tokens survived too");
}
