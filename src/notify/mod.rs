//! Notifications: what the daemon did, told to people on Telegram, LINE, Slack, email or a
//! webhook, once, readable, and never in the way of a repair.
//!
//! The path of a message:
//! - an event (an escalation, a repair's end, the storm brake, an alert's recovery, …) is
//!   turned into one row per channel by [`Outbox::enqueue`], inside the store transaction of
//!   the state change that causes it: a crash loses nothing and a rolled-back change sends
//!   nothing. Refusals (`no_action`) are grouped instead: one open row per channel and reason
//!   that later refusals join until it is due ([`Outbox::no_action`]). Which channels:
//!   the names a rule's chain gives explicitly (a channel, or a named route's channels) plus
//!   the label routes that match the alert ([`route`]); the text is rendered then ([`template`]);
//!   identical text to one channel within `notify.dedup_window` is recorded as suppressed;
//! - the [`dispatch::Dispatcher`] claims due rows with a lease, waits for the channel's rate
//!   limit, sends through the channel's [`Notifier`], records the attempt, and finishes the row
//!   or reschedules it by the [`dispatch::RetryPolicy`].
//!
//! Each channel is one small file behind the [`Notifier`] trait; retry, dedup and rate limits
//! are stages of their own, not repeated per channel. Errors never carry a secret: they are
//! built from status codes and API descriptions, never from URLs or tokens.

pub mod buttons;
pub mod channel;
pub mod config;
pub mod dispatch;
pub mod email;
pub mod line;
mod outbox;
pub mod redact;
pub mod route;
pub mod slack;
pub mod telegram;
pub mod template;
pub mod webhook;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::store;

pub use config::NotifySettings;
pub use outbox::{Outbox, Refused, Resolved};

/// Notification failures.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API answered with an error status.
    #[error("{channel}: HTTP {status}: {detail}")]
    Status {
        /// Channel type.
        channel: &'static str,
        /// HTTP status.
        status: u16,
        /// The API's description (never the request URL).
        detail: String,
        /// Worth retrying (5xx, 429).
        retryable: bool,
        /// How long the API asked to wait (Telegram `parameters.retry_after`, `Retry-After`).
        retry_after: Option<Duration>,
    },
    /// No answer: connection refused, reset, DNS, TLS.
    #[error("{channel}: {detail}")]
    Transport {
        /// Channel type.
        channel: &'static str,
        /// What failed, without the URL.
        detail: String,
    },
    /// No answer in time.
    #[error("{channel}: timed out")]
    Timeout {
        /// Channel type.
        channel: &'static str,
    },
    /// The SMTP server refused.
    #[error("email: {detail}")]
    Smtp {
        /// The server's reply (never the credentials).
        detail: String,
        /// A 4xx reply or a connection problem.
        retryable: bool,
    },
    /// The message or channel cannot work (bad address, unknown channel): never retried.
    #[error("{0}")]
    Invalid(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] store::Error),
}

/// `type Result<T, E = Error>` as in every module of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The longest wait honoured from a 429's `retry_after` / `Retry-After`.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

