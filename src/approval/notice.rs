//! Approve mode's messages and its expiry.
//!
//! - [`request`]: `approval_requested`, enqueued in the transaction that creates the waiting
//!   job (the intake's, or the one that fails the previous step of a chain), routed by the
//!   alert's labels like `repair_started`;
//! - `decided`: `approval_decided` to the same routes, naming who decided;
//! - [`expire_due`]: the sweep (with the lease reaper, on every replica) that moves awaiting
//!   jobs past their expiry to `escalated`, with a human escalation row and the escalation
//!   message in the same transaction. The conditional UPDATE makes it idempotent: a replica
//!   that loses the race moves nothing and tells nobody.

use super::{Choice, Decider, Result};
use crate::notify::{ApprovalPrompt, Event, EventKind, Outbox};
use crate::store::{self, Job, JobState, NewEscalation, Record, Store, WriteTx};

/// The most expired approvals one sweep transaction handles (the next tick takes the rest).
const SWEEP_BATCH: i64 = 100;

/// The message fields of an event about `job`, from its alert occurrence.
async fn job_event(tx: &mut WriteTx, kind: EventKind, job: &Job) -> store::Result<Event> {
    let mut event = match tx.alert_event(job.alert_event_id).await? {
        Some(a) => Event::for_alert(kind, &a.labels, &a.annotations, &a.generator_url),
        None => Event {
            kind,
            alertname: job.alertname.clone(),
            problem: job.alertname.clone(),
            ..Event::default()
        },
    };
    if event.app.is_empty() {
        event.app = job.target_name.clone();
    }
    if event.namespace.is_empty() {
        event.namespace = job.target_namespace.clone();
    }
    event.target = job.target_key.clone();
    event.action = job.playbook.clone();
    event.job_id = Some(job.id);
    event.rule = job.rule.clone();
    Ok(event)
}

/// Enqueues `approval_requested` for a job just created in `tx` if it waits for approval.
/// Returns how many messages are pending (the caller wakes the dispatcher after its commit).
pub async fn request(
    tx: &mut WriteTx,
    outbox: Option<&Outbox>,
    job_id: i64,
    now: i64,
) -> store::Result<usize> {
    let Some(outbox) = outbox.filter(|o| o.is_configured()) else {
        return Ok(0);
    };
    let Some(t) = tx.approval_target(job_id).await? else {
        return Ok(0);
    };
    let (JobState::AwaitingApproval, Some(expires_at)) = (t.job.state, t.expires_at) else {
        return Ok(0);
    };
    let mut event = job_event(tx, EventKind::ApprovalRequested, &t.job).await?;
    let policy = t.job.spec.approval.clone().unwrap_or_default();
    event.approvers = policy.approvers.iter().map(ToString::to_string).collect();
    event.expires_in = humantime::format_duration(policy.expires).to_string();
    event.approval = Some(ApprovalPrompt {
        job_id,
        expires_at: super::rfc3339(expires_at),
        // Filled per channel by the outbox (email and webhook get signed links of their own).
        approve_url: String::new(),
        reject_url: String::new(),
    });
    outbox.enqueue(tx, &event, &[], now).await
}

/// Enqueues `approval_decided` (who approved or rejected) in the decision's transaction.
pub(super) async fn decided(
    tx: &mut WriteTx,
    outbox: Option<&Outbox>,
    job: &Job,
    choice: Choice,
    by: &Decider,
    now: i64,
) -> store::Result<usize> {
    let Some(outbox) = outbox.filter(|o| o.is_configured()) else {
        return Ok(0);
    };
    let mut event = job_event(tx, EventKind::ApprovalDecided, job).await?;
    event.result = match choice {
        Choice::Approve => "approved",
        Choice::Reject => "rejected",
    }
    .into();
    event.decided_by = format!("{} ({}) via {}", by.name, by.who, by.via);
    outbox.enqueue(tx, &event, &[], now).await
}

/// Moves one awaiting job past its expiry to `escalated` inside `tx`: a human escalation row
/// and the escalation message to the job's routes. Returns how many messages are pending
/// (0 also when another transaction moved the job first: then nothing is written).
pub(super) async fn expire(
    tx: &mut WriteTx,
    outbox: Option<&Outbox>,
    job: &Job,
    now: i64,
) -> store::Result<usize> {
    let waited = job
        .spec
        .approval
        .as_ref()
        .map_or(crate::rules::DEFAULT_APPROVAL_EXPIRY, |p| p.expires);
    let reason = format!(
        "approval expired after {}; nobody approved {} on {}",
        humantime::format_duration(waited),
        job.playbook,
        job.target_key
    );
    if !tx
        .transition(
            job.id,
            JobState::AwaitingApproval,
            JobState::Escalated,
            now,
            &reason,
            Record::Error("approval expired"),
        )
        .await?
    {
        return Ok(0);
    }
    tx.insert_escalation(
        &NewEscalation::for_job(job, "human", "default", &reason),
        now,
    )
    .await?;
    let Some(outbox) = outbox.filter(|o| o.is_configured()) else {
        return Ok(0);
    };
    let mut event = job_event(tx, EventKind::Escalation, job).await?;
    event.reason = reason.clone();
    event.result = reason;
    outbox.enqueue(tx, &event, &job.spec.routes(), now).await
}

/// The expiry sweep: every awaiting job whose approval expired by `now` is escalated (see
/// [`expire`]). Safe on every replica at once. Returns the jobs this call moved.
pub async fn expire_due(store: &Store, outbox: Option<&Outbox>, now: i64) -> Result<Vec<Job>> {
    let mut tx = store.begin_write().await?;
    let due = tx.expired_approvals(now, SWEEP_BATCH).await?;
    let mut moved = Vec::with_capacity(due.len());
    let mut told = 0;
    for job in due {
        let before = tx.approval_target(job.id).await?.map(|t| t.job.state);
        if before != Some(JobState::AwaitingApproval) {
            continue;
        }
        told += expire(&mut tx, outbox, &job, now).await?;
        moved.push(Job {
            state: JobState::Escalated,
            ..job
        });
    }
    tx.commit().await?;
    if told > 0
        && let Some(o) = outbox
    {
        o.wake();
    }
    for job in &moved {
        tracing::warn!(job = job.id, rule = %job.rule, repair_target = %job.target_key, "approval expired; escalated to humans");
    }
    Ok(moved)
}
