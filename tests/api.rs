//! The JSON API through `aiops serve`: per-app isolation of two apps' tokens (lists, items,
//! knowledge base, notes), 401 for bad tokens, pagination, the audit log, the OpenAPI document,
//! retention, each alert's decisions (filters, `/api/alerts/{id}`, the metric), "firing now"
//! and RFC 3339 times (both backends where the store is involved).

use crate::both_backends;
use crate::common;

use std::collections::{BTreeSet, HashMap};

use aiops::auth::{Claims, Key, Role};
use aiops::config::Secret;
use aiops::store::JobState;
use common::{Db, Spawn, TestApp, payload, run_cli};
use reqwest::StatusCode;
use serde_json::{Value, json};

const SECRET: &str = "test-secret-for-the-api-0123456789abcdef";

async fn spawn(db: Db) -> TestApp {
    TestApp::spawn(Spawn::new(db).env("AIOPS_JWT_SECRET", SECRET)).await
}

/// Mints a token the way an operator does (`aiops token issue`) with this file's secret.
fn issue(app: &TestApp, sub: &str, apps: &str, role: &str) -> String {
    common::api::issue(app, SECRET, sub, apps, role)
}

/// A firing Down alert for `namespace/web`: a restart repair in that app.
fn down(namespace: &str) -> String {
    payload(
        &[(
            &[
                ("alertname", "Down"),
                ("auto_repair", "restart"),
                ("namespace", namespace),
                ("app", "web"),
                ("severity", "critical"),
            ],
            "firing",
        )],
        &chrono::Utc::now().to_rfc3339(),
    )
}

