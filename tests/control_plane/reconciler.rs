//! Test reconcilers that behave like Flux's kustomize-controller and Argo CD's application
//! controller towards one Deployment, so the real-cluster tests can prove what aiops does to a
//! workload a GitOps controller owns (issue 18). Each is a tokio task that, every `interval`
//! (≤ 1 s; the real ones take minutes), server-side applies the "Git" version of the Deployment
//! with the controller's field manager and `force`, as the real controllers do. The test changes
//! Git with [`Reconciler::commit`] and stops the task with [`Reconciler::stop`]; every pass is
//! recorded ([`Pass`]) so a test can wait for passes instead of sleeping.
//!
//! # What the Flux-like one reproduces of kustomize-controller v1.9.6
//! Sources: `internal/controller/kustomization_controller.go` of
//! `github.com/fluxcd/kustomize-controller@v1.9.6` (the apply options, l. 890-985), fluxcd/pkg
//! `ssa` (`PatchReplaceFieldsManagers`, `matchFieldManager` in `patch.go`), the Flux FAQ "Why
//! are kubectl edits rolled back by Flux?" (/work/shared/notes/gitops.md).
//! - Server-side apply of the Git manifest with field manager `kustomize-controller`, forcing
//!   conflicts (fluxcd/pkg ssa always applies with `ForceOwnership`): a field Git holds is set
//!   back whoever changed it; a field Git lacks and another manager owns survives.
//! - Before applying, the managedFields entries of managers whose name *starts with* `kubectl`
//!   (operation Apply or Update), of `before-first-apply` (Update) and of its own Update entries
//!   (never a subresource's) are handed to `kustomize-controller` as an Apply entry, merging
//!   their field sets into its own, exactly as `PatchReplaceFieldsManagers` does: those fields
//!   are then "applied by Flux", and since Git lacks them the apply removes them. So a
//!   `kubectl-edit` or `kubectl-rollout` change is dropped even where Git is silent; an
//!   `aiops` change to a field Git lacks is not.
//! - The objects carry Flux's ownership labels `kustomize.toolkit.fluxcd.io/name|namespace`
//!   (kustomize-controller sets them on everything it applies).
//! - `kustomize.toolkit.fluxcd.io/reconcile: disabled` on the in-cluster object skips it (the
//!   controller's `ExclusionSelector`: no apply, no prune), and `spec.suspend: true` on the
//!   Kustomization skips everything (`if obj.Spec.Suspend` in `Reconcile`).
//!
//! What it does not: source-controller (fetching Git), `kustomize build`, the dry-run diff
//! before the apply (a server-side apply that changes nothing is a no-op on the server, so the
//! outcome is the same), pruning and the inventory, health checks and status conditions,
//! `kustomize.toolkit.fluxcd.io/ssa: IfNotPresent|Ignore|Merge`, `spec.force` (recreating
//! immutable objects), `spec.ignore` drift rules, `--override-manager`/`DisallowedFieldManagers`,
//! the removal of the `kubectl.kubernetes.io/last-applied-configuration` annotation, and
//! intervals of minutes with jitter. Flux's HelmRelease (helm-controller) is not reproduced at
//! all: its module is not served by the Go module proxy here, so its CRD is not installed.
//!
//! # What the Argo-like one reproduces of the Argo CD v3.5.2 application controller
//! Sources: `docs/user-guide/auto_sync.md` (automated sync, `selfHeal`, `enabled: false`, "an
//! automated sync will only be performed if the application is OutOfSync", one sync per
//! commit without selfHeal), `docs/user-guide/skip_reconcile.md`, `docs/user-guide/
//! sync-options.md` (ServerSideApply), `docs/user-guide/resource_tracking.md`, `common/common.go`
//! (`ArgoCDSSAManager = "argocd-controller"`) and `controller/appcontroller.go` (the
//! skip-reconcile check, l. 2558) of `github.com/argoproj/argo-cd/v3@v3.5.2`.
//! - Comparison on every pass, whether or not automated sync is on: Git is applied as a
//!   server-side *dry run* and the result's labels, annotations and spec are compared with the
//!   live object (Argo CD's server-side diff works this way); the Application's
//!   `status.sync.status` and its `status.resources[]` entry (group `apps`, kind, namespace,
//!   name) say `Synced` or `OutOfSync`. A field Git lacks (the `restartedAt` annotation) is not
//!   drift.
//! - Sync (a forced server-side apply as `argocd-controller`, as with `ServerSideApply=true`)
//!   only when OutOfSync and `spec.syncPolicy.automated` is set and not `enabled: false`: with
//!   `selfHeal: true` on every OutOfSync pass, without it once per new commit.
//! - `argocd.argoproj.io/skip-reconcile: "true"` on the Application stops all processing,
//!   status included, as the doc says.
//! - The objects carry the tracking-id annotation `<ns>_<app>:apps/Deployment:<ns>/<name>`
//!   (annotation tracking, the default; an Application outside the control-plane namespace is
//!   named `<ns>_<app>`).
//!
//! What it does not: Argo CD's default client-side `kubectl apply` (a three-way merge against
//! the last-applied-configuration annotation; the effect on a field Git holds and on one Git
//! lacks is the same as the server-side apply here), the 5 s self-heal timeout and its backoff,
//! the 120 s refresh with jitter, diff normalisation and `ignoreDifferences`
//! (`managedFieldsManagers`, `RespectIgnoreDifferences`), health assessment, hooks and waves,
//! pruning, sync windows, retries, the operation state and history, ApplicationSets (which
//! re-enable automated sync) and the AppProject.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use super::{TIMEOUT, wait_until};

