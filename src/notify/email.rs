//! Email over SMTP with lettre: plain text plus an HTML alternative.
//!
//! `smtp_url` picks the transport the way lettre reads it: `smtp://host:25` plain (a local
//! relay), `smtp://host:587?tls=required` STARTTLS, `smtps://host:465` implicit TLS; user and
//! password may be in the URL or given as `username` / `password`. TLS is rustls on aws-lc-rs,
//! the one provider of the binary. A 4xx reply or a connection problem is retried; 5xx is not.

use std::time::Duration;

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use crate::secret::Secret;

use super::channel::Keys;
use super::{Error, Message, Notifier, Receipt, Result};

/// An email channel's settings (`type: email`).
#[derive(Clone, Debug)]
pub struct EmailConfig {
    /// `smtp://host:25` (plain, for a local relay), `smtp://host:587?tls=required`
    /// (STARTTLS), `smtps://host:465` (implicit TLS); credentials may be in the URL.
    pub smtp_url: Secret,
    /// Sender.
    pub from: String,
    /// Recipients.
    pub to: Vec<String>,
    /// SMTP user (with `password`), when not in the URL.
    pub username: Option<String>,
    /// SMTP password.
    pub password: Option<Secret>,
}

impl EmailConfig {
    /// Its secret keys.
    pub const SECRETS: &[&str] = &["smtp_url", "password"];
    /// Default `rate_per_minute`.
    pub const RATE_PER_MINUTE: u32 = 30;

    /// Checks the keys an email channel needs (addresses and URL included) and refuses those
    /// of other types.
    pub fn from_keys(k: &Keys) -> Result<EmailConfig, String> {
        k.only(
            k.api_url.is_some() || k.chat_id.is_some(),
            "api_url/chat_id (smtp_url is the address)",
        )?;
        let smtp_url = k.secret("smtp_url")?;
        let password = k.optional_secret("password");
        if password.is_some() != k.username.is_some() {
            return Err("username and password go together".into());
        }
        let from = k.from.ok_or("type email needs from")?.to_string();
        if k.to.is_empty() {
            return Err("type email needs at least one address in to".into());
        }
        check(&smtp_url, &from, k.to)?;
        Ok(EmailConfig {
            smtp_url,
            from,
            to: k.to.to_vec(),
            username: k.username.map(String::from),
            password,
        })
    }
}

/// An SMTP relay and the addresses to write to.
pub struct Email {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    to: Vec<Mailbox>,
}

/// Checks an email channel's settings (for `aiops check`); the message names no secret.
pub fn check(smtp_url: &Secret, from: &str, to: &[String]) -> Result<(), String> {
    AsyncSmtpTransport::<Tokio1Executor>::from_url(smtp_url.expose()).map_err(|e| {
        format!(
            "smtp_url is not usable ({})",
            super::redact::redact(&e.to_string(), std::slice::from_ref(smtp_url))
        )
    })?;
    from.parse::<Mailbox>()
        .map_err(|e| format!("from {from:?}: {e}"))?;
    for t in to {
        t.parse::<Mailbox>().map_err(|e| format!("to {t:?}: {e}"))?;
    }
    Ok(())
}

impl Email {
    /// A channel through the relay at `smtp_url`.
    pub fn new(
        smtp_url: &Secret,
        from: &str,
        to: &[String],
        username: Option<&str>,
        password: Option<&Secret>,
        timeout: Duration,
    ) -> Result<Email> {
        check(smtp_url, from, to).map_err(Error::Invalid)?;
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::from_url(smtp_url.expose())
            .map_err(|_| Error::Invalid("email: smtp_url is not usable".into()))?
            .timeout(Some(timeout));
        if let (Some(user), Some(pw)) = (username, password) {
            builder = builder.credentials(Credentials::new(user.into(), pw.expose().into()));
        }
        Ok(Email {
            transport: builder.build(),
            from: from
                .parse()
                .map_err(|e| Error::Invalid(format!("email from: {e}")))?,
            to: to
                .iter()
                .map(|t| {
                    t.parse()
                        .map_err(|e| Error::Invalid(format!("email to: {e}")))
                })
                .collect::<Result<_>>()?,
        })
    }

    /// The HTML alternative: the escaped text, line breaks kept.
    pub fn html(msg: &Message) -> String {
        let esc = |s: &str| {
            s.replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
                .replace('"', "&quot;")
        };
        let mut body = esc(&msg.body);
        // An approval request's signed links are made clickable (the text part keeps them
        // plain); nothing else in a body is turned into markup.
        #[derive(serde::Deserialize)]
        struct Prompted {
            approval: Option<super::ApprovalPrompt>,
        }
        if let Ok(Prompted {
            approval: Some(prompt),
        }) = serde_json::from_str::<Prompted>(&msg.event_json)
        {
            for url in [&prompt.approve_url, &prompt.reject_url] {
                if url.starts_with("http") {
                    let url = esc(url);
                    body = body.replace(&url, &format!("<a href=\"{url}\">{url}</a>"));
                }
            }
        }
        format!(
            "<!DOCTYPE html><html><body><h3>{}</h3><pre style=\"font-family:sans-serif;white-space:pre-wrap\">{}</pre></body></html>",
            esc(&msg.subject),
            body
        )
    }
}

#[async_trait::async_trait]
impl Notifier for Email {
    async fn send(&self, msg: &Message) -> Result<Receipt> {
        let mut builder = lettre::Message::builder()
            .from(self.from.clone())
            .subject(msg.subject.replace(['\r', '\n'], " "))
            .message_id(Some(format!("<{}@aiops>", msg.retry_key)));
        for t in &self.to {
            builder = builder.to(t.clone());
        }
        let email = builder
            .multipart(MultiPart::alternative_plain_html(
                msg.body.clone(),
                Self::html(msg),
            ))
            .map_err(|e| Error::Invalid(format!("email: {e}")))?;
        match self.transport.send(email).await {
            Ok(resp) => Ok(Receipt {
                status: u16::from(resp.code()),
                detail: resp.message().collect::<Vec<_>>().join(" "),
            }),
            Err(e) => Err(Error::Smtp {
                retryable: !e.is_permanent(),
                detail: e.to_string(),
            }),
        }
    }
}
