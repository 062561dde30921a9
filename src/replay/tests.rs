//! How a recorded and a replayed decision are compared (the kinds a rule author sees).

use super::Outcome;
use super::report::Kind;
use crate::decision::Verdict;
use crate::rules::Mode;

fn job(rule: &str, playbook: &str, mode: Mode) -> Outcome {
    Outcome {
        rule: rule.into(),
        verdict: Verdict::Job,
        reason: "plan".into(),
        playbook: Some(playbook.into()),
        mode: Some(mode),
        target: Some("prod/Deployment/web".into()),
        detail: format!("{playbook} on prod/Deployment/web"),
    }
}

fn refused(rule: &str, reason: &str) -> Outcome {
    Outcome {
        rule: rule.into(),
        verdict: Verdict::Refused,
        reason: reason.into(),
        playbook: None,
        mode: None,
        target: Some("prod/Deployment/web".into()),
        detail: format!("{reason} at some time"),
    }
}

#[test]
fn the_same_verdicts_with_other_details_are_no_difference() {
    let mut later = refused("r", "cooldown");
    later.detail = "another sentence naming other times".into();
    assert_eq!(Kind::between(&[refused("r", "cooldown")], &[later]), None);
    let a = job("r", "restart", Mode::Auto);
    assert_eq!(
        Kind::between(std::slice::from_ref(&a), std::slice::from_ref(&a)),
        None
    );
    assert_eq!(Kind::between(&[], &[]), None);
}

#[test]
fn each_kind_of_difference_is_told_apart() {
    let auto = job("r", "restart", Mode::Auto);
    assert_eq!(
        Kind::between(&[], std::slice::from_ref(&auto)),
        Some(Kind::WouldAct)
    );
    assert_eq!(
        Kind::between(&[refused("r", "target_busy")], std::slice::from_ref(&auto)),
        Some(Kind::WouldAct)
    );
    assert_eq!(
        Kind::between(std::slice::from_ref(&auto), &[]),
        Some(Kind::WouldNotAct)
    );
    assert_eq!(
        Kind::between(std::slice::from_ref(&auto), &[refused("r", "cooldown")]),
        Some(Kind::WouldNotAct)
    );
    assert_eq!(
        Kind::between(
            std::slice::from_ref(&auto),
            &[job("s", "restart", Mode::Auto)]
        ),
        Some(Kind::OtherRule)
    );
    assert_eq!(
        Kind::between(
            std::slice::from_ref(&auto),
            &[job("r", "bump-memory", Mode::Auto)]
        ),
        Some(Kind::OtherPlaybook)
    );
    assert_eq!(
        Kind::between(
            std::slice::from_ref(&auto),
            &[job("r", "restart", Mode::Shadow)]
        ),
        Some(Kind::OtherMode)
    );
    assert_eq!(
        Kind::between(&[refused("r", "cooldown")], &[refused("r", "budget")]),
        Some(Kind::OtherVerdict)
    );
    assert_eq!(
        Kind::between(&[refused("r", "cooldown")], &[]),
        Some(Kind::OtherVerdict)
    );
    let beside = [auto.clone(), refused("s", "budget")];
    assert_eq!(
        Kind::between(std::slice::from_ref(&auto), &beside),
        Some(Kind::OtherVerdict)
    );
}

#[test]
fn a_recorded_job_whose_row_was_pruned_is_compared_on_rule_and_verdict() {
    let mut pruned = job("r", "restart", Mode::Auto);
    pruned.playbook = None;
    pruned.mode = None;
    assert_eq!(
        Kind::between(&[pruned], &[job("r", "bump-memory", Mode::Shadow)]),
        None
    );
}
