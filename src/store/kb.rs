//! The knowledge base's own tables (the per-day rollup, notes), the API's audit log, the
//! read models the HTTP API pages through, and retention.
//!
//! The rollup is written in the same transaction as the job change it counts
//! ([`WriteTx::transition`] and the time-to-recover updates), so it can never disagree with the
//! jobs it summarises, also with two replicas writing.

use sqlx::any::AnyRow;
use sqlx::{Arguments, AssertSqlSafe, Row};

use super::jobs::{JOB_COLUMNS, job_from_row};
use super::{Error, Job, JobState, Result, Store, WriteTx};

/// Milliseconds in a UTC day: rollup rows are per `created_at / DAY_MS`.
pub const DAY_MS: i64 = 86_400_000;

/// A note people attached to an alert name or a target, inside one app (namespace).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Note {
    /// Id.
    pub id: i64,
    /// The app (namespace) it belongs to.
    pub namespace: String,
    /// Alert name it is about, if any.
    pub alertname: Option<String>,
    /// Target (`namespace/Kind/name`) it is about, if any.
    pub target: Option<String>,
    /// Who wrote it (the token's subject).
    pub author: String,
    /// The text.
    pub body: String,
    /// When (epoch ms).
    pub created_at: i64,
}

/// A note to record.
#[derive(Clone, Debug)]
pub struct NewNote<'a> {
    /// App (namespace).
    pub namespace: &'a str,
    /// Alert name, if any.
    pub alertname: Option<&'a str>,
    /// Target key, if any.
    pub target: Option<&'a str>,
    /// Author.
    pub author: &'a str,
    /// Text.
    pub body: &'a str,
}

/// One write through the API, as the audit log keeps it.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct AuditEntry {
    /// When (epoch ms).
    pub at: i64,
    /// The token's subject.
    pub subject: String,
    /// The token's role.
    pub role: String,
    /// Method and route, e.g. `POST /api/kb/notes`.
    pub action: String,
    /// What it touched, e.g. `note 3`.
    pub resource: String,
    /// The HTTP status it was answered with.
    pub status: i64,
    /// Details (JSON text).
    pub detail: String,
}

/// A recorded alert occurrence as the API lists it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct AlertRecord {
    /// Id (the pagination cursor).
    pub id: i64,
    /// Fingerprint.
    pub fingerprint: String,
    /// `firing` or `resolved`.
    pub status: String,
    /// Alert name.
    pub alertname: String,
    /// The app (namespace label), if the alert has one.
    pub namespace: Option<String>,
    /// Labels.
    pub labels: serde_json::Value,
    /// Annotations.
    pub annotations: serde_json::Value,
    /// startsAt (epoch ms).
    pub starts_at: i64,
    /// endsAt (epoch ms), for resolved occurrences.
    pub ends_at: Option<i64>,
    /// generatorURL.
    pub generator_url: String,
    /// When it was received (epoch ms).
    pub received_at: i64,
}

/// Which rows a listing returns. `namespaces: None` means every app (admin); `Some` limits to
/// those apps, and rows without an app are then never listed.
#[derive(Clone, Debug, Default)]
pub struct ListFilter {
    /// Apps the caller may see (None = all).
    pub namespaces: Option<Vec<String>>,
    /// Only this state (jobs) or status (alerts).
    pub state: Option<String>,
    /// Only this target key (jobs) or alert name (alerts).
    pub subject: Option<String>,
    /// Created/received at or after (epoch ms).
    pub since: Option<i64>,
    /// Only ids below this (the cursor of the previous page).
    pub before_id: Option<i64>,
    /// Page size.
    pub limit: i64,
}

/// Dynamic WHERE clause with positional binds, for the listings.
struct Where {
    clauses: Vec<String>,
    args: sqlx::any::AnyArguments,
    n: usize,
}

impl Where {
    fn new() -> Where {
        Where {
            clauses: Vec::new(),
            args: sqlx::any::AnyArguments::default(),
            n: 0,
        }
    }

    fn next(&mut self) -> String {
        self.n += 1;
        format!("${}", self.n)
    }

