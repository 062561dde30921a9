//! The alert center's views: the filter form's query read into the store's [`ListFilter`]
//! (checked as `/api/alerts` checks it), and the store's alerts and jobs turned into what the
//! templates show. No HTTP here, so the logic is tested directly.

use axum::http::Uri;
use serde::{Deserialize, Serialize};

use crate::auth::Claims;
use crate::decision::Verdict;
use crate::store::{AlertRecord, AlertState, Automation, Job, JobState, ListFilter};
use crate::ui::Lang;

/// A filter the form sent that no alert can have.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A select's value that is not one of its options (a hand-made URL).
    #[error("unknown {field} {value:?}")]
    Unknown {
        /// The field (`state`, `verdict`, `reason`, `automation`).
        field: &'static str,
        /// What it said.
        value: String,
    },
}

impl Error {
    /// The error in the page's language, naming the field and the value.
    pub fn in_lang(&self, lang: Lang) -> String {
        let Error::Unknown { field, value } = self;
        format!(
            "{} {field}={value:?}",
            lang.word("alerts.bad_filter").unwrap_or("Unknown filter")
        )
    }
}

/// The filter form's fields as the query string carries them; an empty field means "any".
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct AlertsQuery {
    /// The app (namespace).
    pub namespace: String,
    /// The alert name.
    pub alertname: String,
    /// The `severity` label.
    pub severity: String,
    /// A decision's verdict (`job`, `refused`, `skipped`).
    pub verdict: String,
    /// A decision's reason code.
    pub reason: String,
    /// `none` or the state of the alert's newest job.
    pub automation: String,
    /// `firing` (firing now) or `resolved`.
    pub state: String,
    /// The cursor: only alerts older than this id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<i64>,
}

fn given(s: &str) -> Option<&str> {
    let s = s.trim();
    (!s.is_empty()).then_some(s)
}

fn unknown(field: &'static str, value: &str) -> Error {
    Error::Unknown {
        field,
        value: value.to_string(),
    }
}

impl AlertsQuery {
    /// The store's filter for `claims` (their apps only), `limit` rows, one per occurrence.
    pub fn filter(&self, claims: &Claims, limit: i64) -> Result<ListFilter, Error> {
        let state = given(&self.state)
            .map(|s| AlertState::parse(s).ok_or_else(|| unknown("state", s)))
            .transpose()?;
        let verdict = given(&self.verdict)
            .map(|v| Verdict::parse(v).ok_or_else(|| unknown("verdict", v)))
            .transpose()?;
        let reason = given(&self.reason)
            .map(|r| {
                crate::pipeline::reason_codes()
                    .contains(&r)
                    .then(|| r.to_string())
                    .ok_or_else(|| unknown("reason", r))
            })
            .transpose()?;
        let automation = given(&self.automation)
            .map(|a| Automation::parse(a).ok_or_else(|| unknown("automation", a)))
            .transpose()?;
        Ok(ListFilter {
            namespaces: claims.listing_scope(given(&self.namespace)),
            subject: given(&self.alertname).map(str::to_string),
            alert_state: state,
            verdict,
            reason,
            severity: given(&self.severity).map(str::to_string),
            automation,
            occurrences: true,
            before_id: self.before,
            limit,
            ..ListFilter::default()
        })
    }

    /// This query's URL with the cursor set to `before` (the "older" link).
    fn with_cursor(&self, before: i64) -> String {
        let mut q = self.clone();
        q.before = Some(before);
        let mut ser = form_urlencoded::Serializer::new(String::new());
        for (k, v) in [
            ("namespace", &q.namespace),
            ("alertname", &q.alertname),
            ("severity", &q.severity),
            ("verdict", &q.verdict),
            ("reason", &q.reason),
            ("automation", &q.automation),
            ("state", &q.state),
        ] {
            if let Some(v) = given(v) {
                ser.append_pair(k, v);
            }
        }
        ser.append_pair("before", &before.to_string());
        format!("/ui/alerts?{}", ser.finish())
    }
}

/// A time as the templates show it: `<time datetime="{{ iso }}">{{ ms | datetime }}</time>`.
#[derive(Debug, Serialize)]
pub struct Time {
    /// RFC 3339, UTC.
    pub iso: String,
    /// Epoch milliseconds.
    pub ms: i64,
}

impl Time {
    fn at(ms: i64) -> Time {
        Time {
            iso: chrono::DateTime::from_timestamp_millis(ms)
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                .unwrap_or_default(),
            ms,
        }
    }
}

/// The badge class a job state is shown with (its word always goes with it).
fn state_badge(state: JobState) -> &'static str {
    match state {
        JobState::Succeeded => "ok",
        JobState::AwaitingApproval
        | JobState::Queued
        | JobState::Waiting
        | JobState::Running
        | JobState::Verifying => "info",
        JobState::Failed | JobState::Escalated | JobState::Interrupted | JobState::Reverted => {
            "bad"
        }
        JobState::Cancelled => "neutral",
    }
}

