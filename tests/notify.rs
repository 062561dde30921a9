//! Notifications through `aiops serve`: a repair that fails and escalates tells every routed
//! channel once, with the steps tried; failing channels never leak a configured secret.

use crate::both_backends;
use crate::common;

use aiops::store::{JobState, Notification, NotificationState, Store};
use common::stand_ins::{Answer, Request, StandIn, closed_addr};
use common::{Db, Spawn, TestApp, payload, repo, wait};

const RULES: &str = r#"
rules:
  - name: restart-web
    matchers: ['auto_repair="restart"']
    playbook: restart
    params: {rollout_timeout: 5m}
    escalate:
      - playbook: rollback
      - notify: pager
"#;

fn alert() -> String {
    let mut v: serde_json::Value = serde_json::from_str(&payload(
        &[(
            &[
                ("alertname", "KubeDeploymentRolloutStuck"),
                ("auto_repair", "restart"),
                ("namespace", "prod"),
                ("app", "web"),
                ("severity", "critical"),
            ],
            "firing",
        )],
        "2026-11-26T04:00:00Z",
    ))
    .unwrap();
    v["alerts"][0]["annotations"] = serde_json::json!({
        "summary": "web <prod> is stuck",
        "runbook_url": "https://runbooks.example/web"
    });
    v["alerts"][0]["generatorURL"] =
        serde_json::json!("http://prometheus.example/graph?g0.expr=up");
    v.to_string()
}

/// Posts an alert whose repair cannot run (the daemon has no cluster), so it goes to humans,
/// and waits until the escalation message has failed for good on each of `channels` failing
/// channels; every notification row.
async fn escalate_to_failing_channels(
    app: &TestApp,
    store: &Store,
    channels: usize,
) -> Vec<Notification> {
    let labels = [
        ("alertname", "X"),
        ("auto_repair", "restart"),
        ("namespace", "prod"),
        ("app", "web"),
    ];
    app.post_webhook(payload(&[(&labels, "firing")], "2026-11-26T04:00:00Z"))
        .await;
    wait::until_ok(
        &format!("{channels} escalation messages to fail"),
        std::time::Duration::from_secs(30),
        async || {
            let rows = store.notifications().await.unwrap();
            let esc: Vec<_> = rows.iter().filter(|n| n.event == "escalation").collect();
            if esc.len() == channels && esc.iter().all(|n| n.state == NotificationState::Failed) {
                Ok(rows)
            } else {
                Err(rows)
            }
        },
        || app.log_text(),
    )
    .await
}

fn escalations(reqs: &[Request], text_of: impl Fn(&Request) -> String) -> Vec<String> {
    reqs.iter()
        .map(text_of)
        .filter(|t| t.contains("Manual intervention required"))
        .collect()
}

