//! Maintenance windows through the daemon, on SQLite and PostgreSQL: an alert inside a window
//! is refused `maintenance` and nothing runs, the same alert acts once the window is over;
//! `POST/GET /api/maintenance` and `POST /api/maintenance/{id}/end` with their audit rows and
//! per-app access; the summary enqueued once per route when a window closes, once across
//! replicas. (When a recurring window is open, DST included, is unit-tested in
//! src/maintenance/schedule.rs.)

use crate::both_backends;
use crate::common;

use aiops::auth::Role;
use aiops::maintenance::summary::Summaries;
use aiops::maintenance::{Schedule, Windows};
use aiops::notify::{NotifySettings, Outbox};
use aiops::store::{JobState, Notification, Store};
use common::api::token;
use common::stand_ins::{Answer, StandIn};
use common::wait::{DEFAULT_WITHIN, until};
use common::{Db, Spawn, TestApp, payload};
use reqwest::StatusCode;
use serde_json::{Value, json};

const SECRET: &str = "test-secret-for-the-api-0123456789abcdef";

const RULES: &str = r#"
rules:
  - name: restart
    matchers: ['auto_repair="restart"']
    playbook: restart
"#;

/// A firing alert on prod/Deployment/`app` (team `team`), started at `starts_at`.
fn firing(alertname: &str, app: &str, team: &str, starts_at: &str) -> String {
    payload(
        &[(
            &[
                ("alertname", alertname),
                ("auto_repair", "restart"),
                ("namespace", "prod"),
                ("app", app),
                ("team", team),
            ],
            "firing",
        )],
        starts_at,
    )
}

/// RFC 3339 for `now + offset_ms`.
fn at(offset_ms: i64) -> String {
    aiops::store::rfc3339::format(aiops::store::now_ms() + offset_ms).unwrap()
}

fn admin() -> String {
    token(SECRET, Role::Admin, &[])
}

/// A one-off window open now, closing `for_ms` from now.
async fn open_window(app: &TestApp, body: Value, for_ms: i64) -> Value {
    let mut body = body;
    body["start"] = json!(at(-60_000));
    body["end"] = json!(at(for_ms));
    let (s, w) = app.api_post(&admin(), "/api/maintenance", body).await;
    assert_eq!(s, StatusCode::CREATED, "{w}");
    w
}

async fn an_alert_inside_a_window_is_refused_maintenance_and_acted_on_once_it_is_over(db: Db) {
    let app = TestApp::spawn_app(Spawn::new(db).rules(RULES).env("AIOPS_JWT_SECRET", SECRET)).await;
    let window = open_window(
        &app,
        json!({"namespace": "prod", "app": "web", "reason": "database upgrade"}),
        3_600_000,
    )
    .await;
    assert_eq!(window["active"], true, "{window}");
    let starts = at(-1_000);
    let body = app
        .post_webhook_json(firing("Down", "web", "a", &starts))
        .await;
    assert_eq!(
        (
            body["refused"].as_u64(),
            body["jobs"].as_array().map(Vec::len)
        ),
        (Some(1), Some(0)),
        "{body}"
    );
    // Another app of the namespace is not held.
    let other = app
        .post_webhook_json(firing("Down", "api", "a", &starts))
        .await;
    assert_eq!(other["jobs"].as_array().unwrap().len(), 1, "{other}");

    let (s, alerts) = app
        .api_get(&admin(), "/api/alerts?reason=maintenance")
        .await;
    assert_eq!(s, 200, "{alerts}");
    let items = alerts["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{alerts}");
    let decision = &items[0]["decisions"][0];
    assert_eq!(
        (decision["verdict"].as_str(), decision["reason"].as_str()),
        (Some("refused"), Some("maintenance"))
    );
    let sentence = decision["sentence"].as_str().unwrap();
    assert!(
        sentence.contains("(maintenance): maintenance window #")
            && sentence.contains("(namespace=prod app=web)")
            && sentence.contains("database upgrade"),
        "{sentence}"
    );
    let metrics = app.metrics().await;
    assert!(
        metrics.contains(
            r#"aiops_alert_decisions_total{mode="auto",reason="maintenance",verdict="refused"} 1"#
        ),
        "{metrics}"
    );
    let jobs = app.wait_all_jobs_in(&[JobState::Succeeded]).await;
    assert!(
        jobs.iter().all(|j| j.target_key == "prod/Deployment/api"),
        "nothing ran on the held target: {jobs:#?}"
    );

    // The window ends; Alertmanager's next re-send of the same occurrence is acted on.
    let id = window["id"].as_i64().unwrap();
    let (s, ended) = app
        .api_post(&admin(), &format!("/api/maintenance/{id}/end"), json!({}))
        .await;
    assert_eq!(s, 200, "{ended}");
    let body = app
        .post_webhook_json(firing("Down", "web", "a", &starts))
        .await;
    assert_eq!(body["jobs"].as_array().unwrap().len(), 1, "{body}");
    let jobs = app.wait_all_jobs_in(&[JobState::Succeeded]).await;
    assert_eq!(
        jobs.iter()
            .filter(|j| j.target_key == "prod/Deployment/web")
            .count(),
        1,
        "{jobs:#?}"
    );
    // Once acted on, a re-send is an ordinary duplicate again.
    let body = app
        .post_webhook_json(firing("Down", "web", "a", &starts))
        .await;
    assert_eq!(
        (
            body["duplicates"].as_u64(),
            body["jobs"].as_array().map(Vec::len)
        ),
        (Some(1), Some(0)),
        "{body}"
    );
}
both_backends!(an_alert_inside_a_window_is_refused_maintenance_and_acted_on_once_it_is_over);

