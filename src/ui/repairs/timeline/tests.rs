//! The timeline's ordering, badges and links, from store rows built by hand.

use super::*;
use crate::store::{AlertDecision, AlertState, NotificationAttempt, NotificationState};
use crate::ui::repairs::tests::job;

fn data(job: Job) -> TimelineData {
    TimelineData {
        job,
        alert: None,
        chain: Vec::new(),
        events: Vec::new(),
        steps: Vec::new(),
        gitops: None,
        escalations: Vec::new(),
        notifications: Vec::new(),
        approvals: Vec::new(),
        notes: Vec::new(),
    }
}

fn step(at: i64, action: &str, detail: &str) -> Step {
    Step {
        at,
        action: action.into(),
        detail: detail.into(),
    }
}

#[test]
fn entries_are_in_time_order_and_steps_say_how_long_each_took() {
    let mut d = data(job(5, JobState::Reverted));
    d.alert = Some(AlertRecord {
        id: 7,
        fingerprint: "fp".into(),
        status: "firing".into(),
        state: AlertState::Firing,
        alertname: "KubePodCrashLooping".into(),
        namespace: Some("prod".into()),
        severity: None,
        labels: Default::default(),
        annotations: Default::default(),
        starts_at: 500,
        ends_at: None,
        resolved_at: None,
        generator_url: "javascript:alert(1)".into(),
        received_at: 900,
        decisions: vec![AlertDecision {
            rule: Some("crashloop".into()),
            verdict: Verdict::Job,
            reason: "plan".into(),
            target: Some("prod/Deployment/web".into()),
            job_id: Some(5),
            sentence: "rule crashloop matched; job 5 repairs it".into(),
            detail: String::new(),
            decided_at: 950,
            requested_by: None,
        }],
    });
    d.events = vec![JobEvent {
        from: None,
        to: "queued".into(),
        at: 1_000,
        note: "created".into(),
    }];
    d.steps = vec![
        step(2_500, "restart", "restart prod/Deployment/web"),
        step(4_000, "verify", "reverted: Argo CD set it back"),
    ];
    d.notifications = vec![JobNotification {
        id: 1,
        event: "escalation".into(),
        channel: "ops-slack".into(),
        subject: "web needs a human".into(),
        state: NotificationState::Sent,
        last_error: None,
        created_at: 4_100,
        sent_at: Some(4_300),
        attempts: vec![
            NotificationAttempt {
                at: 4_200,
                result: "retry".into(),
                http_status: Some(429),
                retry_after_ms: Some(100),
                detail: "rate limited".into(),
            },
            NotificationAttempt {
                at: 4_300,
                result: "sent".into(),
                http_status: Some(200),
                retry_after_ms: None,
                detail: "accepted".into(),
            },
        ],
    }];
    let e = build(&d);
    let kinds: Vec<&str> = e.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            "alert",
            "decision",
            "state",
            "step",
            "verify",
            "notification"
        ]
    );
    assert!(e.windows(2).all(|w| w[0].at <= w[1].at));
    // The restart took 500ms from the run's start (2,000), the verification 1.5s after it.
    assert_eq!(e[3].facts.last().unwrap().value, "500ms");
    assert_eq!(e[3].facts[0].value, "prod/Deployment/web");
    assert_eq!(e[4].facts.last().unwrap().value, "1s");
    assert_eq!(
        e[4].badge,
        Some(Badge {
            class: "bad",
            key: "repairs.step.reverted"
        })
    );
    let n = &e[5];
    assert_eq!(n.attempts.len(), 2);
    assert_eq!(n.attempts[0].badge.key, "repairs.notify.retry");
    assert_eq!(n.attempts[0].http_status, Some(429));
    assert_eq!(n.attempts[1].badge.key, "repairs.notify.sent");
}

#[test]
fn only_http_and_https_urls_become_links() {
    assert_eq!(
        http_link(" https://grafana.example/d/1 ").as_deref(),
        Some("https://grafana.example/d/1")
    );
    assert_eq!(
        http_link("HTTP://prom:9090/graph").as_deref(),
        Some("HTTP://prom:9090/graph")
    );
    assert_eq!(http_link("javascript:alert(1)"), None);
    assert_eq!(http_link("data:text/html,x"), None);
    assert_eq!(http_link(""), None);
}

#[test]
fn a_steps_target_is_the_first_namespace_kind_name_it_names() {
    assert_eq!(
        target_in("scale prod/Deployment/web to 3 (was 2)").as_deref(),
        Some("prod/Deployment/web")
    );
    assert_eq!(target_in("GET https://a/b/c -> 200"), None);
    assert_eq!(target_in("nothing to see"), None);
}

#[test]
fn the_events_command_names_the_targets_namespace_kind_and_name() {
    assert_eq!(
        events_command(&job(1, JobState::Running)),
        "kubectl get events --namespace prod --field-selector involvedObject.kind=Deployment,involvedObject.name=web"
    );
}

#[test]
fn approvals_say_who_decided_through_which_channel_and_refusals_say_why() {
    let mut d = data(job(5, JobState::Queued));
    d.approvals = vec![
        ApprovalRecord {
            job_id: 5,
            choice: "approve".into(),
            who: "slack:U1".into(),
            name: "Mallory".into(),
            via: "slack".into(),
            decided_at: 10,
            outcome: "not_allowed".into(),
        },
        ApprovalRecord {
            job_id: 5,
            choice: "approve".into(),
            who: "console:ana".into(),
            name: "ana".into(),
            via: "console".into(),
            decided_at: 20,
            outcome: "approved".into(),
        },
    ];
    let e = build(&d);
    assert_eq!(e[0].badge.unwrap().key, "repairs.approval.refused");
    assert!(e[0].facts.iter().any(|f| f.value == "not_allowed"));
    assert_eq!(e[1].badge.unwrap().key, "repairs.approval.approved");
    assert_eq!(e[1].subject, "ana");
    assert!(
        e[1].facts
            .iter()
            .any(|f| f.key == "repairs.fact.via" && f.value == "console")
    );
}
