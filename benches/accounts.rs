//! Account-store benchmark (on demand, not part of `cargo test`):
//!
//! ```sh
//! cargo bench --bench accounts                          # 1 000 000 accounts, SQLite and PostgreSQL
//! cargo bench --bench accounts -- --accounts 100000 --backend sqlite
//! SSO_BENCH_POSTGRES_URL=postgres://… cargo bench --bench accounts -- --backend postgres
//! ```
//!
//! For each backend it fills a fresh store (SQLite file in a temp dir; PostgreSQL in a
//! throw-away schema) with N synthetic accounts, each with a verified national ID number and
//! one identity link, and reports:
//! - the bulk fill rate (multi-row INSERTs: storage throughput),
//! - the import rate through the real importer (`import_rows`: the linking rules, one
//!   savepoint per row; half of the rows link by national ID to existing accounts),
//! - p50/p99 of the login-path lookups: by upstream identity, by national ID, and a whole
//!   `resolve_login` of a known identity (lookup + last-login update + attribute check),
//! - the query plans of the login-path lookups (they must be index point queries).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use rand::Rng;
use sqlx::{Connection, Row};
use sso_gateway::accounts::import::{ImportKind, parse_csv};
use sso_gateway::accounts::{AccountStore, LinkPolicy, Profile};

const UPSTREAMS: [&str; 3] = ["hcm", "bd", "brvt"];
const PREFIXES: [&str; 6] = ["079", "074", "077", "001", "038", "052"];

/// Century/gender digit and two-digit year of person `i` (odd digit = female, as `gender`).
fn century_year(i: u64) -> (u64, u64) {
    if i % 7 < 5 { (i % 2, 40 + (i / 7) % 60) } else { (2 + i % 2, (i / 7) % 20) }
}

/// Unique for i < 1 000 000 000 (the serial and prefix index are derived from i).
fn national_id(i: u64) -> String {
    let prefix = PREFIXES[(i % PREFIXES.len() as u64) as usize];
    let (digit, yy) = century_year(i % 1_000_000);
    format!("{prefix}{digit}{yy:02}{:06}", i % 1_000_000)
}

fn name(i: u64) -> String {
    const FAMILY: [&str; 8] = ["Nguyễn", "Trần", "Lê", "Phạm", "Huỳnh", "Võ", "Đặng", "Bùi"];
    const MIDDLE: [&str; 4] = ["Văn", "Thị", "Minh", "Ngọc"];
    const GIVEN: [&str; 8] = ["An", "Bình", "Châu", "Dũng", "Hòa", "Lan", "Phúc", "Thư"];
    format!("{} {} {}", FAMILY[(i % 8) as usize], MIDDLE[(i / 8 % 4) as usize], GIVEN[(i / 32 % 8) as usize])
}

/// Consistent with the number, so the synthetic people carry no structural warnings.
fn birthdate(i: u64) -> String {
    let (digit, yy) = century_year(i % 1_000_000);
    format!("{:04}-{:02}-{:02}", (19 + digit / 2) * 100 + yy, 1 + i % 12, 1 + i % 28)
}

struct Args {
    accounts: u64,
    import_rows: u64,
    samples: usize,
    backends: Vec<String>,
}

fn args() -> Args {
    let mut a = Args {
        accounts: 1_000_000,
        import_rows: 20_000,
        samples: 10_000,
        backends: vec!["sqlite".into(), "postgres".into()],
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut it = argv.iter();
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--accounts" => a.accounts = it.next().and_then(|v| v.parse().ok()).expect("--accounts N"),
            "--import-rows" => {
                a.import_rows = it.next().and_then(|v| v.parse().ok()).expect("--import-rows N")
            }
            "--samples" => a.samples = it.next().and_then(|v| v.parse().ok()).expect("--samples N"),
            "--backend" => {
                let v = it.next().expect("--backend sqlite|postgres|both");
                a.backends =
                    if v == "both" { vec!["sqlite".into(), "postgres".into()] } else { vec![v.clone()] };
            }
            // cargo bench passes --bench; ignore flags we do not know.
            _ => {}
        }
    }
    a
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn report(label: &str, mut samples: Vec<Duration>) {
    samples.sort();
    println!(
        "  {label:<32} p50 {:>8.1} µs   p99 {:>8.1} µs   ({} samples)",
        percentile(&samples, 0.50).as_secs_f64() * 1e6,
        percentile(&samples, 0.99).as_secs_f64() * 1e6,
        samples.len()
    );
}

