//! The Alertmanager webhook payload, parsed and validated, as two senders send it: Prometheus
//! Alertmanager (`"version": "4"`) and Grafana-managed alerting's webhook contact point
//! (`"version": "1"`, the same format with fields of its own).
//!
//! Parsing is strict about what the daemon relies on (version, each alert's status, labels and
//! startsAt) and lenient about everything else: newer Alertmanagers add top-level fields
//! (`notification_reason` in 0.32, `routeLabels` in 0.34), so unknown fields are ignored.
//! Grafana's extra fields are ignored the same way: `orgId`, `title`, `state` and `message` at
//! the top, and per alert `values`, `valueString`, `silenceURL`, `dashboardURL`, `panelURL` and
//! `imageURL` (Grafana's documented webhook payload, "Configure the webhook notifier for
//! Alerting", grafana.com/docs/grafana/latest/alerting/configure-notifications/
//! manage-contact-points/integrations/webhook-notifier/). What is used is the same for both:
//! per alert `status`, `labels`, `annotations`, `startsAt`, `endsAt`, `generatorURL` and
//! `fingerprint`; per payload `receiver`, `groupKey` and `externalURL` (checked and stored).
//!
//! The sender's `fingerprint` is kept as it is sent. Grafana's need not be ours (it is computed
//! over labels it does not send, such as the rule's uid), but it is stable for an alert instance
//! across re-sends, and firing and resolved carry the same one with the same `startsAt`, which
//! is all dedup and resolve matching need; recomputing it from the visible labels would merge
//! two Grafana rules that differ only in hidden labels. Only an absent fingerprint is computed.
//! A rejected payload names the offending field, because Alertmanager does not retry 4xx and the
//! operator reading its log needs to know what to fix.
//!
//! Beyond the shape, each alert is checked against what the store and the daemon can hold
//! ([`Alert::check`]): no NUL character anywhere (PostgreSQL text cannot store one), lengths
//! bounded so that no index row limit can be reached, and timestamps inside a sane window (a
//! `startsAt` in year 99999 would hold its target's repair back forever). One bad alert is
//! rejected on its own; the rest of its payload is kept. Payload-level fields (receiver,
//! groupKey, externalURL) are shared by every alert, so a bad one rejects the whole payload.
//!
//! The unit tests are in `alert/tests.rs`.

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
    /// Payload format version: "4" from Alertmanager, "1" from Grafana ([`SUPPORTED_VERSIONS`]).
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

/// Who sends the webhook format, told apart by its `version`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sender {
    /// Prometheus Alertmanager's `webhook_config`, version "4".
    Alertmanager,
    /// Grafana-managed alerting's webhook contact point, version "1".
    Grafana,
}

/// Every accepted `version`, with its sender, in the order error messages name them.
pub const SUPPORTED_VERSIONS: [(&str, Sender); 2] =
    [("4", Sender::Alertmanager), ("1", Sender::Grafana)];

impl Sender {
    /// The sender of a payload `version`; `None` for a version nobody is known to send.
    pub fn of_version(version: &str) -> Option<Sender> {
        SUPPORTED_VERSIONS
            .iter()
            .find(|(v, _)| *v == version)
            .map(|(_, s)| *s)
    }

