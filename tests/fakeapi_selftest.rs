//! Proves the fake Kubernetes API server (tests/fakeapi) against the real kube client.

use crate::fakeapi;

use fakeapi::{FakeApi, RolloutBehaviour};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Event, ObjectReference, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::json;

const NS: &str = "default";

async fn client_from_kubeconfig(fake: &FakeApi) -> kube::Client {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    fake.write_kubeconfig(&path);
    let options = KubeConfigOptions {
        context: Some("fake".into()),
        ..Default::default()
    };
    let config =
        kube::Config::from_custom_kubeconfig(Kubeconfig::read_from(&path).unwrap(), &options)
            .await
            .unwrap();
    assert_eq!(config.default_namespace, "default");
    kube::Client::try_from(config).unwrap()
}

fn pp() -> PatchParams {
    PatchParams {
        field_manager: Some("aiops".into()),
        ..Default::default()
    }
}

fn revision(annotations: Option<&std::collections::BTreeMap<String, String>>) -> Option<String> {
    annotations
        .and_then(|a| a.get("deployment.kubernetes.io/revision"))
        .cloned()
}

fn rs_revision(rs: &ReplicaSet) -> String {
    revision(rs.metadata.annotations.as_ref()).unwrap()
}

fn web(fake: &FakeApi) {
    fake.add_deployment(
        NS,
        "web",
        2,
        &[
            ("app", "nginx:1.27", Some("64Mi"), Some("128Mi")),
            ("sidecar", "envoy:1.30", Some("32Mi"), Some("64Mi")),
        ],
    );
}

fn complete(d: &Deployment) -> bool {
    let spec = d.spec.as_ref().unwrap();
    let status = d.status.as_ref().unwrap();
    let want = spec.replicas.unwrap_or(1);
    d.metadata.generation <= status.observed_generation
        && status.updated_replicas == Some(want)
        && status.replicas == Some(want)
        && status.available_replicas == Some(want)
        && status.conditions.iter().flatten().any(|c| {
            c.type_ == "Progressing" && c.reason.as_deref() == Some("NewReplicaSetAvailable")
        })
}

#[tokio::test]
async fn get_deployment_and_its_replicaset_and_pods() {
    let fake = FakeApi::start().await;
    web(&fake);
    let client = client_from_kubeconfig(&fake).await;
    let deployments: Api<Deployment> = Api::default_namespaced(client.clone());
    let d = deployments.get("web").await.unwrap();
    assert_eq!(d.metadata.generation, Some(1));
    assert_eq!(
        revision(d.metadata.annotations.as_ref()).as_deref(),
        Some("1")
    );
    assert!(complete(&d));
    let uid = d.metadata.uid.clone().unwrap();

    let rss: Api<ReplicaSet> = Api::namespaced(client.clone(), NS);
    let list = rss
        .list(&ListParams::default().labels("app=web"))
        .await
        .unwrap();
    assert_eq!(list.items.len(), 1);
    let rs = &list.items[0];
    assert_eq!(rs_revision(rs), "1");
    let owner = &rs.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.uid.as_str(), owner.controller),
        (uid.as_str(), Some(true))
    );
    let hash = rs.metadata.labels.as_ref().unwrap()["pod-template-hash"].clone();

    let pods: Api<Pod> = Api::namespaced(client, NS);
    let list = pods
        .list(&ListParams::default().labels(&format!("app=web,pod-template-hash={hash}")))
        .await
        .unwrap();
    assert_eq!(list.items.len(), 2);
    assert!(
        list.items
            .iter()
            .all(|p| p.status.as_ref().unwrap().phase.as_deref() == Some("Running"))
    );
    assert!(fake.requests().iter().all(|(m, _, _)| m == "GET"));
}

