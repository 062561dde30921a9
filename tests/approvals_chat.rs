//! Approvals from chat through `aiops serve`: a repair in `mode: approve` waits, its message
//! carries Approve / Reject, and a click in Telegram, Slack or LINE decides it, once.
//!
//! The stand-ins follow each platform's documented requests and answers:
//! - Telegram Bot API (`tests/common/stand_ins.rs`, `TelegramBot`): `sendMessage` with
//!   `reply_markup.inline_keyboard` <https://core.telegram.org/bots/api#sendmessage>,
//!   <https://core.telegram.org/bots/api#inlinekeyboardmarkup>; `getUpdates` long polling with
//!   `offset`, `timeout`, `allowed_updates` <https://core.telegram.org/bots/api#getupdates>;
//!   the `callback_query` update <https://core.telegram.org/bots/api#callbackquery>;
//!   `answerCallbackQuery` <https://core.telegram.org/bots/api#answercallbackquery>;
//!   `editMessageText` <https://core.telegram.org/bots/api#editmessagetext>; 409 to a second
//!   concurrent `getUpdates`.
//! - Slack: Block Kit `actions` with buttons in an incoming webhook's message
//!   <https://api.slack.com/reference/block-kit/blocks#actions>; the interaction request,
//!   form-encoded `payload` of type `block_actions` <https://api.slack.com/interactivity/handling>,
//!   <https://api.slack.com/reference/interaction-payloads/block-actions>; its signature
//!   `X-Slack-Signature: v0=HMAC-SHA256(signing secret, "v0:{timestamp}:{body}")` and the
//!   five-minute window <https://api.slack.com/authentication/verifying-requests-from-slack>;
//!   the update through `response_url` with `replace_original`.
//! - LINE Messaging API: the confirm template with postback actions
//!   <https://developers.line.biz/en/reference/messaging-api/#confirm>; the webhook and its
//!   `X-Line-Signature` (base64 HMAC-SHA256 of the body with the channel secret)
//!   <https://developers.line.biz/en/docs/messaging-api/verify-webhook-signature/>; the postback
//!   event <https://developers.line.biz/en/reference/messaging-api/#postback-event>; the reply
//!   API <https://developers.line.biz/en/reference/messaging-api/#send-reply-message>.

use crate::both_backends;
use crate::common;

use std::time::Duration;

use aiops::chat::signature::hmac_sha256;
use aiops::store::Job;
use base64::Engine as _;
use common::stand_ins::{Request, StandIn, TelegramBot};
use common::{Db, Spawn, TestApp, payload, raw_db, wait};

const TG_TOKEN: &str = "4242:tg-secret-token";
const SLACK_SIGNING: &str = "slack-signing-secret-value";
const LINE_SECRET: &str = "line-channel-secret-value";
const LINE_TOKEN: &str = "line-channel-token-value";

fn rules(approvers: &str) -> String {
    format!(
        r#"
rules:
  - name: restart-web
    matchers: ['auto_repair="restart"']
    playbook: restart
    params: {{rollout_timeout: 5m}}
    mode: approve
    approval:
      expires: 30m
      approvers: [{approvers}]
"#
    )
}

fn alert() -> String {
    alert_with("firing")
}

/// The test's alert, `firing` or `resolved` (the same occurrence: same labels and start).
fn alert_with(status: &str) -> String {
    let labels = [
        ("alertname", "KubeDeploymentRolloutStuck"),
        ("auto_repair", "restart"),
        ("namespace", "prod"),
        ("app", "web"),
        ("severity", "critical"),
    ];
    payload(&[(&labels, status)], "2026-11-30T04:00:00Z")
}

/// The daemon with `config`, the alert posted, and the job it made waiting for approval.
async fn awaiting(db: Db, approvers: &str, config: &str, env: &[(&str, &str)]) -> (TestApp, Job) {
    let mut spawn = Spawn::new(db).rules(&rules(approvers)).config(config);
    for (k, v) in env {
        spawn = spawn.env(k, v);
    }
    let app = TestApp::spawn(spawn).await;
    app.post_webhook(alert()).await;
    let jobs = app
        .wait_for_jobs("the repair to wait for approval", |j| {
            j.len() == 1 && j[0].state.as_str() == "awaiting_approval"
        })
        .await;
    (app, jobs[0].clone())
}

