//! The repair timeline as a view: everything the store knows about one job, merged into one
//! chronological list of entries, each of a kind (`alert`, `decision`, `step`, `gitops`,
//! `verify`, `escalation`, `notification`, `approval`, `note`, `state`).
//!
//! [`build`] is a pure function of [`TimelineData`] (what the handler read from the store), so
//! the ordering, the badges and the wording are tested here without HTTP or a store.

use serde::Serialize;

use crate::decision::Verdict;
use crate::gitops::Ownership;
use crate::job::ChainStep;
use crate::rules::Mode;
use crate::store::{
    AlertRecord, ApprovalRecord, Escalation, Job, JobEvent, JobNotification, JobState, Note, Step,
};

use super::{Badge, iso, state_badge};

/// What the handler read from the store about one job.
pub struct TimelineData {
    /// The job.
    pub job: Job,
    /// The alert occurrence that caused it, with every rule's decision (None if pruned).
    pub alert: Option<AlertRecord>,
    /// The jobs of its escalation chain, in order (this one included).
    pub chain: Vec<Job>,
    /// Its transitions.
    pub events: Vec<JobEvent>,
    /// Its playbook steps.
    pub steps: Vec<Step>,
    /// The GitOps ownership seen when it ran.
    pub gitops: Option<Ownership>,
    /// Its hand-offs.
    pub escalations: Vec<Escalation>,
    /// The notifications it caused, with their attempts.
    pub notifications: Vec<JobNotification>,
    /// Approval clicks on it.
    pub approvals: Vec<ApprovalRecord>,
    /// Notes about its target or alert.
    pub notes: Vec<Note>,
}

/// A label and a value shown under an entry.
#[derive(Debug, Serialize, PartialEq)]
pub struct Fact {
    /// Word key of the label.
    pub key: &'static str,
    /// The value (plain text).
    pub value: String,
}

/// A link shown with an entry.
#[derive(Debug, Serialize, PartialEq)]
pub struct Link {
    /// Where (a console path or an http(s) URL).
    pub href: String,
    /// Word key of its text.
    pub key: &'static str,
    /// Text after the word (an id, a name).
    pub suffix: String,
}

/// One delivery attempt of a notification.
#[derive(Debug, Serialize, PartialEq)]
pub struct AttemptView {
    /// When (RFC 3339).
    pub iso: String,
    /// When (epoch ms, for the `datetime` filter).
    pub at: i64,
    /// `sent`, `retry`, `failed`.
    pub result: String,
    /// Its badge.
    pub badge: Badge,
    /// The API's HTTP status.
    pub http_status: Option<i64>,
    /// What happened.
    pub detail: String,
}

/// One entry of the timeline.
#[derive(Debug, Serialize, PartialEq)]
pub struct Entry {
    /// The kind (`data-kind`).
    pub kind: &'static str,
    /// When (epoch ms).
    pub at: i64,
    /// When (RFC 3339).
    pub iso: String,
    /// Word key of the heading.
    pub heading: &'static str,
    /// Text after the heading (an action, a channel, a name).
    pub subject: String,
    /// A status in words and colour.
    pub badge: Option<Badge>,
    /// The entry's message.
    pub message: Option<String>,
    /// Labelled details.
    pub facts: Vec<Fact>,
    /// Links.
    pub links: Vec<Link>,
    /// Delivery attempts (notifications).
    pub attempts: Vec<AttemptView>,
}

impl Entry {
    fn new(kind: &'static str, at: i64, heading: &'static str, subject: String) -> Entry {
        Entry {
            kind,
            at,
            iso: iso(at),
            heading,
            subject,
            badge: None,
            message: None,
            facts: Vec::new(),
            links: Vec::new(),
            attempts: Vec::new(),
        }
    }

    fn badge(mut self, class: &'static str, key: &'static str) -> Entry {
        self.badge = Some(Badge { class, key });
        self
    }

    fn message(mut self, m: impl Into<String>) -> Entry {
        let m = m.into();
        self.message = (!m.is_empty()).then_some(m);
        self
    }

    fn fact(mut self, key: &'static str, value: impl Into<String>) -> Entry {
        self.facts.push(Fact {
            key,
            value: value.into(),
        });
        self
    }
}

/// Only http and https URLs become links (a `javascript:` or `data:` URL in an alert's
/// annotations must not run in the console).
pub fn http_link(url: &str) -> Option<String> {
    let u = url.trim();
    let lower = u.get(..8).unwrap_or(u).to_ascii_lowercase();
    (lower.starts_with("http://") || lower.starts_with("https://")).then(|| u.to_string())
}

/// The `kubectl` command that lists the Kubernetes Events of the job's target.
pub fn events_command(job: &Job) -> String {
    format!(
        "kubectl get events --namespace {} --field-selector involvedObject.kind={},involvedObject.name={}",
        job.target_namespace, job.target_kind, job.target_name
    )
}

