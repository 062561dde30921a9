use std::time::Duration;

use serde_json::json;

use super::*;
use crate::rules::RuleSet;

fn params(v: serde_json::Value) -> Params {
    Params::from_value(&v)
}

fn full_spec() -> JobSpec {
    JobSpec {
        playbook: "restart".into(),
        params: params(json!({"grace": "30s", "max": 3})),
        chain: vec![
            ChainStep::Notify {
                route: "oncall".into(),
            },
            ChainStep::Playbook {
                playbook: "rollback".into(),
                params: params(json!({"rollout_timeout": "1m"})),
            },
            ChainStep::ChooseBest {
                choose: Strategy::Best,
                from: vec![
                    Alternative {
                        playbook: "raise_memory".into(),
                        params: Params::default(),
                    },
                    Alternative {
                        playbook: "restart".into(),
                        params: params(json!({"force": true})),
                    },
                ],
            },
        ],
        verify: Verify {
            rollout: false,
            rollout_timeout: Duration::from_secs(90),
            health_url: Some("http://127.0.0.1:9/healthz".into()),
            resolved_within: Some(Duration::from_secs(300)),
        },
        mode: Mode::Approve,
        approval: Some(ApprovalPolicy {
            expires: Duration::from_secs(900),
            approvers: vec!["telegram:42".parse().unwrap()],
        }),
        gitops: Some(crate::rules::GitopsPolicy::Hold),
        by_hand: Some(ByHand {
            by: "alice".into(),
            reason: Some("web is stuck after the deploy".into()),
        }),
    }
}

#[test]
fn a_spec_reads_back_from_its_stored_json_unchanged() {
    let spec = full_spec();
    let text = serde_json::to_string(&spec).unwrap();
    assert_eq!(serde_json::from_str::<JobSpec>(&text).unwrap(), spec);
}

#[test]
fn the_stored_shape_is_the_rules_file_shape_with_durations_in_milliseconds() {
    assert_eq!(
        serde_json::to_value(full_spec()).unwrap(),
        json!({
            "playbook": "restart",
            "params": {"grace": "30s", "max": 3},
            "escalate": [
                {"notify": "oncall"},
                {"playbook": "rollback", "params": {"rollout_timeout": "1m"}},
                {"choose": "best", "from": [
                    {"playbook": "raise_memory", "params": {}},
                    {"playbook": "restart", "params": {"force": true}},
                ]},
            ],
            "verify": {
                "rollout": false,
                "rollout_timeout_ms": 90_000,
                "health_url": "http://127.0.0.1:9/healthz",
                "resolved_within_ms": 300_000,
            },
            "mode": "approve",
            "approval": {"expires_ms": 900_000, "approvers": ["telegram:42"]},
            "gitops": "hold",
            "by_hand": {"by": "alice", "reason": "web is stuck after the deploy"},
        })
    );
}

#[test]
fn missing_keys_of_a_stored_spec_take_their_defaults() {
    // Rows written before verification existed carry `{}`; steps may omit `params`.
    let spec: JobSpec = serde_json::from_value(json!({
        "playbook": "restart",
        "params": {},
        "escalate": [{"playbook": "rollback"}],
        "verify": {},
    }))
    .unwrap();
    assert_eq!(spec.verify, Verify::default());
    // Specs stored before the trust ladder did what `auto` does.
    assert_eq!(spec.mode, Mode::Auto);
    assert_eq!(spec.approval, None);
    // Specs stored before GitOps awareness take the settings' defaults per kind of change.
    assert_eq!(spec.gitops, None);
    // Every job before POST /api/repairs was started by an alert.
    assert_eq!(spec.by_hand, None);
    assert_eq!(
        spec.chain,
        vec![ChainStep::Playbook {
            playbook: "rollback".into(),
            params: Params::default()
        }]
    );
}