impl Error {
    /// Whether trying again later may work.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Status { retryable, .. } | Error::Smtp { retryable, .. } => *retryable,
            Error::Transport { .. } | Error::Timeout { .. } | Error::Store(_) => true,
            Error::Invalid(_) => false,
        }
    }

    /// The wait the API asked for, if any, at most [`MAX_RETRY_AFTER`]: an API (or a proxy)
    /// answering an absurd wait must neither overflow the schedule nor park a message forever.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::Status { retry_after, .. } => retry_after.map(|d| d.min(MAX_RETRY_AFTER)),
            _ => None,
        }
    }

    /// The HTTP status, if the API answered.
    pub fn http_status(&self) -> Option<u16> {
        match self {
            Error::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// A short, bounded label: the `reason` of `aiops_notification_failures_total`.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Status { status: 429, .. } => "rate_limited",
            Error::Status { status, .. } if *status >= 500 => "server_error",
            Error::Status { .. } => "client_error",
            Error::Transport { .. } => "transport",
            Error::Timeout { .. } => "timeout",
            Error::Smtp { .. } => "smtp",
            Error::Invalid(_) => "invalid",
            Error::Store(_) => "store",
        }
    }

    /// Builds the error of a non-2xx HTTP answer: 5xx and 429 are retryable, other 4xx not;
    /// `Retry-After` (seconds) is honoured.
    pub(crate) fn from_status(
        channel: &'static str,
        status: reqwest::StatusCode,
        headers: &reqwest::header::HeaderMap,
        detail: String,
    ) -> Error {
        let retry_after = headers
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        Error::Status {
            channel,
            status: status.as_u16(),
            detail,
            retryable: status.is_server_error() || status.as_u16() == 429,
            retry_after,
        }
    }

    /// Turns a reqwest error into one without the URL (Slack's and webhooks' URLs are secrets,
    /// Telegram's holds the bot token).
    pub(crate) fn from_reqwest(channel: &'static str, e: reqwest::Error) -> Error {
        if e.is_timeout() {
            return Error::Timeout { channel };
        }
        let e = e.without_url();
        let mut detail = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            detail.push_str(&format!(": {s}"));
            source = s.source();
        }
        Error::Transport { channel, detail }
    }
}

/// Reads an error body as text, bounded, for the error detail.
pub(crate) async fn body_text(resp: reqwest::Response) -> String {
    let text = resp.text().await.unwrap_or_default();
    text.chars().take(500).collect()
}

/// What happened, as told to people. The same shape for every event; fields an event does
/// not have stay empty. Templates see these fields; the webhook channel sends them as JSON.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Event {
    /// Which event.
    pub kind: EventKind,
    /// The app (the alert's `app` label, else the target's name).
    pub app: String,
    /// The Kubernetes namespace.
    pub namespace: String,
    /// The target, `namespace/Kind/name`.
    pub target: String,
    /// The problem: the alert's name, and its summary when it has one.
    pub problem: String,
    /// The alert name.
    pub alertname: String,
    /// The alert's severity label.
    pub severity: String,
    /// The action: the playbook that ran or runs.
    pub action: String,
    /// How it ended (outcome or error).
    pub result: String,
    /// How long it took, humanised (`1m 30s`), when known.
    pub duration: String,
    /// Why it went to humans (escalations).
    pub reason: String,
    /// Every step the chain tried, in order (escalations).
    pub steps: Vec<Tried>,
    /// What the knowledge base remembers about fixing this ("last time, X fixed it in N min").
    pub hint: String,
    /// A free-form message (`notify()` in a playbook, deploys, tests).
    pub message: String,
    /// Links: the alert's generatorURL, its runbook_url annotation.
    pub links: Vec<Link>,
    /// `approval_requested`: the job waiting for a decision and how to give it (the signed
    /// links are this channel's own; empty for channels that decide with buttons).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<ApprovalPrompt>,
    /// `approval_requested`: who may approve (`platform:id`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvers: Vec<String>,
    /// `approval_requested`: how long the repair waits for approval, humanised (`30m`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub expires_in: String,
    /// `approval_decided`: who decided (display name and `platform:id`), and through which
    /// channel.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub decided_by: String,
    /// The job, if any.
    pub job_id: Option<i64>,
    /// The rule, if any.
    pub rule: String,
    /// When, RFC 3339.
    pub at: String,
    /// The alert's labels (routing reads them; templates may too).
    pub labels: BTreeMap<String, String>,
    /// `no_action`: the alerts of the group, at most [`MAX_GROUPED_ALERTS`] (the first ones).
    #[serde(default)]
    pub alerts: Vec<Seen>,
    /// `no_action`: how many alerts the group holds, listed or not.
    #[serde(default)]
    pub alert_count: u64,
    /// `alert_recovered`: when the repair started, RFC 3339.
    #[serde(default)]
    pub repair_at: String,
    /// `alert_recovered`: whole minutes from the repair's start to the alert's end.
    #[serde(default)]
    pub minutes_after_repair: i64,
    /// `maintenance_summary`: the window that closed and what it held.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maintenance: Option<MaintenanceReport>,
    /// The job's trust mode (`shadow`, `approve`, `auto`; empty for events about no job). The
    /// default templates mark `shadow` events plainly: a dry run must never read like a repair.
    #[serde(default)]
    pub mode: String,
    /// GitOps events (`auto_repair_reverted`, `gitops_hold`, `gitops_hold_released`, and an
    /// `escalation` of a skipped change): the owner and the change to make in Git.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gitops: Option<GitopsReport>,
}

