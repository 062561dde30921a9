//! Request shapes of the kube-rs backend, with kube's `tower_test` mock (the controller-rs
//! pattern): each test scripts the API server's side, one expected request at a time, and
//! checks method, path, query, content type and body exactly as kubectl would send them.

use std::time::Duration;

use aiops::cluster::kubernetes::KubeCluster;
use aiops::cluster::{Cluster, Error, Scaled, Target};
use http::{Request, Response};
use kube::client::Body;
use serde_json::{Value, json};
use tower_test::mock::{self, Handle};

type MockHandle = Handle<Request<Body>, Response<Body>>;

fn cluster() -> (KubeCluster, MockHandle) {
    let (svc, handle) = mock::pair::<Request<Body>, Response<Body>>();
    (
        KubeCluster::from_client(kube::Client::new(svc, "default")),
        handle,
    )
}

fn target(kind: &str, name: &str) -> Target {
    Target {
        namespace: "prod".into(),
        kind: kind.into(),
        name: name.into(),
    }
}

fn web() -> Target {
    target("Deployment", "web")
}

fn deployment(extra: Value) -> Value {
    let mut d = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "prod", "uid": "uid-web", "generation": 4,
                     "annotations": {"deployment.kubernetes.io/revision": "3", "team": "a"}},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [
                                  {"name": "app", "image": "web:3", "resources": {"requests": {"memory": "256Mi"}, "limits": {"memory": "512Mi"}}},
                                  {"name": "sidecar", "image": "proxy:1", "resources": {"limits": {"memory": "64Mi"}}}]}}},
        "status": {"observedGeneration": 4, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 3, "readyReplicas": 3}
    });
    merge(&mut d, extra);
    d
}

fn merge(a: &mut Value, b: Value) {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(Value::Null), v);
            }
        }
        (a, b) => *a = b,
    }
}

fn status(code: u16, reason: &str, message: &str) -> Response<Body> {
    let body = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message, "reason": reason, "code": code});
    Response::builder()
        .status(code)
        .body(Body::from(serde_json::to_vec(&body).unwrap()))
        .unwrap()
}

fn ok(v: &Value) -> Response<Body> {
    Response::builder()
        .body(Body::from(serde_json::to_vec(v).unwrap()))
        .unwrap()
}

/// Takes the next request, checks method and path (with query), returns content type and body.
async fn expect(
    handle: &mut MockHandle,
    method: &str,
    path_and_query: &str,
    reply: Response<Body>,
) -> (Option<String>, Value) {
    let (req, send) = tokio::time::timeout(Duration::from_secs(5), handle.next_request())
        .await
        .expect("a request within 5 s")
        .expect("the service is still up");
    assert_eq!(req.method().as_str(), method);
    assert_eq!(req.uri().path_and_query().unwrap().as_str(), path_and_query);
    let ct = req
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string());
    let bytes = req.into_body().collect_bytes().await.unwrap();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    send.send_response(reply);
    (ct, body)
}

const DEPLOY: &str = "/apis/apps/v1/namespaces/prod/deployments/web";

#[tokio::test]
async fn restart_patches_kubectls_restarted_at_annotation_by_strategic_merge() {
    let (c, mut h) = cluster();
    let server = tokio::spawn(async move {
        expect(&mut h, "GET", DEPLOY, ok(&deployment(json!({})))).await;
        let (ct, body) = expect(
            &mut h,
            "PATCH",
            &format!("{DEPLOY}?&fieldManager=aiops"),
            ok(&deployment(json!({}))),
        )
        .await;
        (ct, body)
    });
    c.restart(&web(), false).await.unwrap();
    let (ct, body) = server.await.unwrap();
    assert_eq!(
        ct.as_deref(),
        Some("application/strategic-merge-patch+json")
    );
    let at =
        &body["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"];
    assert!(at.as_str().is_some_and(|s| s.ends_with('Z')), "{body}");
    assert_eq!(
        body.as_object().unwrap().len(),
        1,
        "only the annotation: {body}"
    );
}

#[tokio::test]
async fn a_dry_run_restart_asks_the_server_for_dry_run_all() {
    let (c, mut h) = cluster();
    let server = tokio::spawn(async move {
        expect(&mut h, "GET", DEPLOY, ok(&deployment(json!({})))).await;
        expect(
            &mut h,
            "PATCH",
            &format!("{DEPLOY}?&dryRun=All&fieldManager=aiops"),
            ok(&deployment(json!({}))),
        )
        .await;
    });
    c.restart(&web(), true).await.unwrap();
    server.await.unwrap();
}

#[tokio::test]
async fn a_paused_or_opted_out_deployment_is_refused_without_a_patch() {
    for extra in [
        json!({"spec": {"paused": true}}),
        json!({"metadata": {"annotations": {"aiops.wooo.work/auto-repair": "disabled"}}}),
    ] {
        let (c, mut h) = cluster();
        let server = tokio::spawn(async move {
            expect(&mut h, "GET", DEPLOY, ok(&deployment(extra))).await;
            // No further request may come.
            assert!(
                tokio::time::timeout(Duration::from_millis(100), h.next_request())
                    .await
                    .is_err()
            );
        });
        let err = c.restart(&web(), false).await.unwrap_err();
        assert!(matches!(err, Error::Refused(_)), "{err:?}");
        assert!(!err.is_retryable());
        server.await.unwrap();
    }
}

