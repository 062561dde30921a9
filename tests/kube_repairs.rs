//! The five shipped playbooks through `aiops serve` and its kube-rs backend, from an
//! Alertmanager payload to the resulting Kubernetes objects.
//!
//! The API server is `fakeapi::FakeApi`: a stateful fake (no real API server can be installed
//! here) that keeps Deployments, ReplicaSets, Pods, Jobs and Events, and runs a minimal
//! Deployment controller so rollouts move forward.

mod common;
mod fakeapi;

use std::time::Duration;

use aiops::store::JobState;
use common::{Db, Spawn, TestApp, payload};
use fakeapi::FakeApi;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use serde_json::json;

const MI: i64 = 1024 * 1024;

async fn daemon(api: &FakeApi) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    api.write_kubeconfig(&kubeconfig);
    let app = TestApp::spawn(
        Spawn::new(Db::Sqlite)
            .env("AIOPS_CLUSTER_STATE_FILE", "")
            .env("AIOPS_KUBECONFIG", kubeconfig.to_str().unwrap())
            .env("AIOPS_KUBE_CONTEXT", "fake"),
    )
    .await;
    // The kubeconfig is read at start-up; the file may go.
    drop(dir);
    app
}

fn alert(repair: &str, app: &str) -> String {
    let ten_minutes_ago = (chrono::Utc::now() - chrono::Duration::minutes(10)).to_rfc3339();
    payload(
        &[(
            &[
                ("alertname", "KubeTrouble"),
                ("auto_repair", repair),
                ("namespace", "prod"),
                ("app", app),
                ("severity", "critical"),
            ],
            "firing",
        )],
        &ten_minutes_ago,
    )
}

async fn repaired(app: &TestApp) -> aiops::store::Job {
    let jobs = app
        .wait_all_jobs_in(&[JobState::Succeeded, JobState::Escalated])
        .await;
    assert_eq!(jobs.len(), 1, "{jobs:#?}");
    assert_eq!(
        jobs[0].state,
        JobState::Succeeded,
        "{jobs:#?}\nlogs:\n{}",
        app.log_text()
    );
    jobs[0].clone()
}

fn memory_of(api: &FakeApi, container: &str) -> (Option<String>, Option<String>) {
    let d = api.deployment("prod", "web");
    let c = d
        .spec
        .unwrap()
        .template
        .spec
        .unwrap()
        .containers
        .into_iter()
        .find(|c| c.name == container)
        .unwrap();
    let r = c.resources.unwrap_or_default();
    let get = |m: Option<
        std::collections::BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
    >| { m.and_then(|m| m.get("memory").map(|q| q.0.clone())) };
    (get(r.requests), get(r.limits))
}

