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
    /// Most memory one run may hold, in bytes ([`super::limits`]).
    pub max_memory: usize,
    /// Most CPU time one run may use (its thread's own; waiting in host calls is free).
    pub max_cpu: Duration,
    /// Longest text one step keeps; longer is cut, saying so.
    pub max_log_line: usize,
    /// Most step text one run may record before it is stopped ("log output truncated").
    pub max_log: usize,
}

impl Default for HostSettings {
    fn default() -> Self {
        HostSettings {
            call_timeout: Duration::from_secs(30),
            http_allow: Vec::new(),
            rollout_poll: Duration::from_secs(2),
            max_host_calls: 500,
            max_memory: 64 << 20,
            max_cpu: Duration::from_secs(10),
            max_log_line: 8 << 10,
            max_log: 256 << 10,
        }
    }
}

impl From<&crate::config::PlaybookSettings> for HostSettings {
    fn from(s: &crate::config::PlaybookSettings) -> Self {
        HostSettings {
            call_timeout: s.call_timeout.0,
            http_allow: s.http_allow.clone(),
            rollout_poll: s.rollout_poll.0,
            max_memory: usize::try_from(s.max_memory.0).unwrap_or(usize::MAX),
            max_cpu: s.max_cpu.0,
            max_log_line: usize::try_from(s.max_log_line.0).unwrap_or(usize::MAX),
            max_log: usize::try_from(s.max_log.0).unwrap_or(usize::MAX),
            ..HostSettings::default()
        }
    }
}

/// The HTTP client of playbook runs (`http_get`) and of repair verification, in the daemon and
/// in `aiops test-playbook`/`simulate` alike: redirects are never followed (a 3xx comes back
/// to the playbook as it is), because `playbook.http_allow` is checked on the URL a playbook
/// names and a redirect would take the request to a host nobody allowed; every request is
/// bounded by the host-call timeout.
pub fn http_client(settings: &HostSettings) -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(settings.call_timeout)
        .timeout(settings.call_timeout)
        .build()
        // Building fails only when the TLS backend cannot initialise; the default client has
        // the same backend and would fail the same way on first use, so surface it loudly.
        .expect("the HTTP client (TLS backend) initialises")
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
    /// Bytes of step text recorded so far, against `settings.max_log`.
    logged: std::sync::atomic::AtomicUsize,
    /// Set once `settings.max_log` is reached: the run stops at its next operation.
    log_exhausted: std::sync::atomic::AtomicBool,
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
            logged: std::sync::atomic::AtomicUsize::new(0),
            log_exhausted: std::sync::atomic::AtomicBool::new(false),
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
        let mut detail = cap_text(detail, self.settings.max_log_line);
        // The run's total: a change to the cluster and the run's end are always recorded (the
        // audit trail must be complete, and both are bounded by the host-call budget); any
        // other text past the budget is dropped after one step saying so, and the run stops.
        let audit = is_change(action) || matches!(action, "outcome" | "error" | "rollback_refused");
        let used = self
            .logged
            .fetch_add(detail.len(), std::sync::atomic::Ordering::Relaxed)
            + detail.len();
        if used > self.settings.max_log && !audit {
            if self
                .log_exhausted
                .swap(true, std::sync::atomic::Ordering::Relaxed)
            {
                return;
            }
            detail = format!(
                "log output truncated: the run recorded more than {} of step text; the rest is dropped and the run is stopped",
                human_bytes(self.settings.max_log)
            );
        }
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

