//! `aiops replay` through the binary, on SQLite and PostgreSQL: a week of history made by the
//! daemon itself (each webhook decided and repaired by `aiops serve`, then the whole store moved
//! back in time before the next, so every guard decided on the history it had), replayed under
//! the same rules (no difference) and under changed ones (exactly the expected differences, in
//! text and JSON); the store is left as it was; bad arguments and broken rules exit 2.

use crate::both_backends;
use crate::common;

use std::collections::HashMap;
use std::path::Path;

use aiops::store::JobState;
use common::payload::{alert, group};
use common::{Db, Spawn, TestApp, count_rows, raw_db, run_cli};
use serde_json::{Value, json};

/// The rules the week was decided with.
const RECORDED_RULES: &str = r#"
rules:
  - name: restart-web
    matchers: ['alertname="WebDown"']
    playbook: restart
    cooldown: 1h
  - name: api-oom
    matchers: ['alertname="ApiOOM"']
    playbook: restart
  - name: api-slow
    matchers: ['alertname="ApiSlow"']
    playbook: restart
    wait: 1h
  - name: worker-stuck
    matchers: ['alertname="WorkerStuck"', 'severity=~"warning|critical"']
    playbook: restart
  - name: demo-dirty
    matchers: ['alertname="DemoDirty"']
    playbook: restart
"#;

/// A rule author's change: restart-web's cooldown lengthened, api-oom's playbook changed,
/// worker-stuck narrowed to critical, demo-dirty removed, calm-restart added.
const CHANGED_RULES: &str = r#"
rules:
  - name: restart-web
    matchers: ['alertname="WebDown"']
    playbook: restart
    cooldown: 2d
  - name: api-oom
    matchers: ['alertname="ApiOOM"']
    playbook: rollback
  - name: api-slow
    matchers: ['alertname="ApiSlow"']
    playbook: restart
    wait: 1h
  - name: worker-stuck
    matchers: ['alertname="WorkerStuck"', 'severity="critical"']
    playbook: restart
  - name: calm-restart
    matchers: ['alertname="CalmDown"']
    playbook: restart
"#;

const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;

/// Every stored time column: moving them all by the same amount keeps the history's shape
/// and puts it further in the past.
const TIME_COLUMNS: &[(&str, &[&str])] = &[
    (
        "alert_events",
        &["starts_at", "ends_at", "received_at", "resolved_at"],
    ),
    ("decisions", &["created_at"]),
    (
        "jobs",
        &[
            "not_before",
            "created_at",
            "updated_at",
            "started_at",
            "finished_at",
            "heartbeat_at",
        ],
    ),
    ("job_events", &["at"]),
    ("job_steps", &["at"]),
    ("escalations", &["created_at"]),
    ("storm_brakes", &["engaged_at", "released_at"]),
    ("target_activity", &["last_seen"]),
    (
        "notifications",
        &["next_attempt_at", "created_at", "sent_at", "lease_until"],
    ),
    ("notification_attempts", &["at"]),
    ("audit_log", &["at"]),
];

/// Every table the daemon writes, for the "changed nothing" check.
const TABLES: &[&str] = &[
    "alert_events",
    "decisions",
    "jobs",
    "job_events",
    "job_steps",
    "escalations",
    "storm_brakes",
    "target_activity",
    "notifications",
    "notification_attempts",
    "audit_log",
    "kb_daily",
    "kb_daily_all",
];

async fn move_back(raw: &sqlx::AnyPool, by: i64) {
    for (table, columns) in TIME_COLUMNS {
        let set: Vec<String> = columns.iter().map(|c| format!("{c} = {c} - $1")).collect();
        let sql = format!("UPDATE {table} SET {}", set.join(", "));
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(by)
            .execute(raw)
            .await
            .unwrap();
    }
}

/// An alert's labels.
type Labels<'a> = Vec<(&'a str, &'a str)>;

fn labels<'a>(name: &'a str, app: &'a str, extra: &[(&'a str, &'a str)]) -> Labels<'a> {
    let mut l = vec![("alertname", name), ("namespace", "prod"), ("app", app)];
    l.extend_from_slice(extra);
    l
}

