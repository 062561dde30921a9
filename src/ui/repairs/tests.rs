//! The repairs pages rendered from views built here, without HTTP or a store.

use super::*;
use crate::auth::Role;
use crate::job::JobSpec;
use crate::ui::{Console, Lang};

pub(crate) fn job(id: i64, state: JobState) -> Job {
    Job {
        id,
        alert_event_id: 7,
        fingerprint: "fp".into(),
        alertname: "KubePodCrashLooping".into(),
        rule: "crashloop".into(),
        playbook: "restart".into(),
        spec: JobSpec::new("restart"),
        chain_index: 0,
        parent_id: None,
        target_namespace: "prod".into(),
        target_kind: "Deployment".into(),
        target_name: "web".into(),
        target_key: "prod/Deployment/web".into(),
        dry_run: false,
        timeout_ms: None,
        state,
        not_before: 1_000,
        created_at: 1_000,
        started_at: Some(2_000),
        finished_at: None,
        owner: None,
        outcome: None,
        error: None,
        ttr_ms: None,
    }
}

pub(super) fn viewer(lang: Lang) -> Viewer {
    Viewer {
        claims: Claims {
            sub: "console:ana".into(),
            role: Role::Admin,
            apps: Vec::new(),
            exp: 0,
            iat: 0,
            nbf: None,
        },
        name: "ana".into(),
        csrf: "c".into(),
        lang,
        path: "/ui/repairs".into(),
        session: String::new(),
    }
}

pub(super) async fn body(r: Response) -> String {
    let bytes = axum::body::to_bytes(r.into_body(), usize::MAX)
        .await
        .unwrap();
    String::from_utf8(bytes.to_vec()).unwrap()
}

fn console() -> std::sync::Arc<Console> {
    Console::from_settings(&crate::config::Settings::default())
        .expect("the console is on by default")
}

#[tokio::test]
async fn the_list_renders_each_repair_with_its_state_in_words_in_both_languages() {
    let c = console();
    let p = ListParams {
        state: Some("succeeded".into()),
        ..ListParams::default()
    };
    for (lang, word) in [(Lang::En, "succeeded"), (Lang::ZhTw, "成功")] {
        let view = list_view(&p, vec![job(3, JobState::Succeeded)], vec!["prod".into()]);
        let html = body(page(&c, &viewer(lang), "repairs.html", view).unwrap()).await;
        assert!(
            html.contains("<tr data-repair-id=\"3\" data-state=\"succeeded\">"),
            "{html}"
        );
        assert!(
            html.contains(&format!("class=\"badge ok\">{word}</span>")),
            "{html}"
        );
        assert!(
            html.contains("<option value=\"succeeded\" selected>"),
            "{html}"
        );
    }
}

#[test]
fn a_full_page_links_to_the_next_older_page_keeping_the_filters() {
    let p = ListParams {
        mode: Some("auto".into()),
        target: Some("prod/Deployment/web".into()),
        state: Some(String::new()),
        ..ListParams::default()
    };
    let jobs: Vec<Job> = (0..PAGE).map(|i| job(1000 - i, JobState::Failed)).collect();
    let view = list_view(&p, jobs, Vec::new());
    assert_eq!(
        view.next.as_deref(),
        Some(
            format!(
                "mode=auto&target=prod%2FDeployment%2Fweb&cursor={}",
                1000 - PAGE + 1
            )
            .as_str()
        )
    );
    let short = list_view(&p, vec![job(1, JobState::Failed)], Vec::new());
    assert_eq!(short.next, None, "a short page is the last");
}

#[test]
fn another_apps_name_filters_down_to_nothing_and_an_unknown_state_is_refused() {
    let mut v = viewer(Lang::En);
    v.claims.role = Role::Editor;
    v.claims.apps = vec!["prod".into()];
    let bad = |k: &str| UiError::BadRequest {
        message: k.to_string(),
        lang: Lang::En,
    };
    let f = ListParams {
        namespace: Some("staging".into()),
        ..ListParams::default()
    }
    .filter(&v.claims, bad)
    .unwrap();
    assert_eq!(f.namespaces, Some(Vec::new()));
    let f = ListParams::default().filter(&v.claims, bad).unwrap();
    assert_eq!(f.namespaces, Some(vec!["prod".to_string()]));
    let e = ListParams {
        state: Some("exploded".into()),
        ..ListParams::default()
    }
    .filter(&v.claims, bad)
    .unwrap_err();
    assert!(matches!(e, UiError::BadRequest { message, .. } if message == "repairs.error.state"));
}

