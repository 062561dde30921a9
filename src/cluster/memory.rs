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
//!     labels: {}                  # e.g. kustomize.toolkit.fluxcd.io/name: apps
//!     managers:                   # managedFields; an Apply manager owns the fields given here
//!       - {name: kustomize-controller, operation: Apply}
//!     containers:
//!       - name: app
//!         image: web:v2           # optional
//!         previous_image: web:v1  # its image in the history revisions (default: image)
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
//!
//! `holds:` (a list at the top level) records the Argo CD and HelmRelease holds placed; a Flux
//! Kustomization's hold is the annotation on the workload.
//!
//! Files: this one holds the cluster (loading, snapshots, the [`Cluster`] entry points);
//! `state` the state file's model and its validation; `operations` what each operation does to
//! the state; `gitops` field ownership, `observe` and holds. The unit tests are in `tests.rs`.

mod gitops;
mod operations;
mod state;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;

pub use state::{
    Container, HeldController, Job, Kind, MemorySettings, Phase, Pod, RolloutOutcome, State,
    Workload,
};

use state::validate;

use super::{Cluster, Error, Memory, Replicas, Result, Rollback, RolloutStatus, Scaled, Target};

/// The annotation that opts a workload out of automatic repairs (value `disabled`).
pub const AUTO_REPAIR_ANNOTATION: &str = "aiops.wooo.work/auto-repair";

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
            // The older revisions have the file's containers, with their `previous_image`.
            let older: Vec<Container> = w
                .containers
                .iter()
                .map(|c| {
                    let mut old = c.clone();
                    old.image = c.previous_image.clone().or(old.image);
                    old.previous_image = None;
                    old
                })
                .collect();
            for r in &w.history {
                w.templates.entry(*r).or_insert_with(|| older.clone());
            }
            w.init_owners();
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

    /// Sets `field` of `target` back to `value` as `manager` would (a GitOps controller's
    /// forced server-side apply, e.g. `kustomize-controller` putting Git's memory limit back):
    /// the value changes (a container field starts a new revision and rollout), `manager`
    /// becomes the field's only owner and is listed among the workload's managers (`Apply`).
    /// Not one of aiops's [`MemoryCluster::actions`]. For tests of the revert watch; a
    /// controller that honours a hold would not call it while one is placed (look at the
    /// workload's annotations and [`State::holds`]).
    pub fn revert_field(
        &self,
        target: &Target,
        field: &crate::gitops::Field,
        value: &str,
        manager: &str,
    ) -> Result<()> {
        valid_target(target)?;
        self.lock().revert_field(target, field, value, manager)
    }

    /// Changes applied so far, in order, e.g. `restart prod/Deployment/web`,
    /// `set memory prod/Deployment/web container app: request 256Mi, limit 640Mi`,
    /// `rollback prod/Deployment/web to revision 2`, `scale prod/Deployment/web from 2 to 3
    /// replicas`, `delete pod prod/web-x (Evicted)`,
    /// `delete job prod/backup-1`, `hold prod/Deployment/web (Flux Kustomization
    /// flux-system/apps: annotation …)`, `release …`. Dry runs add nothing.
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

    async fn scale(&self, target: &Target, replicas: i64, dry_run: bool) -> Result<Scaled> {
        valid_target(target)?;
        self.lock().scale(target, replicas, dry_run)
    }

    async fn object_info(&self, target: &Target) -> Result<crate::gitops::ObjectInfo> {
        valid_target(target)?;
        self.lock().object_info(target)
    }

    async fn observe(
        &self,
        target: &Target,
        fields: &[crate::gitops::Field],
    ) -> Result<Vec<crate::gitops::FieldState>> {
        valid_target(target)?;
        self.lock().observe(target, fields)
    }

    async fn hold(
        &self,
        target: &Target,
        controller: &crate::gitops::Controller,
        dry_run: bool,
    ) -> Result<crate::gitops::HoldPlacement> {
        valid_target(target)?;
        self.lock().hold(target, controller, dry_run)
    }

    async fn release(
        &self,
        target: &Target,
        controller: &crate::gitops::Controller,
        placement: &crate::gitops::HoldPlacement,
    ) -> Result<()> {
        valid_target(target)?;
        self.lock().release(target, controller, placement)
    }

    /// The memory cluster has no Applications to compare: it never says.
    async fn git_agrees(
        &self,
        target: &Target,
        _controller: &crate::gitops::Controller,
    ) -> Result<Option<bool>> {
        valid_target(target)?;
        Ok(None)
    }
}

#[cfg(test)]
mod tests;
