//! Unit tests of the pure parts: field owners from managedFields as the API server writes them,
//! object info, Argo CD's per-resource sync status, and the images a rollback restores.

use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ManagedFieldsEntry, ObjectMeta};
use serde_json::{Value, json};

use super::{argo_sync_status, object_info_of, observe_fields};
use crate::cluster::Target;
use crate::cluster::kubernetes::rollout::restored_images;
use crate::gitops::{Field, FieldChange, FieldState, Manager};

fn limit(c: &str) -> Field {
    Field::MemoryLimit {
        container: c.into(),
    }
}

fn image(c: &str) -> Field {
    Field::Image {
        container: c.into(),
    }
}

/// A Deployment's `fieldsV1` as kustomize-controller's server-side apply records it: the
/// replicas, and for container `web` its image and memory limit and request.
fn kustomize_fields() -> Value {
    json!({
        "f:metadata": {"f:labels": {"f:kustomize.toolkit.fluxcd.io/name": {}, "f:kustomize.toolkit.fluxcd.io/namespace": {}}},
        "f:spec": {
            "f:replicas": {},
            "f:selector": {},
            "f:template": {
                "f:metadata": {"f:labels": {"f:app": {}}},
                "f:spec": {"f:containers": {
                    "k:{\"name\":\"web\"}": {
                        ".": {}, "f:image": {}, "f:name": {},
                        "f:resources": {"f:limits": {"f:memory": {}}, "f:requests": {"f:memory": {}}}
                    }
                }}
            }
        }
    })
}

/// aiops's merge patch of the memory limit (an `Update`): the API server moves the field to it.
fn aiops_limit_fields() -> Value {
    json!({"f:spec": {"f:template": {"f:spec": {"f:containers": {
        "k:{\"name\":\"web\"}": {"f:resources": {"f:limits": {"f:memory": {}}}}
    }}}}})
}

fn entry(manager: &str, operation: &str, fields: Value) -> ManagedFieldsEntry {
    serde_json::from_value(json!({
        "manager": manager, "operation": operation, "apiVersion": "apps/v1",
        "time": "2026-11-30T03:00:00Z", "fieldsType": "FieldsV1", "fieldsV1": fields
    }))
    .unwrap()
}

fn template(limit: &str) -> PodTemplateSpec {
    serde_json::from_value(json!({
        "metadata": {"labels": {"app": "web"},
                     "annotations": {"kubectl.kubernetes.io/restartedAt": "2026-11-30T03:00:00Z"}},
        "spec": {"containers": [{"name": "web", "image": "web:v2",
            "resources": {"limits": {"memory": limit}, "requests": {"memory": "256Mi"}}}]}
    }))
    .unwrap()
}

fn state(field: Field, value: Option<&str>, managers: &[&str]) -> FieldState {
    FieldState {
        field,
        value: value.map(str::to_string),
        managers: managers.iter().map(|m| m.to_string()).collect(),
    }
}

#[test]
fn a_memory_limit_applied_by_kustomize_controller_is_owned_by_it() {
    let managed = [entry("kustomize-controller", "Apply", kustomize_fields())];
    let got = observe_fields(&managed, Some(2), &template("512Mi"), &[limit("web")]);
    assert_eq!(
        got,
        [state(
            limit("web"),
            Some("512Mi"),
            &["kustomize-controller"]
        )]
    );
}

#[test]
fn a_memory_limit_aiops_took_is_owned_by_aiops_while_the_controller_keeps_the_rest() {
    // As the API server records aiops's merge patch: the limit left kustomize-controller's
    // set and is aiops's alone; the request and image stay the controller's.
    let mut theirs = kustomize_fields();
    theirs["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"web\"}"]["f:resources"]
        ["f:limits"] = json!({});
    let managed = [
        entry("kustomize-controller", "Apply", theirs),
        entry("aiops", "Update", aiops_limit_fields()),
    ];
    let fields = [
        limit("web"),
        Field::MemoryRequest {
            container: "web".into(),
        },
        image("web"),
    ];
    let got = observe_fields(&managed, Some(2), &template("615Mi"), &fields);
    assert_eq!(
        got,
        [
            state(limit("web"), Some("615Mi"), &["aiops"]),
            state(fields[1].clone(), Some("256Mi"), &["kustomize-controller"]),
            state(image("web"), Some("web:v2"), &["kustomize-controller"]),
        ]
    );
}

#[test]
fn two_managers_applying_the_same_value_share_the_field_and_each_is_named_once() {
    let managed = [
        entry("kustomize-controller", "Apply", kustomize_fields()),
        entry("helm-controller", "Apply", kustomize_fields()),
        // The same manager again through the scale subresource: still one name.
        entry(
            "kustomize-controller",
            "Update",
            json!({"f:spec": {"f:replicas": {}}}),
        ),
    ];
    let got = observe_fields(
        &managed,
        Some(3),
        &template("512Mi"),
        &[limit("web"), Field::Replicas],
    );
    assert_eq!(
        got,
        [
            state(
                limit("web"),
                Some("512Mi"),
                &["kustomize-controller", "helm-controller"]
            ),
            state(
                Field::Replicas,
                Some("3"),
                &["kustomize-controller", "helm-controller"]
            ),
        ]
    );
}

