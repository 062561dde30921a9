//! Workers that take jobs from the store and move them through their states:
//! running → verifying → succeeded, or failed → escalated along the rule's chain.
//!
//! The queue *is* the store: a worker claims the next due job with a conditional UPDATE, so a
//! job is run by exactly one worker of one replica, and jobs survive restarts. Workers are
//! woken when intake creates a job and otherwise poll every `jobs.poll_interval` (which is also
//! how `waiting` jobs become due).
//!
//! A run has three possible results. `success` is then verified (the rollouts of what the
//! playbook changed, an optional health URL, optionally the alert resolving within a time);
//! `failure` (measured bad) walks the rule's escalation chain, capped at
//! `playbook.max_chain_steps`; `inconclusive` (could not measure: a script error, a timeout, an
//! unreachable cluster) goes straight to humans and never loops.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

use crate::cluster::{Cluster, Target};
use crate::config::{Jobs, PlaybookSettings};
use crate::metrics::Metrics;
use crate::notify::{self as notify_, Event, EventKind};
use crate::pipeline::Pipeline;
use crate::playbook::host::{HostSettings, Outcome, RunContext, RunInput, Runner, StepSink};
use crate::rules::Verify;
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

/// What runs playbooks: the shared engine, the cluster and the host settings.
#[derive(Clone)]
pub struct Runtime {
    /// The engine with the host API.
    pub runner: Arc<Runner>,
    /// The cluster backend.
    pub cluster: Arc<dyn Cluster>,
    /// Host API settings.
    pub host: HostSettings,
    /// Runtime limits.
    pub settings: PlaybookSettings,
    /// HTTP client (health checks).
    pub http: reqwest::Client,
}

impl Runtime {
    /// Builds the runtime around a cluster backend.
    pub fn new(cluster: Arc<dyn Cluster>, settings: PlaybookSettings) -> Runtime {
        // The one builder of playbook runs, shared with `simulate` and `test-playbook`.
        let sandbox = crate::playbook::sandbox::Sandbox::new(cluster, &settings);
        Runtime {
            runner: sandbox.runner,
            cluster: sandbox.cluster,
            host: sandbox.host,
            http: sandbox.http,
            settings,
        }
    }
}

/// The job workers of this process.
pub struct Executor {
    pipeline: Arc<Pipeline>,
    rt: Runtime,
    /// Set when the shutdown grace has passed: running playbooks stop at their next step.
    stopping: Arc<AtomicBool>,
    store: Store,
    metrics: Metrics,
    cfg: Jobs,
    owner: String,
    wake: Arc<Notify>,
}

