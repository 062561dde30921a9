//! Maintenance windows created through the API, the once-only record of each occurrence's
//! summary, and the refusals a summary counts (migration 0012).

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Error, Result, Store, WriteTx};
use crate::alert::Labels;

/// A window as the API stores it. Either `starts_at`/`ends_at` (one-off) or
/// `cron`/`every` with `duration_ms` and `timezone` (recurring) are set; the maintenance
/// module checked the combination before it was inserted.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StoredWindow {
    /// Row id (`api:<id>` is its key).
    pub id: i64,
    /// An optional name for people.
    pub name: Option<String>,
    /// Namespace it holds.
    pub namespace: Option<String>,
    /// App it holds.
    pub app: Option<String>,
    /// Rule it holds.
    pub rule: Option<String>,
    /// One-off start (epoch ms).
    pub starts_at: Option<i64>,
    /// One-off end (epoch ms).
    pub ends_at: Option<i64>,
    /// Recurring: the `every:` shorthand as given.
    pub every: Option<String>,
    /// Recurring: the cron pattern as given.
    pub cron: Option<String>,
    /// Recurring: how long each occurrence lasts (ms).
    pub duration_ms: Option<i64>,
    /// Recurring: the IANA time zone.
    pub timezone: Option<String>,
    /// Why.
    pub reason: String,
    /// The token's subject that created it.
    pub created_by: String,
    /// When (epoch ms).
    pub created_at: i64,
    /// When it was ended early (epoch ms).
    pub ended_at: Option<i64>,
    /// Who ended it.
    pub ended_by: Option<String>,
    /// After this it is never open again (epoch ms); None: recurring, in force.
    pub until_at: Option<i64>,
}

/// One maintenance refusal, for a summary: what was held.
#[derive(Clone, Debug, PartialEq)]
pub struct HeldAlert {
    /// The occurrence held (a re-send held again is one more decision on the same one).
    pub alert_event_id: i64,
    /// The rule that matched.
    pub rule: String,
    /// The target, `namespace/Kind/name`.
    pub target_key: Option<String>,
    /// The alert's name.
    pub alertname: String,
    /// The alert's labels (routing reads them).
    pub labels: Labels,
}

const COLUMNS: &str = "id, name, namespace, app, rule, starts_at, ends_at, every, cron, \
                       duration_ms, timezone, reason, created_by, created_at, ended_at, ended_by, until_at";

fn window_row(r: &AnyRow) -> Result<StoredWindow> {
    Ok(StoredWindow {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        namespace: r.try_get("namespace")?,
        app: r.try_get("app")?,
        rule: r.try_get("rule")?,
        starts_at: r.try_get("starts_at")?,
        ends_at: r.try_get("ends_at")?,
        every: r.try_get("every")?,
        cron: r.try_get("cron")?,
        duration_ms: r.try_get("duration_ms")?,
        timezone: r.try_get("timezone")?,
        reason: r.try_get("reason")?,
        created_by: r.try_get("created_by")?,
        created_at: r.try_get("created_at")?,
        ended_at: r.try_get("ended_at")?,
        ended_by: r.try_get("ended_by")?,
        until_at: r.try_get("until_at")?,
    })
}

impl Store {
    /// Stores a new window (its `id` is ignored) and returns it with its id.
    pub async fn insert_maintenance_window(&self, w: &StoredWindow) -> Result<StoredWindow> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(
            "INSERT INTO maintenance_windows (name, namespace, app, rule, starts_at, ends_at, every, \
             cron, duration_ms, timezone, reason, created_by, created_at, until_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) RETURNING id",
        )
        .bind(&w.name)
        .bind(&w.namespace)
        .bind(&w.app)
        .bind(&w.rule)
        .bind(w.starts_at)
        .bind(w.ends_at)
        .bind(&w.every)
        .bind(&w.cron)
        .bind(w.duration_ms)
        .bind(&w.timezone)
        .bind(&w.reason)
        .bind(&w.created_by)
        .bind(w.created_at)
        .bind(w.until_at)
        .fetch_one(&mut *tx.tx)
        .await?;
        let id: i64 = row.try_get("id")?;
        tx.commit().await?;
        Ok(StoredWindow { id, ..w.clone() })
    }

    /// The stored windows that are open or may open after `since` (epoch ms): in force, or
    /// over at most since then (the summary task still reports their last occurrence).
    pub async fn maintenance_windows(&self, since: i64) -> Result<Vec<StoredWindow>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM maintenance_windows WHERE until_at IS NULL OR until_at > $1 ORDER BY id"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(since)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(window_row).collect()
    }

    /// One stored window by id.
    pub async fn maintenance_window(&self, id: i64) -> Result<Option<StoredWindow>> {
        let sql = format!("SELECT {COLUMNS} FROM maintenance_windows WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(window_row).transpose()
    }

    /// Ends a window at `now`: no occurrence is open from then on. Conditional, so two
    /// requests end it once; false when it had already ended or was over.
    pub async fn end_maintenance_window(&self, id: i64, now: i64, by: &str) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let n = sqlx::query(
            "UPDATE maintenance_windows SET ended_at = $2, ended_by = $3, until_at = $2 \
             WHERE id = $1 AND ended_at IS NULL AND (until_at IS NULL OR until_at > $2)",
        )
        .bind(id)
        .bind(now)
        .bind(by)
        .execute(&mut *tx.tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(n == 1)
    }
}

