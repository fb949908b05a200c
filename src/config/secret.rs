//! Secret settings: redacted in `Debug`, resolvable from the environment or a file.

use std::path::PathBuf;

use secrecy::ExposeSecret;
use serde::{Deserialize, Deserializer};

/// A string that never shows up in logs or `Debug` output.
#[derive(Clone)]
pub struct SecretString(secrecy::SecretString);

impl SecretString {
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl From<&str> for SecretString {
    fn from(s: &str) -> Self {
        SecretString(secrecy::SecretString::from(s.to_owned()))
    }
}

impl From<String> for SecretString {
    fn from(s: String) -> Self {
        SecretString(secrecy::SecretString::from(s))
    }
}

impl std::fmt::Debug for SecretString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

impl<'de> Deserialize<'de> for SecretString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(SecretString::from)
    }
}

/// A secret given inline, as `{ env = "VAR" }` or as `{ file = "/run/secrets/x" }`.
/// Resolved once while the configuration is validated.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum SecretValue {
    Inline(SecretString),
    Env { env: String },
    File { file: PathBuf },
}

impl SecretValue {
    /// The secret's value; after validation every secret is inline.
    pub fn value(&self) -> Option<&str> {
        match self {
            SecretValue::Inline(s) => Some(s.expose()),
            _ => None,
        }
    }

    /// Reads an env/file secret and turns it into an inline one.
    pub(super) fn resolve(
        &self,
        env: &std::collections::BTreeMap<String, String>,
    ) -> Result<SecretValue, String> {
        match self {
            SecretValue::Inline(_) => Ok(self.clone()),
            SecretValue::Env { env: var } => {
                let value = env
                    .get(var)
                    .cloned()
                    .or_else(|| std::env::var(var).ok())
                    .ok_or_else(|| format!("environment variable {var} is not set"))?;
                Ok(SecretValue::Inline(SecretString::from(value)))
            }
            SecretValue::File { file } => {
                let value = std::fs::read_to_string(file)
                    .map_err(|e| format!("cannot read secret file {}: {e}", file.display()))?;
                Ok(SecretValue::Inline(SecretString::from(value.trim_end_matches(['\n', '\r']))))
            }
        }
    }
}