impl Executor {
    /// Creates the executor; `owner` identifies this process in job records.
    pub fn new(pipeline: Arc<Pipeline>, cfg: Jobs, rt: Runtime) -> Executor {
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
            rt,
            stopping: Arc::new(AtomicBool::new(false)),
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
            tracing::warn!(job = job.id, rule = %job.rule, target = %job.target_key, "job interrupted (its process stopped or lost its lease); escalated to humans");
            self.metrics.jobs.with_label_values(&["interrupted"]).inc();
            self.metrics.jobs.with_label_values(&["escalated"]).inc();
            self.metrics.escalations.with_label_values(&["human"]).inc();
            self.notify_now(
                job,
                EventKind::Escalation,
                Some("interrupted: its process stopped or lost its lease while it ran; the target may be half-changed"),
            )
            .await;
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
        {
            // A replica may die mid-repair at any time, and a worker whose store writes failed
            // leaves its job behind: expired leases are interrupted and escalated, on both backends.
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
                    self.notify_started(&job).await;
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
        let lost = Arc::new(AtomicBool::new(false));
        let heartbeat = {
            let lost = lost.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(lease / 3);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    match store.heartbeat(id, &owner).await {
                        Ok(true) => {}
                        Ok(false) => {
                            tracing::error!(
                                job = id,
                                "lost the job's lease (it was interrupted elsewhere); stopping its playbook"
                            );
                            lost.store(true, Ordering::SeqCst);
                            return;
                        }
                        Err(e) => tracing::warn!(job = id, error = %e, "heartbeat failed"),
                    }
                }
            })
        };
        let result = self.run_and_verify(&job, &lost).await;
        heartbeat.abort();
        match result? {
            Some((state, outcome)) if !lost.load(Ordering::SeqCst) => {
                self.finish(&job, state, outcome).await
            }
            _ => {
                tracing::warn!(
                    job = id,
                    "the job is no longer ours; leaving it as the reaper recorded it"
                );
                Ok(())
            }
        }
    }

    /// Runs the playbook and, on success, verifies. Returns the state the job is in and how it
    /// ended, or `None` when the job stopped being ours (interrupted after a lost lease).
    async fn run_and_verify(
        &self,
        job: &Job,
        lost: &Arc<AtomicBool>,
    ) -> Result<Option<(JobState, Outcome)>> {
        let (outcome, touched) = self.execute(job, lost).await?;
        let Outcome::Success(msg) = outcome else {
            return Ok(Some((JobState::Running, outcome)));
        };
        if !self
            .store
            .transition(
                job.id,
                JobState::Running,
                JobState::Verifying,
                &format!("playbook: {msg}"),
            )
            .await?
        {
            return Ok(None);
        }
        self.metrics.jobs.with_label_values(&["verifying"]).inc();
        if job.dry_run {
            self.store
                .add_step(
                    job.id,
                    "verify",
                    "dry run: nothing changed, nothing to verify",
                )
                .await?;
            return Ok(Some((JobState::Verifying, Outcome::Success(msg))));
        }
        let verified = self.verify(job, &touched).await?;
        Ok(Some((
            JobState::Verifying,
            match verified {
                Outcome::Success(v) => Outcome::Success(format!("{msg}; {v}")),
                other => other,
            },
        )))
    }

    /// Runs the job's playbook on a blocking thread under the sandbox and the run deadline.
    async fn execute(&self, job: &Job, lost: &Arc<AtomicBool>) -> Result<(Outcome, Vec<Target>)> {
        let defs = self.pipeline.definitions();
        let Some(playbook) = defs.playbooks.get(&job.playbook).cloned() else {
            let msg = format!(
                "playbook {} is not loaded (removed by a reload?)",
                job.playbook
            );
            self.store.add_step(job.id, "load_playbook", &msg).await?;
            return Ok((Outcome::Failure(msg), Vec::new()));
        };
        let Some(alert) = self.store.alert_event(job.alert_event_id).await? else {
            let msg = format!(
                "alert event {} is missing from the store",
                job.alert_event_id
            );
            return Ok((Outcome::Inconclusive(msg), Vec::new()));
        };
        let target = Target {
            namespace: job.target_namespace.clone(),
            kind: job.target_kind.clone(),
            name: job.target_name.clone(),
        };
        let starts_at = chrono::DateTime::from_timestamp_millis(alert.starts_at)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
            .unwrap_or_default();
        let input = RunInput::new(
            &alert.labels,
            &alert.annotations,
            &alert.fingerprint,
            &starts_at,
            &alert.status,
            &job.params,
            &target,
        );
        let timeout = job
            .timeout_ms
            .and_then(|ms| u64::try_from(ms).ok())
            .map_or(self.rt.settings.timeout.0, Duration::from_millis);
        let ctx = RunContext::new(
            self.rt.cluster.clone(),
            Some(self.store.clone()),
            Some(StepSink {
                store: self.store.clone(),
                job_id: job.id,
            }),
            tokio::runtime::Handle::current(),
            job.dry_run,
            self.rt.host.clone(),
            self.rt.http.clone(),
            timeout,
        )
        .with_cancel(vec![lost.clone(), self.stopping.clone()])
        .with_event_context(
            target.clone(),
            format!(
                "job {} (rule {}, alert {} {})",
                job.id, job.rule, job.alertname, job.fingerprint
            ),
        );
        let ctx = Arc::new(match self.pipeline.outbox() {
            Some(outbox) => ctx.with_notify(
                outbox.clone(),
                job_event(EventKind::PlaybookMessage, job, &alert, store::now_ms()),
            ),
            None => ctx,
        });
        let runner = self.rt.runner.clone();
        match tokio::task::spawn_blocking(move || runner.run(&playbook, input, ctx)).await {
            Ok(result) => Ok((result.outcome, result.touched)),
            Err(e) => Ok((
                Outcome::Inconclusive(format!("the playbook run crashed: {e}")),
                Vec::new(),
            )),
        }
    }

    /// Checks that a repair the playbook calls successful really worked.
    async fn verify(&self, job: &Job, touched: &[Target]) -> Result<Outcome> {
        let v = Verify::from_json(&job.verify);
        let mut checks = Vec::new();
        if v.rollout {
            for t in touched {
                let until = tokio::time::Instant::now() + v.rollout_timeout;
                loop {
                    let status = match tokio::time::timeout(
                        self.rt.host.call_timeout,
                        self.rt.cluster.rollout_status(t),
                    )
                    .await
                    {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            return self
                                .verdict(
                                    job,
                                    Outcome::Inconclusive(format!(
                                        "could not read the rollout of {t}: {e}"
                                    )),
                                )
                                .await;
                        }
                        Err(_) => {
                            return self
                                .verdict(
                                    job,
                                    Outcome::Inconclusive(format!(
                                        "reading the rollout of {t} timed out"
                                    )),
                                )
                                .await;
                        }
                    };
                    if status.complete {
                        checks.push(format!("rollout of {t} complete"));
                        break;
                    }
                    if status.failed {
                        return self
                            .verdict(
                                job,
                                Outcome::Failure(format!(
                                    "rollout of {t} failed: {}",
                                    status.message
                                )),
                            )
                            .await;
                    }
                    if tokio::time::Instant::now() >= until {
                        return self
                            .verdict(
                                job,
                                Outcome::Failure(format!(
                                    "rollout of {t} not complete {} after the repair: {}",
                                    humantime::format_duration(v.rollout_timeout),
                                    status.message
                                )),
                            )
                            .await;
                    }
                    tokio::time::sleep(self.rt.host.rollout_poll).await;
                }
            }
        }
        if let Some(url) = &v.health_url {
            // Steps and logs show the URL without credentials or query string.
            let shown = reqwest::Url::parse(url).map_or_else(
                |_| "<invalid URL>".to_string(),
                |u| crate::playbook::host::redact(&u),
            );
            let resp = self
                .rt
                .http
                .get(url)
                .timeout(self.rt.host.call_timeout)
                .send()
                .await;
            match resp {
                Ok(r) if r.status().is_success() => {
                    checks.push(format!("{shown} answered {}", r.status().as_u16()))
                }
                Ok(r) => {
                    return self
                        .verdict(
                            job,
                            Outcome::Failure(format!(
                                "health check {shown} answered {}",
                                r.status().as_u16()
                            )),
                        )
                        .await;
                }
                Err(e) if e.is_timeout() => {
                    return self
                        .verdict(
                            job,
                            Outcome::Inconclusive(format!("health check {shown} timed out")),
                        )
                        .await;
                }
                Err(e) => {
                    return self
                        .verdict(
                            job,
                            Outcome::Failure(format!(
                                "health check {shown} failed: {}",
                                e.without_url()
                            )),
                        )
                        .await;
                }
            }
        }
        if let Some(within) = v.resolved_within {
            let since = self
                .store
                .job(job.id)
                .await?
                .and_then(|j| j.started_at)
                .unwrap_or(job.created_at);
            let until = tokio::time::Instant::now() + within;
            loop {
                if self.store.resolved_since(&job.fingerprint, since).await? {
                    checks.push("the alert resolved".to_string());
                    break;
                }
                if tokio::time::Instant::now() >= until {
                    return self
                        .verdict(
                            job,
                            Outcome::Failure(format!(
                                "the alert was still firing {} after the repair",
                                humantime::format_duration(within)
                            )),
                        )
                        .await;
                }
                tokio::time::sleep(self.cfg.poll_interval.0).await;
            }
        }
        let summary = if checks.is_empty() {
            "verified: nothing further to check".to_string()
        } else {
            format!("verified: {}", checks.join(", "))
        };
        self.verdict(job, Outcome::Success(summary)).await
    }

    async fn verdict(&self, job: &Job, outcome: Outcome) -> Result<Outcome> {
        self.store
            .add_step(
                job.id,
                "verify",
                &format!("{}: {}", outcome.kind(), outcome.message()),
            )
            .await?;
        Ok(outcome)
    }

    /// A job moved by someone else (the reaper interrupted and escalated it after a lost lease)
    /// between the run and its end: its end is theirs to record, so nothing is written or sent
    /// twice.
    async fn no_longer_ours(&self, tx: store::WriteTx, job: &Job) -> Result<()> {
        tx.rollback().await?;
        tracing::warn!(
            job = job.id,
            "the job changed state while it ran (interrupted elsewhere); leaving it as recorded"
        );
        Ok(())
    }

    async fn finish(&self, job: &Job, state: JobState, outcome: Outcome) -> Result<()> {
        let now = store::now_ms();
        // The alert, for the messages this end produces (read before the write transaction).
        let alert = match self.pipeline.outbox() {
            Some(_) => self.store.alert_event(job.alert_event_id).await?,
            None => None,
        };
        match outcome {
            Outcome::Success(msg) => {
                let mut tx = self.store.begin_write().await?;
                if !tx
                    .transition(
                        job.id,
                        state,
                        JobState::Succeeded,
                        now,
                        &msg,
                        Record::Outcome(&msg),
                    )
                    .await?
                {
                    return self.no_longer_ours(tx, job).await;
                }
                let notified = match &alert {
                    Some(alert) => {
                        let mut event = job_event(EventKind::AutoRepairSuccess, job, alert, now);
                        event.result = msg.clone();
                        self.enqueue(&mut tx, &event, &chain_routes(job), now)
                            .await?
                    }
                    None => 0,
                };
                tx.commit().await?;
                self.woken(notified);
                if let Err(e) = self.store.record_ttr_if_resolved(job.id).await {
                    tracing::warn!(job = job.id, error = %e, "recording the time to recover failed");
                }
                self.metrics.jobs.with_label_values(&["succeeded"]).inc();
                tracing::info!(job = job.id, outcome = %msg, "job succeeded");
            }
            outcome => {
                let inconclusive = matches!(outcome, Outcome::Inconclusive(_));
                let msg = format!("{}: {}", outcome.kind(), outcome.message());
                let history = self.store.chain_of(job).await?;
                // What the knowledge base remembers, for the humans this may reach.
                let hint =
                    match crate::kb::last_fix(&self.store, &job.alertname, &job.target_namespace)
                        .await
                    {
                        Ok(h) => h,
                        Err(e) => {
                            tracing::warn!(error = %e, "knowledge-base hint unavailable");
                            None
                        }
                    };
                let history = Tried {
                    jobs: &history,
                    hint: hint.as_deref(),
                };
                let steps = resolve_choices(&self.store, job).await?;
                let mut tx = self.store.begin_write().await?;
                if !tx
                    .transition(
                        job.id,
                        state,
                        JobState::Failed,
                        now,
                        &msg,
                        Record::Error(&msg),
                    )
                    .await?
                {
                    return self.no_longer_ours(tx, job).await;
                }
                let cap = i64::from(self.rt.settings.max_chain_steps);
                let routes = chain_routes(job);
                let escalated = if inconclusive {
                    to_humans(
                        &mut tx,
                        job,
                        &history,
                        &msg,
                        "the result could not be measured",
                        &routes,
                        now,
                    )
                    .await?
                } else if job.chain_index + 1 >= cap {
                    to_humans(
                        &mut tx,
                        job,
                        &history,
                        &msg,
                        &format!("the chain reached its cap of {cap} steps"),
                        &routes,
                        now,
                    )
                    .await?
                } else {
                    escalate(&mut tx, job, &steps, &history, &msg, now).await?
                };
                tx.transition(
                    job.id,
                    JobState::Failed,
                    JobState::Escalated,
                    now,
                    &escalated.summary,
                    Record::Nothing,
                )
                .await?;
                let notified = match &alert {
                    Some(alert) => {
                        let kind = if escalated.to_humans.is_some() {
                            EventKind::Escalation
                        } else {
                            EventKind::AutoRepairFailed
                        };
                        let mut event = job_event(kind, job, alert, now);
                        event.result = msg.clone();
                        event.hint = history.hint.unwrap_or_default().to_string();
                        event.steps = tried(job, history.jobs, &msg);
                        event.reason = match &escalated.to_humans {
                            Some(why) => why.clone(),
                            None => escalated.summary.clone(),
                        };
                        self.enqueue(&mut tx, &event, &escalated.routes, now)
                            .await?
                    }
                    None => 0,
                };
                tx.commit().await?;
                self.woken(notified);
                self.metrics.jobs.with_label_values(&["failed"]).inc();
                self.metrics.jobs.with_label_values(&["escalated"]).inc();
                for kind in &escalated.kinds {
                    self.metrics.escalations.with_label_values(&[kind]).inc();
                }
                if escalated.next_job.is_some() {
                    self.metrics.jobs.with_label_values(&["queued"]).inc();
                    self.wake.notify_one();
                }
                tracing::warn!(job = job.id, error = %msg, escalation = %escalated.summary, "job did not repair; escalated");
            }
        }
        Ok(())
    }

    async fn enqueue(
        &self,
        tx: &mut store::WriteTx,
        event: &Event,
        explicit: &[String],
        now: i64,
    ) -> Result<usize> {
        match self.pipeline.outbox() {
            Some(outbox) => Ok(outbox.enqueue(tx, event, explicit, now).await?),
            None => Ok(0),
        }
    }

    fn woken(&self, notified: usize) {
        if notified > 0
            && let Some(outbox) = self.pipeline.outbox()
        {
            outbox.wake();
        }
    }

    /// Tells the routes that a job started (in its own transaction: the claim committed).
    async fn notify_started(&self, job: &Job) {
        self.notify_now(job, EventKind::RepairStarted, None).await;
    }

    /// Enqueues a job event in a transaction of its own (after a claim or a reap committed);
    /// with `interrupted`, an escalation listing the chain so far. Failures are logged.
    async fn notify_now(&self, job: &Job, kind: EventKind, interrupted: Option<&str>) {
        let Some(outbox) = self.pipeline.outbox() else {
            return;
        };
        let result = async {
            let Some(alert) = self.store.alert_event(job.alert_event_id).await? else {
                return Ok::<usize, crate::notify::Error>(0);
            };
            let mut event = job_event(kind, job, &alert, store::now_ms());
            let mut explicit = Vec::new();
            if let Some(reason) = interrupted {
                let history = self.store.chain_of(job).await?;
                event.steps = tried(job, &history, reason);
                event.reason = reason.to_string();
                event.result = reason.to_string();
                explicit = chain_routes(job);
            }
            outbox.enqueue_now(&self.store, &event, &explicit).await
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(job = job.id, event = kind.as_str(), error = %e, "enqueueing a notification failed");
        }
    }

    /// Waits for `wake` or a poll tick; used by tests that drive the executor directly.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Stops running playbooks at their next step (after the shutdown grace). Their jobs stay
    /// `running` and are interrupted and escalated at the next start.
    pub fn stop_running_playbooks(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    /// How long shutdown waits for running jobs.
    pub fn shutdown_grace(&self) -> Duration {
        self.cfg.shutdown_grace.0
    }
}