#[tokio::test]
async fn api_errors_map_to_clear_retryable_or_final_errors() {
    for (code, reason, retryable, kind) in [
        (404, "NotFound", false, "not_found"),
        (403, "Forbidden", false, "refused"),
        (409, "Conflict", false, "refused"),
        (422, "Invalid", false, "refused"),
        (429, "TooManyRequests", true, "unavailable"),
        (500, "InternalError", true, "unavailable"),
        (503, "ServiceUnavailable", true, "unavailable"),
    ] {
        let (c, mut h) = cluster();
        let server = tokio::spawn(async move {
            expect(&mut h, "GET", DEPLOY, status(code, reason, "nope")).await;
        });
        let err = c.rollout_status(&web()).await.unwrap_err();
        assert_eq!(err.is_retryable(), retryable, "{code}: {err:?}");
        assert_eq!(err.metric_label(), kind, "{code}: {err:?}");
        server.await.unwrap();
    }
}

#[tokio::test]
async fn rollout_status_follows_kubectl() {
    let cases = [
        (json!({}), true, false, "successfully rolled out"),
        (
            json!({"metadata": {"generation": 5}}),
            false,
            false,
            "spec update to be observed",
        ),
        (
            json!({"status": {"updatedReplicas": 1}}),
            false,
            false,
            "1 out of 3 new replicas have been updated",
        ),
        (
            json!({"status": {"replicas": 4}}),
            false,
            false,
            "1 old replicas are pending termination",
        ),
        (
            json!({"status": {"availableReplicas": 2}}),
            false,
            false,
            "2 of 3 updated replicas are available",
        ),
        (
            json!({"status": {"conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]}}),
            false,
            true,
            "exceeded its progress deadline",
        ),
    ];
    for (extra, complete, failed, text) in cases {
        let (c, mut h) = cluster();
        let d = deployment(extra);
        let server = tokio::spawn(async move { expect(&mut h, "GET", DEPLOY, ok(&d)).await });
        let s = c.rollout_status(&web()).await.unwrap();
        assert_eq!((s.complete, s.failed), (complete, failed), "{s:?}");
        assert!(s.message.contains(text), "{s:?}");
        server.await.unwrap();
    }
}

fn replicaset(
    name: &str,
    revision: i64,
    owner_uid: &str,
    image: &str,
    annotations: Value,
) -> Value {
    let mut ann = json!({"deployment.kubernetes.io/revision": revision.to_string()});
    merge(&mut ann, annotations);
    json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": name, "namespace": "prod", "annotations": ann,
                     "labels": {"app": "web", "pod-template-hash": name},
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": owner_uid, "controller": true}]},
        "spec": {"selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web", "pod-template-hash": name}},
                              "spec": {"containers": [{"name": "app", "image": image}]}}}
    })
}

fn list(kind: &str, items: Vec<Value>) -> Value {
    json!({"apiVersion": "v1", "kind": kind, "metadata": {"resourceVersion": "1"}, "items": items})
}

const RS_LIST: &str = "/apis/apps/v1/namespaces/prod/replicasets?&labelSelector=app%3Dweb";

#[tokio::test]
async fn rollback_replaces_the_template_with_the_second_highest_owned_revision_by_json_patch() {
    let (c, mut h) = cluster();
    let server = tokio::spawn(async move {
        // A Flux hold placed by the gate just before, and Argo CD's tracking annotation.
        let held = deployment(json!({"metadata": {"annotations": {
            "deployment.kubernetes.io/revision": "3",
            "kustomize.toolkit.fluxcd.io/reconcile": "disabled",
            "argocd.argoproj.io/tracking-id": "shop:apps/Deployment:prod/web"}}}));
        expect(&mut h, "GET", DEPLOY, ok(&held)).await;
        let rss = list(
            "ReplicaSetList",
            vec![
                replicaset("web-3", 3, "uid-web", "web:3", json!({})),
                replicaset(
                    "web-2",
                    2,
                    "uid-web",
                    "web:2",
                    json!({"kubectl.kubernetes.io/last-applied-configuration": "{}", "change-cause": "v2",
                           "kustomize.toolkit.fluxcd.io/reconcile": "enabled"}),
                ),
                replicaset("web-1", 1, "uid-web", "web:1", json!({})),
                // Same labels but another owner: must be ignored even with a higher revision.
                replicaset("other-9", 9, "uid-other", "evil:9", json!({})),
            ],
        );
        expect(&mut h, "GET", RS_LIST, ok(&rss)).await;
        expect(
            &mut h,
            "PATCH",
            &format!("{DEPLOY}?&fieldManager=aiops"),
            ok(&deployment(json!({}))),
        )
        .await
    });
    let r = c.rollback(&web(), false).await.unwrap();
    assert_eq!((r.done, r.revision), (true, Some(2)), "{r:?}");
    // The image that differs is restored; the sidecar, absent from revision 2, is not named.
    assert_eq!(
        r.restores,
        [aiops::gitops::FieldChange {
            field: aiops::gitops::Field::Image {
                container: "app".into()
            },
            value: "web:2".into()
        }]
    );
    let (ct, body) = server.await.unwrap();
    assert_eq!(ct.as_deref(), Some("application/json-patch+json"));
    let ops = body.as_array().unwrap();
    assert_eq!(ops[0]["op"], "replace");
    assert_eq!(ops[0]["path"], "/spec/template");
    assert_eq!(ops[0]["value"]["spec"]["containers"][0]["image"], "web:2");
    assert_eq!(
        ops[0]["value"]["metadata"]["labels"],
        json!({"app": "web"}),
        "pod-template-hash dropped"
    );
    assert_eq!(ops[1]["path"], "/metadata/annotations");
    // kubectl's skip list: the deployment's revision stays, the RS's last-applied is not copied;
    // the GitOps annotations stay too (the hold must survive its own rollback);
    // plus aiops's own record, which keeps its managedFields entry (and its time) alive.
    let mut annotations = ops[1]["value"].as_object().unwrap().clone();
    let rolled_back = annotations
        .remove("aiops.wooo.work/rolled-back")
        .expect("aiops records the rollback on the Deployment");
    assert!(
        rolled_back.as_str().unwrap().starts_with("revision 2 at "),
        "{rolled_back}"
    );
    assert_eq!(
        serde_json::Value::Object(annotations),
        json!({"deployment.kubernetes.io/revision": "3", "change-cause": "v2",
               "kustomize.toolkit.fluxcd.io/reconcile": "disabled",
               "argocd.argoproj.io/tracking-id": "shop:apps/Deployment:prod/web"})
    );
}