/// How often the test reconcilers pass: well under the daemon's watch, so a revert is seen.
pub const INTERVAL: Duration = Duration::from_millis(500);

/// Flux's annotation that excludes an in-cluster object from reconciliation.
pub const FLUX_RECONCILE: &str = "kustomize.toolkit.fluxcd.io/reconcile";
/// Argo CD's annotation that stops all processing of an Application.
pub const ARGO_SKIP_RECONCILE: &str = "argocd.argoproj.io/skip-reconcile";

/// The Flux Kustomization resource (the CRD of tests/kube-env/crds.txt).
pub fn kustomizations() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("kustomize.toolkit.fluxcd.io", "v1", "Kustomization"),
        "kustomizations",
    )
}

/// The Argo CD Application resource (the CRD of tests/kube-env/crds.txt).
pub fn applications() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("argoproj.io", "v1alpha1", "Application"),
        "applications",
    )
}

/// Which controller a [`Reconciler`] plays; its object lives in the Deployment's namespace.
#[derive(Clone, Debug)]
pub enum Controller {
    /// kustomize-controller, for the Kustomization of this name.
    Flux { kustomization: String },
    /// Argo CD's application controller, for the Application of this name.
    Argo { application: String },
}

impl Controller {
    /// The field manager the real controller applies with.
    pub fn field_manager(&self) -> &'static str {
        match self {
            Controller::Flux { .. } => "kustomize-controller",
            Controller::Argo { .. } => "argocd-controller",
        }
    }
}

/// What one pass did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Did {
    /// Applied Git; `changed`: the live object differed (its resourceVersion moved).
    Applied { changed: bool },
    /// Compared only (Argo-like without a sync): the status it wrote.
    Compared { synced: bool },
    /// Did nothing, for this reason (a hold, a suspension).
    Skipped(&'static str),
    /// A request failed (a conflict with a concurrent writer is retried on the next pass).
    Failed(String),
}

/// One pass of a reconciler, at Git revision `revision`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pass {
    pub revision: u64,
    pub did: Did,
}

/// "Git": the Deployment manifest and its revision (a commit counter).
struct Git {
    revision: u64,
    manifest: Value,
}

/// A running test reconciler for one Deployment.
pub struct Reconciler {
    git: Arc<Mutex<Git>>,
    passes: Arc<Mutex<Vec<Pass>>>,
    task: JoinHandle<()>,
}