/// The message fields every job event shares: the alert's app, problem and links, the
/// target, the playbook, and how long the job has run.
fn job_event(kind: EventKind, job: &Job, alert: &store::StoredAlert, now: i64) -> Event {
    let generator = &alert.generator_url;
    let mut event = Event::for_alert(kind, &alert.labels, &alert.annotations, generator);
    if event.app.is_empty() {
        event.app = job.target_name.clone();
    }
    if event.namespace.is_empty() {
        event.namespace = job.target_namespace.clone();
    }
    if event.alertname.is_empty() {
        event.alertname = job.alertname.clone();
        event.problem = job.alertname.clone();
    }
    event.target = job.target_key.clone();
    event.action = job.playbook.clone();
    event.job_id = Some(job.id);
    event.rule = job.rule.clone();
    if let Some(started) = job.started_at
        && now > started
    {
        let d = std::time::Duration::from_secs(u64::try_from((now - started) / 1000).unwrap_or(0));
        event.duration = humantime::format_duration(d).to_string();
    }
    event
}

/// Each job of the chain and how it ended (the current one by `reason`).
fn tried(job: &Job, jobs: &[Job], reason: &str) -> Vec<notify_::Tried> {
    jobs.iter()
        .map(|j| notify_::Tried {
            job: j.id,
            playbook: j.playbook.clone(),
            result: if j.id == job.id {
                reason.to_string()
            } else {
                j.error
                    .clone()
                    .or_else(|| j.outcome.clone())
                    .unwrap_or_else(|| j.state.to_string())
            },
        })
        .collect()
}