/// One repair of an alert, linking to its timeline.
#[derive(Debug, Serialize)]
pub struct JobView {
    /// Job id (`/ui/repairs/{id}`).
    pub id: i64,
    /// The state's code (`t("alerts.job_state." ~ state)` names it).
    pub state: &'static str,
    /// Badge class.
    pub badge: &'static str,
    /// The playbook it runs.
    pub playbook: String,
    /// The rule that made it.
    pub rule: String,
    /// `namespace/Kind/name`.
    pub target: String,
    /// Whether it only records what it would do.
    pub dry_run: bool,
    /// Position in the rule's chain (0 for the first step).
    pub chain_index: i64,
    /// Created.
    pub created_at: Time,
    /// Finished, for a job in a terminal state.
    pub finished_at: Option<Time>,
    /// Its outcome message or error.
    pub outcome: Option<String>,
}

impl JobView {
    fn of(j: &Job) -> JobView {
        JobView {
            id: j.id,
            state: j.state.as_str(),
            badge: state_badge(j.state),
            playbook: j.playbook.clone(),
            rule: j.rule.clone(),
            target: j.target_key.clone(),
            dry_run: j.dry_run,
            chain_index: j.chain_index,
            created_at: Time::at(j.created_at),
            finished_at: j.finished_at.map(Time::at),
            outcome: j.error.clone().or_else(|| j.outcome.clone()),
        }
    }
}

/// A decision that created no job: why aiops did nothing.
#[derive(Debug, Serialize)]
pub struct NoAction {
    /// The reason code (`t("alerts.reason." ~ reason)` says it in words).
    pub reason: String,
    /// `refused` or `skipped`.
    pub verdict: &'static str,
    /// The rule that matched (none for `no_rule`).
    pub rule: Option<String>,
    /// What the guard recorded (`cooldown: ... repaired 4 min ago`), empty for `no_rule`.
    pub detail: String,
}

/// One alert in the list.
#[derive(Debug, Serialize)]
pub struct Row {
    /// Alert occurrence id (`/ui/alerts/{id}`).
    pub id: i64,
    /// Alert name.
    pub alertname: String,
    /// The app, if the alert names one.
    pub namespace: Option<String>,
    /// The `severity` label.
    pub severity: Option<String>,
    /// `firing` (now) or `resolved`.
    pub state: AlertState,
    /// startsAt.
    pub starts_at: Time,
    /// When it resolved.
    pub resolved_at: Option<Time>,
    /// `none` or the newest job's state: the automation filter's value for this row.
    pub automation: &'static str,
    /// Its repairs (a chain's steps included), oldest first.
    pub jobs: Vec<JobView>,
    /// The decisions that made no repair.
    pub no_action: Vec<NoAction>,
    /// A resolve whose firing notification never arrived: nothing was decided.
    pub resolve_only: bool,
}

fn no_actions(a: &AlertRecord) -> Vec<NoAction> {
    a.decisions
        .iter()
        .filter(|d| d.verdict != Verdict::Job)
        .map(|d| NoAction {
            reason: d.reason.clone(),
            verdict: d.verdict.as_str(),
            rule: d.rule.clone(),
            detail: d.detail.clone(),
        })
        .collect()
}

fn row(a: AlertRecord, jobs: &[Job]) -> Row {
    let jobs: Vec<&Job> = jobs.iter().filter(|j| j.alert_event_id == a.id).collect();
    Row {
        id: a.id,
        automation: jobs
            .iter()
            .max_by_key(|j| j.id)
            .map_or(Automation::None, |j| Automation::Job(j.state))
            .as_str(),
        no_action: no_actions(&a),
        jobs: jobs.into_iter().map(JobView::of).collect(),
        resolve_only: a.status == "resolved",
        alertname: a.alertname,
        namespace: a.namespace,
        severity: a.severity,
        state: a.state,
        starts_at: Time::at(a.starts_at),
        resolved_at: a.resolved_at.map(Time::at),
    }
}

