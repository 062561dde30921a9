//! GitOps awareness: who owns a workload (Argo CD, Flux, or nobody), what a repair would have to
//! change in Git instead, and how the controller is paused for a `hold`.
//!
//! A workload applied by Argo CD or Flux is re-applied from Git: Argo CD's self-heal reverts a
//! live change to a field Git holds within seconds, Flux overwrites it on its next interval.
//! Before a playbook changes a workload, the host reads the object's labels, annotations and
//! `managedFields` ([`ObjectInfo`], from the cluster backend), [`detect`]s its owner, and
//! applies the rule's [`GitopsPolicy`](crate::rules::GitopsPolicy) to the kind of change:
//! act, hold (pause the controller, act, release later) or skip (escalate with the
//! [`GitChange`] to make). After acting, verification watches the changed [`Field`]s: a field
//! another manager set back means the repair was `reverted`.
//!
//! Detection follows the controllers' own markers:
//! - Argo CD: the `argocd.argoproj.io/tracking-id` annotation (`app:group/Kind:namespace/name`,
//!   the default tracking method since 2.x… and the only one in 3.x's defaults), or, with
//!   `gitops.tracking: label`, the instance label (`app.kubernetes.io/instance`). A tracking id
//!   that names another object was copied, not applied, and Argo CD itself ignores it.
//! - Flux: the labels `kustomize.toolkit.fluxcd.io/name` + `/namespace` (a Kustomization) and
//!   `helm.toolkit.fluxcd.io/name` + `/namespace` (a HelmRelease, whose objects may carry both).
//! - `managedFields`: every manager is reported (a controller that applies with server-side
//!   apply shows up as `argocd-controller`, `kustomize-controller`, `helm-controller`).
//!
//! A leaf above `rules`, `quantity` and `duration`: the cluster backends, the playbook host,
//! the executor and the store all speak these types.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::duration::HumanDuration;
use crate::rules::{ChangeKind, GitopsDefaults, Target};

pub mod release;

/// Argo CD's resource-tracking annotation.
pub const ARGOCD_TRACKING_ID: &str = "argocd.argoproj.io/tracking-id";
/// Flux kustomize-controller's ownership labels.
pub const FLUX_KUSTOMIZATION_NAME: &str = "kustomize.toolkit.fluxcd.io/name";
/// See [`FLUX_KUSTOMIZATION_NAME`].
pub const FLUX_KUSTOMIZATION_NAMESPACE: &str = "kustomize.toolkit.fluxcd.io/namespace";
/// Flux helm-controller's ownership labels.
pub const FLUX_HELMRELEASE_NAME: &str = "helm.toolkit.fluxcd.io/name";
/// See [`FLUX_HELMRELEASE_NAME`].
pub const FLUX_HELMRELEASE_NAMESPACE: &str = "helm.toolkit.fluxcd.io/namespace";
/// The in-cluster annotation that makes kustomize-controller skip an object (no apply, no
/// prune) until it is removed: the hold of a Kustomization's object.
pub const FLUX_RECONCILE: &str = "kustomize.toolkit.fluxcd.io/reconcile";
/// [`FLUX_RECONCILE`]'s value that disables reconciliation.
pub const FLUX_RECONCILE_DISABLED: &str = "disabled";

/// How Argo CD marks the objects of an Application (`application.resourceTrackingMethod` in
/// `argocd-cm`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum TrackingMethod {
    /// The tracking-id annotation (Argo CD 3.x's default).
    #[default]
    #[serde(rename = "annotation")]
    Annotation,
    /// The tracking-id annotation; the instance label is informational only.
    #[serde(rename = "annotation+label")]
    AnnotationAndLabel,
    /// The instance label alone (Argo CD 2.x's default).
    #[serde(rename = "label")]
    Label,
}

/// The settings' `gitops:` section.
///
/// ```yaml
/// gitops:
///   tracking: annotation          # annotation | annotation+label | label (Argo CD's
///                                 #   application.resourceTrackingMethod)
///   instance_label: app.kubernetes.io/instance   # Argo CD's application.instanceLabelKey
///   argocd_namespace: argocd      # where Applications live when the tracking id names none
///   defaults: {restart: act, rollback: skip, memory: skip, scale: skip}
///   hold_for: 2h                  # how long a hold pauses the controller at most
///   watch: 3m                     # how long a changed field of an owned object is watched
///   release_interval: 30s         # how often holds are checked for expiry or Git agreeing
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GitopsSettings {
    /// Argo CD's tracking method.
    #[serde(default)]
    pub tracking: TrackingMethod,
    /// The label Argo CD's label tracking reads.
    #[serde(default = "default_instance_label")]
    pub instance_label: String,
    /// The namespace of Applications named by a tracking id without one (`app`, not
    /// `ns_app`).
    #[serde(default = "default_argocd_namespace")]
    pub argocd_namespace: String,
    /// The policy of each kind of change for rules without `gitops:`.
    #[serde(default)]
    pub defaults: GitopsDefaults,
    /// The longest a hold pauses a controller; then it is released whatever Git says.
    #[serde(default = "default_hold_for")]
    pub hold_for: HumanDuration,
    /// After a change to an owned object, how long verification keeps watching the changed
    /// fields for a revert (at least; the whole verification is watched too). The default
    /// covers Argo CD's refresh (120 s plus up to 60 s of jitter) and its self-heal delay.
    #[serde(default = "default_watch")]
    pub watch: HumanDuration,
    /// How often the holds are looked at (expiry, Git agreeing).
    #[serde(default = "default_release_interval")]
    pub release_interval: HumanDuration,
}