impl Reconciler {
    /// Starts reconciling Deployment `manifest` (its `metadata.name`) into `namespace` as
    /// `controller` every [`INTERVAL`]. The manifest gets the controller's ownership markers.
    pub fn start(
        client: &kube::Client,
        namespace: &str,
        controller: Controller,
        manifest: Value,
    ) -> Reconciler {
        let git = Arc::new(Mutex::new(Git {
            revision: 1,
            manifest,
        }));
        let passes = Arc::new(Mutex::new(Vec::new()));
        let state = State {
            deployments: Api::namespaced(client.clone(), namespace),
            owner: Api::namespaced_with(
                client.clone(),
                namespace,
                &match controller {
                    Controller::Flux { .. } => kustomizations(),
                    Controller::Argo { .. } => applications(),
                },
            ),
            namespace: namespace.to_string(),
            controller,
            git: git.clone(),
            last_synced: 0,
        };
        let task = tokio::spawn(run(state, passes.clone()));
        Reconciler { git, passes, task }
    }

    /// A commit: changes Git's manifest; the next pass sees the new revision.
    pub fn commit(&self, change: impl FnOnce(&mut Value)) {
        let mut git = self.git.lock().unwrap();
        change(&mut git.manifest);
        git.revision += 1;
    }

    /// Every pass so far.
    pub fn passes(&self) -> Vec<Pass> {
        self.passes.lock().unwrap().clone()
    }

    /// Waits until `n` more passes completed (of any outcome): "several reconciler intervals".
    pub async fn wait_passes(&self, n: usize) {
        let from = self.passes.lock().unwrap().len();
        wait_until(&format!("{n} reconciler passes"), TIMEOUT, || async {
            self.passes.lock().unwrap().len() >= from + n
        })
        .await;
    }

    /// Waits until a pass from now on satisfies `pred`; returns it.
    pub async fn wait_for(&self, what: &str, pred: impl Fn(&Pass) -> bool) -> Pass {
        let from = self.passes.lock().unwrap().len();
        let mut found = None;
        wait_until(what, TIMEOUT, || {
            found = self.passes.lock().unwrap()[from..]
                .iter()
                .find(|p| pred(p))
                .cloned();
            let done = found.is_some();
            async move { done }
        })
        .await;
        found.unwrap()
    }

    /// Stops the task; returns every pass it made.
    pub async fn stop(self) -> Vec<Pass> {
        self.task.abort();
        let _ = self.task.await;
        self.passes.lock().unwrap().clone()
    }
}

/// What a reconciler task owns.
struct State {
    deployments: Api<Deployment>,
    /// The Kustomization or Application.
    owner: Api<DynamicObject>,
    namespace: String,
    controller: Controller,
    git: Arc<Mutex<Git>>,
    /// Argo-like: the revision of the last sync (automated sync without selfHeal syncs a commit once).
    last_synced: u64,
}

async fn run(mut state: State, passes: Arc<Mutex<Vec<Pass>>>) {
    loop {
        let (revision, manifest) = state.git_now();
        let did = match state.pass(revision, &manifest).await {
            Ok(did) => did,
            Err(e) => Did::Failed(e.to_string()),
        };
        passes.lock().unwrap().push(Pass { revision, did });
        tokio::time::sleep(INTERVAL).await;
    }
}

impl State {
    /// Git's revision and manifest with the controller's ownership markers.
    fn git_now(&self) -> (u64, Value) {
        let git = self.git.lock().unwrap();
        let mut m = git.manifest.clone();
        let name = m["metadata"]["name"].as_str().unwrap().to_string();
        let ns = &self.namespace;
        m["metadata"]["namespace"] = json!(ns);
        match &self.controller {
            Controller::Flux { kustomization } => {
                let labels = &mut m["metadata"]["labels"];
                labels["kustomize.toolkit.fluxcd.io/name"] = json!(kustomization);
                labels["kustomize.toolkit.fluxcd.io/namespace"] = json!(ns);
            }
            Controller::Argo { application } => {
                m["metadata"]["annotations"]["argocd.argoproj.io/tracking-id"] =
                    json!(format!("{ns}_{application}:apps/Deployment:{ns}/{name}"));
            }
        }
        (git.revision, m)
    }

