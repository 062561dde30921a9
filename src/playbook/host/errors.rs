//! How a run is stopped: the markers the sandbox and the host terminate a script with, and the
//! script-facing errors.
//!
//! A termination (`ErrorTerminated`) cannot be caught by the script, a runtime error can; the
//! runner turns the markers back into the words of the job's record (`describe_error`).

use rhai::{EvalAltResult, Position};

/// The marker for a run stopped by the host-call budget.
pub(super) const HOST_CALLS_TOKEN: &str = "aiops:host-calls";
/// The marker for a run stopped by `playbook.max_memory`.
pub(super) const MEMORY_TOKEN: &str = "aiops:memory";
/// The marker for a run stopped by `playbook.max_cpu`.
pub(super) const CPU_TOKEN: &str = "aiops:cpu";
/// The marker for a run stopped by `playbook.max_log`.
pub(super) const LOG_TOKEN: &str = "aiops:log";

/// Ends the run for `token`'s reason. Not catchable by the script.
pub(super) fn terminated(token: &str) -> Box<EvalAltResult> {
    Box::new(EvalAltResult::ErrorTerminated(token.into(), Position::NONE))
}

pub(super) fn runtime_error(msg: String) -> Box<EvalAltResult> {
    Box::new(EvalAltResult::ErrorRuntime(msg.into(), Position::NONE))
}

/// Ends the run: its wall-clock deadline has passed. Not catchable by the script.
pub(super) fn deadline_reached() -> Box<EvalAltResult> {
    Box::new(EvalAltResult::ErrorTerminated(
        "deadline".into(),
        Position::NONE,
    ))
}

/// Ends the run: the daemon is stopping, or another replica took the job over.
pub(super) fn cancelled() -> Box<EvalAltResult> {
    Box::new(EvalAltResult::ErrorTerminated(
        CANCELLED_TOKEN.into(),
        Position::NONE,
    ))
}

/// The marker for a cancelled run.
pub(super) const CANCELLED_TOKEN: &str = "aiops:cancelled";

/// The marker a playbook's outcome call terminates the script with.
pub(super) const OUTCOME_TOKEN: &str = "aiops:outcome";
