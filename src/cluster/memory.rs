//! [`MemoryCluster`]: a stateful, in-memory [`Cluster`] described in YAML.
//!
//! Playbooks must be testable without a cluster, and a test is only meaningful when the fake
//! answers the way the API server, the controllers and kubectl would. So this backend keeps real
//! state and applies changes to it: a restart or a memory change is a new pod template, hence a
//! new revision and a rollout; `rollout undo` restores the previous template under a new revision
//! number; cleanup deletes only what is old enough; paused Deployments and workloads annotated
//! `aiops.wooo.work/auto-repair: "disabled"` are refused. Dry runs validate and compute the answer
//! without changing anything, as server-side `dryRun=All` does.
//!
//! It serves `aiops test-playbook --state FILE`, the playbook tests, and a daemon whose settings
//! give `cluster.state_file`.
//!
//! Rollouts are modelled simply: once started, a rollout is immediately in its final state, which
//! the workload's `rollout` setting chooses (`complete`, `stuck`, `fails`). A state file can also
//! describe a rollout already in trouble with `current_rollout`.
//!
//! State file format (every field but `namespace` and `name` optional):
//!
//! ```yaml
//! workloads:
//!   - namespace: prod
//!     name: web
//!     kind: Deployment            # Deployment (default), StatefulSet, DaemonSet
//!     replicas: 3                 # default 1
//!     paused: false
//!     revision: 3                 # current revision, default 1
//!     history: [1, 2]             # older revisions still available (ReplicaSets)
//!     rollout: complete           # how the next rollout ends: complete | stuck | fails
//!     current_rollout: complete   # how the latest rollout stands now: complete | stuck | fails
//!     annotations: {}             # e.g. aiops.wooo.work/auto-repair: "disabled"
//!     containers:
//!       - name: app
//!         memory: {request: 256Mi, limit: 512Mi}
//! pods:
//!   - namespace: prod
//!     name: web-7d9f-abc
//!     owner: web                  # owning workload or Job name
//!     phase: Running              # Running (default) | Pending | Succeeded | Failed | Unknown
//!     reason: ""                  # e.g. Evicted
//!     terminations: [OOMKilled]   # last termination reasons of its containers
//!     finished_ago: 2h            # Failed pods: how long ago they finished (missing: just now)
//! jobs:
//!   - namespace: prod
//!     name: backup-1
//!     finished_ago: 3h            # omit for a running Job
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::quantity::{format_memory, parse_memory};
use super::{Cluster, Error, Memory, Replicas, Result, Rollback, RolloutStatus, Target};

/// The annotation that opts a workload out of automatic repairs (value `disabled`).
pub const AUTO_REPAIR_ANNOTATION: &str = "aiops.wooo.work/auto-repair";

/// How many old revisions a Deployment keeps, as `spec.revisionHistoryLimit` defaults to.
const REVISION_HISTORY_LIMIT: usize = 10;

/// Why a state file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The file could not be read.
    #[error("cannot read cluster state {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The YAML is malformed or does not fit the format.
    #[error("{location}: {message}")]
    Yaml {
        /// `file:line:column`, or `line L column C` for text without a file.
        location: String,
        /// 1-based line, when known.
        line: Option<usize>,
        /// What is wrong.
        message: String,
    },
    /// The YAML parses but describes an impossible cluster (duplicates, bad revisions, …).
    #[error("{origin}: {message}")]
    Invalid {
        /// The file, or `cluster state`.
        origin: String,
        /// What is wrong, naming the object.
        message: String,
    },
}

/// The whole cluster: what a state file describes, and what [`MemoryCluster::snapshot`] returns.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    /// Deployments, StatefulSets and DaemonSets.
    #[serde(default)]
    pub workloads: Vec<Workload>,
    /// Pods.
    #[serde(default)]
    pub pods: Vec<Pod>,
    /// Jobs.
    #[serde(default)]
    pub jobs: Vec<Job>,
}

/// A workload kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    /// apps/v1 Deployment (the default).
    #[default]
    Deployment,
    /// apps/v1 StatefulSet.
    StatefulSet,
    /// apps/v1 DaemonSet.
    DaemonSet,
}

impl Kind {
    /// Canonical spelling, as in [`Target::kind`].
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Deployment => "Deployment",
            Kind::StatefulSet => "StatefulSet",
            Kind::DaemonSet => "DaemonSet",
        }
    }

    /// How kubectl names the kind in rollout messages.
    fn kubectl_name(self) -> &'static str {
        match self {
            Kind::Deployment => "deployment",
            Kind::StatefulSet => "statefulset",
            Kind::DaemonSet => "daemon set",
        }
    }
}

/// How a rollout ends (or stands).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RolloutOutcome {
    /// Every replica updated and available.
    #[default]
    Complete,
    /// Progressing forever: one updated replica never becomes available.
    Stuck,
    /// ProgressDeadlineExceeded: none of the new replicas becomes available.
    Fails,
}

/// A Deployment, StatefulSet or DaemonSet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Kind, Deployment by default.
    #[serde(default)]
    pub kind: Kind,
    /// spec.replicas, 1 by default.
    #[serde(default = "one")]
    pub replicas: i64,
    /// spec.paused (Deployments only).
    #[serde(default)]
    pub paused: bool,
    /// Current revision, 1 by default.
    #[serde(default = "one")]
    pub revision: i64,
    /// Older revisions still available for rollback, each below `revision`.
    #[serde(default)]
    pub history: Vec<i64>,
    /// How the next rollout ends.
    #[serde(default)]
    pub rollout: RolloutOutcome,
    /// How the latest rollout stands now; a started rollout takes the value of `rollout`.
    #[serde(default)]
    pub current_rollout: RolloutOutcome,
    /// metadata.annotations.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// The pod template's containers.
    #[serde(default)]
    pub containers: Vec<Container>,
    /// Pod templates (containers) of the revisions in `history`. Revisions from the state file
    /// get the file's containers, the best knowledge there is; revisions created here get the
    /// exact template they replaced.
    #[serde(skip)]
    pub templates: BTreeMap<i64, Vec<Container>>,
}

fn one() -> i64 {
    1
}

/// A container of a pod template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Container {
    /// Container name.
    pub name: String,
    /// resources.requests.memory / resources.limits.memory.
    #[serde(default)]
    pub memory: MemorySettings,
}

