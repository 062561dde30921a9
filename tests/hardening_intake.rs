//! Issue 12, intake part: no alert content may freeze, crash or misdirect the daemon.
//!
//! Each attack goes through the daemon (in-process: the intake needs no process of its own), on
//! SQLite and on PostgreSQL: values the store cannot hold (NUL, oversize) are rejected per alert
//! with a 400 naming the alert and field while the rest of the payload is recorded and acted on;
//! labels that are not Kubernetes names are refused as `invalid_target` and never reach the API
//! server; a storm of 4,000 alerts is answered in linear time; timestamps outside the accepted
//! window are rejected.

use crate::both_backends;
use crate::common;
use crate::fakeapi;

use std::time::{Duration, Instant};

use aiops::store::JobState;
use common::{Db, Spawn, TestApp, minutes_ago, payload};
use fakeapi::FakeApi;
use serde_json::{Value, json};

const RULES: &str = r#"
rules:
  - name: restart
    matchers: ['auto_repair="restart"']
    playbook: restart
"#;

/// A firing alert with `labels` (plus `auto_repair=restart`), as Alertmanager sends it.
fn alert(labels: &[(&str, &str)]) -> Value {
    let labels: Vec<(&str, &str)> = std::iter::once(("auto_repair", "restart"))
        .chain(labels.iter().copied())
        .collect();
    let mut alert = payload::alert("firing", &labels, &minutes_ago(5));
    alert["annotations"] = json!({"summary": "down"});
    alert["generatorURL"] = json!("http://127.0.0.1:9090/graph?g0.expr=up%3D%3D0");
    alert
}

fn good(app: &str) -> Value {
    alert(&[("alertname", "Down"), ("namespace", "prod"), ("app", app)])
}

/// A group as Alertmanager sends it, with its grouping key and external URL.
fn body(alerts: Vec<Value>) -> String {
    let mut group = payload::group(alerts);
    group["groupKey"] = json!("{}:{}");
    group["externalURL"] = json!("http://127.0.0.1:9093");
    group.to_string()
}

