//! The last transaction of a job: `succeeded` with its messages, `failed` → `escalated` with
//! the escalation [`plan`](super::escalate::plan) decided, or `reverted` (a change another
//! field manager set back) with its hand-off to humans and `auto_repair_reverted`; and the
//! messages enqueued outside it (a job started, a job interrupted).

use super::escalate::{self, Ended, History, Past};
use super::run::JobEnd;
use super::{Executor, Result};
use crate::notify::{Event, EventKind, GitopsReport};
use crate::playbook::host::Outcome;
use crate::store::{self, Job, JobState, Record};

/// How far back `choose: best` looks at success rates.
const RATES_WINDOW_MS: i64 = 30 * 24 * 3_600_000;

impl Executor {
    /// Opens the job's last transaction with its move `from` → `to` (the job's note is the
    /// outcome or error recorded); `counted` false keeps it out of the knowledge base (a run
    /// that never made its change). `None` when the job was moved by someone else (the reaper
    /// interrupted and escalated it after a lost lease) between the run and its end: its end is
    /// theirs to record, so nothing is written or sent twice.
    async fn end(
        &self,
        job: &Job,
        (from, to): (JobState, JobState),
        record: Record<'_>,
        counted: bool,
        now: i64,
    ) -> Result<Option<store::WriteTx>> {
        let note = match record {
            Record::Outcome(text) | Record::Error(text) => text,
            Record::Nothing => "",
        };
        let mut tx = self.store.begin_write().await?;
        // The firing row before the rollups `transition` touches: the lock order of a resolve.
        tx.lock_alert_event(job.alert_event_id).await?;
        let moved = if counted {
            tx.transition(job.id, from, to, now, note, record).await?
        } else {
            tx.transition_not_counted(job.id, (from, to), now, note, record)
                .await?
        };
        if moved {
            return Ok(Some(tx));
        }
        tx.rollback().await?;
        tracing::warn!(
            job = job.id,
            "the job changed state while it ran (interrupted elsewhere); leaving it as recorded"
        );
        Ok(None)
    }

    /// Moves a job from `state` to its end: `succeeded`; `failed` then `escalated` (a
    /// failure, an inconclusive result, or a change skipped for its GitOps owner); or
    /// `reverted`.
    pub(super) async fn finish(&self, job: &Job, state: JobState, end: JobEnd) -> Result<()> {
        let now = store::now_ms();
        // The alert, for the messages this end produces (read before the write transaction).
        let alert = match self.pipeline.outbox() {
            Some(_) => self.store.alert_event(job.alert_event_id).await?,
            None => None,
        };
        let handoff = match end {
            JobEnd::Outcome(Outcome::Success(msg)) => {
                return self.succeed(job, state, &msg, alert, now).await;
            }
            JobEnd::Outcome(outcome) => Handoff {
                ended: if matches!(outcome, Outcome::Failure(_)) {
                    Ended::Failure
                } else {
                    Ended::Inconclusive
                },
                msg: format!("{}: {}", outcome.kind(), outcome.message()),
                gitops: None,
            },
            JobEnd::Skipped(skipped) => Handoff {
                ended: Ended::Skipped,
                msg: format!(
                    "skipped: {}; make the change {}",
                    skipped.reason, skipped.change
                ),
                gitops: Some(GitopsReport {
                    owner: skipped.change.owner.to_string(),
                    change: skipped.change.instruction(),
                    ..GitopsReport::default()
                }),
            },
            JobEnd::Reverted(revert) => Handoff {
                ended: Ended::Reverted,
                msg: format!("reverted: {}", revert.message()),
                gitops: Some(GitopsReport {
                    owner: revert.owner_text(),
                    change: revert.change(),
                    reverted_by: revert.reverted_by.join(", "),
                    ..GitopsReport::default()
                }),
            },
        };
        self.hand_off(job, state, handoff, alert, now).await
    }

