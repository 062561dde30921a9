//! The notification outbox: one row per event × channel, and one row per delivery attempt.
//!
//! Rows are written in the transaction of the state change that causes them ([`WriteTx`]), and
//! delivered by a dispatcher that claims due rows with a lease, like jobs: a conditional UPDATE
//! (with `FOR UPDATE SKIP LOCKED` on PostgreSQL) gives each row to one replica at a time, and a
//! row whose claimant died is claimed again once its lease expires.

use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};

use super::{Backend, Error, JobState, Result, Store, WriteTx};

/// Delivery states of a notification.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NotificationState {
    /// Waiting to be sent (first try or a retry at `next_attempt_at`).
    Pending,
    /// Claimed by a dispatcher; `lease_until` says until when.
    Sending,
    /// Accepted by the channel's API.
    Sent,
    /// Given up: a permanent error or too many attempts.
    Failed,
    /// An identical message went to the same channel within the dedup window.
    Suppressed,
}

impl NotificationState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationState::Pending => "pending",
            NotificationState::Sending => "sending",
            NotificationState::Sent => "sent",
            NotificationState::Failed => "failed",
            NotificationState::Suppressed => "suppressed",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<NotificationState> {
        [
            NotificationState::Pending,
            NotificationState::Sending,
            NotificationState::Sent,
            NotificationState::Failed,
            NotificationState::Suppressed,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }
}

/// A notification to enqueue.
#[derive(Clone, Debug)]
pub struct NewNotification<'a> {
    /// Event kind (`escalation`, …).
    pub event: &'a str,
    /// Channel name.
    pub channel: &'a str,
    /// The job the event is about, if any.
    pub job_id: Option<i64>,
    /// The alert's (or target's) Kubernetes namespace.
    pub namespace: Option<&'a str>,
    /// The alert's app.
    pub app: Option<&'a str>,
    /// Identical messages to one channel share this key.
    pub dedup_key: &'a str,
    /// Idempotency key sent to APIs that take one (LINE's X-Line-Retry-Key); reused on retries.
    pub retry_key: &'a str,
    /// Rendered subject.
    pub subject: &'a str,
    /// Rendered plain-text body.
    pub body: &'a str,
    /// The event as JSON (the webhook channel sends it).
    pub event_json: &'a str,
}

/// A stored notification.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Notification {
    /// Id.
    pub id: i64,
    /// Event kind.
    pub event: String,
    /// Channel name.
    pub channel: String,
    /// Job, if any.
    pub job_id: Option<i64>,
    /// Namespace.
    pub namespace: Option<String>,
    /// App.
    pub app: Option<String>,
    /// Dedup key.
    pub dedup_key: String,
    /// Idempotency key.
    pub retry_key: String,
    /// Subject.
    pub subject: String,
    /// Body.
    pub body: String,
    /// Event JSON.
    pub event_json: String,
    /// State.
    pub state: NotificationState,
    /// Attempts so far.
    pub attempts: i64,
    /// When the next attempt is due.
    pub next_attempt_at: i64,
    /// Last error (never a secret: errors are built without URLs or tokens).
    pub last_error: Option<String>,
    /// Created.
    pub created_at: i64,
    /// Accepted by the API.
    pub sent_at: Option<i64>,
}

/// One delivery attempt.
#[derive(Clone, Debug, serde::Serialize)]
pub struct NotificationAttempt {
    /// When.
    pub at: i64,
    /// `sent`, `retry`, `failed`.
    pub result: String,
    /// The API's HTTP status, when there was one.
    pub http_status: Option<i64>,
    /// The retry-after the API asked for.
    pub retry_after_ms: Option<i64>,
    /// What happened.
    pub detail: String,
}

/// What an attempt's end does to the row.
#[derive(Clone, Copy, Debug)]
pub enum AttemptEnd {
    /// Delivered.
    Sent,
    /// Try again at this time (epoch ms).
    Retry(i64),
    /// Give up.
    Failed,
}

const COLUMNS: &str = "id, event, channel, job_id, namespace, app, dedup_key, retry_key, subject, body, event_json, \
    state, attempts, next_attempt_at, last_error, created_at, sent_at";