/// Now, as a `startsAt` (each step is a new occurrence).
fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A payload of alerts in `status`, all starting at `starts_at`.
fn webhook(status: &str, alerts: &[Labels], starts_at: &str) -> String {
    group(alerts.iter().map(|l| alert(status, l, starts_at)).collect()).to_string()
}

async fn post(app: &TestApp, body: String) {
    let resp = app.post_webhook(body).await;
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
}

/// Waits until no job is active (the next step must not find one running).
async fn settle(app: &TestApp) {
    app.wait_all_jobs_in(&[JobState::Succeeded, JobState::Cancelled])
        .await;
}

/// The week: each step is a webhook the daemon decides (and repairs) now; then the whole store
/// moves back by the step's gap, so the next step is decided that long after it. The last step
/// ends six hours before the replay.
async fn seed_week(app: &TestApp, raw: &sqlx::AnyPool) {
    let web = labels("WebDown", "web", &[]);
    let api = labels("ApiOOM", "api", &[]);
    let slow = labels("ApiSlow", "api", &[]);
    let warning = labels("WorkerStuck", "other", &[("severity", "warning")]);
    let critical = labels("WorkerStuck", "other", &[("severity", "critical")]);
    let demo = labels("DemoDirty", "demo", &[]);
    let calm = labels("CalmDown", "calm", &[]);
    let watchdog = labels("Watchdog", "none", &[]);
    let steps: Vec<(Vec<Labels>, i64)> = vec![
        // Before the replayed week: a repair of web.
        (vec![web.clone()], 2 * DAY + 12 * HOUR),
        (vec![web.clone()], DAY),
        (vec![api.clone()], 12 * HOUR),
        // A day and a half after the last repair of web: allowed by the 1h cooldown, refused
        // by 2d.
        (vec![web.clone()], HOUR / 2),
        // Half an hour later: refused by both cooldowns.
        (vec![web.clone()], DAY),
        (vec![warning], DAY),
        (vec![critical], 12 * HOUR),
    ];
    for (alerts, gap) in steps {
        post(app, webhook("firing", &alerts, &now())).await;
        settle(app).await;
        move_back(raw, gap).await;
    }
    // api-slow waits an hour, so its job holds api (waiting) when a new ApiOOM arrives: refused
    // target_busy. Then ApiSlow resolves and its job is cancelled: today api is free, but the
    // replay must see it busy as it was.
    let slow_starts = now();
    post(
        app,
        webhook("firing", std::slice::from_ref(&slow), &slow_starts),
    )
    .await;
    post(app, webhook("firing", &[api], &now())).await;
    post(app, webhook("resolved", &[slow], &slow_starts)).await;
    settle(app).await;
    move_back(raw, 12 * HOUR).await;
    for (alerts, gap) in [(vec![demo], DAY), (vec![calm, watchdog], 6 * HOUR)] {
        post(app, webhook("firing", &alerts, &now())).await;
        settle(app).await;
        move_back(raw, gap).await;
    }
}

/// A firing occurrence as stored: (id, received_at, fingerprint).
async fn occurrence(raw: &sqlx::AnyPool, alertname: &str, nth: usize) -> (i64, i64, String) {
    let rows = sqlx::query(
        "SELECT id, received_at, fingerprint FROM alert_events \
         WHERE alertname = $1 AND status = 'firing' ORDER BY received_at",
    )
    .bind(alertname)
    .fetch_all(raw)
    .await
    .unwrap();
    let r = &rows[nth];
    use sqlx::Row;
    (r.get("id"), r.get("received_at"), r.get("fingerprint"))
}

/// A time as the JSON report writes it: always with milliseconds (the text report drops a zero
/// fraction, so one time in a thousand differs between the two).
fn json_time(ms: i64) -> String {
    aiops::store::rfc3339::format(ms).unwrap()
}

/// A time as the text report writes it.
fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

