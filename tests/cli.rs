//! The command line and reloads: `check`, `simulate`, `POST /-/reload`, SIGHUP.

mod common;

use std::collections::HashMap;

use aiops::store::JobState;
use common::files::{definitions_env, write_definitions};
use common::{Db, Spawn, TestApp, payload, repo, run_cli};
use serde_json::Value;

#[test]
fn check_passes_on_the_shipped_rules_and_playbooks() {
    let (status, out, err) = run_cli(&repo(), &["check"], &HashMap::new());
    assert!(status.success(), "{out}{err}");
    // Run from the checkout: its ./rules and ./playbooks win over the embedded copies.
    assert!(out.contains("rules: rules (5 rules)\n"), "{out}");
    assert!(
        out.contains("playbooks: playbooks (5 playbooks)\n"),
        "{out}"
    );
}

#[test]
fn check_fails_with_file_and_line_for_each_problem() {
    let dir = tempfile::tempdir().unwrap();
    write_definitions(
        dir.path(),
        &[(
            "a.yaml",
            "rules:\n  - name: ok\n    matchers: ['a=\"b\"']\n    playbook: missing\n  - name: typo\n    matchers: ['a=\"b\"']\n    playbook: fix\n    cooldwn: 5m\n",
        )],
        &[("fix.rhai", "let x = 1;\nlet = 2;\n")],
    );
    let env = definitions_env(&dir.path().join("rules"), &dir.path().join("playbooks"));
    let (status, _out, err) = run_cli(dir.path(), &["check"], &env);
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(
        err.contains("a.yaml:8:"),
        "unknown field with its line: {err}"
    );
    assert!(err.contains("cooldwn"), "{err}");
    assert!(
        err.contains("fix.rhai:2:"),
        "playbook syntax error with its line: {err}"
    );
}

#[test]
fn check_reports_a_missing_playbook_at_the_rule_that_names_it() {
    let dir = tempfile::tempdir().unwrap();
    write_definitions(
        dir.path(),
        &[(
            "a.yaml",
            "rules:\n  - name: one\n    matchers: ['a=\"b\"']\n    playbook: restart\n    escalate:\n      - playbook: nosuch\n",
        )],
        &[],
    );
    let env = definitions_env(&dir.path().join("rules"), &repo().join("playbooks"));
    let (status, _out, err) = run_cli(dir.path(), &["check"], &env);
    assert_eq!(status.code(), Some(1));
    assert!(err.contains("a.yaml:2") && err.contains("nosuch"), "{err}");
}