fn default_instance_label() -> String {
    "app.kubernetes.io/instance".to_string()
}
fn default_argocd_namespace() -> String {
    "argocd".to_string()
}
fn default_hold_for() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(2 * 3600))
}
fn default_watch() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(180))
}
fn default_release_interval() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(30))
}

impl Default for GitopsSettings {
    fn default() -> Self {
        GitopsSettings {
            tracking: TrackingMethod::default(),
            instance_label: default_instance_label(),
            argocd_namespace: default_argocd_namespace(),
            defaults: GitopsDefaults::default(),
            hold_for: default_hold_for(),
            watch: default_watch(),
            release_interval: default_release_interval(),
        }
    }
}

impl GitopsSettings {
    /// The section's own checks, each problem as `gitops.key: message`.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.hold_for.0.is_zero() {
            out.push("gitops.hold_for: must be longer than 0s".to_string());
        }
        if self.release_interval.0.is_zero() {
            out.push("gitops.release_interval: must be longer than 0s".to_string());
        }
        if self.instance_label.trim().is_empty() {
            out.push("gitops.instance_label: must not be empty".to_string());
        }
        if crate::k8s_name::namespace(&self.argocd_namespace).is_err() {
            out.push(format!(
                "gitops.argocd_namespace: {:?} is not a namespace name",
                self.argocd_namespace
            ));
        }
        out
    }
}

/// The controller that re-applies an object from Git.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "controller", rename_all = "snake_case")]
pub enum Controller {
    /// An Argo CD Application (`argoproj.io/v1alpha1`).
    ArgoCd {
        /// The Application's name.
        application: String,
        /// Its namespace.
        namespace: String,
    },
    /// A Flux Kustomization (`kustomize.toolkit.fluxcd.io/v1`).
    FluxKustomization {
        /// The Kustomization's name.
        name: String,
        /// Its namespace.
        namespace: String,
    },
    /// A Flux HelmRelease (`helm.toolkit.fluxcd.io/v2`).
    FluxHelmRelease {
        /// The HelmRelease's name.
        name: String,
        /// Its namespace.
        namespace: String,
    },
}

impl Controller {
    /// `argocd`, `flux_kustomization` or `flux_helmrelease`: for metrics, steps and the API.
    pub fn kind(&self) -> &'static str {
        match self {
            Controller::ArgoCd { .. } => "argocd",
            Controller::FluxKustomization { .. } => "flux_kustomization",
            Controller::FluxHelmRelease { .. } => "flux_helmrelease",
        }
    }

    /// The field manager the controller applies with, as its managedFields show it.
    pub fn field_manager(&self) -> &'static str {
        match self {
            Controller::ArgoCd { .. } => "argocd-controller",
            Controller::FluxKustomization { .. } => "kustomize-controller",
            Controller::FluxHelmRelease { .. } => "helm-controller",
        }
    }
}

impl fmt::Display for Controller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Controller::ArgoCd {
                application,
                namespace,
            } => write!(f, "Argo CD Application {namespace}/{application}"),
            Controller::FluxKustomization { name, namespace } => {
                write!(f, "Flux Kustomization {namespace}/{name}")
            }
            Controller::FluxHelmRelease { name, namespace } => {
                write!(f, "Flux HelmRelease {namespace}/{name}")
            }
        }
    }
}

/// One entry of an object's `managedFields`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manager {
    /// The field manager's name (`kustomize-controller`, `aiops`, `kubectl-edit`, …).
    pub name: String,
    /// `Apply` (server-side apply) or `Update`.
    pub operation: String,
}

/// What the cluster says about an object's ownership: read by the backends, judged by
/// [`detect`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectInfo {
    /// `metadata.labels`.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// `metadata.annotations`.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// `metadata.managedFields`, one entry per manager and operation.
    #[serde(default)]
    pub managers: Vec<Manager>,
}

