//! The console's inbox on a real daemon: repairs waiting for approval decided from the page
//! (the same allow-list, audit and exactly-once as a chat click), what a viewer and another
//! app's user get, forms without the CSRF token, maintenance windows created and ended from
//! the page (and holding alerts), and GitOps holds released from it.

use crate::both_backends;
use crate::common;

use aiops::auth::Role;
use aiops::gitops::{Controller, Field, FieldChange, GitChange, HoldMechanism, HoldPlacement};
use aiops::rules::{ChangeKind, Target};
use aiops::store::{Job, JobState, NewHold, Store, now_ms};
use common::console::{ConsoleClient, Page};
use common::wait::{DEFAULT_WITHIN, until};
use common::{Db, Spawn, TestApp, payload};
use reqwest::StatusCode;

const RULES: &str = r#"
rules:
  - name: restart-web
    matchers: ['auto_repair="restart"']
    playbook: restart
    params: {rollout_timeout: 1m}
    mode: approve
    approval: {expires: 10m, approvers: ["console:alice", "telegram:42"]}
"#;

fn alert(namespace: &str) -> String {
    payload(
        &[(
            &[
                ("alertname", "KubePodCrashLooping"),
                ("auto_repair", "restart"),
                ("namespace", namespace),
                ("app", "web"),
            ],
            "firing",
        )],
        "2026-11-26T04:00:00Z",
    )
}

/// The daemon with the approve rule, and one repair of `prod/Deployment/web` waiting.
async fn waiting(db: Db) -> (TestApp, Job) {
    let app = TestApp::spawn_app(Spawn::new(db).rules(RULES)).await;
    app.post_webhook(alert("prod")).await;
    let job = one_job(&app, JobState::AwaitingApproval).await;
    (app, job)
}

async fn one_job(app: &TestApp, state: JobState) -> Job {
    let jobs = app
        .wait_for_jobs(&format!("one job {state}"), |j| {
            j.len() == 1 && j[0].state == state
        })
        .await;
    jobs[0].clone()
}

/// A page's text with the entities the HTML escaping writes turned back into characters.
fn text(html: &str) -> String {
    html.replace("&#x2f;", "/")
        .replace("&#x27;", "'")
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// Follows a post-redirect-get as a browser does: the redirect's one-shot notice cookie goes
/// with the session to `/ui/inbox`.
async fn follow(c: &ConsoleClient, posted: &Page) -> Page {
    assert_eq!(posted.status, StatusCode::SEE_OTHER, "{}", posted.body);
    assert_eq!(posted.location(), Some("/ui/inbox"));
    let notice = posted.headers["set-cookie"].to_str().unwrap();
    assert!(
        notice.contains("HttpOnly") && notice.contains("Path=/ui/inbox"),
        "{notice}"
    );
    let pair = notice.split(';').next().unwrap();
    let r = c
        .http
        .get(format!("{}/ui/inbox", c.base))
        .header("cookie", format!("aiops_session={}; {pair}", c.token))
        .send()
        .await
        .unwrap();
    let status = r.status();
    let headers = r.headers().clone();
    let body = text(&r.text().await.unwrap());
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        headers["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0"),
        "the notice is shown once"
    );
    Page {
        status,
        headers,
        body,
    }
}

/// The text of `#inbox-notice`.
fn notice(page: &Page) -> &str {
    let start = page
        .body
        .find("id=\"inbox-notice\"")
        .unwrap_or_else(|| panic!("no #inbox-notice: {}", page.body));
    let rest = &page.body[start..];
    let open = rest.find('>').unwrap() + 1;
    &rest[open..rest.find("</p>").unwrap()]
}

async fn runs(store: &Store, job: i64) -> usize {
    let events = store.job_events(job).await.unwrap();
    events.iter().filter(|e| e.to == "running").count()
}

