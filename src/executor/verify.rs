//! Verification: checks that a repair the playbook calls successful really worked — the
//! rollouts of what it changed, the rule's `verify.health_url`, and `verify.resolved_within` —
//! and that it stays: the revert watch.
//!
//! The revert watch looks at every field the run changed ([`Applied`], values read back right
//! after the change) every `playbook.rollout_poll` while the checks run, and for a target a
//! GitOps controller owns keeps looking until at least `gitops.watch` has passed since the
//! change (Argo CD's self-heal and Flux's interval come after the rollout). A target nobody
//! owns is looked at during the checks and once more at their end: a person's `kubectl edit`
//! that sets the repair back is a revert too. A field that no longer holds its value ends the
//! job `reverted` ([`Revert`]), naming the managers that set it.
//!
//! The decisions (what a rollout status, a health answer, the alert's state or a field's live
//! value mean for the repair) are pure functions, unit-tested below; [`Executor::verify`] only
//! gathers the observations, waits, and records each verdict as a step.

use std::time::Duration;

use super::{Executor, Result};
use crate::cluster::{RolloutStatus, Target};
use crate::gitops::{Controller, Field, FieldChange, FieldState, GitChange};
use crate::playbook::host::{Applied, Outcome};
use crate::rules::ChangeKind;
use crate::store::Job;

/// The field manager of aiops's own writes: a field it still manages was not set back by
/// anyone else.
const AIOPS_MANAGER: &str = crate::deploy::apply::FIELD_MANAGER;

/// How verification ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verified {
    /// The checks' verdict (success when every check passed and nothing was set back).
    Outcome(Outcome),
    /// A changed field was set back by someone else (boxed: it carries the Git change).
    Reverted(Box<Revert>),
}

/// A repair's field that no longer holds the value the repair gave it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Revert {
    /// The workload.
    pub target: Target,
    /// The kind of change that was set back.
    pub kind: ChangeKind,
    /// The field and the value the repair left.
    pub expected: FieldChange,
    /// The value found instead (`None`: the field is gone).
    pub live: Option<String>,
    /// Who set it back: the field's managers other than aiops (empty when the field has none).
    pub reverted_by: Vec<String>,
    /// The GitOps controller that owns the workload, if any.
    pub owner: Option<Controller>,
    /// The change to make in Git, when an owner exists.
    pub git: Option<GitChange>,
}

impl Revert {
    /// The job's error and the escalation's reason: "resources.limits.memory of container web
    /// of prod/Deployment/web was set back to 512Mi by kustomize-controller (the repair set
    /// 615Mi)".
    pub fn message(&self) -> String {
        let live = self
            .live
            .as_deref()
            .unwrap_or("nothing (the field is gone)");
        let by = match self.reverted_by.as_slice() {
            [] => String::new(),
            names => format!(" by {}", names.join(", ")),
        };
        format!(
            "{} of {} was set back to {live}{by} (the repair set {})",
            self.expected.field, self.target, self.expected.value
        )
    }

    /// Who owns the workload, as people read it.
    pub fn owner_text(&self) -> String {
        match &self.owner {
            Some(c) => c.to_string(),
            None => "no GitOps controller".to_string(),
        }
    }

    /// What to change so that the repair stays: the owner's Git change, or (nobody owning the
    /// workload) the field and value to keep.
    pub fn change(&self) -> String {
        match &self.git {
            Some(git) if !git.changes.is_empty() => git.instruction(),
            _ => {
                let verb = match self.kind {
                    ChangeKind::Rollback => "revert",
                    _ => "set",
                };
                format!("{verb} {} to {}", self.expected.field, self.expected.value)
            }
        }
    }
}

