//! Slack incoming webhook: `text` (the fallback for notifications) plus Block Kit blocks.
//!
//! The webhook URL is the credential, so it never appears in an error. Slack's mrkdwn needs
//! `&`, `<` and `>` escaped; a header block holds at most 150 characters and a section 3000.
//!
//! With a `signing_secret` (the Slack app's, which signs the clicks it sends to
//! `POST /chat/slack/interactions`), an approval request ends with the question and an
//! `actions` block of two buttons (`action_id` `aiops_approve` / `aiops_reject`, `value` the job
//! id); incoming webhooks accept Block Kit, and the clicks reach the app's interactivity URL.
//! <https://api.slack.com/reference/block-kit/blocks#actions>,
//! <https://api.slack.com/reference/block-kit/block-elements#button>

use crate::secret::Secret;

use super::buttons::{self, Action};
use super::channel::Keys;
use super::config::Language;
use super::{ApprovalPrompt, Error, Message, Notifier, Receipt, Result, split_text};

/// The `block_id` of the buttons' block (the question's is this with `_question`): what the
/// update after a click removes.
pub const APPROVAL_BLOCK: &str = "aiops_approval";

/// Longest header block text.
pub const MAX_HEADER: usize = 150;
/// Longest section text.
pub const MAX_SECTION: usize = 3000;

/// A Slack channel's settings (`type: slack`).
#[derive(Clone, Debug)]
pub struct SlackConfig {
    /// The webhook URL (it is the secret).
    pub webhook_url: Secret,
    /// The Slack app's signing secret: with it, approval requests carry buttons and clicks are
    /// verified with it at `POST /chat/slack/interactions`.
    pub signing_secret: Option<Secret>,
}

impl SlackConfig {
    /// Its secret keys.
    pub const SECRETS: &[&str] = &["webhook_url", "signing_secret"];
    /// Default `rate_per_minute`: about one a second.
    pub const RATE_PER_MINUTE: u32 = 60;

    /// Checks the keys a Slack channel needs and refuses those of other types.
    pub fn from_keys(k: &Keys) -> Result<SlackConfig, String> {
        Ok(SlackConfig {
            webhook_url: k.secret_url_only("webhook_url")?,
            signing_secret: k.optional_secret("signing_secret"),
        })
    }
}

/// A Slack incoming webhook.
pub struct Slack {
    http: reqwest::Client,
    url: Secret,
    /// The buttons' language, when approval requests carry buttons.
    buttons: Option<Language>,
}

impl Slack {
    /// The webhook at `url`.
    pub fn new(http: reqwest::Client, url: Secret) -> Slack {
        Slack {
            http,
            url,
            buttons: None,
        }
    }

    /// Approval requests get Approve / Reject buttons labelled in `lang`.
    pub fn with_buttons(mut self, lang: Language) -> Slack {
        self.buttons = Some(lang);
        self
    }

    /// The blocks that ask for an approval: the question, then the two buttons.
    pub fn approval_blocks(prompt: &ApprovalPrompt, lang: Language) -> [serde_json::Value; 2] {
        let elements: Vec<_> = Action::ALL
            .into_iter()
            .map(|a| {
                serde_json::json!({
                    "type": "button",
                    "text": {"type": "plain_text", "text": a.label(lang), "emoji": true},
                    "action_id": a.slack_action_id(),
                    "value": prompt.job_id.to_string(),
                    "style": if a == Action::Approve { "primary" } else { "danger" },
                })
            })
            .collect();
        [
            serde_json::json!({
                "type": "section",
                "block_id": format!("{APPROVAL_BLOCK}_question"),
                "text": {"type": "mrkdwn", "text": escape(&buttons::question(prompt, lang))},
            }),
            serde_json::json!({"type": "actions", "block_id": APPROVAL_BLOCK, "elements": elements}),
        ]
    }

    /// The JSON body posted for a message; `buttons` is the buttons' language when the channel
    /// can receive clicks.
    pub fn payload(msg: &Message, buttons: Option<Language>) -> serde_json::Value {
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
        if let (Some(lang), Some(prompt)) = (buttons, &msg.approval) {
            blocks.extend(Self::approval_blocks(prompt, lang));
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
            .json(&Self::payload(msg, self.buttons))
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
            approval: None,
        };
        let p = Slack::payload(&msg, Some(Language::En));
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

    #[test]
    fn an_approval_request_ends_with_the_question_and_two_buttons_carrying_the_job() {
        let msg = Message {
            subject: "s".into(),
            body: "b".into(),
            event_json: "{}".into(),
            retry_key: "k".into(),
            event: "approval_requested".into(),
            approval: Some(ApprovalPrompt {
                job_id: 9,
                expires_at: "2026-11-30T12:00:00Z".into(),
                ..ApprovalPrompt::default()
            }),
        };
        let without = Slack::payload(&msg, None);
        assert_eq!(
            without["blocks"].as_array().unwrap().len(),
            2,
            "no secret, no buttons"
        );
        let p = Slack::payload(&msg, Some(Language::En));
        let blocks = p["blocks"].as_array().unwrap();
        assert_eq!(
            blocks[2]["text"]["text"],
            "Approve repair job 9? Waiting until 2026-11-30T12:00:00Z."
        );
        assert_eq!(blocks[3]["block_id"], APPROVAL_BLOCK);
        let buttons: Vec<_> = blocks[3]["elements"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| {
                (
                    b["action_id"].as_str().unwrap(),
                    b["value"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(buttons, [("aiops_approve", "9"), ("aiops_reject", "9")]);
    }
}
