//! Issue 12, the HTTP side, through `aiops serve`: each attack the issue reproduced, replayed
//! against the binary with small configured limits so it runs in seconds.
//!
//! Deep nesting behind a viewer token or an editor's, slowloris headers, a declared body that
//! never arrives, idle keep-alive connections, more connections than the cap, token guessing,
//! a too-short token, and the `/api` error surface (JSON errors, `BEARER`, NUL in a query).

use crate::both_backends;
use crate::common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use aiops::auth::Role;
use common::{Db, Spawn, TestApp, fixture, run_cli, wait};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SECRET: &str = "0123456789abcdef0123456789abcdef-hardening";
const TOKEN: &str = "webhook-token-0123456789abcdef";

fn jwt(role: Role, apps: &[&str]) -> String {
    common::api::token(SECRET, role, apps)
}

/// Reads until the peer closes or `within` passes; returns what arrived and whether it closed.
async fn read_until_closed(s: &mut TcpStream, within: Duration) -> (Vec<u8>, bool) {
    let deadline = tokio::time::Instant::now() + within;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return (got, false),
            Ok(Ok(0)) | Ok(Err(_)) => return (got, true),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// Reads one response with a Content-Length body from a kept-alive connection.
async fn read_response(s: &mut TcpStream) -> (u16, String) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..end]).to_string();
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            if got.len() >= end + 4 + len {
                let status = head[9..12].parse().unwrap();
                let body = String::from_utf8_lossy(&got[end + 4..end + 4 + len]).to_string();
                return (status, body);
            }
        }
        let n = tokio::time::timeout_at(deadline, s.read(&mut buf))
            .await
            .expect("a response within 10 s")
            .unwrap();
        assert!(
            n > 0,
            "closed mid-response: {:?}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
}

async fn raw_get(s: &mut TcpStream, path: &str) -> (u16, String) {
    s.write_all(format!("GET {path} HTTP/1.1\r\nhost: aiops\r\n\r\n").as_bytes())
        .await
        .unwrap();
    read_response(s).await
}

/// Waits until `pred` holds for the daemon's log, or fails with the log.
async fn wait_for_log(app: &TestApp, what: &str, pred: impl Fn(&str) -> bool) {
    wait::until(
        &format!("a log line {what}"),
        Duration::from_secs(10),
        async || app.log_text().lines().any(&pred).then_some(()),
        || format!("logs:\n{}", app.log_text()),
    )
    .await
}

fn metric(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no series {series} in\n{metrics}"))
}

