//! Verification's decisions, without a cluster, a server or a store.

use super::*;

fn target() -> Target {
    Target {
        namespace: "prod".into(),
        kind: "Deployment".into(),
        name: "api".into(),
    }
}

fn status(complete: bool, failed: bool) -> RolloutStatus {
    RolloutStatus {
        complete,
        failed,
        message: "1 of 3 updated replicas are available".into(),
    }
}

const TWO_MINUTES: Duration = Duration::from_secs(120);

#[test]
fn a_complete_rollout_passes_even_when_its_time_is_up() {
    for expired in [false, true] {
        assert_eq!(
            rollout(&target(), &status(true, false), expired, TWO_MINUTES),
            Check::Passed("rollout of prod/Deployment/api complete".into())
        );
    }
}

#[test]
fn a_failed_rollout_fails_at_once_without_waiting_for_its_time() {
    assert_eq!(
        rollout(&target(), &status(false, true), false, TWO_MINUTES),
        Check::Verdict(Outcome::Failure(
            "rollout of prod/Deployment/api failed: 1 of 3 updated replicas are available".into()
        ))
    );
}

#[test]
fn an_unfinished_rollout_is_looked_at_again_until_its_time_is_up_then_fails() {
    assert_eq!(
        rollout(&target(), &status(false, false), false, TWO_MINUTES),
        Check::Pending
    );
    assert_eq!(
        rollout(&target(), &status(false, false), true, TWO_MINUTES),
        Check::Verdict(Outcome::Failure(
            "rollout of prod/Deployment/api not complete 2m after the repair: 1 of 3 updated replicas are available"
                .into()
        ))
    );
}

#[test]
fn a_rollout_that_cannot_be_read_is_inconclusive_not_a_failure() {
    assert_eq!(
        rollout_unreadable(&target(), Some("connection refused")),
        Outcome::Inconclusive(
            "could not read the rollout of prod/Deployment/api: connection refused".into()
        )
    );
    assert_eq!(
        rollout_unreadable(&target(), None),
        Outcome::Inconclusive("reading the rollout of prod/Deployment/api timed out".into())
    );
}

#[test]
fn a_health_check_passes_on_every_2xx_and_fails_on_anything_else() {
    let url = "http://127.0.0.1:8080/healthz";
    for code in [200, 204, 299] {
        assert_eq!(
            health(url, &HealthAnswer::Status(code)),
            Check::Passed(format!("{url} answered {code}"))
        );
    }
    // Redirects are not followed, so a 3xx is an answer like any other non-2xx.
    for code in [199, 301, 404, 500, 503] {
        assert_eq!(
            health(url, &HealthAnswer::Status(code)),
            Check::Verdict(Outcome::Failure(format!(
                "health check {url} answered {code}"
            )))
        );
    }
}

#[test]
fn a_health_check_that_times_out_is_inconclusive_and_one_that_errors_fails() {
    let url = "http://127.0.0.1:8080/healthz";
    assert_eq!(
        health(url, &HealthAnswer::TimedOut),
        Check::Verdict(Outcome::Inconclusive(format!(
            "health check {url} timed out"
        )))
    );
    assert_eq!(
        health(url, &HealthAnswer::Failed("connection refused".into())),
        Check::Verdict(Outcome::Failure(format!(
            "health check {url} failed: connection refused"
        )))
    );
}

#[test]
fn a_resolved_alert_passes_even_at_the_deadline_and_a_firing_one_fails_only_after_it() {
    let within = Duration::from_secs(300);
    for expired in [false, true] {
        assert_eq!(
            resolved(true, expired, within),
            Check::Passed("the alert resolved".into())
        );
    }
    assert_eq!(resolved(false, false, within), Check::Pending);
    assert_eq!(
        resolved(false, true, within),
        Check::Verdict(Outcome::Failure(
            "the alert was still firing 5m after the repair".into()
        ))
    );
}

