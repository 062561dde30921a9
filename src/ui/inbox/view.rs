//! The inbox page's view: what waits for a decision, the maintenance windows and the open
//! GitOps holds, built from store rows into typed structs the template only prints. Kept apart
//! from the handlers so that it is tested without HTTP.

use serde::{Deserialize, Serialize};

use crate::auth::Claims;
use crate::maintenance::{Key, Schedule, Window};
use crate::rules::Approver;
use crate::store::{AwaitingApproval, Hold};

/// A time as the page shows it: `<time datetime="{iso}">{text}</time>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct At {
    /// RFC 3339, UTC.
    pub iso: String,
    /// For people (UTC, the page's script shows it in the browser's zone).
    pub text: String,
}

impl At {
    /// Epoch ms as a page time (`None` when out of range).
    pub fn of(ms: i64) -> Option<At> {
        Some(At {
            iso: crate::store::rfc3339::format(ms)?,
            text: super::super::render::datetime(ms),
        })
    }
}

/// A repair waiting for approval, one row of the first table.
#[derive(Clone, Debug, Serialize)]
pub struct WaitingRow {
    /// The job (its timeline is `/ui/repairs/{id}`).
    pub id: i64,
    /// The playbook that would run.
    pub playbook: String,
    /// The alert that asked for it.
    pub alertname: String,
    /// The rule.
    pub rule: String,
    /// `namespace/Kind/name`.
    pub target: String,
    /// Who may approve (`platform:id`), from the job's snapshotted allow-list.
    pub approvers: Vec<String>,
    /// Whether the viewer is on that list (a click of anyone else is refused and recorded).
    pub viewer_may_approve: bool,
    /// When the approval expires and the repair goes to humans.
    pub expires: Option<At>,
}

/// Builds the waiting rows; `me` is the viewer as an approver (`console:<name>`).
pub fn waiting_rows(waiting: &[AwaitingApproval], me: &Approver) -> Vec<WaitingRow> {
    waiting
        .iter()
        .map(|w| {
            let list: &[Approver] = w
                .job
                .spec
                .approval
                .as_ref()
                .map_or(&[], |a| a.approvers.as_slice());
            WaitingRow {
                id: w.job.id,
                playbook: w.job.playbook.clone(),
                alertname: w.job.alertname.clone(),
                rule: w.job.rule.clone(),
                target: w.job.target_key.clone(),
                approvers: list.iter().map(ToString::to_string).collect(),
                viewer_may_approve: list.contains(me),
                expires: w.expires_at.and_then(At::of),
            }
        })
        .collect()
}

/// Where a window stands now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WindowState {
    /// Holding alerts now.
    Open,
    /// Opens later.
    Upcoming,
    /// Over (or ended early).
    Ended,
}

/// A maintenance window, one row of the second table.
#[derive(Clone, Debug, Serialize)]
pub struct WindowRow {
    /// Row id; none for the settings file's windows (which cannot be ended here).
    pub id: Option<i64>,
    /// Its name, else `#id`.
    pub label: String,
    /// Open, upcoming or ended.
    pub state: WindowState,
    /// What it holds: the app (namespace), the `app` label, the rule.
    pub namespace: Option<String>,
    /// The `app` label it holds.
    pub app: Option<String>,
    /// The rule it holds.
    pub rule: Option<String>,
    /// The occurrence shown: the open one, else the next, else (ended) the last one-off span.
    pub from: Option<At>,
    /// Its end (for an ended window: when it ended).
    pub to: Option<At>,
    /// Recurring (`every`/`cron`) rather than one-off.
    pub recurring: bool,
    /// Why.
    pub reason: String,
    /// Who created it (`console:<name>`, a token's subject, `settings`).
    pub created_by: Option<String>,
    /// Whether the viewer may end it now (stored, not over, and the viewer writes).
    pub can_end: bool,
}

/// Builds the window rows, open first, then upcoming, then ended; newest id first within.
pub fn window_rows(windows: &[Window], claims: &Claims, now: i64) -> Vec<WindowRow> {
    let mut rows: Vec<WindowRow> = windows
        .iter()
        .map(|w| {
            let current = w.active_at(now);
            let next = w.next_after(current.map_or(now, |c| c.end - 1));
            let (state, span) = match (current, next) {
                (Some(c), _) => (WindowState::Open, Some((c.start, c.end))),
                (None, Some(n)) => (WindowState::Upcoming, Some((n.start, n.end))),
                (None, None) => {
                    let span = match w.schedule {
                        Schedule::Once(o) => {
                            Some((o.start, w.ended_at.unwrap_or(o.end).min(o.end)))
                        }
                        Schedule::Recurring { .. } => None,
                    };
                    (WindowState::Ended, span)
                }
            };
            let id = match w.key {
                Key::Stored(id) => Some(id),
                Key::Settings(_) => None,
            };
            WindowRow {
                id,
                label: w.label(),
                state,
                namespace: w.scope.namespace.clone(),
                app: w.scope.app.clone(),
                rule: w.scope.rule.clone(),
                from: span.and_then(|s| At::of(s.0)),
                to: span.map(|s| s.1).or(w.ended_at).and_then(At::of),
                recurring: matches!(w.schedule, Schedule::Recurring { .. }),
                reason: w.spec.reason.clone(),
                created_by: w.spec.created_by.clone(),
                can_end: id.is_some() && state != WindowState::Ended && claims.can_write(),
            }
        })
        .collect();
    rows.sort_by(|a, b| a.state.cmp(&b.state).then(b.id.cmp(&a.id)));
    rows
}

