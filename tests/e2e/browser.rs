//! Proven in a real browser: Debian's Chromium, headless, drives the account page of the real
//! gateway (log in through the simulated Ho Chi Minh City system, switch to English, link
//! Binh Duong with the keyboard only, unlink it through the confirmation page), and axe-core
//! checks every page it sees, failing on serious or critical violations. The driver is a Node
//! script, `tests/browser/account.mjs` (playwright-core with Debian's Chromium, no bundled
//! browser); screenshots and axe reports are kept under `target/browser-artifacts/` for CI.
//!
//! The admin console likewise (`tests/browser/console.mjs`): log in as the administrator,
//! search, open an account, resolve a conflict created by two logins with a reason, the
//! decision made with the keyboard only.
//!
//! Needs `chromium` (`apt-get install chromium`), `node` and `npm ci --prefix tests/browser`;
//! without them the test fails with one line saying what to install.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::helpers::*;

/// Debian's Chromium, or the one `SSO_TEST_CHROMIUM` names.
fn chromium() -> PathBuf {
    let path = std::env::var_os("SSO_TEST_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/usr/bin/chromium".into());
    if !path.is_file() {
        panic!("browser test: {} not found (install it: apt-get install chromium)", path.display());
    }
    path
}

fn browser_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    if std::process::Command::new("node").arg("--version").output().is_err() {
        panic!("browser test: `node` not found (install Node.js 20+, e.g. apt-get install nodejs npm)");
    }
    for package in ["playwright-core", "axe-core"] {
        if !dir.join("node_modules").join(package).is_dir() {
            panic!("browser test: {package} not installed (run `npm ci --prefix tests/browser`)");
        }
    }
    dir
}

/// `target/browser-artifacts/<name>` (beside the tests' own temporary folder).
fn artifacts(name: &str) -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let target = tmp.parent().unwrap_or(tmp);
    let dir = target.join("browser-artifacts").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs the driver `script` of `tests/browser/` against `sys`, with its artifacts in `out`;
/// returns its report (it must have succeeded).
async fn drive(script: &str, sys: &TestSystem, out: &Path) -> Value {
    let chromium = chromium();
    let dir = browser_dir();
    let child = tokio::process::Command::new("node")
        .arg(dir.join(script))
        .arg(&sys.gateway)
        .arg(out)
        .arg(&chromium)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(180), child)
        .await
        .expect("the browser run ended within 3 minutes")
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let report: Value = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no report from the browser run\nstdout: {stdout}\nstderr: {stderr}"));
    assert!(
        output.status.success() && report["ok"] == true,
        "browser run failed: {}\n{stderr}",
        report["failures"]
    );
    report
}

