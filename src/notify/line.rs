//! LINE Messaging API push (`POST /v2/bot/message/push`).
//!
//! LINE Notify ended on 2025-03-31; the Messaging API is what remains. A push carries a
//! Bearer channel access token, the `to` user/group/room id, up to five text messages of at
//! most 5000 characters each, and an `X-Line-Retry-Key` (a UUID) that makes a retried push
//! idempotent: LINE answers 409 when it already accepted that key, which means delivered.

use crate::secret::Secret;

use super::channel::Keys;
use super::{Error, Message, Notifier, Receipt, Result, split_text};

/// LINE's limit on one text message.
pub const MAX_CHARS: usize = 5000;
/// Messages in one push.
pub const MAX_MESSAGES: usize = 5;

/// A LINE channel's settings (`type: line`).
#[derive(Clone, Debug)]
pub struct LineConfig {
    /// Channel access token.
    pub channel_token: Secret,
    /// User, group or room id.
    pub to: String,
    /// API base URL (default `https://api.line.me`).
    pub api_url: String,
}

impl LineConfig {
    /// Its secret keys.
    pub const SECRETS: &[&str] = &["channel_token"];
    /// Default `rate_per_minute`: about one a second.
    pub const RATE_PER_MINUTE: u32 = 60;

    /// Checks the keys a LINE channel needs and refuses those of other types.
    pub fn from_keys(k: &Keys) -> Result<LineConfig, String> {
        k.only(
            k.chat_id.is_some() || k.from.is_some() || k.username.is_some(),
            "chat_id/from/username",
        )?;
        let [to] = k.to else {
            return Err("type line needs one `to` (a user, group or room id)".into());
        };
        Ok(LineConfig {
            channel_token: k.secret("channel_token")?,
            to: to.clone(),
            api_url: k.api_base("https://api.line.me")?,
        })
    }
}

/// A LINE user, group or room.
pub struct Line {
    http: reqwest::Client,
    api_url: String,
    token: Secret,
    to: String,
}

impl Line {
    /// A destination reached through the Messaging API at `api_url`.
    pub fn new(http: reqwest::Client, api_url: &str, token: Secret, to: &str) -> Line {
        Line {
            http,
            api_url: api_url.trim_end_matches('/').to_string(),
            token,
            to: to.to_string(),
        }
    }

    /// The pushes to make: groups of at most five texts of at most 5000 UTF-16 units each.
    pub fn pushes(msg: &Message) -> Vec<Vec<String>> {
        let text = format!("{}\n\n{}", msg.subject, msg.body);
        let parts = split_text(&text, MAX_CHARS, |s| s.encode_utf16().count());
        parts.chunks(MAX_MESSAGES).map(<[String]>::to_vec).collect()
    }

    /// The retry key of push `i` of a message: the message's key for the first, a key derived
    /// from it for the others, so every retry of the same push reuses the same key.
    pub fn retry_key(key: &str, i: usize) -> String {
        if i == 0 {
            return key.to_string();
        }
        let base = uuid::Uuid::parse_str(key).map_or(0, |u| u.as_u128());
        let derived = base ^ ((i as u128) << 64) ^ (i as u128);
        uuid::Builder::from_random_bytes(derived.to_be_bytes())
            .into_uuid()
            .to_string()
    }
}

#[async_trait::async_trait]
impl Notifier for Line {
    async fn send(&self, msg: &Message) -> Result<Receipt> {
        let url = format!("{}/v2/bot/message/push", self.api_url);
        let mut ids = Vec::new();
        for (i, texts) in Self::pushes(msg).into_iter().enumerate() {
            let messages: Vec<_> = texts
                .iter()
                .map(|t| serde_json::json!({"type": "text", "text": t}))
                .collect();
            let resp = self
                .http
                .post(&url)
                .bearer_auth(self.token.expose())
                .header("X-Line-Retry-Key", Self::retry_key(&msg.retry_key, i))
                .json(&serde_json::json!({"to": self.to, "messages": messages}))
                .send()
                .await
                .map_err(|e| Error::from_reqwest("line", e))?;
            let status = resp.status();
            let request_id = resp
                .headers()
                .get("x-line-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
                .to_string();
            if status.as_u16() == 409 {
                // Accepted earlier under this retry key: a previous attempt got through.
                ids.push(format!("{request_id} (already accepted)"));
                continue;
            }
            if !status.is_success() {
                let headers = resp.headers().clone();
                let body: serde_json::Value = resp.json().await.unwrap_or_default();
                let detail = body["message"].as_str().unwrap_or("no message").to_string();
                return Err(Error::from_status("line", status, &headers, detail));
            }
            ids.push(request_id);
        }
        Ok(Receipt {
            status: 200,
            detail: format!("ok, x-line-request-id {}", ids.join(", ")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_retry_keys_are_stable_distinct_uuids() {
        let k = uuid::Uuid::new_v4().to_string();
        assert_eq!(Line::retry_key(&k, 0), k);
        assert_eq!(Line::retry_key(&k, 1), Line::retry_key(&k, 1));
        assert_ne!(Line::retry_key(&k, 1), Line::retry_key(&k, 2));
        assert!(uuid::Uuid::parse_str(&Line::retry_key(&k, 3)).is_ok());
    }

    #[test]
    fn six_long_parts_make_two_pushes() {
        let msg = Message {
            subject: "s".into(),
            body: "字".repeat(5 * MAX_CHARS + 10),
            event_json: "{}".into(),
            retry_key: uuid::Uuid::new_v4().to_string(),
            event: "test".into(),
        };
        let pushes = Line::pushes(&msg);
        assert_eq!(pushes.iter().map(Vec::len).collect::<Vec<_>>(), vec![5, 1]);
        assert!(
            pushes
                .iter()
                .flatten()
                .all(|t| t.encode_utf16().count() <= MAX_CHARS)
        );
    }
}
