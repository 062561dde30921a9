//! The webhook as Alertmanager uses it: real payloads, bad inputs, auth, concurrency, restarts;
//! and as Grafana-managed alerting's webhook contact point uses it. The Grafana fixtures
//! (`tests/fixtures/grafana-*.json`) follow Grafana's documented payload, "Configure the webhook
//! notifier for Alerting" (https://grafana.com/docs/grafana/latest/alerting/configure-notifications/manage-contact-points/integrations/webhook-notifier/):
//! `"version": "1"`, `orgId`, `state`, `title`, `message`, per alert `values`, `valueString`,
//! `silenceURL`, `dashboardURL`, `panelURL` and `imageURL`.

use crate::both_backends;
use crate::common;

use std::collections::HashMap;

use aiops::store::JobState;
use common::{Db, Spawn, TestApp, fixture, minutes_ago, payload};
use serde_json::Value;

const GROUPED: &str = "am-0.25-firing-grouped-3.json";

async fn every_real_alertmanager_payload_is_accepted_and_recorded(db: Db) {
    let app = TestApp::spawn(Spawn::new(db)).await;
    let mut expected = 0;
    for name in [
        "am-0.25-firing-single.json",
        GROUPED,
        "am-0.25-group-firing-with-1-resolved.json",
        "am-0.25-resolved-grouped-2.json",
    ] {
        let resp = app.post_fixture(name).await;
        assert_eq!(resp.status(), 200, "{name}");
        let body: Value = resp.json().await.unwrap();
        expected += body["accepted"].as_u64().unwrap();
    }
    // single(c574 firing) + grouped-3 (9756, 7881 firing; c574 dup) + 1-resolved (c574 resolved)
    // + resolved-2 (9756, 7881 resolved) = 6 distinct occurrences.
    assert_eq!(expected, 6);
    assert_eq!(app.store().await.count_alert_events().await.unwrap(), 6);
}
both_backends!(every_real_alertmanager_payload_is_accepted_and_recorded);

async fn fifty_concurrent_posts_of_one_payload_make_exactly_one_job(db: Db) {
    let app = TestApp::spawn(Spawn::new(db)).await;
    let body = fixture(GROUPED);
    let (client, url) = (app.client.clone(), app.url("/webhook/alertmanager"));
    let posts = (0..50).map(|_| {
        let req = client
            .post(&url)
            .header("content-type", "application/json")
            .body(body.clone());
        async move { req.send().await.unwrap() }
    });
    let responses = futures_join_all(posts).await;
    assert!(responses.iter().all(|s| *s == 200), "{responses:?}");
    let jobs = app.wait_all_jobs_in(&[JobState::Succeeded]).await;
    assert_eq!(jobs.len(), 1, "{jobs:#?}");
    assert_eq!(jobs[0].target_key, "prod/Deployment/demo");
    let store = app.store().await;
    assert_eq!(store.count_alert_events().await.unwrap(), 3);
    let metrics = app.metrics().await;
    // 50 posts × 3 alerts = 150, of which 3 were new.
    assert!(
        metrics.contains("aiops_alerts_duplicate_total 147"),
        "{metrics}"
    );
}
both_backends!(fifty_concurrent_posts_of_one_payload_make_exactly_one_job);

async fn a_restarted_daemon_does_not_act_again_on_a_resend(db: Db) {
    let app = TestApp::spawn(Spawn::new(db)).await;
    assert_eq!(app.post_fixture(GROUPED).await.status(), 200);
    app.wait_all_jobs_in(&[JobState::Succeeded]).await;
    let app = app.restart().await;
    let resp = app.post_fixture(GROUPED).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["accepted"], 0, "{body}");
    assert_eq!(body["duplicates"], 3, "{body}");
    let jobs = app.store().await.jobs().await.unwrap();
    assert_eq!(jobs.len(), 1, "no new job after restart: {jobs:#?}");
}
both_backends!(a_restarted_daemon_does_not_act_again_on_a_resend);

/// Posts a fixture, expects 200, and returns (accepted, duplicates, jobs created, refused).
async fn answer_to(app: &TestApp, name: &str) -> (u64, u64, usize, u64) {
    let resp = app.post_fixture(name).await;
    assert_eq!(resp.status(), 200, "{name}");
    let v: Value = resp.json().await.unwrap();
    (
        v["accepted"].as_u64().unwrap(),
        v["duplicates"].as_u64().unwrap(),
        v["jobs"].as_array().unwrap().len(),
        v["refused"].as_u64().unwrap(),
    )
}

