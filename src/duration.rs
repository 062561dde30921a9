//! [`HumanDuration`]: a duration written as `30s`, `5m` or `1h30m` in settings and commands.
//!
//! A leaf module (no crate imports), so `config`, `notify`, the API and the playbook host can
//! parse durations the same way without importing each other. Parsing is the `humantime`
//! crate's; only the error message is ours, because it says how to write a duration and tests
//! and users rely on it. `humantime-serde` would parse the same spellings but give its own
//! error text and a bare `Duration` field, so the newtype (whose `.0` many call sites read)
//! stays a thin wrapper over `humantime` instead.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// A duration written as humantime (`30s`, `5m`, `1h30m`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration(&s)
            .map(HumanDuration)
            .map_err(serde::de::Error::custom)
    }
}

/// Parses `30s`, `5m`, `1h30m` and the like.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("invalid duration {s:?} ({e}); write it like 30s, 5m or 1h30m"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_written_as_humantime_and_a_bad_one_says_how_to_write_it() {
        assert_eq!(parse_duration(" 1h30m "), Ok(Duration::from_secs(5400)));
        let err = parse_duration("soon").unwrap_err();
        assert!(
            err.starts_with("invalid duration \"soon\" (")
                && err.ends_with("write it like 30s, 5m or 1h30m"),
            "{err}"
        );
        let d: HumanDuration = serde_json::from_str(r#""250ms""#).unwrap();
        assert_eq!(d.0, Duration::from_millis(250));
    }
}
