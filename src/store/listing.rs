//! The read models the HTTP API pages through (alert occurrences, repairs) and the API's audit
//! log.

use sqlx::any::AnyRow;
use sqlx::{Arguments, AssertSqlSafe, Row};

use super::jobs::{JOB_COLUMNS, job_from_row};
use super::{Error, Job, Result, Store, WriteTx};
use crate::alert::Labels;
use crate::decision::{self, Verdict};

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

/// A recorded alert occurrence as the API lists it, with what aiops decided about it.
/// Times are epoch ms here and RFC 3339 when serialized.
#[derive(Clone, Debug, serde::Serialize)]
pub struct AlertRecord {
    /// Id (the pagination cursor).
    pub id: i64,
    /// Fingerprint.
    pub fingerprint: String,
    /// What this notification said: `firing` or `resolved`.
    pub status: String,
    /// What the alert is now: `firing` until its resolve arrives (then `resolved_at` is set),
    /// `resolved` for a resolve.
    pub state: AlertState,
    /// Alert name.
    pub alertname: String,
    /// The app (namespace label), if the alert has one.
    pub namespace: Option<String>,
    /// The `severity` label (also in `labels`; a column of its own so that it can be filtered).
    #[serde(skip)]
    pub severity: Option<String>,
    /// Labels.
    pub labels: Labels,
    /// Annotations.
    pub annotations: Labels,
    /// startsAt.
    #[serde(serialize_with = "super::rfc3339::ms")]
    pub starts_at: i64,
    /// endsAt, for resolved occurrences.
    #[serde(serialize_with = "super::rfc3339::opt_ms")]
    pub ends_at: Option<i64>,
    /// For a firing occurrence: when its resolve said it ended.
    #[serde(serialize_with = "super::rfc3339::opt_ms")]
    pub resolved_at: Option<i64>,
    /// generatorURL.
    pub generator_url: String,
    /// When it was received.
    #[serde(serialize_with = "super::rfc3339::ms")]
    pub received_at: i64,
    /// For a firing occurrence: one decision per matching rule, or one `skipped`/`no_rule`
    /// when none matched. Empty for a resolve (resolves cancel, they are not decided on).
    pub decisions: Vec<AlertDecision>,
}

/// Whether an alert is firing now or has ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    /// Firing, and no resolve has arrived for it.
    Firing,
    /// Resolved (a resolve, or a firing occurrence whose resolve arrived).
    Resolved,
}

impl AlertState {
    /// The state named `s` (`firing` or `resolved`).
    pub fn parse(s: &str) -> Option<AlertState> {
        match s {
            "firing" => Some(AlertState::Firing),
            "resolved" => Some(AlertState::Resolved),
            _ => None,
        }
    }
}

/// What aiops decided about one rule's match on a firing alert (see [`crate::decision`]).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct AlertDecision {
    /// The rule that matched; `None` when no rule did.
    pub rule: Option<String>,
    /// `job`, `refused` or `skipped`.
    pub verdict: Verdict,
    /// The reason code: a guard's (`no_target`, `cooldown`, ...), `plan`, `dry_run` or `no_rule`.
    pub reason: String,
    /// The target (`namespace/Kind/name`), when it could be resolved.
    pub target: Option<String>,
    /// The job created, if any.
    pub job_id: Option<i64>,
    /// The decision in a sentence, for people.
    pub sentence: String,
    /// What the pipeline recorded: the guard's explanation or the job's plan (part of the
    /// sentence; apart for the console, which words the reason in the page's language).
    #[serde(skip)]
    pub detail: String,
    /// When it was decided.
    #[serde(serialize_with = "super::rfc3339::ms")]
    pub decided_at: i64,
    /// Who asked, when a person ran a repair by hand from this alert (`POST /api/repairs`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<String>,
}

