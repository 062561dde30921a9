//! Unit tests of the in-memory cluster: each operation answered as the API server and kubectl
//! answer it, and the state file.

use super::*;

const MI: i64 = 1 << 20;

const STATE: &str = r#"
workloads:
  - namespace: prod
    name: web
    replicas: 3
    revision: 3
    history: [1, 2]
    containers:
      - name: app
        image: web:v3
        previous_image: web:v2
        memory: {request: 256Mi, limit: 512Mi}
      - name: sidecar
        memory: {limit: 64Mi}
  - namespace: prod
    name: paused
    paused: true
    revision: 2
    history: [1]
  - namespace: prod
    name: db
    kind: StatefulSet
    replicas: 2
  - namespace: prod
    name: frozen
    revision: 2
    history: [1]
    annotations:
      aiops.wooo.work/auto-repair: "disabled"
    containers:
      - name: app
        memory: {request: 1Gi, limit: 1Gi}
pods:
  - {namespace: prod, name: web-7d9f-abc, owner: web, terminations: [OOMKilled]}
  - {namespace: prod, name: web-7d9f-def, terminations: [Error, OOMKilled]}
  - {namespace: prod, name: webhook-1, terminations: [Completed]}
  - {namespace: prod, name: old-evicted, phase: Failed, reason: Evicted, finished_ago: 2h}
  - {namespace: prod, name: recent-failed, phase: Failed, finished_ago: 10m}
  - {namespace: prod, name: failed-now, phase: Failed}
  - {namespace: prod, name: done, phase: Succeeded, finished_ago: 5h}
  - {namespace: staging, name: other-evicted, phase: Failed, reason: Evicted, finished_ago: 5h}
  - {namespace: prod, name: backup-1-xyz, owner: backup-1, phase: Succeeded, finished_ago: 3h}
jobs:
  - {namespace: prod, name: backup-1, finished_ago: 3h}
  - {namespace: prod, name: backup-2, finished_ago: 20m}
  - {namespace: prod, name: backup-3}
"#;

fn cluster() -> MemoryCluster {
    MemoryCluster::from_yaml(STATE).expect("test state parses")
}

fn target(kind: &str, name: &str) -> Target {
    Target {
        namespace: "prod".to_owned(),
        kind: kind.to_owned(),
        name: name.to_owned(),
    }
}

fn web() -> Target {
    target("Deployment", "web")
}

fn workload(c: &MemoryCluster, name: &str) -> Workload {
    c.snapshot()
        .workloads
        .into_iter()
        .find(|w| w.name == name)
        .expect("workload")
}

