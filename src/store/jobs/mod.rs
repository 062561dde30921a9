//! The persisted job state machine: jobs, their transitions, steps and escalations.
//!
//! Every state change is a conditional UPDATE (`WHERE state = from`) plus a `job_events` row in
//! the same transaction, so two workers or two replicas can never both move a job, and the
//! history of a repair can always be read back.
//!
//! This file holds the types and the writes inside a transaction (`WriteTx`); the queue
//! (claims, leases, the reaper) is in [`queue`], the reads in [`read`].

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Error, Result, WriteTx};
use crate::job::JobSpec;

/// Job states. Active ones hold the target (one active repair per target).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Waiting for an allow-listed person to approve or reject it (`mode: approve`); active:
    /// it holds the target. Left by `decide` (→ queued or cancelled), a resolve (→ cancelled)
    /// or its expiry (→ escalated).
    #[serde(rename = "awaiting_approval")]
    AwaitingApproval,
    /// Ready to run.
    Queued,
    /// Waiting for the rule's `wait` to pass; a resolve cancels it.
    Waiting,
    /// A worker is running the playbook.
    Running,
    /// The playbook finished; its effect is being checked.
    Verifying,
    /// Repaired and verified.
    Succeeded,
    /// The repair did not work (followed by escalation).
    Failed,
    /// Handed to the next step of the chain or to humans.
    Escalated,
    /// Resolved (or otherwise called off) before it ran.
    Cancelled,
    /// Its process died while it was running; escalated, never re-run automatically.
    Interrupted,
    /// The repair was applied, then set back by another field manager (Argo CD, Flux) during
    /// verification: not a success, never retried; escalated to humans with the change to
    /// make in Git, in the transaction that records it.
    Reverted,
}