async fn grafana_alerts_are_recorded_matched_by_rules_and_deduplicated(db: Db) {
    let app = TestApp::spawn(Spawn::new(db)).await;
    let firing = "grafana-firing.json";
    assert_eq!(
        answer_to(&app, firing).await,
        (1, 0, 1, 0),
        "matched by the restart rule"
    );
    // Grafana repeats a firing alert at every repeat interval and group change.
    assert_eq!(answer_to(&app, firing).await, (0, 1, 0, 0), "a duplicate");
    // Three alerts: two opt in to the restart rule, the third has no auto_repair label.
    let grouped = "grafana-firing-grouped-3.json";
    assert_eq!(answer_to(&app, grouped).await, (3, 0, 2, 0));
    let resolved = "grafana-resolved.json";
    assert_eq!(answer_to(&app, resolved).await, (1, 0, 0, 0));
    assert_eq!(answer_to(&app, resolved).await, (0, 1, 0, 0), "a duplicate");

    let store = app.store().await;
    assert_eq!(store.count_alert_events().await.unwrap(), 5);
    let mut jobs: Vec<(String, String, String)> = store
        .jobs()
        .await
        .unwrap()
        .into_iter()
        .filter(|j| j.parent_id.is_none())
        .map(|j| (j.target_key, j.rule, j.fingerprint))
        .collect();
    jobs.sort();
    assert_eq!(
        jobs,
        [
            (
                "prod/Deployment/api".into(),
                "restart".into(),
                "a3f9e2d17c6b5a40".into()
            ),
            (
                "prod/Deployment/other".into(),
                "restart".into(),
                "0e4d7c2b9a815f36".into()
            ),
            (
                "prod/Deployment/web".into(),
                "restart".into(),
                "6d0c8a1f2e3b4c59".into()
            ),
        ],
        "one job per matched alert, keyed by Grafana's own fingerprint"
    );
}
both_backends!(grafana_alerts_are_recorded_matched_by_rules_and_deduplicated);

/// Grafana's contact point can be set to send with PUT instead of POST.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grafana_sending_with_put_is_accepted_like_a_post() {
    let app = TestApp::spawn(Spawn::new(Db::Sqlite)).await;
    let resp = reqwest::Client::new()
        .put(app.url("/webhook/alertmanager"))
        .header("content-type", "application/json")
        .body(fixture("grafana-firing.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{:?}", resp.text().await);
    assert_eq!(app.store().await.count_alert_events().await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payload_version_nobody_sends_is_refused_naming_the_supported_ones() {
    let app = TestApp::spawn(Spawn::new(Db::Sqlite)).await;
    let grafana = String::from_utf8(fixture("grafana-firing.json")).unwrap();
    let body = grafana.replace(r#""version": "1""#, r#""version": "7""#);
    assert_ne!(body, grafana, "the fixture's version was replaced");
    let resp = app.post_webhook(body).await;
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["field"], "version", "{body}");
    assert_eq!(
        body["error"],
        r#"version "7" is not supported: Alertmanager sends "4", Grafana "1""#
    );
    assert_eq!(app.store().await.count_alert_events().await.unwrap(), 0);
}

async fn futures_join_all<F: std::future::Future<Output = reqwest::Response> + Send + 'static>(
    futs: impl Iterator<Item = F>,
) -> Vec<u16> {
    let handles: Vec<_> = futs.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap().status().as_u16());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_inputs_get_clear_errors_and_record_nothing() {
    let token = "s3cret-token-0123456789";
    let app = TestApp::spawn(Spawn::new(Db::Sqlite).env("AIOPS_WEBHOOK_TOKEN", token)).await;
    let url = app.url("/webhook/alertmanager");
    let good = fixture(GROUPED);
    let big = format!(
        r#"{{"version":"4","alerts":[],"pad":"{}"}}"#,
        "x".repeat(2 * 1024 * 1024)
    );
    struct Case {
        name: &'static str,
        body: Vec<u8>,
        content_type: Option<&'static str>,
        auth: Option<String>,
        status: u16,
        field: Option<&'static str>,
    }
    let bearer = Some(format!("Bearer {token}"));
    let cases = vec![
        Case {
            name: "empty body",
            body: vec![],
            content_type: Some("application/json"),
            auth: bearer.clone(),
            status: 400,
            field: Some("$"),
        },
        Case {
            name: "not JSON",
            body: b"hello".to_vec(),
            content_type: Some("application/json"),
            auth: bearer.clone(),
            status: 400,
            field: Some("$"),
        },
        Case {
            name: "wrong version",
            body: br#"{"version":"3","alerts":[]}"#.to_vec(),
            content_type: Some("application/json"),
            auth: bearer.clone(),
            status: 400,
            field: Some("version"),
        },
        Case {
            name: "no alerts field",
            body: br#"{"version":"4","status":"firing"}"#.to_vec(),
            content_type: Some("application/json"),
            auth: bearer.clone(),
            status: 400,
            field: Some("alerts"),
        },
        Case {
            name: "alert without startsAt",
            body: br#"{"version":"4","alerts":[{"status":"firing","labels":{"a":"b"}}]}"#.to_vec(),
            content_type: Some("application/json"),
            auth: bearer.clone(),
            status: 400,
            field: Some("alerts[0].startsAt"),
        },
        Case {
            name: "2 MiB body",
            body: big.into_bytes(),
            content_type: Some("application/json"),
            auth: bearer.clone(),
            status: 413,
            field: None,
        },
        Case {
            name: "wrong content type",
            body: good.clone(),
            content_type: Some("text/plain"),
            auth: bearer.clone(),
            status: 415,
            field: None,
        },
        Case {
            name: "no content type",
            body: good.clone(),
            content_type: None,
            auth: bearer.clone(),
            status: 415,
            field: None,
        },
        Case {
            name: "missing token",
            body: good.clone(),
            content_type: Some("application/json"),
            auth: None,
            status: 401,
            field: None,
        },
        Case {
            name: "bad token",
            body: good.clone(),
            content_type: Some("application/json"),
            auth: Some("Bearer nope".into()),
            status: 401,
            field: None,
        },
        Case {
            name: "bad basic password",
            body: good.clone(),
            content_type: Some("application/json"),
            auth: Some("Basic YWxlcnRtYW5hZ2VyOm5vcGU=".into()),
            status: 401,
            field: None,
        },
    ];
    for c in &cases {
        let mut req = app.client.post(&url).body(c.body.clone());
        if let Some(ct) = c.content_type {
            req = req.header("content-type", ct);
        }
        if let Some(a) = &c.auth {
            req = req.header("authorization", a);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status().as_u16(), c.status, "{}", c.name);
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        assert!(
            body["error"].is_string(),
            "{}: JSON error body, got {body}",
            c.name
        );
        if let Some(field) = c.field {
            assert_eq!(body["field"], field, "{}: {body}", c.name);
        }
    }
    assert_eq!(
        app.store().await.count_alert_events().await.unwrap(),
        0,
        "bad input records nothing"
    );

    // Basic auth with the token as password, as Alertmanager's basic_auth sends it.
    let basic = format!("Basic {}", base64_encode(&format!("alertmanager:{token}")));
    let resp = app
        .client
        .post(&url)
        .header("content-type", "application/json; charset=utf-8")
        .header("authorization", basic)
        .body(good)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        !app.log_text().contains(token),
        "the token never appears in logs"
    );
}

