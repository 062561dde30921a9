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
//! - cleanup: Failed pods (Evicted among them) and finished Jobs past an age.
//!
//! Safety: a target annotated `aiops.wooo.work/auto-repair: "disabled"` is refused; dry runs use
//! server-side `dryRun=All`, so admission errors surface without a change; 403/404/409/422 are
//! clear, non-retryable errors, 429/5xx/transport errors retryable.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Event, ObjectReference, Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

use super::{Cluster, Error, Memory, Replicas, Result, Rollback, RolloutStatus, Target, quantity};

/// The annotation that opts a workload out of automatic repair.
pub const AUTO_REPAIR_ANNOTATION: &str = "aiops.wooo.work/auto-repair";
const RESTARTED_AT: &str = "kubectl.kubernetes.io/restartedAt";
const REVISION: &str = "deployment.kubernetes.io/revision";
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

/// The workload's pod template and selector, whatever its kind.
struct Workload {
    meta: ObjectMeta,
    template: PodTemplateSpec,
    selector: String,
    paused: bool,
    on_delete: bool,
}

/// A label selector in the API's query syntax, matchExpressions included (as kubectl's
/// `LabelSelectorAsSelector`).
fn selector_string(sel: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector) -> String {
    let mut parts: Vec<String> = sel
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    for e in sel.match_expressions.iter().flatten() {
        let values = e.values.clone().unwrap_or_default().join(",");
        parts.push(match e.operator.as_str() {
            "In" => format!("{} in ({values})", e.key),
            "NotIn" => format!("{} notin ({values})", e.key),
            "Exists" => e.key.clone(),
            "DoesNotExist" => format!("!{}", e.key),
            other => format!("{} {other} ({values})", e.key),
        });
    }
    parts.join(",")
}

/// An empty selector selects everything: never act on a whole namespace by accident.
fn nonempty(selector: String, t: &Target) -> Result<String> {
    if selector.is_empty() {
        Err(Error::Refused(format!(
            "{} has an empty selector",
            describe(t)
        )))
    } else {
        Ok(selector)
    }
}

fn age_ms(t: &Time) -> i64 {
    (k8s_openapi::jiff::Timestamp::now().as_millisecond() - t.0.as_millisecond()).max(0)
}

impl KubeCluster {
    async fn workload(&self, t: &Target) -> Result<Workload> {
        match t.kind.as_str() {
            "Deployment" => {
                let d = self.get::<Deployment>(t).await?;
                let spec = d.spec.unwrap_or_default();
                Ok(Workload {
                    meta: d.metadata,
                    template: spec.template,
                    selector: selector_string(&spec.selector),
                    paused: spec.paused.unwrap_or(false),
                    on_delete: false,
                })
            }
            "StatefulSet" => {
                let s = self.get::<StatefulSet>(t).await?;
                let spec = s.spec.unwrap_or_default();
                Ok(Workload {
                    meta: s.metadata,
                    selector: selector_string(&spec.selector),
                    paused: false,
                    on_delete: on_delete(
                        spec.update_strategy
                            .as_ref()
                            .and_then(|u| u.type_.as_deref()),
                    ),
                    template: spec.template,
                })
            }
            "DaemonSet" => {
                let s = self.get::<DaemonSet>(t).await?;
                let spec = s.spec.unwrap_or_default();
                Ok(Workload {
                    meta: s.metadata,
                    selector: selector_string(&spec.selector),
                    paused: false,
                    on_delete: on_delete(
                        spec.update_strategy
                            .as_ref()
                            .and_then(|u| u.type_.as_deref()),
                    ),
                    template: spec.template,
                })
            }
            other => Err(Error::Refused(format!("unsupported kind {other}"))),
        }
    }

