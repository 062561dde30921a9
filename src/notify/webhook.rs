//! Generic webhook: POST the event as JSON, with the rendered subject and text beside it.
//!
//! The body is `{"event": KIND, "subject": …, "text": …, "data": EVENT}` (an
//! `approval_requested` event's `data.approval` holds this channel's own signed
//! `approve_url`/`reject_url`, empty without `external_url`) and the request
//! carries `Idempotency-Key` (the same on every retry of one message) so a receiver can drop
//! repeats. The URL may hold a token, so it never appears in an error.

use crate::secret::Secret;

use super::channel::Keys;
use super::{Error, Message, Notifier, Receipt, Result};

/// A webhook channel's settings (`type: webhook`).
#[derive(Clone, Debug)]
pub struct WebhookConfig {
    /// The URL (may carry a token, so it is treated as a secret).
    pub url: Secret,
}

impl WebhookConfig {
    /// Its secret keys.
    pub const SECRETS: &[&str] = &["url"];
    /// Default `rate_per_minute`.
    pub const RATE_PER_MINUTE: u32 = 60;

    /// Checks the keys a webhook channel needs and refuses those of other types.
    pub fn from_keys(k: &Keys) -> Result<WebhookConfig, String> {
        Ok(WebhookConfig {
            url: k.secret_url_only("url")?,
        })
    }
}

/// A webhook receiver.
pub struct Webhook {
    http: reqwest::Client,
    url: Secret,
}

impl Webhook {
    /// The receiver at `url`.
    pub fn new(http: reqwest::Client, url: Secret) -> Webhook {
        Webhook { http, url }
    }

    /// The JSON body posted for a message.
    pub fn payload(msg: &Message) -> serde_json::Value {
        let data: serde_json::Value =
            serde_json::from_str(&msg.event_json).unwrap_or(serde_json::Value::Null);
        serde_json::json!({
            "event": msg.event,
            "subject": msg.subject,
            "text": msg.body,
            "data": data,
        })
    }
}

#[async_trait::async_trait]
impl Notifier for Webhook {
    async fn send(&self, msg: &Message) -> Result<Receipt> {
        let resp = self
            .http
            .post(self.url.expose())
            .header("Idempotency-Key", &msg.retry_key)
            .json(&Self::payload(msg))
            .send()
            .await
            .map_err(|e| Error::from_reqwest("webhook", e))?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = super::body_text(resp).await;
        if !status.is_success() {
            return Err(Error::from_status("webhook", status, &headers, text));
        }
        Ok(Receipt {
            status: status.as_u16(),
            detail: text,
        })
    }
}