    fn eq<T>(&mut self, column: &str, op: &str, value: T)
    where
        T: 'static + Send + sqlx::Encode<'static, sqlx::Any> + sqlx::Type<sqlx::Any>,
    {
        let p = self.next();
        self.clauses.push(format!("{column} {op} {p}"));
        self.args.add(value).expect("encoding a plain value");
    }

    fn any_of(&mut self, column: &str, values: &[String]) {
        if values.is_empty() {
            self.clauses.push("1 = 0".into());
            return;
        }
        let ps: Vec<String> = values.iter().map(|_| self.next()).collect();
        for v in values {
            self.args.add(v.clone()).expect("encoding a string");
        }
        self.clauses
            .push(format!("{column} IN ({})", ps.join(", ")));
    }

    /// The WHERE of a listing page and the placeholder of its LIMIT; `columns` name the app,
    /// state, subject and time columns of the table listed.
    fn listing(f: &ListFilter, columns: [&str; 4]) -> (Where, String) {
        let [ns_col, state_col, subject_col, time_col] = columns;
        let mut w = Where::new();
        if let Some(ns) = &f.namespaces {
            w.any_of(ns_col, ns);
        }
        if let Some(s) = &f.state {
            w.eq(state_col, "=", s.clone());
        }
        if let Some(v) = &f.subject {
            w.eq(subject_col, "=", v.clone());
        }
        if let Some(t) = f.since {
            w.eq(time_col, ">=", t);
        }
        if let Some(id) = f.before_id {
            w.eq("id", "<", id);
        }
        let limit_p = w.next();
        w.args.add(f.limit).expect("encoding an integer");
        (w, limit_p)
    }

    fn sql(&self) -> String {
        if self.clauses.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", self.clauses.join(" AND "))
        }
    }
}

fn note_from_row(r: &AnyRow) -> Result<Note> {
    Ok(Note {
        id: r.try_get("id")?,
        namespace: r.try_get("namespace")?,
        alertname: r.try_get("alertname")?,
        target: r.try_get("target_key")?,
        author: r.try_get("author")?,
        body: r.try_get("body")?,
        created_at: r.try_get("created_at")?,
    })
}

fn json_text(r: &AnyRow, column: &'static str) -> Result<serde_json::Value> {
    let text: String = r.try_get(column)?;
    serde_json::from_str(&text).map_err(|e| Error::Corrupt {
        column,
        message: e.to_string(),
    })
}

impl WriteTx {
    /// Counts a job that just finished (succeeded, failed or escalated) in the rollups.
    pub(super) async fn rollup_finished(&mut self, job_id: i64, succeeded: bool) -> Result<()> {
        for sql in [
            "INSERT INTO kb_daily (namespace, day, alertname, playbook, runs, succeeded, ttr_count, ttr_sum_ms) \
             SELECT target_namespace, created_at / 86400000, alertname, playbook, 1, $2, 0, 0 \
             FROM jobs WHERE id = $1 AND dry_run = 0 \
             ON CONFLICT (namespace, day, alertname, playbook) DO UPDATE SET \
             runs = kb_daily.runs + 1, succeeded = kb_daily.succeeded + excluded.succeeded",
            "INSERT INTO kb_daily_all (day, alertname, playbook, runs, succeeded, ttr_count, ttr_sum_ms) \
             SELECT created_at / 86400000, alertname, playbook, 1, $2, 0, 0 \
             FROM jobs WHERE id = $1 AND dry_run = 0 \
             ON CONFLICT (day, alertname, playbook) DO UPDATE SET \
             runs = kb_daily_all.runs + 1, succeeded = kb_daily_all.succeeded + excluded.succeeded",
            "INSERT INTO kb_target_daily (day, namespace, target_key, runs, succeeded) \
             SELECT created_at / 86400000, target_namespace, target_key, 1, $2 \
             FROM jobs WHERE id = $1 AND dry_run = 0 \
             ON CONFLICT (day, namespace, target_key) DO UPDATE SET \
             runs = kb_target_daily.runs + 1, succeeded = kb_target_daily.succeeded + excluded.succeeded",
            "INSERT INTO kb_target_period (period, namespace, target_key, runs, succeeded) \
             SELECT created_at / 86400000 / 30, target_namespace, target_key, 1, $2 \
             FROM jobs WHERE id = $1 AND dry_run = 0 \
             ON CONFLICT (period, namespace, target_key) DO UPDATE SET \
             runs = kb_target_period.runs + 1, succeeded = kb_target_period.succeeded + excluded.succeeded",
        ] {
            sqlx::query(sql)
                .bind(job_id)
                .bind(i64::from(succeeded))
                .execute(&mut *self.tx)
                .await?;
        }
        Ok(())
    }