/// The notify settings of the summary tests: one webhook channel per team.
fn notify_config(a: &StandIn, b: &StandIn) -> String {
    format!(
        r#"
notify:
  channels:
    team-a: {{type: webhook, url: "{a}/hook"}}
    team-b: {{type: webhook, url: "{b}/hook"}}
  routes:
    - matchers: ['team="a"']
      channels: [team-a]
    - matchers: ['team="b"']
      channels: [team-b]
"#,
        a = a.url,
        b = b.url
    )
}

async fn summaries(store: &Store) -> Vec<Notification> {
    store
        .notifications()
        .await
        .unwrap()
        .into_iter()
        .filter(|n| n.event == "maintenance_summary")
        .collect()
}

async fn when_a_window_closes_each_route_gets_one_summary_of_what_it_held(db: Db) {
    let (a, b) = (StandIn::start().await, StandIn::start().await);
    a.default_answer(Answer::new(200, "ok"));
    b.default_answer(Answer::new(200, "ok"));
    let app = TestApp::spawn(
        Spawn::new(db)
            .rules(RULES)
            .config(&notify_config(&a, &b))
            .env("AIOPS_JWT_SECRET", SECRET)
            .env("AIOPS_MAINTENANCE_REFRESH", "200ms"),
    )
    .await;
    // A short window over the whole namespace: it closes while the test waits on the outbox.
    let window = open_window(
        &app,
        json!({"name": "node-drain", "namespace": "prod", "reason": "draining nodes"}),
        4_000,
    )
    .await;
    let starts = at(-1_000);
    for (alertname, target, team) in [
        ("Down", "web", "a"),
        ("Down", "api", "a"),
        ("HighLatency", "demo", "b"),
    ] {
        let body = app
            .post_webhook_json(firing(alertname, target, team, &starts))
            .await;
        assert_eq!(body["refused"], 1, "{body}");
    }
    // Alertmanager re-sends the held web alert: held again, still one alert in the summary.
    let body = app
        .post_webhook_json(firing("Down", "web", "a", &starts))
        .await;
    assert_eq!(body["refused"], 1, "{body}");

    let store = app.store().await;
    let rows = until(
        "a summary on each team's channel",
        DEFAULT_WITHIN,
        async || {
            let rows = summaries(&store).await;
            (rows.len() >= 2).then_some(rows)
        },
        || app.log_text(),
    )
    .await;
    let by_channel = |c: &str| rows.iter().find(|n| n.channel == c).unwrap().clone();
    let (team_a, team_b) = (by_channel("team-a"), by_channel("team-b"));
    assert_eq!(
        team_a.subject,
        "[aiops] Maintenance window ended: node-drain, 2 alerts held"
    );
    assert!(
        team_a.body.contains("Window: node-drain (namespace=prod)"),
        "{}",
        team_a.body
    );
    assert!(
        team_a
            .body
            .contains("Reason: draining nodes (set by admin-user)"),
        "{}",
        team_a.body
    );
    assert!(
        team_a.body.contains("- Down on prod/Deployment/api: 1"),
        "{}",
        team_a.body
    );
    assert!(
        team_a.body.contains("- Down on prod/Deployment/web: 1"),
        "{}",
        team_a.body
    );
    assert!(!team_a.body.contains("HighLatency"), "{}", team_a.body);
    assert_eq!(
        team_b.subject,
        "[aiops] Maintenance window ended: node-drain, 1 alert held"
    );
    assert!(
        team_b
            .body
            .contains("- HighLatency on prod/Deployment/demo: 1"),
        "{}",
        team_b.body
    );
    let event: Value = serde_json::from_str(&team_a.event_json).unwrap();
    // The occurrence's end is the window's, shown to the second (one-off windows in UTC).
    let end = window["end"].as_str().unwrap();
    assert_eq!(event["maintenance"]["ends_at"], format!("{}Z", &end[..19]));
    b.wait_for("the summary delivered", |r| !r.is_empty()).await;

    // Nothing ran; and the summary is never enqueued again, whatever the later ticks do.
    assert!(store.jobs().await.unwrap().is_empty());
    let raw = common::raw_db(&app.db.url).await;
    assert_eq!(common::count_rows(&raw, "maintenance_summaries").await, 1);
    raw.close().await;
    assert_eq!(summaries(&store).await.len(), 2);
}
both_backends!(when_a_window_closes_each_route_gets_one_summary_of_what_it_held);

