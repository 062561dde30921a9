//! The cluster seam: every Kubernetes call a playbook can make goes through [`Cluster`].
//!
//! Backends:
//! - [`kubernetes::KubeCluster`]: the real API server through kube-rs, with kubectl's semantics
//!   (`cluster.kubeconfig` or `cluster.in_cluster`).
//! - [`memory::MemoryCluster`]: an in-memory cluster described in YAML (`--state` of
//!   `aiops test-playbook`, `cluster.state_file` in settings). It applies changes the way the
//!   API server and controllers would (a restart or a template change rolls out, a rollback
//!   restores the previous revision), so whole repairs can run without a cluster.
//! - [`Unconfigured`]: what the daemon has when no cluster is configured; every call fails with
//!   a clear, non-retryable error, so a repair ends `inconclusive` and goes to humans.
//!
//! Dry runs: every changing call takes `dry_run`. A backend then validates and computes the result
//! (what would be deleted, which revision a rollback would restore) without persisting it, as
//! Kubernetes' server-side `dryRun=All` does. dry_run rules, `aiops simulate` and
//! `aiops test-playbook` use it.
//!
//! Quantities are Kubernetes quantities: memory in bytes (`Ki`, `Mi`, `Gi`, `k`, `M`, `G`, …),
//! CPU in millicores (`500m`, `2`); see [`quantity`].

pub mod kubernetes;
pub mod memory;
// The quantity parser is a leaf of its own (settings use it too, and `config` must not import
// `cluster`); it stays reachable as `cluster::quantity`, where the backends use it.
pub use crate::quantity;

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::gitops::{Controller, Field, FieldChange, FieldState, HoldPlacement, ObjectInfo};

pub use crate::rules::Target;

/// Cluster call failures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The object does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// The operation is refused as unsafe or impossible (paused rollout, unsupported kind, …).
    #[error("refused: {0}")]
    Refused(String),
    /// The API answered with something that may pass (429, 5xx, timeout): worth retrying later.
    #[error("temporarily unavailable: {0}")]
    Unavailable(String),
    /// No Kubernetes backend is configured.
    #[error(
        "no Kubernetes backend is configured (set cluster.kubeconfig or cluster.in_cluster, or cluster.state_file for an in-memory cluster)"
    )]
    Unconfigured,
    /// The call took longer than its timeout.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
}

impl Error {
    /// Whether a later retry could succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Unavailable(_) | Error::Timeout(_))
    }

    /// A short, bounded label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::NotFound(_) => "not_found",
            Error::Refused(_) => "refused",
            Error::Unavailable(_) => "unavailable",
            Error::Unconfigured => "unconfigured",
            Error::Timeout(_) => "timeout",
        }
    }
}

/// `type Result<T, E = Error>` as in every module of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where a rollout stands, with kubectl rollout-status semantics.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutStatus {
    /// Every replica runs the current template and is available.
    pub complete: bool,
    /// The rollout cannot finish (ProgressDeadlineExceeded).
    pub failed: bool,
    /// Human-readable state, e.g. "1 of 3 updated replicas are available".
    pub message: String,
}

/// The result of a rollback request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rollback {
    /// Whether a rollback was applied.
    pub done: bool,
    /// The revision rolled back to.
    pub revision: Option<i64>,
    /// Why not, when not done (e.g. "no previous revision").
    pub reason: String,
    /// What the rollback puts back (or, in a dry run, would): each container image that
    /// differs between the current and the restored revision. The change a GitOps owner's
    /// source would need instead ("revert image of container web to web:v1").
    #[serde(default)]
    pub restores: Vec<FieldChange>,
}

/// A container's memory settings, in bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Memory {
    /// Container name.
    pub container: String,
    /// Request, if set.
    pub request: Option<i64>,
    /// Limit, if set.
    pub limit: Option<i64>,
}

/// Replica counts of a workload.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replicas {
    /// spec.replicas.
    pub desired: i64,
    /// status.readyReplicas.
    pub ready: i64,
    /// status.availableReplicas.
    pub available: i64,
    /// status.updatedReplicas.
    pub updated: i64,
}

/// The result of a scale request: spec.replicas before and after (in a dry run, what it would
/// become).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scaled {
    /// spec.replicas before the request.
    pub from: i64,
    /// spec.replicas the request set (or would set).
    pub to: i64,
}