#[tokio::test]
async fn rollback_edge_cases_answer_without_patching() {
    // No history: only the current revision.
    let (c, mut h) = cluster();
    let server = tokio::spawn(async move {
        expect(&mut h, "GET", DEPLOY, ok(&deployment(json!({})))).await;
        let rss = list(
            "ReplicaSetList",
            vec![replicaset("web-3", 3, "uid-web", "web:3", json!({}))],
        );
        expect(&mut h, "GET", RS_LIST, ok(&rss)).await;
        assert!(
            tokio::time::timeout(Duration::from_millis(100), h.next_request())
                .await
                .is_err()
        );
    });
    let r = c.rollback(&web(), false).await.unwrap();
    assert!(!r.done);
    assert_eq!(r.reason, "no previous revision of deployment prod/web");
    server.await.unwrap();

    // Already at the previous revision's template.
    let (c, mut h) = cluster();
    let server = tokio::spawn(async move {
        let d = deployment(
            json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "web:2"}]}}}}),
        );
        let mut d = d;
        d["spec"]["template"]["spec"]["containers"] = json!([{"name": "app", "image": "web:2"}]);
        expect(&mut h, "GET", DEPLOY, ok(&d)).await;
        let rss = list(
            "ReplicaSetList",
            vec![
                replicaset("web-3", 3, "uid-web", "web:3", json!({})),
                replicaset("web-2", 2, "uid-web", "web:2", json!({})),
            ],
        );
        expect(&mut h, "GET", RS_LIST, ok(&rss)).await;
        assert!(
            tokio::time::timeout(Duration::from_millis(100), h.next_request())
                .await
                .is_err()
        );
    });
    let r = c.rollback(&web(), false).await.unwrap();
    assert!(
        !r.done && r.reason.contains("already matches revision 2"),
        "{r:?}"
    );
    server.await.unwrap();

    // Paused.
    let (c, mut h) = cluster();
    let server = tokio::spawn(async move {
        expect(
            &mut h,
            "GET",
            DEPLOY,
            ok(&deployment(json!({"spec": {"paused": true}}))),
        )
        .await;
    });
    assert!(
        matches!(c.rollback(&web(), false).await, Err(Error::Refused(m)) if m.contains("paused"))
    );
    server.await.unwrap();
}

#[tokio::test]
async fn set_memory_patches_only_the_named_container_by_strategic_merge() {
    let (c, mut h) = cluster();
    let server = tokio::spawn(async move {
        expect(&mut h, "GET", DEPLOY, ok(&deployment(json!({})))).await;
        expect(&mut h, "GET", DEPLOY, ok(&deployment(json!({})))).await;
        expect(
            &mut h,
            "PATCH",
            &format!("{DEPLOY}?&fieldManager=aiops"),
            ok(&deployment(json!({}))),
        )
        .await
    });
    c.set_memory(&web(), "app", None, 615 * 1024 * 1024, false)
        .await
        .unwrap();
    let (ct, body) = server.await.unwrap();
    assert_eq!(
        ct.as_deref(),
        Some("application/strategic-merge-patch+json")
    );
    assert_eq!(
        body,
        json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "resources": {"limits": {"memory": "615Mi"}}}]}}}})
    );
}

#[tokio::test]
async fn memory_reads_a_containers_request_and_limit_in_bytes() {
    let (c, mut h) = cluster();
    let server = tokio::spawn(async move {
        expect(&mut h, "GET", DEPLOY, ok(&deployment(json!({})))).await;
    });
    let m = c.memory(&web(), Some("sidecar")).await.unwrap();
    assert_eq!((m.request, m.limit), (None, Some(64 * 1024 * 1024)));
    server.await.unwrap();
}

