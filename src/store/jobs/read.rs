//! Reads of jobs and their history: one job, a chain, steps, events, escalations, success
//! rates; and the time to recover of a job that just succeeded.

use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};

use super::{Escalation, JOB_COLUMNS, Job, JobEvent, Step, job_from_row};
use crate::store::{Result, Store};

impl Store {
    /// One job.
    pub async fn job(&self, id: i64) -> Result<Option<Job>> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(job_from_row).transpose()
    }

    /// All jobs, oldest first (tests, CLI).
    pub async fn jobs(&self) -> Result<Vec<Job>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {JOB_COLUMNS} FROM jobs ORDER BY id"
        )))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(job_from_row).collect()
    }

    /// A job's transitions, oldest first.
    pub async fn job_events(&self, job_id: i64) -> Result<Vec<JobEvent>> {
        let rows = sqlx::query(
            "SELECT from_state, to_state, at, note FROM job_events WHERE job_id = $1 ORDER BY id",
        )
        .bind(job_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(JobEvent {
                    from: r.try_get("from_state")?,
                    to: r.try_get("to_state")?,
                    at: r.try_get("at")?,
                    note: r.try_get("note")?,
                })
            })
            .collect()
    }

    /// A job's steps, oldest first.
    pub async fn job_steps(&self, job_id: i64) -> Result<Vec<Step>> {
        let rows =
            sqlx::query("SELECT at, action, detail FROM job_steps WHERE job_id = $1 ORDER BY id")
                .bind(job_id)
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| {
                Ok(Step {
                    at: r.try_get("at")?,
                    action: r.try_get("action")?,
                    detail: r.try_get("detail")?,
                })
            })
            .collect()
    }

    /// Share of finished, non-dry-run jobs of `playbook` for `alertname` since `since` that
    /// succeeded; `None` without any such job. A reverted repair counts as a run that did not
    /// succeed; a run that stopped before a change its GitOps owner keeps in Git (its
    /// `gitops_skip` step) is no run of the playbook and does not count.
    pub async fn success_rate(
        &self,
        playbook: &str,
        alertname: &str,
        since: i64,
    ) -> Result<Option<f64>> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n, CAST(COALESCE(SUM(CASE WHEN state = 'succeeded' THEN 1 ELSE 0 END), 0) AS BIGINT) AS ok \
             FROM jobs WHERE playbook = $1 AND alertname = $2 AND created_at >= $3 AND dry_run = 0 \
             AND state IN ('succeeded', 'failed', 'escalated', 'reverted') \
             AND NOT (approval_expires_at IS NOT NULL AND started_at IS NULL) \
             AND NOT EXISTS (SELECT 1 FROM job_steps s WHERE s.job_id = jobs.id AND s.action = 'gitops_skip')",
        )
        .bind(playbook)
        .bind(alertname)
        .bind(since)
        .fetch_one(&self.pool)
        .await?;
        let n: i64 = row.try_get("n")?;
        let ok: i64 = row.try_get("ok")?;
        Ok((n > 0).then(|| ok as f64 / n as f64))
    }

    /// Runs of `playbook` on a target since `since` that changed the cluster (a change step was
    /// recorded, whatever the run's outcome: a raise whose rollout then failed still raised).
    /// Dry runs never count.
    pub async fn changes_by(&self, playbook: &str, target_key: &str, since: i64) -> Result<i64> {
        let row = sqlx::query(
            "SELECT COUNT(DISTINCT j.id) AS n FROM jobs j JOIN job_steps s ON s.job_id = j.id \
             WHERE j.playbook = $1 AND j.target_key = $2 AND j.created_at >= $3 AND j.dry_run = 0 \
             AND s.action IN ('restart', 'rollback', 'set_memory', 'scale', 'delete_failed_pods', 'delete_finished_jobs')",
        )
        .bind(playbook)
        .bind(target_key)
        .bind(since)
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get("n")?)
    }

    /// The `limit` most recent jobs on a target, newest first.
    pub async fn recent_jobs_of(&self, target_key: &str, limit: i64) -> Result<Vec<Job>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE target_key = $1 ORDER BY id DESC LIMIT $2"
        )))
        .bind(target_key)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(job_from_row).collect()
    }

    /// The chain a job belongs to, from its root to itself.
    pub async fn chain_of(&self, job: &Job) -> Result<Vec<Job>> {
        let mut chain = vec![job.clone()];
        let mut parent = job.parent_id;
        while let Some(id) = parent {
            let Some(j) = self.job(id).await? else { break };
            parent = j.parent_id;
            chain.push(j);
        }
        chain.reverse();
        Ok(chain)
    }

    /// Whether a resolved occurrence of `fingerprint` arrived at or after `since`.
    pub async fn resolved_since(&self, fingerprint: &str, since: i64) -> Result<bool> {
        let row = sqlx::query(
            "SELECT id FROM alert_events WHERE fingerprint = $1 AND status = 'resolved' AND received_at >= $2 LIMIT 1",
        )
        .bind(fingerprint)
        .bind(since)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some())
    }

    /// Records the time to recover of a job that just succeeded, if its alert occurrence
    /// already resolved (a resolve can arrive while the repair is still being verified). The
    /// occurrence is the job's firing row's (fingerprint, `starts_at`), as in `record_ttr`.
    pub async fn record_ttr_if_resolved(&self, job_id: i64) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let r = sqlx::query(
            "UPDATE jobs SET ttr_ms = (SELECT COALESCE(a.ends_at, a.received_at) - a.starts_at FROM alert_events a \
             WHERE a.fingerprint = jobs.fingerprint AND a.status = 'resolved' \
             AND a.starts_at = (SELECT f.starts_at FROM alert_events f WHERE f.id = jobs.alert_event_id) \
             ORDER BY a.id DESC LIMIT 1) \
             WHERE id = $1 AND state = 'succeeded' AND ttr_ms IS NULL",
        )
        .bind(job_id)
        .execute(&mut *tx.tx)
        .await?;
        if r.rows_affected() > 0 {
            tx.rollup_ttr(job_id).await?;
        }
        tx.commit().await
    }

    /// The escalations recorded for one job, oldest first.
    pub async fn escalations_of(&self, job_id: i64) -> Result<Vec<Escalation>> {
        let rows = sqlx::query(
            "SELECT job_id, kind, destination, reason, created_at FROM escalations WHERE job_id = $1 ORDER BY id",
        )
        .bind(job_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(escalation_from_row).collect()
    }

    /// All escalations, oldest first.
    pub async fn escalations(&self) -> Result<Vec<Escalation>> {
        let rows = sqlx::query(
            "SELECT job_id, kind, destination, reason, created_at FROM escalations ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(escalation_from_row).collect()
    }
}

fn escalation_from_row(r: &AnyRow) -> Result<Escalation> {
    Ok(Escalation {
        job_id: r.try_get("job_id")?,
        kind: r.try_get("kind")?,
        destination: r.try_get("destination")?,
        reason: r.try_get("reason")?,
        created_at: r.try_get("created_at")?,
    })
}