/// The options of the filter form's selects.
#[derive(Debug, Serialize)]
pub struct Options {
    /// The viewer's apps (a select); `None` for an admin, who types any app.
    pub apps: Option<Vec<String>>,
    /// Verdicts.
    pub verdicts: Vec<&'static str>,
    /// Reason codes.
    pub reasons: Vec<&'static str>,
    /// `none` and every job state.
    pub automations: Vec<&'static str>,
    /// `firing`, `resolved`.
    pub states: [&'static str; 2],
    /// Suggested severities (the field takes any).
    pub severities: [&'static str; 3],
}

impl Options {
    fn for_viewer(claims: &Claims) -> Options {
        Options {
            apps: claims.visible_apps().map(<[String]>::to_vec),
            verdicts: Verdict::ALL.iter().map(|v| v.as_str()).collect(),
            reasons: crate::pipeline::reason_codes(),
            automations: std::iter::once("none")
                .chain(JobState::ALL.iter().map(|s| s.as_str()))
                .collect(),
            states: ["firing", "resolved"],
            severities: ["critical", "warning", "info"],
        }
    }
}

/// The `/ui/alerts` page.
#[derive(Debug, Serialize)]
pub struct ListView {
    /// What the form says now.
    pub q: AlertsQuery,
    /// The selects' options.
    pub options: Options,
    /// The page's alerts, newest first.
    pub rows: Vec<Row>,
    /// The next (older) page, when there is one.
    pub older: Option<String>,
    /// Whether any filter is set (the "clear" link).
    pub filtered: bool,
}

/// The list page from the store's alerts (up to `page + 1`: one more than shown says there is
/// an older page) and their jobs.
pub fn list(
    q: &AlertsQuery,
    claims: &Claims,
    mut alerts: Vec<AlertRecord>,
    jobs: &[Job],
    page: usize,
) -> ListView {
    let more = alerts.len() > page;
    alerts.truncate(page);
    let older = more
        .then(|| alerts.last().map(|a| q.with_cursor(a.id)))
        .flatten();
    let filtered = [
        &q.namespace,
        &q.alertname,
        &q.severity,
        &q.verdict,
        &q.reason,
        &q.automation,
        &q.state,
    ]
    .iter()
    .any(|v| given(v).is_some());
    ListView {
        q: q.clone(),
        options: Options::for_viewer(claims),
        rows: alerts.into_iter().map(|a| row(a, jobs)).collect(),
        older,
        filtered,
    }
}

/// A URL that may become a link: http or https with a host; anything else (`javascript:`,
/// `data:`, relative paths) stays text.
pub fn web_link(s: &str) -> Option<String> {
    let s = s.trim();
    let uri: Uri = s.parse().ok()?;
    (matches!(uri.scheme_str(), Some("http" | "https")) && uri.authority().is_some())
        .then(|| s.to_string())
}

/// A label or annotation.
#[derive(Debug, Serialize)]
pub struct Pair {
    /// Name.
    pub key: String,
    /// Value.
    pub value: String,
    /// The value as a link, for `runbook_url` when it is a web URL.
    pub href: Option<String>,
}

/// A decision on the alert page.
#[derive(Debug, Serialize)]
pub struct DecisionView {
    /// `job`, `refused` or `skipped`.
    pub verdict: &'static str,
    /// The reason code.
    pub reason: String,
    /// The rule (none for `no_rule`).
    pub rule: Option<String>,
    /// The target, when it was resolved.
    pub target: Option<String>,
    /// The job it created.
    pub job_id: Option<i64>,
    /// The decision in a sentence, as recorded.
    pub sentence: String,
    /// When.
    pub decided_at: Time,
}

/// The `/ui/alerts/{id}` page.
#[derive(Debug, Serialize)]
pub struct DetailView {
    /// The alert as the list shows it (state, times, jobs).
    pub alert: Row,
    /// Fingerprint.
    pub fingerprint: String,
    /// `firing` or `resolved`: what this notification said.
    pub status: String,
    /// When it was received.
    pub received_at: Time,
    /// endsAt of a resolve.
    pub ends_at: Option<Time>,
    /// Labels, by name.
    pub labels: Vec<Pair>,
    /// Annotations, by name.
    pub annotations: Vec<Pair>,
    /// generatorURL, when it is a web URL.
    pub generator_link: Option<String>,
    /// generatorURL as received, when it is not one (shown as text).
    pub generator_text: Option<String>,
    /// The `runbook_url` annotation, when it is a web URL.
    pub runbook_link: Option<String>,
    /// Every decision.
    pub decisions: Vec<DecisionView>,
}

fn pairs(m: &crate::alert::Labels, linked: &[&str]) -> Vec<Pair> {
    // Labels are a sorted map: shown by name.
    m.iter()
        .map(|(k, v)| Pair {
            key: k.clone(),
            value: v.clone(),
            href: linked.contains(&k.as_str()).then(|| web_link(v)).flatten(),
        })
        .collect()
}

/// The alert page from the stored alert and its jobs.
pub fn detail(a: AlertRecord, jobs: &[Job]) -> DetailView {
    let generator = a.generator_url.trim().to_string();
    let generator_link = web_link(&generator);
    let runbook_link = a.annotations.get("runbook_url").and_then(|u| web_link(u));
    let decisions = a
        .decisions
        .iter()
        .map(|d| DecisionView {
            verdict: d.verdict.as_str(),
            reason: d.reason.clone(),
            rule: d.rule.clone(),
            target: d.target.clone(),
            job_id: d.job_id,
            sentence: d.sentence.clone(),
            decided_at: Time::at(d.decided_at),
        })
        .collect();
    DetailView {
        fingerprint: a.fingerprint.clone(),
        status: a.status.clone(),
        received_at: Time::at(a.received_at),
        ends_at: a.ends_at.map(Time::at),
        labels: pairs(&a.labels, &[]),
        annotations: pairs(&a.annotations, &["runbook_url"]),
        generator_text: (generator_link.is_none() && !generator.is_empty()).then_some(generator),
        generator_link,
        runbook_link,
        decisions,
        alert: row(a, jobs),
    }
}

#[cfg(test)]
pub(super) mod tests;