impl JobState {
    /// Every state, for metric initialisation and docs.
    pub const ALL: [JobState; 11] = [
        JobState::AwaitingApproval,
        JobState::Queued,
        JobState::Waiting,
        JobState::Running,
        JobState::Verifying,
        JobState::Succeeded,
        JobState::Failed,
        JobState::Escalated,
        JobState::Cancelled,
        JobState::Interrupted,
        JobState::Reverted,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::AwaitingApproval => "awaiting_approval",
            JobState::Queued => "queued",
            JobState::Waiting => "waiting",
            JobState::Running => "running",
            JobState::Verifying => "verifying",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Escalated => "escalated",
            JobState::Cancelled => "cancelled",
            JobState::Interrupted => "interrupted",
            JobState::Reverted => "reverted",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<JobState> {
        JobState::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Whether the knowledge base counts a job in this state as a finished repair (it ran and
    /// came to a verdict; cancelled and interrupted jobs did not).
    pub fn counts_as_finished(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Failed | JobState::Escalated | JobState::Reverted
        )
    }

    /// Whether this state ends the job's life (finished_at is set on entry).
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobState::Succeeded
                | JobState::Escalated
                | JobState::Cancelled
                | JobState::Failed
                | JobState::Interrupted
                | JobState::Reverted
        )
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A job to create.
#[derive(Clone, Debug)]
pub struct NewJob {
    /// The alert occurrence that caused it.
    pub alert_event_id: i64,
    /// Alert fingerprint (a resolve cancels pending jobs of it).
    pub fingerprint: String,
    /// Alert name, for history queries.
    pub alertname: String,
    /// Rule name.
    pub rule: String,
    /// What to run, the chain and the verification, snapshotted from the rule at creation so a
    /// reload cannot change a running incident.
    pub spec: JobSpec,
    /// 0 for the rule's own playbook, i for its i-th escalation step.
    pub chain_index: i64,
    /// The job this one escalated from.
    pub parent_id: Option<i64>,
    /// Target namespace.
    pub target_namespace: String,
    /// Target kind.
    pub target_kind: String,
    /// Target name.
    pub target_name: String,
    /// Run without changing anything.
    pub dry_run: bool,
    /// Wall-clock limit for the playbook run.
    pub timeout_ms: Option<i64>,
    /// Not to run before this (epoch ms); in the future ⇒ `waiting`.
    pub not_before: i64,
}

impl NewJob {
    /// `namespace/Kind/name`.
    pub fn target_key(&self) -> String {
        format!(
            "{}/{}/{}",
            self.target_namespace, self.target_kind, self.target_name
        )
    }
}

/// A stored job.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Job {
    /// Id.
    pub id: i64,
    /// Cause.
    pub alert_event_id: i64,
    /// Alert fingerprint.
    pub fingerprint: String,
    /// Alert name.
    pub alertname: String,
    /// Rule name.
    pub rule: String,
    /// The playbook (`spec.playbook`, read from its own column; serialized once, by the spec).
    #[serde(skip_serializing)]
    pub playbook: String,
    /// What the job runs, its chain and verification (serialized flat: `playbook`, `params`,
    /// `escalate`, `verify`).
    #[serde(flatten)]
    pub spec: JobSpec,
    /// Position in the chain.
    pub chain_index: i64,
    /// Escalated from.
    pub parent_id: Option<i64>,
    /// Target namespace.
    pub target_namespace: String,
    /// Target kind.
    pub target_kind: String,
    /// Target name.
    pub target_name: String,
    /// `namespace/Kind/name`.
    pub target_key: String,
    /// Dry run.
    pub dry_run: bool,
    /// Wall-clock limit.
    pub timeout_ms: Option<i64>,
    /// State.
    pub state: JobState,
    /// Earliest run time.
    #[serde(serialize_with = "crate::store::rfc3339::ms")]
    pub not_before: i64,
    /// Created.
    #[serde(serialize_with = "crate::store::rfc3339::ms")]
    pub created_at: i64,
    /// Started running.
    #[serde(serialize_with = "crate::store::rfc3339::opt_ms")]
    pub started_at: Option<i64>,
    /// Reached a terminal state.
    #[serde(serialize_with = "crate::store::rfc3339::opt_ms")]
    pub finished_at: Option<i64>,
    /// Replica that claimed it.
    pub owner: Option<String>,
    /// Outcome message.
    pub outcome: Option<String>,
    /// Error message.
    pub error: Option<String>,
    /// Time to recover (alert start → resolved) of a successful repair, once resolved.
    pub ttr_ms: Option<i64>,
}

pub(super) const JOB_COLUMNS: &str = "id, alert_event_id, fingerprint, alertname, rule, playbook, spec, chain_index, \
    parent_id, target_namespace, target_kind, target_name, target_key, dry_run, timeout_ms, state, not_before, \
    created_at, started_at, finished_at, owner, outcome, error, ttr_ms";

pub(super) fn spec_col(row: &AnyRow) -> Result<JobSpec> {
    let text: String = row.try_get("spec")?;
    serde_json::from_str(&text).map_err(|e| Error::Corrupt {
        column: "spec",
        message: e.to_string(),
    })
}

pub(super) fn job_from_row(row: &AnyRow) -> Result<Job> {
    let state: String = row.try_get("state")?;
    let spec = spec_col(row)?;
    let playbook: String = row.try_get("playbook")?;
    if playbook != spec.playbook {
        // Both are written once, together, by `insert_job`; a difference is a damaged row.
        return Err(Error::Corrupt {
            column: "spec",
            message: format!(
                "names playbook {:?} but the row runs {playbook:?}",
                spec.playbook
            ),
        });
    }
    Ok(Job {
        id: row.try_get("id")?,
        alert_event_id: row.try_get("alert_event_id")?,
        fingerprint: row.try_get("fingerprint")?,
        alertname: row.try_get("alertname")?,
        rule: row.try_get("rule")?,
        playbook,
        spec,
        chain_index: row.try_get("chain_index")?,
        parent_id: row.try_get("parent_id")?,
        target_namespace: row.try_get("target_namespace")?,
        target_kind: row.try_get("target_kind")?,
        target_name: row.try_get("target_name")?,
        target_key: row.try_get("target_key")?,
        dry_run: row.try_get::<i64, _>("dry_run")? != 0,
        timeout_ms: row.try_get("timeout_ms")?,
        state: JobState::parse(&state).ok_or(Error::Corrupt {
            column: "state",
            message: format!("unknown state {state:?}"),
        })?,
        not_before: row.try_get("not_before")?,
        created_at: row.try_get("created_at")?,
        started_at: row.try_get("started_at")?,
        finished_at: row.try_get("finished_at")?,
        owner: row.try_get("owner")?,
        outcome: row.try_get("outcome")?,
        error: row.try_get("error")?,
        ttr_ms: row.try_get("ttr_ms")?,
    })
}

/// What a transition writes besides the state: the job's outcome or its error.
#[derive(Clone, Copy, Debug)]
pub enum Record<'a> {
    /// Only the state changes.
    Nothing,
    /// Sets the outcome message.
    Outcome(&'a str),
    /// Sets the error message.
    Error(&'a str),
}

/// An escalation to record.
#[derive(Clone, Copy, Debug)]
pub struct NewEscalation<'a> {
    /// Job escalated from (None for the storm brake).
    pub job_id: Option<i64>,
    /// Rule.
    pub rule: Option<&'a str>,
    /// Target key.
    pub target_key: Option<&'a str>,
    /// `playbook`, `notify` or `human`.
    pub kind: &'a str,
    /// Playbook name, route name, or `default`.
    pub destination: &'a str,
    /// Why.
    pub reason: &'a str,
}

impl<'a> NewEscalation<'a> {
    /// An escalation of `job`.
    pub fn for_job(job: &'a Job, kind: &'a str, destination: &'a str, reason: &'a str) -> Self {
        NewEscalation {
            job_id: Some(job.id),
            rule: Some(&job.rule),
            target_key: Some(&job.target_key),
            kind,
            destination,
            reason,
        }
    }
}

/// One recorded transition.
#[derive(Clone, Debug, serde::Serialize)]
pub struct JobEvent {
    /// Previous state (None at creation).
    pub from: Option<String>,
    /// New state.
    pub to: String,
    /// When.
    #[serde(serialize_with = "crate::store::rfc3339::ms")]
    pub at: i64,
    /// Why.
    pub note: String,
}

/// One action a playbook run took (or, in a dry run, would take).
#[derive(Clone, Debug, serde::Serialize)]
pub struct Step {
    /// When.
    #[serde(serialize_with = "crate::store::rfc3339::ms")]
    pub at: i64,
    /// Short action name.
    pub action: String,
    /// Details.
    pub detail: String,
}

/// A hand-off recorded for a job.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Escalation {
    /// Job escalated from (None for the storm brake).
    pub job_id: Option<i64>,
    /// `playbook`, `notify` or `human`.
    pub kind: String,
    /// Playbook name, route name, or `default`.
    pub destination: String,
    /// Why.
    pub reason: String,
    /// When.
    #[serde(serialize_with = "crate::store::rfc3339::ms")]
    pub created_at: i64,
}

