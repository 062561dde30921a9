//! Telegram approvals by long polling: a task per bot calls `getUpdates` (only
//! `callback_query` updates) on the channel's `api_url`, and for each click on an aiops button
//! calls the approval core, answers the query (`answerCallbackQuery`: the outcome as a toast,
//! an alert for a refused clicker) and edits the message (`editMessageText`: the same text and
//! formatting plus who decided, and no keyboard). No public endpoint is needed.
//!
//! - **One poller per bot.** Channels that share a bot token (two chats of one bot) share one
//!   task; the chat the click came from names the channel.
//! - **Replicas.** Telegram answers 409 to a `getUpdates` while another is running for the
//!   same bot (or while a webhook is set). Several replicas therefore take turns: a replica
//!   that gets a 409 logs it once, backs off and tries again later. Whichever replica receives
//!   a click, the core decides it exactly once, so sharing the bot is safe.
//! - **Offsets.** An update is confirmed when `getUpdates` is next called with a higher
//!   `offset`; Telegram keeps that, so a restarted daemon (or another replica) gets only
//!   unconfirmed updates. Each batch is confirmed by the next poll, and the last one at
//!   shutdown. A click handled but not yet confirmed when the process died is delivered
//!   again, which is harmless: the core answers "already decided", and the edit shows the
//!   same.
//!
//! <https://core.telegram.org/bots/api#getupdates>, <https://core.telegram.org/bots/api#callbackquery>,
//! <https://core.telegram.org/bots/api#answercallbackquery>,
//! <https://core.telegram.org/bots/api#editmessagetext>

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::watch;

use super::{Click, Deciding, closes_the_request};
use crate::notify::NotifySettings;
use crate::notify::buttons::Action;
use crate::notify::channel::ChannelKind;
use crate::notify::telegram::Telegram;
use crate::rules::Platform;

/// How long one `getUpdates` waits for a click (Telegram's long poll), in seconds.
pub const POLL_TIMEOUT_SECS: u64 = 25;
/// The wait after a 409 (another poller has the bot) before trying again.
pub const CONFLICT_BACKOFF: Duration = Duration::from_secs(30);
/// The longest wait after other failures (doubling from one second).
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// One bot's poller.
pub struct Poller {
    bot: Telegram,
    /// The channels on this bot: chat id → channel name (the first is the default).
    channels: BTreeMap<String, String>,
    first: String,
    deciding: Deciding,
}

/// One update: only callback queries are asked for.
#[derive(Debug, Deserialize)]
struct Update {
    update_id: i64,
    #[serde(default)]
    callback_query: Option<CallbackQuery>,
}

#[derive(Debug, Deserialize)]
struct CallbackQuery {
    id: String,
    from: User,
    #[serde(default)]
    message: Option<ClickedMessage>,
    #[serde(default)]
    data: Option<String>,
}

#[derive(Debug, Deserialize)]
struct User {
    id: i64,
    #[serde(default)]
    first_name: String,
    #[serde(default)]
    last_name: Option<String>,
    #[serde(default)]
    username: Option<String>,
}

/// The message the keyboard was under: its text and formatting come back as text plus
/// entities (kept as Telegram sent them, to send them back unchanged).
#[derive(Debug, Deserialize)]
struct ClickedMessage {
    message_id: i64,
    chat: Chat,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    entities: Vec<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
struct Chat {
    id: i64,
}

impl User {
    fn display_name(&self) -> String {
        let full = match &self.last_name {
            Some(last) => format!("{} {last}", self.first_name),
            None => self.first_name.clone(),
        };
        match (&self.username, full.trim().is_empty()) {
            (Some(u), true) => format!("@{u}"),
            (_, true) => self.id.to_string(),
            _ => full.trim().to_string(),
        }
    }
}

/// The pollers of the configured Telegram channels with `approvals: true`, one per bot.
pub fn pollers(settings: &NotifySettings, deciding: &Deciding) -> Vec<Poller> {
    // Requests wait up to POLL_TIMEOUT_SECS for an answer: the shared client's timeout would
    // cut every long poll, so the pollers have their own.
    let http = crate::notify::http_client(Duration::from_secs(POLL_TIMEOUT_SECS + 15));
    let mut bots: BTreeMap<(String, String), Poller> = BTreeMap::new();
    for (name, c) in &settings.channels {
        let ChannelKind::Telegram(t) = &c.kind else {
            continue;
        };
        if !t.approvals {
            continue;
        }
        let key = (t.api_url.clone(), t.bot_token.expose().to_string());
        let poller = bots.entry(key).or_insert_with(|| Poller {
            bot: Telegram::new(http.clone(), &t.api_url, t.bot_token.clone(), &t.chat_id),
            channels: BTreeMap::new(),
            first: name.clone(),
            deciding: deciding.clone(),
        });
        poller.channels.insert(t.chat_id.clone(), name.clone());
    }
    bots.into_values().collect()
}

impl Poller {
    /// The channel names this poller serves (for logs).
    pub fn channel_names(&self) -> Vec<&str> {
        self.channels.values().map(String::as_str).collect()
    }

