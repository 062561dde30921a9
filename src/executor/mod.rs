//! Workers that take jobs from the store and move them through their states:
//! running → verifying → succeeded, or failed → escalated along the rule's chain.
//!
//! The queue *is* the store: a worker claims the next due job with a conditional UPDATE, so a
//! job is run by exactly one worker of one replica, and jobs survive restarts. Workers are
//! woken when intake creates a job and otherwise poll every `jobs.poll_interval` (which is also
//! how `waiting` jobs become due).
//!
//! Execution of the playbook itself arrives with the playbook engine; until then every job
//! takes the dry-run outcome: the plan is recorded as a step and nothing touches a cluster.
//! The states, transitions, steps and escalations recorded are the real ones.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

use crate::config::Jobs;
use crate::metrics::Metrics;
use crate::pipeline::Pipeline;
use crate::store::{self, Job, JobState, NewEscalation, NewJob, Record, Store};

/// Executor failures (all come from the store; a worker logs them and carries on).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] store::Error),
}

/// `type Result<T, E = Error>` as in every module of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How a run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Repaired (and verified).
    Success(String),
    /// Did not work; escalate.
    Failure(String),
}

/// The job workers of this process.
pub struct Executor {
    pipeline: Arc<Pipeline>,
    store: Store,
    metrics: Metrics,
    cfg: Jobs,
    owner: String,
    wake: Arc<Notify>,
}