/// `(index, field)` of each rejection in a 400 answer.
fn rejected(answer: &Value) -> Vec<(u64, String)> {
    answer["rejected"]
        .as_array()
        .unwrap_or_else(|| panic!("no `rejected` in {answer}"))
        .iter()
        .map(|r| {
            (
                r["index"].as_u64().unwrap(),
                r["field"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

async fn ready(app: &TestApp) -> u16 {
    app.get_status("/-/ready").await
}

async fn nul_in_any_field_rejects_that_alert_alone_and_keeps_the_others(db: Db) {
    let app = TestApp::spawn_app(Spawn::new(db).rules(RULES)).await;
    let mut with_fingerprint = good("api");
    with_fingerprint["fingerprint"] = json!("abc\u{0}def");
    let mut with_url = good("api");
    with_url["generatorURL"] = json!("http://x/\u{0}");
    let mut with_annotation = good("api");
    with_annotation["annotations"]["summary"] = json!("bad\u{0}summary");
    let alerts = vec![
        alert(&[
            ("alertname", "Do\u{0}wn"),
            ("namespace", "prod"),
            ("app", "api"),
        ]),
        good("web"),
        alert(&[
            ("alertname", "Down"),
            ("namespace", "pr\u{0}od"),
            ("app", "api"),
        ]),
        alert(&[
            ("alertname", "Down"),
            ("namespace", "prod"),
            ("app", "a\u{0}pi"),
        ]),
        alert(&[
            ("alertname", "Down"),
            ("namespace", "prod"),
            ("app", "api"),
            ("te\u{0}am", "x"),
        ]),
        with_fingerprint,
        with_url,
        with_annotation,
        good("demo"),
    ];

    let resp = app.post_webhook(body(alerts)).await;

    assert_eq!(
        resp.status(),
        400,
        "Alertmanager must not retry this forever"
    );
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(
        rejected(&answer),
        [
            (0, "labels.alertname".to_string()),
            (2, "labels.namespace".to_string()),
            (3, "labels.app".to_string()),
            (4, "labels".to_string()),
            (5, "fingerprint".to_string()),
            (6, "generatorURL".to_string()),
            (7, "annotations.summary".to_string()),
        ],
        "{answer}"
    );
    assert!(
        answer["rejected"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("NUL"),
        "{answer}"
    );
    assert_eq!(answer["rejected"][1]["alertname"], "Down");
    assert_eq!(answer["accepted"], 2, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("7 of 9"),
        "{answer}"
    );

    // The good alerts are recorded and repaired as usual.
    let store = app.store().await;
    assert_eq!(store.count_alert_events().await.unwrap(), 2);
    let jobs = app.wait_all_jobs_in(&[JobState::Succeeded]).await;
    let mut targets: Vec<_> = jobs.iter().map(|j| j.target_key.as_str()).collect();
    targets.sort();
    assert_eq!(targets, ["prod/Deployment/demo", "prod/Deployment/web"]);
    assert!(
        app.metrics()
            .await
            .contains("aiops_alerts_rejected_total{reason=\"nul\"} 7"),
        "{}",
        app.metrics().await
    );

    // The daemon stays ready and the next good webhook is taken as usual.
    assert_eq!(ready(&app).await, 200);
    let resp = app.post_webhook(body(vec![good("api")])).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(store.count_alert_events().await.unwrap(), 3);
}
both_backends!(nul_in_any_field_rejects_that_alert_alone_and_keeps_the_others);

async fn a_nul_in_the_payloads_receiver_or_group_key_rejects_the_whole_payload(db: Db) {
    let app = TestApp::spawn_app(Spawn::new(db).rules(RULES)).await;
    for (field, value) in [("receiver", "ai\u{0}ops"), ("groupKey", "{}:{a=\"\u{0}\"}")] {
        let mut b: Value = serde_json::from_str(&body(vec![good("web")])).unwrap();
        b[field] = json!(value);

        let resp = app.post_webhook(b.to_string()).await;

        assert_eq!(resp.status(), 400, "{field}");
        let answer: Value = resp.json().await.unwrap();
        assert_eq!(answer["field"], field, "{answer}");
    }
    assert_eq!(app.store().await.count_alert_events().await.unwrap(), 0);
    assert_eq!(ready(&app).await, 200);
}
both_backends!(a_nul_in_the_payloads_receiver_or_group_key_rejects_the_whole_payload);

async fn oversize_labels_are_rejected_or_refused_and_never_answer_503(db: Db) {
    let app = TestApp::spawn_app(Spawn::new(db).rules(RULES)).await;
    let long_ns = "n".repeat(3000);
    let long_name = "a".repeat(9000);
    let long_target = "w".repeat(9000);
    let alerts = vec![
        alert(&[
            ("alertname", "Down"),
            ("namespace", &long_ns),
            ("app", "web"),
        ]),
        alert(&[
            ("alertname", &long_name),
            ("namespace", "prod"),
            ("app", "web"),
        ]),
        // A label value of 9 KB is storable; as a target name it is refused, not stored as one.
        alert(&[
            ("alertname", "Down"),
            ("namespace", "prod"),
            ("app", &long_target),
        ]),
        good("web"),
    ];

    let resp = app.post_webhook(body(alerts)).await;

    assert_eq!(resp.status(), 400);
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(
        rejected(&answer),
        [
            (0, "labels.namespace".to_string()),
            (1, "labels.alertname".to_string())
        ],
        "{answer}"
    );
    assert!(
        answer["rejected"][1]["alertname"].as_str().unwrap().len() <= 128,
        "the echo of a hostile value is cut short"
    );
    assert_eq!(
        (answer["accepted"].as_u64(), answer["refused"].as_u64()),
        (Some(2), Some(1))
    );
    let store = app.store().await;
    let refusals = store.refusals().await.unwrap();
    assert_eq!(refusals.len(), 1, "{refusals:?}");
    assert_eq!(
        refusals[0].1, None,
        "an invalid target is never stored as a key"
    );
    assert_eq!(refusals[0].2, "invalid_target");
    let jobs = app.wait_all_jobs_in(&[JobState::Succeeded]).await;
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].target_key, "prod/Deployment/web");
    assert_eq!(ready(&app).await, 200);
    assert!(
        app.metrics()
            .await
            .contains("aiops_alerts_rejected_total{reason=\"too_long\"} 2")
    );
}
both_backends!(oversize_labels_are_rejected_or_refused_and_never_answer_503);

async fn timestamps_outside_the_window_are_rejected_and_alertmanagers_zero_end_is_kept(db: Db) {
    let app = TestApp::spawn_app(Spawn::new(db).rules(RULES)).await;
    let mut far_future = good("api");
    far_future["startsAt"] = json!("+99999-01-01T00:00:00Z");
    let mut next_day = good("api");
    next_day["startsAt"] = json!((chrono::Utc::now() + chrono::Duration::days(1)).to_rfc3339());
    let mut far_past = good("api");
    far_past["startsAt"] = json!("1970-01-01T00:00:00Z");
    let mut resolved_in_future = good("other");
    resolved_in_future["status"] = json!("resolved");
    resolved_in_future["endsAt"] = json!("+99999-01-01T00:00:00Z");
    let mut skewed = good("web");
    skewed["startsAt"] = json!((chrono::Utc::now() + chrono::Duration::minutes(2)).to_rfc3339());
    let alerts = vec![far_future, next_day, far_past, resolved_in_future, skewed];

    let resp = app.post_webhook(body(alerts)).await;

    assert_eq!(resp.status(), 400);
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(
        rejected(&answer),
        [
            (0, "startsAt".to_string()),
            (1, "startsAt".to_string()),
            (2, "startsAt".to_string()),
            (3, "endsAt".to_string()),
        ],
        "{answer}"
    );
    assert!(
        answer["rejected"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("2000-01-01T00:00:00Z"),
        "the window is named: {answer}"
    );
    // Two minutes of clock skew and `endsAt: 0001-01-01T00:00:00Z` are normal.
    assert_eq!(answer["accepted"], 1, "{answer}");
    let jobs = app.wait_all_jobs_in(&[JobState::Succeeded]).await;
    assert_eq!(jobs.len(), 1, "{jobs:#?}");
    assert!(
        app.metrics()
            .await
            .contains("aiops_alerts_rejected_total{reason=\"time_out_of_range\"} 4")
    );
}
both_backends!(timestamps_outside_the_window_are_rejected_and_alertmanagers_zero_end_is_kept);

async fn an_all_bad_payload_is_400_with_nothing_stored(db: Db) {
    let app = TestApp::spawn_app(Spawn::new(db).rules(RULES)).await;
    let alerts = vec![
        alert(&[
            ("alertname", "Do\u{0}wn"),
            ("namespace", "prod"),
            ("app", "web"),
        ]),
        alert(&[
            ("alertname", "Down"),
            ("namespace", &"n".repeat(3000)),
            ("app", "web"),
        ]),
    ];

    let resp = app.post_webhook(body(alerts)).await;

    assert_eq!(resp.status(), 400);
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(answer["accepted"], 0);
    assert_eq!(rejected(&answer).len(), 2);
    let store = app.store().await;
    assert_eq!(store.count_alert_events().await.unwrap(), 0);
    assert!(store.jobs().await.unwrap().is_empty());
    assert_eq!(ready(&app).await, 200);
}
both_backends!(an_all_bad_payload_is_400_with_nothing_stored);

/// A daemon on the kube-rs backend against the fake API server.
async fn daemon_on(api: &FakeApi, db: Db) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    api.write_kubeconfig(&kubeconfig);
    let app = TestApp::spawn_app(
        Spawn::new(db)
            .rules(RULES)
            .env("AIOPS_CLUSTER_STATE_FILE", "")
            .env("AIOPS_KUBECONFIG", kubeconfig.to_str().unwrap())
            .env("AIOPS_KUBE_CONTEXT", "fake"),
    )
    .await;
    drop(dir);
    app
}

async fn labels_that_are_not_kubernetes_names_are_refused_and_never_reach_the_api(db: Db) {
    let api = FakeApi::start().await;
    api.add_deployment("prod", "web", 2, &[("app", "web:1", None, None)]);
    api.add_deployment(
        "kube-system",
        "coredns",
        2,
        &[("app", "coredns:1", None, None)],
    );
    let app = daemon_on(&api, db).await;
    let attacks = [
        ("default/../kube-system", "coredns"),
        ("prod", "../../../api/v1/namespaces/prod/secrets/db"),
        ("prod", "web?dryRun=All&x="),
        ("prod", "web/status"),
        ("prod", "web%2F..%2Fstatus"),
        ("Prod", "web"),
    ];
    let mut alerts: Vec<Value> = attacks
        .iter()
        .map(|(ns, name)| {
            alert(&[
                ("alertname", "Down"),
                ("namespace", ns),
                ("deployment", name),
            ])
        })
        .collect();
    alerts.push(good("web"));

    let resp = app.post_webhook(body(alerts)).await;

    assert_eq!(resp.status(), 200, "refusals are decisions, not rejections");
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(answer["refused"], attacks.len(), "{answer}");
    let refusals = app.store().await.refusals().await.unwrap();
    assert!(
        refusals
            .iter()
            .all(|(_, key, reason)| key.is_none() && reason == "invalid_target"),
        "{refusals:?}"
    );
    // The one good alert is repaired, which proves the daemon does talk to this API server.
    let jobs = app.wait_all_jobs_in(&[JobState::Succeeded]).await;
    assert_eq!(jobs.len(), 1, "{jobs:#?}\n{}", app.log_text());
    let requests = api.requests();
    assert!(!requests.is_empty());
    for (method, path, _) in &requests {
        // The start-up cluster preflight asks the server's version and reviews its own access;
        // neither names a target.
        if path == "/version" || path.starts_with("/apis/authorization.k8s.io/") {
            continue;
        }
        assert!(
            path.starts_with("/apis/apps/v1/namespaces/prod/deployments/web")
                || path.starts_with("/apis/apps/v1/namespaces/prod/replicasets")
                || path.starts_with("/api/v1/namespaces/prod/"),
            "{method} {path} was requested"
        );
        assert!(
            !path.contains("..") && !path.contains("kube-system") && !path.contains("secrets"),
            "{method} {path}"
        );
        assert!(!path.contains("dryRun=All&x"), "{method} {path}");
    }
    assert!(
        app.metrics()
            .await
            .contains("aiops_guard_refusals_total{mode=\"auto\",reason=\"invalid_target\"} 6")
    );
}
both_backends!(labels_that_are_not_kubernetes_names_are_refused_and_never_reach_the_api);

async fn a_payload_of_4000_alerts_for_distinct_targets_is_answered_in_linear_time(db: Db) {
    let app = TestApp::spawn_app(Spawn::new(db).rules(RULES)).await;
    let starts_at = minutes_ago(5);
    let alerts: Vec<Value> = (0..4000)
        .map(|i| {
            json!({"status": "firing", "startsAt": starts_at, "endsAt": "0001-01-01T00:00:00Z",
                   "labels": {"alertname": "Down", "auto_repair": "restart", "namespace": "prod",
                              "app": format!("app-{i}")}})
        })
        .collect();
    let b = body(alerts);
    assert!(b.len() < 1024 * 1024, "fits the default body limit");

    let started = Instant::now();
    let resp = app.post_webhook(b).await;
    let took = started.elapsed();

    assert_eq!(resp.status(), 200);
    let answer: Value = resp.json().await.unwrap();
    eprintln!("4000 matching alerts for distinct targets answered in {took:?} ({db:?})");
    // The storm brake (10 targets in 5 minutes by default) decides exactly as it always did.
    assert_eq!(answer["accepted"], 4000);
    assert_eq!(answer["jobs"].as_array().unwrap().len(), 10, "{answer}");
    assert_eq!(answer["refused"], 3990);
    // Generous, so a loaded machine cannot make it flake; the quadratic count took 5.6-43 s in a
    // release build, this takes well under a second there (numbers in the issue's thread).
    assert!(took < Duration::from_secs(60), "took {took:?}");
}
both_backends!(a_payload_of_4000_alerts_for_distinct_targets_is_answered_in_linear_time);

/// Defence in depth: whatever a playbook passes, the kube-rs backend refuses a name that is
/// not a Kubernetes name before it builds a request.
#[tokio::test]
async fn the_kube_backend_refuses_an_invalid_name_without_making_a_request() {
    use aiops::cluster::kubernetes::KubeCluster;
    use aiops::cluster::{Cluster, Error, Target};
    use http::{Request, Response};
    use kube::client::Body;

    let (svc, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let cluster = KubeCluster::from_client(kube::Client::new(svc, "default"));
    let bad = [
        ("default/../kube-system", "coredns"),
        ("prod", "../secrets/db"),
        ("prod", "web?dryRun=All&x="),
        ("prod", "web/status"),
    ];
    for (ns, name) in bad {
        let t = Target {
            namespace: ns.into(),
            kind: "Deployment".into(),
            name: name.into(),
        };
        let err = cluster.restart(&t, false).await.unwrap_err();
        assert!(
            matches!(&err, Error::Refused(m) if m.contains("invalid target")),
            "{ns}/{name}: {err}"
        );
        assert!(cluster.replicas(&t).await.is_err());
    }
    let err = cluster
        .delete_failed_pods("a/../b", Duration::from_secs(60), false)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Refused(_)), "{err}");
    // Dropping the client closes the mock: had any request been sent, it would be queued here.
    drop(cluster);
    assert!(handle.next_request().await.is_none(), "no request was made");
}
