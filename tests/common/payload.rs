//! Alertmanager webhook payloads (version 4) as the daemon receives them, and the fixtures
//! recorded from a real Alertmanager. One builder for every test, so a payload's shape is
//! decided once: tests that probe the intake with a malformed field change that field of a
//! well-formed alert or group.

use serde_json::{Value, json};

use super::files::repo;

/// `endsAt` of a firing alert, as Alertmanager sends it.
pub const NOT_ENDED: &str = "0001-01-01T00:00:00Z";

/// One alert of a webhook payload: `status` (`firing` or `resolved`), `labels`, no
/// annotations, an empty `generatorURL`.
pub fn alert(status: &str, labels: &[(&str, &str)], starts_at: &str) -> Value {
    let labels: serde_json::Map<String, Value> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    json!({
        "status": status, "labels": labels, "annotations": {},
        "startsAt": starts_at, "endsAt": NOT_ENDED, "generatorURL": ""
    })
}

/// A webhook payload (group status `firing`, receiver `aiops`) carrying `alerts`.
pub fn group(alerts: Vec<Value>) -> Value {
    json!({"version": "4", "status": "firing", "receiver": "aiops", "groupKey": "{}", "alerts": alerts})
}

/// A webhook payload with the given alerts (labels, status), all starting at `starts_at`.
pub fn payload(alerts: &[(&[(&str, &str)], &str)], starts_at: &str) -> String {
    group(
        alerts
            .iter()
            .map(|(labels, status)| alert(status, labels, starts_at))
            .collect(),
    )
    .to_string()
}

/// An RFC 3339 `startsAt` this many minutes before now: tests whose rule waits (`wait: 24h`)
/// need an alert that started recently, or the wait has already passed and the job runs at once.
pub fn minutes_ago(minutes: i64) -> String {
    (chrono::Utc::now() - chrono::Duration::minutes(minutes))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A payload recorded from Alertmanager 0.25 (tests/fixtures).
pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(repo().join("tests/fixtures").join(name)).unwrap()
}

/// An Alertmanager payload (firing since ten minutes) asking for `repair` on the workload in
/// `ns` labelled `labels`, as the real-cluster tests post it.
pub fn repair_alert(repair: &str, ns: &str, labels: &[(&str, &str)]) -> String {
    let ten_minutes_ago = (chrono::Utc::now() - chrono::Duration::minutes(10)).to_rfc3339();
    let mut all: Vec<(&str, &str)> = vec![
        ("alertname", "KubeTrouble"),
        ("auto_repair", repair),
        ("namespace", ns),
        ("severity", "critical"),
    ];
    all.extend_from_slice(labels);
    payload(&[(&all, "firing")], &ten_minutes_ago)
}
