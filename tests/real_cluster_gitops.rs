//! Issue 18's "Done when" on the real control plane (`tests/control_plane`): Flux's
//! Kustomization and Argo CD's Application CRDs installed from their published definitions
//! (tests/kube-env/crds.txt), a test reconciler per controller
//! (`tests/control_plane/reconciler.rs`, whose doc says what it reproduces of the real ones),
//! and `aiops serve` repairing Deployments those reconcilers own: a memory raise Flux sets back
//! ends `reverted`, `skip` escalates with the Git change and changes nothing, `hold` keeps the
//! change while held and releases it (at expiry, or when Argo CD reports Git agreeing), a
//! restart of an Argo-owned Deployment stays, and aiops's field manager is not one Flux takes
//! over.
//!
//! The reconcilers are first tested alone against the real API server, so a failure of the
//! daemon's tests is not one of the stand-in controllers.

mod common;
mod control_plane;

use aiops::store::{Job as RepairJob, JobState};
use common::payload::repair_alert as alert;
use common::stand_ins::StandIn;
use common::{Db, Spawn, TestApp};
use control_plane::reconciler::{
    ARGO_SKIP_RECONCILE, Controller, Did, FLUX_RECONCILE, Reconciler, applications,
    argo_resource_status, create_application, create_kustomization, kustomizations, take_over,
};
use control_plane::{
    KubeEnv, TIMEOUT, memory_in, replica_sets, template_annotations, wait_deployment_rolled_out,
    wait_until,
};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use serde_json::{Value, json};

/// The container the tests raise memory of; its limit in Git.
const GIT_LIMIT: &str = "512Mi";
/// What `scale_memory` (factor 1.2) makes of it.
const RAISED: &str = "615Mi";
/// The Git change `skip` and `reverted` report for that raise.
const INSTRUCTION: &str = "set resources.limits.memory of container app to 615Mi";
const RESTARTED_AT: &str = "kubectl.kubernetes.io/restartedAt";

/// Git's Deployment `web`: one replica, container `app` (web:1, memory limit [`GIT_LIMIT`]).
fn git_web() -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": [{
                        "name": "app", "image": "web:1",
                        "resources": {"limits": {"memory": GIT_LIMIT}}
                    }]
                }
            }
        }
    })
}

fn deployments(client: &kube::Client, ns: &str) -> Api<Deployment> {
    Api::namespaced(client.clone(), ns)
}

async fn live_limit(client: &kube::Client, ns: &str) -> Option<String> {
    let d = deployments(client, ns).get("web").await.unwrap();
    memory_in(&d.spec.unwrap().template.spec.unwrap(), "app").1
}

/// A merge patch of Deployment `web` under field manager `manager` (as `kubectl edit` or
/// `kubectl rollout restart` would write, or aiops).
async fn patch_as(client: &kube::Client, ns: &str, manager: &str, patch: Value) {
    deployments(client, ns)
        .patch(
            "web",
            &PatchParams {
                field_manager: Some(manager.into()),
                ..PatchParams::default()
            },
            &Patch::Strategic(patch),
        )
        .await
        .unwrap();
}

fn limit_patch(limit: &str) -> Value {
    json!({"spec": {"template": {"spec": {"containers": [
        {"name": "app", "resources": {"limits": {"memory": limit}}}
    ]}}}})
}

fn template_annotation_patch(key: &str, value: Value) -> Value {
    json!({"spec": {"template": {"metadata": {"annotations": {key: value}}}}})
}

/// The managers whose managedFields include the pod template annotation `key`.
fn annotation_managers(d: &Deployment, key: &str) -> Vec<String> {
    d.metadata
        .managed_fields
        .iter()
        .flatten()
        .filter(|m| {
            m.fields_v1.as_ref().is_some_and(|f| {
                f.0["f:spec"]["f:template"]["f:metadata"]["f:annotations"]
                    .get(format!("f:{key}"))
                    .is_some()
            })
        })
        .filter_map(|m| m.manager.clone())
        .collect()
}

/// Starts the reconciler for Git's `web` and waits until the Deployment rolled out.
async fn owned_web(client: &kube::Client, ns: &str, controller: Controller) -> Reconciler {
    match &controller {
        Controller::Flux { kustomization } => create_kustomization(client, ns, kustomization).await,
        Controller::Argo { application } => {
            create_application(client, ns, application, Some(true)).await
        }
    }
    let r = Reconciler::start(client, ns, controller, git_web());
    r.wait_for("the first apply", |p| matches!(p.did, Did::Applied { .. }))
        .await;
    wait_deployment_rolled_out(client, ns, "web").await;
    r
}

