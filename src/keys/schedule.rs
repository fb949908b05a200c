//! Key schedules: the optional sidecar `{kid}.json` next to `{kid}.pem`, reading the key
//! directory as one consistent set, and the state of each key at a given time.
//!
//! The sidecar is the only place a schedule lives, so every replica reading the same
//! directory at the same time reaches the same decision without talking to the others:
//!
//! ```json
//! { "not_before": "2026-12-04T01:00:00Z", "retire_after": "2026-12-05T01:10:00Z" }
//! ```
//!
//! Both fields are optional RFC 3339 times. A key without a sidecar (or without
//! `not_before`) may sign now; without `retire_after` it stays published.

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{KeyError, Material, SigningAlg, load_key};

/// When a key may sign and when it leaves the JWKS, in seconds since the Unix epoch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    /// The key signs from this time on (inclusive); before it, it is only published.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "rfc3339")]
    pub not_before: Option<i64>,
    /// The key is published (and verifies) up to this time (inclusive), then it is gone.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "rfc3339")]
    pub retire_after: Option<i64>,
}

/// Where a key stands at one time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyState {
    /// In the JWKS, waiting for its `not_before` to sign.
    Published,
    /// In the JWKS and signing new tokens (one per algorithm).
    Signing,
    /// In the JWKS, verifying the tokens it signed, no longer signing.
    Retiring,
    /// Past `retire_after`: neither published nor accepted (can be deleted).
    Retired,
}

impl fmt::Display for KeyState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyState::Published => "published",
            KeyState::Signing => "signing",
            KeyState::Retiring => "retiring",
            KeyState::Retired => "retired",
        })
    }
}

/// One key as `keys list` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyStatus {
    pub kid: String,
    pub alg: SigningAlg,
    pub not_before: Option<i64>,
    pub retire_after: Option<i64>,
    pub state: KeyState,
}

/// Formats seconds since the epoch as RFC 3339 UTC (`2026-12-04T01:00:00Z`).
pub fn format_time(t: i64) -> String {
    OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| format!("@{t}"))
}

mod rfc3339 {
    use super::*;

    pub fn serialize<S: serde::Serializer>(t: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_str(&format_time(*t)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        let text = Option::<String>::deserialize(d)?;
        text.map(|text| {
            OffsetDateTime::parse(&text, &Rfc3339).map(|t| t.unix_timestamp()).map_err(|e| {
                serde::de::Error::custom(format!(
                    "{text:?} is not an RFC 3339 time like \"2026-12-04T01:00:00Z\" ({e})"
                ))
            })
        })
        .transpose()
    }
}

/// The raw bytes of one key and its sidecar.
pub(super) struct KeyFile {
    path: PathBuf,
    pem: Vec<u8>,
    sidecar: Option<(PathBuf, Vec<u8>)>,
}

/// Every key file of a directory, read once, with a digest of them all.
pub(super) struct KeyFiles {
    files: Vec<KeyFile>,
    pub(super) fingerprint: [u8; 32],
}

/// Reads every `*.pem` (not dot-files) and its `{kid}.json`, in name order.
pub(super) fn read_files(dir: &Path) -> Result<KeyFiles, KeyError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| KeyError::Io { path, source }
    };
    let mut paths = Vec::new();
    for entry in fs::read_dir(dir).map_err(io(dir))? {
        let path = entry.map_err(io(dir))?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or(".");
        if !name.starts_with('.') && name.ends_with(".pem") && path.is_file() {
            paths.push(path);
        }
    }
    paths.sort();
    let mut digest = Sha256::new();
    let mut files = Vec::with_capacity(paths.len());
    for path in paths {
        let pem = fs::read(&path).map_err(io(&path))?;
        let sidecar_path = path.with_extension("json");
        let sidecar = match fs::read(&sidecar_path) {
            Ok(bytes) => Some((sidecar_path, bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => return Err(KeyError::Io { path: sidecar_path, source }),
        };
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        for part in [name.as_bytes(), &pem, sidecar.as_ref().map_or(&b"-"[..], |(_, b)| b)] {
            digest.update((part.len() as u64).to_le_bytes());
            digest.update(part);
        }
        files.push(KeyFile { path, pem, sidecar });
    }
    Ok(KeyFiles { files, fingerprint: digest.finalize().into() })
}

pub(super) fn parse_schedule(path: &Path, bytes: &[u8]) -> Result<Schedule, KeyError> {
    let bad = |reason: String| KeyError::BadSchedule { path: path.to_path_buf(), reason };
    let schedule: Schedule = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
    if let (Some(from), Some(to)) = (schedule.not_before, schedule.retire_after)
        && to < from
    {
        return Err(bad(format!(
            "retire_after {} is before not_before {}: the key would never sign",
            format_time(to),
            format_time(from)
        )));
    }
    Ok(schedule)
}

pub(super) fn parse_material(files: KeyFiles) -> Result<Material, KeyError> {
    let mut keys = Vec::with_capacity(files.files.len());
    for file in files.files {
        let schedule = match &file.sidecar {
            Some((path, bytes)) => parse_schedule(path, bytes)?,
            None => Schedule::default(),
        };
        keys.push(load_key(&file.path, &file.pem, schedule)?);
    }
    keys.sort_by(|a, b| (a.alg.index(), &a.kid).cmp(&(b.alg.index(), &b.kid)));
    let by_kid: HashMap<String, usize> = keys.iter().enumerate().map(|(i, k)| (k.kid.clone(), i)).collect();
    Ok(Material { keys, by_kid, fingerprint: files.fingerprint })
}

pub(super) fn read_material(dir: &Path) -> Result<Material, KeyError> {
    parse_material(read_files(dir)?)
}

/// Writes `{kid}.json` atomically (replacing an existing one).
pub(super) fn write_schedule(dir: &Path, kid: &str, schedule: &Schedule) -> Result<(), KeyError> {
    let path = dir.join(format!("{kid}.json"));
    let mut text = serde_json::to_string_pretty(schedule)
        .map_err(|e| KeyError::BadSchedule { path: path.clone(), reason: e.to_string() })?;
    text.push('\n');
    super::write_atomically(dir, &path, text.as_bytes())
}
