//! Unit tests of GitOps on the in-memory cluster: what a state file says about owners, field
//! ownership moving between aiops and a controller, and holds recorded in the snapshot.

use crate::cluster::Cluster;
use crate::cluster::memory::{HeldController, Kind, MemoryCluster};
use crate::cluster::{Error, Target};
use crate::gitops::{
    Controller, FLUX_RECONCILE, Field, FieldChange, FieldState, HoldMechanism, HoldPlacement,
    Manager,
};

const MI: i64 = 1 << 20;

const STATE: &str = r#"
workloads:
  - namespace: prod
    name: web
    replicas: 2
    revision: 2
    history: [1]
    labels:
      kustomize.toolkit.fluxcd.io/name: apps
      kustomize.toolkit.fluxcd.io/namespace: flux-system
    managers:
      - {name: kustomize-controller, operation: Apply}
      - {name: kube-controller-manager, operation: Update}
    containers:
      - name: web
        image: web:v2
        previous_image: web:v1
        memory: {request: 256Mi, limit: 512Mi}
  - namespace: prod
    name: api
    annotations:
      argocd.argoproj.io/tracking-id: "shop:apps/Deployment:prod/api"
      kustomize.toolkit.fluxcd.io/reconcile: disabled
  - namespace: prod
    name: frozen
    annotations: {aiops.wooo.work/auto-repair: disabled}
"#;

fn cluster() -> MemoryCluster {
    MemoryCluster::from_yaml(STATE).expect("test state parses")
}

fn deployment(name: &str) -> Target {
    Target {
        namespace: "prod".into(),
        kind: "Deployment".into(),
        name: name.into(),
    }
}

fn limit() -> Field {
    Field::MemoryLimit {
        container: "web".into(),
    }
}

fn state(field: Field, value: Option<&str>, managers: &[&str]) -> FieldState {
    FieldState {
        field,
        value: value.map(str::to_owned),
        managers: managers.iter().map(|m| (*m).to_owned()).collect(),
    }
}

fn kustomization() -> Controller {
    Controller::FluxKustomization {
        name: "apps".into(),
        namespace: "flux-system".into(),
    }
}

fn argo() -> Controller {
    Controller::ArgoCd {
        application: "shop".into(),
        namespace: "argocd".into(),
    }
}

#[tokio::test]
async fn object_info_answers_the_state_files_labels_annotations_and_managers() {
    let c = cluster();
    let info = c.object_info(&deployment("web")).await.unwrap();
    assert_eq!(info.labels["kustomize.toolkit.fluxcd.io/name"], "apps");
    assert_eq!(
        info.managers,
        [
            Manager {
                name: "kustomize-controller".into(),
                operation: "Apply".into()
            },
            Manager {
                name: "kube-controller-manager".into(),
                operation: "Update".into()
            },
        ]
    );
    let api = c.object_info(&deployment("api")).await.unwrap();
    assert!(
        api.annotations
            .contains_key("argocd.argoproj.io/tracking-id")
    );
    assert!(matches!(
        c.object_info(&deployment("nope")).await,
        Err(Error::NotFound(_))
    ));
}

