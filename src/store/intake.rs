//! Alert occurrences, decisions, and the guard queries that run inside the intake transaction.

use sqlx::{AssertSqlSafe, Row};

use std::collections::HashMap;

use super::memo::{DeferredDecision, shadow};
use super::{Result, Store, WriteTx};
use crate::alert::{Alert, Status};
use crate::rules::Mode;

/// The target whose storm-brake activity a decision feeds, if any. Denied namespaces
/// (kube-system by default) do not feed it: their noise must not pause repairs everywhere else.
/// Nor do alerts a maintenance window held (the planned work's noise must not engage the brake
/// as the window closes), nor shadow rules (they watch; they never pause real repairs).
fn feeds_storm<'a>(d: &Decision<'a>) -> Option<&'a str> {
    d.target_key.filter(|_| {
        !matches!(d.reason, "namespace_denied" | "maintenance") && d.mode != Mode::Shadow
    })
}

/// The condition selecting the jobs of `mode`'s lane. Shadow jobs are a lane of their own: they
/// change nothing, so they neither hold a target against a real repair nor count against its
/// cooldown or budget (and real repairs do not count against a shadow rule's). `approve` and
/// `auto` share the real lane. A constant per lane, so no value is spliced into the SQL.
pub(super) fn lane(mode: Mode) -> &'static str {
    match mode {
        Mode::Shadow => "mode = 'shadow'",
        Mode::Approve | Mode::Auto => "mode <> 'shadow'",
    }
}

/// The columns of an `alert_events` row as intake writes them, in the order
/// `WriteTx::bind_alert` binds them.
const ALERT_COLUMNS: &str = "fingerprint, status, starts_at, ends_at, alertname, namespace, labels, \
     annotations, generator_url, receiver, group_key, received_at, severity, resolved_at";

/// One alert occurrence as received, to be recorded.
pub struct NewAlertEvent<'a> {
    /// The alert.
    pub alert: &'a Alert,
    /// Alertmanager receiver name.
    pub receiver: &'a str,
    /// Alertmanager group key.
    pub group_key: &'a str,
    /// When it arrived (epoch ms).
    pub received_at: i64,
}

/// A verdict on a matched firing alert: a job, or a refusal with its reason.
pub struct Decision<'a> {
    /// The recorded alert occurrence.
    pub alert_event_id: i64,
    /// The rule that matched.
    pub rule: &'a str,
    /// `namespace/Kind/name`, when the target could be resolved.
    pub target_key: Option<&'a str>,
    /// `job` or `refused`.
    pub verdict: &'a str,
    /// A guard name for refusals, `plan` for jobs.
    pub reason: &'a str,
    /// Human-readable details.
    pub detail: &'a str,
    /// The job created, if any.
    pub job_id: Option<i64>,
    /// When (epoch ms).
    pub created_at: i64,
    /// The rule's trust mode. A shadow rule's decisions do not feed the storm brake: a rule
    /// being watched must not pause real repairs.
    pub mode: Mode,
    /// Who asked, for a repair run by hand (`POST /api/repairs`); `None` for the intake's.
    pub requested_by: Option<&'a str>,
}

