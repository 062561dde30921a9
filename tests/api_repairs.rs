//! `POST /api/repairs` through the daemon (in-process, on both backends): an editor runs a
//! playbook by hand against a target or a stored alert; the job runs through the executor on
//! the in-memory cluster and is marked with who asked; the guards of an automatic repair refuse
//! it with their reason and the refusal is recorded; roles and apps are enforced before
//! anything is recorded; approve mode waits for an approver; every call is audited.

use crate::both_backends;
use crate::common;

use aiops::auth::{Claims, Key, Role};
use aiops::config::Secret;
use aiops::store::{AuditEntry, Job, JobState, Store};
use common::console::ConsoleClient;
use common::{Db, Spawn, TestApp, count_rows, payload, raw_db};
use reqwest::StatusCode;
use serde_json::{Value, json};

const SECRET: &str = "test-secret-for-hand-runs-0123456789abcdef";

/// The workload the tests repair by hand (tests/fixtures/cluster-state.yaml has it).
const WEB: &str = "prod/Deployment/web";

/// A token for `sub` with `role` in `apps`, valid ten minutes.
fn token(sub: &str, role: Role, apps: &[&str]) -> String {
    let now = chrono::Utc::now().timestamp();
    Key::new(Secret::new(SECRET))
        .unwrap()
        .issue(&Claims {
            sub: sub.to_string(),
            role,
            apps: apps.iter().map(|a| a.to_string()).collect(),
            exp: now + 600,
            iat: now,
            nbf: None,
        })
        .unwrap()
}

/// The daemon with the repository's rules (`restart`: cooldown 10m, budget 3/1h) and `config`.
async fn spawn(db: Db, config: Option<&str>) -> TestApp {
    let mut opts = Spawn::new(db).env("AIOPS_JWT_SECRET", SECRET);
    if let Some(yaml) = config {
        opts = opts.config(yaml);
    }
    TestApp::spawn_app(opts).await
}

/// `POST /api/repairs` with `body` as `token`: the status and the JSON answer.
async fn run_by_hand(app: &TestApp, token: &str, body: Value) -> (StatusCode, Value) {
    app.api_post(token, "/api/repairs", body).await
}

/// The audit log's entries for `POST /api/repairs`, oldest first.
async fn audited(store: &Store) -> Vec<AuditEntry> {
    let mut entries: Vec<AuditEntry> = store
        .audit_log(100)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "POST /api/repairs")
        .collect();
    entries.reverse();
    entries
}

/// Waits for job `id` to reach `state`.
async fn wait_for_state(app: &TestApp, id: i64, state: JobState) -> Job {
    let jobs = app
        .wait_for_jobs(&format!("job {id} to be {state}"), |jobs| {
            jobs.iter().any(|j| j.id == id && j.state == state)
        })
        .await;
    jobs.into_iter().find(|j| j.id == id).unwrap()
}

