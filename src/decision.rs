//! The vocabulary of what aiops decided about a firing alert: the verdicts and the reason codes
//! that are not a guard's.
//!
//! One place, because three readers must agree on it: the store's read model of an alert
//! (`/api/alerts`), the API's `verdict=`/`reason=` filters, and the labels of
//! `aiops_alert_decisions_total`. A guard's refusal reason is `pipeline::Refusal::as_str()`
//! (`no_target`, `cooldown`, ...); the codes here are the rest. The stored `decisions` rows keep
//! their codes (`job`/`plan`, `refused`/<guard>); `dry_run` and `no_rule` are read from what is
//! stored (the job's dry-run flag; a firing alert with no decision row). A leaf: imports nothing.

use serde::Serialize;

/// What aiops did about one rule's match on a firing alert (or about an alert no rule matched).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// A repair job was created.
    Job,
    /// A rule matched but a guard refused to act.
    Refused,
    /// No rule matched: aiops does not act on this alert at all.
    Skipped,
}

impl Verdict {
    /// Every verdict, in the order the README lists them.
    pub const ALL: [Verdict; 3] = [Verdict::Job, Verdict::Refused, Verdict::Skipped];

    /// The stored, API and metric name.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Job => "job",
            Verdict::Refused => "refused",
            Verdict::Skipped => "skipped",
        }
    }

    /// The verdict named `s`, if any.
    pub fn parse(s: &str) -> Option<Verdict> {
        Verdict::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// A job was created and will change the cluster (stored as reason `plan`).
pub const PLAN: &str = "plan";
/// A job was created by a `dry_run: true` rule: it only records what it would do. Stored as
/// `plan`; told apart by the job's dry-run flag.
pub const DRY_RUN: &str = "dry_run";
/// No rule matched the firing alert. Nothing is stored for it: the absence of a decision row
/// on a firing alert is this decision.
pub const NO_RULE: &str = "no_rule";

/// The (verdict, reason) pairs that are not a guard's refusal.
pub const NOT_REFUSALS: [(Verdict, &str); 3] = [
    (Verdict::Job, PLAN),
    (Verdict::Job, DRY_RUN),
    (Verdict::Skipped, NO_RULE),
];

/// The reason of a `job` verdict: `dry_run` for a dry-run rule's job, else `plan`.
pub fn job_reason(dry_run: bool) -> &'static str {
    if dry_run { DRY_RUN } else { PLAN }
}

/// The verdict a non-refusal reason belongs to; `None` for a guard's reason (or an unknown one).
pub fn verdict_of(reason: &str) -> Option<Verdict> {
    NOT_REFUSALS
        .into_iter()
        .find(|(_, r)| *r == reason)
        .map(|(v, _)| v)
}

/// The decision in one sentence for the on-call: what matched, what aiops did, and why.
/// `detail` is what the pipeline recorded (the guard's explanation, or the job's plan);
/// `by_hand` who asked, when a person ran the repair by hand (`POST /api/repairs`) rather than
/// a rule matching the alert.
pub fn sentence(
    verdict: Verdict,
    reason: &str,
    rule: Option<&str>,
    detail: &str,
    job_id: Option<i64>,
    by_hand: Option<&str>,
) -> String {
    let rule = rule.unwrap_or("-");
    let cause = match by_hand {
        Some(by) => format!("{by} ran a repair by hand under rule {rule}"),
        None => format!("rule {rule} matched"),
    };
    match verdict {
        Verdict::Job => {
            let job = job_id.map_or_else(|| "a job".to_string(), |id| format!("job {id}"));
            if reason == DRY_RUN {
                format!("{cause}; {job} records what it would do, changing nothing: {detail}")
            } else {
                format!("{cause}; {job} repairs it: {detail}")
            }
        }
        Verdict::Refused => {
            format!("{cause}, but aiops did not act ({reason}): {detail}")
        }
        Verdict::Skipped => {
            "no rule matches this alert's labels, so aiops did not act on it".to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_verdict_parses_back_from_its_name() {
        for v in Verdict::ALL {
            assert_eq!(Verdict::parse(v.as_str()), Some(v));
        }
        assert_eq!(Verdict::parse("plan"), None);
    }

    #[test]
    fn a_non_refusal_reason_names_its_verdict_and_a_guard_reason_none() {
        assert_eq!(verdict_of(DRY_RUN), Some(Verdict::Job));
        assert_eq!(verdict_of(NO_RULE), Some(Verdict::Skipped));
        assert_eq!(verdict_of("cooldown"), None);
    }

    #[test]
    fn the_sentence_names_the_rule_the_reason_and_the_detail() {
        let s = sentence(
            Verdict::Refused,
            "no_target",
            Some("restart-on-down"),
            "the labels name no namespace",
            None,
            None,
        );
        assert_eq!(
            s,
            "rule restart-on-down matched, but aiops did not act (no_target): the labels name no namespace"
        );
        let s = sentence(
            Verdict::Job,
            DRY_RUN,
            Some("r"),
            "restart on a/Deployment/b",
            Some(7),
            None,
        );
        assert!(s.contains("job 7") && s.contains("changing nothing"), "{s}");
    }

    #[test]
    fn a_decision_made_by_hand_says_who_asked_instead_of_a_match() {
        let s = sentence(
            Verdict::Job,
            PLAN,
            Some("restart"),
            "restart on prod/Deployment/web",
            Some(3),
            Some("alice"),
        );
        assert_eq!(
            s,
            "alice ran a repair by hand under rule restart; job 3 repairs it: restart on prod/Deployment/web"
        );
        let s = sentence(
            Verdict::Refused,
            "cooldown",
            Some("restart"),
            "cooldown 10m lasts until …",
            None,
            Some("alice"),
        );
        assert!(
            s.starts_with(
                "alice ran a repair by hand under rule restart, but aiops did not act (cooldown)"
            ),
            "{s}"
        );
    }
}
