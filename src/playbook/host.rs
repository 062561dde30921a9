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

use std::cell::RefCell;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rhai::{Dynamic, Engine, EvalAltResult, FLOAT, INT, Map, Position, Scope};

use crate::cluster::{self, Cluster, Target, quantity};
use crate::store::{self, Store};

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

/// Where a run's steps are persisted as they happen.
#[derive(Clone)]
pub struct StepSink {
    /// The store.
    pub store: Store,
    /// The job.
    pub job_id: i64,
}

/// Settings of the host API.
#[derive(Clone, Debug)]
pub struct HostSettings {
    /// Timeout of one host call (a cluster call, an HTTP GET).
    pub call_timeout: Duration,
    /// Hosts (`host` or `host:port`) `http_get` may reach.
    pub http_allow: Vec<String>,
    /// How often `wait_rollout` polls.
    pub rollout_poll: Duration,
    /// Most host calls one run may make (a host call in a loop is stopped here, long before it
    /// could flood the store with steps).
    pub max_host_calls: u32,
}

impl Default for HostSettings {
    fn default() -> Self {
        HostSettings {
            call_timeout: Duration::from_secs(30),
            http_allow: Vec::new(),
            rollout_poll: Duration::from_secs(2),
            max_host_calls: 500,
        }
    }
}

impl From<&crate::config::PlaybookSettings> for HostSettings {
    fn from(s: &crate::config::PlaybookSettings) -> Self {
        HostSettings {
            call_timeout: s.call_timeout.0,
            http_allow: s.http_allow.clone(),
            rollout_poll: s.rollout_poll.0,
            ..HostSettings::default()
        }
    }
}

/// Everything one run can reach.
pub struct RunContext {
    /// The cluster backend.
    pub cluster: Arc<dyn Cluster>,
    /// The store, for `kb_*` queries (None offline: the knowledge base is then empty).
    pub store: Option<Store>,
    /// Where steps are persisted (None offline).
    pub sink: Option<StepSink>,
    /// The tokio runtime to call async code on.
    pub handle: tokio::runtime::Handle,
    /// Dry run: changing calls are validated and answered, not applied.
    pub dry_run: bool,
    /// Host settings.
    pub settings: HostSettings,
    /// HTTP client for `http_get`.
    pub http: reqwest::Client,
    deadline: Instant,
    event_context: Option<(Target, String)>,
    notify: Option<(Arc<crate::notify::Outbox>, crate::notify::Event)>,
    cancel: Vec<Arc<std::sync::atomic::AtomicBool>>,
    host_calls: std::sync::atomic::AtomicU32,
    steps: Mutex<Vec<StepRecord>>,
    outcome: Mutex<Option<Outcome>>,
    touched: Mutex<Vec<Target>>,
}

