//! Counting a committed webhook's decisions (or a repair run by hand) in the metrics, and
//! waking the workers for their jobs.

use super::{Core, Report, RuleVerdict};
use crate::alert::Status;
use crate::decision::{self, Verdict};
use crate::rules::Mode;

impl Core {
    /// Counts what `report` committed (after the commit: a rolled-back webhook counts nothing)
    /// and wakes the workers when it created jobs.
    pub(super) fn account(&self, report: &mut Report, escalations: u64) {
        let m = &self.metrics;
        m.alerts_duplicate.inc_by(report.duplicates as u64);
        if escalations > 0 {
            m.escalations
                .with_label_values(&["human"])
                .inc_by(escalations);
        }
        for a in &report.alerts {
            if a.dedup == "duplicate" {
                continue;
            }
            m.alerts_received
                .with_label_values(&[a.status.as_str()])
                .inc();
            if !a.cancelled_jobs.is_empty() {
                // The gauge is the real lane's depth: cancelled shadow jobs were never in it.
                let real = a.cancelled_modes.iter().filter(|m| **m != Mode::Shadow);
                let left = m.queue_depth.get() - real.count() as i64;
                m.queue_depth.set(left.max(0));
                for mode in &a.cancelled_modes {
                    m.jobs.entered("cancelled", *mode);
                }
            }
            // The decisions just committed, counted as /api/alerts shows them.
            if a.status == Status::Firing && a.rules.is_empty() {
                m.decision(Verdict::Skipped, decision::NO_RULE, None);
            }
            for rv in &a.rules {
                let rule = match rv {
                    RuleVerdict::Job { rule, .. } | RuleVerdict::Refused { rule, .. } => rule,
                };
                m.rule_matches.with_label_values(&[rule.as_str()]).inc();
                match self.count_verdict(rv) {
                    Some(job_id) => report.jobs.push(job_id),
                    None => report.refused += 1,
                }
            }
        }
        if !report.jobs.is_empty() {
            self.wake_workers();
        }
    }

    /// Counts one committed decision (a job entering its first state, or a refusal), as the
    /// intake and a repair run by hand both record them; returns the job's id, if one was
    /// created.
    pub(super) fn count_verdict(&self, rv: &RuleVerdict) -> Option<i64> {
        let m = &self.metrics;
        match rv {
            RuleVerdict::Job {
                job_id,
                state,
                plan,
                ..
            } => {
                m.jobs.entered(state.as_str(), plan.mode);
                m.decision(
                    Verdict::Job,
                    decision::job_reason(plan.dry_run),
                    Some(plan.mode),
                );
                Some(*job_id)
            }
            RuleVerdict::Refused { reason, mode, .. } => {
                m.refusal(reason.as_str(), *mode);
                None
            }
        }
    }

    /// Tells idle workers a job was created, so one claims it now rather than at its next poll.
    pub(super) fn wake_workers(&self) {
        self.wake.notify_waiters();
        self.wake.notify_one();
    }
}