/// The changes to watch: each (target, field) once, with the value the run gave it last (a
/// run that raised memory twice must not read its own second raise as a revert of the first).
/// A later rollback of the same target replaces its whole pod template, so it overwrites every
/// earlier pod-template field of the run (a restart's `restartedAt`, a memory raise) though it
/// reports only the fields it read back: those earlier values are not watched either, or the
/// run's own rollback would read as a revert. `spec.replicas` is outside the template and stays.
pub fn watched(applied: &[Applied]) -> Vec<Applied> {
    let mut out: Vec<Applied> = Vec::with_capacity(applied.len());
    for (i, a) in applied.iter().enumerate() {
        let later: Vec<&Applied> = applied[i + 1..]
            .iter()
            .filter(|l| l.target == a.target)
            .collect();
        let rolled_back = later.iter().any(|l| l.kind == ChangeKind::Rollback);
        let mut kept = a.clone();
        kept.changes.retain(|c| {
            let overwritten = later
                .iter()
                .any(|l| l.changes.iter().any(|lc| lc.field == c.field));
            let replaced = rolled_back && c.field != Field::Replicas;
            !overwritten && !replaced
        });
        if !kept.changes.is_empty() {
            out.push(kept);
        }
    }
    out
}

/// How long after the change the fields are watched at least: `watch` when a GitOps controller
/// owns one of the targets (its reconcile comes after the rollout), else nothing beyond the
/// checks.
pub fn watch_for(applied: &[Applied], watch: Duration) -> Duration {
    if applied.iter().any(|a| a.owner.is_some()) {
        watch
    } else {
        Duration::ZERO
    }
}

/// The first of `applied`'s fields that `live` shows set back, if any. A field the backend did
/// not report is not judged (it is not known to differ).
pub fn reverted(applied: &Applied, live: &[FieldState]) -> Option<Revert> {
    applied.changes.iter().find_map(|change| {
        let state = live.iter().find(|s| s.field == change.field)?;
        if change.holds(state) {
            return None;
        }
        Some(Revert {
            target: applied.target.clone(),
            kind: applied.kind,
            expected: change.clone(),
            live: state.value.clone(),
            reverted_by: state
                .managers
                .iter()
                .filter(|m| m.as_str() != AIOPS_MANAGER)
                .cloned()
                .collect(),
            owner: applied.owner.clone(),
            git: applied.git.clone(),
        })
    })
}

/// Why the changed fields could not be read: the cluster answered with an error, or not in
/// time. Not measured, so inconclusive, as for a rollout.
pub fn fields_unreadable(target: &Target, error: Option<&str>) -> Outcome {
    Outcome::Inconclusive(match error {
        Some(e) => format!("could not read the changed fields of {target}: {e}"),
        None => format!("reading the changed fields of {target} timed out"),
    })
}

/// What the watch adds to a verified repair's summary.
pub fn held(applied: &[Applied], watched_for: Duration) -> Option<String> {
    let fields: usize = applied.iter().map(|a| a.changes.len()).sum();
    if fields == 0 {
        return None;
    }
    let plural = if fields == 1 { "" } else { "s" };
    if watched_for.is_zero() {
        return Some(format!("the {fields} changed field{plural} held"));
    }
    let watched = humantime::format_duration(watched_for);
    // Flux reconciles on its object's `spec.interval` (often 5–10 minutes), not on Argo CD's
    // 3: a watch shorter than that ends before Flux sets the field back, so say so where the
    // success is read.
    let flux = applied.iter().any(|a| {
        matches!(
            a.owner,
            Some(Controller::FluxKustomization { .. } | Controller::FluxHelmRelease { .. })
        )
    });
    Some(if flux {
        format!(
            "the {fields} changed field{plural} held for {watched} after the change \
             (gitops.watch; Flux sets fields back on its interval: a revert after {watched} \
             is not seen)"
        )
    } else {
        format!("the {fields} changed field{plural} held for {watched} after the change")
    })
}

/// What one look at a check says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Check {
    /// Passed; the text goes into the verification summary.
    Passed(String),
    /// Not decided yet: look again after the poll interval.
    Pending,
    /// Decided against the repair (a failure, or inconclusive when it could not be measured).
    Verdict(Outcome),
}

