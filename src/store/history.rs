//! The recorded history as a timeline, read from the live store, and the writes that rebuild it
//! in a scratch store (`aiops replay`).
//!
//! Replay decides each stored alert again with the real guards, in a scratch store that holds
//! what the live store held when the alert arrived. The guards read `jobs` (state as of then:
//! busy targets, cooldowns, budgets, the queue bound), `target_activity` (the storm brake) and
//! `storm_brakes`; this module reads what rebuilds them, as [`HistoryItem`]s in the order they
//! happened, and writes them into the scratch store. Nothing here writes the live store.
//!
//! Rows are copied column by column, whatever the columns are ([`CopiedRow`]): the scratch store
//! has the same migrations as the live one (one binary), so a column added later (a job's
//! `mode`) travels with its row without this file knowing its name.

use sqlx::any::{AnyRow, AnyTypeInfoKind};
use sqlx::{Column, Row, ValueRef};

use super::{Error, Result, Store, WriteTx};
use crate::alert::Labels;
use crate::job::JobSpec;
use crate::rules::Mode;

/// One column's value, as read from either backend.
#[derive(Clone, Debug)]
enum Cell {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

/// A whole row of a table, to be written again elsewhere (opaque outside the store).
#[derive(Clone, Debug)]
pub struct CopiedRow {
    cells: Vec<(String, Cell)>,
}

impl CopiedRow {
    fn read(row: &AnyRow) -> Result<CopiedRow> {
        let mut cells = Vec::with_capacity(row.columns().len());
        for (i, col) in row.columns().iter().enumerate() {
            let raw = row.try_get_raw(i)?;
            let cell = if raw.is_null() {
                Cell::Null
            } else {
                match raw.type_info().kind() {
                    AnyTypeInfoKind::Null => Cell::Null,
                    AnyTypeInfoKind::Bool => Cell::Int(i64::from(row.try_get::<bool, _>(i)?)),
                    AnyTypeInfoKind::SmallInt
                    | AnyTypeInfoKind::Integer
                    | AnyTypeInfoKind::BigInt => Cell::Int(row.try_get(i)?),
                    AnyTypeInfoKind::Real | AnyTypeInfoKind::Double => Cell::Real(row.try_get(i)?),
                    AnyTypeInfoKind::Text => Cell::Text(row.try_get(i)?),
                    AnyTypeInfoKind::Blob => Cell::Blob(row.try_get(i)?),
                }
            };
            cells.push((col.name().to_string(), cell));
        }
        Ok(CopiedRow { cells })
    }

    /// Replaces a column's value (the state as of the cut, not as of today).
    fn set(&mut self, column: &str, value: Cell) {
        if let Some((_, c)) = self.cells.iter_mut().find(|(n, _)| n == column) {
            *c = value;
        }
    }