/// Which rows a listing returns. `namespaces: None` means every app (admin); `Some` limits to
/// those apps, and rows without an app are then never listed.
#[derive(Clone, Debug, Default)]
pub struct ListFilter {
    /// Apps the caller may see (None = all).
    pub namespaces: Option<Vec<String>>,
    /// Only this job state (jobs; alerts use `alert_state`).
    pub state: Option<String>,
    /// Alerts: only those firing now, or only those ended.
    pub alert_state: Option<AlertState>,
    /// Alerts: only those with a decision of this verdict (and `reason`, on the same decision).
    pub verdict: Option<Verdict>,
    /// Alerts: only those with a decision of this reason code.
    pub reason: Option<String>,
    /// Only this target key (jobs) or alert name (alerts).
    pub subject: Option<String>,
    /// Created/received at or after (epoch ms).
    pub since: Option<i64>,
    /// Only ids below this (the cursor of the previous page).
    pub before_id: Option<i64>,
    /// Page size.
    pub limit: i64,
    /// Jobs: only those of this trust mode.
    pub mode: Option<crate::rules::Mode>,
    /// Alerts: only those whose `severity` label is this.
    pub severity: Option<String>,
    /// Alerts: only those whose automation is this (their newest job's state, or no job).
    pub automation: Option<super::alert_center::Automation>,
    /// Alerts: one row per occurrence, as the console lists them: firing rows (a resolve shows
    /// as their state), and a resolve only when its firing row was never received.
    pub occurrences: bool,
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

    /// The WHERE of a listing page; `columns` name the app, state, subject and time columns
    /// of the table listed. The caller may add clauses, then binds the LIMIT with [`Where::limit`].
    fn listing(f: &ListFilter, columns: [&str; 4]) -> Where {
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
        w
    }

    /// Binds a LIMIT; returns its placeholder (after every clause's).
    fn limit(&mut self, limit: i64) -> String {
        let p = self.next();
        self.args.add(limit).expect("encoding an integer");
        p
    }

    /// Adds a raw clause (its binds already added through [`Where::bind`]).
    pub(super) fn clause(&mut self, sql: String) {
        self.clauses.push(sql);
    }

