//! The knowledge base: what was tried, what worked, how fast.
//!
//! Deterministic answers over the repair history: the store reads the rows
//! (`src/store/kb.rs`), this module decides what they mean (rates, means, the p90's nearest
//! rank, which past fixes to show, the wording of the hint). A repair counts when it
//! finished (succeeded, failed, escalated or reverted) and was not a dry run; its time to
//! recover is the alert's start to its resolve, recorded on the job when the loop closes.
//! Shadow jobs are dry runs, so they never count here (nor in `choose: best`); their evidence
//! is [`shadow`]'s.
//!
//! GitOps: a repair another field manager set back during verification (`reverted`) is a run
//! that did not succeed, and is also reported apart (`reverted`), so that "it worked, then Argo
//! CD undid it" is told from "it did not work". A run that stopped before a change because the
//! target's GitOps owner keeps it in Git (`gitops: skip`) made no change: it is not counted at
//! all (neither a run nor a failure of the playbook), nor in `choose: best`'s rates.

pub mod shadow;

use crate::store::{self, Job, JobState, LastFix, RollupSum, Store, TtrSample};

/// Knowledge-base failures (all from the store).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] store::Error),
}

/// `type Result<T, E = Error>` as in every module of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How one playbook does for one alert.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Stat {
    /// Alert name.
    pub alertname: String,
    /// Playbook.
    pub playbook: String,
    /// Finished repairs.
    pub runs: i64,
    /// Of which succeeded.
    pub succeeded: i64,
    /// Of which were set back by another field manager (a GitOps controller): not successes.
    pub reverted: i64,
    /// succeeded / runs.
    pub success_rate: f64,
    /// Mean time to recover, seconds (repairs whose alert resolved).
    pub ttr_mean_s: Option<f64>,
    /// 90th percentile time to recover, seconds (nearest rank).
    pub ttr_p90_s: Option<f64>,
}

/// How repairs of one target went.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct TargetStat {
    /// `namespace/Kind/name`.
    pub target: String,
    /// Finished repairs.
    pub runs: i64,
    /// Of which succeeded.
    pub succeeded: i64,
    /// Of which were set back by another field manager (a GitOps controller): not successes.
    pub reverted: i64,
    /// succeeded / runs.
    pub success_rate: f64,
}

/// The knowledge base over a window, as `/api/kb/stats` and `aiops kb stats --json` both
/// print it: one shape, so a script moves between them without renaming keys.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Report {
    /// The first instant counted (epoch ms; RFC 3339 when serialized): midnight UTC of the day
    /// the window starts in, because the rollups count whole days.
    #[serde(serialize_with = "store::rfc3339::ms")]
    pub since: i64,
    /// Per alert name and playbook ([`stats`]).
    pub by_alert: Vec<Stat>,
    /// Per target ([`target_stats`]).
    pub by_target: Vec<TargetStat>,
}

/// [`stats`] and [`target_stats`] of one window, as a [`Report`].
pub async fn report(store: &Store, since: i64, namespaces: Option<&[String]>) -> Result<Report> {
    Ok(Report {
        since: window_day(since) * store::DAY_MS,
        by_alert: stats(store, since, namespaces).await?,
        by_target: target_stats(store, since, namespaces).await?,
    })
}

/// The p90 time to recover is taken over at most this many of a group's newest recoveries in
/// the window (exact when it has fewer), read from a covering index.
pub const P90_SAMPLE: i64 = 2_000;

/// The first UTC day a window starting at `since` (epoch ms) covers: the rollups count whole
/// days, so a window starts at midnight UTC of the day `since` falls in.
pub fn window_day(since: i64) -> i64 {
    since.div_euclid(store::DAY_MS)
}

/// Success rate and time to recover per (alertname, playbook) for repairs created since
/// `since` (epoch ms, rounded down to its UTC day), optionally only in `namespaces`.
///
/// Counts and the mean come from the rollups (cost: days × rules, whatever the number of
/// repairs); the p90 from the newest [`P90_SAMPLE`] recoveries of each group.
pub async fn stats(store: &Store, since: i64, namespaces: Option<&[String]>) -> Result<Vec<Stat>> {
    let day = window_day(since);
    let sums = store.kb_rollup_sums(day, namespaces).await?;
    let mut out = Vec::with_capacity(sums.len());
    for sum in sums {
        let p90_ms = if sum.ttr_count == 0 {
            None
        } else {
            let sample = TtrSample {
                alertname: &sum.alertname,
                playbook: &sum.playbook,
                since_day: day,
                namespaces,
                size: P90_SAMPLE,
            };
            p90(store, &sample).await?
        };
        out.push(stat(sum, p90_ms));
    }
    Ok(out)
}

