//! Approve mode's core: a person's Approve or Reject on a repair waiting in
//! `awaiting_approval`, from whichever channel it came (chat buttons, a signed link, the API).
//!
//! [`decide`] is the only code that moves a job out of `awaiting_approval` on a person's word.
//! In one store transaction it checks the allow-list snapshotted in the job's spec
//! (`spec.approval.approvers`), moves the job with a conditional UPDATE (`→ queued` approved,
//! `→ cancelled` rejected), records the click in `approvals` and in the `audit_log` (who,
//! platform, channel, when, outcome) and enqueues the follow-up message. Every refusal (not
//! allowed, expired, already decided, alert resolved, unknown job) is recorded the same way and
//! answered with a sentence in the notify language ([`Outcome::sentence`]). Two clicks, or two
//! replicas, act once: the job row is locked (PostgreSQL) or the writer lock held (SQLite) and
//! the UPDATE is conditional, so the second reads the first's decision.
//!
//! The files:
//! - [`link`]: the signed, single-use, expiring links of email and webhook messages;
//! - `notice`: the messages (`approval_requested` in the transaction that creates the waiting
//!   job, `approval_decided` after a decision) and the expiry sweep.

pub mod link;
mod notice;

use serde::{Deserialize, Serialize};

use crate::maintenance::Snapshot;
use crate::notify::Outbox;
use crate::notify::config::Language;
use crate::rules::Approver;
use crate::store::{self, AuditEntry, JobState, NewApproval, Record, Store, WriteTx};

pub use link::{LinkClaims, LinkError, Links};
pub use notice::{expire_due, request};

/// The shortest `approval_secret` accepted (HS256 wants a key as long as its hash, RFC 7518
/// §3.2).
pub const MIN_SECRET_BYTES: usize = 32;

/// Approval failures: only the store's (a refusal is an [`Outcome`], not an error).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The store failed; nothing was decided.
    #[error(transparent)]
    Store(#[from] store::Error),
}

/// `type Result<T, E = Error>` as in every module of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What the person clicked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Choice {
    /// Run the repair.
    Approve,
    /// Do not run it.
    Reject,
}

impl Choice {
    /// `approve` or `reject`, as stored and in button data.
    pub fn as_str(self) -> &'static str {
        match self {
            Choice::Approve => "approve",
            Choice::Reject => "reject",
        }
    }
}

/// Who clicked, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decider {
    /// `platform:id`, checked against the allow-list.
    pub who: Approver,
    /// Display name, for messages.
    pub name: String,
    /// The channel name the click came through (`api` for the API).
    pub via: String,
}

/// A maintenance window an approved repair waits for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WindowEnd {
    /// The window's label (its name, else `#<id>`).
    pub label: String,
    /// When its open occurrence ends (epoch ms).
    pub until_ms: i64,
}

/// What came of a click.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The job is queued and will run (after the maintenance window that holds its target,
    /// if one is open: the worker defers it to the window's end).
    Approved {
        /// The job.
        job_id: i64,
        /// The open window holding the job's target, when one does.
        after_window: Option<WindowEnd>,
    },
    /// The job is cancelled.
    Rejected {
        /// The job.
        job_id: i64,
    },
    /// Someone decided first.
    AlreadyDecided {
        /// Their display name and `platform:id`.
        by: String,
        /// What they chose.
        choice: Choice,
        /// When (epoch ms).
        at_ms: i64,
    },
    /// The approval expired (the job went to humans).
    Expired {
        /// When it expired (epoch ms).
        at_ms: i64,
    },
    /// The alert resolved before anyone approved: nothing will run.
    AlertResolved {
        /// When it resolved (epoch ms).
        at_ms: i64,
    },
    /// The clicker is not on the job's allow-list.
    NotAllowed,
    /// The job exists but was never waiting for approval (or left it another way).
    NotAwaiting {
        /// Its state.
        state: String,
    },
    /// No such job.
    UnknownJob,
}