/// Waits until the one job has succeeded (it ran once, after the approval).
async fn ran_once(app: &TestApp) -> Job {
    let jobs = app
        .wait_for_jobs("the approved repair to succeed", |j| {
            j.len() == 1 && j[0].state.as_str() == "succeeded"
        })
        .await;
    jobs[0].clone()
}

/// The recorded clicks: (who, outcome), in order.
async fn clicks(app: &TestApp) -> Vec<(String, String)> {
    let raw = raw_db(&app.db.url).await;
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT who, outcome FROM approvals ORDER BY id")
            .fetch_all(&raw)
            .await
            .unwrap();
    raw.close().await;
    rows
}

fn assert_no_secret_in_logs(app: &TestApp, secrets: &[&str]) {
    let logs = app.log_text();
    for s in secrets {
        assert!(!logs.contains(s), "a secret leaked into the logs");
    }
}

async fn a_telegram_click_received_by_polling_approves_once_and_the_message_shows_who(db: Db) {
    let bot = TelegramBot::start().await;
    let config = format!(
        r#"
notify:
  channels:
    oncall: {{type: telegram, bot_token_env: TG_TOKEN, chat_id: "-100200", api_url: "{}", approvals: true}}
  routes:
    - channels: [oncall]
"#,
        bot.url
    );
    let (app, job) = awaiting(db, "telegram:111", &config, &[("TG_TOKEN", TG_TOKEN)]).await;
    let request = bot.keyboard_message().await;
    assert_eq!(
        request["reply_markup"]["inline_keyboard"][0],
        serde_json::json!([
            {"text": "✅ Approve", "callback_data": format!("aiops:approve:{}", job.id)},
            {"text": "❌ Reject", "callback_data": format!("aiops:reject:{}", job.id)},
        ])
    );
    let polls = bot.calls_of("getUpdates");
    assert_eq!(
        polls[0]["allowed_updates"],
        serde_json::json!(["callback_query"])
    );
    assert!(polls[0]["timeout"].as_u64().unwrap() > 0, "long polling");

    // Someone not on the list: refused with an alert, recorded, the buttons stay.
    bot.click(
        1,
        222,
        "Mallory",
        &request,
        &format!("aiops:approve:{}", job.id),
    );
    let calls = bot
        .wait_for("the refusal to be answered", |c| {
            c.iter().any(|c| c.method == "answerCallbackQuery")
        })
        .await;
    let refusal = &calls
        .iter()
        .find(|c| c.method == "answerCallbackQuery")
        .unwrap()
        .body;
    assert_eq!(refusal["callback_query_id"], "cq1");
    assert_eq!(refusal["show_alert"], true);
    assert!(
        refusal["text"].as_str().unwrap().starts_with("Refused"),
        "{refusal}"
    );
    assert!(bot.calls_of("editMessageText").is_empty());
    let job_now = app.store().await.job(job.id).await.unwrap().unwrap();
    assert_eq!(job_now.state.as_str(), "awaiting_approval");

    // The approver: approved, told, and the message edited without its buttons.
    bot.click(
        2,
        111,
        "Ann",
        &request,
        &format!("aiops:approve:{}", job.id),
    );
    ran_once(&app).await;
    let calls = bot
        .wait_for("the approval to be answered and the message edited", |c| {
            c.iter().any(|c| c.method == "editMessageText")
                && c.iter()
                    .filter(|c| c.method == "answerCallbackQuery")
                    .count()
                    == 2
        })
        .await;
    let answered: Vec<_> = calls
        .iter()
        .filter(|c| c.method == "answerCallbackQuery")
        .map(|c| c.body.clone())
        .collect();
    assert_eq!(answered[1]["callback_query_id"], "cq2");
    assert!(
        answered[1]["text"]
            .as_str()
            .unwrap()
            .starts_with("Approved"),
        "{}",
        answered[1]
    );
    let edit = bot.calls_of("editMessageText").remove(0);
    assert_eq!(edit["message_id"], request["message_id"]);
    assert_eq!(edit["chat_id"], -100200);
    assert_eq!(
        edit["reply_markup"],
        serde_json::json!({"inline_keyboard": []})
    );
    let text = edit["text"].as_str().unwrap();
    assert!(
        text.ends_with("✅ Approved by Ann (telegram:111)"),
        "{text}"
    );
    assert!(
        text.starts_with("[aiops]"),
        "the message keeps its text: {text}"
    );
    assert_eq!(edit["entities"][0]["type"], "bold", "and its formatting");

    // A second click (the same person again): acts not, says so.
    bot.click(
        3,
        111,
        "Ann",
        &request,
        &format!("aiops:approve:{}", job.id),
    );
    bot.wait_for("the second click to be answered", |c| {
        c.iter()
            .filter(|c| c.method == "answerCallbackQuery")
            .count()
            == 3
    })
    .await;
    let again = bot.calls_of("answerCallbackQuery").remove(2);
    assert!(
        again["text"]
            .as_str()
            .unwrap()
            .starts_with("Already decided"),
        "{again}"
    );
    let jobs = app.store().await.jobs().await.unwrap();
    assert_eq!(jobs.len(), 1, "one job, run once");
    assert_eq!(
        clicks(&app).await,
        [
            ("telegram:222".into(), "not_allowed".into()),
            ("telegram:111".into(), "approved".into()),
            ("telegram:111".into(), "already_decided".into()),
        ]
    );
    assert_no_secret_in_logs(&app, &["tg-secret-token"]);

    // At shutdown the poller confirms what it handled, so a restart does not receive it again.
    let mut app = app;
    assert!(app.stop().success());
    let last = bot.calls_of("getUpdates").pop().unwrap();
    assert_eq!(
        (last["offset"].as_i64(), last["timeout"].as_u64()),
        (Some(4), Some(0)),
        "{last}"
    );
}
both_backends!(a_telegram_click_received_by_polling_approves_once_and_the_message_shows_who);