impl WriteTx {
    /// Records occurrences, in multi-row statements of up to 64. Returns each one's id, or `None` when the
    /// same fingerprint, status and startsAt is already stored (or comes earlier in `evs`): that
    /// is a re-send and must not be acted on again.
    ///
    /// A firing row that arrives after its own resolve (a delayed retry) is stored ended; a
    /// resolve ends its firing row with [`WriteTx::end_firing_row`] (the listing still looks for
    /// a resolve, for rows a concurrent replica left open).
    pub async fn insert_alert_events(
        &mut self,
        evs: &[NewAlertEvent<'_>],
    ) -> Result<Vec<Option<i64>>> {
        let mut out = Vec::with_capacity(evs.len());
        // SQLite: ids chosen here, so no row has to come back (see `insert_alert_chunk`).
        let mut next_id = match self.backend {
            super::Backend::Sqlite if !evs.is_empty() => self.next_alert_event_id().await?,
            _ => 0,
        };
        for chunk in super::pow2_chunks(evs, 64) {
            let resolved = self.stored_resolves(chunk).await?;
            match self.backend {
                super::Backend::Sqlite => {
                    out.extend(self.insert_alert_chunk(chunk, &resolved, next_id).await?);
                    next_id += chunk.len() as i64;
                }
                super::Backend::Postgres => {
                    out.extend(self.insert_alert_chunk_returning(chunk, &resolved).await?);
                }
            }
        }
        Ok(out)
    }

    /// The id the next `alert_events` row gets on SQLite: above every id the table has had
    /// (`AUTOINCREMENT` keeps deleted ids in `sqlite_sequence`). Exact for the rest of the
    /// transaction: SQLite's write lock, taken at `BEGIN IMMEDIATE`, keeps every other
    /// writer out.
    async fn next_alert_event_id(&mut self) -> Result<i64> {
        let row = sqlx::query(
            "SELECT MAX(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'alert_events'), 0), \
             COALESCE((SELECT MAX(id) FROM alert_events), 0)) + 1 AS next",
        )
        .fetch_one(&mut *self.tx)
        .await?;
        Ok(row.try_get("next")?)
    }

    /// Binds one occurrence's columns after `id` (if any), in the order of [`ALERT_COLUMNS`].
    fn bind_alert<'q>(
        mut q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
        ev: &NewAlertEvent<'_>,
        resolved: &HashMap<(&str, i64), i64>,
    ) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
        let a = ev.alert;
        let labels = serde_json::to_string(&a.labels).expect("string maps serialize");
        let annotations = serde_json::to_string(&a.annotations).expect("string maps serialize");
        let resolved_at = match a.status {
            Status::Firing => resolved
                .get(&(a.fingerprint.as_str(), a.starts_at_ms()))
                .copied(),
            Status::Resolved => None,
        };
        q = q
            .bind(a.fingerprint.clone())
            .bind(a.status.as_str())
            .bind(a.starts_at_ms())
            .bind(a.ends_at.map(|t| t.timestamp_millis()))
            .bind(a.alertname().to_string())
            .bind(a.labels.get("namespace").cloned())
            .bind(labels)
            .bind(annotations)
            .bind(a.generator_url.clone())
            .bind(ev.receiver.to_string())
            .bind(ev.group_key.to_string())
            .bind(ev.received_at)
            .bind(a.labels.get("severity").cloned())
            .bind(resolved_at);
        q
    }

    /// `INSERT INTO alert_events` of `rows` rows: [`ALERT_COLUMNS`] after `lead` (`"id, "` when
    /// the ids are chosen, else empty), then `tail` (the conflict clause).
    fn alert_insert(&self, rows: usize, lead: &str, tail: &str) -> String {
        let params = ALERT_COLUMNS.split(',').count() + usize::from(!lead.is_empty());
        let row = format!("({})", vec!["?"; params].join(", "));
        let mut sql = format!("INSERT INTO alert_events ({lead}{ALERT_COLUMNS}) VALUES ");
        sql.push_str(&super::values_list(self.backend, rows, &row));
        sql.push_str(tail);
        sql
    }

    /// SQLite: one chunk inserted with the ids `first..first + chunk.len()`, in order.
    ///
    /// Why not `RETURNING id` as on PostgreSQL: sqlx's SQLite driver hands every returned row
    /// from its database thread to the writer one by one, each a wake-up of the writer, and the
    /// intake writer is the one serial path of an alert storm. Chosen ids need no rows back:
    /// the insert reports how many it stored, and when that is all of them (every chunk but
    /// one holding a re-send) the ids are known. Otherwise one read finds which ids were
    /// stored; an id not stored belongs to an occurrence that was (a re-send, or a second copy
    /// earlier in `chunk`). The conflict target names the dedup index only: a clash on `id`
    /// itself would be a bug, and fails the batch rather than pass for a re-send.
    async fn insert_alert_chunk(
        &mut self,
        chunk: &[NewAlertEvent<'_>],
        resolved: &HashMap<(&str, i64), i64>,
        first: i64,
    ) -> Result<Vec<Option<i64>>> {
        let sql = self.alert_insert(
            chunk.len(),
            "id, ",
            " ON CONFLICT (fingerprint, status, starts_at) DO NOTHING",
        );
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for (i, ev) in chunk.iter().enumerate() {
            q = Self::bind_alert(q.bind(first + i as i64), ev, resolved);
        }
        let n = chunk.len() as i64;
        let stored = q.execute(&mut *self.tx).await?.rows_affected();
        if stored == n as u64 {
            return Ok((first..first + n).map(Some).collect());
        }
        let rows = sqlx::query("SELECT id FROM alert_events WHERE id >= $1 AND id < $2")
            .bind(first)
            .bind(first + n)
            .fetch_all(&mut *self.tx)
            .await?;
        let mut present = vec![false; chunk.len()];
        for r in &rows {
            let id: i64 = r.try_get("id")?;
            if let Some(slot) = usize::try_from(id - first)
                .ok()
                .and_then(|i| present.get_mut(i))
            {
                *slot = true;
            }
        }
        Ok(present
            .into_iter()
            .zip(first..)
            .map(|(p, id)| p.then_some(id))
            .collect())
    }

    /// PostgreSQL: one chunk inserted, its ids read back from `RETURNING` (a sequence hands
    /// them out, and other replicas insert at the same time).
    async fn insert_alert_chunk_returning(
        &mut self,
        chunk: &[NewAlertEvent<'_>],
        resolved: &HashMap<(&str, i64), i64>,
    ) -> Result<Vec<Option<i64>>> {
        let sql = self.alert_insert(
            chunk.len(),
            "",
            " ON CONFLICT DO NOTHING RETURNING id, fingerprint, status, starts_at",
        );
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for ev in chunk {
            q = Self::bind_alert(q, ev, resolved);
        }
        let rows = q.fetch_all(&mut *self.tx).await?;
        let mut ids: HashMap<(String, String, i64), i64> = HashMap::with_capacity(rows.len());
        for r in &rows {
            ids.insert(
                (
                    r.try_get("fingerprint")?,
                    r.try_get("status")?,
                    r.try_get("starts_at")?,
                ),
                r.try_get("id")?,
            );
        }
        Ok(chunk
            .iter()
            .map(|ev| {
                let a = ev.alert;
                // `remove`: a second copy of an occurrence in the same statement was not stored.
                ids.remove(&(
                    a.fingerprint.clone(),
                    a.status.as_str().to_string(),
                    a.starts_at_ms(),
                ))
            })
            .collect())
    }

    /// The stored resolves of `chunk`'s firing occurrences: (fingerprint, startsAt) → when the
    /// occurrence ended (its `endsAt`, else when the resolve arrived). A firing row stored after
    /// its own resolve (a delayed retry) is stored ended at that time.
    ///
    /// Why a read of its own rather than a subquery in each inserted row: a subquery reading
    /// `alert_events` keeps a cursor open on the dedup index the insert writes to, and SQLite
    /// then saves and restores that cursor around every row it inserts: a fifth of the store's
    /// work in an alert storm. This is one indexed read per chunk, and most chunks find nothing.
    /// Its list of keys has as many entries as the chunk has rows (the last one repeated), so
    /// there is one statement text per chunk size, as for the insert.
    async fn stored_resolves<'e>(
        &mut self,
        chunk: &'e [NewAlertEvent<'_>],
    ) -> Result<HashMap<(&'e str, i64), i64>> {
        let firing: Vec<(&str, i64)> = chunk
            .iter()
            .filter(|ev| ev.alert.status == Status::Firing)
            .map(|ev| (ev.alert.fingerprint.as_str(), ev.alert.starts_at_ms()))
            .collect();
        let Some(&last) = firing.last() else {
            return Ok(HashMap::new());
        };
        // The keys are joined to the dedup index, one seek each.
        let mut sql = String::from("WITH k (fingerprint, starts_at) AS (VALUES ");
        sql.push_str(&super::values_list(self.backend, chunk.len(), "(?, ?)"));
        sql.push_str(
            ") SELECT r.fingerprint, r.starts_at, COALESCE(r.ends_at, r.received_at) AS ended_at \
             FROM k JOIN alert_events r ON r.fingerprint = k.fingerprint \
             AND r.status = 'resolved' AND r.starts_at = k.starts_at",
        );
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for i in 0..chunk.len() {
            let (fingerprint, starts_at) = firing.get(i).copied().unwrap_or(last);
            q = q.bind(fingerprint).bind(starts_at);
        }
        let rows = q.fetch_all(&mut *self.tx).await?;
        let mut out = HashMap::new();
        for r in &rows {
            let fingerprint: String = r.try_get("fingerprint")?;
            let starts_at: i64 = r.try_get("starts_at")?;
            // Keyed by the chunk's own strings, so the map borrows nothing from the rows.
            if let Some(&(fp, _)) = firing.iter().find(|(f, _)| *f == fingerprint) {
                out.insert((fp, starts_at), r.try_get("ended_at")?);
            }
        }
        Ok(out)
    }

    /// Records one occurrence on its own (a resolve ends its firing row at once); `None` when
    /// it is already stored.
    pub async fn insert_alert_event(&mut self, ev: &NewAlertEvent<'_>) -> Result<Option<i64>> {
        let id = self
            .insert_alert_events(std::slice::from_ref(ev))
            .await?
            .into_iter()
            .next()
            .flatten();
        if id.is_some() && ev.alert.status == crate::alert::Status::Resolved {
            self.end_firing_row(ev).await?;
        }
        Ok(id)
    }

    /// A resolve just recorded ends its firing row (`resolved_at`), so "firing now" needs no
    /// search for the resolve. Called at the resolve's own turn in the batch, not when the rows
    /// are inserted: an earlier webhook's re-send of that firing occurrence must still find it
    /// open, as it would have one webhook at a time.
    pub async fn end_firing_row(&mut self, resolve: &NewAlertEvent<'_>) -> Result<()> {
        let a = resolve.alert;
        let resolved_at = a
            .ends_at
            .map_or(resolve.received_at, |t| t.timestamp_millis());
        sqlx::query(
            "UPDATE alert_events SET resolved_at = $1 \
             WHERE fingerprint = $2 AND status = 'firing' AND starts_at = $3",
        )
        .bind(resolved_at)
        .bind(&a.fingerprint)
        .bind(a.starts_at_ms())
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    /// Serializes intake across replicas on PostgreSQL for the rest of the transaction (a
    /// transaction-scoped advisory lock), so the storm brake's count and the queue bound read
    /// inside it are exact even with two replicas deciding at once. SQLite's single writer
    /// already does this.
    pub async fn lock_intake(&mut self) -> Result<()> {
        if self.backend == super::Backend::Postgres {
            // Bounded: a replica whose session stalls inside a batch must not hang every other
            // replica's intake; the batch fails with a 503 and Alertmanager retries.
            sqlx::query(AssertSqlSafe(format!(
                "SET LOCAL lock_timeout = {}",
                self.lock_timeout.as_millis().max(1)
            )))
            .execute(&mut *self.tx)
            .await?;
            // An arbitrary key of aiops's own (the no_action groups use another).
            sqlx::query(
                "SELECT count(*) FROM (SELECT pg_advisory_xact_lock(6990001116843713839)) AS l",
            )
            .execute(&mut *self.tx)
            .await?;
        }
        Ok(())
    }

    /// Records a guard's verdict: at once, or, in an intake transaction, with the batch's other
    /// verdicts at [`WriteTx::flush`].
    pub async fn record_decision(&mut self, d: &Decision<'_>) -> Result<()> {
        if !self.memo.on {
            self.insert_decision(d).await?;
            return Ok(());
        }
        self.deferred.decisions.push(DeferredDecision {
            alert_event_id: d.alert_event_id,
            rule: d.rule.to_string(),
            target_key: d.target_key.map(str::to_string),
            verdict: d.verdict.to_string(),
            reason: d.reason.to_string(),
            detail: d.detail.to_string(),
            job_id: d.job_id,
            created_at: d.created_at,
            requested_by: d.requested_by.map(str::to_string),
        });
        if let Some(key) = feeds_storm(d) {
            let t = self
                .deferred
                .activity
                .entry(key.to_string())
                .or_insert(d.created_at);
            *t = (*t).max(d.created_at);
        }
        Ok(())
    }

    /// Writes the deferred decisions and storm activity: a few multi-row statements
    /// ([`super::pow2_chunks`]).
    pub async fn flush(&mut self) -> Result<()> {
        if self.deferred.is_empty() {
            return Ok(());
        }
        let deferred = std::mem::take(&mut self.deferred);
        let sizes: Vec<usize> = super::pow2_chunks(&deferred.decisions, 128)
            .iter()
            .map(|c| c.len())
            .collect();
        // Moved into the statement, not copied: the rows are written once.
        let mut decisions = deferred.decisions.into_iter();
        for n in sizes {
            let mut sql = String::from(
                "INSERT INTO decisions (alert_event_id, rule, target_key, verdict, reason, detail, job_id, created_at, requested_by) VALUES ",
            );
            sql.push_str(&super::values_list(
                self.backend,
                n,
                "(?, ?, ?, ?, ?, ?, ?, ?, ?)",
            ));
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for d in decisions.by_ref().take(n) {
                q = q
                    .bind(d.alert_event_id)
                    .bind(d.rule)
                    .bind(d.target_key)
                    .bind(d.verdict)
                    .bind(d.reason)
                    .bind(d.detail)
                    .bind(d.job_id)
                    .bind(d.created_at)
                    .bind(d.requested_by);
            }
            q.execute(&mut *self.tx).await?;
        }
        // Sorted: two replicas upserting overlapping targets lock them in one order.
        let mut activity: Vec<(String, i64)> = deferred.activity.into_iter().collect();
        activity.sort();
        for chunk in super::pow2_chunks(&activity, 256) {
            let mut sql =
                String::from("INSERT INTO target_activity (target_key, last_seen) VALUES ");
            sql.push_str(&super::values_list(self.backend, chunk.len(), "(?, ?)"));
            sql.push_str(" ON CONFLICT (target_key) DO UPDATE SET last_seen = excluded.last_seen");
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for (key, t) in chunk {
                q = q.bind(key.clone()).bind(*t);
            }
            q.execute(&mut *self.tx).await?;
        }
        Ok(())
    }

    /// Records a verdict.
    pub async fn insert_decision(&mut self, d: &Decision<'_>) -> Result<i64> {
        let row = sqlx::query(
            "INSERT INTO decisions (alert_event_id, rule, target_key, verdict, reason, detail, job_id, created_at, requested_by) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
        )
        .bind(d.alert_event_id)
        .bind(d.rule)
        .bind(d.target_key)
        .bind(d.verdict)
        .bind(d.reason)
        .bind(d.detail)
        .bind(d.job_id)
        .bind(d.created_at)
        .bind(d.requested_by)
        .fetch_one(&mut *self.tx)
        .await?;
        if let Some(key) = feeds_storm(d) {
            sqlx::query(
                "INSERT INTO target_activity (target_key, last_seen) VALUES ($1, $2) \
                 ON CONFLICT (target_key) DO UPDATE SET last_seen = excluded.last_seen",
            )
            .bind(key)
            .bind(d.created_at)
            .execute(&mut *self.tx)
            .await?;
        }
        Ok(row.try_get("id")?)
    }

    /// When this rule last acted on this target in `mode`'s lane (finish time, or creation
    /// while unfinished). Jobs cancelled before they ran did not act and do not count.
    pub async fn last_activity(
        &mut self,
        rule: &str,
        target_key: &str,
        mode: Mode,
    ) -> Result<Option<i64>> {
        let memo_key = (rule.to_string(), target_key.to_string(), shadow(mode));
        if self.memo.on
            && let Some(t) = self.memo.last.get(&memo_key)
        {
            return Ok(*t);
        }
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT MAX(COALESCE(finished_at, created_at)) AS t FROM jobs \
             WHERE rule = $1 AND target_key = $2 AND state <> 'cancelled' AND {}",
            lane(mode)
        )))
        .bind(rule)
        .bind(target_key)
        .fetch_one(&mut *self.tx)
        .await?;
        let t: Option<i64> = row.try_get("t")?;
        if self.memo.on {
            self.memo.last.insert(memo_key, t);
        }
        Ok(t)
    }

    /// Repairs this rule started on this target since `since`, in `mode`'s lane. Escalation
    /// steps belong to the repair that started them, so only chain roots count against the
    /// budget.
    pub async fn repairs_since(
        &mut self,
        rule: &str,
        target_key: &str,
        since: i64,
        mode: Mode,
    ) -> Result<i64> {
        let memo_key = (
            rule.to_string(),
            target_key.to_string(),
            since,
            shadow(mode),
        );
        if self.memo.on
            && let Some(n) = self.memo.repairs.get(&memo_key)
        {
            return Ok(*n);
        }
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT COUNT(*) AS n FROM jobs WHERE rule = $1 AND target_key = $2 AND chain_index = 0 \
             AND created_at >= $3 AND state <> 'cancelled' AND {}",
            lane(mode)
        )))
        .bind(rule)
        .bind(target_key)
        .bind(since)
        .fetch_one(&mut *self.tx)
        .await?;
        let n: i64 = row.try_get("n")?;
        if self.memo.on {
            self.memo.repairs.insert(memo_key, n);
        }
        Ok(n)
    }

    /// The active (awaiting approval, queued, waiting, running, verifying) job on a target in `mode`'s lane, if
    /// any: the lanes are those of the `jobs_one_active_per_target` index.
    pub async fn active_job_for_target(
        &mut self,
        target_key: &str,
        mode: Mode,
    ) -> Result<Option<i64>> {
        let memo_key = (target_key.to_string(), shadow(mode));
        if self.memo.on
            && let Some(id) = self.memo.active.get(&memo_key)
        {
            return Ok(*id);
        }
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT id FROM jobs WHERE target_key = $1 AND state IN ('awaiting_approval', 'queued', 'waiting', 'running', 'verifying') \
             AND {} LIMIT 1",
            lane(mode)
        )))
        .bind(target_key)
        .fetch_optional(&mut *self.tx)
        .await?;
        let id = match row {
            Some(r) => Some(r.try_get("id")?),
            None => None,
        };
        if self.memo.on {
            self.memo.active.insert(memo_key, id);
        }
        Ok(id)
    }

    /// Distinct targets that matched a rule since `since` (one range scan of the activity index).
    pub async fn targets_active_since(&mut self, since: i64) -> Result<i64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM target_activity WHERE last_seen >= $1")
            .bind(since)
            .fetch_one(&mut *self.tx)
            .await?;
        Ok(row.try_get("n")?)
    }

    /// Whether `target_key` matched a rule since `since` (one primary-key lookup).
    pub async fn target_active_since(&mut self, target_key: &str, since: i64) -> Result<bool> {
        let row = sqlx::query("SELECT last_seen FROM target_activity WHERE target_key = $1")
            .bind(target_key)
            .fetch_optional(&mut *self.tx)
            .await?;
        Ok(match row {
            Some(r) => r.try_get::<i64, _>("last_seen")? >= since,
            None => false,
        })
    }

    /// Jobs queued or waiting in `mode`'s lane across all replicas, seen from inside the
    /// intake transaction (the queue bound). Each lane has its own bound, so a broad shadow
    /// rule during an incident can never fill the queue real repairs are admitted to.
    pub async fn pending_jobs(&mut self, mode: Mode) -> Result<i64> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT COUNT(*) AS n FROM jobs WHERE state IN ('queued', 'waiting') AND {}",
            lane(mode)
        )))
        .fetch_one(&mut *self.tx)
        .await?;
        Ok(row.try_get("n")?)
    }

    /// Whether a storm brake episode is open.
    pub async fn storm_open(&mut self) -> Result<bool> {
        let row = sqlx::query("SELECT id FROM storm_brakes WHERE open = 1")
            .fetch_optional(&mut *self.tx)
            .await?;
        Ok(row.is_some())
    }

    /// Opens a storm brake episode. Returns false when one is already open, so that the
    /// escalation "storm brake engaged" happens once per episode, even across replicas.
    pub async fn engage_storm(&mut self, now: i64, targets: i64, window_ms: i64) -> Result<bool> {
        let row = sqlx::query(
            "INSERT INTO storm_brakes (engaged_at, targets, window_ms, open) VALUES ($1, $2, $3, 1) \
             ON CONFLICT DO NOTHING RETURNING id",
        )
        .bind(now)
        .bind(targets)
        .bind(window_ms)
        .fetch_optional(&mut *self.tx)
        .await?;
        Ok(row.is_some())
    }

    /// Closes the open storm brake episode. Returns whether one was open.
    pub async fn release_storm(&mut self, now: i64) -> Result<bool> {
        let r = sqlx::query("UPDATE storm_brakes SET released_at = $1, open = NULL WHERE open = 1")
            .bind(now)
            .execute(&mut *self.tx)
            .await?;
        Ok(r.rows_affected() > 0)
    }
}