impl WriteTx {
    /// Creates a job and its first event. Returns `None` when the target already has an active
    /// job: the store's unique index is what keeps two replicas from both acting.
    ///
    /// A job in `mode: approve` starts in `awaiting_approval`, expiring `approval.expires`
    /// from now (every step of a chain waits for its own approval).
    pub async fn insert_job(&mut self, job: &NewJob, now: i64) -> Result<Option<(i64, JobState)>> {
        let expires_at = approval_expires_at(&job.spec, now);
        let state = if expires_at.is_some() {
            JobState::AwaitingApproval
        } else if job.not_before > now {
            JobState::Waiting
        } else {
            JobState::Queued
        };
        let spec = serde_json::to_string(&job.spec).map_err(|e| Error::Corrupt {
            column: "spec",
            message: e.to_string(),
        })?;
        let row = sqlx::query(
            "INSERT INTO jobs (alert_event_id, fingerprint, alertname, rule, playbook, spec, chain_index, \
             parent_id, target_namespace, target_kind, target_name, target_key, dry_run, timeout_ms, state, \
             not_before, created_at, updated_at, approval_expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $17, $18) \
             ON CONFLICT DO NOTHING RETURNING id",
        )
        .bind(job.alert_event_id)
        .bind(&job.fingerprint)
        .bind(&job.alertname)
        .bind(&job.rule)
        .bind(&job.spec.playbook)
        .bind(spec)
        .bind(job.chain_index)
        .bind(job.parent_id)
        .bind(&job.target_namespace)
        .bind(&job.target_kind)
        .bind(&job.target_name)
        .bind(job.target_key())
        .bind(i64::from(job.dry_run))
        .bind(job.timeout_ms)
        .bind(state.as_str())
        .bind(job.not_before)
        .bind(now)
        .bind(expires_at)
        .fetch_optional(&mut *self.tx)
        .await?;
        let Some(row) = row else {
            // Someone else's job holds the target: what the guards remembered is out of date.
            self.memo.jobs_changed();
            return Ok(None);
        };
        let id: i64 = row.try_get("id")?;
        self.memo.job_inserted(&super::memo::JobFacts {
            id,
            rule: &job.rule,
            target_key: &job.target_key(),
            mode: job.spec.mode,
            chain_index: job.chain_index,
            created_at: now,
        });
        let mut note = match (job.parent_id, &job.spec.by_hand) {
            (Some(p), _) => format!("escalated from job {p}"),
            (None, Some(hand)) => {
                let mut note = format!("run by hand by {} (rule {})", hand.by, job.rule);
                if let Some(reason) = &hand.reason {
                    note.push_str(": ");
                    note.push_str(reason);
                }
                note
            }
            (None, None) => format!("rule {} matched", job.rule),
        };
        if state == JobState::AwaitingApproval {
            note.push_str("; waiting for approval");
        }
        self.insert_event(id, None, state, now, &note).await?;
        Ok(Some((id, state)))
    }

