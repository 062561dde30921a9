//! Hostile playbooks through the running daemon (issue 12): scripts that grow memory past every
//! per-value check (a map grown by index, huge map keys, a curry loop, closures capturing big
//! values), flood the log, or burn CPU on a few heavy operations are stopped with their reason
//! and handed to humans, while the daemon keeps answering within a second, its memory stays
//! bounded and the repair's record stays small. And `aiops test-playbook` follows no redirect
//! out of `playbook.http_allow`.

use crate::both_backends;
use crate::common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use aiops::store::JobState;
use common::files::write_definitions;
use common::{Db, Spawn, TestApp, TestDb, payload, run_cli, wait};
use serde_json::Value;

const SECRET: &str = "hardening-sandbox-test-secret-0123456789";

/// Builds a 512 KiB string in a few operations (`big + i` stays under the 1 MiB string limit).
const BIG: &str = "let big = \"x\";\nwhile big.len() < 500000 { big += big; }\n";

/// (playbook, body after BIG, target deployment in tests/fixtures/cluster-state.yaml, reason).
const HOSTILE: &[(&str, &str, &str, &str)] = &[
    (
        "hb_map_index",
        "let m = #{}; let i = 0;\nloop { m[\"k\" + i] = big + i; i += 1; }\n",
        "demo",
        "stopped: memory limit exceeded",
    ),
    (
        "hb_map_keys",
        "let m = #{}; let i = 0;\nloop { m[big + i] = i; i += 1; }\n",
        "web",
        "stopped: memory limit exceeded",
    ),
    (
        "hb_curry",
        "fn f(a) { a }\nlet f = Fn(\"f\");\nloop { f = f.curry(f); }\n",
        "api",
        "stopped: memory limit exceeded",
    ),
    (
        "hb_closures",
        "let fs = [];\nloop { let s = big + fs.len(); fs.push(|| s); }\n",
        "other",
        "stopped: memory limit exceeded",
    ),
    (
        "hb_log_flood",
        "loop { log(big); }\n",
        "calm",
        "stopped: log output truncated",
    ),
    (
        "hb_cpu",
        "let n = 0;\nloop { n += big.index_of(\"y\"); }\n",
        "app0",
        "stopped: CPU time limit exceeded",
    ),
];

fn rule(name: &str) -> String {
    format!("  - name: {name}\n    matchers: ['auto_repair=\"{name}\"']\n    playbook: {name}\n")
}

/// Resident memory of a process, from /proc/PID/status: (current, peak) in KiB.
fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("{name} in {status}"))
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn admin_token(app: &TestApp) -> String {
    common::api::issue(app, SECRET, "test", "", "admin")
}