    async fn patch_workload(
        &self,
        t: &Target,
        patch: serde_json::Value,
        dry_run: bool,
    ) -> Result<()> {
        let what = describe(t);
        let p = Patch::Strategic(patch);
        let pp = params(dry_run);
        let r = match t.kind.as_str() {
            "Deployment" => self
                .api::<Deployment>(&t.namespace)
                .patch(&t.name, &pp, &p)
                .await
                .map(|_| ()),
            "StatefulSet" => self
                .api::<StatefulSet>(&t.namespace)
                .patch(&t.name, &pp, &p)
                .await
                .map(|_| ()),
            "DaemonSet" => self
                .api::<DaemonSet>(&t.namespace)
                .patch(&t.name, &pp, &p)
                .await
                .map(|_| ()),
            other => return Err(Error::Refused(format!("unsupported kind {other}"))),
        };
        r.map_err(|e| map_err(&what, e))
    }
}

fn deployment_status(d: &Deployment) -> RolloutStatus {
    let name = d.metadata.name.clone().unwrap_or_default();
    let generation = d.metadata.generation.unwrap_or(0);
    let status = d.status.clone().unwrap_or_default();
    let waiting = |message: String| RolloutStatus {
        complete: false,
        failed: false,
        message,
    };
    if generation > status.observed_generation.unwrap_or(0) {
        return waiting("Waiting for deployment spec update to be observed...".into());
    }
    let deadline_exceeded = status.conditions.iter().flatten().find(|c| {
        c.type_ == "Progressing" && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
    });
    if let Some(condition) = deadline_exceeded {
        // The deployment controller keeps a ProgressDeadlineExceeded condition through the
        // next rollout until it sees that rollout progress, with observedGeneration already
        // caught up: right after aiops changes a Deployment that had timed out (the usual
        // reason for the alert, and always so for the rollback that escalates a failed
        // restart) the condition is the *previous* rollout's. Stamped before aiops's last write
        // (both by the server's clocks, in whole seconds; the same second counts as fresh, the
        // safe side), it is stale: keep waiting.
        let stale = match (&condition.last_update_time, last_written_by_aiops(d)) {
            (Some(at), Some(written)) => at.0 < written,
            _ => false,
        };
        if stale {
            return waiting(format!(
                "Waiting for deployment {name:?} rollout to make progress (the progress deadline exceeded is from before aiops's change)"
            ));
        }
        return RolloutStatus {
            complete: false,
            failed: true,
            message: format!("deployment {name:?} exceeded its progress deadline"),
        };
    }
    let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let updated = status.updated_replicas.unwrap_or(0);
    let replicas = status.replicas.unwrap_or(0);
    let available = status.available_replicas.unwrap_or(0);
    if updated < want {
        return waiting(format!(
            "Waiting for deployment {name:?} rollout to finish: {updated} out of {want} new replicas have been updated..."
        ));
    }
    if replicas > updated {
        return waiting(format!(
            "Waiting for deployment {name:?} rollout to finish: {} old replicas are pending termination...",
            replicas - updated
        ));
    }
    if available < updated {
        return waiting(format!(
            "Waiting for deployment {name:?} rollout to finish: {available} of {updated} updated replicas are available..."
        ));
    }
    RolloutStatus {
        complete: true,
        failed: false,
        message: format!("deployment {name:?} successfully rolled out"),
    }
}

/// When aiops last wrote this object, by the API server's clock: the time of its own
/// `managedFields` entry (field manager `aiops`, not a subresource).
fn last_written_by_aiops(d: &Deployment) -> Option<k8s_openapi::jiff::Timestamp> {
    d.metadata
        .managed_fields
        .iter()
        .flatten()
        .filter(|f| f.manager.as_deref() == Some(FIELD_MANAGER) && f.subresource.is_none())
        .filter_map(|f| f.time.as_ref().map(|t| t.0))
        .max()
}

/// kubectl reports no rollout for OnDelete: nothing replaces the pods, so a wait would never end.
fn on_delete(strategy_type: Option<&str>) -> bool {
    strategy_type.is_some_and(|t| t != "RollingUpdate")
}

