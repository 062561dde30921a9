//! Slack interactivity: `POST /chat/slack/interactions`, where Slack posts a click on a
//! message's buttons.
//!
//! Slack sends `application/x-www-form-urlencoded` with one field, `payload`, a JSON
//! `block_actions` payload: `user.id`, `actions[].action_id`/`value`, `response_url`, and the
//! message clicked. The request is verified first ([`super::signature::slack`]); the click goes
//! to the approval core; the endpoint answers 200 at once (Slack wants an answer within three
//! seconds), and the message is then replaced through `response_url` (`replace_original`)
//! without its buttons and with who decided. A refused clicker gets an ephemeral answer and
//! the buttons stay for the others.
//! <https://api.slack.com/interactivity/handling>,
//! <https://api.slack.com/reference/interaction-payloads/block-actions>

use serde::Deserialize;

use super::{Click, Deciding, Error, Result, closes_the_request};
use crate::notify::NotifySettings;
use crate::notify::buttons::Action;
use crate::notify::channel::ChannelKind;
use crate::notify::slack::{APPROVAL_BLOCK, escape};
use crate::rules::Platform;
use crate::secret::Secret;

/// The Slack receiver: every Slack channel's signing secret.
pub struct Interactions {
    secrets: Vec<(String, Secret)>,
    deciding: Deciding,
    http: reqwest::Client,
}

/// A `block_actions` payload, the fields used.
#[derive(Debug, Deserialize)]
struct Payload {
    #[serde(rename = "type")]
    kind: String,
    user: User,
    #[serde(default)]
    actions: Vec<SlackAction>,
    #[serde(default)]
    response_url: Option<String>,
    #[serde(default)]
    message: Option<Original>,
}

#[derive(Debug, Deserialize)]
struct User {
    id: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    username: Option<String>,
}

#[derive(Debug, Deserialize)]
struct SlackAction {
    action_id: String,
    #[serde(default)]
    value: Option<String>,
}

/// The message clicked, as Slack echoes it: its fallback text and blocks, kept as they are
/// (this module only removes the buttons' block and adds a line).
#[derive(Debug, Deserialize)]
struct Original {
    #[serde(default)]
    text: String,
    #[serde(default)]
    blocks: Vec<serde_json::Value>,
}

/// What the endpoint did with a verified request.
#[derive(Debug, PartialEq, Eq)]
pub enum Handled {
    /// A click on an aiops button was decided (the message update is on its way).
    Decided,
    /// Something else (another interaction type, another app's button): acknowledged.
    Ignored,
}

impl Interactions {
    /// The receiver, when a Slack channel has a signing secret.
    pub fn new(
        settings: &NotifySettings,
        deciding: Deciding,
        http: reqwest::Client,
    ) -> Option<Interactions> {
        let secrets: Vec<_> = settings
            .channels
            .iter()
            .filter_map(|(name, c)| match &c.kind {
                ChannelKind::Slack(s) => s.signing_secret.clone().map(|k| (name.clone(), k)),
                _ => None,
            })
            .collect();
        (!secrets.is_empty()).then_some(Interactions {
            secrets,
            deciding,
            http,
        })
    }

