//! Stand-ins for the services the daemon calls: a recording HTTP server (Telegram, LINE, Slack
//! and webhook receivers, health endpoints a verification probes) and a minimal SMTP server
//! (RFC 5321: EHLO, MAIL, RCPT, DATA, QUIT). They only record what they are sent and answer as
//! scripted; the clients are the real ones.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::IntoResponse;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use super::wait;

/// A loopback address where nothing listens: bound to port 0, read and released. For a channel
/// that must fail to connect, and for programs that take their port on the command line.
pub fn closed_addr() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind 127.0.0.1:0")
        .local_addr()
        .expect("local addr")
}

/// One request a stand-in received.
#[derive(Clone, Debug)]
pub struct Request {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    /// The status the stand-in answered it with (scripted or default).
    pub status: u16,
}

impl Request {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
    /// The text of a message a webhook channel posted, once its event and subject are checked.
    pub fn webhook_text(&self, event: &str, subject: &str) -> String {
        let message = self.json();
        assert_eq!(message["event"], event, "{message:#}");
        assert_eq!(message["subject"], subject, "{message:#}");
        message["text"].as_str().unwrap().to_string()
    }
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    }
}

/// A scripted answer: status, extra headers, JSON or text body (`{uri}` in it is replaced by
/// the request's path and query, as a receiver echoing its input would).
#[derive(Clone, Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    pub fn new(status: u16, body: &str) -> Answer {
        Answer {
            status,
            headers: Vec::new(),
            body: body.into(),
        }
    }
    pub fn header(mut self, k: &str, v: &str) -> Answer {
        self.headers.push((k.into(), v.into()));
        self
    }
}

#[derive(Clone, Default)]
struct Shared {
    requests: Arc<Mutex<Vec<Request>>>,
    script: Arc<Mutex<VecDeque<Answer>>>,
    default: Arc<Mutex<Option<Answer>>>,
}

