//! How the store's epoch-millisecond times are shown to people and clients: RFC 3339 in UTC
//! with milliseconds (`2026-11-30T07:22:03.123Z`).
//!
//! The columns stay integers (one query text for both backends, cheap comparisons); only
//! serialization changes, through `#[serde(serialize_with = ...)]` on the read models the API
//! and the CLI's `--json` print. Durations stay numbers and say their unit in the name
//! (`timeout_ms`, `ttr_ms`, `ttr_mean_s`).

use chrono::{DateTime, SecondsFormat};
use serde::Serializer;

/// `ms` as RFC 3339 UTC, or `None` when it lies outside what chrono can show (never for a time
/// the store wrote: intake rejects such timestamps).
pub fn format(ms: i64) -> Option<String> {
    DateTime::from_timestamp_millis(ms).map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
}

/// `serialize_with` for an `i64` epoch-ms field; an unrepresentable value is `null`.
pub fn ms<S: Serializer>(ms: &i64, s: S) -> Result<S::Ok, S::Error> {
    match format(*ms) {
        Some(t) => s.serialize_str(&t),
        None => s.serialize_none(),
    }
}

/// `serialize_with` for an `Option<i64>` epoch-ms field.
pub fn opt_ms<S: Serializer>(ms: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
    match ms.and_then(format) {
        Some(t) => s.serialize_str(&t),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_time_is_shown_in_utc_with_milliseconds_and_z() {
        assert_eq!(
            super::format(1_764_487_323_123).as_deref(),
            Some("2025-11-30T07:22:03.123Z")
        );
        assert_eq!(
            super::format(0).as_deref(),
            Some("1970-01-01T00:00:00.000Z")
        );
    }
}
