//! Account-store benchmark (on demand, not part of `cargo test`):
//!
//! ```sh
//! cargo bench --bench accounts                          # 1 000 000 accounts, SQLite and PostgreSQL
//! cargo bench --bench accounts -- --accounts 100000 --backend sqlite
//! cargo bench --bench accounts -- --samples 1000 --import-rows 2000 --before-samples 20   # quicker
//! SSO_BENCH_POSTGRES_URL=postgres://… cargo bench --bench accounts -- --backend postgres  # else a private cluster
//! ```
//!
//! For each backend it fills a fresh store (SQLite file in a temp dir; PostgreSQL in a
//! throw-away schema) with N synthetic accounts, each with a verified national ID number and
//! one identity link, and reports:
//! - the bulk fill time: multi-row INSERTs of 500 rows, 20 000 rows per transaction, on one
//!   connection with fill-only settings (SQLite: `synchronous = OFF`, a 1 GiB page cache;
//!   PostgreSQL: `synchronous_commit = off`), the product's secondary indexes dropped first
//!   and re-created after from their own definitions in the catalog (`sqlite_master`,
//!   `pg_indexes`), checked unchanged. Everything measured after the fill goes through
//!   `AccountStore` and its own connection settings,
//! - on SQLite, every admin search kind before any ANALYZE (the gateway never runs one),
//! - the import rate through the real importer (`import_rows`: the linking rules, one
//!   savepoint per row; half of the rows link by national ID to existing accounts),
//! - p50/p99 of the login-path lookups: by upstream identity, by national ID, and a whole
//!   `resolve_login` of a known identity (lookup + last-login update + attribute check),
//! - the query plans of the login-path lookups (they must be index point queries),
//! - every admin search kind before and after the `admin_search` indexes, with the plans of
//!   the statements `AccountStore::search` runs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use rand::Rng;
use sqlx::{Connection, Row};
use sso_gateway::accounts::import::{ImportKind, ImportRequest, parse_csv};
use sso_gateway::accounts::search::{SearchPage, SearchQuery};
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

fn public_sub(i: u64) -> String {
    format!("sub-{i:010}")
}

fn official_code(i: u64) -> String {
    format!("CB{i:08}")
}

fn pairwise(i: u64) -> String {
    format!("pw-{i:010}")
}

struct Args {
    accounts: u64,
    import_rows: u64,
    samples: usize,
    search_samples: usize,
    before_samples: usize,
    backends: Vec<String>,
}

