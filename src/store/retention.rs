//! Retention: deleting what is older than the configured cutoffs, in small batches.

use sqlx::{AssertSqlSafe, Row};

use super::kb::DAY_MS;
use super::{JobState, Result, Store};

/// Rows removed by one pruning pass, per table family.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Pruned {
    /// Alert occurrences (and their decisions).
    pub alerts: u64,
    /// Repairs (with their steps, events and escalations).
    pub repairs: u64,
    /// Rollup rows.
    pub stats: u64,
    /// Audit log entries.
    pub audit: u64,
    /// Storm-brake activity rows.
    pub activity: u64,
}

/// Cutoffs (epoch ms) of one pruning pass: rows older than these go.
#[derive(Clone, Copy, Debug)]
pub struct Cutoffs {
    /// Alert occurrences and decisions received before this.
    pub alerts: i64,
    /// Finished repairs created before this.
    pub repairs: i64,
    /// Rollup days before this.
    pub stats: i64,
    /// Audit entries before this.
    pub audit: i64,
    /// Storm-brake activity last seen before this.
    pub activity: i64,
}

/// Rows deleted per statement: SQLite has one writer, so pruning yields between batches and
/// intake never waits long behind it.
const PRUNE_BATCH: i64 = 2_000;

impl Store {
    /// Deletes what is older than the cutoffs, in small batches. Active repairs, repairs a
    /// newer repair continues (chains) and alerts a kept repair or decision points to are kept.
    pub async fn prune(&self, c: &Cutoffs) -> Result<Pruned> {
        let mut out = Pruned::default();
        let finished = JobState::ALL
            .into_iter()
            .filter(|s| s.is_terminal())
            .map(|s| format!("'{}'", s.as_str()))
            .collect::<Vec<_>>()
            .join(", ");
        // Repairs first, so their alerts and decisions become free to go.
        let pick_jobs = format!(
            "SELECT id FROM jobs WHERE created_at < $1 AND state IN ({finished}) \
             AND NOT EXISTS (SELECT 1 FROM jobs c WHERE c.parent_id = jobs.id AND c.created_at >= $1) \
             ORDER BY id LIMIT {PRUNE_BATCH}"
        );
        out.repairs += self
            .prune_by_ids(&pick_jobs, c.repairs, |list| {
                vec![
                    format!("DELETE FROM job_steps WHERE job_id IN ({list})"),
                    format!("DELETE FROM job_events WHERE job_id IN ({list})"),
                    format!("DELETE FROM escalations WHERE job_id IN ({list})"),
                    // Their notifications (the outbox references jobs) and every attempt of them.
                    format!(
                        "DELETE FROM notification_attempts WHERE notification_id IN \
                         (SELECT id FROM notifications WHERE job_id IN ({list}))"
                    ),
                    format!("DELETE FROM notifications WHERE job_id IN ({list})"),
                    format!("UPDATE decisions SET job_id = NULL WHERE job_id IN ({list})"),
                    // A chain's later job may point at one pruned in the same batch.
                    format!("UPDATE jobs SET parent_id = NULL WHERE parent_id IN ({list})"),
                    format!("DELETE FROM jobs WHERE id IN ({list})"),
                ]
            })
            .await?;
        // Finished notifications about no repair (storm brake, fired alerts, deploys) age
        // with the repairs; each batch takes its attempts with it (they reference it).
        self.prune_by_ids(
            &format!(
                "SELECT id FROM notifications WHERE job_id IS NULL AND created_at < $1 \
                 AND state IN ('sent', 'failed', 'suppressed') ORDER BY id LIMIT {PRUNE_BATCH}"
            ),
            c.repairs,
            |list| {
                vec![
                    format!("DELETE FROM notification_attempts WHERE notification_id IN ({list})"),
                    format!("DELETE FROM notifications WHERE id IN ({list})"),
                ]
            },
        )
        .await?;
        // Decisions, then the alert occurrences nothing kept refers to.
        self.delete_batched(
            &format!(
                "DELETE FROM decisions WHERE id IN (SELECT id FROM decisions WHERE created_at < $1 \
                 AND job_id IS NULL LIMIT {PRUNE_BATCH})"
            ),
            c.alerts,
        )
        .await?;
        out.alerts += self
            .delete_batched(&format!(
                "DELETE FROM alert_events WHERE id IN (SELECT a.id FROM alert_events a WHERE a.received_at < $1 \
                 AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.alert_event_id = a.id) \
                 AND NOT EXISTS (SELECT 1 FROM decisions d WHERE d.alert_event_id = a.id) LIMIT {PRUNE_BATCH})"
            ), c.alerts)
            .await?;
        let day = c.stats.div_euclid(DAY_MS);
        out.stats += self
            .delete_batched(
                &by_key(
                    "kb_daily",
                    "namespace, day, alertname, playbook",
                    "day < $1",
                ),
                day,
            )
            .await?;
        for (table, key) in [
            ("kb_daily_all", "day, alertname, playbook"),
            ("kb_target_daily", "day, namespace, target_key"),
        ] {
            self.delete_batched(&by_key(table, key, "day < $1"), day)
                .await?;
        }
        self.delete_batched(
            &by_key(
                "kb_target_period",
                "period, namespace, target_key",
                "period < $1",
            ),
            day.div_euclid(30),
        )
        .await?;
        out.audit += self
            .delete_batched(&by_key("audit_log", "id", "at < $1"), c.audit)
            .await?;
        // Approve mode's clicks are audit records too. A used link's nonce outlives its link
        // (links end with their approval, long before the audit cutoff).
        out.audit += self
            .delete_batched(&by_key("approvals", "id", "decided_at < $1"), c.audit)
            .await?;
        self.delete_batched(
            &by_key("approval_links_used", "nonce", "used_at < $1"),
            c.audit,
        )
        .await?;
        out.activity += self
            .delete_batched(
                &by_key("target_activity", "target_key", "last_seen < $1"),
                c.activity,
            )
            .await?;
        Ok(out)
    }