async fn bulk_fill(pool: &sqlx::AnyPool, n: u64) -> Duration {
    let start = Instant::now();
    let chunk = 500u64;
    let mut i = 0;
    while i < n {
        let end = (i + chunk).min(n);
        let mut tx = pool.begin().await.unwrap();
        let mut sql = String::from(
            "INSERT INTO accounts (id, sub, kind, status, national_id, full_name, name_key, birthdate, gender, created_at, updated_at) VALUES ",
        );
        let mut links = String::from(
            "INSERT INTO identity_links (upstream, subject, account_id, link_method, linked_at, last_login_at) VALUES ",
        );
        for (k, _) in (i..end).enumerate() {
            if k > 0 {
                sql.push(',');
                links.push(',');
            }
            let b = k * 9;
            sql.push_str(&format!(
                "(${}, ${}, 'citizen', 'active', ${}, ${}, ${}, ${}, ${}, ${}, ${})",
                b + 1,
                b + 2,
                b + 3,
                b + 4,
                b + 5,
                b + 6,
                b + 7,
                b + 8,
                b + 9
            ));
            let l = k * 3;
            links.push_str(&format!("(${}, ${}, ${}, 'first_login', 1, 1)", l + 1, l + 2, l + 3));
        }
        let mut q = sqlx::query(&sql);
        let mut lq = sqlx::query(&links);
        for j in i..end {
            let id = format!("bench-{j:010}");
            q = q
                .bind(id.clone())
                .bind(uuid::Uuid::new_v4().to_string())
                .bind(national_id(j))
                .bind(name(j))
                .bind(sso_gateway::accounts::names::match_key(&name(j)))
                .bind(birthdate(j))
                .bind(if j.is_multiple_of(2) { "male" } else { "female" })
                .bind(1_i64)
                .bind(1_i64);
            lq = lq.bind(UPSTREAMS[(j % 3) as usize]).bind(format!("s{j}")).bind(id);
        }
        q.execute(&mut *tx).await.unwrap();
        lq.execute(&mut *tx).await.unwrap();
        tx.commit().await.unwrap();
        i = end;
        if i.is_multiple_of(100_000) {
            eprintln!("    filled {i}");
        }
    }
    start.elapsed()
}

async fn explain(pool: &sqlx::AnyPool, postgres: bool) {
    let queries = [
        (
            "by upstream identity",
            "SELECT account_id FROM identity_links WHERE upstream = 'hcm' AND subject = 's42'",
        ),
        ("by national ID", "SELECT id FROM accounts WHERE national_id = '079000000042'"),
        ("by former number", "SELECT account_id FROM national_id_history WHERE national_id = '077000000042'"),
        ("by sub", "SELECT id FROM accounts WHERE sub = 'x'"),
    ];
    for (label, q) in queries {
        let sql = if postgres { format!("EXPLAIN {q}") } else { format!("EXPLAIN QUERY PLAN {q}") };
        let rows = sqlx::query(&sql).fetch_all(pool).await.unwrap();
        let plan: Vec<String> = rows.iter().map(|r| r.try_get::<String, _>(r.len() - 1).unwrap()).collect();
        println!("  plan {label:<22} {}", plan.join(" / "));
    }
}