async fn a_repair_that_fails_and_escalates_tells_each_routed_channel_once_with_the_steps(db: Db) {
    let telegram = StandIn::start().await;
    telegram.default_answer(Answer::new(200, r#"{"ok":true,"result":{"message_id":1}}"#));
    let line = StandIn::start().await;
    let slack = StandIn::start().await;
    let config = format!(
        r#"
notify:
  channels:
    tg: {{type: telegram, bot_token_env: TG_TOKEN, chat_id: "-100", api_url: "{tg}"}}
    pager: {{type: line, channel_token: line-secret, to: Uoncall, api_url: "{line}"}}
    team: {{type: slack, webhook_url: "{slack}/services/T/B/slack-secret"}}
  routes:
    - matchers: ['namespace="prod"', 'severity="critical"']
      channels: [tg, team]
"#,
        tg = telegram.url,
        line = line.url,
        slack = slack.url
    );
    let state = repo().join("tests/fixtures/cluster-failing.yaml");
    let app = TestApp::spawn(
        Spawn::new(db)
            .rules(RULES)
            .config(&config)
            .env("TG_TOKEN", "123:tg-secret")
            .env("AIOPS_CLUSTER_STATE_FILE", state.to_str().unwrap()),
    )
    .await;
    app.post_webhook(alert()).await;
    let jobs = app
        .wait_for_jobs("restart then rollback to fail", |j| {
            j.len() == 2 && j.iter().all(|j| j.state == JobState::Escalated)
        })
        .await;

    let tg_text = |r: &Request| r.json()["text"].as_str().unwrap_or_default().to_string();
    let line_text = |r: &Request| {
        r.json()["messages"]
            .as_array()
            .map(|m| {
                m.iter()
                    .map(|m| m["text"].as_str().unwrap_or_default())
                    .collect::<String>()
            })
            .unwrap_or_default()
    };
    let slack_text = |r: &Request| r.json()["text"].as_str().unwrap_or_default().to_string();
    telegram
        .wait_for("the escalation on Telegram", |r| {
            !escalations(r, tg_text).is_empty()
        })
        .await;
    line.wait_for("the escalation on LINE", |r| {
        !escalations(r, line_text).is_empty()
    })
    .await;
    slack
        .wait_for("the escalation on Slack", |r| {
            !escalations(r, slack_text).is_empty()
        })
        .await;
    // Give a duplicate the time to show up if one were coming: this window is what is tested
    // (no condition says "no duplicate will ever come"), not a synchronisation.
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    let (tg, ln, sl) = (telegram.requests(), line.requests(), slack.requests());
    let (e_tg, e_ln, e_sl) = (
        escalations(&tg, tg_text),
        escalations(&ln, line_text),
        escalations(&sl, slack_text),
    );
    assert_eq!(
        (e_tg.len(), e_ln.len(), e_sl.len()),
        (1, 1, 1),
        "one escalation per routed channel"
    );
    let (restart, rollback) = (jobs[0].id, jobs[1].id);
    for text in [&e_tg[0], &e_ln[0], &e_sl[0]] {
        assert!(
            text.contains(&format!("1. restart (job {restart}): failure:")),
            "{text}"
        );
        assert!(
            text.contains(&format!("2. rollback (job {rollback}): failure:")),
            "{text}"
        );
        assert!(
            text.contains("runbook: https://runbooks.example/web"),
            "{text}"
        );
        assert!(
            text.contains("alert: http://prometheus.example/graph?g0.expr=up"),
            "{text}"
        );
    }
    assert!(
        e_tg[0].starts_with("<b>[aiops] Manual intervention required: web (prod)</b>"),
        "{}",
        e_tg[0]
    );
    assert!(
        e_tg[0].contains("web &lt;prod&gt; is stuck"),
        "HTML-escaped: {}",
        e_tg[0]
    );
    assert!(tg.iter().all(|r| r.path == "/bot123:tg-secret/sendMessage"));
    assert!(
        ln.iter()
            .all(|r| r.header("authorization").as_deref() == Some("Bearer line-secret"))
    );
    assert!(sl.iter().all(|r| r.path == "/services/T/B/slack-secret"));
    // LINE is only named by the chain's last step: it hears of the escalation, nothing else.
    assert_eq!(ln.len(), 1);
    // The label route also hears the repair start and the failed first step.
    assert!(
        tg.iter()
            .any(|r| tg_text(r).contains("Repair started: web (prod)"))
    );
    assert!(
        tg.iter()
            .any(|r| tg_text(r).contains("Repair failed, trying the next step"))
    );

    let store = app.store().await;
    let rows = store.notifications().await.unwrap();
    let esc: Vec<_> = rows.iter().filter(|n| n.event == "escalation").collect();
    assert_eq!(esc.len(), 3, "{rows:#?}");
    assert!(
        esc.iter()
            .all(|n| n.state == NotificationState::Sent && n.attempts == 1)
    );
    assert!(
        esc.iter()
            .all(|n| n.job_id == Some(rollback) && n.namespace.as_deref() == Some("prod"))
    );
    let attempts = store.notification_attempts(esc[0].id).await.unwrap();
    assert_eq!(
        (attempts[0].result.as_str(), attempts[0].http_status),
        ("sent", Some(200))
    );
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("aiops_notifications_total{channel=\"pager\",result=\"sent\"} 1"),
        "{metrics}"
    );
}
both_backends!(a_repair_that_fails_and_escalates_tells_each_routed_channel_once_with_the_steps);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_error_log_line_metric_or_stored_row_contains_a_configured_secret() {
    let telegram = StandIn::start().await;
    telegram.default_answer(Answer::new(
        401,
        r#"{"ok":false,"error_code":401,"description":"Unauthorized: token 123:tg-topsecret rejected"}"#,
    ));
    let line = StandIn::start().await;
    line.default_answer(Answer::new(500, r#"{"message":"boom"}"#));
    let slack = StandIn::start().await;
    slack.default_answer(Answer::new(403, "invalid_token"));
    let webhook = StandIn::start().await;
    webhook.default_answer(Answer::new(502, "bad gateway"));
    let dead = closed_addr();
    let config = format!(
        r#"
notify:
  retry: {{max_attempts: 2, initial_backoff: 100ms, max_backoff: 200ms}}
  channels:
    tg: {{type: telegram, bot_token_env: TG_TOKEN, chat_id: "1", api_url: "{tg}"}}
    ln: {{type: line, channel_token_file: line-token, to: U1, api_url: "{line}"}}
    sl: {{type: slack, webhook_url_env: SLACK_URL}}
    wh: {{type: webhook, url: "{wh}/hook?key=wh-topsecret"}}
    gone: {{type: webhook, url: "http://{dead}/x?key=dead-topsecret"}}
    mail: {{type: email, smtp_url: "smtp://127.0.0.1:{dead_port}", from: a@example.com, to: [b@example.com], username: u, password: smtp-topsecret}}
  routes:
    - channels: [tg, ln, sl, wh, gone, mail]
"#,
        tg = telegram.url,
        line = line.url,
        wh = webhook.url,
        dead_port = dead.port(),
    );
    let mut app = TestApp::spawn(
        Spawn::new(Db::Sqlite)
            .file("line-token", "line-topsecret\n")
            .config(&config)
            .env("AIOPS_CLUSTER_STATE_FILE", "")
            .env("AIOPS_LOG", "debug,sqlx=warn,hyper=warn,reqwest=warn")
            .env("TG_TOKEN", "123:tg-topsecret")
            .env("SLACK_URL", &format!("{}/services/sl-topsecret", slack.url)),
    )
    .await;
    // Inconclusive without a cluster: escalated to humans, told on every channel.
    let store = app.store().await;
    let rows = escalate_to_failing_channels(&app, &store, 6).await;
    let metrics = app.metrics().await;
    app.stop();
    let logs = app.log_text();
    let mut stored = String::new();
    for n in &rows {
        stored.push_str(&format!("{n:?}\n"));
        for a in store.notification_attempts(n.id).await.unwrap() {
            stored.push_str(&format!("{a:?}\n"));
        }
    }
    for secret in [
        "tg-topsecret",
        "line-topsecret",
        "sl-topsecret",
        "wh-topsecret",
        "dead-topsecret",
        "smtp-topsecret",
    ] {
        assert!(!logs.contains(secret), "{secret} in the logs:\n{logs}");
        assert!(!metrics.contains(secret), "{secret} in the metrics");
        assert!(!stored.contains(secret), "{secret} in the store:\n{stored}");
    }
    // The failures are there, just without the secrets (two messages per channel: the repair
    // start and the escalation; 4xx once each, the others twice each).
    assert!(
        stored.contains("telegram: HTTP 401: Unauthorized: token *** rejected"),
        "{stored}"
    );
    assert!(
        metrics.contains(
            "aiops_notification_failures_total{channel=\"sl\",reason=\"client_error\"} 2"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "aiops_notification_failures_total{channel=\"ln\",reason=\"server_error\"} 4"
        ),
        "{metrics}"
    );
    assert!(
        metrics
            .contains("aiops_notification_failures_total{channel=\"gone\",reason=\"transport\"} 4"),
        "{metrics}"
    );
    assert!(logs.contains("notification failed; giving up"), "{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_prunes_a_repairs_notifications_with_it() {
    let hook = StandIn::start().await;
    let config = format!(
        "notify:\n  channels:\n    wh: {{type: webhook, url: \"{}/hook\"}}\n  routes:\n    - channels: [wh]\n",
        hook.url
    );
    let app = TestApp::spawn(
        Spawn::new(Db::Sqlite)
            .config(&config)
            .env("AIOPS_RETENTION_INTERVAL", "1s"),
    )
    .await;
    app.post_webhook(payload(
        &[(
            &[
                ("alertname", "OOM"),
                ("auto_repair", "oom_handler"),
                ("namespace", "prod"),
                ("app", "web"),
            ],
            "firing",
        )],
        "2026-11-26T04:00:00Z",
    ))
    .await;
    app.wait_all_jobs_in(&[JobState::Succeeded]).await;
    let reqs = hook
        .wait_for("repair_started and auto_repair_success", |r| r.len() == 2)
        .await;
    assert_eq!(reqs[1].json()["event"], "auto_repair_success");
    let store = app.store().await;
    let sent = store.notifications().await.unwrap();
    assert_eq!(sent.len(), 2);
    let old = aiops::store::now_ms() - 200 * 86_400_000;
    let raw = common::raw_db(&app.db.url).await;
    for sql in [
        "UPDATE jobs SET created_at = $1, finished_at = $1",
        "UPDATE alert_events SET received_at = $1",
        "UPDATE decisions SET created_at = $1",
        "UPDATE notifications SET created_at = $1",
    ] {
        sqlx::query(sql).bind(old).execute(&raw).await.unwrap();
    }
    raw.close().await;
    app.wait_for_metric(
        "aiops_pruned_rows_total{table=\"repairs\"} 1",
        std::time::Duration::from_secs(20),
    )
    .await;
    assert!(store.notifications().await.unwrap().is_empty());
    assert!(
        store
            .notification_attempts(sent[0].id)
            .await
            .unwrap()
            .is_empty()
    );
}

/// The companion module's app records carry each app's channels: an escalation about an app's
/// namespace goes to them as well as to the label routes (both backends).
async fn an_apps_registered_channels_get_its_notifications(db: Db) {
    let dir = tempfile::tempdir().unwrap();
    let test_db = common::TestDb::new(db, dir.path()).await;
    let store = aiops::store::Store::connect(&test_db.url, &aiops::store::Options::default())
        .await
        .unwrap();
    let config = dir.path().join("aiops.yaml");
    std::fs::write(
        &config,
        "notify:\n  channels:\n    ops: {type: webhook, url: \"http://127.0.0.1:9/ops\"}\n    \
         shop-team: {type: webhook, url: \"http://127.0.0.1:9/shop\"}\n    \
         blog-team: {type: webhook, url: \"http://127.0.0.1:9/blog\"}\n  routes:\n    \
         - matchers: ['severity=\"critical\"']\n      channels: [ops]\n",
    )
    .unwrap();
    let settings = aiops::config::Settings::load_with(Some(&config), |_| None).unwrap();
    let outbox = aiops::notify::Outbox::new(&settings.notify).unwrap();
    for (app, channels) in [
        ("shop", "[shop-team, no-such-channel]"),
        ("blog", "[blog-team]"),
    ] {
        let spec: serde_json::Value =
            serde_yaml::from_str(&format!("{{name: {app}, notifications: {channels}}}")).unwrap();
        store.upsert_app(app, app, &spec, "test").await.unwrap();
    }
    let labels = [
        ("alertname", "Down"),
        ("namespace", "shop"),
        ("app", "shop"),
        ("severity", "critical"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let event = aiops::notify::Event::for_alert(
        aiops::notify::EventKind::Escalation,
        &labels,
        &Default::default(),
        "",
    );
    assert_eq!(outbox.enqueue_now(&store, &event, &[]).await.unwrap(), 2);
    let channels: Vec<String> = store
        .notifications()
        .await
        .unwrap()
        .into_iter()
        .map(|n| n.channel)
        .collect();
    assert_eq!(channels, ["shop-team", "ops"]);
    store.close().await;
}
both_backends!(an_apps_registered_channels_get_its_notifications);

/// `alert_fired` is opt-in for label routes, but an app's own channels hear of every alert
/// firing in its namespace; with neither, nothing is queued (both backends).
async fn an_alert_firing_is_told_to_its_apps_channels_and_to_routes_that_opt_in(db: Db) {
    let dir = tempfile::tempdir().unwrap();
    let test_db = common::TestDb::new(db, dir.path()).await;
    let store = aiops::store::Store::connect(&test_db.url, &aiops::store::Options::default())
        .await
        .unwrap();
    let outbox = |routes: &str| {
        let config = dir.path().join("aiops.yaml");
        std::fs::write(
            &config,
            format!(
                "notify:\n  channels:\n    ops: {{type: webhook, url: \"http://127.0.0.1:9/ops\"}}\n    \
                 shop-team: {{type: webhook, url: \"http://127.0.0.1:9/shop\"}}\n  routes:\n{routes}"
            ),
        )
        .unwrap();
        let settings = aiops::config::Settings::load_with(Some(&config), |_| None).unwrap();
        aiops::notify::Outbox::new(&settings.notify).unwrap()
    };
    let spec: serde_json::Value =
        serde_yaml::from_str("{name: shop, notifications: [shop-team]}").unwrap();
    store
        .upsert_app("shop", "shop", &spec, "test")
        .await
        .unwrap();
    async fn fired(
        store: &aiops::store::Store,
        outbox: &aiops::notify::Outbox,
        namespace: &str,
    ) -> usize {
        let labels = [
            ("alertname", "Down"),
            ("namespace", namespace),
            ("severity", "critical"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let mut tx = store.begin_write().await.unwrap();
        let n = outbox
            .alert_fired(
                &mut tx,
                &labels,
                &Default::default(),
                "",
                aiops::store::now_ms(),
            )
            .await
            .unwrap();
        tx.commit().await.unwrap();
        n
    }
    let channels = || async {
        store
            .notifications()
            .await
            .unwrap()
            .into_iter()
            .map(|n| (n.event, n.channel))
            .collect::<Vec<_>>()
    };

    // No route opts in: only the app's channel, and only for its namespace.
    let quiet = outbox("    - matchers: ['severity=\"critical\"']\n      channels: [ops]\n");
    assert_eq!(fired(&store, &quiet, "blog").await, 0);
    assert_eq!(fired(&store, &quiet, "shop").await, 1);
    assert_eq!(
        channels().await,
        [("alert_fired".to_string(), "shop-team".to_string())]
    );

    // A route that opts in hears of alerts in any namespace.
    let told = outbox(
        "    - matchers: ['severity=\"critical\"']\n      channels: [ops]\n      events: [alert_fired]\n",
    );
    assert_eq!(fired(&store, &told, "blog").await, 1);
    assert_eq!(
        channels().await.last().unwrap(),
        &("alert_fired".to_string(), "ops".to_string())
    );
    store.close().await;
}
both_backends!(an_alert_firing_is_told_to_its_apps_channels_and_to_routes_that_opt_in);

/// Pieces of the secret URLs below that a receiver echoes back; none may be shown anywhere.
const ECHOED_FRAGMENTS: &[&str] = &[
    "T0TEAMSECRET",
    "B0BOTSECRET",
    "SLACKhookSECRET42",
    "hookpathSECRET9",
    "q-secret-7781",
    "/services/",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receivers_echoing_the_path_and_query_of_a_secret_url_leak_no_fragment_of_it() {
    // Arrange: a Slack and a webhook receiver that refuse the message and echo the request's
    // path and query (and single segments or values of them) in their error bodies.
    let slack = StandIn::start().await;
    slack.default_answer(Answer::new(
        404,
        "no_service: {uri} (team T0TEAMSECRET, hook SLACKhookSECRET42)",
    ));
    let webhook = StandIn::start().await;
    webhook.default_answer(Answer::new(
        400,
        "unknown hook at {uri}; token q-secret-7781 refused; no hook hookpathSECRET9",
    ));
    let config = format!(
        r#"
notify:
  retry: {{max_attempts: 2, initial_backoff: 100ms, max_backoff: 200ms}}
  channels:
    sl: {{type: slack, webhook_url: "{slack}/services/T0TEAMSECRET/B0BOTSECRET/SLACKhookSECRET42"}}
    wh: {{type: webhook, url: "{wh}/in/hookpathSECRET9?token=q-secret-7781&v=2"}}
  routes:
    - channels: [sl, wh]
"#,
        slack = slack.url,
        wh = webhook.url,
    );
    let mut app = TestApp::spawn(
        Spawn::new(Db::Sqlite)
            .config(&config)
            .env("AIOPS_CLUSTER_STATE_FILE", "")
            .env("AIOPS_LOG", "debug,sqlx=warn,hyper=warn,reqwest=warn"),
    )
    .await;

    // Act: a repair that cannot run (no cluster) goes to humans on both channels.
    let store = app.store().await;
    let rows = escalate_to_failing_channels(&app, &store, 2).await;
    app.stop();
    let logs = app.log_text();
    let mut stored = String::new();
    for n in &rows {
        stored.push_str(&format!("{n:?}\n"));
        for a in store.notification_attempts(n.id).await.unwrap() {
            stored.push_str(&format!("{}\n", a.detail));
        }
    }

    // Assert: the receivers did echo (the test would be empty otherwise), and no log line
    // and no stored attempt shows any piece of the secret URLs.
    assert!(
        slack
            .requests()
            .iter()
            .all(|r| r.path == "/services/T0TEAMSECRET/B0BOTSECRET/SLACKhookSECRET42")
    );
    for fragment in ECHOED_FRAGMENTS {
        assert!(!logs.contains(fragment), "{fragment} in the logs:\n{logs}");
        assert!(
            !stored.contains(fragment),
            "{fragment} in the store:\n{stored}"
        );
    }
    assert!(
        stored.contains("slack: HTTP 404: no_service: *** (team ***, hook ***)"),
        "{stored}"
    );
    assert!(
        stored
            .contains("webhook: HTTP 400: unknown hook at ***?***; token *** refused; no hook ***"),
        "{stored}"
    );
    assert!(
        logs.contains("unknown hook at ***?***"),
        "the failure is logged, redacted:\n{logs}"
    );

    // `aiops notify test` prints the same refusal, redacted the same way.
    for (channel, expected) in [
        (
            "sl",
            "sl (slack) refused the test message: slack: HTTP 404: no_service: ***",
        ),
        (
            "wh",
            "wh (webhook) refused the test message: webhook: HTTP 400: unknown hook at ***?***",
        ),
    ] {
        let cwd = app.dir.path().to_path_buf();
        let (status, out, err) = tokio::task::spawn_blocking(move || {
            common::run_cli(
                &cwd,
                &["--config", "aiops.yaml", "notify", "test", channel],
                &std::collections::HashMap::new(),
            )
        })
        .await
        .unwrap();
        assert_eq!(status.code(), Some(1), "{out}{err}");
        assert!(err.contains(expected), "{err}");
        for fragment in ECHOED_FRAGMENTS {
            assert!(
                !err.contains(fragment) && !out.contains(fragment),
                "{fragment} in notify test output: {out}{err}"
            );
        }
    }
}

/// A rule whose target needs the `namespace` label: alerts without it are refused `no_target`.
const NO_COOLDOWN_RESTART: &str = r#"
rules:
  - name: restart-web
    matchers: ['auto_repair="restart"']
    playbook: restart
    params: {rollout_timeout: 1m}
"#;

fn telegram_text(r: &Request) -> String {
    r.json()["text"].as_str().unwrap_or_default().to_string()
}

/// A storm of alerts aiops refuses (no target) is one `no_action` message on the route that
/// asked for it, listing every alert with why and what to do, and nothing on a route that did
/// not opt in.
async fn no_action_is_sent_once_for_a_burst_of_refusals_and_never_to_a_route_that_did_not_opt_in(
    db: Db,
) {
    let telegram = StandIn::start().await;
    telegram.default_answer(Answer::new(200, r#"{"ok":true,"result":{"message_id":1}}"#));
    let slack = StandIn::start().await;
    slack.default_answer(Answer::new(200, "ok"));
    let config = format!(
        r#"
notify:
  no_action: {{group_wait: 3s, group_interval: 1h}}
  channels:
    tg: {{type: telegram, bot_token: "1:t", chat_id: "-100", api_url: "{tg}"}}
    team: {{type: slack, webhook_url: "{slack}/services/T/B/x"}}
  routes:
    - channels: [team]
      continue: true
    - channels: [tg]
      events: [no_action]
"#,
        tg = telegram.url,
        slack = slack.url
    );
    let app = TestApp::spawn(Spawn::new(db).rules(NO_COOLDOWN_RESTART).config(&config)).await;
    let apps: Vec<String> = (0..5).map(|i| format!("web-{i}")).collect();
    let labels: Vec<[(&str, &str); 3]> = apps
        .iter()
        .map(|a| {
            [
                ("alertname", "KubePodCrashLooping"),
                ("auto_repair", "restart"),
                ("app", a.as_str()),
            ]
        })
        .collect();
    // The burst comes in two webhooks, as Alertmanager's groups would send it.
    for part in [&labels[..3], &labels[3..]] {
        let alerts: Vec<(&[(&str, &str)], &str)> =
            part.iter().map(|l| (&l[..], "firing")).collect();
        let body = app
            .post_webhook_json(payload(&alerts, "2026-11-26T04:00:00Z"))
            .await;
        assert_eq!(body["refused"], part.len(), "{body}");
    }
    telegram
        .wait_for("the no_action message", |r| {
            r.iter().any(|r| telegram_text(r).contains("No action"))
        })
        .await;
    // That there is one group, not two, is read from the outbox below (both webhooks committed
    // before they answered); the stand-in has that one message.
    let reqs: Vec<String> = telegram
        .requests()
        .iter()
        .map(telegram_text)
        .filter(|t| t.contains("No action"))
        .collect();
    assert_eq!(reqs.len(), 1, "{reqs:#?}");
    let text = &reqs[0];
    assert!(
        text.starts_with("<b>[aiops] No action (no_target): KubePodCrashLooping and 4 more</b>"),
        "{text}"
    );
    assert!(
        text.contains("aiops saw KubePodCrashLooping and 4 other alerts and did nothing because the alert's labels do not name the rule's target"),
        "{text}"
    );
    assert!(
        text.contains("What to do: add the missing labels"),
        "{text}"
    );
    for a in &apps {
        assert!(
            text.contains(&format!("app=&quot;{a}&quot;"))
                || text.contains(&format!("app=\"{a}\"")),
            "{a} listed: {text}"
        );
    }
    assert!(
        slack
            .requests()
            .iter()
            .all(|r| !String::from_utf8_lossy(&r.body).contains("No action")),
        "the route without no_action in its events hears nothing of it"
    );
    let rows = app.store().await.notifications().await.unwrap();
    let no_action: Vec<_> = rows.iter().filter(|n| n.event == "no_action").collect();
    assert_eq!(no_action.len(), 1, "{rows:#?}");
    assert_eq!(
        (no_action[0].channel.as_str(), no_action[0].state),
        ("tg", NotificationState::Sent)
    );
}
both_backends!(
    no_action_is_sent_once_for_a_burst_of_refusals_and_never_to_a_route_that_did_not_opt_in
);

/// The RFC 3339 time (whole seconds, `Z`) of epoch milliseconds, as messages print it.
fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Runs a repair that works on app `web` (registered with a display name), then resolves its
/// alert 7½ minutes after the repair started; returns the Telegram texts and the job.
async fn a_repair_then_its_resolve(db: Db, language: &str) -> (Vec<String>, aiops::store::Job) {
    a_repair_then_its_resolve_told(db, language, Told::ByLabelRoute).await
}

/// How the Telegram channel is told of the repair.
enum Told {
    /// A label route that matches every alert.
    ByLabelRoute,
    /// Only the rule's chain (`escalate: [{notify: tg}]`); no label route at all.
    ByTheChain,
}

async fn a_repair_then_its_resolve_told(
    db: Db,
    language: &str,
    told: Told,
) -> (Vec<String>, aiops::store::Job) {
    let telegram = StandIn::start().await;
    telegram.default_answer(Answer::new(200, r#"{"ok":true,"result":{"message_id":1}}"#));
    let config = format!(
        r#"
notify:
  language: {language}
  channels:
    tg: {{type: telegram, bot_token: "1:t", chat_id: "-100", api_url: "{tg}"}}
{routes}
"#,
        tg = telegram.url,
        routes = match told {
            Told::ByLabelRoute => "  routes:\n    - channels: [tg]",
            Told::ByTheChain => "",
        }
    );
    let rules = match told {
        Told::ByLabelRoute => NO_COOLDOWN_RESTART.to_string(),
        Told::ByTheChain => format!("{NO_COOLDOWN_RESTART}    escalate: [{{notify: tg}}]\n"),
    };
    let app = TestApp::spawn(Spawn::new(db).rules(&rules).config(&config)).await;
    let store = app.store().await;
    let spec = serde_json::json!({"name": "web", "namespace": "prod", "display_name": "Web shop"});
    store
        .upsert_app("web", "prod", &spec, "test")
        .await
        .unwrap();
    let labels = [
        ("alertname", "KubePodCrashLooping"),
        ("auto_repair", "restart"),
        ("namespace", "prod"),
        ("app", "web"),
    ];
    let starts = common::minutes_ago(10);
    app.post_webhook(payload(&[(&labels, "firing")], &starts))
        .await;
    let jobs = app
        .wait_for_jobs("the restart to succeed", |j| {
            j.len() == 1 && j[0].state == JobState::Succeeded
        })
        .await;
    let started = jobs[0].started_at.unwrap();
    let ends = started + 7 * 60_000 + 30_000;
    let mut resolved: serde_json::Value =
        serde_json::from_str(&payload(&[(&labels, "resolved")], &starts)).unwrap();
    resolved["alerts"][0]["endsAt"] = serde_json::json!(
        chrono::DateTime::from_timestamp_millis(ends)
            .unwrap()
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    );
    app.post_webhook(resolved.to_string()).await;
    let marker = if language == "en" {
        "Recovered"
    } else {
        "已恢復"
    };
    telegram
        .wait_for("the recovery message", |r| {
            r.iter().any(|r| telegram_text(r).contains(marker))
        })
        .await;
    let job = app
        .wait_for_jobs("the time to recover", |j| j[0].ttr_ms.is_some())
        .await
        .remove(0);
    let starts_ms = chrono::DateTime::parse_from_rfc3339(&starts)
        .unwrap()
        .timestamp_millis();
    assert_eq!(job.ttr_ms, Some(ends - starts_ms));
    let texts = telegram.requests().iter().map(telegram_text).collect();
    (texts, job)
}

/// When an alert that had a repair resolves, the route hears how long after the repair, which
/// playbook and how it ended; every message names the app by its registered display name.
async fn alert_recovered_says_how_many_minutes_after_which_repair_the_alert_resolved(db: Db) {
    let (texts, job) = a_repair_then_its_resolve(db, "en").await;
    let recovered: Vec<_> = texts.iter().filter(|t| t.contains("Recovered")).collect();
    assert_eq!(recovered.len(), 1, "{texts:#?}");
    let text = recovered[0];
    assert!(
        text.starts_with("<b>[aiops] Recovered: Web shop (prod)</b>"),
        "{text}"
    );
    let want = format!(
        "Recovered: KubePodCrashLooping on prod/Deployment/web resolved 7 minutes after the repair (restart at {}, succeeded",
        rfc3339(job.started_at.unwrap())
    );
    assert!(text.contains(&want), "{want}\n{text}");
    assert!(
        texts
            .iter()
            .any(|t| t.starts_with("<b>[aiops] Repair started: Web shop (prod)</b>")),
        "display_name in every event: {texts:#?}"
    );
    assert!(
        texts
            .iter()
            .any(|t| t.starts_with("<b>[aiops] Repaired: Web shop (prod)</b>")),
        "{texts:#?}"
    );
}
both_backends!(alert_recovered_says_how_many_minutes_after_which_repair_the_alert_resolved);

/// A team wired only through a rule's chain (`notify:` in `escalate`) heard "repaired"; it
/// hears "recovered" too, with no label route at all.
async fn alert_recovered_reaches_the_channels_the_rules_chain_names(db: Db) {
    let (texts, _) = a_repair_then_its_resolve_told(db, "en", Told::ByTheChain).await;
    let recovered = texts.iter().filter(|t| t.contains("Recovered")).count();
    let repaired = texts
        .iter()
        .filter(|t| t.starts_with("<b>[aiops] Repaired"))
        .count();
    assert_eq!((repaired, recovered), (1, 1), "{texts:#?}");
}
both_backends!(alert_recovered_reaches_the_channels_the_rules_chain_names);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_recovered_reads_in_traditional_chinese_when_the_language_is_zh_tw() {
    let (texts, job) = a_repair_then_its_resolve(Db::Sqlite, "zh-TW").await;
    let text = texts.iter().find(|t| t.contains("已恢復")).unwrap();
    assert!(
        text.starts_with("<b>[aiops] 已恢復：Web shop（prod）</b>"),
        "{text}"
    );
    let want = format!(
        "已恢復：KubePodCrashLooping（prod/Deployment/web）在修復後 7 分鐘解除（restart，{}，succeeded",
        rfc3339(job.started_at.unwrap())
    );
    assert!(text.contains(&want), "{want}\n{text}");
}