/// Who owns an object: the GitOps controller that re-applies it, if any, and its field managers.
/// Recorded on the job (`jobs.gitops`) and answered to playbooks by `gitops(target)`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ownership {
    /// The controller, or `None` when no GitOps marker is on the object.
    pub controller: Option<Controller>,
    /// Every field manager of the object.
    pub managers: Vec<Manager>,
}

impl fmt::Display for Ownership {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.controller {
            Some(c) => write!(f, "owned by {c}")?,
            None => f.write_str("not owned by Argo CD or Flux")?,
        }
        if !self.managers.is_empty() {
            let names: Vec<&str> = self.managers.iter().map(|m| m.name.as_str()).collect();
            write!(f, " (field managers: {})", names.join(", "))?;
        }
        Ok(())
    }
}

/// The API group of a workload kind, as a tracking id writes it.
fn group_of(kind: &str) -> &'static str {
    match kind {
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" => "apps",
        _ => "",
    }
}

/// An Argo CD application name as tracking writes it: `app`, or `namespace_app` for an
/// Application outside Argo CD's own namespace.
fn argocd_app(value: &str, settings: &GitopsSettings) -> Option<Controller> {
    if value.is_empty() {
        return None;
    }
    let (namespace, application) = match value.split_once('_') {
        Some((ns, app)) if !ns.is_empty() && !app.is_empty() => (ns, app),
        _ => (settings.argocd_namespace.as_str(), value),
    };
    Some(Controller::ArgoCd {
        application: application.to_string(),
        namespace: namespace.to_string(),
    })
}

/// The Application a tracking id names, when the id names this very object (a tracking id
/// copied onto another object is ignored by Argo CD, and so here).
fn tracking_id(value: &str, target: &Target, settings: &GitopsSettings) -> Option<Controller> {
    // <app>:<group>/<Kind>:<namespace>/<name>
    let (app, rest) = value.split_once(':')?;
    let (group_kind, ns_name) = rest.split_once(':')?;
    let (group, kind) = group_kind.split_once('/')?;
    let (namespace, name) = ns_name.split_once('/')?;
    let names_this = kind == target.kind
        && group == group_of(&target.kind)
        && namespace == target.namespace
        && name == target.name;
    if !names_this {
        return None;
    }
    argocd_app(app, settings)
}

/// Who owns `target`, from what the cluster says about it.
pub fn detect(info: &ObjectInfo, target: &Target, settings: &GitopsSettings) -> Ownership {
    let label = |k: &str| info.labels.get(k).filter(|v| !v.is_empty());
    let flux =
        |name_key: &str, ns_key: &str| Some((label(name_key)?.clone(), label(ns_key)?.clone()));
    // helm-controller's objects can also carry the Kustomization's labels (a HelmRelease
    // applied by a Kustomization passes them on through post-renderers); the HelmRelease is
    // the one that applies the workload, so it comes first.
    let controller =
        if let Some((name, namespace)) = flux(FLUX_HELMRELEASE_NAME, FLUX_HELMRELEASE_NAMESPACE) {
            Some(Controller::FluxHelmRelease { name, namespace })
        } else if let Some((name, namespace)) =
            flux(FLUX_KUSTOMIZATION_NAME, FLUX_KUSTOMIZATION_NAMESPACE)
        {
            Some(Controller::FluxKustomization { name, namespace })
        } else {
            match settings.tracking {
                TrackingMethod::Annotation | TrackingMethod::AnnotationAndLabel => info
                    .annotations
                    .get(ARGOCD_TRACKING_ID)
                    .and_then(|v| tracking_id(v, target, settings)),
                TrackingMethod::Label => {
                    label(&settings.instance_label).and_then(|v| argocd_app(v, settings))
                }
            }
        };
    Ownership {
        controller,
        managers: info.managers.clone(),
    }
}

/// A field of a workload that a repair changes and a controller may set back.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "field", rename_all = "snake_case")]
pub enum Field {
    /// `resources.limits.memory` of a container.
    MemoryLimit {
        /// The container.
        container: String,
    },
    /// `resources.requests.memory` of a container.
    MemoryRequest {
        /// The container.
        container: String,
    },
    /// `image` of a container.
    Image {
        /// The container.
        container: String,
    },
    /// `spec.replicas`.
    Replicas,
    /// The pod template's `kubectl.kubernetes.io/restartedAt` annotation.
    RestartedAt,
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Field::MemoryLimit { container } => {
                write!(f, "resources.limits.memory of container {container}")
            }
            Field::MemoryRequest { container } => {
                write!(f, "resources.requests.memory of container {container}")
            }
            Field::Image { container } => write!(f, "image of container {container}"),
            Field::Replicas => f.write_str("replicas"),
            Field::RestartedAt => f.write_str("the restartedAt annotation of the pod template"),
        }
    }
}

