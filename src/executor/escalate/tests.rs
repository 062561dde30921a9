//! The escalation decision, exhaustively: every way a job ends × every chain position × every
//! cap × the storm brake × `choose: best` with rates, ties and cold starts. No store.

use serde_json::json;

use super::*;
use crate::job::Strategy;

fn playbook(name: &str) -> ChainStep {
    ChainStep::Playbook {
        playbook: name.into(),
        params: Params::from_value(&json!({"step": name})),
    }
}

fn notify(route: &str) -> ChainStep {
    ChainStep::Notify {
        route: route.into(),
    }
}

fn choose(from: &[&str]) -> ChainStep {
    ChainStep::ChooseBest {
        choose: Strategy::Best,
        from: from
            .iter()
            .map(|p| Alternative {
                playbook: (*p).into(),
                params: Params::default(),
            })
            .collect(),
    }
}

fn spec(chain: Vec<ChainStep>) -> JobSpec {
    JobSpec {
        chain,
        ..JobSpec::new("restart")
    }
}

fn history(position: usize, cap: usize) -> History<'static> {
    History {
        position,
        cap,
        alertname: "Down",
        ..History::default()
    }
}

fn rates(pairs: &[(&str, Option<f64>)]) -> BTreeMap<String, Option<f64>> {
    pairs.iter().map(|(p, r)| ((*p).to_string(), *r)).collect()
}

fn next(e: Escalation) -> NextStep {
    match e {
        Escalation::Next(n) => n,
        Escalation::ToHumans(h) => panic!("expected a next step, got humans: {h:?}"),
    }
}

fn humans(e: Escalation) -> Handoff {
    match e {
        Escalation::ToHumans(h) => h,
        Escalation::Next(n) => panic!("expected humans, got a next step: {n:?}"),
    }
}

/// The chains every matrix test walks: empty, notify only, playbooks only, mixed, choose.
fn chains() -> Vec<JobSpec> {
    vec![
        spec(vec![]),
        spec(vec![notify("oncall")]),
        spec(vec![playbook("rollback")]),
        spec(vec![notify("oncall"), playbook("rollback"), notify("team")]),
        spec(vec![
            playbook("rollback"),
            notify("oncall"),
            choose(&["raise_memory", "restart"]),
            notify("team"),
        ]),
    ]
}

#[test]
fn an_interrupted_job_goes_to_the_chains_routes_whatever_its_position_cap_or_storm() {
    for spec in chains() {
        for position in 0..=spec.chain.len() + 1 {
            for cap in 0..=spec.chain.len() + 2 {
                for storm_open in [false, true] {
                    let h = History {
                        storm_open,
                        ..history(position, cap)
                    };
                    let handoff = humans(plan(&spec, Ended::Interrupted, &h));
                    assert_eq!(handoff, interrupted(&spec));
                    assert_eq!(handoff.routes, spec.routes());
                    assert!(handoff.why.contains("half-changed"), "{}", handoff.why);
                }
            }
        }
    }
}

#[test]
fn an_inconclusive_result_goes_to_humans_never_down_the_chain() {
    for spec in chains() {
        for position in 0..=spec.chain.len() + 1 {
            for cap in 0..=spec.chain.len() + 2 {
                let handoff = humans(plan(&spec, Ended::Inconclusive, &history(position, cap)));
                assert_eq!(
                    handoff,
                    Handoff {
                        why: "the result could not be measured".into(),
                        routes: spec.routes()
                    }
                );
            }
        }
    }
}

#[test]
fn a_reverted_or_skipped_repair_goes_to_humans_never_down_the_chain_even_with_rates_known() {
    for spec in chains() {
        for position in 0..=spec.chain.len() + 1 {
            for cap in 0..=spec.chain.len() + 2 {
                for storm_open in [false, true] {
                    let mut h = History {
                        storm_open,
                        ..history(position, cap)
                    };
                    h.rates.insert("scale".into(), Some(1.0));
                    let reverted = humans(plan(&spec, Ended::Reverted, &h));
                    assert_eq!(
                        reverted,
                        Handoff {
                            why: "the repair was set back by another field manager; it is not retried: make the change in Git".into(),
                            routes: spec.routes()
                        }
                    );
                    let skipped = humans(plan(&spec, Ended::Skipped, &h));
                    assert_eq!(
                        skipped,
                        Handoff {
                            why:
                                "the target's GitOps owner keeps this change in Git: make it there"
                                    .into(),
                            routes: spec.routes()
                        }
                    );
                }
            }
        }
    }
}

#[test]
fn a_failure_at_the_cap_goes_to_humans_naming_the_cap() {
    for spec in chains() {
        for cap in 0..=spec.chain.len() + 2 {
            for position in cap.saturating_sub(1)..=cap + 1 {
                let handoff = humans(plan(&spec, Ended::Failure, &history(position, cap)));
                assert_eq!(
                    handoff,
                    Handoff {
                        why: format!("the chain reached its cap of {cap} steps"),
                        routes: spec.routes()
                    }
                );
            }
        }
    }
}

#[test]
fn a_failure_below_the_cap_takes_the_first_playbook_at_or_after_its_position() {
    // Cross-checks `plan` against the chain itself for every position and cap.
    for spec in chains() {
        for position in 0..=spec.chain.len() + 1 {
            for cap in position + 2..=position + 4 {
                let e = plan(&spec, Ended::Failure, &history(position, cap));
                let first = spec
                    .chain
                    .iter()
                    .enumerate()
                    .skip(position)
                    .find(|(_, s)| !matches!(s, ChainStep::Notify { .. }));
                let met: Vec<String> = spec.chain[position.min(spec.chain.len())..]
                    .iter()
                    .take_while(|s| matches!(s, ChainStep::Notify { .. }))
                    .map(|s| match s {
                        ChainStep::Notify { route } => route.clone(),
                        _ => unreachable!(),
                    })
                    .collect();
                match first {
                    Some((index, _)) => {
                        let n = next(e);
                        assert_eq!(n.index, index);
                        assert_eq!(n.routes, met);
                    }
                    None => assert_eq!(
                        humans(e),
                        Handoff {
                            why: "the escalation chain is exhausted".into(),
                            routes: met
                        }
                    ),
                }
            }
        }
    }
}

