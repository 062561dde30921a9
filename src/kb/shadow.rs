//! Shadow mode's evidence: per rule, how often it would have acted, and how often the alert
//! resolved on its own anyway — the numbers to promote a rule on (`mode: shadow` → `approve` →
//! `auto`).
//!
//! A shadow job changes nothing, so every resolve of its alert is one the cluster made on its
//! own. The store gives the rows (`Store::shadow_jobs`, `Store::shadow_steps`); the meaning is
//! decided here, at read time, so no worker waits for a resolve:
//!
//! - **would act**: the rule's decisions to act, the first job of each shadow chain, except
//!   those cancelled because the alert resolved during the rule's `wait` (a real rule would not
//!   have acted either);
//! - **self-resolved**: of those, the occurrences whose firing row has `resolved_at` within the
//!   window after the decision (the rule's `verify.resolved_within` as snapshotted in the job,
//!   else [`DEFAULT_WINDOW`]); a resolve before the decision counts as at the decision;
//! - **undecided**: still firing and still inside the window: left out of the share until known;
//! - **share**: self-resolved / (would act − undecided), absent when nothing is decided yet;
//! - **median time to self-resolve**: from the decision to the resolve, over the self-resolved,
//!   in seconds (an even count takes the mean of the two middle values);
//! - **actions**: the dry-run steps of the rule's shadow jobs (every step of their chains),
//!   grouped by action and text with counts, most frequent first.

use std::collections::BTreeMap;
use std::time::Duration;

use super::Result;
use crate::store::{self, JobState, ShadowFilter, ShadowJob, ShadowStep, Store};

/// The window for "resolved on its own" when the rule sets no `verify.resolved_within`.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(30 * 60);

/// One step a shadow rule would have taken, and how often.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Action {
    /// The step's action (`restart`, `set_memory`, `log`, …).
    pub action: String,
    /// What it would have done (`dry run: would …`).
    pub detail: String,
    /// How many times.
    pub count: i64,
}

/// One shadow rule's evidence over a window.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct RuleEvidence {
    /// Rule name.
    pub rule: String,
    /// Decisions to act (first jobs of shadow chains, not cancelled during the rule's wait).
    pub would_act: i64,
    /// Of those, alerts that resolved on their own within the window.
    pub self_resolved: i64,
    /// Of those, alerts still firing inside their window: not counted in the share yet.
    pub undecided: i64,
    /// self_resolved / (would_act − undecided); `null` while nothing is decided.
    pub self_resolved_share: Option<f64>,
    /// Median seconds from the decision to the resolve, over the self-resolved; `null` when none.
    pub self_resolve_median_s: Option<f64>,
    /// The dry-run steps of the rule's shadow jobs, grouped, most frequent first.
    pub actions: Vec<Action>,
}

/// Every shadow rule's evidence over a window (`aiops kb shadow --json`).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ShadowReport {
    /// The first instant counted (epoch ms; RFC 3339 when serialized).
    #[serde(serialize_with = "store::rfc3339::ms")]
    pub since: i64,
    /// One entry per rule with shadow jobs in the window, by name.
    pub rules: Vec<RuleEvidence>,
}

/// One rule's evidence with its window (`GET /api/kb/rules/{rule}`, `aiops kb shadow --rule R
/// --json`): the keys of a [`ShadowReport`] entry, plus `since`.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct RuleReport {
    /// The first instant counted (epoch ms; RFC 3339 when serialized).
    #[serde(serialize_with = "store::rfc3339::ms")]
    pub since: i64,
    /// The evidence.
    #[serde(flatten)]
    pub evidence: RuleEvidence,
}

/// Every shadow rule's evidence since `since`, as of `now`, optionally only on targets in
/// `namespaces`.
pub async fn report(
    store: &Store,
    since: i64,
    now: i64,
    namespaces: Option<&[String]>,
) -> Result<ShadowReport> {
    let filter = ShadowFilter {
        since,
        rule: None,
        namespaces,
    };
    Ok(ShadowReport {
        since,
        rules: read(store, &filter, now).await?,
    })
}

/// One rule's evidence since `since`, as of `now` (zeros when it has no shadow jobs there).
pub async fn rule_report(
    store: &Store,
    rule: &str,
    since: i64,
    now: i64,
    namespaces: Option<&[String]>,
) -> Result<RuleReport> {
    let filter = ShadowFilter {
        since,
        rule: Some(rule),
        namespaces,
    };
    let evidence = read(store, &filter, now)
        .await?
        .into_iter()
        .next()
        .unwrap_or_else(|| RuleEvidence::none(rule));
    Ok(RuleReport { since, evidence })
}

