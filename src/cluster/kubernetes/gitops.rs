//! GitOps awareness on the real API server: what an object's metadata says about its owner,
//! which field managers own the fields a repair changes (from `managedFields`), and the holds
//! that pause Argo CD or Flux for one object.
//!
//! - `object_info`: the workload's labels, annotations and managers (name, operation).
//! - `observe`: each field's live value and the managers whose `fieldsV1` contain it. The
//!   lookup is a pure function ([`observe_fields`]) over the typed `ManagedFieldsEntry` list and
//!   the pod template, unit-tested with managedFields as the API server writes them.
//! - hold / release, through [`DynamicObject`] and [`ApiResource`] (no CRD crates: only a few
//!   fields are read or patched), merge patches with field manager `aiops`:
//!   - Flux Kustomization: the object's own `kustomize.toolkit.fluxcd.io/reconcile: disabled`
//!     annotation (kustomize-controller then neither applies nor prunes it); needs only the
//!     `patch` on the workload aiops already has. A value already there (a person disabled
//!     it) is saved and put back, never removed.
//!   - Flux HelmRelease (`helm.toolkit.fluxcd.io/v2`): `spec.suspend: true`, the old value
//!     saved and put back.
//!   - Argo CD Application (`argoproj.io/v1alpha1`): `spec.syncPolicy.automated` removed (no
//!     automated sync, no self-heal) and saved as JSON text to put back. Refused for an
//!     Application an ApplicationSet generated: the ApplicationSet controller would put the
//!     automated policy back on its next reconcile; likewise for an Application another
//!     Application manages (app of apps, `argocd.argoproj.io/tracking-id` on it).
//!
//!   Release is idempotent: an object that is gone, or already released, is fine.
//! - `git_agrees`: Argo CD keeps comparing while automated sync is off; its
//!   `status.resources[]` entry for the workload says `Synced` once Git holds the live values.
//!   Flux reports no per-object drift, so it says nothing.
//!
//! A 403 names the permission that is missing ("patch on applications.argoproj.io in namespace
//! argocd"), so the host's "hold not possible, skipped instead" reason says what to grant.

use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ManagedFieldsEntry, ObjectMeta};
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch};
use serde_json::{Value, json};

use super::{KubeCluster, RESTARTED_AT, describe, map_err, params, refuse_disabled};
use crate::cluster::{Error, Result, Target};
use crate::gitops::{
    Controller, FLUX_RECONCILE, FLUX_RECONCILE_DISABLED, Field, FieldState, HoldMechanism,
    HoldPlacement, Manager, ObjectInfo,
};

/// An Argo CD Application as the API serves it.
fn application_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("argoproj.io", "v1alpha1", "Application"),
        "applications",
    )
}

/// A Flux HelmRelease (v2, the GA API).
fn helmrelease() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("helm.toolkit.fluxcd.io", "v2", "HelmRelease"),
        "helmreleases",
    )
}

/// The apps/v1 resource of a workload kind, for patches that do not care which kind it is.
fn workload_resource(kind: &str) -> Result<ApiResource> {
    let plural = match kind {
        "Deployment" => "deployments",
        "StatefulSet" => "statefulsets",
        "DaemonSet" => "daemonsets",
        other => return Err(Error::Refused(format!("unsupported kind {other}"))),
    };
    Ok(ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("apps", "v1", kind),
        plural,
    ))
}

/// `resource.group` as RBAC and the API server's messages name it.
fn resource_name(ar: &ApiResource) -> String {
    if ar.group.is_empty() {
        ar.plural.clone()
    } else {
        format!("{}.{}", ar.plural, ar.group)
    }
}

/// [`map_err`], except that a 403 says which permission aiops lacks: the reason a hold
/// degrades to a skip must tell the operator what to grant.
fn controller_err(verb: &str, ar: &ApiResource, ns: &str, what: &str, e: kube::Error) -> Error {
    match &e {
        kube::Error::Api(s) if s.code == 403 => Error::Refused(format!(
            "forbidden on {what}: aiops needs {verb} on {} in namespace {ns} (grant it in the ClusterRole)",
            resource_name(ar)
        )),
        _ => map_err(what, e),
    }
}

/// Whether an error means the object is gone (release then has nothing to undo).
fn gone(r: Result<()>) -> Result<()> {
    match r {
        Err(Error::NotFound(_)) => Ok(()),
        other => other,
    }
}

/// Walks `fieldsV1` along `path` (`f:` keys).
fn walk<'a>(mut v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    for key in path {
        v = v.get(*key)?;
    }
    Some(v)
}