async fn replicas_racing_to_summarise_a_closed_window_enqueue_it_once(db: Db) {
    let (a, b) = (StandIn::start().await, StandIn::start().await);
    let config = notify_config(&a, &b);
    let app = TestApp::spawn(
        Spawn::new(db)
            .rules(RULES)
            .config(&config)
            .env("AIOPS_JWT_SECRET", SECRET),
    )
    .await;
    open_window(&app, json!({"rule": "restart", "reason": "freeze"}), 1_500).await;
    let body = app
        .post_webhook_json(firing("Down", "web", "a", &at(-1_000)))
        .await;
    assert_eq!(body["refused"], 1, "{body}");
    // Replicas beside the daemon (whose own task ticks every 15 s): the same store, their own
    // window sets and outboxes, all asked at one instant after the window closed.
    let notify: NotifySettings = {
        let yaml: Value = serde_yaml::from_str(&config).unwrap();
        let mut s: NotifySettings = serde_json::from_value(yaml["notify"].clone()).unwrap();
        s.resolve(&|_| None).unwrap();
        s
    };
    let store = app.store().await;
    let after = aiops::store::now_ms() + 1_500 + aiops::maintenance::summary::GRACE_MS + 1_000;
    let mut replicas = Vec::new();
    for _ in 0..3 {
        let windows = Windows::new(Vec::new());
        windows.refresh(&store).await.unwrap();
        let outbox = std::sync::Arc::new(Outbox::new(&notify).unwrap());
        let router = aiops::notify::route::Router::new(&notify);
        replicas.push(Summaries::new(windows, store.clone(), outbox, router));
    }
    let results =
        futures_util::future::join_all(replicas.iter_mut().map(|r| r.send_due(after))).await;
    let enqueued: Vec<usize> = results.into_iter().map(Result::unwrap).collect();
    assert_eq!(enqueued.iter().sum::<usize>(), 1, "{enqueued:?}");
    let rows = summaries(&store).await;
    assert_eq!(rows.len(), 1, "{rows:#?}");
    assert_eq!(rows[0].channel, "team-a");
}
both_backends!(replicas_racing_to_summarise_a_closed_window_enqueue_it_once);

