//! Unit tests of the Kubernetes backend's pure parts (rollout status from a Deployment).

use k8s_openapi::api::apps::v1::Deployment;
use serde_json::json;

use super::rollout::deployment_status;

fn timed_out(condition_at: &str, aiops_wrote_at: Option<&str>) -> Deployment {
    let mut managed =
        vec![json!({"manager": "kubectl", "operation": "Update", "time": "2026-01-01T00:00:00Z"})];
    if let Some(at) = aiops_wrote_at {
        managed.push(json!({"manager": "aiops", "operation": "Update", "time": at}));
    }
    serde_json::from_value(json!({
        "metadata": {"name": "web", "generation": 3, "managedFields": managed},
        "spec": {"replicas": 1, "selector": {}, "template": {}, "progressDeadlineSeconds": 10},
        "status": {"observedGeneration": 3, "replicas": 2, "updatedReplicas": 1,
            "conditions": [{"type": "Progressing", "status": "False",
                "reason": "ProgressDeadlineExceeded", "lastUpdateTime": condition_at}]}
    }))
    .unwrap()
}

#[test]
fn a_deadline_exceeded_before_aiopss_last_write_is_the_previous_rollouts_and_not_a_failure() {
    let s = deployment_status(&timed_out(
        "2026-11-30T02:00:00Z",
        Some("2026-11-30T02:00:05Z"),
    ));
    assert!(!s.failed && !s.complete, "{s:?}");
}

#[test]
fn a_deadline_exceeded_within_the_progress_deadline_of_aiopss_write_is_not_this_rollouts() {
    // A rollback right after a restart timed out: the controller's condition and aiops's write
    // fall in the same second, and the rollout aiops started cannot have timed out yet.
    for at in ["2026-11-30T02:00:05Z", "2026-11-30T02:00:14Z"] {
        let s = deployment_status(&timed_out(at, Some("2026-11-30T02:00:05Z")));
        assert!(!s.failed && !s.complete, "{at}: {s:?}");
        assert!(s.message.contains("from before aiops's change"), "{s:?}");
    }
}

#[test]
fn a_deadline_exceeded_a_progress_deadline_after_aiopss_write_or_without_one_fails_the_rollout() {
    for at in ["2026-11-30T02:00:15Z", "2026-11-30T02:10:00Z"] {
        let s = deployment_status(&timed_out(at, Some("2026-11-30T02:00:05Z")));
        assert!(s.failed, "{at}: {s:?}");
        assert!(s.message.contains("exceeded its progress deadline"));
    }
    let never_written = deployment_status(&timed_out("2026-11-30T02:10:00Z", None));
    assert!(never_written.failed, "{never_written:?}");
}
