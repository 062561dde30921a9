//! The store as the job queue: a worker claims the next due job, keeps its lease alive with
//! heartbeats, and the reaper interrupts the jobs whose lease expired.

use sqlx::{AssertSqlSafe, Row};

use super::{JOB_COLUMNS, Job, JobState, NewEscalation, Record, job_from_row};
use crate::store::{Backend, Result, Store, now_ms};

impl Store {
    /// Claims the next due job for `owner`, moving it to `running`. Replicas never claim the
    /// same job: PostgreSQL skips rows another transaction has locked, and the UPDATE re-checks
    /// the state on both backends.
    pub async fn claim_next(&self, owner: &str, now: i64) -> Result<Option<Job>> {
        let mut tx = self.begin_write().await?;
        let lock = match self.backend {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        // Workers are shared by both lanes: a due real repair goes before any shadow job, so a
        // broad shadow rule during an incident never delays one. The state/not_before index
        // still finds the due rows; only they (at most each lane's queue bound) are sorted.
        let candidate = sqlx::query(AssertSqlSafe(format!(
            "SELECT id, state FROM jobs WHERE state IN ('queued', 'waiting') AND not_before <= $1 \
             ORDER BY (mode = 'shadow'), not_before, id LIMIT 1{lock}"
        )))
        .bind(now)
        .fetch_optional(&mut *tx.tx)
        .await?;
        let Some(candidate) = candidate else {
            tx.rollback().await?;
            return Ok(None);
        };
        let id: i64 = candidate.try_get("id")?;
        let from =
            JobState::parse(&candidate.try_get::<String, _>("state")?).unwrap_or(JobState::Queued);
        let r = sqlx::query(
            "UPDATE jobs SET state = 'running', owner = $1, started_at = $2, heartbeat_at = $2, updated_at = $2 \
             WHERE id = $3 AND state = $4",
        )
        .bind(owner)
        .bind(now)
        .bind(id)
        .bind(from.as_str())
        .execute(&mut *tx.tx)
        .await?;
        if r.rows_affected() == 0 {
            tx.rollback().await?;
            return Ok(None);
        }
        tx.insert_event(
            id,
            Some(from),
            JobState::Running,
            now,
            &format!("claimed by {owner}"),
        )
        .await?;
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1"
        )))
        .bind(id)
        .fetch_one(&mut *tx.tx)
        .await?;
        let job = job_from_row(&row)?;
        tx.commit().await?;
        Ok(Some(job))
    }

    /// Moves a job in its own transaction; see [`WriteTx::transition`].
    pub async fn transition(
        &self,
        job_id: i64,
        from: JobState,
        to: JobState,
        note: &str,
    ) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let moved = tx
            .transition(job_id, from, to, now_ms(), note, Record::Nothing)
            .await?;
        tx.commit().await?;
        Ok(moved)
    }

    /// Gives a job `owner` has just claimed back to the queue untouched: `running → waiting`
    /// with `not_before = until` (a maintenance window holds its target), the claim's marks
    /// cleared so the job reads as never started, and a `job_events` row with `note`. Returns
    /// false when the job is no longer this owner's running job (then nothing is written).
    pub async fn defer_claimed(
        &self,
        job_id: i64,
        owner: &str,
        until: i64,
        note: &str,
    ) -> Result<bool> {
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        let r = sqlx::query(
            "UPDATE jobs SET state = 'waiting', not_before = $1, owner = NULL, started_at = NULL, \
             heartbeat_at = NULL, updated_at = $2 WHERE id = $3 AND owner = $4 AND state = 'running'",
        )
        .bind(until)
        .bind(now)
        .bind(job_id)
        .bind(owner)
        .execute(&mut *tx.tx)
        .await?;
        if r.rows_affected() == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        tx.insert_event(
            job_id,
            Some(JobState::Running),
            JobState::Waiting,
            now,
            note,
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Records a step in its own transaction.
    pub async fn add_step(&self, job_id: i64, action: &str, detail: &str) -> Result<()> {
        let mut tx = self.begin_write().await?;
        tx.insert_step(job_id, action, detail, now_ms()).await?;
        tx.commit().await
    }

    /// Keeps a running job's lease alive.
    /// Returns false when the job is no longer this owner's to run (a reaper interrupted it
    /// after a lost lease): the run must stop without touching the job again.
    pub async fn heartbeat(&self, job_id: i64, owner: &str) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let r = sqlx::query(
            "UPDATE jobs SET heartbeat_at = $1 WHERE id = $2 AND owner = $3 AND state IN ('running', 'verifying')",
        )
        .bind(now_ms())
        .bind(job_id)
        .bind(owner)
        .execute(&mut *tx.tx)
        .await?;
        tx.commit().await?;
        Ok(r.rows_affected() > 0)
    }

    /// Marks running/verifying jobs whose process is gone as `interrupted`, escalates each to
    /// humans and moves it to `escalated`, all in one transaction (so no interrupted job can be
    /// left without its escalation), and returns them. `all` (SQLite at start-up: one process
    /// owns the file) takes every such job; otherwise only those whose heartbeat is older than
    /// the lease (another replica, or another worker, may be alive and working on the rest).
    pub async fn interrupt_orphans(&self, now: i64, lease_ms: i64, all: bool) -> Result<Vec<Job>> {
        let mut tx = self.begin_write().await?;
        let lock = match self.backend {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE state IN ('running', 'verifying') \
             AND ($1 = 1 OR COALESCE(heartbeat_at, 0) < $2) ORDER BY id{lock}"
        )))
        .bind(i64::from(all))
        .bind(now - lease_ms)
        .fetch_all(&mut *tx.tx)
        .await?;
        let mut jobs = Vec::with_capacity(rows.len());
        for row in &rows {
            let job = job_from_row(row)?;
            let note = format!(
                "process {} stopped while the job was {}; not re-run automatically",
                job.owner.as_deref().unwrap_or("?"),
                job.state
            );
            if tx
                .transition(
                    job.id,
                    job.state,
                    JobState::Interrupted,
                    now,
                    &note,
                    Record::Error("interrupted"),
                )
                .await?
            {
                let reason = format!(
                    "job {} ({} on {}) was interrupted while {}; the target may be half-repaired, a person must check",
                    job.id, job.playbook, job.target_key, job.state
                );
                tx.insert_escalation(
                    &NewEscalation::for_job(&job, "human", "default", &reason),
                    now,
                )
                .await?;
                tx.transition(
                    job.id,
                    JobState::Interrupted,
                    JobState::Escalated,
                    now,
                    "escalated to humans",
                    Record::Nothing,
                )
                .await?;
                jobs.push(Job {
                    state: JobState::Escalated,
                    ..job
                });
            }
        }
        tx.commit().await?;
        Ok(jobs)
    }

    /// Real (not shadow) jobs queued or waiting across all replicas: the lane whose depth
    /// `jobs.queue_capacity` bounds with a 503 (`aiops_queue_depth`).
    pub async fn pending_count(&self) -> Result<i64> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT COUNT(*) AS n FROM jobs WHERE state IN ('queued', 'waiting') AND {}",
            crate::store::intake::lane(crate::rules::Mode::Auto)
        )))
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get("n")?)
    }
}
