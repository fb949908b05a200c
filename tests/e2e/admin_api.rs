//! The admin API over HTTP with real access tokens: `client_credentials` tokens with the admin
//! scope for automation, a person's token with the admin role, the refusals (no token, no
//! scope, no role, too weak a login), every operation, the OpenAPI document against the
//! router, and a conflict created by two logins found and resolved — on SQLite and PostgreSQL.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

const ADMIN: &str = "ops-automation";
const ADMIN_SECRET: &str = "ops-automation-secret-0123456789";
const CONSOLE: &str = "console";
const CONSOLE_SECRET: &str = "console-secret-0123456789";
const CONSOLE_CB: &str = "http://127.0.0.1:9/console/cb";

/// An automation client with the admin scope, a console client people log in to with it, and
/// (for the person tests) the role the hcm officials' directory gives Phó Chủ tịch Thư.
fn admin_config(extra_admin: &str) -> String {
    format!(
        r#"
[admin]
role = "lanh_dao_phuong"
{extra_admin}

[[clients]]
client_id = "{ADMIN}"
client_secret = "{ADMIN_SECRET}"
redirect_uris = []
scopes = ["admin"]
grant_types = ["client_credentials"]

[[clients]]
client_id = "{CONSOLE}"
client_secret = "{CONSOLE_SECRET}"
redirect_uris = ["{CONSOLE_CB}"]
scopes = ["openid", "profile", "official", "admin"]
"#
    )
}

#[derive(Clone, Copy, Debug)]
enum Backend {
    Sqlite,
    Postgres,
}

async fn start(backend: Backend, extra_admin: &str) -> TestSystem {
    let accounts_url = match backend {
        Backend::Sqlite => None,
        Backend::Postgres => Some(postgres_accounts_url().await),
    };
    TestSystem::start_with(Options {
        extra_config: admin_config(extra_admin),
        accounts_url,
        ..Options::default()
    })
    .await
}

async fn client_token(sys: &TestSystem, id: &str, secret: &str, scope: &str) -> String {
    let (status, _, body) =
        token_request(sys, Some((id, secret)), &[("grant_type", "client_credentials"), ("scope", scope)])
            .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["access_token"].as_str().unwrap().to_string()
}

async fn admin_token(sys: &TestSystem) -> String {
    client_token(sys, ADMIN, ADMIN_SECRET, "admin").await
}

/// One admin API call: (status, WWW-Authenticate, JSON body).
async fn call(
    sys: &TestSystem,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Option<String>, Value) {
    let mut req = reqwest::Client::new().request(method, sys.url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let res = req.send().await.unwrap();
    let status = res.status();
    let challenge = res.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_string());
    (status, challenge, res.json().await.unwrap_or(Value::Null))
}

async fn get(sys: &TestSystem, path: &str, token: &str) -> Value {
    let (status, _, body) = call(sys, reqwest::Method::GET, path, Some(token), None).await;
    assert_eq!(status, StatusCode::OK, "GET {path}: {body}");
    body
}

