//! Verification: checks that a repair the playbook calls successful really worked — the
//! rollouts of what it changed, the rule's `verify.health_url`, and `verify.resolved_within`.
//!
//! The decisions (what a rollout status, a health answer or the alert's state mean for the
//! repair) are pure functions, unit-tested below; [`Executor::verify`] only gathers the
//! observations, waits, and records each verdict as a step.

use std::time::Duration;

use super::{Executor, Result};
use crate::cluster::{RolloutStatus, Target};
use crate::playbook::host::Outcome;
use crate::store::Job;

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
    /// Checks that a repair the playbook calls successful really worked. Each check is looked
    /// at until it passes, is decided against, or its time is up; the first verdict against
    /// ends the verification.
    pub(super) async fn verify(&self, job: &Job, touched: &[Target]) -> Result<Outcome> {
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
        self.verdict(job, Outcome::Success(summary(&passed))).await
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