/// A rollout's status, read once; `expired` when the rule's `rollout_timeout` has passed.
pub fn rollout(target: &Target, status: &RolloutStatus, expired: bool, timeout: Duration) -> Check {
    if status.complete {
        return Check::Passed(format!("rollout of {target} complete"));
    }
    if status.failed {
        return Check::Verdict(Outcome::Failure(format!(
            "rollout of {target} failed: {}",
            status.message
        )));
    }
    if expired {
        return Check::Verdict(Outcome::Failure(format!(
            "rollout of {target} not complete {} after the repair: {}",
            humantime::format_duration(timeout),
            status.message
        )));
    }
    Check::Pending
}

/// Why a rollout could not be read: the cluster answered with an error, or not in time.
pub fn rollout_unreadable(target: &Target, error: Option<&str>) -> Outcome {
    Outcome::Inconclusive(match error {
        Some(e) => format!("could not read the rollout of {target}: {e}"),
        None => format!("reading the rollout of {target} timed out"),
    })
}

/// How the health URL answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HealthAnswer {
    /// An HTTP status.
    Status(u16),
    /// No answer within the call timeout: not measured.
    TimedOut,
    /// Connection or protocol error (without the URL, which may hold credentials).
    Failed(String),
}

/// The health check's verdict; `shown` is the URL without credentials or query.
pub fn health(shown: &str, answer: &HealthAnswer) -> Check {
    match answer {
        HealthAnswer::Status(code) if (200..300).contains(code) => {
            Check::Passed(format!("{shown} answered {code}"))
        }
        HealthAnswer::Status(code) => Check::Verdict(Outcome::Failure(format!(
            "health check {shown} answered {code}"
        ))),
        HealthAnswer::TimedOut => Check::Verdict(Outcome::Inconclusive(format!(
            "health check {shown} timed out"
        ))),
        HealthAnswer::Failed(e) => Check::Verdict(Outcome::Failure(format!(
            "health check {shown} failed: {e}"
        ))),
    }
}

/// Whether the alert resolved in time; `expired` when `within` has passed since the repair.
pub fn resolved(resolved: bool, expired: bool, within: Duration) -> Check {
    if resolved {
        Check::Passed("the alert resolved".to_string())
    } else if expired {
        Check::Verdict(Outcome::Failure(format!(
            "the alert was still firing {} after the repair",
            humantime::format_duration(within)
        )))
    } else {
        Check::Pending
    }
}

/// The success message of a verification whose checks all passed.
pub fn summary(passed: &[String]) -> String {
    if passed.is_empty() {
        "verified: nothing further to check".to_string()
    } else {
        format!("verified: {}", passed.join(", "))
    }
}

impl Executor {
    /// Checks that a repair the playbook calls successful really worked and stays: the checks,
    /// with the revert watch looking at the changed fields meanwhile and, for owned targets,
    /// until `gitops.watch` has passed since the change (see the module doc). The verdict is
    /// recorded as a step.
    pub(super) async fn verify(
        &self,
        job: &Job,
        touched: &[Target],
        applied: &[Applied],
    ) -> Result<Verified> {
        // The run has just ended, so its changes are at most this old: watching from here
        // watches at least `gitops.watch` after each.
        let changed_at = tokio::time::Instant::now();
        let applied = watched(applied);
        let poll = self.rt.host.rollout_poll;
        let outcome = {
            let mut checks = std::pin::pin!(self.checks(job, touched));
            loop {
                tokio::select! {
                    out = &mut checks => break out?,
                    () = tokio::time::sleep(poll), if !applied.is_empty() => {
                        if let Some(v) = self.look(job, &applied).await? {
                            return Ok(v);
                        }
                    }
                }
            }
        };
        let Outcome::Success(passed) = outcome else {
            // Decided against (and recorded): a failure walks the chain as before.
            return Ok(Verified::Outcome(outcome));
        };
        let watched_for = watch_for(&applied, self.rt.gitops.watch.0);
        let until = changed_at + watched_for;
        if !applied.is_empty() {
            loop {
                // Decided before the look, so the last look is at or after `until`.
                let done = tokio::time::Instant::now() >= until;
                if let Some(v) = self.look(job, &applied).await? {
                    return Ok(v);
                }
                if done {
                    break;
                }
                let left = until.saturating_duration_since(tokio::time::Instant::now());
                tokio::time::sleep(poll.min(left)).await;
            }
        }
        let text = match held(&applied, watched_for) {
            Some(h) => format!("{passed}, {h}"),
            None => passed,
        };
        Ok(Verified::Outcome(
            self.verdict(job, Outcome::Success(text)).await?,
        ))
    }