fn from_row(row: &AnyRow) -> Result<Notification> {
    let state: String = row.try_get("state")?;
    Ok(Notification {
        id: row.try_get("id")?,
        event: row.try_get("event")?,
        channel: row.try_get("channel")?,
        job_id: row.try_get("job_id")?,
        namespace: row.try_get("namespace")?,
        app: row.try_get("app")?,
        dedup_key: row.try_get("dedup_key")?,
        retry_key: row.try_get("retry_key")?,
        subject: row.try_get("subject")?,
        body: row.try_get("body")?,
        event_json: row.try_get("event_json")?,
        state: NotificationState::parse(&state).ok_or(Error::Corrupt {
            column: "state",
            message: format!("unknown notification state {state:?}"),
        })?,
        attempts: row.try_get("attempts")?,
        next_attempt_at: row.try_get("next_attempt_at")?,
        last_error: row.try_get("last_error")?,
        created_at: row.try_get("created_at")?,
        sent_at: row.try_get("sent_at")?,
    })
}

impl WriteTx {
    /// Enqueues a notification. When a message with the same dedup key went (or is going) to
    /// the same channel since `dedup_since`, the row is recorded as `suppressed` instead, so
    /// the decision stays visible. Returns the row id and its state.
    pub async fn insert_notification(
        &mut self,
        n: &NewNotification<'_>,
        now: i64,
        dedup_since: i64,
    ) -> Result<(i64, NotificationState)> {
        let dup = sqlx::query(
            "SELECT id FROM notifications WHERE channel = $1 AND dedup_key = $2 AND created_at >= $3 \
             AND state IN ('pending', 'sending', 'sent') LIMIT 1",
        )
        .bind(n.channel)
        .bind(n.dedup_key)
        .bind(dedup_since)
        .fetch_optional(&mut *self.tx)
        .await?;
        let state = if dup.is_some() {
            NotificationState::Suppressed
        } else {
            NotificationState::Pending
        };
        let id = self.insert_row(n, state, now, now).await?;
        Ok((id, state))
    }

    async fn insert_row(
        &mut self,
        n: &NewNotification<'_>,
        state: NotificationState,
        due: i64,
        now: i64,
    ) -> Result<i64> {
        let row = sqlx::query(
            "INSERT INTO notifications (event, channel, job_id, namespace, app, dedup_key, retry_key, subject, body, \
             event_json, state, attempts, next_attempt_at, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 0, $12, $13) RETURNING id",
        )
        .bind(n.event)
        .bind(n.channel)
        .bind(n.job_id)
        .bind(n.namespace)
        .bind(n.app)
        .bind(n.dedup_key)
        .bind(n.retry_key)
        .bind(n.subject)
        .bind(n.body)
        .bind(n.event_json)
        .bind(state.as_str())
        .bind(due)
        .bind(now)
        .fetch_one(&mut *self.tx)
        .await?;
        Ok(row.try_get("id")?)
    }

    /// The open row of a message group (`no_action`): one of `channel` with this `dedup_key`
    /// (the group's key) not yet due, so never claimed; its id and event JSON. Later members
    /// join it ([`WriteTx::update_group`]) instead of making a message each.
    pub async fn open_group(
        &mut self,
        channel: &str,
        group_key: &str,
        now: i64,
    ) -> Result<Option<(i64, String)>> {
        let row = sqlx::query(
            "SELECT id, event_json FROM notifications WHERE channel = $1 AND dedup_key = $2 \
             AND state = 'pending' AND attempts = 0 AND next_attempt_at > $3 ORDER BY id DESC LIMIT 1",
        )
        .bind(channel)
        .bind(group_key)
        .bind(now)
        .fetch_optional(&mut *self.tx)
        .await?;
        row.map(|r| -> Result<(i64, String)> { Ok((r.try_get("id")?, r.try_get("event_json")?)) })
            .transpose()
    }

    /// When the group's last message went (or is due to go): the next may not be sooner
    /// than the group interval after it.
    pub async fn group_last_due(&mut self, channel: &str, group_key: &str) -> Result<Option<i64>> {
        let row = sqlx::query(
            "SELECT MAX(COALESCE(sent_at, next_attempt_at)) AS last FROM notifications \
             WHERE channel = $1 AND dedup_key = $2 AND state <> 'suppressed'",
        )
        .bind(channel)
        .bind(group_key)
        .fetch_one(&mut *self.tx)
        .await?;
        Ok(row.try_get("last")?)
    }