impl Outcome {
    /// The code stored in `approvals.outcome`.
    pub fn code(&self) -> &'static str {
        match self {
            Outcome::Approved { .. } => "approved",
            Outcome::Rejected { .. } => "rejected",
            Outcome::AlreadyDecided { .. } => "already_decided",
            Outcome::Expired { .. } => "expired",
            Outcome::AlertResolved { .. } => "alert_resolved",
            Outcome::NotAllowed => "not_allowed",
            Outcome::NotAwaiting { .. } => "not_awaiting",
            Outcome::UnknownJob => "unknown_job",
        }
    }

    /// The HTTP status an answer with this outcome carries (and the audit log records).
    pub fn status(&self) -> u16 {
        match self {
            Outcome::Approved { .. } | Outcome::Rejected { .. } => 200,
            Outcome::NotAllowed => 403,
            Outcome::UnknownJob => 404,
            Outcome::Expired { .. } | Outcome::AlertResolved { .. } => 410,
            Outcome::AlreadyDecided { .. } | Outcome::NotAwaiting { .. } => 409,
        }
    }

    /// What the clicker is told, in the notify language.
    pub fn sentence(&self, lang: Language) -> String {
        let en = lang == Language::En;
        match self {
            Outcome::Approved {
                job_id,
                after_window: Some(w),
            } if en => format!(
                "Approved: repair job {job_id} will run when maintenance window {} ends ({}).",
                w.label,
                rfc3339(w.until_ms)
            ),
            Outcome::Approved {
                job_id,
                after_window: Some(w),
            } => format!(
                "已核准：修復 job {job_id} 將於維護時段 {} 結束（{}）後執行。",
                w.label,
                rfc3339(w.until_ms)
            ),
            Outcome::Approved { job_id, .. } if en => {
                format!("Approved: repair job {job_id} will run now.")
            }
            Outcome::Approved { job_id, .. } => format!("已核准：修復 job {job_id} 即將執行。"),
            Outcome::Rejected { job_id } if en => {
                format!("Rejected: repair job {job_id} will not run.")
            }
            Outcome::Rejected { job_id } => format!("已拒絕：修復 job {job_id} 不會執行。"),
            Outcome::AlreadyDecided { by, choice, at_ms } => {
                let at = rfc3339(*at_ms);
                match (choice, en) {
                    (Choice::Approve, true) => {
                        format!("Already decided: {by} approved this repair at {at}.")
                    }
                    (Choice::Reject, true) => {
                        format!("Already decided: {by} rejected this repair at {at}.")
                    }
                    (Choice::Approve, false) => format!("已有人決定：{by} 已於 {at} 核准此修復。"),
                    (Choice::Reject, false) => format!("已有人決定：{by} 已於 {at} 拒絕此修復。"),
                }
            }
            Outcome::Expired { at_ms } if en => format!(
                "Too late: the approval expired at {}; the repair went to humans and will not run.",
                rfc3339(*at_ms)
            ),
            Outcome::Expired { at_ms } => format!(
                "太遲了：核准期限已於 {} 結束；此修復已交由人工處理，不會執行。",
                rfc3339(*at_ms)
            ),
            Outcome::AlertResolved { at_ms } if en => format!(
                "Nothing to do: the alert resolved at {}, so the repair was called off and will not run.",
                rfc3339(*at_ms)
            ),
            Outcome::AlertResolved { at_ms } => format!(
                "不需動作：告警已於 {} 解除，修復已取消，不會執行。",
                rfc3339(*at_ms)
            ),
            Outcome::NotAllowed if en => {
                "Refused: you are not on this repair's list of approvers; your click was recorded."
                    .into()
            }
            Outcome::NotAllowed => "已拒絕：你不在此修復的核准名單上；這次點擊已記錄。".into(),
            Outcome::NotAwaiting { state } if en => {
                format!(
                    "Nothing to decide: this repair is not waiting for approval (it is {state})."
                )
            }
            Outcome::NotAwaiting { state } => {
                format!("無需決定：此修復並未等待核准（目前狀態：{state}）。")
            }
            Outcome::UnknownJob if en => "Unknown repair: no such job.".into(),
            Outcome::UnknownJob => "找不到此修復：沒有這個 job。".into(),
        }
    }
}

/// Decides on a click: see the module doc. `outbox` tells the job's routes who decided (and,
/// when the click found the approval expired, the escalation); `None` tells nobody.
/// `maintenance` is the windows in force: an approval while one holds the job's target is
/// answered with the window's end, when the repair will run.
pub async fn decide(
    store: &Store,
    outbox: Option<&Outbox>,
    maintenance: &Snapshot,
    job_id: i64,
    choice: Choice,
    by: &Decider,
    now_ms: i64,
) -> Result<Outcome, Error> {
    let mut tx = store.begin_write().await?;
    let (outcome, told) =
        decide_in(&mut tx, outbox, maintenance, job_id, choice, by, now_ms).await?;
    tx.commit().await?;
    after_commit(outbox, &outcome, told, by, job_id);
    Ok(outcome)
}

/// What came of a signed link's use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkUse {
    /// The decision ran (or refused) as for any click.
    Decided(Outcome),
    /// This link was already used once.
    AlreadyUsed,
}

