//! End to end with the real sender: Debian's Prometheus and Alertmanager deliver to `aiops serve`,
//! which repairs the stateful fake API server (tests/fakeapi) through a kubeconfig, and tells a
//! Telegram stand-in (tests/common/stand_ins.rs) what it did.
//!
//! Each test prints a `e2e figures` line: alerts sent, repairs done, duplicate deliveries
//! absorbed, actions repeated (must be 0), alerts lost (must be 0) and the latency from an
//! alert's `startsAt` to the fake API server's first mutating request on its target.
//! Outside CI a missing `prometheus`/`prometheus-alertmanager`/PostgreSQL skips with a reason;
//! in CI it fails (.ci/run installs them).

use crate::common;
use crate::fakeapi;
pub mod harness;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aiops::store::{Job, JobState, NotificationState, Store};
use common::stand_ins::{Answer, Request, StandIn};
use common::{Db, Spawn, TestApp, TestDb, wait};
use fakeapi::{FakeApi, RolloutBehaviour};
use harness::{
    Alertmanager, AmAlert, Exporter, PrivatePg, Prometheus, Timing, Webhook, metric_sum,
    percentile, require,
};
use serde_json::json;

const TOKEN: &str = "e2e-webhook-token-7f3a";

/// The fake cluster and a kubeconfig that reaches it.
struct Cluster {
    api: Arc<FakeApi>,
    kubeconfig: PathBuf,
    _dir: tempfile::TempDir,
}

impl Cluster {
    async fn start() -> Cluster {
        let api = Arc::new(FakeApi::start().await);
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        api.write_kubeconfig(&kubeconfig);
        Cluster {
            api,
            kubeconfig,
            _dir: dir,
        }
    }

    /// Daemon options: this cluster, the webhook token, no storm brake in the way of a test
    /// that repairs many targets on purpose.
    fn spawn(&self, db: Db) -> Spawn {
        Spawn::new(db)
            .env("AIOPS_CLUSTER_STATE_FILE", "")
            .env("AIOPS_KUBECONFIG", self.kubeconfig.to_str().unwrap())
            .env("AIOPS_KUBE_CONTEXT", "fake")
            .env("AIOPS_WEBHOOK_TOKEN", TOKEN)
            .env("AIOPS_STORM_MAX_TARGETS", "1000")
    }

    /// Marks every pod of `app` as OOMKilled in its last termination (restarted since).
    fn oom_kill(&self, ns: &str, app: &str) {
        for pod in self.api.pods(ns) {
            let labels = pod.metadata.labels.clone().unwrap_or_default();
            if labels.get("app").map(String::as_str) != Some(app) {
                continue;
            }
            let name = pod.metadata.name.clone().unwrap();
            self.api.edit("Pod", ns, &name, |v| {
                v["status"]["containerStatuses"] = json!([{
                    "name": "app", "ready": true, "restartCount": 3, "image": "web:1", "imageID": "web:1",
                    "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}},
                    "state": {"running": {}}
                }]);
            });
        }
    }

    /// Mutating requests on one Deployment, with their arrival times.
    fn writes_on(&self, ns: &str, name: &str) -> Vec<(String, SystemTime)> {
        let path = format!("/namespaces/{ns}/deployments/{name}");
        self.api
            .recorded()
            .into_iter()
            .filter(|r| r.method != "GET")
            .filter(|r| r.path_query.split('?').next().unwrap().ends_with(&path))
            .map(|r| (format!("{} {}", r.method, r.path_query), r.at))
            .collect()
    }
}

/// A Telegram chat stand-in (tests/common/stand_ins.rs: records every request, answers from a
/// script, else `ok`) and the daemon config that makes it channel `chat`, routed by labels.
struct Chat {
    standin: StandIn,
    config: PathBuf,
    _dir: tempfile::TempDir,
}

