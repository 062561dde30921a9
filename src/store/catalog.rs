//! Reads of the console's rule catalog (`/ui/rules`): the latest repairs of one rule.

use sqlx::AssertSqlSafe;

use super::jobs::{JOB_COLUMNS, job_from_row};
use super::listing::Where;
use super::{Job, Result, Store};

impl Store {
    /// The newest `limit` repairs (every chain step) of rule `rule`, newest first, optionally
    /// only on targets in `namespaces`. Reads through the `(rule, …)` index of jobs.
    pub async fn recent_jobs_of_rule(
        &self,
        rule: &str,
        namespaces: Option<&[String]>,
        limit: i64,
    ) -> Result<Vec<Job>> {
        let mut w = Where::new();
        w.eq("rule", "=", rule.to_string());
        if let Some(ns) = namespaces {
            w.any_of("target_namespace", ns);
        }
        // An integer from this crate, never user text: safe to inline.
        let limit = limit.clamp(1, 1_000);
        let sql = format!(
            "SELECT {JOB_COLUMNS} FROM jobs{} ORDER BY created_at DESC, id DESC LIMIT {limit}",
            w.sql()
        );
        let rows = sqlx::query_with(AssertSqlSafe(sql), w.args)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(job_from_row).collect()
    }
}
