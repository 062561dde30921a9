//! Guards and the job state machine, seen from outside: cooldowns, budgets, storm brake,
//! namespaces, waits cancelled by a resolve, interrupted jobs, escalation chains.

use crate::both_backends;
use crate::common;

use aiops::store::JobState;
use common::{Db, Spawn, TestApp, minutes_ago, payload};
use serde_json::Value;

fn firing(ns: &str, app: &str, starts_at: &str) -> String {
    payload(
        &[(
            &[
                ("auto_repair", "restart"),
                ("namespace", ns),
                ("app", app),
                ("alertname", "Down"),
            ],
            "firing",
        )],
        starts_at,
    )
}

const COOLDOWN_RULES: &str = r#"
rules:
  - name: restart
    matchers: ['auto_repair="restart"']
    playbook: restart
    cooldown: 1h
    budget: {max: 2, window: 24h}
"#;

async fn a_second_firing_within_the_cooldown_is_refused_and_recorded(db: Db) {
    let app = TestApp::spawn(Spawn::new(db).rules(COOLDOWN_RULES)).await;
    assert_eq!(
        app.post_webhook(firing("prod", "web", "2026-11-26T01:00:00Z"))
            .await
            .status(),
        200
    );
    app.wait_all_jobs_in(&[JobState::Succeeded]).await;
    // A new occurrence (new startsAt) of the same problem on the same target.
    let resp = app
        .post_webhook(firing("prod", "web", "2026-11-26T02:00:00Z"))
        .await;
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["refused"], 1, "{body}");
    let refusals = app.store().await.refusals().await.unwrap();
    assert_eq!(
        refusals,
        [(
            "restart".to_string(),
            Some("prod/Deployment/web".to_string()),
            "cooldown".to_string()
        )]
    );
    assert!(
        app.metrics()
            .await
            .contains("aiops_guard_refusals_total{mode=\"auto\",reason=\"cooldown\"} 1")
    );
}
both_backends!(a_second_firing_within_the_cooldown_is_refused_and_recorded);

async fn the_attempt_budget_is_kept_in_the_store_across_restarts(db: Db) {
    let rules = r#"
rules:
  - name: restart
    matchers: ['auto_repair="restart"']
    playbook: restart
    budget: {max: 2, window: 24h}
"#;
    let app = TestApp::spawn(Spawn::new(db).rules(rules)).await;
    for (i, ts) in ["2026-11-26T01:00:00Z", "2026-11-26T01:10:00Z"]
        .iter()
        .enumerate()
    {
        assert_eq!(
            app.post_webhook(firing("prod", "web", ts)).await.status(),
            200
        );
        app.wait_for_jobs("repair done", |j| {
            j.len() == i + 1 && j.iter().all(|j| j.state == JobState::Succeeded)
        })
        .await;
    }
    let app = app.restart().await;
    let body: Value = app
        .post_webhook_json(firing("prod", "web", "2026-11-26T01:20:00Z"))
        .await;
    assert_eq!(body["refused"], 1, "{body}");
    let refusals = app.store().await.refusals().await.unwrap();
    assert_eq!(refusals.last().unwrap().2, "budget");
    // Another target has its own budget.
    let body: Value = app
        .post_webhook_json(firing("prod", "api", "2026-11-26T01:20:00Z"))
        .await;
    assert_eq!(body["jobs"].as_array().unwrap().len(), 1, "{body}");
}
both_backends!(the_attempt_budget_is_kept_in_the_store_across_restarts);