/// Times GET /-/healthy on a fresh connection.
async fn health_latency(addr: SocketAddr) -> Duration {
    let started = Instant::now();
    let r = reqwest::Client::new()
        .get(format!("http://{addr}/-/healthy"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .expect("health answers");
    assert_eq!(r.status(), 200);
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewers_deeply_nested_app_spec_is_refused_fast_while_health_stays_fast() {
    let app = TestApp::spawn(Spawn::new(Db::Sqlite).env("AIOPS_JWT_SECRET", SECRET)).await;
    let viewer = jwt(Role::Viewer, &["shop"]);
    // The issue's attack: 200,000 levels of flow sequences, ~150 s of CPU each once parsed.
    let body = format!("name: shop\nenv: {}", "[".repeat(200_000));
    let posts: Vec<_> = (0..4)
        .map(|_| {
            let (client, url, viewer, body) = (
                app.client.clone(),
                app.url("/api/apps"),
                viewer.clone(),
                body.clone(),
            );
            tokio::spawn(async move {
                let started = Instant::now();
                let r = client
                    .post(url)
                    .bearer_auth(viewer)
                    .header("content-type", "application/yaml")
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                let status = r.status().as_u16();
                let json: Value = r.json().await.unwrap();
                (status, json, started.elapsed())
            })
        })
        .collect();
    let mut slowest_health = Duration::ZERO;
    for _ in 0..5 {
        slowest_health = slowest_health.max(health_latency(app.addr).await);
    }
    for p in posts {
        let (status, json, took) = p.await.unwrap();
        assert_eq!(status, 403, "{json}");
        assert_eq!(json["error"], "viewer tokens cannot write");
        assert!(took < Duration::from_secs(1), "403 took {took:?}");
    }
    assert!(
        slowest_health < Duration::from_secs(1),
        "{slowest_health:?}"
    );
    // Still audited, as every write attempt is.
    assert_eq!(
        app.store().await.audit_log(10).await.unwrap().len(),
        4,
        "four refused writes audited"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_editors_deeply_nested_app_spec_is_a_fast_400_naming_the_limit() {
    let app = TestApp::spawn(Spawn::new(Db::Sqlite).env("AIOPS_JWT_SECRET", SECRET)).await;
    let editor = jwt(Role::Editor, &["shop"]);
    let yaml = format!("name: shop\nenv: {}", "[".repeat(200_000));
    let json = format!(r#"{{"name": "shop", "env": {}"#, "[".repeat(200_000));
    let shallow_but_deep_json = format!(
        r#"{{"name": "shop", "env": {{"A": {}1{}}}}}"#,
        "[".repeat(40),
        "]".repeat(40)
    );
    for (what, body, expect) in [
        ("YAML", yaml, "api.max_depth"),
        ("JSON", json, "must be JSON"),
        ("JSON 42 deep", shallow_but_deep_json, "api.max_depth"),
    ] {
        let started = Instant::now();
        let r = app
            .client
            .post(app.url("/api/apps"))
            .bearer_auth(&editor)
            .body(body)
            .send()
            .await
            .unwrap();
        let took = started.elapsed();
        assert_eq!(r.status(), 400, "{what}");
        let v: Value = r.json().await.unwrap();
        assert!(v["error"].as_str().unwrap().contains(expect), "{what}: {v}");
        assert_eq!(v["field"], "body");
        assert!(took < Duration::from_secs(1), "{what} took {took:?}");
    }
    assert!(health_latency(app.addr).await < Duration::from_secs(1));
    // A body over api.max_body_bytes is refused unparsed too.
    let r = app
        .client
        .post(app.url("/api/apps"))
        .bearer_auth(&editor)
        .body(format!("name: shop\n# {}", "x".repeat(300 * 1024)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    // A real spec still registers (in the namespace the editor's token names).
    let spec =
        std::fs::read_to_string(common::repo().join("tests/golden/deploy/flask-basic.app.yaml"))
            .unwrap()
            .replace("domain:", "namespace: shop\ndomain:");
    let r = app
        .client
        .post(app.url("/api/apps"))
        .bearer_auth(&editor)
        .body(spec)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_never_finishes_its_headers_is_closed_after_the_header_timeout() {
    let app = TestApp::spawn(
        Spawn::new(Db::Sqlite)
            .env("AIOPS_HTTP_HEADER_READ_TIMEOUT", "1s")
            .env("AIOPS_HTTP_IDLE_TIMEOUT", "30s"),
    )
    .await;
    // Slowloris: a request line and one header, then a byte now and then, never the blank line.
    let mut slow = TcpStream::connect(app.addr).await.unwrap();
    let started = Instant::now();
    slow.write_all(b"POST /webhook/alertmanager HTTP/1.1\r\nhost: aiops\r\n")
        .await
        .unwrap();
    let drip = async {
        for _ in 0..20 {
            // The slowloris pace is the attack under test, not a synchronisation.
            tokio::time::sleep(Duration::from_millis(200)).await;
            if slow.write_all(b"x").await.is_err() {
                break;
            }
        }
    };
    drip.await;
    let (_, closed) = read_until_closed(&mut slow, Duration::from_secs(5)).await;
    assert!(closed, "still open after {:?}", started.elapsed());
    // A connection that sends nothing at all is cut the same way.
    let mut silent = TcpStream::connect(app.addr).await.unwrap();
    let started = Instant::now();
    let (got, closed) = read_until_closed(&mut silent, Duration::from_secs(5)).await;
    assert!(closed && got.is_empty());
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "{took:?}"
    );
    wait_for_log(&app, "about the header timeout", |l| {
        l.contains("timed out") && l.contains("\"kind\":\"header\"")
    })
    .await;
    let m = app.metrics().await;
    assert!(
        metric(&m, "aiops_http_timeouts_total{kind=\"header\"}") >= 2.0,
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declared_body_that_never_arrives_is_cut_at_the_body_deadline() {
    let app = TestApp::spawn(
        Spawn::new(Db::Sqlite)
            .env("AIOPS_WEBHOOK_TOKEN", TOKEN)
            .env("AIOPS_HTTP_BODY_READ_TIMEOUT", "1s"),
    )
    .await;
    for declared in [4000usize, 4 * 1024 * 1024] {
        let mut s = TcpStream::connect(app.addr).await.unwrap();
        let head = format!(
            "POST /webhook/alertmanager HTTP/1.1\r\nhost: aiops\r\nauthorization: Bearer {TOKEN}\r\ncontent-type: application/json\r\ncontent-length: {declared}\r\n\r\n{{\"version\""
        );
        let started = Instant::now();
        s.write_all(head.as_bytes()).await.unwrap();
        let (got, _) = read_until_closed(&mut s, Duration::from_secs(5)).await;
        let took = started.elapsed();
        let text = String::from_utf8_lossy(&got);
        // Within the limit: 408. Over it (4 MiB): 413, once the deadline ends the wait for it.
        let expect = if declared == 4000 { "408" } else { "413" };
        assert!(
            text.starts_with(&format!("HTTP/1.1 {expect}")),
            "{declared}: {text}"
        );
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_secs(4),
            "{declared}: {took:?}"
        );
    }
    wait_for_log(&app, "about the body deadline", |l| {
        l.contains("\"kind\":\"body\"") && l.contains("408")
    })
    .await;
    let m = app.metrics().await;
    assert!(
        metric(&m, "aiops_http_timeouts_total{kind=\"body\"}") >= 2.0,
        "{m}"
    );
    // Alertmanager's ordinary webhook is unaffected.
    assert_eq!(
        app.post_fixture("am-0.25-firing-grouped-3.json")
            .await
            .status(),
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connections_are_closed_after_the_idle_timeout() {
    let app = TestApp::spawn(
        Spawn::new(Db::Sqlite)
            .env("AIOPS_HTTP_HEADER_READ_TIMEOUT", "10s")
            .env("AIOPS_HTTP_IDLE_TIMEOUT", "1s"),
    )
    .await;
    let mut s = TcpStream::connect(app.addr).await.unwrap();
    // Two requests on one kept-alive connection, then silence.
    assert_eq!(raw_get(&mut s, "/-/healthy").await, (200, "OK\n".into()));
    assert_eq!(raw_get(&mut s, "/-/healthy").await.0, 200);
    let idle_since = Instant::now();
    let (got, closed) = read_until_closed(&mut s, Duration::from_secs(5)).await;
    let took = idle_since.elapsed();
    assert!(
        closed && got.is_empty(),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "closed after {took:?}, not the 1 s idle timeout (the header timeout is 10 s)"
    );
    wait_for_log(&app, "about the idle close", |l| {
        l.contains("\"kind\":\"idle\"") && l.contains("idle keep-alive")
    })
    .await;
    let m = app.metrics().await;
    assert!(
        metric(&m, "aiops_http_timeouts_total{kind=\"idle\"}") >= 1.0,
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_the_connection_cap_new_connections_are_refused_while_those_within_it_work() {
    let app = TestApp::spawn(
        Spawn::new(Db::Sqlite)
            .env("AIOPS_HTTP_MAX_CONNECTIONS", "4")
            .env("AIOPS_HTTP_HEADER_READ_TIMEOUT", "30s"),
    )
    .await;
    // Three idle, unauthenticated connections and one that works: the cap is reached.
    let mut idle = Vec::new();
    for _ in 0..3 {
        idle.push(TcpStream::connect(app.addr).await.unwrap());
    }
    let mut working = TcpStream::connect(app.addr).await.unwrap();
    assert_eq!(raw_get(&mut working, "/-/healthy").await.0, 200);
    // One more is answered 503 and closed at once, never left hanging.
    let mut extra = TcpStream::connect(app.addr).await.unwrap();
    let (got, closed) = read_until_closed(&mut extra, Duration::from_secs(5)).await;
    assert!(closed);
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 503"), "{text}");
    // The connection within the cap keeps working, and the refusal shows.
    let (status, m) = raw_get(&mut working, "/metrics").await;
    assert_eq!(status, 200);
    assert!(
        metric(
            &m,
            "aiops_http_connections_rejected_total{reason=\"limit\"}"
        ) >= 1.0
    );
    assert_eq!(metric(&m, "aiops_http_connections_open"), 4.0);
    wait_for_log(&app, "about the refused connection", |l| {
        l.contains("connection refused") && l.contains("max_connections")
    })
    .await;
    // Freed slots are usable again.
    drop(idle);
    wait::until(
        "the freed slots to serve again",
        Duration::from_secs(5),
        async || {
            let mut s = TcpStream::connect(app.addr).await.unwrap();
            s.write_all(b"GET /-/healthy HTTP/1.1\r\nhost: aiops\r\n\r\n")
                .await
                .ok()?;
            let (got, _) = read_until_closed(&mut s, Duration::from_millis(500)).await;
            got.starts_with(b"HTTP/1.1 200").then_some(())
        },
        String::new,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_tokens_beyond_the_budget_get_429_without_slowing_the_right_token() {
    let app = TestApp::spawn(
        Spawn::new(Db::Sqlite)
            .env("AIOPS_WEBHOOK_TOKEN", TOKEN)
            .env("AIOPS_JWT_SECRET", SECRET)
            .env("AIOPS_HTTP_AUTH_FAILURE_BURST", "5")
            .env("AIOPS_HTTP_AUTH_FAILURES_PER_MINUTE", "1"),
    )
    .await;
    // The guesser comes from 127.0.0.2, Alertmanager from 127.0.0.1 (both loopback on Linux).
    let guesser = reqwest::Client::builder()
        .local_address("127.0.0.2".parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap();
    let hook = app.url("/webhook/alertmanager");
    let guess = |token: String| {
        guesser
            .post(&hook)
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(fixture("am-0.25-firing-grouped-3.json"))
            .send()
    };
    let mut statuses = Vec::new();
    for i in 0..8 {
        statuses.push(
            guess(format!("guess-{i:020}"))
                .await
                .unwrap()
                .status()
                .as_u16(),
        );
    }
    assert_eq!(statuses, [401, 401, 401, 401, 401, 429, 429, 429]);
    // Blocked means unread: even the right token from that address is refused for now.
    let r = guess(TOKEN.into()).await.unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));

    // Meanwhile the right token from another address goes through at full speed.
    let flood = tokio::spawn({
        let (guesser, hook) = (guesser.clone(), hook.clone());
        async move {
            for i in 0..200 {
                let r = guesser
                    .post(&hook)
                    .bearer_auth(format!("flood-{i:020}"))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 429);
            }
        }
    });
    for _ in 0..5 {
        let started = Instant::now();
        let r = app.post_fixture("am-0.25-firing-grouped-3.json").await;
        assert_eq!(r.status(), 200);
        assert!(started.elapsed() < Duration::from_secs(1));
    }
    flood.await.unwrap();

    // API tokens share the budget per address: a third address guessing JWTs is blocked too.
    let api_guesser = reqwest::Client::builder()
        .local_address("127.0.0.3".parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap();
    let mut statuses = Vec::new();
    for i in 0..6 {
        let r = api_guesser
            .get(app.url("/api/alerts"))
            .bearer_auth(format!("not.a-{i}.jwt"))
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
        let v: Value = r.json().await.unwrap();
        assert!(v["error"].is_string());
    }
    assert_eq!(statuses, [401, 401, 401, 401, 401, 429]);
    let admin = jwt(Role::Admin, &[]);
    let r = app
        .client
        .get(app.url("/api/alerts"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    wait_for_log(&app, "about the blocked address", |l| {
        l.contains("too many failed authentications") && l.contains("127.0.0.2")
    })
    .await;
    let m = app.metrics().await;
    assert!(
        metric(&m, "aiops_http_auth_throttled_total") >= 200.0,
        "{m}"
    );
    assert!(!app.log_text().contains(TOKEN));
}

#[test]
fn a_webhook_token_shorter_than_16_bytes_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let env = std::collections::HashMap::from([
        ("AIOPS_WEBHOOK_TOKEN", "short-token".to_string()),
        (
            "AIOPS_RULES_DIR",
            common::repo().join("rules").display().to_string(),
        ),
        (
            "AIOPS_PLAYBOOKS_DIR",
            common::repo().join("playbooks").display().to_string(),
        ),
    ]);
    let (status, _out, err) = run_cli(dir.path(), &["serve"], &env);
    assert!(!status.success());
    assert!(err.contains("at least 16 bytes"), "{err}");
    assert!(
        !err.contains("short-token"),
        "the token itself is never printed: {err}"
    );
    assert!(
        !dir.path().join("aiops.db").exists(),
        "refused before the store"
    );
}

async fn api_errors_are_json_bearer_is_any_case_and_nul_is_a_400(db: Db) {
    let app = TestApp::spawn(
        Spawn::new(db)
            .env("AIOPS_JWT_SECRET", SECRET)
            .env("AIOPS_API_MAX_BODY_BYTES", "4096"),
    )
    .await;
    let admin = jwt(Role::Admin, &[]);
    let auth = format!("BEARER {admin}");
    let client = &app.client;
    let cases: Vec<(&str, reqwest::RequestBuilder, u16, Option<&str>)> = vec![
        (
            "NUL in a query parameter",
            client.get(app.url("/api/alerts?alertname=Kube%00Down")),
            400,
            Some("alertname"),
        ),
        (
            "NUL in a repairs filter",
            client.get(app.url("/api/repairs?target=a%00/Deployment/b")),
            400,
            Some("target"),
        ),
        (
            "NUL in a path",
            client.get(app.url("/api/apps/sh%00p/manifests")),
            400,
            Some("path"),
        ),
        (
            "a path parameter of the wrong type",
            client.get(app.url("/api/repairs/abc")),
            400,
            None,
        ),
        (
            "a query parameter of the wrong type",
            client.get(app.url("/api/alerts?limit=many")),
            400,
            None,
        ),
        (
            "an unknown query parameter",
            client.get(app.url("/api/alerts?colour=red")),
            400,
            None,
        ),
        (
            "a missing query parameter",
            client.get(app.url("/api/kb/similar?namespace=shop")),
            400,
            None,
        ),
        (
            "a method the route does not have",
            client.delete(app.url("/api/alerts")),
            405,
            None,
        ),
        (
            "a body that is not JSON",
            client
                .post(app.url("/api/kb/notes"))
                .header("content-type", "application/json")
                .body("{not json"),
            400,
            Some("body"),
        ),
        (
            "a body that says it is not JSON",
            client
                .post(app.url("/api/kb/notes"))
                .header("content-type", "text/plain")
                .body("hello"),
            415,
            Some("body"),
        ),
        (
            "a body over api.max_body_bytes",
            client
                .post(app.url("/api/kb/notes"))
                .header("content-type", "application/json")
                .body(format!(
                    r#"{{"namespace":"shop","alertname":"A","body":"{}"}}"#,
                    "x".repeat(8000)
                )),
            413,
            Some("body"),
        ),
        (
            "an unknown route",
            client.get(app.url("/api/nope")),
            404,
            None,
        ),
    ];
    for (what, req, status, field) in cases {
        let r = req.header("authorization", &auth).send().await.unwrap();
        assert_eq!(r.status().as_u16(), status, "{what}");
        let ct = r.headers()["content-type"].to_str().unwrap().to_string();
        assert!(ct.starts_with("application/json"), "{what}: {ct}");
        let v: Value = r.json().await.unwrap();
        assert!(
            v["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{what}: {v}"
        );
        if let Some(field) = field {
            assert_eq!(v["field"], field, "{what}: {v}");
        }
    }
    // `BEARER` is the Bearer scheme, as on the webhook.
    for scheme in ["BEARER", "bearer", "Bearer"] {
        let r = client
            .get(app.url("/api/alerts"))
            .header("authorization", format!("{scheme} {admin}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{scheme}");
    }
    // Nothing above reached the store as an error.
    assert!(
        !app.log_text().contains("API request failed"),
        "{}",
        app.log_text()
    );
}
both_backends!(api_errors_are_json_bearer_is_any_case_and_nul_is_a_400);
