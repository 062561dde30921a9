//! Reads the console's repair timeline needs besides a job's own rows: the notifications the
//! job caused, each with its delivery attempts, and the jobs that followed it in its chain.
//!
//! Two indexed queries per timeline (`notifications_job`, `notification_attempts_notification`),
//! however many notifications and attempts there are, so a timeline costs the same with
//! 100,000 alerts in the store as with ten.

use sqlx::{Arguments, AssertSqlSafe, Row};

use super::jobs::{JOB_COLUMNS, job_from_row};
use super::listing::Where;
use super::{Error, Job, NotificationAttempt, NotificationState, Result, Store};

/// One notification a job caused, as its timeline shows it (no body: the timeline says where
/// it went and whether it arrived; the message itself is in the channel).
#[derive(Clone, Debug, serde::Serialize)]
pub struct JobNotification {
    /// Id.
    pub id: i64,
    /// Event kind (`escalation`, `approval_request`, …).
    pub event: String,
    /// Channel name.
    pub channel: String,
    /// Rendered subject.
    pub subject: String,
    /// Delivery state.
    pub state: NotificationState,
    /// Last error (built without URLs or tokens, like every stored error).
    pub last_error: Option<String>,
    /// When it was enqueued (epoch ms).
    pub created_at: i64,
    /// When the channel accepted it.
    pub sent_at: Option<i64>,
    /// Its delivery attempts, oldest first.
    pub attempts: Vec<NotificationAttempt>,
}

impl Store {
    /// The notifications job `job_id` caused, oldest first, each with its attempts.
    pub async fn job_notifications(&self, job_id: i64) -> Result<Vec<JobNotification>> {
        let rows = sqlx::query(
            "SELECT id, event, channel, subject, state, last_error, created_at, sent_at \
             FROM notifications WHERE job_id = $1 ORDER BY id",
        )
        .bind(job_id)
        .fetch_all(&self.pool)
        .await?;
        let mut out = rows
            .iter()
            .map(|r| {
                let state: String = r.try_get("state")?;
                Ok(JobNotification {
                    id: r.try_get("id")?,
                    event: r.try_get("event")?,
                    channel: r.try_get("channel")?,
                    subject: r.try_get("subject")?,
                    state: NotificationState::parse(&state).ok_or(Error::Corrupt {
                        column: "state",
                        message: format!("unknown notification state {state:?}"),
                    })?,
                    last_error: r.try_get("last_error")?,
                    created_at: r.try_get("created_at")?,
                    sent_at: r.try_get("sent_at")?,
                    attempts: Vec::new(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        if out.is_empty() {
            return Ok(out);
        }
        let mut w = Where::new();
        let mut ps = Vec::with_capacity(out.len());
        for n in &out {
            ps.push(w.next());
            w.args.add(n.id).expect("encoding an integer");
        }
        let sql = format!(
            "SELECT notification_id, at, result, http_status, retry_after_ms, detail \
             FROM notification_attempts WHERE notification_id IN ({}) ORDER BY id",
            ps.join(", ")
        );
        let rows = sqlx::query_with(AssertSqlSafe(sql), w.args)
            .fetch_all(&self.pool)
            .await?;
        for r in &rows {
            let id: i64 = r.try_get("notification_id")?;
            let attempt = NotificationAttempt {
                at: r.try_get("at")?,
                result: r.try_get("result")?,
                http_status: r.try_get("http_status")?,
                retry_after_ms: r.try_get("retry_after_ms")?,
                detail: r.try_get("detail")?,
            };
            if let Some(n) = out.iter_mut().find(|n| n.id == id) {
                n.attempts.push(attempt);
            }
        }
        Ok(out)
    }

    /// The jobs that followed `job` in its escalation chain, in order ([`Store::chain_of`]
    /// gives those before it). Children share the job's fingerprint, so each step is a lookup
    /// on the fingerprint index, not a scan.
    pub async fn chain_after(&self, job: &Job) -> Result<Vec<Job>> {
        let mut after: Vec<Job> = Vec::new();
        let mut parent = job.id;
        // A chain is as long as its rule's `escalate:` list; the bound only guards a damaged store.
        for _ in 0..64 {
            let row = sqlx::query(AssertSqlSafe(format!(
                "SELECT {JOB_COLUMNS} FROM jobs WHERE fingerprint = $1 AND parent_id = $2 \
                 ORDER BY id LIMIT 1"
            )))
            .bind(&job.fingerprint)
            .bind(parent)
            .fetch_optional(&self.pool)
            .await?;
            let Some(next) = row.as_ref().map(job_from_row).transpose()? else {
                break;
            };
            parent = next.id;
            after.push(next);
        }
        Ok(after)
    }
}
