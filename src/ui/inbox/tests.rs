use super::*;

#[test]
fn a_notice_survives_its_cookie_in_both_languages_and_nothing_else_reads_as_one() {
    for n in [
        Notice {
            ok: true,
            text: "Approved: repair job 3 will run now.".into(),
        },
        Notice {
            ok: false,
            text: "已拒絕：你不在此修復的核准名單上；這次點擊已記錄。".into(),
        },
    ] {
        let v = n.encode();
        assert!(
            v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'%' || b == b':'),
            "{v}"
        );
        assert_eq!(Notice::decode(&v), Some(n));
    }
    assert_eq!(Notice::decode("maybe:hello"), None);
    assert_eq!(Notice::decode("no colon"), None);
}

/// A viewer for rendering without HTTP.
fn viewer(role: crate::auth::Role, apps: &[&str], lang: Lang) -> Viewer {
    Viewer {
        claims: crate::auth::Claims {
            sub: "console:alice".into(),
            role,
            apps: apps.iter().map(|a| a.to_string()).collect(),
            exp: 0,
            iat: 0,
            nbf: None,
        },
        name: "alice".into(),
        csrf: "csrf-token".into(),
        lang,
        path: "/ui/inbox".into(),
        session: String::new(),
    }
}

fn rendered(view: &InboxView, v: &Viewer) -> String {
    let mut settings = crate::config::Settings::default();
    settings.ui.enabled = true;
    let c = super::super::Console::from_settings(&settings).unwrap();
    let tmpl = c.env().get_template("inbox.html").unwrap();
    let ctx = minijinja::context! {
        lang => v.lang.code(),
        langs => Vec::<String>::new(),
        user => minijinja::context! { name => &v.name, role => v.claims.role.as_str() },
        csrf => &v.csrf,
        path => &v.path,
        ..minijinja::Value::from(minijinja::value::Serde(view))
    };
    tmpl.render(ctx).unwrap_or_else(|e| panic!("{e:#}"))
}

fn empty(can_write: bool) -> InboxView {
    InboxView {
        notice: None,
        can_write,
        apps: Some(vec!["prod".into()]),
        waiting: Vec::new(),
        windows: Vec::new(),
        holds: Vec::new(),
        form: MaintenanceForm::default(),
    }
}

#[test]
fn an_empty_inbox_renders_in_both_languages_with_the_form_for_writers_only() {
    for lang in Lang::ALL {
        let editor = rendered(
            &empty(true),
            &viewer(crate::auth::Role::Editor, &["prod"], lang),
        );
        assert!(editor.contains("id=\"maintenance-form\""), "{editor}");
        let viewer_page = rendered(
            &empty(false),
            &viewer(crate::auth::Role::Viewer, &["prod"], lang),
        );
        assert!(!viewer_page.contains("id=\"maintenance-form\""));
    }
}

mod views {
    use super::super::view::*;
    use crate::auth::{Claims, Role};
    use crate::maintenance::{Key, Window, WindowSpec};
    use crate::rules::Approver;
    use crate::store::{AwaitingApproval, Job, JobState};

    const HOUR: i64 = 3_600_000;
    /// 2026-11-30T12:00:00Z.
    const NOW: i64 = 1_796_040_000_000;

    fn claims(role: Role) -> Claims {
        Claims {
            sub: "console:alice".into(),
            role,
            apps: vec!["prod".into()],
            exp: 0,
            iat: 0,
            nbf: None,
        }
    }

    fn job(id: i64, approvers: &[&str]) -> Job {
        let mut spec = crate::job::JobSpec::new("restart");
        spec.mode = crate::rules::Mode::Approve;
        spec.approval = Some(crate::rules::ApprovalPolicy {
            expires: std::time::Duration::from_secs(600),
            approvers: approvers.iter().map(|a| a.parse().unwrap()).collect(),
        });
        Job {
            id,
            alert_event_id: 1,
            fingerprint: "f".into(),
            alertname: "KubePodCrashLooping".into(),
            rule: "restart-web".into(),
            playbook: "restart".into(),
            spec,
            chain_index: 0,
            parent_id: None,
            target_namespace: "prod".into(),
            target_kind: "Deployment".into(),
            target_name: "web".into(),
            target_key: "prod/Deployment/web".into(),
            dry_run: false,
            timeout_ms: None,
            state: JobState::AwaitingApproval,
            not_before: NOW,
            created_at: NOW,
            started_at: None,
            finished_at: None,
            owner: None,
            outcome: None,
            error: None,
            ttr_ms: None,
        }
    }

