//! The environment layer: `SSO_GATEWAY__…` variables laid over the file's value tree before
//! the typed settings are read from it, and where each value came from.
//!
//! Owns: the naming rule (README "Configuration", config/README.md "Environment"), turning a
//! variable's text into a TOML value, `…__FILE` indirection, the five older
//! `SSO_GATEWAY_ISSUER`-style names, and the origin of every value set (for `check-config
//! --origins`). Must not: know any particular key: the overlay works on the value tree, so a
//! key added to the settings later can be set from the environment with no change here.
//!
//! The rule: `SSO_GATEWAY__` then the key's path, its parts joined by `__`
//! (`SSO_GATEWAY__SESSIONS__REDIS__KEY_PREFIX` sets `[sessions.redis] key_prefix`). A part is
//! matched against the keys present without regard to case, any character other than a letter
//! or digit standing for `_`; a part not present is the key in lower case. In an array of
//! tables (`[[clients]]`, `[[upstreams]]`) the part after the array's name is the entry's
//! `client_id` or `id`, spelt the same way (`SSO_GATEWAY__CLIENTS__DPOP_ONLY__CLIENT_SECRET`
//! for `client_id = "dpop-only"`); entries are not added from the environment. A name ending
//! in `__FILE` reads the value from that file (trailing newline removed).

use std::collections::{BTreeMap, HashSet};

use super::validate::Problem;

/// Prefix of every variable of the environment layer.
pub const PREFIX: &str = "SSO_GATEWAY__";
/// Suffix of a variable whose value is read from the file it names.
pub const FILE_SUFFIX: &str = "__FILE";
/// The older names of five settings (still read; the layer's own names work too).
pub const LEGACY: &[(&str, &str)] = &[
    ("SSO_GATEWAY_ISSUER", "issuer"),
    ("SSO_GATEWAY_LISTEN", "listen"),
    ("SSO_GATEWAY_KEYS_DIR", "keys.dir"),
    ("SSO_GATEWAY_ACCOUNTS_URL", "accounts.url"),
    ("SSO_GATEWAY_SESSION_STORE", "sessions.store"),
];
/// Variables with the older prefix that other parts read (the CLI, logging).
const READ_ELSEWHERE: &[&str] = &["SSO_GATEWAY_CONFIG", "SSO_GATEWAY_LOG_FORMAT"];

/// Which layer a value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    File,
    Environment,
    /// The environment named a file holding the value (`…__FILE`).
    EnvironmentFile,
}

impl Layer {
    pub fn name(self) -> &'static str {
        match self {
            Layer::File => "file",
            Layer::Environment => "environment",
            Layer::EnvironmentFile => "environment (_FILE)",
        }
    }
}

/// Where one value came from: its path (as `check-config` names keys) and layer, with the
/// variable for the environment layers. Never the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub path: String,
    pub layer: Layer,
    pub variable: Option<String>,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.layer.name())?;
        if let Some(v) = &self.variable {
            write!(f, " ({v})")?;
        }
        Ok(())
    }
}

/// How a variable's text is read when the file has no value to take the type from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reading {
    /// A TOML number, boolean, array or inline table if it is one, else text.
    Guess,
    Text,
    /// A list: a TOML array, or comma-separated text.
    List,
}

/// A variable applied to the tree.
#[derive(Debug, Clone)]
pub(super) struct Applied {
    pub var: String,
    pub path: String,
    pub layer: Layer,
    /// Whether its text was guessed to be something other than text.
    pub guessed: bool,
}

