//! Rollouts: their status as `kubectl rollout status` computes it for each kind, and
//! `kubectl rollout undo` of a Deployment (the ReplicaSets it controls, the previous template).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{ListParams, Patch};
use serde_json::json;

use super::workload::{nonempty, on_delete, selector_string};
use super::{
    ANNOTATIONS_TO_SKIP, FIELD_MANAGER, KubeCluster, REVISION, ROLLED_BACK, describe, map_err,
    params, refuse_disabled,
};
use crate::cluster::{Error, Result, Rollback, RolloutStatus, Target};
use crate::gitops::{Field, FieldChange};

impl KubeCluster {
    /// The rollout's state as `kubectl rollout status` reports it.
    pub(super) async fn rollout_status_of(&self, t: &Target) -> Result<RolloutStatus> {
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

    /// `kubectl rollout undo` of a Deployment to its previous revision.
    pub(super) async fn roll_back(&self, t: &Target, dry_run: bool) -> Result<Rollback> {
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
                restores: Vec::new(),
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
                // The template already is the restored one: no image differs.
                restores: Vec::new(),
                done: false,
                revision: Some(previous),
                reason: format!(
                    "skipped rollback: the current template already matches revision {previous}"
                ),
            });
        }
        let restores = restored_images(&spec.template, &target_template);
        let current = d.metadata.annotations.clone().unwrap_or_default();
        let mut annotations: BTreeMap<String, String> = current
            .iter()
            .filter(|(k, _)| kept_from_deployment(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (k, v) in rs.metadata.annotations.clone().unwrap_or_default() {
            if !kept_from_deployment(&k) {
                annotations.insert(k, v);
            }
        }
        annotations.insert(
            ROLLED_BACK.to_string(),
            format!(
                "revision {previous} at {:.0}",
                k8s_openapi::jiff::Timestamp::now()
            ),
        );
        let patch: json_patch::Patch = serde_json::from_value(json!([
            {"op": "replace", "path": "/spec/template", "value": target_template},
            {"op": "replace", "path": "/metadata/annotations", "value": annotations},
        ]))
        .map_err(|e| Error::Refused(format!("building the rollback patch: {e}")))?;
        api.patch(&t.name, &params(dry_run), &Patch::Json::<()>(patch))
            .await
            .map_err(|e| map_err(&what, e))?;
        Ok(Rollback {
            restores,
            done: true,
            revision: Some(previous),
            reason: String::new(),
        })
    }
}

/// Whether a rollback keeps this annotation from the Deployment instead of taking the old
/// ReplicaSet's: kubectl's skip list, plus the GitOps annotations. A hold placed just before the
/// rollback (`kustomize.toolkit.fluxcd.io/reconcile: disabled`) lives there, and dropping it
/// would let Flux roll the bad revision straight forward again; Argo CD's tracking and sync
/// annotations describe the Deployment, not an old revision of its template.
fn kept_from_deployment(key: &str) -> bool {
    ANNOTATIONS_TO_SKIP.contains(&key)
        || key.starts_with("argocd.argoproj.io/")
        || key.starts_with("kustomize.toolkit.fluxcd.io/")
        || key.starts_with("helm.toolkit.fluxcd.io/")
}

pub(super) fn deployment_status(d: &Deployment) -> RolloutStatus {
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
        // restart) the condition is the *previous* rollout's. A rollout aiops started cannot
        // time out before its progress deadline has passed since aiops's write, so a condition
        // stamped earlier than that is stale: keep waiting (the playbook's own wait bounds it).
        // Both times are the API server's, in whole seconds; truncation keeps the bound exact.
        let deadline = k8s_openapi::jiff::SignedDuration::from_secs(
            d.spec
                .as_ref()
                .and_then(|s| s.progress_deadline_seconds)
                .unwrap_or(600)
                .into(),
        );
        let stale = match (&condition.last_update_time, last_written_by_aiops(d)) {
            (Some(at), Some(written)) => written
                .checked_add(deadline)
                .is_ok_and(|fresh_from| at.0 < fresh_from),
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

/// As kubectl's `deploymentutil.Revision`: a missing annotation is revision 0; only an
/// unparsable one excludes the ReplicaSet.
fn revision_of(meta: &ObjectMeta) -> Option<i64> {
    match meta.annotations.as_ref().and_then(|a| a.get(REVISION)) {
        None => Some(0),
        Some(v) => v.parse().ok(),
    }
}

/// Each container of `restored` whose image differs from the same container's in `current`
/// (or that `current` lacks): what a rollback puts back, and what Git would have to say instead.
pub(super) fn restored_images(
    current: &PodTemplateSpec,
    restored: &PodTemplateSpec,
) -> Vec<FieldChange> {
    let containers = |t: &PodTemplateSpec| t.spec.as_ref().map(|s| s.containers.clone());
    let now = containers(current).unwrap_or_default();
    containers(restored)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|c| {
            let image = c.image?;
            let live = now.iter().find(|n| n.name == c.name);
            (live.and_then(|n| n.image.as_deref()) != Some(image.as_str())).then_some(FieldChange {
                field: Field::Image { container: c.name },
                value: image,
            })
        })
        .collect()
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