    #[test]
    fn a_waiting_repair_says_who_may_approve_and_whether_the_viewer_is_among_them() {
        let waiting = [
            AwaitingApproval {
                job: job(7, &["console:alice", "telegram:42"]),
                expires_at: Some(NOW + HOUR),
            },
            AwaitingApproval {
                job: job(8, &["telegram:42"]),
                expires_at: None,
            },
        ];
        let me: Approver = "console:alice".parse().unwrap();

        let rows = waiting_rows(&waiting, &me);

        assert_eq!(rows[0].approvers, ["console:alice", "telegram:42"]);
        assert!(rows[0].viewer_may_approve);
        assert_eq!(
            rows[0].expires.as_ref().map(|e| e.iso.as_str()),
            Some("2026-11-30T13:00:00.000Z")
        );
        assert!(!rows[1].viewer_may_approve, "not on job 8's list");
        assert_eq!(rows[1].expires, None);
        assert_eq!(
            (
                rows[0].target.as_str(),
                rows[0].rule.as_str(),
                rows[0].playbook.as_str()
            ),
            ("prod/Deployment/web", "restart-web", "restart")
        );
    }

    fn window(id: i64, start: &str, end: &str) -> Window {
        let spec = WindowSpec {
            name: Some(format!("w{id}")),
            namespace: Some("prod".into()),
            start: Some(start.into()),
            end: Some(end.into()),
            reason: "upgrade".into(),
            created_by: Some("console:alice".into()),
            ..Default::default()
        };
        Window::compile(Key::Stored(id), &spec).unwrap()
    }

    #[test]
    fn windows_are_listed_open_then_upcoming_then_ended_and_only_writers_may_end_live_ones() {
        let mut ended_early = window(4, "2026-11-30T11:00:00Z", "2026-11-30T15:00:00Z");
        ended_early.ended_at = Some(NOW - HOUR / 2);
        let windows = [
            window(1, "2026-11-30T08:00:00Z", "2026-11-30T09:00:00Z"),
            window(2, "2026-11-30T14:00:00Z", "2026-11-30T15:00:00Z"),
            window(3, "2026-11-30T11:00:00Z", "2026-11-30T13:00:00Z"),
            ended_early,
        ];

        let rows = window_rows(&windows, &claims(Role::Editor), NOW);

        let order: Vec<(Option<i64>, WindowState, bool)> =
            rows.iter().map(|r| (r.id, r.state, r.can_end)).collect();
        assert_eq!(
            order,
            [
                (Some(3), WindowState::Open, true),
                (Some(2), WindowState::Upcoming, true),
                (Some(4), WindowState::Ended, false),
                (Some(1), WindowState::Ended, false),
            ]
        );
        let early = &rows[2];
        assert_eq!(
            early.to.as_ref().map(|t| t.iso.as_str()),
            Some("2026-11-30T11:30:00.000Z"),
            "an ended-early window shows when it was ended"
        );
        let viewer = window_rows(&windows, &claims(Role::Viewer), NOW);
        assert!(viewer.iter().all(|r| !r.can_end));
    }

    #[test]
    fn the_form_makes_a_one_off_window_from_an_end_or_a_duration_and_from_now_when_no_start() {
        let form = MaintenanceForm {
            namespace: " prod ".into(),
            duration: "90m".into(),
            reason: " upgrade ".into(),
            ..Default::default()
        };
        let spec = form.spec(NOW).unwrap();
        assert_eq!(spec.start.as_deref(), Some("2026-11-30T12:00:00Z"));
        assert_eq!(spec.end.as_deref(), Some("2026-11-30T13:30:00Z"));
        assert_eq!(
            (
                spec.namespace.as_deref(),
                spec.name,
                spec.rule,
                spec.reason.as_str()
            ),
            (Some("prod"), None, None, "upgrade")
        );

        let form = MaintenanceForm {
            start: "2026-12-01T06:00:00+08:00".into(),
            end: "2026-12-01T07:00:00+08:00".into(),
            ..Default::default()
        };
        let spec = form.spec(NOW).unwrap();
        assert_eq!(spec.start.as_deref(), Some("2026-11-30T22:00:00Z"));
        assert_eq!(spec.end.as_deref(), Some("2026-12-01T07:00:00+08:00"));

        let both = MaintenanceForm {
            end: "2026-12-01T07:00:00Z".into(),
            duration: "1h".into(),
            ..Default::default()
        };
        assert_eq!(both.spec(NOW).unwrap_err(), FormError::EndOrDuration);
        assert_eq!(
            MaintenanceForm::default().spec(NOW).unwrap_err(),
            FormError::EndOrDuration
        );
        let bad = MaintenanceForm {
            start: "tomorrow".into(),
            duration: "1h".into(),
            ..Default::default()
        };
        assert_eq!(bad.spec(NOW).unwrap_err(), FormError::Start);
        let bad = MaintenanceForm {
            duration: "soon".into(),
            ..Default::default()
        };
        assert!(matches!(bad.spec(NOW), Err(FormError::Duration(_))));
    }
}