/// `64 MiB`, `256 KiB`, `300 bytes`.
fn human_bytes(n: usize) -> String {
    if n >= 1 << 20 && n.is_multiple_of(1 << 20) {
        format!("{} MiB", n >> 20)
    } else if n >= 1 << 10 && n.is_multiple_of(1 << 10) {
        format!("{} KiB", n >> 10)
    } else {
        format!("{n} bytes")
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
    if c.log_exhausted.load(std::sync::atomic::Ordering::Relaxed) {
        return Err(terminated(LOG_TOKEN));
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
/// The marker for a run stopped by `playbook.max_memory`.
const MEMORY_TOKEN: &str = "aiops:memory";
/// The marker for a run stopped by `playbook.max_cpu`.
const CPU_TOKEN: &str = "aiops:cpu";
/// The marker for a run stopped by `playbook.max_log`.
const LOG_TOKEN: &str = "aiops:log";

/// Ends the run for `token`'s reason. Not catchable by the script.
fn terminated(token: &str) -> Box<EvalAltResult> {
    Box::new(EvalAltResult::ErrorTerminated(token.into(), Position::NONE))
}

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
        // Redirects are not followed (see http_client): say where it pointed, by host only
        // (the path and query may hold a token).
        let moved = resp
            .status()
            .is_redirection()
            .then(|| {
                resp.headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|l| l.to_str().ok())
                    .and_then(|l| reqwest::Url::parse(l).ok())
                    .and_then(|u| {
                        let host = u.host_str()?.to_string();
                        Some(u.port().map_or(host.clone(), |p| format!("{host}:{p}")))
                    })
            })
            .flatten();
        // Read at most 64 KiB: a health endpoint has no business sending more.
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await? {
            let room = MAX_HTTP_BODY - body.len();
            body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if body.len() >= MAX_HTTP_BODY {
                break;
            }
        }
        Ok::<_, reqwest::Error>((status, moved, String::from_utf8_lossy(&body).into_owned()))
    });
    let mut m = Map::new();
    match res {
        Ok((status, moved, body)) => {
            let note = match moved {
                Some(h) => format!(
                    " (redirect to {h} not followed: playbooks reach only playbook.http_allow, directly)"
                ),
                None if (300..400).contains(&status) => " (redirect not followed)".to_string(),
                None => String::new(),
            };
            c.record("http_get", format!("GET {shown} -> {status}{note}"));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::memory::MemoryCluster;

    /// Small limits, so each hostile script is stopped in well under a second.
    fn tight() -> HostSettings {
        HostSettings {
            max_memory: 8 << 20,
            max_cpu: Duration::from_millis(500),
            max_log_line: 1024,
            max_log: 16 << 10,
            ..HostSettings::default()
        }
    }

    /// Runs `source` as playbook `t.rhai` (dry run, empty cluster).
    fn run(source: &str, settings: HostSettings) -> RunResult {
        run_on(source, settings, MemoryCluster::empty(), true)
    }

    fn run_on(
        source: &str,
        settings: HostSettings,
        cluster: MemoryCluster,
        dry_run: bool,
    ) -> RunResult {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        // As on the daemon's blocking threads: inside the runtime's context, not on a worker.
        let _context = rt.enter();
        let runner = Runner::new();
        let playbook = super::super::Playbook {
            name: "t".into(),
            path: "t.rhai".into(),
            ast: runner.engine().compile(source).unwrap(),
        };
        let target = Target {
            namespace: "prod".into(),
            kind: "deployment".into(),
            name: "web".into(),
        };
        let input = RunInput::new(
            &Default::default(),
            &Default::default(),
            "fp",
            "2026-11-30T00:00:00Z",
            "firing",
            &serde_json::json!({}),
            &target,
        );
        let http = http_client(&settings);
        let ctx = Arc::new(RunContext::new(
            Arc::new(cluster),
            None,
            None,
            rt.handle().clone(),
            dry_run,
            settings,
            http,
            Duration::from_secs(60),
        ));
        runner.run(&playbook, input, ctx)
    }

    fn stopped_for(source: &str, reason: &str) -> RunResult {
        let started = Instant::now();
        let r = run(source, tight());
        assert_eq!(r.outcome.kind(), "inconclusive", "{:?}", r.outcome);
        assert!(
            r.outcome.message().contains(reason),
            "{:?} lacks {reason:?}",
            r.outcome
        );
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "stopped promptly: {:?}",
            started.elapsed()
        );
        r
    }

    /// A 512 KiB string, so `big + i` stays under Rhai's 1 MiB string limit.
    const BIG: &str = "let big = \"x\"; while big.len() < 500000 { big += big; }\n";

    #[test]
    fn a_map_grown_by_index_assignment_is_stopped_at_the_memory_limit() {
        stopped_for(
            &format!(
                "{BIG}let m = #{{}}; let i = 0;\nloop {{ m[\"k\" + i] = big + i; i += 1; }}\n"
            ),
            "memory limit exceeded",
        );
    }

    #[test]
    fn big_map_keys_are_stopped_at_the_memory_limit() {
        stopped_for(
            &format!("{BIG}let m = #{{}}; let i = 0;\nloop {{ m[big + i] = i; i += 1; }}\n"),
            "memory limit exceeded",
        );
    }

    #[test]
    fn a_curry_loop_is_stopped_at_the_memory_limit() {
        stopped_for(
            "fn f(a) { a }\nlet f = Fn(\"f\");\nloop { f = f.curry(f); }\n",
            "memory limit exceeded",
        );
    }

    #[test]
    fn arrays_of_maps_and_closures_capturing_big_values_are_stopped_at_the_memory_limit() {
        // (Strings inside an array's maps are summed by Rhai's own check; their keys are not.)
        stopped_for(
            &format!(
                "{BIG}let a = [];\nloop {{ let m = #{{}}; m[big + a.len()] = 1; a.push(m); }}\n"
            ),
            "memory limit exceeded",
        );
        stopped_for(
            &format!("{BIG}let fs = [];\nloop {{ let s = big + fs.len(); fs.push(|| s); }}\n"),
            "memory limit exceeded",
        );
    }

    #[test]
    fn a_string_heavy_loop_is_stopped_at_the_cpu_limit_not_the_deadline() {
        // Few operations, each scanning a megabyte: the operation limit never triggers.
        let r = stopped_for(
            &format!("{BIG}let n = 0;\nloop {{ n += big.index_of(\"y\"); }}\n"),
            "CPU time limit exceeded",
        );
        assert!(r.outcome.message().contains("t.rhai:"), "{:?}", r.outcome);
    }

    #[test]
    fn waiting_in_a_host_call_does_not_spend_cpu_time() {
        let state = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/playbooks/stuck-rollout.yaml"
        ))
        .unwrap();
        let settings = HostSettings {
            max_cpu: Duration::from_millis(100),
            rollout_poll: Duration::from_millis(20),
            ..tight()
        };
        // 600 ms waiting on a rollout that never finishes: six times the CPU budget in wall
        // time, but the run's thread sleeps between polls. The loop after it crosses many
        // progress checks, where a wall-clock count would stop the run.
        let started = Instant::now();
        let r = run_on(
            "let t = #{namespace: \"prod\", kind: \"deployment\", name: \"stuck\"};\nlet s = wait_rollout(t, \"600ms\");\nlet n = 0;\nfor i in 0..5000 { n += i; }\nsuccess(\"waited: \" + s.complete);\n",
            settings,
            MemoryCluster::from_yaml(&state).unwrap(),
            false,
        );
        assert!(started.elapsed() >= Duration::from_millis(600));
        assert_eq!(r.outcome, Outcome::Success("waited: false".into()), "{r:?}");
    }

    #[test]
    fn a_log_flood_is_truncated_per_line_and_stopped_at_the_run_total() {
        let r = stopped_for(
            &format!("{BIG}loop {{ log(big); }}\n"),
            "log output truncated",
        );
        let logs: Vec<_> = r.steps.iter().filter(|s| s.action == "log").collect();
        assert!(logs.len() >= 2, "{:#?}", r.steps);
        assert!(
            logs[0].detail.len() <= 1024
                && logs[0]
                    .detail
                    .ends_with("more bytes; log output truncated]"),
            "{}",
            logs[0].detail
        );
        let total: usize = r.steps.iter().map(|s| s.detail.len()).sum();
        assert!(total < (16 << 10) + 3 * 1024, "{total} bytes of steps");
        assert!(
            logs.last()
                .unwrap()
                .detail
                .starts_with("log output truncated: the run recorded more than 16 KiB"),
            "{:#?}",
            logs.last()
        );
    }

    #[test]
    fn a_huge_outcome_message_is_capped() {
        let r = run(&format!("{BIG}fail(big);\n"), tight());
        assert_eq!(r.outcome.kind(), "failure");
        assert!(
            r.outcome.message().len() <= 1024,
            "{}",
            r.outcome.message().len()
        );
        assert!(r.outcome.message().ends_with("log output truncated]"));
    }

    #[test]
    fn an_ordinary_playbook_runs_within_the_default_limits() {
        let r = run(
            &format!(
                "{BIG}let m = #{{}};\nfor i in 0..100 {{ m[\"k\" + i] = i; }}\nlog(\"keys: \" + m.len());\nsuccess(\"fine\");\n"
            ),
            HostSettings::default(),
        );
        assert_eq!(r.outcome, Outcome::Success("fine".into()), "{r:?}");
        assert!(r.steps.iter().any(|s| s.detail == "keys: 100"));
    }

    #[test]
    fn cap_text_cuts_on_a_character_boundary_and_says_how_much() {
        let s = "é".repeat(1000);
        let c = cap_text(s.clone(), 300);
        assert!(c.len() <= 300, "{}", c.len());
        assert!(c.ends_with("more bytes; log output truncated]"), "{c}");
        assert_eq!(cap_text("short".into(), 300), "short");
    }
}
