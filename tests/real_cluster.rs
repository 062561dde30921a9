//! The shipped playbooks through `aiops serve` against a real control plane
//! (`tests/control_plane`: etcd, kube-apiserver with RBAC, the real deployment, replicaset,
//! statefulset, daemonset and job controllers, the scheduler, and fake nodes whose pods become
//! Running/Ready through the real API). What the fakes in `tests/fakeapi` and
//! `tests/kube_requests.rs` cannot prove is proven here: the server's own patch semantics,
//! `dryRun=All`, field selectors, the controllers' revisions and ReplicaSets, and Events.
//!
//! Every test has its own namespace; the control plane is shared by this binary.

mod common;
mod control_plane;

use aiops::store::{Job as RepairJob, JobState};
use common::payload::repair_alert as alert;
use common::{Db, Spawn, TestApp};
use control_plane::{
    KubeEnv, TIMEOUT, image_of, memory_in, printed_cluster_role_rules, replica_sets,
    service_account_kubeconfig, template_annotations, wait_deployment_rolled_out, wait_until,
    without_rule,
};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

/// The daemon, pointed at the real API server with `kubeconfig`, with the repository's rules or
/// the given ones.
async fn daemon(kubeconfig: &std::path::Path, rules: Option<&str>) -> TestApp {
    let mut spawn = Spawn::new(Db::Sqlite)
        .env("AIOPS_CLUSTER_STATE_FILE", "")
        .env("AIOPS_KUBECONFIG", kubeconfig.to_str().unwrap());
    if let Some(rules) = rules {
        spawn = spawn.rules(rules);
    }
    TestApp::spawn(spawn).await
}

/// Waits until the one repair job settled, and returns it.
async fn settled(app: &TestApp) -> RepairJob {
    let jobs = app
        .wait_for_jobs_within("the repair to settle", TIMEOUT, |jobs| {
            !jobs.is_empty()
                && jobs.iter().all(|j| {
                    matches!(
                        j.state,
                        JobState::Succeeded | JobState::Escalated | JobState::Failed
                    )
                })
        })
        .await;
    assert_eq!(jobs.len(), 1, "{jobs:#?}");
    jobs[0].clone()
}

async fn succeeded(app: &TestApp) -> RepairJob {
    let job = settled(app).await;
    assert_eq!(
        job.state,
        JobState::Succeeded,
        "{job:#?}\nlogs:\n{}",
        app.log_text()
    );
    job
}

/// A container for [`workload`]: (name, image, memory request, memory limit).
type C<'a> = (&'a str, &'a str, Option<&'a str>, Option<&'a str>);

fn containers(cs: &[C]) -> Value {
    cs.iter()
        .map(|(name, image, request, limit)| {
            let mut resources = json!({});
            if let Some(r) = request {
                resources["requests"] = json!({"memory": r});
            }
            if let Some(l) = limit {
                resources["limits"] = json!({"memory": l});
            }
            json!({"name": name, "image": image, "resources": resources})
        })
        .collect()
}

/// A Deployment, StatefulSet or DaemonSet manifest selecting `app=<name>`.
fn workload(kind: &str, name: &str, replicas: i32, cs: &[C], pod_annotations: Value) -> Value {
    let mut spec = json!({
        "selector": {"matchLabels": {"app": name}},
        "template": {
            "metadata": {"labels": {"app": name}, "annotations": pod_annotations},
            "spec": {"containers": containers(cs), "terminationGracePeriodSeconds": 1}
        }
    });
    if kind != "DaemonSet" {
        spec["replicas"] = json!(replicas);
    }
    if kind == "StatefulSet" {
        spec["serviceName"] = json!(name);
    }
    json!({"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": name}, "spec": spec})
}

async fn create<K>(client: &kube::Client, ns: &str, manifest: Value) -> K
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
    <K as kube::Resource>::DynamicType: Default,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    api.create(
        &PostParams::default(),
        &serde_json::from_value(manifest).unwrap(),
    )
    .await
    .unwrap()
}

/// Deployment `web` (one container, image web:1) with 2 replicas, rolled out.
async fn two_replica_web(client: &kube::Client, ns: &str) {
    create::<Deployment>(
        client,
        ns,
        workload(
            "Deployment",
            "web",
            2,
            &[("app", "web:1", None, None)],
            json!({}),
        ),
    )
    .await;
    wait_deployment_rolled_out(client, ns, "web").await;
}

/// The pods of `app=<name>` that are Running and Ready, by name.
async fn ready_pods(client: &kube::Client, ns: &str, name: &str) -> Vec<Pod> {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    api.list(&ListParams::default().labels(&format!("app={name}")))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|p| {
            p.metadata.deletion_timestamp.is_none()
                && p.status.as_ref().is_some_and(|s| {
                    s.phase.as_deref() == Some("Running")
                        && s.conditions
                            .iter()
                            .flatten()
                            .any(|c| c.type_ == "Ready" && c.status == "True")
                })
        })
        .collect()
}

