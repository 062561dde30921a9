use super::*;
use crate::auth::Role;
use crate::job::JobSpec;
use crate::store::AlertDecision;

fn claims(role: Role, apps: &[&str]) -> Claims {
    Claims {
        sub: "console:ann".into(),
        role,
        apps: apps.iter().map(|a| a.to_string()).collect(),
        exp: i64::MAX,
        iat: 0,
        nbf: None,
    }
}

/// A stored alert of app `shop` (also used by the page-rendering test).
pub(in crate::ui::alerts) fn alert(
    id: i64,
    status: &str,
    decisions: Vec<AlertDecision>,
) -> AlertRecord {
    AlertRecord {
        id,
        fingerprint: format!("fp{id}"),
        status: status.into(),
        state: if status == "firing" {
            AlertState::Firing
        } else {
            AlertState::Resolved
        },
        alertname: "KubePodCrashLooping".into(),
        namespace: Some("shop".into()),
        severity: Some("critical".into()),
        labels: [
            ("alertname", "KubePodCrashLooping"),
            ("severity", "critical"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
        annotations: Default::default(),
        starts_at: 1_700_000_000_000,
        ends_at: None,
        resolved_at: None,
        generator_url: String::new(),
        received_at: 1_700_000_001_000,
        decisions,
    }
}

fn decision(verdict: Verdict, reason: &str, detail: &str, job_id: Option<i64>) -> AlertDecision {
    AlertDecision {
        rule: Some("restart-crashloop".into()),
        verdict,
        reason: reason.into(),
        target: Some("shop/Deployment/web".into()),
        job_id,
        sentence: format!("sentence for {reason}"),
        detail: detail.into(),
        decided_at: 1_700_000_001_000,
        requested_by: None,
    }
}

fn job(id: i64, alert_event_id: i64, state: JobState, playbook: &str, chain_index: i64) -> Job {
    Job {
        id,
        alert_event_id,
        fingerprint: "fp".into(),
        alertname: "KubePodCrashLooping".into(),
        rule: "restart-crashloop".into(),
        playbook: playbook.into(),
        spec: JobSpec::new(playbook),
        chain_index,
        parent_id: None,
        target_namespace: "shop".into(),
        target_kind: "Deployment".into(),
        target_name: "web".into(),
        target_key: "shop/Deployment/web".into(),
        dry_run: false,
        timeout_ms: None,
        state,
        not_before: 0,
        created_at: 1_700_000_002_000,
        started_at: None,
        finished_at: None,
        owner: None,
        outcome: None,
        error: None,
        ttr_ms: None,
    }
}

#[test]
fn an_empty_form_limits_the_list_to_the_viewers_apps_one_row_per_occurrence() {
    let f = AlertsQuery::default()
        .filter(&claims(Role::Viewer, &["shop"]), 51)
        .unwrap();
    assert_eq!(f.namespaces, Some(vec!["shop".to_string()]));
    assert!(f.occurrences);
    assert_eq!(f.limit, 51);
    assert!(f.alert_state.is_none() && f.verdict.is_none() && f.automation.is_none());
    // An admin who names no app sees every app.
    let f = AlertsQuery::default()
        .filter(&claims(Role::Admin, &[]), 51)
        .unwrap();
    assert_eq!(f.namespaces, None);
}

#[test]
fn another_apps_name_in_the_form_filters_down_to_nothing() {
    let q = AlertsQuery {
        namespace: "bank".into(),
        ..AlertsQuery::default()
    };
    let f = q.filter(&claims(Role::Editor, &["shop"]), 51).unwrap();
    assert_eq!(f.namespaces, Some(Vec::new()));
}

#[test]
fn every_filter_of_the_form_reaches_the_store_filter() {
    let q = AlertsQuery {
        namespace: " shop ".into(),
        alertname: "KubePodCrashLooping".into(),
        severity: "critical".into(),
        verdict: "refused".into(),
        reason: "cooldown".into(),
        automation: "running".into(),
        state: "firing".into(),
        before: Some(90),
    };
    let f = q.filter(&claims(Role::Admin, &[]), 51).unwrap();
    assert_eq!(f.namespaces, Some(vec!["shop".to_string()]));
    assert_eq!(f.subject.as_deref(), Some("KubePodCrashLooping"));
    assert_eq!(f.severity.as_deref(), Some("critical"));
    assert_eq!(f.verdict, Some(Verdict::Refused));
    assert_eq!(f.reason.as_deref(), Some("cooldown"));
    assert_eq!(f.automation, Some(Automation::Job(JobState::Running)));
    assert_eq!(f.alert_state, Some(AlertState::Firing));
    assert_eq!(f.before_id, Some(90));
    let none = AlertsQuery {
        automation: "none".into(),
        ..AlertsQuery::default()
    };
    assert_eq!(
        none.filter(&claims(Role::Admin, &[]), 5)
            .unwrap()
            .automation,
        Some(Automation::None)
    );
}

#[test]
fn a_value_no_select_offers_is_refused_naming_its_field() {
    for (field, q) in [
        (
            "state",
            AlertsQuery {
                state: "burning".into(),
                ..Default::default()
            },
        ),
        (
            "verdict",
            AlertsQuery {
                verdict: "maybe".into(),
                ..Default::default()
            },
        ),
        (
            "reason",
            AlertsQuery {
                reason: "bored".into(),
                ..Default::default()
            },
        ),
        (
            "automation",
            AlertsQuery {
                automation: "dancing".into(),
                ..Default::default()
            },
        ),
    ] {
        let e = q.filter(&claims(Role::Admin, &[]), 5).unwrap_err();
        assert!(
            matches!(&e, Error::Unknown { field: f, .. } if *f == field),
            "{e}"
        );
        assert!(
            e.in_lang(Lang::ZhTw).contains(field),
            "{}",
            e.in_lang(Lang::ZhTw)
        );
    }
}

#[test]
fn a_row_names_every_repair_and_its_newest_state_and_every_reason_it_did_nothing() {
    let a = alert(
        7,
        "firing",
        vec![
            decision(Verdict::Job, "plan", "restart", Some(3)),
            decision(
                Verdict::Refused,
                "cooldown",
                "restart-crashloop repaired shop/Deployment/web 4 min ago",
                None,
            ),
        ],
    );
    let jobs = [
        job(3, 7, JobState::Escalated, "restart-deployment", 0),
        job(4, 7, JobState::Running, "rollback-deployment", 1),
        job(5, 8, JobState::Succeeded, "other-alerts-job", 0),
    ];
    let v = list(
        &AlertsQuery::default(),
        &claims(Role::Admin, &[]),
        vec![a],
        &jobs,
        50,
    );
    let r = &v.rows[0];
    assert_eq!(
        r.automation, "running",
        "the chain's newest step is the state"
    );
    let ids: Vec<i64> = r.jobs.iter().map(|j| j.id).collect();
    assert_eq!(ids, [3, 4], "only this alert's jobs");
    assert_eq!(r.jobs[1].playbook, "rollback-deployment");
    assert_eq!(r.jobs[0].badge, "bad");
    assert_eq!(r.no_action.len(), 1, "the job's own decision is its repair");
    assert_eq!(r.no_action[0].reason, "cooldown");
    assert!(r.no_action[0].detail.contains("4 min ago"));
    assert!(!r.resolve_only);
}

#[test]
fn an_alert_without_a_job_has_automation_none_and_a_resolve_alone_says_so() {
    let firing = alert(
        2,
        "firing",
        vec![decision(Verdict::Skipped, "no_rule", "", None)],
    );
    let resolve = alert(1, "resolved", Vec::new());
    let v = list(
        &AlertsQuery::default(),
        &claims(Role::Admin, &[]),
        vec![firing, resolve],
        &[],
        50,
    );
    assert_eq!(v.rows[0].automation, "none");
    assert_eq!(v.rows[0].no_action[0].verdict, "skipped");
    assert!(v.rows[1].resolve_only);
}

#[test]
fn a_page_with_one_more_row_than_shown_links_to_the_older_page_with_the_same_filters() {
    let alerts: Vec<AlertRecord> = (1..=3)
        .rev()
        .map(|id| alert(id, "firing", vec![]))
        .collect();
    let q = AlertsQuery {
        severity: "critical".into(),
        alertname: "Kube Pod".into(),
        ..AlertsQuery::default()
    };
    let v = list(&q, &claims(Role::Admin, &[]), alerts, &[], 2);
    assert_eq!(v.rows.len(), 2);
    assert_eq!(
        v.older.as_deref(),
        Some("/ui/alerts?alertname=Kube+Pod&severity=critical&before=2")
    );
    assert!(v.filtered);
    let v = list(
        &AlertsQuery::default(),
        &claims(Role::Admin, &[]),
        vec![alert(1, "firing", vec![])],
        &[],
        2,
    );
    assert_eq!(v.older, None);
    assert!(!v.filtered);
}

#[test]
fn only_http_and_https_addresses_become_links() {
    assert_eq!(
        web_link(" https://runbooks.example/crashloop#web "),
        Some("https://runbooks.example/crashloop#web".into())
    );
    assert!(web_link("http://prometheus:9090/graph?g0.expr=up").is_some());
    for bad in [
        "javascript:alert(1)",
        "data:text/html,<b>x</b>",
        "/relative/path",
        "ftp://files.example/x",
        "https://",
        "",
    ] {
        assert_eq!(web_link(bad), None, "{bad}");
    }
}

#[test]
fn the_alert_page_links_the_runbook_and_a_web_generator_url_and_shows_other_text_as_text() {
    let mut a = alert(9, "firing", vec![]);
    a.generator_url = "http://prometheus.example/graph?g0.expr=up".into();
    a.annotations.insert(
        "runbook_url".into(),
        "https://runbooks.example/crashloop".into(),
    );
    a.annotations
        .insert("summary".into(), "https://not-linked.example".into());
    let v = detail(a, &[]);
    assert_eq!(
        v.generator_link.as_deref(),
        Some("http://prometheus.example/graph?g0.expr=up")
    );
    assert_eq!(v.generator_text, None);
    assert_eq!(
        v.runbook_link.as_deref(),
        Some("https://runbooks.example/crashloop")
    );
    let summary = v.annotations.iter().find(|p| p.key == "summary").unwrap();
    assert_eq!(summary.href, None, "only runbook_url is a link");

    let mut a = alert(10, "firing", vec![]);
    a.generator_url = "javascript:alert(1)".into();
    let v = detail(a, &[]);
    assert_eq!(v.generator_link, None);
    assert_eq!(v.generator_text.as_deref(), Some("javascript:alert(1)"));
}

#[test]
fn every_reason_verdict_job_state_and_filter_option_has_words_in_both_languages() {
    let o = Options::for_viewer(&claims(Role::Admin, &[]));
    let mut keys: Vec<String> = Vec::new();
    keys.extend(o.reasons.iter().map(|r| format!("alerts.reason.{r}")));
    keys.extend(o.verdicts.iter().map(|v| format!("alerts.verdict.{v}")));
    keys.extend(o.states.iter().map(|s| format!("alerts.state.{s}")));
    keys.extend(
        JobState::ALL
            .iter()
            .map(|s| format!("alerts.job_state.{}", s.as_str())),
    );
    for key in keys {
        for lang in Lang::ALL {
            assert!(lang.word(&key).is_some(), "{key} has no {lang:?} word");
        }
    }
}