    /// Binds a value and returns its placeholder, for a clause written by hand.
    pub(super) fn bind<T>(&mut self, value: T) -> String
    where
        T: 'static + Send + sqlx::Encode<'static, sqlx::Any> + sqlx::Type<sqlx::Any>,
    {
        let p = self.next();
        self.args.add(value).expect("encoding a plain value");
        p
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

/// The `verdict=`/`reason=` filter of the alert listing: alerts with a decision that has both
/// (on the same decision). `no_rule` is the absence of any decision row on a firing alert.
fn decision_filter(w: &mut Where, verdict: Option<Verdict>, reason: Option<&str>) {
    if verdict.is_none() && reason.is_none() {
        return;
    }
    if verdict == Some(Verdict::Skipped) || reason == Some(decision::NO_RULE) {
        // `skipped` has one reason only: any other pairing names no alert.
        if verdict.is_some_and(|v| v != Verdict::Skipped)
            || reason.is_some_and(|r| r != decision::NO_RULE)
        {
            w.clause("1 = 0".into());
        } else {
            w.clause(
                "status = 'firing' AND NOT EXISTS \
                 (SELECT 1 FROM decisions d WHERE d.alert_event_id = alert_events.id)"
                    .into(),
            );
        }
        return;
    }
    let mut conds = vec!["d.alert_event_id = alert_events.id".to_string()];
    if let Some(v) = verdict {
        let p = w.bind(v.as_str().to_string());
        conds.push(format!("d.verdict = {p}"));
    }
    match reason {
        Some(decision::PLAN) => {
            conds.push("d.reason = 'plan' AND COALESCE(j.dry_run, 0) = 0".into());
        }
        Some(decision::DRY_RUN) => conds.push("d.reason = 'plan' AND j.dry_run = 1".into()),
        Some(r) => {
            let p = w.bind(r.to_string());
            conds.push(format!("d.reason = {p}"));
        }
        None => {}
    }
    w.clause(format!(
        "EXISTS (SELECT 1 FROM decisions d LEFT JOIN jobs j ON j.id = d.job_id WHERE {})",
        conds.join(" AND ")
    ));
}

/// The alert center's filters: severity, automation and one row per occurrence. Each is
/// served by an index (`alert_events_severity`; `jobs_alert_event` for an alert's jobs;
/// `alert_events_dedup` for a resolve's firing row), so a page never scans the tables.
fn console_filters(w: &mut Where, f: &ListFilter) {
    use super::alert_center::Automation;
    if let Some(sev) = &f.severity {
        w.eq("severity", "=", sev.clone());
    }
    match f.automation {
        None => {}
        Some(Automation::None) => w.clause(
            "NOT EXISTS (SELECT 1 FROM jobs j WHERE j.alert_event_id = alert_events.id)".into(),
        ),
        Some(Automation::Job(state)) => {
            // Driven from the jobs in that state (few, next to 100,000 alerts), keeping only
            // each alert's newest job.
            let p = w.bind(state.as_str().to_string());
            w.clause(format!(
                "id IN (SELECT j.alert_event_id FROM jobs j WHERE j.state = {p} AND NOT EXISTS \
                 (SELECT 1 FROM jobs k WHERE k.alert_event_id = j.alert_event_id AND k.id > j.id))"
            ));
        }
    }
    if f.occurrences {
        w.clause(
            "(status = 'firing' OR NOT EXISTS (SELECT 1 FROM alert_events f \
             WHERE f.fingerprint = alert_events.fingerprint AND f.status = 'firing' \
             AND f.starts_at = alert_events.starts_at))"
                .into(),
        );
    }
}

fn json_text<T: serde::de::DeserializeOwned>(r: &AnyRow, column: &'static str) -> Result<T> {
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

/// When a firing row ended: its `resolved_at`, or else its resolve's time when that row exists.
/// The second half covers a race on PostgreSQL: a delayed firing re-send inserted by one
/// replica while another inserts its resolve sees neither the other's row nor its update, so
/// `resolved_at` stays empty although the resolve is stored. The subquery is served by the
/// dedup index (fingerprint, status, starts_at).
const RESOLVED_AT: &str = "COALESCE(resolved_at, (SELECT MIN(COALESCE(r.ends_at, r.received_at)) \
     FROM alert_events r WHERE alert_events.status = 'firing' AND r.fingerprint = alert_events.fingerprint \
     AND r.status = 'resolved' AND r.starts_at = alert_events.starts_at))";

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

    /// A page of recorded alert occurrences with their decisions, newest first.
    pub async fn list_alerts(&self, f: &ListFilter) -> Result<Vec<AlertRecord>> {
        let mut w = Where::listing(f, ["namespace", "status", "alertname", "received_at"]);
        match f.alert_state {
            Some(AlertState::Firing) => {
                w.clause(format!("status = 'firing' AND {RESOLVED_AT} IS NULL"));
            }
            Some(AlertState::Resolved) => {
                w.clause(format!(
                    "(status = 'resolved' OR {RESOLVED_AT} IS NOT NULL)"
                ));
            }
            None => {}
        }
        decision_filter(&mut w, f.verdict, f.reason.as_deref());
        console_filters(&mut w, f);
        let limit_p = w.limit(f.limit);
        self.alerts_where(w, &format!(" ORDER BY id DESC LIMIT {limit_p}"))
            .await
    }

    /// One recorded alert occurrence with its decisions.
    pub async fn alert(&self, id: i64) -> Result<Option<AlertRecord>> {
        let mut w = Where::new();
        w.eq("id", "=", id);
        Ok(self.alerts_where(w, "").await?.pop())
    }

    async fn alerts_where(&self, mut w: Where, tail: &str) -> Result<Vec<AlertRecord>> {
        // The occurrence a repair run by hand against a target is recorded as (`store::hand`)
        // is no alert: no listing shows it, and by id it is missing.
        w.clause("requested_by IS NULL".into());
        let sql = format!(
            "SELECT id, fingerprint, status, alertname, namespace, severity, labels, annotations, starts_at, ends_at, \
             {RESOLVED_AT} AS resolved_at, generator_url, received_at FROM alert_events{}{tail}",
            w.sql()
        );
        let rows = sqlx::query_with(AssertSqlSafe(sql), w.args)
            .fetch_all(&self.pool)
            .await?;
        let mut alerts = rows
            .iter()
            .map(|r| {
                let status: String = r.try_get("status")?;
                let resolved_at: Option<i64> = r.try_get("resolved_at")?;
                let state = if status == "firing" && resolved_at.is_none() {
                    AlertState::Firing
                } else {
                    AlertState::Resolved
                };
                Ok(AlertRecord {
                    id: r.try_get("id")?,
                    fingerprint: r.try_get("fingerprint")?,
                    status,
                    state,
                    alertname: r.try_get("alertname")?,
                    namespace: r.try_get("namespace")?,
                    severity: r.try_get("severity")?,
                    labels: json_text(r, "labels")?,
                    annotations: json_text(r, "annotations")?,
                    starts_at: r.try_get("starts_at")?,
                    ends_at: r.try_get("ends_at")?,
                    resolved_at,
                    generator_url: r.try_get("generator_url")?,
                    received_at: r.try_get("received_at")?,
                    decisions: Vec::new(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        self.attach_decisions(&mut alerts).await?;
        Ok(alerts)
    }

    /// Fills each alert's decisions: one query for the page; a firing alert without a
    /// decision row is the one no rule matched.
    async fn attach_decisions(&self, alerts: &mut [AlertRecord]) -> Result<()> {
        if alerts.is_empty() {
            return Ok(());
        }
        let mut w = Where::new();
        let ps: Vec<String> = alerts.iter().map(|a| w.bind(a.id)).collect();
        let sql = format!(
            "SELECT d.alert_event_id, d.rule, d.target_key, d.verdict, d.reason, d.detail, d.job_id, \
             d.created_at, d.requested_by, j.dry_run FROM decisions d LEFT JOIN jobs j ON j.id = d.job_id \
             WHERE d.alert_event_id IN ({}) ORDER BY d.id",
            ps.join(", ")
        );
        let rows = sqlx::query_with(AssertSqlSafe(sql), w.args)
            .fetch_all(&self.pool)
            .await?;
        for r in &rows {
            let alert_id: i64 = r.try_get("alert_event_id")?;
            let stored: String = r.try_get("verdict")?;
            let verdict = Verdict::parse(&stored).ok_or_else(|| Error::Corrupt {
                column: "decisions.verdict",
                message: format!("unknown verdict {stored:?}"),
            })?;
            let mut reason: String = r.try_get("reason")?;
            // A dry-run job is stored as a plan like any other; the job says which it was.
            if reason == decision::PLAN && r.try_get::<Option<i64>, _>("dry_run")? == Some(1) {
                reason = decision::DRY_RUN.to_string();
            }
            let rule: String = r.try_get("rule")?;
            let detail: String = r.try_get("detail")?;
            let job_id: Option<i64> = r.try_get("job_id")?;
            let requested_by: Option<String> = r.try_get("requested_by")?;
            let d = AlertDecision {
                sentence: decision::sentence(
                    verdict,
                    &reason,
                    Some(&rule),
                    &detail,
                    job_id,
                    requested_by.as_deref(),
                ),
                requested_by,
                detail,
                rule: Some(rule),
                verdict,
                reason,
                target: r.try_get("target_key")?,
                job_id,
                decided_at: r.try_get("created_at")?,
            };
            if let Some(a) = alerts.iter_mut().find(|a| a.id == alert_id) {
                a.decisions.push(d);
            }
        }
        for a in alerts.iter_mut() {
            if a.status == "firing" && a.decisions.is_empty() {
                a.decisions.push(AlertDecision {
                    rule: None,
                    verdict: Verdict::Skipped,
                    reason: decision::NO_RULE.to_string(),
                    target: None,
                    job_id: None,
                    sentence: decision::sentence(
                        Verdict::Skipped,
                        decision::NO_RULE,
                        None,
                        "",
                        None,
                        None,
                    ),
                    detail: String::new(),
                    decided_at: a.received_at,
                    requested_by: None,
                });
            }
        }
        Ok(())
    }

    /// A page of repairs, newest first.
    pub async fn list_jobs(&self, f: &ListFilter) -> Result<Vec<Job>> {
        let mut w = Where::listing(f, ["target_namespace", "state", "target_key", "created_at"]);
        if let Some(mode) = f.mode {
            w.eq("mode", "=", mode.as_str().to_string());
        }
        let limit_p = w.limit(f.limit);
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
