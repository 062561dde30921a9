use super::*;

fn web() -> Target {
    Target {
        namespace: "prod".into(),
        kind: "Deployment".into(),
        name: "web".into(),
    }
}

fn info(labels: &[(&str, &str)], annotations: &[(&str, &str)]) -> ObjectInfo {
    ObjectInfo {
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        annotations: annotations
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        managers: vec![Manager {
            name: "kustomize-controller".into(),
            operation: "Apply".into(),
        }],
    }
}

fn owner(i: &ObjectInfo, settings: &GitopsSettings) -> Option<Controller> {
    detect(i, &web(), settings).controller
}

#[test]
fn a_tracking_id_naming_the_object_makes_argo_cd_its_owner() {
    let s = GitopsSettings::default();
    let i = info(
        &[],
        &[(ARGOCD_TRACKING_ID, "shop:apps/Deployment:prod/web")],
    );
    assert_eq!(
        owner(&i, &s),
        Some(Controller::ArgoCd {
            application: "shop".into(),
            namespace: "argocd".into()
        })
    );
    // An Application outside Argo CD's namespace is written namespace_app.
    let i = info(
        &[],
        &[(ARGOCD_TRACKING_ID, "team-a_shop:apps/Deployment:prod/web")],
    );
    assert_eq!(
        owner(&i, &s),
        Some(Controller::ArgoCd {
            application: "shop".into(),
            namespace: "team-a".into()
        })
    );
}

#[test]
fn a_tracking_id_copied_from_another_object_is_ignored_as_argo_cd_does() {
    let s = GitopsSettings::default();
    for id in [
        "shop:apps/Deployment:prod/api",
        "shop:apps/Deployment:staging/web",
        "shop:apps/StatefulSet:prod/web",
        "shop:/Deployment:prod/web",
        "garbage",
    ] {
        let i = info(&[], &[(ARGOCD_TRACKING_ID, id)]);
        assert_eq!(owner(&i, &s), None, "{id}");
    }
}

#[test]
fn the_instance_label_counts_only_with_label_tracking() {
    // Helm charts set app.kubernetes.io/instance themselves: under annotation tracking (Argo
    // CD 3.x's default) it says nothing about Argo CD.
    let i = info(&[("app.kubernetes.io/instance", "shop")], &[]);
    assert_eq!(owner(&i, &GitopsSettings::default()), None);
    let s = GitopsSettings {
        tracking: TrackingMethod::AnnotationAndLabel,
        ..GitopsSettings::default()
    };
    assert_eq!(owner(&i, &s), None);
    let s = GitopsSettings {
        tracking: TrackingMethod::Label,
        instance_label: "argocd.argoproj.io/instance".into(),
        ..GitopsSettings::default()
    };
    assert_eq!(owner(&i, &s), None, "another label key is configured");
    let i = info(&[("argocd.argoproj.io/instance", "shop")], &[]);
    assert_eq!(
        owner(&i, &s),
        Some(Controller::ArgoCd {
            application: "shop".into(),
            namespace: "argocd".into()
        })
    );
}

#[test]
fn flux_labels_name_the_kustomization_or_the_helmrelease() {
    let s = GitopsSettings::default();
    let k = info(
        &[
            (FLUX_KUSTOMIZATION_NAME, "apps"),
            (FLUX_KUSTOMIZATION_NAMESPACE, "flux-system"),
        ],
        &[],
    );
    assert_eq!(
        owner(&k, &s),
        Some(Controller::FluxKustomization {
            name: "apps".into(),
            namespace: "flux-system".into()
        })
    );
    let mut h = k.clone();
    h.labels.insert(FLUX_HELMRELEASE_NAME.into(), "web".into());
    h.labels
        .insert(FLUX_HELMRELEASE_NAMESPACE.into(), "prod".into());
    assert_eq!(
        owner(&h, &s),
        Some(Controller::FluxHelmRelease {
            name: "web".into(),
            namespace: "prod".into()
        }),
        "helm-controller applies the workload"
    );
    // Half a marker is no marker.
    let half = info(&[(FLUX_KUSTOMIZATION_NAME, "apps")], &[]);
    assert_eq!(owner(&half, &s), None);
}

