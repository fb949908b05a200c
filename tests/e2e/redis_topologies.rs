//! The gateway on Sentinel-managed Redis (with a password on the master) and on Redis
//! Cluster, each started privately by the test.

use crate::helpers::*;
use sso_test_services::{OrExit, Redis, Server, Spec, binary, free_port};
use std::process::Command;
use std::time::{Duration, Instant};

/// A `redis-server` with these arguments, once it logged `ready`; stopped when dropped.
fn redis_server(args: Vec<std::ffi::OsString>, ready: &'static str) -> Server {
    Server::start(Spec {
        program: binary("redis-server", "redis-server").or_exit(),
        args,
        ready,
        stop: "TERM",
        user: None,
        remove: None,
    })
    .or_exit()
}

/// A free port for a cluster node: Redis Cluster also listens on the port + 10000, so the
/// port must be at most 55535.
fn cluster_port() -> u16 {
    loop {
        let port = free_port().or_exit();
        if port <= 55535 && std::net::TcpListener::bind(("127.0.0.1", port + 10000)).is_ok() {
            return port;
        }
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
    let master = Redis::start(&["--requirepass", "master-pw"]).or_exit();
    let dir = tempfile::tempdir().unwrap();
    let sentinel_port = free_port().or_exit();
    let conf = dir.path().join("sentinel.conf");
    std::fs::write(
        &conf,
        format!(
            "port {sentinel_port}\nbind 127.0.0.1\nsentinel monitor sso 127.0.0.1 {} 1\nsentinel auth-pass sso master-pw\n",
            master.port
        ),
    )
    .unwrap();
    // Ready once it monitors the master.
    let _sentinel = redis_server(vec![conf.into(), "--sentinel".into()], "+monitor master sso");
    let prefix = unique_prefix();
    let extra = format!(
        "\n[sessions]\nstore = \"redis://127.0.0.1:{sentinel_port}\"\n[sessions.redis]\nmode = \"sentinel\"\nsentinel_master = \"sso\"\nmaster_password = \"master-pw\"\nkey_prefix = \"{prefix}\"\n"
    );
    login_and_sso(Options { extra_config: extra, ..Default::default() }).await;
}

#[tokio::test]
async fn the_gateway_runs_on_redis_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let ports: Vec<u16> = (0..3).map(|_| cluster_port()).collect();
    let mut _nodes = Vec::new();
    for port in &ports {
        let node_dir = dir.path().join(port.to_string());
        std::fs::create_dir_all(&node_dir).unwrap();
        let args = [
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
            "--logfile",
            "",
        ];
        let mut args: Vec<std::ffi::OsString> = args.iter().map(Into::into).collect();
        args.push("--dir".into());
        args.push(node_dir.into());
        _nodes.push(redis_server(args, "Ready to accept connections"));
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