fn args() -> Args {
    let mut a = Args {
        accounts: 1_000_000,
        import_rows: 20_000,
        samples: 10_000,
        search_samples: 1_000,
        before_samples: 100,
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
            "--search-samples" => {
                a.search_samples = it.next().and_then(|v| v.parse().ok()).expect("--search-samples N")
            }
            "--before-samples" => {
                a.before_samples = it.next().and_then(|v| v.parse().ok()).expect("--before-samples N")
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

/// Rows per fill transaction (many 500-row statements in one transaction: one commit each).
const FILL_TX_ROWS: u64 = 20_000;

async fn bulk_fill(pool: &sqlx::AnyPool, n: u64) -> Duration {
    let start = Instant::now();
    let chunk = 500u64;
    let mut i = 0;
    let mut tx = None;
    while i < n {
        if tx.is_none() {
            tx = Some(pool.begin().await.unwrap());
        }
        let tx_ref = tx.as_mut().unwrap();
        let end = (i + chunk).min(n);
        let mut sql = String::from(
            "INSERT INTO accounts (id, sub, kind, status, national_id, full_name, name_key, birthdate, gender, created_at, updated_at, name_search) VALUES ",
        );
        let mut links = String::from(
            "INSERT INTO identity_links (upstream, subject, account_id, link_method, linked_at, last_login_at) VALUES ",
        );
        for (k, _) in (i..end).enumerate() {
            if k > 0 {
                sql.push(',');
                links.push(',');
            }
            let b = k * 11;
            sql.push_str(&format!(
                "(${}, ${}, ${}, 'active', ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${})",
                b + 1,
                b + 2,
                b + 3,
                b + 4,
                b + 5,
                b + 6,
                b + 7,
                b + 8,
                b + 9,
                b + 10,
                b + 11
            ));
            let l = k * 3;
            links.push_str(&format!("(${}, ${}, ${}, 'first_login', 1, 1)", l + 1, l + 2, l + 3));
        }
        // Full chunks share one statement text, so each is prepared once per connection
        // (sqlx's statement cache) and re-bound.
        let mut q = sqlx::query(&sql);
        let mut lq = sqlx::query(&links);
        for j in i..end {
            let id = format!("bench-{j:010}");
            q = q
                .bind(id.clone())
                .bind(public_sub(j))
                .bind(if j.is_multiple_of(20) { "official" } else { "citizen" })
                .bind(national_id(j))
                .bind(name(j))
                .bind(sso_gateway::accounts::names::match_key(&name(j)))
                .bind(birthdate(j))
                .bind(if j.is_multiple_of(2) { "male" } else { "female" })
                .bind(1_i64)
                .bind(1_i64)
                .bind(sso_gateway::accounts::names::search_key(&name(j)));
            lq = lq.bind(UPSTREAMS[(j % 3) as usize]).bind(format!("s{j}")).bind(id);
        }
        q.execute(&mut **tx_ref).await.unwrap();
        lq.execute(&mut **tx_ref).await.unwrap();
        // Every 20th person is an official (official code); every 10th has a pairwise subject.
        let officials: Vec<String> = (i..end)
            .filter(|j| j.is_multiple_of(20))
            .map(|j| format!("('bench-{j:010}', '{}', '[]', 1)", official_code(j)))
            .collect();
        if !officials.is_empty() {
            sqlx::query(&format!(
                "INSERT INTO official_profiles (account_id, official_code, roles, updated_at) VALUES {}",
                officials.join(", ")
            ))
            .execute(&mut **tx_ref)
            .await
            .unwrap();
        }
        let pairwise: Vec<String> = (i..end)
            .filter(|j| j.is_multiple_of(10))
            .map(|j| format!("('{}', 'bench.example', 'bench-{j:010}', 1)", pairwise(j)))
            .collect();
        if !pairwise.is_empty() {
            sqlx::query(&format!(
                "INSERT INTO pairwise_subjects (sub, sector, account_id, created_at) VALUES {}",
                pairwise.join(", ")
            ))
            .execute(&mut **tx_ref)
            .await
            .unwrap();
        }
        i = end;
        if (i.is_multiple_of(FILL_TX_ROWS) || i == n)
            && let Some(full) = tx.take()
        {
            full.commit().await.unwrap();
        }
        if i.is_multiple_of(100_000) {
            eprintln!("    filled {i} ({:.1} s)", start.elapsed().as_secs_f64());
        }
    }
    start.elapsed()
}

/// The tables the fill writes.
const FILLED_TABLES: &str =
    "'accounts', 'identity_links', 'official_profiles', 'pairwise_subjects', 'national_id_history'";

/// The product's secondary indexes on the filled tables, name and `CREATE` statement exactly as
/// the migrations made them (read from the catalog): every index but those that back a primary
/// key or UNIQUE constraint, which cannot be dropped.
async fn secondary_indexes(pool: &sqlx::AnyPool, postgres: bool) -> Vec<(String, String)> {
    let sql = if postgres {
        format!(
            "SELECT i.indexname::text, i.indexdef FROM pg_indexes i \
             WHERE i.schemaname = current_schema() AND i.tablename IN ({FILLED_TABLES}) \
             AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = \
                 (quote_ident(i.schemaname) || '.' || quote_ident(i.indexname))::regclass) \
             ORDER BY 1"
        )
    } else {
        format!(
            "SELECT name, sql FROM sqlite_master \
             WHERE type = 'index' AND sql IS NOT NULL AND tbl_name IN ({FILLED_TABLES}) ORDER BY 1"
        )
    };
    let rows = sqlx::query(&sql).fetch_all(pool).await.unwrap();
    rows.iter().map(|r| (r.get::<String, _>(0), r.get::<String, _>(1))).collect()
}

/// One index's `CREATE` statement, exactly as the catalog holds it.
async fn index_definition(pool: &sqlx::AnyPool, postgres: bool, name: &str) -> String {
    let sql = if postgres {
        "SELECT indexdef FROM pg_indexes WHERE schemaname = current_schema() AND indexname = $1"
    } else {
        "SELECT sql FROM sqlite_master WHERE type = 'index' AND name = $1"
    };
    sqlx::query(sql).bind(name).fetch_one(pool).await.unwrap().get::<String, _>(0)
}

/// Fill-only settings of the one connection that writes the synthetic rows. SQLite: no fsync
/// (a crash mid-fill loses only a benchmark), a 1 GiB page cache (the default 2 MiB cannot
/// hold the primary-key B-trees being written in random order), sorting in memory for
/// `CREATE INDEX`. PostgreSQL: commits without waiting for the WAL flush. The measured
/// searches never use this connection: they go through `AccountStore` with the product's own
/// connection settings.
async fn fill_pool(url: &str, sqlite: bool) -> sqlx::AnyPool {
    sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .after_connect(move |conn, _| {
            Box::pin(async move {
                let pragmas: &[&str] = if sqlite {
                    &[
                        "PRAGMA synchronous = OFF",
                        "PRAGMA cache_size = -1048576",
                        "PRAGMA temp_store = MEMORY",
                    ]
                } else {
                    &["SET synchronous_commit = off", "SET maintenance_work_mem = '256MB'"]
                };
                for p in pragmas {
                    sqlx::query(p).execute(&mut *conn).await?;
                }
                Ok(())
            })
        })
        .connect(url)
        .await
        .unwrap()
}

/// The bulk fill with the secondary indexes dropped first and re-created from the product's
/// own definitions after (one sort each instead of a million random inserts; no ANALYZE, the
/// caller decides when). Returns the times of the rows and of the indexes.
async fn fill(url: &str, sqlite: bool, n: u64) -> (Duration, Duration) {
    let pool = fill_pool(url, sqlite).await;
    let indexes = secondary_indexes(&pool, !sqlite).await;
    assert!(indexes.iter().any(|(name, _)| name == "accounts_name_search"), "{indexes:?}");
    for (name, _) in &indexes {
        sqlx::query(&format!("DROP INDEX {name}")).execute(&pool).await.unwrap();
    }
    let rows = bulk_fill(&pool, n).await;
    let start = Instant::now();
    for (name, sql) in &indexes {
        let t = Instant::now();
        sqlx::query(sql).execute(&pool).await.unwrap();
        eprintln!("    index {name} re-created ({:.1} s)", t.elapsed().as_secs_f64());
    }
    assert_eq!(secondary_indexes(&pool, !sqlite).await, indexes, "the product's indexes, unchanged");
    if sqlite {
        // The searches should not read through a WAL the size of the fill.
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&pool).await.unwrap();
    }
    let took = start.elapsed();
    pool.close().await;
    (rows, took)
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

const SEARCH_KINDS: [&str; 8] = [
    "national ID",
    "public sub",
    "pairwise sub",
    "upstream identity",
    "official code",
    "name: family + middle, no accents",
    "name: full, accented",
    "name: second page (cursor)",
];

/// Before: the query each kind needs on the schema before `admin_search` (raw SQL; a name can
/// only be found through `name_key`, the tone-keeping match key, so the query must be typed
/// with its accents).
async fn search_before(pool: &sqlx::AnyPool, kind: &str, j: u64) -> usize {
    let like = "SELECT id FROM accounts WHERE name_key LIKE $1 ORDER BY name_key, id LIMIT 50";
    let (sql, arg1, arg2): (&str, String, Option<String>) = match kind {
        "national ID" => ("SELECT id FROM accounts WHERE national_id = $1", national_id(j), None),
        "public sub" => ("SELECT id FROM accounts WHERE sub = $1", public_sub(j), None),
        "pairwise sub" => {
            ("SELECT account_id FROM pairwise_subjects WHERE sub = $1", pairwise(j / 10 * 10), None)
        }
        "upstream identity" => (
            "SELECT account_id FROM identity_links WHERE upstream = $1 AND subject = $2",
            UPSTREAMS[(j % 3) as usize].to_string(),
            Some(format!("s{j}")),
        ),
        "official code" => (
            "SELECT account_id FROM official_profiles WHERE official_code = $1",
            official_code(j / 20 * 20),
            None,
        ),
        "name: family + middle, no accents" => {
            let full = name(j);
            let prefix: Vec<&str> = full.split(' ').take(2).collect();
            (like, format!("{}%", sso_gateway::accounts::names::match_key(&prefix.join(" "))), None)
        }
        "name: full, accented" => {
            (like, format!("{}%", sso_gateway::accounts::names::match_key(&name(j))), None)
        }
        _ => (
            "SELECT id FROM accounts WHERE name_key LIKE $1 ORDER BY name_key, id LIMIT 50 OFFSET 50",
            format!("{}%", sso_gateway::accounts::names::match_key(&name(j))),
            None,
        ),
    };
    let mut q = sqlx::query(sql).bind(arg1);
    if let Some(b) = arg2 {
        q = q.bind(b);
    }
    q.fetch_all(pool).await.unwrap().len()
}

/// After: `AccountStore::search`, pages of 50.
async fn search_after(store: &AccountStore, kind: &str, j: u64, cursor: Option<&str>) -> SearchPage {
    let query = match kind {
        "national ID" => SearchQuery::NationalId(national_id(j)),
        "public sub" => SearchQuery::Sub(public_sub(j)),
        "pairwise sub" => SearchQuery::Sub(pairwise(j / 10 * 10)),
        "upstream identity" => {
            SearchQuery::Upstream { upstream: UPSTREAMS[(j % 3) as usize].into(), subject: format!("s{j}") }
        }
        "official code" => SearchQuery::OfficialCode(official_code(j / 20 * 20)),
        "name: family + middle, no accents" => {
            let full = sso_gateway::accounts::names::search_key(&name(j));
            SearchQuery::Name(full.split(' ').take(2).collect::<Vec<_>>().join(" "))
        }
        _ => SearchQuery::Name(name(j)),
    };
    store.search(&query, 50, cursor).await.unwrap()
}

/// Every admin search kind, p50/p99 over `--search-samples` random people: first on the
/// schema before `admin_search` (its two indexes dropped, today's queries), then with the
/// indexes and `AccountStore::search`.
async fn search_kinds(store: &AccountStore, pool: &sqlx::AnyPool, a: &Args) {
    let mut rng = rand::thread_rng();
    let postgres = store.dialect() == sso_gateway::accounts::Dialect::Postgres;
    let admin_search = ["accounts_name_search", "official_profiles_official_code"];
    let mut definitions = Vec::new();
    for name in admin_search {
        definitions.push(index_definition(pool, postgres, name).await);
        sqlx::query(&format!("DROP INDEX {name}")).execute(pool).await.unwrap();
    }
    println!("  -- search before (schema without the admin_search indexes, raw SQL)");
    for kind in SEARCH_KINDS {
        // The name scans of the old schema take long at city scale: fewer samples.
        let mut samples = Vec::with_capacity(a.before_samples);
        for _ in 0..a.before_samples {
            let j = rng.gen_range(0..a.accounts);
            let t = Instant::now();
            let n = search_before(pool, kind, j).await;
            samples.push(t.elapsed());
            assert!(n > 0, "{kind}");
        }
        report(&format!("search before: {kind}"), samples);
    }
    // Back exactly as the migration made them.
    for sql in &definitions {
        sqlx::query(sql).execute(pool).await.unwrap();
    }
    sqlx::query("ANALYZE").execute(pool).await.unwrap();
    println!("  -- search after (AccountStore::search, pages of 50)");
    search_after_pass(store, a, a.search_samples, "search after").await;
    print_plans(store, pool).await;
}

/// p50/p99 of every kind through `AccountStore::search` (the product's query code and
/// connection settings), `samples` random people each.
async fn search_after_pass(store: &AccountStore, a: &Args, samples: usize, label: &str) {
    let mut rng = rand::thread_rng();
    for kind in SEARCH_KINDS {
        let mut times = Vec::with_capacity(samples);
        for _ in 0..samples {
            let j = rng.gen_range(0..a.accounts);
            let cursor = if kind.contains("cursor") {
                let first = search_after(store, kind, j, None).await;
                assert!(first.next_cursor.is_some(), "{kind}: a second page");
                first.next_cursor
            } else {
                None
            };
            let t = Instant::now();
            let page = search_after(store, kind, j, cursor.as_deref()).await;
            times.push(t.elapsed());
            assert!(!page.items.is_empty(), "{kind}");
            if kind == "national ID" {
                assert!(
                    page.items
                        .iter()
                        .all(|s| s.national_id_masked.as_deref().is_some_and(|m| m.contains('*')))
                );
            }
        }
        report(&format!("{label}: {kind}"), times);
    }
}

/// The plans of the very statements `AccountStore::search` runs, with a person's values.
async fn print_plans(store: &AccountStore, pool: &sqlx::AnyPool) {
    use sso_gateway::accounts::search as s;
    let postgres = store.dialect() == sso_gateway::accounts::Dialect::Postgres;
    let t = |v: &str| v.to_string();
    for (label, sql, binds) in [
        ("national ID search", s::national_id_sql(), vec![t(&national_id(42)), t("")]),
        ("sub search", s::sub_sql(), vec![t(&public_sub(42)), t("")]),
        ("upstream search", s::upstream_sql(), vec![t("hcm"), t("s42"), t("")]),
        ("official code search", s::official_code_sql(), vec![t(&official_code(20)), t("")]),
        ("name search", s::name_sql(true), vec![t("nguyen van"), t(""), t("nguyen vao")]),
    ] {
        let sql = if postgres { format!("EXPLAIN {sql}") } else { format!("EXPLAIN QUERY PLAN {sql}") };
        let mut q = sqlx::query(&sql);
        for b in binds {
            q = q.bind(b);
        }
        let rows = q.bind(51_i64).fetch_all(pool).await.unwrap();
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
            // A private cluster (tools/test-services) unless a server is named.
            let base =
                std::env::var("SSO_BENCH_POSTGRES_URL").unwrap_or_else(|_| sso_test_services::postgres_url());
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
    let (rows_took, indexes_took) = fill(&url, sqlite, a.accounts).await;
    let fill_took = rows_took + indexes_took;
    println!(
        "  bulk fill                        {:>10.0} accounts/s ({:.1} s rows + {:.1} s secondary indexes = {:.1} s)",
        a.accounts as f64 / fill_took.as_secs_f64(),
        rows_took.as_secs_f64(),
        indexes_took.as_secs_f64(),
        fill_took.as_secs_f64()
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
    if sqlite {
        // SQLite keeps no statistics until someone runs ANALYZE (the gateway never does): the
        // searches as a store nobody analysed answers them.
        println!("  -- search without statistics (no ANALYZE yet; AccountStore::search, pages of 50)");
        search_after_pass(&store, a, a.search_samples.min(100), "no stats").await;
        print_plans(&store, &pool).await;
    }
    let t = Instant::now();
    sqlx::query("ANALYZE").execute(&pool).await.unwrap();
    println!("  ANALYZE                          {:.1} s", t.elapsed().as_secs_f64());

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
        .import_rows(
            ImportRequest {
                province: "bd-import",
                policy: LinkPolicy { trust_national_id: true },
                rows: &rows,
                errors,
                strict: false,
                now: 2,
            },
            |_| {},
        )
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
    search_kinds(&store, &pool, a).await;
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