    fn int(&self, column: &str) -> Option<i64> {
        self.cells.iter().find_map(|(n, c)| match c {
            Cell::Int(v) if n == column => Some(*v),
            _ => None,
        })
    }
}

/// A firing alert of the replayed period, as it was received.
#[derive(Clone, Debug)]
pub struct HistoryAlert {
    /// The `alert_events` id (also its place among the alerts received in the same instant).
    pub id: i64,
    /// When the daemon received it (epoch ms): the time the replay decides at.
    pub received_at: i64,
    /// Fingerprint.
    pub fingerprint: String,
    /// startsAt (epoch ms).
    pub starts_at: i64,
    /// endsAt (epoch ms), as received.
    pub ends_at: Option<i64>,
    /// Labels.
    pub labels: Labels,
    /// Annotations.
    pub annotations: Labels,
    /// generatorURL.
    pub generator_url: String,
    /// Alertmanager receiver.
    pub receiver: String,
    /// Alertmanager group key.
    pub group_key: String,
}

/// One recorded verdict of a rule on a firing alert.
#[derive(Clone, Debug)]
pub struct RecordedDecision {
    /// The alert occurrence it was about.
    pub alert_event_id: i64,
    /// Rule name.
    pub rule: String,
    /// `job` or `refused`.
    pub verdict: String,
    /// `plan` for a job, the guard's name for a refusal.
    pub reason: String,
    /// `namespace/Kind/name`, when resolved.
    pub target_key: Option<String>,
    /// What the guard said.
    pub detail: String,
    /// The job's spec (playbook, mode), while the job is kept (retention may have pruned it).
    pub spec: Option<JobSpec>,
}

/// Something that changed what the guards read, at a point of the recorded history.
#[derive(Clone, Debug)]
pub enum HistoryItem {
    /// A job was created (by the intake for a chain's first job, by the executor for later
    /// steps), in the state of its first event.
    JobCreated {
        /// The row, with its state, times and parent as they were at creation.
        row: CopiedRow,
    },
    /// A job changed state.
    JobMoved {
        /// The job.
        job_id: i64,
        /// Its new state (stored name; states this build does not know are copied as they are).
        to_state: String,
        /// When.
        at: i64,
        /// The resolve whose intake made the move (its `alert_events` id), or 0.
        cause: i64,
    },
    /// A guard's verdict was recorded (it feeds the storm brake's count of active targets).
    Decided {
        /// The alert occurrence.
        alert_event_id: i64,
        /// Rule name.
        rule: String,
        /// The target, when resolved.
        target_key: Option<String>,
        /// `job` or `refused`.
        verdict: String,
        /// The reason.
        reason: String,
        /// When.
        at: i64,
        /// The trust mode of the job it created (from the job's spec); `None` for a refusal,
        /// whose rule's mode the store does not keep, and for a job retention pruned.
        mode: Option<Mode>,
    },
    /// A row of a table the guards read whole was written (an API-made maintenance window,
    /// in a store that has them); later changes to it (an early end) are in the copy already,
    /// which is right for the time between its creation and today.
    RowAdded {
        /// The table.
        table: HistoryTable,
        /// The row as it is.
        row: CopiedRow,
    },
    /// A storm brake episode opened.
    StormEngaged {
        /// The episode.
        id: i64,
        /// When.
        at: i64,
        /// Distinct targets counted.
        targets: i64,
        /// The window it counted over (ms).
        window_ms: i64,
    },
    /// A storm brake episode closed.
    StormReleased {
        /// The episode.
        id: i64,
        /// When.
        at: i64,
    },
}

/// Where an item stands in the history: (time, the id of the alert whose intake wrote it or 0
/// for anything else, kind, id). Within one webhook every alert was decided at the same time,
/// in `alert_events` id order, each seeing what the ones before it wrote; work of the executor
/// at that same millisecond counts as before the webhook.
pub type Position = (i64, i64, u8, i64);

impl HistoryItem {
    /// The item's place in the history.
    pub fn position(&self) -> Position {
        match self {
            HistoryItem::JobMoved {
                job_id, at, cause, ..
            } => (*at, *cause, 0, *job_id),
            HistoryItem::StormReleased { id, at } => (*at, 0, 1, *id),
            HistoryItem::JobCreated { row } => {
                let id = row.int("id").unwrap_or_default();
                let at = row.int("created_at").unwrap_or_default();
                // A chain's first job is the intake's; later steps are the executor's.
                let seq = match row.int("chain_index") {
                    Some(0) => row.int("alert_event_id").unwrap_or_default(),
                    _ => 0,
                };
                (at, seq, 2, id)
            }
            HistoryItem::Decided {
                alert_event_id, at, ..
            } => (*at, *alert_event_id, 3, *alert_event_id),
            HistoryItem::StormEngaged { id, at, .. } => (*at, 0, 4, *id),
            HistoryItem::RowAdded { row, .. } => (
                row.int("created_at").unwrap_or_default(),
                0,
                5,
                row.int("id").unwrap_or_default(),
            ),
        }
    }
}

/// The spec of a decision's job (a `LEFT JOIN jobs` column `spec`); `None` for a refusal, or
/// a job retention pruned.
fn spec_if_kept(row: &AnyRow) -> Result<Option<JobSpec>> {
    match row.try_get::<Option<String>, _>("spec")? {
        Some(_) => Ok(Some(super::jobs::spec_col(row)?)),
        None => Ok(None),
    }
}

fn labels(row: &AnyRow, col: &'static str) -> Result<Labels> {
    let text: String = row.try_get(col)?;
    serde_json::from_str(&text).map_err(|e| Error::Corrupt {
        column: col,
        message: e.to_string(),
    })
}

impl Store {
    /// Every `alert_events` row received up to `until`, whole, to copy into a scratch store
    /// (jobs and decisions refer to them; replay evaluates them as already recorded).
    pub async fn history_alert_rows(&self, until: i64) -> Result<Vec<CopiedRow>> {
        let rows = sqlx::query("SELECT * FROM alert_events WHERE received_at <= $1 ORDER BY id")
            .bind(until)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(CopiedRow::read).collect()
    }