/// Memory request and limit in bytes; written as quantities (`256Mi`) in the state file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemorySettings {
    /// Request, if set.
    #[serde(
        default,
        with = "quantity_field",
        skip_serializing_if = "Option::is_none"
    )]
    pub request: Option<i64>,
    /// Limit, if set.
    #[serde(
        default,
        with = "quantity_field",
        skip_serializing_if = "Option::is_none"
    )]
    pub limit: Option<i64>,
}

/// A pod's status.phase.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// Pending.
    Pending,
    /// Running (the default).
    #[default]
    Running,
    /// Succeeded.
    Succeeded,
    /// Failed (Evicted pods among them).
    Failed,
    /// Unknown.
    Unknown,
}

/// A pod.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pod {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Name of the owning workload or Job; when absent, a pod named `<workload>-…` belongs to
    /// that workload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// status.phase.
    #[serde(default)]
    pub phase: Phase,
    /// status.reason, e.g. `Evicted`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// Last termination reasons of its containers, e.g. `OOMKilled`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub terminations: Vec<String>,
    /// How long before loading it finished; missing means just then.
    #[serde(
        default,
        with = "duration_field",
        skip_serializing_if = "Option::is_none"
    )]
    pub finished_ago: Option<Duration>,
    /// When it finished, computed at load from `finished_ago`.
    #[serde(skip)]
    pub finished_at: Option<SystemTime>,
}

/// A Job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Job {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// How long before loading it finished; absent for a running Job.
    #[serde(
        default,
        with = "duration_field",
        skip_serializing_if = "Option::is_none"
    )]
    pub finished_ago: Option<Duration>,
    /// When it finished, computed at load from `finished_ago`; None while running.
    #[serde(skip)]
    pub finished_at: Option<SystemTime>,
}

/// `Option<i64>` bytes as an optional Kubernetes quantity.
mod quantity_field {
    use serde::{Deserialize, Deserializer, Serializer, de};

    pub fn serialize<S: Serializer>(value: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(bytes) => s.serialize_str(&super::format_memory(*bytes)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(i64),
            Text(String),
        }
        match Option::<Raw>::deserialize(d)? {
            None => Ok(None),
            Some(Raw::Int(bytes)) if bytes >= 0 => Ok(Some(bytes)),
            Some(Raw::Int(bytes)) => Err(de::Error::custom(format!(
                "negative memory quantity {bytes}"
            ))),
            Some(Raw::Text(text)) => super::parse_memory(&text)
                .map(Some)
                .map_err(de::Error::custom),
        }
    }
}

/// `Option<Duration>` as an optional humantime duration (`2h`, `90s`, `1d 3h`).
mod duration_field {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer, de};

    pub fn serialize<S: Serializer>(value: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(d) => s.serialize_str(&humantime::format_duration(*d).to_string()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(text) => humantime::parse_duration(text.trim())
                .map(Some)
                .map_err(|e| {
                    de::Error::custom(format!(
                        "invalid duration {text:?} ({e}); expected e.g. 90s, 15m, 2h, 3d"
                    ))
                }),
        }
    }
}

/// The state and the log of applied changes, behind one lock.
#[derive(Debug, Clone, Default)]
struct Inner {
    state: State,
    actions: Vec<String>,
}

/// An in-memory cluster that applies changes as Kubernetes would; see the module docs.
#[derive(Debug, Default)]
pub struct MemoryCluster {
    inner: Mutex<Inner>,
}

impl MemoryCluster {
    /// A cluster with nothing in it.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Parses a state file's text; errors give the line and column.
    pub fn from_yaml(text: &str) -> Result<Self, StateError> {
        Self::parse(text, None)
    }

    /// Reads and parses a state file; errors give `file:line:column`.
    pub fn load(path: &Path) -> Result<Self, StateError> {
        let text = std::fs::read_to_string(path).map_err(|source| StateError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, Some(path))
    }

    /// A cluster in `state`, validated; finish times are computed from `finished_ago` now.
    pub fn from_state(state: State) -> Result<Self, StateError> {
        Self::prepare(state, "cluster state")
    }

    fn parse(text: &str, path: Option<&Path>) -> Result<Self, StateError> {
        let state = match serde_yaml::from_str::<Option<State>>(text) {
            Ok(state) => state.unwrap_or_default(),
            Err(err) => {
                let full = err.to_string();
                let line = err.location().map(|l| l.line());
                let (location, message) = match (err.location(), path) {
                    (Some(l), Some(p)) => (
                        format!("{}:{}:{}", p.display(), l.line(), l.column()),
                        strip_location(&full),
                    ),
                    (Some(l), None) => (
                        format!("line {} column {}", l.line(), l.column()),
                        strip_location(&full),
                    ),
                    (None, Some(p)) => (p.display().to_string(), full.clone()),
                    (None, None) => ("cluster state".to_owned(), full.clone()),
                };
                return Err(StateError::Yaml {
                    location,
                    line,
                    message,
                });
            }
        };
        let origin = path.map_or_else(|| "cluster state".to_owned(), |p| p.display().to_string());
        Self::prepare(state, &origin)
    }

