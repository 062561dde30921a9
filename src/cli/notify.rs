//! `aiops notify test CHANNEL`: one message through a configured channel, rendered by the
//! daemon's outbox templates and sent by the channel's own client, its answer printed with every
//! configured secret redacted.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;

use aiops::app;
use aiops::config::Settings;
use aiops::notify::{self, Event, EventKind, Message};

/// `aiops notify`'s subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Send a test message to one channel of notify.channels and print the API's answer;
    /// exit 1 when the channel refuses, cannot be reached, or cannot work (a missing
    /// `*_env` variable); other channels' problems do not matter here.
    Test {
        /// The channel name.
        channel: String,
        /// The text (default: a line naming the channel and the host).
        #[arg(long)]
        message: Option<String>,
    },
}

/// Sends the test message; exit 1 when the channel refuses it or cannot be reached.
pub async fn run(config: Option<&Path>, cmd: Command) -> Result<ExitCode> {
    let Command::Test { channel, message } = cmd;
    let settings = Settings::load(config)?;
    // Another channel's problem is not this one's: only the named channel must work.
    if let Some(problem) = settings.notify.broken.get(&channel) {
        eprintln!("error: {channel} cannot be used: {problem}");
        return Ok(ExitCode::FAILURE);
    }
    let Some(ch) = settings.notify.channels.get(&channel) else {
        let known: Vec<_> = settings.notify.specs.keys().cloned().collect();
        anyhow::bail!(
            "no channel {channel:?} in notify.channels (configured: {})",
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        );
    };
    let notifier = notify::notifier(
        &ch.kind,
        &notify::http_client(settings.notify.timeout.0),
        settings.notify.timeout.0,
        settings.notify.language,
    )?;
    let outbox = app::outbox(&settings)?;
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "aiops".into());
    let event = Event {
        kind: EventKind::Test,
        message: message.unwrap_or_else(|| {
            format!(
                "aiops notify test: channel {channel} ({}) from {host} works.",
                ch.kind.type_name()
            )
        }),
        at: chrono::Utc::now().to_rfc3339(),
        ..Event::default()
    };
    let (subject, body) = outbox.templates().render(&event);
    let msg = Message {
        subject,
        body,
        event_json: serde_json::to_string(&event)?,
        retry_key: uuid::Uuid::new_v4().to_string(),
        event: EventKind::Test.as_str().to_string(),
        approval: None,
    };
    let redactor = notify::dispatch::Redactor::new(ch.kind.secrets());
    match notifier.send(&msg).await {
        Ok(receipt) => {
            println!(
                "sent to {channel} ({}): {} {}",
                ch.kind.type_name(),
                receipt.status,
                redactor.redact(&receipt.detail)
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            let e = redactor.error(e);
            eprintln!(
                "error: {channel} ({}) refused the test message: {}{}",
                ch.kind.type_name(),
                e,
                if e.is_retryable() {
                    " (temporary: the daemon would retry)"
                } else {
                    ""
                }
            );
            Ok(ExitCode::FAILURE)
        }
    }
}