#[tokio::test]
async fn restart_by_strategic_merge_patch_creates_revision_2() {
    let fake = FakeApi::start().await;
    web(&fake);
    let old_pods: Vec<String> = fake
        .pods(NS)
        .into_iter()
        .map(|p| p.metadata.name.unwrap())
        .collect();
    let deployments: Api<Deployment> = Api::namespaced(fake.client(), NS);
    let patch = json!({"spec": {"template": {"metadata": {"annotations": {
        "kubectl.kubernetes.io/restartedAt": "2025-01-01T00:00:00Z"}}}}});
    let written = deployments
        .patch("web", &pp(), &Patch::Strategic(patch))
        .await
        .unwrap();
    assert_eq!(written.metadata.generation, Some(2));

    let d = deployments.get("web").await.unwrap();
    assert_eq!(
        revision(d.metadata.annotations.as_ref()).as_deref(),
        Some("2")
    );
    assert_eq!(d.status.as_ref().unwrap().observed_generation, Some(2));
    assert!(complete(&d));
    let tpl = d.spec.as_ref().unwrap().template.clone();
    assert_eq!(
        tpl.metadata.as_ref().unwrap().annotations.as_ref().unwrap()["kubectl.kubernetes.io/restartedAt"],
        "2025-01-01T00:00:00Z"
    );
    assert_eq!(tpl.spec.as_ref().unwrap().containers.len(), 2);

    let rss = fake.replicasets(NS);
    assert_eq!(rss.len(), 2);
    let mut revisions: Vec<String> = rss.iter().map(rs_revision).collect();
    revisions.sort();
    assert_eq!(revisions, ["1", "2"]);
    let new_rs = rss.iter().find(|rs| rs_revision(rs) == "2").unwrap();
    let old_rs = rss.iter().find(|rs| rs_revision(rs) == "1").unwrap();
    assert_eq!(new_rs.spec.as_ref().unwrap().replicas, Some(2));
    assert_eq!(old_rs.spec.as_ref().unwrap().replicas, Some(0));

    let pods = fake.pods(NS);
    assert_eq!(pods.len(), 2);
    for p in &pods {
        assert!(!old_pods.contains(p.metadata.name.as_ref().unwrap()));
        assert_eq!(
            p.metadata.owner_references.as_ref().unwrap()[0].uid,
            new_rs.metadata.uid.clone().unwrap()
        );
    }
    let writes = fake.writes();
    assert_eq!(writes.len(), 1);
    assert_eq!(writes[0].0, "PATCH");
    assert_eq!(
        writes[0].1,
        "/apis/apps/v1/namespaces/default/deployments/web?fieldManager=aiops"
    );
    assert_eq!(
        writes[0].2.as_deref(),
        Some("application/strategic-merge-patch+json")
    );
}

#[tokio::test]
async fn memory_patch_by_container_name_keeps_the_other_container() {
    let fake = FakeApi::start().await;
    web(&fake);
    let deployments: Api<Deployment> = Api::namespaced(fake.client(), NS);
    let patch = json!({"spec": {"template": {"spec": {"containers": [
        {"name": "app", "resources": {"limits": {"memory": "192Mi"}}}]}}}});
    deployments
        .patch("web", &pp(), &Patch::Strategic(patch))
        .await
        .unwrap();
    let d = fake.deployment(NS, "web");
    let containers = d.spec.unwrap().template.spec.unwrap().containers;
    assert_eq!(containers.len(), 2);
    let app = containers.iter().find(|c| c.name == "app").unwrap();
    let res = app.resources.as_ref().unwrap();
    assert_eq!(res.limits.as_ref().unwrap()["memory"].0, "192Mi");
    assert_eq!(res.requests.as_ref().unwrap()["memory"].0, "64Mi");
    assert_eq!(app.image.as_deref(), Some("nginx:1.27"));
    let sidecar = containers.iter().find(|c| c.name == "sidecar").unwrap();
    assert_eq!(sidecar.image.as_deref(), Some("envoy:1.30"));
    assert_eq!(
        sidecar.resources.as_ref().unwrap().limits.as_ref().unwrap()["memory"].0,
        "64Mi"
    );

    // A JSON merge patch replaces the list, as Kubernetes does (why aiops uses SMP).
    let patch = json!({"spec": {"template": {"spec": {"containers": [
        {"name": "app", "image": "nginx:1.28"}]}}}});
    deployments
        .patch("web", &pp(), &Patch::Merge(patch))
        .await
        .unwrap();
    assert_eq!(
        fake.deployment(NS, "web")
            .spec
            .unwrap()
            .template
            .spec
            .unwrap()
            .containers
            .len(),
        1
    );
}