/// The `fieldsV1` set of a container: the `k:{"name":"…"}` key under `f:containers`, compared
/// as JSON (the key's spelling is the API server's, not ours to guess).
fn container_set<'a>(fields: &'a Value, name: &str) -> Option<&'a Value> {
    let containers = walk(fields, &["f:spec", "f:template", "f:spec", "f:containers"])?;
    containers.as_object()?.iter().find_map(|(key, set)| {
        let k: Value = serde_json::from_str(key.strip_prefix("k:")?).ok()?;
        (k.get("name")?.as_str()? == name).then_some(set)
    })
}

/// Whether a manager's `fieldsV1` set contains `field`.
fn owns(fields: &Value, field: &Field) -> bool {
    let in_container = |name: &str, path: &[&str]| {
        container_set(fields, name).is_some_and(|c| walk(c, path).is_some())
    };
    match field {
        Field::MemoryLimit { container } => {
            in_container(container, &["f:resources", "f:limits", "f:memory"])
        }
        Field::MemoryRequest { container } => {
            in_container(container, &["f:resources", "f:requests", "f:memory"])
        }
        Field::Image { container } => in_container(container, &["f:image"]),
        Field::Replicas => walk(fields, &["f:spec", "f:replicas"]).is_some(),
        Field::RestartedAt => walk(
            fields,
            &[
                "f:spec",
                "f:template",
                "f:metadata",
                "f:annotations",
                &format!("f:{RESTARTED_AT}"),
            ],
        )
        .is_some(),
    }
}

/// A field's live value in the workload, as the API server returns it.
fn value_of(field: &Field, replicas: Option<i64>, template: &PodTemplateSpec) -> Option<String> {
    let container = |name: &str| {
        template
            .spec
            .as_ref()?
            .containers
            .iter()
            .find(|c| c.name == name)
    };
    let memory = |name: &str, limits: bool| {
        let resources = container(name)?.resources.as_ref()?;
        let set = if limits {
            resources.limits.as_ref()
        } else {
            resources.requests.as_ref()
        };
        set?.get("memory").map(|q| q.0.clone())
    };
    match field {
        Field::MemoryLimit { container } => memory(container, true),
        Field::MemoryRequest { container } => memory(container, false),
        Field::Image { container: name } => container(name)?.image.clone(),
        Field::Replicas => replicas.map(|r| r.to_string()),
        Field::RestartedAt => template
            .metadata
            .as_ref()?
            .annotations
            .as_ref()?
            .get(RESTARTED_AT)
            .cloned(),
    }
}

/// Each field's value and the managers that own it, from the workload's `managedFields`, its
/// `spec.replicas` (`None` for a DaemonSet) and pod template. A manager listed in several
/// entries (an `Update` and an `Apply`, a subresource) is named once.
pub(super) fn observe_fields(
    managed: &[ManagedFieldsEntry],
    replicas: Option<i64>,
    template: &PodTemplateSpec,
    fields: &[Field],
) -> Vec<FieldState> {
    fields
        .iter()
        .map(|field| {
            let mut managers: Vec<String> = Vec::new();
            for entry in managed {
                let (Some(name), Some(set)) = (&entry.manager, &entry.fields_v1) else {
                    continue;
                };
                if owns(&set.0, field) && !managers.contains(name) {
                    managers.push(name.clone());
                }
            }
            FieldState {
                field: field.clone(),
                value: value_of(field, replicas, template),
                managers,
            }
        })
        .collect()
}

/// Labels, annotations and the distinct (manager, operation) pairs of `managedFields`.
pub(super) fn object_info_of(meta: &ObjectMeta) -> ObjectInfo {
    let mut managers: Vec<Manager> = Vec::new();
    for entry in meta.managed_fields.iter().flatten() {
        let m = Manager {
            name: entry.manager.clone().unwrap_or_default(),
            operation: entry.operation.clone().unwrap_or_default(),
        };
        if !managers.contains(&m) {
            managers.push(m);
        }
    }
    ObjectInfo {
        labels: meta.labels.clone().unwrap_or_default(),
        annotations: meta.annotations.clone().unwrap_or_default(),
        managers,
    }
}

/// The sync status Argo CD reports for the workload in the Application's `status.resources`:
/// `Synced` → true, `OutOfSync` → false, anything else (absent, `Unknown`) → no answer.
pub(super) fn argo_sync_status(app: &Value, t: &Target) -> Option<bool> {
    let entry = app
        .pointer("/status/resources")?
        .as_array()?
        .iter()
        .find(|r| {
            let s = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or("");
            s("group") == "apps"
                && s("kind") == t.kind
                && s("namespace") == t.namespace
                && s("name") == t.name
        })?;
    match entry.get("status").and_then(Value::as_str)? {
        "Synced" => Some(true),
        "OutOfSync" => Some(false),
        _ => None,
    }
}

