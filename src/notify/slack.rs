//! Slack incoming webhook: `text` (the fallback for notifications) plus Block Kit blocks.
//!
//! The webhook URL is the credential, so it never appears in an error. Slack's mrkdwn needs
//! `&`, `<` and `>` escaped; a header block holds at most 150 characters and a section 3000.

use crate::secret::Secret;

use super::channel::Keys;
use super::{Error, Message, Notifier, Receipt, Result, split_text};

/// Longest header block text.
pub const MAX_HEADER: usize = 150;
/// Longest section text.
pub const MAX_SECTION: usize = 3000;

/// A Slack channel's settings (`type: slack`).
#[derive(Clone, Debug)]
pub struct SlackConfig {
    /// The webhook URL (it is the secret).
    pub webhook_url: Secret,
}

impl SlackConfig {
    /// Its secret keys.
    pub const SECRETS: &[&str] = &["webhook_url"];
    /// Default `rate_per_minute`: about one a second.
    pub const RATE_PER_MINUTE: u32 = 60;

    /// Checks the keys a Slack channel needs and refuses those of other types.
    pub fn from_keys(k: &Keys) -> Result<SlackConfig, String> {
        Ok(SlackConfig {
            webhook_url: k.secret_url_only("webhook_url")?,
        })
    }
}

/// A Slack incoming webhook.
pub struct Slack {
    http: reqwest::Client,
    url: Secret,
}

impl Slack {
    /// The webhook at `url`.
    pub fn new(http: reqwest::Client, url: Secret) -> Slack {
        Slack { http, url }
    }

    /// The JSON body posted for a message.
    pub fn payload(msg: &Message) -> serde_json::Value {
        let header: String = msg.subject.chars().take(MAX_HEADER).collect();
        let mut blocks = vec![serde_json::json!({
            "type": "header",
            "text": {"type": "plain_text", "text": header, "emoji": true},
        })];
        let escaped = escape(&msg.body);
        for part in split_text(&escaped, MAX_SECTION, |s| s.chars().count()) {
            if part.is_empty() {
                continue;
            }
            blocks.push(serde_json::json!({
                "type": "section",
                "text": {"type": "mrkdwn", "text": part},
            }));
        }
        serde_json::json!({
            "text": format!("{}\n{}", escape(&msg.subject), escaped),
            "blocks": blocks,
        })
    }
}

/// Escapes text for Slack mrkdwn.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[async_trait::async_trait]
impl Notifier for Slack {
    async fn send(&self, msg: &Message) -> Result<Receipt> {
        let resp = self
            .http
            .post(self.url.expose())
            .json(&Self::payload(msg))
            .send()
            .await
            .map_err(|e| Error::from_reqwest("slack", e))?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = super::body_text(resp).await;
        if !status.is_success() {
            return Err(Error::from_status("slack", status, &headers, text));
        }
        Ok(Receipt {
            status: status.as_u16(),
            detail: text,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_is_escaped_into_sections_under_a_plain_header() {
        let msg = Message {
            subject: "web <prod>".into(),
            body: format!("a & <b>\n{}", "x".repeat(4000)),
            event_json: "{}".into(),
            retry_key: "k".into(),
            event: "test".into(),
        };
        let p = Slack::payload(&msg);
        assert_eq!(p["blocks"][0]["text"]["text"], "web <prod>");
        let first = p["blocks"][1]["text"]["text"].as_str().unwrap();
        assert!(first.starts_with("a &amp; &lt;b&gt;\nxxx"), "{first}");
        assert_eq!(first.chars().count(), MAX_SECTION);
        assert_eq!(p["blocks"].as_array().unwrap().len(), 3);
        assert!(
            p["text"]
                .as_str()
                .unwrap()
                .starts_with("web &lt;prod&gt;\n")
        );
    }
}
