//! The relying parties' integration kit (issue #15) as the RP teams use it:
//! - every client registration printed in `docs/integrate/*.md` passes `check-config` without
//!   warning and `clients explain` finds nothing risky in it; the index lists every page and the
//!   claims each scope really releases;
//! - `clients explain` on the command line describes registrations and flags risky ones;
//! - the example RPs (`examples/rp-python`, Authlib; `examples/rp-node`, openid-client) log in
//!   against the real gateway with their page's registration exactly as printed (host and
//!   secret substituted), show the claims, call an API with the access token, refresh, receive
//!   a back-channel logout and log out.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use sso_gateway::provider::scope_claims::{ID_TOKEN_CLAIMS, SCOPE_CLAIMS};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::helpers::{Browser, HCM_USER, Landing, Options, TestSystem};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

const DOCS: &str = "docs/integrate";

/// Every fenced ```toml block of a Markdown page, in order.
fn toml_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match &mut current {
            None if line.trim() == "```toml" => current = Some(String::new()),
            Some(block) if line.trim() == "```" => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
            None => {}
        }
    }
    assert!(current.is_none(), "an unterminated ```toml block");
    blocks
}

/// The system pages of `docs/integrate/` (every page but the index), by file name.
fn pages() -> Vec<(String, String)> {
    let mut pages: Vec<(String, String)> = std::fs::read_dir(repo().join(DOCS))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "md") && !p.ends_with("README.md"))
        .map(|p| {
            (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read_to_string(&p).unwrap())
        })
        .collect();
    pages.sort();
    pages
}

/// The `{ env = "NAME" }` references of a TOML text.
fn env_references(toml: &str) -> Vec<String> {
    toml.split("{ env = \"").skip(1).filter_map(|rest| rest.split('"').next()).map(str::to_string).collect()
}

