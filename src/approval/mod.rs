//! TEMPORARY: the approval core's contract as fixed in the issue-17 split, so `chat` compiles
//! before `approve` lands; replaced wholesale by merging branch `approve`.

use crate::notify::Outbox;
use crate::notify::config::Language;
use crate::store::Store;

/// Approve or reject.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Choice {
    /// Run the repair.
    Approve,
    /// Do not.
    Reject,
}

/// Who clicked, and through which channel.
#[derive(Clone, Debug)]
pub struct Decider {
    /// Platform user id.
    pub who: crate::rules::Approver,
    /// Display name.
    pub name: String,
    /// Channel name.
    pub via: String,
}

/// What a click did.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Approved.
    Approved { job_id: i64 },
    /// Rejected.
    Rejected { job_id: i64 },
    /// Someone was first.
    AlreadyDecided {
        by: String,
        choice: Choice,
        at_ms: i64,
    },
    /// Too late.
    Expired { at_ms: i64 },
    /// Resolved first.
    AlertResolved { at_ms: i64 },
    /// Not on the allow-list.
    NotAllowed,
    /// Not awaiting.
    NotAwaiting { state: String },
    /// No such job.
    UnknownJob,
}

impl Outcome {
    /// What the clicker is told.
    pub fn sentence(&self, _lang: Language) -> String {
        format!("{self:?}")
    }
}

/// Approval failures.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] crate::store::Error),
}

/// Decides.
pub async fn decide(
    _store: &Store,
    _outbox: Option<&Outbox>,
    _job_id: i64,
    _choice: Choice,
    _by: &Decider,
    _now_ms: i64,
) -> Result<Outcome, Error> {
    Ok(Outcome::UnknownJob)
}