/// A recorded alert occurrence, as playbooks see it.
#[derive(Clone, Debug)]
pub struct StoredAlert {
    /// Fingerprint.
    pub fingerprint: String,
    /// `firing` or `resolved`.
    pub status: String,
    /// startsAt (epoch ms).
    pub starts_at: i64,
    /// Labels.
    pub labels: crate::alert::Labels,
    /// Annotations.
    pub annotations: crate::alert::Labels,
    /// The alert's generatorURL (a link for people).
    pub generator_url: String,
}

impl Store {
    /// One recorded alert occurrence.
    pub async fn alert_event(&self, id: i64) -> Result<Option<StoredAlert>> {
        let row = sqlx::query(STORED_ALERT)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(stored_alert).transpose()
    }

    /// Number of recorded alert occurrences (for tests and diagnostics).
    pub async fn count_alert_events(&self) -> Result<i64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM alert_events")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("n")?)
    }

    /// Refusals recorded, as (rule, target_key, reason), oldest first.
    pub async fn refusals(&self) -> Result<Vec<(String, Option<String>, String)>> {
        let rows = sqlx::query(
            "SELECT rule, target_key, reason FROM decisions WHERE verdict = 'refused' ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("rule")?,
                    r.try_get("target_key")?,
                    r.try_get("reason")?,
                ))
            })
            .collect()
    }

    /// Whether the alert occurrence is already recorded (dedup truth, read-only).
    pub async fn alert_event_exists(&self, key: &crate::alert::DedupKey) -> Result<bool> {
        let row = sqlx::query(
            "SELECT id FROM alert_events WHERE fingerprint = $1 AND status = $2 AND starts_at = $3",
        )
        .bind(&key.fingerprint)
        .bind(key.status.as_str())
        .bind(key.starts_at_ms)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some())
    }
}

