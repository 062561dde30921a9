//! The knowledge base: what was tried, what worked, how fast.
//!
//! Deterministic queries over the repair history in the store. A repair counts when it
//! finished (succeeded, failed or escalated) and was not a dry run; its time to recover is the
//! alert's start to its resolve, recorded on the job when the loop closes.

use sqlx::Row;

use crate::store::{self, Job, JobState, Store};

/// Knowledge-base failures (all from the store).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] store::Error),
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        Error::Store(e.into())
    }
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
    /// succeeded / runs.
    pub success_rate: f64,
}

/// Groups with at most this many recovered repairs in the window get an exact p90 from the
/// jobs themselves; larger ones read it from the rollup's histogram (at most 20% high).
const EXACT_P90_MAX: i64 = 2_000;

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[i64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    Some(sorted[rank(sorted.len() as i64, p) as usize - 1] as f64)
}

/// The 1-based nearest rank of percentile `p` among `n` values.
fn rank(n: i64, p: f64) -> i64 {
    (((p / 100.0) * n as f64).ceil() as i64).clamp(1, n.max(1))
}

/// ` AND column IN ($k, …)` for an app filter, with its values appended to `binds`.
fn app_filter(column: &str, namespaces: Option<&[String]>, binds: &mut Vec<String>) -> String {
    let Some(ns) = namespaces else {
        return String::new();
    };
    if ns.is_empty() {
        return " AND 1 = 0".into();
    }
    let first = binds.len() + 2; // $1 is the window start
    binds.extend(ns.iter().cloned());
    let ps: Vec<String> = (first..first + ns.len()).map(|i| format!("${i}")).collect();
    format!(" AND {column} IN ({})", ps.join(", "))
}

/// The first UTC day a window starting at `since` (epoch ms) covers: the rollup counts whole
/// days, so a window starts at midnight UTC of the day `since` falls in.
pub fn window_day(since: i64) -> i64 {
    since.div_euclid(store::DAY_MS)
}

/// Success rate and time to recover per (alertname, playbook) for repairs created since
/// `since` (epoch ms, rounded down to its UTC day), optionally only in `namespaces`.
///
/// Reads the per-day rollup, so its cost grows with days × groups, not with repairs.
pub async fn stats(store: &Store, since: i64, namespaces: Option<&[String]>) -> Result<Vec<Stat>> {
    let day = window_day(since);
    let mut binds = Vec::new();
    let filter = app_filter("namespace", namespaces, &mut binds);
    let sql = format!(
        "SELECT alertname, playbook, CAST(SUM(runs) AS BIGINT) AS runs, CAST(SUM(succeeded) AS BIGINT) AS ok, \
         CAST(SUM(ttr_count) AS BIGINT) AS ttr_n, CAST(SUM(ttr_sum_ms) AS BIGINT) AS ttr_sum \
         FROM kb_daily WHERE day >= $1{filter} GROUP BY alertname, playbook HAVING SUM(runs) > 0 \
         ORDER BY alertname, playbook"
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(day);
    for b in &binds {
        q = q.bind(b.clone());
    }
    let rows = q.fetch_all(store.pool()).await?;
    let hist = ttr_histograms(store, day, namespaces).await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        let alertname: String = r.try_get("alertname")?;
        let playbook: String = r.try_get("playbook")?;
        let runs: i64 = r.try_get("runs")?;
        let ok: i64 = r.try_get("ok")?;
        let ttr_n: i64 = r.try_get("ttr_n")?;
        let ttr_sum: i64 = r.try_get("ttr_sum")?;
        let p90_ms = if ttr_n == 0 {
            None
        } else {
            let buckets = hist
                .iter()
                .find(|(a, p, _)| *a == alertname && *p == playbook)
                .map(|(_, _, b)| b.as_slice())
                .unwrap_or_default();
            p90(
                store, &alertname, &playbook, day, namespaces, ttr_n, buckets,
            )
            .await?
        };
        out.push(Stat {
            success_rate: ok as f64 / runs as f64,
            ttr_mean_s: (ttr_n > 0).then(|| ttr_sum as f64 / ttr_n as f64 / 1000.0),
            ttr_p90_s: p90_ms.map(|ms| ms / 1000.0),
            alertname,
            playbook,
            runs,
            succeeded: ok,
        });
    }
    Ok(out)
}

/// Per (alertname, playbook): (bucket, count) of the time-to-recover histogram in the window.
type Histograms = Vec<(String, String, Vec<(i64, i64)>)>;