async fn run(backend: &str, a: &Args) {
    let dir = tempfile::tempdir().unwrap();
    let mut schema = None;
    let url = match backend {
        "sqlite" => format!("sqlite://{}/bench.db?mode=rwc", dir.path().display()),
        _ => {
            sqlx::any::install_default_drivers();
            let base = std::env::var("SSO_BENCH_POSTGRES_URL")
                .or_else(|_| std::env::var("SSO_TEST_POSTGRES_URL"))
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
            let name = format!("sso_bench_{}", uuid::Uuid::new_v4().simple());
            let mut conn = sqlx::AnyConnection::connect(&base).await.unwrap();
            sqlx::query(&format!("CREATE SCHEMA {name}")).execute(&mut conn).await.unwrap();
            conn.close().await.unwrap();
            schema = Some((base.clone(), name.clone()));
            let sep = if base.contains('?') { '&' } else { '?' };
            format!("{base}{sep}options=-c%20search_path%3D{name}")
        }
    };
    let store = AccountStore::connect(&url, 4).await.unwrap();
    let sqlite = backend == "sqlite";
    let pool = sqlx::any::AnyPoolOptions::new()
        .max_connections(2)
        .after_connect(move |conn, _| {
            Box::pin(async move {
                // The same durability setting as the store's own connections.
                if sqlite {
                    sqlx::query("PRAGMA synchronous = NORMAL").execute(&mut *conn).await?;
                }
                Ok(())
            })
        })
        .connect(&url)
        .await
        .unwrap();
    println!("\n== {backend}: {} accounts", a.accounts);
    let fill = bulk_fill(&pool, a.accounts).await;
    println!(
        "  bulk fill                        {:>10.0} accounts/s ({:.1} s; account + link rows, indexes maintained)",
        a.accounts as f64 / fill.as_secs_f64(),
        fill.as_secs_f64()
    );
    // 1% of the accounts were re-keyed: their former numbers stay in the history table.
    let rekeyed = (a.accounts / 100).max(1);
    for chunk_start in (0..rekeyed).step_by(500) {
        let end = (chunk_start + 500).min(rekeyed);
        let rows: Vec<String> = (chunk_start..end)
            .map(|j| format!("('{}', 'bench-{j:010}', '{}', 1)", national_id(j + 5_000_000), national_id(j)))
            .collect();
        sqlx::query(&format!(
            "INSERT INTO national_id_history (national_id, account_id, replaced_by, changed_at) VALUES {}",
            rows.join(", ")
        ))
        .execute(&pool)
        .await
        .unwrap();
    }
    sqlx::query("ANALYZE").execute(&pool).await.unwrap();

    // Import through the real importer: new identities of "bd"; every second row carries the
    // number (and birthdate and name) of an existing account and links to it.
    let mut csv = String::from("account_id,national_id,full_name,birthdate,gender\n");
    for k in 0..a.import_rows {
        if k.is_multiple_of(2) {
            let j = (k * 37) % a.accounts;
            csv.push_str(&format!(
                "imp-{k},{},{},{},{}\n",
                national_id(j),
                name(j),
                birthdate(j),
                if j.is_multiple_of(2) { "male" } else { "female" }
            ));
        } else {
            let j = a.accounts + k;
            csv.push_str(&format!(
                "imp-{k},{},{},{},{}\n",
                national_id(j + 3_000_000),
                name(j),
                birthdate(j),
                if j.is_multiple_of(2) { "male" } else { "female" }
            ));
        }
    }
    let (rows, errors) = parse_csv(&csv, ImportKind::Citizen).unwrap();
    assert!(errors.is_empty(), "{errors:?}");
    let start = Instant::now();
    let summary = store
        .import_rows("bd-import", LinkPolicy { trust_national_id: true }, &rows, errors, false, 2, |_| {})
        .await
        .unwrap();
    let took = start.elapsed();
    println!(
        "  import (linking rules)           {:>10.0} rows/s ({} rows: {} linked by national ID, {} created, {} errors)",
        rows.len() as f64 / took.as_secs_f64(),
        rows.len(),
        summary.linked_by_national_id,
        summary.created,
        summary.errors.len()
    );

    let mut rng = rand::thread_rng();
    let mut by_link = Vec::with_capacity(a.samples);
    for _ in 0..a.samples {
        let j = rng.gen_range(0..a.accounts);
        let t = Instant::now();
        let found = store.find_by_link(UPSTREAMS[(j % 3) as usize], &format!("s{j}")).await.unwrap();
        by_link.push(t.elapsed());
        assert!(found.is_some());
    }
    report("find by upstream identity", by_link);
    let mut by_number = Vec::with_capacity(a.samples);
    for _ in 0..a.samples {
        let j = rng.gen_range(0..a.accounts);
        let t = Instant::now();
        let found = store.find_by_national_id(&national_id(j)).await.unwrap();
        by_number.push(t.elapsed());
        assert!(found.is_some());
    }
    report("find by national ID", by_number);
    let mut by_former = Vec::with_capacity(a.samples);
    for _ in 0..a.samples {
        let j = rng.gen_range(0..rekeyed);
        let t = Instant::now();
        let found = store.find_by_national_id(&national_id(j + 5_000_000)).await.unwrap();
        by_former.push(t.elapsed());
        assert!(found.is_some());
    }
    report("find by former (re-keyed) number", by_former);
    let mut logins = Vec::with_capacity(a.samples);
    let policy = LinkPolicy { trust_national_id: true };
    for s in 0..a.samples {
        let j = rng.gen_range(0..a.accounts);
        let p = Profile {
            name: Some(name(j)),
            birthdate: Some(birthdate(j)),
            national_id: Some(national_id(j)),
            ..Profile::default()
        };
        let t = Instant::now();
        store
            .resolve_login(UPSTREAMS[(j % 3) as usize], &format!("s{j}"), &p, policy, 10 + s as i64)
            .await
            .unwrap();
        logins.push(t.elapsed());
    }
    report("resolve_login (known identity)", logins);
    explain(&pool, backend != "sqlite").await;
    pool.close().await;
    store.close().await;
    if let Some((base, name)) = schema {
        let mut conn = sqlx::AnyConnection::connect(&base).await.unwrap();
        sqlx::query(&format!("DROP SCHEMA {name} CASCADE")).execute(&mut conn).await.unwrap();
        conn.close().await.unwrap();
    }
}

fn main() {
    let a = args();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    println!(
        "account-store benchmark: {} accounts, {} import rows, {} samples per lookup, {cores} cores",
        a.accounts, a.import_rows, a.samples
    );
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    for backend in &a.backends {
        rt.block_on(run(backend, &a));
    }
}
