//! Repairs: `/ui/repairs`, the list of jobs (filters state, mode, app, target; cursor paging,
//! newest first), and `/ui/repairs/{id}`, one repair's timeline (see [`timeline`]).
//!
//! Both read what `/api/repairs` reads, through the same access rule: a job of an app the
//! viewer cannot see is [`UiError::NotFound`], exactly like a missing one. Views are built in
//! Rust from store rows; templates only lay them out.

mod timeline;
mod words;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::get;
use serde::{Deserialize, Serialize};

use super::{UiError, Viewer, page, session::console};
use crate::auth::Claims;
use crate::http::AppState;
use crate::rules::Mode;
use crate::store::{Job, JobState, ListFilter};
use timeline::{Entry, Link, TimelineData};

/// Templates of this page group.
pub(super) const TEMPLATES: &[(&str, &str)] = &[
    ("repairs.html", include_str!("templates/repairs.html")),
    ("repair.html", include_str!("templates/repair.html")),
];

/// Words of this page group: (key, English, 繁體中文).
pub(super) const WORDS: &[(&str, &str, &str)] = words::WORDS;

/// CSS of this page group, appended to /ui/static/console.css.
pub(super) const CSS: &str = include_str!("static/repairs.css");

/// Repairs on one page of the list.
const PAGE: i64 = 50;

/// Routes of this page group.
pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/ui/repairs", get(list))
        .route("/ui/repairs/{id}", get(show))
}

/// A status in words (`key`) and colour (`class`: ok, warn, bad, info, neutral).
#[derive(Clone, Copy, Debug, Serialize, PartialEq)]
pub struct Badge {
    /// CSS class of the badge.
    pub class: &'static str,
    /// Word key of its text.
    pub key: &'static str,
}

/// Epoch ms as RFC 3339 (UTC), for `<time datetime>`.
pub(crate) fn iso(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// A job state's badge: its colour class and word key.
pub(crate) fn state_badge(s: JobState) -> (&'static str, &'static str) {
    let class = match s {
        JobState::Succeeded => "ok",
        JobState::Failed | JobState::Reverted | JobState::Interrupted => "bad",
        JobState::Escalated | JobState::AwaitingApproval => "warn",
        JobState::Queued | JobState::Waiting | JobState::Running | JobState::Verifying => "info",
        JobState::Cancelled => "neutral",
    };
    let key = match s {
        JobState::AwaitingApproval => "repairs.state.awaiting_approval",
        JobState::Queued => "repairs.state.queued",
        JobState::Waiting => "repairs.state.waiting",
        JobState::Running => "repairs.state.running",
        JobState::Verifying => "repairs.state.verifying",
        JobState::Succeeded => "repairs.state.succeeded",
        JobState::Failed => "repairs.state.failed",
        JobState::Escalated => "repairs.state.escalated",
        JobState::Cancelled => "repairs.state.cancelled",
        JobState::Interrupted => "repairs.state.interrupted",
        JobState::Reverted => "repairs.state.reverted",
    };
    (class, key)
}

/// The list's query: every field optional; an empty one (a form's "any") is no filter.
#[derive(Debug, Default, Deserialize)]
pub struct ListParams {
    state: Option<String>,
    mode: Option<String>,
    namespace: Option<String>,
    target: Option<String>,
    cursor: Option<i64>,
}

/// A filter choice of a select.
#[derive(Debug, Serialize)]
struct Choice {
    value: &'static str,
    key: &'static str,
    selected: bool,
}

/// One row of the list.
#[derive(Debug, Serialize)]
struct Row {
    id: i64,
    state: &'static str,
    badge: Badge,
    mode: &'static str,
    rule: String,
    playbook: String,
    target: String,
    alertname: String,
    dry_run: bool,
    /// Who ran it by hand (`POST /api/repairs`), if a person did.
    by_hand: Option<String>,
    created_at: i64,
    created_iso: String,
    outcome: Option<String>,
}

/// The list page.
#[derive(Debug, Serialize)]
struct ListView {
    states: Vec<Choice>,
    modes: Vec<Choice>,
    apps: Vec<String>,
    namespace: String,
    target: String,
    filtered: bool,
    rows: Vec<Row>,
    /// The query of the next (older) page, when there is one.
    next: Option<String>,
}

fn empty_none(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

impl ListParams {
    /// The store filter for `claims`; an unknown state or mode is a bad request in words.
    fn filter(
        &self,
        claims: &Claims,
        bad: impl Fn(&str) -> UiError,
    ) -> Result<ListFilter, UiError> {
        let state = empty_none(&self.state)
            .map(|s| JobState::parse(s).ok_or_else(|| bad("repairs.error.state")))
            .transpose()?;
        let mode = empty_none(&self.mode)
            .map(|m| m.parse::<Mode>().map_err(|_| bad("repairs.error.mode")))
            .transpose()?;
        // As /api/repairs: another app's name lists nothing, as if it had no repairs.
        let namespaces = match (empty_none(&self.namespace), claims.visible_apps()) {
            (Some(ns), _) => Some(if claims.can_see(ns) {
                vec![ns.to_string()]
            } else {
                Vec::new()
            }),
            (None, apps) => apps.map(<[String]>::to_vec),
        };
        Ok(ListFilter {
            namespaces,
            state: state.map(|s| s.as_str().to_string()),
            subject: empty_none(&self.target).map(str::to_string),
            mode,
            before_id: self.cursor,
            limit: PAGE,
            ..ListFilter::default()
        })
    }

    /// This query with `cursor` replaced: the link to the next page.
    fn with_cursor(&self, cursor: i64) -> String {
        let mut q = url_pairs(&[
            ("state", empty_none(&self.state)),
            ("mode", empty_none(&self.mode)),
            ("namespace", empty_none(&self.namespace)),
            ("target", empty_none(&self.target)),
        ]);
        q.append_pair("cursor", &cursor.to_string());
        q.finish()
    }
}

fn url_pairs(pairs: &[(&str, Option<&str>)]) -> form_urlencoded::Serializer<'static, String> {
    let mut q = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        if let Some(v) = v {
            q.append_pair(k, v);
        }
    }
    q
}