async fn the_api_creates_lists_and_ends_windows_per_app_and_audits_every_write(db: Db) {
    let config = r#"
maintenance:
  - name: weekly-db
    namespace: shop
    every: sat 02:00
    duration: 2h
    timezone: Asia/Taipei
    reason: weekly database maintenance
"#;
    let app = TestApp::spawn(
        Spawn::new(db)
            .rules(RULES)
            .config(config)
            .env("AIOPS_JWT_SECRET", SECRET),
    )
    .await;
    let shop_editor = token(SECRET, Role::Editor, &["shop"]);
    let shop_viewer = token(SECRET, Role::Viewer, &["shop"]);
    let blog_editor = token(SECRET, Role::Editor, &["blog"]);
    let window = json!({
        "namespace": "shop", "every": "mon-fri 22:00", "duration": "30m",
        "timezone": "Europe/Berlin", "reason": "nightly batch"
    });

    let (s, created) = app
        .api_post(&shop_editor, "/api/maintenance", window.clone())
        .await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    assert_eq!(
        (
            created["source"].as_str(),
            created["kind"].as_str(),
            created["created_by"].as_str()
        ),
        (Some("api"), Some("recurring"), Some("editor-user"))
    );
    let id = created["id"].as_i64().unwrap();
    // The next occurrence is the schedule's, in Berlin time.
    let expected = Schedule::recurring("0 22 * * MON-FRI", "Europe/Berlin", 1_800_000)
        .unwrap()
        .next_after(aiops::store::now_ms())
        .unwrap();
    let next_start = created["next"]["start"].as_str().unwrap();
    let active = created["active"].as_bool().unwrap();
    if !active {
        assert_eq!(
            next_start,
            aiops::store::rfc3339::format(expected.start).unwrap()
        );
    }

    // Another app's editor neither sees nor ends it, nor creates one in that app.
    let (s, list) = app.api_get(&blog_editor, "/api/maintenance").await;
    assert_eq!(
        (s, list["items"].as_array().unwrap().len()),
        (StatusCode::OK, 0),
        "{list}"
    );
    let end = format!("/api/maintenance/{id}/end");
    let (s, _) = app.api_post(&blog_editor, &end, json!({})).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = app
        .api_post(&blog_editor, "/api/maintenance", window.clone())
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // A window without a namespace holds every app's alerts: admins only.
    let by_rule = json!({"rule": "restart", "start": at(0), "end": at(60_000), "reason": "freeze"});
    let (s, e) = app
        .api_post(&shop_editor, "/api/maintenance", by_rule.clone())
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{e}");
    let (s, admin_window) = app.api_post(&admin(), "/api/maintenance", by_rule).await;
    assert_eq!(s, StatusCode::CREATED, "{admin_window}");
    // Bad windows are 400s naming the problem; created_by is the token's.
    for (body, says) in [
        (
            json!({"namespace": "shop", "every": "sat 02:00", "duration": "1h", "timezone": "Asia/Taipe", "reason": "x"}),
            "Asia/Taipe",
        ),
        (
            json!({"namespace": "shop", "start": at(60_000), "end": at(0), "reason": "x"}),
            "end must be after start",
        ),
        (
            json!({"namespace": "shop", "start": at(0), "end": at(60_000), "reason": " "}),
            "reason must not be empty",
        ),
        (
            json!({"namespace": "shop", "start": at(0), "end": at(60_000), "reason": "x", "created_by": "someone"}),
            "created_by",
        ),
    ] {
        let (s, e) = app.api_post(&shop_editor, "/api/maintenance", body).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{e}");
        assert!(e["error"].as_str().unwrap().contains(says), "{e}");
    }

    // The shop's viewer sees the shop's windows (the settings file's too), not the admin's;
    // and cannot write.
    let (s, list) = app.api_get(&shop_viewer, "/api/maintenance").await;
    assert_eq!(s, StatusCode::OK);
    let items = list["items"].as_array().unwrap();
    let names: Vec<(Value, Value)> = items
        .iter()
        .map(|i| (i["source"].clone(), i["id"].clone()))
        .collect();
    assert_eq!(
        names,
        [(json!("settings"), Value::Null), (json!("api"), json!(id))],
        "{list}"
    );
    assert_eq!(items[0]["name"], "weekly-db");
    assert_eq!(items[0]["timezone"], "Asia/Taipei");
    let (s, list) = app.api_get(&admin(), "/api/maintenance").await;
    assert_eq!(
        (s, list["items"].as_array().unwrap().len()),
        (StatusCode::OK, 3),
        "{list}"
    );
    let (s, _) = app.api_post(&shop_viewer, &end, json!({})).await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    // The shop's editor ends it: no occurrence is listed from then on; a second end is a 409.
    let (s, ended) = app.api_post(&shop_editor, &end, json!({})).await;
    assert_eq!(s, StatusCode::OK, "{ended}");
    assert!(
        ended["ended_at"].is_string() && ended["next"].is_null(),
        "{ended}"
    );
    let (s, _) = app.api_post(&shop_editor, &end, json!({})).await;
    assert_eq!(s, StatusCode::CONFLICT);
    let (_, list) = app.api_get(&shop_viewer, "/api/maintenance").await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1, "{list}");

    // Every write, allowed or not, is in the audit log with its subject and status.
    let audit = app.store().await.audit_log(50).await.unwrap();
    let mut seen: Vec<(String, String, i64)> = audit
        .iter()
        .map(|e| (e.subject.clone(), e.action.clone(), e.status))
        .collect();
    seen.reverse();
    let post = "POST /api/maintenance".to_string();
    let end_action = "POST /api/maintenance/{id}/end".to_string();
    assert_eq!(
        seen,
        [
            ("editor-user".into(), post.clone(), 201),
            ("editor-user".into(), end_action.clone(), 404),
            ("editor-user".into(), post.clone(), 404),
            ("editor-user".into(), post.clone(), 403),
            ("admin-user".into(), post.clone(), 201),
            ("editor-user".into(), post.clone(), 400),
            ("editor-user".into(), post.clone(), 400),
            ("editor-user".into(), post.clone(), 400),
            ("editor-user".into(), post.clone(), 400),
            ("viewer-user".into(), end_action.clone(), 403),
            ("editor-user".into(), end_action.clone(), 200),
            ("editor-user".into(), end_action.clone(), 409),
        ]
    );
    let created_entry = audit.iter().rev().find(|e| e.status == 201).unwrap();
    assert_eq!(created_entry.resource, format!("maintenance #{id}"));
    let detail: Value = serde_json::from_str(&created_entry.detail).unwrap();
    assert_eq!(detail["reason"], "nightly batch");
}
both_backends!(the_api_creates_lists_and_ends_windows_per_app_and_audits_every_write);

