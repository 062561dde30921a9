//! Counting a committed webhook's decisions in the metrics, and waking the workers for its jobs.

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
                match rv {
                    RuleVerdict::Job {
                        rule,
                        job_id,
                        state,
                        plan,
                        ..
                    } => {
                        m.rule_matches.with_label_values(&[rule.as_str()]).inc();
                        m.jobs.entered(state.as_str(), plan.mode);
                        m.decision(
                            Verdict::Job,
                            decision::job_reason(plan.dry_run),
                            Some(plan.mode),
                        );
                        report.jobs.push(*job_id);
                    }
                    RuleVerdict::Refused {
                        rule, reason, mode, ..
                    } => {
                        m.rule_matches.with_label_values(&[rule.as_str()]).inc();
                        m.refusal(reason.as_str(), *mode);
                        report.refused += 1;
                    }
                }
            }
        }
        if !report.jobs.is_empty() {
            self.wake.notify_waiters();
            self.wake.notify_one();
        }
    }
}