/// Every notify route named in a job's chain: the humans to tell when automation gives up.
fn chain_routes(job: &Job) -> Vec<String> {
    job.escalate
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.get("notify").and_then(|r| r.as_str()).map(String::from))
        .collect()
}

/// What an escalation tells humans: the chain's jobs so far, and the knowledge base's hint.
struct Tried<'a> {
    jobs: &'a [Job],
    hint: Option<&'a str>,
}

struct Escalated {
    summary: String,
    kinds: Vec<&'static str>,
    next_job: Option<i64>,
    /// Routes (or channels) the chain named for this hand-off.
    routes: Vec<String>,
    /// Why it went to humans, when it did.
    to_humans: Option<String>,
}

/// Walks the job's chain from its position: records notify steps, creates the next playbook
/// job, and hands to humans when the chain holds no further playbook.
/// The job's chain with every `choose: best` step replaced by the alternative the knowledge
/// base favours: the best success rate for this alert over the last 30 days. An alternative
/// that never worked ranks below an untried one; ties and cold starts keep chain order.
async fn resolve_choices(store: &Store, job: &Job) -> Result<Vec<serde_json::Value>> {
    let mut steps = job.escalate.as_array().cloned().unwrap_or_default();
    let since = store::now_ms() - 30 * 24 * 3_600_000;
    for step in steps.iter_mut() {
        if step.get("choose").and_then(|c| c.as_str()) != Some("best") {
            continue;
        }
        let alternatives = step
            .get("from")
            .and_then(|f| f.as_array())
            .cloned()
            .unwrap_or_default();
        let mut best: Option<(f64, serde_json::Value, String)> = None;
        let mut seen = Vec::new();
        for alt in alternatives {
            let Some(playbook) = alt
                .get("playbook")
                .and_then(|p| p.as_str())
                .map(String::from)
            else {
                continue;
            };
            let rate = store.success_rate(&playbook, &job.alertname, since).await?;
            let score = match rate {
                Some(r) if r > 0.0 => r,
                Some(_) => -1.0,
                None => 0.0,
            };
            seen.push(match rate {
                Some(r) => format!("{playbook} {:.0}%", r * 100.0),
                None => format!("{playbook} untried"),
            });
            if best.as_ref().is_none_or(|(s, _, _)| score > *s) {
                best = Some((score, alt.clone(), playbook));
            }
        }
        if let Some((_, mut chosen, playbook)) = best {
            chosen["chosen"] = serde_json::json!(format!(
                "chose {playbook} by success rate for {} ({})",
                job.alertname,
                seen.join(", ")
            ));
            *step = chosen;
        }
    }
    Ok(steps)
}