    /// Its name in messages and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Sender::Alertmanager => "Alertmanager",
            Sender::Grafana => "Grafana",
        }
    }

    /// `Alertmanager sends "4", Grafana "1"`: what an unsupported version is told.
    fn supported() -> String {
        SUPPORTED_VERSIONS
            .iter()
            .enumerate()
            .map(|(i, (v, s))| {
                if i == 0 {
                    format!("{} sends {v:?}", s.as_str())
                } else {
                    format!("{} {v:?}", s.as_str())
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
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
    /// Who sent it (its `version` was checked when it was parsed).
    pub fn sender(&self) -> Option<Sender> {
        Sender::of_version(&self.version)
    }

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
        if Sender::of_version(&payload.version).is_none() {
            return Err(PayloadError {
                field: "version".into(),
                message: format!(
                    "version {:?} is not supported: {}",
                    payload.version,
                    Sender::supported()
                ),
            });
        }
        for (field, value, max) in [
            ("receiver", &payload.receiver, limits::RECEIVER),
            ("groupKey", &payload.group_key, limits::GROUP_KEY),
            ("externalURL", &payload.external_url, limits::EXTERNAL_URL),
        ] {
            if let Err(p) = text(value, max) {
                return Err(PayloadError {
                    field: field.into(),
                    message: format!("{}; every alert of the payload shares it", p.message()),
                });
            }
        }
        for alert in &mut payload.alerts {
            if alert.fingerprint.is_empty() {
                alert.fingerprint = fingerprint(&alert.labels);
            }
        }
        Ok(payload)
    }

    /// Splits the alerts into those that can be recorded and the [`Rejection`]s of the others,
    /// checking each with [`Alert::check`] against `now`.
    pub fn partition(&self, now: DateTime<Utc>) -> (Vec<&Alert>, Vec<Rejection>) {
        let mut good = Vec::with_capacity(self.alerts.len());
        let mut rejected = Vec::new();
        for (index, alert) in self.alerts.iter().enumerate() {
            match alert.check(now) {
                Ok(()) => good.push(alert),
                Err((field, problem)) => rejected.push(Rejection {
                    index,
                    fingerprint: cut(&alert.fingerprint, 64).to_string(),
                    alertname: cut(alert.alertname(), 128).to_string(),
                    field,
                    reason: problem.message(),
                    problem,
                }),
            }
        }
        (good, rejected)
    }
}

/// The bounds [`Alert::check`] and [`Payload::from_slice`] apply, in bytes. Chosen so that no
/// value the intake writes into an indexed column can reach PostgreSQL's btree row limit
/// (2,704 bytes), with room for the other columns of composite indexes, and generous for what
/// Prometheus and Alertmanager actually send.
pub mod limits {
    use chrono::TimeDelta;

    /// `fingerprint` (Alertmanager sends 16 hex digits; indexed for dedup).
    pub const FINGERPRINT: usize = 64;
    /// The `alertname` label (indexed with jobs and the knowledge base).
    pub const ALERTNAME: usize = 1024;
    /// The `namespace` label (indexed); a Kubernetes namespace has at most 63 characters.
    pub const NAMESPACE: usize = 253;
    /// Any label name.
    pub const LABEL_NAME: usize = 1024;
    /// Any other label value.
    pub const LABEL_VALUE: usize = 16 * 1024;
    /// All label names and values of one alert together.
    pub const LABELS_TOTAL: usize = 64 * 1024;
    /// Any annotation value (descriptions can be long).
    pub const ANNOTATION_VALUE: usize = 64 * 1024;
    /// All annotation names and values of one alert together.
    pub const ANNOTATIONS_TOTAL: usize = 256 * 1024;
    /// `generatorURL` (it carries the URL-encoded PromQL expression).
    pub const GENERATOR_URL: usize = 32 * 1024;
    /// The payload's `receiver`.
    pub const RECEIVER: usize = 1024;
    /// The payload's `groupKey` (it repeats the group_by label values).
    pub const GROUP_KEY: usize = 16 * 1024;
    /// The payload's `externalURL`.
    pub const EXTERNAL_URL: usize = 4096;
    /// The earliest `startsAt`/`endsAt` accepted: 2000-01-01T00:00:00Z.
    pub const EARLIEST_MS: i64 = 946_684_800_000;
    /// How far ahead of this daemon's clock a `startsAt` (or a resolved alert's `endsAt`) may
    /// be: clock skew between Prometheus, Alertmanager and this host.
    pub const CLOCK_SKEW: TimeDelta = TimeDelta::hours(1);
    /// How far ahead a firing alert's `endsAt` may be (Alertmanager sends its zero time; other
    /// senders put a "valid until" there).
    pub const FIRING_ENDS_AHEAD: TimeDelta = TimeDelta::days(366);
}

/// What is wrong with one value of an alert. Its [`Problem::as_str`] is the `reason` label of
/// `aiops_alerts_rejected_total`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// A NUL character, which PostgreSQL cannot store in text.
    Nul,
    /// Longer than the limit.
    TooLong {
        /// Length in bytes.
        len: usize,
        /// The limit in bytes.
        max: usize,
    },
    /// A timestamp outside the accepted window.
    TimeOutOfRange {
        /// What the window is.
        window: String,
    },
}

impl Problem {
    /// Every metric label, so the counter starts at zero.
    pub const LABELS: [&'static str; 3] = ["nul", "too_long", "time_out_of_range"];

    /// The metric label.
    pub fn as_str(&self) -> &'static str {
        match self {
            Problem::Nul => "nul",
            Problem::TooLong { .. } => "too_long",
            Problem::TimeOutOfRange { .. } => "time_out_of_range",
        }
    }

    /// A sentence for the operator.
    pub fn message(&self) -> String {
        match self {
            Problem::Nul => "contains a NUL character, which the store cannot hold".into(),
            Problem::TooLong { len, max } => {
                format!("is {len} bytes long, above the limit of {max}")
            }
            Problem::TimeOutOfRange { window } => {
                format!("is outside the accepted window: {window}")
            }
        }
    }
}

/// One alert of a payload that was not recorded, and why. Serialized into the webhook's 400
/// answer; `fingerprint` and `alertname` are cut short so a hostile value cannot flood the log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Rejection {
    /// Position in the payload's `alerts`.
    pub index: usize,
    /// The alert's fingerprint (at most 64 bytes shown).
    pub fingerprint: String,
    /// Its alertname (at most 128 bytes shown).
    pub alertname: String,
    /// The offending field, relative to the alert: `startsAt`, `labels.namespace`, `labels`.
    pub field: String,
    /// What is wrong, for a human.
    pub reason: String,
    /// What is wrong, typed.
    #[serde(skip)]
    pub problem: Problem,
}