fn flux() -> Controller {
    Controller::Flux {
        kustomization: "app".into(),
    }
}

fn argo() -> Controller {
    Controller::Argo {
        application: "app".into(),
    }
}

/// No pass failed (a conflict with a concurrent writer is retried, and said so here).
fn assert_no_failed_pass(r: &Reconciler) {
    let failed: Vec<_> = r
        .passes()
        .into_iter()
        .filter(|p| matches!(p.did, Did::Failed(_)))
        .collect();
    assert!(
        failed.iter().all(|p| match &p.did {
            Did::Failed(e) => e.contains("Conflict") || e.contains("modified"),
            _ => true,
        }),
        "{failed:#?}"
    );
}

#[test]
fn flux_takes_over_kubectl_managers_and_their_fields_but_not_aiops_or_a_subresource() {
    let entry = |manager: &str, operation: &str, sub: &str, fields: Value| {
        json!({"manager": manager, "operation": operation, "subresource": sub,
               "apiVersion": "apps/v1", "fieldsType": "FieldsV1", "fieldsV1": fields})
    };
    let entries = vec![
        entry(
            "kustomize-controller",
            "Apply",
            "",
            json!({"f:spec": {"f:replicas": {}}}),
        ),
        entry(
            "kubectl-edit",
            "Update",
            "",
            json!({"f:spec": {"f:paused": {}}}),
        ),
        entry(
            "kubectl",
            "Apply",
            "",
            json!({"f:metadata": {"f:labels": {"f:x": {}}}}),
        ),
        entry(
            "aiops",
            "Update",
            "",
            json!({"f:spec": {"f:minReadySeconds": {}}}),
        ),
        entry(
            "kube-controller-manager",
            "Update",
            "status",
            json!({"f:status": {}}),
        ),
        entry(
            "kubectl-rollout",
            "Update",
            "scale",
            json!({"f:spec": {"f:replicas": {}}}),
        ),
    ];
    let taken = take_over(&entries, "kustomize-controller").unwrap();
    assert_eq!(
        taken,
        vec![
            entries[3].clone(),
            entries[4].clone(),
            entries[5].clone(),
            entry(
                "kustomize-controller",
                "Apply",
                "",
                json!({"f:spec": {"f:replicas": {}, "f:paused": {}},
                       "f:metadata": {"f:labels": {"f:x": {}}}})
            ),
        ]
    );
    assert_eq!(take_over(&entries[3..], "kustomize-controller"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_flux_like_reconciler_drops_kubectl_edits_keeps_what_only_aiops_set_and_honours_suspend()
 {
    let Some(env) = KubeEnv::get().await else {
        return;
    };
    let ns = env.namespace("flux-self").await;
    let client = env.client().await;
    let r = owned_web(&client, &ns.name, flux()).await;
    let d = deployments(&client, &ns.name).get("web").await.unwrap();
    let labels = d.metadata.labels.clone().unwrap();
    assert_eq!(labels["kustomize.toolkit.fluxcd.io/name"], "app");
    assert_eq!(labels["kustomize.toolkit.fluxcd.io/namespace"], ns.name);

    // A field Git holds, edited with kubectl: set back.
    patch_as(&client, &ns.name, "kubectl-edit", limit_patch("1Gi")).await;
    wait_until("Flux to set the limit back", TIMEOUT, || async {
        live_limit(&client, &ns.name).await.as_deref() == Some(GIT_LIMIT)
    })
    .await;
    // A field Git lacks, added with kubectl: taken over, then dropped.
    let note = "example.com/note";
    patch_as(
        &client,
        &ns.name,
        "kubectl-edit",
        template_annotation_patch(note, json!("by hand")),
    )
    .await;
    wait_until("Flux to drop kubectl's annotation", TIMEOUT, || async {
        let d = deployments(&client, &ns.name).get("web").await.unwrap();
        !template_annotations(&d).contains_key(note)
    })
    .await;
    // The same field set by aiops: not kubectl's, so it stays.
    patch_as(
        &client,
        &ns.name,
        "aiops",
        template_annotation_patch(note, json!("by aiops")),
    )
    .await;
    r.wait_passes(4).await;
    let d = deployments(&client, &ns.name).get("web").await.unwrap();
    assert_eq!(template_annotations(&d)[note], "by aiops");
    assert_eq!(annotation_managers(&d, note), ["aiops"]);

    // Suspended: nothing is applied, a kubectl edit stays.
    let ks: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns.name, &kustomizations());
    ks.patch(
        "app",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"suspend": true}})),
    )
    .await
    .unwrap();
    r.wait_for("a suspended pass", |p| {
        p.did == Did::Skipped("the Kustomization is suspended")
    })
    .await;
    patch_as(&client, &ns.name, "kubectl-edit", limit_patch("1Gi")).await;
    r.wait_passes(4).await;
    assert_eq!(live_limit(&client, &ns.name).await.as_deref(), Some("1Gi"));
    // Resumed, but the object itself is excluded: still nothing.
    patch_as(
        &client,
        &ns.name,
        "aiops",
        json!({"metadata": {"annotations": {FLUX_RECONCILE: "disabled"}}}),
    )
    .await;
    ks.patch(
        "app",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"suspend": false}})),
    )
    .await
    .unwrap();
    r.wait_for("a pass skipping the disabled object", |p| {
        p.did == Did::Skipped("reconcile disabled on the object")
    })
    .await;
    r.wait_passes(3).await;
    assert_eq!(live_limit(&client, &ns.name).await.as_deref(), Some("1Gi"));
    // Enabled again: Git wins.
    patch_as(
        &client,
        &ns.name,
        "aiops",
        json!({"metadata": {"annotations": {FLUX_RECONCILE: null}}}),
    )
    .await;
    wait_until("Flux to apply Git again", TIMEOUT, || async {
        live_limit(&client, &ns.name).await.as_deref() == Some(GIT_LIMIT)
    })
    .await;
    assert_no_failed_pass(&r);
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_argo_like_reconciler_reports_out_of_sync_then_synced_and_self_heals_only_when_automated()
 {
    let Some(env) = KubeEnv::get().await else {
        return;
    };
    let ns = env.namespace("argo-self").await;
    let client = env.client().await;
    let r = owned_web(&client, &ns.name, argo()).await;
    let status = || argo_resource_status(&client, &ns.name, "app", "web");
    wait_until("Synced after the first sync", TIMEOUT, || async {
        status().await.as_deref() == Some("Synced")
    })
    .await;
    let d = deployments(&client, &ns.name).get("web").await.unwrap();
    assert_eq!(
        d.metadata.annotations.unwrap()["argocd.argoproj.io/tracking-id"],
        format!("{0}_app:apps/Deployment:{0}/web", ns.name)
    );

    // selfHeal: a live change to a field Git holds is set back.
    patch_as(&client, &ns.name, "someone", limit_patch("1Gi")).await;
    wait_until("self-heal to set the limit back", TIMEOUT, || async {
        live_limit(&client, &ns.name).await.as_deref() == Some(GIT_LIMIT)
    })
    .await;

    // Automated sync off (as aiops's hold does): compared, not synced.
    let apps: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns.name, &applications());
    apps.patch(
        "app",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"syncPolicy": {"automated": null}}})),
    )
    .await
    .unwrap();
    r.wait_for("a pass without automated sync", |p| {
        p.did == Did::Compared { synced: true }
    })
    .await;
    patch_as(&client, &ns.name, "someone", limit_patch(RAISED)).await;
    wait_until("OutOfSync", TIMEOUT, || async {
        status().await.as_deref() == Some("OutOfSync")
    })
    .await;
    r.wait_passes(3).await;
    assert_eq!(live_limit(&client, &ns.name).await.as_deref(), Some(RAISED));
    // A field Git lacks is no drift; Git taking the change is Synced again.
    patch_as(
        &client,
        &ns.name,
        "aiops",
        template_annotation_patch(RESTARTED_AT, json!("2026-11-30T00:00:00Z")),
    )
    .await;
    r.commit(|git| {
        git["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"] =
            json!(RAISED)
    });
    wait_until("Synced once Git has the change", TIMEOUT, || async {
        status().await.as_deref() == Some("Synced")
    })
    .await;

    // skip-reconcile: nothing at all, not even the status.
    apps.patch(
        "app",
        &PatchParams::default(),
        &Patch::Merge(
            json!({"metadata": {"annotations": {ARGO_SKIP_RECONCILE: "true"}},
                              "spec": {"syncPolicy": {"automated": {"selfHeal": true}}}}),
        ),
    )
    .await
    .unwrap();
    r.wait_for("a skipped pass", |p| {
        p.did == Did::Skipped("skip-reconcile on the Application")
    })
    .await;
    patch_as(&client, &ns.name, "someone", limit_patch("1Gi")).await;
    r.wait_passes(3).await;
    assert_eq!(live_limit(&client, &ns.name).await.as_deref(), Some("1Gi"));
    assert_eq!(
        status().await.as_deref(),
        Some("Synced"),
        "status untouched"
    );
    apps.patch(
        "app",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": {ARGO_SKIP_RECONCILE: null}}})),
    )
    .await
    .unwrap();
    wait_until("self-heal to the new Git", TIMEOUT, || async {
        live_limit(&client, &ns.name).await.as_deref() == Some(RAISED)
    })
    .await;
    let d = deployments(&client, &ns.name).get("web").await.unwrap();
    assert!(template_annotations(&d).contains_key(RESTARTED_AT));
    assert_no_failed_pass(&r);
    r.stop().await;
}