const STORED_ALERT: &str = "SELECT fingerprint, status, starts_at, labels, annotations, generator_url \
     FROM alert_events WHERE id = $1";

fn stored_alert(r: &sqlx::any::AnyRow) -> Result<StoredAlert> {
    let map = |col: &'static str| -> Result<crate::alert::Labels> {
        let text: String = r.try_get(col)?;
        serde_json::from_str(&text).map_err(|e| super::Error::Corrupt {
            column: col,
            message: e.to_string(),
        })
    };
    Ok(StoredAlert {
        fingerprint: r.try_get("fingerprint")?,
        status: r.try_get("status")?,
        starts_at: r.try_get("starts_at")?,
        labels: map("labels")?,
        annotations: map("annotations")?,
        generator_url: r.try_get("generator_url")?,
    })
}

impl WriteTx {
    /// One recorded alert occurrence, read inside the transaction (on an in-memory SQLite
    /// store the pool's one connection is the transaction's).
    pub async fn alert_event(&mut self, id: i64) -> Result<Option<StoredAlert>> {
        let row = sqlx::query(STORED_ALERT)
            .bind(id)
            .fetch_optional(&mut *self.tx)
            .await?;
        row.as_ref().map(stored_alert).transpose()
    }

    /// The id of a recorded occurrence (`aiops simulate --ignore-dedup` evaluates it again).
    pub async fn alert_event_id(&mut self, key: &crate::alert::DedupKey) -> Result<Option<i64>> {
        let row = sqlx::query(
            "SELECT id FROM alert_events WHERE fingerprint = $1 AND status = $2 AND starts_at = $3",
        )
        .bind(&key.fingerprint)
        .bind(key.status.as_str())
        .bind(key.starts_at_ms)
        .fetch_optional(&mut *self.tx)
        .await?;
        row.map(|r| r.try_get("id")).transpose().map_err(Into::into)
    }
}

