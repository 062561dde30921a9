//! Writes: the patches (restart, memory, scale), the cleanup of Failed pods and finished Jobs,
//! and the Kubernetes Events that say what aiops changed and why.
//!
//! Every change names aiops as its field manager and honours dry runs (`dryRun=All`).

use std::time::Duration;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Event, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, DeleteParams, ListParams, Patch, PostParams};
use serde_json::json;

use super::{KubeCluster, RESTARTED_AT, describe, map_err, params, refuse_disabled};
use crate::cluster::{Cluster, Error, Result, Scaled, Target, quantity};

impl KubeCluster {
    /// A strategic merge patch of the workload, whatever its kind.
    pub(super) async fn patch_workload(
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

impl KubeCluster {
    /// The rollout restart kubectl does: a new `restartedAt` annotation on the pod template.
    pub(super) async fn restart_workload(&self, t: &Target, dry_run: bool) -> Result<()> {
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

    /// Sets a container's memory limit (and request), refusing a limit below the request.
    pub(super) async fn set_memory_of(
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

    /// `kubectl scale`: a merge patch of `spec.replicas` on the scale subresource, so the
    /// request needs only `patch` on `deployments/scale` (or `statefulsets/scale`), never the
    /// right to change the pod template. The workload itself is read first, for the opt-out
    /// annotation and the count it had.
    pub(super) async fn scale_workload(
        &self,
        t: &Target,
        replicas: i64,
        dry_run: bool,
    ) -> Result<Scaled> {
        self.check_target(t)?;
        if t.kind == "DaemonSet" {
            return Err(Error::Refused(format!(
                "{} runs one pod per node: it has no replica count to scale",
                describe(t)
            )));
        }
        let count = i32::try_from(replicas)
            .ok()
            .filter(|r| *r >= 0)
            .ok_or_else(|| {
                Error::Refused(format!(
                    "replicas must be between 0 and {} (got {replicas} for {})",
                    i32::MAX,
                    describe(t)
                ))
            })?;
        let w = self.workload(t).await?;
        refuse_disabled(&w.meta, t)?;
        let patch = Patch::Merge(json!({"spec": {"replicas": count}}));
        let pp = params(dry_run);
        let scale = match t.kind.as_str() {
            "Deployment" => {
                self.api::<Deployment>(&t.namespace)
                    .patch_scale(&t.name, &pp, &patch)
                    .await
            }
            "StatefulSet" => {
                self.api::<StatefulSet>(&t.namespace)
                    .patch_scale(&t.name, &pp, &patch)
                    .await
            }
            other => return Err(Error::Refused(format!("unsupported kind {other}"))),
        }
        .map_err(|e| map_err(&describe(t), e))?;
        let to = scale.spec.and_then(|s| s.replicas).unwrap_or(count);
        Ok(Scaled {
            from: w.replicas,
            to: to.into(),
        })
    }

    /// Deletes the Failed pods (Evicted among them) older than `older_than`.
    pub(super) async fn delete_failed_pods_in(
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

    /// Deletes the finished Jobs older than `older_than`, with their pods.
    pub(super) async fn delete_finished_jobs_in(
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

    /// Records a Kubernetes Event on the target.
    pub(super) async fn record_event_on(
        &self,
        t: &Target,
        reason: &str,
        message: &str,
    ) -> Result<()> {
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

fn age_ms(t: &Time) -> i64 {
    (k8s_openapi::jiff::Timestamp::now().as_millisecond() - t.0.as_millisecond()).max(0)
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
