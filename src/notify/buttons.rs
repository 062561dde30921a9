//! The Approve / Reject buttons of an approval request in chat: their labels in the notify
//! language and the data a click carries back.
//!
//! The data is the same on every platform that carries a string (Telegram's `callback_data`,
//! LINE's postback `data`): `aiops:approve:<job_id>` / `aiops:reject:<job_id>`, well inside
//! Telegram's 64-byte limit and LINE's 300 characters. Slack carries it as the button's
//! `action_id` (`aiops_approve` / `aiops_reject`) and `value` (the job id). Nothing in it is
//! secret or trusted on its own: the click arrives authenticated by the platform (Telegram's
//! bot token on our own poll, Slack's and LINE's request signatures), and who clicked decides
//! whether it counts (`approval::decide` checks the job's allow-list).
//!
//! This module renders and parses only; `crate::chat` turns a parsed click into a decision.

use super::ApprovalPrompt;
use super::config::Language;

/// What a button asks for. (`approval::Choice` is the approval core's word for it; `notify`
/// cannot import the core, which imports `notify`.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Run the repair.
    Approve,
    /// Do not run it.
    Reject,
}

/// Prefix of every button's data: a click on something else (another bot's button in the same
/// chat) is not ours.
const PREFIX: &str = "aiops:";

impl Action {
    /// Both actions, in the order the buttons are shown.
    pub const ALL: [Action; 2] = [Action::Approve, Action::Reject];

    fn word(self) -> &'static str {
        match self {
            Action::Approve => "approve",
            Action::Reject => "reject",
        }
    }

    /// The button's data: `aiops:approve:42`.
    pub fn data(self, job_id: i64) -> String {
        format!("{PREFIX}{}:{job_id}", self.word())
    }

    /// Reads a button's data; `None` when it is not an aiops button.
    pub fn parse(data: &str) -> Option<(Action, i64)> {
        let (word, id) = data.strip_prefix(PREFIX)?.split_once(':')?;
        let action = Action::ALL.into_iter().find(|a| a.word() == word)?;
        Some((action, id.parse().ok().filter(|id: &i64| *id > 0)?))
    }

    /// Slack's `action_id` of the button: `aiops_approve`.
    pub fn slack_action_id(self) -> String {
        format!("aiops_{}", self.word())
    }

    /// Reads a Slack action (`action_id`, `value`); `None` when it is not an aiops button.
    pub fn parse_slack(action_id: &str, value: &str) -> Option<(Action, i64)> {
        let word = action_id.strip_prefix("aiops_")?;
        Action::parse(&format!("{PREFIX}{word}:{value}"))
    }

    /// The button's label (LINE allows 20 characters, Slack 75, Telegram more).
    pub fn label(self, lang: Language) -> &'static str {
        match (self, lang) {
            (Action::Approve, Language::En) => "✅ Approve",
            (Action::Reject, Language::En) => "❌ Reject",
            (Action::Approve, Language::ZhTw) => "✅ 核准",
            (Action::Reject, Language::ZhTw) => "❌ 拒絕",
        }
    }
}

/// The line above the buttons: what is asked and until when (LINE's confirm template allows
/// 240 characters, which this stays well within).
pub fn question(prompt: &ApprovalPrompt, lang: Language) -> String {
    match lang {
        Language::En => format!(
            "Approve repair job {}? Waiting until {}.",
            prompt.job_id, prompt.expires_at
        ),
        Language::ZhTw => format!(
            "是否核准修復 job {}？等候至 {}。",
            prompt.job_id, prompt.expires_at
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn button_data_round_trips_and_foreign_data_is_not_ours() {
        for a in Action::ALL {
            assert_eq!(Action::parse(&a.data(42)), Some((a, 42)));
            assert_eq!(
                Action::parse_slack(&a.slack_action_id(), "42"),
                Some((a, 42))
            );
        }
        assert_eq!(Action::data(Action::Approve, 7), "aiops:approve:7");
        assert!(
            Action::data(Action::Reject, i64::MAX).len() <= 64,
            "Telegram's limit"
        );
        for foreign in [
            "approve:1",
            "aiops:approve:",
            "aiops:approve:x",
            "aiops:approve:-3",
            "aiops:delete:1",
            "other:approve:1",
        ] {
            assert_eq!(Action::parse(foreign), None, "{foreign}");
        }
        assert_eq!(Action::parse_slack("other_approve", "1"), None);
    }

    #[test]
    fn labels_fit_line_s_twenty_characters_in_both_languages() {
        for lang in [Language::En, Language::ZhTw] {
            for a in Action::ALL {
                assert!(a.label(lang).chars().count() <= 20);
            }
        }
        assert_eq!(Action::Approve.label(Language::ZhTw), "✅ 核准");
    }
}