/// A field and the value a repair gives it: what verification expects to stay, and what Git
/// would have to say.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldChange {
    /// The field.
    pub field: Field,
    /// Its new value as the API server writes it (`615Mi`, `web:v1`, `5`).
    pub value: String,
}

impl FieldChange {
    /// Whether the live field still holds this change (memory compared as quantities, so
    /// `1Gi` equals `1024Mi`).
    pub fn holds(&self, live: &FieldState) -> bool {
        let Some(value) = &live.value else {
            return false;
        };
        match self.field {
            Field::MemoryLimit { .. } | Field::MemoryRequest { .. } => {
                match (
                    crate::quantity::parse_memory(&self.value),
                    crate::quantity::parse_memory(value),
                ) {
                    (Ok(a), Ok(b)) => a == b,
                    _ => self.value == *value,
                }
            }
            _ => self.value == *value,
        }
    }
}

/// A field as the cluster has it now, with the managers that own it (from `managedFields`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldState {
    /// The field.
    pub field: Field,
    /// Its value, `None` when unset (or the container is gone).
    pub value: Option<String>,
    /// The field managers that own it.
    pub managers: Vec<String>,
}

/// What should change in Git instead of (or after) a repair of an owned object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GitChange {
    /// The kind of change the playbook asked for.
    pub kind: ChangeKind,
    /// The workload.
    pub target: Target,
    /// The fields and values (empty for a restart: Git holds nothing of it).
    pub changes: Vec<FieldChange>,
    /// The controller whose source holds the object.
    pub owner: Controller,
    /// For a rollback: the revision it goes back to, which names the change when no
    /// container image differs (`changes` is then empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<i64>,
}

impl GitChange {
    /// What to do in Git, as one sentence without the owner: "set resources.limits.memory of
    /// container web to 615Mi", "revert image of container web to web:v1", "set replicas to 5".
    pub fn instruction(&self) -> String {
        if self.changes.is_empty() {
            return match self.kind {
                ChangeKind::Restart => "nothing (a restart is not kept in Git)".to_string(),
                ChangeKind::Rollback => match (self.revision, &self.target) {
                    (Some(n), t) => format!(
                        "revert the pod template to the previous revision ({n}); no container image differs — compare `kubectl rollout history {}/{} -n {} --revision={n}`",
                        t.kind.to_lowercase(),
                        t.name,
                        t.namespace
                    ),
                    (None, _) => "revert the pod template to the previous revision; no container image differs".to_string(),
                },
                other => format!("nothing recorded for the {other}"),
            };
        }
        let verb = match self.kind {
            ChangeKind::Rollback => "revert",
            _ => "set",
        };
        self.changes
            .iter()
            .map(|c| format!("{verb} {} to {}", c.field, c.value))
            .collect::<Vec<_>>()
            .join(", and ")
    }
}

impl fmt::Display for GitChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "in the Git source of {} ({}): {}",
            self.target,
            self.owner,
            self.instruction()
        )
    }
}

/// How a controller is paused for one object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HoldMechanism {
    /// `kustomize.toolkit.fluxcd.io/reconcile: disabled` on the object itself (Flux
    /// kustomize-controller then neither applies nor prunes it): needs only the `patch` on the
    /// workload aiops already has.
    FluxObjectAnnotation,
    /// `spec.suspend: true` on the HelmRelease (needs `patch` on helmreleases).
    FluxHelmReleaseSuspend,
    /// The Application's `spec.syncPolicy.automated` removed (its value kept in the hold and
    /// put back on release; needs `patch` on applications). Argo CD then neither syncs nor
    /// self-heals, but still compares: the object turns `Synced` once Git holds the change.
    ArgoAutomatedOff,
}

impl HoldMechanism {
    /// How a person reads it.
    pub fn describe(self) -> &'static str {
        match self {
            HoldMechanism::FluxObjectAnnotation => {
                "annotation kustomize.toolkit.fluxcd.io/reconcile=disabled on the object"
            }
            HoldMechanism::FluxHelmReleaseSuspend => "spec.suspend=true on the HelmRelease",
            HoldMechanism::ArgoAutomatedOff => {
                "automated sync of the Application turned off (spec.syncPolicy.automated removed)"
            }
        }
    }
}

/// A hold as a backend placed it: enough to release it later, from any replica.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldPlacement {
    /// How.
    pub mechanism: HoldMechanism,
    /// What the hold replaced, to put back on release (the Application's `automated` object as
    /// JSON text); `None` when there is nothing to restore.
    pub saved: Option<String>,
}

#[cfg(test)]
mod tests;