    /// Replaces the text of a group's open row with the group as it now is. False when the
    /// row is no longer open (then the caller opens a new group).
    pub async fn update_group(
        &mut self,
        id: i64,
        subject: &str,
        body: &str,
        event_json: &str,
        now: i64,
    ) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE notifications SET subject = $1, body = $2, event_json = $3 \
             WHERE id = $4 AND state = 'pending' AND attempts = 0 AND next_attempt_at > $5",
        )
        .bind(subject)
        .bind(body)
        .bind(event_json)
        .bind(id)
        .bind(now)
        .execute(&mut *self.tx)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Opens a message group: a pending row due at `due` (not now), which later members join.
    pub async fn insert_group(
        &mut self,
        n: &NewNotification<'_>,
        due: i64,
        now: i64,
    ) -> Result<i64> {
        self.insert_row(n, NotificationState::Pending, due, now)
            .await
    }

    /// Serialises the `no_action` groups of concurrent intake transactions (replicas on
    /// PostgreSQL) until this transaction ends: without it two replicas can both open a group
    /// for one channel and reason (two messages), or both read one group and each write it back
    /// with only their own alert (one lost). One transaction-scoped advisory lock for all
    /// groups, taken at the start of the intake transaction before any row lock, so it can
    /// take part in no lock cycle. SQLite's write transaction already serialises everything.
    pub async fn lock_no_action_groups(&mut self) -> Result<()> {
        if self.backend == Backend::Postgres {
            // An arbitrary key of aiops's own; advisory locks are per database.
            sqlx::query(
                "SELECT count(*) FROM (SELECT pg_advisory_xact_lock(6990001116843713838)) AS l",
            )
            .execute(&mut *self.tx)
            .await?;
        }
        Ok(())
    }

    /// Locks a job's firing row (`alert_events` by id) until the transaction ends. A repair's
    /// ending transaction takes it first, before its knowledge-base rollups, because the
    /// resolve of the same occurrence takes the firing row first too (its `resolved_at`) and
    /// then the rollups (`record_ttr`): one order on both sides, so PostgreSQL cannot deadlock
    /// them. On SQLite the write transaction already serialises everything.
    pub async fn lock_alert_event(&mut self, id: i64) -> Result<()> {
        sqlx::query("UPDATE alert_events SET fingerprint = fingerprint WHERE id = $1")
            .bind(id)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    /// The repairs of one alert occurrence (its firing row: `fingerprint`, `starts_at`), dry
    /// runs left out, oldest first — what an `alert_recovered` message reports.
    ///
    /// The occurrence's firing row is locked first (an idempotent UPDATE, a row lock on
    /// PostgreSQL): the transaction recording the resolve and the one ending a repair of the
    /// same occurrence then run one after the other, so exactly one of them sees both the
    /// resolve and the repair's end, and the message is sent once.
    pub async fn occurrence_jobs(
        &mut self,
        fingerprint: &str,
        starts_at: i64,
    ) -> Result<Vec<OccurrenceJob>> {
        sqlx::query(
            "UPDATE alert_events SET fingerprint = fingerprint \
             WHERE fingerprint = $1 AND status = 'firing' AND starts_at = $2",
        )
        .bind(fingerprint)
        .bind(starts_at)
        .execute(&mut *self.tx)
        .await?;
        let rows = sqlx::query(
            "SELECT j.id, j.playbook, j.spec, j.state, j.target_key, j.started_at, j.finished_at, j.outcome, j.error \
             FROM jobs j JOIN alert_events a ON a.id = j.alert_event_id \
             WHERE a.fingerprint = $1 AND a.status = 'firing' AND a.starts_at = $2 AND j.dry_run = 0 \
             ORDER BY j.id",
        )
        .bind(fingerprint)
        .bind(starts_at)
        .fetch_all(&mut *self.tx)
        .await?;
        rows.iter()
            .map(|r| {
                let state: String = r.try_get("state")?;
                Ok(OccurrenceJob {
                    id: r.try_get("id")?,
                    playbook: r.try_get("playbook")?,
                    state: JobState::parse(&state).ok_or(Error::Corrupt {
                        column: "state",
                        message: format!("unknown state {state:?}"),
                    })?,
                    target_key: r.try_get("target_key")?,
                    started_at: r.try_get("started_at")?,
                    finished_at: r.try_get("finished_at")?,
                    outcome: r.try_get("outcome")?,
                    error: r.try_get("error")?,
                    routes: super::jobs::spec_col(r)?.routes(),
                })
            })
            .collect()
    }

    /// When the occurrence ended, if its resolve is recorded: the resolve's `endsAt`, else
    /// when it was received.
    pub async fn occurrence_end(
        &mut self,
        fingerprint: &str,
        starts_at: i64,
    ) -> Result<Option<i64>> {
        let row = sqlx::query(
            "SELECT COALESCE(ends_at, received_at) AS ended FROM alert_events \
             WHERE fingerprint = $1 AND status = 'resolved' AND starts_at = $2 LIMIT 1",
        )
        .bind(fingerprint)
        .bind(starts_at)
        .fetch_optional(&mut *self.tx)
        .await?;
        Ok(row.map(|r| r.try_get::<i64, _>("ended")).transpose()?)
    }
}