async fn an_editor_runs_restart_against_a_target_and_it_is_recorded_as_by_hand(db: Db) {
    let app = spawn(db, None).await;
    let alice = token("alice", Role::Editor, &["prod"]);

    let (s, body) = run_by_hand(
        &app,
        &alice,
        json!({"playbook": "restart", "target": WEB, "reason": "web is stuck after the deploy"}),
    )
    .await;

    assert_eq!(s, StatusCode::ACCEPTED, "{body}");
    let id = body["job_id"].as_i64().unwrap();
    assert_eq!(body["state"], "queued", "{body}");
    assert_eq!(body["mode"], "auto", "the trust settings' default: {body}");
    assert_eq!(
        body["rule"], "restart",
        "the rule that runs restart: {body}"
    );
    assert_eq!(body["target"], WEB);
    assert_eq!(body["requested_by"], "alice");
    assert_eq!(body["repair"], format!("/api/repairs/{id}"));
    assert_eq!(
        body["params"]["rollout_timeout"], "5m",
        "the rule's parameters: {body}"
    );
    // The normal executor runs it, and verifies it.
    let job = wait_for_state(&app, id, JobState::Succeeded).await;
    assert_eq!(job.target_key, WEB);
    let (s, repair) = app.api_get(&alice, &format!("/api/repairs/{id}")).await;
    assert_eq!(s, StatusCode::OK, "{repair}");
    assert_eq!(
        repair["repair"]["by_hand"],
        json!({"by": "alice", "reason": "web is stuck after the deploy"})
    );
    assert_eq!(repair["repair"]["alertname"], "ManualRepair");
    let first = repair["events"][0]["note"].as_str().unwrap();
    assert!(
        first.starts_with("run by hand by alice (rule restart)"),
        "{first}"
    );
    assert_eq!(repair["steps"][0]["action"], "restart", "{repair}");
    // No alert fired: the request's record is no alert any listing shows.
    let (_, alerts) = app.api_get(&alice, "/api/alerts").await;
    assert_eq!(alerts["items"], json!([]), "{alerts}");
    let (s, _) = app
        .api_get(&alice, &format!("/api/alerts/{}", job.alert_event_id))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // The console shows it like any repair, saying who ran it.
    let console = ConsoleClient::direct(&app, "vera", Role::Viewer, &["prod"]).await;
    let list = console.get("/ui/repairs").await;
    assert!(list.body.contains("by hand: alice"), "{}", list.body);
    let page = console.get(&format!("/ui/repairs/{id}")).await;
    assert!(
        page.body.contains("<dd id=\"repair-by-hand\">alice</dd>"),
        "{}",
        page.body
    );
    // Audited, with the job.
    let audit = audited(&app.store().await).await;
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(
        (
            audit[0].subject.as_str(),
            audit[0].status,
            audit[0].resource.as_str()
        ),
        ("alice", 202, format!("repair {id}").as_str())
    );
}
both_backends!(an_editor_runs_restart_against_a_target_and_it_is_recorded_as_by_hand);

