//! [`Secret`]: a token, password or secret URL held so that it cannot be printed by accident.
//!
//! A leaf module: it imports nothing from the crate, so settings (`config`), channels
//! (`notify`) and the API's JWT keys (`auth`) can all hold secrets without importing each
//! other. The value lives in a [`secrecy::SecretString`], which wipes it from memory on drop and
//! has no `Display`; this newtype adds what the crate relies on: `Debug` and `Display` print
//! `***`, `Serialize` writes `***`, equality is constant-time, and [`Secret::expose`] is the one
//! way to read the value, so every reader is easy to find with grep.

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use subtle::ConstantTimeEq;

/// What `Debug`, `Display` and `Serialize` show instead of the value.
const REDACTED: &str = "***";

/// A secret value. Never printed: `Debug`/`Display` show `***`.
#[derive(Clone)]
pub struct Secret(SecretString);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(SecretString::from(value.into()))
    }

    /// The value, for the one place that compares or sends it.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

/// Constant-time, so comparing a presented token with the configured one does not tell an
/// attacker how many leading bytes were right.
impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.expose()
            .as_bytes()
            .ct_eq(other.expose().as_bytes())
            .into()
    }
}

impl Eq for Secret {}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(REDACTED)
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(REDACTED)
    }
}

/// A settings dump serialized as JSON or YAML shows that a secret is set, never its value.
impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(REDACTED)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret::new)
    }
}

/// A secret given inline (`<key>`), by environment variable (`<key>_env: VAR`) or by file
/// (`<key>_file: PATH`, a mounted Kubernetes Secret); resolved once at load. The notification
/// channels' secrets and Grafana's token are given this way.
#[derive(Clone, Debug, Default)]
pub struct SecretInput {
    value: Option<Secret>,
    env: Option<String>,
    file: Option<std::path::PathBuf>,
}

impl SecretInput {
    /// The three forms as written; [`SecretInput::resolve`] checks that exactly one is given.
    pub fn new(
        value: Option<Secret>,
        env: Option<String>,
        file: Option<std::path::PathBuf>,
    ) -> SecretInput {
        SecretInput { value, env, file }
    }

    /// Whether any of the three forms is given.
    pub fn is_given(&self) -> bool {
        self.value.is_some() || self.env.is_some() || self.file.is_some()
    }

    /// Reads the secret (`env` looks variables up): exactly one form must be given, and the
    /// value must not be empty. The message names `key` and never the value.
    pub fn resolve(
        &mut self,
        key: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Secret, String> {
        let given = [
            self.value.is_some(),
            self.env.is_some(),
            self.file.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if given != 1 {
            return Err(format!(
                "give exactly one of {key}, {key}_env or {key}_file"
            ));
        }
        let secret = if let Some(v) = &self.value {
            v.clone()
        } else if let Some(var) = &self.env {
            Secret::new(
                env(var)
                    .filter(|v| !v.trim().is_empty())
                    .ok_or_else(|| format!("{key}_env: environment variable {var} is not set"))?
                    .trim(),
            )
        } else if let Some(path) = &self.file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("{key}_file: cannot read {}: {e}", path.display()))?;
            Secret::new(text.trim())
        } else {
            unreachable!("exactly one source was counted")
        };
        if secret.expose().is_empty() {
            return Err(format!("{key} is empty"));
        }
        self.value = Some(secret.clone());
        Ok(secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_never_shows_in_debug_display_or_serialized_output() {
        let s = Secret::new("hunter2-hunter2");
        assert_eq!(format!("{s:?} {s} {s:#?}"), "*** *** ***");
        assert_eq!(serde_json::to_string(&s).unwrap(), r#""***""#);
        assert_eq!(s.expose(), "hunter2-hunter2");
    }

    #[test]
    fn secrets_compare_by_value() {
        assert_eq!(Secret::new("abc"), Secret::new("abc"));
        assert_ne!(Secret::new("abc"), Secret::new("abd"));
        assert_ne!(Secret::new("abc"), Secret::new("abcd"));
    }

    #[test]
    fn a_secret_deserializes_from_a_string() {
        let s: Secret = serde_json::from_str(r#""tok""#).unwrap();
        assert_eq!(s.expose(), "tok");
    }
}