async fn a_poll_answered_409_backs_off_instead_of_polling_again_at_once(db: Db) {
    let bot = TelegramBot::start().await;
    bot.conflict(true);
    let config = format!(
        r#"
notify:
  channels:
    oncall: {{type: telegram, bot_token_env: TG_TOKEN, chat_id: "-100200", api_url: "{}", approvals: true}}
"#,
        bot.url
    );
    let app = TestApp::spawn(
        Spawn::new(db)
            .rules(&rules("telegram:111"))
            .config(&config)
            .env("TG_TOKEN", TG_TOKEN),
    )
    .await;
    wait::until(
        "the conflict to be logged",
        Duration::from_secs(20),
        async || app.log_text().contains("another getUpdates").then_some(()),
        || app.log_text(),
    )
    .await;
    // Backing off: one poll, not a tight loop, within the back-off.
    assert_eq!(bot.calls_of("getUpdates").len(), 1);
    assert_eq!(app.log_text().matches("another getUpdates").count(), 1);
    assert_no_secret_in_logs(&app, &["tg-secret-token"]);
}
both_backends!(a_poll_answered_409_backs_off_instead_of_polling_again_at_once);

fn slack_config(hook: &str) -> String {
    format!(
        r#"
notify:
  channels:
    team: {{type: slack, webhook_url: "{hook}/services/T1/B1/slack-hook-secret", signing_secret_env: SLACK_SIGNING}}
  routes:
    - channels: [team]
"#
    )
}

/// A `block_actions` payload as Slack posts it (form-encoded `payload`).
fn slack_body(
    user: &str,
    action_id: &str,
    job: i64,
    response_url: &str,
    message: &serde_json::Value,
) -> String {
    let payload = serde_json::json!({
        "type": "block_actions",
        "user": {"id": user, "username": user.to_lowercase(), "name": user.to_lowercase(), "team_id": "T1"},
        "api_app_id": "A1",
        "team": {"id": "T1", "domain": "example"},
        "container": {"type": "message", "message_ts": "1.2", "channel_id": "C1", "is_ephemeral": false},
        "trigger_id": "1.2.3",
        "channel": {"id": "C1", "name": "ops"},
        "message": {"type": "message", "text": message["text"], "blocks": message["blocks"], "ts": "1.2"},
        "response_url": response_url,
        "actions": [{"type": "button", "action_id": action_id, "block_id": "aiops_approval", "value": job.to_string(), "action_ts": "1.3"}],
    });
    form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", &payload.to_string())
        .finish()
}

fn slack_signature(secret: &str, ts: i64, body: &str) -> String {
    let mac = hmac_sha256(
        secret.as_bytes(),
        &[b"v0:", ts.to_string().as_bytes(), b":", body.as_bytes()],
    );
    format!("v0={}", hex::encode(mac))
}