fn names<K: kube::Resource>(items: &[K]) -> Vec<String> {
    let mut v: Vec<String> = items
        .iter()
        .map(|i| i.meta().name.clone().unwrap())
        .collect();
    v.sort();
    v
}

/// Events on the object `name`, read back through the real API's field selector.
async fn events_on(client: &kube::Client, ns: &str, name: &str) -> Vec<Event> {
    let api: Api<Event> = Api::namespaced(client.clone(), ns);
    api.list(&ListParams::default().fields(&format!("involvedObject.name={name}")))
        .await
        .unwrap()
        .items
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_posted_alert_restarts_a_deployment_and_its_pods_roll() {
    let Some(env) = KubeEnv::get().await else {
        return;
    };
    let ns = env.namespace("restart").await;
    let client = env.client().await;
    two_replica_web(&client, &ns.name).await;
    let before = names(&ready_pods(&client, &ns.name, "web").await);
    assert_eq!(before.len(), 2, "{before:?}");

    let app = daemon(&env.kubeconfig, None).await;
    app.post_webhook(alert("restart", &ns.name, &[("app", "web")]))
        .await;
    let job = succeeded(&app).await;

    let d = wait_deployment_rolled_out(&client, &ns.name, "web").await;
    assert!(
        template_annotations(&d).contains_key("kubectl.kubernetes.io/restartedAt"),
        "{d:?}"
    );
    let rss = replica_sets(&client, &ns.name, "web").await;
    assert_eq!(
        rss.keys().copied().collect::<Vec<_>>(),
        [1, 2],
        "the deployment controller made a second revision"
    );
    assert_eq!(rss[&1].spec.as_ref().unwrap().replicas, Some(0));
    assert_eq!(rss[&2].status.as_ref().unwrap().ready_replicas, Some(2));
    let new_rs = rss[&2].metadata.name.clone().unwrap();
    wait_until("the old pods to be gone", TIMEOUT, || async {
        let now = ready_pods(&client, &ns.name, "web").await;
        now.len() == 2
            && now.iter().all(|p| {
                p.metadata
                    .owner_references
                    .iter()
                    .flatten()
                    .any(|o| o.name == new_rs)
            })
    })
    .await;
    let after = names(&ready_pods(&client, &ns.name, "web").await);
    assert!(
        after.iter().all(|p| !before.contains(p)),
        "every pod was replaced: {before:?} -> {after:?}"
    );

    let events = events_on(&client, &ns.name, "web").await;
    let ours: Vec<&Event> = events
        .iter()
        .filter(|e| e.reason.as_deref() == Some("AutoRepairRestart"))
        .collect();
    assert_eq!(ours.len(), 1, "{events:#?}");
    assert_eq!(
        ours[0].involved_object.uid, d.metadata.uid,
        "the event is tied to this Deployment"
    );
    assert!(
        ours[0]
            .message
            .as_deref()
            .unwrap()
            .contains(&format!("job {}", job.id)),
        "{:?}",
        ours[0].message
    );
}

/// One rule for `playbook` on `auto_repair="<playbook>"`, with no wait and no escalation, so a
/// test sees exactly one job; `extra` is more YAML for the rule (indented four spaces).
fn one_rule(playbook: &str, extra: &str) -> String {
    format!(
        "rules:\n  - name: {playbook}\n    matchers: ['auto_repair=\"{playbook}\"']\n    playbook: {playbook}\n{extra}"
    )
}

fn text_of(job: &RepairJob) -> String {
    format!(
        "{} {}",
        job.outcome.clone().unwrap_or_default(),
        job.error.clone().unwrap_or_default()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_returns_to_the_previous_revision_through_the_real_replicasets() {
    let Some(env) = KubeEnv::get().await else {
        return;
    };
    let ns = env.namespace("rollback").await;
    let client = env.client().await;
    two_replica_web(&client, &ns.name).await;
    let api: Api<Deployment> = Api::namespaced(client.clone(), &ns.name);
    api.patch(
        "web",
        &PatchParams::default(),
        &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "web:2"}]}}}})),
    )
    .await
    .unwrap();
    wait_deployment_rolled_out(&client, &ns.name, "web").await;

    let app = daemon(&env.kubeconfig, None).await;
    app.post_webhook(alert("rollback", &ns.name, &[("app", "web")]))
        .await;
    let job = succeeded(&app).await;
    assert!(text_of(&job).contains("revision 1"), "{job:?}");

    let d = wait_deployment_rolled_out(&client, &ns.name, "web").await;
    assert_eq!(image_of(&d, "app"), "web:1");
    let rss = replica_sets(&client, &ns.name, "web").await;
    assert_eq!(
        rss.keys().copied().collect::<Vec<_>>(),
        [2, 3],
        "the controller re-used revision 1's ReplicaSet as revision 3, as for kubectl rollout undo"
    );
    let pods = ready_pods(&client, &ns.name, "web").await;
    assert!(
        pods.iter()
            .all(|p| p.spec.as_ref().unwrap().containers[0].image.as_deref() == Some("web:1")),
        "{pods:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_memory_changes_only_the_named_container_beside_a_sidecar() {
    let Some(env) = KubeEnv::get().await else {
        return;
    };
    let ns = env.namespace("memory").await;
    let client = env.client().await;
    create::<Deployment>(
        &client,
        &ns.name,
        workload(
            "Deployment",
            "web",
            1,
            // The sidecar first: "the first container" would be the wrong one.
            &[
                ("proxy", "proxy:1", None, Some("64Mi")),
                ("app", "web:1", Some("256Mi"), Some("512Mi")),
            ],
            json!({}),
        ),
    )
    .await;
    wait_deployment_rolled_out(&client, &ns.name, "web").await;
    let rules = one_rule(
        "scale_memory",
        "    params: {factor: 1.2, min_step: 100Mi, max_limit: 4Gi, container: app, rollout_timeout: 2m}\n",
    );
    let app = daemon(&env.kubeconfig, Some(&rules)).await;
    app.post_webhook(alert("scale_memory", &ns.name, &[("app", "web")]))
        .await;
    let job = succeeded(&app).await;
    assert!(text_of(&job).contains("512Mi -> 615Mi"), "{job:?}");

    let d = wait_deployment_rolled_out(&client, &ns.name, "web").await;
    let spec = d.spec.unwrap().template.spec.unwrap();
    assert_eq!(
        memory_in(&spec, "app"),
        (Some("256Mi".into()), Some("615Mi".into()))
    );
    assert_eq!(
        memory_in(&spec, "proxy"),
        (None, Some("64Mi".into())),
        "the sidecar is untouched"
    );
    wait_until("a Ready pod with the new limit", TIMEOUT, || async {
        ready_pods(&client, &ns.name, "web")
            .await
            .iter()
            .any(|p| memory_in(p.spec.as_ref().unwrap(), "app").1.as_deref() == Some("615Mi"))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oom_killed_container_gets_a_higher_limit_from_oom_handler() {
    let Some(env) = KubeEnv::get().await else {
        return;
    };
    let ns = env.namespace("oom").await;
    let client = env.client().await;
    create::<Deployment>(
        &client,
        &ns.name,
        workload(
            "Deployment",
            "web",
            1,
            &[("app", "web:1", Some("256Mi"), Some("512Mi"))],
            json!({"sim.aiops.test/oom-killed": "app"}),
        ),
    )
    .await;
    wait_deployment_rolled_out(&client, &ns.name, "web").await;
    let pod = &ready_pods(&client, &ns.name, "web").await[0];
    let cs = &pod
        .status
        .as_ref()
        .unwrap()
        .container_statuses
        .as_ref()
        .unwrap()[0];
    assert_eq!(cs.restart_count, 3);

    let app = daemon(&env.kubeconfig, None).await;
    app.post_webhook(alert("oom_handler", &ns.name, &[("app", "web")]))
        .await;
    let job = succeeded(&app).await;
    assert!(
        text_of(&job).starts_with("OOMKilled: memory limit of app 512Mi -> 615Mi"),
        "{job:?}"
    );
    let d = wait_deployment_rolled_out(&client, &ns.name, "web").await;
    let spec = d.spec.unwrap().template.spec.unwrap();
    assert_eq!(
        memory_in(&spec, "app"),
        (Some("256Mi".into()), Some("615Mi".into()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_that_never_becomes_ready_hits_the_progress_deadline_and_is_rolled_back() {
    let Some(env) = KubeEnv::get().await else {
        return;
    };
    let ns = env.namespace("deadline").await;
    let client = env.client().await;
    let mut manifest = workload(
        "Deployment",
        "web",
        1,
        &[("app", "web:1", None, None)],
        json!({"sim.aiops.test/restarted-never-ready": "true"}),
    );
    manifest["spec"]["progressDeadlineSeconds"] = json!(3);
    create::<Deployment>(&client, &ns.name, manifest).await;
    wait_deployment_rolled_out(&client, &ns.name, "web").await;

    // The repository's rules: restart, escalating to rollback.
    let app = daemon(&env.kubeconfig, None).await;
    app.post_webhook(alert("restart", &ns.name, &[("app", "web")]))
        .await;
    let jobs = app
        .wait_for_jobs_within("restart to fail and rollback to succeed", TIMEOUT, |jobs| {
            jobs.iter()
                .any(|j| j.playbook == "rollback" && j.state == JobState::Succeeded)
        })
        .await;
    let restart = jobs.iter().find(|j| j.playbook == "restart").unwrap();
    assert!(
        matches!(restart.state, JobState::Failed | JobState::Escalated),
        "{restart:?}"
    );
    assert!(
        text_of(restart).contains("exceeded its progress deadline"),
        "the real controller's ProgressDeadlineExceeded: {restart:?}"
    );
    let d = wait_deployment_rolled_out(&client, &ns.name, "web").await;
    assert!(
        !template_annotations(&d).contains_key("kubectl.kubernetes.io/restartedAt"),
        "rolled back to the template before the restart"
    );
    assert_eq!(ready_pods(&client, &ns.name, "web").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_deletes_old_evicted_and_failed_pods_and_finished_jobs_only() {
    let Some(env) = KubeEnv::get().await else {
        return;
    };
    let ns = env.namespace("cleanup").await;
    let client = env.client().await;
    let pod = |name: &str, annotations: Value| {
        json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "annotations": annotations},
            "spec": {"containers": [{"name": "c", "image": "busybox"}], "terminationGracePeriodSeconds": 1}})
    };
    for (name, annotations) in [
        (
            "evicted-old",
            json!({"sim.aiops.test/evicted": "true", "sim.aiops.test/finished-ago": "2h"}),
        ),
        (
            "failed-old",
            json!({"sim.aiops.test/fail": "true", "sim.aiops.test/finished-ago": "2h"}),
        ),
        ("failed-recent", json!({"sim.aiops.test/fail": "true"})),
        ("running", json!({})),
    ] {
        create::<Pod>(&client, &ns.name, pod(name, annotations)).await;
    }
    let job = |name: &str, managed_by: Option<&str>| {
        let mut j = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
            "spec": {"template": {"spec": {"restartPolicy": "Never",
                "containers": [{"name": "c", "image": "busybox"}]}}}});
        if let Some(m) = managed_by {
            j["spec"]["managedBy"] = json!(m);
        }
        j
    };
    create::<Job>(&client, &ns.name, job("backup-recent", None)).await;
    // The job controller stamps completionTime with "now" and the API keeps it immutable; a Job
    // finished two hours ago is one whose status another controller (managedBy) wrote so.
    create::<Job>(
        &client,
        &ns.name,
        job("backup-old", Some("aiops.test/finished-elsewhere")),
    )
    .await;
    let jobs: Api<Job> = Api::namespaced(client.clone(), &ns.name);
    let (three_h, two_h) = (
        (chrono::Utc::now() - chrono::Duration::hours(3))
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        (chrono::Utc::now() - chrono::Duration::hours(2))
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    );
    jobs.patch_status(
        "backup-old",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {
            "startTime": three_h, "completionTime": two_h, "succeeded": 1,
            "conditions": [
                {"type": "SuccessCriteriaMet", "status": "True", "lastTransitionTime": two_h},
                {"type": "Complete", "status": "True", "lastTransitionTime": two_h}]}})),
    )
    .await
    .unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    wait_until(
        "the pods' fates and the recent Job's completion",
        TIMEOUT,
        || async {
            let phases: Vec<Option<String>> = pods
                .list(&ListParams::default())
                .await
                .unwrap()
                .items
                .iter()
                .map(|p| p.status.as_ref().and_then(|s| s.phase.clone()))
                .collect();
            let recent_done = jobs
                .get("backup-recent")
                .await
                .unwrap()
                .status
                .and_then(|s| s.completion_time)
                .is_some();
            recent_done
                && phases
                    .iter()
                    .all(|p| p.as_deref() != Some("Pending") && p.is_some())
        },
    )
    .await;

    let app = daemon(&env.kubeconfig, None).await;
    app.post_webhook(alert("cleanup", &ns.name, &[("app", "web")]))
        .await;
    let job = succeeded(&app).await;
    assert!(
        text_of(&job).contains("deleted 2 Failed pods and 1 finished Jobs"),
        "{job:?}"
    );
    let mut left: Vec<String> = pods
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| p.metadata.name)
        .filter(|n| !n.starts_with("backup-"))
        .collect();
    left.sort();
    assert_eq!(left, ["failed-recent", "running"]);
    assert!(
        jobs.get_opt("backup-old")
            .await
            .unwrap()
            .is_none_or(|j| j.metadata.deletion_timestamp.is_some())
    );
    assert!(jobs.get_opt("backup-recent").await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_rule_leaves_the_real_cluster_unchanged() {
    leaves_the_real_cluster_unchanged("dryrun", "dry_run: true", aiops::rules::Mode::Auto).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_rule_leaves_the_real_cluster_unchanged() {
    leaves_the_real_cluster_unchanged("shadow", "mode: shadow", aiops::rules::Mode::Shadow).await;
}

/// Every playbook, each rule given `key` (a dry run, or shadow mode, whose jobs are dry runs):
/// patches (strategic and JSON) and deletes all go out with dryRun=All, and the server
/// validates them without storing anything.
async fn leaves_the_real_cluster_unchanged(prefix: &str, key: &str, mode: aiops::rules::Mode) {
    let Some(env) = KubeEnv::get().await else {
        return;
    };
    let ns = env.namespace(prefix).await;
    let client = env.client().await;
    playbook_scene(&client, &ns.name).await;
    let api: Api<Deployment> = Api::namespaced(client.clone(), &ns.name);
    let before = api.get("web").await.unwrap();
    let rules = five_rules().replace("\n    params:", &format!("\n    {key}\n    params:"));
    let app = daemon(&env.kubeconfig, Some(&rules)).await;
    let playbooks = [
        "restart",
        "rollback",
        "scale_memory",
        "oom_handler",
        "cleanup",
    ];
    for (i, playbook) in playbooks.iter().enumerate() {
        app.post_webhook(alert(playbook, &ns.name, &[("app", "web")]))
            .await;
        // One repair at a time per target: the next alert once this job settled.
        app.wait_for_jobs_within(&format!("the dry-run {playbook}"), TIMEOUT, |jobs| {
            jobs.len() == i + 1 && jobs.iter().all(|j| j.state == JobState::Succeeded)
        })
        .await;
    }
    let jobs = app.store().await.jobs().await.unwrap();
    assert!(
        jobs.iter().all(|j| j.dry_run && j.spec.mode == mode),
        "{jobs:#?}"
    );
    let cleanup = jobs.iter().find(|j| j.playbook == "cleanup").unwrap();
    assert!(
        text_of(cleanup).contains("deleted 1 Failed pods"),
        "{cleanup:?}"
    );
    let after = api.get("web").await.unwrap();
    assert_eq!(before.metadata.generation, after.metadata.generation);
    assert_eq!(
        before.spec, after.spec,
        "dryRun=All: validated, nothing stored"
    );
    assert_eq!(replica_sets(&client, &ns.name, "web").await.len(), 2);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    assert!(
        pods.get("failed-old")
            .await
            .unwrap()
            .metadata
            .deletion_timestamp
            .is_none(),
        "a dry-run delete deletes nothing"
    );
    let events = events_on(&client, &ns.name, "web").await;
    assert!(
        events
            .iter()
            .all(|e| !e.reason.as_deref().unwrap_or("").starts_with("AutoRepair")),
        "no event for a change that did not happen: {events:#?}"
    );
}

/// A restart refused before any change: the job fails with `reason`, the Deployment is as it was.
async fn restart_is_refused(prefix: &str, mutate: impl FnOnce(&mut Value), reason: &str) {
    let Some(env) = KubeEnv::get().await else {
        return;
    };
    let ns = env.namespace(prefix).await;
    let client = env.client().await;
    let mut manifest = workload(
        "Deployment",
        "web",
        1,
        &[("app", "web:1", None, None)],
        json!({}),
    );
    mutate(&mut manifest);
    create::<Deployment>(&client, &ns.name, manifest).await;
    let api: Api<Deployment> = Api::namespaced(client.clone(), &ns.name);
    wait_until("the deployment's first status", TIMEOUT, || async {
        let d = api.get("web").await.unwrap();
        d.status.and_then(|s| s.observed_generation) == d.metadata.generation
    })
    .await;
    let before = api.get("web").await.unwrap();
    let app = daemon(&env.kubeconfig, Some(&one_rule("restart", ""))).await;
    app.post_webhook(alert("restart", &ns.name, &[("app", "web")]))
        .await;
    let job = settled(&app).await;
    assert_ne!(job.state, JobState::Succeeded, "{job:?}");
    assert!(text_of(&job).contains(reason), "{job:?}");
    let after = api.get("web").await.unwrap();
    assert_eq!(before.spec, after.spec);
    assert_eq!(before.metadata.generation, after.metadata.generation);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_annotated_auto_repair_disabled_is_left_alone() {
    restart_is_refused(
        "disabled",
        |m| m["metadata"]["annotations"] = json!({"aiops.wooo.work/auto-repair": "disabled"}),
        "auto-repair=disabled",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_deployment_is_not_restarted() {
    restart_is_refused("paused", |m| m["spec"]["paused"] = json!(true), "is paused").await;
}

/// Restarts a StatefulSet or DaemonSet through a posted alert and waits until every pod was
/// replaced by the real controller.
async fn restart_rolls(kind: &str, label: &str) {
    let Some(env) = KubeEnv::get().await else {
        return;
    };
    let ns = env.namespace(&kind.to_lowercase()).await;
    let client = env.client().await;
    let manifest = workload(kind, "db", 2, &[("app", "db:1", None, None)], json!({}));
    let replicas = if kind == "DaemonSet" { 1 } else { 2 };
    match kind {
        "StatefulSet" => drop(create::<StatefulSet>(&client, &ns.name, manifest).await),
        _ => drop(create::<DaemonSet>(&client, &ns.name, manifest).await),
    }
    wait_until(&format!("{kind} pods Ready"), TIMEOUT, || async {
        ready_pods(&client, &ns.name, "db").await.len() == replicas
    })
    .await;
    let before: Vec<String> = ready_pods(&client, &ns.name, "db")
        .await
        .iter()
        .map(|p| p.metadata.uid.clone().unwrap())
        .collect();

    let app = daemon(&env.kubeconfig, None).await;
    app.post_webhook(alert(
        "restart",
        &ns.name,
        &[("target_kind", &kind.to_lowercase()), (label, "db")],
    ))
    .await;
    let job = succeeded(&app).await;
    assert!(text_of(&job).contains("rollout complete"), "{job:?}");
    let after = ready_pods(&client, &ns.name, "db").await;
    assert_eq!(after.len(), replicas, "{after:#?}");
    assert!(
        after
            .iter()
            .all(|p| !before.contains(p.metadata.uid.as_ref().unwrap())
                && p.metadata
                    .annotations
                    .as_ref()
                    .is_some_and(|a| a.contains_key("kubectl.kubernetes.io/restartedAt"))),
        "every pod replaced by one of the restarted template: {after:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statefulset_restart_rolls_every_pod() {
    restart_rolls("StatefulSet", "statefulset").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemonset_restart_rolls_every_pod() {
    restart_rolls("DaemonSet", "daemonset").await;
}

// ---------------------------------------------------------------------------------------------
// RBAC: aiops as a ServiceAccount bound to exactly the ClusterRole `aiops manifests` prints.

/// The rules of the daemon's ClusterRole, as `aiops manifests` prints them.
fn repair_role() -> Vec<Value> {
    printed_cluster_role_rules(&["manifests"])
}

/// Rules for the five playbooks with no waits or escalations, so each alert makes one job.
fn five_rules() -> String {
    let body = [
        one_rule("restart", "    params: {rollout_timeout: 2m}\n"),
        one_rule("rollback", "    params: {rollout_timeout: 2m}\n"),
        one_rule(
            "scale_memory",
            "    params: {max_limit: 4Gi, container: app, rollout_timeout: 2m}\n",
        ),
        one_rule(
            "oom_handler",
            "    params: {max_limit: 4Gi, container: app, rollout_timeout: 2m}\n",
        ),
        one_rule("cleanup", "    params: {older_than: 1h}\n"),
    ]
    .map(|r| r.trim_start_matches("rules:\n").to_string())
    .join("");
    format!("rules:\n{body}")
}

/// What every playbook needs in `ns`: Deployment `web` at its second revision with an OOMKilled
/// container and a memory limit, an old Failed pod and an old finished Job.
async fn playbook_scene(client: &kube::Client, ns: &str) {
    create::<Deployment>(
        client,
        ns,
        workload(
            "Deployment",
            "web",
            1,
            &[("app", "web:1", Some("256Mi"), Some("512Mi"))],
            json!({"sim.aiops.test/oom-killed": "app"}),
        ),
    )
    .await;
    wait_deployment_rolled_out(client, ns, "web").await;
    let api: Api<Deployment> = Api::namespaced(client.clone(), ns);
    api.patch(
        "web",
        &PatchParams::default(),
        &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "web:2"}]}}}})),
    )
    .await
    .unwrap();
    wait_deployment_rolled_out(client, ns, "web").await;
    create::<Pod>(
        client,
        ns,
        json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "failed-old", "annotations": {"sim.aiops.test/fail": "true", "sim.aiops.test/finished-ago": "2h"}},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}}),
    )
    .await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    wait_until("the failed pod's status", TIMEOUT, || async {
        pods.get("failed-old")
            .await
            .unwrap()
            .status
            .and_then(|s| s.phase)
            .as_deref()
            == Some("Failed")
    })
    .await;
}

