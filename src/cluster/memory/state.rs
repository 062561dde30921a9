//! The state file's model: workloads, pods and Jobs as a state file describes them and
//! [`MemoryCluster::snapshot`](super::MemoryCluster::snapshot) returns them, with the checks
//! serde cannot make (duplicates, impossible revisions).
//!
//! Kept apart from the operations because it is the file format users write: one place to read
//! what a state file may say.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::cluster::quantity::{format_memory, parse_memory};
use crate::gitops::{Controller, Field, HoldMechanism, Manager};

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
    /// Holds of controllers this cluster has no objects for (Argo CD Applications, Flux
    /// HelmReleases): placed by `hold`, removed by `release`. A Flux Kustomization's hold is
    /// the annotation on the workload itself, as in a real cluster.
    #[serde(default)]
    pub holds: Vec<HeldController>,
}

/// A controller paused for one workload ([`State::holds`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeldController {
    /// The workload's namespace.
    pub namespace: String,
    /// Its kind.
    pub kind: Kind,
    /// Its name.
    pub name: String,
    /// The controller paused for it.
    pub controller: Controller,
    /// How.
    pub mechanism: HoldMechanism,
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
    pub(super) fn kubectl_name(self) -> &'static str {
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
    /// metadata.labels (e.g. Flux's `kustomize.toolkit.fluxcd.io/name` and `/namespace`).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// metadata.managedFields managers. A manager with operation `Apply` (a controller's
    /// server-side apply of the whole object) owns every field the state file gives at load;
    /// an `Update` manager owns none of them. aiops joins as `aiops`/`Update` when it writes.
    #[serde(default)]
    pub managers: Vec<Manager>,
    /// Who owns each field the repairs change, as the API server records it: aiops's changes
    /// make it the owner of what it set, [`MemoryCluster::revert_field`] hands a field to
    /// another manager.
    ///
    /// [`MemoryCluster::revert_field`]: super::MemoryCluster::revert_field
    #[serde(skip)]
    pub owners: BTreeMap<Field, Vec<String>>,
    /// The pod template's `kubectl.kubernetes.io/restartedAt` annotation, set by a restart.
    #[serde(skip)]
    pub restarted_at: Option<String>,
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
    /// The image, if the state gives one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// The image of this container in the revisions of `history` (default: `image`), so a
    /// rollback has an image to restore. Read at load; kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_image: Option<String>,
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

/// Checks what serde cannot: names present, no object listed twice, revisions that can exist.
pub(super) fn validate(state: &State) -> Result<(), String> {
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
