//! LINE webhook: `POST /chat/line/webhook`, where the LINE Platform posts the events of the
//! bot's chats, among them the `postback` of a tap on Approve / Reject.
//!
//! The body is verified first ([`super::signature::line`]: `X-Line-Signature` with the channel
//! secret). Each `postback` event whose `data` is an aiops button (`aiops:approve:<job>`) is a
//! click by `source.userId`; the outcome is answered with the reply API (`replyToken`, on the
//! channel's `api_url`), since a LINE message cannot be edited. Every other event (messages,
//! follows, the console's verification request with no events) is acknowledged and ignored.
//! <https://developers.line.biz/en/reference/messaging-api/#webhook-event-objects>,
//! <https://developers.line.biz/en/reference/messaging-api/#postback-event>

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{Click, Deciding, Error, Result, closes_the_request};
use crate::notify::NotifySettings;
use crate::notify::buttons::Action;
use crate::notify::channel::ChannelKind;
use crate::notify::line::Line;
use crate::rules::Platform;
use crate::secret::Secret;

/// The LINE receiver: every LINE channel's secret, and its client for replies.
pub struct Webhook {
    secrets: Vec<(String, Secret)>,
    replies: BTreeMap<String, std::sync::Arc<Line>>,
    deciding: Deciding,
}

/// A webhook body, the fields used.
#[derive(Debug, Deserialize)]
struct Body {
    #[serde(default)]
    events: Vec<Event>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Event {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    reply_token: Option<String>,
    #[serde(default)]
    source: Option<Source>,
    #[serde(default)]
    postback: Option<Postback>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Source {
    #[serde(default)]
    user_id: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Postback {
    data: String,
}

impl Webhook {
    /// The receiver, when a LINE channel has a channel secret.
    pub fn new(
        settings: &NotifySettings,
        deciding: Deciding,
        http: reqwest::Client,
    ) -> Option<Webhook> {
        let mut secrets = Vec::new();
        let mut replies = BTreeMap::new();
        for (name, c) in &settings.channels {
            if let ChannelKind::Line(l) = &c.kind
                && let Some(secret) = &l.channel_secret
            {
                secrets.push((name.clone(), secret.clone()));
                let client = Line::new(http.clone(), &l.api_url, l.channel_token.clone(), &l.to);
                replies.insert(name.clone(), std::sync::Arc::new(client));
            }
        }
        (!secrets.is_empty()).then_some(Webhook {
            secrets,
            replies,
            deciding,
        })
    }

    /// Verifies and handles one webhook; returns how many clicks were decided.
    pub async fn handle(&self, signature: Option<&str>, body: &[u8]) -> Result<usize> {
        let channel = super::signature::line(&self.secrets, signature, body)?;
        let body: Body =
            serde_json::from_slice(body).map_err(|e| Error::Payload(format!("body: {e}")))?;
        let mut decided = 0;
        for event in body.events {
            let (Some(postback), Some(user)) = (
                event.postback.filter(|_| event.kind == "postback"),
                event.source.and_then(|s| s.user_id),
            ) else {
                continue;
            };
            let Some((action, job_id)) = Action::parse(&postback.data) else {
                continue;
            };
            // One unusable event must not cost the others in the same webhook their answer.
            let Ok(who) = super::approver(Platform::Line, &user) else {
                tracing::info!(channel, "LINE postback from an unusable user id ignored");
                continue;
            };
            let click = Click {
                action,
                job_id,
                who,
                name: user,
                via: channel.to_string(),
            };
            let text = match self.deciding.click(&click).await {
                Ok(outcome) if closes_the_request(&outcome) => {
                    self.deciding.decided_line(&click, &outcome)
                }
                Ok(outcome) => outcome.sentence(self.deciding.lang()),
                Err(e) => {
                    tracing::error!(error = %e, job = job_id, channel, "recording a LINE approval click failed");
                    self.deciding.failed_sentence().to_string()
                }
            };
            decided += 1;
            if let (Some(token), Some(line)) = (event.reply_token, self.replies.get(channel)) {
                let (line, channel) = (line.clone(), channel.to_string());
                // After the answer: LINE redelivers a webhook whose answer is late.
                tokio::spawn(async move {
                    if let Err(e) = line.reply(&token, &text).await {
                        tracing::warn!(channel, error = %e, "replying to a LINE approval click failed");
                    }
                });
            }
        }
        Ok(decided)
    }
}
