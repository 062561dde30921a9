//! The knowledge base's data: its own tables (the per-day rollups, notes) and the reads
//! `crate::kb` decides from (rollup sums, time-to-recover samples, past incidents).
//!
//! The rollup is written in the same transaction as the job change it counts
//! ([`WriteTx::transition`] and the time-to-recover updates), so it can never disagree with the
//! jobs it summarises, also with two replicas writing. What the numbers mean (rates, means,
//! percentile ranks, the wording of a hint) is decided in `crate::kb`, not here.

use sqlx::any::AnyRow;
use sqlx::{Arguments, AssertSqlSafe, Row};

use super::jobs::{JOB_COLUMNS, job_from_row};
use super::listing::Where;
use super::{Job, JobState, Result, Store, WriteTx};

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
    /// When (epoch ms; RFC 3339 when serialized).
    #[serde(serialize_with = "super::rfc3339::ms")]
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

impl WriteTx {
    /// Counts a job that just finished (succeeded, failed, escalated or reverted) in the
    /// rollups: a run, and a success or a revert by the state it moved `to`.
    pub(super) async fn rollup_finished(&mut self, job_id: i64, to: JobState) -> Result<()> {
        for sql in [
            "INSERT INTO kb_daily (namespace, day, alertname, playbook, runs, succeeded, reverted, ttr_count, ttr_sum_ms) \
             SELECT target_namespace, created_at / 86400000, alertname, playbook, 1, $2, $3, 0, 0 \
             FROM jobs WHERE id = $1 AND dry_run = 0 \
             ON CONFLICT (namespace, day, alertname, playbook) DO UPDATE SET \
             runs = kb_daily.runs + 1, succeeded = kb_daily.succeeded + excluded.succeeded, \
             reverted = kb_daily.reverted + excluded.reverted",
            "INSERT INTO kb_daily_all (day, alertname, playbook, runs, succeeded, reverted, ttr_count, ttr_sum_ms) \
             SELECT created_at / 86400000, alertname, playbook, 1, $2, $3, 0, 0 \
             FROM jobs WHERE id = $1 AND dry_run = 0 \
             ON CONFLICT (day, alertname, playbook) DO UPDATE SET \
             runs = kb_daily_all.runs + 1, succeeded = kb_daily_all.succeeded + excluded.succeeded, \
             reverted = kb_daily_all.reverted + excluded.reverted",
            "INSERT INTO kb_target_daily (day, namespace, target_key, runs, succeeded, reverted) \
             SELECT created_at / 86400000, target_namespace, target_key, 1, $2, $3 \
             FROM jobs WHERE id = $1 AND dry_run = 0 \
             ON CONFLICT (day, namespace, target_key) DO UPDATE SET \
             runs = kb_target_daily.runs + 1, succeeded = kb_target_daily.succeeded + excluded.succeeded, \
             reverted = kb_target_daily.reverted + excluded.reverted",
            "INSERT INTO kb_target_period (period, namespace, target_key, runs, succeeded, reverted) \
             SELECT created_at / 86400000 / 30, target_namespace, target_key, 1, $2, $3 \
             FROM jobs WHERE id = $1 AND dry_run = 0 \
             ON CONFLICT (period, namespace, target_key) DO UPDATE SET \
             runs = kb_target_period.runs + 1, succeeded = kb_target_period.succeeded + excluded.succeeded, \
             reverted = kb_target_period.reverted + excluded.reverted",
        ] {
            sqlx::query(sql)
                .bind(job_id)
                .bind(i64::from(to == JobState::Succeeded))
                .bind(i64::from(to == JobState::Reverted))
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
}

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
}

/// One (alertname, playbook) group of the daily rollup, summed over a window.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct RollupSum {
    /// Alert name.
    pub alertname: String,
    /// Playbook.
    pub playbook: String,
    /// Finished repairs (never 0: empty groups are left out).
    pub runs: i64,
    /// Of which succeeded.
    pub succeeded: i64,
    /// Of which were set back by another field manager (never in `succeeded`).
    pub reverted: i64,
    /// Repairs whose alert resolved (their time to recover is known).
    pub ttr_count: i64,
    /// Sum of those times to recover, milliseconds.
    pub ttr_sum_ms: i64,
}

/// One target's repairs, summed over a window.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct TargetRollup {
    /// `namespace/Kind/name`.
    pub target: String,
    /// Finished repairs (never 0).
    pub runs: i64,
    /// Of which succeeded.
    pub succeeded: i64,
    /// Of which were set back by another field manager (never in `succeeded`).
    pub reverted: i64,
}

/// The repairs a time-to-recover sample is drawn from: the newest `size` successful, resolved,
/// real repairs of one (alertname, playbook) created since a UTC day.
#[derive(Clone, Copy, Debug)]
pub struct TtrSample<'a> {
    /// Alert name.
    pub alertname: &'a str,
    /// Playbook.
    pub playbook: &'a str,
    /// First UTC day (days since the epoch) of the window.
    pub since_day: i64,
    /// Only these apps (None = every app).
    pub namespaces: Option<&'a [String]>,
    /// At most this many of the newest repairs.
    pub size: i64,
}

/// The newest successful, resolved, real repair of an alert in an app.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct LastFix {
    /// The job.
    pub job_id: i64,
    /// Its playbook.
    pub playbook: String,
    /// Its time to recover, milliseconds.
    pub ttr_ms: i64,
}

/// The rollups hold whole days, and `kb_target_period` whole 30-day periods.
const PERIOD_DAYS: i64 = 30;