fn gateway_cli(args: &[&str], config: &Path, env: &[String]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sso-gateway"));
    c.env_remove("SSO_GATEWAY_CONFIG").args(args).arg("--config").arg(config);
    for name in env {
        c.env(name, "a-secret-from-the-environment-0123456789");
    }
    c.output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The gateway settings around a page's client blocks (a pairwise client needs the salt).
fn config_around(dir: &Path, clients: &str) -> PathBuf {
    let path = dir.join("gateway.toml");
    let toml = format!(
        "issuer = \"https://sso.tphcm.gov.vn\"\n[accounts]\nurl = \"sqlite://{}/accounts.db?mode=rwc\"\n\
         pairwise_salt = \"integration-kit-salt-0123456789abcdef\"\n\n{clients}",
        dir.display()
    );
    std::fs::write(&path, toml).unwrap();
    path
}

#[test]
fn every_registration_in_the_integration_docs_is_accepted_without_warning_or_risk() {
    let pages = pages();
    assert!(
        pages.len() >= 7,
        "one page per kind of city system: {:?}",
        pages.iter().map(|p| &p.0).collect::<Vec<_>>()
    );
    for (name, markdown) in &pages {
        for section in [
            "## Scopes and claims",
            "## Client registration",
            "## Logout",
            "## Session length",
            "## Pitfalls",
        ] {
            assert!(markdown.contains(section), "{name} has no {section:?} section");
        }
        let blocks = toml_blocks(markdown);
        assert!(!blocks.is_empty(), "{name} has no client registration block");
        let clients = blocks.join("\n");
        let dir = tempfile::tempdir().unwrap();
        let config = config_around(dir.path(), &clients);
        let env = env_references(&clients);

        let check = gateway_cli(&["check-config"], &config, &env);
        let stderr = text(&check.stderr);
        assert!(check.status.success(), "{name}: check-config failed:\n{stderr}");
        assert!(!stderr.contains("warning"), "{name}: check-config warns:\n{stderr}");

        let explain = gateway_cli(&["clients", "explain"], &config, &env);
        let out = text(&explain.stdout);
        assert!(explain.status.success(), "{name}: {}", text(&explain.stderr));
        assert!(!out.contains("RISK"), "{name}: a registration in the docs has a risky setting:\n{out}");
        for id in clients.lines().filter_map(|l| l.strip_prefix("client_id = ")) {
            assert!(
                out.contains(&format!("client {}", id.trim_matches('"'))),
                "{name}: {id} not explained:\n{out}"
            );
        }
    }
}

#[test]
fn the_integration_index_lists_every_page_and_the_claims_each_scope_releases() {
    let index = std::fs::read_to_string(repo().join(DOCS).join("README.md")).unwrap();
    for (name, _) in pages() {
        assert!(index.contains(&format!("]({name})")), "docs/integrate/README.md does not link {name}");
    }
    assert!(
        index.contains(&format!("Every ID token carries `{}`", ID_TOKEN_CLAIMS.join(" "))),
        "the ID token's claims in the index differ from the gateway's"
    );
    for (scope, claims) in SCOPE_CLAIMS {
        let row = format!("| `{scope}` | `{}` |", claims.join(" "));
        assert!(index.contains(&row), "the index's scope table lacks {row}");
    }
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    assert!(readme.contains("docs/integrate/README.md"), "README's RP section must point to docs/integrate");
}

#[test]
fn clients_explain_describes_each_registration_and_flags_risky_settings() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_around(
        dir.path(),
        r#"
[[clients]]
client_id = "tidy"
client_secret = "tidy-secret-0123456789"
redirect_uris = ["https://tidy.example/auth/callback"]
backchannel_logout_uri = "https://tidy.example/auth/backchannel-logout"

[[clients]]
client_id = "legacy"
client_secret = "legacy-secret-0123456789"
require_pkce = false
redirect_uris = ["http://127.0.0.1:8000/cb", "https://*.legacy.example/cb"]
refresh_token_lifetime = "30d"

[[clients]]
client_id = "spa"
redirect_uris = ["https://spa.example/cb"]
scopes = ["openid", "offline_access"]
"#,
    );
    let all = gateway_cli(&["clients", "explain"], &config, &[]);
    assert!(all.status.success(), "{}", text(&all.stderr));
    let out = text(&all.stdout);
    for expected in [
        "client tidy\n",
        "client legacy\n",
        "client spa\n",
        "RISK  require_pkce",
        "RISK  redirect_uris: http://127.0.0.1:8000/cb: plain http",
        "RISK  redirect_uris: https://*.legacy.example/cb: '*' is no wildcard",
        "RISK  refresh_token_lifetime: 30days",
        "RISK  scopes: offline_access for a public client",
        "3 client(s), 2 with risky settings",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in\n{out}");
    }

    let one = gateway_cli(&["clients", "explain", "--client", "tidy"], &config, &[]);
    let out = text(&one.stdout);
    assert!(one.status.success());
    assert!(out.starts_with("client tidy\n") && !out.contains("legacy"), "{out}");
    assert!(out.contains("risks         none found"), "{out}");

    let unknown = gateway_cli(&["clients", "explain", "--client", "nobody"], &config, &[]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(
        text(&unknown.stderr)
            .contains("no client \"nobody\" in the configuration (registered: tidy, legacy, spa)")
    );

    // A configuration the gateway would refuse is refused here too, with check-config's exit code.
    std::fs::write(&config, "issuer = \"https://sso.example\"\n[[clients]]\nclient_id = \"x\"\n").unwrap();
    let invalid = gateway_cli(&["clients", "explain"], &config, &[]);
    assert_eq!(invalid.status.code(), Some(2), "{}", text(&invalid.stderr));
}

// --- the example relying parties -------------------------------------------------------------

#[derive(Clone, Copy)]
enum Stack {
    Python,
    Node,
}

impl Stack {
    fn dir(self) -> PathBuf {
        repo().join(match self {
            Stack::Python => "examples/rp-python",
            Stack::Node => "examples/rp-node",
        })
    }

    /// The command that runs the example, or a panic with one line saying how to install it.
    fn command(self) -> tokio::process::Command {
        let install =
            "run examples/setup.sh (needs python3 ≥ 3.9, node ≥ 20 and npm; installs the pinned versions)";
        let dir = self.dir();
        let (program, args, probe): (PathBuf, Vec<&str>, Vec<&str>) = match self {
            Stack::Python => {
                (dir.join(".venv/bin/python"), vec!["app.py"], vec!["-c", "import authlib, flask, joserfc"])
            }
            Stack::Node => (
                PathBuf::from("node"),
                vec!["app.mjs"],
                vec!["--input-type=module", "-e", "await import('openid-client'); await import('jose')"],
            ),
        };
        let ok = Command::new(&program)
            .args(&probe)
            .current_dir(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            panic!("the example RP in {} is not installed: {install}", dir.display());
        }
        let mut c = tokio::process::Command::new(program);
        c.args(args).current_dir(dir).kill_on_drop(true).stdout(Stdio::piped()).stderr(Stdio::inherit());
        c
    }
}

/// A running example app.
struct Example {
    base: String,
    _child: tokio::process::Child,
}

/// A loopback port nobody listens on right now (the example binds it a moment later).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Starts the gateway with `page`'s registration (its production host replaced by the
/// example's address, its secret reference by a test secret) and the example on that address.
async fn start(stack: Stack, page: &str, host: &str, secret_env: &str) -> (TestSystem, Example) {
    let mut command = stack.command();
    let base = format!("http://127.0.0.1:{}", free_port());
    let markdown = std::fs::read_to_string(repo().join(DOCS).join(page)).unwrap();
    let printed = toml_blocks(&markdown).into_iter().next().unwrap();
    let secret = "example-rp-secret-0123456789abcdef";
    let registration = printed
        .replace(host, &base)
        .replace(&format!("{{ env = \"{secret_env}\" }}"), &format!("\"{secret}\""));
    assert!(
        registration.contains(&format!("\"{base}/auth/callback\"")) && registration.contains(secret),
        "{page}'s registration no longer has {host}/auth/callback or the {secret_env} secret:\n{printed}"
    );
    let client_id = registration
        .lines()
        .find_map(|l| l.strip_prefix("client_id = "))
        .unwrap()
        .trim_matches('"')
        .to_string();
    let sys =
        TestSystem::start_with(Options { extra_config: format!("\n{registration}"), ..Options::default() })
            .await;
    let mut child = command
        .env("SSO_ISSUER", &sys.gateway)
        .env("SSO_CLIENT_ID", &client_id)
        .env("SSO_CLIENT_SECRET", secret)
        .env("APP_BASE_URL", &base)
        .env("AUTHLIB_INSECURE_TRANSPORT", "1")
        .env("SSO_ALLOW_HTTP", "1")
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.starts_with("listening on") {
                return true;
            }
        }
        false
    })
    .await;
    assert!(matches!(ready, Ok(true)), "the example did not start (its stderr is above)");
    // Keep draining its output so it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (sys, Example { base, _child: child })
}