    /// The end of a job that did not repair: `failed` → `escalated` along the
    /// [`plan`](escalate::plan), or `reverted` with its hand-off to humans, each in one
    /// transaction with the escalation rows and the messages.
    async fn hand_off(
        &self,
        job: &Job,
        state: JobState,
        handoff: Handoff,
        alert: Option<store::StoredAlert>,
        now: i64,
    ) -> Result<()> {
        let Handoff { ended, msg, gitops } = handoff;
        let chain = self.store.chain_of(job).await?;
        // What the knowledge base remembers, for the humans this may reach.
        let hint =
            match crate::kb::last_fix(&self.store, &job.alertname, &job.target_namespace).await {
                Ok(h) => h,
                Err(e) => {
                    tracing::warn!(error = %e, "knowledge-base hint unavailable");
                    None
                }
            };
        let past = Past {
            jobs: &chain,
            hint: hint.as_deref(),
        };
        let position = usize::try_from(job.chain_index).unwrap_or(usize::MAX);
        let mut history = History {
            position,
            cap: usize::try_from(self.rt.settings.max_chain_steps).unwrap_or(usize::MAX),
            alertname: &job.alertname,
            ..History::default()
        };
        if ended == Ended::Failure {
            let since = now - RATES_WINDOW_MS;
            for playbook in escalate::alternatives(&job.spec, position) {
                let rate = self
                    .store
                    .success_rate(&playbook, &job.alertname, since)
                    .await?;
                history.rates.insert(playbook, rate);
            }
        }
        // A reverted repair ends in its own state; every other end is `failed` → `escalated`.
        let to = if ended == Ended::Reverted {
            JobState::Reverted
        } else {
            JobState::Failed
        };
        // A skipped run made no change: the knowledge base does not count it (kb module doc).
        let counted = ended != Ended::Skipped;
        let Some(mut tx) = self
            .end(job, (state, to), Record::Error(&msg), counted, now)
            .await?
        else {
            return Ok(());
        };
        if ended == Ended::Failure {
            history.storm_open = tx.storm_open().await?;
        }
        let plan = escalate::plan(&job.spec, ended, &history);
        let escalated = escalate::apply(&mut tx, job, &plan, &past, &msg, now).await?;
        if to == JobState::Failed {
            tx.transition(
                job.id,
                JobState::Failed,
                JobState::Escalated,
                now,
                &escalated.summary,
                Record::Nothing,
            )
            .await?;
        }
        let notified = match &alert {
            Some(alert) => {
                let kind = if ended == Ended::Reverted {
                    EventKind::AutoRepairReverted
                } else if escalated.to_humans.is_some() {
                    EventKind::Escalation
                } else {
                    EventKind::AutoRepairFailed
                };
                let mut event = job_event(kind, job, alert, now);
                event.result = msg.clone();
                event.hint = hint.unwrap_or_default();
                event.steps = escalate::tried(job, &chain, &msg);
                event.reason = match &escalated.to_humans {
                    Some(why) => why.clone(),
                    None => escalated.summary.clone(),
                };
                event.gitops = gitops;
                self.enqueue(&mut tx, &event, &escalated.routes, now)
                    .await?
                    + self.recovered(&mut tx, alert, now).await?
            }
            None => 0,
        };
        // A chain in approve mode: the next step waits for its own approval.
        let notified = notified
            + match escalated.next_job {
                Some(id) => {
                    let outbox = self.pipeline.outbox().map(|o| o.as_ref());
                    crate::approval::request(&mut tx, outbox, id, now).await?
                }
                None => 0,
            };
        tx.commit().await?;
        self.woken(notified);
        self.metrics.jobs.entered(to.as_str(), job.spec.mode);
        if to == JobState::Failed {
            self.metrics.jobs.entered("escalated", job.spec.mode);
        }
        // Real hand-offs only: a shadow chain's are evidence, counted under mode="shadow" in
        // aiops_jobs_total, and must not page anyone through an escalation alert.
        if job.spec.mode != crate::rules::Mode::Shadow {
            for kind in &escalated.kinds {
                self.metrics.escalations.with_label_values(&[kind]).inc();
            }
        }
        if escalated.next_job.is_some() {
            // The next step is of the same chain, so of the same mode (`JobSpec::next`).
            self.metrics.jobs.entered("queued", job.spec.mode);
            self.wake.notify_one();
        }
        tracing::warn!(job = job.id, state = to.as_str(), error = %msg, escalation = %escalated.summary, "job did not repair; escalated");
        Ok(())
    }

