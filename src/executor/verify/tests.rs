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