#[test]
fn the_summary_lists_the_checks_that_passed_or_says_there_were_none() {
    assert_eq!(summary(&[]), "verified: nothing further to check");
    assert_eq!(
        summary(&["rollout of a complete".into(), "the alert resolved".into()]),
        "verified: rollout of a complete, the alert resolved"
    );
}

fn flux() -> Controller {
    Controller::FluxKustomization {
        name: "apps".into(),
        namespace: "flux-system".into(),
    }
}

fn limit(value: &str) -> FieldChange {
    FieldChange {
        field: Field::MemoryLimit {
            container: "web".into(),
        },
        value: value.into(),
    }
}

fn memory_raise(value: &str, owner: Option<Controller>) -> Applied {
    Applied {
        target: target(),
        kind: ChangeKind::Memory,
        changes: vec![limit(value)],
        git: owner.clone().map(|owner| GitChange {
            kind: ChangeKind::Memory,
            target: target(),
            changes: vec![limit(value)],
            owner,
            revision: None,
        }),
        owner,
        hold_id: None,
    }
}

fn live(value: Option<&str>, managers: &[&str]) -> FieldState {
    FieldState {
        field: Field::MemoryLimit {
            container: "web".into(),
        },
        value: value.map(String::from),
        managers: managers.iter().map(|m| m.to_string()).collect(),
    }
}

#[test]
fn a_field_that_still_holds_the_repairs_value_is_no_revert_even_spelled_differently() {
    let raise = memory_raise("1Gi", Some(flux()));
    assert_eq!(reverted(&raise, &[live(Some("1Gi"), &["aiops"])]), None);
    assert_eq!(reverted(&raise, &[live(Some("1024Mi"), &["aiops"])]), None);
}

#[test]
fn a_field_set_back_by_the_controller_is_a_revert_naming_it_but_not_aiops() {
    let raise = memory_raise("615Mi", Some(flux()));
    let revert = reverted(
        &raise,
        &[live(Some("512Mi"), &["kustomize-controller", "aiops"])],
    )
    .expect("a revert");
    assert_eq!(revert.reverted_by, ["kustomize-controller"]);
    assert_eq!(revert.live.as_deref(), Some("512Mi"));
    assert_eq!(
        revert.message(),
        "resources.limits.memory of container web of prod/Deployment/api was set back to 512Mi \
         by kustomize-controller (the repair set 615Mi)"
    );
    assert_eq!(revert.owner_text(), "Flux Kustomization flux-system/apps");
    assert_eq!(
        revert.change(),
        "set resources.limits.memory of container web to 615Mi"
    );
}

#[test]
fn a_person_setting_back_an_unowned_target_is_a_revert_too_with_the_field_to_keep() {
    let raise = memory_raise("615Mi", None);
    let revert = reverted(&raise, &[live(Some("512Mi"), &["kubectl-edit"])]).expect("a revert");
    assert_eq!(revert.reverted_by, ["kubectl-edit"]);
    assert_eq!(revert.owner_text(), "no GitOps controller");
    assert_eq!(
        revert.change(),
        "set resources.limits.memory of container web to 615Mi"
    );
}

#[test]
fn a_field_gone_is_a_revert_and_a_field_the_backend_did_not_report_is_not_judged() {
    let raise = memory_raise("615Mi", Some(flux()));
    let gone = reverted(&raise, &[live(None, &[])]).expect("a revert");
    assert_eq!(gone.reverted_by, Vec::<String>::new());
    assert_eq!(
        gone.message(),
        "resources.limits.memory of container web of prod/Deployment/api was set back to \
         nothing (the field is gone) (the repair set 615Mi)"
    );
    assert_eq!(reverted(&raise, &[]), None);
}