async fn post(sys: &TestSystem, path: &str, token: &str, body: Value) -> Value {
    let (status, _, answer) = call(sys, reqwest::Method::POST, path, Some(token), Some(body)).await;
    assert_eq!(status, StatusCode::OK, "POST {path}: {answer}");
    answer
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test]
async fn no_token_is_401_and_a_token_without_the_admin_scope_is_403() {
    let sys = start(Backend::Sqlite, "").await;
    let (status, challenge, body) =
        call(&sys, reqwest::Method::GET, "/admin/api/v1/conflicts", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(challenge.unwrap().starts_with("Bearer"));
    let (status, challenge, _) =
        call(&sys, reqwest::Method::GET, "/admin/api/v1/conflicts", Some("not-a-token"), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(challenge.unwrap().contains("invalid_token"));
    // A valid token of this gateway, but for another API.
    let other = client_token(&sys, M2M, M2M_SECRET, "hotline.read").await;
    let (status, challenge, body) =
        call(&sys, reqwest::Method::GET, "/admin/api/v1/conflicts", Some(&other), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"], "insufficient_scope");
    assert!(challenge.unwrap().contains("scope=\"admin\""));
    // A revoked admin token stops working at once.
    let token = admin_token(&sys).await;
    get(&sys, "/admin/api/v1/conflicts", &token).await;
    let res = reqwest::Client::new()
        .post(sys.url("/revoke"))
        .basic_auth(ADMIN, Some(ADMIN_SECRET))
        .form(&[("token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let (status, _, _) =
        call(&sys, reqwest::Method::GET, "/admin/api/v1/conflicts", Some(&token), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_openapi_document_validates_and_lists_exactly_the_routed_operations() {
    let sys = start(Backend::Sqlite, "").await;
    let res = reqwest::get(sys.url("/admin/api/openapi.json")).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let text = res.text().await.unwrap();
    let spec = oas3::from_json(&text).expect("an OpenAPI 3.1 document");
    let doc: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    let mut operations = 0;
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            operations += 1;
            assert!(op["responses"].as_object().is_some_and(|r| !r.is_empty()), "{method} {path}");
            // Every documented operation is routed: without a token it is refused, not missing.
            let url = path.replace("{id}", "1");
            let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let (status, _, _) = call(&sys, m, &url, None, Some(json!({}))).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path} is routed and guarded");
        }
    }
    assert_eq!(operations, 19, "every operation of the router is documented");
    let audit_params: Vec<&str> = doc["paths"]["/admin/api/v1/audit"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for name in ["target", "sub", "actor", "action", "since", "until", "limit", "cursor"] {
        assert!(audit_params.contains(&name), "the audit list documents {name}: {audit_params:?}");
    }
    // And the router has nothing the document does not list.
    for (method, path) in [
        (reqwest::Method::GET, "/admin/api/v1/nothing"),
        (reqwest::Method::DELETE, "/admin/api/v1/accounts/1"),
        (reqwest::Method::GET, "/admin/api/v1/accounts/1/lock"),
    ] {
        let (status, _, _) = call(&sys, method.clone(), path, None, None).await;
        assert!(
            status == StatusCode::NOT_FOUND || status == StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}: {status}"
        );
    }
    // Every reference resolves (the parsed document is internally consistent).
    let text_refs: Vec<&str> = text.match_indices("\"$ref\": \"").map(|(i, _)| &text[i + 9..]).collect();
    for r in text_refs {
        let name = r.split('"').next().unwrap().trim_start_matches("#/components/schemas/");
        assert!(spec.components.as_ref().is_some_and(|c| c.schemas.contains_key(name)), "{name}");
    }
}

/// Lê Thị Hòa through hcm and through bd: the same number, different birthdates — two
/// accounts and a conflict. Found via the API, looked at, and merged (or kept apart).
async fn conflict_found_and_resolved(backend: Backend, decision: &str) {
    let sys = start(backend, "").await;
    let (_, hcm) = portal_login(&sys, &Browser::new(), "hcm", "hoa").await;
    let (_, bd) = portal_login(&sys, &Browser::new(), "bd", "hoalt").await;
    assert_ne!(hcm.claims.subject(), bd.claims.subject());
    let token = admin_token(&sys).await;

    let list = get(&sys, "/admin/api/v1/conflicts", &token).await;
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{list}");
    let conflict = &items[0];
    assert_eq!(conflict["reason"], "birthdate_mismatch");
    let (existing, new) =
        (conflict["existing_account_id"].as_str().unwrap(), conflict["new_account_id"].as_str().unwrap());

    // Both records side by side: the full number only on the account page, each view audited.
    for id in [existing, new] {
        let page = get(&sys, &format!("/admin/api/v1/accounts/{id}?reason=conflict%20review"), &token).await;
        assert_eq!(page["conflicts"][0]["id"], conflict["id"]);
        assert_eq!(page["audit"][0]["action"], "view");
        assert_eq!(page["audit"][0]["actor"], format!("client:{ADMIN}"));
        assert_eq!(page["audit"][0]["reason"], "conflict review");
    }

    // A decision needs a reason.
    let path = format!("/admin/api/v1/conflicts/{}/resolve", conflict["id"]);
    let (status, _, body) = call(
        &sys,
        reqwest::Method::POST,
        &path,
        Some(&token),
        Some(json!({ "decision": decision, "reason": " " })),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let resolved =
        post(&sys, &path, &token, json!({ "decision": decision, "reason": "same person, checked ID card" }))
            .await;
    let expected = if decision == "merge" { "merged" } else { "kept-apart" };
    assert_eq!(resolved["resolution"], expected);
    assert!(resolved["resolved_at"].is_i64());
    // Deciding twice is a conflict.
    let (status, _, _) = call(
        &sys,
        reqwest::Method::POST,
        &path,
        Some(&token),
        Some(json!({ "decision": decision, "reason": "again" })),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let open = get(&sys, "/admin/api/v1/conflicts", &token).await;
    assert_eq!(open["items"], json!([]));
    let all = get(&sys, "/admin/api/v1/conflicts?include_resolved=true", &token).await;
    assert_eq!(all["items"][0]["resolution"], expected);

    let new_account = get(&sys, &format!("/admin/api/v1/accounts/{new}"), &token).await;
    if decision == "merge" {
        assert_eq!(new_account["account"]["status"]["status"], "merged_into");
        assert_eq!(new_account["account"]["status"]["into"], existing);
        // bd's identity now belongs to the surviving account.
        let survivor = get(&sys, &format!("/admin/api/v1/accounts/{existing}"), &token).await;
        let links: Vec<&str> =
            survivor["links"].as_array().unwrap().iter().map(|l| l["upstream"].as_str().unwrap()).collect();
        assert!(links.contains(&"bd") && links.contains(&"hcm"), "{links:?}");
    } else {
        assert_eq!(new_account["account"]["status"]["status"], "active");
    }
    let audit = get(&sys, &format!("/admin/api/v1/audit?target=conflict:{}", conflict["id"]), &token).await;
    if decision != "merge" {
        assert_eq!(audit["items"][0]["action"], "resolve-conflict");
        assert_eq!(audit["items"][0]["reason"], "same person, checked ID card");
    }
}

#[tokio::test]
async fn a_conflict_from_two_logins_is_found_and_merged_through_the_api_on_sqlite() {
    conflict_found_and_resolved(Backend::Sqlite, "merge").await;
}

#[tokio::test]
async fn a_conflict_from_two_logins_is_found_and_merged_through_the_api_on_postgres() {
    conflict_found_and_resolved(Backend::Postgres, "merge").await;
}

#[tokio::test]
async fn a_conflict_kept_apart_leaves_two_active_accounts_on_sqlite() {
    conflict_found_and_resolved(Backend::Sqlite, "keep_apart").await;
}

#[tokio::test]
async fn a_conflict_kept_apart_leaves_two_active_accounts_on_postgres() {
    conflict_found_and_resolved(Backend::Postgres, "keep_apart").await;
}

/// Search by every kind, the account operations, warnings, audit and operations, each over
/// HTTP with the automation token.
async fn every_operation(backend: Backend) {
    let sys = start(backend, "").await;
    let (_, lan) = portal_login(&sys, &Browser::new(), "hcm", "lan").await;
    let (_, thu) = portal_login(&sys, &Browser::new(), "hcm", "thu").await;
    let (_, khang) = portal_login(&sys, &Browser::new(), "hcm", "khang").await;
    let token = admin_token(&sys).await;
    let lan_account = sys.app.accounts.find_by_sub(lan.claims.subject().as_str()).await.unwrap().unwrap();
    let thu_account = sys.app.accounts.find_by_sub(thu.claims.subject().as_str()).await.unwrap().unwrap();
    let khang_account = sys.app.accounts.find_by_sub(khang.claims.subject().as_str()).await.unwrap().unwrap();
    let number = lan_account.national_id.clone().unwrap();

    // Search: every kind finds her, with the number masked.
    let searches = [
        format!("by=national_id&q={number}"),
        format!("by=sub&q={}", lan_account.sub),
        format!(
            "by=upstream&upstream=hcm&q={}",
            enc(&sys.app.accounts.links_of(&lan_account.id).await.unwrap()[0].subject)
        ),
        format!("by=name&q={}", enc("nguyen thi l")),
        format!("by=name&q={}", enc("NGUYỄN Thị Lan")),
    ];
    for q in &searches {
        let page = get(&sys, &format!("/admin/api/v1/accounts?{q}"), &token).await;
        let items = page["items"].as_array().unwrap();
        assert_eq!(items.len(), 1, "{q}: {page}");
        assert_eq!(items[0]["id"], lan_account.id.as_str(), "{q}");
        let masked = items[0]["national_id_masked"].as_str().unwrap();
        assert!(masked.contains("******") && !page.to_string().contains(&number), "{q}: {masked}");
    }
    let by_code = get(&sys, "/admin/api/v1/accounts?by=official_code&q=CB-HCM-1132", &token).await;
    assert_eq!(by_code["items"][0]["id"], thu_account.id.as_str());
    let by_name = get(&sys, "/admin/api/v1/accounts?by=name&q=dang", &token).await;
    assert_eq!(by_name["items"][0]["id"], khang_account.id.as_str());
    // Two people named Lê Thị Hòa (a conflict): one per page, by cursor.
    portal_login(&sys, &Browser::new(), "hcm", "hoa").await;
    portal_login(&sys, &Browser::new(), "bd", "hoalt").await;
    let first = get(&sys, "/admin/api/v1/accounts?by=name&q=le%20thi%20hoa&limit=1", &token).await;
    assert_eq!(first["items"].as_array().unwrap().len(), 1);
    let cursor = first["next_cursor"].as_str().expect("a second page");
    let second = get(
        &sys,
        &format!("/admin/api/v1/accounts?by=name&q=le%20thi%20hoa&limit=1&cursor={cursor}"),
        &token,
    )
    .await;
    assert_eq!(second["items"].as_array().unwrap().len(), 1);
    assert_ne!(first["items"][0]["id"], second["items"][0]["id"]);
    assert_eq!(second["next_cursor"], Value::Null);
    let (status, _, _) = call(
        &sys,
        reqwest::Method::GET,
        "/admin/api/v1/accounts?by=name&q=x&cursor=garbage",
        Some(&token),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _, _) =
        call(&sys, reqwest::Method::GET, "/admin/api/v1/accounts?by=national_id&q=12", Some(&token), None)
            .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _, _) =
        call(&sys, reqwest::Method::GET, "/admin/api/v1/accounts/nobody", Some(&token), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // The account page: the full number, the link, the session.
    let id = lan_account.id.as_str();
    let page = get(&sys, &format!("/admin/api/v1/accounts/{id}"), &token).await;
    assert_eq!(page["account"]["national_id"], number.as_str());
    assert_eq!(page["links"][0]["upstream"], "hcm");
    assert_eq!(page["sessions"].as_array().unwrap().len(), 1, "{page}");
    assert!(page["sessions"][0]["clients"].as_array().unwrap().iter().any(|c| c == PORTAL));

    // Lock needs a reason; a locked account's tokens stop working; unlock; locking twice is 409.
    let (status, _, _) = call(
        &sys,
        reqwest::Method::POST,
        &format!("/admin/api/v1/accounts/{id}/lock"),
        Some(&token),
        Some(json!({})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let locked = post(
        &sys,
        &format!("/admin/api/v1/accounts/{id}/lock"),
        &token,
        json!({ "reason": "reported stolen" }),
    )
    .await;
    assert_eq!(locked["status"]["status"], "locked");
    let (status, _, _) = userinfo(&sys, &lan.access_token).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, _) = call(
        &sys,
        reqwest::Method::POST,
        &format!("/admin/api/v1/accounts/{id}/lock"),
        Some(&token),
        Some(json!({ "reason": "again" })),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let unlocked = post(
        &sys,
        &format!("/admin/api/v1/accounts/{id}/unlock"),
        &token,
        json!({ "reason": "owner verified" }),
    )
    .await;
    assert_eq!(unlocked["status"]["status"], "active");

    // End her sessions everywhere: her access token's grant is revoked.
    let ended = post(
        &sys,
        &format!("/admin/api/v1/accounts/{id}/sessions/end"),
        &token,
        json!({ "reason": "left the city" }),
    )
    .await;
    assert_eq!(ended["ended"], 1);
    let (status, _, _) = userinfo(&sys, &lan.access_token).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "tokens of an ended session stop working");
    let page = get(&sys, &format!("/admin/api/v1/accounts/{id}"), &token).await;
    assert_eq!(page["sessions"], json!([]));

    // Link an identity of another system, then remove it; an unknown upstream is 400.
    let body = json!({ "upstream": "bd", "subject": "bd-lan-legacy", "reason": "helpdesk ticket 17" });
    let links = post(&sys, &format!("/admin/api/v1/accounts/{id}/links"), &token, body.clone()).await;
    assert!(
        links.as_array().unwrap().iter().any(|l| l["upstream"] == "bd" && l["method"] == "admin"),
        "{links}"
    );
    let (status, _, _) = call(
        &sys,
        reqwest::Method::POST,
        &format!("/admin/api/v1/accounts/{id}/links"),
        Some(&token),
        Some(json!({ "upstream": "nowhere", "subject": "x", "reason": "r" })),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let links = post(&sys, &format!("/admin/api/v1/accounts/{id}/links/remove"), &token, body.clone()).await;
    assert!(links.as_array().unwrap().iter().all(|l| l["upstream"] != "bd"), "{links}");
    let (status, _, _) = call(
        &sys,
        reqwest::Method::POST,
        &format!("/admin/api/v1/accounts/{id}/links/remove"),
        Some(&token),
        Some(body),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // An official's unit: candidates on the page, then decided.
    let thu_page = get(&sys, &format!("/admin/api/v1/accounts/{}", thu_account.id), &token).await;
    let official = &thu_page["account"]["official"];
    let unit = official["org_unit_candidates"][0]["code"]
        .as_str()
        .or(official["org_unit"]["code"].as_str())
        .unwrap()
        .to_string();
    let decided = post(
        &sys,
        &format!("/admin/api/v1/accounts/{}/unit", thu_account.id),
        &token,
        json!({ "unit": unit, "reason": "decision 12/QĐ" }),
    )
    .await;
    assert_eq!(decided["official"]["org_unit_state"], "decided");
    let (status, _, _) = call(
        &sys,
        reqwest::Method::POST,
        &format!("/admin/api/v1/accounts/{id}/unit"),
        Some(&token),
        Some(json!({ "unit": unit, "reason": "a citizen has no unit" })),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);

    // Merge Khang into Lan is refused (two verified numbers); merging into itself is refused.
    let (status, _, _) = call(
        &sys,
        reqwest::Method::POST,
        &format!("/admin/api/v1/accounts/{}/merge", khang_account.id),
        Some(&token),
        Some(json!({ "into": id, "reason": "test" })),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);

    // Warnings (none of these people has one), audit, operations.
    let warnings = get(&sys, "/admin/api/v1/warnings?code=birth_year_mismatch&limit=10", &token).await;
    assert!(warnings["items"].is_array());
    let audit = get(&sys, &format!("/admin/api/v1/audit?target={id}&limit=3"), &token).await;
    let actions: Vec<&str> =
        audit["items"].as_array().unwrap().iter().map(|a| a["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["unlink", "link", "view"], "{audit}");
    assert!(audit["items"].as_array().unwrap().iter().all(|a| a["actor"] == format!("client:{ADMIN}")));
    let next = get(
        &sys,
        &format!("/admin/api/v1/audit?target={id}&limit=3&cursor={}", audit["next_cursor"].as_str().unwrap()),
        &token,
    )
    .await;
    let actions: Vec<&str> =
        next["items"].as_array().unwrap().iter().map(|a| a["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["end-sessions", "unlock", "lock"], "{next}");
    assert_eq!(next["items"][0]["reason"], "left the city");
    let ops = get(&sys, "/admin/api/v1/operations", &token).await;
    assert!(ops["active_unit_set"].is_string(), "{ops}");
    assert_eq!(ops["accounts"], 5);
    let failures = get(&sys, "/admin/api/v1/operations/logout-failures", &token).await;
    assert_eq!(failures["items"], json!([]));
}

#[tokio::test]
async fn every_operation_works_over_http_on_sqlite() {
    every_operation(Backend::Sqlite).await;
}

#[tokio::test]
async fn every_operation_works_over_http_on_postgres() {
    every_operation(Backend::Postgres).await;
}

async fn person_token(sys: &TestSystem, user: &str) -> String {
    let rp = sys.rp(CONSOLE, Some(CONSOLE_SECRET), CONSOLE_CB).await;
    let req = rp.authorize(&[("scope", "admin official")]);
    let cb = Browser::new().login(&req.url, "hcm", user, CONSOLE_CB).await.callback();
    let code = param(&cb, "code").expect("code");
    rp.exchange(&req, &code).await.unwrap().access_token
}

#[tokio::test]
async fn a_person_with_the_admin_role_acts_as_their_account_and_others_are_refused() {
    let sys = start(Backend::Sqlite, "").await;
    let thu = person_token(&sys, "thu").await;
    let page = get(&sys, "/admin/api/v1/accounts?by=official_code&q=CB-HCM-1132", &thu).await;
    let own = page["items"][0]["id"].as_str().unwrap().to_string();
    get(&sys, &format!("/admin/api/v1/accounts/{own}"), &thu).await;
    let audit = get(&sys, &format!("/admin/api/v1/audit?target={own}"), &thu).await;
    assert_eq!(audit["items"][0]["actor"], format!("account:{own}"), "the person is the who");
    // A citizen with a token carrying the scope lacks the role.
    let lan = person_token(&sys, "lan").await;
    let (status, _, body) =
        call(&sys, reqwest::Method::GET, "/admin/api/v1/conflicts", Some(&lan), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"], "access_denied");
}

#[tokio::test]
async fn a_person_below_the_minimum_acr_is_asked_for_a_stronger_login() {
    let sys = start(Backend::Sqlite, "min_acr = \"urn:sso-gateway:acr:vneid-level2\"").await;
    let thu = person_token(&sys, "thu").await;
    let (status, challenge, body) =
        call(&sys, reqwest::Method::GET, "/admin/api/v1/conflicts", Some(&thu), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"], "insufficient_user_authentication");
    assert!(challenge.unwrap().contains("acr_values=\"urn:sso-gateway:acr:vneid-level2\""));
    // Automation is not a person: the acr rule does not apply to it.
    let token = admin_token(&sys).await;
    get(&sys, "/admin/api/v1/conflicts", &token).await;
}

/// A back-channel receiver that refuses (503) until told to accept, and keeps what it took
/// (the console's retry test uses it too).
pub(crate) struct FlakyReceiver {
    pub(crate) url: String,
    pub(crate) accept: std::sync::Arc<std::sync::atomic::AtomicBool>,
    pub(crate) taken: tokio::sync::watch::Receiver<Vec<String>>,
    task: tokio::task::JoinHandle<()>,
}

impl FlakyReceiver {
    pub(crate) async fn start() -> FlakyReceiver {
        use std::sync::atomic::Ordering;
        let accept = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (tx, taken) = tokio::sync::watch::channel(Vec::new());
        let tx = std::sync::Arc::new(tx);
        let flag = accept.clone();
        let app = axum::Router::new().route(
            "/backchannel",
            axum::routing::post(
                move |axum::extract::Form(form): axum::extract::Form<
                    std::collections::HashMap<String, String>,
                >| {
                    let (tx, flag) = (tx.clone(), flag.clone());
                    async move {
                        if !flag.load(Ordering::SeqCst) {
                            return axum::http::StatusCode::SERVICE_UNAVAILABLE;
                        }
                        if let Some(t) = form.get("logout_token") {
                            tx.send_modify(|v| v.push(t.clone()));
                        }
                        axum::http::StatusCode::OK
                    }
                },
            ),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/backchannel", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FlakyReceiver { url, accept, taken, task }
    }
}

impl Drop for FlakyReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test]
async fn a_failed_backchannel_logout_is_retried_and_leaves_the_list_once_delivered() {
    const FLAKY: &str = "flaky-rp";
    const FLAKY_CB: &str = "http://127.0.0.1:9/flaky/cb";
    let receiver = FlakyReceiver::start().await;
    let extra = format!(
        r#"
[[clients]]
client_id = "{FLAKY}"
client_secret = "{ADMIN_SECRET}"
redirect_uris = ["{FLAKY_CB}"]
backchannel_logout_uri = "{}"
"#,
        receiver.url
    );
    let sys = TestSystem::start_with(Options {
        extra_config: format!("{}{extra}", admin_config("")),
        ..Options::default()
    })
    .await;
    let browser = Browser::new();
    let (_, lan) = portal_login(&sys, &browser, "hcm", "lan").await;
    sso_login(&browser, &sys.rp(FLAKY, Some(ADMIN_SECRET), FLAKY_CB).await, FLAKY_CB).await;
    let account = sys.app.accounts.find_by_sub(lan.claims.subject().as_str()).await.unwrap().unwrap();
    let token = admin_token(&sys).await;
    // Ending her sessions waits for the deliveries: the flaky RP refused every attempt.
    let path = format!("/admin/api/v1/accounts/{}/sessions/end", account.id);
    assert_eq!(post(&sys, &path, &token, json!({ "reason": "test" })).await["ended"], 1);
    let failures = get(&sys, "/admin/api/v1/operations/logout-failures", &token).await;
    let items = failures["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{failures}");
    assert_eq!(
        (items[0]["client_id"].as_str(), items[0]["error"].as_str()),
        (Some(FLAKY), Some("HTTP 503 Service Unavailable"))
    );
    let sid = items[0]["sid"].as_str().unwrap().to_string();
    let retry = "/admin/api/v1/operations/logout-failures/retry";

    // Bad input: no reason (400), an unknown delivery (404).
    for (body, expected) in [
        (json!({ "client_id": FLAKY, "sid": sid, "reason": " " }), StatusCode::BAD_REQUEST),
        (json!({ "client_id": FLAKY, "sid": "other", "reason": "x" }), StatusCode::NOT_FOUND),
        (json!({ "client_id": FLAKY }), StatusCode::BAD_REQUEST),
    ] {
        let (status, _, answer) = call(&sys, reqwest::Method::POST, retry, Some(&token), Some(body)).await;
        assert_eq!(status, expected, "{answer}");
    }
    // Still failing: it stays listed with the newer reason.
    let again =
        post(&sys, retry, &token, json!({ "client_id": FLAKY, "sid": sid, "reason": "RP back up?" })).await;
    assert_eq!(again, json!({ "delivered": false, "error": "HTTP 503 Service Unavailable" }));
    let failures = get(&sys, "/admin/api/v1/operations/logout-failures", &token).await;
    assert_eq!(failures["items"].as_array().unwrap().len(), 1, "{failures}");

    // The RP is back: delivered, gone from the list, and the token names her session.
    receiver.accept.store(true, std::sync::atomic::Ordering::SeqCst);
    let done =
        post(&sys, retry, &token, json!({ "client_id": FLAKY, "sid": sid, "reason": "RP fixed" })).await;
    assert_eq!(done, json!({ "delivered": true, "error": null }));
    let failures = get(&sys, "/admin/api/v1/operations/logout-failures", &token).await;
    assert_eq!(failures["items"], json!([]));
    let taken = receiver.taken.borrow().clone();
    assert_eq!(taken.len(), 1);
    let claims = verify_with_jwks(&sys, &taken[0], FLAKY).await;
    assert_eq!(claims["sid"], sid);
    assert!(claims["sub"].is_string());
    assert!(claims["events"]["http://schemas.openid.net/event/backchannel-logout"].is_object());
    // Both retries are in the audit log with their reasons; a third finds nothing to retry.
    let audit = get(
        &sys,
        &format!("/admin/api/v1/audit?target=client:{FLAKY}&action=retry-backchannel-logout"),
        &token,
    )
    .await;
    let reasons: Vec<&str> =
        audit["items"].as_array().unwrap().iter().map(|a| a["reason"].as_str().unwrap()).collect();
    assert_eq!(reasons, ["RP fixed", "RP back up?"], "{audit}");
    let (status, _, _) = call(
        &sys,
        reqwest::Method::POST,
        retry,
        Some(&token),
        Some(json!({ "client_id": FLAKY, "sid": sid, "reason": "again" })),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// The global audit log: filtered by actor, by the account's `sub`, by action and by a time
/// range (each alone and together), paged by cursor, newest first, with national IDs masked
/// wherever a line carries one; reading it writes no line.
async fn the_audit_log_is_filtered_paged_and_masked(backend: Backend) {
    let sys = start(backend, "").await;
    let (_, lan) = portal_login(&sys, &Browser::new(), "hcm", "lan").await;
    portal_login(&sys, &Browser::new(), "hcm", "khang").await;
    let lan_sub = lan.claims.subject().as_str().to_string();
    let lan_id = sys.app.accounts.find_by_sub(&lan_sub).await.unwrap().unwrap().id;
    let khang_id = sys.app.accounts.find_by_national_id("001075008823").await.unwrap().unwrap().id;
    let t0 = sys.clock.now();
    // A fresh token for each write: the clock moves an hour between them.
    let write = |id: &str, what: &str, reason: &str| {
        let (path, body) = (format!("/admin/api/v1/accounts/{id}/{what}"), json!({ "reason": reason }));
        let sys = &sys;
        async move { post(sys, &path, &admin_token(sys).await, body).await }
    };
    write(&lan_id, "lock", "CCCD 079190004512 checked at the ward office").await;
    sys.clock.advance(3600);
    write(&lan_id, "unlock", "ticket 7").await;
    sys.clock.advance(3600);
    write(&khang_id, "lock", "ticket 8").await;
    let token = admin_token(&sys).await;
    let lines = |path: String| {
        let (sys, token) = (&sys, &token);
        async move {
            let page = get(sys, &path, token).await;
            page["items"].as_array().unwrap().clone()
        }
    };
    let actions = |items: &[Value]| -> Vec<String> {
        items
            .iter()
            .map(|a| format!("{} {}", a["action"].as_str().unwrap(), a["target"].as_str().unwrap()))
            .collect()
    };
    let total = sys.app.accounts.audit_page(&Default::default(), 200, None).await.unwrap().items.len();

    // By the account's sub: its lines only, newest first, the number masked.
    let by_sub = lines(format!("/admin/api/v1/audit?sub={}", enc(&lan_sub))).await;
    assert_eq!(actions(&by_sub), [format!("unlock {lan_id}"), format!("lock {lan_id}")]);
    assert_eq!(by_sub[1]["reason"], "CCCD 079******512 checked at the ward office");
    assert_eq!(lines("/admin/api/v1/audit?sub=no-such-sub".into()).await, Vec::<Value>::new());
    // By actor, by action, by time range, and together.
    let actor = enc(&format!("client:{ADMIN}"));
    let by_actor = lines(format!("/admin/api/v1/audit?actor={actor}")).await;
    assert_eq!(
        actions(&by_actor),
        [format!("lock {khang_id}"), format!("unlock {lan_id}"), format!("lock {lan_id}")]
    );
    let locks = lines(format!("/admin/api/v1/audit?actor={actor}&action=lock")).await;
    assert_eq!(actions(&locks), [format!("lock {khang_id}"), format!("lock {lan_id}")]);
    let window = format!("since={}&until={}", t0 + 3600, t0 + 7200);
    assert_eq!(
        actions(&lines(format!("/admin/api/v1/audit?actor={actor}&{window}")).await),
        [format!("unlock {lan_id}")]
    );
    let since_second = format!("since={}", t0 + 3600);
    assert_eq!(
        actions(
            &lines(format!("/admin/api/v1/audit?sub={}&action=lock&{since_second}", enc(&lan_sub))).await
        ),
        Vec::<String>::new()
    );
    // Paged: one line a page, the cursors walk the same list.
    let mut walked = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/admin/api/v1/audit?actor={actor}&limit=1");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={}", enc(c)));
        }
        let page = get(&sys, &path, &token).await;
        walked.extend(actions(page["items"].as_array().unwrap()));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(walked, actions(&by_actor));
    // Bad input is a 400.
    for bad in ["cursor=abc", "since=yesterday", "limit=x"] {
        let (status, _, body) =
            call(&sys, reqwest::Method::GET, &format!("/admin/api/v1/audit?{bad}"), Some(&token), None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }
    // Reading wrote nothing.
    let after = sys.app.accounts.audit_page(&Default::default(), 200, None).await.unwrap().items.len();
    assert_eq!(after, total, "looking at the audit log is not a write");
}

#[tokio::test]
async fn the_audit_log_is_filtered_paged_and_masked_on_sqlite() {
    the_audit_log_is_filtered_paged_and_masked(Backend::Sqlite).await;
}

#[tokio::test]
async fn the_audit_log_is_filtered_paged_and_masked_on_postgres() {
    the_audit_log_is_filtered_paged_and_masked(Backend::Postgres).await;
}

#[tokio::test]
async fn upstream_status_shows_successes_failures_and_latency_from_every_replica() {
    let sys =
        TestSystem::start_with(Options { extra_config: admin_config(""), ..Options::redis_replicas(2) })
            .await;
    portal_login(&sys, &Browser::new(), "hcm", HCM_USER).await;
    sys.set_fault("hcm", |f| &f.bad_signature);
    let rp = sys.rp(PORTAL, Some(PORTAL_SECRET), PORTAL_CB).await;
    let req = rp.authorize(&[]);
    let (_, status, _) = Browser::new().login(&req.url, "hcm", HCM_USER, PORTAL_CB).await.page();
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    // Asked on each replica: the same picture, whichever replica handled the logins.
    let token = admin_token(&sys).await;
    for replica in &sys.replicas {
        let res = reqwest::Client::new()
            .get(replica.url("/admin/api/v1/operations/upstreams"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let all: Value = res.json().await.unwrap();
        let ids: Vec<&str> =
            all.as_array().unwrap().iter().map(|u| u["upstream"].as_str().unwrap()).collect();
        assert!(ids.contains(&"hcm") && ids.contains(&"bd"), "{all}");
        let hcm = all.as_array().unwrap().iter().find(|u| u["upstream"] == "hcm").unwrap();
        assert_eq!(hcm["last_success"]["ok"], true, "{hcm}");
        assert_eq!(hcm["last_failure"]["ok"], false, "{hcm}");
        assert!(hcm["last_failure"]["reason"].as_str().unwrap().contains("ID token"), "{hcm}");
        let recent = hcm["recent"].as_array().unwrap();
        assert_eq!(recent.len(), 2, "{hcm}");
        assert!(recent.iter().all(|e| e["latency_ms"].is_u64()));
        let bd = all.as_array().unwrap().iter().find(|u| u["upstream"] == "bd").unwrap();
        assert_eq!((bd["last_success"].clone(), bd["recent"].clone()), (Value::Null, json!([])), "{bd}");
    }
}

async fn import_runs_listed(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let accounts_url = match backend {
        Backend::Sqlite => format!("sqlite://{}/accounts.db?mode=rwc", dir.path().display()),
        Backend::Postgres => postgres_accounts_url().await,
    };
    let sys = TestSystem::start_with(Options {
        extra_config: admin_config(""),
        accounts_url: Some(accounts_url.clone()),
        ..Options::default()
    })
    .await;
    // The CLI on the same database, as an operator runs it.
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "issuer = \"http://127.0.0.1:8080\"\n[accounts]\nurl = \"{accounts_url}\"\n\
             [[upstreams]]\nid = \"bd\"\nname_vi = \"bd\"\nname_en = \"bd\"\nissuer = \"http://127.0.0.1:9/bd\"\nclient_id = \"gw\"\n"
        ),
    )
    .unwrap();
    let csv = dir.path().join("bd-citizens.csv");
    let mut text = String::from("account_id,full_name,birthdate\nbd-1,Nguyễn Văn Một,1990-01-02\n");
    for i in 0..5 {
        text.push_str(&format!("bd-bad-{i},,1990-01-02\n"));
    }
    std::fs::write(&csv, text).unwrap();
    let import = |file: &std::path::Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_sso-gateway"))
            .env("USER", "ops.import")
            .env_remove("SSO_GATEWAY_CONFIG")
            .args(["accounts", "import", "--kind", "citizen", "--province", "bd", "--file"])
            .arg(file)
            .arg("--config")
            .arg(&config)
            .output()
            .unwrap()
    };
    let out = import(&csv);
    assert!(!out.status.success(), "row errors: {}", String::from_utf8_lossy(&out.stderr));
    let unreadable = dir.path().join("empty.csv");
    std::fs::write(&unreadable, "").unwrap();
    assert!(!import(&unreadable).status.success());

    let token = admin_token(&sys).await;
    let runs = get(&sys, "/admin/api/v1/operations/imports?limit=1", &token).await;
    let latest = &runs["items"][0];
    assert_eq!((latest["rejected"].clone(), latest["errors"].clone()), (json!(true), json!(1)), "{runs}");
    let older = get(
        &sys,
        &format!("/admin/api/v1/operations/imports?limit=1&cursor={}", runs["next_cursor"].as_str().unwrap()),
        &token,
    )
    .await;
    assert_eq!(older["next_cursor"], Value::Null);
    let run = &older["items"][0];
    assert_eq!(run["actor"], "ops.import");
    assert_eq!(run["source"], "bd");
    assert!(run["file"].as_str().unwrap().ends_with("bd-citizens.csv"), "{run}");
    assert_eq!(
        (run["rows"].clone(), run["created"].clone(), run["errors"].clone()),
        (json!(6), json!(1), json!(5)),
        "{run}"
    );
    assert!(run["finished_at"].as_i64().unwrap() >= run["started_at"].as_i64().unwrap());
    let id = run["id"].as_i64().unwrap();
    let first = get(&sys, &format!("/admin/api/v1/operations/imports/{id}/errors?limit=3"), &token).await;
    assert_eq!(first["run"]["id"], id);
    let lines: Vec<i64> =
        first["items"].as_array().unwrap().iter().map(|e| e["line"].as_i64().unwrap()).collect();
    assert_eq!(lines, [3, 4, 5], "{first}");
    let rest = get(
        &sys,
        &format!(
            "/admin/api/v1/operations/imports/{id}/errors?limit=3&cursor={}",
            first["next_cursor"].as_str().unwrap()
        ),
        &token,
    )
    .await;
    assert_eq!(rest["items"].as_array().unwrap().len(), 2);
    assert_eq!(rest["next_cursor"], Value::Null);
    for (path, expected) in [
        ("/admin/api/v1/operations/imports/999999/errors", StatusCode::NOT_FOUND),
        ("/admin/api/v1/operations/imports?cursor=zz", StatusCode::BAD_REQUEST),
        (&*format!("/admin/api/v1/operations/imports/{id}/errors?cursor=zz"), StatusCode::BAD_REQUEST),
    ] {
        let (status, _, body) = call(&sys, reqwest::Method::GET, path, Some(&token), None).await;
        assert_eq!(status, expected, "{path}: {body}");
    }
}

#[tokio::test]
async fn import_runs_and_their_row_errors_are_listed_on_sqlite() {
    import_runs_listed(Backend::Sqlite).await;
}

#[tokio::test]
async fn import_runs_and_their_row_errors_are_listed_on_postgres() {
    import_runs_listed(Backend::Postgres).await;
}
