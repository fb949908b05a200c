use std::process::Command;

fn gateway() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sso-gateway"))
}

#[test]
fn check_config_lists_every_problem_with_its_path_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        r#"
issuer = "http://sso.example"
[[upstreams]]
id = "Bad Id"
name_vi = "x"
name_en = "x"
issuer = "not a url"
client_id = "gw"
[[clients]]
client_id = "portal"
redirect_uris = ["https://portal.example/cb#frag"]
grant_types = ["client_credentials"]
"#,
    )
    .unwrap();
    let out = gateway().args(["check-config", "--config"]).arg(&path).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "issuer:",
        "upstreams[0].id",
        "upstreams[0].issuer",
        "clients[0].redirect_uris[0]",
        "clients[0].grant_types",
        "expected",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
}

#[test]
fn check_config_reports_problems_of_each_upstream_kind() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.toml");
    std::fs::write(
        &path,
        r#"
issuer = "https://sso.example"
[[upstreams]]
id = "brvt"
kind = "cas"
name_vi = "x"
name_en = "x"
client_id = "left-over-from-oidc"
[upstreams.cas]
server = "cas.example/cas"
[[upstreams]]
id = "can-bo"
kind = "ldap"
name_vi = "x"
name_en = "x"
[upstreams.ldap]
url = "ldap://ldap.example"
bind_dn = "cn=gw,dc=example"
bind_password = "pw"
user_base = "ou=people,dc=example"
user_filter = "(uid=fixed)"
"#,
    )
    .unwrap();
    let out = gateway().args(["check-config", "--config"]).arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "upstreams[0].client_id: is not used by kind = \"cas\"",
        "upstreams[0].cas.server",
        "upstreams[1].ldap.url",
        "would send passwords in clear",
        "upstreams[1].ldap.user_filter",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
}

