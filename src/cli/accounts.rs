//! `sso-gateway accounts …` and `sso-gateway units …`: account administration from the command
//! line. Every operation that changes or reads a person's account is written to the account
//! store's append-only audit log with who (`--actor`, default `$USER`), when, what and why
//! (`--reason`, required for changes).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};
use serde_json::json;

use crate::accounts::import::{ImportKind, ImportRequest, ImportSummary, parse_csv};
use crate::accounts::import_runs::ImportRunMeta;
use crate::accounts::units::UnitData;
use crate::accounts::{AccountSelector, AccountStore, LinkPolicy};
use crate::clock::Clock;
use crate::config::Settings;

#[derive(Debug, Args)]
pub struct Common {
    #[arg(long, short, env = "SSO_GATEWAY_CONFIG")]
    config: PathBuf,
    /// Who performs the operation (recorded in the audit log).
    #[arg(long, env = "USER", default_value = "unknown")]
    actor: String,
}

/// Names one account.
#[derive(Debug, Args)]
pub struct Select {
    /// The account's public `sub`.
    #[arg(long, group = "account")]
    sub: Option<String>,
    /// Its 12-digit national ID number (current or a former one).
    #[arg(long, group = "account")]
    national_id: Option<String>,
    /// An upstream identity linked to it (with --subject).
    #[arg(long, group = "account", requires = "subject")]
    upstream: Option<String>,
    #[arg(long, requires = "upstream")]
    subject: Option<String>,
    /// Its internal id.
    #[arg(long, group = "account")]
    id: Option<String>,
}

impl Select {
    fn selector(&self) -> Result<AccountSelector, String> {
        match (&self.sub, &self.national_id, &self.upstream, &self.subject, &self.id) {
            (Some(s), ..) => Ok(AccountSelector::Sub(s.clone())),
            (_, Some(n), ..) => Ok(AccountSelector::NationalId(n.clone())),
            (_, _, Some(u), Some(s), _) => {
                Ok(AccountSelector::Upstream { upstream: u.clone(), subject: s.clone() })
            }
            (.., Some(id)) => Ok(AccountSelector::Id(id.clone())),
            _ => Err("name the account with --sub, --national-id, --upstream/--subject or --id".into()),
        }
    }
}