impl Chat {
    /// `notify` settings beside the channel (retry, route events) are `extra`, indented as
    /// keys of `notify:`.
    async fn start(route_events: Option<&str>, extra: &str) -> Chat {
        let standin = StandIn::start().await;
        standin.default_answer(Answer::new(200, r#"{"ok":true,"result":{"message_id":7}}"#));
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("aiops.yaml");
        let events = route_events.map_or(String::new(), |e| format!("\n      events: [{e}]"));
        std::fs::write(
            &config,
            format!(
                "notify:\n  channels:\n    chat: {{type: telegram, bot_token: \"123:e2e-chat\", chat_id: \"-100\", api_url: \"{}\"}}\n  routes:\n    - channels: [chat]{events}\n  poll_interval: 200ms\n{extra}",
                standin.url
            ),
        )
        .unwrap();
        Chat {
            standin,
            config,
            _dir: dir,
        }
    }

    /// Daemon options with this chat configured.
    fn configure(&self, opts: Spawn) -> Spawn {
        opts.env("AIOPS_CONFIG", self.config.to_str().unwrap())
    }

    /// The texts of the messages the chat received (every attempt), with the status answered.
    fn received(&self) -> Vec<(String, u16)> {
        self.standin
            .requests()
            .iter()
            .map(|r: &Request| {
                assert_eq!(r.path, "/bot123:e2e-chat/sendMessage");
                let v = r.json();
                assert_eq!(v["chat_id"], "-100", "{v}");
                (v["text"].as_str().unwrap_or_default().to_string(), r.status)
            })
            .collect()
    }

    /// The texts that contain `needle` and were accepted (200).
    fn delivered(&self, needle: &str) -> Vec<String> {
        self.received()
            .into_iter()
            .filter(|(t, status)| *status == 200 && t.contains(needle))
            .map(|(t, _)| t)
            .collect()
    }
}

/// Waits until every notification row in the store is sent (so none is still to come), and
/// at least `min` exist; the rows.
async fn notifications_settled(
    store: &Store,
    min: usize,
    diagnostics: impl Fn() -> String,
) -> Vec<aiops::store::Notification> {
    wait::until(
        "every notification to be sent",
        Duration::from_secs(30),
        async || {
            let rows = store.notifications().await.ok()?;
            (rows.len() >= min && rows.iter().all(|n| n.state == NotificationState::Sent))
                .then_some(rows)
        },
        diagnostics,
    )
    .await
}

fn hook(app: &TestApp) -> Webhook {
    Webhook {
        url: app.url("/webhook/alertmanager"),
        token: TOKEN.into(),
    }
}

/// (labels, startsAt ms, status) of every stored alert occurrence, oldest first.
async fn alert_events(store: &Store) -> Vec<(BTreeMap<String, String>, i64, String)> {
    let all = aiops::store::ListFilter {
        limit: i64::MAX,
        ..Default::default()
    };
    let mut events = store.list_alerts(&all).await.unwrap();
    events.reverse();
    events
        .into_iter()
        .map(|a| (a.labels, a.starts_at, a.status))
        .collect()
}

fn ms_of(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

/// Time from an alert's startsAt (epoch ms) to a request's arrival.
fn latency(starts_at_ms: i64, at: SystemTime) -> Duration {
    Duration::from_millis((ms_of(at) - starts_at_ms).max(0) as u64)
}

struct Figures {
    scenario: &'static str,
    alerts_sent: usize,
    repairs_done: usize,
    duplicates_absorbed: u64,
    actions_repeated: usize,
    alerts_lost: usize,
    latencies: Vec<Duration>,
}

impl Figures {
    fn print(&self) {
        let lat = if self.latencies.is_empty() {
            "n/a".to_string()
        } else {
            format!(
                "p50 {} ms, p99 {} ms (n={})",
                percentile(&self.latencies, 50.0).as_millis(),
                percentile(&self.latencies, 99.0).as_millis(),
                self.latencies.len()
            )
        };
        println!(
            "e2e figures [{}]: alerts sent {}, repairs done {}, duplicate deliveries absorbed {}, actions repeated {}, alerts lost {}, alert-to-first-cluster-call {lat}",
            self.scenario,
            self.alerts_sent,
            self.repairs_done,
            self.duplicates_absorbed,
            self.actions_repeated,
            self.alerts_lost
        );
    }
}

const OOM_RULES: &str = r#"groups:
  - name: e2e
    rules:
      - alert: ContainerOOMKilled
        expr: max by (namespace, deployment) (kube_pod_container_status_last_terminated_reason{reason="OOMKilled"}) > 0
        for: 0s
        labels:
          auto_repair: oom_handler
          severity: critical
        annotations:
          summary: "{{ $labels.deployment }} was OOMKilled"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prometheus_alert_becomes_a_verified_repair_a_kb_row_and_a_time_to_recover() {
    let Some(bins) = require(&["prometheus", "prometheus-alertmanager"]) else {
        return;
    };
    // Arrange: a Deployment whose pods were OOMKilled, exported as kube-state-metrics would.
    let cluster = Cluster::start().await;
    cluster.api.add_deployment(
        "prod",
        "web",
        2,
        &[("app", "web:1", Some("256Mi"), Some("512Mi"))],
    );
    cluster.oom_kill("prod", "web");
    let chat = Chat::start(None, "").await;
    let app = TestApp::spawn(chat.configure(cluster.spawn(Db::Sqlite))).await;
    let exporter = Exporter::start(cluster.api.clone(), "prod").await;
    let am = Alertmanager::start(&bins[1], &[hook(&app)], Timing::default()).await;
    let prom = Prometheus::start(
        &bins[0],
        &exporter.addr.to_string(),
        &format!("127.0.0.1:{}", am.port),
        OOM_RULES,
    )
    .await;
    let store = app.store().await;
    let diag = || {
        format!(
            "{}\n{}\n--- aiops:\n{}\n--- fake API writes: {:?}",
            prom.proc.log_tail(),
            am.proc.log_tail(),
            app.log_text(),
            cluster.api.writes()
        )
    };

    // Act + Assert: Prometheus ⇒ Alertmanager ⇒ aiops ⇒ oom_handler ⇒ verified.
    let job = wait::until(
        "the oom_handler repair to succeed",
        Duration::from_secs(90),
        async || {
            let jobs = store.jobs().await.ok()?;
            jobs.into_iter().find(|j| j.state.is_terminal())
        },
        diag,
    )
    .await;
    assert_eq!(job.state, JobState::Succeeded, "{job:#?}\n{}", diag());
    assert_eq!(job.playbook, "oom_handler");
    assert_eq!(job.alertname, "ContainerOOMKilled");
    assert_eq!(job.target_key, "prod/Deployment/web");
    assert!(
        job.outcome
            .as_deref()
            .unwrap_or("")
            .starts_with("OOMKilled: memory limit of app 512Mi -> 615Mi"),
        "{:?}",
        job.outcome
    );
    let limit = cluster
        .api
        .deployment("prod", "web")
        .spec
        .unwrap()
        .template
        .spec
        .unwrap()
        .containers[0]
        .resources
        .clone()
        .unwrap()
        .limits
        .unwrap()["memory"]
        .0
        .clone();
    assert_eq!(limit, "615Mi", "the limit on the cluster was raised");

    // The chat hears of it: repair started, then repaired, each once.
    let rows = notifications_settled(&store, 2, || {
        format!("{:#?}\n{}", chat.received(), app.log_text())
    })
    .await;
    let success: Vec<_> = rows
        .iter()
        .filter(|n| n.event == "auto_repair_success")
        .collect();
    assert_eq!(success.len(), 1, "{rows:#?}");
    assert_eq!(success[0].job_id, Some(job.id));

    // The new pods are not OOMKilled: the series goes, Prometheus resolves the alert, and the
    // resolve reaching aiops gives the repair its time to recover.
    let ttr = wait::until(
        "the resolve to record the time to recover",
        Duration::from_secs(60),
        async || store.job(job.id).await.ok()??.ttr_ms,
        diag,
    )
    .await;
    assert!(ttr > 0, "time to recover {ttr} ms");
    let events = alert_events(&store).await;
    assert!(
        events.iter().any(|(l, _, s)| s == "resolved"
            && l.get("alertname").map(String::as_str) == Some("ContainerOOMKilled")),
        "{events:?}"
    );

    // The knowledge base shows it to the operator.
    let env = std::collections::HashMap::from([("AIOPS_DATABASE_URL", app.db.url.clone())]);
    let (status, stdout, stderr) =
        common::run_cli(app.dir.path(), &["kb", "stats", "--json"], &env);
    assert!(status.success(), "{stderr}");
    let stats: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let row = stats["by_alert"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["alertname"] == "ContainerOOMKilled")
        .unwrap_or_else(|| panic!("{stdout}"))
        .clone();
    assert_eq!(row["playbook"], "oom_handler");
    assert_eq!(row["runs"], 1);
    assert_eq!(row["succeeded"], 1);
    assert!(row["ttr_mean_s"].as_f64().is_some(), "{row}");

    // Seconds after the repair (the resolve came in between): still one success message.
    let repaired = chat.delivered("Repaired: web (prod)");
    assert_eq!(repaired.len(), 1, "{:#?}", chat.received());
    for part in [
        "<b>[aiops] Repaired: web (prod)</b>",
        "Target: prod/Deployment/web",
        "Action: oom_handler",
        "Result: OOMKilled: memory limit of app 512Mi -&gt; 615Mi",
    ] {
        assert!(
            repaired[0].contains(part),
            "{part:?} not in {}",
            repaired[0]
        );
    }
    assert_eq!(chat.delivered("Repair started: web (prod)").len(), 1);

    let writes = cluster.writes_on("prod", "web");
    assert_eq!(writes.len(), 1, "one change to the Deployment: {writes:?}");
    let starts_at = events
        .iter()
        .find(|(_, _, s)| s == "firing")
        .map(|(_, t, _)| *t)
        .unwrap();
    Figures {
        scenario: "prometheus → alertmanager → oom_handler",
        alerts_sent: 1,
        repairs_done: 1,
        duplicates_absorbed: metric_sum(&app.metrics().await, "aiops_alerts_duplicate_total", "")
            as u64,
        actions_repeated: writes.len() - 1,
        alerts_lost: 0,
        latencies: vec![latency(starts_at, writes[0].1)],
    }
    .print();
    println!("time to recover: {ttr} ms");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_with_no_previous_revision_escalates_listing_what_was_tried() {
    let Some(bins) = require(&["prometheus-alertmanager"]) else {
        return;
    };
    let cluster = Cluster::start().await;
    cluster
        .api
        .add_deployment("prod", "api", 2, &[("app", "api:1", None, None)]);
    let chat = Chat::start(None, "").await;
    let app = TestApp::spawn(chat.configure(cluster.spawn(Db::Sqlite))).await;
    let am = Alertmanager::start(&bins[0], &[hook(&app)], Timing::default()).await;
    cluster.api.clear_requests();

    am.post_alerts(&[AmAlert::firing(&[
        ("alertname", "BadDeploy"),
        ("auto_repair", "rollback"),
        ("namespace", "prod"),
        ("deployment", "api"),
        ("severity", "critical"),
    ])])
    .await;

    let store = app.store().await;
    let escalations = wait::until(
        "the escalation",
        Duration::from_secs(30),
        async || {
            let e = store.escalations().await.ok()?;
            (!e.is_empty()).then_some(e)
        },
        || format!("{}\n--- aiops:\n{}", am.proc.log_tail(), app.log_text()),
    )
    .await;
    let jobs = store.jobs().await.unwrap();
    assert_eq!(jobs.len(), 1, "{jobs:#?}");
    assert_eq!(jobs[0].state, JobState::Escalated, "{jobs:#?}");
    assert_eq!(escalations.len(), 1, "{escalations:#?}");
    let e = &escalations[0];
    assert_eq!(
        (e.kind.as_str(), e.destination.as_str()),
        ("notify", "default")
    );
    assert!(
        e.reason
            .contains("manual intervention required on prod/Deployment/api")
            && e.reason
                .contains(&format!("Tried: job {} rollback", jobs[0].id))
            && e.reason
                .contains("no previous revision of deployment prod/api"),
        "{}",
        e.reason
    );
    assert!(
        cluster.writes_on("prod", "api").is_empty(),
        "nothing to roll back to, nothing changed: {:?}",
        cluster.api.writes()
    );

    // The chat gets the escalation once, listing the step tried and its outcome.
    let rows = notifications_settled(&store, 1, || {
        format!("{:#?}\n{}", chat.received(), app.log_text())
    })
    .await;
    assert_eq!(
        rows.iter().filter(|n| n.event == "escalation").count(),
        1,
        "{rows:#?}"
    );
    let escalated = chat.delivered("Manual intervention required: api (prod)");
    assert_eq!(escalated.len(), 1, "{:#?}", chat.received());
    for part in [
        "Target: prod/Deployment/api".to_string(),
        format!("1. rollback (job {}): failure", jobs[0].id),
        "no previous revision of deployment prod/api".to_string(),
    ] {
        assert!(
            escalated[0].contains(&part),
            "{part:?} not in {}",
            escalated[0]
        );
    }
    assert!(
        !escalated[0].contains("2. "),
        "one step was tried: {}",
        escalated[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_api_answering_500_then_429_then_200_gets_the_message_exactly_once() {
    let Some(bins) = require(&["prometheus-alertmanager"]) else {
        return;
    };
    let cluster = Cluster::start().await;
    cluster
        .api
        .add_deployment("prod", "shop", 1, &[("app", "shop:1", None, None)]);
    // Only the success goes to the chat, so the script below meets that one message. The
    // backoff is short; the 429's retry_after (1 s) is Telegram's smallest.
    let chat = Chat::start(
        Some("auto_repair_success"),
        "  retry: {max_attempts: 5, initial_backoff: 200ms, max_backoff: 2s}\n",
    )
    .await;
    chat.standin.script(vec![
        Answer::new(
            500,
            r#"{"ok":false,"error_code":500,"description":"Internal Server Error"}"#,
        ),
        Answer::new(
            429,
            r#"{"ok":false,"error_code":429,"description":"Too Many Requests: retry after 1","parameters":{"retry_after":1}}"#,
        ),
    ]);
    let app = TestApp::spawn(chat.configure(cluster.spawn(Db::Sqlite))).await;
    let am = Alertmanager::start(&bins[0], &[hook(&app)], Timing::default()).await;
    cluster.api.clear_requests();
    am.post_alerts(&[AmAlert::firing(&[
        ("alertname", "ServiceDown"),
        ("auto_repair", "restart"),
        ("namespace", "prod"),
        ("deployment", "shop"),
        ("severity", "critical"),
    ])])
    .await;

    let store = app.store().await;
    let diag = || {
        format!(
            "{:#?}\n{}\n--- aiops:\n{}",
            chat.received(),
            am.proc.log_tail(),
            app.log_text()
        )
    };
    let rows = notifications_settled(&store, 1, diag).await;
    assert_eq!(rows.len(), 1, "{rows:#?}");
    let n = &rows[0];
    assert_eq!(n.event, "auto_repair_success");
    assert_eq!(n.attempts, 3, "{n:#?}");

    // The chat saw three attempts of the same text; one was accepted.
    let received = chat.received();
    let statuses: Vec<u16> = received.iter().map(|(_, s)| *s).collect();
    assert_eq!(statuses, [500, 429, 200], "{received:#?}");
    assert!(
        received.iter().all(|(t, _)| *t == received[0].0),
        "every attempt carried the same message: {received:#?}"
    );
    let delivered = chat.delivered("Repaired: shop (prod)");
    assert_eq!(delivered.len(), 1, "{received:#?}");

    // The store keeps every attempt; the 429's wait was Telegram's, not the backoff's.
    let attempts = store.notification_attempts(n.id).await.unwrap();
    let summary: Vec<(&str, Option<i64>, Option<i64>)> = attempts
        .iter()
        .map(|a| (a.result.as_str(), a.http_status, a.retry_after_ms))
        .collect();
    assert_eq!(
        summary,
        [
            ("retry", Some(500), None),
            ("retry", Some(429), Some(1000)),
            ("sent", Some(200), None)
        ],
        "{attempts:#?}"
    );
    let waited = attempts[2].at - attempts[1].at;
    assert!(waited >= 1000, "retried {waited} ms after the 429");

    let metrics = app.metrics().await;
    for (line, want) in [
        (
            r#"aiops_notifications_total{channel="chat",result="sent"}"#,
            1.0,
        ),
        (
            r#"aiops_notifications_total{channel="chat",result="retry"}"#,
            2.0,
        ),
        (
            r#"aiops_notification_failures_total{channel="chat",reason="server_error"}"#,
            1.0,
        ),
        (
            r#"aiops_notification_failures_total{channel="chat",reason="rate_limited"}"#,
            1.0,
        ),
    ] {
        let (name, labels) = line.split_once('{').unwrap();
        let got = metric_sum(&metrics, name, &format!("{{{labels}"));
        assert_eq!(got, want, "{line}\n{metrics}");
    }
    assert_eq!(
        metric_sum(&metrics, "aiops_notifications_total", r#"result="failed""#),
        0.0
    );
    let writes = cluster.writes_on("prod", "shop");
    let first = alert_events(&store).await[0].1;
    Figures {
        scenario: "chat API 500, 429 (retry_after 1), 200",
        alerts_sent: 1,
        repairs_done: 1,
        duplicates_absorbed: metric_sum(&metrics, "aiops_alerts_duplicate_total", "") as u64,
        actions_repeated: writes.len() - 1,
        alerts_lost: 0,
        latencies: vec![latency(first, writes[0].1)],
    }
    .print();
    println!(
        "chat: {} attempts (500, 429, 200), delivered once, {} ms from first attempt to delivery",
        attempts.len(),
        attempts[2].at - attempts[0].at
    );
}

/// Two replicas sharing one fresh PostgreSQL database, with the same settings.
async fn two_replicas(cluster: &Cluster, extra: &[(&str, &str)]) -> Option<(TestApp, TestApp)> {
    common::postgres_available().await?;
    let mut opts = cluster.spawn(Db::Postgres);
    for (k, v) in extra {
        opts = opts.env(k, v);
    }
    let a = TestApp::spawn(opts.env("HOSTNAME", "replica-a")).await;
    let mut opts = cluster.spawn(Db::Postgres);
    for (k, v) in extra {
        opts = opts.env(k, v);
    }
    let b = TestApp::spawn_in(
        Arc::new(tempfile::tempdir().unwrap()),
        a.db.clone(),
        opts.env("HOSTNAME", "replica-b"),
    )
    .await;
    Some((a, b))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_postgres_absorb_200_duplicate_deliveries_with_one_repair_per_target() {
    let Some(bins) = require(&["prometheus-alertmanager"]) else {
        return;
    };
    const TARGETS: usize = 10;
    let cluster = Cluster::start().await;
    for i in 0..TARGETS {
        cluster.api.add_deployment(
            "prod",
            &format!("svc-{i}"),
            1,
            &[("app", "svc:1", None, None)],
        );
    }
    let Some((a, b)) = two_replicas(&cluster, &[]).await else {
        return;
    };
    cluster.api.clear_requests();
    // Every group is re-sent to both replicas every 500 ms: duplicates by design.
    let am = Alertmanager::start(
        &bins[0],
        &[hook(&a), hook(&b)],
        Timing {
            group_interval: "500ms",
            repeat_interval: "500ms",
        },
    )
    .await;
    let alerts: Vec<AmAlert> = (0..TARGETS)
        .map(|i| {
            AmAlert::firing(&[
                ("alertname", "ServiceDown"),
                ("auto_repair", "restart"),
                ("namespace", "prod"),
                ("deployment", &format!("svc-{i}")),
                ("severity", "critical"),
            ])
        })
        .collect();
    am.post_alerts(&alerts).await;

    let delivered = async |app: &TestApp| {
        metric_sum(
            &app.metrics().await,
            "aiops_webhook_requests_total",
            "code=\"200\"",
        ) as u64
    };
    wait::until(
        "200 deliveries over both replicas",
        Duration::from_secs(90),
        async || {
            let n = delivered(&a).await + delivered(&b).await;
            (n >= 200).then_some(n)
        },
        || format!("{}\n--- a:\n{}", am.proc.log_tail(), a.log_text()),
    )
    .await;
    drop(am);
    // A delivery Alertmanager sent just before it was killed may still be in flight. Nothing
    // marks the end of a killed sender's last request, so this is a grace window, not a
    // synchronisation: the counts below are read after it.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let deliveries = delivered(&a).await + delivered(&b).await;
    let store = a.store().await;
    let jobs = wait::until(
        "every repair to finish",
        Duration::from_secs(30),
        async || {
            let jobs = store.jobs().await.ok()?;
            (jobs.len() >= TARGETS && jobs.iter().all(|j| j.state.is_terminal())).then_some(jobs)
        },
        || format!("--- a:\n{}\n--- b:\n{}", a.log_text(), b.log_text()),
    )
    .await;

    // Exactly one repair per target, from the store…
    let mut per_target: BTreeMap<String, Vec<&Job>> = BTreeMap::new();
    for j in &jobs {
        per_target.entry(j.target_key.clone()).or_default().push(j);
    }
    assert_eq!(per_target.len(), TARGETS, "{jobs:#?}");
    for (target, js) in &per_target {
        assert_eq!(js.len(), 1, "{target}: {js:#?}");
        assert_eq!(js[0].state, JobState::Succeeded, "{target}: {js:#?}");
    }
    let owners: BTreeSet<&str> = jobs
        .iter()
        .filter_map(|j| j.owner.as_deref())
        .map(|o| &o[..9])
        .collect();
    let events = alert_events(&store).await;
    assert_eq!(events.len(), TARGETS, "each occurrence stored once");
    // …and from the fake API server's request log.
    let mut latencies = Vec::new();
    let mut repeated = 0;
    for i in 0..TARGETS {
        let name = format!("svc-{i}");
        let writes = cluster.writes_on("prod", &name);
        assert_eq!(writes.len(), 1, "{name}: {writes:?}");
        repeated += writes.len() - 1;
        let starts_at = events
            .iter()
            .find(|(l, _, _)| l.get("deployment") == Some(&name))
            .unwrap()
            .1;
        latencies.push(latency(starts_at, writes[0].1));
    }
    let duplicates = metric_sum(&a.metrics().await, "aiops_alerts_duplicate_total", "")
        + metric_sum(&b.metrics().await, "aiops_alerts_duplicate_total", "");
    assert!(deliveries >= 200);
    assert_eq!(
        duplicates as u64,
        deliveries - TARGETS as u64,
        "every delivery but the first of each alert was a duplicate"
    );
    println!("repairs claimed by replicas: {owners:?}");
    Figures {
        scenario: "2 replicas on PostgreSQL, 2 webhook_configs",
        alerts_sent: TARGETS,
        repairs_done: jobs.len(),
        duplicates_absorbed: duplicates as u64,
        actions_repeated: repeated,
        alerts_lost: TARGETS - events.len(),
        latencies,
    }
    .print();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_replica_mid_repair_under_load_loses_no_acknowledged_alert_and_repeats_nothing() {
    let Some(bins) = require(&["prometheus-alertmanager"]) else {
        return;
    };
    let cluster = Cluster::start().await;
    cluster
        .api
        .add_deployment("prod", "stuck", 2, &[("app", "stuck:1", None, None)]);
    // The restart's rollout never completes: its job stays running until the kill.
    cluster
        .api
        .set_rollout_behaviour("prod", "stuck", RolloutBehaviour::Stuck);
    // A short lease so the survivor notices the dead replica's job within seconds.
    let config_dir = tempfile::tempdir().unwrap();
    let config = config_dir.path().join("aiops.yaml");
    std::fs::write(&config, "jobs:\n  lease: 2s\n").unwrap();
    let extra = [("AIOPS_CONFIG", config.to_str().unwrap())];
    let Some((a, b)) = two_replicas(&cluster, &extra).await else {
        return;
    };
    cluster.api.clear_requests();
    let am = Alertmanager::start(
        &bins[0],
        &[hook(&a), hook(&b)],
        Timing {
            group_interval: "1s",
            repeat_interval: "1s",
        },
    )
    .await;
    am.post_alerts(&[AmAlert::firing(&[
        ("alertname", "ServiceDown"),
        ("auto_repair", "restart"),
        ("namespace", "prod"),
        ("deployment", "stuck"),
        ("severity", "critical"),
    ])])
    .await;
    let store = a.store().await;
    let running = wait::until(
        "the repair to be running",
        Duration::from_secs(30),
        async || {
            let jobs = store.jobs().await.ok()?;
            jobs.into_iter().find(|j| {
                j.state == JobState::Running && !cluster.writes_on("prod", "stuck").is_empty()
            })
        },
        || format!("--- a:\n{}\n--- b:\n{}", a.log_text(), b.log_text()),
    )
    .await;
    let (victim, survivor) = if running.owner.as_deref().unwrap().starts_with("replica-a") {
        (a, b)
    } else {
        (b, a)
    };

    // Load: distinct alerts straight at the victim; an alert counts as acknowledged on 2xx.
    let stop = Arc::new(AtomicBool::new(false));
    let url = victim.url("/webhook/alertmanager");
    let mut load = tokio::task::JoinSet::new();
    for worker in 0..4 {
        let (stop, url) = (stop.clone(), url.clone());
        load.spawn(async move {
            let client = reqwest::Client::new();
            let (mut sent, mut acked) = (0usize, Vec::new());
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let seq = format!("{worker}-{i}");
                i += 1;
                let body = common::payload(
                    &[(
                        &[
                            ("alertname", "LoadTest"),
                            ("namespace", "load"),
                            ("seq", &seq),
                        ],
                        "firing",
                    )],
                    &chrono::Utc::now().to_rfc3339(),
                );
                sent += 1;
                let r = client
                    .post(&url)
                    .bearer_auth(TOKEN)
                    .header("content-type", "application/json")
                    .body(body)
                    .timeout(Duration::from_secs(5))
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status().is_success() => acked.push(seq),
                    Ok(_) => {}
                    // The replica is gone: keep knocking, as Alertmanager would, until told to
                    // stop (the pause is the sender's back-off, part of the load under test).
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
            (sent, acked)
        });
    }
    let victim_acks = async || {
        let text = reqwest::get(victim.url("/metrics"))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        (metric_sum(&text, "aiops_webhook_requests_total", "code=\"200\"") >= 50.0).then_some(())
    };
    wait::until(
        "load to be acknowledged",
        Duration::from_secs(30),
        victim_acks,
        || victim.log_text(),
    )
    .await;
    victim.signal("KILL");
    // The load keeps knocking on the dead replica for a moment: that window is what is tested.
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let (mut sent, mut acked) = (0, BTreeSet::new());
    while let Some(r) = load.join_next().await {
        let (s, a) = r.unwrap();
        sent += s;
        acked.extend(a);
    }

    // The survivor finds the dead replica's job by its expired lease and escalates it.
    let interrupted = wait::until(
        "the interrupted job to be escalated",
        Duration::from_secs(30),
        async || {
            let j = store.job(running.id).await.ok()??;
            (j.state == JobState::Escalated).then_some(j)
        },
        || survivor.log_text(),
    )
    .await;
    let events = store.job_events(running.id).await.unwrap();
    assert!(events.iter().any(|e| e.to == "interrupted"), "{events:#?}");
    let escalations = store.escalations().await.unwrap();
    assert!(
        escalations.iter().any(|e| e.job_id == Some(running.id)
            && e.kind == "human"
            && e.reason.contains("interrupted")),
        "{escalations:#?}"
    );

    // The victim comes back over the same store; Alertmanager keeps re-sending the alert.
    // Same address: Alertmanager's webhook_config names it.
    let opts = cluster
        .spawn(Db::Postgres)
        .env("AIOPS_CONFIG", config.to_str().unwrap())
        .env("AIOPS_LISTEN", &victim.addr.to_string());
    let restarted = TestApp::spawn_in(victim.dir.clone(), victim.db.clone(), opts).await;
    drop(victim);
    wait::until(
        "re-sends to reach the restarted replica",
        Duration::from_secs(30),
        async || {
            (metric_sum(
                &restarted.metrics().await,
                "aiops_alerts_duplicate_total",
                "",
            ) >= 2.0)
                .then_some(())
        },
        || format!("{}\n{}", am.proc.log_tail(), restarted.log_text()),
    )
    .await;

    let stored: BTreeSet<String> = alert_events(&store)
        .await
        .into_iter()
        .filter_map(|(l, _, _)| l.get("seq").cloned())
        .collect();
    let lost: Vec<&String> = acked.difference(&stored).collect();
    assert!(lost.is_empty(), "acknowledged but not stored: {lost:?}");
    let jobs = store.jobs().await.unwrap();
    assert_eq!(
        jobs.len(),
        1,
        "the re-sent alert started nothing new: {jobs:#?}"
    );
    assert_eq!(interrupted.state, JobState::Escalated);
    let writes = cluster.writes_on("prod", "stuck");
    assert_eq!(writes.len(), 1, "the restart was not repeated: {writes:?}");
    let first = alert_events(&store)
        .await
        .into_iter()
        .find(|(l, _, _)| l.get("deployment").map(String::as_str) == Some("stuck"))
        .unwrap()
        .1;
    Figures {
        scenario: "kill -9 of a replica mid-repair under load",
        alerts_sent: sent + 1,
        repairs_done: 0,
        duplicates_absorbed: (metric_sum(
            &survivor.metrics().await,
            "aiops_alerts_duplicate_total",
            "",
        ) + metric_sum(
            &restarted.metrics().await,
            "aiops_alerts_duplicate_total",
            "",
        )) as u64,
        actions_repeated: writes.len() - 1,
        alerts_lost: lost.len(),
        latencies: vec![latency(first, writes[0].1)],
    }
    .print();
    println!(
        "load: {sent} sent to the victim, {} acknowledged before the kill, all {} in the store",
        acked.len(),
        acked.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_10_second_postgres_outage_answers_503_and_alertmanager_redelivers_everything() {
    let Some(bins) = require(&["prometheus-alertmanager"]) else {
        return;
    };
    let Some(pg) = PrivatePg::start() else {
        return;
    };
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let db = Arc::new(TestDb::new(Db::Sqlite, dir.path()).await);
    // The daemon's store is the private PostgreSQL; `db` only gives the harness a directory.
    let cluster = Cluster::start().await;
    let app = TestApp::spawn_in(
        dir,
        db,
        cluster
            .spawn(Db::Postgres)
            .env("AIOPS_DATABASE_URL", &pg.url()),
    )
    .await;
    let am = Alertmanager::start(&bins[0], &[hook(&app)], Timing::default()).await;

    // Load: a new alert every 100 ms through Alertmanager, before, during and after the outage.
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let stop = stop.clone();
        let url = am.url();
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut sent = Vec::new();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let seq = i.to_string();
                i += 1;
                let alert = AmAlert::firing(&[
                    ("alertname", "OutageLoad"),
                    ("namespace", "load"),
                    ("seq", &seq),
                ]);
                let body = json!([{
                    "labels": alert.labels.iter().cloned().collect::<BTreeMap<_, _>>(),
                    "startsAt": harness::rfc3339(alert.starts_at),
                }]);
                let r = client
                    .post(format!("{url}/api/v2/alerts"))
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                assert!(r.status().is_success());
                sent.push(seq);
                // The pace of the load (10 alerts a second), not a synchronisation.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            sent
        })
    };
    // The windows below are the scenario under test: 3 s of normal load, a 10-second outage,
    // 3 s of load after it. None of them waits for something to happen.
    tokio::time::sleep(Duration::from_secs(3)).await;
    pg.stop();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let during = metric_sum(
        &app.metrics().await,
        "aiops_webhook_requests_total",
        "code=\"503\"",
    );
    pg.restart();
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    let sent: BTreeSet<String> = load.await.unwrap().into_iter().collect();
    assert!(
        during > 0.0,
        "webhooks during the outage got 503\n{}",
        app.log_text()
    );

    let store = Store::connect(&pg.url(), &aiops::store::Options::default())
        .await
        .unwrap();
    let stored = wait::until(
        "Alertmanager to deliver every alert",
        Duration::from_secs(60),
        async || {
            let stored: Vec<String> = alert_events(&store)
                .await
                .into_iter()
                .filter_map(|(l, _, _)| l.get("seq").cloned())
                .collect();
            sent.iter().all(|s| stored.contains(s)).then_some(stored)
        },
        || format!("{}\n--- aiops:\n{}", am.proc.log_tail(), app.log_text()),
    )
    .await;
    let unique: BTreeSet<&String> = stored.iter().collect();
    assert_eq!(unique.len(), stored.len(), "each alert stored once");
    let am_metrics = am.metrics().await;
    Figures {
        scenario: "PostgreSQL stopped for 10 s under load",
        alerts_sent: sent.len(),
        repairs_done: 0,
        duplicates_absorbed: metric_sum(&app.metrics().await, "aiops_alerts_duplicate_total", "")
            as u64,
        actions_repeated: 0,
        alerts_lost: sent.len() - unique.len(),
        latencies: Vec::new(),
    }
    .print();
    println!(
        "outage: {during} webhook answers were 503; Alertmanager made {} webhook requests, {} of them failed and were retried",
        metric_sum(&am_metrics, "alertmanager_notification_requests_total", ""),
        metric_sum(
            &am_metrics,
            "alertmanager_notification_requests_failed_total",
            ""
        )
    );
}

#[test]
fn the_demo_script_shows_a_newcomer_the_whole_loop() {
    let aiops = PathBuf::from(env!("CARGO_BIN_EXE_aiops"));
    // `cargo test` builds the examples (not `cargo test --test suite e2e::`).
    let fakeapi = aiops.parent().unwrap().join("examples/fakeapi");
    if !fakeapi.is_file() {
        assert!(
            !common::in_ci(),
            "{} missing: cargo test builds it",
            fakeapi.display()
        );
        eprintln!("skipping: run `cargo build --example fakeapi` first");
        return;
    }
    let started = Instant::now();
    let out = std::process::Command::new("bash")
        .arg(common::repo().join("scripts/demo.sh"))
        .env("AIOPS_BIN", &aiops)
        .env("FAKEAPI_BIN", &fakeapi)
        .env("DEMO_PAUSE", "0")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    for expected in [
        "fake API server on http://127.0.0.1:",
        "cluster: PATCH /apis/apps/v1/namespaces/prod/deployments/web (memory limit now 615Mi)",
        "event AutoRepairMemory",
        "oom_handler [oom-handler] succeeded: OOMKilled: memory limit of app 512Mi -> 615Mi",
        "recovered in",
        "ContainerOOMKilled",
        "[repair_started] [aiops] Repair started: web (prod)",
        "[auto_repair_success] [aiops] Repaired: web (prod)",
        "Target: prod/Deployment/web",
        "Action: oom_handler",
        "demo done in",
    ] {
        assert!(
            stdout.contains(expected),
            "{expected:?} not in:\n{stdout}\n{stderr}"
        );
    }
    println!("demo ran in {:?}:\n{stdout}", started.elapsed());
}
