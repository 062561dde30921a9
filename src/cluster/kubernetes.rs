//! The Kubernetes backend, on kube-rs: every operation as kubectl performs it.
//!
//! - restart: strategic merge patch of the pod template's `kubectl.kubernetes.io/restartedAt`
//!   annotation (kube's own `restart()` writes another key); a paused Deployment is refused.
//! - rollout status: kubectl rollout-status logic (generation observed, ProgressDeadlineExceeded
//!   means failed, updated = spec replicas, replicas = updated, available = updated), except
//!   that a ProgressDeadlineExceeded stamped before aiops's own last write (its
//!   managedFields time) is the previous rollout's, which the controller keeps until it sees
//!   progress: the wait goes on.
//! - undo: the ReplicaSets the Deployment controls (ownerReference uid), ordered by the
//!   `deployment.kubernetes.io/revision` annotation; the previous one is the second highest;
//!   skipped when the template already matches (ignoring `pod-template-hash`); a JSON Patch
//!   replaces `/spec/template` and `/metadata/annotations`, keeping kubectl's skip list.
//! - memory: strategic merge patch of the container by name (a merge patch would replace the
//!   whole containers list).
//! - scale: a merge patch of `spec.replicas` on the scale subresource (`kubectl scale`), for
//!   Deployments and StatefulSets.
//! - cleanup: Failed pods (Evicted among them) and finished Jobs past an age.
//!
//! Safety: a target annotated `aiops.wooo.work/auto-repair: "disabled"` is refused; dry runs use
//! server-side `dryRun=All`, so admission errors surface without a change; 403/404/409/422 are
//! clear, non-retryable errors, 429/5xx/transport errors retryable.
//!
//! Files: this one holds the connection (kubeconfig or in-cluster), the namespace policy, the
//! error mapping shared by every call, and the [`Cluster`] entry points, each handing on to the
//! file of its concern: `workload` (reads), `writes` (patches, scale, cleanup, Events), `rollout`
//! (rollout status and undo), `gitops` (ownership, field managers, holds of Argo CD and Flux). The unit tests are in `tests.rs`.

mod gitops;
mod rollout;
mod workload;
mod writes;

use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PatchParams};

use super::{Cluster, Error, Memory, Replicas, Result, Rollback, RolloutStatus, Scaled, Target};

/// The annotation that opts a workload out of automatic repair.
pub const AUTO_REPAIR_ANNOTATION: &str = "aiops.wooo.work/auto-repair";
const RESTARTED_AT: &str = "kubectl.kubernetes.io/restartedAt";
const REVISION: &str = "deployment.kubernetes.io/revision";
/// Set on a Deployment's own metadata by a rollback ("revision N at TIME"). A rollback only
/// removes what aiops had written to the template, so without a field of its own aiops would
/// lose its `managedFields` entry, and with it the time of its last write that tells a stale
/// progress-deadline condition from a new one (see `rollout::deployment_status`).
const ROLLED_BACK: &str = "aiops.wooo.work/rolled-back";
const FIELD_MANAGER: &str = "aiops";

/// Annotations kubectl's rollback keeps from the Deployment instead of copying from the
/// ReplicaSet (kubectl `annotationsToSkip`).
const ANNOTATIONS_TO_SKIP: [&str; 6] = [
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    "deployment.kubernetes.io/revision-history",
    "deployment.kubernetes.io/desired-replicas",
    "deployment.kubernetes.io/max-replicas",
    "deprecated.deployment.rollback.to",
];

/// The kube-rs backend.
#[derive(Clone)]
pub struct KubeCluster {
    client: kube::Client,
    namespaces: crate::config::Namespaces,
}

/// How to reach the API server.
#[derive(Clone, Debug, Default)]
pub struct Connect {
    /// A kubeconfig file (None with `in_cluster`).
    pub kubeconfig: Option<std::path::PathBuf>,
    /// The kubeconfig context (None = current-context).
    pub context: Option<String>,
    /// Use the pod's service account.
    pub in_cluster: bool,
    /// Override the API server URL.
    pub api_url: Option<String>,
}