/// One repair of an alert occurrence, as an `alert_recovered` message tells it.
#[derive(Clone, Debug)]
pub struct OccurrenceJob {
    /// Job id.
    pub id: i64,
    /// The playbook.
    pub playbook: String,
    /// Its state now.
    pub state: JobState,
    /// `namespace/Kind/name`.
    pub target_key: String,
    /// When it started running; `None` if it never ran (cancelled while queued).
    pub started_at: Option<i64>,
    /// When it ended.
    pub finished_at: Option<i64>,
    /// Its outcome message.
    pub outcome: Option<String>,
    /// Its error message.
    pub error: Option<String>,
    /// The routes and channels its rule's chain names (`notify:` steps): told of the recovery
    /// as they were told of the repair.
    pub routes: Vec<String>,
}

impl Store {
    /// Claims up to `limit` due notifications for `owner` until `lease_until`: pending rows
    /// whose time has come, and `sending` rows whose claimant's lease expired (it died
    /// mid-send; the channel may have the message already, which is what retry keys are for).
    ///
    /// Only rows of `channels` (the ones this process can send to) are claimed: during a rolling
    /// update a replica that does not know a new channel leaves its rows to one that does.
    pub async fn claim_notifications(
        &self,
        owner: &str,
        now: i64,
        lease_until: i64,
        limit: i64,
        channels: &[String],
    ) -> Result<Vec<Notification>> {
        if channels.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.begin_write().await?;
        let lock = match self.backend {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let placeholders: Vec<String> = (3..3 + channels.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT id FROM notifications WHERE ((state = 'pending' AND next_attempt_at <= $1) \
             OR (state = 'sending' AND lease_until < $1)) AND channel IN ({}) \
             ORDER BY next_attempt_at, id LIMIT $2{lock}",
            placeholders.join(", ")
        );
        let mut q = sqlx::query(AssertSqlSafe(sql)).bind(now).bind(limit);
        for c in channels {
            q = q.bind(c.clone());
        }
        let ids = q.fetch_all(&mut *tx.tx).await?;
        let mut out = Vec::with_capacity(ids.len());
        for r in ids {
            let id: i64 = r.try_get("id")?;
            let row = sqlx::query(AssertSqlSafe(format!(
                "UPDATE notifications SET state = 'sending', owner = $1, lease_until = $2 \
                 WHERE id = $3 AND (state = 'pending' OR (state = 'sending' AND lease_until < $4)) \
                 RETURNING {COLUMNS}"
            )))
            .bind(owner)
            .bind(lease_until)
            .bind(id)
            .bind(now)
            .fetch_optional(&mut *tx.tx)
            .await?;
            if let Some(row) = row {
                out.push(from_row(&row)?);
            }
        }
        tx.commit().await?;
        Ok(out)
    }

    /// Records one attempt and moves the row on, if `owner` still holds it. Returns whether
    /// the row was still ours (a lost lease means another replica took it over).
    #[allow(clippy::too_many_arguments)]
    pub async fn finish_attempt(
        &self,
        id: i64,
        owner: &str,
        now: i64,
        end: AttemptEnd,
        http_status: Option<u16>,
        retry_after_ms: Option<i64>,
        detail: &str,
    ) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let (state, next, result) = match end {
            AttemptEnd::Sent => (NotificationState::Sent, None, "sent"),
            AttemptEnd::Retry(at) => (NotificationState::Pending, Some(at), "retry"),
            AttemptEnd::Failed => (NotificationState::Failed, None, "failed"),
        };
        let error = match end {
            AttemptEnd::Sent => None,
            _ => Some(detail),
        };
        let moved = sqlx::query(
            "UPDATE notifications SET state = $1, attempts = attempts + 1, \
             next_attempt_at = COALESCE($2, next_attempt_at), owner = NULL, lease_until = NULL, \
             last_error = COALESCE($3, last_error), sent_at = CASE WHEN $1 = 'sent' THEN $4 ELSE sent_at END \
             WHERE id = $5 AND state = 'sending' AND owner = $6",
        )
        .bind(state.as_str())
        .bind(next)
        .bind(error)
        .bind(now)
        .bind(id)
        .bind(owner)
        .execute(&mut *tx.tx)
        .await?
        .rows_affected()
            == 1;
        sqlx::query(
            "INSERT INTO notification_attempts (notification_id, at, result, http_status, retry_after_ms, detail) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(id)
        .bind(now)
        .bind(if moved { result } else { "lease_lost" })
        .bind(http_status.map(i64::from))
        .bind(retry_after_ms)
        .bind(detail)
        .execute(&mut *tx.tx)
        .await?;
        tx.commit().await?;
        Ok(moved)
    }

    /// Extends a claimed row's lease just before a send: rows later in a batch would otherwise
    /// reach the end of the lease taken at claim time while earlier ones were being sent, and
    /// another dispatcher could send them too. Returns false when the row is no longer ours.
    pub async fn renew_notification_lease(
        &self,
        id: i64,
        owner: &str,
        now: i64,
        lease_until: i64,
    ) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let r = sqlx::query(
            "UPDATE notifications SET lease_until = $1 WHERE id = $2 AND owner = $3 \
             AND state = 'sending' AND lease_until >= $4",
        )
        .bind(lease_until)
        .bind(id)
        .bind(owner)
        .bind(now)
        .execute(&mut *tx.tx)
        .await?;
        tx.commit().await?;
        Ok(r.rows_affected() == 1)
    }