/// Parses `sub:…`, `national-id:…`, `upstream:ID/SUBJECT` or `id:…`.
fn parse_selector(s: &str) -> Result<AccountSelector, String> {
    let (kind, value) = s.split_once(':').ok_or_else(|| format!("{s:?}: expected KIND:VALUE"))?;
    match kind {
        "sub" => Ok(AccountSelector::Sub(value.into())),
        "national-id" | "nid" => Ok(AccountSelector::NationalId(value.into())),
        "id" => Ok(AccountSelector::Id(value.into())),
        "upstream" => {
            let (u, subject) =
                value.split_once('/').ok_or_else(|| format!("{s:?}: expected upstream:ID/SUBJECT"))?;
            Ok(AccountSelector::Upstream { upstream: u.into(), subject: subject.into() })
        }
        other => Err(format!("unknown selector kind {other:?} (sub, national-id, upstream, id)")),
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Kind {
    Citizen,
    Official,
}

#[derive(Debug, Subcommand)]
pub enum AccountsCommand {
    /// Bulk-import a former province's accounts from CSV (idempotent; see README "Accounts").
    Import {
        #[command(flatten)]
        common: Common,
        #[arg(long, value_enum)]
        kind: Kind,
        #[arg(long)]
        file: PathBuf,
        /// Former province = the upstream id whose identities the rows are (hcm, bd, brvt).
        #[arg(long)]
        province: String,
        /// Reject the whole file if any row is invalid.
        #[arg(long)]
        strict: bool,
    },
    /// Print an account with its links, number history, aliases, warnings and audit trail.
    Show {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        select: Select,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Link an upstream identity to an account (moves it if linked elsewhere).
    Link {
        #[command(flatten)]
        common: Common,
        #[arg(long)]
        upstream: String,
        #[arg(long)]
        subject: String,
        /// Target account: sub:…, national-id:…, upstream:ID/SUBJECT or id:….
        #[arg(long, value_parser = parse_selector)]
        to: AccountSelector,
        #[arg(long)]
        reason: String,
    },
    /// Remove an upstream identity's link.
    Unlink {
        #[command(flatten)]
        common: Common,
        #[arg(long)]
        upstream: String,
        #[arg(long)]
        subject: String,
        #[arg(long)]
        reason: String,
    },
    /// Merge one account into another; the merged one stays as merged-into (its sub resolves).
    Merge {
        #[command(flatten)]
        common: Common,
        /// The account that disappears: sub:…, national-id:…, upstream:ID/SUBJECT or id:….
        #[arg(long, value_parser = parse_selector)]
        from: AccountSelector,
        /// The surviving account.
        #[arg(long, value_parser = parse_selector)]
        into: AccountSelector,
        #[arg(long)]
        reason: String,
    },
    /// Lock an account: no login, no new tokens, no userinfo.
    Lock {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        select: Select,
        #[arg(long)]
        reason: String,
    },
    /// Unlock a locked account.
    Unlock {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        select: Select,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Re-key an account to a new national ID number (the old one stays in its history), or
    /// record a checked number on an account that has none.
    Rekey {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        select: Select,
        #[arg(long)]
        new_national_id: String,
        #[arg(long)]
        reason: String,
    },
    /// Decide an official's unit in the new structure (e.g. a split former unit).
    SetUnit {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        select: Select,
        /// Code of a unit of the new structure.
        #[arg(long)]
        unit: String,
        #[arg(long)]
        reason: String,
    },
    /// List structural warnings about asserted national ID numbers.
    Warnings {
        #[command(flatten)]
        common: Common,
        #[arg(long)]
        code: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
    /// List linking conflicts waiting for review, and pending accounts whose number another
    /// account now holds verified (merge candidates).
    Conflicts {
        #[command(flatten)]
        common: Common,
        /// Include resolved ones.
        #[arg(long)]
        all: bool,
    },
    /// Close a conflict without merging (e.g. two different people).
    ResolveConflict {
        #[command(flatten)]
        common: Common,
        #[arg(long)]
        id: i64,
        #[arg(long, default_value = "kept-separate")]
        resolution: String,
        #[arg(long)]
        reason: String,
    },
    /// Print the audit log, newest first.
    Audit {
        #[command(flatten)]
        common: Common,
        /// Only lines about this account id.
        #[arg(long)]
        target: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
}

#[derive(Debug, Subcommand)]
pub enum UnitsCommand {
    /// Import the administrative units and the former → new mapping (idempotent). Without
    /// --dir, the copy compiled into the binary (config/units/).
    Import {
        #[command(flatten)]
        common: Common,
        /// Directory laid out like config/units/.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Version name of this unit set (the latest imported is active).
        #[arg(long)]
        version: Option<String>,
    },
}

/// An admin command's failure, printed as `error: …`.
struct Failure(String, ExitCode);

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure(e.to_string(), ExitCode::FAILURE)
    }
}

async fn open(common: &Common) -> Result<(Settings, AccountStore), Failure> {
    let settings = Settings::load(&common.config)
        .map_err(|e| Failure(format!("{}: {e}", common.config.display()), ExitCode::from(2)))?;
    let store = AccountStore::connect(settings.accounts.url.expose(), 2).await?;
    Ok((settings, store))
}

fn require_reason(reason: &str) -> Result<&str, Failure> {
    if reason.trim().is_empty() {
        Err(Failure("--reason must not be empty".into(), ExitCode::from(2)))
    } else {
        Ok(reason)
    }
}

fn print_json(v: &impl serde::Serialize) -> Result<(), Failure> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

pub async fn run_units(command: UnitsCommand) -> ExitCode {
    let UnitsCommand::Import { common, dir, version } = command;
    let result = async {
        let data = match &dir {
            Some(d) => UnitData::from_dir(d, version.as_deref().unwrap_or("imported"))?,
            None => {
                let mut d = UnitData::embedded()?;
                if let Some(v) = &version {
                    d.version = v.clone();
                }
                d
            }
        };
        let (_, store) = open(&common).await?;
        let now = Clock::system().now();
        let summary = store.import_units(&data, now).await?;
        store
            .audit(
                &common.actor,
                "units-import",
                &format!("units:{}", summary.version),
                None,
                &json!(summary),
                now,
            )
            .await?;
        println!(
            "unit set {}: {} new units, {} former units, {} mappings ({} split former units){}",
            summary.version,
            summary.new_units,
            summary.former_units,
            summary.mappings,
            summary.split_former_units,
            if summary.changed { "; imported and active" } else { "; already imported, nothing changed" }
        );
        Ok::<_, Failure>(ExitCode::SUCCESS)
    }
    .await;
    finish(result)
}

fn finish(result: Result<ExitCode, Failure>) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(Failure(message, code)) => {
            eprintln!("error: {message}");
            code
        }
    }
}

pub async fn run_accounts(command: AccountsCommand) -> ExitCode {
    finish(accounts(command).await)
}

/// An opened account store, who acts on it, and when (for the audit log).
struct Admin {
    store: AccountStore,
    actor: String,
    now: i64,
}

impl Admin {
    async fn open(common: &Common) -> Result<Self, Failure> {
        let (_, store) = open(common).await?;
        Ok(Admin { store, actor: common.actor.clone(), now: Clock::system().now() })
    }
}

/// Runs one `accounts` subcommand (each is its own function below).
async fn accounts(command: AccountsCommand) -> Result<ExitCode, Failure> {
    use AccountsCommand as C;
    let done = match command {
        C::Import { common, kind, file, province, strict } => {
            return import(&common, kind, &file, &province, strict).await;
        }
        C::Show { common, select, reason } => {
            show(&Admin::open(&common).await?, &select, reason.as_deref()).await
        }
        C::Link { common, upstream, subject, to, reason } => {
            link(&Admin::open(&common).await?, &upstream, &subject, &to, &reason).await
        }
        C::Unlink { common, upstream, subject, reason } => {
            unlink(&Admin::open(&common).await?, &upstream, &subject, &reason).await
        }
        C::Merge { common, from, into, reason } => {
            merge(&Admin::open(&common).await?, &from, &into, &reason).await
        }
        C::Lock { common, select, reason } => lock(&Admin::open(&common).await?, &select, &reason).await,
        C::Unlock { common, select, reason } => {
            unlock(&Admin::open(&common).await?, &select, reason.as_deref()).await
        }
        C::Rekey { common, select, new_national_id, reason } => {
            rekey(&Admin::open(&common).await?, &select, &new_national_id, &reason).await
        }
        C::SetUnit { common, select, unit, reason } => {
            set_unit(&Admin::open(&common).await?, &select, &unit, &reason).await
        }
        C::Warnings { common, code, limit } => {
            warnings(&Admin::open(&common).await?, code.as_deref(), limit).await
        }
        C::Conflicts { common, all } => conflicts(&Admin::open(&common).await?, all).await,
        C::ResolveConflict { common, id, resolution, reason } => {
            resolve_conflict(&Admin::open(&common).await?, id, &resolution, &reason).await
        }
        C::Audit { common, target, limit } => {
            let admin = Admin::open(&common).await?;
            print_json(&admin.store.audit_log(target.as_deref(), limit).await?)
        }
    };
    done.map(|()| ExitCode::SUCCESS)
}

/// `accounts show`: everything about one account, as JSON (the reading is audited).
async fn show(admin: &Admin, select: &Select, reason: Option<&str>) -> Result<(), Failure> {
    let Admin { store, actor, now } = admin;
    let selector = select.selector()?;
    let account = store
        .find(&selector)
        .await?
        .ok_or_else(|| Failure(format!("no account with {selector}"), ExitCode::FAILURE))?;
    store.audit(actor, "show", &account.id, reason, &json!({ "by": selector.to_string() }), *now).await?;
    let conflicts: Vec<_> = store
        .conflicts(true)
        .await?
        .into_iter()
        .filter(|c| c.existing_account_id == account.id || c.new_account_id == account.id)
        .collect();
    print_json(&json!({
        "account": account,
        "links": store.links_of(&account.id).await?,
        "national_id_history": store.number_history(&account.id).await?,
        "aliases": store.aliases_of(&account.id).await?,
        "warnings": store.warnings_of(&account.id).await?,
        "conflicts": conflicts,
        "audit": store.audit_log(Some(&account.id), 20).await?,
    }))
}

async fn link(
    admin: &Admin,
    upstream: &str,
    subject: &str,
    to: &AccountSelector,
    reason: &str,
) -> Result<(), Failure> {
    admin.store.link(upstream, subject, to, &admin.actor, require_reason(reason)?, admin.now).await?;
    println!("linked {upstream}/{subject} to {to}");
    Ok(())
}

async fn unlink(admin: &Admin, upstream: &str, subject: &str, reason: &str) -> Result<(), Failure> {
    admin.store.unlink(upstream, subject, &admin.actor, require_reason(reason)?, admin.now).await?;
    println!("unlinked {upstream}/{subject}");
    Ok(())
}

async fn merge(
    admin: &Admin,
    from: &AccountSelector,
    into: &AccountSelector,
    reason: &str,
) -> Result<(), Failure> {
    let survivor = admin.store.merge(from, into, &admin.actor, require_reason(reason)?, admin.now).await?;
    println!("merged {from} into account {} (sub {})", survivor.id, survivor.sub);
    Ok(())
}

async fn lock(admin: &Admin, select: &Select, reason: &str) -> Result<(), Failure> {
    let reason = Some(require_reason(reason)?);
    let a = admin.store.set_locked(&select.selector()?, true, &admin.actor, reason, admin.now).await?;
    println!("locked account {}", a.id);
    Ok(())
}

async fn unlock(admin: &Admin, select: &Select, reason: Option<&str>) -> Result<(), Failure> {
    let a = admin.store.set_locked(&select.selector()?, false, &admin.actor, reason, admin.now).await?;
    println!("unlocked account {}", a.id);
    Ok(())
}

async fn rekey(admin: &Admin, select: &Select, new_national_id: &str, reason: &str) -> Result<(), Failure> {
    let selector = select.selector()?;
    let a = admin
        .store
        .rekey(&selector, new_national_id, &admin.actor, require_reason(reason)?, admin.now)
        .await?;
    println!("account {} now holds the new number; the old one stays in its history", a.id);
    Ok(())
}

async fn set_unit(admin: &Admin, select: &Select, unit: &str, reason: &str) -> Result<(), Failure> {
    let selector = select.selector()?;
    let a =
        admin.store.decide_unit(&selector, unit, &admin.actor, require_reason(reason)?, admin.now).await?;
    let name = a.official.and_then(|o| o.org_unit).map(|u| u.name).unwrap_or_default();
    println!("account {}: unit {unit} {name}", a.id);
    Ok(())
}

/// `accounts warnings`: one tab-separated line per warning (the listing is audited).
async fn warnings(admin: &Admin, code: Option<&str>, limit: i64) -> Result<(), Failure> {
    let list = admin.store.warnings(code, limit).await?;
    let detail = json!({ "code": code, "count": list.len() });
    admin.store.audit(&admin.actor, "list-warnings", "warnings", None, &detail, admin.now).await?;
    for w in &list {
        println!(
            "{}\t{}\t{}\t{}\t{}",
            w.account_id,
            w.source,
            w.code,
            w.national_id.as_deref().unwrap_or("-"),
            w.detail
        );
    }
    eprintln!("{} warning(s)", list.len());
    Ok(())
}

/// `accounts conflicts`: linking conflicts and pending accounts awaiting a link, as JSON.
async fn conflicts(admin: &Admin, all: bool) -> Result<(), Failure> {
    let store = &admin.store;
    let list = store.conflicts(all).await?;
    let pending: Vec<_> = store
        .pending_link_candidates(1000)
        .await?
        .into_iter()
        .map(|(p, v, n)| json!({ "pending_account_id": p, "verified_account_id": v, "national_id": n }))
        .collect();
    let count = json!({ "count": list.len(), "pending": pending.len() });
    store.audit(&admin.actor, "list-conflicts", "conflicts", None, &count, admin.now).await?;
    print_json(&json!({ "conflicts": list, "pending_link_candidates": pending }))
}

async fn resolve_conflict(admin: &Admin, id: i64, resolution: &str, reason: &str) -> Result<(), Failure> {
    admin.store.resolve_conflict(id, resolution, &admin.actor, require_reason(reason)?, admin.now).await?;
    println!("conflict {id} resolved: {resolution}");
    Ok(())
}

/// Exit code of an import that completed with row errors (valid rows went in).
const EXIT_ROW_ERRORS: u8 = 3;

async fn import(
    common: &Common,
    kind: Kind,
    file: &PathBuf,
    province: &str,
    strict: bool,
) -> Result<ExitCode, Failure> {
    let (settings, store) = open(common).await?;
    let Some(upstream) = settings.upstreams.iter().find(|u| u.id == province) else {
        let known: Vec<&str> = settings.upstreams.iter().map(|u| u.id.as_str()).collect();
        return Err(Failure(
            format!(
                "--province {province} is not an upstream in the configuration (known: {})",
                known.join(", ")
            ),
            ExitCode::from(2),
        ));
    };
    let policy = LinkPolicy { trust_national_id: upstream.linking.trust_national_id };
    let text = std::fs::read_to_string(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let kind = match kind {
        Kind::Citizen => ImportKind::Citizen,
        Kind::Official => ImportKind::Official,
    };
    let started_at = Clock::system().now();
    let file_name = file.display().to_string();
    let meta = |finished_at| ImportRunMeta {
        actor: &common.actor,
        source: province,
        file: &file_name,
        kind,
        strict,
        started_at,
        finished_at,
    };
    let (rows, errors) = match parse_csv(&text, kind) {
        Ok(parsed) => parsed,
        Err(e) => {
            // An unreadable file is a run too: recorded as rejected with its one error.
            let summary =
                ImportSummary { errors: vec![e.clone()], rejected: true, ..ImportSummary::default() };
            store.record_import_run(&meta(Clock::system().now()), &summary).await?;
            return Err(Failure(format!("{} line {}: {}", file_name, e.line, e.reason), ExitCode::FAILURE));
        }
    };
    let bar = indicatif::ProgressBar::new(rows.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} rows ({per_sec}, eta {eta})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let now = Clock::system().now();
    let request = ImportRequest { province, policy, rows: &rows, errors, strict, now };
    let summary = store.import_rows(request, |n| bar.set_position(n)).await?;
    bar.finish_and_clear();
    let detail = json!({
        "file": file.display().to_string(), "kind": kind, "strict": strict, "rows": summary.rows,
        "created": summary.created, "linked_by_national_id": summary.linked_by_national_id,
        "pending": summary.pending, "conflicts": summary.conflicts, "already_imported": summary.already_imported,
        "errors": summary.errors.len(), "rejected": summary.rejected,
    });
    store.audit(&common.actor, "import", &format!("import:{province}"), None, &detail, now).await?;
    let run = store.record_import_run(&meta(Clock::system().now()), &summary).await?;
    eprintln!("recorded as import run {run}");
    for e in &summary.errors {
        eprintln!("{} line {}: {}", file.display(), e.line, e.reason);
    }
    if summary.rejected {
        eprintln!("--strict: {} invalid row(s); nothing was imported", summary.errors.len());
        return Ok(ExitCode::FAILURE);
    }
    println!(
        "{} rows: {} created, {} linked by national ID, {} pending (untrusted number), {} conflicts for review, \
         {} already imported, {} rejected",
        summary.rows,
        summary.created,
        summary.linked_by_national_id,
        summary.pending,
        summary.conflicts,
        summary.already_imported,
        summary.errors.len()
    );
    Ok(if summary.errors.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(EXIT_ROW_ERRORS) })
}
