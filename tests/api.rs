//! The JSON API through `aiops serve`: per-app isolation of two apps' tokens (lists, items,
//! knowledge base, notes), 401 for bad tokens, pagination, the audit log, the OpenAPI document,
//! and retention (both backends where the store is involved).

mod common;

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
    let targets: Vec<&str> = stats["targets"]
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
                "GET /api/repairs",
                "GET /api/repairs/{id}",
                "GET /api/kb/stats",
                "GET /api/kb/similar",
                "POST /api/kb/notes",
                "GET /api/apps",
                "POST /api/apps",
                "GET /api/apps/{name}/manifests",
            ]
            .map(String::from)
        )
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
    app.wait_for_jobs("the fresh repair finished", |j| {
        j.len() == 2 && j.iter().all(|j| j.state.is_terminal())
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
    assert_eq!(body["since"], "1970-01-01T00:00:00+00:00", "{body}");
    for path in [
        "/api/alerts?since=300000000y",
        "/api/repairs?since=300000000y",
    ] {
        let (s, body) = app.api_get(&admin, path).await;
        assert_eq!(s, 200, "{path}: {body}");
        assert!(body["items"].is_array(), "{path}: {body}");
    }
}
