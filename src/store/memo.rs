//! What an intake batch's transaction has already read or decided, so that a batch of webhooks
//! costs a handful of statements instead of twenty per webhook.
//!
//! Two parts, both owned by one [`super::WriteTx`]:
//!
//! - **[`Memo`]**: the answers of the guards' reads (the active job on a target, a rule's last
//!   activity and budget use on a target, an app's notification targets), kept for the rest of
//!   the transaction and written through by the transaction's own job inserts, so a later read
//!   answers what the database would. It is only switched on for intake transactions
//!   ([`super::WriteTx::memoize`]): intake holds SQLite's write lock, and on PostgreSQL the intake
//!   advisory lock, so no other intake changes these rows meanwhile. The one writer that can run
//!   beside it on PostgreSQL is a worker finishing a job; the batch then decides as if it had
//!   run a few milliseconds earlier, which is what a slower intake would have done anyway.
//! - **[`Deferred`]**: decisions and storm-brake activity recorded by the guards, written as one
//!   multi-row statement each when the batch flushes ([`super::WriteTx::flush`], always before
//!   commit and before any read of `decisions`).
//!
//! A savepoint ([`Mark`]) snapshots both, so a webhook rolled back inside a batch leaves no
//! trace in them either.

use std::collections::HashMap;

use crate::rules::Mode;

/// The lane of a mode, as the guards' queries split jobs: shadow, or real.
pub(super) fn shadow(mode: Mode) -> bool {
    mode == Mode::Shadow
}

/// Remembered guard reads of one transaction (see the module documentation).
#[derive(Clone, Debug, Default)]
pub(super) struct Memo {
    /// Whether intake switched it on.
    pub on: bool,
    /// (target key, shadow lane) → the active job on it.
    pub active: HashMap<(String, bool), Option<i64>>,
    /// (rule, target key, shadow lane) → when the rule last acted on the target.
    pub last: HashMap<(String, String, bool), Option<i64>>,
    /// (rule, target key, since, shadow lane) → chain roots started since `since`.
    pub repairs: HashMap<(String, String, i64, bool), i64>,
    /// Namespace → the notification targets of its apps.
    pub app_targets: HashMap<String, Vec<String>>,
}

impl Memo {
    /// A job this transaction inserted: the reads it changes answer as the database now would.
    pub fn job_inserted(&mut self, job: &JobFacts<'_>) {
        if !self.on {
            return;
        }
        let lane = shadow(job.mode);
        self.active
            .insert((job.target_key.to_string(), lane), Some(job.id));
        // last_activity is MAX(COALESCE(finished_at, created_at)) over the lane's jobs: a new,
        // unfinished job counts with its creation time.
        let last = self
            .last
            .entry((job.rule.to_string(), job.target_key.to_string(), lane))
            .or_insert(None);
        *last = Some(last.map_or(job.created_at, |t| t.max(job.created_at)));
        if job.chain_index == 0 {
            for ((rule, key, since, l), n) in &mut self.repairs {
                if rule == job.rule
                    && key == job.target_key
                    && *l == lane
                    && job.created_at >= *since
                {
                    *n += 1;
                }
            }
        }
    }

    /// Jobs were cancelled or changed in a way the memo does not follow: forget the job reads.
    pub fn jobs_changed(&mut self) {
        if !self.on {
            return;
        }
        self.active.clear();
        self.last.clear();
        self.repairs.clear();
    }
}

/// What [`Memo::job_inserted`] needs to know of a new job.
pub(super) struct JobFacts<'a> {
    pub id: i64,
    pub rule: &'a str,
    pub target_key: &'a str,
    pub mode: Mode,
    pub chain_index: i64,
    pub created_at: i64,
}

/// A decision waiting for the batch's multi-row insert.
#[derive(Clone, Debug)]
pub(super) struct DeferredDecision {
    pub alert_event_id: i64,
    pub rule: String,
    pub target_key: Option<String>,
    pub verdict: String,
    pub reason: String,
    pub detail: String,
    pub job_id: Option<i64>,
    pub created_at: i64,
    pub requested_by: Option<String>,
}

/// Rows recorded but not yet written (see the module documentation).
#[derive(Clone, Debug, Default)]
pub(super) struct Deferred {
    pub decisions: Vec<DeferredDecision>,
    /// Target key → the latest time a decision fed the storm brake's activity.
    pub activity: HashMap<String, i64>,
}

impl Deferred {
    pub fn is_empty(&self) -> bool {
        self.decisions.is_empty() && self.activity.is_empty()
    }
}

/// A savepoint inside a transaction, with what the memo and the deferred rows were at it.
pub struct Mark {
    pub(super) name: String,
    pub(super) memo: Memo,
    pub(super) deferred: Deferred,
}