#[test]
fn an_absent_container_has_no_value_and_no_managers() {
    let managed = [entry("kustomize-controller", "Apply", kustomize_fields())];
    let got = observe_fields(
        &managed,
        Some(2),
        &template("512Mi"),
        &[limit("worker"), image("worker")],
    );
    assert_eq!(
        got,
        [
            state(limit("worker"), None, &[]),
            state(image("worker"), None, &[])
        ]
    );
}

#[test]
fn the_restarted_at_annotation_belongs_to_whoever_restarted_and_a_daemonset_has_no_replicas() {
    let restart = json!({"f:spec": {"f:template": {"f:metadata": {"f:annotations": {
        "f:kubectl.kubernetes.io/restartedAt": {}
    }}}}});
    let managed = [
        entry("kustomize-controller", "Apply", kustomize_fields()),
        entry("aiops", "Update", restart),
    ];
    let got = observe_fields(
        &managed,
        None,
        &template("512Mi"),
        &[Field::RestartedAt, Field::Replicas],
    );
    assert_eq!(
        got,
        [
            state(Field::RestartedAt, Some("2026-11-30T03:00:00Z"), &["aiops"]),
            // kustomize-controller's set names replicas, but there is no value to own.
            state(Field::Replicas, None, &["kustomize-controller"]),
        ]
    );
}

#[test]
fn object_info_has_labels_annotations_and_each_manager_and_operation_once() {
    let meta: ObjectMeta = serde_json::from_value(json!({
        "name": "web",
        "labels": {"kustomize.toolkit.fluxcd.io/name": "apps"},
        "annotations": {"deployment.kubernetes.io/revision": "3"},
        "managedFields": [
            {"manager": "kustomize-controller", "operation": "Apply", "fieldsV1": {}},
            {"manager": "kube-controller-manager", "operation": "Update", "subresource": "status"},
            {"manager": "aiops", "operation": "Update"},
            {"manager": "aiops", "operation": "Update"}
        ]
    }))
    .unwrap();
    let info = object_info_of(&meta);
    assert_eq!(info.labels["kustomize.toolkit.fluxcd.io/name"], "apps");
    assert_eq!(info.annotations["deployment.kubernetes.io/revision"], "3");
    let m = |n: &str, o: &str| Manager {
        name: n.into(),
        operation: o.into(),
    };
    assert_eq!(
        info.managers,
        [
            m("kustomize-controller", "Apply"),
            m("kube-controller-manager", "Update"),
            m("aiops", "Update")
        ]
    );
}

#[test]
fn argo_cds_resource_status_says_whether_git_agrees_for_this_workload_only() {
    let web = Target {
        namespace: "prod".into(),
        kind: "Deployment".into(),
        name: "web".into(),
    };
    let app = |status: &str| {
        json!({"status": {"resources": [
            {"group": "apps", "kind": "Deployment", "namespace": "prod", "name": "api", "status": "OutOfSync"},
            {"version": "v1", "kind": "Service", "namespace": "prod", "name": "web", "status": "Synced"},
            {"group": "apps", "version": "v1", "kind": "Deployment", "namespace": "prod", "name": "web", "status": status}
        ]}})
    };
    assert_eq!(argo_sync_status(&app("Synced"), &web), Some(true));
    assert_eq!(argo_sync_status(&app("OutOfSync"), &web), Some(false));
    assert_eq!(argo_sync_status(&app("Unknown"), &web), None);
    assert_eq!(argo_sync_status(&json!({"status": {}}), &web), None);
    assert_eq!(argo_sync_status(&json!({}), &web), None);
}

#[test]
fn a_rollback_restores_each_image_that_differs_and_nothing_else() {
    let t = |containers: Value| -> PodTemplateSpec {
        serde_json::from_value(json!({"spec": {"containers": containers}})).unwrap()
    };
    let current = t(json!([
        {"name": "web", "image": "web:v2"},
        {"name": "proxy", "image": "proxy:1"},
    ]));
    let restored = t(json!([
        {"name": "web", "image": "web:v1"},
        {"name": "proxy", "image": "proxy:1"},
        {"name": "init-less", "image": "side:1"},
    ]));
    assert_eq!(
        restored_images(&current, &restored),
        [
            FieldChange {
                field: image("web"),
                value: "web:v1".into()
            },
            FieldChange {
                field: image("init-less"),
                value: "side:1".into()
            },
        ]
    );
    assert_eq!(restored_images(&current, &current), []);
}