    async fn pass(&mut self, revision: u64, manifest: &Value) -> Result<Did, kube::Error> {
        match self.controller.clone() {
            Controller::Flux { kustomization } => self.flux(&kustomization, manifest).await,
            Controller::Argo { application } => self.argo(&application, revision, manifest).await,
        }
    }

    fn apply_params(&self, dry_run: bool) -> PatchParams {
        let mut pp = PatchParams::apply(self.controller.field_manager()).force();
        pp.dry_run = dry_run;
        pp
    }

    async fn apply(&self, name: &str, manifest: &Value, dry_run: bool) -> kube::Result<Deployment> {
        self.deployments
            .patch(name, &self.apply_params(dry_run), &Patch::Apply(manifest))
            .await
    }

    async fn flux(&mut self, kustomization: &str, manifest: &Value) -> kube::Result<Did> {
        let k = self.owner.get(kustomization).await?;
        if k.data["spec"]["suspend"] == json!(true) {
            return Ok(Did::Skipped("the Kustomization is suspended"));
        }
        let name = manifest["metadata"]["name"].as_str().unwrap();
        let live = self.deployments.get_opt(name).await?;
        if let Some(live) = &live {
            let disabled = live
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(FLUX_RECONCILE))
                .is_some_and(|v| v == "disabled");
            if disabled {
                return Ok(Did::Skipped("reconcile disabled on the object"));
            }
            let entries = serde_json::to_value(&live.metadata.managed_fields).unwrap();
            let entries = entries.as_array().cloned().unwrap_or_default();
            if let Some(taken) = take_over(&entries, self.controller.field_manager()) {
                // Merge patch replaces the list whole; the resourceVersion makes it fail
                // (retried next pass) rather than overwrite a concurrent writer's entries.
                self.deployments
                    .patch(
                        name,
                        &PatchParams::default(),
                        &Patch::Merge(json!({"metadata": {
                            "managedFields": taken,
                            "resourceVersion": live.metadata.resource_version,
                        }})),
                    )
                    .await?;
            }
        }
        let before = live.and_then(|d| d.metadata.resource_version);
        let after = self.apply(name, manifest, false).await?;
        Ok(Did::Applied {
            changed: before != after.metadata.resource_version,
        })
    }

    async fn argo(
        &mut self,
        application: &str,
        revision: u64,
        manifest: &Value,
    ) -> kube::Result<Did> {
        let app = self.owner.get(application).await?;
        let skip = app
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(ARGO_SKIP_RECONCILE))
            .is_some_and(|v| v == "true");
        if skip {
            return Ok(Did::Skipped("skip-reconcile on the Application"));
        }
        let name = manifest["metadata"]["name"].as_str().unwrap();
        let mut synced = self.compare(name, manifest).await?;
        let automated = &app.data["spec"]["syncPolicy"]["automated"];
        let auto_sync = automated.is_object() && automated["enabled"] != json!(false);
        let self_heal = automated["selfHeal"] == json!(true);
        let mut did = None;
        if !synced && auto_sync && (self_heal || revision != self.last_synced) {
            let before = self
                .deployments
                .get_opt(name)
                .await?
                .and_then(|d| d.metadata.resource_version);
            let after = self.apply(name, manifest, false).await?;
            self.last_synced = revision;
            did = Some(Did::Applied {
                changed: before != after.metadata.resource_version,
            });
            synced = self.compare(name, manifest).await?;
        }
        let status = if synced { "Synced" } else { "OutOfSync" };
        self.owner
            .patch(
                application,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {
                    "sync": {"status": status, "revision": format!("r{revision}")},
                    "resources": [{
                        "group": "apps", "version": "v1", "kind": "Deployment",
                        "namespace": self.namespace, "name": name, "status": status,
                    }],
                }})),
            )
            .await?;
        Ok(did.unwrap_or(Did::Compared { synced }))
    }

    /// Argo CD's comparison: would applying Git change the live object's labels, annotations
    /// or spec? Fields Git lacks are not drift. A missing object is OutOfSync.
    async fn compare(&self, name: &str, manifest: &Value) -> kube::Result<bool> {
        let Some(live) = self.deployments.get_opt(name).await? else {
            return Ok(false);
        };
        let dry = self.apply(name, manifest, true).await?;
        let view = |d: &Deployment| {
            (
                d.metadata.labels.clone(),
                d.metadata.annotations.clone(),
                serde_json::to_value(&d.spec).unwrap(),
            )
        };
        Ok(view(&live) == view(&dry))
    }
}