#[test]
fn check_rejects_an_invalid_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("aiops.yaml");
    std::fs::write(&cfg, "listen: 127.0.0.1:9095\njobs:\n  workerz: 3\n").unwrap();
    let (status, _out, err) = run_cli(
        &repo(),
        &["--config", cfg.to_str().unwrap(), "check"],
        &HashMap::new(),
    );
    assert_eq!(status.code(), Some(1));
    assert!(
        err.contains("aiops.yaml:3:") && err.contains("workerz"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulate_prints_each_verdict_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = repo().join("tests/fixtures/am-0.25-firing-grouped-3.json");
    let env = definitions_env(&repo().join("rules"), &repo().join("playbooks"));
    let (status, out, err) = run_cli(dir.path(), &["simulate", fixture.to_str().unwrap()], &env);
    assert!(status.success(), "{out}{err}");
    assert!(
        out.contains("rule restart: allowed by every guard -> would create a job (queued)"),
        "{out}"
    );
    assert!(
        out.contains("plan: run playbook restart on prod/Deployment/demo now"),
        "{out}"
    );
    assert!(out.contains("refused (target_busy)"), "{out}");
    assert!(out.contains("refused (no_target)"), "{out}");
    assert!(
        !dir.path().join("aiops.db").exists(),
        "simulate never creates the store"
    );

    // Against a store that has seen the payload, the verdict is "duplicate"; the store is unchanged.
    let app = TestApp::spawn(Spawn::new(Db::Sqlite)).await;
    app.post_fixture("am-0.25-firing-grouped-3.json").await;
    app.wait_all_jobs_in(&[JobState::Succeeded]).await;
    let mut env = env.clone();
    env.insert("AIOPS_DATABASE_URL", app.db.url.clone());
    let fresh = payload(
        &[(
            &[
                ("auto_repair", "restart"),
                ("namespace", "prod"),
                ("app", "other"),
            ],
            "firing",
        )],
        "2026-11-26T01:00:00Z",
    );
    let fresh_file = dir.path().join("fresh.json");
    std::fs::write(&fresh_file, fresh).unwrap();
    let (status, out, _) = run_cli(
        dir.path(),
        &["simulate", "--json", fixture.to_str().unwrap()],
        &env,
    );
    assert!(status.success());
    let verdicts: Value = serde_json::from_str(&out).unwrap();
    assert!(
        verdicts
            .as_array()
            .unwrap()
            .iter()
            .all(|v| v["dedup"] == "duplicate"),
        "{verdicts}"
    );
    let (status, out, _) = run_cli(
        dir.path(),
        &["simulate", fresh_file.to_str().unwrap()],
        &env,
    );
    assert!(status.success());
    assert!(out.contains("would create a job (queued)"), "{out}");
    let store = app.store().await;
    assert_eq!(
        store.count_alert_events().await.unwrap(),
        3,
        "simulate recorded nothing"
    );
    assert_eq!(store.jobs().await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_reload_keeps_the_running_rules_and_says_why() {
    let app = TestApp::spawn(Spawn::new(Db::Sqlite)).await;
    let rules_file = app.dir.path().join("rules/auto-repair.yaml");
    let original = std::fs::read_to_string(&rules_file).unwrap();
    std::fs::write(
        &rules_file,
        format!(
            "{original}\n  - name: broken\n    matchers: ['a=~\"(\"']\n    playbook: restart\n"
        ),
    )
    .unwrap();
    let resp = app.client.post(app.url("/-/reload")).send().await.unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    let problems = body["problems"].to_string();
    assert!(problems.contains("auto-repair.yaml:"), "{problems}");
    // The running rules still act.
    app.post_fixture("am-0.25-firing-grouped-3.json").await;
    let jobs = app.wait_all_jobs_in(&[JobState::Succeeded]).await;
    assert_eq!(jobs.len(), 1);
    assert!(
        app.metrics()
            .await
            .contains("aiops_reloads_total{result=\"failure\"} 1")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_rules_so_a_new_rule_matches() {
    let app = TestApp::spawn(Spawn::new(Db::Sqlite).rules("rules: []\n")).await;
    let alert = payload(
        &[(
            &[("alertname", "Down"), ("namespace", "prod"), ("app", "web")],
            "firing",
        )],
        "2026-11-26T01:00:00Z",
    );
    let body: Value = app.post_webhook(alert.clone()).await.json().await.unwrap();
    assert_eq!(body["jobs"].as_array().unwrap().len(), 0);
    std::fs::write(
        app.dir.path().join("rules/test.yaml"),
        "rules:\n  - name: down\n    matchers: ['alertname=\"Down\"']\n    playbook: restart\n",
    )
    .unwrap();
    app.signal("HUP");
    app.wait_for_metric(
        "aiops_reloads_total{result=\"success\"} 1",
        std::time::Duration::from_secs(10),
    )
    .await;
    let next = alert.replace("01:00:00Z", "01:05:00Z");
    let body: Value = app.post_webhook(next).await.json().await.unwrap();
    assert_eq!(body["jobs"].as_array().unwrap().len(), 1, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_needs_the_webhook_token_when_one_is_set() {
    let app = TestApp::spawn(
        Spawn::new(Db::Sqlite).env("AIOPS_WEBHOOK_TOKEN", "reload-token-0123456789"),
    )
    .await;
    let resp = app.client.post(app.url("/-/reload")).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let resp = app
        .client
        .post(app.url("/-/reload"))
        .bearer_auth("reload-token-0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_cleanly_and_leaves_pending_jobs_queued_for_the_next_start() {
    let rules = "rules:\n  - name: later\n    matchers: ['auto_repair=\"restart\"']\n    playbook: restart\n    wait: 24h\n";
    let mut app = TestApp::spawn(Spawn::new(Db::Sqlite).rules(rules)).await;
    // The wait counts from startsAt: a fixed date would make the job due once it is 24 h old.
    let alert = payload(
        &[(
            &[
                ("auto_repair", "restart"),
                ("namespace", "prod"),
                ("app", "web"),
            ],
            "firing",
        )],
        &chrono::Utc::now().to_rfc3339(),
    );
    assert_eq!(app.post_webhook(alert).await.status(), 200);
    let status = app.stop();
    assert!(status.success(), "{status}");
    assert!(app.log_text().contains("stopped"));
    let store = app.store().await;
    assert_eq!(
        store.jobs().await.unwrap()[0].state,
        JobState::Waiting,
        "{}",
        app.log_text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_password_never_appears_in_logs_or_errors() {
    let dir = tempfile::tempdir().unwrap();
    let mut env = definitions_env(&repo().join("rules"), &repo().join("playbooks"));
    // Port 9 (discard) on loopback refuses connections: the error path runs.
    env.insert(
        "AIOPS_DATABASE_URL",
        "postgres://aiops:hunter2-pw@127.0.0.1:9/aiops".into(),
    );
    let (status, out, err) = run_cli(dir.path(), &["serve"], &env);
    assert!(!status.success());
    assert!(
        !out.contains("hunter2") && !err.contains("hunter2"),
        "{out}{err}"
    );
    assert!(err.contains("cannot open the store"), "{err}");
}