#[test]
fn check_config_accepts_the_shipped_demo_and_example_configs() {
    let dir = tempfile::tempdir().unwrap();
    if cfg!(feature = "demo") {
        let demo = gateway().args(["demo", "--print-config", "--data-dir"]).arg(dir.path()).output().unwrap();
        assert!(demo.status.success(), "{}", String::from_utf8_lossy(&demo.stderr));
        let path = dir.path().join("demo.toml");
        std::fs::write(&path, demo.stdout).unwrap();
        let out = gateway().args(["check-config", "--config"]).arg(&path).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let out = gateway()
        .args(["check-config", "--config", "config/gateway.example.toml"])
        .envs([
            ("HCM_CLIENT_SECRET", "0123456789abcdef0123"),
            ("BD_CLIENT_SECRET", "0123456789abcdef0123"),
            ("VNEID_CLIENT_SECRET", "0123456789abcdef0123"),
            ("OFFICIALS_DIRECTORY_PASSWORD", "directory-password"),
            ("PORTAL_CLIENT_SECRET", "0123456789abcdef0123"),
            ("HOTLINE_CLIENT_SECRET", "0123456789abcdef0123"),
            ("PAIRWISE_SALT", "0123456789abcdef0123456789abcdef"),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn keys_generate_writes_a_private_key_that_serve_can_load() {
    let dir = tempfile::tempdir().unwrap();
    for alg in ["RS256", "ES256", "EdDSA"] {
        let out =
            gateway().args(["keys", "generate", "--alg", alg, "--dir"]).arg(dir.path()).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let keys = sso_gateway::keys::KeySet::load_dir(dir.path()).unwrap();
    assert_eq!(keys.algorithms().len(), 3);
    let out =
        gateway().args(["keys", "generate", "--alg", "HS256", "--dir"]).arg(dir.path()).output().unwrap();
    assert!(!out.status.success());
}

#[tokio::test]
async fn serve_refuses_to_start_without_its_signing_keys() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "issuer = \"http://127.0.0.1:1\"\nlisten = \"127.0.0.1:0\"\n[keys]\ndir = \"{}/none\"\n[accounts]\nurl = \"sqlite::memory:\"\n",
        dir.path().display()
    );
    let settings = sso_gateway::config::Settings::from_toml(&text).unwrap();
    let err = sso_gateway::app::Application::build(settings, sso_gateway::clock::Clock::system())
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("keys generate"), "{err}");
}

#[tokio::test]
async fn metrics_are_served_on_the_management_listener_only() {
    let gw = crate::helpers::start_bare_gateway("", sso_gateway::clock::Clock::system()).await;
    let (public, management) = (gw.public.clone(), gw.management.clone());
    reqwest::get(format!("{public}/.well-known/openid-configuration")).await.unwrap();
    reqwest::Client::new().post(format!("{public}/token")).form(&[("grant_type", "x")]).send().await.unwrap();
    let metrics = reqwest::get(format!("{management}/metrics")).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("http_requests_total"), "{metrics}");
    assert!(metrics.contains("route=\"/.well-known/openid-configuration\""), "{metrics}");
    assert!(metrics.contains("route=\"/token\""));
    assert!(metrics.contains("sso_token_errors_total"));
    assert_eq!(reqwest::get(format!("{management}/readyz")).await.unwrap().status(), 200);
    assert_eq!(
        reqwest::get(format!("{public}/metrics")).await.unwrap().status(),
        404,
        "never on the public listener"
    );
}

#[tokio::test]
async fn the_gateway_serves_https_itself_when_tls_is_configured() {
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    std::fs::write(dir.path().join("cert.pem"), cert.cert.pem()).unwrap();
    std::fs::write(dir.path().join("key.pem"), cert.signing_key.serialize_pem()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let text = format!(
        "issuer = \"https://localhost:{port}\"\n[tls]\ncert = \"{d}/cert.pem\"\nkey = \"{d}/key.pem\"\n[keys]\ndir = \"{d}/keys\"\ngenerate_missing = true\n[accounts]\nurl = \"sqlite::memory:\"\n",
        d = dir.path().display()
    );
    let settings = sso_gateway::config::Settings::from_toml(&text).unwrap();
    let app = sso_gateway::app::Application::build_with_listener(
        settings,
        sso_gateway::clock::Clock::system(),
        listener,
    )
    .await
    .unwrap();
    tokio::spawn(app.run_until(std::future::pending()));
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap())
        .resolve("localhost", std::net::SocketAddr::from(([127, 0, 0, 1], port)))
        .build()
        .unwrap();
    let doc: serde_json::Value = client
        .get(format!("https://localhost:{port}/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["issuer"], format!("https://localhost:{port}"));
    // Under https the session cookie gets the __Host- prefix and Secure (see session tests).
}

/// A value given only by the environment layer (`SSO_GATEWAY__SECTION__KEY`) is what the
/// gateway runs with, and `check-config --origins` says where each value came from without
/// printing any.
#[tokio::test]
async fn a_gateway_started_with_a_key_set_only_in_the_environment_uses_it() {
    use tokio::io::AsyncBufReadExt;
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    let out = gateway().args(["keys", "generate", "--alg", "RS256", "--dir"]).arg(&keys).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let path = dir.path().join("gateway.toml");
    // No issuer in the file: it comes from the environment, as does the client's secret.
    std::fs::write(
        &path,
        format!(
            "listen = \"127.0.0.1:{port}\"\n[keys]\ndir = \"{}\"\n[accounts]\nurl = \"sqlite::memory:\"\n\
             [[clients]]\nclient_id = \"batch-job\"\ngrant_types = [\"client_credentials\"]\n",
            keys.display()
        ),
    )
    .unwrap();
    let secret = dir.path().join("batch-secret");
    std::fs::write(&secret, "batch-secret-0123456789abcdef\n").unwrap();
    let issuer = format!("http://127.0.0.1:{port}");
    let env = [
        ("SSO_GATEWAY__ISSUER", issuer.clone()),
        ("SSO_GATEWAY__CLIENTS__BATCH_JOB__CLIENT_SECRET__FILE", secret.display().to_string()),
    ];

    let out = gateway()
        .args(["check-config", "--origins", "--config"])
        .arg(&path)
        .envs(env.clone())
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for line in [
        "issuer: environment (SSO_GATEWAY__ISSUER)",
        "clients[0].client_secret: environment (_FILE) (SSO_GATEWAY__CLIENTS__BATCH_JOB__CLIENT_SECRET__FILE)",
        "listen: file",
        "every other key: default",
    ] {
        assert!(listing.contains(line), "{line:?} missing in:\n{listing}");
    }
    assert!(!listing.contains("batch-secret-0123"), "no value is printed:\n{listing}");

    // A misspelt variable under the prefix is a problem, not ignored.
    let out = gateway()
        .args(["check-config", "--config"])
        .arg(&path)
        .envs(env.clone())
        .env("SSO_GATEWAY__SESSIONS__IDLE_TIMOUT", "5m")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("SSO_GATEWAY__SESSIONS__IDLE_TIMOUT"));

    let mut serve = tokio::process::Command::new(env!("CARGO_BIN_EXE_sso-gateway"))
        .env_remove("SSO_GATEWAY_CONFIG")
        .args(["serve", "--config"])
        .arg(&path)
        .envs(env)
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(serve.stderr.take().unwrap()).lines();
    let mut log = Vec::new();
    while let Some(line) = lines.next_line().await.unwrap() {
        if line.contains("sso-gateway listening") {
            break;
        }
        log.push(line);
    }
    assert!(serve.try_wait().unwrap().is_none(), "serve stopped:\n{}", log.join("\n"));
    let discovery: serde_json::Value = reqwest::get(format!("{issuer}/.well-known/openid-configuration"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(discovery["issuer"], issuer.as_str());
    // The secret read from the file authenticates the client.
    let res = reqwest::Client::new()
        .post(format!("{issuer}/token"))
        .basic_auth("batch-job", Some("batch-secret-0123456789abcdef"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), reqwest::StatusCode::OK, "{}", res.text().await.unwrap());
    serve.kill().await.unwrap();
}