/// fluxcd/pkg ssa's `PatchReplaceFieldsManagers` for kustomize-controller's cleanup list: the
/// managedFields with the matching entries handed to `me` as one Apply entry (their field sets
/// merged into its own), or `None` when no entry matches.
pub fn take_over(entries: &[Value], me: &str) -> Option<Vec<Value>> {
    let matches = |e: &Value| {
        let manager = e["manager"].as_str().unwrap_or_default();
        let operation = e["operation"].as_str().unwrap_or_default();
        let subresource = e["subresource"].as_str().unwrap_or_default();
        subresource.is_empty()
            && ((manager.starts_with("kubectl") && matches!(operation, "Apply" | "Update"))
                || (manager.starts_with("before-first-apply") && operation == "Update")
                || (manager.starts_with(me) && operation == "Update"))
    };
    let own = entries
        .iter()
        .position(|e| e["manager"] == json!(me) && e["operation"] == "Apply");
    let mut merged = own.map(|i| entries[i].clone());
    let mut kept = Vec::new();
    let mut edited = false;
    for (i, entry) in entries.iter().enumerate() {
        if Some(i) == own {
            continue;
        }
        if !matches(entry) {
            kept.push(entry.clone());
            continue;
        }
        edited = true;
        match &mut merged {
            None => {
                let mut e = entry.clone();
                e["manager"] = json!(me);
                e["operation"] = json!("Apply");
                merged = Some(e);
            }
            Some(m) => union(&mut m["fieldsV1"], &entry["fieldsV1"]),
        }
    }
    if !edited {
        return None;
    }
    kept.extend(merged);
    Some(kept)
}

/// The union of two managedFields field sets (`fieldsV1` tries: objects whose leaves are `{}`).
fn union(into: &mut Value, from: &Value) {
    match (into, from) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                union(a.entry(k.clone()).or_insert(json!({})), v);
            }
        }
        (into @ Value::Null, from) => *into = from.clone(),
        _ => {}
    }
}

/// Creates Flux Kustomization `name` (Git source `GitRepository/<name>`, which nobody serves:
/// the test reconciler is the source) in `ns`.
pub async fn create_kustomization(client: &kube::Client, ns: &str, name: &str) {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &kustomizations());
    let obj: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
        "kind": "Kustomization",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "interval": "10m", "path": "./deploy", "prune": true,
            "sourceRef": {"kind": "GitRepository", "name": name},
        }
    }))
    .unwrap();
    api.create(&Default::default(), &obj).await.unwrap();
}

/// Creates Argo CD Application `name` in `ns` deploying into `ns`, with automated sync and
/// `selfHeal` as given (`None`: no automated sync).
pub async fn create_application(
    client: &kube::Client,
    ns: &str,
    name: &str,
    self_heal: Option<bool>,
) {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &applications());
    let mut spec = json!({
        "project": "default",
        "source": {"repoURL": "https://git.invalid/app.git", "path": "deploy", "targetRevision": "HEAD"},
        "destination": {"server": "https://kubernetes.default.svc", "namespace": ns},
    });
    if let Some(self_heal) = self_heal {
        spec["syncPolicy"] = json!({"automated": {"prune": true, "selfHeal": self_heal}});
    }
    let obj: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    }))
    .unwrap();
    api.create(&Default::default(), &obj).await.unwrap();
}

/// The sync status the Argo-like reconciler last wrote for Deployment `name` on Application
/// `app` (`status.resources[]`), if any.
pub async fn argo_resource_status(
    client: &kube::Client,
    ns: &str,
    app: &str,
    name: &str,
) -> Option<String> {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &applications());
    let app = api.get(app).await.unwrap();
    app.data["status"]["resources"]
        .as_array()?
        .iter()
        .find(|r| r["kind"] == "Deployment" && r["name"] == name && r["group"] == "apps")
        .and_then(|r| r["status"].as_str().map(String::from))
}