/// One storm brake episode as recorded (read by tests).
#[cfg(test)]
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub(crate) struct StormBrake {
    /// Distinct targets in the window when it engaged.
    pub targets: i64,
    /// When it was released; None while open.
    pub released_at: Option<i64>,
}

/// Arrangements and reads for the unit tests of the intake (the guards' tables have no
/// reader in the daemon).
#[cfg(test)]
impl Store {
    /// Moves every target's last rule match to `last_seen` (epoch ms), e.g. out of the storm
    /// window.
    pub(crate) async fn set_target_activity(&self, last_seen: i64) -> Result<u64> {
        let r = sqlx::query("UPDATE target_activity SET last_seen = $1")
            .bind(last_seen)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected())
    }

    /// Targets that ever matched a rule (rows of `target_activity`).
    pub(crate) async fn count_target_activity(&self) -> Result<i64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM target_activity")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("n")?)
    }

    /// Every storm brake episode, oldest first.
    pub(crate) async fn storm_brakes(&self) -> Result<Vec<StormBrake>> {
        Ok(
            sqlx::query_as("SELECT targets, released_at FROM storm_brakes ORDER BY id")
                .fetch_all(&self.pool)
                .await?,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::NewAlertEvent;
    use crate::alert::Alert;
    use crate::store::{Options, Store};

    fn alert(fingerprint: &str) -> Alert {
        serde_json::from_value(serde_json::json!({
            "status": "firing",
            "labels": {"alertname": "KubePodCrashLooping", "namespace": "shop", "pod": fingerprint},
            "annotations": {},
            "startsAt": "2026-01-01T00:00:00Z",
            "fingerprint": fingerprint,
        }))
        .unwrap()
    }

    fn events(alerts: &[Alert]) -> Vec<NewAlertEvent<'_>> {
        alerts
            .iter()
            .map(|alert| NewAlertEvent {
                alert,
                receiver: "aiops",
                group_key: "{}",
                received_at: 1,
            })
            .collect()
    }

    async fn fingerprint_of(store: &Store, id: i64) -> String {
        store.alert_event(id).await.unwrap().unwrap().fingerprint
    }

    /// The SQLite insert chooses ids instead of reading them back: each id must still be its
    /// own row's, when a chunk mixes new occurrences, stored ones and a second copy, and above
    /// an id whose row was deleted (AUTOINCREMENT never hands an id out twice).
    #[tokio::test]
    async fn each_new_occurrence_gets_its_own_rows_id_and_stored_ones_and_second_copies_none() {
        let store = Store::connect("sqlite::memory:", &Options::default())
            .await
            .unwrap();
        let (a, b, c, d) = (alert("aa"), alert("bb"), alert("cc"), alert("dd"));
        let mut tx = store.begin_write().await.unwrap();
        let first = tx
            .insert_alert_events(&events(&[b.clone(), d.clone()]))
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let (b_id, d_id) = (first[0].unwrap(), first[1].unwrap());
        assert_eq!(fingerprint_of(&store, b_id).await, "bb");
        assert_eq!(fingerprint_of(&store, d_id).await, "dd");
        // The newest row goes: its id must not be handed out again.
        sqlx::query("DELETE FROM alert_events WHERE id = $1")
            .bind(d_id)
            .execute(&store.pool)
            .await
            .unwrap();

        let mut tx = store.begin_write().await.unwrap();
        let ids = tx
            .insert_alert_events(&events(&[a.clone(), b.clone(), c.clone(), a.clone()]))
            .await
            .unwrap();
        tx.commit().await.unwrap();
        assert!(ids[1].is_none(), "bb is stored already: {ids:?}");
        assert!(ids[3].is_none(), "the second copy of aa: {ids:?}");
        let (a_id, c_id) = (ids[0].unwrap(), ids[2].unwrap());
        assert!(a_id > d_id && c_id > d_id, "{ids:?} after {d_id}");
        assert_eq!(fingerprint_of(&store, a_id).await, "aa");
        assert_eq!(fingerprint_of(&store, c_id).await, "cc");
        assert_eq!(store.count_alert_events().await.unwrap(), 3);
    }
}