#[tokio::test]
async fn json_patch_back_to_revision_1_reuses_its_replicaset_as_revision_3() {
    let fake = FakeApi::start().await;
    web(&fake);
    // A ReplicaSet with the same labels that the Deployment does not own: ignored.
    let stray: ReplicaSet = serde_json::from_value(json!({
        "metadata": {"name": "web-stray", "namespace": NS, "labels": {"app": "web"},
                     "annotations": {"deployment.kubernetes.io/revision": "9"}},
        "spec": {"selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "app", "image": "evil"}]}}}
    }))
    .unwrap();
    fake.add_replicaset(stray);
    fake.roll_out(NS, "web", |t| {
        t.spec.as_mut().unwrap().containers[0].image = Some("nginx:1.28".into());
    });
    let d = fake.deployment(NS, "web");
    assert_eq!(
        revision(d.metadata.annotations.as_ref()).as_deref(),
        Some("2")
    );
    let uid = d.metadata.uid.clone().unwrap();

    // What `kubectl rollout undo` does.
    let rs1 = fake
        .replicasets(NS)
        .into_iter()
        .find(|rs| {
            rs.metadata
                .owner_references
                .iter()
                .flatten()
                .any(|o| o.uid == uid)
                && rs_revision(rs) == "1"
        })
        .unwrap();
    let rs1_name = rs1.metadata.name.clone().unwrap();
    let mut template = serde_json::to_value(rs1.spec.unwrap().template.unwrap()).unwrap();
    template["metadata"]["labels"]
        .as_object_mut()
        .unwrap()
        .remove("pod-template-hash");
    let patch: json_patch::Patch = serde_json::from_value(json!([
        {"op": "replace", "path": "/spec/template", "value": template},
        {"op": "replace", "path": "/metadata/annotations", "value": {"deployment.kubernetes.io/revision": "2"}},
    ]))
    .unwrap();
    let deployments: Api<Deployment> = Api::namespaced(fake.client(), NS);
    deployments
        .patch("web", &pp(), &Patch::Json::<()>(patch))
        .await
        .unwrap();

    let d = deployments.get("web").await.unwrap();
    assert_eq!(
        revision(d.metadata.annotations.as_ref()).as_deref(),
        Some("3")
    );
    assert_eq!(
        d.spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .as_ref()
            .unwrap()
            .containers[0]
            .image
            .as_deref(),
        Some("nginx:1.27")
    );
    assert!(complete(&d));
    let rss = fake.replicasets(NS);
    assert_eq!(rss.len(), 3, "no new ReplicaSet: {rss:?}");
    let reused = rss
        .iter()
        .find(|rs| rs.metadata.name.as_deref() == Some(&rs1_name))
        .unwrap();
    assert_eq!(rs_revision(reused), "3");
    assert_eq!(reused.spec.as_ref().unwrap().replicas, Some(2));
    let stray = rss
        .iter()
        .find(|rs| rs.metadata.name.as_deref() == Some("web-stray"))
        .unwrap();
    assert_eq!(rs_revision(stray), "9");
    let pods = fake.pods(NS);
    assert_eq!(pods.len(), 2);
    assert!(
        pods.iter()
            .all(|p| p.metadata.owner_references.as_ref().unwrap()[0].name == rs1_name)
    );
}

#[tokio::test]
async fn dry_run_changes_nothing() {
    let fake = FakeApi::start().await;
    web(&fake);
    fake.add_pod(failed_pod("evicted-1"));
    let before = (
        fake.deployment(NS, "web"),
        fake.replicasets(NS),
        fake.pods(NS),
    );
    let client = fake.client();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NS);
    let params = PatchParams {
        dry_run: true,
        ..pp()
    };
    let patch = json!({"spec": {"template": {"spec": {"containers": [
        {"name": "app", "resources": {"limits": {"memory": "1Gi"}}}]}}}});
    let would = deployments
        .patch("web", &params, &Patch::Strategic(patch))
        .await
        .unwrap();
    let containers = would.spec.unwrap().template.spec.unwrap().containers;
    assert_eq!(
        containers[0]
            .resources
            .as_ref()
            .unwrap()
            .limits
            .as_ref()
            .unwrap()["memory"]
            .0,
        "1Gi"
    );
    assert_eq!(containers.len(), 2);

    let pods: Api<Pod> = Api::namespaced(client, NS);
    let gone = pods
        .delete(
            "evicted-1",
            &DeleteParams {
                dry_run: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        gone.left().unwrap().metadata.name.as_deref(),
        Some("evicted-1")
    );

    assert_eq!(
        before,
        (
            fake.deployment(NS, "web"),
            fake.replicasets(NS),
            fake.pods(NS)
        )
    );
    let writes = fake.writes();
    assert_eq!(writes.len(), 2);
    assert!(writes[0].1.contains("dryRun=All"), "{writes:?}");
    let delete = &fake.recorded()[1];
    assert_eq!(delete.body.as_ref().unwrap()["dryRun"], json!(["All"]));
}

fn failed_pod(name: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": NS, "labels": {"app": "batch"}},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
        "status": {"phase": "Failed", "reason": "Evicted", "message": "The node was low on resource: memory."}
    }))
    .unwrap()
}