/// The rule of the deferral test: its `wait` makes the job due after it was created.
const WAIT_RULES: &str = r#"
rules:
  - name: restart
    matchers: ['auto_repair="restart"']
    playbook: restart
    wait: 2s
"#;

async fn a_repair_that_becomes_due_inside_a_window_waits_for_its_end_and_then_runs_once(db: Db) {
    let app = TestApp::spawn_app(
        Spawn::new(db)
            .rules(WAIT_RULES)
            .env("AIOPS_JWT_SECRET", SECRET),
    )
    .await;
    let store = app.store().await;
    let body = app
        .post_webhook_json(firing("Down", "web", "a", &at(-1_000)))
        .await;
    let id = body["jobs"][0].as_i64().expect("a waiting job");
    // The window opens after the job was created (the guard let the alert through) and is
    // still open when the rule's wait ends.
    let opened = aiops::store::now_ms();
    open_window(
        &app,
        json!({"namespace": "prod", "app": "web", "reason": "database upgrade"}),
        5_000,
    )
    .await;
    let window_end = opened + 5_000;

    let deferred = until(
        "the due job to be given back until the window's end",
        DEFAULT_WITHIN,
        async || {
            let events = store.job_events(id).await.unwrap();
            events
                .into_iter()
                .find(|e| e.from.as_deref() == Some("running") && e.to == "waiting")
        },
        || app.log_text(),
    )
    .await;
    assert!(
        deferred.note.contains("maintenance window #")
            && deferred.note.contains("database upgrade"),
        "{deferred:?}"
    );
    let job = store.job(id).await.unwrap().unwrap();
    assert!(
        job.not_before >= window_end && job.started_at.is_none() && job.owner.is_none(),
        "deferred to the window's end, as never started: {job:#?}"
    );
    assert!(
        store.job_steps(id).await.unwrap().is_empty(),
        "no playbook step ran during the window"
    );

    let jobs = app.wait_all_jobs_in(&[JobState::Succeeded]).await;
    assert_eq!(jobs.len(), 1, "{jobs:#?}");
    let steps = store.job_steps(id).await.unwrap();
    assert!(
        !steps.is_empty() && steps.iter().all(|s| s.at >= window_end),
        "it ran after the window: {steps:#?}"
    );
    let events = store.job_events(id).await.unwrap();
    let moves: Vec<_> = events
        .iter()
        .map(|e| format!("{}->{}", e.from.as_deref().unwrap_or(""), e.to))
        .collect();
    assert_eq!(
        moves
            .iter()
            .filter(|m| m.as_str() == "running->waiting")
            .count(),
        1,
        "{moves:?}"
    );
    assert_eq!(
        moves.iter().filter(|m| m.ends_with("->running")).count(),
        2,
        "claimed once inside the window, run once after it: {moves:?}"
    );
}
both_backends!(a_repair_that_becomes_due_inside_a_window_waits_for_its_end_and_then_runs_once);

