//! Telegram Bot API `sendMessage` in HTML parse mode.
//!
//! HTML mode is the simplest correct escaping: only `&`, `<` and `>` (and `"` in attributes)
//! need it, where MarkdownV2 needs eighteen characters escaped by context. A message over
//! Telegram's 4096-character limit is sent as several, split at line breaks; the subject is
//! bold in the first. A 429 carries `parameters.retry_after`, which the dispatcher honours.
//!
//! With `approvals: true` an approval request carries an inline keyboard (Approve / Reject,
//! [`super::buttons`]) under its last part, and the daemon polls the bot for the clicks
//! (`crate::chat::telegram`). [`Telegram::call`] is the one Bot API call both sides use: the
//! method URL (which holds the token), the `ok`/`description` answer, `retry_after`.
//! <https://core.telegram.org/bots/api#inlinekeyboardmarkup>

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::secret::Secret;

use super::buttons::Action;
use super::channel::Keys;
use super::config::Language;
use super::{ApprovalPrompt, Error, Message, Notifier, Receipt, Result, split_text};

/// Telegram's limit on one message's text.
pub const MAX_CHARS: usize = 4096;

/// A Telegram channel's settings (`type: telegram`).
#[derive(Clone, Debug)]
pub struct TelegramConfig {
    /// Bot token.
    pub bot_token: Secret,
    /// Chat id (a number, or `@channelname`).
    pub chat_id: String,
    /// API base URL (default `https://api.telegram.org`).
    pub api_url: String,
    /// `approvals: true`: approval requests carry Approve / Reject buttons and the daemon
    /// polls this bot (`getUpdates`) for the clicks.
    pub approvals: bool,
}

impl TelegramConfig {
    /// Its secret keys.
    pub const SECRETS: &[&str] = &["bot_token"];
    /// Default `rate_per_minute`: Telegram allows about 20 messages a minute to one group.
    pub const RATE_PER_MINUTE: u32 = 20;

    /// Checks the keys a Telegram channel needs and refuses those of other types.
    pub fn from_keys(k: &Keys) -> Result<TelegramConfig, String> {
        k.only(
            !k.to.is_empty() || k.from.is_some() || k.username.is_some(),
            "to/from/username",
        )?;
        Ok(TelegramConfig {
            bot_token: k.secret("bot_token")?,
            chat_id: k
                .chat_id
                .filter(|c| !c.is_empty())
                .ok_or("type telegram needs chat_id")?
                .to_string(),
            api_url: k.api_base("https://api.telegram.org")?,
            approvals: k.approvals.unwrap_or(false),
        })
    }
}

/// A Telegram chat.
pub struct Telegram {
    http: reqwest::Client,
    api_url: String,
    token: Secret,
    chat_id: String,
    /// The buttons' language, when approval requests carry buttons.
    buttons: Option<Language>,
}

/// Telegram's answer to every method: `ok`, then `result` or `description` (and, on a 429,
/// `parameters.retry_after`). <https://core.telegram.org/bots/api#making-requests>
#[derive(serde::Deserialize)]
struct Answer<T> {
    ok: bool,
    result: Option<T>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    parameters: Option<Parameters>,
}

#[derive(serde::Deserialize)]
struct Parameters {
    #[serde(default)]
    retry_after: Option<u64>,
}

/// The part of a sent message the receipt names.
#[derive(serde::Deserialize)]
struct Sent {
    message_id: i64,
}

impl Telegram {
    /// A chat reached through the Bot API at `api_url`.
    pub fn new(http: reqwest::Client, api_url: &str, token: Secret, chat_id: &str) -> Telegram {
        Telegram {
            http,
            api_url: api_url.trim_end_matches('/').to_string(),
            token,
            chat_id: chat_id.to_string(),
            buttons: None,
        }
    }

    /// Approval requests get Approve / Reject buttons labelled in `lang`.
    pub fn with_buttons(mut self, lang: Language) -> Telegram {
        self.buttons = Some(lang);
        self
    }

    /// The inline keyboard of an approval request: one row, Approve then Reject.
    pub fn keyboard(prompt: &ApprovalPrompt, lang: Language) -> serde_json::Value {
        let row: Vec<_> = Action::ALL
            .into_iter()
            .map(|a| serde_json::json!({"text": a.label(lang), "callback_data": a.data(prompt.job_id)}))
            .collect();
        serde_json::json!({ "inline_keyboard": [row] })
    }