#[tokio::test]
async fn a_memory_raise_is_aiopss_until_the_controller_sets_it_back() {
    let c = cluster();
    let web = deployment("web");
    // At load, the Apply manager owns what the file gives; an Update manager owns none of it.
    let fields = [limit(), Field::Replicas, Field::RestartedAt];
    assert_eq!(
        c.observe(&web, &fields).await.unwrap(),
        [
            state(limit(), Some("512Mi"), &["kustomize-controller"]),
            state(Field::Replicas, Some("2"), &["kustomize-controller"]),
            state(Field::RestartedAt, None, &[]),
        ]
    );

    c.set_memory(&web, "web", None, 615 * MI, false)
        .await
        .unwrap();
    let raised = FieldChange {
        field: limit(),
        value: "615Mi".into(),
    };
    let live = c.observe(&web, &[limit()]).await.unwrap();
    assert_eq!(live, [state(limit(), Some("615Mi"), &["aiops"])]);
    assert!(raised.holds(&live[0]));
    // The request was not changed: it stays the controller's.
    let request = Field::MemoryRequest {
        container: "web".into(),
    };
    assert_eq!(
        c.observe(&web, std::slice::from_ref(&request))
            .await
            .unwrap(),
        [state(request, Some("256Mi"), &["kustomize-controller"])]
    );
    let managers = c.object_info(&web).await.unwrap().managers;
    assert!(managers.contains(&Manager {
        name: "aiops".into(),
        operation: "Update".into()
    }));

    let revision = c.snapshot().workloads[0].revision;
    c.revert_field(&web, &limit(), "512Mi", "kustomize-controller")
        .unwrap();
    let live = c.observe(&web, &[limit()]).await.unwrap();
    assert_eq!(
        live,
        [state(limit(), Some("512Mi"), &["kustomize-controller"])]
    );
    assert!(!raised.holds(&live[0]));
    assert_eq!(
        c.snapshot().workloads[0].revision,
        revision + 1,
        "a template change rolls out"
    );
    assert_eq!(
        c.actions(),
        ["set memory prod/Deployment/web container web: request 256Mi, limit 615Mi"],
        "the controller's revert is not one of aiops's actions"
    );
}

#[tokio::test]
async fn a_restart_and_a_scale_make_aiops_the_owner_of_what_they_set() {
    let c = cluster();
    let web = deployment("web");
    c.restart(&web, false).await.unwrap();
    c.scale(&web, 4, false).await.unwrap();
    let live = c
        .observe(&web, &[Field::RestartedAt, Field::Replicas, limit()])
        .await
        .unwrap();
    assert!(live[0].value.is_some(), "{live:?}");
    assert_eq!(live[0].managers, ["aiops"]);
    assert_eq!(live[1], state(Field::Replicas, Some("4"), &["aiops"]));
    assert_eq!(
        live[2],
        state(limit(), Some("512Mi"), &["kustomize-controller"]),
        "a restart changes no container field"
    );
}

#[tokio::test]
async fn a_rollback_names_the_image_it_restores_in_a_dry_run_and_then_owns_it() {
    let c = cluster();
    let web = deployment("web");
    let image = Field::Image {
        container: "web".into(),
    };
    let expected = vec![FieldChange {
        field: image.clone(),
        value: "web:v1".into(),
    }];
    let dry = c.rollback(&web, true).await.unwrap();
    assert_eq!(dry.restores, expected);
    assert!(c.actions().is_empty());
    let done = c.rollback(&web, false).await.unwrap();
    assert_eq!(done.restores, expected);
    assert_eq!(
        c.observe(&web, std::slice::from_ref(&image)).await.unwrap(),
        [state(image, Some("web:v1"), &["aiops"])]
    );
}

#[tokio::test]
async fn a_kustomization_hold_outlives_the_rollback_it_was_placed_for() {
    let c = cluster();
    let web = deployment("web");
    c.hold(&web, &kustomization(), false).await.unwrap();
    assert!(c.rollback(&web, false).await.unwrap().done);
    let annotations = c.object_info(&web).await.unwrap().annotations;
    assert_eq!(annotations[FLUX_RECONCILE], "disabled");
}

