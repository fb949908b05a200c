//! The gateway on Sentinel-managed Redis (with a password on the master) and on Redis
//! Cluster, each started privately by the test.

use crate::helpers::*;
use crate::redis_outage::{OwnRedis, free_port};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Killed(Vec<Child>);

impl Drop for Killed {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn wait_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "port {port} did not open");
        std::thread::sleep(Duration::from_millis(50));
    }
}

async fn login_and_sso(options: Options) {
    let sys = TestSystem::start_with(options).await;
    let browser = Browser::new();
    let (_, first) = portal_login(&sys, &browser, "hcm", HCM_USER).await;
    let docs = sys.rp(DOCS, Some(DOCS_SECRET), DOCS_CB).await;
    let second = sso_login(&browser, &docs, DOCS_CB).await;
    assert_eq!(first.claims.subject(), second.claims.subject());
}

#[tokio::test]
async fn the_gateway_follows_the_master_that_sentinel_names() {
    let master = OwnRedis::start_with(&["--requirepass", "master-pw"]);
    let dir = tempfile::tempdir().unwrap();
    let sentinel_port = free_port();
    let conf = dir.path().join("sentinel.conf");
    std::fs::write(
        &conf,
        format!(
            "port {sentinel_port}\nbind 127.0.0.1\nsentinel monitor sso 127.0.0.1 {} 1\nsentinel auth-pass sso master-pw\n",
            master.port
        ),
    )
    .unwrap();
    let sentinel = Command::new("redis-server")
        .arg(&conf)
        .arg("--sentinel")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _guard = Killed(vec![sentinel]);
    wait_port(sentinel_port);
    let prefix = unique_prefix();
    let extra = format!(
        "\n[sessions]\nstore = \"redis://127.0.0.1:{sentinel_port}\"\n[sessions.redis]\nmode = \"sentinel\"\nsentinel_master = \"sso\"\nmaster_password = \"master-pw\"\nkey_prefix = \"{prefix}\"\n"
    );
    login_and_sso(Options { extra_config: extra, ..Default::default() }).await;
}

#[tokio::test]
async fn the_gateway_runs_on_redis_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let mut children = Vec::new();
    for port in &ports {
        let node_dir = dir.path().join(port.to_string());
        std::fs::create_dir_all(&node_dir).unwrap();
        children.push(
            Command::new("redis-server")
                .args([
                    "--port",
                    &port.to_string(),
                    "--bind",
                    "127.0.0.1",
                    "--cluster-enabled",
                    "yes",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                ])
                .arg(&node_dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
    }
    let _guard = Killed(children);
    for port in &ports {
        wait_port(*port);
    }
    let nodes: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let created = Command::new("redis-cli")
        .args(["--cluster", "create"])
        .args(&nodes)
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .output()
        .expect("redis-cli must be installed (.ci/run installs redis-tools)");
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stdout));
    // Wait until every slot is served.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let info = Command::new("redis-cli")
            .args(["-p", &ports[0].to_string(), "cluster", "info"])
            .output()
            .unwrap();
        if String::from_utf8_lossy(&info.stdout).contains("cluster_state:ok") {
            break;
        }
        assert!(Instant::now() < deadline, "cluster did not become ready");
        std::thread::sleep(Duration::from_millis(200));
    }
    let seeds: Vec<String> = ports[1..].iter().map(|p| format!("\"redis://127.0.0.1:{p}\"")).collect();
    let extra = format!(
        "\n[sessions]\nstore = \"redis://127.0.0.1:{}\"\n[sessions.redis]\nmode = \"cluster\"\nnodes = [{}]\nkey_prefix = \"{}\"\n",
        ports[0],
        seeds.join(", "),
        unique_prefix()
    );
    login_and_sso(Options { extra_config: extra, ..Default::default() }).await;
}