// ---------------------------------------------------------------------------------------------
// aiops serve against Deployments the reconcilers own.

/// `aiops serve` on the real API server with `rules`, a webhook channel for every message, and
/// `gitops` settings (YAML lines, indented two spaces).
async fn daemon(env: &KubeEnv, rules: &str, gitops: &str, hook: &StandIn) -> TestApp {
    let config = format!(
        "notify:\n  channels:\n    wh: {{type: webhook, url: \"{}/wh\"}}\n  routes:\n    - channels: [wh]\ngitops:\n{gitops}",
        hook.url
    );
    TestApp::spawn(
        Spawn::new(Db::Sqlite)
            .env("AIOPS_CLUSTER_STATE_FILE", "")
            .env("AIOPS_KUBECONFIG", env.kubeconfig.to_str().unwrap())
            .rules(rules)
            .config(&config),
    )
    .await
}

/// A rule for the shipped `scale_memory` on container `app`, with `gitops` (YAML line or "").
fn memory_rule(gitops: &str) -> String {
    format!(
        "rules:\n  - name: scale_memory\n    matchers: ['auto_repair=\"scale_memory\"']\n    playbook: scale_memory\n    \
         params: {{factor: 1.2, min_step: 100Mi, max_limit: 4Gi, container: app, rollout_timeout: 2m}}\n{gitops}"
    )
}

