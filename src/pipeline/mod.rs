//! From a parsed webhook to recorded decisions: dedup, rule matching, guards, job creation.
//!
//! Everything one webhook decides happens in one store transaction that commits before the
//! webhook is answered: the alerts, each verdict (a job, or a refusal with its reason) and any
//! storm-brake escalation. A crash before the commit loses nothing Alertmanager was told it
//! delivered (it gets no 2xx and retries); a crash after it leaves a complete record, so a
//! re-send is recognised as a duplicate and nothing is done twice.
//!
//! The in-memory cache (`seen`) only short-cuts alerts this process has already committed; the
//! store's unique index decides for everything else, including re-sends to another replica.
//!
//! A repair run by hand (`POST /api/repairs`) is decided by the same guards ([`hand`]), in a
//! transaction of its own under the same intake lock.

mod account;
mod batch;
mod guard;
pub mod hand;
mod seen;

use std::sync::{Arc, RwLock};

use serde::Serialize;
use tokio::sync::Notify;

use crate::alert::{Alert, DedupKey, Payload, Rejection, Status};
use crate::config::{self, Settings};
use crate::definitions::Definitions;
use crate::job::{ChainStep, Params};
use crate::metrics::Metrics;
use crate::rules::{Mode, Target, Trust};
use crate::store::{self, Store};

pub use guard::Refusal;
pub use hand::{HandOutcome, HandPlan, HandRun};

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
    /// The batch this webhook was written with could not be recorded (the writer logged why),
    /// or too many webhooks are already waiting for the writer: answer 503, nothing of this
    /// webhook was recorded.
    #[error("store unavailable ({0}); nothing recorded")]
    Unavailable(&'static str),
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
///
/// Webhooks with new alerts are written by one writer task in batches ([`batch`]): one
/// transaction (one fsync) for every webhook waiting when the writer is free, each answered only
/// once its batch committed. Re-sends the dedup cache knows never wait for it.
pub struct Pipeline {
    core: Arc<Core>,
    queue: Arc<batch::Queue>,
}

/// What the writer task shares with the handlers.
pub(crate) struct Core {
    store: Store,
    defs: RwLock<Arc<Definitions>>,
    dedup: seen::Seen,
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
        self.core_mut().outbox = Some(outbox);
        self
    }

    /// The core, while the pipeline is being set up (before the writer shares it).
    fn core_mut(&mut self) -> &mut Core {
        Arc::get_mut(&mut self.core).expect("a pipeline is configured before it is shared")
    }

    /// Holds alerts during the maintenance windows of `windows` (shared with the API and the
    /// summary task, which refresh it).
    pub fn with_maintenance(mut self, windows: crate::maintenance::Windows) -> Pipeline {
        self.core_mut().maintenance = windows;
        self
    }

    /// The maintenance windows the guard reads.
    pub fn maintenance(&self) -> &crate::maintenance::Windows {
        &self.core.maintenance
    }

    /// The notification outbox, when notifications are set up.
    pub fn outbox(&self) -> Option<&Arc<crate::notify::Outbox>> {
        self.core.outbox.as_ref()
    }

    /// Builds the pipeline around a store and loaded definitions.
    pub fn new(store: Store, defs: Definitions, settings: &Settings, metrics: Metrics) -> Pipeline {
        let dedup = seen::Seen::new(settings.dedup.cache_capacity, settings.dedup.cache_ttl.0);
        Pipeline {
            core: Arc::new(Core {
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
            }),
            queue: Arc::new(batch::Queue::new(settings.intake.batch_max_alerts)),
        }
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.core.store
    }

    /// The `trust:` settings: the mode and approvers of rules that set none.
    pub fn trust(&self) -> &Trust {
        &self.core.trust
    }

    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.core.metrics
    }

    /// Signalled whenever a job is created, so idle workers start at once.
    pub fn wake(&self) -> Arc<Notify> {
        self.core.wake.clone()
    }

    /// The current rules and playbooks.
    pub fn definitions(&self) -> Arc<Definitions> {
        self.core.definitions()
    }

    /// Replaces the rules and playbooks (after a successful load).
    pub fn replace_definitions(&self, defs: Definitions) {
        *self
            .core
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
            let mut problems = match &self.core.outbox {
                Some(outbox) => defs.check_notify(&|n| outbox.knows(n)),
                None => Vec::new(),
            };
            // The start-up's check too: a reload must not bring in a rule nobody may approve.
            problems.extend(defs.check_approvers(&self.core.trust));
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
                self.core
                    .metrics
                    .reloads
                    .with_label_values(&["success"])
                    .inc();
                tracing::info!(
                    rules = counts.0,
                    playbooks = counts.1,
                    "rules and playbooks reloaded"
                );
                Ok(counts)
            }
            Err(problems) => {
                self.core
                    .metrics
                    .reloads
                    .with_label_values(&["failure"])
                    .inc();
                tracing::error!(problems = %problems.join("; "), "reload rejected; keeping the running rules and playbooks");
                Err(problems)
            }
        }
    }

    /// Records a webhook's alerts and decides on each. Returns once they are committed.
    pub async fn ingest(&self, payload: &Payload) -> Result<Report> {
        let now = store::now_ms();
        match self.core.prepare(payload, now, true) {
            Prepared::Done(report) => Ok(report),
            Prepared::Write(webhook) => batch::submit(&self.core, &self.queue, webhook).await,
        }
    }

    /// Decides as [`Pipeline::ingest`] would (at `sim.at`, duplicates evaluated when
    /// `sim.ignore_dedup`), then rolls everything back.
    pub async fn simulate(&self, payload: &Payload, sim: Simulation) -> Result<Report> {
        let now = sim.at.unwrap_or_else(store::now_ms);
        match self.core.prepare(payload, now, false) {
            Prepared::Done(report) => Ok(report),
            Prepared::Write(webhook) => self.core.simulate(webhook, now, sim).await,
        }
    }
}

/// A webhook after the checks that need no store: either answered already (nothing new to
/// write), or to be written.
enum Prepared {
    Done(Report),
    Write(batch::Webhook),
}

impl Core {
    /// The current rules and playbooks.
    fn definitions(&self) -> Arc<Definitions> {
        self.defs
            .read()
            .expect("definitions lock is never poisoned")
            .clone()
    }

    /// Rejects what cannot be stored and drops what the dedup cache knows (when `commit`).
    fn prepare(&self, payload: &Payload, now: i64, commit: bool) -> Prepared {
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
        let mut fresh: Vec<(Alert, DedupKey)> = Vec::with_capacity(good.len());
        for alert in good {
            let key = alert.dedup_key();
            if commit && self.dedup.contains(&key) {
                report.duplicates += 1;
                continue;
            }
            fresh.push((alert.clone(), key));
        }
        if fresh.is_empty() {
            self.metrics
                .alerts_duplicate
                .inc_by(report.duplicates as u64);
            return Prepared::Done(report);
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
        Prepared::Write(batch::Webhook {
            receiver: payload.receiver.clone(),
            group_key: payload.group_key.clone(),
            fresh,
            base: report,
        })
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
    ) -> store::Result<usize> {
        if let RuleVerdict::Job {
            job_id,
            state: store::JobState::AwaitingApproval,
            ..
        } = verdict
        {
            // Approve mode: the request goes out in the transaction that creates the job.
            let outbox = self.outbox.as_deref();
            return crate::approval::request(tx, outbox, *job_id, now).await;
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
        outbox.no_action(tx, &refused, now).await
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