    /// Reads the changed fields once: a revert (recorded as a step), an unreadable cluster
    /// (inconclusive, recorded), or nothing to say.
    async fn look(&self, job: &Job, applied: &[Applied]) -> Result<Option<Verified>> {
        for a in applied {
            let fields: Vec<Field> = a.changes.iter().map(|c| c.field.clone()).collect();
            let live = match tokio::time::timeout(
                self.rt.host.call_timeout,
                self.rt.cluster.observe(&a.target, &fields),
            )
            .await
            {
                Ok(Ok(live)) => live,
                Ok(Err(e)) => {
                    let why = fields_unreadable(&a.target, Some(&e.to_string()));
                    return Ok(Some(Verified::Outcome(self.verdict(job, why).await?)));
                }
                Err(_) => {
                    let why = fields_unreadable(&a.target, None);
                    return Ok(Some(Verified::Outcome(self.verdict(job, why).await?)));
                }
            };
            if let Some(revert) = reverted(a, &live) {
                self.store
                    .add_step(job.id, "verify", &format!("reverted: {}", revert.message()))
                    .await?;
                return Ok(Some(Verified::Reverted(Box::new(revert))));
            }
        }
        Ok(None)
    }

    /// The checks of the rule's `verify`. Each is looked at until it passes, is decided
    /// against, or its time is up; the first verdict against ends them (recorded as a step).
    /// A success is returned unrecorded: the revert watch may still decide otherwise.
    async fn checks(&self, job: &Job, touched: &[Target]) -> Result<Outcome> {
        let v = &job.spec.verify;
        let mut passed = Vec::new();
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
                            let why = rollout_unreadable(t, Some(&e.to_string()));
                            return self.verdict(job, why).await;
                        }
                        Err(_) => return self.verdict(job, rollout_unreadable(t, None)).await,
                    };
                    let expired = tokio::time::Instant::now() >= until;
                    match rollout(t, &status, expired, v.rollout_timeout) {
                        Check::Passed(text) => {
                            passed.push(text);
                            break;
                        }
                        Check::Verdict(outcome) => return self.verdict(job, outcome).await,
                        Check::Pending => tokio::time::sleep(self.rt.host.rollout_poll).await,
                    }
                }
            }
        }
        if let Some(url) = &v.health_url {
            // Steps and logs show the URL without credentials or query string.
            let shown = reqwest::Url::parse(url).map_or_else(
                |_| "<invalid URL>".to_string(),
                |u| crate::playbook::host::redact(&u),
            );
            let answer = match self
                .rt
                .http
                .get(url)
                .timeout(self.rt.host.call_timeout)
                .send()
                .await
            {
                Ok(r) => HealthAnswer::Status(r.status().as_u16()),
                Err(e) if e.is_timeout() => HealthAnswer::TimedOut,
                Err(e) => HealthAnswer::Failed(e.without_url().to_string()),
            };
            match health(&shown, &answer) {
                Check::Passed(text) => passed.push(text),
                Check::Verdict(outcome) => return self.verdict(job, outcome).await,
                // One request decides; `health` never answers Pending.
                Check::Pending => {}
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
                let is_resolved = self.store.resolved_since(&job.fingerprint, since).await?;
                let expired = tokio::time::Instant::now() >= until;
                match resolved(is_resolved, expired, within) {
                    Check::Passed(text) => {
                        passed.push(text);
                        break;
                    }
                    Check::Verdict(outcome) => return self.verdict(job, outcome).await,
                    Check::Pending => tokio::time::sleep(self.cfg.poll_interval.0).await,
                }
            }
        }
        Ok(Outcome::Success(summary(&passed)))
    }

    /// Records the verification's verdict as a step and returns it.
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
}

#[cfg(test)]
mod tests;