const RESTART_RULE: &str =
    "rules:\n  - name: restart\n    matchers: ['auto_repair=\"restart\"']\n    playbook: restart\n";

/// Waits until the one job ended (succeeded, escalated, failed or reverted); returns it.
async fn ended(app: &TestApp) -> RepairJob {
    let jobs = app
        .wait_for_jobs_within("the repair to end", TIMEOUT, |jobs| {
            !jobs.is_empty()
                && jobs.iter().all(|j| {
                    matches!(
                        j.state,
                        JobState::Succeeded
                            | JobState::Escalated
                            | JobState::Failed
                            | JobState::Reverted
                    )
                })
        })
        .await;
    assert_eq!(jobs.len(), 1, "{jobs:#?}");
    jobs[0].clone()
}

async fn ended_in(app: &TestApp, state: JobState) -> RepairJob {
    let job = ended(app).await;
    assert_eq!(job.state, state, "{job:#?}\nlogs:\n{}", app.log_text());
    job
}

fn text_of(job: &RepairJob) -> String {
    format!(
        "{} {}",
        job.outcome.clone().unwrap_or_default(),
        job.error.clone().unwrap_or_default()
    )
}

/// The outbox row of event `event` (exactly one), as (rendered body, event JSON).
async fn message(app: &TestApp, event: &str) -> (String, Value) {
    let store = app.store().await;
    wait_until(&format!("a {event} message"), TIMEOUT, || async {
        let rows = store.notifications().await.unwrap();
        rows.iter().any(|n| n.event == event)
    })
    .await;
    let rows = store.notifications().await.unwrap();
    let ours: Vec<_> = rows.iter().filter(|n| n.event == event).collect();
    assert_eq!(ours.len(), 1, "{rows:#?}");
    (
        ours[0].body.clone(),
        serde_json::from_str(&ours[0].event_json).unwrap(),
    )
}