async fn escalate(
    tx: &mut store::WriteTx,
    job: &Job,
    steps: &[serde_json::Value],
    history: &Tried<'_>,
    reason: &str,
    now: i64,
) -> Result<Escalated> {
    let mut kinds = Vec::new();
    let mut parts = Vec::new();
    let mut routes: Vec<String> = Vec::new();
    let start = usize::try_from(job.chain_index).unwrap_or(usize::MAX);
    for (i, step) in steps.iter().enumerate().skip(start) {
        if let Some(route) = step.get("notify").and_then(|r| r.as_str()) {
            routes.push(route.to_string());
            continue;
        }
        let Some(playbook) = step.get("playbook").and_then(|p| p.as_str()) else {
            continue;
        };
        if tx.storm_open().await? {
            // A storm pauses every automatic action, chains already in flight included.
            let mut all = routes.clone();
            all.extend(
                chain_routes(job)
                    .into_iter()
                    .filter(|r| !routes.contains(r)),
            );
            return to_humans(
                tx,
                job,
                history,
                reason,
                "the storm brake is engaged",
                &all,
                now,
            )
            .await;
        }
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
            verify: job.verify.clone(),
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
                // Routes met on the way are told that this step failed and what runs next.
                let note = format!("{reason}; next step: {playbook}");
                for route in &routes {
                    tx.insert_escalation(&NewEscalation::for_job(job, "notify", route, &note), now)
                        .await?;
                    kinds.push("notify");
                    parts.push(format!("notified {route}"));
                }
                let why = match step.get("chosen").and_then(|c| c.as_str()) {
                    Some(chosen) => format!("{reason}; {chosen}"),
                    None => reason.to_string(),
                };
                tx.insert_escalation(
                    &NewEscalation::for_job(job, "playbook", playbook, &why),
                    now,
                )
                .await?;
                kinds.push("playbook");
                parts.push(format!("next step: job {id} runs {playbook}"));
                return Ok(Escalated {
                    summary: parts.join("; "),
                    kinds,
                    next_job: Some(id),
                    routes,
                    to_humans: None,
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
    let mut out = to_humans(
        tx,
        job,
        history,
        reason,
        "the escalation chain is exhausted",
        &routes,
        now,
    )
    .await?;
    parts.append(&mut vec![out.summary]);
    kinds.append(&mut out.kinds);
    out.summary = parts.join("; ");
    out.kinds = kinds;
    Ok(out)
}

/// "Manual intervention required", with everything the chain tried, to the chain's notify
/// routes, or to the default human route when it names none.
async fn to_humans(
    tx: &mut store::WriteTx,
    job: &Job,
    history: &Tried<'_>,
    reason: &str,
    why: &str,
    routes: &[String],
    now: i64,
) -> Result<Escalated> {
    let tried: Vec<String> = tried(job, history.jobs, reason)
        .iter()
        .map(|t| format!("job {} {} → {}", t.job, t.playbook, t.result))
        .collect();
    let mut text = format!(
        "manual intervention required on {}: {why}. Tried: {}",
        job.target_key,
        tried.join("; ")
    );
    if let Some(hint) = history.hint {
        text.push_str(&format!(". Knowledge base: {hint}"));
    }
    if routes.is_empty() {
        tx.insert_escalation(&NewEscalation::for_job(job, "human", "default", &text), now)
            .await?;
        return Ok(Escalated {
            summary: format!("handed to humans ({why})"),
            kinds: vec!["human"],
            next_job: None,
            routes: Vec::new(),
            to_humans: Some(why.to_string()),
        });
    }
    for route in routes {
        tx.insert_escalation(&NewEscalation::for_job(job, "notify", route, &text), now)
            .await?;
    }
    Ok(Escalated {
        summary: format!("handed to humans via {} ({why})", routes.join(", ")),
        kinds: vec!["notify"; routes.len()],
        next_job: None,
        routes: routes.to_vec(),
        to_humans: Some(why.to_string()),
    })
}