/// The ApplicationSet that generated an Application, if one did.
fn application_set(meta: &ObjectMeta) -> Option<String> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|o| o.kind == "ApplicationSet")
        .map(|o| o.name.clone())
}

/// The Application that manages this Application (app of apps), if one does: Argo CD marks what
/// an Application deploys with `argocd.argoproj.io/tracking-id: <app>:<group>/<kind>:<ns>/<name>`.
/// The parent's self-heal would put a removed `syncPolicy.automated` back within seconds.
fn parent_application(meta: &ObjectMeta) -> Option<String> {
    let id = meta
        .annotations
        .as_ref()?
        .get("argocd.argoproj.io/tracking-id")?;
    let parent = id.split(':').next().unwrap_or_default();
    Some(if parent.is_empty() {
        id.clone()
    } else {
        parent.to_owned()
    })
}

/// The value saved from `v` (JSON text), `None` when absent or null.
fn saved_json(v: Option<&Value>) -> Option<String> {
    v.filter(|v| !v.is_null()).map(Value::to_string)
}

/// Saved JSON text back to a value to patch in (`null` removes the field again).
fn restore_json(saved: Option<&str>, what: &str) -> Result<Value> {
    saved.map_or(Ok(Value::Null), |text| {
        serde_json::from_str(text)
            .map_err(|e| Error::Refused(format!("the value saved for {what} is not JSON: {e}")))
    })
}

/// An Argo CD Application or a Flux HelmRelease: its API, and how its errors name it.
struct ControllerObject {
    api: Api<DynamicObject>,
    resource: ApiResource,
    namespace: String,
    name: String,
    /// `Application argocd/shop`, for messages.
    what: String,
}

impl ControllerObject {
    async fn get(&self) -> Result<DynamicObject> {
        self.api
            .get(&self.name)
            .await
            .map_err(|e| controller_err("get", &self.resource, &self.namespace, &self.what, e))
    }

    /// A merge patch as `aiops`; an object that is gone is an `Error::NotFound`.
    async fn patch(&self, body: &Value, dry_run: bool) -> Result<()> {
        self.api
            .patch(&self.name, &params(dry_run), &Patch::Merge(body))
            .await
            .map(drop)
            .map_err(|e| controller_err("patch", &self.resource, &self.namespace, &self.what, e))
    }
}

impl KubeCluster {
    /// The controller object of `c` (a Flux Kustomization's hold is on the workload, not on
    /// its object, so it has none here), after checking its namespace and name can be used in a path (they come from
    /// labels and annotations anyone could write). The namespace policy is the targets'; Argo
    /// CD and Flux live in their own namespaces.
    fn controller_object(&self, c: &Controller) -> Result<ControllerObject> {
        let (resource, namespace, name) = match c {
            Controller::FluxKustomization { .. } => {
                return Err(Error::Refused(format!(
                    "{c} is held through the workload's own annotation, not its object"
                )));
            }
            Controller::FluxHelmRelease { name, namespace } => (helmrelease(), namespace, name),
            Controller::ArgoCd {
                application,
                namespace,
            } => (application_resource(), namespace, application),
        };
        crate::k8s_name::target(namespace, name)
            .map_err(|e| Error::Refused(format!("invalid {} reference: {e}", resource.kind)))?;
        Ok(ControllerObject {
            api: Api::namespaced_with(self.client.clone(), namespace, &resource),
            what: format!("{} {namespace}/{name}", resource.kind),
            resource,
            namespace: namespace.clone(),
            name: name.clone(),
        })
    }

    fn workload_api(&self, t: &Target) -> Result<Api<DynamicObject>> {
        let ar = workload_resource(&t.kind)?;
        Ok(Api::namespaced_with(self.client.clone(), &t.namespace, &ar))
    }

    /// What the workload's metadata says about its owners.
    pub(super) async fn object_info_for(&self, t: &Target) -> Result<ObjectInfo> {
        self.check_target(t)?;
        let w = self.workload(t).await?;
        Ok(object_info_of(&w.meta))
    }

    /// The fields' live values and owning managers.
    pub(super) async fn observe_workload(
        &self,
        t: &Target,
        fields: &[Field],
    ) -> Result<Vec<FieldState>> {
        self.check_target(t)?;
        let w = self.workload(t).await?;
        let replicas = (t.kind != "DaemonSet").then_some(w.replicas);
        let managed = w.meta.managed_fields.unwrap_or_default();
        Ok(observe_fields(&managed, replicas, &w.template, fields))
    }

