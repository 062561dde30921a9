//! Each channel against a local stand-in for its API: exact paths, headers and bodies,
//! escaping, splitting, retry keys, retry-after; email over a real SMTP conversation; and
//! `aiops notify test` end to end.

use crate::common;

use std::collections::HashMap;
use std::time::Duration;

use aiops::config::Secret;
use aiops::notify::{Message, Notifier, email, line, slack, telegram, webhook};
use common::stand_ins::{Answer, Smtp, StandIn, closed_addr};

fn msg(subject: &str, body: &str) -> Message {
    Message {
        subject: subject.into(),
        body: body.into(),
        event_json: r#"{"kind":"escalation","app":"web"}"#.into(),
        retry_key: uuid::Uuid::new_v4().to_string(),
        event: "escalation".into(),
        approval: None,
    }
}

fn http() -> reqwest::Client {
    aiops::notify::http_client(Duration::from_secs(5))
}

#[tokio::test]
async fn telegram_gets_escaped_html_on_the_bot_path_and_long_texts_are_split() {
    let api = StandIn::start().await;
    api.default_answer(Answer::new(
        200,
        r#"{"ok":true,"result":{"message_id":42}}"#,
    ));
    let t = telegram::Telegram::new(http(), &api.url, Secret::new("123:tok"), "-100200");
    let receipt = t
        .send(&msg("web <prod> & co", "restart \"failed\" <b>x</b>"))
        .await
        .unwrap();
    assert_eq!(receipt.detail, "ok, message_id 42");
    let long = "line of text & more\n".repeat(400); // 8000 characters, 9600 escaped
    t.send(&msg("long", &long)).await.unwrap();

    let reqs = api.requests();
    assert!(reqs.iter().all(|r| r.path == "/bot123:tok/sendMessage"));
    assert_eq!(
        reqs[0].header("content-type").as_deref(),
        Some("application/json")
    );
    assert_eq!(
        reqs[0].json(),
        serde_json::json!({
            "chat_id": "-100200",
            "text": "<b>web &lt;prod&gt; &amp; co</b>\n\nrestart &quot;failed&quot; &lt;b&gt;x&lt;/b&gt;",
            "parse_mode": "HTML",
            "disable_web_page_preview": true,
        })
    );
    let parts: Vec<String> = reqs[1..]
        .iter()
        .map(|r| r.json()["text"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        parts.len(),
        3,
        "9600 escaped characters need three messages"
    );
    assert!(parts.iter().all(|p| p.encode_utf16().count() <= 4096));
    assert!(parts[0].starts_with("<b>long</b>\n\nline of text &amp; more\n"));
    let joined: String = parts.join("\n").replace("<b>long</b>\n\n", "");
    assert_eq!(
        joined.matches("line of text &amp; more").count(),
        400,
        "nothing lost"
    );
}

#[tokio::test]
async fn telegram_429_carries_the_retry_after_of_its_parameters_and_401_is_final() {
    let api = StandIn::start().await;
    api.script(vec![
        Answer::new(
            429,
            r#"{"ok":false,"error_code":429,"description":"Too Many Requests: retry after 7","parameters":{"retry_after":7}}"#,
        ),
        Answer::new(401, r#"{"ok":false,"error_code":401,"description":"Unauthorized"}"#),
    ]);
    let t = telegram::Telegram::new(http(), &api.url, Secret::new("123:tok"), "1");
    let e = t.send(&msg("s", "b")).await.unwrap_err();
    assert!(e.is_retryable());
    assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));
    assert_eq!(
        e.to_string(),
        "telegram: HTTP 429: Too Many Requests: retry after 7"
    );
    let e = t.send(&msg("s", "b")).await.unwrap_err();
    assert!(!e.is_retryable());
    assert_eq!(e.metric_label(), "client_error");
}

