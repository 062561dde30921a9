//! Approve mode's rows: the job awaiting a decision (read under a row lock), every click on
//! Approve or Reject with what came of it (`approvals`), the nonces of signed links already
//! used (`approval_links_used`), and the sweep that finds approvals past their expiry.
//!
//! The decisions themselves (who may, what the job does next) are `crate::approval`'s; this
//! file only reads and writes, inside the caller's transaction, so that a decision, its
//! record and its audit row commit together.

use sqlx::{AssertSqlSafe, Row};

use super::jobs::{JOB_COLUMNS, job_from_row};
use super::{Backend, Job, Result, Store, WriteTx};

/// A job as a decision sees it: the job, when its approval expires, and when its alert
/// occurrence resolved (if it did).
#[derive(Clone, Debug)]
pub struct ApprovalTarget {
    /// The job.
    pub job: Job,
    /// `jobs.approval_expires_at` (epoch ms); `None` for jobs that never waited for approval.
    pub expires_at: Option<i64>,
    /// When the alert occurrence that caused the job resolved (epoch ms), if it did.
    pub resolved_at: Option<i64>,
}

/// One click on Approve or Reject, as recorded.
#[derive(Clone, Debug)]
pub struct NewApproval<'a> {
    /// The job the click named (it may not exist).
    pub job_id: i64,
    /// `approve` or `reject`.
    pub choice: &'a str,
    /// `platform:id` of the person (or `email:<channel>` for a link).
    pub who: &'a str,
    /// Their display name.
    pub name: &'a str,
    /// The channel (or `api`) the click came through.
    pub via: &'a str,
    /// What came of it: `approved`, `rejected`, or the refusal's code.
    pub outcome: &'a str,
}

/// One recorded click.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ApprovalRecord {
    /// The job.
    pub job_id: i64,
    /// `approve` or `reject`.
    pub choice: String,
    /// `platform:id`.
    pub who: String,
    /// Display name.
    pub name: String,
    /// Channel the click came through.
    pub via: String,
    /// When (epoch ms; RFC 3339 when serialized).
    #[serde(serialize_with = "crate::store::rfc3339::ms")]
    pub decided_at: i64,
    /// `approved`, `rejected`, or the refusal's code.
    pub outcome: String,
}

fn record_from_row(r: &sqlx::any::AnyRow) -> Result<ApprovalRecord> {
    Ok(ApprovalRecord {
        job_id: r.try_get("job_id")?,
        choice: r.try_get("choice")?,
        who: r.try_get("who")?,
        name: r.try_get("name")?,
        via: r.try_get("via")?,
        decided_at: r.try_get("decided_at")?,
        outcome: r.try_get("outcome")?,
    })
}

const RECORD_COLUMNS: &str = "job_id, choice, who, name, via, decided_at, outcome";

impl WriteTx {
    /// The job a click names, locked on PostgreSQL until the transaction ends, so that two
    /// clicks (two replicas) decide one after the other and the second reads the first's
    /// committed decision. (On SQLite the writer lock already serialises them.)
    pub async fn approval_target(&mut self, job_id: i64) -> Result<Option<ApprovalTarget>> {
        let lock = match self.backend {
            Backend::Postgres => " FOR UPDATE OF jobs",
            Backend::Sqlite => "",
        };
        let columns = JOB_COLUMNS
            .split(", ")
            .map(|c| format!("jobs.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {columns}, jobs.approval_expires_at, alert_events.resolved_at AS alert_resolved_at \
             FROM jobs JOIN alert_events ON alert_events.id = jobs.alert_event_id \
             WHERE jobs.id = $1{lock}"
        )))
        .bind(job_id)
        .fetch_optional(&mut *self.tx)
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(ApprovalTarget {
            job: job_from_row(&row)?,
            expires_at: row.try_get("approval_expires_at")?,
            resolved_at: row.try_get("alert_resolved_at")?,
        }))
    }

    /// Records one click, decided or refused.
    pub async fn insert_approval(&mut self, a: &NewApproval<'_>, now: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO approvals (job_id, choice, who, name, via, decided_at, outcome) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(a.job_id)
        .bind(a.choice)
        .bind(a.who)
        .bind(a.name)
        .bind(a.via)
        .bind(now)
        .bind(a.outcome)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    /// The click that decided a job (`approved` or `rejected`), if one did.
    pub async fn approval_decision(&mut self, job_id: i64) -> Result<Option<ApprovalRecord>> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {RECORD_COLUMNS} FROM approvals WHERE job_id = $1 \
             AND outcome IN ('approved', 'rejected') ORDER BY id LIMIT 1"
        )))
        .bind(job_id)
        .fetch_optional(&mut *self.tx)
        .await?;
        row.as_ref().map(record_from_row).transpose()
    }

    /// Marks a signed link's nonce used. Returns false when it already was: a link works once,
    /// and the primary key makes the second of two concurrent uses conflict (on PostgreSQL it
    /// waits for the first's transaction, then conflicts).
    pub async fn use_link_nonce(&mut self, nonce: &str, job_id: i64, now: i64) -> Result<bool> {
        let r = sqlx::query(
            "INSERT INTO approval_links_used (nonce, job_id, used_at) VALUES ($1, $2, $3) \
             ON CONFLICT DO NOTHING",
        )
        .bind(nonce)
        .bind(job_id)
        .bind(now)
        .execute(&mut *self.tx)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Jobs still awaiting approval whose expiry has passed, oldest first, at most `limit`.
    /// On PostgreSQL rows another replica's sweep holds are skipped (it is expiring them).
    pub async fn expired_approvals(&mut self, now: i64, limit: i64) -> Result<Vec<Job>> {
        let lock = match self.backend {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE state = 'awaiting_approval' \
             AND approval_expires_at <= $1 ORDER BY approval_expires_at, id LIMIT $2{lock}"
        )))
        .bind(now)
        .bind(limit)
        .fetch_all(&mut *self.tx)
        .await?;
        rows.iter().map(job_from_row).collect()
    }
}

impl Store {
    /// Every click recorded for a job, oldest first.
    pub async fn approvals(&self, job_id: i64) -> Result<Vec<ApprovalRecord>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {RECORD_COLUMNS} FROM approvals WHERE job_id = $1 ORDER BY id"
        )))
        .bind(job_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(record_from_row).collect()
    }

    /// When a job's approval expires (epoch ms), if it waits for one.
    pub async fn approval_expires_at(&self, job_id: i64) -> Result<Option<i64>> {
        let row = sqlx::query("SELECT approval_expires_at FROM jobs WHERE id = $1")
            .bind(job_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(r) => r.try_get("approval_expires_at")?,
            None => None,
        })
    }
}