/// Posts `body` as Slack would, signed with `secret` at `ts`; the status.
async fn post_slack(app: &TestApp, secret: &str, ts: i64, body: &str) -> u16 {
    app.client
        .post(app.url("/chat/slack/interactions"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-slack-request-timestamp", ts.to_string())
        .header("x-slack-signature", slack_signature(secret, ts, body))
        .body(body.to_string())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

fn updates(hook: &StandIn) -> Vec<serde_json::Value> {
    hook.requests()
        .iter()
        .filter(|r| r.path == "/respond")
        .map(Request::json)
        .collect()
}

/// The daemon with a Slack channel (approver `slack:U1`), the job waiting, and the message
/// with its buttons as the incoming webhook received it.
async fn slack_awaiting(db: Db, hook: &StandIn) -> (TestApp, Job, serde_json::Value) {
    let (app, job) = awaiting(
        db,
        "slack:U1",
        &slack_config(&hook.url),
        &[("SLACK_SIGNING", SLACK_SIGNING)],
    )
    .await;
    let is_request = |r: &Request| {
        r.path.starts_with("/services/") && r.json()["blocks"].to_string().contains("aiops_approve")
    };
    let sent = hook
        .wait_for("the approval request", |r| r.iter().any(is_request))
        .await;
    let message = sent.into_iter().find(is_request).unwrap().json();
    (app, job, message)
}

async fn a_signed_slack_click_approves_once_and_forged_stale_and_unknown_clicks_are_refused(
    db: Db,
) {
    let hook = StandIn::start().await;
    let (app, job, message) = slack_awaiting(db, &hook).await;
    let actions = message["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["type"] == "actions")
        .unwrap()
        .clone();
    let buttons: Vec<_> = actions["elements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["action_id"].as_str().unwrap().to_string(),
                b["value"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let id = job.id.to_string();
    assert_eq!(
        buttons,
        [
            ("aiops_approve".to_string(), id.clone()),
            ("aiops_reject".to_string(), id)
        ]
    );
    let respond = format!("{}/respond", hook.url);
    let now = chrono::Utc::now().timestamp();
    let approve = |user: &str| slack_body(user, "aiops_approve", job.id, &respond, &message);

    // Forged: signed with another secret. Stale: signed right, six minutes old.
    let body = approve("U1");
    assert_eq!(post_slack(&app, "not-the-secret", now, &body).await, 401);
    let old = now - 360;
    assert_eq!(post_slack(&app, SLACK_SIGNING, old, &body).await, 401);
    let future = now + 360;
    assert_eq!(post_slack(&app, SLACK_SIGNING, future, &body).await, 401);
    // Signed, from someone not on the list: refused, recorded, told only them.
    let stranger = approve("U9");
    assert_eq!(post_slack(&app, SLACK_SIGNING, now, &stranger).await, 200);
    hook.wait_for("the refusal", |r| r.iter().any(|r| r.path == "/respond"))
        .await;
    assert_eq!(updates(&hook)[0]["response_type"], "ephemeral");
    assert_eq!(updates(&hook)[0]["replace_original"], false);
    let state = app.store().await.job(job.id).await.unwrap().unwrap().state;
    assert_eq!(state.as_str(), "awaiting_approval");

    // The approver, twice (a double click): acts once.
    for _ in 0..2 {
        assert_eq!(post_slack(&app, SLACK_SIGNING, now, &body).await, 200);
    }
    ran_once(&app).await;
    hook.wait_for("both updates", |r| {
        r.iter().filter(|r| r.path == "/respond").count() == 3
    })
    .await;
    // The approval's replacement and the double click's "already decided" reply are sent
    // concurrently, so they may reach Slack in either order.
    let all = updates(&hook);
    let replaced = all[1..]
        .iter()
        .find(|u| u["replace_original"] == true)
        .unwrap_or_else(|| panic!("no update replaces the message: {all:?}"));
    let blocks = replaced["blocks"].to_string();
    assert!(
        !blocks.contains("aiops_approve"),
        "the buttons are gone: {blocks}"
    );
    assert!(blocks.contains("Approved by u1 (slack:U1)"), "{blocks}");
    assert_eq!(app.store().await.jobs().await.unwrap().len(), 1);
    assert_eq!(
        clicks(&app).await,
        [
            ("slack:U9".into(), "not_allowed".into()),
            ("slack:U1".into(), "approved".into()),
            ("slack:U1".into(), "already_decided".into()),
        ]
    );
    assert_no_secret_in_logs(&app, &[SLACK_SIGNING, "slack-hook-secret"]);
}
both_backends!(a_signed_slack_click_approves_once_and_forged_stale_and_unknown_clicks_are_refused);

async fn a_slack_click_after_the_alert_resolved_does_nothing_says_so_and_removes_the_buttons(
    db: Db,
) {
    let hook = StandIn::start().await;
    let (app, job, message) = slack_awaiting(db, &hook).await;
    app.post_webhook(alert_with("resolved")).await;
    app.wait_for_jobs("the resolve to call the repair off", |j| {
        j.len() == 1 && j[0].state.as_str() == "cancelled"
    })
    .await;
    let respond = format!("{}/respond", hook.url);
    let body = slack_body("U1", "aiops_approve", job.id, &respond, &message);
    let now = chrono::Utc::now().timestamp();
    assert_eq!(post_slack(&app, SLACK_SIGNING, now, &body).await, 200);
    hook.wait_for("the update", |r| r.iter().any(|r| r.path == "/respond"))
        .await;
    let update = &updates(&hook)[0];
    assert_eq!(update["replace_original"], true);
    let blocks = update["blocks"].to_string();
    assert!(!blocks.contains("aiops_approve"), "{blocks}");
    assert!(
        blocks.contains("Nothing to do: the alert resolved"),
        "{blocks}"
    );
    let job = app.store().await.job(job.id).await.unwrap().unwrap();
    assert_eq!(job.state.as_str(), "cancelled", "it never ran");
    assert_eq!(
        clicks(&app).await,
        [("slack:U1".into(), "alert_resolved".into())]
    );
}
both_backends!(a_slack_click_after_the_alert_resolved_does_nothing_says_so_and_removes_the_buttons);

fn line_body(user: &str, data: &str) -> String {
    serde_json::json!({
        "destination": "Ubot",
        "events": [
            {"type": "message", "mode": "active", "timestamp": 0, "webhookEventId": "01A",
             "deliveryContext": {"isRedelivery": false}, "replyToken": "r-msg",
             "source": {"type": "user", "userId": user},
             "message": {"id": "1", "type": "text", "text": "hi", "quoteToken": "q"}},
            {"type": "postback", "mode": "active", "timestamp": 0, "webhookEventId": "01B",
             "deliveryContext": {"isRedelivery": false}, "replyToken": "r-postback",
             "source": {"type": "user", "userId": user},
             "postback": {"data": data}},
        ]
    })
    .to_string()
}

async fn post_line(app: &TestApp, secret: &str, body: &str) -> u16 {
    let sig = base64::engine::general_purpose::STANDARD
        .encode(hmac_sha256(secret.as_bytes(), &[body.as_bytes()]));
    app.client
        .post(app.url("/chat/line/webhook"))
        .header("content-type", "application/json")
        .header("x-line-signature", sig)
        .body(body.to_string())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn a_signed_line_postback_approves_and_a_bad_signature_is_refused(db: Db) {
    let api = StandIn::start().await;
    let config = format!(
        r#"
notify:
  language: zh-TW
  channels:
    ops: {{type: line, channel_token_env: LINE_TOKEN, channel_secret_env: LINE_SECRET, to: Uops, api_url: "{}"}}
  routes:
    - channels: [ops]
"#,
        api.url
    );
    let (app, job) = awaiting(
        db,
        "line:Uann",
        &config,
        &[("LINE_TOKEN", LINE_TOKEN), ("LINE_SECRET", LINE_SECRET)],
    )
    .await;
    let pushes = api
        .wait_for("the approval request", |r| {
            r.iter()
                .any(|r| r.json()["messages"].to_string().contains("confirm"))
        })
        .await;
    let push = pushes
        .iter()
        .find(|r| r.json()["messages"].to_string().contains("confirm"))
        .unwrap()
        .json();
    let confirm = push["messages"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(confirm["template"]["actions"][0]["label"], "✅ 核准");
    assert_eq!(
        confirm["template"]["actions"][0]["data"],
        format!("aiops:approve:{}", job.id)
    );

    let body = line_body("Uann", &format!("aiops:approve:{}", job.id));
    assert_eq!(post_line(&app, "another-secret", &body).await, 401);
    let state = app.store().await.job(job.id).await.unwrap().unwrap().state;
    assert_eq!(state.as_str(), "awaiting_approval");
    assert_eq!(post_line(&app, LINE_SECRET, &body).await, 200);
    ran_once(&app).await;
    let replies = api
        .wait_for("the reply", |r| {
            r.iter().any(|r| r.path == "/v2/bot/message/reply")
        })
        .await;
    let reply = replies
        .iter()
        .find(|r| r.path == "/v2/bot/message/reply")
        .unwrap();
    assert_eq!(
        reply.header("authorization").unwrap(),
        format!("Bearer {LINE_TOKEN}")
    );
    let reply = reply.json();
    assert_eq!(
        reply["replyToken"], "r-postback",
        "only the postback is answered"
    );
    assert_eq!(
        reply["messages"][0]["text"],
        "✅ 已由 Uann (line:Uann) 核准"
    );
    assert_eq!(
        clicks(&app).await,
        [("line:Uann".into(), "approved".into())]
    );
    assert_no_secret_in_logs(&app, &[LINE_SECRET, LINE_TOKEN]);
}
both_backends!(a_signed_line_postback_approves_and_a_bad_signature_is_refused);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_sharing_a_bot_and_a_slack_app_act_once_on_each_click() {
    if common::postgres_available().await.is_none() {
        assert!(!common::in_ci(), "PostgreSQL is required in CI");
        return;
    }
    let bot = TelegramBot::start().await;
    let hook = StandIn::start().await;
    let config = format!(
        r#"
notify:
  channels:
    oncall: {{type: telegram, bot_token_env: TG_TOKEN, chat_id: "-100200", api_url: "{}", approvals: true}}
    team: {{type: slack, webhook_url: "{}/services/T1/B1/slack-hook-secret", signing_secret_env: SLACK_SIGNING}}
  routes:
    - channels: [oncall, team]
"#,
        bot.url, hook.url
    );
    let opts = || {
        Spawn::new(Db::Postgres)
            .rules(&rules("telegram:111, slack:U1"))
            .config(&config)
            .env("TG_TOKEN", TG_TOKEN)
            .env("SLACK_SIGNING", SLACK_SIGNING)
    };
    let one = TestApp::spawn(opts()).await;
    let two = TestApp::spawn_in(one.dir.clone(), one.db.clone(), opts()).await;
    // Both poll the bot: Telegram lets one wait, the other is told 409 and backs off.
    wait::until(
        "one replica to back off from the bot",
        Duration::from_secs(20),
        async || {
            format!("{}{}", one.log_text(), two.log_text())
                .contains("another getUpdates")
                .then_some(())
        },
        || format!("{}{}", one.log_text(), two.log_text()),
    )
    .await;

    one.post_webhook(alert()).await;
    let jobs = one
        .wait_for_jobs("the repair to wait", |j| {
            j.len() == 1 && j[0].state.as_str() == "awaiting_approval"
        })
        .await;

    // The same signed Slack click delivered to both replicas at once: one approves.
    let message = hook
        .wait_for("the Slack request", |r| {
            r.iter().any(|r| r.path.starts_with("/services/"))
        })
        .await
        .into_iter()
        .find(|r| r.path.starts_with("/services/"))
        .unwrap()
        .json();
    let respond = format!("{}/respond", hook.url);
    let body = slack_body("U1", "aiops_approve", jobs[0].id, &respond, &message);
    let now = chrono::Utc::now().timestamp();
    let (a, b) = tokio::join!(
        post_slack(&one, SLACK_SIGNING, now, &body),
        post_slack(&two, SLACK_SIGNING, now, &body)
    );
    assert_eq!((a, b), (200, 200));
    ran_once(&one).await;
    let mut outcomes: Vec<String> = clicks(&one).await.into_iter().map(|(_, o)| o).collect();
    outcomes.sort();
    assert_eq!(outcomes, ["already_decided", "approved"]);

    // A Telegram click on the same request: received by one replica only, answered once.
    let request = bot.keyboard_message().await;
    bot.click(
        1,
        111,
        "Ann",
        &request,
        &format!("aiops:approve:{}", jobs[0].id),
    );
    bot.wait_for("the click to be answered and the buttons removed", |c| {
        c.iter().any(|c| c.method == "editMessageText")
    })
    .await;
    let answers = bot.calls_of("answerCallbackQuery");
    assert_eq!(answers.len(), 1, "{answers:?}");
    assert!(
        answers[0]["text"]
            .as_str()
            .unwrap()
            .starts_with("Already decided")
    );
    assert_eq!(one.store().await.jobs().await.unwrap().len(), 1);
    assert_eq!(clicks(&one).await.len(), 3);
}