/// What a GitOps event tells people (`Event::gitops`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GitopsReport {
    /// The controller: "Flux Kustomization flux-system/apps".
    pub owner: String,
    /// What to change in Git: "set resources.limits.memory of container web to 615Mi".
    pub change: String,
    /// The manager that set the change back (`auto_repair_reverted`), e.g.
    /// `kustomize-controller`; empty when unknown.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reverted_by: String,
    /// How the controller is paused (`gitops_hold`, `gitops_hold_released`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub hold: String,
    /// Until when, RFC 3339 (`gitops_hold`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub hold_until: String,
    /// The hold's id, for `POST /api/gitops/holds/{id}/release`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold_id: Option<i64>,
    /// Why the hold ended: `expiry`, `git` or `api:<who>` (`gitops_hold_released`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub released_by: String,
}

/// A maintenance window's occurrence that closed, for its summary (`maintenance_summary`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct MaintenanceReport {
    /// The window's name, or `#<id>` for an unnamed API window.
    pub window: String,
    /// What it held: `namespace=shop app=web`.
    pub scope: String,
    /// Who set it up.
    pub created_by: String,
    /// When the occurrence opened, RFC 3339 in the window's time zone (UTC for one-off).
    pub starts_at: String,
    /// When it closed (ended early: when it was ended).
    pub ends_at: String,
    /// The IANA time zone of a recurring window; empty for one-off.
    pub timezone: String,
    /// What was held, by alert name and target, most first (at most
    /// [`MAX_GROUPED_ALERTS`] lines; `alert_count` counts all).
    pub groups: Vec<HeldGroup>,
    /// Groups beyond the ones listed.
    pub more_groups: u64,
}

/// Alerts of one name on one target held by a window.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct HeldGroup {
    /// The alert name.
    pub alertname: String,
    /// The target, `namespace/Kind/name`.
    pub target: String,
    /// How many alert occurrences.
    pub count: u64,
}

/// A repair waiting for approval, as a message carries it (`Event::approval`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalPrompt {
    /// The job waiting.
    pub job_id: i64,
    /// When the wait ends and the repair escalates to humans, RFC 3339.
    pub expires_at: String,
    /// A signed, single-use link to the confirmation page that approves (email and webhook
    /// channels; empty without `external_url`, and for chat channels, which use buttons).
    pub approve_url: String,
    /// The same, rejecting.
    pub reject_url: String,
}

/// Builds the signed approval links of one channel (`crate::approval` implements it; the
/// outbox asks it while rendering, since each channel gets links of its own).
pub trait ApprovalLinks: Send + Sync {
    /// The approve and reject URLs for `job_id` sent to `channel`, valid until `expires_at_ms`.
    fn links(&self, job_id: i64, channel: &str, expires_at_ms: i64) -> (String, String);
}

/// The most alerts one `no_action` message lists; the count says how many there were.
pub const MAX_GROUPED_ALERTS: usize = 20;

/// One alert aiops did nothing about (`no_action`), for the message.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Seen {
    /// The problem: the alert's name and summary.
    pub problem: String,
    /// The target, when the rule could resolve one.
    pub target: String,
    /// The namespace label.
    pub namespace: String,
    /// The alert's labels but `alertname`, Alertmanager style (`{app="web", …}`): what the
    /// on-call needs when no target could be resolved.
    pub labels: String,
    /// The rule that matched.
    pub rule: String,
    /// The guard's words for this alert.
    pub detail: String,
}

/// One step of an escalation chain, for the message.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Tried {
    /// Job id.
    pub job: i64,
    /// Playbook.
    pub playbook: String,
    /// How it ended.
    pub result: String,
}

