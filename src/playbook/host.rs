//! The host API playbooks call, and the runner that executes one playbook under the sandbox.
//!
//! One [`Runner`] (one Rhai engine, host functions registered once) serves every run. A run
//! executes on a blocking thread; its per-run state ([`RunContext`]: the cluster, the job's
//! dry-run flag, the deadline, the steps taken) is installed in a thread-local for the duration
//! of the run, which is how the shared, `Sync` engine's host functions find it. Host functions
//! that do I/O call back into tokio with `Handle::block_on`, each under its own timeout, bounded
//! by the run's wall-clock deadline.
//!
//! Every call that changes the cluster is recorded as a step (persisted at once when the run
//! belongs to a job), so a crash mid-repair still leaves the record of what was done.
//!
//! The seams follow what a reader looks for: this file holds the runner (engine set-up, one run,
//! error reports); `outcome` what a run produces; `context` the per-run state and its budgets;
//! `errors` how a run is stopped; `args` the conversions of script values; and one file per
//! family of host functions (`script_fns`, `cluster_fns`, `scale_fns`, `http_fns`, `kb_fns`,
//! `gitops_fns`: the GitOps gate every changing function passes, and `gitops(target)`).
//! The unit tests are in `tests.rs`.

mod args;
mod cluster_fns;
mod context;
mod errors;
mod gitops_fns;
mod http_fns;
mod kb_fns;
mod outcome;
mod scale_fns;
mod script_fns;

use std::sync::Arc;
use std::time::Instant;

use rhai::{Dynamic, Engine, EvalAltResult, Map, Scope};

pub use args::target_map;
pub use context::{HostSettings, RunContext, StepSink, http_client};
pub use gitops_fns::GitopsConfig;
pub use http_fns::redact;
pub use outcome::{Applied, GitopsRun, Outcome, RunResult, Skipped, StepRecord, cap_text};
pub use scale_fns::{ReplicaBounds, ScaleParams};

use context::{CURRENT, Installed, ctx, human_bytes};
use errors::{CANCELLED_TOKEN, CPU_TOKEN, HOST_CALLS_TOKEN, LOG_TOKEN, MEMORY_TOKEN};

use crate::cluster::Target;

/// The shared engine with the host API; one per process.
pub struct Runner {
    engine: Engine,
}

impl Default for Runner {
    fn default() -> Self {
        Self::new()
    }
}

impl Runner {
    /// Builds the sandboxed engine and registers the host API.
    pub fn new() -> Runner {
        let mut engine = super::sandboxed_engine();
        // The wall-clock deadline is checked every 256 operations: cheap, and a busy loop still
        // stops within microseconds of it.
        //
        // Memory is checked before every operation (two thread-local loads): one operation
        // builds at most one bounded value, so the run is stopped within one value of its cap.
        // CPU time is checked with the deadline; its clock is read only when the budget could
        // have run out (see limits::cpu_exceeded).
        engine.on_progress(|ops| {
            if super::limits::memory_exceeded() {
                return Some(Dynamic::from(MEMORY_TOKEN));
            }
            if ops % 256 != 0 {
                return None;
            }
            CURRENT.with(|c| {
                let c = c.borrow();
                let c = c.as_ref()?;
                let now = Instant::now();
                if c.cancelled() {
                    Some(Dynamic::from(CANCELLED_TOKEN))
                } else if now >= c.deadline {
                    Some(Dynamic::from("deadline"))
                } else if c.log_exhausted.load(std::sync::atomic::Ordering::Relaxed) {
                    Some(Dynamic::from(LOG_TOKEN))
                } else if super::limits::cpu_exceeded(now) {
                    Some(Dynamic::from(CPU_TOKEN))
                } else {
                    None
                }
            })
        });
        engine.on_print(|s| {
            if let Ok(c) = ctx() {
                c.record("log", s.to_string());
            }
        });
        engine.on_debug(|s, _, pos| tracing::debug!(%pos, "playbook debug: {s}"));
        register(&mut engine);
        Runner { engine }
    }

    /// The engine (to compile playbooks with the same limits).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Runs a playbook to its outcome. Blocking: call it on a blocking thread.
    pub fn run(
        &self,
        playbook: &super::Playbook,
        input: RunInput,
        ctx: Arc<RunContext>,
    ) -> RunResult {
        *ctx.scale_params.lock().expect("scale params lock") = ScaleParams::of(&input.params);
        let _installed = Installed::new(ctx.clone());
        let metered = super::limits::Metered::start(ctx.settings.max_memory, ctx.settings.max_cpu);
        let mut scope = Scope::new();
        scope.push_constant("alert", input.alert);
        scope.push_constant("params", input.params);
        scope.push_constant("target", input.target);
        scope.push_constant("dry_run", ctx.dry_run);
        let result = self.engine.run_ast_with_scope(&mut scope, &playbook.ast);
        // Free the script's values while still metered, then stop metering: the rest of this
        // function is the host's bookkeeping.
        drop(scope);
        let held = metered.bytes();
        drop(metered);
        let recorded = ctx.outcome.lock().expect("outcome lock").take();
        let outcome = match (recorded, result) {
            (Some(o), _) => o,
            (None, Ok(())) => Outcome::Inconclusive(format!(
                "{}: the playbook ended without calling success(), fail() or inconclusive()",
                playbook.path.display()
            )),
            (None, Err(e)) => {
                Outcome::Inconclusive(describe_error(&playbook.path, &e, &ctx.settings))
            }
        }
        .capped(ctx.settings.max_log_line);
        tracing::debug!(held, "playbook run ended");
        if let Outcome::Inconclusive(msg) = &outcome
            && !ctx
                .steps
                .lock()
                .expect("steps lock")
                .iter()
                .any(|s| s.action == "outcome")
        {
            ctx.record("error", msg.clone());
        }
        let steps = ctx.steps.lock().expect("steps lock").clone();
        let touched = ctx.touched.lock().expect("touched lock").clone();
        RunResult {
            outcome,
            steps,
            touched,
            gitops: ctx.gitops_run.lock().expect("gitops lock").clone(),
        }
    }
}