    /// The firing alerts received in `[since, until]`, in the order they were decided.
    pub async fn history_alerts(&self, since: i64, until: i64) -> Result<Vec<HistoryAlert>> {
        let rows = sqlx::query(
            "SELECT id, received_at, fingerprint, starts_at, ends_at, labels, annotations, \
             generator_url, receiver, group_key FROM alert_events \
             WHERE status = 'firing' AND requested_by IS NULL AND received_at >= $1 AND received_at <= $2 \
             ORDER BY received_at, id",
        )
        .bind(since)
        .bind(until)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(HistoryAlert {
                    id: r.try_get("id")?,
                    received_at: r.try_get("received_at")?,
                    fingerprint: r.try_get("fingerprint")?,
                    starts_at: r.try_get("starts_at")?,
                    ends_at: r.try_get("ends_at")?,
                    labels: labels(r, "labels")?,
                    annotations: labels(r, "annotations")?,
                    generator_url: r.try_get("generator_url")?,
                    receiver: r.try_get("receiver")?,
                    group_key: r.try_get("group_key")?,
                })
            })
            .collect()
    }

    /// The recorded verdicts on the firing alerts received in `[since, until]`, made when each
    /// arrived, in the order they were made. Replay decides an alert once, at its
    /// `received_at`; a held occurrence's re-send decided again later (after its maintenance
    /// window) left decisions of a later time, which are history for later alerts (the
    /// timeline restores them) but no answer to the one replayed. The intake stamps an alert's
    /// row and its decisions with the webhook's one `now`, so "when it arrived" is equality.
    pub async fn history_decisions(&self, since: i64, until: i64) -> Result<Vec<RecordedDecision>> {
        let rows = sqlx::query(
            "SELECT d.alert_event_id, d.rule, d.verdict, d.reason, d.target_key, d.detail, j.spec \
             FROM decisions d JOIN alert_events a ON a.id = d.alert_event_id \
             LEFT JOIN jobs j ON j.id = d.job_id \
             WHERE a.status = 'firing' AND a.requested_by IS NULL AND d.requested_by IS NULL \
             AND a.received_at >= $1 AND a.received_at <= $2 AND d.created_at = a.received_at \
             ORDER BY d.id",
        )
        .bind(since)
        .bind(until)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let spec = spec_if_kept(r)?;
                Ok(RecordedDecision {
                    alert_event_id: r.try_get("alert_event_id")?,
                    rule: r.try_get("rule")?,
                    verdict: r.try_get("verdict")?,
                    reason: r.try_get("reason")?,
                    target_key: r.try_get("target_key")?,
                    detail: r.try_get("detail")?,
                    spec,
                })
            })
            .collect()
    }

    /// The rows `sql` selects with `$1` bound to `until`.
    async fn rows_until(&self, sql: &'static str, until: i64) -> Result<Vec<AnyRow>> {
        Ok(sqlx::query(sql).bind(until).fetch_all(&self.pool).await?)
    }

    /// Whether this store's schema has `table` (a table a later migration adds).
    async fn table_exists(&self, table: &str) -> Result<bool> {
        let sql = match self.backend {
            super::Backend::Sqlite => {
                "SELECT 1 AS one FROM sqlite_master WHERE type = 'table' AND name = $1"
            }
            super::Backend::Postgres => {
                "SELECT 1 AS one FROM information_schema.tables WHERE table_name = $1 \
                 AND table_schema = current_schema()"
            }
        };
        let row = sqlx::query(sql)
            .bind(table)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    /// Everything up to `until` that the guards' reads depend on, in the order it happened.
    pub async fn history_timeline(&self, until: i64) -> Result<Vec<HistoryItem>> {
        let mut items = Vec::new();
        // Each job in its first state: its first event says which (queued, waiting, or a state
        // a later version added).
        let jobs = self
            .rows_until(
                "SELECT j.*, (SELECT e.to_state FROM job_events e WHERE e.job_id = j.id \
                 ORDER BY e.id LIMIT 1) AS first_state FROM jobs j WHERE j.created_at <= $1",
                until,
            )
            .await?;
        for r in &jobs {
            let first: Option<String> = r.try_get("first_state")?;
            let mut row = CopiedRow::read(r)?;
            row.cells.retain(|(n, _)| n != "first_state");
            row.set(
                "state",
                Cell::Text(first.unwrap_or_else(|| "queued".into())),
            );
            for col in ["finished_at", "started_at", "parent_id", "ttr_ms"] {
                row.set(col, Cell::Null);
            }
            items.push(HistoryItem::JobCreated { row });
        }
        // Every later event; the first one is the creation above.
        // A cancellation at the very millisecond a resolve of the job's alert was received is
        // that resolve's (the intake cancels in the webhook's transaction): it comes after the
        // alerts decided before the resolve in the same webhook, not before all of them.
        let events = self
            .rows_until(
                "SELECT e.job_id, e.to_state, e.at, CASE WHEN e.to_state = 'cancelled' THEN \
                 (SELECT MIN(a.id) FROM alert_events a JOIN jobs j ON j.fingerprint = a.fingerprint \
                  WHERE j.id = e.job_id AND a.status = 'resolved' AND a.received_at = e.at) END AS cause \
                 FROM job_events e WHERE e.at <= $1 \
                 AND e.id > (SELECT MIN(f.id) FROM job_events f WHERE f.job_id = e.job_id)",
                until,
            )
            .await?;
        for r in &events {
            items.push(HistoryItem::JobMoved {
                job_id: r.try_get("job_id")?,
                to_state: r.try_get("to_state")?,
                at: r.try_get("at")?,
                cause: r.try_get::<Option<i64>, _>("cause")?.unwrap_or(0),
            });
        }
        let decisions = self
            .rows_until(
                "SELECT d.alert_event_id, d.rule, d.target_key, d.verdict, d.reason, d.created_at, \
                 j.spec FROM decisions d LEFT JOIN jobs j ON j.id = d.job_id WHERE d.created_at <= $1",
                until,
            )
            .await?;
        for r in &decisions {
            items.push(HistoryItem::Decided {
                alert_event_id: r.try_get("alert_event_id")?,
                rule: r.try_get("rule")?,
                target_key: r.try_get("target_key")?,
                verdict: r.try_get("verdict")?,
                reason: r.try_get("reason")?,
                at: r.try_get("created_at")?,
                mode: spec_if_kept(r)?.map(|s| s.mode),
            });
        }
        let storms = self
            .rows_until(
                "SELECT id, engaged_at, released_at, targets, window_ms FROM storm_brakes \
                 WHERE engaged_at <= $1",
                until,
            )
            .await?;
        for r in &storms {
            let id: i64 = r.try_get("id")?;
            items.push(HistoryItem::StormEngaged {
                id,
                at: r.try_get("engaged_at")?,
                targets: r.try_get("targets")?,
                window_ms: r.try_get("window_ms")?,
            });
            if let Some(at) = r.try_get::<Option<i64>, _>("released_at")?
                && at <= until
            {
                items.push(HistoryItem::StormReleased { id, at });
            }
        }
        for table in [HistoryTable::MaintenanceWindows] {
            if !self.table_exists(table.name()).await? {
                continue;
            }
            let sql = format!("SELECT * FROM {} WHERE created_at <= $1", table.name());
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(until)
                .fetch_all(&self.pool)
                .await?;
            for r in &rows {
                let row = CopiedRow::read(r)?;
                items.push(HistoryItem::RowAdded { table, row });
            }
        }
        items.sort_by_key(HistoryItem::position);
        Ok(items)
    }
}