fn list_view(p: &ListParams, jobs: Vec<Job>, apps: Vec<String>) -> ListView {
    let state = empty_none(&p.state);
    let mode = empty_none(&p.mode);
    let next = (jobs.len() as i64 == PAGE)
        .then(|| jobs.last().map(|j| p.with_cursor(j.id)))
        .flatten();
    ListView {
        states: JobState::ALL
            .iter()
            .map(|s| Choice {
                value: s.as_str(),
                key: state_badge(*s).1,
                selected: state == Some(s.as_str()),
            })
            .collect(),
        modes: Mode::ALL
            .iter()
            .map(|m| Choice {
                value: m.as_str(),
                key: timeline::mode_key(*m),
                selected: mode == Some(m.as_str()),
            })
            .collect(),
        apps,
        namespace: empty_none(&p.namespace).unwrap_or_default().to_string(),
        target: empty_none(&p.target).unwrap_or_default().to_string(),
        filtered: state.is_some()
            || mode.is_some()
            || empty_none(&p.namespace).is_some()
            || empty_none(&p.target).is_some(),
        rows: jobs.into_iter().map(row).collect(),
        next,
    }
}

fn row(j: Job) -> Row {
    let (class, key) = state_badge(j.state);
    Row {
        id: j.id,
        state: j.state.as_str(),
        badge: Badge { class, key },
        mode: timeline::mode_key(j.spec.mode),
        rule: j.rule,
        playbook: j.playbook,
        target: j.target_key,
        alertname: j.alertname,
        dry_run: j.dry_run,
        by_hand: j.spec.by_hand.map(|h| h.by),
        created_at: j.created_at,
        created_iso: iso(j.created_at),
        outcome: j.error.or(j.outcome),
    }
}

async fn list(
    viewer: Viewer,
    State(st): State<AppState>,
    Query(p): Query<ListParams>,
) -> Result<Response, UiError> {
    let c = console(&st)?;
    let lang = viewer.lang;
    let bad = |key: &str| UiError::BadRequest {
        message: lang.word(key).unwrap_or(key).to_string(),
        lang,
    };
    let f = p.filter(&viewer.claims, bad)?;
    let store = st.pipeline.store();
    let jobs = store
        .list_jobs(&f)
        .await
        .map_err(|e| UiError::internal(e).in_lang(lang))?;
    // The app choices: the viewer's apps, or (admins) the registered ones: a small table.
    let apps = match viewer.claims.visible_apps() {
        Some(apps) => apps.to_vec(),
        None => {
            let mut ns: Vec<String> = store
                .apps()
                .await
                .map_err(|e| UiError::internal(e).in_lang(lang))?
                .into_iter()
                .map(|a| a.namespace)
                .collect();
            ns.sort();
            ns.dedup();
            ns
        }
    };
    page(c, &viewer, "repairs.html", list_view(&p, jobs, apps))
}