impl Executor {
    /// Creates the executor; `owner` identifies this process in job records.
    pub fn new(pipeline: Arc<Pipeline>, cfg: Jobs) -> Executor {
        let owner = format!(
            "{}-{}",
            std::env::var("HOSTNAME").unwrap_or_else(|_| "aiops".into()),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        Executor {
            store: pipeline.store().clone(),
            metrics: pipeline.metrics().clone(),
            wake: pipeline.wake(),
            pipeline,
            cfg,
            owner,
        }
    }

    /// This process's owner id.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Start-up recovery: jobs left running by a dead process become `interrupted` and are
    /// escalated to humans. They are never re-run: the cluster may be half-changed, and a
    /// person must look. On SQLite every running job is orphaned (one process owns the file);
    /// on PostgreSQL only those whose lease expired.
    pub async fn recover(&self) -> Result<usize> {
        let all = self.store.backend() == store::Backend::Sqlite;
        self.reap(all).await
    }

    async fn reap(&self, all: bool) -> Result<usize> {
        let jobs = self
            .store
            .interrupt_orphans(store::now_ms(), store::ms(self.cfg.lease.0), all)
            .await?;
        for job in &jobs {
            self.metrics.jobs.with_label_values(&["interrupted"]).inc();
            tracing::warn!(job = job.id, rule = %job.rule, target = %job.target_key, "job interrupted by a stopped process; escalating");
            let reason = format!(
                "job {} ({} on {}) was interrupted while running; the target may be half-repaired, a person must check",
                job.id, job.playbook, job.target_key
            );
            let mut tx = self.store.begin_write().await?;
            let now = store::now_ms();
            tx.insert_escalation(
                &NewEscalation::for_job(job, "human", "default", &reason),
                now,
            )
            .await?;
            tx.transition(
                job.id,
                JobState::Interrupted,
                JobState::Escalated,
                now,
                "escalated to humans",
                Record::Nothing,
            )
            .await?;
            tx.commit().await?;
            self.metrics.escalations.with_label_values(&["human"]).inc();
            self.metrics.jobs.with_label_values(&["escalated"]).inc();
        }
        Ok(jobs.len())
    }

    /// Starts the workers; they stop claiming when `shutdown` becomes true and return after
    /// finishing the job in hand.
    pub fn spawn(self: &Arc<Self>, shutdown: watch::Receiver<bool>) -> JoinSet<()> {
        let mut set = JoinSet::new();
        for i in 0..self.cfg.workers {
            let me = self.clone();
            let rx = shutdown.clone();
            set.spawn(async move { me.worker(i, rx).await });
        }
        if self.store.backend() == store::Backend::Postgres {
            // Another replica may die mid-repair at any time: look for expired leases.
            let me = self.clone();
            let mut rx = shutdown;
            set.spawn(async move {
                let mut tick = tokio::time::interval(me.cfg.lease.0 / 2);
                loop {
                    tokio::select! {
                        _ = tick.tick() => {
                            if let Err(e) = me.reap(false).await {
                                tracing::error!(error = %e, "lease reaper failed");
                            }
                        }
                        _ = rx.changed() => if *rx.borrow() { return },
                    }
                }
            });
        }
        set
    }

    async fn worker(&self, index: usize, mut shutdown: watch::Receiver<bool>) {
        loop {
            if *shutdown.borrow() {
                return;
            }
            // Register interest before looking, so a wake between the look and the wait is kept.
            let notified = self.wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match self.store.claim_next(&self.owner, store::now_ms()).await {
                Ok(Some(job)) => {
                    self.metrics.jobs.with_label_values(&["running"]).inc();
                    self.refresh_depth().await;
                    tracing::info!(worker = index, job = job.id, rule = %job.rule, playbook = %job.playbook, target = %job.target_key, "job started");
                    if let Err(e) = self.run(job).await {
                        tracing::error!(error = %e, "recording a job's progress failed; it will be reaped as interrupted");
                    }
                    continue;
                }
                Ok(None) => {}
                Err(e) => tracing::error!(worker = index, error = %e, "claiming a job failed"),
            }
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep(self.cfg.poll_interval.0) => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    async fn refresh_depth(&self) {
        if let Ok(n) = self.store.pending_count().await {
            self.metrics.queue_depth.set(n);
        }
    }

    /// Runs one claimed job to a terminal state, keeping its lease alive meanwhile.
    async fn run(&self, job: Job) -> Result<()> {
        let store = self.store.clone();
        let owner = self.owner.clone();
        let id = job.id;
        let lease = self.cfg.lease.0;
        let heartbeat = tokio::spawn(async move {
            let mut tick = tokio::time::interval(lease / 3);
            tick.tick().await;
            loop {
                tick.tick().await;
                if let Err(e) = store.heartbeat(id, &owner).await {
                    tracing::warn!(job = id, error = %e, "heartbeat failed");
                }
            }
        });
        let result = self.execute(&job).await;
        heartbeat.abort();
        let outcome = result?;
        self.finish(&job, outcome).await
    }

    /// The dry-run execution: records the plan as a step. Fails (and so escalates) only when
    /// the playbook has disappeared since the job was created (a reload removed it).
    async fn execute(&self, job: &Job) -> Result<Outcome> {
        let defs = self.pipeline.definitions();
        if !defs.playbooks.contains(&job.playbook) {
            let msg = format!(
                "playbook {} is not loaded (removed by a reload?)",
                job.playbook
            );
            self.store.add_step(job.id, "load_playbook", &msg).await?;
            return Ok(Outcome::Failure(msg));
        }
        let why = if job.dry_run {
            "the rule is dry_run"
        } else {
            "playbook execution is not enabled in this build"
        };
        let detail = format!(
            "would run playbook {} on {} with params {} ({why}; nothing was changed)",
            job.playbook, job.target_key, job.params
        );
        self.store.add_step(job.id, "dry_run", &detail).await?;
        Ok(Outcome::Success(
            "dry run: plan recorded, nothing changed".into(),
        ))
    }

    async fn finish(&self, job: &Job, outcome: Outcome) -> Result<()> {
        match outcome {
            Outcome::Success(msg) => {
                let now = store::now_ms();
                let mut tx = self.store.begin_write().await?;
                tx.transition(
                    job.id,
                    JobState::Running,
                    JobState::Verifying,
                    now,
                    "playbook finished",
                    Record::Nothing,
                )
                .await?;
                let note = if msg.starts_with("dry run") {
                    "dry run: nothing to verify"
                } else {
                    "verified"
                };
                tx.transition(
                    job.id,
                    JobState::Verifying,
                    JobState::Succeeded,
                    now,
                    note,
                    Record::Outcome(&msg),
                )
                .await?;
                tx.commit().await?;
                self.metrics.jobs.with_label_values(&["verifying"]).inc();
                self.metrics.jobs.with_label_values(&["succeeded"]).inc();
                tracing::info!(job = job.id, outcome = %msg, "job succeeded");
            }
            Outcome::Failure(msg) => {
                let now = store::now_ms();
                let mut tx = self.store.begin_write().await?;
                tx.transition(
                    job.id,
                    JobState::Running,
                    JobState::Failed,
                    now,
                    &msg,
                    Record::Error(&msg),
                )
                .await?;
                let escalated = escalate(&mut tx, job, &msg, now).await?;
                tx.transition(
                    job.id,
                    JobState::Failed,
                    JobState::Escalated,
                    now,
                    &escalated.summary,
                    Record::Nothing,
                )
                .await?;
                tx.commit().await?;
                self.metrics.jobs.with_label_values(&["failed"]).inc();
                self.metrics.jobs.with_label_values(&["escalated"]).inc();
                for kind in &escalated.kinds {
                    self.metrics.escalations.with_label_values(&[kind]).inc();
                }
                if escalated.next_job.is_some() {
                    self.metrics.jobs.with_label_values(&["queued"]).inc();
                    self.wake.notify_one();
                }
                tracing::warn!(job = job.id, error = %msg, escalation = %escalated.summary, "job failed");
            }
        }
        Ok(())
    }

    /// Waits for `wake` or a poll tick; used by tests that drive the executor directly.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// How long shutdown waits for running jobs.
    pub fn shutdown_grace(&self) -> Duration {
        self.cfg.shutdown_grace.0
    }
}

struct Escalated {
    summary: String,
    kinds: Vec<&'static str>,
    next_job: Option<i64>,
}

/// Walks the job's chain from its position: records notify steps, creates the next playbook
/// job, and hands to humans when the chain holds no further playbook.
async fn escalate(tx: &mut store::WriteTx, job: &Job, reason: &str, now: i64) -> Result<Escalated> {
    let steps = job.escalate.as_array().cloned().unwrap_or_default();
    let mut kinds = Vec::new();
    let mut parts = Vec::new();
    let start = usize::try_from(job.chain_index).unwrap_or(usize::MAX);
    for (i, step) in steps.iter().enumerate().skip(start) {
        if let Some(route) = step.get("notify").and_then(|r| r.as_str()) {
            tx.insert_escalation(&NewEscalation::for_job(job, "notify", route, reason), now)
                .await?;
            kinds.push("notify");
            parts.push(format!("notified {route}"));
            continue;
        }
        let Some(playbook) = step.get("playbook").and_then(|p| p.as_str()) else {
            continue;
        };
        let next = NewJob {
            alert_event_id: job.alert_event_id,
            fingerprint: job.fingerprint.clone(),
            alertname: job.alertname.clone(),
            rule: job.rule.clone(),
            playbook: playbook.to_string(),
            params: step
                .get("params")
                .cloned()
                .unwrap_or_else(|| serde_json::json!({})),
            escalate: job.escalate.clone(),
            chain_index: i64::try_from(i + 1).unwrap_or(i64::MAX),
            parent_id: Some(job.id),
            target_namespace: job.target_namespace.clone(),
            target_kind: job.target_kind.clone(),
            target_name: job.target_name.clone(),
            dry_run: job.dry_run,
            timeout_ms: job.timeout_ms,
            not_before: now,
        };
        match tx.insert_job(&next, now).await? {
            Some((id, _)) => {
                tx.insert_escalation(
                    &NewEscalation::for_job(job, "playbook", playbook, reason),
                    now,
                )
                .await?;
                kinds.push("playbook");
                parts.push(format!("next step: job {id} runs {playbook}"));
                return Ok(Escalated {
                    summary: parts.join("; "),
                    kinds,
                    next_job: Some(id),
                });
            }
            None => {
                parts.push(format!(
                    "next step {playbook} blocked: another repair holds the target"
                ));
                break;
            }
        }
    }
    if kinds.contains(&"notify") {
        // The chain's own notification routes are the humans to tell.
        return Ok(Escalated {
            summary: parts.join("; "),
            kinds,
            next_job: None,
        });
    }
    let why = format!("automatic repair exhausted ({reason}); manual intervention required");
    tx.insert_escalation(&NewEscalation::for_job(job, "human", "default", &why), now)
        .await?;
    kinds.push("human");
    parts.push("handed to humans".into());
    Ok(Escalated {
        summary: parts.join("; "),
        kinds,
        next_job: None,
    })
}