/// The evidence of the rules `filter` selects, read from the store.
async fn read(store: &Store, filter: &ShadowFilter<'_>, now: i64) -> Result<Vec<RuleEvidence>> {
    let jobs = store.shadow_jobs(filter).await?;
    let steps = store.shadow_steps(filter).await?;
    Ok(evidence(&jobs, &steps, now))
}

impl RuleEvidence {
    fn none(rule: &str) -> RuleEvidence {
        RuleEvidence {
            rule: rule.to_string(),
            would_act: 0,
            self_resolved: 0,
            undecided: 0,
            self_resolved_share: None,
            self_resolve_median_s: None,
            actions: Vec::new(),
        }
    }
}

/// The evidence of every rule in `jobs` (or `steps`), by rule name.
pub fn evidence(jobs: &[ShadowJob], steps: &[ShadowStep], now: i64) -> Vec<RuleEvidence> {
    let mut by_rule: BTreeMap<&str, (RuleEvidence, Vec<i64>)> = BTreeMap::new();
    for job in jobs.iter().filter(|j| j.state != JobState::Cancelled) {
        let (e, times) = by_rule
            .entry(job.rule.as_str())
            .or_insert_with(|| (RuleEvidence::none(&job.rule), Vec::new()));
        e.would_act += 1;
        let window = job
            .resolved_within_ms
            .unwrap_or_else(|| store::ms(DEFAULT_WINDOW));
        match job.resolved_at {
            Some(at) if at - job.decided_at <= window => {
                e.self_resolved += 1;
                times.push((at - job.decided_at).max(0));
            }
            None if now - job.decided_at < window => e.undecided += 1,
            // Resolved after the window, or still firing past it: the rule's action was needed.
            _ => {}
        }
    }
    for s in steps {
        let (e, _) = by_rule
            .entry(s.rule.as_str())
            .or_insert_with(|| (RuleEvidence::none(&s.rule), Vec::new()));
        e.actions.push(Action {
            action: s.action.clone(),
            detail: s.detail.clone(),
            count: s.count,
        });
    }
    by_rule
        .into_values()
        .map(|(mut e, mut times)| {
            let decided = e.would_act - e.undecided;
            e.self_resolved_share = (decided > 0).then(|| e.self_resolved as f64 / decided as f64);
            e.self_resolve_median_s = median_ms(&mut times).map(|ms| ms / 1000.0);
            e
        })
        .collect()
}

/// The median of `values` (ms); the mean of the two middle values for an even count.
fn median_ms(values: &mut [i64]) -> Option<f64> {
    values.sort_unstable();
    let n = values.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(values[n / 2] as f64),
        _ => Some((values[n / 2 - 1] + values[n / 2]) as f64 / 2.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(id: i64, state: JobState, decided_at: i64, resolved_at: Option<i64>) -> ShadowJob {
        ShadowJob {
            id,
            rule: "r".into(),
            state,
            decided_at,
            resolved_at,
            resolved_within_ms: Some(600_000),
        }
    }

    #[test]
    fn a_resolve_inside_the_window_is_self_resolved_and_one_after_it_is_not() {
        let now = 10_000_000;
        let jobs = [
            job(1, JobState::Succeeded, 0, Some(60_000)),
            job(2, JobState::Succeeded, 0, Some(600_000)),
            job(3, JobState::Succeeded, 0, Some(600_001)),
            job(4, JobState::Succeeded, 0, None),
            job(5, JobState::Cancelled, 0, Some(1_000)),
            job(6, JobState::Queued, now - 1_000, None),
        ];
        let e = &evidence(&jobs, &[], now)[0];
        assert_eq!(
            (e.would_act, e.self_resolved, e.undecided),
            (5, 2, 1),
            "{e:?}"
        );
        assert_eq!(e.self_resolved_share, Some(0.5));
        assert_eq!(e.self_resolve_median_s, Some(330.0));
    }

    #[test]
    fn the_median_of_an_odd_count_is_the_middle_value_and_nothing_decided_has_no_share() {
        assert_eq!(median_ms(&mut [5, 1, 3]), Some(3.0));
        assert_eq!(median_ms(&mut []), None);
        let e = &evidence(&[job(1, JobState::Running, 0, None)], &[], 1)[0];
        assert_eq!(
            (e.self_resolved_share, e.self_resolve_median_s),
            (None, None)
        );
    }
}