#[tokio::test]
async fn the_timeline_page_renders_every_kind_of_entry_in_both_languages() {
    use crate::store::{ApprovalRecord, Escalation, JobEvent, Note, Step};
    let c = console();
    let mut job = job(9, JobState::Reverted);
    job.spec.mode = Mode::Approve;
    let data = || TimelineData {
        chain: vec![job.clone()],
        events: vec![JobEvent {
            from: Some("verifying".into()),
            to: "reverted".into(),
            at: 5_000,
            note: "set back by argocd".into(),
        }],
        steps: vec![Step {
            at: 3_000,
            action: "gitops_hold".into(),
            detail: "paused Argo CD sync of web".into(),
        }],
        gitops: None,
        escalations: vec![Escalation {
            job_id: Some(9),
            kind: "human".into(),
            destination: "default".into(),
            reason: "manual intervention required".into(),
            created_at: 6_000,
        }],
        notifications: Vec::new(),
        approvals: vec![ApprovalRecord {
            job_id: 9,
            choice: "approve".into(),
            who: "console:ana".into(),
            name: "ana".into(),
            via: "console".into(),
            decided_at: 1_500,
            outcome: "approved".into(),
        }],
        notes: vec![Note {
            id: 1,
            namespace: "prod".into(),
            alertname: None,
            target: Some("prod/Deployment/web".into()),
            author: "ops".into(),
            body: "<b>check the HPA</b>".into(),
            created_at: 7_000,
        }],
        alert: None,
        job: job.clone(),
    };
    for (lang, reverted) in [
        (Lang::En, "reverted by GitOps"),
        (Lang::ZhTw, "已被 GitOps 還原"),
    ] {
        let html = body(page(&c, &viewer(lang), "repair.html", repair_view(data())).unwrap()).await;
        assert!(
            html.contains("id=\"repair-state\" data-state=\"reverted\""),
            "{html}"
        );
        assert!(html.contains(reverted), "{html}");
        assert!(
            html.contains("id=\"repair-reverted\""),
            "said plainly: {html}"
        );
        for kind in ["state", "gitops", "escalation", "approval", "note"] {
            assert!(
                html.contains(&format!("data-kind=\"{kind}\"")),
                "{kind}: {html}"
            );
        }
        assert!(!html.contains("<b>check"), "notes are escaped: {html}");
    }
}

#[tokio::test]
async fn a_repair_run_by_hand_says_who_ran_it_and_why_in_both_languages() {
    let c = console();
    let mut job = job(4, JobState::Queued);
    job.spec.by_hand = Some(crate::job::ByHand {
        by: "alice".into(),
        reason: Some("web <stuck> after the deploy".into()),
    });
    for (lang, by_hand, badge) in [
        (Lang::En, "Run by hand by", "by hand: alice"),
        (Lang::ZhTw, "手動執行者", "手動: alice"),
    ] {
        let view = list_view(&ListParams::default(), vec![job.clone()], Vec::new());
        let html = body(page(&c, &viewer(lang), "repairs.html", view).unwrap()).await;
        assert!(html.contains(badge), "{html}");
        let data = TimelineData {
            chain: vec![job.clone()],
            events: Vec::new(),
            steps: Vec::new(),
            gitops: None,
            escalations: Vec::new(),
            notifications: Vec::new(),
            approvals: Vec::new(),
            notes: Vec::new(),
            alert: None,
            job: job.clone(),
        };
        let html = body(page(&c, &viewer(lang), "repair.html", repair_view(data)).unwrap()).await;
        assert!(html.contains(by_hand), "{html}");
        assert!(
            html.contains("<dd id=\"repair-by-hand\">alice</dd>"),
            "{html}"
        );
        assert!(
            html.contains("web &lt;stuck&gt; after the deploy"),
            "the reason is shown, escaped: {html}"
        );
    }
    // A repair an alert started says nothing of the kind.
    let view = list_view(
        &ListParams::default(),
        vec![self::job(5, JobState::Queued)],
        Vec::new(),
    );
    let html = body(page(&c, &viewer(Lang::En), "repairs.html", view).unwrap()).await;
    assert!(!html.contains("by-hand"), "{html}");
}