#[tokio::test]
async fn a_kustomization_hold_is_the_annotation_on_the_workload_and_release_removes_it() {
    let c = cluster();
    let web = deployment("web");
    let dry = c.hold(&web, &kustomization(), true).await.unwrap();
    assert_eq!(dry.mechanism, HoldMechanism::FluxObjectAnnotation);
    assert!(
        !c.snapshot().workloads[0]
            .annotations
            .contains_key(FLUX_RECONCILE)
    );

    let placed = c.hold(&web, &kustomization(), false).await.unwrap();
    assert_eq!(
        placed,
        HoldPlacement {
            mechanism: HoldMechanism::FluxObjectAnnotation,
            saved: None
        }
    );
    let annotations = c.object_info(&web).await.unwrap().annotations;
    assert_eq!(annotations[FLUX_RECONCILE], "disabled");

    c.release(&web, &kustomization(), &placed).await.unwrap();
    assert!(
        !c.object_info(&web)
            .await
            .unwrap()
            .annotations
            .contains_key(FLUX_RECONCILE)
    );
    // Idempotent: a second release, and one of a workload that is gone, succeed.
    c.release(&web, &kustomization(), &placed).await.unwrap();
    c.release(&deployment("gone"), &kustomization(), &placed)
        .await
        .unwrap();
    assert_eq!(c.actions().len(), 3, "{:?}", c.actions());
    assert!(c.actions()[0].starts_with("hold prod/Deployment/web (Flux Kustomization"));
}

#[tokio::test]
async fn a_reconcile_disabled_by_a_person_is_saved_and_survives_the_release() {
    let c = cluster();
    let api = deployment("api");
    let placed = c.hold(&api, &kustomization(), false).await.unwrap();
    assert_eq!(placed.saved.as_deref(), Some("disabled"));
    c.release(&api, &kustomization(), &placed).await.unwrap();
    assert_eq!(
        c.object_info(&api).await.unwrap().annotations[FLUX_RECONCILE],
        "disabled"
    );
}

#[tokio::test]
async fn argo_cd_and_helmrelease_holds_are_kept_in_the_snapshot_until_released() {
    let c = cluster();
    let api = deployment("api");
    let helm = Controller::FluxHelmRelease {
        name: "api".into(),
        namespace: "prod".into(),
    };
    let argo_hold = c.hold(&api, &argo(), false).await.unwrap();
    assert_eq!(argo_hold.mechanism, HoldMechanism::ArgoAutomatedOff);
    let helm_hold = c.hold(&api, &helm, false).await.unwrap();
    assert_eq!(helm_hold.mechanism, HoldMechanism::FluxHelmReleaseSuspend);
    // Held twice: still one entry.
    c.hold(&api, &argo(), false).await.unwrap();
    let held = |controller: Controller, mechanism| HeldController {
        namespace: "prod".into(),
        kind: Kind::Deployment,
        name: "api".into(),
        controller,
        mechanism,
    };
    assert_eq!(
        c.snapshot().holds,
        [
            held(argo(), HoldMechanism::ArgoAutomatedOff),
            held(helm.clone(), HoldMechanism::FluxHelmReleaseSuspend)
        ]
    );
    assert_eq!(c.git_agrees(&api, &argo()).await.unwrap(), None);
    c.release(&api, &argo(), &argo_hold).await.unwrap();
    c.release(&api, &argo(), &argo_hold).await.unwrap();
    assert_eq!(
        c.snapshot().holds,
        [held(helm, HoldMechanism::FluxHelmReleaseSuspend)]
    );
}

#[tokio::test]
async fn no_hold_is_placed_on_an_opted_out_or_missing_workload() {
    let c = cluster();
    assert!(matches!(
        c.hold(&deployment("frozen"), &argo(), false).await,
        Err(Error::Refused(why)) if why.contains("disabled")
    ));
    assert!(matches!(
        c.hold(&deployment("nope"), &kustomization(), false).await,
        Err(Error::NotFound(_))
    ));
    assert!(c.snapshot().holds.is_empty());
    assert!(c.actions().is_empty());
}

#[test]
fn revert_field_refuses_what_the_api_server_would() {
    let c = cluster();
    let web = deployment("web");
    assert!(matches!(
        c.revert_field(&web, &limit(), "lots", "kustomize-controller"),
        Err(Error::Refused(_))
    ));
    let missing = Field::Image {
        container: "nope".into(),
    };
    assert!(matches!(
        c.revert_field(&web, &missing, "x:1", "kustomize-controller"),
        Err(Error::NotFound(_))
    ));
}