/// A group's rates and mean from its rollup sum; `p90_ms` measured separately.
fn stat(sum: RollupSum, p90_ms: Option<i64>) -> Stat {
    let RollupSum {
        alertname,
        playbook,
        runs,
        succeeded,
        reverted,
        ttr_count,
        ttr_sum_ms,
    } = sum;
    Stat {
        success_rate: rate(succeeded, runs),
        ttr_mean_s: (ttr_count > 0).then(|| ttr_sum_ms as f64 / ttr_count as f64 / 1000.0),
        ttr_p90_s: p90_ms.map(|ms| ms as f64 / 1000.0),
        alertname,
        playbook,
        runs,
        succeeded,
        reverted,
    }
}

/// `succeeded / runs`; the store leaves out groups without runs, 0 for safety if one came.
fn rate(succeeded: i64, runs: i64) -> f64 {
    if runs == 0 {
        0.0
    } else {
        succeeded as f64 / runs as f64
    }
}

/// The p90 time to recover (ms) over a sample: its nearest-rank value, or None when empty.
async fn p90(store: &Store, sample: &TtrSample<'_>) -> Result<Option<i64>> {
    let n = store.kb_ttr_sample_len(sample).await?;
    if n == 0 {
        return Ok(None);
    }
    Ok(store.kb_ttr_at(sample, nearest_rank(n, 90.0) - 1).await?)
}

/// The 1-based nearest rank of percentile `p` among `n` values.
fn nearest_rank(n: i64, p: f64) -> i64 {
    (((p / 100.0) * n as f64).ceil() as i64).clamp(1, n.max(1))
}

/// Success rate per target for repairs created since `since` (rounded down to its UTC day).
pub async fn target_stats(
    store: &Store,
    since: i64,
    namespaces: Option<&[String]>,
) -> Result<Vec<TargetStat>> {
    let rollups = store
        .kb_target_rollups(window_day(since), namespaces)
        .await?;
    Ok(rollups
        .into_iter()
        .map(|t| TargetStat {
            success_rate: rate(t.succeeded, t.runs),
            target: t.target,
            runs: t.runs,
            succeeded: t.succeeded,
            reverted: t.reverted,
        })
        .collect())
}

/// The last `limit` repairs of a target, newest first.
pub async fn history(store: &Store, target_key: &str, limit: i64) -> Result<Vec<Job>> {
    Ok(store.recent_jobs_of(target_key, limit).await?)
}

/// Past incidents like this one (same alertname in the same namespace), what fixed them first:
/// successful repairs before the rest, newest first.
pub async fn similar(
    store: &Store,
    alertname: &str,
    namespace: &str,
    limit: i64,
) -> Result<Vec<Job>> {
    // One indexed range per outcome instead of sorting every past incident by outcome.
    let mut jobs = store
        .jobs_of_alert(alertname, namespace, JobState::Succeeded, limit)
        .await?;
    if (jobs.len() as i64) < limit {
        let mut rest = Vec::new();
        for state in [JobState::Failed, JobState::Escalated, JobState::Reverted] {
            rest.extend(
                store
                    .jobs_of_alert(alertname, namespace, state, limit - jobs.len() as i64)
                    .await?,
            );
        }
        rest.sort_by_key(|j| std::cmp::Reverse((j.created_at, j.id)));
        rest.truncate((limit as usize).saturating_sub(jobs.len()));
        jobs.extend(rest);
    }
    Ok(jobs)
}

/// What fixed incidents like this one: per playbook, how often it succeeded among the
/// similar incidents listed, with the newest success.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Fix {
    /// Playbook.
    pub playbook: String,
    /// Successes among the incidents.
    pub times: i64,
    /// The newest successful job.
    pub last_job: i64,
    /// Its time to recover, seconds, if the alert resolved.
    pub last_ttr_s: Option<f64>,
}