    /// Calls Bot API `method` with a JSON body and returns its `result`. A non-2xx status or
    /// `ok: false` is an [`Error::Status`] with Telegram's `description` (and `retry_after`);
    /// the URL, which holds the token, never goes into an error or a log.
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: &str,
        body: &impl Serialize,
    ) -> Result<T> {
        let url = format!("{}/bot{}/{method}", self.api_url, self.token.expose());
        let resp = self
            .http
            .post(&url)
            .json(body)
            .send()
            .await
            .map_err(|e| Error::from_reqwest("telegram", e))?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let answer: Option<Answer<T>> = resp.json().await.ok();
        match answer {
            Some(Answer {
                ok: true,
                result: Some(result),
                ..
            }) if status.is_success() => Ok(result),
            other => {
                let (detail, retry_after) = match other {
                    Some(a) => (
                        a.description.unwrap_or_else(|| "no description".into()),
                        a.parameters.and_then(|p| p.retry_after),
                    ),
                    None => ("unreadable answer".into(), None),
                };
                let detail = detail.chars().take(300).collect::<String>();
                let mut e = Error::from_status("telegram", status, &headers, detail);
                if let Error::Status {
                    retry_after: ra, ..
                } = &mut e
                    && let Some(s) = retry_after
                {
                    *ra = Some(std::time::Duration::from_secs(s));
                }
                Err(e)
            }
        }
    }

    /// The texts to send: escaped HTML, each within [`MAX_CHARS`] (counted in UTF-16 units,
    /// as Telegram counts).
    pub fn texts(msg: &Message) -> Vec<String> {
        let header = format!("<b>{}</b>\n\n", escape(&msg.subject));
        let utf16 = |s: &str| escape(s).encode_utf16().count();
        let room = MAX_CHARS.saturating_sub(header.encode_utf16().count());
        let parts = split_text(&msg.body, room, utf16);
        parts
            .iter()
            .enumerate()
            .map(|(i, p)| {
                if i == 0 {
                    format!("{header}{}", escape(p))
                } else {
                    escape(p)
                }
            })
            .collect()
    }
}

/// Escapes text for Telegram's HTML parse mode.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

#[async_trait::async_trait]
impl Notifier for Telegram {
    async fn send(&self, msg: &Message) -> Result<Receipt> {
        let texts = Self::texts(msg);
        let last = texts.len() - 1;
        let mut ids = Vec::new();
        for (i, text) in texts.into_iter().enumerate() {
            let mut body = serde_json::json!({
                "chat_id": self.chat_id,
                "text": text,
                "parse_mode": "HTML",
                "disable_web_page_preview": true,
            });
            // The buttons go under the last part, where the reader ends up.
            if i == last
                && let (Some(lang), Some(prompt)) = (self.buttons, &msg.approval)
            {
                body["reply_markup"] = Self::keyboard(prompt, lang);
            }
            let sent: Sent = self.call("sendMessage", &body).await?;
            ids.push(sent.message_id.to_string());
        }
        Ok(Receipt {
            status: 200,
            detail: format!("ok, message_id {}", ids.join(", ")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(subject: &str, body: &str) -> Message {
        Message {
            subject: subject.into(),
            body: body.into(),
            event_json: "{}".into(),
            retry_key: "k".into(),
            event: "test".into(),
            approval: None,
        }
    }

    #[test]
    fn html_special_characters_are_escaped_and_the_subject_is_bold() {
        let t = Telegram::texts(&msg("a<b>", "x & y <script>"));
        assert_eq!(t, vec!["<b>a&lt;b&gt;</b>\n\nx &amp; y &lt;script&gt;"]);
    }

    #[test]
    fn a_long_message_is_split_within_the_limit_after_escaping() {
        let body = "<&>\n".repeat(2000);
        let t = Telegram::texts(&msg("s", &body));
        assert!(t.len() >= 3, "{}", t.len());
        assert!(t.iter().all(|p| p.encode_utf16().count() <= MAX_CHARS));
        assert!(t.iter().all(|p| !p.ends_with('&')));
    }

    #[test]
    fn the_keyboard_is_one_row_of_approve_then_reject_with_the_job_in_the_data() {
        let prompt = ApprovalPrompt {
            job_id: 42,
            ..ApprovalPrompt::default()
        };
        let k = Telegram::keyboard(&prompt, Language::ZhTw);
        assert_eq!(
            k,
            serde_json::json!({"inline_keyboard": [[
                {"text": "✅ 核准", "callback_data": "aiops:approve:42"},
                {"text": "❌ 拒絕", "callback_data": "aiops:reject:42"},
            ]]})
        );
    }
}