    /// Until `pick` (`SELECT id … $1 … LIMIT`) finds nothing more: in one transaction per batch,
    /// runs the statements `batch` gives for the picked ids (a comma-separated list of
    /// integers from the database, never user input). Returns the rows the last statement of
    /// each batch affected (the deletion of the picked rows themselves).
    async fn prune_by_ids(
        &self,
        pick: &str,
        cutoff: i64,
        batch: impl Fn(&str) -> Vec<String>,
    ) -> Result<u64> {
        let mut total = 0;
        loop {
            let mut tx = self.begin_write().await?;
            let ids: Vec<i64> = sqlx::query(AssertSqlSafe(pick.to_string()))
                .bind(cutoff)
                .fetch_all(&mut *tx.tx)
                .await?
                .iter()
                .map(|r| r.try_get("id"))
                .collect::<Result<_, _>>()?;
            if ids.is_empty() {
                tx.rollback().await?;
                return Ok(total);
            }
            let list = ids
                .iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(", ");
            let mut last = 0;
            for stmt in batch(&list) {
                last = sqlx::query(AssertSqlSafe(stmt))
                    .execute(&mut *tx.tx)
                    .await?
                    .rows_affected();
            }
            total += last;
            tx.commit().await?;
        }
    }

    /// Runs a `DELETE … $1` until it deletes nothing more; returns the rows deleted.
    async fn delete_batched(&self, sql: &str, cutoff: i64) -> Result<u64> {
        let mut total = 0;
        loop {
            let mut tx = self.begin_write().await?;
            let n = sqlx::query(AssertSqlSafe(sql.to_string()))
                .bind(cutoff)
                .execute(&mut *tx.tx)
                .await?
                .rows_affected();
            tx.commit().await?;
            total += n;
            if n < PRUNE_BATCH as u64 {
                return Ok(total);
            }
        }
    }
}

/// `DELETE` of at most [`PRUNE_BATCH`] rows of `table` matching `condition`, picked by their
/// primary key `key` (a row value, which SQLite and PostgreSQL both compare with `IN`): one
/// batch is one short transaction, whatever the backlog.
fn by_key(table: &str, key: &str, condition: &str) -> String {
    format!(
        "DELETE FROM {table} WHERE ({key}) IN \
         (SELECT {key} FROM {table} WHERE {condition} LIMIT {PRUNE_BATCH})"
    )
}