/// The example's home page: `(status text, JSON of each <pre id>, <code id="access-token">, refreshed)`.
struct Home {
    status: String,
    json: std::collections::HashMap<String, Value>,
    access_token: String,
    refreshed: String,
}

fn home(body: &str) -> Home {
    let doc = scraper::Html::parse_document(body);
    let text_of = |css: &str| {
        let sel = scraper::Selector::parse(css).unwrap();
        doc.select(&sel).next().map(|e| e.text().collect::<String>()).unwrap_or_default()
    };
    let pre = scraper::Selector::parse("pre[id]").unwrap();
    let json = doc
        .select(&pre)
        .map(|e| {
            let text: String = e.text().collect();
            (e.value().attr("id").unwrap().to_string(), serde_json::from_str(&text).unwrap())
        })
        .collect();
    Home {
        status: text_of("#status"),
        json,
        access_token: text_of("#access-token"),
        refreshed: text_of("#refreshed"),
    }
}

async fn get_home(browser: &Browser, ex: &Example) -> Home {
    let (_, status, body) = browser.navigate(&format!("{}/", ex.base), "about:none").await.page();
    assert_eq!(status, StatusCode::OK, "{body}");
    home(&body)
}

/// POSTs one of the example's buttons and returns where the redirect leads.
async fn press(browser: &Browser, ex: &Example, path: &str) -> String {
    let res = browser.http.post(format!("{}{path}", ex.base)).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::FOUND, "{path}: {}", res.text().await.unwrap());
    let location = res.headers()["location"].to_str().unwrap();
    url::Url::parse(&ex.base).unwrap().join(location).unwrap().to_string()
}