#[tokio::test]
async fn last_terminations_read_the_pods_selected_by_the_workload() {
    let (c, mut h) = cluster();
    let server = tokio::spawn(async move {
        expect(&mut h, "GET", DEPLOY, ok(&deployment(json!({})))).await;
        let pods = list(
            "PodList",
            vec![
                json!({"metadata": {"name": "web-a"}, "status": {"phase": "Running", "containerStatuses": [
                {"name": "app", "ready": true, "restartCount": 2, "image": "x", "imageID": "x",
                 "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}, "state": {"running": {}}}]}}),
            ],
        );
        expect(
            &mut h,
            "GET",
            "/api/v1/namespaces/prod/pods?&labelSelector=app%3Dweb",
            ok(&pods),
        )
        .await;
    });
    assert_eq!(c.last_terminations(&web()).await.unwrap(), ["OOMKilled"]);
    server.await.unwrap();
}

#[tokio::test]
async fn cleanup_deletes_only_failed_pods_and_finished_jobs_past_the_age() {
    let (c, mut h) = cluster();
    let old = "2020-01-01T00:00:00Z";
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let server = tokio::spawn(async move {
        let pods = list(
            "PodList",
            vec![
                json!({"metadata": {"name": "evicted-old"}, "status": {"phase": "Failed", "reason": "Evicted", "startTime": old}}),
                json!({"metadata": {"name": "failed-new"}, "status": {"phase": "Failed", "startTime": now}}),
            ],
        );
        expect(
            &mut h,
            "GET",
            "/api/v1/namespaces/prod/pods?&fieldSelector=status.phase%3DFailed",
            ok(&pods),
        )
        .await;
        let (_, body) = expect(
            &mut h,
            "DELETE",
            "/api/v1/namespaces/prod/pods/evicted-old?",
            ok(&json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "evicted-old"}})),
        )
        .await;
        assert!(body.get("dryRun").is_none(), "a real delete: {body}");
    });
    assert_eq!(
        c.delete_failed_pods("prod", Duration::from_secs(3600), false)
            .await
            .unwrap(),
        1
    );
    server.await.unwrap();

    let (c, mut h) = cluster();
    let server = tokio::spawn(async move {
        let jobs = list(
            "JobList",
            vec![
                json!({"metadata": {"name": "done-old"}, "status": {"completionTime": old}}),
                json!({"metadata": {"name": "failed-old"}, "status": {"conditions": [{"type": "Failed", "status": "True", "lastTransitionTime": old}]}}),
                json!({"metadata": {"name": "running"}, "status": {"active": 1}}),
            ],
        );
        expect(
            &mut h,
            "GET",
            "/apis/batch/v1/namespaces/prod/jobs?",
            ok(&jobs),
        )
        .await;
        let deleted =
            json!({"kind": "Status", "apiVersion": "v1", "status": "Success", "code": 200});
        let (_, a) = expect(
            &mut h,
            "DELETE",
            "/apis/batch/v1/namespaces/prod/jobs/done-old?",
            ok(&deleted),
        )
        .await;
        let (_, b) = expect(
            &mut h,
            "DELETE",
            "/apis/batch/v1/namespaces/prod/jobs/failed-old?",
            ok(&deleted),
        )
        .await;
        (a, b)
    });
    assert_eq!(
        c.delete_finished_jobs("prod", Duration::from_secs(3600), true)
            .await
            .unwrap(),
        2
    );
    let (a, b) = server.await.unwrap();
    for body in [a, b] {
        assert_eq!(body["propagationPolicy"], "Background", "{body}");
        assert_eq!(body["dryRun"], json!(["All"]), "{body}");
    }
}

#[tokio::test]
async fn an_event_is_recorded_on_the_changed_target() {
    let (c, mut h) = cluster();
    let server = tokio::spawn(async move {
        expect(&mut h, "GET", DEPLOY, ok(&deployment(json!({})))).await;
        expect(&mut h, "POST", "/api/v1/namespaces/prod/events?", ok(&json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "web.1"}, "involvedObject": {}}))).await
    });
    c.record_event(
        &web(),
        "AutoRepairRestart",
        "aiops job 1 (rule restart): restart",
    )
    .await
    .unwrap();
    let (_, body) = server.await.unwrap();
    assert_eq!(body["reason"], "AutoRepairRestart");
    assert_eq!(body["involvedObject"]["kind"], "Deployment");
    assert_eq!(body["involvedObject"]["uid"], "uid-web");
    assert_eq!(body["metadata"]["generateName"], "web.");
    assert_eq!(body["source"]["component"], "aiops");
}

#[tokio::test]
async fn denied_namespaces_are_refused_in_the_backend_too_without_a_request() {
    let (svc, mut h) = mock::pair::<Request<Body>, Response<Body>>();
    let c = KubeCluster::from_client(kube::Client::new(svc, "default"))
        .with_namespaces(aiops::config::Namespaces::default());
    let server = tokio::spawn(async move {
        assert!(
            tokio::time::timeout(Duration::from_millis(100), h.next_request())
                .await
                .is_err()
        );
    });
    let err = c
        .delete_failed_pods("kube-system", Duration::ZERO, false)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Refused(m) if m.contains("kube-system")),
        "{err:?}"
    );
    server.await.unwrap();
}

#[tokio::test]
async fn replicas_read_the_deployments_spec_and_status() {
    let (c, mut h) = cluster();
    let d = deployment(
        json!({"status": {"readyReplicas": 2, "availableReplicas": 2, "updatedReplicas": 3}}),
    );
    let server = tokio::spawn(async move { expect(&mut h, "GET", DEPLOY, ok(&d)).await });
    let r = c.replicas(&web()).await.unwrap();
    assert_eq!((r.desired, r.ready, r.available, r.updated), (3, 2, 2, 3));
    server.await.unwrap();
}