impl RunContext {
    /// A context whose run must end within `timeout`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        cluster: Arc<dyn Cluster>,
        store: Option<Store>,
        sink: Option<StepSink>,
        handle: tokio::runtime::Handle,
        dry_run: bool,
        settings: HostSettings,
        http: reqwest::Client,
        timeout: Duration,
    ) -> RunContext {
        RunContext {
            cluster,
            store,
            sink,
            handle,
            dry_run,
            settings,
            http,
            deadline: Instant::now() + timeout,
            event_context: None,
            notify: None,
            cancel: Vec::new(),
            host_calls: std::sync::atomic::AtomicU32::new(0),
            steps: Mutex::new(Vec::new()),
            outcome: Mutex::new(None),
            touched: Mutex::new(Vec::new()),
        }
    }

    /// Flags that stop the run at its next step when set (lost lease, shutdown).
    pub fn with_cancel(mut self, flags: Vec<Arc<std::sync::atomic::AtomicBool>>) -> Self {
        self.cancel = flags;
        self
    }

    /// What Kubernetes Events on changed targets say caused the change (rule and alert).
    /// `target` is the job's target: namespace-wide changes (cleanup) are reported on it.
    pub fn with_event_context(mut self, target: Target, context: String) -> Self {
        self.event_context = Some((target, context));
        self
    }

    /// Where `notify(route, msg)` sends: the outbox, and the event (alert, target, job) the
    /// message is about. Without it (offline runs) `notify` only records a step.
    pub fn with_notify(
        mut self,
        outbox: Arc<crate::notify::Outbox>,
        event: crate::notify::Event,
    ) -> Self {
        self.notify = Some((outbox, event));
        self
    }

    /// Enqueues a playbook's message; failures are logged and recorded, never fatal: a
    /// notification must not break a repair.
    fn send_notification(&self, route: &str, message: &str) -> String {
        let (Some((outbox, event)), Some(store)) = (&self.notify, &self.store) else {
            return format!("{route}: {message}");
        };
        if !outbox.knows(route) {
            tracing::warn!(
                route,
                "notify(): no channel or route of that name; not sent"
            );
            return format!("{route}: {message} (not sent: no channel or route named {route:?})");
        }
        let mut event = event.clone();
        event.kind = crate::notify::EventKind::PlaybookMessage;
        event.message = message.to_string();
        event.at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let limit = self.settings.call_timeout.min(self.remaining());
        let explicit = vec![route.to_string()];
        let res = self.handle.block_on(async {
            tokio::time::timeout(limit, outbox.enqueue_now(store, &event, &explicit)).await
        });
        match res {
            Ok(Ok(n)) => format!("{route}: {message} (queued for {n} channel(s))"),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, route, "notify(): enqueueing failed");
                format!("{route}: {message} (not sent: {e})")
            }
            Err(_) => format!("{route}: {message} (not sent: timed out)"),
        }
    }

    /// Records a Kubernetes Event for an applied change; a failure is logged, never fatal.
    fn event(&self, target: &Target, reason: &str, detail: &str) {
        if self.dry_run {
            return;
        }
        let message = match &self.event_context {
            Some((_, ctx)) => format!("aiops {ctx}: {detail}"),
            None => format!("aiops: {detail}"),
        };
        let limit = self.settings.call_timeout.min(Duration::from_secs(5));
        let res = self.handle.block_on(async {
            tokio::time::timeout(limit, self.cluster.record_event(target, reason, &message)).await
        });
        match res {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, %target, "recording a Kubernetes Event failed")
            }
            Err(_) => tracing::warn!(%target, "recording a Kubernetes Event timed out"),
        }
    }

    fn cancelled(&self) -> bool {
        self.cancel
            .iter()
            .any(|f| f.load(std::sync::atomic::Ordering::Relaxed))
    }

    fn record(&self, action: &str, detail: String) {
        let detail = if self.dry_run && is_change(action) {
            format!("dry run: would {detail}")
        } else {
            detail
        };
        tracing::info!(action, %detail, "playbook step");
        if let Some(sink) = &self.sink {
            let (store, id, a, d) = (
                sink.store.clone(),
                sink.job_id,
                action.to_string(),
                detail.clone(),
            );
            if let Err(e) = self
                .handle
                .block_on(async move { store.add_step(id, &a, &d).await })
            {
                tracing::error!(error = %e, "recording a playbook step failed");
            }
        }
        self.steps.lock().expect("steps lock").push(StepRecord {
            action: action.into(),
            detail,
        });
    }

    fn touch(&self, t: &Target) {
        let mut touched = self.touched.lock().expect("touched lock");
        if !touched.contains(t) {
            touched.push(t.clone());
        }
    }

    /// Time left before the run's deadline.
    fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// Runs a cluster call under the call timeout, keeping the cluster error's kind.
    fn try_call<T>(
        &self,
        fut: impl std::future::Future<Output = cluster::Result<T>>,
    ) -> cluster::Result<T> {
        let limit = self.settings.call_timeout.min(self.remaining());
        match self
            .handle
            .block_on(async { tokio::time::timeout(limit, fut).await })
        {
            Ok(r) => r,
            Err(_) => Err(cluster::Error::Timeout(limit)),
        }
    }

    /// The script-facing error for a failed cluster call.
    fn to_script_error(&self, what: &str, e: cluster::Error) -> Box<EvalAltResult> {
        if self.cancelled() {
            cancelled()
        } else if matches!(e, cluster::Error::Timeout(_)) && self.remaining().is_zero() {
            deadline_reached()
        } else {
            runtime_error(format!("{what}: {e}"))
        }
    }

    /// Runs a future on tokio under the call timeout (never past the deadline).
    fn call<T>(
        &self,
        what: &str,
        fut: impl std::future::Future<Output = cluster::Result<T>>,
    ) -> Result<T, Box<EvalAltResult>> {
        if self.cancelled() {
            return Err(cancelled());
        }
        let limit = self.settings.call_timeout.min(self.remaining());
        match self
            .handle
            .block_on(async { tokio::time::timeout(limit, fut).await })
        {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(runtime_error(format!("{what}: {e}"))),
            // The run's deadline, not the call's own timeout, cut it short.
            Err(_) if self.remaining().is_zero() => Err(deadline_reached()),
            Err(_) => Err(runtime_error(format!(
                "{what}: {}",
                cluster::Error::Timeout(limit)
            ))),
        }
    }
}