/// Runs the playbooks in order as a ServiceAccount with exactly `rules`, each from a posted
/// alert; returns the daemon and each settled job.
async fn run_as_service_account(
    env: &KubeEnv,
    prefix: &str,
    rules: &[Value],
    playbooks: &[&str],
) -> (
    TestApp,
    Vec<RepairJob>,
    control_plane::TestNamespace,
    kube::Client,
) {
    let ns = env.namespace(prefix).await;
    let client = env.client().await;
    playbook_scene(&client, &ns.name).await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig =
        service_account_kubeconfig(env, &ns.name, rules, &dir.path().join("kubeconfig")).await;
    let app = daemon(&kubeconfig, Some(&five_rules())).await;
    let mut jobs = Vec::new();
    for (i, playbook) in playbooks.iter().enumerate() {
        app.post_webhook(alert(playbook, &ns.name, &[("app", "web")]))
            .await;
        let all = app
            .wait_for_jobs_within(&format!("{playbook} to settle"), TIMEOUT, |jobs| {
                jobs.len() == i + 1
                    && jobs.iter().all(|j| {
                        matches!(
                            j.state,
                            JobState::Succeeded | JobState::Escalated | JobState::Failed
                        )
                    })
            })
            .await;
        jobs.push(all.into_iter().find(|j| j.playbook == *playbook).unwrap());
    }
    (app, jobs, ns, client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_printed_cluster_role_is_enough_for_all_five_playbooks() {
    let Some(env) = KubeEnv::get().await else {
        return;
    };
    let playbooks = [
        "restart",
        "rollback",
        "scale_memory",
        "oom_handler",
        "cleanup",
    ];
    let (app, jobs, ns, client) =
        run_as_service_account(env, "rbac-all", &repair_role(), &playbooks).await;
    for job in &jobs {
        assert_eq!(
            job.state,
            JobState::Succeeded,
            "{job:#?}\nlogs:\n{}",
            app.log_text()
        );
    }
    let reasons: Vec<String> = events_on(&client, &ns.name, "web")
        .await
        .into_iter()
        .filter_map(|e| e.reason)
        .filter(|r| r.starts_with("AutoRepair"))
        .collect();
    assert!(
        reasons.len() >= 4,
        "an Event per change, as the ServiceAccount: {reasons:?}"
    );
    assert!(
        !app.log_text()
            .contains("recording a Kubernetes Event failed")
    );
}

/// The printed role without the rule on `resource`, and the playbook that needs that rule.
async fn without_rule_the_playbook_is_forbidden(prefix: &str, resource: &str, playbook: &str) {
    let Some(env) = KubeEnv::get().await else {
        return;
    };
    let rules = without_rule(&repair_role(), resource);
    let (app, jobs, _ns, _client) = run_as_service_account(env, prefix, &rules, &[playbook]).await;
    let job = &jobs[0];
    // No escalation chain in these rules: the job goes to humans at once, not retried.
    assert_eq!(
        job.state,
        JobState::Escalated,
        "{job:#?}\nlogs:\n{}",
        app.log_text()
    );
    let text = text_of(job);
    assert!(
        text.contains(&format!(
            "cannot {}",
            if resource == "deployments" {
                "get"
            } else {
                "list"
            }
        )) && text.contains(resource)
            && text.contains("forbidden")
            && text.contains("check the ClusterRole"),
        "a clear final error naming the refusal: {text}"
    );
    assert_eq!(
        app.store().await.jobs().await.unwrap().len(),
        1,
        "not retried"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_workloads_rule_a_restart_is_forbidden() {
    without_rule_the_playbook_is_forbidden("rbac-workloads", "deployments", "restart").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_replicasets_rule_a_rollback_is_forbidden() {
    without_rule_the_playbook_is_forbidden("rbac-rs", "replicasets", "rollback").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_replicasets_rule_a_restart_and_its_rollout_wait_still_succeed() {
    let Some(env) = KubeEnv::get().await else {
        return;
    };
    let rules = without_rule(&repair_role(), "replicasets");
    let (app, jobs, _ns, _client) =
        run_as_service_account(env, "rbac-rs-restart", &rules, &["restart"]).await;
    assert_eq!(
        jobs[0].state,
        JobState::Succeeded,
        "the ReplicaSets rule is rollback's alone: {:#?}\nlogs:\n{}",
        jobs[0],
        app.log_text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_pods_rule_a_cleanup_is_forbidden() {
    without_rule_the_playbook_is_forbidden("rbac-pods", "pods", "cleanup").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_jobs_rule_a_cleanup_is_forbidden() {
    without_rule_the_playbook_is_forbidden("rbac-jobs", "jobs", "cleanup").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_events_rule_a_restart_leaves_no_event() {
    let Some(env) = KubeEnv::get().await else {
        return;
    };
    let rules = without_rule(&repair_role(), "events");
    let (app, jobs, ns, client) =
        run_as_service_account(env, "rbac-events", &rules, &["restart"]).await;
    assert_eq!(
        jobs[0].state,
        JobState::Succeeded,
        "an Event is not worth failing a repair"
    );
    let events = events_on(&client, &ns.name, "web").await;
    assert!(
        events
            .iter()
            .all(|e| e.reason.as_deref() != Some("AutoRepairRestart")),
        "{events:#?}"
    );
    assert!(
        app.log_text()
            .contains("recording a Kubernetes Event failed")
    );
}

// ---------------------------------------------------------------------------------------------
// scale(): the scale subresource, as the ServiceAccount of the printed role.

/// A playbook that scales its target to `params.replicas` and waits for the new replicas.
const SCALE_UP: &str = r#"
let r = scale(target, params.replicas);
let rollout = wait_rollout(target, "2m");
if rollout.complete { success(`scaled ${target.name} from ${r.from} to ${r.to}`); }
fail(rollout.message);
"#;

/// Two rules for `scale_up` on the same workload, told apart by a `size` label: one within
/// the rule's cap of 4, one above it.
const SCALE_RULES: &str = r#"rules:
  - name: scale-to-three
    matchers: ['auto_repair="scale_up"', 'size="three"']
    playbook: scale_up
    params: {replicas: 3, max_replicas: 4}
  - name: scale-to-nine
    matchers: ['auto_repair="scale_up"', 'size="nine"']
    playbook: scale_up
    params: {replicas: 9, max_replicas: 4}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_playbook_scales_a_deployment_to_three_and_is_refused_above_its_cap() {
    let Some(env) = KubeEnv::get().await else {
        return;
    };
    let ns = env.namespace("scale").await;
    let client = env.client().await;
    two_replica_web(&client, &ns.name).await;
    // As the ServiceAccount of exactly the role `aiops manifests` prints.
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = service_account_kubeconfig(
        env,
        &ns.name,
        &repair_role(),
        &dir.path().join("kubeconfig"),
    )
    .await;
    let playbooks = dir.path().join("playbooks");
    std::fs::create_dir(&playbooks).unwrap();
    std::fs::write(playbooks.join("scale_up.rhai"), SCALE_UP).unwrap();
    let app = TestApp::spawn(
        Spawn::new(Db::Sqlite)
            .rules(SCALE_RULES)
            .env("AIOPS_PLAYBOOKS_DIR", playbooks.to_str().unwrap())
            .env("AIOPS_CLUSTER_STATE_FILE", "")
            .env("AIOPS_KUBECONFIG", kubeconfig.to_str().unwrap()),
    )
    .await;

    // 2 -> 3 through deployments/scale; verified once the third replica is available.
    app.post_webhook(alert(
        "scale_up",
        &ns.name,
        &[("app", "web"), ("size", "three")],
    ))
    .await;
    let job = succeeded(&app).await;
    assert!(text_of(&job).contains("scaled web from 2 to 3"), "{job:?}");
    let d = wait_deployment_rolled_out(&client, &ns.name, "web").await;
    assert_eq!(d.spec.as_ref().unwrap().replicas, Some(3));
    assert_eq!(ready_pods(&client, &ns.name, "web").await.len(), 3);
    let reasons: Vec<String> = events_on(&client, &ns.name, "web")
        .await
        .into_iter()
        .filter_map(|e| e.reason)
        .collect();
    assert!(
        reasons.iter().any(|r| r == "AutoRepairScale"),
        "{reasons:?}"
    );

    // 9 is above the rule's cap of 4: refused before any request, and said so.
    app.post_webhook(alert(
        "scale_up",
        &ns.name,
        &[("app", "web"), ("size", "nine")],
    ))
    .await;
    let jobs = app
        .wait_for_jobs_within("the refused scale to settle", TIMEOUT, |jobs| {
            jobs.len() == 2
                && jobs.iter().all(|j| {
                    matches!(
                        j.state,
                        JobState::Succeeded | JobState::Escalated | JobState::Failed
                    )
                })
        })
        .await;
    let refused = jobs.iter().find(|j| j.rule == "scale-to-nine").unwrap();
    assert_eq!(refused.state, JobState::Escalated, "{refused:#?}");
    assert!(
        text_of(refused)
            .contains("scale: refused: 9 replicas is above the cap of 4 (the rule's max_replicas)"),
        "{refused:#?}"
    );
    let api: Api<Deployment> = Api::namespaced(client.clone(), &ns.name);
    assert_eq!(
        api.get("web").await.unwrap().spec.unwrap().replicas,
        Some(3),
        "unchanged"
    );
}