#[tokio::test]
async fn statefulsets_and_daemonsets_restart_and_report_status_like_kubectl() {
    for (kind, plural, object, text) in [
        (
            "StatefulSet",
            "statefulsets",
            json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db", "namespace": "prod", "generation": 2},
                   "spec": {"replicas": 2, "serviceName": "db", "selector": {"matchLabels": {"app": "db"}}, "template": {"metadata": {"labels": {"app": "db"}}, "spec": {"containers": [{"name": "db"}]}}},
                   "status": {"observedGeneration": 2, "replicas": 2, "readyReplicas": 2, "currentReplicas": 2, "updatedReplicas": 2, "currentRevision": "db-1", "updateRevision": "db-1"}}),
            "statefulset rolling update complete 2 pods at revision db-1",
        ),
        (
            "DaemonSet",
            "daemonsets",
            json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "db", "namespace": "prod", "generation": 2},
                   "spec": {"selector": {"matchLabels": {"app": "db"}}, "template": {"metadata": {"labels": {"app": "db"}}, "spec": {"containers": [{"name": "db"}]}}},
                   "status": {"observedGeneration": 1, "desiredNumberScheduled": 3, "currentNumberScheduled": 3, "numberMisscheduled": 0, "numberReady": 3}}),
            "spec update to be observed",
        ),
    ] {
        let path = format!("/apis/apps/v1/namespaces/prod/{plural}/db");
        let target = Target {
            namespace: "prod".into(),
            kind: kind.into(),
            name: "db".into(),
        };
        let (c, mut h) = cluster();
        let (o, p) = (object.clone(), path.clone());
        let server = tokio::spawn(async move {
            expect(&mut h, "GET", &p, ok(&o)).await;
            let (ct, body) =
                expect(&mut h, "PATCH", &format!("{p}?&fieldManager=aiops"), ok(&o)).await;
            expect(&mut h, "GET", &p, ok(&o)).await;
            (ct, body)
        });
        c.restart(&target, false).await.unwrap();
        let s = c.rollout_status(&target).await.unwrap();
        let (ct, body) = server.await.unwrap();
        assert_eq!(
            ct.as_deref(),
            Some("application/strategic-merge-patch+json"),
            "{kind}"
        );
        assert!(body["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"].is_string(), "{kind}: {body}");
        assert!(s.message.contains(text), "{kind}: {s:?}");
    }
}

#[tokio::test]
async fn a_partitioned_statefulset_is_complete_once_the_pods_above_the_partition_are_updated() {
    let (c, mut h) = cluster();
    let sts = json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db", "namespace": "prod", "generation": 2},
        "spec": {"replicas": 3, "serviceName": "db", "selector": {"matchLabels": {"app": "db"}},
                 "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 2}},
                 "template": {"metadata": {"labels": {"app": "db"}}, "spec": {"containers": [{"name": "db"}]}}},
        "status": {"observedGeneration": 2, "replicas": 3, "readyReplicas": 3, "updatedReplicas": 1, "currentRevision": "db-1", "updateRevision": "db-2"}});
    let server = tokio::spawn(async move {
        expect(
            &mut h,
            "GET",
            "/apis/apps/v1/namespaces/prod/statefulsets/db",
            ok(&sts),
        )
        .await;
    });
    let t = target("StatefulSet", "db");
    let s = c.rollout_status(&t).await.unwrap();
    assert!(
        s.complete && s.message.contains("partitioned roll out complete"),
        "{s:?}"
    );
    server.await.unwrap();
}

#[tokio::test]
async fn an_on_delete_statefulset_is_not_restarted_and_reports_no_rollout() {
    let sts = json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db", "namespace": "prod", "generation": 1},
        "spec": {"replicas": 1, "serviceName": "db", "selector": {"matchLabels": {"app": "db"}}, "updateStrategy": {"type": "OnDelete"},
                 "template": {"metadata": {"labels": {"app": "db"}}, "spec": {"containers": [{"name": "db"}]}}},
        "status": {"observedGeneration": 1, "replicas": 1}});
    let t = target("StatefulSet", "db");
    let (c, mut h) = cluster();
    let o = sts.clone();
    let server = tokio::spawn(async move {
        expect(
            &mut h,
            "GET",
            "/apis/apps/v1/namespaces/prod/statefulsets/db",
            ok(&o),
        )
        .await;
        expect(
            &mut h,
            "GET",
            "/apis/apps/v1/namespaces/prod/statefulsets/db",
            ok(&o),
        )
        .await;
        assert!(
            tokio::time::timeout(Duration::from_millis(100), h.next_request())
                .await
                .is_err()
        );
    });
    assert!(matches!(c.restart(&t, false).await, Err(Error::Refused(m)) if m.contains("OnDelete")));
    assert!(c.rollout_status(&t).await.unwrap().failed);
    server.await.unwrap();
}

