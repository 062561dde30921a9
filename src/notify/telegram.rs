//! Telegram Bot API `sendMessage` in HTML parse mode.
//!
//! HTML mode is the simplest correct escaping: only `&`, `<` and `>` (and `"` in attributes)
//! need it, where MarkdownV2 needs eighteen characters escaped by context. A message over
//! Telegram's 4096-character limit is sent as several, split at line breaks; the subject is
//! bold in the first. A 429 carries `parameters.retry_after`, which the dispatcher honours.

use crate::secret::Secret;

use super::channel::Keys;
use super::{Error, Message, Notifier, Receipt, Result, split_text};

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
        })
    }
}

/// A Telegram chat.
pub struct Telegram {
    http: reqwest::Client,
    api_url: String,
    token: Secret,
    chat_id: String,
}

impl Telegram {
    /// A chat reached through the Bot API at `api_url`.
    pub fn new(http: reqwest::Client, api_url: &str, token: Secret, chat_id: &str) -> Telegram {
        Telegram {
            http,
            api_url: api_url.trim_end_matches('/').to_string(),
            token,
            chat_id: chat_id.to_string(),
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
        // The token is part of the path: the URL never goes into an error or a log.
        let url = format!("{}/bot{}/sendMessage", self.api_url, self.token.expose());
        let mut ids = Vec::new();
        for text in Self::texts(msg) {
            let resp = self
                .http
                .post(&url)
                .json(&serde_json::json!({
                    "chat_id": self.chat_id,
                    "text": text,
                    "parse_mode": "HTML",
                    "disable_web_page_preview": true,
                }))
                .send()
                .await
                .map_err(|e| Error::from_reqwest("telegram", e))?;
            let status = resp.status();
            let headers = resp.headers().clone();
            let body: serde_json::Value = resp.json().await.unwrap_or(serde_json::Value::Null);
            if !status.is_success() || body["ok"] != serde_json::Value::Bool(true) {
                let detail = body["description"]
                    .as_str()
                    .unwrap_or("no description")
                    .chars()
                    .take(300)
                    .collect::<String>();
                let mut e = Error::from_status("telegram", status, &headers, detail);
                if let Error::Status { retry_after, .. } = &mut e
                    && let Some(s) = body["parameters"]["retry_after"].as_u64()
                {
                    *retry_after = Some(std::time::Duration::from_secs(s));
                }
                return Err(e);
            }
            ids.push(body["result"]["message_id"].to_string());
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
}