async fn ttr_histograms(
    store: &Store,
    day: i64,
    namespaces: Option<&[String]>,
) -> Result<Histograms> {
    let mut binds = Vec::new();
    let filter = app_filter("namespace", namespaces, &mut binds);
    let sql = format!(
        "SELECT alertname, playbook, bucket, CAST(SUM(n) AS BIGINT) AS n FROM kb_ttr_hist \
         WHERE day >= $1{filter} GROUP BY alertname, playbook, bucket ORDER BY alertname, playbook, bucket"
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(day);
    for b in &binds {
        q = q.bind(b.clone());
    }
    let mut out: Histograms = Vec::new();
    for r in &q.fetch_all(store.pool()).await? {
        let a: String = r.try_get("alertname")?;
        let p: String = r.try_get("playbook")?;
        let bucket: i64 = r.try_get("bucket")?;
        let n: i64 = r.try_get("n")?;
        match out.last_mut() {
            Some((la, lp, v)) if *la == a && *lp == p => v.push((bucket, n)),
            _ => out.push((a, p, vec![(bucket, n)])),
        }
    }
    Ok(out)
}

/// The p90 time to recover (ms) of one group: exact from its jobs when they are few and all
/// still stored, else the upper bound of the histogram bucket holding the nearest rank.
async fn p90(
    store: &Store,
    alertname: &str,
    playbook: &str,
    day: i64,
    namespaces: Option<&[String]>,
    ttr_n: i64,
    buckets: &[(i64, i64)],
) -> Result<Option<f64>> {
    if ttr_n <= EXACT_P90_MAX {
        let mut binds = vec![alertname.to_string(), playbook.to_string()];
        // $1 = window start, $2/$3 = alertname/playbook, then the apps.
        let filter = app_filter("target_namespace", namespaces, &mut binds);
        let sql = format!(
            "SELECT ttr_ms FROM jobs WHERE created_at >= $1 AND alertname = $2 AND playbook = $3 \
             AND state = 'succeeded' AND dry_run = 0 AND ttr_ms IS NOT NULL{filter}"
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(day * store::DAY_MS);
        for b in &binds {
            q = q.bind(b.clone());
        }
        let mut values: Vec<i64> = q
            .fetch_all(store.pool())
            .await?
            .iter()
            .map(|r| r.try_get("ttr_ms"))
            .collect::<Result<_, _>>()?;
        // Pruned jobs leave the rollup complete but the raw values short: then the histogram.
        if values.len() as i64 == ttr_n {
            values.sort_unstable();
            return Ok(percentile(&values, 90.0));
        }
    }
    let total: i64 = buckets.iter().map(|(_, n)| n).sum();
    if total == 0 {
        return Ok(None);
    }
    let want = rank(total, 90.0);
    let mut seen = 0;
    for &(bucket, n) in buckets {
        seen += n;
        if seen >= want {
            return Ok(Some(store::ttr_bucket_upper_ms(bucket) as f64));
        }
    }
    Ok(None)
}

/// Success rate per target for repairs created since `since` (rounded down to its UTC day).
pub async fn target_stats(
    store: &Store,
    since: i64,
    namespaces: Option<&[String]>,
) -> Result<Vec<TargetStat>> {
    let mut binds = Vec::new();
    let filter = app_filter("namespace", namespaces, &mut binds);
    let sql = format!(
        "SELECT target_key, CAST(SUM(runs) AS BIGINT) AS runs, CAST(SUM(succeeded) AS BIGINT) AS ok \
         FROM kb_target_daily WHERE day >= $1{filter} GROUP BY target_key HAVING SUM(runs) > 0 ORDER BY target_key"
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(window_day(since));
    for b in &binds {
        q = q.bind(b.clone());
    }
    let mut out = Vec::new();
    for r in &q.fetch_all(store.pool()).await? {
        let runs: i64 = r.try_get("runs")?;
        let ok: i64 = r.try_get("ok")?;
        out.push(TargetStat {
            target: r.try_get("target_key")?,
            runs,
            succeeded: ok,
            success_rate: ok as f64 / runs as f64,
        });
    }
    Ok(out)
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
        for state in [JobState::Failed, JobState::Escalated] {
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
    let row = sqlx::query(
        "SELECT id, playbook, ttr_ms FROM jobs WHERE alertname = $1 AND target_namespace = $2 \
         AND state = 'succeeded' AND dry_run = 0 AND ttr_ms IS NOT NULL ORDER BY created_at DESC, id DESC LIMIT 1",
    )
    .bind(alertname)
    .bind(namespace)
    .fetch_optional(store.pool())
    .await?;
    let Some(r) = row else { return Ok(None) };
    let id: i64 = r.try_get("id")?;
    let playbook: String = r.try_get("playbook")?;
    let ttr: i64 = r.try_get("ttr_ms")?;
    let minutes = (ttr as f64 / 60_000.0).round().max(1.0) as i64;
    Ok(Some(format!(
        "last time, {playbook} fixed this in {minutes} min (job {id})"
    )))
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn the_p90_is_the_nearest_rank() {
        let v: Vec<i64> = (1..=10).collect();
        assert_eq!(percentile(&v, 90.0), Some(9.0));
        assert_eq!(percentile(&[5], 90.0), Some(5.0));
        assert_eq!(percentile(&[], 90.0), None);
        let v: Vec<i64> = (1..=20).collect();
        assert_eq!(percentile(&v, 90.0), Some(18.0));
    }
}