#[tokio::test]
async fn list_pods_by_label_and_phase_and_delete() {
    let fake = FakeApi::start().await;
    web(&fake);
    fake.add_pod(failed_pod("evicted-1"));
    fake.add_pod(failed_pod("evicted-2"));
    let pods: Api<Pod> = Api::namespaced(fake.client(), NS);

    assert_eq!(
        pods.list(&ListParams::default()).await.unwrap().items.len(),
        4
    );
    assert_eq!(
        pods.list(&ListParams::default().labels("app=web"))
            .await
            .unwrap()
            .items
            .len(),
        2
    );
    let failed = pods
        .list(&ListParams::default().fields("status.phase=Failed"))
        .await
        .unwrap();
    let names: Vec<_> = failed
        .items
        .iter()
        .map(|p| p.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(names, ["evicted-1", "evicted-2"]);
    assert_eq!(
        failed
            .metadata
            .resource_version
            .as_deref()
            .map(|rv| !rv.is_empty()),
        Some(true)
    );
    let err = pods
        .list(&ListParams::default().fields("spec.nodeName=x"))
        .await
        .unwrap_err();
    assert!(matches!(err, kube::Error::Api(s) if s.code == 400));

    let deleted = pods
        .delete("evicted-1", &DeleteParams::default())
        .await
        .unwrap();
    assert_eq!(
        deleted.left().unwrap().metadata.name.as_deref(),
        Some("evicted-1")
    );
    let left: Vec<_> = fake
        .pods(NS)
        .into_iter()
        .map(|p| p.metadata.name.unwrap())
        .collect();
    assert!(!left.contains(&"evicted-1".to_owned()));
    assert!(left.contains(&"evicted-2".to_owned()));
    let err = pods
        .delete("evicted-1", &DeleteParams::default())
        .await
        .unwrap_err();
    assert!(matches!(err, kube::Error::Api(s) if s.code == 404));
}

#[tokio::test]
async fn delete_job_removes_its_pods() {
    let fake = FakeApi::start().await;
    let job: Job = serde_json::from_value(json!({
        "metadata": {"name": "backup-1", "namespace": NS},
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}},
        "status": {"succeeded": 1, "completionTime": "2025-01-01T00:00:00Z",
                   "conditions": [{"type": "Complete", "status": "True"}]}
    }))
    .unwrap();
    fake.add_job(job);
    let mut pod = failed_pod("backup-1-abcde");
    pod.metadata.labels = Some([("job-name".to_owned(), "backup-1".to_owned())].into());
    fake.add_pod(pod);
    fake.add_pod(failed_pod("other"));

    let jobs: Api<Job> = Api::namespaced(fake.client(), NS);
    let listed = jobs.list(&ListParams::default()).await.unwrap();
    assert_eq!(listed.items.len(), 1);
    assert!(listed.items[0].metadata.creation_timestamp.is_some());
    jobs.delete("backup-1", &DeleteParams::background())
        .await
        .unwrap();
    assert!(fake.jobs(NS).is_empty());
    let pods: Vec<_> = fake
        .pods(NS)
        .into_iter()
        .map(|p| p.metadata.name.unwrap())
        .collect();
    assert_eq!(pods, ["other"]);
    let delete = fake
        .recorded()
        .into_iter()
        .find(|r| r.method == "DELETE")
        .unwrap();
    assert_eq!(
        delete.path_query,
        "/apis/batch/v1/namespaces/default/jobs/backup-1"
    );
    assert_eq!(delete.body.unwrap()["propagationPolicy"], "Background");
}

