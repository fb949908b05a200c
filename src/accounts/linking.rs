//! The linking rules: which unified account an upstream identity (a login, or a row of an
//! import) belongs to.
//!
//! 1. A known `(upstream, subject)` link wins.
//! 2. Otherwise, if the upstream is **trusted to verify national IDs** and asserts a valid
//!    12-digit number, the identity is linked to the account holding that number (verified, or
//!    in its re-key history) — unless the person data conflicts: a different birthdate, or,
//!    when one side has no birthdate, a different folded full name. A conflict is recorded for
//!    review and the person gets a fresh account carrying the number as `conflict`.
//! 3. Otherwise a new account is created. A number from an untrusted upstream is recorded
//!    unverified (`pending`): it never links by itself; the person can prove they own the
//!    verified account (two logins in one browser session, then an explicit confirmation while
//!    logged in to the verified one: [`AccountStore::proof_candidate`] and
//!    [`AccountStore::link_by_proof`]) or an admin links it.
//!
//! Anything that is not 12 digits never links: a 9-digit ID-card number (CMND) or a passport
//! number is kept as an alias attribute, anything else as a warning. Structural oddities of a
//! valid number are recorded as warnings and never block.
//!
//! Concurrent first logins of one person through two trusted upstreams race on the unique
//! index of verified numbers; the loser's transaction fails, is retried, and links.

use serde_json::json;
use sqlx::AnyConnection;

use super::AccountError;
use super::model::{Account, AccountKind, ClaimState, LinkMethod, OrgUnitState, Profile};
use super::names::{match_key, normalize_full_name, search_key};
use super::national_id::{Gender, LegacyIdentifier, NationalId, classify_legacy_identifier};
use super::store::{
    ACCOUNT_COLUMNS, ACCOUNT_FROM, AccountStore, RACE_RETRIES, account_from_row, follow_merges, holder_of,
    is_unique_violation,
};

/// How far one upstream (or import source) is trusted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkPolicy {
    /// The upstream verified the national ID numbers it asserts (e.g. against the ID card or
    /// the national e-ID): a valid number links to the account holding it.
    pub trust_national_id: bool,
}

/// What resolving an identity did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkOutcome {
    /// The identity was already linked.
    Existing,
    /// A new account was created (no number, or a verified number nobody held).
    Created,
    /// Linked to the account holding the same verified number.
    LinkedByNationalId,
    /// A new account holding an unverified number, waiting for proof or an admin.
    CreatedPending,
    /// The number is held by an account with conflicting person data: new account, conflict
    /// recorded.
    CreatedAfterConflict,
}

/// The account an identity resolved to, and how.
#[derive(Debug, Clone)]
pub struct Resolution {
    pub account: Account,
    pub outcome: LinkOutcome,
}

/// One identity assertion to resolve.
#[derive(Debug, Clone, Copy)]
pub(super) struct Assertion<'a> {
    pub upstream: &'a str,
    pub subject: &'a str,
    pub profile: &'a Profile,
    pub policy: LinkPolicy,
    /// A login (updates `last_login_at`), not an import.
    pub login: bool,
    /// An import's explicit decision of the official's new unit.
    pub decided_unit: Option<&'a str>,
}

impl AccountStore {
    /// Resolves a login through `upstream` to its unified account by the linking rules,
    /// creating account and link on a first login, and refreshes the stored attributes from
    /// the upstream's latest claims.
    pub async fn resolve_login(
        &self,
        upstream: &str,
        subject: &str,
        profile: &Profile,
        policy: LinkPolicy,
        now: i64,
    ) -> Result<Resolution, AccountError> {
        let a = Assertion { upstream, subject, profile, policy, login: true, decided_unit: None };
        self.resolve(&a, now).await
    }

