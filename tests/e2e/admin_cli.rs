//! `sso-gateway accounts …` / `units …` as an administrator runs them: the sample CSVs of the
//! three former provinces, idempotent re-import, row errors with line numbers, strict mode,
//! show / merge / lock with the audit trail.

use std::path::Path;
use std::process::{Command, Output};

fn gateway() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sso-gateway"));
    c.env("USER", "admin.test").env_remove("SSO_GATEWAY_CONFIG");
    c
}

fn config(dir: &Path) -> std::path::PathBuf {
    let upstream = |id: &str, trusted: bool| {
        format!(
            "[[upstreams]]\nid = \"{id}\"\nname_vi = \"{id}\"\nname_en = \"{id}\"\nissuer = \"http://127.0.0.1:9/{id}\"\n\
             client_id = \"gw\"\n[upstreams.linking]\ntrust_national_id = {trusted}\n"
        )
    };
    let text = format!(
        "issuer = \"http://127.0.0.1:8080\"\n[accounts]\nurl = \"sqlite://{}/accounts.db?mode=rwc\"\n{}{}{}",
        dir.display(),
        upstream("hcm", true),
        upstream("bd", true),
        upstream("brvt", false)
    );
    let path = dir.join("gateway.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn run(args: &[&str], config: &Path) -> Output {
    gateway().args(args).arg("--config").arg(config).output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn importing_the_three_provinces_links_people_and_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    for (province, kind) in [
        ("hcm", "citizen"),
        ("hcm", "official"),
        ("bd", "citizen"),
        ("bd", "official"),
        ("brvt", "citizen"),
        ("brvt", "official"),
    ] {
        let file = format!("config/samples/{province}-{kind}s.csv");
        let out = run(&["accounts", "import", "--kind", kind, "--file", &file, "--province", province], &cfg);
        assert!(out.status.success(), "{file}: {}", String::from_utf8_lossy(&out.stderr));
    }
    // Binh Duong's Lan links to Ho Chi Minh City's Lan; Hoà/Hòa is a conflict.
    let again = run(
        &[
            "accounts",
            "import",
            "--kind",
            "citizen",
            "--file",
            "config/samples/bd-citizens.csv",
            "--province",
            "bd",
        ],
        &cfg,
    );
    assert!(stdout(&again).contains("0 created"), "{}", stdout(&again));
    assert!(stdout(&again).contains("8 already imported"), "{}", stdout(&again));
    let show = run(&["accounts", "show", "--national-id", "079 190 004 512"], &cfg);
    let shown: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
    let upstreams: Vec<&str> =
        shown["links"].as_array().unwrap().iter().map(|l| l["upstream"].as_str().unwrap()).collect();
    assert_eq!(upstreams.len(), 2, "{shown}");
    assert!(upstreams.contains(&"hcm") && upstreams.contains(&"bd"));
    let conflicts: serde_json::Value =
        serde_json::from_slice(&run(&["accounts", "conflicts"], &cfg).stdout).unwrap();
    assert_eq!(conflicts["conflicts"][0]["reason"], "birthdate_mismatch");
    // The split ward 25741 with a decision is decided; without one it is ambiguous.
    let decided = run(&["accounts", "show", "--upstream", "bd", "--subject", "bd-cb-000655"], &cfg);
    let decided: serde_json::Value = serde_json::from_slice(&decided.stdout).unwrap();
    assert_eq!(decided["account"]["official"]["org_unit"]["code"], "25750");
    assert_eq!(decided["account"]["official"]["org_unit_state"], "decided");
    let open = run(&["accounts", "show", "--upstream", "bd", "--subject", "bd-cb-000702"], &cfg);
    let open: serde_json::Value = serde_json::from_slice(&open.stdout).unwrap();
    assert_eq!(open["account"]["official"]["org_unit_state"], "ambiguous");
    // Côn Đảo district → the special zone.
    let con_dao = run(&["accounts", "show", "--upstream", "brvt", "--subject", "2000417"], &cfg);
    let con_dao: serde_json::Value = serde_json::from_slice(&con_dao.stdout).unwrap();
    assert_eq!(con_dao["account"]["official"]["org_unit"]["name"], "Đặc khu Côn Đảo");
    let audit: serde_json::Value =
        serde_json::from_slice(&run(&["accounts", "audit", "--limit", "100"], &cfg).stdout).unwrap();
    let imports = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["action"] == "import" && l["actor"] == "admin.test")
        .count();
    assert_eq!(imports, 7);
}