/// A named link.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Link {
    /// `alert`, `runbook`, …
    pub name: String,
    /// The URL.
    pub url: String,
}

impl Event {
    /// An event about an alert: app, namespace, problem, severity and links from its labels
    /// and annotations.
    pub fn for_alert(
        kind: EventKind,
        labels: &BTreeMap<String, String>,
        annotations: &BTreeMap<String, String>,
        generator_url: &str,
    ) -> Event {
        let label = |k: &str| labels.get(k).cloned().unwrap_or_default();
        let alertname = label("alertname");
        let problem = match annotations
            .get("summary")
            .or_else(|| annotations.get("description"))
        {
            Some(s) if !s.is_empty() => format!("{alertname}: {s}"),
            _ => alertname.clone(),
        };
        let mut links = Vec::new();
        if !generator_url.is_empty() {
            links.push(Link {
                name: "alert".into(),
                url: generator_url.into(),
            });
        }
        if let Some(r) = annotations.get("runbook_url").filter(|r| !r.is_empty()) {
            links.push(Link {
                name: "runbook".into(),
                url: r.clone(),
            });
        }
        Event {
            kind,
            app: label("app"),
            namespace: label("namespace"),
            problem,
            alertname,
            severity: label("severity"),
            links,
            labels: labels.clone(),
            at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            ..Event::default()
        }
    }
}

/// The events that produce messages.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A repair job started running.
    RepairStarted,
    /// A repair worked and was verified.
    AutoRepairSuccess,
    /// A repair step failed and the chain goes on with another playbook.
    AutoRepairFailed,
    /// Manual intervention required: what was tried, each step's outcome, the KB's hint.
    #[default]
    Escalation,
    /// The storm brake engaged: automatic repairs paused.
    StormBrake,
    /// An alert fired (opt-in per route).
    AlertFired,
    /// The companion deploy module deployed an app.
    DeploySuccess,
    /// A deployment of the deploy module failed: its step and why (the process running it
    /// stopped included).
    DeployFailed,
    /// A playbook called `notify(route, msg)`.
    PlaybookMessage,
    /// `aiops notify test`.
    Test,
    /// A guard refused to act on firing alerts that matched a rule (opt-in per route;
    /// grouped per channel and reason, see [`config::NoActionSettings`]).
    NoAction,
    /// An alert that had a repair resolved: how long after the repair, and which.
    AlertRecovered,
    /// A repair in `mode: approve` waits for a person: what would run, on what, why, until
    /// when, who may approve (with buttons or signed links).
    ApprovalRequested,
    /// Someone approved or rejected a waiting repair: who, through which channel.
    ApprovalDecided,
    /// A maintenance window (or one occurrence of a recurring one) closed: what it held.
    MaintenanceSummary,
    /// A repair was applied, then set back by the object's GitOps controller (or another
    /// field manager): not retried; the change to make in Git and the owner.
    AutoRepairReverted,
    /// A repair paused Argo CD or Flux for an object (`gitops: hold`) and changed it: until
    /// when, and the change Git must get before the hold ends.
    GitopsHold,
    /// A hold ended (expiry, Git agreeing, by hand): the controller reconciles the object again.
    GitopsHoldReleased,
}

impl EventKind {
    /// Every kind.
    pub const ALL: [EventKind; 18] = [
        EventKind::RepairStarted,
        EventKind::AutoRepairSuccess,
        EventKind::AutoRepairFailed,
        EventKind::Escalation,
        EventKind::StormBrake,
        EventKind::AlertFired,
        EventKind::DeploySuccess,
        EventKind::DeployFailed,
        EventKind::PlaybookMessage,
        EventKind::Test,
        EventKind::NoAction,
        EventKind::AlertRecovered,
        EventKind::ApprovalRequested,
        EventKind::ApprovalDecided,
        EventKind::MaintenanceSummary,
        EventKind::AutoRepairReverted,
        EventKind::GitopsHold,
        EventKind::GitopsHoldReleased,
    ];

    /// Events a route takes only when its `events` list names them: most teams do not want a
    /// message per alert (`alert_fired`) or per refusal (`no_action`).
    pub fn is_opt_in(self) -> bool {
        matches!(self, EventKind::AlertFired | EventKind::NoAction)
    }