/// `file:line:column: message` for a script error, with what the sandbox stopped.
fn describe_error(path: &std::path::Path, e: &EvalAltResult, limits: &HostSettings) -> String {
    // An error inside a script function is wrapped once per call level: report the innermost
    // error at its own position.
    let mut e = e;
    while let EvalAltResult::ErrorInFunctionCall(_, _, inner, _)
    | EvalAltResult::ErrorInModule(_, inner, _) = e
    {
        e = inner;
    }
    let pos = e.position();
    let place = match (pos.line(), pos.position()) {
        (Some(l), Some(c)) => format!("{}:{l}:{c}", path.display()),
        (Some(l), None) => format!("{}:{l}", path.display()),
        _ => path.display().to_string(),
    };
    let what = match e {
        EvalAltResult::ErrorTerminated(token, _) if token.to_string() == "deadline" => {
            "stopped: the playbook ran past its wall-clock deadline".to_string()
        }
        EvalAltResult::ErrorTerminated(token, _) if token.to_string() == CANCELLED_TOKEN => {
            "stopped: the daemon is shutting down or the job's lease was lost".to_string()
        }
        EvalAltResult::ErrorTerminated(token, _) if token.to_string() == HOST_CALLS_TOKEN => {
            "stopped: too many host calls in one run (a host function called in a loop?)"
                .to_string()
        }
        EvalAltResult::ErrorTerminated(token, _) if token.to_string() == MEMORY_TOKEN => format!(
            "stopped: memory limit exceeded (the run held more than {}; playbook.max_memory)",
            human_bytes(limits.max_memory)
        ),
        EvalAltResult::ErrorTerminated(token, _) if token.to_string() == CPU_TOKEN => format!(
            "stopped: CPU time limit exceeded (more than {} of CPU in one run; playbook.max_cpu)",
            humantime::format_duration(limits.max_cpu)
        ),
        EvalAltResult::ErrorTerminated(token, _) if token.to_string() == LOG_TOKEN => format!(
            "stopped: log output truncated (more than {} of step text in one run; playbook.max_log)",
            human_bytes(limits.max_log)
        ),
        EvalAltResult::ErrorTooManyOperations(_) => format!(
            "stopped: more than {} operations (an endless loop?)",
            super::MAX_OPERATIONS
        ),
        EvalAltResult::ErrorStackOverflow(_) => "stopped: calls nested too deeply".to_string(),
        EvalAltResult::ErrorDataTooLarge(what, _) => {
            format!("stopped: {what} exceeds the sandbox's size limit")
        }
        EvalAltResult::ErrorRuntime(msg, _) => msg.to_string(),
        other => other.to_string(),
    };
    // Rhai's own text repeats the position; keep ours, on one line.
    let what = what.lines().next().unwrap_or_default().to_string();
    let what = match what.rfind(" (line ") {
        Some(i) => what[..i].to_string(),
        None => what,
    };
    format!("{place}: {what}")
}

/// The values a playbook sees.
pub struct RunInput {
    /// `alert`: labels, annotations, fingerprint, startsAt, status, alertname.
    pub alert: Map,
    /// `params`: the rule's params.
    pub params: Map,
    /// `target`: namespace, kind, name.
    pub target: Map,
}

impl RunInput {
    /// Builds the input from an alert-like description.
    pub fn new(
        labels: &std::collections::BTreeMap<String, String>,
        annotations: &std::collections::BTreeMap<String, String>,
        fingerprint: &str,
        starts_at: &str,
        status: &str,
        params: &impl serde::Serialize,
        target: &Target,
    ) -> RunInput {
        let strings = |m: &std::collections::BTreeMap<String, String>| -> Map {
            m.iter()
                .map(|(k, v)| (k.as_str().into(), Dynamic::from(v.clone())))
                .collect()
        };
        let mut alert = Map::new();
        alert.insert("labels".into(), strings(labels).into());
        alert.insert("annotations".into(), strings(annotations).into());
        alert.insert("fingerprint".into(), fingerprint.to_string().into());
        alert.insert("startsAt".into(), starts_at.to_string().into());
        alert.insert("status".into(), status.to_string().into());
        alert.insert(
            "alertname".into(),
            labels.get("alertname").cloned().unwrap_or_default().into(),
        );
        let params: Map = rhai::serde::to_dynamic(params)
            .ok()
            .and_then(|d| d.try_cast::<Map>())
            .unwrap_or_default();
        RunInput {
            alert,
            params,
            target: target_map(target),
        }
    }
}

/// Registers every host function, family by family.
fn register(engine: &mut Engine) {
    script_fns::register(engine);
    cluster_fns::register(engine);
    scale_fns::register(engine);
    http_fns::register(engine);
    kb_fns::register(engine);
    gitops_fns::register(engine);
}

#[cfg(test)]
mod gitops_tests;
#[cfg(test)]
mod tests;
