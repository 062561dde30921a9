//! LINE Messaging API push (`POST /v2/bot/message/push`).
//!
//! LINE Notify ended on 2025-03-31; the Messaging API is what remains. A push carries a
//! Bearer channel access token, the `to` user/group/room id, up to five text messages of at
//! most 5000 characters each, and an `X-Line-Retry-Key` (a UUID) that makes a retried push
//! idempotent: LINE answers 409 when it already accepted that key, which means delivered.
//!
//! With a `channel_secret` (which signs the webhooks LINE sends to `POST /chat/line/webhook`),
//! an approval request ends with a confirm template: the question and two postback actions
//! (`data` `aiops:approve:<job>` / `aiops:reject:<job>`). [`Line::reply`] answers a click
//! through the reply API with its `replyToken`.
//! <https://developers.line.biz/en/reference/messaging-api/#confirm>,
//! <https://developers.line.biz/en/reference/messaging-api/#postback-action>,
//! <https://developers.line.biz/en/reference/messaging-api/#send-reply-message>

use crate::secret::Secret;

use super::buttons::{self, Action};
use super::channel::Keys;
use super::config::Language;
use super::{ApprovalPrompt, Error, Message, Notifier, Receipt, Result, split_text};

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
    /// The channel secret: with it, approval requests carry Approve / Reject and webhooks to
    /// `POST /chat/line/webhook` are verified with it (`X-Line-Signature`).
    pub channel_secret: Option<Secret>,
}

impl LineConfig {
    /// Its secret keys.
    pub const SECRETS: &[&str] = &["channel_token", "channel_secret"];
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
            channel_secret: k.optional_secret("channel_secret"),
        })
    }
}

/// A LINE user, group or room.
pub struct Line {
    http: reqwest::Client,
    api_url: String,
    token: Secret,
    to: String,
    /// The buttons' language, when approval requests carry buttons.
    buttons: Option<Language>,
}

impl Line {
    /// A destination reached through the Messaging API at `api_url`.
    pub fn new(http: reqwest::Client, api_url: &str, token: Secret, to: &str) -> Line {
        Line {
            http,
            api_url: api_url.trim_end_matches('/').to_string(),
            token,
            to: to.to_string(),
            buttons: None,
        }
    }

    /// Approval requests get Approve / Reject labelled in `lang`.
    pub fn with_buttons(mut self, lang: Language) -> Line {
        self.buttons = Some(lang);
        self
    }

    /// The confirm template that asks for an approval (exactly two actions, as LINE requires).
    pub fn confirm(prompt: &ApprovalPrompt, lang: Language) -> serde_json::Value {
        let question = buttons::question(prompt, lang);
        let actions: Vec<_> = Action::ALL
            .into_iter()
            .map(|a| {
                serde_json::json!({
                    "type": "postback",
                    "label": a.label(lang),
                    "data": a.data(prompt.job_id),
                    "displayText": a.label(lang),
                })
            })
            .collect();
        serde_json::json!({
            "type": "template",
            "altText": question,
            "template": {"type": "confirm", "text": question, "actions": actions},
        })
    }

    /// Answers a webhook event through the reply API: one text message to the `reply_token`
    /// of the event (valid once, for a short while after the event).
    pub async fn reply(&self, reply_token: &str, text: &str) -> Result<()> {
        let resp = self
            .http
            .post(format!("{}/v2/bot/message/reply", self.api_url))
            .bearer_auth(self.token.expose())
            .json(&serde_json::json!({
                "replyToken": reply_token,
                "messages": [{"type": "text", "text": text}],
            }))
            .send()
            .await
            .map_err(|e| Error::from_reqwest("line", e))?;
        Self::check(resp).await.map(|_| ())
    }

    /// A non-2xx answer as an error with LINE's `message`; else the `x-line-request-id`.
    async fn check(resp: reqwest::Response) -> Result<String> {
        let status = resp.status();
        let request_id = resp
            .headers()
            .get("x-line-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_string();
        if status.is_success() {
            return Ok(request_id);
        }
        let headers = resp.headers().clone();
        let body: serde_json::Value = resp.json().await.unwrap_or_default();
        let detail = body["message"].as_str().unwrap_or("no message").to_string();
        Err(Error::from_status("line", status, &headers, detail))
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
        let mut pushes: Vec<Vec<serde_json::Value>> = Self::pushes(msg)
            .into_iter()
            .map(|texts| {
                texts
                    .iter()
                    .map(|t| serde_json::json!({"type": "text", "text": t}))
                    .collect()
            })
            .collect();
        if let (Some(lang), Some(prompt)) = (self.buttons, &msg.approval) {
            let confirm = Self::confirm(prompt, lang);
            match pushes.last_mut() {
                Some(last) if last.len() < MAX_MESSAGES => last.push(confirm),
                _ => pushes.push(vec![confirm]),
            }
        }
        let mut ids = Vec::new();
        for (i, messages) in pushes.into_iter().enumerate() {
            let resp = self
                .http
                .post(&url)
                .bearer_auth(self.token.expose())
                .header("X-Line-Retry-Key", Self::retry_key(&msg.retry_key, i))
                .json(&serde_json::json!({"to": self.to, "messages": messages}))
                .send()
                .await
                .map_err(|e| Error::from_reqwest("line", e))?;
            if resp.status().as_u16() == 409 {
                // Accepted earlier under this retry key: a previous attempt got through.
                let request_id = resp
                    .headers()
                    .get("x-line-request-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-");
                ids.push(format!("{request_id} (already accepted)"));
                continue;
            }
            ids.push(Self::check(resp).await?);
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
            approval: None,
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

    #[test]
    fn the_confirm_template_asks_with_two_postbacks_within_line_s_limits() {
        let prompt = ApprovalPrompt {
            job_id: 5,
            expires_at: "2026-11-30T12:00:00Z".into(),
            ..ApprovalPrompt::default()
        };
        let c = Line::confirm(&prompt, Language::ZhTw);
        assert_eq!(c["template"]["type"], "confirm");
        let text = c["template"]["text"].as_str().unwrap();
        assert_eq!(text, "是否核准修復 job 5？等候至 2026-11-30T12:00:00Z。");
        assert!(text.chars().count() <= 240);
        let data: Vec<_> = c["template"]["actions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| (a["type"].as_str().unwrap(), a["data"].as_str().unwrap()))
            .collect();
        assert_eq!(
            data,
            [
                ("postback", "aiops:approve:5"),
                ("postback", "aiops:reject:5")
            ]
        );
    }
}