impl WriteTx {
    /// Writes copied rows into `table` as they are (ids included). For a scratch store only.
    pub async fn restore_rows(&mut self, table: HistoryTable, rows: &[CopiedRow]) -> Result<()> {
        for row in rows {
            self.insert_copy(table.name(), row).await?;
        }
        Ok(())
    }

    /// The columns of `table` a row may set: generated ones (a job's `mode`, derived from its
    /// spec) are computed by the database, which refuses a value for them.
    async fn settable_columns(&mut self, table: &str) -> Result<Vec<String>> {
        let sql = match self.backend {
            super::Backend::Sqlite => "SELECT name FROM pragma_table_xinfo($1) WHERE hidden = 0",
            super::Backend::Postgres => {
                "SELECT column_name AS name FROM information_schema.columns \
                 WHERE table_name = $1 AND is_generated = 'NEVER'"
            }
        };
        let rows = sqlx::query(sql)
            .bind(table)
            .fetch_all(&mut *self.tx)
            .await?;
        rows.iter()
            .map(|r| r.try_get("name").map_err(Into::into))
            .collect()
    }

    async fn insert_copy(&mut self, table: &str, row: &CopiedRow) -> Result<u64> {
        let settable = self.settable_columns(table).await?;
        let cells: Vec<&(String, Cell)> = row
            .cells
            .iter()
            .filter(|(n, _)| settable.contains(n))
            .collect();
        let names: Vec<&str> = cells.iter().map(|(n, _)| n.as_str()).collect();
        let marks: Vec<String> = (1..=names.len()).map(|i| format!("${i}")).collect();
        // The column names come from the store's own schema (the rows were read with `*`).
        let sql = format!(
            "INSERT INTO {table} ({}) VALUES ({}) ON CONFLICT DO NOTHING",
            names.join(", "),
            marks.join(", ")
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (_, cell) in cells {
            q = match cell {
                Cell::Null => q.bind(None::<String>),
                Cell::Int(v) => q.bind(*v),
                Cell::Real(v) => q.bind(*v),
                Cell::Text(v) => q.bind(v.clone()),
                Cell::Blob(v) => q.bind(v.clone()),
            };
        }
        Ok(q.execute(&mut *self.tx).await?.rows_affected())
    }

    /// Applies one item of the recorded history to a scratch store. Returns false when it
    /// could not be placed (a job whose target the scratch store already holds active: the
    /// recorded history contradicts itself there, e.g. rows pruned out of order).
    pub async fn restore(&mut self, item: &HistoryItem) -> Result<bool> {
        match item {
            HistoryItem::JobCreated { row } => Ok(self.insert_copy("jobs", row).await? == 1),
            HistoryItem::JobMoved {
                job_id,
                to_state,
                at,
                ..
            } => {
                let terminal =
                    crate::store::JobState::parse(to_state).is_some_and(|s| s.is_terminal());
                sqlx::query(
                    "UPDATE jobs SET state = $1, updated_at = $2, \
                     finished_at = COALESCE($3, finished_at) WHERE id = $4",
                )
                .bind(to_state)
                .bind(*at)
                .bind(terminal.then_some(*at))
                .bind(*job_id)
                .execute(&mut *self.tx)
                .await?;
                Ok(true)
            }
            HistoryItem::Decided {
                alert_event_id,
                rule,
                target_key,
                verdict,
                reason,
                at,
                // A shadow rule's decisions do not feed the storm brake (`insert_decision`
                // reads the mode); a refusal's mode is not stored, so it counts as real.
                mode,
            } => {
                // The intake's own statement, so the storm brake's activity follows the
                // decisions exactly as it did when they were made.
                self.insert_decision(&super::Decision {
                    alert_event_id: *alert_event_id,
                    rule,
                    target_key: target_key.as_deref(),
                    verdict,
                    reason,
                    detail: "",
                    job_id: None,
                    created_at: *at,
                    mode: mode.unwrap_or_default(),
                    // What the scratch store's guards read of a decision (the storm brake's
                    // activity) does not depend on who asked.
                    requested_by: None,
                })
                .await?;
                Ok(true)
            }
            HistoryItem::StormEngaged {
                id,
                at,
                targets,
                window_ms,
            } => {
                sqlx::query(
                    "INSERT INTO storm_brakes (id, engaged_at, targets, window_ms, open) \
                     VALUES ($1, $2, $3, $4, 1) ON CONFLICT DO NOTHING",
                )
                .bind(*id)
                .bind(*at)
                .bind(*targets)
                .bind(*window_ms)
                .execute(&mut *self.tx)
                .await?;
                Ok(true)
            }
            HistoryItem::RowAdded { table, row } => {
                Ok(self.insert_copy(table.name(), row).await? == 1)
            }
            HistoryItem::StormReleased { id, at } => {
                sqlx::query("UPDATE storm_brakes SET released_at = $1, open = NULL WHERE id = $2")
                    .bind(*at)
                    .bind(*id)
                    .execute(&mut *self.tx)
                    .await?;
                Ok(true)
            }
        }
    }
}

/// The tables [`WriteTx::restore_rows`] copies whole.
#[derive(Clone, Copy, Debug)]
pub enum HistoryTable {
    /// `alert_events`.
    AlertEvents,
    /// `maintenance_windows` (API-made windows), where the schema has it.
    MaintenanceWindows,
}

impl HistoryTable {
    fn name(self) -> &'static str {
        match self {
            HistoryTable::AlertEvents => "alert_events",
            HistoryTable::MaintenanceWindows => "maintenance_windows",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scratch store like the one `replay` builds: in-memory SQLite, migrated.
    async fn scratch() -> Store {
        Store::connect("sqlite::memory:", &super::super::Options::default())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_copied_row_skips_the_columns_the_database_generates() {
        // Arrange: a source whose alert_events has a generated column (as jobs.mode is), and a
        // row of it read whole.
        let (source, target) = (scratch().await, scratch().await);
        for store in [&source, &target] {
            sqlx::query(
                "ALTER TABLE alert_events ADD COLUMN shout TEXT \
                 GENERATED ALWAYS AS (upper(alertname)) VIRTUAL",
            )
            .execute(&store.pool)
            .await
            .unwrap();
        }
        sqlx::query(
            "INSERT INTO alert_events (fingerprint, status, starts_at, alertname, labels, \
             annotations, generator_url, receiver, group_key, received_at) \
             VALUES ('f', 'firing', 1, 'WebDown', '{}', '{}', '', 'r', 'g', 5)",
        )
        .execute(&source.pool)
        .await
        .unwrap();
        let rows = source.history_alert_rows(10).await.unwrap();
        assert!(rows[0].cells.iter().any(|(n, _)| n == "shout"));

        // Act
        let mut tx = target.begin_write().await.unwrap();
        tx.restore_rows(HistoryTable::AlertEvents, &rows)
            .await
            .unwrap();
        tx.commit().await.unwrap();

        // Assert: the row is there, id kept, and the database computed the generated column.
        let row = sqlx::query("SELECT id, shout FROM alert_events")
            .fetch_one(&target.pool)
            .await
            .unwrap();
        assert_eq!(row.get::<i64, _>("id"), rows[0].int("id").unwrap());
        assert_eq!(row.get::<String, _>("shout"), "WEBDOWN");
    }

    #[tokio::test]
    async fn stored_maintenance_windows_are_replayed_as_of_each_rows_creation() {
        // Arrange: two windows made through the API, one after the replayed period.
        let (source, target) = (scratch().await, scratch().await);
        sqlx::query(
            "INSERT INTO maintenance_windows (id, namespace, reason, created_by, created_at, until_at) \
             VALUES (7, 'prod', 'upgrade', 'api', 100, 900), (8, 'prod', 'later', 'api', 950, NULL)",
        )
        .execute(&source.pool)
        .await
        .unwrap();

        // Act
        let items = source.history_timeline(500).await.unwrap();
        let mut tx = target.begin_write().await.unwrap();
        for item in &items {
            assert!(tx.restore(item).await.unwrap());
        }
        tx.commit().await.unwrap();

        // Assert: the window made by then is there, at its creation; the later one is not.
        assert_eq!(
            items.iter().map(HistoryItem::position).collect::<Vec<_>>(),
            [(100, 0, 5, 7)]
        );
        let ids: Vec<i64> = sqlx::query("SELECT id FROM maintenance_windows")
            .fetch_all(&target.pool)
            .await
            .unwrap()
            .iter()
            .map(|r| r.get("id"))
            .collect();
        assert_eq!(ids, [7]);
    }
}