    /// Adds a job's freshly recorded time to recover to the rollups.
    pub(super) async fn rollup_ttr(&mut self, job_id: i64) -> Result<()> {
        for sql in [
            "UPDATE kb_daily SET ttr_count = ttr_count + 1, ttr_sum_ms = ttr_sum_ms + j.ttr_ms \
             FROM (SELECT target_namespace, created_at / 86400000 AS day, alertname, playbook, ttr_ms FROM jobs \
                   WHERE id = $1 AND dry_run = 0 AND ttr_ms IS NOT NULL) AS j \
             WHERE kb_daily.namespace = j.target_namespace AND kb_daily.day = j.day \
             AND kb_daily.alertname = j.alertname AND kb_daily.playbook = j.playbook",
            "UPDATE kb_daily_all SET ttr_count = ttr_count + 1, ttr_sum_ms = ttr_sum_ms + j.ttr_ms \
             FROM (SELECT created_at / 86400000 AS day, alertname, playbook, ttr_ms FROM jobs \
                   WHERE id = $1 AND dry_run = 0 AND ttr_ms IS NOT NULL) AS j \
             WHERE kb_daily_all.day = j.day AND kb_daily_all.alertname = j.alertname \
             AND kb_daily_all.playbook = j.playbook",
        ] {
            sqlx::query(sql).bind(job_id).execute(&mut *self.tx).await?;
        }
        Ok(())
    }