#[tokio::test]
async fn selectors_keep_their_match_expressions() {
    let (c, mut h) = cluster();
    let d = deployment(json!({"spec": {"selector": {"matchLabels": {"app": "web"},
        "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}, {"key": "canary", "operator": "DoesNotExist"}]}}}));
    let server = tokio::spawn(async move {
        expect(&mut h, "GET", DEPLOY, ok(&d)).await;
        expect(
            &mut h,
            "GET",
            "/api/v1/namespaces/prod/pods?&labelSelector=app%3Dweb%2Ctier+in+%28a%2Cb%29%2C%21canary",
            ok(&list("PodList", vec![])),
        )
        .await;
    });
    assert!(c.last_terminations(&web()).await.unwrap().is_empty());
    server.await.unwrap();
}

#[tokio::test]
async fn deletes_carry_the_uid_precondition_and_restarts_use_whole_seconds() {
    let (c, mut h) = cluster();
    let server = tokio::spawn(async move {
        let pods = list(
            "PodList",
            vec![
                json!({"metadata": {"name": "db-0", "uid": "uid-old"}, "status": {"phase": "Failed", "startTime": "2020-01-01T00:00:00Z"}}),
            ],
        );
        expect(
            &mut h,
            "GET",
            "/api/v1/namespaces/prod/pods?&fieldSelector=status.phase%3DFailed",
            ok(&pods),
        )
        .await;
        // The pod was recreated under the same name: the server answers 409 and nothing is deleted.
        let (_, body) = expect(
            &mut h,
            "DELETE",
            "/api/v1/namespaces/prod/pods/db-0?",
            status(
                409,
                "Conflict",
                "Precondition failed: UID in precondition: uid-old",
            ),
        )
        .await;
        assert_eq!(body["preconditions"]["uid"], "uid-old", "{body}");
        expect(&mut h, "GET", DEPLOY, ok(&deployment(json!({})))).await;
        expect(
            &mut h,
            "PATCH",
            &format!("{DEPLOY}?&fieldManager=aiops"),
            ok(&deployment(json!({}))),
        )
        .await
    });
    assert_eq!(
        c.delete_failed_pods("prod", Duration::from_secs(60), false)
            .await
            .unwrap(),
        0
    );
    c.restart(&web(), false).await.unwrap();
    let (_, body) = server.await.unwrap();
    let at =
        body["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"]
            .as_str()
            .unwrap()
            .to_string();
    assert!(
        !at.contains('.'),
        "whole seconds, as kubectl writes it: {at}"
    );
}

/// The Scale object the API server answers a scale request with.
fn scale_object(name: &str, replicas: i64, current: i64) -> Value {
    json!({"apiVersion": "autoscaling/v1", "kind": "Scale",
           "metadata": {"name": name, "namespace": "prod"},
           "spec": {"replicas": replicas}, "status": {"replicas": current, "selector": "app=web"}})
}

#[tokio::test]
async fn scale_merge_patches_the_scale_subresource_as_kubectl_scale_does() {
    let (c, mut h) = cluster();
    let server = tokio::spawn(async move {
        expect(&mut h, "GET", DEPLOY, ok(&deployment(json!({})))).await;
        let applied = expect(
            &mut h,
            "PATCH",
            &format!("{DEPLOY}/scale?&fieldManager=aiops"),
            ok(&scale_object("web", 5, 3)),
        )
        .await;
        expect(&mut h, "GET", DEPLOY, ok(&deployment(json!({})))).await;
        let dry = expect(
            &mut h,
            "PATCH",
            &format!("{DEPLOY}/scale?&dryRun=All&fieldManager=aiops"),
            ok(&scale_object("web", 4, 3)),
        )
        .await;
        (applied, dry)
    });
    assert_eq!(
        c.scale(&web(), 5, false).await.unwrap(),
        Scaled { from: 3, to: 5 }
    );
    assert_eq!(
        c.scale(&web(), 4, true).await.unwrap(),
        Scaled { from: 3, to: 4 }
    );
    let ((ct, body), (dry_ct, dry_body)) = server.await.unwrap();
    assert_eq!(ct.as_deref(), Some("application/merge-patch+json"));
    assert_eq!(body, json!({"spec": {"replicas": 5}}), "only spec.replicas");
    assert_eq!(dry_ct, ct);
    assert_eq!(dry_body, json!({"spec": {"replicas": 4}}));
}

#[tokio::test]
async fn a_statefulset_scales_through_its_own_scale_subresource() {
    let (c, mut h) = cluster();
    let db = target("StatefulSet", "db");
    let sts = json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "db", "namespace": "prod"},
        "spec": {"replicas": 2, "serviceName": "db", "selector": {"matchLabels": {"app": "db"}},
                 "template": {"metadata": {"labels": {"app": "db"}}, "spec": {"containers": [{"name": "db", "image": "db:1"}]}}}});
    let server = tokio::spawn(async move {
        let path = "/apis/apps/v1/namespaces/prod/statefulsets/db";
        expect(&mut h, "GET", path, ok(&sts)).await;
        expect(
            &mut h,
            "PATCH",
            &format!("{path}/scale?&fieldManager=aiops"),
            ok(&scale_object("db", 3, 2)),
        )
        .await
    });
    assert_eq!(
        c.scale(&db, 3, false).await.unwrap(),
        Scaled { from: 2, to: 3 }
    );
    let (_, body) = server.await.unwrap();
    assert_eq!(body, json!({"spec": {"replicas": 3}}));
}

#[tokio::test]
async fn scale_refuses_a_daemonset_and_an_opted_out_deployment_without_patching() {
    let (c, mut h) = cluster();
    let agent = target("DaemonSet", "agent");
    // Refused before any request: the mock answers nothing, so a request would never return.
    let err = tokio::time::timeout(Duration::from_secs(5), c.scale(&agent, 2, false))
        .await
        .expect("refused without waiting on the API server")
        .unwrap_err();
    assert_eq!(
        err,
        Error::Refused(
            "DaemonSet prod/agent runs one pod per node: it has no replica count to scale".into()
        )
    );
    let server = tokio::spawn(async move {
        let opted_out = deployment(
            json!({"metadata": {"annotations": {"aiops.wooo.work/auto-repair": "disabled"}}}),
        );
        expect(&mut h, "GET", DEPLOY, ok(&opted_out)).await;
        h
    });
    let err = c.scale(&web(), 4, false).await.unwrap_err();
    assert!(
        matches!(&err, Error::Refused(m) if m.contains("auto-repair=disabled")),
        "{err:?}"
    );
    let mut h = server.await.unwrap();
    // The GET was the only request: nothing else is waiting.
    assert!(
        futures_util::FutureExt::now_or_never(h.next_request()).is_none(),
        "no PATCH after the refusal"
    );
}

// GitOps: ownership, field managers and the holds of Argo CD and Flux.

const APP: &str = "/apis/argoproj.io/v1alpha1/namespaces/argocd/applications/shop";
const HELMRELEASE: &str = "/apis/helm.toolkit.fluxcd.io/v2/namespaces/prod/helmreleases/web";

fn argo() -> aiops::gitops::Controller {
    aiops::gitops::Controller::ArgoCd {
        application: "shop".into(),
        namespace: "argocd".into(),
    }
}

fn application(extra: Value) -> Value {
    let mut app = json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
        "metadata": {"name": "shop", "namespace": "argocd"},
        "spec": {"project": "default",
                 "source": {"repoURL": "https://git.example/shop.git", "path": "prod"},
                 "destination": {"server": "https://kubernetes.default.svc", "namespace": "prod"},
                 "syncPolicy": {"automated": {"prune": true, "selfHeal": true},
                                "syncOptions": ["ServerSideApply=true"]}}
    });
    merge(&mut app, extra);
    app
}