    fn prepare(mut state: State, origin: &str) -> Result<Self, StateError> {
        validate(&state).map_err(|message| StateError::Invalid {
            origin: origin.to_owned(),
            message,
        })?;
        let now = SystemTime::now();
        let ago = |d: Duration| now.checked_sub(d).unwrap_or(SystemTime::UNIX_EPOCH);
        for w in &mut state.workloads {
            w.history.sort_unstable();
            for r in &w.history {
                w.templates
                    .entry(*r)
                    .or_insert_with(|| w.containers.clone());
            }
        }
        for pod in &mut state.pods {
            pod.finished_at = Some(ago(pod.finished_ago.unwrap_or_default()));
        }
        for job in &mut state.jobs {
            job.finished_at = job.finished_ago.map(ago);
        }
        Ok(Self {
            inner: Mutex::new(Inner {
                state,
                actions: Vec::new(),
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A copy of the current state.
    pub fn snapshot(&self) -> State {
        self.lock().state.clone()
    }

    /// An independent copy (state and actions so far), e.g. to try a repair without touching
    /// this one.
    pub fn deep_clone(&self) -> MemoryCluster {
        MemoryCluster {
            inner: Mutex::new(self.lock().clone()),
        }
    }

    /// Changes applied so far, in order, e.g. `restart prod/Deployment/web`,
    /// `set memory prod/Deployment/web container app: request 256Mi, limit 640Mi`,
    /// `rollback prod/Deployment/web to revision 2`, `delete pod prod/web-x (Evicted)`,
    /// `delete job prod/backup-1`. Dry runs add nothing.
    pub fn actions(&self) -> Vec<String> {
        self.lock().actions.clone()
    }
}

/// serde_norway appends " at line L column C"; the location is reported separately.
fn strip_location(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

fn validate(state: &State) -> Result<(), String> {
    let mut seen = BTreeSet::new();
    for w in &state.workloads {
        let what = format!("{} {}/{}", w.kind.as_str(), w.namespace, w.name);
        if w.namespace.is_empty() || w.name.is_empty() {
            return Err(format!("{what}: namespace and name must not be empty"));
        }
        if !seen.insert((w.namespace.as_str(), w.kind.as_str(), w.name.as_str())) {
            return Err(format!("{what} is listed twice"));
        }
        if w.replicas < 0 {
            return Err(format!("{what}: replicas must not be negative"));
        }
        if w.paused && w.kind != Kind::Deployment {
            return Err(format!("{what}: only Deployments can be paused"));
        }
        if w.revision < 1 {
            return Err(format!("{what}: revision must be at least 1"));
        }
        if let Some(r) = w.history.iter().find(|r| **r < 1 || **r >= w.revision) {
            return Err(format!(
                "{what}: history revision {r} must be between 1 and the current revision {} (exclusive)",
                w.revision
            ));
        }
        if w.history.iter().collect::<BTreeSet<_>>().len() != w.history.len() {
            return Err(format!("{what}: history lists a revision twice"));
        }
        let mut names = BTreeSet::new();
        for c in &w.containers {
            if !names.insert(c.name.as_str()) {
                return Err(format!("{what}: container {} is listed twice", c.name));
            }
            if let (Some(request), Some(limit)) = (c.memory.request, c.memory.limit)
                && limit < request
            {
                return Err(format!(
                    "{what}: container {} has a memory limit ({}) below its request ({})",
                    c.name,
                    format_memory(limit),
                    format_memory(request)
                ));
            }
        }
    }
    let mut pods = BTreeSet::new();
    for p in &state.pods {
        if !pods.insert((p.namespace.as_str(), p.name.as_str())) {
            return Err(format!("pod {}/{} is listed twice", p.namespace, p.name));
        }
    }
    let mut jobs = BTreeSet::new();
    for j in &state.jobs {
        if !jobs.insert((j.namespace.as_str(), j.name.as_str())) {
            return Err(format!("job {}/{} is listed twice", j.namespace, j.name));
        }
    }
    Ok(())
}

impl Workload {
    /// `namespace/Kind/name`, as in actions.
    fn key(&self) -> String {
        format!("{}/{}/{}", self.namespace, self.kind.as_str(), self.name)
    }

    fn describe(&self) -> String {
        format!("{} {}/{}", self.kind.as_str(), self.namespace, self.name)
    }

    /// Refuses changes to a workload opted out of repairs.
    fn check_enabled(&self) -> Result<()> {
        match self.annotations.get(AUTO_REPAIR_ANNOTATION) {
            Some(v) if v.trim().eq_ignore_ascii_case("disabled") => Err(Error::Refused(format!(
                "{} is annotated {AUTO_REPAIR_ANNOTATION}=disabled",
                self.describe()
            ))),
            _ => Ok(()),
        }
    }

    fn check_not_paused(&self) -> Result<()> {
        if self.paused {
            return Err(Error::Refused(format!(
                "deployment {}/{} is paused",
                self.namespace, self.name
            )));
        }
        Ok(())
    }

    fn max_revision(&self) -> i64 {
        self.history
            .iter()
            .copied()
            .chain([self.revision])
            .max()
            .unwrap_or(self.revision)
    }

    /// A new pod template: the current revision joins the history, the template gets a new
    /// revision number and a rollout starts.
    fn new_template(&mut self, containers: Vec<Container>) {
        let old = std::mem::replace(&mut self.containers, containers);
        self.templates.insert(self.revision, old);
        self.history.push(self.revision);
        self.revision = self.max_revision() + 1;
        self.prune_history();
        self.current_rollout = self.rollout;
    }

    fn prune_history(&mut self) {
        self.history.sort_unstable();
        while self.history.len() > REVISION_HISTORY_LIMIT {
            let oldest = self.history.remove(0);
            self.templates.remove(&oldest);
        }
    }

    /// Replica counts given the latest rollout: complete ⇒ all; stuck ⇒ all updated, one of
    /// them never available; fails ⇒ all updated, none available.
    fn replicas(&self) -> Replicas {
        let n = self.replicas;
        let available = match self.current_rollout {
            RolloutOutcome::Complete => n,
            RolloutOutcome::Stuck => (n - 1).max(0),
            RolloutOutcome::Fails => 0,
        };
        Replicas {
            desired: n,
            ready: available,
            available,
            updated: n,
        }
    }

    fn rollout_status(&self) -> RolloutStatus {
        let r = self.replicas();
        let name = &self.name;
        let kind = self.kind.kubectl_name();
        let outcome = if r.available == r.desired {
            RolloutOutcome::Complete
        } else {
            self.current_rollout
        };
        let (complete, failed, message) = match (outcome, self.kind) {
            (RolloutOutcome::Complete, Kind::StatefulSet) => (
                true,
                false,
                format!(
                    "statefulset rolling update complete {} pods at revision {name}-{}...",
                    r.desired, self.revision
                ),
            ),
            (RolloutOutcome::Complete, _) => (
                true,
                false,
                format!("{kind} \"{name}\" successfully rolled out"),
            ),
            (RolloutOutcome::Stuck, Kind::StatefulSet) => (
                false,
                false,
                format!("Waiting for {} pods to be ready...", r.desired - r.ready),
            ),
            (RolloutOutcome::Stuck, _) => {
                let unit = if self.kind == Kind::Deployment {
                    "replicas"
                } else {
                    "pods"
                };
                (
                    false,
                    false,
                    format!(
                        "Waiting for {kind} \"{name}\" rollout to finish: {} of {} updated {unit} are available...",
                        r.available, r.updated
                    ),
                )
            }
            (RolloutOutcome::Fails, Kind::Deployment) => (
                false,
                true,
                format!("deployment \"{name}\" exceeded its progress deadline"),
            ),
            (RolloutOutcome::Fails, _) => (
                false,
                true,
                format!(
                    "{kind} \"{name}\" rollout is failing: {} of {} updated pods are available",
                    r.available, r.updated
                ),
            ),
        };
        RolloutStatus {
            complete,
            failed,
            message,
        }
    }
}

fn age(now: SystemTime, finished_at: SystemTime) -> Duration {
    now.duration_since(finished_at).unwrap_or_default()
}

impl Inner {
    fn workload(&self, target: &Target) -> Result<&Workload> {
        self.state
            .workloads
            .iter()
            .find(|w| {
                w.namespace == target.namespace
                    && w.name == target.name
                    && w.kind.as_str().eq_ignore_ascii_case(&target.kind)
            })
            .ok_or_else(|| {
                Error::NotFound(format!(
                    "{} {}/{}",
                    target.kind, target.namespace, target.name
                ))
            })
    }

    fn workload_mut(&mut self, target: &Target) -> Result<&mut Workload> {
        self.workload(target)?;
        Ok(self
            .state
            .workloads
            .iter_mut()
            .find(|w| {
                w.namespace == target.namespace
                    && w.name == target.name
                    && w.kind.as_str().eq_ignore_ascii_case(&target.kind)
            })
            .expect("found above"))
    }

    fn restart(&mut self, target: &Target, dry_run: bool) -> Result<()> {
        let w = self.workload_mut(target)?;
        w.check_enabled()?;
        w.check_not_paused()?;
        if dry_run {
            return Ok(());
        }
        let containers = w.containers.clone();
        w.new_template(containers);
        let action = format!("restart {}", w.key());
        self.actions.push(action);
        Ok(())
    }

    fn rollback(&mut self, target: &Target, dry_run: bool) -> Result<Rollback> {
        let w = self.workload_mut(target)?;
        w.check_enabled()?;
        if w.kind != Kind::Deployment {
            return Err(Error::Refused(
                "rollback is only supported for Deployments".to_owned(),
            ));
        }
        w.check_not_paused()?;
        let Some(previous) = w.history.iter().copied().max() else {
            return Ok(Rollback {
                done: false,
                revision: None,
                reason: format!(
                    "no previous revision of deployment {}/{}",
                    w.namespace, w.name
                ),
            });
        };
        if !dry_run {
            // As the controller does: the old ReplicaSet becomes current under a new revision
            // number; the old number leaves the history and the current one joins it.
            let template = w
                .templates
                .remove(&previous)
                .unwrap_or_else(|| w.containers.clone());
            w.history.retain(|r| *r != previous);
            w.new_template(template);
            let action = format!("rollback {} to revision {previous}", w.key());
            self.actions.push(action);
        }
        Ok(Rollback {
            done: true,
            revision: Some(previous),
            reason: String::new(),
        })
    }

    fn memory(&self, target: &Target, container: Option<&str>) -> Result<Memory> {
        let w = self.workload(target)?;
        let c = match container {
            None => w
                .containers
                .first()
                .ok_or_else(|| Error::NotFound(format!("containers of {}", w.describe())))?,
            Some(name) => w
                .containers
                .iter()
                .find(|c| c.name == name)
                .ok_or_else(|| Error::NotFound(format!("container {name} in {}", w.describe())))?,
        };
        Ok(Memory {
            container: c.name.clone(),
            request: c.memory.request,
            limit: c.memory.limit,
        })
    }

    fn set_memory(
        &mut self,
        target: &Target,
        container: &str,
        request: Option<i64>,
        limit: i64,
        dry_run: bool,
    ) -> Result<()> {
        let w = self.workload_mut(target)?;
        w.check_enabled()?;
        w.check_not_paused()?;
        let what = w.describe();
        let index = w
            .containers
            .iter()
            .position(|c| c.name == container)
            .ok_or_else(|| Error::NotFound(format!("container {container} in {what}")))?;
        if limit <= 0 || request.is_some_and(|r| r < 0) {
            return Err(Error::Refused(format!(
                "memory must be positive (container {container} of {what})"
            )));
        }
        let new_request = request.or(w.containers[index].memory.request);
        if let Some(r) = new_request
            && limit < r
        {
            return Err(Error::Refused(format!(
                "limit below request: limit {} < request {} (container {container} of {what})",
                format_memory(limit),
                format_memory(r)
            )));
        }
        if dry_run {
            return Ok(());
        }
        let settings = MemorySettings {
            request: new_request,
            limit: Some(limit),
        };
        if w.containers[index].memory != settings {
            // A template change: a new revision and a rollout. Patching identical values is a
            // no-op for the API server; the call is still recorded below.
            let mut containers = w.containers.clone();
            containers[index].memory = settings;
            w.new_template(containers);
        }
        let action = format!(
            "set memory {} container {container}: request {}, limit {}",
            w.key(),
            new_request.map_or_else(|| "unset".to_owned(), format_memory),
            format_memory(limit)
        );
        self.actions.push(action);
        Ok(())
    }

    fn last_terminations(&self, target: &Target) -> Result<Vec<String>> {
        let w = self.workload(target)?;
        let prefix = format!("{}-", w.name);
        let mut reasons: Vec<String> = Vec::new();
        let pods = self.state.pods.iter().filter(|p| {
            p.namespace == w.namespace
                && match &p.owner {
                    Some(owner) => *owner == w.name,
                    None => p.name.starts_with(&prefix),
                }
        });
        for reason in pods.flat_map(|p| &p.terminations) {
            if !reasons.contains(reason) {
                reasons.push(reason.clone());
            }
        }
        Ok(reasons)
    }

    fn delete_failed_pods(&mut self, namespace: &str, older_than: Duration, dry_run: bool) -> u64 {
        let now = SystemTime::now();
        let doomed = |p: &Pod| {
            p.namespace == namespace
                && p.phase == Phase::Failed
                && p.finished_at.is_none_or(|at| age(now, at) >= older_than)
        };
        let count = self.state.pods.iter().filter(|p| doomed(p)).count() as u64;
        if !dry_run {
            let (gone, kept) = std::mem::take(&mut self.state.pods)
                .into_iter()
                .partition(doomed);
            self.state.pods = kept;
            let gone: Vec<Pod> = gone;
            for p in gone {
                let reason = if p.reason.is_empty() {
                    "Failed"
                } else {
                    &p.reason
                };
                self.actions
                    .push(format!("delete pod {}/{} ({reason})", p.namespace, p.name));
            }
        }
        count
    }

    /// Deletes finished Jobs; as `kubectl delete job` (background propagation), their pods go too.
    fn delete_finished_jobs(
        &mut self,
        namespace: &str,
        older_than: Duration,
        dry_run: bool,
    ) -> u64 {
        let now = SystemTime::now();
        let doomed = |j: &Job| {
            j.namespace == namespace && j.finished_at.is_some_and(|at| age(now, at) >= older_than)
        };
        let count = self.state.jobs.iter().filter(|j| doomed(j)).count() as u64;
        if !dry_run {
            let (gone, kept): (Vec<Job>, Vec<Job>) = std::mem::take(&mut self.state.jobs)
                .into_iter()
                .partition(doomed);
            self.state.jobs = kept;
            for j in gone {
                self.state.pods.retain(|p| {
                    !(p.namespace == j.namespace && p.owner.as_deref() == Some(j.name.as_str()))
                });
                self.actions
                    .push(format!("delete job {}/{}", j.namespace, j.name));
            }
        }
        count
    }
}

/// Refuses names the API server would refuse, with the error the Kubernetes backend gives, so a
/// playbook tested against this cluster meets the same refusal as in production.
fn valid_target(target: &Target) -> Result<()> {
    target
        .check_names()
        .map_err(|e| Error::Refused(format!("invalid target: {e}")))
}

fn valid_namespace(ns: &str) -> Result<()> {
    crate::k8s_name::namespace(ns).map_err(|why| {
        Error::Refused(format!(
            "namespace {} {why}; a namespace must be a DNS-1123 label",
            crate::k8s_name::quoted(ns, 80)
        ))
    })
}

#[async_trait]
impl Cluster for MemoryCluster {
    async fn restart(&self, target: &Target, dry_run: bool) -> Result<()> {
        valid_target(target)?;
        self.lock().restart(target, dry_run)
    }

    async fn rollout_status(&self, target: &Target) -> Result<RolloutStatus> {
        valid_target(target)?;
        Ok(self.lock().workload(target)?.rollout_status())
    }

    async fn rollback(&self, target: &Target, dry_run: bool) -> Result<Rollback> {
        valid_target(target)?;
        self.lock().rollback(target, dry_run)
    }

    async fn memory(&self, target: &Target, container: Option<&str>) -> Result<Memory> {
        valid_target(target)?;
        self.lock().memory(target, container)
    }

    async fn set_memory(
        &self,
        target: &Target,
        container: &str,
        request: Option<i64>,
        limit: i64,
        dry_run: bool,
    ) -> Result<()> {
        valid_target(target)?;
        self.lock()
            .set_memory(target, container, request, limit, dry_run)
    }

    async fn last_terminations(&self, target: &Target) -> Result<Vec<String>> {
        valid_target(target)?;
        self.lock().last_terminations(target)
    }

    async fn delete_failed_pods(
        &self,
        namespace: &str,
        older_than: Duration,
        dry_run: bool,
    ) -> Result<u64> {
        valid_namespace(namespace)?;
        Ok(self
            .lock()
            .delete_failed_pods(namespace, older_than, dry_run))
    }

    async fn delete_finished_jobs(
        &self,
        namespace: &str,
        older_than: Duration,
        dry_run: bool,
    ) -> Result<u64> {
        valid_namespace(namespace)?;
        Ok(self
            .lock()
            .delete_finished_jobs(namespace, older_than, dry_run))
    }

    async fn replicas(&self, target: &Target) -> Result<Replicas> {
        valid_target(target)?;
        Ok(self.lock().workload(target)?.replicas())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MI: i64 = 1 << 20;

    const STATE: &str = r#"
workloads:
  - namespace: prod
    name: web
    replicas: 3
    revision: 3
    history: [1, 2]
    containers:
      - name: app
        memory: {request: 256Mi, limit: 512Mi}
      - name: sidecar
        memory: {limit: 64Mi}
  - namespace: prod
    name: paused
    paused: true
    revision: 2
    history: [1]
  - namespace: prod
    name: db
    kind: StatefulSet
    replicas: 2
  - namespace: prod
    name: frozen
    revision: 2
    history: [1]
    annotations:
      aiops.wooo.work/auto-repair: "disabled"
    containers:
      - name: app
        memory: {request: 1Gi, limit: 1Gi}
pods:
  - {namespace: prod, name: web-7d9f-abc, owner: web, terminations: [OOMKilled]}
  - {namespace: prod, name: web-7d9f-def, terminations: [Error, OOMKilled]}
  - {namespace: prod, name: webhook-1, terminations: [Completed]}
  - {namespace: prod, name: old-evicted, phase: Failed, reason: Evicted, finished_ago: 2h}
  - {namespace: prod, name: recent-failed, phase: Failed, finished_ago: 10m}
  - {namespace: prod, name: failed-now, phase: Failed}
  - {namespace: prod, name: done, phase: Succeeded, finished_ago: 5h}
  - {namespace: staging, name: other-evicted, phase: Failed, reason: Evicted, finished_ago: 5h}
  - {namespace: prod, name: backup-1-xyz, owner: backup-1, phase: Succeeded, finished_ago: 3h}
jobs:
  - {namespace: prod, name: backup-1, finished_ago: 3h}
  - {namespace: prod, name: backup-2, finished_ago: 20m}
  - {namespace: prod, name: backup-3}
"#;

    fn cluster() -> MemoryCluster {
        MemoryCluster::from_yaml(STATE).expect("test state parses")
    }

    fn target(kind: &str, name: &str) -> Target {
        Target {
            namespace: "prod".to_owned(),
            kind: kind.to_owned(),
            name: name.to_owned(),
        }
    }

    fn web() -> Target {
        target("Deployment", "web")
    }

    fn workload(c: &MemoryCluster, name: &str) -> Workload {
        c.snapshot()
            .workloads
            .into_iter()
            .find(|w| w.name == name)
            .expect("workload")
    }

    fn refused(result: Result<impl std::fmt::Debug>) -> String {
        match result {
            Err(Error::Refused(why)) => why,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn restart_creates_a_new_revision_and_starts_a_rollout() {
        let c = cluster();
        c.restart(&web(), false).await.unwrap();
        let w = workload(&c, "web");
        assert_eq!((w.revision, w.history.clone()), (4, vec![1, 2, 3]));
        assert_eq!(c.actions(), ["restart prod/Deployment/web"]);
        let status = c.rollout_status(&web()).await.unwrap();
        assert!(status.complete && !status.failed, "{status:?}");
        assert_eq!(status.message, "deployment \"web\" successfully rolled out");
    }

    #[tokio::test]
    async fn the_rollout_setting_decides_how_the_next_rollout_ends() {
        let cases = [
            (
                "complete",
                true,
                false,
                "deployment \"web\" successfully rolled out",
                3,
            ),
            (
                "stuck",
                false,
                false,
                "Waiting for deployment \"web\" rollout to finish: 2 of 3 updated replicas are available...",
                2,
            ),
            (
                "fails",
                false,
                true,
                "deployment \"web\" exceeded its progress deadline",
                0,
            ),
        ];
        for (rollout, complete, failed, message, available) in cases {
            let yaml = format!(
                "workloads: [{{namespace: prod, name: web, replicas: 3, rollout: {rollout}}}]"
            );
            let c = MemoryCluster::from_yaml(&yaml).unwrap();
            let before = c.rollout_status(&web()).await.unwrap();
            assert!(
                before.complete,
                "{rollout}: nothing rolls out before a change"
            );
            c.restart(&web(), false).await.unwrap();
            let status = c.rollout_status(&web()).await.unwrap();
            assert_eq!(
                (status.complete, status.failed, status.message.as_str()),
                (complete, failed, message),
                "{rollout}"
            );
            let replicas = c.replicas(&web()).await.unwrap();
            assert_eq!(
                replicas,
                Replicas {
                    desired: 3,
                    ready: available,
                    available,
                    updated: 3
                },
                "{rollout}"
            );
        }
    }

    #[tokio::test]
    async fn a_state_can_describe_a_rollout_already_failing_that_a_rollback_repairs() {
        let yaml = "workloads: [{namespace: prod, name: web, revision: 5, history: [4], current_rollout: fails}]";
        let c = MemoryCluster::from_yaml(yaml).unwrap();
        assert!(c.rollout_status(&web()).await.unwrap().failed);
        c.rollback(&web(), false).await.unwrap();
        assert!(c.rollout_status(&web()).await.unwrap().complete);
    }

    #[tokio::test]
    async fn rollback_restores_the_previous_template_and_records_a_new_revision() {
        let c = cluster();
        c.set_memory(&web(), "app", None, 640 * MI, false)
            .await
            .unwrap();
        assert_eq!(workload(&c, "web").revision, 4);

        let rollback = c.rollback(&web(), false).await.unwrap();
        assert_eq!(
            rollback,
            Rollback {
                done: true,
                revision: Some(3),
                reason: String::new()
            }
        );
        let w = workload(&c, "web");
        assert_eq!(
            w.revision, 5,
            "kubectl's undo gives the restored template a new revision"
        );
        assert_eq!(
            w.history,
            [1, 2, 4],
            "the restored revision number leaves the history"
        );
        let memory = c.memory(&web(), Some("app")).await.unwrap();
        assert_eq!(
            (memory.request, memory.limit),
            (Some(256 * MI), Some(512 * MI))
        );

        // Undoing again goes back to the template of revision 4 (640Mi), as kubectl does.
        assert_eq!(c.rollback(&web(), false).await.unwrap().revision, Some(4));
        assert_eq!(c.memory(&web(), None).await.unwrap().limit, Some(640 * MI));
        assert_eq!(
            c.actions(),
            [
                "set memory prod/Deployment/web container app: request 256Mi, limit 640Mi",
                "rollback prod/Deployment/web to revision 3",
                "rollback prod/Deployment/web to revision 4",
            ]
        );
    }

    #[tokio::test]
    async fn rollback_without_history_is_not_done_and_says_why() {
        let c = MemoryCluster::from_yaml("workloads: [{namespace: prod, name: web}]").unwrap();
        let rollback = c.rollback(&web(), false).await.unwrap();
        assert_eq!(
            rollback,
            Rollback {
                done: false,
                revision: None,
                reason: "no previous revision of deployment prod/web".to_owned()
            }
        );
        assert!(c.actions().is_empty());
    }

    #[tokio::test]
    async fn rollback_is_refused_for_other_kinds() {
        let c = cluster();
        let why = refused(c.rollback(&target("StatefulSet", "db"), false).await);
        assert_eq!(why, "rollback is only supported for Deployments");
    }

    #[tokio::test]
    async fn a_paused_deployment_refuses_restart_and_rollback() {
        let c = cluster();
        let paused = target("Deployment", "paused");
        assert_eq!(
            refused(c.restart(&paused, false).await),
            "deployment prod/paused is paused"
        );
        assert_eq!(
            refused(c.rollback(&paused, false).await),
            "deployment prod/paused is paused"
        );
        assert_eq!(
            refused(c.restart(&paused, true).await),
            "deployment prod/paused is paused"
        );
        assert!(c.actions().is_empty());
        assert_eq!(workload(&c, "paused").revision, 2);
    }

    #[tokio::test]
    async fn a_disabled_annotation_refuses_every_change() {
        let c = cluster();
        let frozen = target("Deployment", "frozen");
        let expected = "Deployment prod/frozen is annotated aiops.wooo.work/auto-repair=disabled";
        for dry_run in [false, true] {
            assert_eq!(refused(c.restart(&frozen, dry_run).await), expected);
            assert_eq!(refused(c.rollback(&frozen, dry_run).await), expected);
            assert_eq!(
                refused(c.set_memory(&frozen, "app", None, 2 << 30, dry_run).await),
                expected
            );
        }
        // Reads still work.
        assert_eq!(c.memory(&frozen, None).await.unwrap().limit, Some(1 << 30));
        assert!(c.actions().is_empty());
    }

    #[tokio::test]
    async fn names_that_are_not_kubernetes_names_are_refused_as_the_api_backend_refuses_them() {
        let c = cluster();
        for name in ["../web", "web/status", "web?dryRun=All&x=", "Web"] {
            let t = target("Deployment", name);
            let refused = |r: Result<()>| matches!(r, Err(Error::Refused(m)) if m.starts_with("invalid target: name"));
            assert!(refused(c.restart(&t, false).await), "{name}");
            assert!(
                refused(c.set_memory(&t, "app", None, MI, true).await),
                "{name}"
            );
            assert!(c.replicas(&t).await.is_err(), "{name}");
        }
        let mut t = web();
        t.namespace = "prod/../kube-system".into();
        assert!(matches!(c.rollback(&t, true).await, Err(Error::Refused(_))));
        assert!(matches!(
            c.delete_failed_pods("a/../b", Duration::from_secs(1), true)
                .await,
            Err(Error::Refused(_))
        ));
        assert!(c.actions().is_empty(), "nothing was done");
    }

    #[tokio::test]
    async fn unknown_targets_and_containers_are_not_found() {
        let c = cluster();
        let missing = target("Deployment", "nope");
        assert_eq!(
            c.restart(&missing, false).await,
            Err(Error::NotFound("Deployment prod/nope".to_owned()))
        );
        assert_eq!(
            c.rollout_status(&target("DaemonSet", "web")).await,
            Err(Error::NotFound("DaemonSet prod/web".to_owned()))
        );
        assert_eq!(
            c.memory(&web(), Some("nope")).await,
            Err(Error::NotFound(
                "container nope in Deployment prod/web".to_owned()
            ))
        );
        assert_eq!(
            c.set_memory(&web(), "nope", None, MI, false).await,
            Err(Error::NotFound(
                "container nope in Deployment prod/web".to_owned()
            ))
        );
        assert!(matches!(
            c.last_terminations(&missing).await,
            Err(Error::NotFound(_))
        ));
        assert!(matches!(
            c.replicas(&missing).await,
            Err(Error::NotFound(_))
        ));
    }

    #[tokio::test]
    async fn kinds_match_in_any_letter_case() {
        let c = cluster();
        assert_eq!(
            c.replicas(&target("deployment", "web"))
                .await
                .unwrap()
                .desired,
            3
        );
    }

    #[tokio::test]
    async fn memory_reads_the_first_container_by_default() {
        let c = cluster();
        let cases = [
            (None, "app", Some(256 * MI), Some(512 * MI)),
            (Some("app"), "app", Some(256 * MI), Some(512 * MI)),
            (Some("sidecar"), "sidecar", None, Some(64 * MI)),
        ];
        for (asked, container, request, limit) in cases {
            let memory = c.memory(&web(), asked).await.unwrap();
            assert_eq!(
                memory,
                Memory {
                    container: container.to_owned(),
                    request,
                    limit
                }
            );
        }
    }

    #[tokio::test]
    async fn set_memory_refuses_a_limit_below_the_request() {
        let c = cluster();
        // The request is kept (256Mi) when not given.
        let why = refused(c.set_memory(&web(), "app", None, 128 * MI, false).await);
        assert!(why.starts_with("limit below request"), "{why}");
        let why = refused(c.set_memory(&web(), "app", Some(MI), 0, false).await);
        assert!(why.contains("positive"), "{why}");
        // A lower request makes the same limit valid.
        c.set_memory(&web(), "app", Some(64 * MI), 128 * MI, false)
            .await
            .unwrap();
        let memory = c.memory(&web(), None).await.unwrap();
        assert_eq!(
            (memory.request, memory.limit),
            (Some(64 * MI), Some(128 * MI))
        );
        assert_eq!(
            c.actions(),
            ["set memory prod/Deployment/web container app: request 64Mi, limit 128Mi"]
        );
    }

    #[tokio::test]
    async fn set_memory_starts_a_rollout_of_the_new_template() {
        let yaml =
            "workloads: [{namespace: prod, name: web, rollout: stuck, containers: [{name: app}]}]";
        let c = MemoryCluster::from_yaml(yaml).unwrap();
        c.set_memory(&web(), "app", None, 300 * MI, false)
            .await
            .unwrap();
        assert!(!c.rollout_status(&web()).await.unwrap().complete);
        assert_eq!(
            c.actions(),
            ["set memory prod/Deployment/web container app: request unset, limit 300Mi"]
        );
        assert_eq!(workload(&c, "web").revision, 2);
    }

    #[tokio::test]
    async fn dry_runs_change_nothing_but_answer_the_same() {
        let c = cluster();
        let before = c.snapshot();
        c.restart(&web(), true).await.unwrap();
        assert_eq!(
            c.rollback(&web(), true).await.unwrap(),
            Rollback {
                done: true,
                revision: Some(2),
                reason: String::new()
            }
        );
        c.set_memory(&web(), "app", None, 640 * MI, true)
            .await
            .unwrap();
        assert!(matches!(
            c.set_memory(&web(), "app", None, MI, true).await,
            Err(Error::Refused(_))
        ));
        assert_eq!(
            c.delete_failed_pods("prod", Duration::from_secs(3600), true)
                .await,
            Ok(1)
        );
        assert_eq!(
            c.delete_finished_jobs("prod", Duration::from_secs(3600), true)
                .await,
            Ok(1)
        );
        assert_eq!(c.snapshot(), before);
        assert!(c.actions().is_empty());

        // The same calls for real give the same answers.
        assert_eq!(c.rollback(&web(), false).await.unwrap().revision, Some(2));
        assert_eq!(
            c.delete_failed_pods("prod", Duration::from_secs(3600), false)
                .await,
            Ok(1)
        );
        assert_eq!(
            c.delete_finished_jobs("prod", Duration::from_secs(3600), false)
                .await,
            Ok(1)
        );
    }

    #[tokio::test]
    async fn cleanup_deletes_only_failed_pods_older_than_the_threshold() {
        let c = cluster();
        let deleted = c
            .delete_failed_pods("prod", Duration::from_secs(3600), false)
            .await;
        assert_eq!(deleted, Ok(1));
        assert_eq!(c.actions(), ["delete pod prod/old-evicted (Evicted)"]);
        // Again: nothing more is old enough; the count is stable.
        assert_eq!(
            c.delete_failed_pods("prod", Duration::from_secs(3600), false)
                .await,
            Ok(0)
        );
        // A zero threshold takes the remaining Failed pods of the namespace, none elsewhere.
        assert_eq!(
            c.delete_failed_pods("prod", Duration::ZERO, false).await,
            Ok(2)
        );
        let pods: Vec<String> = c.snapshot().pods.into_iter().map(|p| p.name).collect();
        assert!(pods.contains(&"other-evicted".to_owned()));
        assert!(pods.contains(&"done".to_owned()));
        assert!(!pods.contains(&"recent-failed".to_owned()));
        assert_eq!(
            c.actions()[1..],
            [
                "delete pod prod/recent-failed (Failed)",
                "delete pod prod/failed-now (Failed)"
            ]
        );
    }

    #[tokio::test]
    async fn cleanup_deletes_only_finished_jobs_older_than_the_threshold_with_their_pods() {
        let c = cluster();
        assert_eq!(
            c.delete_finished_jobs("prod", Duration::from_secs(3600), false)
                .await,
            Ok(1)
        );
        assert_eq!(c.actions(), ["delete job prod/backup-1"]);
        let state = c.snapshot();
        let jobs: Vec<&str> = state.jobs.iter().map(|j| j.name.as_str()).collect();
        assert_eq!(jobs, ["backup-2", "backup-3"]);
        assert!(!state.pods.iter().any(|p| p.name == "backup-1-xyz"));
        // A running Job is never deleted.
        assert_eq!(
            c.delete_finished_jobs("prod", Duration::ZERO, false).await,
            Ok(1)
        );
        assert_eq!(c.snapshot().jobs.len(), 1);
    }

    #[tokio::test]
    async fn last_terminations_unites_the_workloads_pods_in_order() {
        let c = cluster();
        let reasons = c.last_terminations(&web()).await.unwrap();
        assert_eq!(
            reasons,
            ["OOMKilled", "Error"],
            "webhook-1 is not a pod of web"
        );
        assert!(
            c.last_terminations(&target("StatefulSet", "db"))
                .await
                .unwrap()
                .is_empty()
        );
    }

    #[tokio::test]
    async fn other_kinds_report_rollouts_as_kubectl_does() {
        let yaml = "workloads: [{namespace: prod, name: db, kind: StatefulSet, replicas: 2, rollout: stuck}, \
                    {namespace: prod, name: agent, kind: DaemonSet, replicas: 4, rollout: stuck}]";
        let c = MemoryCluster::from_yaml(yaml).unwrap();
        let db = target("StatefulSet", "db");
        let agent = target("DaemonSet", "agent");
        assert_eq!(
            c.rollout_status(&db).await.unwrap().message,
            "statefulset rolling update complete 2 pods at revision db-1..."
        );
        assert_eq!(
            c.rollout_status(&agent).await.unwrap().message,
            "daemon set \"agent\" successfully rolled out"
        );
        c.restart(&db, false).await.unwrap();
        c.restart(&agent, false).await.unwrap();
        assert_eq!(
            c.rollout_status(&db).await.unwrap().message,
            "Waiting for 1 pods to be ready..."
        );
        assert_eq!(
            c.rollout_status(&agent).await.unwrap().message,
            "Waiting for daemon set \"agent\" rollout to finish: 3 of 4 updated pods are available..."
        );
    }

    #[tokio::test]
    async fn deep_clones_are_independent() {
        let c = cluster();
        let copy = c.deep_clone();
        copy.restart(&web(), false).await.unwrap();
        assert!(c.actions().is_empty());
        assert_eq!(workload(&c, "web").revision, 3);
        assert_eq!(workload(&copy, "web").revision, 4);
    }

    #[test]
    fn bad_state_yaml_names_the_line() {
        let yaml = "workloads:\n  - namespace: prod\n    name: web\n    replica: 3\n";
        let err = MemoryCluster::from_yaml(yaml).expect_err("unknown field");
        let StateError::Yaml {
            line,
            ref location,
            ref message,
        } = err
        else {
            panic!("{err:?}")
        };
        assert_eq!(line, Some(4), "{err}");
        assert!(location.starts_with("line 4"), "{err}");
        assert!(message.contains("unknown field `replica`"), "{err}");

        let bad_quantity = "workloads:\n  - namespace: prod\n    name: web\n    containers:\n      - name: app\n        memory: {limit: 512MB}\n";
        let err = MemoryCluster::from_yaml(bad_quantity).expect_err("bad quantity");
        assert!(
            matches!(err, StateError::Yaml { line: Some(6), .. }),
            "{err}"
        );
        assert!(err.to_string().contains("512MB"), "{err}");

        let bad_duration = "pods: [{namespace: prod, name: p, finished_ago: yesterday}]";
        let err = MemoryCluster::from_yaml(bad_duration).expect_err("bad duration");
        assert!(err.to_string().contains("yesterday"), "{err}");
    }

    #[test]
    fn loading_a_file_names_the_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.yaml");
        std::fs::write(
            &path,
            "workloads:\n  - namespace: prod\n    kind: Job\n    name: x\n",
        )
        .unwrap();
        let err = MemoryCluster::load(&path).expect_err("bad kind");
        assert!(
            err.to_string()
                .starts_with(&format!("{}:3:", path.display())),
            "{err}"
        );
        let err = MemoryCluster::load(&dir.path().join("missing.yaml")).expect_err("missing");
        assert!(matches!(err, StateError::Read { .. }), "{err}");

        std::fs::write(&path, STATE).unwrap();
        let c = MemoryCluster::load(&path).unwrap();
        assert_eq!(c.snapshot().workloads.len(), 4);
    }

    #[test]
    fn impossible_states_are_rejected_naming_the_object() {
        let cases = [
            (
                "workloads: [{namespace: prod, name: web}, {namespace: prod, name: web}]",
                "Deployment prod/web is listed twice",
            ),
            (
                "workloads: [{namespace: prod, name: web, revision: 2, history: [2]}]",
                "history revision 2",
            ),
            (
                "workloads: [{namespace: prod, name: db, kind: StatefulSet, paused: true}]",
                "only Deployments",
            ),
            (
                "workloads: [{namespace: prod, name: web, containers: [{name: a, memory: {request: 2Gi, limit: 1Gi}}]}]",
                "below its request",
            ),
            (
                "pods: [{namespace: a, name: p}, {namespace: a, name: p}]",
                "pod a/p is listed twice",
            ),
        ];
        for (yaml, problem) in cases {
            let err = MemoryCluster::from_yaml(yaml).expect_err(yaml);
            assert!(matches!(err, StateError::Invalid { .. }), "{yaml}: {err}");
            assert!(err.to_string().contains(problem), "{yaml}: {err}");
        }
    }

    #[test]
    fn an_empty_state_is_an_empty_cluster() {
        for yaml in ["", "# nothing yet\n", "{}"] {
            assert_eq!(
                MemoryCluster::from_yaml(yaml).unwrap().snapshot(),
                State::default(),
                "{yaml:?}"
            );
        }
        assert_eq!(MemoryCluster::empty().snapshot(), State::default());
    }

    #[test]
    fn a_snapshot_serializes_back_to_a_loadable_state() {
        let c = cluster();
        let yaml = serde_yaml::to_string(&c.snapshot()).unwrap();
        let again = MemoryCluster::from_yaml(&yaml).unwrap();
        let (a, b) = (c.snapshot(), again.snapshot());
        assert_eq!(a.workloads, b.workloads);
        assert_eq!(a.jobs.len(), b.jobs.len());
    }
}