fn flux_owner(ns: &str) -> String {
    format!("Flux Kustomization {ns}/app")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_raise_on_a_flux_owned_deployment_under_act_is_detected_as_reverted() {
    let Some(env) = KubeEnv::get().await else {
        return;
    };
    let ns = env.namespace("gitops-act").await;
    let client = env.client().await;
    let r = owned_web(&client, &ns.name, flux()).await;
    let hook = StandIn::answering(200).await;
    let app = daemon(
        env,
        &memory_rule("    gitops: act\n"),
        "  watch: 5s\n  release_interval: 1s\n",
        &hook,
    )
    .await;
    app.post_webhook(alert("scale_memory", &ns.name, &[("app", "web")]))
        .await;
    let job = ended_in(&app, JobState::Reverted).await;

    let (body, event) = message(&app, "auto_repair_reverted").await;
    let report = &event["gitops"];
    assert_eq!(report["owner"], flux_owner(&ns.name), "{event:#}");
    assert_eq!(report["change"], INSTRUCTION, "{event:#}");
    assert!(
        report["reverted_by"]
            .as_str()
            .unwrap()
            .contains("kustomize-controller"),
        "{event:#}"
    );
    for want in [flux_owner(&ns.name).as_str(), INSTRUCTION] {
        assert!(body.contains(want), "{want:?} in {body}");
    }
    // Git's value is live again, and it was not retried.
    assert_eq!(
        live_limit(&client, &ns.name).await.as_deref(),
        Some(GIT_LIMIT)
    );
    r.wait_passes(3).await;
    let jobs = app.store().await.jobs().await.unwrap();
    assert_eq!(jobs.len(), 1, "never retried: {jobs:#?}");
    assert_eq!(jobs[0].id, job.id);
    assert_no_failed_pass(&r);
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_the_default_skip_a_memory_raise_on_a_flux_owned_deployment_escalates_with_the_git_change_and_changes_nothing()
 {
    let Some(env) = KubeEnv::get().await else {
        return;
    };
    let ns = env.namespace("gitops-skip").await;
    let client = env.client().await;
    let r = owned_web(&client, &ns.name, flux()).await;
    let before = deployments(&client, &ns.name).get("web").await.unwrap();
    let hook = StandIn::answering(200).await;
    let app = daemon(env, &memory_rule(""), "  watch: 5s\n", &hook).await;
    app.post_webhook(alert("scale_memory", &ns.name, &[("app", "web")]))
        .await;
    let job = ended_in(&app, JobState::Escalated).await;
    let text = text_of(&job);
    // The host's wording is its own; what people need is the owner and the exact change.
    for want in [
        flux_owner(&ns.name),
        format!("{}/Deployment/web", ns.name),
        INSTRUCTION.to_string(),
    ] {
        assert!(text.contains(&want), "{want:?} in {job:#?}");
    }
    let (body, event) = message(&app, "escalation").await;
    assert_eq!(event["gitops"]["owner"], flux_owner(&ns.name), "{event:#}");
    assert_eq!(event["gitops"]["change"], INSTRUCTION, "{event:#}");
    for want in [flux_owner(&ns.name).as_str(), INSTRUCTION] {
        assert!(body.contains(want), "{want:?} in {body}");
    }

    // Nothing was written: same generation, limit, and no aiops field manager.
    let after = deployments(&client, &ns.name).get("web").await.unwrap();
    assert_eq!(after.metadata.generation, before.metadata.generation);
    assert_eq!(
        live_limit(&client, &ns.name).await.as_deref(),
        Some(GIT_LIMIT)
    );
    let managers: Vec<_> = after
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter_map(|m| m.manager.clone())
        .collect();
    assert!(!managers.iter().any(|m| m == "aiops"), "{managers:?}");
    assert_no_failed_pass(&r);
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hold_on_a_flux_owned_deployment_keeps_the_raise_while_held_and_flux_restores_git_after_expiry()
 {
    let Some(env) = KubeEnv::get().await else {
        return;
    };
    let ns = env.namespace("gitops-hold").await;
    let client = env.client().await;
    let r = owned_web(&client, &ns.name, flux()).await;
    let hook = StandIn::answering(200).await;
    let app = daemon(
        env,
        &memory_rule("    gitops: hold\n"),
        "  watch: 3s\n  release_interval: 1s\n  hold_for: 25s\n",
        &hook,
    )
    .await;
    app.post_webhook(alert("scale_memory", &ns.name, &[("app", "web")]))
        .await;
    let job = ended_in(&app, JobState::Succeeded).await;
    let (_, event) = message(&app, "gitops_hold").await;
    assert_eq!(event["gitops"]["owner"], flux_owner(&ns.name), "{event:#}");
    assert_eq!(event["gitops"]["change"], INSTRUCTION, "{event:#}");

    // Held: the reconciler skips the object, the raise stays for several intervals.
    let store = app.store().await;
    let holds = store.holds(false, 10).await.unwrap();
    assert_eq!(holds.len(), 1, "{holds:#?}");
    let d = deployments(&client, &ns.name).get("web").await.unwrap();
    assert_eq!(
        d.metadata.annotations.as_ref().unwrap()[FLUX_RECONCILE],
        "disabled"
    );
    r.wait_for("a pass skipping the held object", |p| {
        p.did == Did::Skipped("reconcile disabled on the object")
    })
    .await;
    for _ in 0..4 {
        r.wait_passes(1).await;
        assert_eq!(live_limit(&client, &ns.name).await.as_deref(), Some(RAISED));
    }
    let still = store.holds(false, 10).await.unwrap();
    assert_eq!(still.len(), 1, "still held: {still:#?}\n{job:#?}");

    // Expiry: released, and Flux puts Git's value back.
    wait_until("the hold to be released at expiry", TIMEOUT, || async {
        store.holds(false, 10).await.unwrap().is_empty()
    })
    .await;
    // The store marks the hold released before the cluster is touched (so no two replicas
    // undo it); the message goes out once the object is unpaused.
    message(&app, "gitops_hold_released").await;
    let all = store.holds(true, 10).await.unwrap();
    assert_eq!(all[0].released_by.as_deref(), Some("expiry"), "{all:#?}");
    let d = deployments(&client, &ns.name).get("web").await.unwrap();
    assert!(
        !d.metadata
            .annotations
            .unwrap_or_default()
            .contains_key(FLUX_RECONCILE),
        "the annotation is gone"
    );
    wait_until("Flux to restore Git's limit", TIMEOUT, || async {
        live_limit(&client, &ns.name).await.as_deref() == Some(GIT_LIMIT)
    })
    .await;
    assert_no_failed_pass(&r);
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_argo_hold_is_released_early_once_the_application_reports_git_synced_with_the_change() {
    let Some(env) = KubeEnv::get().await else {
        return;
    };
    let ns = env.namespace("gitops-argo-hold").await;
    let client = env.client().await;
    let r = owned_web(&client, &ns.name, argo()).await;
    let hook = StandIn::answering(200).await;
    let app = daemon(
        env,
        &memory_rule("    gitops: hold\n"),
        "  watch: 3s\n  release_interval: 1s\n  hold_for: 1h\n",
        &hook,
    )
    .await;
    app.post_webhook(alert("scale_memory", &ns.name, &[("app", "web")]))
        .await;
    ended_in(&app, JobState::Succeeded).await;
    let apps: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns.name, &applications());
    let held = apps.get("app").await.unwrap();
    assert!(
        held.data["spec"]["syncPolicy"]["automated"].is_null(),
        "{:#}",
        held.data
    );
    wait_until("OutOfSync while held", TIMEOUT, || async {
        argo_resource_status(&client, &ns.name, "app", "web")
            .await
            .as_deref()
            == Some("OutOfSync")
    })
    .await;
    r.wait_passes(3).await;
    assert_eq!(live_limit(&client, &ns.name).await.as_deref(), Some(RAISED));
    let store = app.store().await;
    assert_eq!(store.holds(false, 10).await.unwrap().len(), 1);

    // The team commits the change: Argo CD reports Synced, the hold ends long before expiry.
    r.commit(|git| {
        git["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"] =
            json!(RAISED)
    });
    wait_until(
        "the hold to be released because Git agrees",
        TIMEOUT,
        || async { store.holds(false, 10).await.unwrap().is_empty() },
    )
    .await;
    // Claimed in the store first, then undone in the cluster, then announced.
    message(&app, "gitops_hold_released").await;
    let all = store.holds(true, 10).await.unwrap();
    assert_eq!(all[0].released_by.as_deref(), Some("git"), "{all:#?}");
    let released = apps.get("app").await.unwrap();
    assert_eq!(
        released.data["spec"]["syncPolicy"]["automated"],
        json!({"prune": true, "selfHeal": true}),
        "automated sync is back as it was"
    );
    r.wait_passes(3).await;
    assert_eq!(live_limit(&client, &ns.name).await.as_deref(), Some(RAISED));
    assert_no_failed_pass(&r);
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_of_an_argo_owned_deployment_with_self_heal_acts_and_stays() {
    let Some(env) = KubeEnv::get().await else {
        return;
    };
    let ns = env.namespace("gitops-restart").await;
    let client = env.client().await;
    let r = owned_web(&client, &ns.name, argo()).await;
    let hook = StandIn::answering(200).await;
    let app = daemon(env, RESTART_RULE, "  watch: 3s\n", &hook).await;
    app.post_webhook(alert("restart", &ns.name, &[("app", "web")]))
        .await;
    ended_in(&app, JobState::Succeeded).await;

    let d = wait_deployment_rolled_out(&client, &ns.name, "web").await;
    let restarted = template_annotations(&d)[RESTARTED_AT].clone();
    assert_eq!(annotation_managers(&d, RESTARTED_AT), ["aiops"]);
    let rss = replica_sets(&client, &ns.name, "web").await;
    assert_eq!(
        rss.keys().copied().collect::<Vec<_>>(),
        [1, 2],
        "a new ReplicaSet"
    );
    // Several self-heal passes later: the same annotation, the same two ReplicaSets, Synced.
    r.wait_passes(6).await;
    let d = wait_deployment_rolled_out(&client, &ns.name, "web").await;
    assert_eq!(template_annotations(&d)[RESTARTED_AT], restarted);
    let rss = replica_sets(&client, &ns.name, "web").await;
    assert_eq!(
        rss.keys().copied().collect::<Vec<_>>(),
        [1, 2],
        "no third rollout"
    );
    assert_eq!(rss[&2].spec.as_ref().unwrap().replicas, Some(1));
    assert_eq!(
        argo_resource_status(&client, &ns.name, "app", "web")
            .await
            .as_deref(),
        Some("Synced")
    );
    assert_no_failed_pass(&r);
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_field_git_lacks_survives_flux_under_the_aiops_manager_but_not_under_a_kubectl_one() {
    let Some(env) = KubeEnv::get().await else {
        return;
    };
    let ns = env.namespace("gitops-manager").await;
    let client = env.client().await;
    let r = owned_web(&client, &ns.name, flux()).await;
    let hook = StandIn::answering(200).await;
    // restart acts on Flux-owned objects by default.
    let app = daemon(env, RESTART_RULE, "  watch: 3s\n", &hook).await;
    app.post_webhook(alert("restart", &ns.name, &[("app", "web")]))
        .await;
    ended_in(&app, JobState::Succeeded).await;
    let d = deployments(&client, &ns.name).get("web").await.unwrap();
    assert_eq!(annotation_managers(&d, RESTARTED_AT), ["aiops"]);
    let restarted = template_annotations(&d)[RESTARTED_AT].clone();
    r.wait_passes(5).await;
    let d = deployments(&client, &ns.name).get("web").await.unwrap();
    assert_eq!(template_annotations(&d)[RESTARTED_AT], restarted);
    assert_eq!(annotation_managers(&d, RESTARTED_AT), ["aiops"]);

    // `kubectl rollout restart` writes the same field as kubectl-rollout: Flux takes it over
    // and drops it.
    patch_as(
        &client,
        &ns.name,
        "kubectl-rollout",
        template_annotation_patch(RESTARTED_AT, json!("2026-11-30T12:00:00Z")),
    )
    .await;
    wait_until(
        "Flux to drop kubectl-rollout's annotation",
        TIMEOUT,
        || async {
            let d = deployments(&client, &ns.name).get("web").await.unwrap();
            !template_annotations(&d).contains_key(RESTARTED_AT)
        },
    )
    .await;
    assert_no_failed_pass(&r);
    r.stop().await;
}