/// A recording HTTP server on 127.0.0.1; stops when dropped.
pub struct StandIn {
    pub url: String,
    shared: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(
    State(s): State<Shared>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    // Recorded and answered under one lock, so the record's order is the script's order.
    let mut requests = s.requests.lock().unwrap();
    let answer = s
        .script
        .lock()
        .unwrap()
        .pop_front()
        .or_else(|| s.default.lock().unwrap().clone())
        .unwrap_or_else(|| Answer::new(200, "ok"));
    requests.push(Request {
        path: uri.path().to_string(),
        headers,
        body: body.to_vec(),
        status: answer.status,
    });
    drop(requests);
    // A receiver that echoes what it was sent: `{uri}` becomes the path and query.
    let body = answer
        .body
        .replace("{uri}", uri.path_and_query().map_or("", |pq| pq.as_str()));
    let mut resp = (StatusCode::from_u16(answer.status).unwrap(), body).into_response();
    for (k, v) in answer.headers {
        resp.headers_mut().insert(
            axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    resp
}

impl StandIn {
    /// Answers 200 `ok` to everything unless scripted.
    pub async fn start() -> StandIn {
        let shared = Shared::default();
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        StandIn { url, shared, task }
    }

    /// The next answers, in order; then the default.
    pub fn script(&self, answers: Vec<Answer>) {
        self.shared.script.lock().unwrap().extend(answers);
    }

    /// The answer once the script is used up.
    pub fn default_answer(&self, a: Answer) {
        *self.shared.default.lock().unwrap() = Some(a);
    }

    pub fn requests(&self) -> Vec<Request> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// A stand-in answering every request with `status` and an empty body: a health endpoint
    /// for a verification to probe.
    pub async fn answering(status: u16) -> StandIn {
        let s = StandIn::start().await;
        s.default_answer(Answer::new(status, ""));
        s
    }

    /// Polls until `pred` holds for the requests (integration tests only).
    pub async fn wait_for(&self, what: &str, pred: impl Fn(&[Request]) -> bool) -> Vec<Request> {
        wait::until_ok(
            what,
            Duration::from_secs(30),
            async || {
                let r = self.requests();
                if pred(&r) {
                    Ok(r)
                } else {
                    Err(r
                        .iter()
                        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
                        .collect::<Vec<_>>())
                }
            },
            String::new,
        )
        .await
    }
}

/// One mail transaction the SMTP stand-in accepted.
#[derive(Clone, Debug, Default)]
pub struct Mail {
    pub from: String,
    pub to: Vec<String>,
    pub data: String,
}

/// A minimal SMTP server: records MAIL/RCPT/DATA; `rcpt_reply` scripts the RCPT answer.
pub struct Smtp {
    pub port: u16,
    pub mails: Arc<Mutex<Vec<Mail>>>,
    pub commands: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Smtp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Smtp {
    pub async fn start(rcpt_reply: &'static str) -> Smtp {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mails = Arc::new(Mutex::new(Vec::new()));
        let commands = Arc::new(Mutex::new(Vec::new()));
        let (m, c) = (mails.clone(), commands.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    return;
                };
                let (m, c) = (m.clone(), c.clone());
                tokio::spawn(async move {
                    let (r, mut w) = sock.into_split();
                    let mut lines = BufReader::new(r).lines();
                    w.write_all(b"220 standin ESMTP\r\n").await.unwrap();
                    let mut mail = Mail::default();
                    while let Ok(Some(line)) = lines.next_line().await {
                        c.lock().unwrap().push(line.clone());
                        let upper = line.to_ascii_uppercase();
                        let reply: String =
                            if upper.starts_with("EHLO") || upper.starts_with("HELO") {
                                "250-standin\r\n250-8BITMIME\r\n250 SIZE 10000000\r\n".into()
                            } else if upper.starts_with("MAIL FROM:") {
                                mail.from = line[10..].trim().to_string();
                                "250 OK\r\n".into()
                            } else if upper.starts_with("RCPT TO:") {
                                mail.to.push(line[8..].trim().to_string());
                                format!("{rcpt_reply}\r\n")
                            } else if upper == "DATA" {
                                w.write_all(b"354 go ahead\r\n").await.unwrap();
                                let mut data = String::new();
                                while let Ok(Some(l)) = lines.next_line().await {
                                    if l == "." {
                                        break;
                                    }
                                    data.push_str(&l);
                                    data.push('\n');
                                }
                                mail.data = data;
                                m.lock().unwrap().push(std::mem::take(&mut mail));
                                "250 OK queued as 1\r\n".into()
                            } else if upper == "QUIT" {
                                w.write_all(b"221 bye\r\n").await.unwrap();
                                return;
                            } else if upper == "RSET" || upper == "NOOP" {
                                "250 OK\r\n".into()
                            } else {
                                "502 not implemented\r\n".into()
                            };
                        w.write_all(reply.as_bytes()).await.unwrap();
                    }
                });
            }
        });
        Smtp {
            port,
            mails,
            commands,
            task,
        }
    }

    pub fn mails(&self) -> Vec<Mail> {
        self.mails.lock().unwrap().clone()
    }
}

/// A stand-in for the Telegram Bot API of one bot, as far as approvals use it
/// (<https://core.telegram.org/bots/api>): `sendMessage` answers the sent Message,
/// `getUpdates` long-polls (answers at once when an update at or past `offset` is queued, else
/// when one is queued or `timeout` runs out; updates below `offset` are confirmed and
/// forgotten, as Telegram does; a newer `getUpdates` terminates a waiting one with 409, as
/// Telegram does when two processes poll one bot), `answerCallbackQuery` and `editMessageText`
/// answer `true` and the edited Message. Every request is recorded with its method and JSON body.
pub struct TelegramBot {
    pub url: String,
    state: Arc<BotState>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct BotState {
    calls: Mutex<Vec<(String, serde_json::Value)>>,
    updates: Mutex<Vec<serde_json::Value>>,
    /// Answers 409 to getUpdates while set, as Telegram does while another poller runs.
    conflict: std::sync::atomic::AtomicBool,
    queued: tokio::sync::Notify,
    next_id: std::sync::atomic::AtomicI64,
    /// The generation of the latest getUpdates: an older one still waiting is terminated.
    polls: std::sync::atomic::AtomicU64,
}

impl Drop for TelegramBot {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One Bot API call the stand-in received.
#[derive(Clone, Debug)]
pub struct BotCall {
    pub method: String,
    pub body: serde_json::Value,
}

async fn bot_handle(
    State(s): State<Arc<BotState>>,
    axum::extract::Path((_token, method)): axum::extract::Path<(String, String)>,
    body: Bytes,
) -> axum::response::Response {
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    s.calls.lock().unwrap().push((method.clone(), body.clone()));
    let ok = |result: serde_json::Value| {
        axum::Json(serde_json::json!({"ok": true, "result": result})).into_response()
    };
    match method.as_str() {
        "getUpdates" => {
            let conflict = || {
                let answer = serde_json::json!({"ok": false, "error_code": 409, "description": "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running"});
                (StatusCode::CONFLICT, axum::Json(answer)).into_response()
            };
            if s.conflict.load(std::sync::atomic::Ordering::SeqCst) {
                return conflict();
            }
            let generation = s.polls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            // Wakes the waiting poll, if any, so it sees it was superseded.
            s.queued.notify_waiters();
            let offset = body["offset"].as_i64().unwrap_or(i64::MIN);
            let deadline = tokio::time::Instant::now()
                + Duration::from_secs(body["timeout"].as_u64().unwrap_or(0));
            loop {
                let queued = s.queued.notified();
                if s.polls.load(std::sync::atomic::Ordering::SeqCst) != generation {
                    return conflict();
                }
                let pending: Vec<_> = {
                    let mut updates = s.updates.lock().unwrap();
                    updates.retain(|u| u["update_id"].as_i64().unwrap() >= offset);
                    updates.clone()
                };
                if !pending.is_empty() || tokio::time::Instant::now() >= deadline {
                    return ok(serde_json::Value::Array(pending));
                }
                let _ = tokio::time::timeout_at(deadline, queued).await;
            }
        }
        "sendMessage" => {
            let id = s.next_id.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            ok(serde_json::json!({
                "message_id": id,
                "chat": {"id": body["chat_id"].as_str().and_then(|c| c.parse::<i64>().ok()), "type": "group"},
                "date": 0,
                "text": body["text"],
            }))
        }
        "answerCallbackQuery" => ok(serde_json::Value::Bool(true)),
        "editMessageText" | "editMessageReplyMarkup" => ok(serde_json::json!({
            "message_id": body["message_id"],
            "chat": {"id": body["chat_id"], "type": "group"},
            "date": 0,
            "text": body["text"],
        })),
        other => (
            StatusCode::NOT_FOUND,
            axum::Json(serde_json::json!({"ok": false, "error_code": 404, "description": format!("Not Found: method {other}")})),
        )
            .into_response(),
    }
}

impl TelegramBot {
    pub async fn start() -> TelegramBot {
        let state = Arc::new(BotState::default());
        let app = axum::Router::new()
            .route("/{token}/{method}", axum::routing::post(bot_handle))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        TelegramBot { url, state, task }
    }

