//! Approvals from chat: a click on Approve / Reject in Telegram, Slack or LINE becomes a
//! decision of the approval core ([`crate::approval::decide`]), and the clicker is told what it
//! did.
//!
//! - [`telegram`]: a long-polling task per bot (`getUpdates`, no public endpoint needed) that
//!   answers each callback query and edits the message to show who decided;
//! - [`slack`]: `POST /chat/slack/interactions`, verified with the app's signing secret, the
//!   message replaced through the interaction's `response_url`;
//! - [`line`]: `POST /chat/line/webhook`, verified with the channel secret, answered with the
//!   reply API;
//! - [`signature`]: the HMAC-SHA256 checks the two endpoints share (aws-lc-rs, the binary's one
//!   crypto provider; comparisons in constant time).
//!
//! The buttons themselves are rendered by the notify channels ([`crate::notify::buttons`]).
//! Every path ends in [`Deciding::click`]: the core checks the allow-list snapshotted in the
//! job, records the decision (and a refused click) with who, where and when, and moves the job
//! once, however many replicas or clicks race. That is also why re-handling a click (a
//! Telegram update delivered again after a restart, a Slack retry) is harmless: the second
//! time the core answers "already decided".

pub mod line;
pub mod signature;
pub mod slack;
pub mod telegram;

use std::sync::Arc;

use crate::approval::{self, Choice, Decider, Outcome};
use crate::notify::buttons::Action;
use crate::notify::channel::ChannelKind;
use crate::notify::config::Language;
use crate::notify::{NotifySettings, Outbox};
use crate::rules::{Approver, Platform};
use crate::store::{self, Store};

/// Why a chat request was refused or could not be handled. Never holds a secret.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A header the platform always sends is missing or unreadable.
    #[error("missing or unreadable {0} header")]
    MissingHeader(&'static str),
    /// The request's timestamp is outside the accepted window (a replay, or a bad clock).
    #[error("request timestamp is {0} s away from now (at most 300 s accepted)")]
    Stale(i64),
    /// No configured secret produced the request's signature.
    #[error("signature does not match")]
    BadSignature,
    /// The body is not what the platform documents.
    #[error("unreadable payload: {0}")]
    Payload(String),
    /// The approval core failed (the store).
    #[error(transparent)]
    Approval(#[from] approval::Error),
}

impl Error {
    /// Whether the request is refused as unauthenticated (401) rather than malformed (400) or
    /// failed on our side (503).
    pub fn is_unauthenticated(&self) -> bool {
        matches!(
            self,
            Error::MissingHeader(_) | Error::Stale(_) | Error::BadSignature
        )
    }
}

/// `type Result<T, E = Error>` as in every module of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What every receiver needs to turn a click into a decision: the store, the outbox (the core
/// enqueues what a decision tells people) and the language the clicker is answered in.
#[derive(Clone)]
pub struct Deciding {
    store: Store,
    outbox: Option<Arc<Outbox>>,
    lang: Language,
    /// The maintenance windows: an approval while one holds the repair says when it runs.
    maintenance: crate::maintenance::Windows,
}

/// One click, as every platform reports it.
#[derive(Clone, Debug)]
pub struct Click {
    /// Approve or reject, and which job.
    pub action: Action,
    /// The job.
    pub job_id: i64,
    /// Who clicked (`telegram:<id>`, `slack:<id>`, `line:<id>`).
    pub who: Approver,
    /// Their display name, for messages (the id when the platform gives none).
    pub name: String,
    /// The channel the click came through.
    pub via: String,
}

impl Deciding {
    /// Receivers over this store and outbox, answering in `lang`, with the daemon's
    /// maintenance windows.
    pub fn new(
        store: Store,
        outbox: Option<Arc<Outbox>>,
        lang: Language,
        maintenance: crate::maintenance::Windows,
    ) -> Deciding {
        Deciding {
            store,
            outbox,
            lang,
            maintenance,
        }
    }

    /// The language clickers are answered in (`notify.language`).
    pub fn lang(&self) -> Language {
        self.lang
    }

    /// Hands a click to the approval core and logs what it did (ids only: no secret, and no
    /// message text).
    pub async fn click(&self, click: &Click) -> Result<Outcome> {
        let choice = match click.action {
            Action::Approve => Choice::Approve,
            Action::Reject => Choice::Reject,
        };
        let by = Decider {
            who: click.who.clone(),
            name: click.name.clone(),
            via: click.via.clone(),
        };
        let outcome = approval::decide(
            &self.store,
            self.outbox.as_deref(),
            &self.maintenance.snapshot(),
            click.job_id,
            choice,
            &by,
            store::now_ms(),
        )
        .await?;
        tracing::info!(
            job = click.job_id,
            channel = %click.via,
            approver = %click.who,
            action = ?click.action,
            outcome = %outcome.sentence(Language::En),
            "approval click"
        );
        Ok(outcome)
    }

    /// The line a message gains once decided: who decided, or what the click found.
    pub fn decided_line(&self, click: &Click, outcome: &Outcome) -> String {
        let who = format!("{} ({})", click.name, click.who);
        match (outcome, self.lang) {
            (Outcome::Approved { .. }, Language::En) => format!("✅ Approved by {who}"),
            (Outcome::Approved { .. }, Language::ZhTw) => format!("✅ 已由 {who} 核准"),
            (Outcome::Rejected { .. }, Language::En) => format!("❌ Rejected by {who}"),
            (Outcome::Rejected { .. }, Language::ZhTw) => format!("❌ 已由 {who} 拒絕"),
            (other, lang) => other.sentence(lang),
        }
    }

    /// What the clicker is told when the decision could not be recorded (the store is down):
    /// the buttons stay, so they can click again.
    pub fn failed_sentence(&self) -> &'static str {
        match self.lang {
            Language::En => "aiops could not record your decision; please try again.",
            Language::ZhTw => "aiops 無法記錄您的決定，請再試一次。",
        }
    }
}

/// Whether an outcome ends the request in chat: every outcome but a refused clicker's (the
/// allow-listed people still need the buttons).
pub fn closes_the_request(outcome: &Outcome) -> bool {
    !matches!(outcome, Outcome::NotAllowed)
}

/// The approver id of a platform user.
pub fn approver(platform: Platform, id: &str) -> Result<Approver> {
    format!("{platform}:{id}")
        .parse()
        .map_err(|e: String| Error::Payload(e))
}

/// The receivers the HTTP endpoints use, built from the `notify:` settings: Slack's when a
/// Slack channel has a `signing_secret`, LINE's when a LINE channel has a `channel_secret`.
#[derive(Clone, Default)]
pub struct Receivers {
    /// `POST /chat/slack/interactions`.
    pub slack: Option<Arc<slack::Interactions>>,
    /// `POST /chat/line/webhook`.
    pub line: Option<Arc<line::Webhook>>,
}

impl Receivers {
    /// The receivers of the configured channels (none without a store to decide in).
    pub fn new(settings: &NotifySettings, deciding: Deciding) -> Receivers {
        let receives = settings.channels.values().any(|c| match &c.kind {
            ChannelKind::Slack(s) => s.signing_secret.is_some(),
            ChannelKind::Line(l) => l.channel_secret.is_some(),
            _ => false,
        });
        if !receives {
            // A client loads the system's root certificates: not worth its memory for nothing.
            return Receivers::default();
        }
        let http = crate::notify::http_client(settings.timeout.0);
        Receivers {
            slack: slack::Interactions::new(settings, deciding.clone(), http.clone()).map(Arc::new),
            line: line::Webhook::new(settings, deciding, http).map(Arc::new),
        }
    }
}