async fn a_run_by_hand_on_a_guarded_target_is_refused_with_the_reason_and_recorded(db: Db) {
    let app = spawn(db, None).await;
    let alice = token("alice", Role::Editor, &["prod"]);
    // The restart rule repairs web on an alert: its 10 minute cooldown starts.
    let alert = payload(
        &[(
            &[
                ("alertname", "Down"),
                ("auto_repair", "restart"),
                ("namespace", "prod"),
                ("app", "web"),
                ("severity", "critical"),
            ],
            "firing",
        )],
        &common::minutes_ago(1),
    );
    assert_eq!(app.post_webhook(alert).await.status(), 200);
    app.wait_all_jobs_in(&[JobState::Succeeded]).await;

    let (s, body) = run_by_hand(&app, &alice, json!({"playbook": "restart", "target": WEB})).await;

    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["reason"], "cooldown", "{body}");
    assert_eq!(
        (&body["rule"], &body["target"]),
        (&json!("restart"), &json!(WEB))
    );
    assert!(
        body["error"].as_str().unwrap().contains("cooldown 10m"),
        "{body}"
    );
    let store = app.store().await;
    assert_eq!(store.jobs().await.unwrap().len(), 1, "nothing queued");
    assert_eq!(
        store.refusals().await.unwrap(),
        [(
            "restart".to_string(),
            Some(WEB.to_string()),
            "cooldown".to_string()
        )],
        "recorded as any refused decision"
    );
    let raw = raw_db(&app.db.url).await;
    let who: Vec<Option<String>> =
        sqlx::query_scalar("SELECT requested_by FROM decisions ORDER BY id")
            .fetch_all(&raw)
            .await
            .unwrap();
    assert_eq!(
        who,
        [None, Some("alice".to_string())],
        "the alert's, then alice's"
    );

    // A maintenance window holding the app refuses a run by hand as it holds an alert.
    let (s, w) = app
        .api_post(
            &alice,
            "/api/maintenance",
            json!({"namespace": "prod", "start": common::minutes_ago(1),
                   "end": (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339(),
                   "reason": "database upgrade"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{w}");
    let (s, body) = run_by_hand(
        &app,
        &alice,
        json!({"playbook": "restart", "target": "prod/Deployment/api"}),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["reason"], "maintenance", "{body}");
    assert_eq!(store.jobs().await.unwrap().len(), 1, "nothing queued");
    let audit = audited(&store).await;
    let outcomes: Vec<(i64, &str)> = audit
        .iter()
        .map(|e| (e.status, e.resource.as_str()))
        .collect();
    assert_eq!(outcomes, [(429, "repair"), (409, "repair")]);
    let detail: Value = serde_json::from_str(&audit[0].detail).unwrap();
    assert_eq!(detail["refused"], "cooldown", "{detail}");
}
both_backends!(a_run_by_hand_on_a_guarded_target_is_refused_with_the_reason_and_recorded);

async fn a_viewer_gets_403_and_another_apps_token_404_and_nothing_is_recorded(db: Db) {
    let app = spawn(db, None).await;
    // An alert of app prod, to be asked for by id.
    let alert = payload(
        &[(
            &[("alertname", "Slow"), ("namespace", "prod"), ("app", "web")],
            "firing",
        )],
        &common::minutes_ago(1),
    );
    assert_eq!(app.post_webhook(alert).await.status(), 200);
    let admin = token("root", Role::Admin, &[]);
    let (_, alerts) = app.api_get(&admin, "/api/alerts").await;
    let alert_id = alerts["items"][0]["id"].as_i64().unwrap();
    let viewer = token("vic", Role::Viewer, &["prod"]);
    let shop = token("sam", Role::Editor, &["shop"]);
    let raw = raw_db(&app.db.url).await;
    let before = count_rows(&raw, "alert_events").await;

    let (s, body) = run_by_hand(&app, &viewer, json!({"playbook": "restart", "target": WEB})).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
    // Before the body is read: even a body that is no JSON is answered 403.
    let r = app
        .client
        .post(app.url("/api/repairs"))
        .bearer_auth(&viewer)
        .body("not json at all")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // Another app's target and alert answer exactly as missing ones.
    let (s, body) = run_by_hand(&app, &shop, json!({"playbook": "restart", "target": WEB})).await;
    assert_eq!(
        (s, &body["error"]),
        (StatusCode::NOT_FOUND, &json!("app not found"))
    );
    let (s, hidden) = run_by_hand(
        &app,
        &shop,
        json!({"playbook": "restart", "alert": alert_id}),
    )
    .await;
    let (s2, missing) = run_by_hand(
        &app,
        &shop,
        json!({"playbook": "restart", "alert": alert_id + 1000}),
    )
    .await;
    assert_eq!((s, s2), (StatusCode::NOT_FOUND, StatusCode::NOT_FOUND));
    assert_eq!(
        hidden, missing,
        "a hidden alert is answered as a missing one"
    );

    assert_eq!(count_rows(&raw, "jobs").await, 0, "nothing queued");
    assert_eq!(count_rows(&raw, "decisions").await, 0, "nothing decided");
    assert_eq!(count_rows(&raw, "alert_events").await, before);
    let statuses: Vec<(String, i64)> = audited(&app.store().await)
        .await
        .into_iter()
        .map(|e| (e.subject, e.status))
        .collect();
    assert_eq!(
        statuses,
        [
            ("vic".to_string(), 403),
            ("vic".to_string(), 403),
            ("sam".to_string(), 404),
            ("sam".to_string(), 404),
            ("sam".to_string(), 404),
        ]
    );
}
both_backends!(a_viewer_gets_403_and_another_apps_token_404_and_nothing_is_recorded);

async fn an_approve_mode_run_waits_for_an_approver_then_runs(db: Db) {
    // Repairs are approved by default here: a run by hand is too, and may not ask for auto.
    let config =
        "trust:\n  default_mode: approve\n  approval:\n    approvers: [\"console:lead\"]\n";
    let app = spawn(db, Some(config)).await;
    let alice = token("alice", Role::Editor, &["prod"]);

    let (s, body) = run_by_hand(
        &app,
        &alice,
        json!({"playbook": "restart", "target": WEB, "mode": "auto"}),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["field"], "mode", "{body}");

    let (s, body) = run_by_hand(&app, &alice, json!({"playbook": "restart", "target": WEB})).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{body}");
    assert_eq!(
        (&body["state"], &body["mode"]),
        (&json!("awaiting_approval"), &json!("approve"))
    );
    let id = body["job_id"].as_i64().unwrap();
    let (_, repair) = app.api_get(&alice, &format!("/api/repairs/{id}")).await;
    assert_eq!(repair["repair"]["state"], "awaiting_approval", "{repair}");
    // While it waits it holds the target.
    let (s, busy) = run_by_hand(&app, &alice, json!({"playbook": "restart", "target": WEB})).await;
    assert_eq!(
        (s, &busy["reason"]),
        (StatusCode::CONFLICT, &json!("target_busy")),
        "{busy}"
    );

    let lead = token("console:lead", Role::Editor, &["prod"]);
    let (s, decided) = app
        .api_post(&lead, &format!("/api/repairs/{id}/approve"), json!({}))
        .await;
    assert_eq!(s, StatusCode::OK, "{decided}");
    let job = wait_for_state(&app, id, JobState::Succeeded).await;
    assert_eq!(job.spec.by_hand.as_ref().unwrap().by, "alice");
    let states: Vec<String> = app
        .store()
        .await
        .job_events(id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.to)
        .collect();
    assert_eq!(
        states,
        [
            "awaiting_approval",
            "queued",
            "running",
            "verifying",
            "succeeded"
        ]
    );
}
both_backends!(an_approve_mode_run_waits_for_an_approver_then_runs);

async fn a_run_from_a_stored_alert_takes_its_target_from_the_alerts_labels(db: Db) {
    let app = spawn(db, None).await;
    // No rule acts on this alert (no auto_repair label); its labels name the api workload.
    let starts_at = common::minutes_ago(3);
    let alert = payload(
        &[(
            &[
                ("alertname", "HighLatency"),
                ("namespace", "prod"),
                ("app", "api"),
                ("severity", "warning"),
            ],
            "firing",
        )],
        &starts_at,
    );
    assert_eq!(app.post_webhook(alert).await.status(), 200);
    let alice = token("alice", Role::Editor, &["prod"]);
    let (_, alerts) = app.api_get(&alice, "/api/alerts").await;
    let alert_id = alerts["items"][0]["id"].as_i64().unwrap();
    assert_eq!(alerts["items"][0]["decisions"][0]["reason"], "no_rule");

    let (s, body) = run_by_hand(
        &app,
        &alice,
        json!({"playbook": "restart", "alert": alert_id, "params": {"rollout_timeout": "2m"}}),
    )
    .await;

    assert_eq!(s, StatusCode::ACCEPTED, "{body}");
    assert_eq!(
        body["target"], "prod/Deployment/api",
        "from the labels: {body}"
    );
    assert_eq!(body["alert"], alert_id);
    assert_eq!(
        body["params"]["rollout_timeout"], "2m",
        "the request's over the rule's"
    );
    let id = body["job_id"].as_i64().unwrap();
    let job = wait_for_state(&app, id, JobState::Succeeded).await;
    assert_eq!(job.alert_event_id, alert_id, "the job belongs to the alert");
    assert_eq!(job.alertname, "HighLatency");
    // The alert shows what was done about it.
    let (_, shown) = app
        .api_get(&alice, &format!("/api/alerts/{alert_id}"))
        .await;
    let decisions = shown["decisions"].as_array().unwrap();
    let by_hand = decisions
        .iter()
        .find(|d| d["job_id"] == id)
        .unwrap_or_else(|| panic!("{shown}"));
    assert_eq!(
        (&by_hand["verdict"], &by_hand["rule"]),
        (&json!("job"), &json!("restart"))
    );
    assert_eq!(by_hand["requested_by"], "alice", "{by_hand}");
    assert!(
        by_hand["sentence"]
            .as_str()
            .unwrap()
            .starts_with("alice ran a repair by hand under rule restart"),
        "{by_hand}"
    );
    // Once it has resolved, a repair from it could be neither verified nor approved.
    let resolve = payload(
        &[(
            &[
                ("alertname", "HighLatency"),
                ("namespace", "prod"),
                ("app", "api"),
                ("severity", "warning"),
            ],
            "resolved",
        )],
        &starts_at,
    );
    assert_eq!(app.post_webhook(resolve).await.status(), 200);
    let (s, body) = run_by_hand(
        &app,
        &alice,
        json!({"playbook": "restart", "alert": alert_id}),
    )
    .await;
    assert_eq!(
        (s, &body["field"]),
        (StatusCode::UNPROCESSABLE_ENTITY, &json!("alert")),
        "{body}"
    );
}
both_backends!(a_run_from_a_stored_alert_takes_its_target_from_the_alerts_labels);

async fn malformed_bodies_get_400_naming_the_field_and_nothing_but_the_audit_line(db: Db) {
    let app = spawn(db, None).await;
    let alice = token("alice", Role::Editor, &["prod"]);
    for (body, status, field) in [
        (json!({"target": WEB}), 400, "playbook"),
        (json!({"playbook": "restart"}), 400, "target"),
        (
            json!({"playbook": "restart", "target": WEB, "alert": 1}),
            400,
            "alert",
        ),
        (
            json!({"playbook": "restart", "target": "web"}),
            400,
            "target",
        ),
        (
            json!({"playbook": "restart", "target": "prod/Pod/web"}),
            400,
            "target",
        ),
        (
            json!({"playbook": "restart", "target": WEB, "force": true}),
            400,
            "force",
        ),
        (
            json!({"playbook": "restart", "target": WEB, "params": [1]}),
            400,
            "params",
        ),
        (
            json!({"playbook": "restart", "target": WEB, "mode": "yolo"}),
            400,
            "mode",
        ),
        (
            json!({"playbook": "restart", "target": WEB, "reason": "x".repeat(1001)}),
            400,
            "reason",
        ),
        (
            json!({"playbook": "reboot-the-world", "target": WEB}),
            422,
            "playbook",
        ),
        (
            json!({"playbook": "restart", "alert": 424242}),
            404,
            "alert",
        ),
        // Nobody may approve: a run in approve mode would only wait and expire.
        (
            json!({"playbook": "restart", "target": WEB, "mode": "approve"}),
            422,
            "mode",
        ),
    ] {
        let (s, answer) = run_by_hand(&app, &alice, body.clone()).await;
        assert_eq!(
            (s.as_u16(), answer["field"].as_str()),
            (status, Some(field)),
            "{body} → {answer}"
        );
        assert!(answer["error"].as_str().is_some_and(|e| !e.is_empty()));
    }
    let r = app
        .client
        .post(app.url("/api/repairs"))
        .bearer_auth(&alice)
        .header("content-type", "application/json")
        .body("{\"playbook\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let answer: Value = r.json().await.unwrap();
    assert_eq!(answer["field"], "body", "{answer}");

    let raw = raw_db(&app.db.url).await;
    for table in ["alert_events", "decisions", "jobs"] {
        assert_eq!(count_rows(&raw, table).await, 0, "{table}");
    }
    assert_eq!(audited(&app.store().await).await.len(), 13);
}
both_backends!(malformed_bodies_get_400_naming_the_field_and_nothing_but_the_audit_line);