fn namespaces_of(items: &Value, field: &str) -> BTreeSet<String> {
    items["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i[field].as_str().unwrap_or("-").to_string())
        .collect()
}

async fn two_apps_tokens_see_only_their_own_alerts_repairs_and_notes(db: Db) {
    let app = spawn(db).await;
    for ns in ["shop", "blog"] {
        assert_eq!(app.post_webhook(down(ns)).await.status(), 200);
    }
    let jobs = app
        .wait_for_jobs("two finished repairs", |j| {
            j.len() == 2 && j.iter().all(|j| j.state.is_terminal())
        })
        .await;
    let blog_job = jobs
        .iter()
        .find(|j| j.target_namespace == "blog")
        .unwrap()
        .id;
    let shop_job = jobs
        .iter()
        .find(|j| j.target_namespace == "shop")
        .unwrap()
        .id;
    let shop = issue(&app, "alice", "shop", "editor");
    let blog = issue(&app, "bob", "blog", "editor");
    let admin = issue(&app, "root", "", "admin");

    // Lists: each token sees its own app only; the admin sees both.
    let (s, alerts) = app.api_get(&shop, "/api/alerts").await;
    assert_eq!(s, 200, "{alerts}");
    assert_eq!(
        namespaces_of(&alerts, "namespace"),
        BTreeSet::from(["shop".into()])
    );
    let (_, repairs) = app.api_get(&shop, "/api/repairs").await;
    assert_eq!(
        namespaces_of(&repairs, "target_namespace"),
        BTreeSet::from(["shop".into()])
    );
    let (_, repairs) = app.api_get(&admin, "/api/repairs").await;
    assert_eq!(repairs["items"].as_array().unwrap().len(), 2);
    // Naming another app filters to nothing rather than revealing it.
    let (s, repairs) = app.api_get(&shop, "/api/repairs?namespace=blog").await;
    assert_eq!(
        (s, repairs["items"].as_array().unwrap().len()),
        (StatusCode::OK, 0)
    );
    let (_, alerts) = app.api_get(&shop, "/api/alerts?namespace=blog").await;
    assert_eq!(alerts["items"].as_array().unwrap().len(), 0);

    // Items: another app's repair is 404, exactly like one that does not exist.
    let (s, body) = app
        .api_get(&shop, &format!("/api/repairs/{blog_job}"))
        .await;
    assert_eq!(s, 404, "{body}");
    let (s_missing, missing) = app.api_get(&shop, "/api/repairs/999999").await;
    assert_eq!((s_missing, &missing), (StatusCode::NOT_FOUND, &body));
    let (s, own) = app
        .api_get(&shop, &format!("/api/repairs/{shop_job}"))
        .await;
    assert_eq!(s, 200, "{own}");
    assert_eq!(own["repair"]["target_key"], "shop/Deployment/web");
    assert!(!own["steps"].as_array().unwrap().is_empty(), "{own}");
    assert!(!own["events"].as_array().unwrap().is_empty(), "{own}");

    // Knowledge base: stats and similar are per app too.
    let (_, stats) = app.api_get(&blog, "/api/kb/stats?since=1d").await;
    let targets: Vec<&str> = stats["by_target"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["target"].as_str().unwrap())
        .collect();
    assert_eq!(targets, ["blog/Deployment/web"], "{stats}");
    let (s, _) = app
        .api_get(&blog, "/api/kb/similar?alertname=Down&namespace=shop")
        .await;
    assert_eq!(s, 404);
    let (s, similar) = app
        .api_get(&blog, "/api/kb/similar?alertname=Down&namespace=blog")
        .await;
    assert_eq!(s, 200, "{similar}");
    assert_eq!(similar["incidents"][0]["id"], blog_job);

    // Notes: written into one's own app, invisible to the other, refused into the other's.
    let (s, note) = app.api_post(&shop,
        "/api/kb/notes",
        json!({"target": "shop/Deployment/web", "body": "web leaks after 3 days; restart is fine"}),
    )
    .await;
    assert_eq!(s, 201, "{note}");
    assert_eq!(
        (note["author"].as_str(), note["namespace"].as_str()),
        (Some("alice"), Some("shop"))
    );
    let (s, _) = app
        .api_post(
            &shop,
            "/api/kb/notes",
            json!({"namespace": "blog", "alertname": "Down", "body": "not mine to write"}),
        )
        .await;
    assert_eq!(s, 404);
    let (_, own) = app
        .api_get(&shop, &format!("/api/repairs/{shop_job}"))
        .await;
    assert_eq!(
        own["notes"][0]["body"],
        "web leaks after 3 days; restart is fine"
    );
    let (s, _) = app
        .api_post(
            &blog,
            "/api/kb/notes",
            json!({"namespace": "blog", "alertname": "Down", "body": "blog: check the CDN first"}),
        )
        .await;
    assert_eq!(s, 201);
    let (_, similar) = app
        .api_get(&blog, "/api/kb/similar?alertname=Down&namespace=blog")
        .await;
    let bodies: Vec<&str> = similar["notes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["body"].as_str().unwrap())
        .collect();
    assert_eq!(bodies, ["blog: check the CDN first"]);

    // Viewers read but cannot write; every write attempt is in the audit log with its subject.
    let viewer = issue(&app, "carol", "shop", "viewer");
    let (s, _) = app
        .api_post(
            &viewer,
            "/api/kb/notes",
            json!({"namespace": "shop", "alertname": "Down", "body": "hi"}),
        )
        .await;
    assert_eq!(s, 403);
    let audit = app.store().await.audit_log(10).await.unwrap();
    let seen: Vec<(String, i64)> = audit
        .iter()
        .rev()
        .map(|e| (e.subject.clone(), e.status))
        .collect();
    assert_eq!(
        seen,
        [
            ("alice".to_string(), 201),
            ("alice".to_string(), 404),
            ("bob".to_string(), 201),
            ("carol".to_string(), 403)
        ]
    );
    assert!(
        audit
            .iter()
            .all(|e| e.action == "POST /api/kb/notes" && e.at > 0)
    );
}
both_backends!(two_apps_tokens_see_only_their_own_alerts_repairs_and_notes);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_malformed_forged_expired_and_unsigned_tokens_get_401() {
    // Sixteen refusals from one address would spend its failed-auth budget (429s, tested in
    // hardening_http.rs); this test is about each refusal's answer, so the limiter is off.
    let app = TestApp::spawn(
        Spawn::new(Db::Sqlite)
            .env("AIOPS_JWT_SECRET", SECRET)
            .env("AIOPS_HTTP_AUTH_FAILURES_PER_MINUTE", "0"),
    )
    .await;
    let key = Key::new(Secret::new(SECRET)).unwrap();
    let now = chrono::Utc::now().timestamp();
    let claims = |exp| Claims {
        sub: "mallory".into(),
        role: Role::Admin,
        apps: vec![],
        exp,
        iat: now,
        nbf: None,
    };
    let forged = Key::new(Secret::new("some-other-secret-0123456789abcdefgh"))
        .unwrap()
        .issue(&claims(now + 3600))
        .unwrap();
    let expired = key.issue(&claims(now - 3600)).unwrap();
    let unsigned = {
        use base64::Engine;
        let b = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!(
            "{}.{}.",
            b.encode(br#"{"alg":"none","typ":"JWT"}"#),
            b.encode(serde_json::to_vec(&claims(now + 3600)).unwrap())
        )
    };
    for (what, token) in [
        ("malformed", "not-a-jwt".to_string()),
        ("forged", forged),
        ("expired", expired),
        ("unsigned", unsigned),
    ] {
        for path in [
            "/api/alerts",
            "/api/repairs",
            "/api/repairs/1",
            "/api/kb/stats",
        ] {
            let r = app
                .client
                .get(app.url(path))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 401, "{what} token on {path}");
            assert!(r.headers().contains_key("www-authenticate"));
            let body = r.text().await.unwrap();
            assert!(!body.contains(SECRET) && !body.contains(&token), "{body}");
        }
    }
    let r = app
        .client
        .get(app.url("/api/repairs"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "no token at all");
    let r = app
        .client
        .post(app.url("/api/kb/notes"))
        .json(&json!({"namespace": "prod", "alertname": "Down", "body": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(app.store().await.audit_log(10).await.unwrap().is_empty());
    // The document needs no token.
    let r = app
        .client
        .get(app.url("/api/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("aiops_api_auth_failures_total{reason=\"expired\"} 4"),
        "{metrics}"
    );
    assert!(!app.log_text().contains(SECRET));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_jwt_secret_the_api_is_closed() {
    let app = TestApp::spawn(Spawn::new(Db::Sqlite)).await;
    let token = Key::new(Secret::new(SECRET))
        .unwrap()
        .issue(&Claims {
            sub: "a".into(),
            role: Role::Admin,
            apps: vec![],
            exp: chrono::Utc::now().timestamp() + 60,
            iat: 0,
            nbf: None,
        })
        .unwrap();
    let (s, body) = app.api_get(&token, "/api/repairs").await;
    assert_eq!(s, 401);
    assert!(
        body["error"].as_str().unwrap().contains("AIOPS_JWT_SECRET"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_page_by_cursor_without_gaps_or_repeats() {
    let app = spawn(Db::Sqlite).await;
    let starts = chrono::Utc::now().to_rfc3339();
    let alerts: Vec<(Vec<(&str, String)>, &str)> = (0..7)
        .map(|i| {
            (
                vec![
                    ("alertname", "Noise".to_string()),
                    ("namespace", "shop".to_string()),
                    ("n", i.to_string()),
                ],
                "firing",
            )
        })
        .collect();
    let owned: Vec<Vec<(&str, &str)>> = alerts
        .iter()
        .map(|(l, _)| l.iter().map(|(k, v)| (*k, v.as_str())).collect())
        .collect();
    let refs: Vec<(&[(&str, &str)], &str)> =
        owned.iter().map(|l| (l.as_slice(), "firing")).collect();
    assert_eq!(
        app.post_webhook(payload(&refs, &starts)).await.status(),
        200
    );
    let token = issue(&app, "alice", "shop", "viewer");
    let mut seen = Vec::new();
    let mut cursor: Option<i64> = None;
    let mut pages = 0;
    loop {
        let path = match cursor {
            Some(c) => format!("/api/alerts?limit=3&cursor={c}"),
            None => "/api/alerts?limit=3".to_string(),
        };
        let (s, page) = app.api_get(&token, &path).await;
        assert_eq!(s, 200, "{page}");
        pages += 1;
        for a in page["items"].as_array().unwrap() {
            seen.push(a["id"].as_i64().unwrap());
        }
        match page["next_cursor"].as_i64() {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let mut sorted = seen.clone();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    sorted.dedup();
    assert_eq!(seen, sorted, "newest first, no repeats");
    assert_eq!(seen.len(), 7);

    for (path, field) in [
        ("/api/alerts?limit=0", "limit"),
        ("/api/alerts?limit=100000", "limit"),
        ("/api/alerts?since=yesterday-ish", "since"),
        ("/api/alerts?status=burning", "status"),
        ("/api/alerts?state=burning", "state"),
        ("/api/repairs?state=sleeping", "state"),
    ] {
        let (s, body) = app.api_get(&token, path).await;
        assert_eq!(
            (s, body["field"].as_str()),
            (StatusCode::BAD_REQUEST, Some(field)),
            "{path}: {body}"
        );
    }
    let (s, body) = app.api_get(&token, "/api/alerts?colour=red").await;
    assert_eq!(s, 400, "unknown parameters are refused: {body}");
    let (s, page) = app
        .api_get(
            &token,
            "/api/alerts?since=2000-01-01T00:00:00Z&status=firing&alertname=Noise",
        )
        .await;
    assert_eq!(
        (s, page["items"].as_array().unwrap().len()),
        (StatusCode::OK, 7)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_describes_exactly_the_routes_that_answer() {
    let app = spawn(Db::Sqlite).await;
    let admin = issue(&app, "root", "", "admin");
    let doc: Value = app.get_json("/api/openapi.json").await;
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    let mut described = BTreeSet::new();
    for (path, ops) in paths {
        for method in ops.as_object().unwrap().keys() {
            described.insert(format!("{} {path}", method.to_uppercase()));
            let url = app.url(&path.replace("{id}", "1"));
            let req = match method.as_str() {
                "get" => app.client.get(url),
                "post" => app.client.post(url).json(&json!({})),
                m => panic!("unexpected method {m}"),
            };
            let r = req.bearer_auth(&admin).send().await.unwrap();
            let status = r.status();
            let body = r.text().await.unwrap();
            assert!(
                !body.contains("no such API route") && status != 405,
                "{method} {path} is described but does not answer: {status} {body}"
            );
        }
    }
    assert_eq!(
        described,
        BTreeSet::from(
            [
                "GET /api/openapi.json",
                "GET /api/alerts",
                "GET /api/alerts/{id}",
                "GET /api/repairs",
                "POST /api/repairs",
                "GET /api/repairs/{id}",
                "POST /api/repairs/{id}/approve",
                "POST /api/repairs/{id}/reject",
                "GET /api/kb/stats",
                "GET /api/kb/similar",
                "GET /api/kb/rules/{rule}",
                "POST /api/kb/notes",
                "GET /api/apps",
                "POST /api/apps",
                "GET /api/apps/{name}/manifests",
                "POST /api/apps/{name}/deploy",
                "GET /api/apps/{name}/deployments",
                "GET /api/apps/{name}/deployments/{id}",
                "GET /api/templates",
                "GET /api/maintenance",
                "POST /api/maintenance",
                "POST /api/maintenance/{id}/end",
                "GET /api/gitops/holds",
                "GET /api/gitops/holds/{id}",
                "POST /api/gitops/holds/{id}/release",
                "GET /api/monitor/{app}",
                "GET /api/monitor/{app}/panels",
            ]
            .map(String::from)
        )
    );
    // The reason codes the document lists are the ones the filter accepts (its 400 names them).
    let documented: BTreeSet<&str> =
        doc["components"]["schemas"]["Decision"]["properties"]["reason"]["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap())
            .collect();
    let (s, body) = app.api_get(&admin, "/api/alerts?reason=unknown").await;
    assert_eq!(s, 400, "{body}");
    let error = body["error"].as_str().unwrap();
    let accepted: BTreeSet<&str> = error
        .split_once("(one of ")
        .and_then(|(_, l)| l.strip_suffix(')'))
        .unwrap_or_else(|| panic!("{error}"))
        .split(", ")
        .collect();
    assert_eq!(documented, accepted);
    assert!(
        accepted.contains("no_target") && accepted.contains("no_rule"),
        "{error}"
    );
    let (s, body) = app.api_get(&admin, "/api/nothing/here").await;
    assert_eq!(s, 404);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("no such API route")
    );
}

async fn retention_prunes_old_history_but_keeps_the_stats_and_active_repairs(db: Db) {
    let app = TestApp::spawn(
        Spawn::new(db)
            .env("AIOPS_JWT_SECRET", SECRET)
            .env("AIOPS_RETENTION_INTERVAL", "1s"),
    )
    .await;
    // An old repair: alert and job created 200 days ago (repairs are kept 180d by default).
    assert_eq!(app.post_webhook(down("prod")).await.status(), 200);
    let jobs = app.wait_all_jobs_in(&[JobState::Succeeded]).await;
    let store = app.store().await;
    let old = aiops::store::now_ms() - 200 * 86_400_000;
    let raw = common::raw_db(&app.db.url).await;
    for sql in [
        "UPDATE jobs SET created_at = $1, finished_at = $1",
        "UPDATE alert_events SET received_at = $1",
        "UPDATE decisions SET created_at = $1",
        "UPDATE kb_daily SET day = $1 / 86400000",
        "UPDATE kb_daily_all SET day = $1 / 86400000",
        "UPDATE kb_target_daily SET day = $1 / 86400000",
        "UPDATE kb_target_period SET period = $1 / 86400000 / 30",
    ] {
        sqlx::query(sql).bind(old).execute(&raw).await.unwrap();
    }
    raw.close().await;
    // And a fresh one that must stay.
    assert_eq!(app.post_webhook(down("shop")).await.status(), 200);
    // Waits on the fresh job alone: the retention pass (every second) may already have pruned
    // the old one by the time this probe looks, so "two jobs" is not a state to wait for.
    app.wait_for_jobs("the fresh repair finished", |j| {
        j.iter()
            .any(|j| j.target_namespace == "shop" && j.state.is_terminal())
    })
    .await;

    // The daemon's retention task (every second here) prunes the old one.
    app.wait_for_metric(
        "aiops_pruned_rows_total{table=\"repairs\"} 1",
        std::time::Duration::from_secs(20),
    )
    .await;
    assert!(
        app.metrics()
            .await
            .contains("aiops_pruned_rows_total{table=\"alerts\"} 1")
    );
    let day = 86_400_000;
    let now = aiops::store::now_ms();
    let left = store.jobs().await.unwrap();
    assert_eq!(left.len(), 1);
    assert_ne!(left[0].id, jobs[0].id);
    assert!(store.job_steps(jobs[0].id).await.unwrap().is_empty());
    // The rollup still counts the pruned repair in a 365-day window.
    let stats = aiops::kb::stats(&store, now - 365 * day, None)
        .await
        .unwrap();
    let runs: i64 = stats.iter().map(|s| s.runs).sum();
    assert_eq!(runs, 2, "{stats:?}");
    // A pass now finds nothing more.
    let again = store.prune(&common::cutoffs(now, 30)).await.unwrap();
    assert_eq!(again, aiops::store::Pruned::default());
}
both_backends!(retention_prunes_old_history_but_keeps_the_stats_and_active_repairs);

#[test]
fn a_retention_shorter_than_the_success_rate_window_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let env = HashMap::from([("AIOPS_RETENTION_REPAIRS", "7d".to_string())]);
    let (status, out, err) = run_cli(dir.path(), &["check"], &env);
    assert!(!status.success(), "{out}");
    assert!(
        err.contains("retention.repairs must be at least 30d"),
        "{err}"
    );
    let env = HashMap::from([("AIOPS_JWT_SECRET", "short".to_string())]);
    let (status, _, err) = run_cli(
        dir.path(),
        &["token", "issue", "--sub", "a", "--apps", "x"],
        &env,
    );
    assert!(!status.success());
    assert!(
        err.contains("at least 32 bytes") && !err.contains("short\n"),
        "{err}"
    );
}

/// More finished notifications about no repair than one pruning batch holds: each batch takes
/// its attempts with it, so no foreign key is violated and the rest of the pass still runs.
async fn pruning_thousands_of_old_notifications_keeps_their_attempts_consistent(db: Db) {
    let dir = tempfile::tempdir().unwrap();
    let test_db = common::TestDb::new(db, dir.path()).await;
    let store = aiops::store::Store::connect(&test_db.url, &aiops::store::Options::default())
        .await
        .unwrap();
    let old = aiops::store::now_ms() - 400 * 86_400_000;
    let raw = common::raw_db(&test_db.url).await;
    // 4,500 storm-brake notifications with one attempt each, 400 days old.
    for sql in [
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 4500) \
         INSERT INTO notifications (event, channel, dedup_key, retry_key, subject, body, event_json, state, \
         attempts, next_attempt_at, created_at) \
         SELECT 'storm_brake', 'ops', 'k' || i, 'r' || i, 's', 'b', '{}', 'sent', 1, $1, $1 FROM n",
        "INSERT INTO notification_attempts (notification_id, at, result, detail) \
         SELECT id, $1, 'sent', '' FROM notifications",
    ] {
        sqlx::query(sql).bind(old).execute(&raw).await.unwrap();
    }
    let now = aiops::store::now_ms();
    store
        .prune(&common::cutoffs(now, 180))
        .await
        .expect("the whole pass runs");
    for table in ["notifications", "notification_attempts"] {
        assert_eq!(common::count_rows(&raw, table).await, 0, "{table}");
    }
    raw.close().await;
    store.close().await;
}
both_backends!(pruning_thousands_of_old_notifications_keeps_their_attempts_consistent);

/// Found by schemathesis-style probing of `since`: a duration longer than the calendar
/// (`300000000y`) made the window start unrepresentable and `/api/kb/stats` answered
/// `"since": null`, which the OpenAPI document (and any client) reads as a string.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_since_longer_than_the_calendar_counts_from_1970_instead_of_answering_null() {
    let app = spawn(Db::Sqlite).await;
    let admin = issue(&app, "root", "", "admin");
    let (s, body) = app.api_get(&admin, "/api/kb/stats?since=300000000y").await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["since"], "1970-01-01T00:00:00.000Z", "{body}");
    for path in [
        "/api/alerts?since=300000000y",
        "/api/repairs?since=300000000y",
    ] {
        let (s, body) = app.api_get(&admin, path).await;
        assert_eq!(s, 200, "{path}: {body}");
        assert!(body["items"].is_array(), "{path}: {body}");
    }
}

/// Labels of a Down alert the shipped `restart` rule matches, in `namespace` (none: `None`).
fn down_labels(namespace: Option<&str>) -> Vec<(&str, &str)> {
    let mut labels = vec![
        ("alertname", "Down"),
        ("auto_repair", "restart"),
        ("app", "web"),
        ("severity", "critical"),
    ];
    if let Some(ns) = namespace {
        labels.push(("namespace", ns));
    }
    labels
}

/// The listed items' alert names, in order.
fn alertnames(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap_or_else(|| panic!("not a page: {page}"))
        .iter()
        .map(|a| a["alertname"].as_str().unwrap().to_string())
        .collect()
}

/// The value of one series on /metrics (`name{labels}`), if published.
fn series(metrics: &str, name: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

async fn an_alert_without_a_namespace_shows_no_target_in_the_api_and_the_metric(db: Db) {
    let app = spawn(db).await;
    let no_target =
        r#"aiops_alert_decisions_total{mode="auto",reason="no_target",verdict="refused"}"#;
    let no_rule = r#"aiops_alert_decisions_total{mode="none",reason="no_rule",verdict="skipped"}"#;
    let plan = r#"aiops_alert_decisions_total{mode="auto",reason="plan",verdict="job"}"#;
    let before = app.metrics().await;
    for s in [no_target, no_rule, plan] {
        assert_eq!(series(&before, s), Some(0.0), "{s} starts at 0:\n{before}");
    }

    let no_ns = down_labels(None);
    let shop = down_labels(Some("shop"));
    let chatter = [("alertname", "Chatter"), ("namespace", "shop")];
    let body = payload(
        &[(&no_ns, "firing"), (&shop, "firing"), (&chatter, "firing")],
        &chrono::Utc::now().to_rfc3339(),
    );
    let answer = app.post_webhook_json(body).await;
    assert_eq!(
        (
            answer["refused"].as_i64(),
            answer["jobs"].as_array().map(Vec::len)
        ),
        (Some(1), Some(1)),
        "{answer}"
    );

    let admin = issue(&app, "root", "", "admin");
    let (s, all) = app.api_get(&admin, "/api/alerts").await;
    assert_eq!(s, 200, "{all}");
    let items = all["items"].as_array().unwrap();
    let by_name = |name: &str, ns: Option<&str>| {
        items
            .iter()
            .find(|a| a["alertname"] == name && a["namespace"].as_str() == ns)
            .unwrap_or_else(|| panic!("{name} in {ns:?} listed: {all}"))
            .clone()
    };
    let refused = by_name("Down", None);
    let decisions = refused["decisions"].as_array().unwrap();
    assert_eq!(decisions.len(), 1, "{refused}");
    let d = &decisions[0];
    assert_eq!(
        (
            &d["rule"],
            &d["verdict"],
            &d["reason"],
            &d["target"],
            &d["job_id"]
        ),
        (
            &json!("restart"),
            &json!("refused"),
            &json!("no_target"),
            &Value::Null,
            &Value::Null
        ),
        "{refused}"
    );
    let sentence = d["sentence"].as_str().unwrap();
    assert!(
        sentence.contains("restart")
            && sentence.contains("no_target")
            && sentence.contains("namespace"),
        "{sentence}"
    );
    let repaired = by_name("Down", Some("shop"));
    let job_id = repaired["decisions"][0]["job_id"]
        .as_i64()
        .expect("the job's id");
    assert_eq!(
        (
            &repaired["decisions"][0]["verdict"],
            &repaired["decisions"][0]["reason"],
            &repaired["decisions"][0]["target"]
        ),
        (&json!("job"), &json!("plan"), &json!("shop/Deployment/web")),
        "{repaired}"
    );
    let jobs = app.store().await.jobs().await.unwrap();
    assert!(
        jobs.iter()
            .any(|j| j.id == job_id && j.target_key == "shop/Deployment/web"),
        "{jobs:?}"
    );
    let skipped = by_name("Chatter", Some("shop"));
    assert_eq!(
        (
            &skipped["decisions"][0]["rule"],
            &skipped["decisions"][0]["verdict"],
            &skipped["decisions"][0]["reason"]
        ),
        (&Value::Null, &json!("skipped"), &json!("no_rule")),
        "{skipped}"
    );

    // The item route answers what the listing shows.
    let id = refused["id"].as_i64().unwrap();
    let (s, one) = app.api_get(&admin, &format!("/api/alerts/{id}")).await;
    assert_eq!((s, &one), (StatusCode::OK, &refused));

    // Filters by verdict and reason; both together must hold on the same decision.
    for (query, expected) in [
        ("verdict=refused", vec!["Down"]),
        ("reason=no_target", vec!["Down"]),
        ("verdict=refused&reason=no_target", vec!["Down"]),
        ("verdict=skipped", vec!["Chatter"]),
        ("reason=no_rule", vec!["Chatter"]),
        ("verdict=job&reason=plan&namespace=shop", vec!["Down"]),
        ("reason=dry_run", vec![]),
        ("verdict=job&reason=no_target", vec![]),
        ("verdict=refused&reason=no_rule", vec![]),
    ] {
        let (s, page) = app.api_get(&admin, &format!("/api/alerts?{query}")).await;
        assert_eq!(s, 200, "{query}: {page}");
        assert_eq!(alertnames(&page), expected, "{query}: {page}");
    }
    let (_, page) = app.api_get(&admin, "/api/alerts?verdict=job").await;
    assert_eq!(page["items"][0]["namespace"], "shop", "{page}");
    for (query, field) in [("verdict=maybe", "verdict"), ("reason=bored", "reason")] {
        let (s, body) = app.api_get(&admin, &format!("/api/alerts?{query}")).await;
        assert_eq!(
            (s, body["field"].as_str()),
            (StatusCode::BAD_REQUEST, Some(field)),
            "{body}"
        );
    }

    // Per app: an alert without an app is an admin's only; another app's alert is 404 exactly
    // like a missing one.
    let shop_token = issue(&app, "alice", "shop", "viewer");
    let blog_token = issue(&app, "bob", "blog", "viewer");
    let (s_missing, missing) = app.api_get(&shop_token, "/api/alerts/999999").await;
    assert_eq!(s_missing, 404, "{missing}");
    assert_eq!(
        app.api_get(&shop_token, &format!("/api/alerts/{id}")).await,
        (StatusCode::NOT_FOUND, missing.clone())
    );
    let shop_id = repaired["id"].as_i64().unwrap();
    assert_eq!(
        app.api_get(&blog_token, &format!("/api/alerts/{shop_id}"))
            .await,
        (StatusCode::NOT_FOUND, missing)
    );
    let (s, own) = app
        .api_get(&shop_token, &format!("/api/alerts/{shop_id}"))
        .await;
    assert_eq!((s, &own), (StatusCode::OK, &repaired));
    let (_, page) = app
        .api_get(&shop_token, "/api/alerts?verdict=refused")
        .await;
    assert_eq!(alertnames(&page), Vec::<String>::new(), "{page}");

    let after = app.metrics().await;
    for s in [no_target, no_rule, plan] {
        assert_eq!(series(&after, s), Some(1.0), "{s}:\n{after}");
    }
    // A re-send is a duplicate, not a second decision.
    let answer = app
        .post_webhook_json(payload(
            &[(&no_ns, "firing")],
            refused["starts_at"].as_str().unwrap(),
        ))
        .await;
    assert_eq!(answer["duplicates"], 1, "{answer}");
    assert_eq!(series(&app.metrics().await, no_target), Some(1.0));
}
both_backends!(an_alert_without_a_namespace_shows_no_target_in_the_api_and_the_metric);

async fn a_firing_alert_that_resolved_leaves_state_firing_and_shows_resolved_at(db: Db) {
    let app = spawn(db).await;
    let starts = chrono::Utc::now() - chrono::Duration::minutes(10);
    let ends = starts + chrono::Duration::minutes(4);
    let gone = [("alertname", "Gone"), ("namespace", "shop")];
    let still = [("alertname", "Still"), ("namespace", "shop")];
    let fire = payload(
        &[(&gone, "firing"), (&still, "firing")],
        &starts.to_rfc3339(),
    );
    assert_eq!(app.post_webhook(fire).await.status(), 200);
    let token = issue(&app, "alice", "shop", "viewer");
    let (_, firing) = app.api_get(&token, "/api/alerts?state=firing").await;
    let mut names = alertnames(&firing);
    names.sort();
    assert_eq!(names, ["Gone", "Still"], "{firing}");
    assert!(
        firing["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["resolved_at"].is_null()),
        "{firing}"
    );

    let mut resolve = common::payload::alert("resolved", &gone, &starts.to_rfc3339());
    resolve["endsAt"] = json!(ends.to_rfc3339());
    let resolve = common::payload::group(vec![resolve]).to_string();
    assert_eq!(app.post_webhook(resolve).await.status(), 200);

    for query in [
        "state=firing",
        "status=firing",
        "state=firing&status=firing",
    ] {
        let (s, page) = app.api_get(&token, &format!("/api/alerts?{query}")).await;
        assert_eq!(s, 200, "{query}: {page}");
        assert_eq!(alertnames(&page), ["Still"], "{query}: {page}");
        assert_eq!(page["items"][0]["state"], "firing");
    }
    let (_, ended) = app.api_get(&token, "/api/alerts?state=resolved").await;
    let rows: Vec<(&str, &str, &str)> = ended["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["alertname"].as_str().unwrap(),
                a["status"].as_str().unwrap(),
                a["state"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("Gone", "resolved", "resolved"),
            ("Gone", "firing", "resolved")
        ],
        "{ended}"
    );
    let firing_row = &ended["items"][1];
    let resolved_at =
        chrono::DateTime::parse_from_rfc3339(firing_row["resolved_at"].as_str().unwrap())
            .unwrap_or_else(|e| panic!("{e}: {firing_row}"));
    assert_eq!(
        resolved_at.timestamp_millis(),
        ends.timestamp_millis(),
        "{firing_row}"
    );
    assert!(
        firing_row["decisions"][0]["reason"] == "no_rule",
        "{firing_row}"
    );
    assert_eq!(
        ended["items"][0]["decisions"],
        json!([]),
        "a resolve is not decided on"
    );

    // Two replicas racing (a delayed firing re-send on one, its resolve on the other) can leave
    // the firing row without resolved_at although the resolve is stored: still not firing now.
    let raw = common::raw_db(&app.db.url).await;
    sqlx::query("UPDATE alert_events SET resolved_at = NULL WHERE alertname = 'Gone'")
        .execute(&raw)
        .await
        .unwrap();
    raw.close().await;
    let (_, page) = app.api_get(&token, "/api/alerts?state=firing").await;
    assert_eq!(alertnames(&page), ["Still"], "{page}");
    let (_, ended) = app.api_get(&token, "/api/alerts?state=resolved").await;
    assert_eq!(
        ended["items"][1]["resolved_at"], firing_row["resolved_at"],
        "{ended}"
    );

    let (s, body) = app
        .api_get(&token, "/api/alerts?state=firing&status=resolved")
        .await;
    assert_eq!(
        (s, body["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("status")),
        "{body}"
    );
}
both_backends!(a_firing_alert_that_resolved_leaves_state_firing_and_shows_resolved_at);

async fn a_firing_occurrence_delivered_after_its_own_resolve_is_stored_ended(db: Db) {
    let app = spawn(db).await;
    let starts = chrono::Utc::now() - chrono::Duration::minutes(10);
    let ends = starts + chrono::Duration::minutes(4);
    let late = [("alertname", "Late"), ("namespace", "shop")];
    let again = [("alertname", "Again"), ("namespace", "shop")];
    // Resolves arrive first: Late's for the occurrence that is about to be delivered late,
    // Again's for an earlier occurrence (another startsAt) than the one that fires next.
    let mut late_resolve = common::payload::alert("resolved", &late, &starts.to_rfc3339());
    late_resolve["endsAt"] = json!(ends.to_rfc3339());
    let earlier = starts - chrono::Duration::hours(1);
    let mut again_resolve = common::payload::alert("resolved", &again, &earlier.to_rfc3339());
    again_resolve["endsAt"] = json!((earlier + chrono::Duration::minutes(1)).to_rfc3339());
    let resolves = common::payload::group(vec![late_resolve, again_resolve]).to_string();
    assert_eq!(app.post_webhook(resolves).await.status(), 200);

    // The late firings arrive with two new resolves of other alerts: one chunk of four rows,
    // whose list of keys to look up (the two firings) is filled up to the chunk's size.
    let mut alerts = vec![
        common::payload::alert("firing", &late, &starts.to_rfc3339()),
        common::payload::alert("firing", &again, &starts.to_rfc3339()),
    ];
    for name in ["Other1", "Other2"] {
        let mut resolve = common::payload::alert(
            "resolved",
            &[("alertname", name), ("namespace", "shop")],
            &starts.to_rfc3339(),
        );
        resolve["endsAt"] = json!(ends.to_rfc3339());
        alerts.push(resolve);
    }
    let fire = common::payload::group(alerts).to_string();
    let answer = app.post_webhook_json(fire).await;
    assert_eq!(answer["accepted"], 4, "{answer}");

    let token = issue(&app, "alice", "shop", "viewer");
    let (_, firing) = app.api_get(&token, "/api/alerts?state=firing").await;
    assert_eq!(alertnames(&firing), ["Again"], "{firing}");
    assert!(firing["items"][0]["resolved_at"].is_null(), "{firing}");
    // Ended: both resolves and the late firing row, which carries its resolve's endsAt.
    let (_, ended) = app.api_get(&token, "/api/alerts?state=resolved").await;
    let firing_rows: Vec<&Value> = ended["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["status"] == "firing")
        .collect();
    assert_eq!(firing_rows.len(), 1, "{ended}");
    assert_eq!(firing_rows[0]["alertname"], "Late", "{ended}");
    let resolved_at =
        chrono::DateTime::parse_from_rfc3339(firing_rows[0]["resolved_at"].as_str().unwrap())
            .unwrap_or_else(|e| panic!("{e}: {ended}"));
    assert_eq!(
        resolved_at.timestamp_millis(),
        ends.timestamp_millis(),
        "{ended}"
    );
    // Stored so, not only listed so: "firing now" reads the column and looks for no resolve.
    let raw = common::raw_db(&app.db.url).await;
    let stored: Vec<(String, Option<i64>)> = sqlx::query_as(
        "SELECT alertname, resolved_at FROM alert_events WHERE status = 'firing' ORDER BY alertname",
    )
    .fetch_all(&raw)
    .await
    .unwrap();
    raw.close().await;
    assert_eq!(
        stored,
        [
            ("Again".to_string(), None),
            ("Late".to_string(), Some(ends.timestamp_millis()))
        ]
    );
}
both_backends!(a_firing_occurrence_delivered_after_its_own_resolve_is_stored_ended);

/// Every key of `v` (at any depth) that names a point in time, with its value.
fn times<'a>(v: &'a Value, path: &str, out: &mut Vec<(String, &'a Value)>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let p = format!("{path}.{k}");
                if k == "at" || k.ends_with("_at") || k == "not_before" || k == "since" {
                    out.push((p.clone(), x));
                }
                times(x, &p, out);
            }
        }
        Value::Array(a) => a
            .iter()
            .enumerate()
            .for_each(|(i, x)| times(x, &format!("{path}[{i}]"), out)),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_time_the_api_answers_is_rfc_3339_in_utc() {
    let app = TestApp::spawn(Spawn::new(Db::Sqlite).env("AIOPS_JWT_SECRET", SECRET).env(
        "AIOPS_DEPLOY_WEBHOOK_URL",
        "https://aiops.example.net/webhook/alertmanager",
    ))
    .await;
    assert_eq!(app.post_webhook(down("shop")).await.status(), 200);
    let job = app
        .wait_for_jobs("a finished repair", |j| {
            j.len() == 1 && j[0].state.is_terminal()
        })
        .await[0]
        .id;
    let admin = issue(&app, "root", "", "admin");
    let (s, note) = app
        .api_post(
            &admin,
            "/api/kb/notes",
            json!({"namespace": "shop", "alertname": "Down", "body": "n"}),
        )
        .await;
    assert_eq!(s, 201, "{note}");
    let spec =
        std::fs::read_to_string(common::repo().join("tests/golden/deploy/flask-basic.app.yaml"))
            .unwrap();
    let (s, registered) = app.api_register_app(&admin, spec).await;
    assert_eq!(s, 201, "{registered}");
    let mut answers = vec![note, registered];
    for path in [
        "/api/alerts".to_string(),
        "/api/alerts/1".to_string(),
        "/api/repairs".to_string(),
        format!("/api/repairs/{job}"),
        "/api/kb/stats".to_string(),
        "/api/kb/similar?alertname=Down&namespace=shop".to_string(),
        "/api/apps".to_string(),
    ] {
        let (s, body) = app.api_get(&admin, &path).await;
        assert_eq!(s, 200, "{path}: {body}");
        answers.push(body);
    }
    let mut found = Vec::new();
    for a in &answers {
        times(a, "", &mut found);
    }
    let mut fields = BTreeSet::new();
    for (path, v) in &found {
        if v.is_null() {
            continue;
        }
        let text = v
            .as_str()
            .unwrap_or_else(|| panic!("{path} is not a string: {v}"));
        let t = chrono::DateTime::parse_from_rfc3339(text)
            .unwrap_or_else(|e| panic!("{path} = {text}: {e}"));
        assert!(
            text.ends_with('Z') && t.offset().local_minus_utc() == 0,
            "{path} = {text} is not UTC"
        );
        fields.insert(path.rsplit('.').next().unwrap().to_string());
    }
    // Every kind of time the API serves was seen (a listing of nulls would prove nothing).
    for f in [
        "starts_at",
        "received_at",
        "decided_at",
        "created_at",
        "started_at",
        "finished_at",
        "not_before",
        "at",
        "since",
        "updated_at",
    ] {
        assert!(fields.contains(f), "{f} not seen among {fields:?}");
    }
}

/// Migration 0009 on a store written before it: a firing row whose resolve is stored gets the
/// resolve's end (its endsAt, else when it arrived); one without a resolve keeps firing.
async fn the_migration_ends_stored_firing_rows_whose_resolve_is_stored(db: Db) {
    let dir = tempfile::tempdir().unwrap();
    let test_db = common::TestDb::new(db, dir.path()).await;
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&test_db.url).await.unwrap();
    let all = match db {
        Db::Sqlite => sqlx::migrate!("migrations/sqlite"),
        Db::Postgres => sqlx::migrate!("migrations/postgres"),
    };
    let before = sqlx::migrate::Migrator::with_migrations(
        all.iter().filter(|m| m.version <= 8).cloned().collect(),
    );
    before.run(&pool).await.unwrap();
    let mut ids = HashMap::new();
    for (name, fp, status, ends_at, received_at) in [
        ("ended", "a", "firing", None, 1_000),
        ("its resolve", "a", "resolved", Some(5_000), 6_000),
        ("ended without endsAt", "b", "firing", None, 1_000),
        ("its bare resolve", "b", "resolved", None, 7_000),
        ("still firing", "c", "firing", None, 1_000),
        (
            "an older occurrence's resolve",
            "c",
            "resolved",
            Some(900),
            950,
        ),
    ] {
        // The last resolve has another startsAt: it ends another occurrence, not this one.
        let starts_at: i64 = if name == "an older occurrence's resolve" {
            10
        } else {
            100
        };
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO alert_events (fingerprint, status, starts_at, ends_at, alertname, labels, \
             annotations, generator_url, receiver, group_key, received_at) \
             VALUES ($1, $2, $3, $4, 'Down', '{}', '{}', '', 'aiops', '{}', $5) RETURNING id",
        )
        .bind(fp)
        .bind(status)
        .bind(starts_at)
        .bind(ends_at)
        .bind(received_at)
        .fetch_one(&pool)
        .await
        .unwrap();
        ids.insert(name, id);
    }
    pool.close().await;

    let store = aiops::store::Store::connect(&test_db.url, &aiops::store::Options::default())
        .await
        .unwrap();
    for (name, resolved_at) in [
        ("ended", Some(5_000)),
        ("its resolve", None),
        ("ended without endsAt", Some(7_000)),
        ("still firing", None),
    ] {
        let alert = store.alert(ids[name]).await.unwrap().unwrap();
        assert_eq!(alert.resolved_at, resolved_at, "{name}: {alert:?}");
    }
    let firing = store
        .list_alerts(&aiops::store::ListFilter {
            alert_state: Some(aiops::store::AlertState::Firing),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        firing.iter().map(|a| a.id).collect::<Vec<_>>(),
        [ids["still firing"]]
    );
    store.close().await;
}
both_backends!(the_migration_ends_stored_firing_rows_whose_resolve_is_stored);