fn is_change(action: &str) -> bool {
    matches!(
        action,
        "restart" | "rollback" | "set_memory" | "delete_failed_pods" | "delete_finished_jobs"
    )
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
}

thread_local! {
    static CURRENT: RefCell<Option<Arc<RunContext>>> = const { RefCell::new(None) };
}

/// Sets the current run context for this thread until dropped.
struct Installed;

impl Installed {
    fn new(ctx: Arc<RunContext>) -> Installed {
        CURRENT.with(|c| *c.borrow_mut() = Some(ctx));
        Installed
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        CURRENT.with(|c| *c.borrow_mut() = None);
    }
}

/// The current run's context, without counting a host call.
fn current() -> Result<Arc<RunContext>, Box<EvalAltResult>> {
    CURRENT.with(|c| c.borrow().clone()).ok_or_else(|| {
        runtime_error("host functions are only available inside a playbook run".into())
    })
}

/// The current run's context, counting the host call against the run's budget.
fn ctx() -> Result<Arc<RunContext>, Box<EvalAltResult>> {
    let c = current()?;
    if c.cancelled() {
        return Err(cancelled());
    }
    if c.remaining().is_zero() {
        return Err(deadline_reached());
    }
    let n = c
        .host_calls
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        + 1;
    if n > c.settings.max_host_calls {
        // Terminate rather than raise: a script must not be able to catch this and go on.
        return Err(Box::new(EvalAltResult::ErrorTerminated(
            HOST_CALLS_TOKEN.into(),
            Position::NONE,
        )));
    }
    Ok(c)
}

/// The marker for a run stopped by the host-call budget.
const HOST_CALLS_TOKEN: &str = "aiops:host-calls";

fn runtime_error(msg: String) -> Box<EvalAltResult> {
    Box::new(EvalAltResult::ErrorRuntime(msg.into(), Position::NONE))
}

/// Ends the run: its wall-clock deadline has passed. Not catchable by the script.
fn deadline_reached() -> Box<EvalAltResult> {
    Box::new(EvalAltResult::ErrorTerminated(
        "deadline".into(),
        Position::NONE,
    ))
}

/// Ends the run: the daemon is stopping, or another replica took the job over.
fn cancelled() -> Box<EvalAltResult> {
    Box::new(EvalAltResult::ErrorTerminated(
        CANCELLED_TOKEN.into(),
        Position::NONE,
    ))
}

/// The marker for a cancelled run.
const CANCELLED_TOKEN: &str = "aiops:cancelled";

/// The marker a playbook's outcome call terminates the script with.
const OUTCOME_TOKEN: &str = "aiops:outcome";