    /// Polls until `shutdown` becomes true, then confirms what it handled.
    pub fn spawn(self, mut shutdown: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut offset: Option<i64> = None;
            let mut failures: u32 = 0;
            let mut conflicted = false;
            tracing::info!(channels = ?self.channel_names(), "polling Telegram for approval clicks");
            loop {
                if *shutdown.borrow() {
                    break;
                }
                let polled = tokio::select! {
                    r = self.poll(offset, POLL_TIMEOUT_SECS) => r,
                    _ = shutdown.changed() => break,
                };
                let wait = match polled {
                    Ok(updates) => {
                        if conflicted || failures > 0 {
                            tracing::info!(channels = ?self.channel_names(), "Telegram polling resumed");
                        }
                        conflicted = false;
                        failures = 0;
                        for u in updates {
                            offset = Some(offset.unwrap_or(i64::MIN).max(u.update_id + 1));
                            if let Some(q) = u.callback_query {
                                self.handle(q).await;
                            }
                        }
                        continue;
                    }
                    Err(e) if e.http_status() == Some(409) => {
                        if !conflicted {
                            tracing::warn!(channels = ?self.channel_names(), error = %e, backoff = ?CONFLICT_BACKOFF, "another getUpdates is polling this bot (another replica, or a webhook is set): backing off; replicas take turns safely, since each click is decided once");
                        }
                        conflicted = true;
                        CONFLICT_BACKOFF
                    }
                    Err(e) => {
                        failures += 1;
                        let wait = Duration::from_secs(1u64 << failures.min(6)).min(MAX_BACKOFF);
                        if failures == 1 {
                            tracing::warn!(channels = ?self.channel_names(), error = %e, "polling Telegram failed; retrying with backoff");
                        } else {
                            tracing::debug!(error = %e, retry_in = ?wait, "polling Telegram failed again");
                        }
                        wait
                    }
                };
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.changed() => break,
                }
            }
            // Confirm what was handled, so the next start does not receive it again.
            if offset.is_some() {
                let confirm = self.poll(offset, 0);
                if let Ok(Err(e)) = tokio::time::timeout(Duration::from_secs(5), confirm).await {
                    tracing::debug!(error = %e, "confirming the last Telegram updates failed; they are handled again at the next start, harmlessly");
                }
            }
        })
    }

    async fn poll(&self, offset: Option<i64>, timeout: u64) -> crate::notify::Result<Vec<Update>> {
        let mut body = serde_json::json!({
            "timeout": timeout,
            "allowed_updates": ["callback_query"],
        });
        if let Some(o) = offset {
            body["offset"] = o.into();
        }
        self.bot.call("getUpdates", &body).await
    }

    /// One click: decide, answer the query, edit the message.
    async fn handle(&self, q: CallbackQuery) {
        let Some((action, job_id)) = q.data.as_deref().and_then(Action::parse) else {
            // Not our button: stop the client's spinner and leave it.
            self.answer(&q.id, None, false).await;
            return;
        };
        let via = q
            .message
            .as_ref()
            .and_then(|m| self.channels.get(&m.chat.id.to_string()))
            .unwrap_or(&self.first)
            .clone();
        let Ok(who) = super::approver(Platform::Telegram, &q.from.id.to_string()) else {
            return;
        };
        let click = Click {
            action,
            job_id,
            who,
            name: q.from.display_name(),
            via,
        };
        match self.deciding.click(&click).await {
            Ok(outcome) => {
                let refused = !closes_the_request(&outcome);
                let sentence = outcome.sentence(self.deciding.lang());
                self.answer(&q.id, Some(&sentence), refused).await;
                if !refused && let Some(m) = q.message {
                    self.edit(m, &self.deciding.decided_line(&click, &outcome))
                        .await;
                }
            }
            Err(e) => {
                // The update is confirmed all the same (a stuck update would block every
                // later click); the clicker is asked to click again, which is a new update.
                tracing::error!(error = %e, job = job_id, channel = %click.via, "recording a Telegram approval click failed");
                self.answer(&q.id, Some(self.deciding.failed_sentence()), true)
                    .await;
            }
        }
    }

    /// `answerCallbackQuery`: Telegram shows `text` as a toast, or an alert to dismiss.
    async fn answer(&self, id: &str, text: Option<&str>, alert: bool) {
        let mut body = serde_json::json!({ "callback_query_id": id, "show_alert": alert });
        if let Some(t) = text {
            // Telegram's limit on the text: 200 characters.
            body["text"] = t.chars().take(200).collect::<String>().into();
        }
        if let Err(e) = self.bot.call::<bool>("answerCallbackQuery", &body).await {
            // A query older than Telegram keeps it (a click handled again after a restart).
            tracing::debug!(error = %e, "answerCallbackQuery failed");
        }
    }

    /// `editMessageText`: the same text and entities, the decided line after them, and an
    /// empty keyboard (the buttons go).
    async fn edit(&self, m: ClickedMessage, line: &str) {
        let text = match m.text.as_deref() {
            Some(t) if !t.is_empty() => format!("{t}\n\n{line}"),
            _ => line.to_string(),
        };
        let body = serde_json::json!({
            "chat_id": m.chat.id,
            "message_id": m.message_id,
            "text": text,
            // Offsets count from the start: appending leaves the original formatting in place.
            "entities": m.entities,
            "reply_markup": {"inline_keyboard": []},
        });
        let Err(e) = self
            .bot
            .call::<serde_json::Value>("editMessageText", &body)
            .await
        else {
            return;
        };
        // "message is not modified" (another replica or click edited it first), or the text
        // grew past Telegram's limit: at least the buttons go.
        tracing::debug!(error = %e, "editMessageText failed; removing the buttons only");
        let body = serde_json::json!({
            "chat_id": m.chat.id,
            "message_id": m.message_id,
            "reply_markup": {"inline_keyboard": []},
        });
        if let Err(e) = self
            .bot
            .call::<serde_json::Value>("editMessageReplyMarkup", &body)
            .await
        {
            tracing::debug!(error = %e, "editMessageReplyMarkup failed");
        }
    }
}