/// An open GitOps hold, one row of the third table.
#[derive(Clone, Debug, Serialize)]
pub struct HoldRow {
    /// Row id.
    pub id: i64,
    /// The repair that placed it.
    pub job_id: i64,
    /// `namespace/Kind/name`.
    pub target: String,
    /// The paused controller ("Argo CD Application argocd/shop").
    pub owner: String,
    /// How it was paused, for people.
    pub hold: &'static str,
    /// What to change in Git so the hold can go.
    pub change: String,
    /// When it was placed.
    pub since: Option<At>,
    /// When it is released whatever Git says.
    pub expires: Option<At>,
    /// The last failed release attempt.
    pub release_error: Option<String>,
}

/// Builds the rows of the open holds the viewer sees.
pub fn hold_rows(holds: &[Hold], claims: &Claims) -> Vec<HoldRow> {
    holds
        .iter()
        .filter(|h| h.released_at.is_none() && claims.can_see(&h.hold.target.namespace))
        .map(|h| HoldRow {
            id: h.id,
            job_id: h.hold.job_id,
            target: h.hold.target.to_string(),
            owner: h.hold.controller.to_string(),
            hold: h.hold.placement.mechanism.describe(),
            change: h.hold.change.instruction(),
            since: At::of(h.hold.created_at),
            expires: At::of(h.hold.expires_at),
            release_error: h.release_error.clone(),
        })
        .collect()
}

/// The maintenance form as posted (and, after a refusal, shown again with what was typed).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct MaintenanceForm {
    /// A name for people (optional).
    pub name: String,
    /// The app (namespace) to hold; empty only for admins with a rule.
    pub namespace: String,
    /// Admins: hold only this rule's alerts.
    pub rule: String,
    /// Opens at (RFC 3339); empty: now.
    pub start: String,
    /// Closes at (RFC 3339), or
    pub end: String,
    /// … lasts this long from the start (`2h`, `90m`).
    pub duration: String,
    /// Why (required).
    pub reason: String,
}

/// Why a maintenance form could not become a window spec (before the API's own checks).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum FormError {
    /// `start` is not RFC 3339.
    #[error("start is not a time such as 2026-11-30T22:00:00Z")]
    Start,
    /// Both `end` and `duration`, or neither.
    #[error("give either an end or a duration")]
    EndOrDuration,
    /// `duration` does not read as one.
    #[error("duration: {0}")]
    Duration(String),
}

fn opt(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_string())
}

impl MaintenanceForm {
    /// The window spec the API would receive: a one-off from `start` (or `now`) to `end`, or
    /// to `start + duration`. Everything else (scope, reason, order, access) is checked by the
    /// API's own path, [`crate::http::maintenance::create_window`].
    pub fn spec(&self, now: i64) -> Result<crate::maintenance::WindowSpec, FormError> {
        let start = match opt(&self.start) {
            Some(s) => chrono::DateTime::parse_from_rfc3339(&s)
                .map_err(|_| FormError::Start)?
                .with_timezone(&chrono::Utc),
            None => chrono::DateTime::from_timestamp_millis(now).ok_or(FormError::Start)?,
        };
        let end = match (opt(&self.end), opt(&self.duration)) {
            (Some(end), None) => end,
            (None, Some(d)) => {
                let d = crate::duration::parse_duration(&d).map_err(FormError::Duration)?;
                let d = chrono::Duration::from_std(d)
                    .map_err(|e| FormError::Duration(e.to_string()))?;
                let end = start
                    .checked_add_signed(d)
                    .ok_or_else(|| FormError::Duration("too long".into()))?;
                end.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            }
            _ => return Err(FormError::EndOrDuration),
        };
        Ok(crate::maintenance::WindowSpec {
            name: opt(&self.name),
            namespace: opt(&self.namespace),
            rule: opt(&self.rule),
            start: Some(start.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
            end: Some(end),
            reason: self.reason.trim().to_string(),
            ..Default::default()
        })
    }
}
