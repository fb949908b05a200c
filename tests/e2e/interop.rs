//! Interoperability (issue 14): an independent RP implementation — the `oauth4webapi` library
//! on Node.js, in `tests/interop/` — drives the gateway through a pushed authorization
//! request, the code exchange, `/userinfo` and a refresh, all with DPoP proofs of its own
//! key. The browser part is ours; everything an RP does is the library's.
//!
//! Needs `node` and `npm ci --prefix tests/interop` (CI's `.ci/run` does both); without them
//! the test fails with one line saying so.

use std::process::Stdio;
use std::time::Duration;

use crate::helpers::*;
use reqwest::StatusCode;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

fn interop_dir() -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop");
    if std::process::Command::new("node").arg("--version").output().is_err() {
        panic!("interop test: `node` not found (install Node.js 20+, e.g. apt-get install nodejs npm)");
    }
    if !dir.join("node_modules/oauth4webapi").is_dir() {
        panic!("interop test: oauth4webapi not installed (run `npm ci --prefix tests/interop`)");
    }
    dir
}

#[tokio::test]
async fn an_independent_rp_library_uses_par_and_dpop_end_to_end() {
    let dir = interop_dir();
    let options = Options { extra_config: "[dpop]\nrequire_nonce = true\n".into(), ..Options::default() };
    let sys = TestSystem::start_with(options).await;
    let mut child = tokio::process::Command::new("node")
        .arg(dir.join("par_dpop.mjs"))
        .args([sys.gateway.as_str(), PORTAL, PORTAL_SECRET, PORTAL_CB])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut next_line = async || {
        let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line()).await;
        let line =
            line.expect("the RP answered in time").unwrap().expect("the RP printed a line (see its stderr)");
        serde_json::from_str::<Value>(&line).unwrap()
    };
    let pushed = next_line().await;
    let authorize = pushed["authorize"].as_str().unwrap();
    assert!(authorize.contains("request_uri=urn%3Aietf%3Aparams%3Aoauth%3Arequest_uri%3A"), "{authorize}");
    let callback = Browser::new().login(authorize, "hcm", HCM_USER, PORTAL_CB).await.callback();
    stdin.write_all(format!("{callback}\n").as_bytes()).await.unwrap();
    let result = next_line().await;
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait()).await.unwrap().unwrap();
    assert!(status.success(), "{result}");

    assert!(result["token_type"].as_str().unwrap().eq_ignore_ascii_case("dpop"), "{result}");
    assert!(result["refreshed_token_type"].as_str().unwrap().eq_ignore_ascii_case("dpop"), "{result}");
    assert_eq!(result["userinfo_sub"], result["sub"]);
    for token in [&result["access_token"], &result["refreshed_access_token"]] {
        let token = token.as_str().unwrap();
        assert!(jwt_payload(token)["cnf"]["jkt"].is_string(), "bound to the library's key");
        assert_eq!(userinfo(&sys, token).await.0, StatusCode::UNAUTHORIZED, "useless as a Bearer token");
    }
}