/// A chain step in words (`playbook rollback`, `notify default`, `best of restart, rollback`).
pub fn chain_step(step: &ChainStep) -> String {
    match step {
        ChainStep::Playbook { playbook, .. } => format!("playbook {playbook}"),
        ChainStep::Notify { route } => format!("notify {route}"),
        ChainStep::ChooseBest { from, .. } => {
            let names: Vec<&str> = from.iter().map(|a| a.playbook.as_str()).collect();
            format!("best of {}", names.join(", "))
        }
    }
}

/// The whole timeline, oldest first (ties keep the order of causes: the alert, the decisions,
/// the job's states, then what the run did).
pub fn build(d: &TimelineData) -> Vec<Entry> {
    let mut out = Vec::new();
    if let Some(a) = &d.alert {
        out.push(alert_entry(a));
        out.extend(a.decisions.iter().map(|dec| {
            let (class, key) = verdict_badge(dec.verdict);
            let mut e = Entry::new(
                "decision",
                dec.decided_at,
                "repairs.kind.decision",
                dec.rule.clone().unwrap_or_default(),
            )
            .badge(class, key)
            .message(dec.sentence.clone())
            .fact("repairs.fact.reason", dec.reason.clone());
            if let Some(t) = &dec.target {
                e = e.fact("repairs.fact.target", t.clone());
            }
            if let Some(id) = dec.job_id.filter(|id| *id != d.job.id) {
                e.links.push(Link {
                    href: format!("/ui/repairs/{id}"),
                    key: "repairs.link.repair",
                    suffix: format!(" {id}"),
                });
            }
            e
        }));
    }
    out.extend(d.events.iter().map(|ev| {
        let state = JobState::parse(&ev.to);
        let (class, key) = state.map_or(("neutral", "repairs.state.unknown"), state_badge);
        let from = ev.from.clone().unwrap_or_default();
        let mut e = Entry::new("state", ev.at, "repairs.kind.state", String::new())
            .badge(class, key)
            .message(ev.note.clone());
        if !from.is_empty() {
            e = e.fact("repairs.fact.from", from);
        }
        e
    }));
    if let Some(o) = &d.gitops {
        let at = d.job.started_at.unwrap_or(d.job.created_at);
        let (class, key) = if o.controller.is_some() {
            ("info", "repairs.gitops.owned")
        } else {
            ("neutral", "repairs.gitops.not_owned")
        };
        out.push(
            Entry::new("gitops", at, "repairs.kind.gitops", String::new())
                .badge(class, key)
                .message(o.to_string()),
        );
    }
    out.extend(steps(&d.job, &d.steps));
    out.extend(d.escalations.iter().map(|x| {
        let mut e = Entry::new(
            "escalation",
            x.created_at,
            "repairs.kind.escalation",
            format!("{} {}", x.kind, x.destination),
        )
        .badge("warn", "repairs.badge.escalated")
        .message(x.reason.clone());
        if x.kind == "playbook"
            && let Some(next) = d.chain.iter().find(|j| j.parent_id == Some(d.job.id))
        {
            e.links.push(Link {
                href: format!("/ui/repairs/{}", next.id),
                key: "repairs.link.repair",
                suffix: format!(" {}", next.id),
            });
        }
        e
    }));
    out.extend(d.notifications.iter().map(notification_entry));
    out.extend(d.approvals.iter().map(|a| {
        let class = match a.outcome.as_str() {
            "approved" => "ok",
            "rejected" => "warn",
            _ => "bad",
        };
        let key = match a.outcome.as_str() {
            "approved" => "repairs.approval.approved",
            "rejected" => "repairs.approval.rejected",
            _ => "repairs.approval.refused",
        };
        let mut e = Entry::new(
            "approval",
            a.decided_at,
            "repairs.kind.approval",
            a.name.clone(),
        )
        .badge(class, key)
        .fact("repairs.fact.who", a.who.clone())
        .fact("repairs.fact.via", a.via.clone())
        .fact("repairs.fact.choice", a.choice.clone());
        if !matches!(a.outcome.as_str(), "approved" | "rejected") {
            e = e.fact("repairs.fact.reason", a.outcome.clone());
        }
        e
    }));
    out.extend(d.notes.iter().map(|n| {
        Entry::new("note", n.created_at, "repairs.kind.note", n.author.clone())
            .message(n.body.clone())
    }));
    // Stable: equal times keep the order above.
    out.sort_by_key(|e| e.at);
    out
}

fn alert_entry(a: &AlertRecord) -> Entry {
    let mut e = Entry::new(
        "alert",
        a.received_at,
        "repairs.kind.alert",
        a.alertname.clone(),
    )
    .fact("repairs.fact.starts_at", iso(a.starts_at))
    .fact("repairs.fact.fingerprint", a.fingerprint.clone());
    if let Some(s) = a.annotations.get("summary") {
        e = e.message(s.clone());
    }
    e.badge = Some(match a.state {
        crate::store::AlertState::Firing => Badge {
            class: "bad",
            key: "repairs.alert.firing",
        },
        crate::store::AlertState::Resolved => Badge {
            class: "ok",
            key: "repairs.alert.resolved",
        },
    });
    e.links.push(Link {
        href: format!("/ui/alerts/{}", a.id),
        key: "repairs.link.alert",
        suffix: format!(" {}", a.id),
    });
    e
}