fn refused(result: Result<impl std::fmt::Debug>) -> String {
    match result {
        Err(Error::Refused(why)) => why,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn restart_creates_a_new_revision_and_starts_a_rollout() {
    let c = cluster();
    c.restart(&web(), false).await.unwrap();
    let w = workload(&c, "web");
    assert_eq!((w.revision, w.history.clone()), (4, vec![1, 2, 3]));
    assert_eq!(c.actions(), ["restart prod/Deployment/web"]);
    let status = c.rollout_status(&web()).await.unwrap();
    assert!(status.complete && !status.failed, "{status:?}");
    assert_eq!(status.message, "deployment \"web\" successfully rolled out");
}

#[tokio::test]
async fn the_rollout_setting_decides_how_the_next_rollout_ends() {
    let cases = [
        (
            "complete",
            true,
            false,
            "deployment \"web\" successfully rolled out",
            3,
        ),
        (
            "stuck",
            false,
            false,
            "Waiting for deployment \"web\" rollout to finish: 2 of 3 updated replicas are available...",
            2,
        ),
        (
            "fails",
            false,
            true,
            "deployment \"web\" exceeded its progress deadline",
            0,
        ),
    ];
    for (rollout, complete, failed, message, available) in cases {
        let yaml =
            format!("workloads: [{{namespace: prod, name: web, replicas: 3, rollout: {rollout}}}]");
        let c = MemoryCluster::from_yaml(&yaml).unwrap();
        let before = c.rollout_status(&web()).await.unwrap();
        assert!(
            before.complete,
            "{rollout}: nothing rolls out before a change"
        );
        c.restart(&web(), false).await.unwrap();
        let status = c.rollout_status(&web()).await.unwrap();
        assert_eq!(
            (status.complete, status.failed, status.message.as_str()),
            (complete, failed, message),
            "{rollout}"
        );
        let replicas = c.replicas(&web()).await.unwrap();
        assert_eq!(
            replicas,
            Replicas {
                desired: 3,
                ready: available,
                available,
                updated: 3
            },
            "{rollout}"
        );
    }
}

#[tokio::test]
async fn a_state_can_describe_a_rollout_already_failing_that_a_rollback_repairs() {
    let yaml = "workloads: [{namespace: prod, name: web, revision: 5, history: [4], current_rollout: fails}]";
    let c = MemoryCluster::from_yaml(yaml).unwrap();
    assert!(c.rollout_status(&web()).await.unwrap().failed);
    c.rollback(&web(), false).await.unwrap();
    assert!(c.rollout_status(&web()).await.unwrap().complete);
}

#[tokio::test]
async fn rollback_restores_the_previous_template_and_records_a_new_revision() {
    let c = cluster();
    c.set_memory(&web(), "app", None, 640 * MI, false)
        .await
        .unwrap();
    assert_eq!(workload(&c, "web").revision, 4);

    let rollback = c.rollback(&web(), false).await.unwrap();
    assert_eq!(
        rollback,
        Rollback {
            // Revision 3 is the template before the memory change: the same images.
            restores: Vec::new(),
            done: true,
            revision: Some(3),
            reason: String::new()
        }
    );
    let w = workload(&c, "web");
    assert_eq!(
        w.revision, 5,
        "kubectl's undo gives the restored template a new revision"
    );
    assert_eq!(
        w.history,
        [1, 2, 4],
        "the restored revision number leaves the history"
    );
    let memory = c.memory(&web(), Some("app")).await.unwrap();
    assert_eq!(
        (memory.request, memory.limit),
        (Some(256 * MI), Some(512 * MI))
    );

    // Undoing again goes back to the template of revision 4 (640Mi), as kubectl does.
    assert_eq!(c.rollback(&web(), false).await.unwrap().revision, Some(4));
    assert_eq!(c.memory(&web(), None).await.unwrap().limit, Some(640 * MI));
    assert_eq!(
        c.actions(),
        [
            "set memory prod/Deployment/web container app: request 256Mi, limit 640Mi",
            "rollback prod/Deployment/web to revision 3",
            "rollback prod/Deployment/web to revision 4",
        ]
    );
}

#[tokio::test]
async fn rollback_without_history_is_not_done_and_says_why() {
    let c = MemoryCluster::from_yaml("workloads: [{namespace: prod, name: web}]").unwrap();
    let rollback = c.rollback(&web(), false).await.unwrap();
    assert_eq!(
        rollback,
        Rollback {
            restores: Vec::new(),
            done: false,
            revision: None,
            reason: "no previous revision of deployment prod/web".to_owned()
        }
    );
    assert!(c.actions().is_empty());
}

#[tokio::test]
async fn rollback_is_refused_for_other_kinds() {
    let c = cluster();
    let why = refused(c.rollback(&target("StatefulSet", "db"), false).await);
    assert_eq!(why, "rollback is only supported for Deployments");
}

#[tokio::test]
async fn a_paused_deployment_refuses_restart_and_rollback() {
    let c = cluster();
    let paused = target("Deployment", "paused");
    assert_eq!(
        refused(c.restart(&paused, false).await),
        "deployment prod/paused is paused"
    );
    assert_eq!(
        refused(c.rollback(&paused, false).await),
        "deployment prod/paused is paused"
    );
    assert_eq!(
        refused(c.restart(&paused, true).await),
        "deployment prod/paused is paused"
    );
    assert!(c.actions().is_empty());
    assert_eq!(workload(&c, "paused").revision, 2);
}

#[tokio::test]
async fn a_disabled_annotation_refuses_every_change() {
    let c = cluster();
    let frozen = target("Deployment", "frozen");
    let expected = "Deployment prod/frozen is annotated aiops.wooo.work/auto-repair=disabled";
    for dry_run in [false, true] {
        assert_eq!(refused(c.restart(&frozen, dry_run).await), expected);
        assert_eq!(refused(c.rollback(&frozen, dry_run).await), expected);
        assert_eq!(
            refused(c.set_memory(&frozen, "app", None, 2 << 30, dry_run).await),
            expected
        );
    }
    // Reads still work.
    assert_eq!(c.memory(&frozen, None).await.unwrap().limit, Some(1 << 30));
    assert!(c.actions().is_empty());
}

#[tokio::test]
async fn names_that_are_not_kubernetes_names_are_refused_as_the_api_backend_refuses_them() {
    let c = cluster();
    for name in ["../web", "web/status", "web?dryRun=All&x=", "Web"] {
        let t = target("Deployment", name);
        let refused = |r: Result<()>| matches!(r, Err(Error::Refused(m)) if m.starts_with("invalid target: name"));
        assert!(refused(c.restart(&t, false).await), "{name}");
        assert!(
            refused(c.set_memory(&t, "app", None, MI, true).await),
            "{name}"
        );
        assert!(c.replicas(&t).await.is_err(), "{name}");
    }
    let mut t = web();
    t.namespace = "prod/../kube-system".into();
    assert!(matches!(c.rollback(&t, true).await, Err(Error::Refused(_))));
    assert!(matches!(
        c.delete_failed_pods("a/../b", Duration::from_secs(1), true)
            .await,
        Err(Error::Refused(_))
    ));
    assert!(c.actions().is_empty(), "nothing was done");
}

#[tokio::test]
async fn unknown_targets_and_containers_are_not_found() {
    let c = cluster();
    let missing = target("Deployment", "nope");
    assert_eq!(
        c.restart(&missing, false).await,
        Err(Error::NotFound("Deployment prod/nope".to_owned()))
    );
    assert_eq!(
        c.rollout_status(&target("DaemonSet", "web")).await,
        Err(Error::NotFound("DaemonSet prod/web".to_owned()))
    );
    assert_eq!(
        c.memory(&web(), Some("nope")).await,
        Err(Error::NotFound(
            "container nope in Deployment prod/web".to_owned()
        ))
    );
    assert_eq!(
        c.set_memory(&web(), "nope", None, MI, false).await,
        Err(Error::NotFound(
            "container nope in Deployment prod/web".to_owned()
        ))
    );
    assert!(matches!(
        c.last_terminations(&missing).await,
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        c.replicas(&missing).await,
        Err(Error::NotFound(_))
    ));
}

#[tokio::test]
async fn kinds_match_in_any_letter_case() {
    let c = cluster();
    assert_eq!(
        c.replicas(&target("deployment", "web"))
            .await
            .unwrap()
            .desired,
        3
    );
}

#[tokio::test]
async fn memory_reads_the_first_container_by_default() {
    let c = cluster();
    let cases = [
        (None, "app", Some(256 * MI), Some(512 * MI)),
        (Some("app"), "app", Some(256 * MI), Some(512 * MI)),
        (Some("sidecar"), "sidecar", None, Some(64 * MI)),
    ];
    for (asked, container, request, limit) in cases {
        let memory = c.memory(&web(), asked).await.unwrap();
        assert_eq!(
            memory,
            Memory {
                container: container.to_owned(),
                request,
                limit
            }
        );
    }
}

#[tokio::test]
async fn set_memory_refuses_a_limit_below_the_request() {
    let c = cluster();
    // The request is kept (256Mi) when not given.
    let why = refused(c.set_memory(&web(), "app", None, 128 * MI, false).await);
    assert!(why.starts_with("limit below request"), "{why}");
    let why = refused(c.set_memory(&web(), "app", Some(MI), 0, false).await);
    assert!(why.contains("positive"), "{why}");
    // A lower request makes the same limit valid.
    c.set_memory(&web(), "app", Some(64 * MI), 128 * MI, false)
        .await
        .unwrap();
    let memory = c.memory(&web(), None).await.unwrap();
    assert_eq!(
        (memory.request, memory.limit),
        (Some(64 * MI), Some(128 * MI))
    );
    assert_eq!(
        c.actions(),
        ["set memory prod/Deployment/web container app: request 64Mi, limit 128Mi"]
    );
}

#[tokio::test]
async fn set_memory_starts_a_rollout_of_the_new_template() {
    let yaml =
        "workloads: [{namespace: prod, name: web, rollout: stuck, containers: [{name: app}]}]";
    let c = MemoryCluster::from_yaml(yaml).unwrap();
    c.set_memory(&web(), "app", None, 300 * MI, false)
        .await
        .unwrap();
    assert!(!c.rollout_status(&web()).await.unwrap().complete);
    assert_eq!(
        c.actions(),
        ["set memory prod/Deployment/web container app: request unset, limit 300Mi"]
    );
    assert_eq!(workload(&c, "web").revision, 2);
}

#[tokio::test]
async fn dry_runs_change_nothing_but_answer_the_same() {
    let c = cluster();
    let before = c.snapshot();
    c.restart(&web(), true).await.unwrap();
    assert_eq!(
        c.rollback(&web(), true).await.unwrap(),
        Rollback {
            // A dry run names what it would put back, as the real one does.
            restores: vec![crate::gitops::FieldChange {
                field: crate::gitops::Field::Image {
                    container: "app".to_owned()
                },
                value: "web:v2".to_owned()
            }],
            done: true,
            revision: Some(2),
            reason: String::new()
        }
    );
    c.set_memory(&web(), "app", None, 640 * MI, true)
        .await
        .unwrap();
    assert!(matches!(
        c.set_memory(&web(), "app", None, MI, true).await,
        Err(Error::Refused(_))
    ));
    assert_eq!(
        c.delete_failed_pods("prod", Duration::from_secs(3600), true)
            .await,
        Ok(1)
    );
    assert_eq!(
        c.delete_finished_jobs("prod", Duration::from_secs(3600), true)
            .await,
        Ok(1)
    );
    assert_eq!(c.snapshot(), before);
    assert!(c.actions().is_empty());

    // The same calls for real give the same answers.
    assert_eq!(c.rollback(&web(), false).await.unwrap().revision, Some(2));
    assert_eq!(
        c.delete_failed_pods("prod", Duration::from_secs(3600), false)
            .await,
        Ok(1)
    );
    assert_eq!(
        c.delete_finished_jobs("prod", Duration::from_secs(3600), false)
            .await,
        Ok(1)
    );
}

#[tokio::test]
async fn cleanup_deletes_only_failed_pods_older_than_the_threshold() {
    let c = cluster();
    let deleted = c
        .delete_failed_pods("prod", Duration::from_secs(3600), false)
        .await;
    assert_eq!(deleted, Ok(1));
    assert_eq!(c.actions(), ["delete pod prod/old-evicted (Evicted)"]);
    // Again: nothing more is old enough; the count is stable.
    assert_eq!(
        c.delete_failed_pods("prod", Duration::from_secs(3600), false)
            .await,
        Ok(0)
    );
    // A zero threshold takes the remaining Failed pods of the namespace, none elsewhere.
    assert_eq!(
        c.delete_failed_pods("prod", Duration::ZERO, false).await,
        Ok(2)
    );
    let pods: Vec<String> = c.snapshot().pods.into_iter().map(|p| p.name).collect();
    assert!(pods.contains(&"other-evicted".to_owned()));
    assert!(pods.contains(&"done".to_owned()));
    assert!(!pods.contains(&"recent-failed".to_owned()));
    assert_eq!(
        c.actions()[1..],
        [
            "delete pod prod/recent-failed (Failed)",
            "delete pod prod/failed-now (Failed)"
        ]
    );
}

#[tokio::test]
async fn cleanup_deletes_only_finished_jobs_older_than_the_threshold_with_their_pods() {
    let c = cluster();
    assert_eq!(
        c.delete_finished_jobs("prod", Duration::from_secs(3600), false)
            .await,
        Ok(1)
    );
    assert_eq!(c.actions(), ["delete job prod/backup-1"]);
    let state = c.snapshot();
    let jobs: Vec<&str> = state.jobs.iter().map(|j| j.name.as_str()).collect();
    assert_eq!(jobs, ["backup-2", "backup-3"]);
    assert!(!state.pods.iter().any(|p| p.name == "backup-1-xyz"));
    // A running Job is never deleted.
    assert_eq!(
        c.delete_finished_jobs("prod", Duration::ZERO, false).await,
        Ok(1)
    );
    assert_eq!(c.snapshot().jobs.len(), 1);
}

#[tokio::test]
async fn last_terminations_unites_the_workloads_pods_in_order() {
    let c = cluster();
    let reasons = c.last_terminations(&web()).await.unwrap();
    assert_eq!(
        reasons,
        ["OOMKilled", "Error"],
        "webhook-1 is not a pod of web"
    );
    assert!(
        c.last_terminations(&target("StatefulSet", "db"))
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn other_kinds_report_rollouts_as_kubectl_does() {
    let yaml = "workloads: [{namespace: prod, name: db, kind: StatefulSet, replicas: 2, rollout: stuck}, \
                    {namespace: prod, name: agent, kind: DaemonSet, replicas: 4, rollout: stuck}]";
    let c = MemoryCluster::from_yaml(yaml).unwrap();
    let db = target("StatefulSet", "db");
    let agent = target("DaemonSet", "agent");
    assert_eq!(
        c.rollout_status(&db).await.unwrap().message,
        "statefulset rolling update complete 2 pods at revision db-1..."
    );
    assert_eq!(
        c.rollout_status(&agent).await.unwrap().message,
        "daemon set \"agent\" successfully rolled out"
    );
    c.restart(&db, false).await.unwrap();
    c.restart(&agent, false).await.unwrap();
    assert_eq!(
        c.rollout_status(&db).await.unwrap().message,
        "Waiting for 1 pods to be ready..."
    );
    assert_eq!(
        c.rollout_status(&agent).await.unwrap().message,
        "Waiting for daemon set \"agent\" rollout to finish: 3 of 4 updated pods are available..."
    );
}

#[tokio::test]
async fn deep_clones_are_independent() {
    let c = cluster();
    let copy = c.deep_clone();
    copy.restart(&web(), false).await.unwrap();
    assert!(c.actions().is_empty());
    assert_eq!(workload(&c, "web").revision, 3);
    assert_eq!(workload(&copy, "web").revision, 4);
}

#[test]
fn bad_state_yaml_names_the_line() {
    let yaml = "workloads:\n  - namespace: prod\n    name: web\n    replica: 3\n";
    let err = MemoryCluster::from_yaml(yaml).expect_err("unknown field");
    let StateError::Yaml {
        line,
        ref location,
        ref message,
    } = err
    else {
        panic!("{err:?}")
    };
    assert_eq!(line, Some(4), "{err}");
    assert!(location.starts_with("line 4"), "{err}");
    assert!(message.contains("unknown field `replica`"), "{err}");

    let bad_quantity = "workloads:\n  - namespace: prod\n    name: web\n    containers:\n      - name: app\n        memory: {limit: 512MB}\n";
    let err = MemoryCluster::from_yaml(bad_quantity).expect_err("bad quantity");
    assert!(
        matches!(err, StateError::Yaml { line: Some(6), .. }),
        "{err}"
    );
    assert!(err.to_string().contains("512MB"), "{err}");

    let bad_duration = "pods: [{namespace: prod, name: p, finished_ago: yesterday}]";
    let err = MemoryCluster::from_yaml(bad_duration).expect_err("bad duration");
    assert!(err.to_string().contains("yesterday"), "{err}");
}

#[test]
fn loading_a_file_names_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.yaml");
    std::fs::write(
        &path,
        "workloads:\n  - namespace: prod\n    kind: Job\n    name: x\n",
    )
    .unwrap();
    let err = MemoryCluster::load(&path).expect_err("bad kind");
    assert!(
        err.to_string()
            .starts_with(&format!("{}:3:", path.display())),
        "{err}"
    );
    let err = MemoryCluster::load(&dir.path().join("missing.yaml")).expect_err("missing");
    assert!(matches!(err, StateError::Read { .. }), "{err}");

    std::fs::write(&path, STATE).unwrap();
    let c = MemoryCluster::load(&path).unwrap();
    assert_eq!(c.snapshot().workloads.len(), 4);
}

#[test]
fn impossible_states_are_rejected_naming_the_object() {
    let cases = [
        (
            "workloads: [{namespace: prod, name: web}, {namespace: prod, name: web}]",
            "Deployment prod/web is listed twice",
        ),
        (
            "workloads: [{namespace: prod, name: web, revision: 2, history: [2]}]",
            "history revision 2",
        ),
        (
            "workloads: [{namespace: prod, name: db, kind: StatefulSet, paused: true}]",
            "only Deployments",
        ),
        (
            "workloads: [{namespace: prod, name: web, containers: [{name: a, memory: {request: 2Gi, limit: 1Gi}}]}]",
            "below its request",
        ),
        (
            "pods: [{namespace: a, name: p}, {namespace: a, name: p}]",
            "pod a/p is listed twice",
        ),
    ];
    for (yaml, problem) in cases {
        let err = MemoryCluster::from_yaml(yaml).expect_err(yaml);
        assert!(matches!(err, StateError::Invalid { .. }), "{yaml}: {err}");
        assert!(err.to_string().contains(problem), "{yaml}: {err}");
    }
}

#[test]
fn an_empty_state_is_an_empty_cluster() {
    for yaml in ["", "# nothing yet\n", "{}"] {
        assert_eq!(
            MemoryCluster::from_yaml(yaml).unwrap().snapshot(),
            State::default(),
            "{yaml:?}"
        );
    }
    assert_eq!(MemoryCluster::empty().snapshot(), State::default());
}

#[test]
fn a_snapshot_serializes_back_to_a_loadable_state() {
    let c = cluster();
    let yaml = serde_yaml::to_string(&c.snapshot()).unwrap();
    let again = MemoryCluster::from_yaml(&yaml).unwrap();
    let (a, b) = (c.snapshot(), again.snapshot());
    assert_eq!(a.workloads, b.workloads);
    assert_eq!(a.jobs.len(), b.jobs.len());
}

#[tokio::test]
async fn scale_sets_the_replica_count_without_a_new_revision() {
    let c = cluster();
    let scaled = c.scale(&web(), 5, false).await.unwrap();
    assert_eq!(scaled, Scaled { from: 3, to: 5 });
    let w = workload(&c, "web");
    assert_eq!((w.replicas, w.revision), (5, 3), "a scale is not a rollout");
    assert_eq!(
        c.actions(),
        ["scale prod/Deployment/web from 3 to 5 replicas"]
    );
    assert_eq!(c.replicas(&web()).await.unwrap().desired, 5);
    // A StatefulSet scales the same way; a paused Deployment too, as Kubernetes allows.
    let db = target("StatefulSet", "db");
    assert_eq!(
        c.scale(&db, 1, false).await.unwrap(),
        Scaled { from: 2, to: 1 }
    );
    let paused = target("Deployment", "paused");
    assert_eq!(c.scale(&paused, 2, false).await.unwrap().to, 2);
}

#[tokio::test]
async fn a_dry_run_scale_answers_without_changing_anything() {
    let c = cluster();
    assert_eq!(
        c.scale(&web(), 4, true).await.unwrap(),
        Scaled { from: 3, to: 4 }
    );
    assert_eq!(workload(&c, "web").replicas, 3);
    assert!(c.actions().is_empty());
}

#[tokio::test]
async fn scale_refuses_daemonsets_opted_out_workloads_and_negative_counts() {
    let c = MemoryCluster::from_yaml(
        "workloads:\n  - {namespace: prod, name: agent, kind: DaemonSet}\n  - {namespace: prod, name: frozen, annotations: {aiops.wooo.work/auto-repair: disabled}}\n  - {namespace: prod, name: web}\n",
    )
    .unwrap();
    assert_eq!(
        refused(c.scale(&target("DaemonSet", "agent"), 2, false).await),
        "DaemonSet prod/agent runs one pod per node: it has no replica count to scale"
    );
    assert!(refused(c.scale(&target("Deployment", "frozen"), 2, false).await).contains("disabled"));
    assert!(refused(c.scale(&web(), -1, false).await).contains("must not be negative"));
    assert!(matches!(
        c.scale(&target("Deployment", "nope"), 2, false).await,
        Err(Error::NotFound(_))
    ));
    assert!(c.actions().is_empty());
}