fn statefulset_status(s: &StatefulSet) -> RolloutStatus {
    let status = s.status.clone().unwrap_or_default();
    let generation = s.metadata.generation.unwrap_or(0);
    let waiting = |message: String| RolloutStatus {
        complete: false,
        failed: false,
        message,
    };
    let strategy = s.spec.as_ref().and_then(|s| s.update_strategy.clone());
    if on_delete(strategy.as_ref().and_then(|u| u.type_.as_deref())) {
        return RolloutStatus {
            complete: false,
            failed: true,
            message: "rollout status is only available for RollingUpdate strategy type".into(),
        };
    }
    let observed = status.observed_generation.unwrap_or(0);
    if observed == 0 || generation > observed {
        return waiting("Waiting for statefulset spec update to be observed...".into());
    }
    let want = s.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let ready = status.ready_replicas.unwrap_or(0);
    if ready < want {
        return waiting(format!("Waiting for {} pods to be ready...", want - ready));
    }
    // As kubectl: with a rollingUpdate block (the API server always fills one in), a
    // partitioned rollout is complete once the pods above the partition are updated.
    if let Some(rolling) = strategy.and_then(|u| u.rolling_update) {
        let partition = rolling.partition.unwrap_or(0);
        let updated = status.updated_replicas.unwrap_or(0);
        if updated < want - partition {
            return waiting(format!(
                "Waiting for partitioned roll out to finish: {updated} out of {} new pods have been updated...",
                want - partition
            ));
        }
        return RolloutStatus {
            complete: true,
            failed: false,
            message: format!(
                "partitioned roll out complete: {updated} new pods have been updated..."
            ),
        };
    }
    let update = status.update_revision.clone().unwrap_or_default();
    if status.current_revision.as_deref() != Some(update.as_str()) {
        return waiting(format!(
            "waiting for statefulset rolling update to complete {} pods at revision {update}...",
            status.updated_replicas.unwrap_or(0)
        ));
    }
    RolloutStatus {
        complete: true,
        failed: false,
        message: format!(
            "statefulset rolling update complete {} pods at revision {update}...",
            status.current_replicas.unwrap_or(0)
        ),
    }
}

fn daemonset_status(d: &DaemonSet) -> RolloutStatus {
    let name = d.metadata.name.clone().unwrap_or_default();
    let status = d.status.clone().unwrap_or_default();
    let waiting = |message: String| RolloutStatus {
        complete: false,
        failed: false,
        message,
    };
    let strategy = d.spec.as_ref().and_then(|s| s.update_strategy.as_ref());
    if on_delete(strategy.and_then(|u| u.type_.as_deref())) {
        return RolloutStatus {
            complete: false,
            failed: true,
            message: "rollout status is only available for RollingUpdate strategy type".into(),
        };
    }
    if d.metadata.generation.unwrap_or(0) > status.observed_generation.unwrap_or(0) {
        return waiting("Waiting for daemon set spec update to be observed...".into());
    }
    let desired = status.desired_number_scheduled;
    let updated = status.updated_number_scheduled.unwrap_or(0);
    if updated < desired {
        return waiting(format!(
            "Waiting for daemon set {name:?} rollout to finish: {updated} out of {desired} new pods have been updated..."
        ));
    }
    let available = status.number_available.unwrap_or(0);
    if available < desired {
        return waiting(format!(
            "Waiting for daemon set {name:?} rollout to finish: {available} of {desired} updated pods are available..."
        ));
    }
    RolloutStatus {
        complete: true,
        failed: false,
        message: format!("daemon set {name:?} successfully rolled out"),
    }
}

/// Deletes exactly the listed object: the uid precondition means an object recreated under the
/// same name (StatefulSet pods are) between the list and the delete is left alone. Returns
/// whether it was deleted; already gone or replaced is not an error.
async fn delete_this_one<K>(
    api: &Api<K>,
    meta: &ObjectMeta,
    mut dp: DeleteParams,
    kind: &str,
    ns: &str,
) -> Result<bool>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let name = meta.name.clone().unwrap_or_default();
    dp.preconditions = Some(kube::api::Preconditions {
        uid: meta.uid.clone(),
        resource_version: None,
    });
    match api.delete(&name, &dp).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(false),
        Err(e) => Err(map_err(&format!("{kind} {ns}/{name}"), e)),
    }
}

/// As kubectl's `deploymentutil.Revision`: a missing annotation is revision 0; only an
/// unparsable one excludes the ReplicaSet.
fn revision_of(meta: &ObjectMeta) -> Option<i64> {
    match meta.annotations.as_ref().and_then(|a| a.get(REVISION)) {
        None => Some(0),
        Some(v) => v.parse().ok(),
    }
}