async fn a_storm_of_distinct_targets_stops_acting_and_escalates_once(db: Db) {
    let rules = r#"
rules:
  - name: restart
    matchers: ['auto_repair="restart"']
    playbook: restart
"#;
    let app = TestApp::spawn(
        Spawn::new(db)
            .rules(rules)
            .env("AIOPS_STORM_MAX_TARGETS", "3"),
    )
    .await;
    let mut jobs = 0;
    let mut refused = 0;
    for i in 0..6 {
        let body: Value = app
            .post_webhook_json(firing("prod", &format!("app{i}"), "2026-11-26T01:00:00Z"))
            .await;
        jobs += body["jobs"].as_array().unwrap().len();
        refused += body["refused"].as_u64().unwrap();
    }
    assert_eq!(
        (jobs, refused),
        (3, 3),
        "three targets repaired, then the brake"
    );
    let store = app.store().await;
    let reasons: Vec<String> = store
        .refusals()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.2)
        .collect();
    assert_eq!(reasons, ["storm_brake"; 3]);
    let escalations = store.escalations().await.unwrap();
    let storm: Vec<_> = escalations
        .iter()
        .filter(|e| e.reason.contains("storm brake"))
        .collect();
    assert_eq!(
        storm.len(),
        1,
        "escalated once per episode: {escalations:#?}"
    );
    assert_eq!(storm[0].kind, "human");
}
both_backends!(a_storm_of_distinct_targets_stops_acting_and_escalates_once);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_system_is_denied_by_default() {
    let app = TestApp::spawn(Spawn::new(Db::Sqlite)).await;
    let body: Value = app
        .post_webhook_json(firing("kube-system", "coredns", "2026-11-26T01:00:00Z"))
        .await;
    assert_eq!(body["refused"], 1);
    let refusals = app.store().await.refusals().await.unwrap();
    assert_eq!(refusals[0].2, "namespace_denied");
    assert!(app.store().await.jobs().await.unwrap().is_empty());
}