/// Lays the environment over `table`. `readings` say how to read particular variables (a
/// second pass, once the typed settings said what they expected); `mentioned` tells whether
/// the file names a variable (a secret given as `{ env = "…" }`).
pub(super) fn overlay(
    table: &mut toml::Table,
    env: &BTreeMap<String, String>,
    readings: &BTreeMap<String, Reading>,
    mentioned: impl Fn(&str) -> bool,
    problems: &mut Vec<Problem>,
) -> Vec<Applied> {
    let mut applied: Vec<Applied> = Vec::new();
    for (var, text) in env {
        let (segments, layer) = if let Some(path) = var.strip_prefix(PREFIX) {
            match path.strip_suffix(FILE_SUFFIX) {
                Some(p) if env.contains_key(&format!("{PREFIX}{p}")) => {
                    problems.push(
                        Problem::new(var.clone(), format!("set together with {PREFIX}{p}"))
                            .expecting("one of the two"),
                    );
                    continue;
                }
                Some(p) => (p.split("__").map(str::to_string).collect::<Vec<_>>(), Layer::EnvironmentFile),
                None => (path.split("__").map(str::to_string).collect(), Layer::Environment),
            }
        } else if let Some((_, key)) = LEGACY.iter().find(|(name, _)| name == var) {
            (key.split('.').map(str::to_string).collect(), Layer::Environment)
        } else {
            if var.starts_with("SSO_GATEWAY_")
                && !READ_ELSEWHERE.contains(&var.as_str())
                && !var.ends_with("_SECRET")
                && !mentioned(var)
            {
                problems.push(
                    Problem::new(var.clone(), "is not a setting").expecting(format!(
                        "{PREFIX}SECTION__KEY (config/README.md), or a variable the file names as {{ env = \"…\" }}"
                    )),
                );
            }
            continue;
        };
        if segments.iter().any(String::is_empty) {
            problems.push(
                Problem::new(var.clone(), "names no key (an empty part between `__`)")
                    .expecting(format!("{PREFIX}SECTION__KEY")),
            );
            continue;
        }
        let value = match layer {
            Layer::EnvironmentFile => match std::fs::read_to_string(text) {
                Ok(v) => v.trim_end_matches(['\n', '\r']).to_string(),
                Err(e) => {
                    problems.push(Problem::new(var.clone(), format!("cannot read the file it names: {e}")));
                    continue;
                }
            },
            _ => text.clone(),
        };
        let reading = readings.get(var).copied().unwrap_or(Reading::Guess);
        match set(table, &segments, &value, reading) {
            Ok((path, guessed)) => {
                if let Some(other) = applied.iter().find(|a| a.path == path) {
                    problems.push(
                        Problem::new(var.clone(), format!("sets {path}, as {} does", other.var))
                            .expecting("one variable per key"),
                    );
                    continue;
                }
                applied.push(Applied { var: var.clone(), path, layer, guessed });
            }
            Err(message) => problems.push(Problem::new(var.clone(), message)),
        }
    }
    applied
}

/// The spelling of a key or id in a variable's name.
pub fn env_name(key: &str) -> String {
    key.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect()
}

/// The key of `table` that `segment` names: a present key spelt alike, else the segment in
/// lower case.
fn key_for(table: &toml::Table, segment: &str) -> String {
    let wanted = env_name(segment);
    table.keys().find(|k| env_name(k) == wanted).cloned().unwrap_or_else(|| segment.to_ascii_lowercase())
}

/// The id of an entry of an array of tables.
fn entry_id(entry: &toml::Value) -> Option<&str> {
    let t = entry.as_table()?;
    ["id", "client_id"].iter().find_map(|k| t.get(*k).and_then(toml::Value::as_str))
}