fn finish(outcome: Outcome) -> Result<(), Box<EvalAltResult>> {
    // Ending the run is never refused by the host-call budget.
    let c = current()?;
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

fn target_of(map: &Map) -> Result<Target, Box<EvalAltResult>> {
    let get = |k: &str| {
        map.get(k)
            .and_then(|v| v.clone().into_immutable_string().ok())
            .map(|s| s.to_string())
            .filter(|s| !s.is_empty())
            .ok_or_else(|| runtime_error(format!("target needs a string `{k}`")))
    };
    let kind = get("kind")?;
    // The canonical spelling, so knowledge-base keys and cluster calls agree on "deployment".
    let kind = crate::rules::canonical_kind(&kind).map_or(kind, str::to_string);
    Ok(Target {
        namespace: get("namespace")?,
        kind,
        name: get("name")?,
    })
}

/// The target as the map playbooks see.
pub fn target_map(t: &Target) -> Map {
    let mut m = Map::new();
    m.insert("namespace".into(), t.namespace.clone().into());
    m.insert("kind".into(), t.kind.clone().into());
    m.insert("name".into(), t.name.clone().into());
    m
}

fn duration_arg(s: &str) -> Result<Duration, Box<EvalAltResult>> {
    crate::config::parse_duration(s).map_err(runtime_error)
}

/// Bytes from an integer, a float (rounded up) or a quantity string.
fn bytes_arg(v: &Dynamic, what: &str) -> Result<i64, Box<EvalAltResult>> {
    if let Ok(i) = v.as_int() {
        return Ok(i);
    }
    if let Ok(f) = v.as_float() {
        return Ok(f.ceil() as i64);
    }
    if let Ok(s) = v.clone().into_immutable_string() {
        return quantity::parse_memory(&s).map_err(|e| runtime_error(format!("{what}: {e}")));
    }
    Err(runtime_error(format!(
        "{what}: expected bytes (integer) or a quantity like \"512Mi\", got {}",
        v.type_name()
    )))
}

/// `bytes × factor`, rounded up to a whole MiB (the unit people read limits in).
fn scale(bytes: INT, factor: FLOAT) -> Result<INT, Box<EvalAltResult>> {
    if !(factor.is_finite() && factor > 0.0) {
        return Err(runtime_error(format!(
            "scale: factor must be a positive number, got {factor}"
        )));
    }
    const MI: f64 = 1024.0 * 1024.0;
    let scaled = (bytes as f64 * factor / MI).ceil() * MI;
    Ok(scaled as INT)
}

fn opt_int(v: Option<i64>) -> Dynamic {
    v.map_or(Dynamic::UNIT, Dynamic::from_int)
}

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
        engine.on_progress(|ops| {
            if ops % 256 != 0 {
                return None;
            }
            CURRENT.with(|c| {
                let c = c.borrow();
                let c = c.as_ref()?;
                if c.cancelled() {
                    Some(Dynamic::from(CANCELLED_TOKEN))
                } else if Instant::now() >= c.deadline {
                    Some(Dynamic::from("deadline"))
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
        let _installed = Installed::new(ctx.clone());
        let mut scope = Scope::new();
        scope.push_constant("alert", input.alert);
        scope.push_constant("params", input.params);
        scope.push_constant("target", input.target);
        scope.push_constant("dry_run", ctx.dry_run);
        let result = self.engine.run_ast_with_scope(&mut scope, &playbook.ast);
        let recorded = ctx.outcome.lock().expect("outcome lock").take();
        let outcome = match (recorded, result) {
            (Some(o), _) => o,
            (None, Ok(())) => Outcome::Inconclusive(format!(
                "{}: the playbook ended without calling success(), fail() or inconclusive()",
                playbook.path.display()
            )),
            (None, Err(e)) => Outcome::Inconclusive(describe_error(&playbook.path, &e)),
        };
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
        }
    }
}

/// `file:line:column: message` for a script error, with what the sandbox stopped.
fn describe_error(path: &std::path::Path, e: &EvalAltResult) -> String {
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
        params: &serde_json::Value,
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

fn status_map(s: &cluster::RolloutStatus) -> Map {
    let mut m = Map::new();
    m.insert("complete".into(), s.complete.into());
    m.insert("failed".into(), s.failed.into());
    m.insert("message".into(), s.message.clone().into());
    m.insert("reason".into(), s.message.clone().into());
    m
}

fn wait_rollout(t: Map, timeout: &str) -> Result<Map, Box<EvalAltResult>> {
    let c = ctx()?;
    let target = target_of(&t)?;
    let limit = duration_arg(timeout)?;
    let until = Instant::now() + limit.min(c.remaining());
    let mut retrying = false;
    loop {
        // A passing API error (429, 5xx, a timeout) while the rollout runs is no reason to
        // abandon a change already applied: keep polling until the wait's own limit.
        let status = match c.try_call(c.cluster.rollout_status(&target)) {
            Ok(s) => s,
            Err(e) if e.is_retryable() && Instant::now() < until && !c.remaining().is_zero() => {
                if !retrying {
                    c.record(
                        "wait_rollout",
                        format!("rollout of {target}: {e}; retrying"),
                    );
                    retrying = true;
                }
                let pause = c
                    .settings
                    .rollout_poll
                    .min(until.saturating_duration_since(Instant::now()));
                c.handle.block_on(tokio::time::sleep(pause));
                continue;
            }
            Err(e) => return Err(c.to_script_error("rollout status", e)),
        };
        if !(status.complete || status.failed || c.dry_run) && c.remaining().is_zero() {
            // The run's deadline, not the wait's own timeout, cut this wait short.
            c.record(
                "wait_rollout",
                format!(
                    "rollout of {target}: still waiting at the run's deadline ({})",
                    status.message
                ),
            );
            return Err(deadline_reached());
        }
        if status.complete || status.failed || c.dry_run || Instant::now() >= until {
            let verdict = if status.complete {
                "complete"
            } else if status.failed {
                "failed"
            } else if c.dry_run {
                "not waited for (dry run)"
            } else {
                "not finished in time"
            };
            c.record(
                "wait_rollout",
                format!("rollout of {target}: {verdict} ({})", status.message),
            );
            return Ok(status_map(&status));
        }
        let pause = c
            .settings
            .rollout_poll
            .min(until.saturating_duration_since(Instant::now()));
        c.handle.block_on(tokio::time::sleep(pause));
    }
}

fn http_get(url: &str, timeout: Duration) -> Result<Map, Box<EvalAltResult>> {
    let c = ctx()?;
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| runtime_error(format!("http_get: bad URL {url:?}: {e}")))?;
    let host = parsed.host_str().unwrap_or_default().to_string();
    let host_port = parsed.port().map(|p| format!("{host}:{p}"));
    let allowed = c
        .settings
        .http_allow
        .iter()
        .any(|a| *a == host || Some(a) == host_port.as_ref());
    if !allowed {
        return Err(runtime_error(format!(
            "http_get: host {host} is not in playbook.http_allow"
        )));
    }
    let limit = timeout.min(c.settings.call_timeout).min(c.remaining());
    let client = c.http.clone();
    let shown = redact(&parsed);
    let res = c.handle.block_on(async move {
        let mut resp = client.get(parsed).timeout(limit).send().await?;
        let status = resp.status().as_u16();
        // Read at most 64 KiB: a health endpoint has no business sending more.
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await? {
            let room = MAX_HTTP_BODY - body.len();
            body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if body.len() >= MAX_HTTP_BODY {
                break;
            }
        }
        Ok::<_, reqwest::Error>((status, String::from_utf8_lossy(&body).into_owned()))
    });
    let mut m = Map::new();
    match res {
        Ok((status, body)) => {
            c.record("http_get", format!("GET {shown} -> {status}"));
            m.insert("status".into(), Dynamic::from_int(i64::from(status)));
            m.insert("ok".into(), (200..300).contains(&status).into());
            m.insert("body".into(), body.into());
        }
        Err(e) => {
            let e = e.without_url().to_string();
            c.record("http_get", format!("GET {shown} failed: {e}"));
            m.insert("status".into(), Dynamic::from_int(0));
            m.insert("ok".into(), false.into());
            m.insert("error".into(), e.into());
        }
    }
    Ok(m)
}

/// Largest body `http_get` reads.
const MAX_HTTP_BODY: usize = 64 * 1024;

/// A URL as it may appear in steps and logs: no credentials, no query string.
pub fn redact(url: &reqwest::Url) -> String {
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.set_query(None);
    u.set_fragment(None);
    u.to_string()
}

fn kb<T: Send + 'static>(
    f: impl FnOnce(
        Store,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = store::Result<T>> + Send>>,
    empty: T,
) -> Result<T, Box<EvalAltResult>> {
    let c = ctx()?;
    let Some(store) = c.store.clone() else {
        return Ok(empty);
    };
    let limit = c.settings.call_timeout.min(c.remaining());
    match c
        .handle
        .block_on(async move { tokio::time::timeout(limit, f(store)).await })
    {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(runtime_error(format!("knowledge base: {e}"))),
        Err(_) => Err(runtime_error(format!(
            "knowledge base: timed out after {limit:?}"
        ))),
    }
}

fn register(engine: &mut Engine) {
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

    // --- cluster
    engine.register_fn("restart", |t: Map| -> Result<(), Box<EvalAltResult>> {
        let c = ctx()?;
        let target = target_of(&t)?;
        c.call("restart", c.cluster.restart(&target, c.dry_run))?;
        c.record("restart", format!("restart {target}"));
        c.event(
            &target,
            "AutoRepairRestart",
            &format!("rollout restart of {target}"),
        );
        c.touch(&target);
        Ok(())
    });
    engine.register_fn(
        "rollout_status",
        |t: Map| -> Result<Map, Box<EvalAltResult>> {
            let c = ctx()?;
            let target = target_of(&t)?;
            Ok(status_map(&c.call(
                "rollout status",
                c.cluster.rollout_status(&target),
            )?))
        },
    );
    engine.register_fn("wait_rollout", |t: Map, timeout: &str| {
        wait_rollout(t, timeout)
    });
    engine.register_fn("wait_rollout", |t: Map| wait_rollout(t, "5m"));
    engine.register_fn("rollback", |t: Map| -> Result<Map, Box<EvalAltResult>> {
        let c = ctx()?;
        let target = target_of(&t)?;
        let r = c.call("rollback", c.cluster.rollback(&target, c.dry_run))?;
        if r.done {
            c.record(
                "rollback",
                format!(
                    "roll back {target} to revision {}",
                    r.revision.map_or("?".into(), |v| v.to_string())
                ),
            );
            c.event(
                &target,
                "AutoRepairRollback",
                &format!(
                    "rollback of {target} to revision {}",
                    r.revision.map_or("?".into(), |v| v.to_string())
                ),
            );
            c.touch(&target);
        } else {
            c.record(
                "rollback_refused",
                format!("no rollback of {target}: {}", r.reason),
            );
        }
        let mut m = Map::new();
        m.insert("done".into(), r.done.into());
        m.insert("revision".into(), opt_int(r.revision));
        m.insert("reason".into(), r.reason.into());
        Ok(m)
    });
    fn memory(t: Map, container: Option<&str>) -> Result<Map, Box<EvalAltResult>> {
        let c = ctx()?;
        let target = target_of(&t)?;
        let mem = c.call("memory", c.cluster.memory(&target, container))?;
        let mut m = Map::new();
        m.insert("container".into(), mem.container.into());
        m.insert("request".into(), opt_int(mem.request));
        m.insert("limit".into(), opt_int(mem.limit));
        Ok(m)
    }
    engine.register_fn("memory", |t: Map| memory(t, None));
    engine.register_fn("memory", |t: Map, container: &str| {
        memory(t, Some(container))
    });
    engine.register_fn(
        "set_memory",
        |t: Map,
         container: &str,
         request: Dynamic,
         limit: Dynamic|
         -> Result<(), Box<EvalAltResult>> {
            let c = ctx()?;
            let target = target_of(&t)?;
            let request = if request.is_unit() {
                None
            } else {
                Some(bytes_arg(&request, "set_memory request")?)
            };
            let limit = bytes_arg(&limit, "set_memory limit")?;
            c.call(
                "set_memory",
                c.cluster
                    .set_memory(&target, container, request, limit, c.dry_run),
            )?;
            c.record(
                "set_memory",
                format!(
                    "set memory of {target} container {container}: request {}, limit {}",
                    request.map_or("unchanged".into(), quantity::format_memory),
                    quantity::format_memory(limit)
                ),
            );
            c.event(
                &target,
                "AutoRepairMemory",
                &format!(
                    "memory limit of container {container} set to {}",
                    quantity::format_memory(limit)
                ),
            );
            c.touch(&target);
            Ok(())
        },
    );
    engine.register_fn(
        "last_terminations",
        |t: Map| -> Result<rhai::Array, Box<EvalAltResult>> {
            let c = ctx()?;
            let target = target_of(&t)?;
            let reasons = c.call("last terminations", c.cluster.last_terminations(&target))?;
            Ok(reasons.into_iter().map(Dynamic::from).collect())
        },
    );
    engine.register_fn(
        "delete_failed_pods",
        |ns: &str, age: &str| -> Result<INT, Box<EvalAltResult>> {
            let c = ctx()?;
            let age = duration_arg(age)?;
            let n = c.call(
                "delete failed pods",
                c.cluster.delete_failed_pods(ns, age, c.dry_run),
            )?;
            c.record(
                "delete_failed_pods",
                format!(
                    "delete {n} Failed/Evicted pods older than {} in {ns}",
                    humantime::format_duration(age)
                ),
            );
            if n > 0
                && let Some((t, _)) = &c.event_context
            {
                c.event(
                    t,
                    "AutoRepairCleanup",
                    &format!("deleted {n} Failed/Evicted pods in {ns}"),
                );
            }
            Ok(n as INT)
        },
    );
    engine.register_fn(
        "delete_finished_jobs",
        |ns: &str, age: &str| -> Result<INT, Box<EvalAltResult>> {
            let c = ctx()?;
            let age = duration_arg(age)?;
            let n = c.call(
                "delete finished jobs",
                c.cluster.delete_finished_jobs(ns, age, c.dry_run),
            )?;
            c.record(
                "delete_finished_jobs",
                format!(
                    "delete {n} finished Jobs older than {} in {ns}",
                    humantime::format_duration(age)
                ),
            );
            if n > 0
                && let Some((t, _)) = &c.event_context
            {
                c.event(
                    t,
                    "AutoRepairCleanup",
                    &format!("deleted {n} finished Jobs in {ns}"),
                );
            }
            Ok(n as INT)
        },
    );
    engine.register_fn("replicas", |t: Map| -> Result<Map, Box<EvalAltResult>> {
        let c = ctx()?;
        let target = target_of(&t)?;
        let r = c.call("replicas", c.cluster.replicas(&target))?;
        let mut m = Map::new();
        m.insert("desired".into(), Dynamic::from_int(r.desired));
        m.insert("ready".into(), Dynamic::from_int(r.ready));
        m.insert("available".into(), Dynamic::from_int(r.available));
        m.insert("updated".into(), Dynamic::from_int(r.updated));
        Ok(m)
    });

    // --- http
    engine.register_fn("http_get", |url: &str| {
        http_get(url, Duration::from_secs(10))
    });
    engine.register_fn("http_get", |url: &str, timeout: &str| {
        http_get(url, duration_arg(timeout)?)
    });

    // --- knowledge base
    engine.register_fn(
        "kb_success_rate",
        |playbook: &str, alertname: &str, window: &str| -> Result<Dynamic, Box<EvalAltResult>> {
            let since = store::now_ms() - store::ms(duration_arg(window)?);
            let (p, a) = (playbook.to_string(), alertname.to_string());
            let rate = kb(
                move |s| Box::pin(async move { s.success_rate(&p, &a, since).await }),
                None,
            )?;
            Ok(rate.map_or(Dynamic::UNIT, Dynamic::from_float))
        },
    );
    engine.register_fn(
        "kb_count",
        |playbook: &str, t: Map, window: &str| -> Result<INT, Box<EvalAltResult>> {
            let target = target_of(&t)?;
            let since = store::now_ms() - store::ms(duration_arg(window)?);
            let p = playbook.to_string();
            kb(
                move |s| Box::pin(async move { s.changes_by(&p, &target.key(), since).await }),
                0,
            )
        },
    );
    engine.register_fn(
        "kb_recent",
        |t: Map, n: INT| -> Result<rhai::Array, Box<EvalAltResult>> {
            let target = target_of(&t)?;
            let jobs = kb(
                move |s| {
                    Box::pin(async move { s.recent_jobs_of(&target.key(), n.clamp(0, 100)).await })
                },
                Vec::new(),
            )?;
            Ok(jobs
                .into_iter()
                .map(|j| {
                    let mut m = Map::new();
                    m.insert("id".into(), Dynamic::from_int(j.id));
                    m.insert("playbook".into(), j.playbook.into());
                    m.insert("rule".into(), j.rule.into());
                    m.insert("state".into(), j.state.as_str().into());
                    m.insert("outcome".into(), j.outcome.unwrap_or_default().into());
                    m.insert("created_at".into(), Dynamic::from_int(j.created_at));
                    Dynamic::from_map(m)
                })
                .collect())
        },
    );
}