fn writes(api: &FakeApi) -> Vec<String> {
    api.writes()
        .into_iter()
        .map(|(m, p, _)| format!("{m} {}", p.split('?').next().unwrap()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_leaves_kubectls_annotation_and_an_event() {
    let api = FakeApi::start().await;
    api.add_deployment(
        "prod",
        "web",
        2,
        &[("app", "web:1", Some("256Mi"), Some("512Mi"))],
    );
    let app = daemon(&api).await;
    api.clear_requests();
    app.post_webhook(alert("restart", "web")).await;
    let job = repaired(&app).await;
    let d = api.deployment("prod", "web");
    let annotations = d
        .spec
        .unwrap()
        .template
        .metadata
        .unwrap()
        .annotations
        .unwrap_or_default();
    assert!(
        annotations.contains_key("kubectl.kubernetes.io/restartedAt"),
        "{annotations:?}"
    );
    assert_eq!(
        writes(&api),
        [
            "PATCH /apis/apps/v1/namespaces/prod/deployments/web",
            "POST /api/v1/namespaces/prod/events"
        ],
        "exactly one change and its event"
    );
    let events = api.events("prod");
    assert_eq!(events[0].reason.as_deref(), Some("AutoRepairRestart"));
    let message = events[0].message.clone().unwrap();
    assert!(
        message.contains(&format!("job {}", job.id)) && message.contains("rule restart"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_memory_changes_exactly_the_named_containers_limit() {
    let api = FakeApi::start().await;
    api.add_deployment(
        "prod",
        "web",
        2,
        &[
            ("app", "web:1", Some("256Mi"), Some("512Mi")),
            ("sidecar", "proxy:1", None, Some("64Mi")),
        ],
    );
    let app = daemon(&api).await;
    app.post_webhook(alert("scale_memory", "web")).await;
    let job = repaired(&app).await;
    assert!(
        job.outcome.as_deref().unwrap().contains("512Mi -> 615Mi"),
        "{:?}",
        job.outcome
    );
    assert_eq!(
        memory_of(&api, "app"),
        (Some("256Mi".into()), Some("615Mi".into()))
    );
    assert_eq!(
        memory_of(&api, "sidecar"),
        (None, Some("64Mi".into())),
        "the other container is untouched"
    );
    let _ = MI;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oom_handler_confirms_the_oom_kill_then_raises_the_limit() {
    let api = FakeApi::start().await;
    api.add_deployment(
        "prod",
        "web",
        1,
        &[("app", "web:1", Some("256Mi"), Some("512Mi"))],
    );
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "web-oom", "namespace": "prod", "labels": {"app": "web"}},
        "status": {"phase": "Running", "containerStatuses": [{
            "name": "app", "ready": true, "restartCount": 3, "image": "web:1", "imageID": "web:1",
            "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}, "state": {"running": {}}}]}
    }))
    .unwrap();
    api.add_pod(pod);
    let app = daemon(&api).await;
    app.post_webhook(alert("oom_handler", "web")).await;
    let job = repaired(&app).await;
    assert!(
        job.outcome
            .as_deref()
            .unwrap()
            .starts_with("OOMKilled: memory limit of app 512Mi -> 615Mi"),
        "{:?}",
        job.outcome
    );
    assert_eq!(
        memory_of(&api, "app"),
        (Some("256Mi".into()), Some("615Mi".into()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_restores_the_previous_revisions_template() {
    let api = FakeApi::start().await;
    api.add_deployment("prod", "web", 2, &[("app", "web:1", None, None)]);
    api.roll_out("prod", "web", |t| {
        t.spec.as_mut().unwrap().containers[0].image = Some("web:2".into());
    });
    let app = daemon(&api).await;
    app.post_webhook(alert("rollback", "web")).await;
    let job = repaired(&app).await;
    assert!(
        job.outcome.as_deref().unwrap().contains("revision 1"),
        "{:?}",
        job.outcome
    );
    let d = api.deployment("prod", "web");
    let image = d.spec.unwrap().template.spec.unwrap().containers[0]
        .image
        .clone();
    assert_eq!(image.as_deref(), Some("web:1"));
    let revision = d
        .metadata
        .annotations
        .unwrap_or_default()
        .get("deployment.kubernetes.io/revision")
        .cloned();
    assert_eq!(
        revision.as_deref(),
        Some("3"),
        "a rollback is a new revision, as kubectl's"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_deletes_exactly_the_old_failed_pods_and_finished_jobs() {
    let api = FakeApi::start().await;
    api.add_deployment("prod", "web", 1, &[("app", "web:1", None, None)]);
    let old = "2020-01-01T00:00:00Z";
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    for (name, phase, reason, start) in [
        ("evicted-old", "Failed", Some("Evicted"), old),
        ("failed-old", "Failed", None, old),
        ("failed-recent", "Failed", None, now.as_str()),
        ("running-old", "Running", None, old),
    ] {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "prod"},
            "status": {"phase": phase, "reason": reason, "startTime": start}
        }))
        .unwrap();
        api.add_pod(pod);
    }
    for (name, status) in [
        (
            "backup-done-old",
            json!({"completionTime": old, "succeeded": 1}),
        ),
        ("backup-running", json!({"active": 1})),
        (
            "backup-done-recent",
            json!({"completionTime": now, "succeeded": 1}),
        ),
    ] {
        let job: Job = serde_json::from_value(
            json!({"metadata": {"name": name, "namespace": "prod"}, "status": status}),
        )
        .unwrap();
        api.add_job(job);
    }
    let app = daemon(&api).await;
    app.post_webhook(alert("cleanup", "web")).await;
    let job = repaired(&app).await;
    assert!(
        job.outcome
            .as_deref()
            .unwrap()
            .contains("deleted 2 Failed pods and 1 finished Jobs"),
        "{:?}",
        job.outcome
    );
    let mut pods: Vec<String> = api
        .pods("prod")
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect();
    pods.retain(|p| !p.starts_with("web-"));
    pods.sort();
    assert_eq!(pods, ["failed-recent", "running-old"]);
    let mut jobs: Vec<String> = api
        .jobs("prod")
        .into_iter()
        .filter_map(|j| j.metadata.name)
        .collect();
    jobs.sort();
    assert_eq!(jobs, ["backup-done-recent", "backup-running"]);
    tokio::time::sleep(Duration::from_millis(0)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_rule_changes_nothing_on_the_cluster() {
    let api = FakeApi::start().await;
    api.add_deployment(
        "prod",
        "web",
        2,
        &[("app", "web:1", Some("256Mi"), Some("512Mi"))],
    );
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    api.write_kubeconfig(&kubeconfig);
    let rules = "rules:\n  - name: careful\n    matchers: ['auto_repair=\"restart\"']\n    playbook: restart\n    dry_run: true\n";
    let app = TestApp::spawn(
        Spawn::new(Db::Sqlite)
            .rules(rules)
            .env("AIOPS_CLUSTER_STATE_FILE", "")
            .env("AIOPS_KUBECONFIG", kubeconfig.to_str().unwrap())
            .env("AIOPS_KUBE_CONTEXT", "fake"),
    )
    .await;
    let before = api.deployment("prod", "web");
    app.post_webhook(alert("restart", "web")).await;
    repaired(&app).await;
    let after = api.deployment("prod", "web");
    assert_eq!(
        before.spec, after.spec,
        "dryRun=All: the server validated and stored nothing"
    );
    assert!(
        api.writes()
            .iter()
            .all(|(_, path, _)| path.contains("dryRun=All")),
        "{:?}",
        api.writes()
    );
    assert!(
        api.events("prod").is_empty(),
        "no event for a change that did not happen"
    );
}