async fn a_resolve_cancels_a_job_still_waiting(db: Db) {
    let rules = r#"
rules:
  - name: patient
    matchers: ['auto_repair="restart"']
    playbook: restart
    wait: 24h
"#;
    let app = TestApp::spawn(Spawn::new(db).rules(rules)).await;
    let fire = firing("prod", "web", &minutes_ago(5));
    let body: Value = app.post_webhook(fire.clone()).await.json().await.unwrap();
    let job_id = body["jobs"][0].as_i64().unwrap();
    let store = app.store().await;
    assert_eq!(
        store.job(job_id).await.unwrap().unwrap().state,
        JobState::Waiting
    );
    assert_eq!(
        app.post_webhook(fire.replace("\"firing\"", "\"resolved\""))
            .await
            .status(),
        200
    );
    let job = store.job(job_id).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Cancelled);
    let events = store.job_events(job_id).await.unwrap();
    let path: Vec<_> = events.iter().map(|e| e.to.as_str()).collect();
    assert_eq!(path, ["waiting", "cancelled"]);
}
both_backends!(a_resolve_cancels_a_job_still_waiting);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_left_running_by_a_crash_is_interrupted_and_escalated_at_start_up_never_rerun() {
    let rules = r#"
rules:
  - name: patient
    matchers: ['auto_repair="restart"']
    playbook: restart
    wait: 24h
"#;
    let mut app = TestApp::spawn(Spawn::new(Db::Sqlite).rules(rules)).await;
    // Starting now, so the 24 h wait keeps the job waiting (see above).
    let body: Value = app
        .post_webhook_json(firing("prod", "web", &minutes_ago(5)))
        .await;
    let id = body["jobs"][0].as_i64().unwrap();
    assert!(app.stop().success());
    // Arrange what a crash mid-repair leaves behind: the job claimed and running.
    {
        let store = app.store().await;
        assert!(
            store
                .transition(
                    id,
                    JobState::Waiting,
                    JobState::Running,
                    "test: simulated claim"
                )
                .await
                .unwrap()
        );
        store.close().await;
    }
    let app = TestApp::spawn_in(app.dir.clone(), app.db.clone(), Spawn::new(Db::Sqlite)).await;
    let store = app.store().await;
    let job = store.job(id).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Escalated);
    let path: Vec<_> = store
        .job_events(id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.to)
        .collect();
    assert_eq!(path, ["waiting", "running", "interrupted", "escalated"]);
    let esc = store.escalations().await.unwrap();
    assert_eq!(esc.len(), 1);
    assert_eq!((esc[0].kind.as_str(), esc[0].job_id), ("human", Some(id)));
    assert!(
        store.job_steps(id).await.unwrap().is_empty(),
        "nothing was re-run"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_step_escalates_to_the_next_playbook_of_the_chain() {
    let rules = r#"
rules:
  - name: flaky
    matchers: ['auto_repair="restart"']
    playbook: flaky
    wait: 3s
    escalate:
      - notify: oncall
      - playbook: rollback
        params: {rollout_timeout: 1m}
"#;
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let db = std::sync::Arc::new(common::TestDb::new(Db::Sqlite, dir.path()).await);
    let shipped = |pb: &str| {
        std::fs::read_to_string(common::repo().join(format!("playbooks/{pb}.rhai"))).unwrap()
    };
    let (rollback, restart) = (shipped("rollback"), shipped("restart"));
    common::files::write_definitions(
        dir.path(),
        &[("test.yaml", rules)],
        &[
            ("rollback.rhai", &rollback),
            ("restart.rhai", &restart),
            ("flaky.rhai", "success(\"ok\")"),
        ],
    );
    // A chain's `notify: NAME` must name a channel or a route: `oncall` is a webhook here.
    let app = TestApp::spawn_in(
        dir.clone(),
        db,
        Spawn::new(Db::Sqlite).config(
            "notify:\n  channels:\n    oncall: {type: webhook, url: \"http://127.0.0.1:9/aiops\"}\n",
        ),
    )
    .await;
    let now = chrono::Utc::now().to_rfc3339();
    let body: Value = app.post_webhook_json(firing("prod", "web", &now)).await;
    let first = body["jobs"][0].as_i64().unwrap();

    // The playbook disappears before the job is due (a reload without it): the step fails.
    std::fs::write(
        dir.path().join("rules/test.yaml"),
        "rules:\n  - name: other\n    matchers: ['x=\"y\"']\n    playbook: restart\n",
    )
    .unwrap();
    std::fs::remove_file(dir.path().join("playbooks/flaky.rhai")).unwrap();
    let reload = app.client.post(app.url("/-/reload")).send().await.unwrap();
    assert_eq!(reload.status(), 200);

    let jobs = app
        .wait_for_jobs("the chain to finish", |j| {
            j.len() == 2 && j[1].state == JobState::Succeeded
        })
        .await;
    assert_eq!(jobs[0].id, first);
    assert_eq!(jobs[0].state, JobState::Escalated);
    assert_eq!(
        (
            jobs[1].playbook.as_str(),
            jobs[1].parent_id,
            jobs[1].chain_index
        ),
        ("rollback", Some(first), 2)
    );
    assert_eq!(jobs[1].spec.params["rollout_timeout"], "1m");
    let store = app.store().await;
    let kinds: Vec<_> = store
        .escalations()
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.kind, e.destination))
        .collect();
    assert_eq!(
        kinds,
        [
            ("notify".into(), "oncall".into()),
            ("playbook".into(), "rollback".into())
        ]
    );
    let path: Vec<_> = store
        .job_events(first)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.to)
        .collect();
    assert_eq!(path, ["waiting", "running", "failed", "escalated"]);
    assert!(
        app.metrics()
            .await
            .contains("aiops_escalations_total{kind=\"playbook\"} 1")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_rule_runs_its_playbook_recording_what_it_would_do() {
    let rules = r#"
rules:
  - name: careful
    matchers: ['auto_repair="restart"']
    playbook: restart
    params: {rollout_timeout: 2m}
    dry_run: true
"#;
    let app = TestApp::spawn(Spawn::new(Db::Sqlite).rules(rules)).await;
    app.post_webhook(firing("prod", "web", "2026-11-26T04:00:00Z"))
        .await;
    let jobs = app.wait_all_jobs_in(&[JobState::Succeeded]).await;
    assert!(jobs[0].dry_run);
    let store = app.store().await;
    let steps = store.job_steps(jobs[0].id).await.unwrap();
    let actions: Vec<_> = steps.iter().map(|s| s.action.as_str()).collect();
    assert_eq!(
        actions,
        ["restart", "wait_rollout", "outcome", "verify"],
        "{steps:#?}"
    );
    assert_eq!(
        steps[0].detail,
        "dry run: would restart prod/Deployment/web"
    );
    let path: Vec<_> = store
        .job_events(jobs[0].id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.to)
        .collect();
    assert_eq!(path, ["queued", "running", "verifying", "succeeded"]);
}