fn verdict_badge(v: Verdict) -> (&'static str, &'static str) {
    match v {
        Verdict::Job => ("ok", "repairs.verdict.job"),
        Verdict::Refused => ("warn", "repairs.verdict.refused"),
        Verdict::Skipped => ("neutral", "repairs.verdict.skipped"),
    }
}

/// The playbook's steps: `verify` steps are verification, `gitops*` steps the GitOps gate's
/// skips and holds, the rest playbook steps; each with the time since the one before (the
/// first since the run started).
fn steps<'a>(job: &'a Job, steps: &'a [Step]) -> impl Iterator<Item = Entry> + 'a {
    let mut prev = job.started_at;
    steps.iter().map(move |s| {
        let took = prev.map(|p| s.at - p);
        prev = Some(s.at);
        let (kind, heading) = if s.action == "verify" {
            ("verify", "repairs.kind.verify")
        } else if s.action.starts_with("gitops") {
            ("gitops", "repairs.kind.gitops")
        } else {
            ("step", "repairs.kind.step")
        };
        let (class, key) = step_badge(&s.action, &s.detail);
        let mut e = Entry::new(kind, s.at, heading, s.action.clone())
            .badge(class, key)
            .message(s.detail.clone());
        if let Some(t) = target_in(&s.detail) {
            e = e.fact("repairs.fact.target", t);
        }
        if let Some(ms) = took {
            e = e.fact("repairs.fact.took", crate::ui::render::duration_ms(ms));
        }
        e
    })
}

/// A step's outcome, read from its action and the way its detail begins (which is how the
/// playbook host and the verifier write them).
fn step_badge(action: &str, detail: &str) -> (&'static str, &'static str) {
    let lower = detail.to_ascii_lowercase();
    if lower.starts_with("dry run") {
        return ("info", "repairs.step.dry_run");
    }
    match action {
        "verify" if lower.starts_with("reverted") => ("bad", "repairs.step.reverted"),
        "verify" if lower.starts_with("success") => ("ok", "repairs.step.passed"),
        "verify" if lower.starts_with("inconclusive") => ("warn", "repairs.step.inconclusive"),
        "verify" => ("bad", "repairs.step.failed"),
        "error" | "rollback_refused" | "load_playbook" => ("bad", "repairs.step.failed"),
        "gitops_hold" => ("warn", "repairs.step.held"),
        "gitops_skip" => ("warn", "repairs.step.skipped"),
        "log" | "http_get" | "notify" | "outcome" => ("neutral", "repairs.step.info"),
        _ => ("ok", "repairs.step.done"),
    }
}

/// The first `namespace/Kind/name` a step's detail names (the host writes targets that way).
fn target_in(detail: &str) -> Option<String> {
    detail
        .split(|c: char| c.is_whitespace() || matches!(c, ',' | ':' | '(' | ')' | ';'))
        .find(|w| {
            let parts: Vec<&str> = w.split('/').collect();
            parts.len() == 3
                && parts.iter().all(|p| !p.is_empty())
                && parts[1].starts_with(|c: char| c.is_ascii_uppercase())
                && !w.contains("://")
        })
        .map(str::to_string)
}

fn notification_entry(n: &JobNotification) -> Entry {
    use crate::store::NotificationState as S;
    let (class, key) = match n.state {
        S::Sent => ("ok", "repairs.notify.sent"),
        S::Pending | S::Sending => ("info", "repairs.notify.pending"),
        S::Failed => ("bad", "repairs.notify.failed"),
        S::Suppressed => ("neutral", "repairs.notify.suppressed"),
    };
    let mut e = Entry::new(
        "notification",
        n.created_at,
        "repairs.kind.notification",
        n.channel.clone(),
    )
    .badge(class, key)
    .message(n.subject.clone())
    .fact("repairs.fact.event", n.event.clone())
    .fact("repairs.fact.attempts", n.attempts.len().to_string());
    if let Some(err) = &n.last_error {
        e = e.fact("repairs.fact.error", err.clone());
    }
    e.attempts = n
        .attempts
        .iter()
        .map(|a| AttemptView {
            iso: iso(a.at),
            at: a.at,
            result: a.result.clone(),
            badge: match a.result.as_str() {
                "sent" => Badge {
                    class: "ok",
                    key: "repairs.notify.sent",
                },
                "retry" => Badge {
                    class: "warn",
                    key: "repairs.notify.retry",
                },
                _ => Badge {
                    class: "bad",
                    key: "repairs.notify.failed",
                },
            },
            http_status: a.http_status,
            detail: a.detail.clone(),
        })
        .collect();
    e
}

/// The trust mode's word key.
pub fn mode_key(m: Mode) -> &'static str {
    match m {
        Mode::Auto => "repairs.mode.auto",
        Mode::Approve => "repairs.mode.approve",
        Mode::Shadow => "repairs.mode.shadow",
    }
}

#[cfg(test)]
mod tests;