/// What the guard says when restart-web's 2-day cooldown refuses the repair of web that the
/// recorded 1-hour one allowed: the repair it counts from is the second one of web.
async fn cooldown_detail(raw: &sqlx::AnyPool) -> String {
    use sqlx::Row;
    let rows =
        sqlx::query("SELECT finished_at FROM jobs WHERE rule = 'restart-web' ORDER BY created_at")
            .fetch_all(raw)
            .await
            .unwrap();
    let last: i64 = rows[1].get("finished_at");
    let at = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms)
            .unwrap()
            .to_rfc3339()
    };
    format!(
        "rule restart-web last acted on prod/Deployment/web at {}; cooldown 2days lasts until {}",
        at(last),
        at(last + 2 * DAY)
    )
}

/// Row counts of every table the daemon writes.
async fn counts(url: &str) -> Vec<(&'static str, i64)> {
    let raw = raw_db(url).await;
    let mut out = Vec::new();
    for t in TABLES {
        out.push((*t, count_rows(&raw, t).await));
    }
    raw.close().await;
    out
}

fn write_rules(dir: &Path, yaml: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("rules.yaml"), yaml).unwrap();
}

async fn a_seeded_week_replays_with_exactly_the_expected_differences(db: Db) {
    // Arrange: a week decided and repaired by the daemon under RECORDED_RULES.
    let mut app = TestApp::spawn(Spawn::new(db).rules(RECORDED_RULES)).await;
    let raw = raw_db(&app.db.url).await;
    seed_week(&app, &raw).await;
    let api = occurrence(&raw, "ApiOOM", 0).await;
    let web = occurrence(&raw, "WebDown", 2).await;
    let warning = occurrence(&raw, "WorkerStuck", 0).await;
    let demo = occurrence(&raw, "DemoDirty", 0).await;
    let calm = occurrence(&raw, "CalmDown", 0).await;
    let cooldown = cooldown_detail(&raw).await;
    raw.close().await;
    assert!(app.stop().success());
    let dir = app.dir.path();
    let (recorded_rules, changed_rules) = (dir.join("recorded"), dir.join("changed"));
    write_rules(&recorded_rules, RECORDED_RULES);
    write_rules(&changed_rules, CHANGED_RULES);
    let playbooks = dir.join("playbooks");
    let env = HashMap::from([
        ("AIOPS_DATABASE_URL", app.db.url.clone()),
        ("AIOPS_PLAYBOOKS_DIR", playbooks.display().to_string()),
        ("AIOPS_RULES_DIR", recorded_rules.display().to_string()),
    ]);
    let before = counts(&app.db.url).await;
    let file = (db == Db::Sqlite).then(|| dir.join("aiops.db"));
    let bytes = file.as_ref().map(|f| std::fs::read(f).unwrap());
    let changed = changed_rules.to_str().unwrap();

    // Act + Assert: under the rules that made it, the week decides the same.
    let (status, out, err) = run_cli(dir, &["replay", "--since", "7d", "--fail-on-diff"], &env);
    assert!(status.success(), "{out}\n{err}");
    assert_eq!(
        out.lines().skip(1).collect::<Vec<_>>(),
        ["totals: 11 replayed, 11 same, 0 different"],
        "{out}\n{err}"
    );

    // Under the changed rules: exactly these differences, in the order received.
    let (status, out, err) = run_cli(dir, &["replay", "--since", "7d", "--rules", changed], &env);
    assert!(status.success(), "{out}\n{err}");
    let line = |o: &(i64, i64, String), name: &str, kind: &str| {
        format!("{} {name} {} [{}]: {kind}", rfc3339(o.1), o.2, o.0)
    };
    let expected = [
        line(&api, "ApiOOM", "other_playbook"),
        "  recorded: rule api-oom: job, playbook restart (auto) on prod/Deployment/api".into(),
        "  replayed: rule api-oom: job, playbook rollback (auto) on prod/Deployment/api".into(),
        line(&web, "WebDown", "would_not_act"),
        "  recorded: rule restart-web: job, playbook restart (auto) on prod/Deployment/web".into(),
        format!("  replayed: rule restart-web: refused (cooldown): {cooldown}"),
        line(&warning, "WorkerStuck", "would_not_act"),
        "  recorded: rule worker-stuck: job, playbook restart (auto) on prod/Deployment/other"
            .into(),
        "  replayed: no rule matched".into(),
        line(&demo, "DemoDirty", "would_not_act"),
        "  recorded: rule demo-dirty: job, playbook restart (auto) on prod/Deployment/demo".into(),
        "  replayed: no rule matched".into(),
        line(&calm, "CalmDown", "would_act"),
        "  recorded: no rule matched".into(),
        "  replayed: rule calm-restart: job, playbook restart (auto) on prod/Deployment/calm"
            .into(),
        "totals: 11 replayed, 6 same, 5 different (would_act 1, would_not_act 3, other_playbook 1)"
            .to_string(),
    ];
    assert_eq!(
        out.lines().skip(1).collect::<Vec<_>>(),
        expected,
        "{out}\n{err}"
    );
    assert!(
        out.starts_with("replayed 11 firing alert(s) received "),
        "{out}"
    );

    // --fail-on-diff turns differences into exit 1 for CI.
    let (status, _, _) = run_cli(
        dir,
        &[
            "replay",
            "--since",
            "7d",
            "--rules",
            changed,
            "--fail-on-diff",
        ],
        &env,
    );
    assert_eq!(status.code(), Some(1));

    // The same in JSON.
    let (status, out, err) = run_cli(
        dir,
        &["replay", "--since", "7d", "--rules", changed, "--json"],
        &env,
    );
    assert!(status.success(), "{err}");
    let mut report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        report["totals"],
        json!({"replayed": 11, "same": 6, "different": 5, "by_kind": {
            "would_act": 1, "would_not_act": 3, "other_rule": 0, "other_playbook": 1,
            "other_mode": 0, "other_verdict": 0}})
    );
    assert_eq!(report["unplaced_jobs"], 0);
    assert_eq!(
        report["differences"][1]["replayed"][0]["detail"],
        json!(cooldown)
    );
    for d in report["differences"].as_array_mut().unwrap() {
        for side in ["recorded", "replayed"] {
            for o in d[side].as_array_mut().unwrap() {
                o.as_object_mut().unwrap().remove("detail");
            }
        }
    }
    let job = |rule: &str, playbook: &str, app: &str| {
        json!({"rule": rule, "verdict": "job", "reason": "plan", "playbook": playbook,
               "mode": "auto", "target": format!("prod/Deployment/{app}")})
    };
    let diff = |o: &(i64, i64, String), name: &str, kind: &str, rec: Value, rep: Value| {
        json!({"kind": kind, "alert_id": o.0, "received_at": json_time(o.1), "alertname": name,
               "fingerprint": o.2, "recorded": rec, "replayed": rep})
    };
    assert_eq!(
        report["differences"],
        json!([
            diff(
                &api,
                "ApiOOM",
                "other_playbook",
                json!([job("api-oom", "restart", "api")]),
                json!([job("api-oom", "rollback", "api")])
            ),
            diff(
                &web,
                "WebDown",
                "would_not_act",
                json!([job("restart-web", "restart", "web")]),
                json!([{"rule": "restart-web", "verdict": "refused", "reason": "cooldown",
                         "playbook": null, "mode": null, "target": "prod/Deployment/web"}])
            ),
            diff(
                &warning,
                "WorkerStuck",
                "would_not_act",
                json!([job("worker-stuck", "restart", "other")]),
                json!([])
            ),
            diff(
                &demo,
                "DemoDirty",
                "would_not_act",
                json!([job("demo-dirty", "restart", "demo")]),
                json!([])
            ),
            diff(
                &calm,
                "CalmDown",
                "would_act",
                json!([]),
                json!([job("calm-restart", "restart", "calm")])
            ),
        ])
    );

    // The store is as it was: every table's rows, and on SQLite the file itself.
    assert_eq!(counts(&app.db.url).await, before);
    if let (Some(f), Some(bytes)) = (file, bytes) {
        assert!(
            std::fs::read(f).unwrap() == bytes,
            "replay changed the store file"
        );
    }
}
both_backends!(a_seeded_week_replays_with_exactly_the_expected_differences);

