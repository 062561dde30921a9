//! `aiops replay`: the stored alerts of a period decided again under a (changed) rule set, with
//! the recorded history as it was when each alert arrived, and the decisions that differ from
//! what happened.
//!
//! **One implementation of the guards.** Nothing here counts cooldowns, budgets or busy
//! targets. A scratch store (in-memory SQLite, migrated like any store) is advanced through
//! the recorded history in the order it happened ([`crate::store::HistoryItem`]): before the
//! alert received at T is decided, the scratch store holds what the live store held then — the
//! alert rows, every job in its state as of T (rebuilt from `job_events`, so a job that is
//! finished today is busy again), the decisions' target activity (written by the intake's own
//! statement), the storm brake's episodes and the maintenance windows made through the API. The alert is then decided by
//! [`Pipeline::simulate`] at T over that scratch store with the new rules, and rolled back: the
//! daemon's own intake transaction, guards and job plan, exactly as `aiops simulate` uses them.
//! The live store is only read.
//!
//! **What "history as it was" cannot know** (also in the README):
//! - The history is what happened under the *recorded* rules. A repair the new rules would
//!   have refused still counts in later cooldowns and budgets, and a repair they would have
//!   added does not: each alert is compared against what really preceded it, one decision at
//!   a time, not a counterfactual week.
//! - Playbooks are not run: a changed playbook body, and the outcomes and chains a different
//!   playbook would have had, are not known. A different playbook *name* is reported.
//! - Rows retention pruned (old repairs, decisions, alerts) are gone from the history; a
//!   period older than `retention.*` replays against an incomplete past.
//! - The settings (guard, storm brake, queue bound, trust) are today's, not those in force
//!   when the alert arrived.

mod report;

use std::collections::BTreeMap;

use serde::Serialize;

use crate::alert::{Alert, Payload, Status};
use crate::config::Settings;
use crate::decision::Verdict;
use crate::definitions::Definitions;
use crate::metrics::Metrics;
use crate::pipeline::{self, Pipeline, RuleVerdict, Simulation};
use crate::rules::Mode;
use crate::store::{self, HistoryAlert, HistoryTable, RecordedDecision, Store};

pub use report::{ByKind, Difference, Kind, Report, Totals};

/// Replay failures.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The live store could not be read.
    #[error("reading the recorded history: {0}")]
    History(#[source] store::Error),
    /// The scratch store could not be written.
    #[error("rebuilding the history in the scratch store: {0}")]
    Scratch(#[source] store::Error),
    /// The pipeline could not decide an alert (a store error; the queue bound is a verdict).
    #[error("deciding alert {alert_id} again: {source}")]
    Decide {
        /// The `alert_events` id.
        alert_id: i64,
        /// Why.
        #[source]
        source: pipeline::Error,
    },
    /// The settings file's maintenance windows do not check.
    #[error("{0}")]
    Maintenance(String),
    /// `until` is before `since`.
    #[error("the period is empty: {until} is before {since}")]
    EmptyPeriod {
        /// Start (RFC 3339).
        since: String,
        /// End (RFC 3339).
        until: String,
    },
}

/// `type Result<T, E = Error>` as in every module of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The period replayed: alerts received in `[since, until]` (epoch ms).
#[derive(Clone, Copy, Debug)]
pub struct Period {
    /// Start, inclusive.
    pub since: i64,
    /// End, inclusive.
    pub until: i64,
}

/// One rule's verdict on an alert, recorded or replayed, in the terms both sides share.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Outcome {
    /// The rule (empty for a verdict on the whole alert: the queue bound).
    pub rule: String,
    /// `job` or `refused`.
    pub verdict: Verdict,
    /// `plan` for a job; the guard's name for a refusal (`cooldown`, `target_busy`, ...).
    pub reason: String,
    /// The playbook a job runs (`null` for a refusal, or a job retention pruned).
    pub playbook: Option<String>,
    /// The job's trust mode (`null` for a refusal, or a job retention pruned).
    pub mode: Option<Mode>,
    /// The target, when resolved.
    pub target: Option<String>,
    /// What the guard said (not compared: it names job ids and times).
    pub detail: String,
}

impl Outcome {
    fn from_recorded(d: &RecordedDecision) -> Outcome {
        let verdict = Verdict::parse(&d.verdict).unwrap_or(Verdict::Refused);
        Outcome {
            rule: d.rule.clone(),
            verdict,
            reason: d.reason.clone(),
            playbook: d.spec.as_ref().map(|s| s.playbook.clone()),
            mode: d.spec.as_ref().map(|s| s.mode),
            target: d.target_key.clone(),
            detail: d.detail.clone(),
        }
    }

    fn from_replayed(rv: &RuleVerdict, defs: &Definitions, settings: &Settings) -> Outcome {
        match rv {
            RuleVerdict::Job {
                rule, target, plan, ..
            } => Outcome {
                rule: rule.clone(),
                verdict: Verdict::Job,
                reason: crate::decision::PLAN.to_string(),
                playbook: Some(plan.playbook.clone()),
                // The mode the job would be created in: the rule's, resolved against the
                // settings' `trust:` as `JobSpec::for_rule_in` does.
                mode: defs.rules.get(rule).map(|r| settings.trust.mode_of(r)),
                target: Some(target.key()),
                detail: format!("{} on {}", plan.playbook, target.key()),
            },
            RuleVerdict::Refused {
                rule,
                target,
                reason,
                detail,
                ..
            } => Outcome {
                rule: rule.clone(),
                verdict: Verdict::Refused,
                reason: reason.as_str().to_string(),
                playbook: None,
                mode: None,
                target: target.as_ref().map(|t| t.key()),
                detail: detail.clone(),
            },
        }
    }