impl WriteTx {
    /// The alerts' maintenance refusals decided in `[start, end)` (epoch ms), oldest first: a
    /// repair run by hand that a window refused held no alert.
    pub async fn maintenance_held(&mut self, start: i64, end: i64) -> Result<Vec<HeldAlert>> {
        let rows = sqlx::query(
            "SELECT d.alert_event_id, d.rule, d.target_key, a.alertname, a.labels FROM decisions d \
             JOIN alert_events a ON a.id = d.alert_event_id \
             WHERE d.reason = 'maintenance' AND d.requested_by IS NULL \
             AND d.created_at >= $1 AND d.created_at < $2 ORDER BY d.id",
        )
        .bind(start)
        .bind(end)
        .fetch_all(&mut *self.tx)
        .await?;
        rows.iter()
            .map(|r| {
                let labels: String = r.try_get("labels")?;
                Ok(HeldAlert {
                    alert_event_id: r.try_get("alert_event_id")?,
                    rule: r.try_get("rule")?,
                    target_key: r.try_get("target_key")?,
                    alertname: r.try_get("alertname")?,
                    labels: serde_json::from_str(&labels).map_err(|e| Error::Corrupt {
                        column: "alert_events.labels",
                        message: e.to_string(),
                    })?,
                })
            })
            .collect()
    }

    /// Claims the summary of one occurrence of a window: true for exactly one caller across
    /// replicas (the primary key on window and start; a concurrent claim on PostgreSQL waits
    /// for this transaction and then finds the row). The caller enqueues in this transaction.
    pub async fn claim_maintenance_summary(
        &mut self,
        window_key: &str,
        start: i64,
        end: i64,
        held: i64,
        now: i64,
    ) -> Result<bool> {
        let n = sqlx::query(
            "INSERT INTO maintenance_summaries (window_key, occurrence_start, occurrence_end, held, created_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (window_key, occurrence_start) DO NOTHING",
        )
        .bind(window_key)
        .bind(start)
        .bind(end)
        .bind(held)
        .bind(now)
        .execute(&mut *self.tx)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// The id of a recorded firing occurrence whose every decision is a maintenance refusal:
    /// held, not decided. Its re-send (Alertmanager repeats firing alerts) is decided again,
    /// so an alert still firing when its window closes is acted on then. Only the intake's
    /// decisions count: a repair run by hand from the alert was a person's, not the alert's.
    pub async fn held_occurrence(&mut self, key: &crate::alert::DedupKey) -> Result<Option<i64>> {
        // It reads decisions: the batch's own must be written first.
        self.flush().await?;
        let row = sqlx::query(
            "SELECT a.id FROM alert_events a WHERE a.fingerprint = $1 AND a.status = 'firing' \
             AND a.starts_at = $2 AND a.resolved_at IS NULL \
             AND EXISTS (SELECT 1 FROM decisions d WHERE d.alert_event_id = a.id \
                         AND d.requested_by IS NULL) \
             AND NOT EXISTS (SELECT 1 FROM decisions d WHERE d.alert_event_id = a.id \
                             AND d.requested_by IS NULL AND d.reason <> 'maintenance')",
        )
        .bind(&key.fingerprint)
        .bind(key.starts_at_ms)
        .fetch_optional(&mut *self.tx)
        .await?;
        row.map(|r| r.try_get("id")).transpose().map_err(Into::into)
    }

    /// Whether the summary of this occurrence was already claimed.
    pub async fn maintenance_summary_claimed(
        &mut self,
        window_key: &str,
        start: i64,
    ) -> Result<bool> {
        let row = sqlx::query(
            "SELECT 1 AS one FROM maintenance_summaries WHERE window_key = $1 AND occurrence_start = $2",
        )
        .bind(window_key)
        .bind(start)
        .fetch_optional(&mut *self.tx)
        .await?;
        Ok(row.is_some())
    }
}