#[test]
fn a_chain_step_of_no_known_shape_is_refused() {
    for step in [
        json!({"run": "restart"}),
        json!({"choose": "worst", "from": []}),
        json!({"notify": 3}),
    ] {
        let stored = json!({"playbook": "restart", "escalate": [step]});
        assert!(
            serde_json::from_value::<JobSpec>(stored).is_err(),
            "{step} was accepted"
        );
    }
}

#[test]
fn a_rule_becomes_the_spec_of_its_first_job() {
    let yaml = r#"
rules:
  - name: r
    matchers: ['alertname="Down"']
    playbook: restart
    params: {grace: 30s}
    verify: {rollout: false, resolved_within: 5m}
    mode: approve
    approval: {expires: 15m, approvers: [telegram:42]}
    gitops: hold
    escalate:
      - notify: oncall
      - playbook: rollback
        params: {rollout_timeout: 1m}
      - choose: best
        from:
          - playbook: raise_memory
          - playbook: restart
            params: {force: true}
"#;
    let rules = RuleSet::parse_str(yaml, std::path::Path::new("t.yaml")).unwrap();
    let spec = JobSpec::for_rule(&rules[0]);
    let mut expected = full_spec();
    expected.params = params(json!({"grace": "30s"}));
    expected.verify = Verify {
        rollout: false,
        resolved_within: Some(Duration::from_secs(300)),
        ..Verify::default()
    };
    // A rule's job is the rule's: nobody ran it by hand.
    expected.by_hand = None;
    assert_eq!(spec, expected);
}

#[test]
fn the_next_job_of_a_chain_keeps_the_chain_and_the_verification() {
    let spec = full_spec();
    let next = spec.next("rollback", &params(json!({"rollout_timeout": "1m"})));
    assert_eq!(next.playbook, "rollback");
    assert_eq!(next.params["rollout_timeout"], "1m");
    assert_eq!((next.chain, next.verify), (spec.chain, spec.verify));
    // Every step of an approve-mode chain waits for approval again, under the same policy.
    assert_eq!((next.mode, next.approval), (spec.mode, spec.approval));
    assert_eq!(next.gitops, spec.gitops);
    // A chain a person started by hand stays theirs to the end.
    assert_eq!(next.by_hand, spec.by_hand);
}

#[test]
fn a_rule_without_a_mode_takes_the_settings_default_and_only_approve_snapshots_a_policy() {
    let rules = RuleSet::parse_str(
        "rules:\n  - {name: r, matchers: ['alertname=\"Down\"'], playbook: restart}\n",
        std::path::Path::new("t.yaml"),
    )
    .unwrap();
    assert_eq!(JobSpec::for_rule(&rules[0]).mode, Mode::Auto);
    let mut trust = Trust {
        default_mode: Mode::Shadow,
        ..Trust::default()
    };
    let shadow = JobSpec::for_rule_in(&rules[0], &trust);
    assert_eq!((shadow.mode, shadow.approval), (Mode::Shadow, None));
    trust.default_mode = Mode::Approve;
    let approve = JobSpec::for_rule_in(&rules[0], &trust);
    assert_eq!(approve.mode, Mode::Approve);
    assert_eq!(approve.approval, Some(trust.approval.clone()));
}

#[test]
fn routes_are_the_notify_steps_of_the_chain_in_order() {
    let mut spec = full_spec();
    spec.chain.push(ChainStep::Notify {
        route: "team".into(),
    });
    assert_eq!(spec.routes(), ["oncall", "team"]);
    assert!(JobSpec::new("restart").routes().is_empty());
}

#[test]
fn params_that_are_not_a_mapping_count_as_none_and_a_missing_key_reads_null() {
    assert!(Params::from_value(&json!(["a"])).is_empty());
    let p = params(json!({"a": 1}));
    assert_eq!(p["a"], 1);
    assert_eq!(p["b"], serde_json::Value::Null);
    assert_eq!(p.get("b"), None);
    assert_eq!(p.to_string(), r#"{"a":1}"#);
    assert_eq!(serde_json::Value::from(p), json!({"a": 1}));
}
