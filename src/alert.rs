//! The Alertmanager webhook payload (version 4), parsed and validated.
//!
//! Parsing is strict about what the daemon relies on (version, each alert's status, labels and
//! startsAt) and lenient about everything else: newer Alertmanagers add top-level fields
//! (`notification_reason` in 0.32, `routeLabels` in 0.34), so unknown fields are ignored.
//! A rejected payload names the offending field, because Alertmanager does not retry 4xx and the
//! operator reading its log needs to know what to fix.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Label or annotation set, ordered so that fingerprints and stored JSON are stable.
pub type Labels = BTreeMap<String, String>;

/// Whether an alert (or a group) is firing or resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The alert is active.
    Firing,
    /// The alert has stopped.
    Resolved,
}

impl Status {
    /// The lowercase wire name, also used as a metric label and in the store.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Firing => "firing",
            Status::Resolved => "resolved",
        }
    }
}

/// A webhook notification as Alertmanager sends it.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Payload {
    /// Payload format version; only "4" is accepted.
    pub version: String,
    /// The group key Alertmanager uses for this notification.
    #[serde(default)]
    pub group_key: String,
    /// Group status: `firing` while any alert in the group fires. Never used for decisions.
    #[serde(default)]
    pub status: Option<Status>,
    /// The receiver name in Alertmanager's route tree.
    #[serde(default)]
    pub receiver: String,
    /// Number of alerts Alertmanager left out because of `max_alerts`.
    #[serde(default)]
    pub truncated_alerts: u64,
    /// Alertmanager's external URL, used for links.
    #[serde(default, rename = "externalURL")]
    pub external_url: String,
    /// The alerts of the group, each with its own status.
    pub alerts: Vec<Alert>,
}

/// One alert inside a webhook payload.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    /// This alert's own status (the only one decisions look at).
    pub status: Status,
    /// Identifying labels.
    pub labels: Labels,
    /// Descriptive annotations (summary, runbook_url, …).
    #[serde(default)]
    pub annotations: Labels,
    /// When the alert started firing.
    pub starts_at: DateTime<Utc>,
    /// When it resolved; `None` for Alertmanager's zero time on firing alerts.
    #[serde(default, deserialize_with = "de_optional_time")]
    pub ends_at: Option<DateTime<Utc>>,
    /// Link to the expression in Prometheus.
    #[serde(default, rename = "generatorURL")]
    pub generator_url: String,
    /// Alertmanager's fingerprint of the label set; computed the same way when absent.
    #[serde(default)]
    pub fingerprint: String,
}

impl Alert {
    /// The `alertname` label, or an empty string.
    pub fn alertname(&self) -> &str {
        self.labels.get("alertname").map_or("", String::as_str)
    }

    /// `startsAt` as epoch milliseconds: the precision the store keeps and dedup compares.
    pub fn starts_at_ms(&self) -> i64 {
        self.starts_at.timestamp_millis()
    }

    /// The dedup identity: one alert occurrence in one status. A re-send repeats all three.
    pub fn dedup_key(&self) -> DedupKey {
        DedupKey {
            fingerprint: self.fingerprint.clone(),
            status: self.status,
            starts_at_ms: self.starts_at_ms(),
        }
    }
}

/// What makes two deliveries of an alert the same event.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DedupKey {
    /// Label-set fingerprint.
    pub fingerprint: String,
    /// Firing or resolved.
    pub status: Status,
    /// Start time in epoch milliseconds.
    pub starts_at_ms: i64,
}

/// Why a payload was rejected: the field path (as `alerts[2].startsAt`) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid payload at `{field}`: {message}")]
pub struct PayloadError {
    /// Path of the offending field; `$` for the document itself.
    pub field: String,
    /// Human-readable problem.
    pub message: String,
}

/// Go's zero time, which Alertmanager sends as `endsAt` of firing alerts.
fn is_zero_time(t: &DateTime<Utc>) -> bool {
    t.timestamp() <= -62_135_596_800
}

fn de_optional_time<'de, D>(d: D) -> Result<Option<DateTime<Utc>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let t: Option<DateTime<Utc>> = Option::deserialize(d)?;
    Ok(t.filter(|t| !is_zero_time(t)))
}

impl Payload {
    /// Parses and validates a webhook body.
    pub fn from_slice(body: &[u8]) -> Result<Payload, PayloadError> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Err(PayloadError {
                field: "$".into(),
                message: "empty body; expected an Alertmanager webhook JSON object".into(),
            });
        }
        let de = &mut serde_json::Deserializer::from_slice(body);
        let mut payload: Payload = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let message = inner.to_string();
            // serde reports a missing field at its parent's path; name the field itself.
            let field = match missing_field_name(&message) {
                Some(name) if path == "." || path.is_empty() => name.to_string(),
                Some(name) => format!("{path}.{name}"),
                None if path == "." || path.is_empty() => "$".to_string(),
                None => path,
            };
            PayloadError {
                field,
                message: strip_position(&message).to_string(),
            }
        })?;
        if payload.version != "4" {
            return Err(PayloadError {
                field: "version".into(),
                message: format!(
                    "unsupported webhook version {:?}; this daemon speaks Alertmanager's version \"4\"",
                    payload.version
                ),
            });
        }
        for (i, alert) in payload.alerts.iter_mut().enumerate() {
            if alert.fingerprint.is_empty() {
                alert.fingerprint = fingerprint(&alert.labels);
            } else if alert.fingerprint.len() > 64 {
                return Err(PayloadError {
                    field: format!("alerts[{i}].fingerprint"),
                    message: "longer than 64 characters".into(),
                });
            }
        }
        Ok(payload)
    }
}