async fn hostile_playbooks_are_stopped_with_their_reason_while_the_daemon_serves(db: Db) {
    // Arrange: one rule and one hostile playbook per attack, small limits so each is stopped
    // in seconds.
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let test_db = Arc::new(TestDb::new(db, dir.path()).await);
    let mut rules = String::from("rules:\n");
    let mut playbooks = Vec::new();
    for (name, body, ..) in HOSTILE {
        rules.push_str(&rule(name));
        playbooks.push((format!("{name}.rhai"), format!("{BIG}{body}")));
    }
    let playbooks: Vec<(&str, &str)> = playbooks
        .iter()
        .map(|(n, b)| (n.as_str(), b.as_str()))
        .collect();
    write_definitions(dir.path(), &[("test.yaml", &rules)], &playbooks);
    let app = TestApp::spawn_in(
        dir.clone(),
        test_db,
        Spawn::new(db)
            .env("AIOPS_WORKERS", "8")
            .env("AIOPS_JWT_SECRET", SECRET)
            .env("AIOPS_PLAYBOOK_MAX_MEMORY", "16Mi")
            .env("AIOPS_PLAYBOOK_MAX_CPU", "1s")
            .env("AIOPS_PLAYBOOK_MAX_LOG", "64Ki")
            .env("AIOPS_PLAYBOOK_MAX_LOG_LINE", "4Ki"),
    )
    .await;
    let pid = app.pid();
    let (idle_rss, _) = rss_kib(pid);

    // Act: one alert per hostile playbook, in one webhook.
    let labels: Vec<Vec<(&str, &str)>> = HOSTILE
        .iter()
        .map(|(name, _, target, _)| {
            vec![
                ("alertname", "Hostile"),
                ("auto_repair", *name),
                ("namespace", "prod"),
                ("deployment", *target),
            ]
        })
        .collect();
    let alerts: Vec<(&[(&str, &str)], &str)> =
        labels.iter().map(|l| (l.as_slice(), "firing")).collect();
    let started = Instant::now();
    let resp = app
        .post_webhook(payload(&alerts, &chrono::Utc::now().to_rfc3339()))
        .await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        body["jobs"].as_array().unwrap().len(),
        HOSTILE.len(),
        "{body}"
    );

    // Meanwhile the daemon answers its health check within a second, every time, and its
    // resident memory stays bounded.
    let store = app.store().await;
    let probes = AtomicUsize::new(0);
    let mut max_rss = idle_rss;
    let jobs = wait::until_ok(
        "the hostile runs to be stopped",
        Duration::from_secs(60),
        async || {
            let asked = Instant::now();
            let health = tokio::time::timeout(
                Duration::from_secs(1),
                app.client.get(app.url("/-/healthy")).send(),
            )
            .await
            .expect("the daemon answered /-/healthy within 1 s")
            .unwrap();
            assert_eq!(health.status(), 200);
            assert!(asked.elapsed() < Duration::from_secs(1));
            probes.fetch_add(1, Ordering::Relaxed);
            max_rss = max_rss.max(rss_kib(pid).0);
            let jobs = store.jobs().await.unwrap();
            if jobs.len() == HOSTILE.len() && jobs.iter().all(|j| j.state.is_terminal()) {
                Ok(jobs)
            } else {
                Err(jobs)
            }
        },
        || app.log_text(),
    )
    .await;
    let elapsed = started.elapsed();

    // Assert: each run stopped for its own reason, inconclusive, once to humans.
    let token = admin_token(&app);
    let escalations = store.escalations().await.unwrap();
    for (name, _, target, reason) in HOSTILE {
        let job = jobs
            .iter()
            .find(|j| j.playbook == *name)
            .unwrap_or_else(|| panic!("no job of {name}: {jobs:#?}"));
        assert_eq!(job.target_name, *target);
        assert_eq!(job.state, JobState::Escalated, "{name}: {job:#?}");
        let error = job.error.clone().unwrap_or_default();
        assert!(
            error.starts_with("inconclusive: ") && error.contains(reason),
            "{name}: {error:?} lacks {reason:?}"
        );
        assert!(error.contains(&format!("/{name}.rhai:")), "{name}: {error}");
        let human: Vec<_> = escalations
            .iter()
            .filter(|e| e.job_id == Some(job.id))
            .collect();
        assert_eq!(human.len(), 1, "{name}: {escalations:#?}");
        assert_eq!(human[0].kind, "human");

        // The repair's record stays small, whatever the script tried to log.
        let resp = app
            .client
            .get(app.url(&format!("/api/repairs/{}", job.id)))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let text = resp.text().await.unwrap();
        assert!(
            text.len() < 128 * 1024,
            "{name}: GET /api/repairs/{} answered {} bytes",
            job.id,
            text.len()
        );
    }

    // The log flood: each line cut at 4 KiB saying so, and the run stopped near 64 KiB.
    let flood = jobs.iter().find(|j| j.playbook == "hb_log_flood").unwrap();
    let steps = store.job_steps(flood.id).await.unwrap();
    let logged: usize = steps.iter().map(|s| s.detail.len()).sum();
    assert!(logged < 64 * 1024 + 3 * 4096, "{logged} bytes of steps");
    let logs: Vec<_> = steps.iter().filter(|s| s.action == "log").collect();
    assert!(
        logs[0].detail.len() <= 4096 && logs[0].detail.contains("log output truncated]"),
        "{}",
        &logs[0].detail[logs[0].detail.len().saturating_sub(100)..]
    );
    assert!(
        logs.last()
            .unwrap()
            .detail
            .starts_with("log output truncated: the run recorded more than 64 KiB"),
        "{:?}",
        logs.last()
    );

    // Memory: six hostile runs at once never took the daemon anywhere near the gigabytes
    // they asked for (peak resident set from the kernel, not just our samples).
    let (_, peak) = rss_kib(pid);
    eprintln!(
        "peak RSS {peak} KiB (sampled max {max_rss} KiB, idle {idle_rss} KiB), {} health probes, all stopped in {elapsed:?}",
        probes.load(Ordering::Relaxed)
    );
    assert!(
        peak < 512 * 1024,
        "peak RSS {peak} KiB (sampled max {max_rss} KiB, idle {idle_rss} KiB)"
    );
    assert!(probes.load(Ordering::Relaxed) >= 1);
    assert!(elapsed < Duration::from_secs(60), "{elapsed:?}");

    // The daemon still takes alerts afterwards.
    let after = app
        .post_webhook(payload(
            &[(
                &[
                    ("alertname", "Hostile"),
                    ("auto_repair", "none"),
                    ("namespace", "prod"),
                    ("deployment", "app1"),
                ],
                "firing",
            )],
            &chrono::Utc::now().to_rfc3339(),
        ))
        .await;
    assert_eq!(after.status(), 200);
}
both_backends!(hostile_playbooks_are_stopped_with_their_reason_while_the_daemon_serves);

