//! From a parsed webhook to recorded decisions: dedup, rule matching, guards, job creation.
//!
//! Everything one webhook decides happens in one store transaction that commits before the
//! webhook is answered: the alerts, each verdict (a job, or a refusal with its reason) and any
//! storm-brake escalation. A crash before the commit loses nothing Alertmanager was told it
//! delivered (it gets no 2xx and retries); a crash after it leaves a complete record, so a
//! re-send is recognised as a duplicate and nothing is done twice.
//!
//! The in-memory cache (moka) only short-cuts alerts this process has already committed; the
//! store's unique index decides for everything else, including re-sends to another replica.

mod account;
mod guard;

use std::sync::{Arc, RwLock};

use serde::Serialize;
use tokio::sync::Notify;

use crate::alert::{Alert, DedupKey, Payload, Rejection, Status};
use crate::config::{self, Settings};
use crate::definitions::Definitions;
use crate::job::{ChainStep, Params};
use crate::metrics::Metrics;
use crate::rules::{Mode, Target, Trust};
use crate::store::{self, NewAlertEvent, Store};

pub use guard::Refusal;

/// Every reason code an alert's decision can have: the ones that are no guard's (`plan`,
/// `dry_run`, `no_rule`), then the guards'. What `/api/alerts?reason=` and the console's
/// reason filter accept.
pub fn reason_codes() -> Vec<&'static str> {
    let others = crate::decision::NOT_REFUSALS.iter().map(|(_, r)| *r);
    others
        .chain(Refusal::ALL.iter().map(|r| r.as_str()))
        .collect()
}

/// How [`Pipeline::simulate`] departs from the intake (`aiops simulate --at`, `--ignore-dedup`).
/// The default is the intake's own evaluation: now, duplicates not acted on.
#[derive(Clone, Copy, Debug, Default)]
pub struct Simulation {
    /// Decide as of this time (epoch ms): cooldowns, budgets, the storm window and `wait` are
    /// measured from it. The history is the store's as it is now.
    pub at: Option<i64>,
    /// Evaluate an alert the store already holds (a duplicate) as if it arrived again: rules,
    /// guards and plan, against the history it left.
    pub ignore_dedup: bool,
}

/// Intake failures; all but `Store` are the caller's to translate into HTTP.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The store could not record: answer 503 so Alertmanager retries.
    #[error("store unavailable: {0}")]
    Store(#[from] store::Error),
    /// Accepting would exceed the job queue bound: answer 503, nothing was recorded.
    #[error("job queue full ({capacity} jobs queued or waiting)")]
    QueueFull {
        /// The configured bound.
        capacity: usize,
    },
}

/// `type Result<T, E = Error>` as in every module of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What happened to one rule's match on one alert.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum RuleVerdict {
    /// A job was created.
    Job {
        /// Rule name.
        rule: String,
        /// The target.
        target: Target,
        /// Job id.
        job_id: i64,
        /// `queued` or `waiting`.
        state: store::JobState,
        /// The plan.
        plan: Plan,
    },
    /// A guard refused.
    Refused {
        /// Rule name.
        rule: String,
        /// The target, when it could be resolved.
        target: Option<Target>,
        /// Which guard.
        reason: Refusal,
        /// Details for a human.
        detail: String,
        /// The rule's trust mode: a shadow rule's refusal withheld nothing real.
        mode: Mode,
    },
}

/// What a job will do.
#[derive(Clone, Debug, Serialize)]
pub struct Plan {
    /// Playbook to run.
    pub playbook: String,
    /// Its params.
    pub params: Params,
    /// Not before (epoch ms).
    pub not_before: i64,
    /// Dry run.
    pub dry_run: bool,
    /// What follows a failure.
    pub escalate: Vec<ChainStep>,
    /// The rule's trust mode, snapshotted into the job (`shadow` implies `dry_run`).
    pub mode: Mode,
}