#[tokio::test]
async fn line_pushes_with_the_bearer_token_and_reuses_the_retry_key_when_retried() {
    let api = StandIn::start().await;
    api.script(vec![
        Answer::new(500, r#"{"message":"internal error"}"#),
        Answer::new(200, r#"{"sentMessages":[{"id":"1"}]}"#).header("x-line-request-id", "req-1"),
    ]);
    let l = line::Line::new(http(), &api.url, Secret::new("line-token"), "Uabc");
    let m = msg("需要人工介入：web", "已嘗試：restart");
    let e = l.send(&m).await.unwrap_err();
    assert!(e.is_retryable(), "{e}");
    let receipt = l.send(&m).await.unwrap();
    assert_eq!(receipt.detail, "ok, x-line-request-id req-1");

    let reqs = api.requests();
    assert_eq!(reqs.len(), 2);
    for r in &reqs {
        assert_eq!(r.path, "/v2/bot/message/push");
        assert_eq!(
            r.header("authorization").as_deref(),
            Some("Bearer line-token")
        );
        assert_eq!(
            r.header("x-line-retry-key").as_deref(),
            Some(m.retry_key.as_str())
        );
    }
    assert_eq!(
        reqs[1].json(),
        serde_json::json!({"to": "Uabc", "messages": [{"type": "text", "text": "需要人工介入：web\n\n已嘗試：restart"}]})
    );
    // Another logical message gets another key.
    l.send(&msg("s", "b")).await.unwrap();
    let third = api.requests()[2].header("x-line-retry-key").unwrap();
    assert_ne!(third, m.retry_key);
}

#[tokio::test]
async fn line_splits_at_5000_characters_and_takes_409_as_already_delivered() {
    let api = StandIn::start().await;
    api.script(vec![Answer::new(
        409,
        r#"{"message":"The retry key is already accepted"}"#,
    )]);
    let l = line::Line::new(http(), &api.url, Secret::new("t"), "Cgroup");
    let body = "修復".repeat(3000); // 6000 characters
    let receipt = l.send(&msg("s", &body)).await.unwrap();
    assert!(
        receipt.detail.contains("already accepted"),
        "{}",
        receipt.detail
    );
    let texts: Vec<String> = api.requests()[0].json()["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(texts.len(), 2);
    assert_eq!(texts[0].chars().count(), 5000);
    assert_eq!(texts.concat(), format!("s\n\n{body}"));
}

#[tokio::test]
async fn slack_gets_text_and_blocks_and_a_429_brings_its_retry_after() {
    let api = StandIn::start().await;
    api.script(vec![
        Answer::new(429, "rate_limited").header("retry-after", "12"),
        Answer::new(404, "no_service"),
    ]);
    let hook = format!("{}/services/T0/B0/secretpart", api.url);
    let s = slack::Slack::new(http(), Secret::new(hook.clone()));
    let m = msg(
        "Manual intervention required: web (prod)",
        "Tried:\n  1. restart <job 1>: failure & more",
    );
    let e = s.send(&m).await.unwrap_err();
    assert_eq!(e.retry_after(), Some(Duration::from_secs(12)));
    assert!(e.is_retryable());
    let e = s.send(&m).await.unwrap_err();
    assert!(!e.is_retryable());
    assert!(!e.to_string().contains("secretpart"), "{e}");
    let r = s.send(&m).await.unwrap();
    assert_eq!((r.status, r.detail.as_str()), (200, "ok"));

    let reqs = api.requests();
    assert_eq!(reqs[2].path, "/services/T0/B0/secretpart");
    assert_eq!(
        reqs[2].json(),
        serde_json::json!({
            "text": "Manual intervention required: web (prod)\nTried:\n  1. restart &lt;job 1&gt;: failure &amp; more",
            "blocks": [
                {"type": "header", "text": {"type": "plain_text", "text": "Manual intervention required: web (prod)", "emoji": true}},
                {"type": "section", "text": {"type": "mrkdwn", "text": "Tried:\n  1. restart &lt;job 1&gt;: failure &amp; more"}},
            ],
        })
    );
}

#[tokio::test]
async fn a_connection_refused_is_retryable_and_names_no_url() {
    let dead = closed_addr();
    let s = slack::Slack::new(
        http(),
        Secret::new(format!("http://{dead}/services/hook-secret")),
    );
    let e = s.send(&msg("s", "b")).await.unwrap_err();
    assert!(e.is_retryable());
    assert_eq!(e.metric_label(), "transport");
    assert!(!e.to_string().contains("hook-secret"), "{e}");
}

#[tokio::test]
async fn the_webhook_gets_the_event_json_with_an_idempotency_key() {
    let api = StandIn::start().await;
    let w = webhook::Webhook::new(http(), Secret::new(format!("{}/aiops?token=abc", api.url)));
    let m = msg("subject", "body");
    w.send(&m).await.unwrap();
    let r = &api.requests()[0];
    assert_eq!(r.path, "/aiops");
    assert_eq!(
        r.header("idempotency-key").as_deref(),
        Some(m.retry_key.as_str())
    );
    assert_eq!(
        r.json(),
        serde_json::json!({"event": "escalation", "subject": "subject", "text": "body", "data": {"kind": "escalation", "app": "web"}})
    );
}

#[tokio::test]
async fn email_goes_over_a_real_smtp_conversation_as_plain_text_and_html() {
    let smtp = Smtp::start("250 OK").await;
    let e = email::Email::new(
        &Secret::new(format!("smtp://127.0.0.1:{}", smtp.port)),
        "aiops <aiops@example.com>",
        &["ops@example.com".into(), "oncall@example.com".into()],
        None,
        None,
        Duration::from_secs(5),
    )
    .unwrap();
    let receipt = e
        .send(&msg("需要人工介入：web", "Tried <restart> & rollback"))
        .await
        .unwrap();
    assert_eq!(receipt.status, 250);
    let mails = smtp.mails();
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].from, "<aiops@example.com>");
    assert_eq!(mails[0].to, ["<ops@example.com>", "<oncall@example.com>"]);
    let data = &mails[0].data;
    assert!(
        data.contains("Subject: =?utf-8?"),
        "encoded UTF-8 subject: {data}"
    );
    assert!(data.contains("multipart/alternative"), "{data}");
    assert!(
        data.contains("Content-Type: text/plain; charset=utf-8"),
        "{data}"
    );
    assert!(
        data.contains("Content-Type: text/html; charset=utf-8"),
        "{data}"
    );
    assert!(data.contains("Tried <restart> & rollback"), "{data}");
    assert!(
        data.contains("Tried &lt;restart&gt; &amp; rollback"),
        "{data}"
    );
}

#[tokio::test]
async fn an_smtp_4xx_is_retried_and_a_5xx_is_not() {
    for (reply, retryable) in [("451 try later", true), ("550 no such user", false)] {
        let smtp = Smtp::start(reply).await;
        let e = email::Email::new(
            &Secret::new(format!("smtp://127.0.0.1:{}", smtp.port)),
            "aiops@example.com",
            &["ops@example.com".into()],
            None,
            None,
            Duration::from_secs(5),
        )
        .unwrap();
        let err = e.send(&msg("s", "b")).await.unwrap_err();
        assert_eq!(err.is_retryable(), retryable, "{reply}: {err}");
        assert_eq!(err.metric_label(), "smtp");
    }
}

fn write_config(dir: &std::path::Path, yaml: &str) -> String {
    let path = dir.join("aiops.yaml");
    std::fs::write(&path, yaml).unwrap();
    path.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_test_sends_through_the_config_file_and_prints_the_api_answer() {
    let api = StandIn::start().await;
    api.script(vec![
        Answer::new(200, r#"{"ok":true,"result":{"message_id":7}}"#),
        Answer::new(
            401,
            r#"{"ok":false,"error_code":401,"description":"Unauthorized"}"#,
        ),
    ]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), "999:file-token\n").unwrap();
    let cfg = write_config(
        dir.path(),
        &format!(
            "notify:\n  language: zh-TW\n  channels:\n    tg: {{type: telegram, bot_token_file: token, chat_id: 5, api_url: '{}'}}\n",
            api.url
        ),
    );
    let cwd = dir.path().to_path_buf();
    let (status, out, err) = tokio::task::spawn_blocking(move || {
        common::run_cli(
            &cwd,
            &["notify", "test", "tg", "--config", &cfg],
            &HashMap::new(),
        )
    })
    .await
    .unwrap();
    assert!(status.success(), "{out}{err}");
    assert_eq!(out.trim(), "sent to tg (telegram): 200 ok, message_id 7");
    let r = &api.requests()[0];
    assert_eq!(r.path, "/bot999:file-token/sendMessage");
    assert!(
        r.json()["text"]
            .as_str()
            .unwrap()
            .starts_with("<b>[aiops] 測試訊息</b>")
    );

    let cwd = dir.path().to_path_buf();
    let (status, out, err) = tokio::task::spawn_blocking(move || {
        common::run_cli(
            &cwd,
            &["--config", "aiops.yaml", "notify", "test", "tg"],
            &HashMap::new(),
        )
    })
    .await
    .unwrap();
    assert_eq!(status.code(), Some(1), "{out}{err}");
    assert!(
        err.contains("tg (telegram) refused the test message: telegram: HTTP 401: Unauthorized"),
        "{err}"
    );
    assert!(!err.contains("file-token") && !out.contains("file-token"));

    let cwd = dir.path().to_path_buf();
    let (status, _, err) = tokio::task::spawn_blocking(move || {
        common::run_cli(
            &cwd,
            &["--config", "aiops.yaml", "notify", "test", "nope"],
            &HashMap::new(),
        )
    })
    .await
    .unwrap();
    assert_eq!(status.code(), Some(1));
    assert!(
        err.contains("no channel \"nope\" in notify.channels (configured: tg)"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reports_a_chain_naming_an_unknown_route_with_its_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("rules")).unwrap();
    std::fs::write(
        dir.path().join("rules/r.yaml"),
        "rules:\n  - name: a\n    matchers: [a=b]\n    playbook: restart\n    escalate:\n      - notify: oncal\n",
    )
    .unwrap();
    let cfg = write_config(
        dir.path(),
        &format!(
            "rules_dir: rules\nplaybooks_dir: {}\nnotify:\n  channels:\n    oncall: {{type: slack, webhook_url_env: SLACK_URL}}\n",
            common::repo().join("playbooks").display()
        ),
    );
    let mut env = HashMap::new();
    env.insert(
        "SLACK_URL",
        "https://hooks.slack.com/services/T/B/x".to_string(),
    );
    let cwd = dir.path().to_path_buf();
    let (status, out, err) = tokio::task::spawn_blocking(move || {
        common::run_cli(&cwd, &["check", "--config", &cfg], &env)
    })
    .await
    .unwrap();
    assert_eq!(status.code(), Some(1), "{out}{err}");
    assert!(out.contains("notify: OK (1 channels, 0 routes)"), "{out}");
    assert!(
        err.contains("rules/r.yaml:2: rule \"a\" escalates to notify \"oncal\""),
        "{err}"
    );
    // Without the variable the channel's secret is missing: named, not guessed.
    let cwd = dir.path().to_path_buf();
    let (status, _, err) = tokio::task::spawn_blocking(move || {
        common::run_cli(&cwd, &["check", "--config", "aiops.yaml"], &HashMap::new())
    })
    .await
    .unwrap();
    assert_eq!(status.code(), Some(1));
    assert!(
        err.contains(
            "notify.channels.oncall: webhook_url_env: environment variable SLACK_URL is not set"
        ),
        "{err}"
    );
}

/// `aiops serve` with `config`, in `dir`, until it exits by itself (within 20 s, else it is
/// killed by its PID and the test fails): (exit code, stderr).
fn serve_until_it_exits(dir: &std::path::Path) -> (Option<i32>, String) {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_aiops"))
        .args(["--config", "aiops.yaml", "serve"])
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AIOPS_LISTEN", "127.0.0.1:0")
        .env("AIOPS_DATABASE_URL", "sqlite://aiops.db?mode=rwc")
        .env("TG_TOKEN", "123:tg-secret-value")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("aiops serve started although a channel cannot work");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    (status.code(), err)
}

/// One channel's missing variable affects that channel only: `notify test` on another works and
/// says nothing of it, `check` lists every broken channel, `serve` refuses to start naming the
/// channel and the variable, and no secret appears anywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_channel_affects_only_itself_notify_test_check_and_serve() {
    let api = StandIn::start().await;
    api.default_answer(Answer::new(200, r#"{"ok":true,"result":{"message_id":3}}"#));
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        &format!(
            "notify:\n  channels:\n    tg: {{type: telegram, bot_token_env: TG_TOKEN, chat_id: 5, api_url: '{}'}}\n    \
             team: {{type: slack, webhook_url_env: TEAM_SLACK_URL}}\n    \
             pager: {{type: line, channel_token_env: PAGER_TOKEN, to: U1}}\n  routes:\n    - channels: [tg, team]\n",
            api.url
        ),
    );
    let env: HashMap<&str, String> = [("TG_TOKEN", "123:tg-secret-value".to_string())].into();
    let run = |args: &'static [&'static str]| {
        let (cwd, env) = (dir.path().to_path_buf(), env.clone());
        tokio::task::spawn_blocking(move || common::run_cli(&cwd, args, &env))
    };

    let (status, out, err) = run(&["--config", "aiops.yaml", "notify", "test", "tg"])
        .await
        .unwrap();
    assert!(status.success(), "{out}{err}");
    assert_eq!(out.trim(), "sent to tg (telegram): 200 ok, message_id 3");
    for other in ["team", "pager", "TEAM_SLACK_URL", "PAGER_TOKEN"] {
        assert!(
            !out.contains(other) && !err.contains(other),
            "nothing about {other}: {out}{err}"
        );
    }

    let (status, _, err) = run(&["--config", "aiops.yaml", "notify", "test", "team"])
        .await
        .unwrap();
    assert_eq!(status.code(), Some(1));
    assert!(
        err.contains("error: team cannot be used: notify.channels.team: webhook_url_env: environment variable TEAM_SLACK_URL is not set"),
        "{err}"
    );

    let (status, out, err) = run(&["--config", "aiops.yaml", "check"]).await.unwrap();
    assert_eq!(status.code(), Some(1), "{out}{err}");
    assert!(
        err.contains(
            "notify.channels.pager: channel_token_env: environment variable PAGER_TOKEN is not set\n\
             notify.channels.team: webhook_url_env: environment variable TEAM_SLACK_URL is not set\n\
             notify: 2 channel(s) cannot work"
        ),
        "{err}"
    );
    assert!(!out.contains("notify: OK"), "{out}");
    // A broken channel does not hide the rest: rules and playbooks are still checked.
    assert!(
        out.contains("rules: ") && out.contains("playbooks: "),
        "{out}"
    );

    let cwd = dir.path().to_path_buf();
    let (code, err) = tokio::task::spawn_blocking(move || serve_until_it_exits(&cwd))
        .await
        .unwrap();
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("refusing to start"), "{err}");
    assert!(
        err.contains(
            "notify.channels.team: webhook_url_env: environment variable TEAM_SLACK_URL is not set"
        ) && err.contains(
            "notify.channels.pager: channel_token_env: environment variable PAGER_TOKEN is not set"
        ),
        "{err}"
    );
    assert!(!err.contains("tg-secret-value"), "{err}");
    assert!(
        !dir.path().join("aiops.db").exists(),
        "refused before the store was opened"
    );
}