/// A 127.0.0.1 server answering every request with `answer(port_of_other)`, counting hits.
async fn serve(
    respond: impl Fn() -> axum::response::Response + Clone + Send + Sync + 'static,
) -> (u16, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    let app = axum::Router::new().fallback(move || {
        let respond = respond.clone();
        let counted = counted.clone();
        async move {
            counted.fetch_add(1, Ordering::SeqCst);
            respond()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (port, hits)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_playbook_does_not_follow_a_redirect_to_a_host_outside_http_allow() {
    use axum::response::IntoResponse;
    // Arrange: an allowed stand-in that redirects to another port nobody allowed.
    let (outside, outside_hits) =
        serve(|| "secret data from outside http_allow".into_response()).await;
    let (allowed, allowed_hits) = serve(move || {
        (
            axum::http::StatusCode::FOUND,
            [(
                axum::http::header::LOCATION,
                format!("http://127.0.0.1:{outside}/steal?token=abc"),
            )],
        )
            .into_response()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    write_definitions(
        dir.path(),
        &[("test.yaml", &format!("rules:\n{}", rule("probe")))],
        &[(
            "probe.rhai",
            &format!(
                "let r = http_get(\"http://127.0.0.1:{allowed}/health\");\nif r.ok {{ success(\"reached: \" + r.body); }} else {{ fail(\"health answered \" + r.status); }}\n"
            ),
        )],
    );
    std::fs::write(
        dir.path().join("alert.json"),
        payload(
            &[(
                &[
                    ("alertname", "Probe"),
                    ("auto_repair", "probe"),
                    ("namespace", "prod"),
                    ("deployment", "web"),
                ],
                "firing",
            )],
            "2026-11-30T00:00:00Z",
        ),
    )
    .unwrap();
    let env = HashMap::from([
        ("AIOPS_RULES_DIR", "rules".to_string()),
        ("AIOPS_PLAYBOOKS_DIR", "playbooks".to_string()),
        ("AIOPS_HTTP_ALLOW", format!("127.0.0.1:{allowed}")),
    ]);

    // Act
    let cwd = dir.path().to_path_buf();
    let (status, out, err) = tokio::task::spawn_blocking(move || {
        run_cli(
            &cwd,
            &["test-playbook", "probe", "--alert", "alert.json"],
            &env,
        )
    })
    .await
    .unwrap();

    // Assert: the allowed host was asked once; the redirect was not followed.
    assert_eq!(allowed_hits.load(Ordering::SeqCst), 1, "{out}{err}");
    assert_eq!(
        outside_hits.load(Ordering::SeqCst),
        0,
        "the redirect out of http_allow was followed: {out}{err}"
    );
    assert_eq!(status.code(), Some(1), "{out}{err}");
    assert!(
        out.contains("outcome: failure: health answered 302"),
        "{out}{err}"
    );
    assert!(
        out.contains(&format!(
            "GET http://127.0.0.1:{allowed}/health -> 302 (redirect to 127.0.0.1:{outside} not followed"
        )),
        "{out}"
    );
    assert!(!out.contains("token=abc"), "{out}");
}