fn missing_field_name(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("missing field `")?;
    rest.split('`').next()
}

/// serde_json appends " at line L column C"; the field path says more and stays stable.
fn strip_position(message: &str) -> &str {
    match message.rfind(" at line ") {
        Some(i) => &message[..i],
        None => message,
    }
}

/// Alertmanager's (Prometheus model's) label-set fingerprint: FNV-1a 64 over sorted
/// `name 0xff value 0xff`, printed as 16 hex digits. Matching it lets alerts without a
/// `fingerprint` field (older senders, hand-made payloads) dedup against Alertmanager's own.
pub fn fingerprint(labels: &Labels) -> String {
    const OFFSET: u64 = 14_695_981_039_346_656_037;
    const PRIME: u64 = 1_099_511_628_211;
    let mut h = OFFSET;
    let mut add = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(PRIME);
        }
    };
    // BTreeMap iterates in name order, which is the order Prometheus sorts by.
    for (name, value) in labels {
        add(name.as_bytes());
        add(&[0xff]);
        add(value.as_bytes());
        add(&[0xff]);
    }
    format!("{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const GROUPED: &str =
        include_str!("../tests/fixtures/am-0.25-group-firing-with-1-resolved.json");

    #[test]
    fn a_real_alertmanager_payload_parses_with_each_alerts_own_status() {
        let p = Payload::from_slice(GROUPED.as_bytes()).unwrap();
        assert_eq!(p.status, Some(Status::Firing));
        let statuses: Vec<_> = p.alerts.iter().map(|a| a.status).collect();
        assert_eq!(statuses, [Status::Firing, Status::Firing, Status::Resolved]);
        assert_eq!(p.alerts[0].ends_at, None, "Go zero time means not ended");
        assert!(p.alerts[2].ends_at.is_some());
    }

    #[test]
    fn computed_fingerprints_equal_the_ones_alertmanager_sent() {
        for file in [
            GROUPED,
            include_str!("../tests/fixtures/am-0.25-firing-grouped-3.json"),
            include_str!("../tests/fixtures/am-0.25-firing-single.json"),
        ] {
            let p = Payload::from_slice(file.as_bytes()).unwrap();
            for a in &p.alerts {
                assert_eq!(fingerprint(&a.labels), a.fingerprint, "{:?}", a.labels);
            }
        }
    }

    #[test]
    fn a_missing_fingerprint_is_computed_from_the_labels() {
        let body = r#"{"version":"4","alerts":[{"status":"firing","labels":{"alertname":"Test","app":"demo","auto_repair":"restart"},"startsAt":"2026-11-26T03:35:51Z"}]}"#;
        let p = Payload::from_slice(body.as_bytes()).unwrap();
        assert_eq!(p.alerts[0].fingerprint, "c5740cceca850c32");
    }

    #[test]
    fn unknown_fields_from_newer_alertmanagers_are_ignored() {
        let body =
            r#"{"version":"4","notification_reason":"x","routeLabels":{"a":"b"},"alerts":[]}"#;
        assert!(Payload::from_slice(body.as_bytes()).is_ok());
    }

    #[test]
    fn errors_name_the_field_that_is_wrong() {
        let cases = [
            (r#"{"alerts":[]}"#, "version"),
            (r#"{"version":"4"}"#, "alerts"),
            (r#"{"version":"3","alerts":[]}"#, "version"),
            (
                r#"{"version":"4","alerts":[{"status":"firing","labels":{}}]}"#,
                "alerts[0].startsAt",
            ),
            (
                r#"{"version":"4","alerts":[{"status":"burning","labels":{},"startsAt":"2026-01-01T00:00:00Z"}]}"#,
                "alerts[0].status",
            ),
            (
                r#"{"version":"4","alerts":[{"status":"firing","labels":{},"startsAt":"yesterday"}]}"#,
                "alerts[0].startsAt",
            ),
            (r#"{"version":"4","alerts":{}}"#, "alerts"),
            ("", "$"),
            ("not json", "$"),
        ];
        for (body, field) in cases {
            let err = Payload::from_slice(body.as_bytes()).unwrap_err();
            assert_eq!(err.field, field, "{body}: {err}");
        }
    }

    #[test]
    fn timestamps_in_seconds_ms_and_ns_give_the_same_dedup_key_to_the_millisecond() {
        let mk = |ts: &str| {
            let body = format!(
                r#"{{"version":"4","alerts":[{{"status":"firing","labels":{{"a":"b"}},"startsAt":"{ts}"}}]}}"#
            );
            Payload::from_slice(body.as_bytes()).unwrap().alerts[0].dedup_key()
        };
        assert_eq!(
            mk("2026-11-26T03:35:51.123Z"),
            mk("2026-11-26T03:35:51.123456789Z")
        );
        assert_ne!(mk("2026-11-26T03:35:51Z"), mk("2026-11-26T03:35:52Z"));
    }
}