#[test]
fn the_ownership_reports_every_field_manager() {
    let o = detect(&info(&[], &[]), &web(), &GitopsSettings::default());
    assert_eq!(
        o.to_string(),
        "not owned by Argo CD or Flux (field managers: kustomize-controller)"
    );
}

fn change(kind: ChangeKind, changes: Vec<FieldChange>) -> GitChange {
    GitChange {
        kind,
        target: web(),
        changes,
        owner: Controller::FluxKustomization {
            name: "apps".into(),
            namespace: "flux-system".into(),
        },
        revision: None,
    }
}

#[test]
fn the_git_change_names_the_field_the_value_and_the_owner() {
    let memory = change(
        ChangeKind::Memory,
        vec![FieldChange {
            field: Field::MemoryLimit {
                container: "web".into(),
            },
            value: "615Mi".into(),
        }],
    );
    assert_eq!(
        memory.instruction(),
        "set resources.limits.memory of container web to 615Mi"
    );
    assert_eq!(
        memory.to_string(),
        "in the Git source of prod/Deployment/web (Flux Kustomization flux-system/apps): \
         set resources.limits.memory of container web to 615Mi"
    );
    let rollback = change(
        ChangeKind::Rollback,
        vec![FieldChange {
            field: Field::Image {
                container: "web".into(),
            },
            value: "web:v1".into(),
        }],
    );
    assert_eq!(
        rollback.instruction(),
        "revert image of container web to web:v1"
    );
    let scale = change(
        ChangeKind::Scale,
        vec![FieldChange {
            field: Field::Replicas,
            value: "5".into(),
        }],
    );
    assert_eq!(scale.instruction(), "set replicas to 5");
    assert!(
        change(ChangeKind::Restart, vec![])
            .instruction()
            .contains("not kept in Git")
    );
}

#[test]
fn a_rollback_with_no_image_difference_says_to_revert_the_template_to_its_revision() {
    let mut rollback = change(ChangeKind::Rollback, vec![]);
    rollback.revision = Some(4);
    let text = rollback.instruction();
    assert!(
        text.starts_with("revert the pod template to the previous revision (4)"),
        "{text}"
    );
    assert!(
        text.contains("kubectl rollout history deployment/web -n prod --revision=4"),
        "{text}"
    );
    // Stored before the field existed: reads back without a revision.
    let mut old = serde_json::to_value(change(ChangeKind::Rollback, vec![])).unwrap();
    old.as_object_mut().unwrap().remove("revision");
    let read: GitChange = serde_json::from_value(old).unwrap();
    assert_eq!(read.revision, None);
}

#[test]
fn a_memory_change_holds_when_the_live_quantity_is_equal_in_another_unit() {
    let c = FieldChange {
        field: Field::MemoryLimit {
            container: "web".into(),
        },
        value: "1Gi".into(),
    };
    let live = |v: Option<&str>| FieldState {
        field: c.field.clone(),
        value: v.map(str::to_string),
        managers: vec![],
    };
    assert!(c.holds(&live(Some("1024Mi"))));
    assert!(!c.holds(&live(Some("512Mi"))));
    assert!(!c.holds(&live(None)));
}

#[test]
fn settings_read_with_defaults_and_refuse_unknown_keys() {
    let s: GitopsSettings =
        serde_yaml::from_str("tracking: annotation+label\nhold_for: 30m\ndefaults: {memory: hold}")
            .unwrap();
    assert_eq!(s.tracking, TrackingMethod::AnnotationAndLabel);
    assert_eq!(s.hold_for.0.as_secs(), 1800);
    assert_eq!(s.defaults.memory, crate::rules::GitopsPolicy::Hold);
    assert_eq!(s.watch.0.as_secs(), 180);
    assert!(serde_yaml::from_str::<GitopsSettings>("tracking: labels").is_err());
    assert!(serde_yaml::from_str::<GitopsSettings>("hold: 1h").is_err());
    let bad = GitopsSettings {
        hold_for: HumanDuration(std::time::Duration::ZERO),
        argocd_namespace: "Argo CD".into(),
        ..GitopsSettings::default()
    };
    let p = bad.problems();
    assert_eq!(p.len(), 2, "{p:?}");
}