async fn an_allow_listed_editor_approves_from_the_inbox_and_two_clicks_run_the_repair_once(db: Db) {
    // Arrange
    let (app, job) = waiting(db).await;
    let alice = ConsoleClient::direct(&app, "alice", Role::Editor, &["prod"]).await;

    // Act: the inbox shows what waits.
    let page = alice.get("/ui/inbox").await;
    let html = text(&page.body);

    // Assert: what, target, rule, who may approve, expiry, and the two buttons.
    assert_eq!(page.status, StatusCode::OK);
    assert!(html.contains("<section id=\"page-inbox\">"), "{html}");
    assert!(
        html.contains(&format!("data-approval-job=\"{}\"", job.id)),
        "{html}"
    );
    for needle in [
        "prod/Deployment/web",
        "KubePodCrashLooping",
        "<code>restart</code>",
        "restart-web",
        "console:alice",
        "telegram:42",
        "You are on the list",
        &format!("id=\"approve-{}\"", job.id),
        &format!("id=\"reject-{}\"", job.id),
        "<time datetime=\"",
    ] {
        assert!(html.contains(needle), "{needle} missing: {html}");
    }

    // Act: Approve is clicked twice at once (a double click, two tabs).
    let path = format!("/ui/repairs/{}/approve", job.id);
    let (a, b) = tokio::join!(alice.post(&path, &[]), alice.post(&path, &[]));
    let (a, b) = (follow(&alice, &a).await, follow(&alice, &b).await);

    // Assert: one approval, one "already decided", and the repair ran once.
    let mut said = [notice(&a).to_string(), notice(&b).to_string()];
    said.sort_by_key(|s| !s.starts_with("Approved"));
    assert_eq!(
        said[0],
        format!("Approved: repair job {} will run now.", job.id),
        "{said:?}"
    );
    assert!(
        said[1].starts_with("Already decided: alice (console:alice) approved this repair at"),
        "{said:?}"
    );
    let done = one_job(&app, JobState::Succeeded).await;
    let store = app.store().await;
    assert_eq!(runs(&store, done.id).await, 1);
    let clicks = store.approvals(done.id).await.unwrap();
    let approved: Vec<_> = clicks.iter().filter(|c| c.outcome == "approved").collect();
    assert_eq!(approved.len(), 1, "{clicks:#?}");
    assert_eq!(
        (
            approved[0].who.as_str(),
            approved[0].name.as_str(),
            approved[0].via.as_str()
        ),
        ("console:alice", "alice", "console")
    );
    let audit = store.audit_log(20).await.unwrap();
    assert!(
        audit.iter().any(|e| e.subject == "console:alice"
            && e.action == "approve"
            && e.resource == format!("repair {}", job.id)
            && e.status == 200),
        "{audit:#?}"
    );
    // Nothing waits any more.
    let html = alice.get("/ui/inbox").await.body;
    assert!(!html.contains("data-approval-job="), "{html}");
}
both_backends!(an_allow_listed_editor_approves_from_the_inbox_and_two_clicks_run_the_repair_once);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reject_from_the_inbox_cancels_the_repair_in_the_viewers_language() {
    let (app, job) = waiting(Db::Sqlite).await;
    let alice = ConsoleClient::direct(&app, "alice", Role::Editor, &["prod"]).await;

    let posted = alice
        .http
        .post(format!("{}/ui/repairs/{}/reject", alice.base, job.id))
        .header(
            "cookie",
            format!("aiops_session={}; aiops_lang=zh-TW", alice.token),
        )
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("csrf={}", alice.csrf))
        .send()
        .await
        .unwrap();
    let posted = Page {
        status: posted.status(),
        headers: posted.headers().clone(),
        body: posted.text().await.unwrap(),
    };
    let page = follow(&alice, &posted).await;

    assert_eq!(
        notice(&page),
        format!("已拒絕：修復 job {} 不會執行。", job.id)
    );
    let job = app.store().await.job(job.id).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Cancelled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_editor_not_on_the_allow_list_gets_the_refusal_a_chat_click_gets_and_it_is_recorded() {
    let (app, job) = waiting(Db::Sqlite).await;
    let bob = ConsoleClient::direct(&app, "bob", Role::Editor, &["prod"]).await;

    let html = text(&bob.get("/ui/inbox").await.body);
    assert!(html.contains("You are not on the list"), "{html}");
    let page = follow(
        &bob,
        &bob.post(&format!("/ui/repairs/{}/approve", job.id), &[])
            .await,
    )
    .await;

    assert_eq!(
        notice(&page),
        "Refused: you are not on this repair's list of approvers; your click was recorded."
    );
    assert!(page.body.contains("class=\"notice bad\""), "{}", page.body);
    let store = app.store().await;
    assert_eq!(
        store.job(job.id).await.unwrap().unwrap().state,
        JobState::AwaitingApproval
    );
    let clicks = store.approvals(job.id).await.unwrap();
    assert_eq!(clicks.len(), 1);
    assert_eq!(
        (clicks[0].who.as_str(), clicks[0].outcome.as_str()),
        ("console:bob", "not_allowed")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_sees_no_buttons_and_a_decision_they_post_is_refused_and_audited() {
    let (app, job) = waiting(Db::Sqlite).await;
    let vera = ConsoleClient::direct(&app, "vera", Role::Viewer, &["prod"]).await;

    let html = vera.get("/ui/inbox").await.body;
    assert!(
        html.contains(&format!("data-approval-job=\"{}\"", job.id)),
        "{html}"
    );
    for absent in [
        "id=\"approve-",
        "id=\"reject-",
        "id=\"maintenance-form\"",
        "<button type=\"submit\" class",
    ] {
        assert!(!html.contains(absent), "{absent} shown to a viewer: {html}");
    }

    let r = vera
        .post(&format!("/ui/repairs/{}/approve", job.id), &[])
        .await;

    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(
        text(&r.body).contains("Viewers cannot approve or reject repairs"),
        "{}",
        r.body
    );
    let store = app.store().await;
    assert_eq!(
        store.job(job.id).await.unwrap().unwrap().state,
        JobState::AwaitingApproval
    );
    let audit = store.audit_log(20).await.unwrap();
    assert!(
        audit.iter().any(|e| e.subject == "console:vera"
            && e.action == "POST /ui/repairs/{id}/approve"
            && e.resource == format!("repair {}", job.id)
            && e.status == 403),
        "{audit:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_apps_waiting_repair_is_not_listed_and_deciding_it_answers_not_found() {
    let (app, job) = waiting(Db::Sqlite).await;
    let carol = ConsoleClient::direct(&app, "carol", Role::Editor, &["staging"]).await;

    let html = carol.get("/ui/inbox").await.body;
    assert!(!html.contains("data-approval-job="), "{html}");
    assert!(
        html.contains("No repair of your apps is waiting for approval."),
        "{html}"
    );
    let r = carol
        .post(&format!("/ui/repairs/{}/approve", job.id), &[])
        .await;

    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let store = app.store().await;
    assert_eq!(
        store.job(job.id).await.unwrap().unwrap().state,
        JobState::AwaitingApproval
    );
    assert!(store.approvals(job.id).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_without_the_sessions_csrf_token_changes_nothing() {
    let (app, job) = waiting(Db::Sqlite).await;
    let alice = ConsoleClient::direct(&app, "alice", Role::Editor, &["prod"]).await;
    let path = format!("/ui/repairs/{}/approve", job.id);

    let none = alice.post_raw(&path, &[]).await;
    let wrong = alice.post_raw(&path, &[("csrf", "0123456789abcdef")]).await;
    let form = alice
        .post_raw(
            "/ui/maintenance",
            &[("namespace", "prod"), ("duration", "1h"), ("reason", "x")],
        )
        .await;

    for r in [&none, &wrong, &form] {
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    }
    let store = app.store().await;
    assert_eq!(
        store.job(job.id).await.unwrap().unwrap().state,
        JobState::AwaitingApproval
    );
    assert!(store.approvals(job.id).await.unwrap().is_empty());
    assert!(store.maintenance_windows(0).await.unwrap().is_empty());
}

async fn a_maintenance_window_created_in_the_inbox_holds_the_apps_alerts_until_it_is_ended(db: Db) {
    // Arrange
    let app = TestApp::spawn_app(Spawn::new(db).rules(RULES)).await;
    let alice = ConsoleClient::direct(&app, "alice", Role::Editor, &["prod"]).await;
    let html = text(&alice.get("/ui/inbox").await.body);
    assert!(html.contains("id=\"maintenance-form\""), "{html}");
    assert!(html.contains("<label for=\"mw-reason\">"), "{html}");

    // Act: a form without a reason, then a good one.
    let fields = [
        ("name", "db upgrade"),
        ("namespace", "prod"),
        ("duration", "1h"),
    ];
    let refused = alice.post("/ui/maintenance", &fields).await;
    let mut good = fields.to_vec();
    good.push(("reason", "postgres 17 upgrade"));
    let created = follow(&alice, &alice.post("/ui/maintenance", &good).await).await;

    // Assert: the refusal keeps what was typed; the window is listed open with an End button,
    // stored as the API stores one, and audited with the console's route.
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    let refused = text(&refused.body);
    assert!(refused.contains("Not done: reason"), "{refused}");
    assert!(refused.contains("value=\"db upgrade\""), "{refused}");
    assert_eq!(notice(&created), "Maintenance window created: db upgrade");
    let store = app.store().await;
    let rows = store.maintenance_windows(0).await.unwrap();
    assert_eq!(rows.len(), 1);
    let id = rows[0].id;
    assert!(
        created.body.contains(&format!("id=\"end-window-{id}\"")),
        "{}",
        created.body
    );
    assert!(created.body.contains("postgres 17 upgrade"));
    let audit = store.audit_log(20).await.unwrap();
    assert!(
        audit.iter().any(|e| e.subject == "console:alice"
            && e.action == "POST /ui/maintenance"
            && e.resource == "maintenance db upgrade"
            && e.status == 201),
        "{audit:#?}"
    );

    // Act: the app's alert fires during the window.
    let body = app.post_webhook_json(alert("prod")).await;

    // Assert: held, no repair.
    assert_eq!(body["jobs"].as_array().unwrap().len(), 0, "{body}");

    // Act: the window is ended from the page, twice.
    let path = format!("/ui/maintenance/{id}/end");
    let ended = follow(&alice, &alice.post(&path, &[]).await).await;
    let again = follow(&alice, &alice.post(&path, &[]).await).await;

    // Assert
    assert_eq!(notice(&ended), "Maintenance window ended: db upgrade");
    assert!(
        !ended.body.contains(&format!("id=\"end-window-{id}\"")),
        "{}",
        ended.body
    );
    assert!(ended.body.contains("Ended"));
    assert_eq!(
        notice(&again),
        "Nothing changed: the window had already ended."
    );
    let row = store.maintenance_window(id).await.unwrap().unwrap();
    assert_eq!(row.ended_by.as_deref(), Some("console:alice"));
}
both_backends!(a_maintenance_window_created_in_the_inbox_holds_the_apps_alerts_until_it_is_ended);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_an_admin_may_create_a_window_for_every_app_and_a_viewer_may_create_none() {
    let app = TestApp::spawn_app(Spawn::new(Db::Sqlite).rules(RULES)).await;
    let alice = ConsoleClient::direct(&app, "alice", Role::Editor, &["prod"]).await;
    let vera = ConsoleClient::direct(&app, "vera", Role::Viewer, &["prod"]).await;
    let ada = ConsoleClient::direct(&app, "ada", Role::Admin, &[]).await;
    let unscoped = [
        ("rule", "restart-web"),
        ("duration", "30m"),
        ("reason", "freeze"),
    ];

    let editor = alice.post("/ui/maintenance", &unscoped).await;
    let viewer = vera
        .post(
            "/ui/maintenance",
            &[("namespace", "prod"), ("duration", "1h"), ("reason", "x")],
        )
        .await;
    let other = alice
        .post(
            "/ui/maintenance",
            &[
                ("namespace", "staging"),
                ("duration", "1h"),
                ("reason", "x"),
            ],
        )
        .await;
    let admin = follow(&ada, &ada.post("/ui/maintenance", &unscoped).await).await;

    assert_eq!(editor.status, StatusCode::BAD_REQUEST);
    assert!(text(&editor.body).contains("only admins may create a window without a namespace"));
    assert_eq!(viewer.status, StatusCode::FORBIDDEN);
    assert_eq!(other.status, StatusCode::NOT_FOUND);
    assert!(
        notice(&admin).starts_with("Maintenance window created: #"),
        "{}",
        admin.body
    );
    let rows = app.store().await.maintenance_windows(0).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].created_by, "console:ada");
    // The admin's window holds a rule in every app: an app's editor does not see it.
    let html = alice.get("/ui/inbox").await.body;
    assert!(
        html.contains("No maintenance window of your apps."),
        "{html}"
    );
}

fn target(namespace: &str) -> Target {
    Target {
        namespace: namespace.into(),
        kind: "Deployment".into(),
        name: "web".into(),
    }
}

/// A Flux Kustomization's hold on `namespace/Deployment/web`, an hour from expiry.
fn new_hold(namespace: &str) -> NewHold {
    let owner = Controller::FluxKustomization {
        name: "apps".into(),
        namespace: "flux-system".into(),
    };
    NewHold {
        job_id: 1,
        target: target(namespace),
        controller: owner.clone(),
        placement: HoldPlacement {
            mechanism: HoldMechanism::FluxObjectAnnotation,
            saved: None,
        },
        change: GitChange {
            kind: ChangeKind::Memory,
            target: target(namespace),
            changes: vec![FieldChange {
                field: Field::MemoryLimit {
                    container: "app".into(),
                },
                value: "615Mi".into(),
            }],
            owner,
            revision: None,
        },
        created_at: now_ms(),
        expires_at: now_ms() + 3_600_000,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_gitops_hold_is_released_from_the_inbox_once_and_by_the_console_user() {
    // Arrange: `aiops serve` (it has the release task), a hold in prod and one in staging.
    let app = TestApp::spawn(Spawn::new(Db::Sqlite)).await;
    let store = app.store().await;
    let prod = store.record_hold(&new_hold("prod")).await.unwrap();
    let staging = store.record_hold(&new_hold("staging")).await.unwrap();
    let alice = ConsoleClient::direct(&app, "alice", Role::Editor, &["prod"]).await;

    // Act
    let html = text(&alice.get("/ui/inbox").await.body);

    // Assert: prod's hold with what to change in Git; staging's is invisible.
    assert!(
        html.contains(&format!("id=\"release-hold-{prod}\"")),
        "{html}"
    );
    assert!(!html.contains(&format!("release-hold-{staging}")), "{html}");
    assert!(
        html.contains("set resources.limits.memory of container app to 615Mi"),
        "{html}"
    );

    // Act: release, twice; and staging's by URL.
    let path = format!("/ui/gitops/holds/{prod}/release");
    let released = follow(&alice, &alice.post(&path, &[]).await).await;
    let again = follow(&alice, &alice.post(&path, &[]).await).await;
    let other = alice
        .post(&format!("/ui/gitops/holds/{staging}/release"), &[])
        .await;

    // Assert
    assert_eq!(notice(&released), "Hold released: prod/Deployment/web");
    assert_eq!(
        notice(&again),
        "Nothing changed: the hold was already released."
    );
    assert_eq!(other.status, StatusCode::NOT_FOUND);
    let hold = until(
        "the release recorded",
        DEFAULT_WITHIN,
        async || {
            store
                .hold(prod)
                .await
                .unwrap()
                .filter(|h| h.released_at.is_some())
        },
        || app.log_text(),
    )
    .await;
    assert_eq!(hold.released_by.as_deref(), Some("console:alice"));
    assert!(
        store
            .hold(staging)
            .await
            .unwrap()
            .unwrap()
            .released_at
            .is_none()
    );
    let audit = store.audit_log(20).await.unwrap();
    let statuses: Vec<i64> = audit
        .iter()
        .filter(|e| e.action == "POST /ui/gitops/holds/{id}/release")
        .map(|e| e.status)
        .collect();
    assert_eq!(statuses.len(), 3, "{audit:#?}");
    assert!(statuses.contains(&200) && statuses.contains(&409) && statuses.contains(&404));
}