fn base64_encode(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_alerts_in_one_payload_are_all_recorded() {
    let app = TestApp::spawn(Spawn::new(Db::Sqlite)).await;
    let alerts: Vec<String> = (0..10_000)
        .map(|i| format!(r#"{{"status":"firing","labels":{{"alertname":"Bulk","i":"{i}"}},"startsAt":"2026-11-26T03:00:00Z"}}"#))
        .collect();
    let body = format!(r#"{{"version":"4","alerts":[{}]}}"#, alerts.join(","));
    assert!(
        body.len() < 1024 * 1024,
        "fits the default limit: {}",
        body.len()
    );
    let resp = app.post_webhook(body).await;
    assert_eq!(resp.status(), 200);
    let report: Value = resp.json().await.unwrap();
    assert_eq!(report["accepted"], 10_000);
    assert_eq!(
        app.store().await.count_alert_events().await.unwrap(),
        10_000
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_503_records_nothing_and_counts_it() {
    let rules = r#"
rules:
  - name: slow
    matchers: ['auto_repair="restart"']
    playbook: restart
    wait: 24h
"#;
    let app = TestApp::spawn(
        Spawn::new(Db::Sqlite)
            .rules(rules)
            .env("AIOPS_QUEUE_CAPACITY", "1"),
    )
    .await;
    // The wait counts from startsAt: a fixed date would make the job due (and the queue empty)
    // once it is 24 h old.
    let first = payload(
        &[(
            &[
                ("auto_repair", "restart"),
                ("namespace", "a"),
                ("app", "one"),
            ],
            "firing",
        )],
        &minutes_ago(5),
    );
    let second = payload(
        &[(
            &[
                ("auto_repair", "restart"),
                ("namespace", "a"),
                ("app", "two"),
            ],
            "firing",
        )],
        &minutes_ago(5),
    );
    assert_eq!(app.post_webhook(first.clone()).await.status(), 200);
    let resp = app.post_webhook(second.clone()).await;
    assert_eq!(resp.status(), 503);
    assert!(resp.headers().contains_key("retry-after"));
    let store = app.store().await;
    assert_eq!(
        store.count_alert_events().await.unwrap(),
        1,
        "the refused payload is not recorded"
    );
    assert!(app.metrics().await.contains("aiops_queue_full_total 1"));

    // The first alert resolves: its waiting job is cancelled, the queue has room, the retry lands.
    let resolved = first.replace("\"firing\"", "\"resolved\"");
    assert_eq!(app.post_webhook(resolved).await.status(), 200);
    assert_eq!(app.post_webhook(second).await.status(), 200);
    let jobs = store.jobs().await.unwrap();
    assert_eq!(
        jobs.iter().map(|j| j.state).collect::<Vec<_>>(),
        [JobState::Cancelled, JobState::Waiting]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_refuses_a_public_address_without_a_token_and_says_how_to_set_one() {
    let dir = tempfile::tempdir().unwrap();
    let env = HashMap::from([
        ("AIOPS_LISTEN", "0.0.0.0:0".to_string()),
        (
            "AIOPS_RULES_DIR",
            common::repo().join("rules").display().to_string(),
        ),
        (
            "AIOPS_PLAYBOOKS_DIR",
            common::repo().join("playbooks").display().to_string(),
        ),
    ]);
    let (status, _out, err) = common::run_cli(dir.path(), &["serve"], &env);
    assert!(!status.success());
    assert!(err.contains("AIOPS_WEBHOOK_TOKEN"), "{err}");
    assert!(
        !dir.path().join("aiops.db").exists(),
        "refused before touching the store"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_and_metrics_are_served() {
    let app = TestApp::spawn(Spawn::new(Db::Sqlite)).await;
    let healthy = app.client.get(app.url("/-/healthy")).send().await.unwrap();
    assert_eq!(healthy.status(), 200);
    let ready: Value = app.get_json("/-/ready").await;
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["rules"], 5);
    app.post_fixture(GROUPED).await;
    app.wait_all_jobs_in(&[JobState::Succeeded]).await;
    // The worker counts a repair's end just after committing it: the store can say
    // `succeeded` a moment before the counter does.
    app.wait_for_metric(
        "aiops_jobs_total{mode=\"auto\",state=\"succeeded\"} 1",
        std::time::Duration::from_secs(10),
    )
    .await;
    let m = app.metrics().await;
    for family in [
        "aiops_alerts_received_total{status=\"firing\"} 3",
        "aiops_alerts_duplicate_total 0",
        "aiops_rule_matches_total{rule=\"restart\"} 3",
        "aiops_guard_refusals_total{mode=\"auto\",reason=\"target_busy\"} 1",
        "aiops_guard_refusals_total{mode=\"auto\",reason=\"no_target\"} 1",
        "aiops_jobs_total{mode=\"auto\",state=\"succeeded\"} 1",
        "aiops_queue_depth",
        "aiops_webhook_request_duration_seconds_bucket",
    ] {
        assert!(m.contains(family), "missing {family} in\n{m}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_per_client_rate_limit_answers_503_so_alertmanager_retries() {
    let app = TestApp::spawn(Spawn::new(Db::Sqlite).env("AIOPS_INTAKE_RATE_LIMIT", "1")).await;
    // burst defaults to 100: exhaust it, then the next is refused with 503, never 429.
    let mut statuses = Vec::new();
    for _ in 0..105 {
        statuses.push(app.post_fixture(GROUPED).await.status().as_u16());
    }
    assert!(statuses.contains(&503), "{statuses:?}");
    assert!(!statuses.contains(&429));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_one_postgresql_act_once_on_duplicate_deliveries() {
    if common::postgres_available().await.is_none() {
        return;
    }
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let db = std::sync::Arc::new(common::TestDb::new(Db::Postgres, dir.path()).await);
    let a = TestApp::spawn_in(dir.clone(), db.clone(), Spawn::new(Db::Postgres)).await;
    let b = TestApp::spawn_in(dir.clone(), db.clone(), Spawn::new(Db::Postgres)).await;
    // Alertmanager with two webhook_configs sends every notification to both, repeatedly.
    let body = fixture(GROUPED);
    let mut posts = Vec::new();
    for i in 0..40 {
        let app = if i % 2 == 0 { &a } else { &b };
        let req = app
            .client
            .post(app.url("/webhook/alertmanager"))
            .header("content-type", "application/json")
            .body(body.clone());
        posts.push(tokio::spawn(async move {
            req.send().await.unwrap().status().as_u16()
        }));
    }
    for p in posts {
        assert_eq!(p.await.unwrap(), 200);
    }
    let jobs = a.wait_all_jobs_in(&[JobState::Succeeded]).await;
    assert_eq!(
        jobs.len(),
        1,
        "exactly one repair across both replicas: {jobs:#?}"
    );
    let store = a.store().await;
    assert_eq!(store.count_alert_events().await.unwrap(), 3);
    // Exactly one of the replicas ran it.
    assert!(jobs[0].owner.is_some());
    let steps = store.job_steps(jobs[0].id).await.unwrap();
    assert_eq!(
        steps.iter().filter(|s| s.action == "restart").count(),
        1,
        "{steps:#?}"
    );
}