impl Connect {
    /// The client configuration these settings describe (in-cluster or a kubeconfig, then
    /// `api_url`): also what the cluster preflight reports as the server it tried.
    pub async fn config(&self) -> Result<kube::Config, String> {
        let c = self;
        let mut config = if c.in_cluster {
            kube::Config::incluster().map_err(|e| format!("in-cluster config: {e}"))?
        } else {
            let path = c
                .kubeconfig
                .as_ref()
                .ok_or("cluster.kubeconfig (or cluster.in_cluster: true) is required")?;
            let kc = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| format!("reading kubeconfig {}: {e}", path.display()))?;
            let opts = kube::config::KubeConfigOptions {
                context: c.context.clone(),
                ..Default::default()
            };
            kube::Config::from_custom_kubeconfig(kc, &opts)
                .await
                .map_err(|e| format!("kubeconfig {}: {e}", path.display()))?
        };
        if let Some(url) = &c.api_url {
            config.cluster_url = url
                .parse()
                .map_err(|e| format!("cluster.api_url {url:?}: {e}"))?;
        }
        Ok(config)
    }
}

impl KubeCluster {
    /// Builds a client from in-cluster config or a kubeconfig, as `connect` says. Nothing is
    /// sent to the API server yet: reachability is the preflight's to report.
    pub async fn connect(c: &Connect) -> Result<KubeCluster, String> {
        let config = c.config().await?;
        let client =
            kube::Client::try_from(config).map_err(|e| format!("Kubernetes client: {e}"))?;
        Ok(KubeCluster::from_client(client))
    }

    /// Wraps an existing client (tests use kube's tower_test mock). Every namespace is allowed
    /// until [`KubeCluster::with_namespaces`] says otherwise.
    pub fn from_client(client: kube::Client) -> KubeCluster {
        KubeCluster {
            client,
            namespaces: crate::config::Namespaces {
                allow: Vec::new(),
                deny: Vec::new(),
            },
        }
    }

    /// Refuses every call into namespaces the policy denies. Intake's guard already refuses
    /// such targets; this holds for what a playbook reaches on its own too (a cleanup of
    /// another namespace, say).
    pub fn with_namespaces(mut self, namespaces: crate::config::Namespaces) -> KubeCluster {
        self.namespaces = namespaces;
        self
    }

    /// The kube client, for callers that apply objects themselves (`aiops deploy`): one
    /// client construction for the whole binary.
    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    /// Refuses a namespace that is not a valid name (it would become a path segment: `a/../b`
    /// climbs, `a?x=` starts a query) or that the policy denies, before any request is built.
    fn check_ns(&self, ns: &str) -> Result<()> {
        if let Err(why) = crate::k8s_name::namespace(ns) {
            return Err(Error::Refused(format!(
                "namespace {} {why}; a namespace must be a DNS-1123 label",
                crate::k8s_name::quoted(ns, 80)
            )));
        }
        if self.namespaces.allows(ns) {
            Ok(())
        } else {
            Err(Error::Refused(format!(
                "namespace {ns} is not allowed (guard.namespaces)"
            )))
        }
    }

    /// [`KubeCluster::check_ns`] for a target, after checking its namespace and name are
    /// valid names: a playbook can pass any string, and kube-rs puts the name into the path as is.
    fn check_target(&self, t: &Target) -> Result<()> {
        t.check_names()
            .map_err(|e| Error::Refused(format!("invalid target: {e}")))?;
        self.check_ns(&t.namespace)
    }

    /// GETs the target as `K`, with errors naming it.
    async fn get<K>(&self, t: &Target) -> Result<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
        <K as kube::Resource>::DynamicType: Default,
    {
        self.api::<K>(&t.namespace)
            .get(&t.name)
            .await
            .map_err(|e| map_err(&describe(t), e))
    }

    fn api<K>(&self, ns: &str) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), ns)
    }
}