    /// The stored and configured name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::RepairStarted => "repair_started",
            EventKind::AutoRepairSuccess => "auto_repair_success",
            EventKind::AutoRepairFailed => "auto_repair_failed",
            EventKind::Escalation => "escalation",
            EventKind::StormBrake => "storm_brake",
            EventKind::AlertFired => "alert_fired",
            EventKind::DeploySuccess => "deploy_success",
            EventKind::DeployFailed => "deploy_failed",
            EventKind::PlaybookMessage => "playbook_message",
            EventKind::Test => "test",
            EventKind::NoAction => "no_action",
            EventKind::AlertRecovered => "alert_recovered",
            EventKind::ApprovalRequested => "approval_requested",
            EventKind::ApprovalDecided => "approval_decided",
            EventKind::MaintenanceSummary => "maintenance_summary",
            EventKind::AutoRepairReverted => "auto_repair_reverted",
            EventKind::GitopsHold => "gitops_hold",
            EventKind::GitopsHoldReleased => "gitops_hold_released",
        }
    }
}

/// One message to one channel, as the dispatcher hands it over.
#[derive(Clone, Debug)]
pub struct Message {
    /// Subject (first line, or the email subject).
    pub subject: String,
    /// Plain-text body; channels escape it for their format.
    pub body: String,
    /// The event as JSON (the webhook channel posts it).
    pub event_json: String,
    /// Idempotency key of this logical message, the same on every retry.
    pub retry_key: String,
    /// Event kind name.
    pub event: String,
    /// The approval the message asks for (`approval_requested`), read from the event by the
    /// dispatcher: chat channels that can receive the click add Approve / Reject buttons.
    pub approval: Option<ApprovalPrompt>,
}

/// What a channel's API answered on success.
#[derive(Clone, Debug)]
pub struct Receipt {
    /// HTTP status (250 for SMTP).
    pub status: u16,
    /// The API's answer, bounded (message ids, `ok`).
    pub detail: String,
}

/// One channel. `send` delivers one logical message (possibly in several parts) and says,
/// on failure, whether a retry may work and how long the API asked to wait.
#[async_trait::async_trait]
pub trait Notifier: Send + Sync {
    /// Sends the message.
    async fn send(&self, msg: &Message) -> Result<Receipt>;
}

/// Builds the notifier of a configured channel; `lang` labels the approval buttons of the chat
/// channels that can receive clicks (Telegram with `approvals: true`, Slack with a
/// `signing_secret`, LINE with a `channel_secret`).
pub fn notifier(
    kind: &channel::ChannelKind,
    http: &reqwest::Client,
    timeout: Duration,
    lang: config::Language,
) -> Result<Arc<dyn Notifier>> {
    use channel::ChannelKind as K;
    Ok(match kind {
        K::Telegram(c) => {
            let t =
                telegram::Telegram::new(http.clone(), &c.api_url, c.bot_token.clone(), &c.chat_id);
            Arc::new(if c.approvals { t.with_buttons(lang) } else { t })
        }
        K::Line(c) => {
            let l = line::Line::new(http.clone(), &c.api_url, c.channel_token.clone(), &c.to);
            Arc::new(if c.channel_secret.is_some() {
                l.with_buttons(lang)
            } else {
                l
            })
        }
        K::Slack(c) => {
            let s = slack::Slack::new(http.clone(), c.webhook_url.clone());
            Arc::new(if c.signing_secret.is_some() {
                s.with_buttons(lang)
            } else {
                s
            })
        }
        K::Webhook(c) => Arc::new(webhook::Webhook::new(http.clone(), c.url.clone())),
        K::Email(c) => Arc::new(email::Email::new(
            &c.smtp_url,
            &c.from,
            &c.to,
            c.username.as_deref(),
            c.password.as_ref(),
            timeout,
        )?),
    })
}

/// The HTTP client every channel shares: no redirects (a redirect could carry a token to
/// another host), the configured timeout.
pub fn http_client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .build()
        .unwrap_or_default()
}