impl LinkUse {
    /// What the page says.
    pub fn sentence(&self, lang: Language) -> String {
        match self {
            LinkUse::Decided(o) => o.sentence(lang),
            LinkUse::AlreadyUsed if lang == Language::En => {
                "This link was already used; each approval link works once.".into()
            }
            LinkUse::AlreadyUsed => "此連結已使用過；每個核准連結只能使用一次。".into(),
        }
    }

    /// The page's HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            LinkUse::Decided(o) => o.status(),
            LinkUse::AlreadyUsed => 409,
        }
    }
}

/// A verified link was posted: its nonce is used in the decision's transaction, so the link
/// works once (a second use is refused and recorded, whatever the first did); past the link's
/// expiry nothing is decided.
pub async fn decide_link(
    store: &Store,
    outbox: Option<&Outbox>,
    maintenance: &Snapshot,
    link: &LinkClaims,
    now_ms: i64,
) -> Result<LinkUse, Error> {
    let by = Decider {
        who: link.approver.clone(),
        name: link.approver.to_string(),
        via: link.approver.id.clone(),
    };
    let mut tx = store.begin_write().await?;
    if !tx.use_link_nonce(&link.nonce, link.job_id, now_ms).await? {
        record(
            &mut tx,
            link.job_id,
            link.choice,
            &by,
            "link_used",
            409,
            now_ms,
        )
        .await?;
        tx.commit().await?;
        return Ok(LinkUse::AlreadyUsed);
    }
    let (outcome, told) = if now_ms >= link.expires_at_ms {
        let o = Outcome::Expired {
            at_ms: link.expires_at_ms,
        };
        record_outcome(&mut tx, link.job_id, link.choice, &by, &o, now_ms).await?;
        (o, 0)
    } else {
        decide_in(
            &mut tx,
            outbox,
            maintenance,
            link.job_id,
            link.choice,
            &by,
            now_ms,
        )
        .await?
    };
    tx.commit().await?;
    after_commit(outbox, &outcome, told, &by, link.job_id);
    Ok(LinkUse::Decided(outcome))
}

fn after_commit(outbox: Option<&Outbox>, outcome: &Outcome, told: usize, by: &Decider, job: i64) {
    if told > 0
        && let Some(o) = outbox
    {
        o.wake();
    }
    match outcome {
        Outcome::Approved { .. } | Outcome::Rejected { .. } => {
            tracing::info!(job, approver = %by.who, via = %by.via, outcome = outcome.code(), "repair decided");
        }
        _ => {
            tracing::warn!(job, approver = %by.who, via = %by.via, outcome = outcome.code(), "approval click refused");
        }
    }
}

/// The decision inside `tx`; returns the outcome and how many messages it enqueued.
async fn decide_in(
    tx: &mut WriteTx,
    outbox: Option<&Outbox>,
    maintenance: &Snapshot,
    job_id: i64,
    choice: Choice,
    by: &Decider,
    now: i64,
) -> Result<(Outcome, usize)> {
    let outcome = match tx.approval_target(job_id).await? {
        None => Outcome::UnknownJob,
        Some(t) => {
            let allowed = t
                .job
                .spec
                .approval
                .as_ref()
                .is_some_and(|p| p.allows(&by.who));
            if t.job.state != JobState::AwaitingApproval {
                // Strangers learn nothing about a job they may not decide.
                if !allowed {
                    Outcome::NotAllowed
                } else {
                    settled(tx, &t).await?
                }
            } else if !allowed {
                Outcome::NotAllowed
            } else if t.expires_at.is_some_and(|e| e <= now) {
                // The sweep has not reached it yet: expire it now, as the sweep would.
                let told = notice::expire(tx, outbox, &t.job, now).await?;
                let o = Outcome::Expired {
                    at_ms: t.expires_at.unwrap_or(now),
                };
                record_outcome(tx, job_id, choice, by, &o, now).await?;
                return Ok((o, told));
            } else if let Some(at) = t.resolved_at {
                // The resolve cancels awaiting jobs; this covers a resolve recorded before the
                // job existed (a late firing re-send): nothing runs for a resolved alert.
                tx.transition(
                    job_id,
                    JobState::AwaitingApproval,
                    JobState::Cancelled,
                    now,
                    "alert resolved before anyone approved",
                    Record::Outcome("alert resolved"),
                )
                .await?;
                Outcome::AlertResolved { at_ms: at }
            } else {
                let (to, note, rec) = match choice {
                    Choice::Approve => (
                        JobState::Queued,
                        format!("approved by {} ({}) via {}", by.name, by.who, by.via),
                        None,
                    ),
                    Choice::Reject => (
                        JobState::Cancelled,
                        format!("rejected by {} ({}) via {}", by.name, by.who, by.via),
                        Some(format!("rejected by {}", by.name)),
                    ),
                };
                let record = rec.as_deref().map_or(Record::Nothing, Record::Outcome);
                let moved = tx
                    .transition(job_id, JobState::AwaitingApproval, to, now, &note, record)
                    .await?;
                if !moved {
                    // Held under the lock, this cannot happen; if it does, nothing was decided.
                    Outcome::NotAwaiting {
                        state: "changed".into(),
                    }
                } else {
                    let o = match choice {
                        Choice::Approve => Outcome::Approved {
                            job_id,
                            after_window: held_by(tx, maintenance, &t.job, now).await?,
                        },
                        Choice::Reject => Outcome::Rejected { job_id },
                    };
                    record_outcome(tx, job_id, choice, by, &o, now).await?;
                    let told = notice::decided(tx, outbox, &t.job, choice, by, now).await?;
                    return Ok((o, told));
                }
            }
        }
    };
    record_outcome(tx, job_id, choice, by, &outcome, now).await?;
    Ok((outcome, 0))
}

