//! The console inbox's read: the repairs waiting for a person's decision.
//!
//! Deciding is `crate::approval`'s (with `approvals.rs`'s rows); this only lists what waits,
//! through the `jobs_approval_due (state, approval_expires_at)` index, so the page costs the
//! same with ten thousand finished repairs in the table as with none.

use sqlx::{Arguments, AssertSqlSafe, Row};

use super::jobs::{JOB_COLUMNS, job_from_row};
use super::listing::Where;
use super::{Job, Result, Store};

/// A repair waiting in `awaiting_approval`, with when its approval expires.
#[derive(Clone, Debug)]
pub struct AwaitingApproval {
    /// The job.
    pub job: Job,
    /// When the approval expires and the repair goes to humans (epoch ms).
    pub expires_at: Option<i64>,
}

impl Store {
    /// Repairs waiting for approval in `namespaces` (`None`: every app), the first to expire
    /// first, at most `limit`.
    pub async fn awaiting_approval(
        &self,
        namespaces: Option<&[String]>,
        limit: i64,
    ) -> Result<Vec<AwaitingApproval>> {
        let mut w = Where::new();
        w.eq("state", "=", "awaiting_approval".to_string());
        if let Some(ns) = namespaces {
            w.any_of("target_namespace", ns);
        }
        let p = w.next();
        w.args.add(limit).expect("encoding an integer");
        let sql = format!(
            "SELECT {JOB_COLUMNS}, approval_expires_at FROM jobs{} \
             ORDER BY approval_expires_at, id LIMIT {p}",
            w.sql()
        );
        let rows = sqlx::query_with(AssertSqlSafe(sql), w.args)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(AwaitingApproval {
                    job: job_from_row(r)?,
                    expires_at: r.try_get("approval_expires_at")?,
                })
            })
            .collect()
    }
}