    pub(super) async fn resolve(&self, a: &Assertion<'_>, now: i64) -> Result<Resolution, AccountError> {
        let mut attempt = 0;
        loop {
            let mut tx = self.begin_write().await?;
            match resolve_in(&mut tx, a, now).await {
                Ok((id, outcome)) => {
                    tx.commit().await?;
                    let account = self
                        .find_by_id(&id)
                        .await?
                        .ok_or_else(|| AccountError::Corrupt("account vanished after linking".into()))?;
                    self.remember(&account);
                    return Ok(Resolution { account, outcome });
                }
                Err(e) if is_unique_violation(&e) && attempt < RACE_RETRIES => {
                    // Another request linked or created first: start over and find theirs.
                    tx.rollback().await?;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Proof of ownership, the question: the browser's session is a recent login of
    /// `previous_account_id`, an account carrying a number as `pending` (asserted by an untrusted
    /// upstream), and the person has just logged in afresh to `current_account_id`, the account
    /// holding that number verified. Returns the pair when the person may link them by
    /// confirming ([`link_by_proof`](Self::link_by_proof)); nothing is linked here. When their
    /// person data conflict, a conflict is recorded for review instead and nothing is offered.
    ///
    /// Only this order counts: the verified account must be the fresh login, so a verified
    /// session left open in a shared browser can never pull someone else's pending identity in.
    pub async fn proof_candidate(
        &self,
        previous_account_id: &str,
        current_account_id: &str,
        now: i64,
    ) -> Result<Option<ProofCandidate>, AccountError> {
        let mut tx = self.begin_write().await?;
        let prev = follow_merges(&mut tx, previous_account_id).await?;
        let cur = follow_merges(&mut tx, current_account_id).await?;
        match check_proof(&mut tx, &prev, &cur).await? {
            ProofCheck::NoProof => Ok(None),
            ProofCheck::Mergeable(candidate) => Ok(Some(*candidate)),
            ProofCheck::Conflict { pending, verified, reason, detail } => {
                record_proof_conflict(&mut tx, &pending, &verified, reason, &detail, now).await?;
                self.commit_write(tx).await?;
                Ok(None)
            }
        }
    }

    /// Proof of ownership, the answer: the person, logged in to `verified_account_id`, confirmed
    /// that the login of `pending_account_id` in the same browser was theirs (see
    /// [`proof_candidate`](Self::proof_candidate)). Re-checks the pair as it is now — exactly
    /// these two accounts, both active, the number still pending on one and verified on the
    /// other, no conflicting person data — then merges the pending account into the verified
    /// one and writes the audit line (`proof-link`, with `context` in its detail: who confirmed,
    /// from which login). Returns the surviving account when the merge happened.
    pub async fn link_by_proof(
        &self,
        pending_account_id: &str,
        verified_account_id: &str,
        context: &serde_json::Value,
        now: i64,
    ) -> Result<Option<Account>, AccountError> {
        let mut tx = self.begin_write().await?;
        let candidate = match check_proof(&mut tx, pending_account_id, verified_account_id).await? {
            ProofCheck::NoProof => return Ok(None),
            ProofCheck::Conflict { pending, verified, reason, detail } => {
                record_proof_conflict(&mut tx, &pending, &verified, reason, &detail, now).await?;
                self.commit_write(tx).await?;
                return Ok(None);
            }
            ProofCheck::Mergeable(candidate) => candidate,
        };
        let (pending, verified) = (&candidate.pending, &candidate.verified);
        super::admin::merge_in(&mut tx, &pending.id, &verified.id, Some(LinkMethod::Proof), now).await?;
        let mut detail = json!({ "merged": pending.id, "into": verified.id });
        if let (Some(d), Some(extra)) = (detail.as_object_mut(), context.as_object()) {
            for (k, v) in extra {
                d.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        super::admin::audit_in(
            &mut tx,
            "self-service",
            "proof-link",
            &verified.id,
            Some("the person, logged in to the verified account, confirmed that the other login in this browser was theirs"),
            &detail,
            now,
        )
        .await?;
        self.commit_write(tx).await?;
        self.find_by_id(&verified.id).await
    }
}

/// Two accounts that logins in one browser suggest are one person's: `pending` carries as
/// `pending` the number `verified` holds verified, and their person data agree.
#[derive(Debug, Clone)]
pub struct ProofCandidate {
    pub pending: Account,
    pub verified: Account,
}

enum ProofCheck {
    NoProof,
    Conflict { pending: String, verified: String, reason: &'static str, detail: String },
    Mergeable(Box<ProofCandidate>),
}

/// Whether `pending_id` (as stored, not followed through merges) may be merged into
/// `verified_id` by proof of ownership.
async fn check_proof(
    conn: &mut AnyConnection,
    pending_id: &str,
    verified_id: &str,
) -> Result<ProofCheck, AccountError> {
    if pending_id == verified_id {
        return Ok(ProofCheck::NoProof);
    }
    let (Some(pending), Some(verified)) =
        (load_raw(conn, pending_id).await?, load_raw(conn, verified_id).await?)
    else {
        return Ok(ProofCheck::NoProof);
    };
    let proves = verified.national_id.is_some()
        && pending.national_id.is_none()
        && pending.claim_state == Some(ClaimState::Pending)
        && pending.claimed_national_id == verified.national_id;
    if !proves {
        return Ok(ProofCheck::NoProof);
    }
    if verified.status != super::AccountStatus::Active || pending.status != super::AccountStatus::Active {
        return Ok(ProofCheck::NoProof);
    }
    if let Err((reason, detail)) = compatibility(&verified, &profile_of(&pending)) {
        return Ok(ProofCheck::Conflict { pending: pending.id, verified: verified.id, reason, detail });
    }
    Ok(ProofCheck::Mergeable(Box::new(ProofCandidate { pending, verified })))
}

/// The pending account's number now conflicts with its verified holder: kept apart, for review.
async fn record_proof_conflict(
    conn: &mut AnyConnection,
    pending: &str,
    verified: &str,
    reason: &str,
    detail: &str,
    now: i64,
) -> Result<(), AccountError> {
    let number = load_raw(conn, verified).await?.and_then(|a| a.national_id).unwrap_or_default();
    sqlx::query("UPDATE accounts SET national_id_state = 'conflict', updated_at = $1 WHERE id = $2")
        .bind(now)
        .bind(pending)
        .execute(&mut *conn)
        .await?;
    let conflict = Conflict {
        number: &number,
        existing: verified,
        new: pending,
        upstream: "-",
        subject: "-",
        reason,
        detail,
    };
    record_conflict(conn, &conflict, now).await
}

/// The profile an account's own data would assert (for conflict checks between accounts).
fn profile_of(a: &Account) -> Profile {
    Profile { name: a.full_name.clone(), birthdate: a.birthdate.clone(), ..Profile::default() }
}

/// Loads an account row without describing its units (cheaper, for decisions).
/// The account an upstream identity is linked to, read with the link in one query (a merged
/// account is returned as merged).
async fn linked_account(
    conn: &mut AnyConnection,
    upstream: &str,
    subject: &str,
) -> Result<Option<Account>, AccountError> {
    let sql = format!(
        "SELECT {ACCOUNT_COLUMNS} FROM identity_links l JOIN accounts a ON a.id = l.account_id \
         LEFT JOIN official_profiles o ON o.account_id = a.id WHERE l.upstream = $1 AND l.subject = $2"
    );
    let row = sqlx::query(&sql).bind(upstream).bind(subject).fetch_optional(&mut *conn).await?;
    row.map(|r| account_from_row(&r)).transpose()
}

pub(super) async fn load_raw(conn: &mut AnyConnection, id: &str) -> Result<Option<Account>, AccountError> {
    let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM {ACCOUNT_FROM} WHERE a.id = $1");
    let row = sqlx::query(&sql).bind(id).fetch_optional(&mut *conn).await?;
    row.map(|r| account_from_row(&r)).transpose()
}

/// Whether `p` may be the same person as `existing`, who holds the same number: equal
/// birthdates; when one side has no birthdate, equal folded full names (when both have one).
pub(super) fn compatibility(existing: &Account, p: &Profile) -> Result<(), (&'static str, String)> {
    match (&existing.birthdate, &p.birthdate) {
        (Some(a), Some(b)) if a != b => {
            Err(("birthdate_mismatch", format!("account has birthdate {a}, the new identity asserts {b}")))
        }
        (Some(_), Some(_)) => Ok(()),
        _ => match (&existing.full_name, &p.name) {
            (Some(a), Some(b)) if match_key(a) != match_key(b) => Err((
                "name_mismatch",
                format!(
                    "no birthdate to compare and the names differ: {a:?} vs {:?}",
                    normalize_full_name(b)
                ),
            )),
            _ => Ok(()),
        },
    }
}

/// The linking rules inside one transaction; returns the account id and what happened.
pub(super) async fn resolve_in(
    conn: &mut AnyConnection,
    a: &Assertion<'_>,
    now: i64,
) -> Result<(String, LinkOutcome), AccountError> {
    if let Some(linked) = linked_account(conn, a.upstream, a.subject).await? {
        // One query finds the link and its account; only a merged account needs more.
        let account = match linked.status {
            super::AccountStatus::MergedInto(_) => {
                let id = follow_merges(conn, &linked.id).await?;
                load_raw(conn, &id).await?.ok_or_else(|| AccountError::Corrupt("account vanished".into()))?
            }
            _ => linked,
        };
        let id = account.id.clone();
        if a.login {
            sqlx::query("UPDATE identity_links SET last_login_at = $1 WHERE upstream = $2 AND subject = $3")
                .bind(now)
                .bind(a.upstream)
                .bind(a.subject)
                .execute(&mut *conn)
                .await?;
        }
        apply_profile_to(conn, account, a, now).await?;
        return Ok((id, LinkOutcome::Existing));
    }
    let number = match a.profile.national_id.as_deref().map(classify_legacy_identifier) {
        Some(LegacyIdentifier::NationalId(n)) => Some(n),
        _ => None,
    };
    let outcome = match &number {
        Some(n) if a.policy.trust_national_id => match holder_of(conn, n.as_str()).await? {
            Some(holder) => {
                let existing = load_raw(conn, &holder)
                    .await?
                    .ok_or_else(|| AccountError::Corrupt("number holder vanished".into()))?;
                match compatibility(&existing, a.profile) {
                    Ok(()) => {
                        insert_link(conn, a, &holder, LinkMethod::NationalId, now).await?;
                        apply_profile(conn, &holder, a, now).await?;
                        return Ok((holder, LinkOutcome::LinkedByNationalId));
                    }
                    Err((reason, detail)) => {
                        let id = create_account(conn, a, None, Some((n, ClaimState::Conflict)), now).await?;
                        let conflict = Conflict {
                            number: n.as_str(),
                            existing: &holder,
                            new: &id,
                            upstream: a.upstream,
                            subject: a.subject,
                            reason,
                            detail: &detail,
                        };
                        record_conflict(conn, &conflict, now).await?;
                        return Ok((id, LinkOutcome::CreatedAfterConflict));
                    }
                }
            }
            None => {
                let id = create_account(conn, a, Some(n), None, now).await?;
                return Ok((id, LinkOutcome::Created));
            }
        },
        Some(_) => LinkOutcome::CreatedPending,
        None => LinkOutcome::Created,
    };
    let claimed = number.as_ref().map(|n| (n, ClaimState::Pending));
    let id = create_account(conn, a, None, claimed, now).await?;
    Ok((id, outcome))
}

async fn insert_link(
    conn: &mut AnyConnection,
    a: &Assertion<'_>,
    account_id: &str,
    method: LinkMethod,
    now: i64,
) -> Result<(), AccountError> {
    sqlx::query(
        "INSERT INTO identity_links (upstream, subject, account_id, link_method, linked_at, last_login_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(a.upstream)
    .bind(a.subject)
    .bind(account_id)
    .bind(method.as_str())
    .bind(now)
    .bind(if a.login { now } else { 0 })
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Creates an account (with its first link) holding a verified number or a claimed one.
async fn create_account(
    conn: &mut AnyConnection,
    a: &Assertion<'_>,
    verified: Option<&NationalId>,
    claimed: Option<(&NationalId, ClaimState)>,
    now: i64,
) -> Result<String, AccountError> {
    let id = uuid::Uuid::now_v7().to_string();
    let sub = uuid::Uuid::new_v4().to_string();
    sqlx::query(
        "INSERT INTO accounts (id, sub, kind, status, national_id, claimed_national_id, national_id_state, \
         created_at, updated_at) VALUES ($1, $2, $3, 'active', $4, $5, $6, $7, $8)",
    )
    .bind(&id)
    .bind(&sub)
    .bind(a.profile.kind().as_str())
    .bind(verified.map(|n| n.as_str().to_string()))
    .bind(claimed.map(|(n, _)| n.as_str().to_string()))
    .bind(claimed.map(|(_, s)| s.as_str()))
    .bind(now)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    insert_link(conn, a, &id, LinkMethod::FirstLogin, now).await?;
    apply_profile(conn, &id, a, now).await?;
    Ok(id)
}

/// A national ID number two accounts both hold, kept apart for an administrator's review
/// (one row of `link_conflicts`).
#[derive(Debug, Clone, Copy)]
struct Conflict<'a> {
    /// The number both accounts hold.
    pub number: &'a str,
    /// The account that held the number first.
    pub existing: &'a str,
    /// The account that holds it too.
    pub new: &'a str,
    /// The upstream identity whose login or import raised it (`-` when none did).
    pub upstream: &'a str,
    pub subject: &'a str,
    /// Why the accounts were kept apart (a code), and what the log and review page say.
    pub reason: &'a str,
    pub detail: &'a str,
}

async fn record_conflict(
    conn: &mut AnyConnection,
    conflict: &Conflict<'_>,
    now: i64,
) -> Result<(), AccountError> {
    let Conflict { number, existing, new, upstream, subject, reason, detail } = *conflict;
    sqlx::query(
        "INSERT INTO link_conflicts (national_id, existing_account_id, new_account_id, upstream, subject, reason, \
         detail, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
         ON CONFLICT (existing_account_id, new_account_id, reason) DO NOTHING",
    )
    .bind(number)
    .bind(existing)
    .bind(new)
    .bind(upstream)
    .bind(subject)
    .bind(reason)
    .bind(detail)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    tracing::warn!(reason, "national ID linking conflict recorded for review");
    Ok(())
}

async fn record_warning(
    conn: &mut AnyConnection,
    account_id: &str,
    source: &str,
    code: &str,
    number: Option<&str>,
    detail: &str,
    now: i64,
) -> Result<(), AccountError> {
    sqlx::query(
        "INSERT INTO national_id_warnings (account_id, source, code, national_id, detail, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (account_id, source, code) DO NOTHING",
    )
    .bind(account_id)
    .bind(source)
    .bind(code)
    .bind(number)
    .bind(detail)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn record_alias(
    conn: &mut AnyConnection,
    account_id: &str,
    kind: &str,
    value: &str,
    source: &str,
    now: i64,
) -> Result<(), AccountError> {
    sqlx::query(
        "INSERT INTO account_aliases (account_id, kind, value, source, created_at) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (account_id, kind, value) DO NOTHING",
    )
    .bind(account_id)
    .bind(kind)
    .bind(value)
    .bind(source)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

fn parse_iso_date(s: &str) -> Option<time::Date> {
    time::Date::parse(s, time::macros::format_description!("[year]-[month]-[day]")).ok()
}

/// Applies what an upstream asserted to an account: national-ID rules, attributes (absent
/// claims keep what is stored) and the official profile. Writes only what changed, so
/// re-importing the same data changes nothing.
async fn apply_profile(
    conn: &mut AnyConnection,
    id: &str,
    a: &Assertion<'_>,
    now: i64,
) -> Result<(), AccountError> {
    let account =
        load_raw(conn, id).await?.ok_or_else(|| AccountError::Corrupt("account vanished".into()))?;
    apply_profile_to(conn, account, a, now).await
}

/// [`apply_profile`] for an account already read in this transaction.
async fn apply_profile_to(
    conn: &mut AnyConnection,
    account: Account,
    a: &Assertion<'_>,
    now: i64,
) -> Result<(), AccountError> {
    let id = account.id.as_str();
    let p = a.profile;
    apply_number(conn, &account, a, now).await?;

    let pick = |new: Option<String>, old: &Option<String>| new.or_else(|| old.clone());
    let full_name =
        pick(p.name.as_deref().map(normalize_full_name).filter(|s| !s.is_empty()), &account.full_name);
    let given_name = pick(p.given_name.as_deref().map(normalize_full_name), &account.given_name);
    let family_name = pick(p.family_name.as_deref().map(normalize_full_name), &account.family_name);
    let birthdate = pick(p.birthdate.clone(), &account.birthdate);
    let gender = pick(p.gender.clone(), &account.gender);
    let email = pick(p.email.clone(), &account.email);
    let phone = pick(p.phone.clone(), &account.phone);
    let kind = if p.kind() == AccountKind::Official || account.kind == AccountKind::Official {
        "official"
    } else {
        "citizen"
    };
    let changed = full_name != account.full_name
        || given_name != account.given_name
        || family_name != account.family_name
        || birthdate != account.birthdate
        || gender != account.gender
        || email != account.email
        || phone != account.phone
        || kind != account.kind.as_str();
    if changed {
        sqlx::query(
            "UPDATE accounts SET full_name = $1, given_name = $2, family_name = $3, birthdate = $4, gender = $5, \
             email = $6, phone = $7, kind = $8, name_key = $9, updated_at = $10, name_search = $12 WHERE id = $11",
        )
        .bind(full_name.clone())
        .bind(given_name)
        .bind(family_name)
        .bind(birthdate)
        .bind(gender)
        .bind(email)
        .bind(phone)
        .bind(kind)
        .bind(full_name.as_deref().map(match_key))
        .bind(now)
        .bind(id)
        .bind(search_key(full_name.as_deref().unwrap_or("")))
        .execute(&mut *conn)
        .await?;
    }
    if p.kind() == AccountKind::Official {
        apply_official(conn, &account, a, now).await?;
    }
    Ok(())
}

/// The national-ID part of [`apply_profile`].
async fn apply_number(
    conn: &mut AnyConnection,
    account: &Account,
    a: &Assertion<'_>,
    now: i64,
) -> Result<(), AccountError> {
    let Some(raw) = a.profile.national_id.as_deref() else { return Ok(()) };
    let number = match classify_legacy_identifier(raw) {
        LegacyIdentifier::NationalId(n) => n,
        LegacyIdentifier::Cmnd(c) => {
            return record_alias(conn, &account.id, "cmnd", &c, a.upstream, now).await;
        }
        LegacyIdentifier::Passport(p) => {
            return record_alias(conn, &account.id, "passport", &p, a.upstream, now).await;
        }
        LegacyIdentifier::Unrecognised(_) => {
            let why = NationalId::parse(raw).err().map(|e| e.to_string()).unwrap_or_default();
            let detail = format!("the asserted ID number is not a personal identification number: {why}");
            return record_warning(conn, &account.id, a.upstream, "invalid_number", None, &detail, now).await;
        }
    };
    let today = time::OffsetDateTime::from_unix_timestamp(now).map(|t| t.date()).unwrap_or(time::Date::MIN);
    let birthdate = a.profile.birthdate.as_deref().and_then(parse_iso_date);
    let gender = a.profile.gender.as_deref().and_then(Gender::from_claim);
    for w in number.warnings(birthdate, gender, today) {
        let detail = serde_json::to_string(&w).map_err(|e| AccountError::Corrupt(e.to_string()))?;
        record_warning(conn, &account.id, a.upstream, w.code(), Some(number.as_str()), &detail, now).await?;
    }
    if account.national_id.as_deref() == Some(number.as_str()) {
        return Ok(());
    }
    let holder = holder_of(conn, number.as_str()).await?;
    if holder.as_deref() == Some(account.id.as_str()) {
        // A number this account held before a re-key: the legacy system has the old one.
        return Ok(());
    }
    if account.national_id.is_some() {
        let detail = "the upstream asserts a different number than the account's verified one (re-key?)";
        return record_warning(
            conn,
            &account.id,
            a.upstream,
            "different_number",
            Some(number.as_str()),
            detail,
            now,
        )
        .await;
    }
    let already_claimed = account.claimed_national_id.as_deref() == Some(number.as_str());
    match (a.policy.trust_national_id, holder) {
        (true, None) => {
            sqlx::query(
                "UPDATE accounts SET national_id = $1, claimed_national_id = NULL, national_id_state = NULL, \
                 updated_at = $2 WHERE id = $3",
            )
            .bind(number.as_str())
            .bind(now)
            .bind(&account.id)
            .execute(&mut *conn)
            .await?;
        }
        (true, Some(other)) => {
            if !(already_claimed && account.claim_state == Some(ClaimState::Conflict)) {
                set_claim(conn, &account.id, &number, ClaimState::Conflict, now).await?;
                let detail =
                    "a trusted upstream asserts a number that another account holds; merge if same person";
                let conflict = Conflict {
                    number: number.as_str(),
                    existing: &other,
                    new: &account.id,
                    upstream: a.upstream,
                    subject: a.subject,
                    reason: "held_by_other_account",
                    detail,
                };
                record_conflict(conn, &conflict, now).await?;
            }
        }
        (false, _) => {
            if !already_claimed && account.claim_state != Some(ClaimState::Conflict) {
                set_claim(conn, &account.id, &number, ClaimState::Pending, now).await?;
            }
        }
    }
    Ok(())
}

async fn set_claim(
    conn: &mut AnyConnection,
    id: &str,
    number: &NationalId,
    state: ClaimState,
    now: i64,
) -> Result<(), AccountError> {
    sqlx::query(
        "UPDATE accounts SET claimed_national_id = $1, national_id_state = $2, updated_at = $3 WHERE id = $4",
    )
    .bind(number.as_str())
    .bind(state.as_str())
    .bind(now)
    .bind(id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The official-profile part of [`apply_profile`]: the former unit is translated through the
/// active unit mapping unless an import or admin decided the new unit.
async fn apply_official(
    conn: &mut AnyConnection,
    account: &Account,
    a: &Assertion<'_>,
    now: i64,
) -> Result<(), AccountError> {
    let p = a.profile;
    let old = account.official.as_ref();
    let legacy = p.org_unit.clone().or_else(|| old.and_then(|o| o.legacy_org_unit.clone()));
    let (unit, state) = match a.decided_unit {
        Some(decided) => (Some(decided.to_string()), OrgUnitState::Decided),
        None => match old {
            Some(o) if o.org_unit_state == OrgUnitState::Decided && o.legacy_org_unit == legacy => {
                (o.org_unit.as_ref().map(|u| u.code.clone()), OrgUnitState::Decided)
            }
            _ => super::units::translate(conn, legacy.as_deref()).await?,
        },
    };
    let roles = serde_json::to_string(&p.roles).map_err(|e| AccountError::Corrupt(e.to_string()))?;
    let code = p.official_code.clone().or_else(|| old.and_then(|o| o.official_code.clone()));
    let position = p.position.clone().or_else(|| old.and_then(|o| o.position.clone()));
    let same = old.is_some_and(|o| {
        o.official_code == code
            && o.former_province.as_deref() == Some(a.upstream)
            && o.legacy_org_unit == legacy
            && o.org_unit.as_ref().map(|u| &u.code) == unit.as_ref()
            && o.org_unit_state == state
            && o.position == position
            && o.roles == p.roles
    });
    if same {
        return Ok(());
    }
    let exists = sqlx::query("SELECT account_id FROM official_profiles WHERE account_id = $1")
        .bind(&account.id)
        .fetch_optional(&mut *conn)
        .await?
        .is_some();
    let sql = if exists {
        "UPDATE official_profiles SET official_code = $2, former_province = $3, legacy_org_unit = $4, \
         org_unit = $5, org_unit_state = $6, position = $7, roles = $8, updated_at = $9 WHERE account_id = $1"
    } else {
        "INSERT INTO official_profiles (account_id, official_code, former_province, legacy_org_unit, org_unit, \
         org_unit_state, position, roles, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
    };
    sqlx::query(sql)
        .bind(&account.id)
        .bind(code)
        .bind(a.upstream)
        .bind(legacy)
        .bind(unit)
        .bind(state.as_str())
        .bind(position)
        .bind(roles)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    Ok(())
}
