//! The read models the HTTP API pages through (alert occurrences, repairs) and the API's audit
//! log.

use sqlx::any::AnyRow;
use sqlx::{Arguments, AssertSqlSafe, Row};

use super::jobs::{JOB_COLUMNS, job_from_row};
use super::{Error, Job, Result, Store, WriteTx};

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

/// Dynamic WHERE clause with positional binds, for the listings and the notes.
pub(super) struct Where {
    clauses: Vec<String>,
    /// The binds, in placeholder order.
    pub(super) args: sqlx::any::AnyArguments,
    n: usize,
}

impl Where {
    pub(super) fn new() -> Where {
        Where {
            clauses: Vec::new(),
            args: sqlx::any::AnyArguments::default(),
            n: 0,
        }
    }

    pub(super) fn next(&mut self) -> String {
        self.n += 1;
        format!("${}", self.n)
    }

    pub(super) fn eq<T>(&mut self, column: &str, op: &str, value: T)
    where
        T: 'static + Send + sqlx::Encode<'static, sqlx::Any> + sqlx::Type<sqlx::Any>,
    {
        let p = self.next();
        self.clauses.push(format!("{column} {op} {p}"));
        self.args.add(value).expect("encoding a plain value");
    }

    pub(super) fn any_of(&mut self, column: &str, values: &[String]) {
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

    /// The WHERE built so far; clears the clauses but keeps the binds and the numbering, so a
    /// second WHERE of the same statement (a UNION branch) continues the placeholders.
    pub(super) fn take_sql(&mut self) -> String {
        let sql = self.sql();
        self.clauses.clear();
        sql
    }

    pub(super) fn sql(&self) -> String {
        if self.clauses.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", self.clauses.join(" AND "))
        }
    }
}

fn json_text(r: &AnyRow, column: &'static str) -> Result<serde_json::Value> {
    let text: String = r.try_get(column)?;
    serde_json::from_str(&text).map_err(|e| Error::Corrupt {
        column,
        message: e.to_string(),
    })
}

impl WriteTx {
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

impl Store {
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
}