    /// Whether a job was (or would be) created.
    pub fn acted(&self) -> bool {
        self.verdict == Verdict::Job
    }

    /// What is compared. A recorded job whose row retention pruned has no playbook or mode;
    /// it is then compared on rule and verdict only.
    fn same_as(&self, replayed: &Outcome) -> bool {
        self.rule == replayed.rule
            && self.verdict == replayed.verdict
            && self.reason == replayed.reason
            && (self.playbook.is_none() || self.playbook == replayed.playbook)
            && (self.mode.is_none() || self.mode == replayed.mode)
    }
}

/// Replays `period` of `source`'s history under `defs`, deciding in `scratch` (an empty store
/// of its own, migrated; it is filled and left behind). `source` is only read.
pub async fn run(
    source: &Store,
    scratch: Store,
    defs: Definitions,
    settings: &Settings,
    period: Period,
) -> Result<Report> {
    if period.until < period.since {
        return Err(Error::EmptyPeriod {
            since: report::rfc3339(period.since),
            until: report::rfc3339(period.until),
        });
    }
    let rows = source
        .history_alert_rows(period.until)
        .await
        .map_err(Error::History)?;
    let timeline = source
        .history_timeline(period.until)
        .await
        .map_err(Error::History)?;
    let alerts = source
        .history_alerts(period.since, period.until)
        .await
        .map_err(Error::History)?;
    let mut recorded: BTreeMap<i64, Vec<Outcome>> = BTreeMap::new();
    for d in source
        .history_decisions(period.since, period.until)
        .await
        .map_err(Error::History)?
    {
        recorded
            .entry(d.alert_event_id)
            .or_default()
            .push(Outcome::from_recorded(&d));
    }

    let mut tx = scratch.begin_write().await.map_err(Error::Scratch)?;
    tx.restore_rows(HistoryTable::AlertEvents, &rows)
        .await
        .map_err(Error::Scratch)?;
    tx.commit().await.map_err(Error::Scratch)?;
    drop(rows);

    // The daemon's pipeline over the scratch store, without an outbox: a decision tells nobody.
    // Maintenance windows hold alerts as they did: the settings file's as they are today, the
    // API's as the scratch store holds them at each alert's time (reloaded below).
    let windows = crate::maintenance::Windows::new(
        crate::maintenance::from_settings(&settings.maintenance).map_err(Error::Maintenance)?,
    );
    let pipeline = Pipeline::new(scratch.clone(), defs, settings, Metrics::new())
        .with_maintenance(windows.clone());
    let defs = pipeline.definitions();
    let mut report = Report::new(period);
    let mut next = 0;
    for alert in &alerts {
        let cut = (alert.received_at, alert.id);
        let mut tx = scratch.begin_write().await.map_err(Error::Scratch)?;
        while let Some(item) = timeline.get(next) {
            let (at, seq, ..) = item.position();
            if (at, seq) >= cut {
                break;
            }
            if !tx.restore(item).await.map_err(Error::Scratch)? {
                report.unplaced_jobs += 1;
            }
            next += 1;
        }
        tx.commit().await.map_err(Error::Scratch)?;
        windows
            .refresh_at(&scratch, alert.received_at)
            .await
            .map_err(Error::Scratch)?;

        let replayed = decide(&pipeline, alert, &defs, settings).await?;
        let before = recorded.remove(&alert.id).unwrap_or_default();
        report.add(alert, before, replayed);
    }
    Ok(report)
}

/// The daemon's decision on `alert` at the time it was received, over the scratch store as it
/// stands (rolled back).
async fn decide(
    pipeline: &Pipeline,
    alert: &HistoryAlert,
    defs: &Definitions,
    settings: &Settings,
) -> Result<Vec<Outcome>> {
    let payload = Payload {
        version: "4".into(),
        group_key: alert.group_key.clone(),
        status: Some(Status::Firing),
        receiver: alert.receiver.clone(),
        truncated_alerts: 0,
        external_url: String::new(),
        alerts: vec![Alert {
            status: Status::Firing,
            labels: alert.labels.clone(),
            annotations: alert.annotations.clone(),
            starts_at: time(alert.starts_at),
            ends_at: alert.ends_at.map(time),
            generator_url: alert.generator_url.clone(),
            fingerprint: alert.fingerprint.clone(),
        }],
    };
    // The row is already in the scratch store (copied): evaluate it as the intake did when it
    // was new, at the time it arrived.
    let sim = Simulation {
        at: Some(alert.received_at),
        ignore_dedup: true,
    };
    match pipeline.simulate(&payload, sim).await {
        Ok(decided) => Ok(decided
            .alerts
            .iter()
            .flat_map(|a| &a.rules)
            .map(|rv| Outcome::from_replayed(rv, defs, settings))
            .collect()),
        Err(pipeline::Error::QueueFull { capacity }) => Ok(vec![Outcome {
            rule: String::new(),
            verdict: Verdict::Refused,
            reason: "queue_full".into(),
            playbook: None,
            mode: None,
            target: None,
            detail: format!(
                "the job queue would be full ({capacity} jobs queued or waiting): the webhook \
                 would be answered 503 and retried"
            ),
        }]),
        Err(source) => Err(Error::Decide {
            alert_id: alert.id,
            source,
        }),
    }
}

fn time(ms: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

#[cfg(test)]
mod tests;