/// Maps a kube error to the cluster error taxonomy, naming `what`.
fn map_err(what: &str, e: kube::Error) -> Error {
    match e {
        kube::Error::Api(s) => match s.code {
            404 => Error::NotFound(what.to_string()),
            403 => Error::Refused(format!(
                "forbidden on {what}: {} (check the ClusterRole)",
                s.message
            )),
            401 => Error::Refused(format!("unauthorized on {what}: check the credentials")),
            409 | 422 | 400 => Error::Refused(format!("{what}: {}", s.message)),
            429 | 500.. => Error::Unavailable(format!("{what}: {} ({})", s.message, s.code)),
            _ => Error::Refused(format!("{what}: {} ({})", s.message, s.code)),
        },
        // The connection, not the request: worth retrying.
        e @ (kube::Error::HyperError(_) | kube::Error::Service(_)) => {
            Error::Unavailable(format!("{what}: {e}"))
        }
        other => Error::Refused(format!("{what}: {other}")),
    }
}

fn params(dry_run: bool) -> PatchParams {
    PatchParams {
        dry_run,
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..PatchParams::default()
    }
}

fn describe(t: &Target) -> String {
    format!("{} {}/{}", t.kind, t.namespace, t.name)
}

fn refuse_disabled(meta: &ObjectMeta, t: &Target) -> Result<()> {
    let disabled = meta
        .annotations
        .as_ref()
        .and_then(|a| a.get(AUTO_REPAIR_ANNOTATION))
        .is_some_and(|v| v == "disabled");
    if disabled {
        return Err(Error::Refused(format!(
            "{} is annotated {AUTO_REPAIR_ANNOTATION}=disabled",
            describe(t)
        )));
    }
    Ok(())
}

#[async_trait]
impl Cluster for KubeCluster {
    async fn restart(&self, t: &Target, dry_run: bool) -> Result<()> {
        self.restart_workload(t, dry_run).await
    }

    async fn rollout_status(&self, t: &Target) -> Result<RolloutStatus> {
        self.rollout_status_of(t).await
    }

    async fn rollback(&self, t: &Target, dry_run: bool) -> Result<Rollback> {
        self.roll_back(t, dry_run).await
    }

    async fn memory(&self, t: &Target, container: Option<&str>) -> Result<Memory> {
        self.memory_of(t, container).await
    }

    async fn set_memory(
        &self,
        t: &Target,
        container: &str,
        request: Option<i64>,
        limit: i64,
        dry_run: bool,
    ) -> Result<()> {
        self.set_memory_of(t, container, request, limit, dry_run)
            .await
    }

    async fn last_terminations(&self, t: &Target) -> Result<Vec<String>> {
        self.last_terminations_of(t).await
    }

    async fn delete_failed_pods(
        &self,
        ns: &str,
        older_than: Duration,
        dry_run: bool,
    ) -> Result<u64> {
        self.delete_failed_pods_in(ns, older_than, dry_run).await
    }

    async fn delete_finished_jobs(
        &self,
        ns: &str,
        older_than: Duration,
        dry_run: bool,
    ) -> Result<u64> {
        self.delete_finished_jobs_in(ns, older_than, dry_run).await
    }

    async fn replicas(&self, t: &Target) -> Result<Replicas> {
        self.replicas_of(t).await
    }

    async fn scale(&self, t: &Target, replicas: i64, dry_run: bool) -> Result<Scaled> {
        self.scale_workload(t, replicas, dry_run).await
    }

    async fn record_event(&self, t: &Target, reason: &str, message: &str) -> Result<()> {
        self.record_event_on(t, reason, message).await
    }
    async fn object_info(&self, t: &Target) -> Result<crate::gitops::ObjectInfo> {
        self.object_info_for(t).await
    }

    async fn observe(
        &self,
        t: &Target,
        fields: &[crate::gitops::Field],
    ) -> Result<Vec<crate::gitops::FieldState>> {
        self.observe_workload(t, fields).await
    }

    async fn hold(
        &self,
        t: &Target,
        c: &crate::gitops::Controller,
        dry_run: bool,
    ) -> Result<crate::gitops::HoldPlacement> {
        self.hold_controller(t, c, dry_run).await
    }

    async fn release(
        &self,
        t: &Target,
        c: &crate::gitops::Controller,
        p: &crate::gitops::HoldPlacement,
    ) -> Result<()> {
        self.release_controller(t, c, p).await
    }

    async fn git_agrees(&self, t: &Target, c: &crate::gitops::Controller) -> Result<Option<bool>> {
        self.git_agrees_for(t, c).await
    }
}

#[cfg(test)]
mod tests;
