//! Reads: the workload behind a target whatever its kind, its containers' memory, its pods'
//! last terminations and its replicas.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::ListParams;

use super::{KubeCluster, describe, map_err};
use crate::cluster::{Error, Memory, Replicas, Result, Target, quantity};

/// The workload's pod template and selector, whatever its kind.
pub(super) struct Workload {
    pub(super) meta: ObjectMeta,
    pub(super) template: PodTemplateSpec,
    pub(super) selector: String,
    pub(super) paused: bool,
    pub(super) on_delete: bool,
    /// spec.replicas (the API's default of 1 when unset; 0 for a DaemonSet, which has none).
    pub(super) replicas: i64,
}

/// A label selector in the API's query syntax, matchExpressions included (as kubectl's
/// `LabelSelectorAsSelector`).
pub(super) fn selector_string(
    sel: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
) -> String {
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
pub(super) fn nonempty(selector: String, t: &Target) -> Result<String> {
    if selector.is_empty() {
        Err(Error::Refused(format!(
            "{} has an empty selector",
            describe(t)
        )))
    } else {
        Ok(selector)
    }
}

impl KubeCluster {
    /// The workload's template, selector and update strategy, whatever its kind.
    pub(super) async fn workload(&self, t: &Target) -> Result<Workload> {
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
                    replicas: spec.replicas.unwrap_or(1).into(),
                })
            }
            "StatefulSet" => {
                let s = self.get::<StatefulSet>(t).await?;
                let spec = s.spec.unwrap_or_default();
                Ok(Workload {
                    meta: s.metadata,
                    replicas: spec.replicas.unwrap_or(1).into(),
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
                    replicas: 0,
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
}

impl KubeCluster {
    /// The memory request and limit of a container (the first by default).
    pub(super) async fn memory_of(&self, t: &Target, container: Option<&str>) -> Result<Memory> {
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

    /// The last termination reasons of the workload's pods' containers.
    pub(super) async fn last_terminations_of(&self, t: &Target) -> Result<Vec<String>> {
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

    /// The workload's desired, ready, available and updated replicas.
    pub(super) async fn replicas_of(&self, t: &Target) -> Result<Replicas> {
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
}

/// kubectl reports no rollout for OnDelete: nothing replaces the pods, so a wait would never end.
pub(super) fn on_delete(strategy_type: Option<&str>) -> bool {
    strategy_type.is_some_and(|t| t != "RollingUpdate")
}