async fn a_held_occurrence_sent_again_fires_alert_fired_once(db: Db) {
    let hook = StandIn::start().await;
    hook.default_answer(Answer::new(200, "ok"));
    let app = TestApp::spawn_app(
        Spawn::new(db)
            .rules(RULES)
            .config(&format!(
                r#"
notify:
  channels:
    hook: {{type: webhook, url: "{}/hook"}}
  routes:
    - matchers: ['team="a"']
      channels: [hook]
      events: [alert_fired]
"#,
                hook.url
            ))
            .env("AIOPS_JWT_SECRET", SECRET),
    )
    .await;
    open_window(
        &app,
        json!({"namespace": "prod", "reason": "database upgrade"}),
        3_600_000,
    )
    .await;
    let starts = at(-1_000);
    for _ in 0..3 {
        let body = app
            .post_webhook_json(firing("Down", "web", "a", &starts))
            .await;
        assert_eq!(body["refused"].as_u64(), Some(1), "held each time: {body}");
    }
    let fired: Vec<_> = app
        .store()
        .await
        .notifications()
        .await
        .unwrap()
        .into_iter()
        .filter(|n| n.event == "alert_fired")
        .collect();
    assert_eq!(fired.len(), 1, "{fired:#?}");
}
both_backends!(a_held_occurrence_sent_again_fires_alert_fired_once);

async fn an_approval_during_a_window_says_when_the_repair_runs_and_it_runs_only_after(db: Db) {
    let rules = "rules:\n  - name: restart\n    matchers: ['auto_repair=\"restart\"']\n    \
                 playbook: restart\n    mode: approve\n    \
                 approval: {expires: 1h, approvers: [\"telegram:42\"]}\n";
    let app = TestApp::spawn_app(Spawn::new(db).rules(rules).env("AIOPS_JWT_SECRET", SECRET)).await;
    let store = app.store().await;
    let body = app
        .post_webhook_json(firing("Down", "web", "a", &at(-1_000)))
        .await;
    let id = body["jobs"][0].as_i64().expect("a job awaiting approval");
    // The window opens while the repair awaits approval.
    let opened = aiops::store::now_ms();
    let window = open_window(
        &app,
        json!({"name": "db-upgrade", "namespace": "prod", "reason": "database upgrade"}),
        4_000,
    )
    .await;
    let window_end = opened + 4_000;
    let approver = common::api::issue(&app, SECRET, "telegram:42", "prod", "editor");
    let (s, answer) = app
        .api_post(&approver, &format!("/api/repairs/{id}/approve"), json!({}))
        .await;
    assert_eq!(s, 200, "{answer}");
    let message = answer["message"].as_str().unwrap();
    assert!(
        message.contains(&format!(
            "will run when maintenance window {} ends",
            window["name"].as_str().unwrap()
        )),
        "{message}"
    );

    until(
        "the approved job to be given back until the window's end",
        DEFAULT_WITHIN,
        async || {
            let events = store.job_events(id).await.unwrap();
            events
                .iter()
                .any(|e| e.from.as_deref() == Some("running") && e.to == "waiting")
                .then_some(())
        },
        || app.log_text(),
    )
    .await;
    assert!(
        store.job_steps(id).await.unwrap().is_empty(),
        "no playbook step ran during the window"
    );
    app.wait_all_jobs_in(&[JobState::Succeeded]).await;
    let steps = store.job_steps(id).await.unwrap();
    assert!(
        !steps.is_empty() && steps.iter().all(|s| s.at >= window_end),
        "it ran after the window: {steps:#?}"
    );
}
both_backends!(an_approval_during_a_window_says_when_the_repair_runs_and_it_runs_only_after);
