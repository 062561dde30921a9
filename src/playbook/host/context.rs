//! The state of one run and how host functions reach it.
//!
//! [`RunContext`] is what a run may touch (cluster, store, outbox, deadline, budgets) and what it
//! has done (steps, outcome, changed targets). The runner installs it in a thread-local for the
//! duration of a run ([`Installed`]); host functions find it with [`ctx`], which also charges the
//! call against the run's budgets. Kept apart from the host functions themselves because every
//! family of them uses it and none of them owns it.

use std::cell::RefCell;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rhai::{EvalAltResult, Position};

use super::errors::{
    HOST_CALLS_TOKEN, LOG_TOKEN, cancelled, deadline_reached, runtime_error, terminated,
};
use super::outcome::{Outcome, StepRecord, cap_text};
use crate::cluster::{self, Cluster, Target};
use crate::store::Store;

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
    /// The most replicas `scale()` may set (`playbook.max_replicas`); a rule's `max_replicas`
    /// can only lower it.
    pub max_replicas: i64,
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
            max_replicas: 10,
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
            max_replicas: s.max_replicas.into(),
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
    pub(super) deadline: Instant,
    pub(super) event_context: Option<(Target, String)>,
    pub(super) notify: Option<(Arc<crate::notify::Outbox>, crate::notify::Event)>,
    pub(super) cancel: Vec<Arc<std::sync::atomic::AtomicBool>>,
    pub(super) host_calls: std::sync::atomic::AtomicU32,
    /// Bytes of step text recorded so far, against `settings.max_log`.
    pub(super) logged: std::sync::atomic::AtomicUsize,
    /// Set once `settings.max_log` is reached: the run stops at its next operation.
    pub(super) log_exhausted: std::sync::atomic::AtomicBool,
    pub(super) steps: Mutex<Vec<StepRecord>>,
    pub(super) outcome: Mutex<Option<Outcome>>,
    pub(super) touched: Mutex<Vec<Target>>,
    /// The params that bound `scale()` (the runner sets them from the run's input).
    pub(super) scale_params: Mutex<super::scale_fns::ScaleParams>,
    /// The GitOps settings and the rule's policy the gate applies ([`RunContext::with_gitops`]).
    pub(super) gitops: super::gitops_fns::GitopsConfig,
    /// What the gate saw and did so far.
    pub(super) gitops_run: Mutex<super::outcome::GitopsRun>,
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
            scale_params: Mutex::new(super::scale_fns::ScaleParams::default()),
            gitops: super::gitops_fns::GitopsConfig::default(),
            gitops_run: Mutex::new(super::outcome::GitopsRun::default()),
        }
    }

    /// What the GitOps gate applies: the settings' `gitops:` section and the job's
    /// `spec.gitops` (the rule's policy; `None` takes `gitops.defaults` per kind of change).
    /// Without it (offline runs not given settings) the default settings apply.
    pub fn with_gitops(
        mut self,
        settings: crate::gitops::GitopsSettings,
        rule_policy: Option<crate::rules::GitopsPolicy>,
    ) -> Self {
        self.gitops = super::gitops_fns::GitopsConfig {
            settings,
            rule_policy,
        };
        self
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
    pub(super) fn send_notification(&self, route: &str, message: &str) -> String {
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
    pub(super) fn event(&self, target: &Target, reason: &str, detail: &str) {
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
                tracing::warn!(error = %e, repair_target = %target, "recording a Kubernetes Event failed")
            }
            Err(_) => {
                tracing::warn!(repair_target = %target, "recording a Kubernetes Event timed out")
            }
        }
    }

    pub(super) fn cancelled(&self) -> bool {
        self.cancel
            .iter()
            .any(|f| f.load(std::sync::atomic::Ordering::Relaxed))
    }

    pub(super) fn record(&self, action: &str, detail: String) {
        let detail = if self.dry_run && is_change(action) {
            format!("dry run: would {detail}")
        } else {
            detail
        };
        let mut detail = cap_text(detail, self.settings.max_log_line);
        // The run's total: a change to the cluster and the run's end are always recorded (the
        // audit trail must be complete, and both are bounded by the host-call budget); any
        // other text past the budget is dropped after one step saying so, and the run stops.
        let audit = is_change(action)
            || matches!(
                action,
                "outcome" | "error" | "rollback_refused" | "gitops" | "gitops_skip" | "gitops_hold"
            );
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

    pub(super) fn touch(&self, t: &Target) {
        let mut touched = self.touched.lock().expect("touched lock");
        if !touched.contains(t) {
            touched.push(t.clone());
        }
    }

    /// Time left before the run's deadline.
    pub(super) fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// Runs a cluster call under the call timeout, keeping the cluster error's kind.
    pub(super) fn try_call<T>(
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
    pub(super) fn to_script_error(&self, what: &str, e: cluster::Error) -> Box<EvalAltResult> {
        if self.cancelled() {
            cancelled()
        } else if matches!(e, cluster::Error::Timeout(_)) && self.remaining().is_zero() {
            deadline_reached()
        } else {
            runtime_error(format!("{what}: {e}"))
        }
    }

    /// Runs a future on tokio under the call timeout (never past the deadline).
    pub(super) fn call<T>(
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

/// `64 MiB`, `256 KiB`, `300 bytes`.
pub(super) fn human_bytes(n: usize) -> String {
    if n >= 1 << 20 && n.is_multiple_of(1 << 20) {
        format!("{} MiB", n >> 20)
    } else if n >= 1 << 10 && n.is_multiple_of(1 << 10) {
        format!("{} KiB", n >> 10)
    } else {
        format!("{n} bytes")
    }
}

pub(super) fn is_change(action: &str) -> bool {
    matches!(
        action,
        "restart"
            | "rollback"
            | "set_memory"
            | "scale"
            | "delete_failed_pods"
            | "delete_finished_jobs"
    )
}

thread_local! {
    pub(super) static CURRENT: RefCell<Option<Arc<RunContext>>> = const { RefCell::new(None) };
}

/// Sets the current run context for this thread until dropped.
pub(super) struct Installed;

impl Installed {
    pub(super) fn new(ctx: Arc<RunContext>) -> Installed {
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
pub(super) fn current() -> Result<Arc<RunContext>, Box<EvalAltResult>> {
    CURRENT.with(|c| c.borrow().clone()).ok_or_else(|| {
        runtime_error("host functions are only available inside a playbook run".into())
    })
}

/// The current run's context, counting the host call against the run's budget.
pub(super) fn ctx() -> Result<Arc<RunContext>, Box<EvalAltResult>> {
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
