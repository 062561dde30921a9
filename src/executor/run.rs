//! One claimed job's playbook, run on a blocking thread under the sandbox and the run deadline,
//! then verified (and its changes watched for a revert) when it reports success.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use super::finish::job_event;
use super::verify::{Revert, Verified};
use super::{Executor, Result};
use crate::cluster::Target;
use crate::notify::EventKind;
use crate::playbook::host::{GitopsRun, Outcome, RunContext, RunInput, Skipped, StepSink};
use crate::store::{self, Job, JobState};

/// How a job's run and verification ended, for its last transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum JobEnd {
    /// The playbook's (or its verification's) outcome.
    Outcome(Outcome),
    /// Verification found a changed field set back by someone else.
    Reverted(Box<Revert>),
    /// The run stopped before a change its target's GitOps owner keeps in Git (`gitops:
    /// skip`, or a hold that was not possible). The run's own outcome only says the same.
    Skipped(Skipped),
}

impl Executor {
    /// Runs the playbook and, on success, verifies. Returns the state the job is in and how it
    /// ended, or `None` when the job stopped being ours (interrupted after a lost lease).
    pub(super) async fn run_and_verify(
        &self,
        job: &Job,
        lost: &Arc<AtomicBool>,
    ) -> Result<Option<(JobState, JobEnd)>> {
        let (outcome, touched, gitops) = self.execute(job, lost).await?;
        let outcome = match gitops.skipped {
            // A dry run would not have made the change anyway: it ends as every dry run does
            // (below), its steps and outcome saying "would stop here: …". Paging humans to
            // change Git for a rehearsal (a shadow rule) would be noise.
            Some(_) if job.dry_run => Outcome::Success(outcome.message().to_string()),
            // Whatever the playbook made of it, the change it needed was not made: humans
            // (with the Git change), never the chain's next step.
            Some(skipped) => return Ok(Some((JobState::Running, JobEnd::Skipped(skipped)))),
            None => outcome,
        };
        let Outcome::Success(msg) = outcome else {
            return Ok(Some((JobState::Running, JobEnd::Outcome(outcome))));
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
        self.metrics.jobs.entered("verifying", job.spec.mode);
        if job.dry_run {
            self.store
                .add_step(
                    job.id,
                    "verify",
                    "dry run: nothing changed, nothing to verify",
                )
                .await?;
            return Ok(Some((
                JobState::Verifying,
                JobEnd::Outcome(Outcome::Success(msg)),
            )));
        }
        let end = match self.verify(job, &touched, &gitops.applied).await? {
            Verified::Outcome(Outcome::Success(v)) => {
                JobEnd::Outcome(Outcome::Success(format!("{msg}; {v}")))
            }
            Verified::Outcome(other) => JobEnd::Outcome(other),
            Verified::Reverted(revert) => JobEnd::Reverted(revert),
        };
        Ok(Some((JobState::Verifying, end)))
    }

    /// Runs the job's playbook on a blocking thread under the sandbox and the run deadline:
    /// its outcome, the targets it changed and what its GitOps gate saw and did.
    async fn execute(
        &self,
        job: &Job,
        lost: &Arc<AtomicBool>,
    ) -> Result<(Outcome, Vec<Target>, GitopsRun)> {
        let defs = self.pipeline.definitions();
        let Some(playbook) = defs.playbooks.get(&job.spec.playbook).cloned() else {
            let msg = format!(
                "playbook {} is not loaded (removed by a reload?)",
                job.spec.playbook
            );
            self.store.add_step(job.id, "load_playbook", &msg).await?;
            return Ok((Outcome::Failure(msg), Vec::new(), GitopsRun::default()));
        };
        let Some(alert) = self.store.alert_event(job.alert_event_id).await? else {
            let msg = format!(
                "alert event {} is missing from the store",
                job.alert_event_id
            );
            return Ok((Outcome::Inconclusive(msg), Vec::new(), GitopsRun::default()));
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
            &job.spec.params,
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
        .with_gitops(self.rt.gitops.clone(), job.spec.gitops)
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
            Ok(result) => Ok((result.outcome, result.touched, result.gitops)),
            Err(e) => Ok((
                Outcome::Inconclusive(format!("the playbook run crashed: {e}")),
                Vec::new(),
                GitopsRun::default(),
            )),
        }
    }
}