    pub fn calls(&self) -> Vec<BotCall> {
        self.state
            .calls
            .lock()
            .unwrap()
            .iter()
            .map(|(method, body)| BotCall {
                method: method.clone(),
                body: body.clone(),
            })
            .collect()
    }

    /// The calls of one method.
    pub fn calls_of(&self, method: &str) -> Vec<serde_json::Value> {
        self.calls()
            .into_iter()
            .filter(|c| c.method == method)
            .map(|c| c.body)
            .collect()
    }

    /// While `on`, getUpdates answers 409 Conflict.
    pub fn conflict(&self, on: bool) {
        self.state
            .conflict
            .store(on, std::sync::atomic::Ordering::SeqCst);
    }

    /// Queues a click on an inline keyboard button, as a `callback_query` update
    /// (<https://core.telegram.org/bots/api#callbackquery>): `from` the user id, `message` the
    /// sent message (its `sendMessage` body) the keyboard was under.
    pub fn click(
        &self,
        update_id: i64,
        from: i64,
        name: &str,
        message: &serde_json::Value,
        data: &str,
    ) {
        let text = message["text"].as_str().unwrap_or_default();
        // What Telegram returns for HTML text: the plain text and its entities.
        let plain = text.replace("<b>", "").replace("</b>", "");
        let bold = plain
            .split('\n')
            .next()
            .unwrap_or_default()
            .encode_utf16()
            .count();
        let update = serde_json::json!({
            "update_id": update_id,
            "callback_query": {
                "id": format!("cq{update_id}"),
                "from": {"id": from, "is_bot": false, "first_name": name},
                "message": {
                    "message_id": message["message_id"],
                    "chat": {"id": message["chat_id"].as_str().and_then(|c| c.parse::<i64>().ok()), "type": "group"},
                    "date": 0,
                    "text": plain,
                    "entities": [{"type": "bold", "offset": 0, "length": bold}],
                },
                "chat_instance": "1",
                "data": data,
            }
        });
        self.state.updates.lock().unwrap().push(update);
        self.state.queued.notify_waiters();
    }

    /// The sendMessage bodies with the id each was answered with.
    pub fn sent(&self) -> Vec<serde_json::Value> {
        self.calls_of("sendMessage")
            .into_iter()
            .enumerate()
            .map(|(i, mut b)| {
                b["message_id"] = serde_json::json!(i as i64 + 1);
                b
            })
            .collect()
    }

    /// Waits for the first message sent with an inline keyboard (an approval request) and
    /// returns its `sendMessage` body, with the `message_id` it was answered with.
    pub async fn keyboard_message(&self) -> serde_json::Value {
        let with_keyboard = |m: &serde_json::Value| !m["reply_markup"].is_null();
        self.wait_for("a message with an inline keyboard", |c| {
            c.iter()
                .any(|c| c.method == "sendMessage" && with_keyboard(&c.body))
        })
        .await;
        self.sent().into_iter().find(with_keyboard).unwrap()
    }

    /// Polls until `pred` holds for the calls.
    pub async fn wait_for(&self, what: &str, pred: impl Fn(&[BotCall]) -> bool) -> Vec<BotCall> {
        wait::until_ok(
            what,
            Duration::from_secs(30),
            async || {
                let c = self.calls();
                if pred(&c) {
                    Ok(c)
                } else {
                    Err(c
                        .iter()
                        .map(|c| format!("{} {}", c.method, c.body))
                        .collect::<Vec<_>>())
                }
            },
            String::new,
        )
        .await
    }
}