    /// `succeeded`, its message, then the time to recover if the alert already resolved.
    async fn succeed(
        &self,
        job: &Job,
        state: JobState,
        msg: &str,
        alert: Option<store::StoredAlert>,
        now: i64,
    ) -> Result<()> {
        let Some(mut tx) = self
            .end(
                job,
                (state, JobState::Succeeded),
                Record::Outcome(msg),
                true,
                now,
            )
            .await?
        else {
            return Ok(());
        };
        let notified = match &alert {
            Some(alert) => {
                let mut event = job_event(EventKind::AutoRepairSuccess, job, alert, now);
                event.result = msg.to_string();
                self.enqueue(&mut tx, &event, &job.spec.routes(), now)
                    .await?
                    + self.recovered(&mut tx, alert, now).await?
            }
            None => 0,
        };
        tx.commit().await?;
        self.woken(notified);
        if let Err(e) = self.store.record_ttr_if_resolved(job.id).await {
            tracing::warn!(job = job.id, error = %e, "recording the time to recover failed");
        }
        self.metrics.jobs.entered("succeeded", job.spec.mode);
        tracing::info!(job = job.id, outcome = %msg, "job succeeded");
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

    /// `alert_recovered`, when the alert resolved while this repair ran and it was the
    /// occurrence's last active one (the resolve's transaction saw it active and left the
    /// message to this one; see `Outbox::recovered`).
    async fn recovered(
        &self,
        tx: &mut store::WriteTx,
        alert: &store::StoredAlert,
        now: i64,
    ) -> Result<usize> {
        let Some(outbox) = self.pipeline.outbox() else {
            return Ok(0);
        };
        let resolved = crate::notify::Resolved {
            labels: &alert.labels,
            annotations: &alert.annotations,
            generator_url: &alert.generator_url,
            fingerprint: &alert.fingerprint,
            starts_at: alert.starts_at,
        };
        Ok(outbox.recovered(tx, &resolved, now).await?)
    }

    fn woken(&self, notified: usize) {
        if notified > 0
            && let Some(outbox) = self.pipeline.outbox()
        {
            outbox.wake();
        }
    }

    /// Enqueues a job event in a transaction of its own (after a claim or a reap committed);
    /// with `interrupted`, an escalation listing the chain so far to the hand-off's routes.
    /// Failures are logged.
    pub(super) async fn notify_now(
        &self,
        job: &Job,
        kind: EventKind,
        interrupted: Option<&escalate::Handoff>,
    ) {
        let Some(outbox) = self.pipeline.outbox() else {
            return;
        };
        let result = async {
            let Some(alert) = self.store.alert_event(job.alert_event_id).await? else {
                return Ok::<usize, crate::notify::Error>(0);
            };
            let mut event = job_event(kind, job, &alert, store::now_ms());
            let mut explicit: &[String] = &[];
            if let Some(handoff) = interrupted {
                let chain = self.store.chain_of(job).await?;
                event.steps = escalate::tried(job, &chain, &handoff.why);
                event.reason = handoff.why.clone();
                event.result = handoff.why.clone();
                explicit = &handoff.routes;
            }
            outbox.enqueue_now(&self.store, &event, explicit).await
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(job = job.id, event = kind.as_str(), error = %e, "enqueueing a notification failed");
        }
    }
}

/// How a job that did not repair ended, for [`Executor::hand_off`].
struct Handoff {
    /// For the escalation plan.
    ended: Ended,
    /// The job's error and the escalation's reason.
    msg: String,
    /// The owner and the Git change, for a GitOps end (skipped, reverted).
    gitops: Option<GitopsReport>,
}

/// The message fields every job event shares: the alert's app, problem and links, the
/// target, the playbook, and how long the job has run.
pub(super) fn job_event(kind: EventKind, job: &Job, alert: &store::StoredAlert, now: i64) -> Event {
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
    event.mode = job.spec.mode.as_str().to_string();
    if let Some(started) = job.started_at
        && now > started
    {
        let d = std::time::Duration::from_secs(u64::try_from((now - started) / 1000).unwrap_or(0));
        event.duration = humantime::format_duration(d).to_string();
    }
    event
}