async fn a_held_occurrence_sent_again_after_its_window_replays_without_a_difference(db: Db) {
    // Arrange: a short window holds the alert; its re-send after the window is acted on, so the
    // occurrence has a maintenance refusal at arrival and a job made later.
    const SECRET: &str = "test-secret-for-the-api-0123456789abcdef";
    let rules = "rules:\n  - name: restart-web\n    matchers: ['alertname=\"WebDown\"']\n    playbook: restart\n";
    let mut app = TestApp::spawn(Spawn::new(db).rules(rules).env("AIOPS_JWT_SECRET", SECRET)).await;
    let admin = common::api::token(SECRET, aiops::auth::Role::Admin, &[]);
    let end = aiops::store::now_ms() + 2_000;
    let (s, w) = app
        .api_post(
            &admin,
            "/api/maintenance",
            json!({"namespace": "prod", "reason": "upgrade",
                   "start": rfc3339(end - 60_000), "end": rfc3339(end)}),
        )
        .await;
    assert_eq!(s, 201, "{w}");
    let starts = now();
    let web = webhook("firing", &[labels("WebDown", "web", &[])], &starts);
    let held = app.post_webhook_json(web.clone()).await;
    assert_eq!(held["refused"].as_u64(), Some(1), "{held}");
    common::wait::until(
        "the window to close",
        common::wait::DEFAULT_WITHIN,
        async || (aiops::store::now_ms() > end).then_some(()),
        String::new,
    )
    .await;
    let acted = app.post_webhook_json(web).await;
    assert_eq!(acted["jobs"].as_array().map(Vec::len), Some(1), "{acted}");
    settle(&app).await;
    assert!(app.stop().success());
    let dir = app.dir.path();
    let recorded = dir.join("recorded");
    write_rules(&recorded, rules);
    let env = HashMap::from([
        ("AIOPS_DATABASE_URL", app.db.url.clone()),
        (
            "AIOPS_PLAYBOOKS_DIR",
            dir.join("playbooks").display().to_string(),
        ),
        ("AIOPS_RULES_DIR", recorded.display().to_string()),
    ]);

    // Act + Assert: replayed at its arrival, the alert is held, as it was then.
    let (status, out, err) = run_cli(dir, &["replay", "--since", "1d", "--fail-on-diff"], &env);
    assert!(status.success(), "{out}\n{err}");
    assert_eq!(
        out.lines().skip(1).collect::<Vec<_>>(),
        ["totals: 1 replayed, 1 same, 0 different"],
        "{out}\n{err}"
    );
}
both_backends!(a_held_occurrence_sent_again_after_its_window_replays_without_a_difference);

#[test]
fn a_bad_since_or_rules_with_errors_exit_2_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let env = HashMap::from([(
        "AIOPS_DATABASE_URL",
        format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("aiops.db").display()
        ),
    )]);

    let (status, out, err) = run_cli(dir.path(), &["replay", "--since", "last week"], &env);
    assert_eq!(status.code(), Some(2), "{out}\n{err}");
    assert!(
        err.contains("\"last week\" is neither a duration (7d, 36h) nor an RFC 3339 time"),
        "{err}"
    );

    let broken = dir.path().join("broken");
    write_rules(
        &broken,
        "rules:\n  - name: web\n    matchers: ['alertname=\"WebDown\"']\n    playbook: no-such-playbook\n",
    );
    let (status, out, err) = run_cli(
        dir.path(),
        &[
            "replay",
            "--since",
            "7d",
            "--rules",
            broken.to_str().unwrap(),
        ],
        &env,
    );
    assert_eq!(status.code(), Some(2), "{out}\n{err}");
    assert!(
        err.starts_with("error: invalid rules or playbooks:"),
        "{err}"
    );
    assert!(err.contains("no-such-playbook"), "{err}");
    assert!(
        !dir.path().join("aiops.db").exists(),
        "a refused replay never creates the store"
    );
}