#[test]
fn a_failure_runs_the_next_playbook_with_its_params_telling_the_routes_met_on_the_way() {
    let spec = spec(vec![notify("oncall"), playbook("rollback"), notify("team")]);
    assert_eq!(
        next(plan(&spec, Ended::Failure, &history(0, 5))),
        NextStep {
            index: 1,
            playbook: "rollback".into(),
            params: Params::from_value(&json!({"step": "rollback"})),
            chosen: None,
            routes: vec!["oncall".into()],
        }
    );
}

#[test]
fn the_last_playbook_failing_hands_the_chain_to_the_routes_after_it() {
    let spec = spec(vec![notify("oncall"), playbook("rollback"), notify("team")]);
    // The rollback job stands at position 2: only `team` is left.
    assert_eq!(
        humans(plan(&spec, Ended::Failure, &history(2, 5))),
        Handoff {
            why: "the escalation chain is exhausted".into(),
            routes: vec!["team".into()],
        }
    );
}

#[test]
fn an_empty_chain_hands_to_the_default_human_route() {
    assert_eq!(
        humans(plan(&spec(vec![]), Ended::Failure, &history(0, 5))),
        Handoff {
            why: "the escalation chain is exhausted".into(),
            routes: vec![],
        }
    );
}

#[test]
fn the_storm_brake_stops_the_chain_and_tells_every_route_met_first() {
    let spec = spec(vec![
        notify("early"),
        playbook("rollback"),
        notify("oncall"),
        playbook("raise_memory"),
        notify("team"),
    ]);
    let h = History {
        storm_open: true,
        ..history(2, 9)
    };
    assert_eq!(
        humans(plan(&spec, Ended::Failure, &h)),
        Handoff {
            why: "the storm brake is engaged".into(),
            routes: vec!["oncall".into(), "early".into(), "team".into()],
        }
    );
}

#[test]
fn the_storm_brake_does_not_matter_when_no_playbook_is_left() {
    let spec = spec(vec![playbook("rollback"), notify("team")]);
    let h = History {
        storm_open: true,
        ..history(1, 9)
    };
    assert_eq!(
        humans(plan(&spec, Ended::Failure, &h)).why,
        "the escalation chain is exhausted"
    );
}

#[test]
fn choose_best_takes_the_best_success_rate_and_says_why() {
    let spec = spec(vec![choose(&["restart", "rollback", "raise_memory"])]);
    let h = History {
        rates: rates(&[
            ("restart", Some(0.25)),
            ("rollback", Some(0.8)),
            ("raise_memory", None),
        ]),
        ..history(0, 5)
    };
    let n = next(plan(&spec, Ended::Failure, &h));
    assert_eq!((n.index, n.playbook.as_str()), (0, "rollback"));
    assert_eq!(
        n.chosen.as_deref(),
        Some(
            "chose rollback by success rate for Down (restart 25%, rollback 80%, raise_memory untried)"
        )
    );
}

#[test]
fn choose_best_keeps_chain_order_on_a_tie() {
    let spec = spec(vec![choose(&["restart", "rollback"])]);
    let h = History {
        rates: rates(&[("restart", Some(0.5)), ("rollback", Some(0.5))]),
        ..history(0, 5)
    };
    assert_eq!(next(plan(&spec, Ended::Failure, &h)).playbook, "restart");
}

#[test]
fn choose_best_takes_the_first_alternative_on_a_cold_start() {
    let spec = spec(vec![choose(&["restart", "rollback"])]);
    let n = next(plan(&spec, Ended::Failure, &history(0, 5)));
    assert_eq!(n.playbook, "restart");
    assert_eq!(
        n.chosen.as_deref(),
        Some("chose restart by success rate for Down (restart untried, rollback untried)")
    );
}

#[test]
fn never_worked_ranks_below_untried_which_ranks_below_ever_worked() {
    let spec = spec(vec![choose(&["restart", "rollback"])]);
    for (known, expected) in [
        (rates(&[("restart", Some(0.0))]), "rollback"),
        (rates(&[("rollback", Some(0.1))]), "rollback"),
        (
            rates(&[("restart", Some(0.0)), ("rollback", Some(0.1))]),
            "rollback",
        ),
        (
            rates(&[("restart", Some(0.1)), ("rollback", Some(0.0))]),
            "restart",
        ),
    ] {
        let h = History {
            rates: known.clone(),
            ..history(0, 5)
        };
        assert_eq!(
            next(plan(&spec, Ended::Failure, &h)).playbook,
            expected,
            "{known:?}"
        );
    }
}

#[test]
fn a_choose_step_without_alternatives_is_passed_over() {
    let spec = spec(vec![choose(&[]), playbook("rollback")]);
    assert_eq!(next(plan(&spec, Ended::Failure, &history(0, 5))).index, 1);
}

#[test]
fn the_rates_asked_for_are_the_alternatives_from_the_position_on_each_once() {
    let spec = spec(vec![
        choose(&["a", "b"]),
        playbook("c"),
        choose(&["b", "d"]),
    ]);
    assert_eq!(alternatives(&spec, 0), ["a", "b", "d"]);
    assert_eq!(alternatives(&spec, 1), ["b", "d"]);
    assert!(alternatives(&spec, 3).is_empty());
}
