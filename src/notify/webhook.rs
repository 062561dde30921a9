//! Generic webhook: POST the event as JSON, with the rendered subject and text beside it.
//!
//! The body is `{"event": KIND, "subject": …, "text": …, "data": EVENT}` and the request
//! carries `Idempotency-Key` (the same on every retry of one message) so a receiver can drop
//! repeats. The URL may hold a token, so it never appears in an error.

use crate::config::Secret;

use super::{Error, Message, Notifier, Receipt, Result};

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