/// The verdict on one alert of a webhook.
#[derive(Clone, Debug, Serialize)]
pub struct AlertVerdict {
    /// Fingerprint.
    pub fingerprint: String,
    /// Alert name.
    pub alertname: String,
    /// The alert's own status.
    pub status: Status,
    /// `new`, `duplicate`, or `held_again` (a re-send of an occurrence a maintenance window
    /// held, decided again).
    pub dedup: &'static str,
    /// Jobs cancelled by a resolve.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cancelled_jobs: Vec<i64>,
    /// The trust mode of each cancelled job, in the same order (for the metrics' `mode`).
    #[serde(skip)]
    pub cancelled_modes: Vec<Mode>,
    /// For a firing alert: `no rule matched`, or one verdict per matching rule.
    pub rules: Vec<RuleVerdict>,
}

/// The outcome of one webhook.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    /// Alerts newly recorded.
    pub accepted: usize,
    /// Alerts already recorded (re-sends).
    pub duplicates: usize,
    /// Jobs created.
    pub jobs: Vec<i64>,
    /// Guard refusals.
    pub refused: usize,
    /// Alerts not recorded because a value cannot be stored or is out of range; the others of
    /// the payload were processed. Non-empty makes the webhook answer 400.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rejected: Vec<Rejection>,
    /// Per-alert details (kept for `simulate`; not sent to Alertmanager).
    #[serde(skip)]
    pub alerts: Vec<AlertVerdict>,
}

/// The intake pipeline: shared by the HTTP handlers, the executor and the CLI.
pub struct Pipeline {
    store: Store,
    defs: RwLock<Arc<Definitions>>,
    dedup: moka::sync::Cache<DedupKey, ()>,
    guard: config::Guard,
    trust: Trust,
    queue_capacity: usize,
    metrics: Metrics,
    wake: Arc<Notify>,
    outbox: Option<Arc<crate::notify::Outbox>>,
    maintenance: crate::maintenance::Windows,
}

impl Pipeline {
    /// Sends notifications through `outbox` (storm brake, fired alerts; the executor and
    /// playbooks use it too).
    pub fn with_outbox(mut self, outbox: Arc<crate::notify::Outbox>) -> Pipeline {
        self.outbox = Some(outbox);
        self
    }

    /// Holds alerts during the maintenance windows of `windows` (shared with the API and the
    /// summary task, which refresh it).
    pub fn with_maintenance(mut self, windows: crate::maintenance::Windows) -> Pipeline {
        self.maintenance = windows;
        self
    }

    /// The maintenance windows the guard reads.
    pub fn maintenance(&self) -> &crate::maintenance::Windows {
        &self.maintenance
    }

    /// The notification outbox, when notifications are set up.
    pub fn outbox(&self) -> Option<&Arc<crate::notify::Outbox>> {
        self.outbox.as_ref()
    }