    async fn insert_event(
        &mut self,
        job_id: i64,
        from: Option<JobState>,
        to: JobState,
        at: i64,
        note: &str,
    ) -> Result<()> {
        sqlx::query("INSERT INTO job_events (job_id, from_state, to_state, at, note) VALUES ($1, $2, $3, $4, $5)")
            .bind(job_id)
            .bind(from.map(JobState::as_str))
            .bind(to.as_str())
            .bind(at)
            .bind(note)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    /// Moves a job `from` → `to` if it is still in `from`. Returns whether it moved.
    pub async fn transition(
        &mut self,
        job_id: i64,
        from: JobState,
        to: JobState,
        now: i64,
        note: &str,
        record: Record<'_>,
    ) -> Result<bool> {
        if !self
            .transition_not_counted(job_id, (from, to), now, note, record)
            .await?
        {
            return Ok(false);
        }
        // A job that never ran (its approval expired) is no repair result for the rollups.
        if to.counts_as_finished()
            && !from.counts_as_finished()
            && from != JobState::AwaitingApproval
        {
            self.rollup_finished(job_id, to).await?;
        }
        Ok(true)
    }

    /// [`transition`](Self::transition) without the knowledge base's rollups: for a run that
    /// never made its change (the target's GitOps owner keeps it in Git: `gitops: skip`), which
    /// is neither a success nor a failure of the playbook.
    pub async fn transition_not_counted(
        &mut self,
        job_id: i64,
        (from, to): (JobState, JobState),
        now: i64,
        note: &str,
        record: Record<'_>,
    ) -> Result<bool> {
        let (outcome, error) = match record {
            Record::Nothing => (None, None),
            Record::Outcome(o) => (Some(o), None),
            Record::Error(e) => (None, Some(e)),
        };
        let finished = to.is_terminal().then_some(now);
        // A job that changes state changes what the guards read about its target.
        self.memo.jobs_changed();
        let r = sqlx::query(
            "UPDATE jobs SET state = $1, updated_at = $2, finished_at = COALESCE($3, finished_at), \
             outcome = COALESCE($4, outcome), error = COALESCE($5, error) WHERE id = $6 AND state = $7",
        )
        .bind(to.as_str())
        .bind(now)
        .bind(finished)
        .bind(outcome)
        .bind(error)
        .bind(job_id)
        .bind(from.as_str())
        .execute(&mut *self.tx)
        .await?;
        if r.rows_affected() == 0 {
            return Ok(false);
        }
        self.insert_event(job_id, Some(from), to, now, note).await?;
        Ok(true)
    }

    /// A resolve closes the loop for the successful repairs of that occurrence: their time to
    /// recover is the resolved occurrence's end minus its start. The occurrence is the firing
    /// row with the same fingerprint and `starts_at` (a resolve keeps the firing `startsAt`):
    /// a fingerprint that fired several times has jobs for each firing, and a resolve closes
    /// only its own, never an earlier one whose resolve was lost or a later one still open.
    pub async fn record_ttr(
        &mut self,
        fingerprint: &str,
        starts_at: i64,
        ttr_ms: i64,
    ) -> Result<u64> {
        let ids: Vec<i64> = sqlx::query(
            "SELECT j.id FROM jobs j JOIN alert_events a ON a.id = j.alert_event_id \
             WHERE j.fingerprint = $1 AND j.state = 'succeeded' AND j.ttr_ms IS NULL \
             AND a.status = 'firing' AND a.starts_at = $2",
        )
        .bind(fingerprint)
        .bind(starts_at)
        .fetch_all(&mut *self.tx)
        .await?
        .iter()
        .map(|r| r.try_get("id"))
        .collect::<Result<_, _>>()?;
        let mut n = 0;
        for &id in &ids {
            // Conditional again: a concurrent transaction (another replica recording the same
            // job's time to recover) must not count it twice in the rollups.
            let r = sqlx::query("UPDATE jobs SET ttr_ms = $1 WHERE id = $2 AND ttr_ms IS NULL")
                .bind(ttr_ms)
                .bind(id)
                .execute(&mut *self.tx)
                .await?;
            if r.rows_affected() == 1 {
                self.rollup_ttr(id).await?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Cancels the queued, waiting and awaiting-approval jobs of an alert that resolved (a
    /// repair nobody approved yet is called off too). Returns their ids.
    pub async fn cancel_pending_for_fingerprint(
        &mut self,
        fingerprint: &str,
        now: i64,
    ) -> Result<Vec<i64>> {
        let rows = sqlx::query(
            "SELECT id, state FROM jobs WHERE fingerprint = $1 \
             AND state IN ('awaiting_approval', 'queued', 'waiting')",
        )
        .bind(fingerprint)
        .fetch_all(&mut *self.tx)
        .await?;
        let mut ids = Vec::with_capacity(rows.len());
        for r in &rows {
            let id: i64 = r.try_get("id")?;
            let from =
                JobState::parse(&r.try_get::<String, _>("state")?).unwrap_or(JobState::Queued);
            let note = "alert resolved before the repair ran";
            if self
                .transition(
                    id,
                    from,
                    JobState::Cancelled,
                    now,
                    note,
                    Record::Outcome("alert resolved"),
                )
                .await?
            {
                ids.push(id);
            }
        }
        Ok(ids)
    }

    /// Records an escalation.
    pub async fn insert_escalation(&mut self, e: &NewEscalation<'_>, now: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO escalations (job_id, rule, target_key, kind, destination, reason, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(e.job_id)
        .bind(e.rule)
        .bind(e.target_key)
        .bind(e.kind)
        .bind(e.destination)
        .bind(e.reason)
        .bind(now)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    /// Records a step of a job.
    pub async fn insert_step(
        &mut self,
        job_id: i64,
        action: &str,
        detail: &str,
        now: i64,
    ) -> Result<()> {
        sqlx::query("INSERT INTO job_steps (job_id, at, action, detail) VALUES ($1, $2, $3, $4)")
            .bind(job_id)
            .bind(now)
            .bind(action)
            .bind(detail)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }
}

/// When an approve-mode job's wait ends: `None` for jobs in other modes.
fn approval_expires_at(spec: &JobSpec, now: i64) -> Option<i64> {
    match (spec.mode, &spec.approval) {
        (crate::rules::Mode::Approve, Some(policy)) => {
            Some(now.saturating_add(super::ms(policy.expires)))
        }
        // A spec in approve mode always carries its policy (`JobSpec::for_rule_in`); one
        // without (hand-built) waits for the default expiry rather than running unapproved.
        (crate::rules::Mode::Approve, None) => {
            Some(now.saturating_add(super::ms(crate::rules::DEFAULT_APPROVAL_EXPIRY)))
        }
        _ => None,
    }
}

mod queue;
mod read;