/// The timeline page.
#[derive(Debug, Serialize)]
struct RepairView {
    id: i64,
    state: &'static str,
    badge: Badge,
    reverted: bool,
    rule: String,
    mode: &'static str,
    approvers: Vec<String>,
    playbook: String,
    dry_run: bool,
    /// Who ran it by hand, and why (`POST /api/repairs`).
    by_hand: Option<String>,
    hand_reason: Option<String>,
    alertname: String,
    target: String,
    namespace: String,
    created_iso: String,
    created_at: i64,
    started: Option<(i64, String)>,
    finished: Option<(i64, String)>,
    ttr_ms: Option<i64>,
    outcome: Option<String>,
    error: Option<String>,
    chain: Vec<ChainView>,
    planned_chain: Vec<String>,
    events_command: String,
    links: Vec<Link>,
    entries: Vec<Entry>,
}

/// One job of the escalation chain, linked.
#[derive(Debug, Serialize)]
struct ChainView {
    id: i64,
    playbook: String,
    badge: Badge,
    current: bool,
}

fn repair_view(d: TimelineData) -> RepairView {
    let entries = timeline::build(&d);
    let job = &d.job;
    let (class, key) = state_badge(job.state);
    let mut links = Vec::new();
    if let Some(a) = &d.alert {
        if let Some(u) = timeline::http_link(&a.generator_url) {
            links.push(Link {
                href: u,
                key: "repairs.link.generator",
                suffix: String::new(),
            });
        }
        if let Some(u) = a
            .annotations
            .get("runbook_url")
            .and_then(|u| timeline::http_link(u))
        {
            links.push(Link {
                href: u,
                key: "repairs.link.runbook",
                suffix: String::new(),
            });
        }
    }
    let at = |t: Option<i64>| t.map(|t| (t, iso(t)));
    RepairView {
        id: job.id,
        state: job.state.as_str(),
        badge: Badge { class, key },
        reverted: job.state == JobState::Reverted,
        rule: job.rule.clone(),
        mode: timeline::mode_key(job.spec.mode),
        approvers: job
            .spec
            .approval
            .iter()
            .flat_map(|a| a.approvers.iter().map(ToString::to_string))
            .collect(),
        playbook: job.playbook.clone(),
        dry_run: job.dry_run,
        by_hand: job.spec.by_hand.as_ref().map(|h| h.by.clone()),
        hand_reason: job.spec.by_hand.as_ref().and_then(|h| h.reason.clone()),
        alertname: job.alertname.clone(),
        target: job.target_key.clone(),
        namespace: job.target_namespace.clone(),
        created_iso: iso(job.created_at),
        created_at: job.created_at,
        started: at(job.started_at),
        finished: at(job.finished_at),
        ttr_ms: job.ttr_ms,
        outcome: job.outcome.clone(),
        error: job.error.clone(),
        chain: d
            .chain
            .iter()
            .map(|j| {
                let (class, key) = state_badge(j.state);
                ChainView {
                    id: j.id,
                    playbook: j.playbook.clone(),
                    badge: Badge { class, key },
                    current: j.id == job.id,
                }
            })
            .collect(),
        planned_chain: job.spec.chain.iter().map(timeline::chain_step).collect(),
        events_command: timeline::events_command(job),
        links,
        entries,
    }
}

async fn show(
    viewer: Viewer,
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, UiError> {
    let c = console(&st)?;
    let lang = viewer.lang;
    // A path that is not a number names no repair: the same 404 as a missing one.
    let id: i64 = id.parse().map_err(|_| UiError::NotFound)?;
    let store = st.pipeline.store();
    let fail = |e: crate::store::Error| UiError::internal(e).in_lang(lang);
    let job = store
        .job(id)
        .await
        .map_err(fail)?
        .filter(|j| viewer.claims.can_see(&j.target_namespace))
        .ok_or(UiError::NotFound)?;
    let data = TimelineData {
        // The alert may be another app's (a rule can target another namespace than the
        // alert's): then the repair shows no alert, and never decisions on targets the
        // viewer cannot see.
        alert: store
            .alert(job.alert_event_id)
            .await
            .map_err(fail)?
            .filter(|a| viewer.claims.can_see_item(a.namespace.as_deref()))
            .map(|a| super::alerts::visible_decisions(&viewer.claims, a)),
        chain: {
            let mut chain = store.chain_of(&job).await.map_err(fail)?;
            chain.extend(store.chain_after(&job).await.map_err(fail)?);
            chain
        },
        events: store.job_events(id).await.map_err(fail)?,
        steps: store.job_steps(id).await.map_err(fail)?,
        gitops: store.job_gitops(id).await.map_err(fail)?,
        escalations: store.escalations_of(id).await.map_err(fail)?,
        notifications: store.job_notifications(id).await.map_err(fail)?,
        approvals: store.approvals(id).await.map_err(fail)?,
        notes: crate::http::api::repair_notes(store, &job)
            .await
            .map_err(fail)?,
        job,
    };
    page(c, &viewer, "repair.html", repair_view(data))
}

#[cfg(test)]
mod tests;
