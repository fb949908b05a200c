//! Rotation: a new key is published before it signs, the key it replaces is retired only
//! after the last token it may have signed has expired. Both decisions are written into the
//! key directory as schedules (see `schedule.rs`), so replicas need no coordination.

use std::fs;
use std::path::Path;
use std::time::Duration;

use super::schedule::{KeyState, Schedule, write_schedule};
use super::{KeyError, KeySet, LEEWAY_SECS, SigningAlg, generate_key};
use crate::clock::Clock;

/// Added to the longest token lifetime before an old key is retired: the verification leeway
/// (30 s) plus clock skew between replicas and RPs, rounded up to five minutes.
pub const RETIRE_MARGIN: Duration = Duration::from_secs(300);

const _: () = assert!(RETIRE_MARGIN.as_secs() > LEEWAY_SECS);

/// What `rotate` wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotation {
    pub alg: SigningAlg,
    /// The new key.
    pub kid: String,
    /// When the new key starts signing; `None` when it is the algorithm's first key (it
    /// signs at once: there is nothing to replace).
    pub not_before: Option<i64>,
    /// The keys it replaces, each with its new `retire_after`.
    pub retiring: Vec<(String, i64)>,
}

/// Rotates the signing key of `alg` in `dir`: writes a new key that is published now and
/// signs from `now + publish_before`, and gives every other key of `alg` still published a
/// `retire_after` of at most `not_before + token_lifetime + RETIRE_MARGIN` (an earlier
/// retirement already scheduled is kept). `token_lifetime` must be at least the longest
/// lifetime of any token those keys signed (ID, access and logout tokens).
///
/// Refused when the directory does not load, or a key of `alg` is already scheduled to start
/// signing at or after the new key's time (an unfinished rotation).
pub fn rotate(
    dir: &Path,
    alg: SigningAlg,
    publish_before: Duration,
    token_lifetime: Duration,
    clock: &Clock,
) -> Result<Rotation, KeyError> {
    super::create_dir(dir)?;
    let set = KeySet::open(dir, clock.clone())?;
    let now = clock.now();
    let current: Vec<_> =
        set.status().into_iter().filter(|s| s.alg == alg && s.state != KeyState::Retired).collect();
    if current.is_empty() {
        let kid = generate_key(dir, alg, None)?;
        return Ok(Rotation { alg, kid, not_before: None, retiring: Vec::new() });
    }
    let secs = |d: Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
    let not_before = now.saturating_add(secs(publish_before));
    if let Some(pending) = current.iter().find(|s| s.not_before.is_some_and(|t| t >= not_before)) {
        return Err(KeyError::Rotation(format!(
            "{} is already scheduled to sign from {}; let that rotation finish (or delete that key) first",
            pending.kid,
            super::schedule::format_time(pending.not_before.unwrap_or(not_before))
        )));
    }
    let retire_after = not_before.saturating_add(secs(token_lifetime)).saturating_add(secs(RETIRE_MARGIN));
    let kid = generate_key(dir, alg, Some(Schedule { not_before: Some(not_before), retire_after: None }))?;
    let mut retiring = Vec::new();
    for old in current {
        let at = old.retire_after.map_or(retire_after, |t| t.min(retire_after));
        if old.retire_after != Some(at) {
            write_schedule(dir, &old.kid, &Schedule { not_before: old.not_before, retire_after: Some(at) })?;
        }
        retiring.push((old.kid, at));
    }
    Ok(Rotation { alg, kid, not_before: Some(not_before), retiring })
}

/// Deletes the retired keys of `dir` (their `.pem`, then their `.json`) and returns their kids.
/// The key file goes first: a schedule without its key is ignored, whereas a key without its
/// schedule would be taken as one that signs now.
pub fn prune(dir: &Path, clock: &Clock) -> Result<Vec<String>, KeyError> {
    let set = KeySet::open(dir, clock.clone())?;
    let mut removed = Vec::new();
    for status in set.status().into_iter().filter(|s| s.state == KeyState::Retired) {
        for ext in ["pem", "json"] {
            let path = dir.join(format!("{}.{ext}", status.kid));
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(KeyError::Io { path, source }),
            }
        }
        removed.push(status.kid);
    }
    Ok(removed)
}