/// The longest prefix of `s` within `max` bytes that ends on a character boundary.
pub fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn text(value: &str, max: usize) -> Result<(), Problem> {
    if value.contains('\0') {
        Err(Problem::Nul)
    } else if value.len() > max {
        Err(Problem::TooLong {
            len: value.len(),
            max,
        })
    } else {
        Ok(())
    }
}

/// A field path element for a label or annotation name, cut short and made printable.
fn name_path(prefix: &str, name: &str) -> String {
    format!("{prefix}.{}", cut(name, 64).replace('\0', "\\0"))
}

fn check_map(
    prefix: &str,
    m: &Labels,
    value_max: impl Fn(&str) -> usize,
    total_max: usize,
) -> Result<(), (String, Problem)> {
    let mut total = 0usize;
    for (name, value) in m {
        text(name, limits::LABEL_NAME).map_err(|p| (prefix.to_string(), p))?;
        text(value, value_max(name)).map_err(|p| (name_path(prefix, name), p))?;
        total += name.len() + value.len();
    }
    if total > total_max {
        return Err((
            prefix.to_string(),
            Problem::TooLong {
                len: total,
                max: total_max,
            },
        ));
    }
    Ok(())
}

impl Alert {
    /// Whether this alert can be recorded and acted on, given the time `now`: on failure, the
    /// offending field (relative to the alert) and the problem. See [`limits`].
    pub fn check(&self, now: DateTime<Utc>) -> Result<(), (String, Problem)> {
        text(&self.fingerprint, limits::FINGERPRINT).map_err(|p| ("fingerprint".into(), p))?;
        check_map(
            "labels",
            &self.labels,
            |name| match name {
                "alertname" => limits::ALERTNAME,
                "namespace" => limits::NAMESPACE,
                _ => limits::LABEL_VALUE,
            },
            limits::LABELS_TOTAL,
        )?;
        check_map(
            "annotations",
            &self.annotations,
            |_| limits::ANNOTATION_VALUE,
            limits::ANNOTATIONS_TOTAL,
        )?;
        text(&self.generator_url, limits::GENERATOR_URL).map_err(|p| ("generatorURL".into(), p))?;

        let earliest = DateTime::from_timestamp_millis(limits::EARLIEST_MS).expect("in range");
        let skewed = now + limits::CLOCK_SKEW;
        let window = |latest: DateTime<Utc>, why: &str| Problem::TimeOutOfRange {
            window: format!(
                "from {} to {} ({why})",
                earliest.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                latest.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
        };
        if self.starts_at < earliest || self.starts_at > skewed {
            return Err((
                "startsAt".into(),
                window(skewed, "this host's clock plus 1h of skew"),
            ));
        }
        if let Some(ends) = self.ends_at {
            let (latest, why) = match self.status {
                Status::Resolved => (skewed, "this host's clock plus 1h of skew"),
                Status::Firing => (
                    now + limits::FIRING_ENDS_AHEAD,
                    "a firing alert's endsAt at most 366 days ahead",
                ),
            };
            if ends < earliest || ends > latest {
                return Err(("endsAt".into(), window(latest, why)));
            }
        }
        Ok(())
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
mod tests;
