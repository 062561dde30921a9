//! Host functions that do no I/O of their own: the outcome calls (`success`, `fail`,
//! `inconclusive`), `log`, `notify`, and the quantity helpers (`quantity`, `cpu`, `scale`, …).

use rhai::{Engine, EvalAltResult, FLOAT, INT, Position};

use super::args::{duration_arg, scale};
use super::context::{ctx, current};
use super::errors::{OUTCOME_TOKEN, runtime_error};
use super::outcome::Outcome;
use crate::cluster::quantity;

pub(super) fn finish(outcome: Outcome) -> Result<(), Box<EvalAltResult>> {
    // Ending the run is never refused by the host-call budget.
    let c = current()?;
    // The message goes to the job's record, escalations and notifications: bounded like a step.
    let outcome = outcome.capped(c.settings.max_log_line);
    c.record(
        "outcome",
        format!("{}: {}", outcome.kind(), outcome.message()),
    );
    *c.outcome.lock().expect("outcome lock") = Some(outcome);
    Err(Box::new(EvalAltResult::ErrorTerminated(
        OUTCOME_TOKEN.into(),
        Position::NONE,
    )))
}

/// Registers the outcome, log, notify and quantity functions.
pub(super) fn register(engine: &mut Engine) {
    // --- outcomes
    engine.register_fn("success", |m: &str| finish(Outcome::Success(m.into())));
    engine.register_fn("fail", |m: &str| finish(Outcome::Failure(m.into())));
    engine.register_fn("inconclusive", |m: &str| {
        finish(Outcome::Inconclusive(m.into()))
    });
    engine.register_fn("log", |m: &str| -> Result<(), Box<EvalAltResult>> {
        ctx()?.record("log", m.into());
        Ok(())
    });
    engine.register_fn(
        "notify",
        |route: &str, m: &str| -> Result<(), Box<EvalAltResult>> {
            let c = ctx()?;
            let detail = c.send_notification(route, m);
            c.record("notify", detail);
            Ok(())
        },
    );

    // --- quantities
    engine.register_fn("quantity", |s: &str| {
        quantity::parse_memory(s).map_err(|e| runtime_error(e.to_string()))
    });
    engine.register_fn("format_memory", |b: INT| quantity::format_memory(b));
    engine.register_fn("format_memory", |b: FLOAT| {
        quantity::format_memory(b.ceil() as i64)
    });
    engine.register_fn("cpu", |s: &str| {
        quantity::parse_cpu(s).map_err(|e| runtime_error(e.to_string()))
    });
    engine.register_fn("format_cpu", |m: INT| quantity::format_cpu(m));
    engine.register_fn("seconds", |s: &str| {
        duration_arg(s).map(|d| d.as_secs() as INT)
    });
    engine.register_fn("scale", |bytes: INT, factor: FLOAT| scale(bytes, factor));
    engine.register_fn("scale", |bytes: INT, factor: INT| {
        scale(bytes, factor as FLOAT)
    });
}