/// A template with the `pod-template-hash` label removed, for comparisons and rollback.
fn without_hash(mut t: PodTemplateSpec) -> PodTemplateSpec {
    if let Some(meta) = t.metadata.as_mut()
        && let Some(labels) = meta.labels.as_mut()
    {
        labels.remove("pod-template-hash");
        if labels.is_empty() {
            meta.labels = None;
        }
    }
    t
}

#[async_trait]
impl Cluster for KubeCluster {
    async fn restart(&self, t: &Target, dry_run: bool) -> Result<()> {
        self.check_target(t)?;
        let w = self.workload(t).await?;
        refuse_disabled(&w.meta, t)?;
        if w.paused {
            return Err(Error::Refused(format!(
                "deployment {}/{} is paused; resume it first (kubectl rollout resume)",
                t.namespace, t.name
            )));
        }
        if w.on_delete {
            return Err(Error::Refused(format!(
                "{} uses the OnDelete update strategy: a restart would replace no pod",
                describe(t)
            )));
        }
        // kubectl's format: RFC 3339 in whole seconds.
        let now = format!("{:.0}", k8s_openapi::jiff::Timestamp::now());
        let patch =
            json!({"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: now}}}}});
        self.patch_workload(t, patch, dry_run).await
    }

    async fn rollout_status(&self, t: &Target) -> Result<RolloutStatus> {
        self.check_target(t)?;
        match t.kind.as_str() {
            "Deployment" => {
                let d = self.get::<Deployment>(t).await?;
                Ok(deployment_status(&d))
            }
            "StatefulSet" => {
                let s = self.get::<StatefulSet>(t).await?;
                Ok(statefulset_status(&s))
            }
            "DaemonSet" => {
                let d = self.get::<DaemonSet>(t).await?;
                Ok(daemonset_status(&d))
            }
            other => Err(Error::Refused(format!("unsupported kind {other}"))),
        }
    }

    async fn rollback(&self, t: &Target, dry_run: bool) -> Result<Rollback> {
        self.check_target(t)?;
        if t.kind != "Deployment" {
            return Err(Error::Refused(
                "rollback is only supported for Deployments".into(),
            ));
        }
        let what = describe(t);
        let api = self.api::<Deployment>(&t.namespace);
        let d = api.get(&t.name).await.map_err(|e| map_err(&what, e))?;
        refuse_disabled(&d.metadata, t)?;
        let spec = d.spec.clone().unwrap_or_default();
        if spec.paused.unwrap_or(false) {
            return Err(Error::Refused(format!(
                "cannot roll back paused deployment {}/{}; resume it first (kubectl rollout resume)",
                t.namespace, t.name
            )));
        }
        let uid = d.metadata.uid.clone().unwrap_or_default();
        let selector = nonempty(selector_string(&spec.selector), t)?;
        let rss = self
            .api::<ReplicaSet>(&t.namespace)
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(|e| map_err(&format!("ReplicaSets of {what}"), e))?;
        // Only the ReplicaSets this Deployment controls, newest revision first.
        let mut owned: Vec<(i64, ReplicaSet)> = rss
            .items
            .into_iter()
            .filter(|rs| {
                rs.metadata
                    .owner_references
                    .iter()
                    .flatten()
                    .any(|o| o.uid == uid && o.controller == Some(true))
            })
            .filter_map(|rs| revision_of(&rs.metadata).map(|r| (r, rs)))
            .collect();
        owned.sort_by_key(|(revision, _)| std::cmp::Reverse(*revision));
        let Some((previous, rs)) = owned.into_iter().nth(1) else {
            return Ok(Rollback {
                done: false,
                revision: None,
                reason: format!(
                    "no previous revision of deployment {}/{}",
                    t.namespace, t.name
                ),
            });
        };
        let target_template = without_hash(
            rs.spec
                .clone()
                .unwrap_or_default()
                .template
                .unwrap_or_default(),
        );
        if without_hash(spec.template.clone()) == target_template {
            return Ok(Rollback {
                done: false,
                revision: Some(previous),
                reason: format!(
                    "skipped rollback: the current template already matches revision {previous}"
                ),
            });
        }
        let current = d.metadata.annotations.clone().unwrap_or_default();
        let mut annotations: BTreeMap<String, String> = ANNOTATIONS_TO_SKIP
            .iter()
            .filter_map(|k| current.get(*k).map(|v| ((*k).to_string(), v.clone())))
            .collect();
        for (k, v) in rs.metadata.annotations.clone().unwrap_or_default() {
            if !ANNOTATIONS_TO_SKIP.contains(&k.as_str()) {
                annotations.insert(k, v);
            }
        }
        let patch: json_patch::Patch = serde_json::from_value(json!([
            {"op": "replace", "path": "/spec/template", "value": target_template},
            {"op": "replace", "path": "/metadata/annotations", "value": annotations},
        ]))
        .map_err(|e| Error::Refused(format!("building the rollback patch: {e}")))?;
        api.patch(&t.name, &params(dry_run), &Patch::Json::<()>(patch))
            .await
            .map_err(|e| map_err(&what, e))?;
        Ok(Rollback {
            done: true,
            revision: Some(previous),
            reason: String::new(),
        })
    }

    async fn memory(&self, t: &Target, container: Option<&str>) -> Result<Memory> {
        self.check_target(t)?;
        let w = self.workload(t).await?;
        let containers = w.template.spec.map(|s| s.containers).unwrap_or_default();
        let c = match container {
            Some(name) => containers.into_iter().find(|c| c.name == name),
            None => containers.into_iter().next(),
        }
        .ok_or_else(|| {
            Error::NotFound(format!(
                "container {} in {}",
                container.unwrap_or("(first)"),
                describe(t)
            ))
        })?;
        let res = c.resources.unwrap_or_default();
        let get = |m: Option<
            BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
        >|
         -> Result<Option<i64>> {
            match m.and_then(|m| m.get("memory").cloned()) {
                Some(q) => quantity::parse_memory(&q.0)
                    .map(Some)
                    .map_err(|e| Error::Refused(e.to_string())),
                None => Ok(None),
            }
        };
        Ok(Memory {
            container: c.name,
            request: get(res.requests)?,
            limit: get(res.limits)?,
        })
    }

    async fn set_memory(
        &self,
        t: &Target,
        container: &str,
        request: Option<i64>,
        limit: i64,
        dry_run: bool,
    ) -> Result<()> {
        self.check_target(t)?;
        let w = self.workload(t).await?;
        refuse_disabled(&w.meta, t)?;
        if w.paused {
            return Err(Error::Refused(format!(
                "deployment {}/{} is paused: a new memory limit would never roll out",
                t.namespace, t.name
            )));
        }
        let current = self.memory(t, Some(container)).await?;
        let effective_request = request.or(current.request);
        if limit <= 0 || effective_request.is_some_and(|r| r > limit) {
            return Err(Error::Refused(format!(
                "limit below request: limit {} < request {} (container {container} of {})",
                quantity::format_memory(limit),
                quantity::format_memory(effective_request.unwrap_or(0)),
                describe(t)
            )));
        }
        let mut resources = json!({"limits": {"memory": quantity::format_memory(limit)}});
        if let Some(r) = request {
            resources["requests"] = json!({"memory": quantity::format_memory(r)});
        }
        // Strategic merge: the containers list merges by name, touching only this container.
        let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": container, "resources": resources}]}}}});
        self.patch_workload(t, patch, dry_run).await
    }

    async fn last_terminations(&self, t: &Target) -> Result<Vec<String>> {
        self.check_target(t)?;
        let w = self.workload(t).await?;
        let pods = self
            .api::<Pod>(&t.namespace)
            .list(&ListParams::default().labels(&nonempty(w.selector, t)?))
            .await
            .map_err(|e| map_err(&format!("pods of {}", describe(t)), e))?;
        let mut reasons: Vec<String> = Vec::new();
        for pod in pods.items {
            for cs in pod
                .status
                .and_then(|s| s.container_statuses)
                .unwrap_or_default()
            {
                let last = cs
                    .last_state
                    .and_then(|s| s.terminated)
                    .and_then(|t| t.reason);
                let now = cs.state.and_then(|s| s.terminated).and_then(|t| t.reason);
                for r in [last, now].into_iter().flatten() {
                    if !reasons.contains(&r) {
                        reasons.push(r);
                    }
                }
            }
        }
        Ok(reasons)
    }

    async fn delete_failed_pods(
        &self,
        ns: &str,
        older_than: Duration,
        dry_run: bool,
    ) -> Result<u64> {
        self.check_ns(ns)?;
        let api = self.api::<Pod>(ns);
        let pods = api
            .list(&ListParams::default().fields("status.phase=Failed"))
            .await
            .map_err(|e| map_err(&format!("Failed pods in {ns}"), e))?;
        let min_age = i64::try_from(older_than.as_millis()).unwrap_or(i64::MAX);
        let mut deleted = 0;
        for pod in pods.items {
            let status = pod.status.clone().unwrap_or_default();
            if status.phase.as_deref() != Some("Failed") {
                continue;
            }
            // When it finished: its containers' termination, else when it started, else created.
            let finished = status
                .container_statuses
                .iter()
                .flatten()
                .filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.finished_at.clone())
                .max_by_key(|t| t.0)
                .or(status.start_time.clone())
                .or(pod.metadata.creation_timestamp.clone());
            if finished.is_some_and(|f| age_ms(&f) >= min_age) {
                let dp = DeleteParams {
                    dry_run,
                    ..DeleteParams::default()
                };
                if delete_this_one(&api, &pod.metadata, dp, "pod", ns).await? {
                    deleted += 1;
                }
            }
        }
        Ok(deleted)
    }

    async fn delete_finished_jobs(
        &self,
        ns: &str,
        older_than: Duration,
        dry_run: bool,
    ) -> Result<u64> {
        self.check_ns(ns)?;
        let api = self.api::<Job>(ns);
        let jobs = api
            .list(&ListParams::default())
            .await
            .map_err(|e| map_err(&format!("Jobs in {ns}"), e))?;
        let min_age = i64::try_from(older_than.as_millis()).unwrap_or(i64::MAX);
        let mut deleted = 0;
        for job in jobs.items {
            let status = job.status.clone().unwrap_or_default();
            let finished = status.completion_time.clone().or_else(|| {
                status
                    .conditions
                    .iter()
                    .flatten()
                    .filter(|c| {
                        (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True"
                    })
                    .filter_map(|c| c.last_transition_time.clone())
                    .max_by_key(|t| t.0)
            });
            if finished.is_some_and(|f| age_ms(&f) >= min_age) {
                let dp = DeleteParams {
                    dry_run,
                    propagation_policy: Some(kube::api::PropagationPolicy::Background),
                    ..DeleteParams::default()
                };
                if delete_this_one(&api, &job.metadata, dp, "job", ns).await? {
                    deleted += 1;
                }
            }
        }
        Ok(deleted)
    }

    async fn replicas(&self, t: &Target) -> Result<Replicas> {
        self.check_target(t)?;
        match t.kind.as_str() {
            "Deployment" => {
                let d = self.get::<Deployment>(t).await?;
                let s = d.status.unwrap_or_default();
                Ok(Replicas {
                    desired: i64::from(d.spec.and_then(|s| s.replicas).unwrap_or(1)),
                    ready: i64::from(s.ready_replicas.unwrap_or(0)),
                    available: i64::from(s.available_replicas.unwrap_or(0)),
                    updated: i64::from(s.updated_replicas.unwrap_or(0)),
                })
            }
            "StatefulSet" => {
                let d = self.get::<StatefulSet>(t).await?;
                let s = d.status.unwrap_or_default();
                Ok(Replicas {
                    desired: i64::from(d.spec.and_then(|s| s.replicas).unwrap_or(1)),
                    ready: i64::from(s.ready_replicas.unwrap_or(0)),
                    available: i64::from(s.available_replicas.unwrap_or(0)),
                    updated: i64::from(s.updated_replicas.unwrap_or(0)),
                })
            }
            "DaemonSet" => {
                let d = self.get::<DaemonSet>(t).await?;
                let s = d.status.unwrap_or_default();
                Ok(Replicas {
                    desired: i64::from(s.desired_number_scheduled),
                    ready: i64::from(s.number_ready),
                    available: i64::from(s.number_available.unwrap_or(0)),
                    updated: i64::from(s.updated_number_scheduled.unwrap_or(0)),
                })
            }
            other => Err(Error::Refused(format!("unsupported kind {other}"))),
        }
    }

    async fn record_event(&self, t: &Target, reason: &str, message: &str) -> Result<()> {
        self.check_target(t)?;
        // The uid ties the Event to this incarnation of the object; without it (the object
        // is gone, say) the Event still names it.
        let uid = self.workload(t).await.ok().and_then(|w| w.meta.uid);
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        let (api_version, kind) = ("apps/v1", t.kind.clone());
        let event = Event {
            metadata: ObjectMeta {
                generate_name: Some(format!("{}.", t.name)),
                namespace: Some(t.namespace.clone()),
                ..ObjectMeta::default()
            },
            involved_object: ObjectReference {
                api_version: Some(api_version.into()),
                kind: Some(kind),
                name: Some(t.name.clone()),
                namespace: Some(t.namespace.clone()),
                uid,
                ..ObjectReference::default()
            },
            reason: Some(reason.into()),
            message: Some(message.into()),
            type_: Some("Normal".into()),
            source: Some(k8s_openapi::api::core::v1::EventSource {
                component: Some("aiops".into()),
                host: None,
            }),
            first_timestamp: Some(now.clone()),
            last_timestamp: Some(now),
            count: Some(1),
            reporting_component: Some("aiops".into()),
            reporting_instance: Some(std::env::var("HOSTNAME").unwrap_or_else(|_| "aiops".into())),
            ..Event::default()
        };
        self.api::<Event>(&t.namespace)
            .create(&PostParams::default(), &event)
            .await
            .map(|_| ())
            .map_err(|e| map_err(&format!("event on {}", describe(t)), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timed_out(condition_at: &str, aiops_wrote_at: Option<&str>) -> Deployment {
        let mut managed = vec![
            json!({"manager": "kubectl", "operation": "Update", "time": "2026-01-01T00:00:00Z"}),
        ];
        if let Some(at) = aiops_wrote_at {
            managed.push(json!({"manager": "aiops", "operation": "Update", "time": at}));
        }
        serde_json::from_value(json!({
            "metadata": {"name": "web", "generation": 3, "managedFields": managed},
            "spec": {"replicas": 1, "selector": {}, "template": {}},
            "status": {"observedGeneration": 3, "replicas": 2, "updatedReplicas": 1,
                "conditions": [{"type": "Progressing", "status": "False",
                    "reason": "ProgressDeadlineExceeded", "lastUpdateTime": condition_at}]}
        }))
        .unwrap()
    }

    #[test]
    fn a_deadline_exceeded_before_aiopss_last_write_is_the_previous_rollouts_and_not_a_failure() {
        let s = deployment_status(&timed_out(
            "2026-11-30T02:00:00Z",
            Some("2026-11-30T02:00:05Z"),
        ));
        assert!(!s.failed && !s.complete, "{s:?}");
    }

    #[test]
    fn a_deadline_exceeded_after_aiopss_last_write_or_without_one_fails_the_rollout() {
        let after = deployment_status(&timed_out(
            "2026-11-30T02:10:00Z",
            Some("2026-11-30T02:00:05Z"),
        ));
        assert!(after.failed, "{after:?}");
        assert!(after.message.contains("exceeded its progress deadline"));
        let same_second = deployment_status(&timed_out(
            "2026-11-30T02:00:05Z",
            Some("2026-11-30T02:00:05Z"),
        ));
        assert!(
            same_second.failed,
            "whole seconds: the same one is fresh, {same_second:?}"
        );
        let never_written = deployment_status(&timed_out("2026-11-30T02:10:00Z", None));
        assert!(never_written.failed, "{never_written:?}");
    }
}