#[tokio::test]
async fn create_event() {
    let fake = FakeApi::start().await;
    web(&fake);
    let events: Api<Event> = Api::namespaced(fake.client(), NS);
    let event = Event {
        metadata: kube::api::ObjectMeta {
            generate_name: Some("web.aiops.".into()),
            ..Default::default()
        },
        involved_object: ObjectReference {
            kind: Some("Deployment".into()),
            name: Some("web".into()),
            namespace: Some(NS.into()),
            ..Default::default()
        },
        reason: Some("AiopsRestart".into()),
        message: Some("restarted by aiops".into()),
        type_: Some("Normal".into()),
        ..Default::default()
    };
    let created = events.create(&PostParams::default(), &event).await.unwrap();
    let name = created.metadata.name.unwrap();
    assert!(name.starts_with("web.aiops."));
    assert!(created.metadata.uid.is_some());
    let stored = fake.events(NS);
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].reason.as_deref(), Some("AiopsRestart"));
}

#[tokio::test]
async fn not_found_is_a_404_api_error() {
    let fake = FakeApi::start().await;
    let deployments: Api<Deployment> = Api::namespaced(fake.client(), NS);
    let err = deployments.get("missing").await.unwrap_err();
    match err {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 404);
            assert_eq!(s.reason, "NotFound");
        }
        other => panic!("unexpected {other:?}"),
    }
    let err = deployments
        .patch(
            "missing",
            &pp(),
            &Patch::Strategic(json!({"spec": {"paused": false}})),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, kube::Error::Api(s) if s.code == 404));
    let deployments: Api<Deployment> = Api::namespaced(fake.client(), "other");
    assert!(deployments.get_opt("missing").await.unwrap().is_none());
}

#[tokio::test]
async fn rollout_behaviours_and_pause() {
    let fake = FakeApi::start().await;
    web(&fake);
    fake.add_deployment(NS, "api", 3, &[("api", "api:1", None, Some("256Mi"))]);
    fake.set_rollout_behaviour(NS, "web", RolloutBehaviour::Stuck);
    fake.set_rollout_behaviour(NS, "api", RolloutBehaviour::Fails);
    let deployments: Api<Deployment> = Api::namespaced(fake.client(), NS);
    let restart = json!({"spec": {"template": {"metadata": {"annotations": {
        "kubectl.kubernetes.io/restartedAt": "2025-01-01T00:00:00Z"}}}}});
    deployments
        .patch("web", &pp(), &Patch::Strategic(restart.clone()))
        .await
        .unwrap();
    deployments
        .patch("api", &pp(), &Patch::Strategic(restart.clone()))
        .await
        .unwrap();

    let web = deployments.get("web").await.unwrap();
    let s = web.status.as_ref().unwrap();
    assert_eq!(
        (
            s.observed_generation,
            s.updated_replicas,
            s.available_replicas
        ),
        (Some(2), Some(2), Some(1))
    );
    let progressing = s
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Progressing")
        .unwrap();
    assert_eq!(
        (progressing.status.as_str(), progressing.reason.as_deref()),
        ("True", Some("ReplicaSetUpdated"))
    );
    assert!(!complete(&web));

    let api = deployments.get("api").await.unwrap();
    let s = api.status.as_ref().unwrap();
    assert_eq!(s.available_replicas, Some(0));
    let progressing = s
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Progressing")
        .unwrap();
    assert_eq!(
        (progressing.status.as_str(), progressing.reason.as_deref()),
        ("False", Some("ProgressDeadlineExceeded"))
    );

    // Paused: the change is stored, nothing rolls out.
    fake.add_deployment(NS, "paused", 1, &[("app", "x:1", None, None)]);
    fake.set_paused(NS, "paused", true);
    fake.annotate("Deployment", NS, "paused", "note", "hi");
    let before = fake.deployment(NS, "paused");
    deployments
        .patch("paused", &pp(), &Patch::Strategic(restart))
        .await
        .unwrap();
    let after = fake.deployment(NS, "paused");
    assert_eq!(
        after.metadata.generation,
        before.metadata.generation.map(|g| g + 1)
    );
    assert_eq!(after.status, before.status);
    assert_eq!(after.metadata.annotations.as_ref().unwrap()["note"], "hi");
    assert_eq!(
        revision(after.metadata.annotations.as_ref()).as_deref(),
        Some("1")
    );
    fake.set_paused(NS, "paused", false);
    assert_eq!(
        revision(fake.deployment(NS, "paused").metadata.annotations.as_ref()).as_deref(),
        Some("2")
    );
}