#[test]
fn a_field_changed_twice_in_a_run_is_watched_at_its_last_value_only() {
    let first = memory_raise("615Mi", Some(flux()));
    let second = memory_raise("768Mi", Some(flux()));
    let other_target = Applied {
        target: Target {
            name: "worker".into(),
            ..target()
        },
        ..memory_raise("615Mi", None)
    };
    let kept = watched(&[first, second.clone(), other_target.clone()]);
    assert_eq!(kept, vec![second.clone(), other_target]);
    // The second raise read back is no revert of the first.
    assert_eq!(reverted(&kept[0], &[live(Some("768Mi"), &["aiops"])]), None);
}

#[test]
fn a_rollback_later_in_the_run_replaces_the_targets_earlier_template_changes_but_not_its_replicas()
{
    let restart = Applied {
        kind: ChangeKind::Restart,
        changes: vec![FieldChange {
            field: Field::RestartedAt,
            value: "2026-11-30T15:00:00Z".into(),
        }],
        ..memory_raise("615Mi", Some(flux()))
    };
    let scale = Applied {
        kind: ChangeKind::Scale,
        changes: vec![FieldChange {
            field: Field::Replicas,
            value: "4".into(),
        }],
        ..memory_raise("615Mi", Some(flux()))
    };
    let rollback = Applied {
        kind: ChangeKind::Rollback,
        changes: vec![FieldChange {
            field: Field::Image {
                container: "web".into(),
            },
            value: "registry/api:1.4".into(),
        }],
        ..memory_raise("615Mi", Some(flux()))
    };
    let other_target = Applied {
        target: Target {
            name: "worker".into(),
            ..target()
        },
        ..memory_raise("615Mi", None)
    };
    let kept = watched(&[
        restart,
        memory_raise("615Mi", Some(flux())),
        scale.clone(),
        other_target.clone(),
        rollback.clone(),
    ]);
    // The restart's annotation and the raise are gone with the template the rollback replaced;
    // the replicas and the other workload's raise are still the run's.
    assert_eq!(kept, vec![scale, other_target, rollback.clone()]);
    // A rollback before a raise is not replaced by it: each keeps its own field.
    let raise = memory_raise("615Mi", Some(flux()));
    assert_eq!(
        watched(&[rollback.clone(), raise.clone()]),
        vec![rollback, raise]
    );
}

#[test]
fn owned_targets_are_watched_for_the_settings_watch_and_unowned_ones_only_during_the_checks() {
    let watch = Duration::from_secs(180);
    assert_eq!(watch_for(&[], watch), Duration::ZERO);
    assert_eq!(
        watch_for(&[memory_raise("615Mi", None)], watch),
        Duration::ZERO
    );
    assert_eq!(
        watch_for(
            &[
                memory_raise("615Mi", None),
                memory_raise("1Gi", Some(flux()))
            ],
            watch
        ),
        watch
    );
}

#[test]
fn the_summary_says_how_many_changed_fields_held_and_for_how_long() {
    assert_eq!(held(&[], Duration::from_secs(180)), None);
    let one = [memory_raise("615Mi", Some(flux()))];
    assert_eq!(
        held(&one, Duration::from_secs(180)).as_deref(),
        Some(
            "the 1 changed field held for 3m after the change (gitops.watch; Flux sets fields \
             back on its interval: a revert after 3m is not seen)"
        )
    );
    let argo = Controller::ArgoCd {
        application: "web".into(),
        namespace: "argocd".into(),
    };
    assert_eq!(
        held(
            &[memory_raise("615Mi", Some(argo))],
            Duration::from_secs(180)
        )
        .as_deref(),
        Some("the 1 changed field held for 3m after the change")
    );
    assert_eq!(
        held(&one, Duration::ZERO).as_deref(),
        Some("the 1 changed field held")
    );
}

#[test]
fn unreadable_fields_are_inconclusive_not_a_revert() {
    assert_eq!(
        fields_unreadable(&target(), Some("connection refused")),
        Outcome::Inconclusive(
            "could not read the changed fields of prod/Deployment/api: connection refused".into()
        )
    );
    assert_eq!(
        fields_unreadable(&target(), None),
        Outcome::Inconclusive("reading the changed fields of prod/Deployment/api timed out".into())
    );
}