    /// Records a note; returns it.
    pub async fn insert_note(&mut self, note: &NewNote<'_>, now: i64) -> Result<Note> {
        let row = sqlx::query(
            "INSERT INTO kb_notes (namespace, alertname, target_key, author, body, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(note.namespace)
        .bind(note.alertname)
        .bind(note.target)
        .bind(note.author)
        .bind(note.body)
        .bind(now)
        .fetch_one(&mut *self.tx)
        .await?;
        Ok(Note {
            id: row.try_get("id")?,
            namespace: note.namespace.to_string(),
            alertname: note.alertname.map(String::from),
            target: note.target.map(String::from),
            author: note.author.to_string(),
            body: note.body.to_string(),
            created_at: now,
        })
    }

    /// Appends to the audit log.
    pub async fn insert_audit(&mut self, e: &AuditEntry) -> Result<()> {
        sqlx::query(
            "INSERT INTO audit_log (at, subject, role, action, resource, status, detail) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(e.at)
        .bind(&e.subject)
        .bind(&e.role)
        .bind(&e.action)
        .bind(&e.resource)
        .bind(e.status)
        .bind(&e.detail)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }
}

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
    /// The notes of an app about an alert name and/or a target, newest first.
    pub async fn notes(
        &self,
        namespaces: Option<&[String]>,
        alertname: Option<&str>,
        target: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Note>> {
        let mut w = Where::new();
        if let Some(ns) = namespaces {
            w.any_of("namespace", ns);
        }
        if let Some(a) = alertname {
            w.eq("alertname", "=", a.to_string());
        }
        if let Some(t) = target {
            w.eq("target_key", "=", t.to_string());
        }
        let limit_p = w.next();
        w.args.add(limit).expect("encoding an integer");
        let sql = format!(
            "SELECT id, namespace, alertname, target_key, author, body, created_at FROM kb_notes{} \
             ORDER BY id DESC LIMIT {limit_p}",
            w.sql()
        );
        let rows = sqlx::query_with(AssertSqlSafe(sql), w.args)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(note_from_row).collect()
    }

    /// The newest real (not dry-run) repairs of an alert in an app that ended in `state`.
    pub async fn jobs_of_alert(
        &self,
        alertname: &str,
        namespace: &str,
        state: JobState,
        limit: i64,
    ) -> Result<Vec<Job>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE alertname = $1 AND target_namespace = $2 AND state = $3 \
             AND dry_run = 0 ORDER BY created_at DESC, id DESC LIMIT $4"
        )))
        .bind(alertname)
        .bind(namespace)
        .bind(state.as_str())
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(job_from_row).collect()
    }

    /// Records one audit entry in its own transaction.
    pub async fn audit(&self, e: &AuditEntry) -> Result<()> {
        let mut tx = self.begin_write().await?;
        tx.insert_audit(e).await?;
        tx.commit().await
    }

    /// The newest audit entries.
    pub async fn audit_log(&self, limit: i64) -> Result<Vec<AuditEntry>> {
        let rows = sqlx::query(
            "SELECT at, subject, role, action, resource, status, detail FROM audit_log ORDER BY id DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AuditEntry {
                    at: r.try_get("at")?,
                    subject: r.try_get("subject")?,
                    role: r.try_get("role")?,
                    action: r.try_get("action")?,
                    resource: r.try_get("resource")?,
                    status: r.try_get("status")?,
                    detail: r.try_get("detail")?,
                })
            })
            .collect()
    }

    /// A page of recorded alert occurrences, newest first.
    pub async fn list_alerts(&self, f: &ListFilter) -> Result<Vec<AlertRecord>> {
        let (w, limit_p) = Where::listing(f, ["namespace", "status", "alertname", "received_at"]);
        let sql = format!(
            "SELECT id, fingerprint, status, alertname, namespace, labels, annotations, starts_at, ends_at, \
             generator_url, received_at FROM alert_events{} ORDER BY id DESC LIMIT {limit_p}",
            w.sql()
        );
        let rows = sqlx::query_with(AssertSqlSafe(sql), w.args)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(AlertRecord {
                    id: r.try_get("id")?,
                    fingerprint: r.try_get("fingerprint")?,
                    status: r.try_get("status")?,
                    alertname: r.try_get("alertname")?,
                    namespace: r.try_get("namespace")?,
                    labels: json_text(r, "labels")?,
                    annotations: json_text(r, "annotations")?,
                    starts_at: r.try_get("starts_at")?,
                    ends_at: r.try_get("ends_at")?,
                    generator_url: r.try_get("generator_url")?,
                    received_at: r.try_get("received_at")?,
                })
            })
            .collect()
    }

    /// A page of repairs, newest first.
    pub async fn list_jobs(&self, f: &ListFilter) -> Result<Vec<Job>> {
        let (w, limit_p) =
            Where::listing(f, ["target_namespace", "state", "target_key", "created_at"]);
        let sql = format!(
            "SELECT {JOB_COLUMNS} FROM jobs{} ORDER BY id DESC LIMIT {limit_p}",
            w.sql()
        );
        let rows = sqlx::query_with(AssertSqlSafe(sql), w.args)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(job_from_row).collect()
    }

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
            .delete_batched("DELETE FROM kb_daily WHERE day < $1", day)
            .await?;
        for table in ["kb_daily_all", "kb_target_daily"] {
            self.delete_batched(&format!("DELETE FROM {table} WHERE day < $1"), day)
                .await?;
        }
        self.delete_batched(
            "DELETE FROM kb_target_period WHERE period < $1",
            day.div_euclid(30),
        )
        .await?;
        out.audit += self
            .delete_batched(&format!(
                "DELETE FROM audit_log WHERE id IN (SELECT id FROM audit_log WHERE at < $1 LIMIT {PRUNE_BATCH})"
            ), c.audit)
            .await?;
        out.activity += self
            .delete_batched(
                "DELETE FROM target_activity WHERE last_seen < $1",
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