impl TtrSample<'_> {
    /// `SELECT ttr_ms …` of the sample, with its binds.
    fn query(&self) -> (String, sqlx::any::AnyArguments) {
        let mut w = Where::new();
        w.eq("created_at", ">=", self.since_day * DAY_MS);
        w.eq("alertname", "=", self.alertname.to_string());
        w.eq("playbook", "=", self.playbook.to_string());
        if let Some(ns) = self.namespaces {
            w.any_of("target_namespace", ns);
        }
        let sql = format!(
            "SELECT ttr_ms FROM jobs{} AND state = 'succeeded' AND dry_run = 0 AND ttr_ms IS NOT NULL \
             ORDER BY created_at DESC LIMIT {}",
            w.sql(),
            self.size
        );
        (sql, w.args)
    }
}

impl Store {
    /// The daily rollup per (alertname, playbook) summed from UTC day `since_day` on, optionally
    /// only in `namespaces`; groups without runs are left out. Cost: days × rules, whatever
    /// the number of repairs.
    pub async fn kb_rollup_sums(
        &self,
        since_day: i64,
        namespaces: Option<&[String]>,
    ) -> Result<Vec<RollupSum>> {
        let mut w = Where::new();
        w.eq("day", ">=", since_day);
        // Every app reads the table summed over apps; one app's the per-app table.
        let table = match namespaces {
            None => "kb_daily_all",
            Some(ns) => {
                w.any_of("namespace", ns);
                "kb_daily"
            }
        };
        let sql = format!(
            "SELECT alertname, playbook, CAST(SUM(runs) AS BIGINT) AS runs, \
             CAST(SUM(succeeded) AS BIGINT) AS succeeded, CAST(SUM(reverted) AS BIGINT) AS reverted, \
             CAST(SUM(ttr_count) AS BIGINT) AS ttr_count, \
             CAST(SUM(ttr_sum_ms) AS BIGINT) AS ttr_sum_ms \
             FROM {table}{} GROUP BY alertname, playbook HAVING SUM(runs) > 0 \
             ORDER BY alertname, playbook",
            w.sql()
        );
        Ok(sqlx::query_as_with(AssertSqlSafe(sql), w.args)
            .fetch_all(&self.pool)
            .await?)
    }

    /// How many repairs the sample holds (at most its size).
    pub async fn kb_ttr_sample_len(&self, sample: &TtrSample<'_>) -> Result<i64> {
        let (sql, args) = sample.query();
        let row = sqlx::query_with(
            AssertSqlSafe(format!("SELECT COUNT(*) AS n FROM ({sql}) AS s")),
            args,
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get("n")?)
    }

    /// The time to recover (ms) at 0-based position `offset` of the sample sorted ascending.
    /// The database sorts (at most the sample's size of integers, over a covering index) so
    /// that only one row crosses to the daemon.
    pub async fn kb_ttr_at(&self, sample: &TtrSample<'_>, offset: i64) -> Result<Option<i64>> {
        let (sql, args) = sample.query();
        let offset = offset.max(0);
        let row = sqlx::query_with(
            AssertSqlSafe(format!(
                "SELECT ttr_ms FROM ({sql}) AS s ORDER BY ttr_ms LIMIT 1 OFFSET {offset}"
            )),
            args,
        )
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| r.try_get("ttr_ms"))
            .transpose()
            .map_err(Into::into)
    }

    /// Repairs per target created from UTC day `since_day` on, optionally only in `namespaces`;
    /// targets without runs are left out. Whole 30-day periods come from the period table, the
    /// days before the first one from the daily table.
    pub async fn kb_target_rollups(
        &self,
        since_day: i64,
        namespaces: Option<&[String]>,
    ) -> Result<Vec<TargetRollup>> {
        let first_period =
            since_day.div_euclid(PERIOD_DAYS) + i64::from(since_day.rem_euclid(PERIOD_DAYS) != 0);
        let mut w = Where::new();
        w.eq("period", ">=", first_period);
        if let Some(ns) = namespaces {
            w.any_of("namespace", ns);
        }
        let periods = w.take_sql();
        w.eq("day", ">=", since_day);
        w.eq("day", "<", first_period * PERIOD_DAYS);
        if let Some(ns) = namespaces {
            w.any_of("namespace", ns);
        }
        let days = w.take_sql();
        let sql = format!(
            "SELECT target_key AS target, CAST(SUM(runs) AS BIGINT) AS runs, \
             CAST(SUM(succeeded) AS BIGINT) AS succeeded, CAST(SUM(reverted) AS BIGINT) AS reverted FROM ( \
               SELECT target_key, runs, succeeded, reverted FROM kb_target_period{periods} \
               UNION ALL \
               SELECT target_key, runs, succeeded, reverted FROM kb_target_daily{days} \
             ) AS t GROUP BY target_key HAVING SUM(runs) > 0 ORDER BY target_key"
        );
        Ok(sqlx::query_as_with(AssertSqlSafe(sql), w.args)
            .fetch_all(&self.pool)
            .await?)
    }

    /// The newest successful, resolved, real repair of `alertname` in `namespace`.
    pub async fn kb_last_fix(&self, alertname: &str, namespace: &str) -> Result<Option<LastFix>> {
        Ok(sqlx::query_as(
            "SELECT id AS job_id, playbook, ttr_ms FROM jobs WHERE alertname = $1 AND target_namespace = $2 \
             AND state = 'succeeded' AND dry_run = 0 AND ttr_ms IS NOT NULL ORDER BY created_at DESC, id DESC LIMIT 1",
        )
        .bind(alertname)
        .bind(namespace)
        .fetch_optional(&self.pool)
        .await?)
    }
}