/// Puts `text` at the path `segments` names; returns the path as `check-config` names it, and
/// whether the text was guessed to be other than text.
fn set(
    table: &mut toml::Table,
    segments: &[String],
    text: &str,
    reading: Reading,
) -> Result<(String, bool), String> {
    let Some((last, parents)) = segments.split_last() else {
        return Err("names no key".into());
    };
    let mut path = String::new();
    let mut current = table;
    let mut rest = parents.iter();
    while let Some(segment) = rest.next() {
        let key = key_for(current, segment);
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(&key);
        let entry = current.entry(key.clone()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let kind = entry.type_str();
        current = match entry {
            toml::Value::Table(t) => t,
            toml::Value::Array(items) if !items.is_empty() && items.iter().all(toml::Value::is_table) => {
                let Some(id) = rest.next() else {
                    return Err(format!(
                        "names [[{key}]] without an entry: {PREFIX}…__{}__<ID>__<KEY>",
                        env_name(&key)
                    ));
                };
                let wanted = env_name(id);
                let matching: Vec<usize> = items
                    .iter()
                    .enumerate()
                    .filter(|(_, e)| entry_id(e).is_some_and(|i| env_name(i) == wanted))
                    .map(|(n, _)| n)
                    .collect();
                let n = match matching.as_slice() {
                    [n] => *n,
                    [] => {
                        return Err(format!(
                            "no [[{key}]] entry has the id {id} (entries are not added from the environment)"
                        ));
                    }
                    _ => return Err(format!("several [[{key}]] entries have ids spelt {wanted}")),
                };
                path.push_str(&format!("[{n}]"));
                match &mut items[n] {
                    toml::Value::Table(t) => t,
                    _ => return Err(format!("{path} is not a table")),
                }
            }
            _ => return Err(format!("{path} is a {kind}, not a table")),
        };
    }
    let key = key_for(current, last);
    if !path.is_empty() {
        path.push('.');
    }
    path.push_str(&key);
    let (value, guessed) = read(current.get(&key), text, reading).map_err(|m| format!("{path}: {m}"))?;
    current.insert(key, value);
    Ok((path, guessed))
}

/// The TOML value a variable's text stands for: of the type of the file's value when there is
/// one, else as `reading` says.
fn read(existing: Option<&toml::Value>, text: &str, reading: Reading) -> Result<(toml::Value, bool), String> {
    use toml::Value;
    let value = match existing {
        Some(Value::String(_)) => Value::String(text.to_string()),
        Some(Value::Integer(_)) => {
            Value::Integer(text.trim().parse().map_err(|_| "expected an integer".to_string())?)
        }
        Some(Value::Float(_)) => {
            Value::Float(text.trim().parse().map_err(|_| "expected a number".to_string())?)
        }
        Some(Value::Boolean(_)) => Value::Boolean(boolean(text).ok_or("expected true or false")?),
        Some(Value::Array(items)) if items.iter().all(|i| !i.is_table()) => list(text, items.first())?,
        Some(Value::Table(_) | Value::Array(_)) => {
            return Err("is a table in the file: set its keys one by one".into());
        }
        Some(Value::Datetime(_)) | None => match reading {
            Reading::Text => Value::String(text.to_string()),
            Reading::List => list(text, None)?,
            Reading::Guess => match literal(text) {
                Some(
                    v @ (Value::Integer(_)
                    | Value::Float(_)
                    | Value::Boolean(_)
                    | Value::Array(_)
                    | Value::Table(_)),
                ) => {
                    return Ok((v, true));
                }
                _ => Value::String(text.to_string()),
            },
        },
    };
    Ok((value, false))
}

fn boolean(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

/// A TOML array (`["a", "b"]`), or comma-separated items (`a, b`) of the type of `like`
/// (text when there is none); empty text is an empty list.
fn list(text: &str, like: Option<&toml::Value>) -> Result<toml::Value, String> {
    use toml::Value;
    if text.trim_start().starts_with('[') {
        return match literal(text) {
            Some(v @ Value::Array(_)) => Ok(v),
            _ => Err("expected a TOML array like [\"a\", \"b\"] or comma-separated items".into()),
        };
    }
    let items = text.split(',').map(str::trim).filter(|s| !s.is_empty());
    let items: Result<Vec<Value>, String> = items
        .map(|item| match like {
            Some(Value::Integer(_)) => {
                item.parse().map(Value::Integer).map_err(|_| "expected a list of integers".to_string())
            }
            Some(Value::Boolean(_)) => {
                boolean(item).map(Value::Boolean).ok_or_else(|| "expected a list of true/false".to_string())
            }
            _ => Ok(Value::String(item.to_string())),
        })
        .collect();
    Ok(Value::Array(items?))
}

/// `text` as one TOML value, if it is exactly one.
fn literal(text: &str) -> Option<toml::Value> {
    let mut t: toml::Table = toml::from_str(&format!("v = {text}")).ok()?;
    if t.len() != 1 {
        return None;
    }
    t.remove("v")
}

/// Problems about values the environment set name the variable, and do not repeat the value
/// (it may be a secret). Returns how to read, on a second pass, variables whose guessed type
/// the settings did not accept.
pub(super) fn attribute(problems: &mut [Problem], applied: &[Applied]) -> BTreeMap<String, Reading> {
    let mut again = BTreeMap::new();
    for p in problems.iter_mut() {
        let Some(a) = applied.iter().find(|a| concerns(p, &a.path)) else { continue };
        if let Some((found, expected)) =
            p.message.strip_prefix("invalid type: ").and_then(|m| m.split_once(", expected "))
        {
            let kind = found.split_whitespace().next().unwrap_or(found).to_string();
            let expected = expected.to_string();
            if expected.contains("sequence") && kind == "string" {
                again.insert(a.var.clone(), Reading::List);
            } else if a.guessed {
                again.insert(a.var.clone(), Reading::Text);
            }
            p.message = format!("invalid type: {kind}, expected {expected}");
        }
        p.message = format!("{} (set by {})", p.message, a.var);
    }
    again
}

/// Whether problem `p` is about the value at `path`: found there, or an unknown field on
/// the way to it.
fn concerns(p: &Problem, path: &str) -> bool {
    if p.path == path {
        return true;
    }
    // An unknown key on the way: the problem's path is that key.
    if p.message.starts_with("unknown field")
        && path.strip_prefix(p.path.as_str()).is_some_and(|rest| rest.starts_with(['.', '[']))
    {
        return true;
    }
    let rest = match path.strip_prefix(p.path.as_str()) {
        Some(rest) if p.path.is_empty() => rest,
        Some(rest) if rest.starts_with('.') => &rest[1..],
        _ => return false,
    };
    let first = rest.split(['.', '[']).next().unwrap_or(rest);
    p.message.starts_with(&format!("unknown field `{first}`"))
}

/// Where every value set in the file or the environment came from, in path order (the
/// environment's over the file's); every other key has its default.
pub(super) fn origins(file: &toml::Table, applied: &[Applied]) -> Vec<Origin> {
    let mut out: BTreeMap<String, Origin> = BTreeMap::new();
    let mut walk = Vec::new();
    leaves("", file, &mut walk);
    for path in walk {
        out.insert(path.clone(), Origin { path, layer: Layer::File, variable: None });
    }
    let set: HashSet<&str> = applied.iter().map(|a| a.path.as_str()).collect();
    out.retain(|p, _| !set.iter().any(|s| p == s || p.starts_with(&format!("{s}."))));
    for a in applied {
        out.insert(
            a.path.clone(),
            Origin { path: a.path.clone(), layer: a.layer, variable: Some(a.var.clone()) },
        );
    }
    out.into_values().collect()
}

fn leaves(prefix: &str, table: &toml::Table, out: &mut Vec<String>) {
    for (key, value) in table {
        let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
        match value {
            toml::Value::Table(t) => leaves(&path, t, out),
            toml::Value::Array(items) if !items.is_empty() && items.iter().all(toml::Value::is_table) => {
                for (n, item) in items.iter().enumerate() {
                    if let toml::Value::Table(t) = item {
                        leaves(&format!("{path}[{n}]"), t, out);
                    }
                }
            }
            _ => out.push(path),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ConfigError, Settings};

    const BASE: &str = r#"
issuer = "http://127.0.0.1:8080"
[sessions.memory]
max_entries = 5000
[[clients]]
client_id = "portal"
client_secret = "portal-secret-0123456789abcdef"
redirect_uris = ["https://portal.example/cb"]
[[clients]]
client_id = "dpop-only"
client_secret = "dpop-secret-0123456789abcdef"
redirect_uris = ["https://dpop.example/cb"]
"#;

    fn env(vars: &[(&str, &str)]) -> BTreeMap<String, String> {
        vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn load(vars: &[(&str, &str)]) -> Result<Settings, Vec<Problem>> {
        match Settings::from_toml_with_env(BASE, &env(vars)) {
            Ok(s) => Ok(s),
            Err(ConfigError::Invalid(p)) => Err(p),
            Err(e) => Err(vec![Problem::new("", e.to_string())]),
        }
    }

    fn problems(vars: &[(&str, &str)]) -> Vec<String> {
        load(vars).err().unwrap_or_default().iter().map(ToString::to_string).collect()
    }

    #[test]
    fn strings_integers_booleans_durations_and_lists_are_read_from_their_variables() {
        let s = load(&[
            ("SSO_GATEWAY__SESSIONS__REDIS__KEY_PREFIX", "2026"),
            ("SSO_GATEWAY__SESSIONS__MEMORY__MAX_ENTRIES", "7000"),
            ("SSO_GATEWAY__SESSIONS__MEMORY__ANONYMOUS_PERCENT", "7"),
            ("SSO_GATEWAY__LIMITS__ENABLED", "false"),
            ("SSO_GATEWAY__SESSIONS__IDLE_TIMEOUT", "45m"),
            ("SSO_GATEWAY__LIFETIMES__LOGIN_ATTEMPT", "5m"),
            (
                "SSO_GATEWAY__CLIENTS__PORTAL__REDIRECT_URIS",
                "https://portal.example/a, https://portal.example/b",
            ),
            ("SSO_GATEWAY__CLIENTS__DPOP_ONLY__SCOPES", r#"["openid", "profile"]"#),
        ])
        .unwrap_or_else(|p| panic!("{p:?}"));
        assert_eq!(s.sessions.redis.key_prefix, "2026", "digits for a text key stay text");
        assert_eq!(s.sessions.memory.max_entries, 7000, "over the file's value");
        assert_eq!(s.sessions.memory.anonymous_percent, 7, "a key the file does not have");
        assert!(!s.limits.enabled);
        assert_eq!(s.sessions.idle_timeout, std::time::Duration::from_secs(45 * 60));
        assert_eq!(s.lifetimes.login_attempt, std::time::Duration::from_secs(300));
        assert_eq!(s.clients[0].redirect_uris, ["https://portal.example/a", "https://portal.example/b"]);
        assert_eq!(s.clients[1].scopes, ["openid", "profile"], "the id dpop-only is spelt DPOP_ONLY");
    }

    #[test]
    fn a_file_variable_reads_its_value_from_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "from-a-file-0123456789abcdef\n").unwrap();
        let path = secret.to_str().unwrap();
        let s = load(&[("SSO_GATEWAY__CLIENTS__PORTAL__CLIENT_SECRET__FILE", path)]).unwrap();
        assert_eq!(
            s.clients[0].client_secret.as_ref().and_then(|c| c.value()),
            Some("from-a-file-0123456789abcdef")
        );
        let origin = s.origins.iter().find(|o| o.path == "clients[0].client_secret").unwrap();
        assert_eq!(origin.layer, Layer::EnvironmentFile);
        let both = problems(&[
            ("SSO_GATEWAY__CLIENTS__PORTAL__CLIENT_SECRET__FILE", path),
            ("SSO_GATEWAY__CLIENTS__PORTAL__CLIENT_SECRET", "x"),
        ]);
        assert!(both.iter().any(|p| p.contains("set together with")), "{both:?}");
        let missing = problems(&[("SSO_GATEWAY__ACCOUNTS__PAIRWISE_SALT__FILE", "/nonexistent/salt")]);
        assert!(
            missing.iter().any(|p| p.starts_with("SSO_GATEWAY__ACCOUNTS__PAIRWISE_SALT__FILE: cannot read")),
            "{missing:?}"
        );
    }

    #[test]
    fn unknown_keys_entries_and_variables_are_problems_naming_the_variable() {
        let unknown_key = problems(&[("SSO_GATEWAY__SESSIONS__REDIS__KEY_PREFIXX", "x")]);
        assert!(
            unknown_key.iter().any(|p| p.contains("key_prefixx") && p.contains("SSO_GATEWAY__SESSIONS__REDIS__KEY_PREFIXX")),
            "{unknown_key:?}"
        );
        let unknown_section = problems(&[("SSO_GATEWAY__SESION__STORE", "memory")]);
        assert!(
            unknown_section.iter().any(|p| p.contains("SSO_GATEWAY__SESION__STORE")),
            "{unknown_section:?}"
        );
        let unknown_client = problems(&[("SSO_GATEWAY__CLIENTS__NOBODY__CLIENT_SECRET", "x")]);
        assert_eq!(unknown_client.len(), 1, "{unknown_client:?}");
        assert!(
            unknown_client[0]
                .starts_with("SSO_GATEWAY__CLIENTS__NOBODY__CLIENT_SECRET: no [[clients]] entry")
        );
        let empty = problems(&[("SSO_GATEWAY__SESSIONS____STORE", "memory")]);
        assert!(empty[0].contains("names no key"), "{empty:?}");
        let typo = problems(&[("SSO_GATEWAY_ISSUR", "https://x.example")]);
        assert_eq!(typo.len(), 1, "{typo:?}");
        assert!(typo[0].starts_with("SSO_GATEWAY_ISSUR: is not a setting"), "{typo:?}");
        // Read by other parts, or named by the file as a secret: not problems.
        assert!(problems(&[("SSO_GATEWAY_LOG_FORMAT", "json"), ("SSO_GATEWAY_CONFIG", "x.toml")]).is_empty());
        let named = format!("{BASE}[accounts]\npairwise_salt = {{ env = \"SSO_GATEWAY_SALT\" }}\n");
        let salt = env(&[("SSO_GATEWAY_SALT", "a-pairwise-salt-of-at-least-32-characters")]);
        assert!(Settings::from_toml_with_env(&named, &salt).is_ok());
    }

    #[test]
    fn a_value_of_the_wrong_type_is_a_clear_problem_that_does_not_repeat_the_value() {
        let bad_int = problems(&[("SSO_GATEWAY__SESSIONS__MEMORY__MAX_ENTRIES", "many")]);
        assert_eq!(
            bad_int,
            ["SSO_GATEWAY__SESSIONS__MEMORY__MAX_ENTRIES: sessions.memory.max_entries: expected an integer"]
        );
        let bad_default = problems(&[("SSO_GATEWAY__SESSIONS__MEMORY__MAX_BYTES", "lots-of-secret-bytes")]);
        assert_eq!(bad_default.len(), 1, "{bad_default:?}");
        assert!(
            bad_default[0].starts_with("sessions.memory.max_bytes: invalid type: string, expected"),
            "{bad_default:?}"
        );
        assert!(
            bad_default[0].ends_with("(set by SSO_GATEWAY__SESSIONS__MEMORY__MAX_BYTES)"),
            "{bad_default:?}"
        );
        assert!(!bad_default[0].contains("lots-of-secret-bytes"), "the value is not repeated");
        let bad_bool = problems(&[("SSO_GATEWAY__LIMITS__ENABLED", "yes")]);
        assert!(bad_bool[0].contains("SSO_GATEWAY__LIMITS__ENABLED"), "{bad_bool:?}");
        let bad_duration = problems(&[("SSO_GATEWAY__SESSIONS__IDLE_TIMEOUT", "30")]);
        assert!(
            bad_duration[0].contains("sessions.idle_timeout")
                && bad_duration[0].contains("SSO_GATEWAY__SESSIONS__IDLE_TIMEOUT"),
            "{bad_duration:?}"
        );
        let twice = problems(&[
            ("SSO_GATEWAY_ISSUER", "https://a.example"),
            ("SSO_GATEWAY__ISSUER", "https://b.example"),
        ]);
        assert!(twice.iter().any(|p| p.contains("one variable per key")), "{twice:?}");
    }

    #[test]
    fn the_older_names_still_work_and_every_value_says_where_it_came_from() {
        let s = load(&[
            ("SSO_GATEWAY_ISSUER", "https://sso.example"),
            ("SSO_GATEWAY__SESSIONS__IDLE_TIMEOUT", "45m"),
        ])
        .unwrap();
        assert_eq!(s.issuer(), "https://sso.example");
        let of = |path: &str| s.origins.iter().find(|o| o.path == path).map(ToString::to_string);
        assert_eq!(of("issuer").as_deref(), Some("issuer: environment (SSO_GATEWAY_ISSUER)"));
        assert_eq!(
            of("sessions.idle_timeout").as_deref(),
            Some("sessions.idle_timeout: environment (SSO_GATEWAY__SESSIONS__IDLE_TIMEOUT)")
        );
        assert_eq!(of("sessions.memory.max_entries").as_deref(), Some("sessions.memory.max_entries: file"));
        assert_eq!(of("clients[1].client_secret").as_deref(), Some("clients[1].client_secret: file"));
        assert_eq!(of("sessions.redis.timeout"), None, "a default");
        assert!(s.origins.iter().all(|o| !o.to_string().contains("secret-0123")), "values are never shown");
    }
}