#[tokio::test]
async fn statefulset_and_daemonset_restart() {
    let fake = FakeApi::start().await;
    fake.add_statefulset(
        NS,
        "db",
        3,
        &[("db", "postgres:17", Some("1Gi"), Some("1Gi"))],
    );
    fake.add_daemonset(NS, "agent", 4, &[("agent", "agent:1", None, None)]);
    let client = fake.client();
    let restart = json!({"spec": {"template": {"metadata": {"annotations": {
        "kubectl.kubernetes.io/restartedAt": "2025-01-01T00:00:00Z"}}}}});
    let sts: Api<k8s_openapi::api::apps::v1::StatefulSet> = Api::namespaced(client.clone(), NS);
    let before = sts.get("db").await.unwrap().status.unwrap().update_revision;
    sts.patch("db", &pp(), &Patch::Strategic(restart.clone()))
        .await
        .unwrap();
    let db = sts.get("db").await.unwrap();
    let s = db.status.unwrap();
    assert_eq!(db.metadata.generation, Some(2));
    assert_eq!(s.observed_generation, Some(2));
    assert_ne!(s.update_revision, before);
    assert_eq!(s.current_revision, s.update_revision);
    assert_eq!(s.updated_replicas, Some(3));

    let ds: Api<k8s_openapi::api::apps::v1::DaemonSet> = Api::namespaced(client, NS);
    ds.patch("agent", &pp(), &Patch::Strategic(restart))
        .await
        .unwrap();
    let agent = ds.get("agent").await.unwrap();
    let s = agent.status.unwrap();
    assert_eq!(s.observed_generation, Some(2));
    assert_eq!(
        (
            s.desired_number_scheduled,
            s.updated_number_scheduled,
            s.number_available
        ),
        (4, Some(4), Some(4))
    );
}

#[tokio::test]
async fn unknown_routes_are_404_status() {
    let fake = FakeApi::start().await;
    let client = fake.client();
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(client);
    let err = nodes.list(&ListParams::default()).await.unwrap_err();
    assert!(matches!(err, kube::Error::Api(s) if s.code == 404));
    assert_eq!(
        fake.requests(),
        [("GET".to_owned(), "/api/v1/nodes".to_owned(), None)]
    );
}

#[test]
fn strategic_merge_subset() {
    let mut doc = json!({"spec": {"containers": [
        {"name": "a", "image": "a:1", "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}]},
        {"name": "b", "image": "b:1"},
        {"name": "c", "image": "c:1"}],
        "tolerations": [{"key": "k1"}], "nodeSelector": {"zone": "a", "disk": "ssd"}}});
    let patch = json!({"$setElementOrder/containers": [{"name": "a"}], "spec": {"containers": [
        {"name": "a", "env": [{"name": "Y", "value": "3"}, {"name": "Z", "value": "4"}]},
        {"name": "c", "$patch": "delete"},
        {"name": "d", "image": "d:1"}],
        "tolerations": [{"key": "k2"}], "nodeSelector": {"disk": null}}});
    fakeapi::strategic_merge(&mut doc, &patch);
    assert_eq!(
        doc,
        json!({"spec": {"containers": [
            {"name": "a", "image": "a:1", "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "3"},
                                                   {"name": "Z", "value": "4"}]},
            {"name": "b", "image": "b:1"},
            {"name": "d", "image": "d:1"}],
            "tolerations": [{"key": "k2"}], "nodeSelector": {"zone": "a"}}})
    );
}

