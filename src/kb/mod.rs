//! The knowledge base: what was tried, what worked, how fast.
//!
//! Deterministic queries over the repair history in the store. A repair counts when it
//! finished (succeeded, failed or escalated) and was not a dry run; its time to recover is the
//! alert's start to its resolve, recorded on the job when the loop closes.

use sqlx::Row;

use crate::store::{self, Job, Store};

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

const FINISHED: &str = "dry_run = 0 AND state IN ('succeeded', 'failed', 'escalated')";

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[i64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    Some(sorted[rank.min(sorted.len()) - 1] as f64)
}

/// Success rate and time to recover per (alertname, playbook) for repairs created since
/// `since` (epoch ms), optionally only in `namespaces`.
pub async fn stats(store: &Store, since: i64, namespaces: Option<&[String]>) -> Result<Vec<Stat>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT alertname, playbook, target_namespace, state, ttr_ms FROM jobs \
         WHERE created_at >= $1 AND {FINISHED} ORDER BY alertname, playbook"
    )))
    .bind(since)
    .fetch_all(store.pool())
    .await?;
    let mut out: Vec<(Stat, Vec<i64>)> = Vec::new();
    for r in &rows {
        let ns: String = r.try_get("target_namespace")?;
        if namespaces.is_some_and(|allowed| !allowed.contains(&ns)) {
            continue;
        }
        let alertname: String = r.try_get("alertname")?;
        let playbook: String = r.try_get("playbook")?;
        let state: String = r.try_get("state")?;
        let ttr: Option<i64> = r.try_get("ttr_ms")?;
        let same = out
            .last()
            .is_some_and(|(s, _)| s.alertname == alertname && s.playbook == playbook);
        if !same {
            out.push((
                Stat {
                    alertname,
                    playbook,
                    runs: 0,
                    succeeded: 0,
                    success_rate: 0.0,
                    ttr_mean_s: None,
                    ttr_p90_s: None,
                },
                Vec::new(),
            ));
        }
        let (stat, ttrs) = out.last_mut().expect("pushed above");
        stat.runs += 1;
        if state == "succeeded" {
            stat.succeeded += 1;
            if let Some(t) = ttr {
                ttrs.push(t);
            }
        }
    }
    Ok(out
        .into_iter()
        .map(|(mut s, mut ttrs)| {
            s.success_rate = s.succeeded as f64 / s.runs as f64;
            ttrs.sort_unstable();
            if !ttrs.is_empty() {
                s.ttr_mean_s = Some(ttrs.iter().sum::<i64>() as f64 / ttrs.len() as f64 / 1000.0);
                s.ttr_p90_s = percentile(&ttrs, 90.0).map(|ms| ms / 1000.0);
            }
            s
        })
        .collect())
}

/// Success rate per target for repairs created since `since`.
pub async fn target_stats(
    store: &Store,
    since: i64,
    namespaces: Option<&[String]>,
) -> Result<Vec<TargetStat>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT target_key, target_namespace, COUNT(*) AS runs, \
         CAST(SUM(CASE WHEN state = 'succeeded' THEN 1 ELSE 0 END) AS BIGINT) AS ok \
         FROM jobs WHERE created_at >= $1 AND {FINISHED} GROUP BY target_key, target_namespace ORDER BY target_key"
    )))
    .bind(since)
    .fetch_all(store.pool())
    .await?;
    let mut out = Vec::new();
    for r in &rows {
        let ns: String = r.try_get("target_namespace")?;
        if namespaces.is_some_and(|allowed| !allowed.contains(&ns)) {
            continue;
        }
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
    let rows = sqlx::query(
        "SELECT id FROM jobs WHERE alertname = $1 AND target_namespace = $2 AND dry_run = 0 \
         AND state IN ('succeeded', 'failed', 'escalated') \
         ORDER BY CASE WHEN state = 'succeeded' THEN 0 ELSE 1 END, created_at DESC, id DESC LIMIT $3",
    )
    .bind(alertname)
    .bind(namespace)
    .bind(limit)
    .fetch_all(store.pool())
    .await?;
    let mut jobs = Vec::with_capacity(rows.len());
    for r in &rows {
        if let Some(j) = store.job(r.try_get("id")?).await? {
            jobs.push(j);
        }
    }
    Ok(jobs)
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