    /// Builds the pipeline around a store and loaded definitions.
    pub fn new(store: Store, defs: Definitions, settings: &Settings, metrics: Metrics) -> Pipeline {
        let dedup = moka::sync::Cache::builder()
            .max_capacity(settings.dedup.cache_capacity)
            .time_to_live(settings.dedup.cache_ttl.0)
            .build();
        Pipeline {
            store,
            defs: RwLock::new(Arc::new(defs)),
            dedup,
            guard: settings.guard.clone(),
            trust: settings.trust.clone(),
            queue_capacity: settings.jobs.queue_capacity,
            metrics,
            wake: Arc::new(Notify::new()),
            outbox: None,
            maintenance: crate::maintenance::Windows::default(),
        }
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The `trust:` settings: the mode and approvers of rules that set none.
    pub fn trust(&self) -> &Trust {
        &self.trust
    }

    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Signalled whenever a job is created, so idle workers start at once.
    pub fn wake(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// The current rules and playbooks.
    pub fn definitions(&self) -> Arc<Definitions> {
        self.defs
            .read()
            .expect("definitions lock is never poisoned")
            .clone()
    }

    /// Replaces the rules and playbooks (after a successful load).
    pub fn replace_definitions(&self, defs: Definitions) {
        *self
            .defs
            .write()
            .expect("definitions lock is never poisoned") = Arc::new(defs);
    }

    /// Reloads rules and playbooks from disk. On any problem the running set stays in place
    /// and the problems are returned; on success returns (rules, playbooks) counts.
    pub fn reload(
        &self,
        rules_dir: &crate::embedded::Source,
        playbooks_dir: &crate::embedded::Source,
    ) -> Result<(usize, usize), Vec<String>> {
        let loaded = Definitions::load(rules_dir, playbooks_dir).and_then(|defs| {
            let mut problems = match &self.outbox {
                Some(outbox) => defs.check_notify(&|n| outbox.knows(n)),
                None => Vec::new(),
            };
            // The start-up's check too: a reload must not bring in a rule nobody may approve.
            problems.extend(defs.check_approvers(&self.trust));
            if problems.is_empty() {
                Ok(defs)
            } else {
                Err(problems)
            }
        });
        match loaded {
            Ok(defs) => {
                let counts = (defs.rules.len(), defs.playbooks.len());
                self.replace_definitions(defs);
                self.metrics.reloads.with_label_values(&["success"]).inc();
                tracing::info!(
                    rules = counts.0,
                    playbooks = counts.1,
                    "rules and playbooks reloaded"
                );
                Ok(counts)
            }
            Err(problems) => {
                self.metrics.reloads.with_label_values(&["failure"]).inc();
                tracing::error!(problems = %problems.join("; "), "reload rejected; keeping the running rules and playbooks");
                Err(problems)
            }
        }
    }

    /// Records a webhook's alerts and decides on each. Commits before returning.
    pub async fn ingest(&self, payload: &Payload) -> Result<Report> {
        self.process(payload, true, Simulation::default()).await
    }

    /// Decides as [`Pipeline::ingest`] would (at `sim.at`, duplicates evaluated when
    /// `sim.ignore_dedup`), then rolls everything back.
    pub async fn simulate(&self, payload: &Payload, sim: Simulation) -> Result<Report> {
        self.process(payload, false, sim).await
    }

    async fn process(&self, payload: &Payload, commit: bool, sim: Simulation) -> Result<Report> {
        let now = sim.at.unwrap_or_else(store::now_ms);
        let clock = chrono::DateTime::from_timestamp_millis(now).unwrap_or_else(chrono::Utc::now);
        // Checked before anything is written: a value the store cannot hold must not fail the
        // transaction of the good alerts beside it, and must not become a 503 that Alertmanager
        // retries forever.
        let (good, rejected) = payload.partition(clock);
        let mut report = Report {
            rejected,
            ..Report::default()
        };
        if commit {
            for r in &report.rejected {
                self.metrics
                    .alerts_rejected
                    .with_label_values(&[r.problem.as_str()])
                    .inc();
                tracing::warn!(
                    index = r.index,
                    fingerprint = %r.fingerprint.escape_debug(),
                    alertname = %r.alertname.escape_debug(),
                    field = %r.field.escape_debug(),
                    reason = %r.reason,
                    "alert rejected; the rest of the payload is processed"
                );
            }
        }
        let mut fresh: Vec<(&Alert, DedupKey)> = Vec::with_capacity(good.len());
        for alert in good {
            let key = alert.dedup_key();
            if commit && self.dedup.contains_key(&key) {
                report.duplicates += 1;
                continue;
            }
            fresh.push((alert, key));
        }
        // One global order of row locks: two replicas handling overlapping payloads then wait on
        // each other instead of deadlocking on PostgreSQL.
        fresh.sort_by(|a, b| {
            (&a.1.fingerprint, a.1.status.as_str(), a.1.starts_at_ms).cmp(&(
                &b.1.fingerprint,
                b.1.status.as_str(),
                b.1.starts_at_ms,
            ))
        });
        if fresh.is_empty() {
            self.metrics
                .alerts_duplicate
                .inc_by(report.duplicates as u64);
            return Ok(report);
        }
        let defs = self.definitions();
        let mut tx = self.store.begin_write().await?;
        if let Some(outbox) = &self.outbox
            && outbox.groups_no_action()
        {
            tx.lock_no_action_groups().await?;
        }
        let maintenance = self.maintenance.snapshot();
        let mut pending = guard::Pending::default();
        let mut storm_tally = guard::StormTally::default();
        let mut escalations = 0u64;
        let mut notified = 0usize;
        for (alert, key) in &fresh {
            let ev = NewAlertEvent {
                alert,
                receiver: &payload.receiver,
                group_key: &payload.group_key,
                received_at: now,
            };
            let (event_id, dedup) = match tx.insert_alert_event(&ev).await? {
                Some(id) => (id, "new"),
                None => {
                    // A simulation may go on with the occurrence already recorded; a firing
                    // occurrence a maintenance window held is decided again on its re-send.
                    let recorded = if sim.ignore_dedup {
                        tx.alert_event_id(key).await?.map(|id| (id, "duplicate"))
                    } else if alert.status == Status::Firing {
                        tx.held_occurrence(key).await?.map(|id| (id, HELD_AGAIN))
                    } else {
                        None
                    };
                    let Some((id, dedup)) = recorded else {
                        report.duplicates += 1;
                        report.alerts.push(verdict_for(alert, "duplicate"));
                        continue;
                    };
                    report.duplicates += usize::from(dedup == "duplicate");
                    (id, dedup)
                }
            };
            report.accepted += usize::from(dedup == "new");
            let mut verdict = verdict_for(alert, dedup);
            match alert.status {
                Status::Resolved => {
                    verdict.cancelled_jobs = tx
                        .cancel_pending_for_fingerprint(&alert.fingerprint, now)
                        .await?;
                    verdict.cancelled_modes = tx.job_modes(&verdict.cancelled_jobs).await?;
                    // The loop closes: successful repairs of this occurrence get their time to
                    // recover, and the people told of the repair hear that it held.
                    let ended = alert.ends_at.map_or(now, |t| t.timestamp_millis());
                    let starts_at = alert.starts_at_ms();
                    tx.record_ttr(&alert.fingerprint, starts_at, (ended - starts_at).max(0))
                        .await?;
                    if let Some(outbox) = &self.outbox {
                        let resolved = crate::notify::Resolved {
                            labels: &alert.labels,
                            annotations: &alert.annotations,
                            generator_url: &alert.generator_url,
                            fingerprint: &alert.fingerprint,
                            starts_at,
                        };
                        notified += outbox.recovered(&mut tx, &resolved, now).await?;
                    }
                }
                Status::Firing => {
                    // A held occurrence's re-send is decided again but fired once: alert_fired
                    // goes with the occurrence's first record only. Only routes that opt in take
                    // it; most alerts enqueue nothing.
                    if let Some(outbox) = self.outbox.as_ref().filter(|_| dedup == "new") {
                        let event = crate::notify::Event::for_alert(
                            crate::notify::EventKind::AlertFired,
                            &alert.labels,
                            &alert.annotations,
                            &alert.generator_url,
                        );
                        notified += outbox.enqueue(&mut tx, &event, &[], now).await?;
                    }
                    for rule in defs.rules.matching(&alert.labels) {
                        let ctx = guard::Ctx {
                            guard: &self.guard,
                            queue_capacity: self.queue_capacity,
                            now,
                            outbox: self.outbox.as_deref(),
                            maintenance: &maintenance,
                            trust: &self.trust,
                        };
                        let outcome = guard::decide(
                            &mut tx,
                            &ctx,
                            rule,
                            alert,
                            event_id,
                            &mut pending,
                            &mut storm_tally,
                        )
                        .await;
                        let rv = match outcome {
                            Ok(guard::Outcome::Job(rv)) => rv,
                            Ok(guard::Outcome::Refused(rv, storm_escalated)) => {
                                escalations += u64::from(storm_escalated);
                                rv
                            }
                            Err(guard::Error::QueueFull) => {
                                drop(tx.rollback().await);
                                if commit {
                                    self.metrics.queue_full.inc();
                                }
                                return Err(Error::QueueFull {
                                    capacity: self.queue_capacity,
                                });
                            }
                            Err(guard::Error::Store(e)) => return Err(e.into()),
                        };
                        notified += self.decided(&mut tx, alert, &rv, now).await?;
                        verdict.rules.push(rv);
                    }
                }
            }
            report.alerts.push(verdict);
        }
        if !commit {
            tx.rollback().await?;
            return Ok(report);
        }
        tx.commit().await?;
        if (notified > 0 || escalations > 0)
            && let Some(outbox) = &self.outbox
        {
            outbox.wake();
        }

        // Only now is it true that these occurrences are stored. A held one stays out of the
        // cache: its re-send must reach the store to be decided again.
        for ((_, key), verdict) in fresh.into_iter().zip(&report.alerts) {
            if !verdict.held() {
                self.dedup.insert(key, ());
            }
        }
        if let Some(depth) = pending.real() {
            self.metrics.queue_depth.set(depth);
        }
        self.account(&mut report, escalations);
        Ok(report)
    }

    /// The decision point: every verdict of a rule on a firing alert (a job, or a guard's
    /// refusal) passes here once it is recorded. A refusal is told to the routes that opt in
    /// to `no_action`, grouped per channel and reason (the outbox groups; a storm is a few
    /// messages). Runs inside the intake transaction, so a rolled-back webhook (or a
    /// `simulate`) tells nobody. Returns the `no_action` groups opened.
    async fn decided(
        &self,
        tx: &mut store::WriteTx,
        alert: &Alert,
        verdict: &RuleVerdict,
        now: i64,
    ) -> Result<usize> {
        if let RuleVerdict::Job {
            job_id,
            state: store::JobState::AwaitingApproval,
            ..
        } = verdict
        {
            // Approve mode: the request goes out in the transaction that creates the job.
            let outbox = self.outbox.as_deref();
            return Ok(crate::approval::request(tx, outbox, *job_id, now).await?);
        }
        let (
            Some(outbox),
            RuleVerdict::Refused {
                rule,
                target,
                reason,
                detail,
                mode,
            },
        ) = (&self.outbox, verdict)
        else {
            return Ok(0);
        };
        // A shadow rule's refusal withheld nothing real: it is evidence (the decisions and the
        // knowledge base keep it), not news for the people the no_action routes tell.
        if *mode == Mode::Shadow {
            return Ok(0);
        }
        let refused = crate::notify::Refused {
            labels: &alert.labels,
            annotations: &alert.annotations,
            generator_url: &alert.generator_url,
            rule,
            target: target.as_ref().map(|t| t.key()),
            reason: reason.as_str(),
            detail,
        };
        Ok(outbox.no_action(tx, &refused, now).await?)
    }
}

/// The `dedup` of a re-send of a firing occurrence a maintenance window held: decided again.
const HELD_AGAIN: &str = "held_again";

impl AlertVerdict {
    /// Whether a maintenance window held this firing alert (every rule refused it so).
    fn held(&self) -> bool {
        !self.rules.is_empty()
            && self.rules.iter().all(|r| {
                matches!(
                    r,
                    RuleVerdict::Refused {
                        reason: Refusal::Maintenance,
                        ..
                    }
                )
            })
    }
}

fn verdict_for(alert: &Alert, dedup: &'static str) -> AlertVerdict {
    AlertVerdict {
        fingerprint: alert.fingerprint.clone(),
        alertname: alert.alertname().to_string(),
        status: alert.status,
        dedup,
        cancelled_jobs: Vec::new(),
        cancelled_modes: Vec::new(),
        rules: Vec::new(),
    }
}

#[cfg(test)]
mod tests;