    /// Puts a claimed row back for later without counting an attempt (the channel's rate
    /// limit said wait).
    pub async fn defer_notification(&self, id: i64, owner: &str, at: i64) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let moved = sqlx::query(
            "UPDATE notifications SET state = 'pending', next_attempt_at = $1, owner = NULL, lease_until = NULL \
             WHERE id = $2 AND state = 'sending' AND owner = $3",
        )
        .bind(at)
        .bind(id)
        .bind(owner)
        .execute(&mut *tx.tx)
        .await?
        .rows_affected()
            == 1;
        tx.commit().await?;
        Ok(moved)
    }

    /// Every notification, oldest first (tests, the CLI, the HTTP API).
    pub async fn notifications(&self) -> Result<Vec<Notification>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM notifications ORDER BY id"
        )))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(from_row).collect()
    }

    /// The attempts of one notification, in order.
    pub async fn notification_attempts(&self, id: i64) -> Result<Vec<NotificationAttempt>> {
        let rows = sqlx::query(
            "SELECT at, result, http_status, retry_after_ms, detail FROM notification_attempts \
             WHERE notification_id = $1 ORDER BY id",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(NotificationAttempt {
                    at: r.try_get("at")?,
                    result: r.try_get("result")?,
                    http_status: r.try_get("http_status")?,
                    retry_after_ms: r.try_get("retry_after_ms")?,
                    detail: r.try_get("detail")?,
                })
            })
            .collect()
    }

    /// The earliest `next_attempt_at` of pending rows, so an idle dispatcher sleeps until then.
    pub async fn next_notification_due(&self) -> Result<Option<i64>> {
        let row = sqlx::query(
            "SELECT MIN(next_attempt_at) AS due FROM notifications WHERE state = 'pending'",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get("due")?)
    }
}