/// Summarises [`similar`]'s incidents into what fixed them, most successful first.
pub fn fixes(incidents: &[Job]) -> Vec<Fix> {
    let mut out: Vec<Fix> = Vec::new();
    for j in incidents.iter().filter(|j| j.state == JobState::Succeeded) {
        match out.iter_mut().find(|f| f.playbook == j.playbook) {
            Some(f) => f.times += 1,
            None => out.push(Fix {
                playbook: j.playbook.clone(),
                times: 1,
                last_job: j.id,
                last_ttr_s: j.ttr_ms.map(|ms| ms as f64 / 1000.0),
            }),
        }
    }
    out.sort_by_key(|f| std::cmp::Reverse(f.times));
    out
}

/// "last time, restart fixed this in 4 min (job 12)": the newest successful, resolved repair of
/// the same alert in the same namespace, for escalation messages. None when the knowledge base
/// does not know.
pub async fn last_fix(store: &Store, alertname: &str, namespace: &str) -> Result<Option<String>> {
    Ok(store
        .kb_last_fix(alertname, namespace)
        .await?
        .map(|fix| last_fix_hint(&fix)))
}

/// The wording of [`last_fix`]: whole minutes, at least one.
fn last_fix_hint(fix: &LastFix) -> String {
    let minutes = (fix.ttr_ms as f64 / 60_000.0).round().max(1.0) as i64;
    format!(
        "last time, {} fixed this in {minutes} min (job {})",
        fix.playbook, fix.job_id
    )
}

#[cfg(test)]
mod tests {
    use super::{LastFix, RollupSum, Stat, last_fix_hint, nearest_rank, stat};

    #[test]
    fn the_p90_is_the_nearest_rank() {
        assert_eq!(nearest_rank(10, 90.0), 9);
        assert_eq!(nearest_rank(1, 90.0), 1);
        assert_eq!(nearest_rank(20, 90.0), 18);
        assert_eq!(nearest_rank(3, 90.0), 3);
        assert_eq!(nearest_rank(2, 90.0), 2);
    }

    fn sum(runs: i64, succeeded: i64, ttr_count: i64, ttr_sum_ms: i64) -> RollupSum {
        RollupSum {
            alertname: "KubeDeploymentDown".into(),
            playbook: "restart".into(),
            runs,
            succeeded,
            reverted: 0,
            ttr_count,
            ttr_sum_ms,
        }
    }

    #[test]
    fn a_stat_is_the_rollup_sums_as_a_rate_and_a_mean_in_seconds() {
        assert_eq!(
            stat(sum(4, 3, 2, 300_000), Some(240_000)),
            Stat {
                alertname: "KubeDeploymentDown".into(),
                playbook: "restart".into(),
                runs: 4,
                succeeded: 3,
                reverted: 0,
                success_rate: 0.75,
                ttr_mean_s: Some(150.0),
                ttr_p90_s: Some(240.0),
            }
        );
    }

    #[test]
    fn a_group_without_a_resolved_repair_has_no_time_to_recover() {
        let s = stat(sum(2, 0, 0, 0), None);
        assert_eq!(s.success_rate, 0.0);
        assert_eq!((s.ttr_mean_s, s.ttr_p90_s), (None, None));
    }

    #[test]
    fn a_reverted_repair_is_a_run_that_did_not_succeed_and_is_reported_apart() {
        let s = stat(
            RollupSum {
                reverted: 1,
                ..sum(4, 2, 0, 0)
            },
            None,
        );
        assert_eq!((s.runs, s.succeeded, s.reverted), (4, 2, 1));
        assert_eq!(s.success_rate, 0.5);
    }

    #[test]
    fn a_group_without_runs_has_a_zero_rate_rather_than_nan() {
        assert_eq!(stat(sum(0, 0, 0, 0), None).success_rate, 0.0);
    }

    #[test]
    fn the_hint_names_the_playbook_the_job_and_whole_minutes_of_at_least_one() {
        let fix = |ttr_ms| LastFix {
            job_id: 12,
            playbook: "restart".into(),
            ttr_ms,
        };
        assert_eq!(
            last_fix_hint(&fix(240_000)),
            "last time, restart fixed this in 4 min (job 12)"
        );
        assert_eq!(
            last_fix_hint(&fix(150_000)),
            "last time, restart fixed this in 3 min (job 12)"
        );
        assert_eq!(
            last_fix_hint(&fix(5_000)),
            "last time, restart fixed this in 1 min (job 12)"
        );
    }
}
