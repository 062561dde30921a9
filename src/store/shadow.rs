//! The reads of shadow mode's evidence: each shadow rule's first jobs with the resolve of the
//! alert occurrence that caused them, and the dry-run steps they recorded.
//!
//! What the rows mean (would act, resolved on its own within the window, the median) is decided
//! in `crate::kb::shadow`; here are only the typed reads. "Did it resolve on its own" needs no
//! worker and no extra write: it is the firing row's `resolved_at` (migration 0009), read when
//! the evidence is asked for.

use sqlx::{AssertSqlSafe, Row};

use super::jobs::spec_col;
use super::listing::Where;
use super::{JobState, Result, Store, WriteTx};
use crate::rules::Mode;

/// The filter of an evidence read.
#[derive(Clone, Copy, Debug, Default)]
pub struct ShadowFilter<'a> {
    /// Jobs created at or after this time (epoch ms).
    pub since: i64,
    /// Only this rule.
    pub rule: Option<&'a str>,
    /// Only jobs on targets in these namespaces (a token's apps); `None`: all.
    pub namespaces: Option<&'a [String]>,
}

impl ShadowFilter<'_> {
    /// The WHERE over `jobs j` selecting the first jobs of shadow chains. A repair run by hand
    /// in shadow mode is a person's question, not what the rule did on an alert: it is no
    /// evidence for the rule (`jobs.requested_by`, migration 0017).
    fn clauses(&self) -> Where {
        let mut w = Where::new();
        w.eq("j.created_at", ">=", self.since);
        w.clause("j.requested_by IS NULL".into());
        if let Some(rule) = self.rule {
            w.eq("j.rule", "=", rule.to_string());
        }
        if let Some(ns) = self.namespaces {
            w.any_of("j.target_namespace", ns);
        }
        w
    }
}

/// One decision of a shadow rule to act: the first job of its chain and what became of the
/// alert occurrence it answered.
#[derive(Clone, Debug, PartialEq)]
pub struct ShadowJob {
    /// Job id.
    pub id: i64,
    /// Rule name.
    pub rule: String,
    /// Job state.
    pub state: JobState,
    /// When the rule decided to act (the job's creation, epoch ms).
    pub decided_at: i64,
    /// When the occurrence resolved (its firing row's `resolved_at`), if it has.
    pub resolved_at: Option<i64>,
    /// The rule's `verify.resolved_within` when the job was created, in ms.
    pub resolved_within_ms: Option<i64>,
}

/// One distinct dry-run step of a rule's shadow jobs, with how often it was recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShadowStep {
    /// Rule name.
    pub rule: String,
    /// The step's action (`restart`, `set_memory`, …).
    pub action: String,
    /// What it would have done (`dry run: would …`).
    pub detail: String,
    /// How many times, over all the rule's shadow jobs in the window.
    pub count: i64,
}

impl Store {
    /// The first jobs of shadow chains matching `f`, oldest first.
    pub async fn shadow_jobs(&self, f: &ShadowFilter<'_>) -> Result<Vec<ShadowJob>> {
        let w = f.clauses();
        let sql = format!(
            "SELECT j.id, j.rule, j.state, j.created_at, j.spec, a.resolved_at \
             FROM jobs j JOIN alert_events a ON a.id = j.alert_event_id{} \
             AND j.mode = 'shadow' AND j.chain_index = 0 ORDER BY j.created_at, j.id",
            w.sql()
        );
        let rows = sqlx::query_with(AssertSqlSafe(sql), w.args)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| -> Result<ShadowJob> {
                let state: String = r.try_get("state")?;
                let spec = spec_col(r)?;
                Ok(ShadowJob {
                    id: r.try_get("id")?,
                    rule: r.try_get("rule")?,
                    state: JobState::parse(&state).ok_or(super::Error::Corrupt {
                        column: "state",
                        message: format!("unknown state {state:?}"),
                    })?,
                    decided_at: r.try_get("created_at")?,
                    resolved_at: r.try_get("resolved_at")?,
                    resolved_within_ms: spec.verify.resolved_within.map(super::ms),
                })
            })
            .collect()
    }

    /// The steps the shadow jobs matching `f` (every step of their chains) recorded, grouped by
    /// rule, action and text, most frequent first. The executor's own bookkeeping step
    /// (`verify`: a dry run has nothing to verify) is left out: it is no action.
    pub async fn shadow_steps(&self, f: &ShadowFilter<'_>) -> Result<Vec<ShadowStep>> {
        let w = f.clauses();
        let sql = format!(
            "SELECT j.rule, s.action, s.detail, COUNT(*) AS n \
             FROM job_steps s JOIN jobs j ON j.id = s.job_id{} \
             AND j.mode = 'shadow' AND s.action <> 'verify' \
             GROUP BY j.rule, s.action, s.detail ORDER BY j.rule, n DESC, s.action, s.detail",
            w.sql()
        );
        let rows = sqlx::query_with(AssertSqlSafe(sql), w.args)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| -> Result<ShadowStep> {
                Ok(ShadowStep {
                    rule: r.try_get("rule")?,
                    action: r.try_get("action")?,
                    detail: r.try_get("detail")?,
                    count: r.try_get("n")?,
                })
            })
            .collect()
    }
}

impl WriteTx {
    /// The trust mode of each job in `ids`, in the same order (a missing job reads `auto`).
    pub async fn job_modes(&mut self, ids: &[i64]) -> Result<Vec<Mode>> {
        let mut modes = Vec::with_capacity(ids.len());
        for id in ids {
            let row = sqlx::query("SELECT mode FROM jobs WHERE id = $1")
                .bind(*id)
                .fetch_optional(&mut *self.tx)
                .await?;
            let mode = match row {
                Some(r) => r.try_get::<String, _>("mode")?.parse().unwrap_or_default(),
                None => Mode::Auto,
            };
            modes.push(mode);
        }
        Ok(modes)
    }
}