/// The maintenance window holding `job`'s target now, with the guard's and the worker's test
/// (namespace, the alert's `app` label else the target's name, rule): the worker will defer
/// the approved job to its end, so the approver is told when it runs.
async fn held_by(
    tx: &mut WriteTx,
    maintenance: &Snapshot,
    job: &store::Job,
    now: i64,
) -> Result<Option<WindowEnd>> {
    let labels = tx
        .alert_event(job.alert_event_id)
        .await?
        .map(|a| a.labels)
        .unwrap_or_default();
    let app = labels.get("app").unwrap_or(&job.target_name);
    Ok(maintenance
        .holding(&job.target_namespace, app, &job.rule, now)
        .map(|h| WindowEnd {
            label: h.label,
            until_ms: h.until,
        }))
}

/// Why a job that is no longer awaiting cannot be decided: someone decided, the alert
/// resolved, the approval expired, or it never waited.
async fn settled(tx: &mut WriteTx, t: &store::ApprovalTarget) -> Result<Outcome> {
    if let Some(d) = tx.approval_decision(t.job.id).await? {
        let choice = if d.outcome == "approved" {
            Choice::Approve
        } else {
            Choice::Reject
        };
        return Ok(Outcome::AlreadyDecided {
            by: format!("{} ({})", d.name, d.who),
            choice,
            at_ms: d.decided_at,
        });
    }
    let never_ran = t.job.started_at.is_none();
    Ok(match (t.job.state, t.resolved_at, t.expires_at) {
        (JobState::Cancelled, Some(at), _) if never_ran => Outcome::AlertResolved { at_ms: at },
        (JobState::Escalated, _, Some(at)) if never_ran => Outcome::Expired { at_ms: at },
        (state, _, _) => Outcome::NotAwaiting {
            state: state.as_str().into(),
        },
    })
}

async fn record_outcome(
    tx: &mut WriteTx,
    job_id: i64,
    choice: Choice,
    by: &Decider,
    outcome: &Outcome,
    now: i64,
) -> Result<()> {
    record(
        tx,
        job_id,
        choice,
        by,
        outcome.code(),
        outcome.status(),
        now,
    )
    .await
}

/// The `approvals` row and the `audit_log` row of one click.
async fn record(
    tx: &mut WriteTx,
    job_id: i64,
    choice: Choice,
    by: &Decider,
    outcome: &str,
    status: u16,
    now: i64,
) -> Result<()> {
    let who = by.who.to_string();
    tx.insert_approval(
        &NewApproval {
            job_id,
            choice: choice.as_str(),
            who: &who,
            name: &by.name,
            via: &by.via,
            outcome,
        },
        now,
    )
    .await?;
    #[derive(Serialize)]
    struct Detail<'a> {
        platform: &'static str,
        name: &'a str,
        via: &'a str,
        outcome: &'a str,
    }
    let detail = serde_json::to_string(&Detail {
        platform: by.who.platform.as_str(),
        name: &by.name,
        via: &by.via,
        outcome,
    })
    .unwrap_or_default();
    tx.insert_audit(&AuditEntry {
        at: now,
        subject: who,
        role: "approver".into(),
        action: choice.as_str().into(),
        resource: format!("repair {job_id}"),
        status: i64::from(status),
        detail,
    })
    .await?;
    Ok(())
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map_or_else(
        || ms.to_string(),
        |t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    )
}

#[cfg(test)]
mod tests;