#[tokio::test]
async fn the_account_page_works_in_chromium_by_keyboard_and_passes_axe() {
    let out = artifacts("account");
    let sys = TestSystem::start().await;
    let report = drive("account.mjs", &sys, &out).await;
    // Every page was seen, checked by axe and photographed.
    let pages: Vec<&str> = report["pages"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert_eq!(pages, ["chooser", "account-vi", "account-en", "account-linked", "unlink-confirm"]);
    for page in &pages {
        assert!(report["axe"][page].is_array(), "axe ran on {page}");
        assert!(out.join(format!("{page}.axe.json")).is_file());
    }
    assert_eq!(report["screenshots"].as_array().unwrap().len(), 6);
    assert!(out.join("02-account-vi.png").is_file());
    // The browser really linked and unlinked: the store agrees.
    let lan = sys.app.accounts.find_by_national_id("079190004512").await.unwrap().unwrap();
    let links = sys.app.accounts.links_of(&lan.id).await.unwrap();
    assert_eq!(links.iter().map(|l| l.upstream.as_str()).collect::<Vec<_>>(), ["hcm"]);
    let actions: Vec<String> =
        sys.app.accounts.audit_log(Some(&lan.id), 10).await.unwrap().into_iter().map(|a| a.action).collect();
    assert!(actions.contains(&"self-link".into()) && actions.contains(&"self-unlink".into()), "{actions:?}");
}

/// The admin console in Chromium: the administrator logs in, searches, opens an account and
/// resolves a conflict created by two logins, the decision made with the keyboard only; then
/// finds the merge on the audit log page and retries a failed back-channel logout on the
/// operations page, both by keyboard; axe checks every page.
#[tokio::test]
async fn the_admin_console_resolves_a_conflict_in_chromium_by_keyboard_and_passes_axe() {
    const DOWN_RP: &str = "down-rp";
    const DOWN_RP_SECRET: &str = "down-rp-secret-0123456789abcdef";
    const DOWN_RP_CB: &str = "http://127.0.0.1:9/down/cb";
    let out = artifacts("console");
    // An RP whose back-channel endpoint is down (nothing listens on port 9).
    let extra = format!(
        "[[clients]]\nclient_id = \"{DOWN_RP}\"\nclient_secret = \"{DOWN_RP_SECRET}\"\n\
         redirect_uris = [\"{DOWN_RP_CB}\"]\nbackchannel_logout_uri = \"http://127.0.0.1:9/backchannel\"\n"
    );
    let sys = TestSystem::start_with(Options { extra_config: extra, ..Options::default() }).await;
    portal_login(&sys, &Browser::new(), "hcm", "hoa").await;
    portal_login(&sys, &Browser::new(), "bd", "hoalt").await;
    // A failed back-channel logout for the operations page: Lan's session at the down RP ended.
    let lan_browser = Browser::new();
    let (_, lan) = portal_login(&sys, &lan_browser, "hcm", "lan").await;
    sso_login(&lan_browser, &sys.rp(DOWN_RP, Some(DOWN_RP_SECRET), DOWN_RP_CB).await, DOWN_RP_CB).await;
    let lan = sys.app.accounts.find_by_sub(lan.claims.subject().as_str()).await.unwrap().unwrap();
    sso_gateway::admin::ops::end_sessions(sys.app.admin(), &lan.id, "test", "a failure to retry")
        .await
        .unwrap();
    assert_eq!(
        sso_gateway::admin::ops::logout_failures(sys.app.admin(), 10, None).await.unwrap().items.len(),
        1
    );
    let report = drive("console.mjs", &sys, &out).await;
    let pages: Vec<&str> = report["pages"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert_eq!(
        pages,
        [
            "console-search",
            "console-results",
            "console-account",
            "console-conflicts",
            "console-conflicts-en",
            "console-conflict",
            "console-resolved",
            "console-audit",
            "console-audit-filtered",
            "console-operations",
            "console-retried"
        ]
    );
    for page in &pages {
        assert!(report["axe"][page].is_array(), "axe ran on {page}");
        assert!(out.join(format!("{page}.axe.json")).is_file());
    }
    assert_eq!(report["screenshots"].as_array().unwrap().len(), 9);
    assert!(out.join("05-console-conflict.png").is_file());
    assert!(out.join("07-console-audit.png").is_file() && out.join("09-console-retried.png").is_file());
    // The browser really resolved it, and the audit log says who and why.
    let conflicts = sys.app.accounts.conflicts_page(true, 10, None).await.unwrap().items;
    assert_eq!(conflicts.len(), 1);
    assert_eq!(conflicts[0].resolution.as_deref(), Some("merged"));
    let admin = sys.app.accounts.find_by_national_id("079082006631").await.unwrap().unwrap();
    let filter = sso_gateway::accounts::lists::AuditFilter {
        actor: Some(format!("account:{}", admin.id)),
        ..Default::default()
    };
    let lines = sys.app.accounts.audit_page(&filter, 50, None).await.unwrap().items;
    assert!(
        lines.iter().any(|l| l.action == "merge"
            && l.reason.as_deref() == Some("Cùng một người: đã đối chiếu CCCD tại phường")),
        "{lines:?}"
    );
    assert!(lines.iter().any(|l| l.action == "view"), "the account view was audited: {lines:?}");
    assert!(
        lines.iter().any(|l| l.action == "retry-backchannel-logout"
            && l.target == format!("client:{DOWN_RP}")
            && l.reason.as_deref() == Some("Ứng dụng báo đã chạy lại")),
        "the retry from the keyboard was audited: {lines:?}"
    );
}