    /// Pauses `c` for the workload; see the module docs for each mechanism.
    pub(super) async fn hold_controller(
        &self,
        t: &Target,
        c: &Controller,
        dry_run: bool,
    ) -> Result<HoldPlacement> {
        self.check_target(t)?;
        // The workload must exist and accept repairs: a hold is placed only to act on it.
        let w = self.workload(t).await?;
        refuse_disabled(&w.meta, t)?;
        match c {
            Controller::FluxKustomization { .. } => {
                let saved = w
                    .meta
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(FLUX_RECONCILE))
                    .cloned();
                if saved.as_deref() != Some(FLUX_RECONCILE_DISABLED) {
                    let patch = json!({"metadata": {"annotations": {FLUX_RECONCILE: FLUX_RECONCILE_DISABLED}}});
                    self.workload_api(t)?
                        .patch(&t.name, &params(dry_run), &Patch::Merge(&patch))
                        .await
                        .map_err(|e| map_err(&describe(t), e))?;
                }
                Ok(HoldPlacement {
                    mechanism: HoldMechanism::FluxObjectAnnotation,
                    saved,
                })
            }
            Controller::FluxHelmRelease { .. } | Controller::ArgoCd { .. } => {
                let object = self.controller_object(c)?;
                let live = object.get().await?;
                let (mechanism, saved, patch) = if let Controller::ArgoCd { .. } = c {
                    if let Some(set) = application_set(&live.metadata) {
                        return Err(Error::Refused(format!(
                            "{} is generated by ApplicationSet {set}, which would put its automated sync back; pausing it is not possible",
                            object.what
                        )));
                    }
                    if let Some(parent) = parent_application(&live.metadata) {
                        return Err(Error::Refused(format!(
                            "{} is managed by Application {parent} (app of apps), which would put its automated sync back; pausing it is not possible",
                            object.what
                        )));
                    }
                    let saved = saved_json(live.data.pointer("/spec/syncPolicy/automated"));
                    let patch = json!({"spec": {"syncPolicy": {"automated": null}}});
                    (HoldMechanism::ArgoAutomatedOff, saved, patch)
                } else {
                    let saved = saved_json(live.data.pointer("/spec/suspend"));
                    let patch = json!({"spec": {"suspend": true}});
                    (HoldMechanism::FluxHelmReleaseSuspend, saved, patch)
                };
                // Without an automated policy Argo CD does not sync by itself: nothing to
                // pause, and still a hold (it is recorded and released like any other).
                if saved.is_some() || mechanism == HoldMechanism::FluxHelmReleaseSuspend {
                    object.patch(&patch, dry_run).await?;
                }
                Ok(HoldPlacement { mechanism, saved })
            }
        }
    }

    /// Puts back what [`KubeCluster::hold_controller`] changed; a gone object is released.
    pub(super) async fn release_controller(
        &self,
        t: &Target,
        c: &Controller,
        p: &HoldPlacement,
    ) -> Result<()> {
        match (p.mechanism, c) {
            (HoldMechanism::FluxObjectAnnotation, _) => {
                self.check_target(t)?;
                let value = p.saved.clone().map_or(Value::Null, Value::String);
                let patch = json!({"metadata": {"annotations": {FLUX_RECONCILE: value}}});
                let r = self
                    .workload_api(t)?
                    .patch(&t.name, &params(false), &Patch::Merge(&patch))
                    .await
                    .map(drop)
                    .map_err(|e| map_err(&describe(t), e));
                gone(r)
            }
            (HoldMechanism::FluxHelmReleaseSuspend, Controller::FluxHelmRelease { .. })
            | (HoldMechanism::ArgoAutomatedOff, Controller::ArgoCd { .. }) => {
                // An Application without automated sync was not changed: nothing to put back.
                if p.mechanism == HoldMechanism::ArgoAutomatedOff && p.saved.is_none() {
                    return Ok(());
                }
                let object = self.controller_object(c)?;
                let saved = restore_json(p.saved.as_deref(), &object.what)?;
                let patch = match p.mechanism {
                    HoldMechanism::ArgoAutomatedOff => {
                        json!({"spec": {"syncPolicy": {"automated": saved}}})
                    }
                    _ => json!({"spec": {"suspend": saved}}),
                };
                gone(object.patch(&patch, false).await)
            }
            (mechanism, c) => Err(Error::Refused(format!(
                "a hold by {} cannot be released on {c}",
                mechanism.describe()
            ))),
        }
    }

    /// Whether the controller's source agrees with the live workload (Argo CD only).
    pub(super) async fn git_agrees_for(&self, t: &Target, c: &Controller) -> Result<Option<bool>> {
        if !matches!(c, Controller::ArgoCd { .. }) {
            return Ok(None);
        }
        self.check_target(t)?;
        let object = self.controller_object(c)?;
        Ok(argo_sync_status(&object.get().await?.data, t))
    }
}

#[cfg(test)]
mod tests;
