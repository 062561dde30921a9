//! What a run produces: its [`Outcome`], the steps it recorded and the targets it changed, and
//! how long texts are capped for the record. A leaf: the run context and the runner both build
//! on it.

use crate::cluster::Target;
use crate::gitops::{Controller, FieldChange, GitChange, Ownership};
use crate::rules::ChangeKind;

/// How a playbook run ended.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "result", content = "message", rename_all = "snake_case")]
pub enum Outcome {
    /// The playbook says it repaired the target.
    Success(String),
    /// The playbook measured that the repair did not work: escalate along the chain.
    Failure(String),
    /// The playbook could not tell (error, timeout, missing data): humans decide, never a loop.
    Inconclusive(String),
}

impl Outcome {
    /// The message.
    pub fn message(&self) -> &str {
        match self {
            Outcome::Success(m) | Outcome::Failure(m) | Outcome::Inconclusive(m) => m,
        }
    }
    /// The same outcome with its message cut to `max` bytes (saying so).
    pub fn capped(self, max: usize) -> Outcome {
        match self {
            Outcome::Success(m) => Outcome::Success(cap_text(m, max)),
            Outcome::Failure(m) => Outcome::Failure(cap_text(m, max)),
            Outcome::Inconclusive(m) => Outcome::Inconclusive(cap_text(m, max)),
        }
    }
    /// `success`, `failure` or `inconclusive`.
    pub fn kind(&self) -> &'static str {
        match self {
            Outcome::Success(_) => "success",
            Outcome::Failure(_) => "failure",
            Outcome::Inconclusive(_) => "inconclusive",
        }
    }
}

/// One recorded action of a run.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct StepRecord {
    /// Short action name (`restart`, `set_memory`, `log`, …).
    pub action: String,
    /// What was done (or, in a dry run, would be done).
    pub detail: String,
}

/// What a run produced.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RunResult {
    /// How it ended.
    pub outcome: Outcome,
    /// What it did, in order.
    pub steps: Vec<StepRecord>,
    /// Workloads it changed (verification checks their rollouts).
    pub touched: Vec<Target>,
    /// What the GitOps gate saw and did (owners read, changes applied, a skipped change).
    pub gitops: GitopsRun,
}

/// What the GitOps gate of a run saw and did, for the executor (revert watch, escalation) and
/// for `aiops test-playbook`'s report.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct GitopsRun {
    /// The ownership of each workload the run was about to change, first reading per target.
    pub owners: Vec<(Target, Ownership)>,
    /// Each change applied (not in dry runs), in order: what verification watches.
    pub applied: Vec<Applied>,
    /// The change not made because the owner's policy is `skip` (or a `hold` that could not
    /// be placed): the run stopped there, and the incident goes to humans with it.
    pub skipped: Option<Skipped>,
}

/// A change a run applied to a workload.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Applied {
    /// The workload.
    pub target: Target,
    /// Which kind of change.
    pub kind: ChangeKind,
    /// The fields and the values they had right after the change (read back from the
    /// cluster): a later reading that differs means someone set them back.
    pub changes: Vec<FieldChange>,
    /// The GitOps controller that owns the workload, if any.
    pub owner: Option<Controller>,
    /// The change to make in Git, when an owner exists (for the escalation of a revert).
    pub git: Option<GitChange>,
    /// The hold the change was made under (`gitops: hold`), by id.
    pub hold_id: Option<i64>,
}

/// A change a run did not make because of its target's GitOps owner.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Skipped {
    /// What to change in Git instead, and the owner.
    pub change: GitChange,
    /// Why it was skipped: the policy, or why a hold was not possible.
    pub reason: String,
}

/// `text` cut to at most `max` bytes (on a character boundary), saying how much was cut.
pub fn cap_text(text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let note = format!(
        " … [truncated: {} more bytes; log output truncated]",
        text.len()
    );
    let mut keep = max.saturating_sub(note.len());
    while !text.is_char_boundary(keep) {
        keep -= 1;
    }
    let cut = text.len() - keep;
    format!(
        "{} … [truncated: {cut} more bytes; log output truncated]",
        &text[..keep]
    )
}
