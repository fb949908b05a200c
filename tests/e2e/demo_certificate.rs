//! The demo's certificate login (issue 14): `sso-gateway demo` makes a demo CA and an
//! official's certificate in its data folder, serves a certificate upstream on its own TLS
//! listener and says how to use it; here a browser presenting that certificate logs in to the
//! demo portal, so the demo cannot rot.

use reqwest::StatusCode;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::helpers::*;

/// A base port with the seven after it free when asked (the demo needs eight).
async fn free_base_port() -> u16 {
    for _ in 0..20 {
        let probe = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = probe.local_addr().unwrap().port();
        drop(probe);
        if base > u16::MAX - 8 {
            continue;
        }
        let mut all = Vec::new();
        for p in base..=base + 7 {
            match tokio::net::TcpListener::bind(("127.0.0.1", p)).await {
                Ok(l) => all.push(l),
                Err(_) => break,
            }
        }
        if all.len() == 8 {
            return base;
        }
    }
    panic!("no eight free consecutive ports");
}

#[tokio::test]
async fn the_demo_official_logs_in_with_the_demo_certificate() {
    let data = tempfile::tempdir().unwrap();
    let port = free_base_port().await;
    let mut demo = tokio::process::Command::new(env!("CARGO_BIN_EXE_sso-gateway"))
        .args(["demo", "--port", &port.to_string(), "--data-dir"])
        .arg(data.path())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // Ready when it says so; what it printed must tell how to use the certificate.
    let mut lines = BufReader::new(demo.stdout.take().unwrap()).lines();
    let mut printed = String::new();
    while let Some(line) = lines.next_line().await.unwrap() {
        printed.push_str(&line);
        printed.push('\n');
        if line.contains("Ctrl-C to stop") {
            break;
        }
    }
    assert!(printed.contains("openssl pkcs12 -export"), "{printed}");
    assert!(printed.contains(&format!("https://127.0.0.1:{}", port + 7)), "{printed}");
    let folder = data.path().join("certificate");
    let identity = std::fs::read(folder.join("official-identity.pem")).unwrap();
    let ca = std::fs::read(folder.join("ca.pem")).unwrap();
    let http = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .identity(reqwest::Identity::from_pem(&identity).unwrap())
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(20))
        .build()
        .unwrap();
    let browser = Browser { http };
    let never = "http://never.invalid/";
    let portal = format!("http://127.0.0.1:{}", port + 4);
    let (url, status, body) = browser.navigate(&format!("{portal}/login"), never).await.page();
    assert_eq!(status, StatusCode::OK, "the chooser: {body}");
    let link = url::Url::parse(&url).unwrap().join(&chooser_link(&body, "chu-ky-so")).unwrap();
    let (url, status, body) = browser.navigate(link.as_str(), never).await.page();
    assert_eq!(status, StatusCode::OK, "{url}: {body}");
    assert!(url.starts_with(&portal), "back at the portal: {url}");
    assert!(body.contains("Võ Thị Minh Thư"), "{body}");
    assert!(body.contains("urn:sso-gateway:acr:certificate"), "{body}");
    drop(lines);
    demo.kill().await.unwrap();
    // The configuration it prints (for check-config) has the certificate upstream too.
    let printed = tokio::process::Command::new(env!("CARGO_BIN_EXE_sso-gateway"))
        .args(["demo", "--print-config", "--port", &port.to_string(), "--data-dir"])
        .arg(data.path())
        .output()
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&printed.stdout).contains("kind = \"certificate\""));
}