    /// Verifies and handles one request: `timestamp` and `signature` are Slack's headers,
    /// `body` the raw form body, `now_secs` the clock.
    pub async fn handle(
        &self,
        timestamp: Option<&str>,
        signature: Option<&str>,
        body: &[u8],
        now_secs: i64,
    ) -> Result<Handled> {
        let channel = super::signature::slack(&self.secrets, timestamp, signature, body, now_secs)?;
        let payload = parse(body)?;
        if payload.kind != "block_actions" {
            return Ok(Handled::Ignored);
        }
        let Some((action, job_id)) = payload.actions.iter().find_map(|a| {
            Action::parse_slack(&a.action_id, a.value.as_deref().unwrap_or_default())
        }) else {
            return Ok(Handled::Ignored);
        };
        let who = super::approver(Platform::Slack, &payload.user.id)?;
        let name = payload
            .user
            .name
            .clone()
            .or_else(|| payload.user.username.clone())
            .unwrap_or_else(|| payload.user.id.clone());
        let click = Click {
            action,
            job_id,
            who,
            name,
            via: channel.to_string(),
        };
        let update = match self.deciding.click(&click).await {
            Ok(outcome) if closes_the_request(&outcome) => replaced(
                payload.message,
                &self.deciding.decided_line(&click, &outcome),
            ),
            Ok(outcome) => ephemeral(&outcome.sentence(self.deciding.lang())),
            Err(e) => {
                tracing::error!(error = %e, job = job_id, channel, "recording a Slack approval click failed");
                ephemeral(self.deciding.failed_sentence())
            }
        };
        if let Some(url) = payload.response_url {
            let http = self.http.clone();
            let channel = channel.to_string();
            // After the answer: Slack shows an error to the clicker when the 200 is late.
            tokio::spawn(async move {
                let sent = http.post(&url).json(&update).send().await;
                match sent {
                    Ok(r) if r.status().is_success() => {}
                    Ok(r) => tracing::warn!(
                        channel,
                        status = r.status().as_u16(),
                        "Slack refused the message update (response_url)"
                    ),
                    // The URL is Slack's one-time credential for this message: never logged.
                    Err(e) => {
                        tracing::warn!(channel, error = %e.without_url(), "updating the Slack message (response_url) failed")
                    }
                }
            });
        }
        Ok(Handled::Decided)
    }
}

/// Reads the form body's `payload` field.
fn parse(body: &[u8]) -> Result<Payload> {
    let json = form_urlencoded::parse(body)
        .find(|(k, _)| k == "payload")
        .map(|(_, v)| v.into_owned())
        .ok_or_else(|| Error::Payload("no payload field in the form body".into()))?;
    serde_json::from_str(&json).map_err(|e| Error::Payload(format!("payload: {e}")))
}

/// The message again, without the approval's question and buttons, with `line` at the end.
fn replaced(original: Option<Original>, line: &str) -> serde_json::Value {
    let Original { text, blocks } = original.unwrap_or(Original {
        text: String::new(),
        blocks: Vec::new(),
    });
    let mut blocks: Vec<_> = blocks
        .into_iter()
        .filter(|b| !is_approval_block(b))
        .collect();
    blocks.push(serde_json::json!({
        "type": "context",
        "elements": [{"type": "mrkdwn", "text": escape(line)}],
    }));
    let text = if text.is_empty() {
        escape(line)
    } else {
        format!("{text}\n{}", escape(line))
    };
    serde_json::json!({"replace_original": true, "text": text, "blocks": blocks})
}

/// The question and the buttons ([`crate::notify::slack::Slack::approval_blocks`]).
fn is_approval_block(b: &serde_json::Value) -> bool {
    b["block_id"]
        .as_str()
        .is_some_and(|id| id.starts_with(APPROVAL_BLOCK))
}

/// An answer only the clicker sees; the message stays as it is.
fn ephemeral(sentence: &str) -> serde_json::Value {
    serde_json::json!({
        "response_type": "ephemeral",
        "replace_original": false,
        "text": escape(sentence),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_form_payload_is_read_and_the_update_drops_only_the_approval_blocks() {
        let json = r#"{"type":"block_actions","user":{"id":"U1","name":"ann"},"actions":[{"action_id":"aiops_reject","value":"12"}],"response_url":"http://127.0.0.1:1/r","message":{"text":"t","blocks":[{"type":"header","block_id":"h"},{"type":"section","block_id":"aiops_approval_question"},{"type":"actions","block_id":"aiops_approval"}]}}"#;
        let body: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("payload", json)
            .finish();
        let p = parse(body.as_bytes()).unwrap();
        assert_eq!(
            (p.kind.as_str(), p.user.id.as_str()),
            ("block_actions", "U1")
        );
        let update = replaced(p.message, "❌ Rejected by ann (slack:U1)");
        let ids: Vec<_> = update["blocks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["type"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["header", "context"]);
        assert_eq!(update["text"], "t\n❌ Rejected by ann (slack:U1)");
        assert!(parse(b"payload=%7Bnot json").is_err());
        assert!(parse(b"other=1").is_err());
    }
}