#[tokio::test]
async fn generate_name_and_request_log() {
    let fake = FakeApi::start().await;
    let mut pod = failed_pod("x");
    pod.metadata.name = None;
    pod.metadata.generate_name = Some("job-".into());
    fake.add_pod(pod);
    let pods = fake.pods(NS);
    assert_eq!(pods.len(), 1);
    let p = &pods[0];
    assert!(p.metadata.name.as_ref().unwrap().starts_with("job-"));
    assert!(p.metadata.uid.is_some() && p.metadata.resource_version.is_some());
    let api: Api<Pod> = Api::namespaced(fake.client(), NS);
    api.list(
        &ListParams::default()
            .labels("app=batch")
            .fields("status.phase=Failed"),
    )
    .await
    .unwrap();
    let (method, path, ct) = fake.requests().remove(0);
    assert_eq!(method, "GET");
    assert_eq!(
        path,
        "/api/v1/namespaces/default/pods?fieldSelector=status.phase%3DFailed&labelSelector=app%3Dbatch"
    );
    assert_eq!(ct, None);
    fake.clear_requests();
    assert!(fake.requests().is_empty());
}

#[tokio::test]
async fn server_side_apply_creates_merges_and_refuses_what_the_real_server_refuses() {
    use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
    let fake = FakeApi::start().await;
    let client = client_from_kubeconfig(&fake).await;
    let ssa = PatchParams::apply("aiops").force();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "shop");
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": "env", "namespace": "shop"}, "data": {"A": "1"}});

    // A namespaced object needs its Namespace.
    let e = cms
        .patch("env", &ssa, &Patch::Apply(&cm))
        .await
        .unwrap_err();
    assert!(matches!(&e, kube::Error::Api(s) if s.code == 404), "{e}");

    let nss: Api<Namespace> = Api::all(client.clone());
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}});
    nss.patch("shop", &ssa, &Patch::Apply(&ns)).await.unwrap();
    assert!(fake.object("Namespace", "", "shop").is_some());

    // Created, then merged into the live object, managed by aiops.
    let created = cms.patch("env", &ssa, &Patch::Apply(&cm)).await.unwrap();
    assert_eq!(created.data.unwrap()["A"], "1");
    let next = json!({"apiVersion": "v1", "kind": "ConfigMap",
                      "metadata": {"name": "env", "namespace": "shop"}, "data": {"B": "2"}});
    let merged = cms.patch("env", &ssa, &Patch::Apply(&next)).await.unwrap();
    let data = merged.data.unwrap();
    assert_eq!((data["A"].as_str(), data["B"].as_str()), ("1", "2"));
    let managed = merged.metadata.managed_fields.unwrap();
    assert_eq!(managed[0].manager.as_deref(), Some("aiops"));
    assert_eq!(managed[0].operation.as_deref(), Some("Apply"));

    // No field manager, a name that differs from the URL: 400, as from the real server.
    let e = cms
        .patch("env", &PatchParams::default(), &Patch::Apply(&cm))
        .await
        .unwrap_err();
    assert!(matches!(&e, kube::Error::Api(s) if s.code == 400), "{e}");
    let e = cms
        .patch("other", &ssa, &Patch::Apply(&cm))
        .await
        .unwrap_err();
    assert!(matches!(&e, kube::Error::Api(s) if s.code == 400), "{e}");

    // A group made absent answers 404 like a cluster without the CRD.
    fake.without_group("monitoring.coreos.com");
    let ar = kube::api::ApiResource::from_gvk_with_plural(
        &kube::api::GroupVersionKind::gvk("monitoring.coreos.com", "v1", "PrometheusRule"),
        "prometheusrules",
    );
    let rules: Api<kube::api::DynamicObject> = Api::namespaced_with(client, "shop", &ar);
    let rule = json!({"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
                      "metadata": {"name": "r", "namespace": "shop"}, "spec": {"groups": []}});
    let e = rules
        .patch("r", &ssa, &Patch::Apply(&rule))
        .await
        .unwrap_err();
    assert!(matches!(&e, kube::Error::Api(s) if s.code == 404), "{e}");
}