/// Splits text into chunks of at most `max` units as measured by `len`, preferring line
/// breaks, then spaces, and never splitting a character.
pub(crate) fn split_text(text: &str, max: usize, len: impl Fn(&str) -> usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while len(rest) > max {
        // The longest prefix (on char boundaries) that fits.
        let mut fit = 0;
        for (i, c) in rest.char_indices() {
            let end = i + c.len_utf8();
            if len(&rest[..end]) > max {
                break;
            }
            fit = end;
        }
        if fit == 0 {
            // One character longer than the limit cannot happen with real limits; take it.
            fit = rest.chars().next().map_or(rest.len(), char::len_utf8);
        }
        let cut = rest[..fit]
            .rfind('\n')
            .filter(|&i| i > fit / 2)
            .map(|i| i + 1)
            .or_else(|| {
                rest[..fit]
                    .rfind(' ')
                    .filter(|&i| i > fit / 2)
                    .map(|i| i + 1)
            })
            .unwrap_or(fit);
        out.push(rest[..cut].trim_end_matches('\n').to_string());
        rest = &rest[cut..];
    }
    if !rest.is_empty() || out.is_empty() {
        out.push(rest.to_string());
    }
    out
}

/// Every configured channel's notifier, by name.
pub fn notifiers(settings: &NotifySettings) -> Result<BTreeMap<String, Arc<dyn Notifier>>> {
    if settings.channels.is_empty() {
        // A client loads the system's root certificates: not worth its memory for nothing.
        return Ok(BTreeMap::new());
    }
    let http = http_client(settings.timeout.0);
    settings
        .channels
        .iter()
        .map(|(name, c)| {
            let n = notifier(&c.kind, &http, settings.timeout.0, settings.language)?;
            Ok((name.clone(), n))
        })
        .collect()
}

/// Names of the configured channels.
pub fn channel_names(settings: &NotifySettings) -> BTreeSet<String> {
    settings.channels.keys().cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::outbox::dedup_key;
    use super::*;

    #[test]
    fn splitting_prefers_line_breaks_and_keeps_every_character() {
        let text = format!("{}\n{}", "a".repeat(30), "b".repeat(30));
        let parts = split_text(&text, 40, |s| s.chars().count());
        assert_eq!(parts, vec!["a".repeat(30), "b".repeat(30)]);
        let cjk = "修".repeat(25);
        let parts = split_text(&cjk, 10, |s| s.chars().count());
        assert_eq!(parts.len(), 3);
        assert_eq!(parts.concat(), cjk);
    }

    #[test]
    fn a_short_text_is_one_part() {
        assert_eq!(split_text("hi", 10, str::len), vec!["hi"]);
    }

    #[test]
    fn the_dedup_key_changes_with_the_channel_and_the_text() {
        let a = dedup_key("escalation", "tg", "s", "b");
        assert_eq!(a, dedup_key("escalation", "tg", "s", "b"));
        assert_ne!(a, dedup_key("escalation", "slack", "s", "b"));
        assert_ne!(a, dedup_key("escalation", "tg", "s", "b2"));
        assert_ne!(dedup_key("e", "ab", "c", ""), dedup_key("e", "a", "bc", ""));
    }

    #[test]
    fn client_errors_are_final_and_429_and_5xx_are_retried() {
        let h = reqwest::header::HeaderMap::new();
        let e = Error::from_status("slack", reqwest::StatusCode::FORBIDDEN, &h, "no".into());
        assert!(!e.is_retryable());
        assert_eq!(e.metric_label(), "client_error");
        let e = Error::from_status("slack", reqwest::StatusCode::BAD_GATEWAY, &h, "".into());
        assert!(e.is_retryable());
        let mut h = reqwest::header::HeaderMap::new();
        h.insert(reqwest::header::RETRY_AFTER, "7".parse().unwrap());
        let e = Error::from_status(
            "slack",
            reqwest::StatusCode::TOO_MANY_REQUESTS,
            &h,
            "".into(),
        );
        assert!(e.is_retryable());
        assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));
        assert_eq!(e.metric_label(), "rate_limited");
    }
}
