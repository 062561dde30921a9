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

/// The p90 time to recover is taken over at most this many of a group's newest recoveries in
/// the window (exact when it has fewer), read from a covering index.
pub const P90_SAMPLE: i64 = 2_000;

/// ` AND column IN ($k, …)` for an app filter, with its values appended to `binds`; the
/// placeholders continue after `first_free - 1` fixed ones.
fn app_filter(
    column: &str,
    namespaces: &[String],
    first_free: usize,
    binds: &mut Vec<String>,
) -> String {
    if namespaces.is_empty() {
        return " AND 1 = 0".into();
    }
    let first = first_free + binds.len();
    binds.extend(namespaces.iter().cloned());
    let ps: Vec<String> = (first..first + namespaces.len())
        .map(|i| format!("${i}"))
        .collect();
    format!(" AND {column} IN ({})", ps.join(", "))
}

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
    let mut binds = Vec::new();
    let (table, filter) = match namespaces {
        None => ("kb_daily_all", String::new()),
        Some(ns) => ("kb_daily", app_filter("namespace", ns, 2, &mut binds)),
    };
    let sql = format!(
        "SELECT alertname, playbook, CAST(SUM(runs) AS BIGINT) AS runs, CAST(SUM(succeeded) AS BIGINT) AS ok, \
         CAST(SUM(ttr_count) AS BIGINT) AS ttr_n, CAST(SUM(ttr_sum_ms) AS BIGINT) AS ttr_sum \
         FROM {table} WHERE day >= $1{filter} GROUP BY alertname, playbook HAVING SUM(runs) > 0 \
         ORDER BY alertname, playbook"
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(day);
    for b in &binds {
        q = q.bind(b.clone());
    }
    let rows = q.fetch_all(store.pool()).await?;
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
            p90(store, &alertname, &playbook, day, namespaces).await?
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

/// The p90 time to recover (ms) over a group's newest recoveries in the window.
async fn p90(
    store: &Store,
    alertname: &str,
    playbook: &str,
    day: i64,
    namespaces: Option<&[String]>,
) -> Result<Option<f64>> {
    let mut binds = vec![alertname.to_string(), playbook.to_string()];
    // $1 = window start, $2/$3 = alertname/playbook, then the apps.
    let filter = namespaces
        .map(|ns| app_filter("target_namespace", ns, 2, &mut binds))
        .unwrap_or_default();
    // The database picks the value (a sort of at most P90_SAMPLE integers over a covering index)
    // so that only one row crosses to the daemon.
    let sample = format!(
        "SELECT ttr_ms FROM jobs WHERE alertname = $2 AND playbook = $3 AND state = 'succeeded' \
         AND dry_run = 0 AND created_at >= $1 AND ttr_ms IS NOT NULL{filter} \
         ORDER BY created_at DESC LIMIT {P90_SAMPLE}"
    );
    let bind_all = |sql: String| {
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(day * store::DAY_MS);
        for b in &binds {
            q = q.bind(b.clone());
        }
        q
    };
    let n: i64 = bind_all(format!("SELECT COUNT(*) AS n FROM ({sample}) AS s"))
        .fetch_one(store.pool())
        .await?
        .try_get("n")?;
    if n == 0 {
        return Ok(None);
    }
    let row = bind_all(format!(
        "SELECT ttr_ms FROM ({sample}) AS s ORDER BY ttr_ms LIMIT 1 OFFSET {}",
        nearest_rank(n, 90.0) - 1
    ))
    .fetch_one(store.pool())
    .await?;
    Ok(Some(row.try_get::<i64, _>("ttr_ms")? as f64))
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
    let day = window_day(since);
    // Whole 30-day periods from the period table, the days before the first one from the daily.
    let first_period = day.div_euclid(30) + if day.rem_euclid(30) == 0 { 0 } else { 1 };
    let mut binds = Vec::new();
    let filter = namespaces
        .map(|ns| app_filter("namespace", ns, 4, &mut binds))
        .unwrap_or_default();
    let sql = format!(
        "SELECT target_key, CAST(SUM(runs) AS BIGINT) AS runs, CAST(SUM(succeeded) AS BIGINT) AS ok FROM ( \
           SELECT target_key, runs, succeeded FROM kb_target_period WHERE period >= $1{filter} \
           UNION ALL \
           SELECT target_key, runs, succeeded FROM kb_target_daily WHERE day >= $2 AND day < $3{filter} \
         ) AS t GROUP BY target_key HAVING SUM(runs) > 0 ORDER BY target_key"
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(first_period)
        .bind(day)
        .bind(first_period * 30);
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
    use super::nearest_rank;

    #[test]
    fn the_p90_is_the_nearest_rank() {
        assert_eq!(nearest_rank(10, 90.0), 9);
        assert_eq!(nearest_rank(1, 90.0), 1);
        assert_eq!(nearest_rank(20, 90.0), 18);
        assert_eq!(nearest_rank(3, 90.0), 3);
        assert_eq!(nearest_rank(2, 90.0), 2);
    }
}