/// The whole life of a login at an example: log in (code + PKCE through a former provincial
/// system), claims and the API call, refresh, RP-initiated logout — then a second login ended
/// by a back-channel logout. Returns the first login's ID token claims and page for the
/// stack-specific checks.
async fn drive(stack: Stack, page: &str, host: &str, secret_env: &str, user: &str) -> (TestSystem, Home) {
    let (sys, ex) = start(stack, page, host, secret_env).await;
    let browser = Browser::new();
    let callback = format!("{}/auth/callback", ex.base);

    assert_eq!(get_home(&browser, &ex).await.status, "anonymous");
    let landed = browser.login(&format!("{}/login", ex.base), "hcm", user, &callback).await.callback();
    assert_eq!(
        landed.query_pairs().find(|(k, _)| k == "iss").map(|(_, v)| v.into_owned()),
        Some(sys.gateway.clone())
    );
    let first = get_after(&browser, landed.as_str()).await;
    assert_eq!(first.status, "logged-in", "the example did not accept the login");
    let claims = &first.json["id-token-claims"];
    assert_eq!(claims["iss"], sys.gateway.as_str());
    assert_eq!(claims["acr"], "urn:sso-gateway:acr:password");
    assert_eq!(claims["idp"], "hcm");
    // The API call with the access token: /userinfo answers for the same subject.
    assert_eq!(first.json["userinfo"]["sub"], claims["sub"], "{:?}", first.json);
    assert!(!first.access_token.is_empty() && first.refreshed == "0");

    // Refresh: a new access token that still works at /userinfo.
    let next = press(&browser, &ex, "/refresh").await;
    let refreshed = get_after(&browser, &next).await;
    assert_eq!(refreshed.refreshed, "1");
    assert_ne!(refreshed.access_token, first.access_token, "the access token did not change");
    assert_eq!(refreshed.json["userinfo"]["sub"], claims["sub"]);

    // RP-initiated logout: through the gateway (the SSO session ends) back to the example.
    let logged_out_uri = format!("{}/auth/logged-out", ex.base);
    let to_gateway = press(&browser, &ex, "/logout").await;
    assert!(to_gateway.starts_with(&sys.url("/logout?")), "{to_gateway}");
    let back = browser.navigate(&to_gateway, &logged_out_uri).await.callback();
    assert_eq!(get_after(&browser, back.as_str()).await.status, "logged-out");
    assert_eq!(get_home(&browser, &ex).await.status, "anonymous");
    // The gateway session is gone too: logging in again asks for the login system.
    match browser.navigate(&format!("{}/login", ex.base), &callback).await {
        Landing::Page { url, .. } => assert!(url.contains("/login?request="), "{url}"),
        Landing::Callback(u) => panic!("logged straight back in after logout: {u}"),
    }

    // Back-channel logout: an administrator ends the account's sessions at the gateway; the
    // example hears it and ends its own session.
    let browser = Browser::new();
    let landed = browser.login(&format!("{}/login", ex.base), "hcm", user, &callback).await.callback();
    let again = get_after(&browser, landed.as_str()).await;
    assert_eq!(again.status, "logged-in");
    let sub = again.json["id-token-claims"]["sub"].as_str().unwrap().to_string();
    let ended =
        sso_gateway::logout::revoke_account_sessions(&sys.app, &sub, "integration-kit").await.unwrap();
    assert_eq!(ended, 1);
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while get_home(&browser, &ex).await.status != "anonymous" {
        assert!(
            std::time::Instant::now() < deadline,
            "the back-channel logout did not end the example's session"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (sys, first)
}

/// Follows `url` (a callback or a redirect of the example) to the page it leads to.
async fn get_after(browser: &Browser, url: &str) -> Home {
    let (_, status, body) = browser.navigate(url, "about:none").await.page();
    assert_eq!(status, StatusCode::OK, "{body}");
    home(&body)
}

#[tokio::test]
async fn the_python_authlib_example_logs_in_refreshes_calls_userinfo_and_logs_out() {
    let (_sys, first) = drive(
        Stack::Python,
        "public-service-portal.md",
        "https://dichvucong.tphcm.gov.vn",
        "PORTAL_CLIENT_SECRET",
        HCM_USER,
    )
    .await;
    let claims = &first.json["id-token-claims"];
    assert_eq!(claims["aud"], "cong-dich-vu-cong");
    // The portal's scopes: the citizen's verified personal ID number and profile.
    assert_eq!(claims["national_id"], "079190004512");
    assert_eq!(claims["account_type"], "citizen");
    assert_eq!(first.json["userinfo"]["national_id"], "079190004512");
    assert_eq!(first.json["userinfo"]["name"], "Nguyễn Thị Lan");
}

#[tokio::test]
async fn the_node_openid_client_example_logs_in_calls_its_introspecting_api_refreshes_and_logs_out() {
    let (_sys, first) = drive(
        Stack::Node,
        "document-management.md",
        "https://vanban.tphcm.gov.vn",
        "VANBAN_CLIENT_SECRET",
        "tuan",
    )
    .await;
    let claims = &first.json["id-token-claims"];
    assert_eq!(claims["aud"], "quan-ly-van-ban");
    assert_eq!(claims["account_type"], "official");
    // The official's unit in the new city structure and roles.
    assert_eq!(claims["official"]["code"], "CB-HCM-0417");
    assert!(claims["official"]["org_unit"]["status"].is_string(), "{claims}");
    assert!(claims["official"]["roles"].as_array().is_some_and(|r| !r.is_empty()), "{claims}");
    assert!(claims.get("national_id").is_none(), "not requested: {claims}");
    // The example's own API accepted the access token by introspecting it at the gateway.
    let api = &first.json["api"];
    assert_eq!(api["active"], true, "{api}");
    assert_eq!(api["sub"], claims["sub"]);
    assert_eq!(api["client_id"], "quan-ly-van-ban");
}