/// Every cluster operation a playbook can use. Implementations must be cheap to share.
#[async_trait]
pub trait Cluster: Send + Sync {
    /// `kubectl rollout restart`: sets the restartedAt annotation on the pod template.
    /// Refuses a paused Deployment.
    async fn restart(&self, target: &Target, dry_run: bool) -> Result<()>;
    /// kubectl rollout-status semantics, one observation (no waiting).
    async fn rollout_status(&self, target: &Target) -> Result<RolloutStatus>;
    /// `kubectl rollout undo` to the previous revision (Deployments only).
    async fn rollback(&self, target: &Target, dry_run: bool) -> Result<Rollback>;
    /// Memory request/limit of a container (the first one when `container` is None).
    async fn memory(&self, target: &Target, container: Option<&str>) -> Result<Memory>;
    /// Sets a container's memory request and limit (bytes); `request: None` leaves it as is.
    async fn set_memory(
        &self,
        target: &Target,
        container: &str,
        request: Option<i64>,
        limit: i64,
        dry_run: bool,
    ) -> Result<()>;
    /// Last termination reasons of the target's pods' containers (e.g. "OOMKilled").
    async fn last_terminations(&self, target: &Target) -> Result<Vec<String>>;
    /// Deletes Failed pods (Evicted among them) in `namespace` finished longer ago than
    /// `older_than`; returns how many.
    async fn delete_failed_pods(
        &self,
        namespace: &str,
        older_than: Duration,
        dry_run: bool,
    ) -> Result<u64>;
    /// Deletes Jobs in `namespace` that finished longer ago than `older_than`; returns how many.
    async fn delete_finished_jobs(
        &self,
        namespace: &str,
        older_than: Duration,
        dry_run: bool,
    ) -> Result<u64>;
    /// Replica counts.
    async fn replicas(&self, target: &Target) -> Result<Replicas>;
    /// `kubectl scale`: sets spec.replicas of a Deployment or StatefulSet through its scale
    /// subresource (a DaemonSet has no replica count and is refused). The bounds a playbook may
    /// ask for are the host API's to enforce; a backend refuses only what Kubernetes would
    /// (a negative count) and what aiops never touches (an opted-out workload).
    async fn scale(&self, target: &Target, replicas: i64, dry_run: bool) -> Result<Scaled>;
    /// Records a Kubernetes Event on the target (reason `AutoRepair…`), so `kubectl describe`
    /// shows what aiops did. Backends without events accept and drop it.
    async fn record_event(&self, _target: &Target, _reason: &str, _message: &str) -> Result<()> {
        Ok(())
    }
    /// The workload's labels, annotations and field managers (`managedFields`), from which
    /// [`crate::gitops::detect`] tells whether Argo CD or Flux owns it.
    async fn object_info(&self, target: &Target) -> Result<ObjectInfo>;
    /// The live values of `fields` of the workload, each with the field managers that own it
    /// (read from `managedFields`): how verification sees a change set back by another manager.
    async fn observe(&self, target: &Target, fields: &[Field]) -> Result<Vec<FieldState>>;
    /// Pauses `controller`'s reconciliation of the workload (a `hold`): the mechanism depends
    /// on the controller ([`crate::gitops::HoldMechanism`]). A controller object that cannot be
    /// read or patched (no RBAC, an Application generated by an ApplicationSet, which would
    /// put automated sync back) is refused with the reason, and the hold becomes a skip.
    async fn hold(
        &self,
        target: &Target,
        controller: &Controller,
        dry_run: bool,
    ) -> Result<HoldPlacement>;
    /// Undoes a hold placed by [`Cluster::hold`] (idempotent: releasing a released hold, or one
    /// whose object is gone, succeeds).
    async fn release(
        &self,
        target: &Target,
        controller: &Controller,
        placement: &HoldPlacement,
    ) -> Result<()>;
    /// Whether the controller's source now agrees with the live workload: `Some(true)` once
    /// Argo CD reports the object `Synced` (Git holds what aiops set), `Some(false)` while it is
    /// `OutOfSync`, `None` when the controller does not say (Flux reports no per-object drift).
    async fn git_agrees(&self, target: &Target, controller: &Controller) -> Result<Option<bool>>;
}

/// The backend of a daemon with no Kubernetes configured: every call fails, non-retryably.
pub struct Unconfigured;

#[async_trait]
impl Cluster for Unconfigured {
    async fn restart(&self, _: &Target, _: bool) -> Result<()> {
        Err(Error::Unconfigured)
    }
    async fn rollout_status(&self, _: &Target) -> Result<RolloutStatus> {
        Err(Error::Unconfigured)
    }
    async fn rollback(&self, _: &Target, _: bool) -> Result<Rollback> {
        Err(Error::Unconfigured)
    }
    async fn memory(&self, _: &Target, _: Option<&str>) -> Result<Memory> {
        Err(Error::Unconfigured)
    }
    async fn set_memory(&self, _: &Target, _: &str, _: Option<i64>, _: i64, _: bool) -> Result<()> {
        Err(Error::Unconfigured)
    }
    async fn last_terminations(&self, _: &Target) -> Result<Vec<String>> {
        Err(Error::Unconfigured)
    }
    async fn delete_failed_pods(&self, _: &str, _: Duration, _: bool) -> Result<u64> {
        Err(Error::Unconfigured)
    }
    async fn delete_finished_jobs(&self, _: &str, _: Duration, _: bool) -> Result<u64> {
        Err(Error::Unconfigured)
    }
    async fn replicas(&self, _: &Target) -> Result<Replicas> {
        Err(Error::Unconfigured)
    }
    async fn scale(&self, _: &Target, _: i64, _: bool) -> Result<Scaled> {
        Err(Error::Unconfigured)
    }
    async fn object_info(&self, _: &Target) -> Result<ObjectInfo> {
        Err(Error::Unconfigured)
    }
    async fn observe(&self, _: &Target, _: &[Field]) -> Result<Vec<FieldState>> {
        Err(Error::Unconfigured)
    }
    async fn hold(&self, _: &Target, _: &Controller, _: bool) -> Result<HoldPlacement> {
        Err(Error::Unconfigured)
    }
    async fn release(&self, _: &Target, _: &Controller, _: &HoldPlacement) -> Result<()> {
        Err(Error::Unconfigured)
    }
    async fn git_agrees(&self, _: &Target, _: &Controller) -> Result<Option<bool>> {
        Err(Error::Unconfigured)
    }
}