#[tokio::test]
async fn object_info_and_observe_read_the_workloads_metadata_and_managed_fields() {
    let (c, mut h) = cluster();
    let managed = json!({"metadata": {
    "labels": {"kustomize.toolkit.fluxcd.io/name": "apps", "kustomize.toolkit.fluxcd.io/namespace": "flux-system"},
    "managedFields": [
        {"manager": "kustomize-controller", "operation": "Apply", "apiVersion": "apps/v1", "fieldsType": "FieldsV1",
         "fieldsV1": {"f:spec": {"f:replicas": {}, "f:template": {"f:spec": {"f:containers": {
             "k:{\"name\":\"app\"}": {".": {}, "f:image": {}, "f:name": {}, "f:resources": {"f:requests": {"f:memory": {}}}}}}}}}},
        {"manager": "aiops", "operation": "Update", "apiVersion": "apps/v1", "fieldsType": "FieldsV1",
         "fieldsV1": {"f:spec": {"f:template": {"f:spec": {"f:containers": {
             "k:{\"name\":\"app\"}": {"f:resources": {"f:limits": {"f:memory": {}}}}}}}}}}
    ]}});
    let server = tokio::spawn(async move {
        expect(&mut h, "GET", DEPLOY, ok(&deployment(managed.clone()))).await;
        expect(&mut h, "GET", DEPLOY, ok(&deployment(managed))).await;
    });
    let info = c.object_info(&web()).await.unwrap();
    assert_eq!(info.labels["kustomize.toolkit.fluxcd.io/name"], "apps");
    let names: Vec<&str> = info.managers.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["kustomize-controller", "aiops"]);
    let fields = [
        aiops::gitops::Field::MemoryLimit {
            container: "app".into(),
        },
        aiops::gitops::Field::Image {
            container: "app".into(),
        },
        aiops::gitops::Field::Replicas,
    ];
    let live = c.observe(&web(), &fields).await.unwrap();
    let seen: Vec<(Option<&str>, Vec<&str>)> = live
        .iter()
        .map(|s| {
            (
                s.value.as_deref(),
                s.managers.iter().map(String::as_str).collect(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (Some("512Mi"), vec!["aiops"]),
            (Some("web:3"), vec!["kustomize-controller"]),
            (Some("3"), vec!["kustomize-controller"]),
        ]
    );
    server.await.unwrap();
}

#[tokio::test]
async fn a_kustomization_hold_merge_patches_the_objects_reconcile_annotation_as_aiops() {
    let (c, mut h) = cluster();
    let flux = aiops::gitops::Controller::FluxKustomization {
        name: "apps".into(),
        namespace: "flux-system".into(),
    };
    let server = tokio::spawn(async move {
        expect(&mut h, "GET", DEPLOY, ok(&deployment(json!({})))).await;
        let hold = expect(
            &mut h,
            "PATCH",
            &format!("{DEPLOY}?&fieldManager=aiops"),
            ok(&deployment(json!({}))),
        )
        .await;
        let release = expect(
            &mut h,
            "PATCH",
            &format!("{DEPLOY}?&fieldManager=aiops"),
            status(404, "NotFound", "deployments.apps \"web\" not found"),
        )
        .await;
        (hold, release)
    });
    let placed = c.hold(&web(), &flux, false).await.unwrap();
    assert_eq!(
        placed,
        aiops::gitops::HoldPlacement {
            mechanism: aiops::gitops::HoldMechanism::FluxObjectAnnotation,
            saved: None
        }
    );
    // Released after the Deployment was deleted: nothing left to release, and that is fine.
    c.release(&web(), &flux, &placed).await.unwrap();
    let ((ct, hold), (_, release)) = server.await.unwrap();
    assert_eq!(ct.as_deref(), Some("application/merge-patch+json"));
    assert_eq!(
        hold,
        json!({"metadata": {"annotations": {"kustomize.toolkit.fluxcd.io/reconcile": "disabled"}}})
    );
    assert_eq!(
        release,
        json!({"metadata": {"annotations": {"kustomize.toolkit.fluxcd.io/reconcile": null}}})
    );
}

#[tokio::test]
async fn an_argo_hold_saves_and_removes_automated_sync_and_the_release_puts_it_back() {
    let (c, mut h) = cluster();
    let server = tokio::spawn(async move {
        expect(&mut h, "GET", DEPLOY, ok(&deployment(json!({})))).await;
        expect(&mut h, "GET", APP, ok(&application(json!({})))).await;
        let dry = expect(
            &mut h,
            "PATCH",
            &format!("{APP}?&dryRun=All&fieldManager=aiops"),
            ok(&application(json!({}))),
        )
        .await;
        expect(&mut h, "GET", DEPLOY, ok(&deployment(json!({})))).await;
        expect(&mut h, "GET", APP, ok(&application(json!({})))).await;
        let hold = expect(
            &mut h,
            "PATCH",
            &format!("{APP}?&fieldManager=aiops"),
            ok(&application(json!({}))),
        )
        .await;
        let release = expect(
            &mut h,
            "PATCH",
            &format!("{APP}?&fieldManager=aiops"),
            ok(&application(json!({}))),
        )
        .await;
        (dry, hold, release)
    });
    let dry = c.hold(&web(), &argo(), true).await.unwrap();
    let placed = c.hold(&web(), &argo(), false).await.unwrap();
    assert_eq!(dry, placed);
    assert_eq!(
        placed.mechanism,
        aiops::gitops::HoldMechanism::ArgoAutomatedOff
    );
    let saved: Value = serde_json::from_str(placed.saved.as_deref().unwrap()).unwrap();
    assert_eq!(saved, json!({"prune": true, "selfHeal": true}));
    c.release(&web(), &argo(), &placed).await.unwrap();
    let ((_, dry), (ct, hold), (_, release)) = server.await.unwrap();
    assert_eq!(ct.as_deref(), Some("application/merge-patch+json"));
    assert_eq!(dry, hold);
    assert_eq!(hold, json!({"spec": {"syncPolicy": {"automated": null}}}));
    assert_eq!(
        release,
        json!({"spec": {"syncPolicy": {"automated": {"prune": true, "selfHeal": true}}}})
    );
}

#[tokio::test]
async fn an_argo_hold_is_refused_for_an_applicationset_or_app_of_apps_child_and_names_a_missing_permission()
 {
    let (c, mut h) = cluster();
    let server = tokio::spawn(async move {
        expect(&mut h, "GET", DEPLOY, ok(&deployment(json!({})))).await;
        let child = application(json!({"metadata": {"ownerReferences": [
            {"apiVersion": "argoproj.io/v1alpha1", "kind": "ApplicationSet", "name": "shops", "uid": "u1"}]}}));
        expect(&mut h, "GET", APP, ok(&child)).await;
        expect(&mut h, "GET", DEPLOY, ok(&deployment(json!({})))).await;
        let child = application(json!({"metadata": {"annotations": {
            "argocd.argoproj.io/tracking-id": "root:argoproj.io/Application:argocd/shop"}}}));
        expect(&mut h, "GET", APP, ok(&child)).await;
        expect(&mut h, "GET", DEPLOY, ok(&deployment(json!({})))).await;
        expect(&mut h, "GET", APP, ok(&application(json!({})))).await;
        expect(
            &mut h,
            "PATCH",
            &format!("{APP}?&fieldManager=aiops"),
            status(
                403,
                "Forbidden",
                "applications.argoproj.io \"shop\" is forbidden: User \"system:serviceaccount:aiops:aiops\" cannot patch resource \"applications\" in API group \"argoproj.io\" in the namespace \"argocd\"",
            ),
        )
        .await;
        h
    });
    let err = c.hold(&web(), &argo(), false).await.unwrap_err();
    assert!(
        matches!(&err, Error::Refused(m) if m.contains("ApplicationSet shops") && m.contains("automated sync back")),
        "{err:?}"
    );
    let err = c.hold(&web(), &argo(), false).await.unwrap_err();
    assert!(
        matches!(&err, Error::Refused(m) if m.contains("managed by Application root (app of apps)") && m.contains("automated sync back")),
        "{err:?}"
    );
    let err = c.hold(&web(), &argo(), false).await.unwrap_err();
    assert!(
        matches!(&err, Error::Refused(m) if m.contains("patch on applications.argoproj.io in namespace argocd")),
        "{err:?}"
    );
    let mut h = server.await.unwrap();
    assert!(
        futures_util::FutureExt::now_or_never(h.next_request()).is_none(),
        "no PATCH of an ApplicationSet's or a parent Application's child"
    );
}

#[tokio::test]
async fn a_helmrelease_hold_suspends_it_and_the_release_restores_the_old_value() {
    let (c, mut h) = cluster();
    let helm = aiops::gitops::Controller::FluxHelmRelease {
        name: "web".into(),
        namespace: "prod".into(),
    };
    let server = tokio::spawn(async move {
        expect(&mut h, "GET", DEPLOY, ok(&deployment(json!({})))).await;
        let hr = json!({"apiVersion": "helm.toolkit.fluxcd.io/v2", "kind": "HelmRelease",
            "metadata": {"name": "web", "namespace": "prod"}, "spec": {"interval": "5m", "suspend": false}});
        expect(&mut h, "GET", HELMRELEASE, ok(&hr)).await;
        let hold = expect(
            &mut h,
            "PATCH",
            &format!("{HELMRELEASE}?&fieldManager=aiops"),
            ok(&hr),
        )
        .await;
        let release = expect(
            &mut h,
            "PATCH",
            &format!("{HELMRELEASE}?&fieldManager=aiops"),
            ok(&hr),
        )
        .await;
        (hold.1, release.1)
    });
    let placed = c.hold(&web(), &helm, false).await.unwrap();
    assert_eq!(placed.saved.as_deref(), Some("false"));
    c.release(&web(), &helm, &placed).await.unwrap();
    let (hold, release) = server.await.unwrap();
    assert_eq!(hold, json!({"spec": {"suspend": true}}));
    assert_eq!(release, json!({"spec": {"suspend": false}}));
}

#[tokio::test]
async fn git_agrees_reads_argo_cds_sync_status_of_the_workload_and_flux_says_nothing() {
    let (c, mut h) = cluster();
    let server = tokio::spawn(async move {
        let app = application(json!({"status": {"resources": [
            {"group": "apps", "version": "v1", "kind": "Deployment", "namespace": "prod", "name": "web", "status": "Synced"}]}}));
        expect(&mut h, "GET", APP, ok(&app)).await;
        h
    });
    assert_eq!(c.git_agrees(&web(), &argo()).await.unwrap(), Some(true));
    let mut h = server.await.unwrap();
    let flux = aiops::gitops::Controller::FluxKustomization {
        name: "apps".into(),
        namespace: "flux-system".into(),
    };
    assert_eq!(c.git_agrees(&web(), &flux).await.unwrap(), None);
    assert!(
        futures_util::FutureExt::now_or_never(h.next_request()).is_none(),
        "Flux is not asked"
    );
}