#[test]
fn row_errors_are_reported_with_line_numbers_and_strict_rejects_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let csv = dir.path().join("bad.csv");
    std::fs::write(
        &csv,
        "account_id,national_id,full_name,birthdate,gender\n\
         u1,079190004512,Nguyễn Thị Lan,14/03/1990,Nữ\n\
         u2,074068005531,,17/02/1968,Nam\n\
         u3,074303002268,Bùi Thị Bảo Ngọc,31/02/2003,Nữ\n",
    )
    .unwrap();
    let file = csv.to_str().unwrap();
    let strict = run(
        &["accounts", "import", "--kind", "citizen", "--file", file, "--province", "bd", "--strict"],
        &cfg,
    );
    assert_eq!(strict.status.code(), Some(1));
    let err = String::from_utf8_lossy(&strict.stderr);
    assert!(
        err.contains("line 3") && err.contains("line 4") && err.contains("nothing was imported"),
        "{err}"
    );
    let lenient = run(&["accounts", "import", "--kind", "citizen", "--file", file, "--province", "bd"], &cfg);
    assert_eq!(lenient.status.code(), Some(3), "completed with row errors");
    assert!(stdout(&lenient).contains("1 created"), "{}", stdout(&lenient));
    let unknown = run(&["accounts", "import", "--kind", "citizen", "--file", file, "--province", "xx"], &cfg);
    assert_eq!(unknown.status.code(), Some(2));
}

#[test]
fn merge_and_lock_need_a_reason_and_are_audited() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let hcm = "config/samples/hcm-citizens.csv";
    let brvt = "config/samples/brvt-citizens.csv";
    assert!(
        run(&["accounts", "import", "--kind", "citizen", "--file", hcm, "--province", "hcm"], &cfg)
            .status
            .success()
    );
    assert!(
        run(&["accounts", "import", "--kind", "citizen", "--file", brvt, "--province", "brvt"], &cfg)
            .status
            .success()
    );
    let lock = run(
        &["accounts", "lock", "--upstream", "hcm", "--subject", "a1c95e07-64d2-4f3b-b8a0-2e7f19c6d540"],
        &cfg,
    );
    assert!(!lock.status.success(), "--reason is required");
    let lock = run(
        &[
            "accounts",
            "lock",
            "--upstream",
            "hcm",
            "--subject",
            "a1c95e07-64d2-4f3b-b8a0-2e7f19c6d540",
            "--reason",
            "reported stolen",
        ],
        &cfg,
    );
    assert!(lock.status.success(), "{}", String::from_utf8_lossy(&lock.stderr));
    // Two accounts with different verified numbers are never merged blindly.
    let refused = run(
        &[
            "accounts",
            "merge",
            "--from",
            "upstream:hcm/5e28d0b1-7f3c-4e96-a4d2-0b8c6f1e3a77",
            "--into",
            "upstream:hcm/0b6a41d2-93e8-4c15-a7f0-6d2e8b9c1f34",
            "--reason",
            "test",
        ],
        &cfg,
    );
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("national ID"));
    let units = gateway().args(["units", "import"]).arg("--config").arg(&cfg).output().unwrap();
    assert!(stdout(&units).contains("already imported"), "{}", stdout(&units));
    let audit: serde_json::Value = serde_json::from_slice(&run(&["accounts", "audit"], &cfg).stdout).unwrap();
    let lock_line = audit.as_array().unwrap().iter().find(|l| l["action"] == "lock").unwrap();
    assert_eq!(lock_line["reason"], "reported stolen");
    assert_eq!(lock_line["actor"], "admin.test");
}
