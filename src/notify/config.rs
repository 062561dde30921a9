//! The `notify:` section of the settings: channels, routes, templates, delivery policy.
//!
//! ```yaml
//! notify:
//!   language: zh-TW                 # or en (default): the default templates' language
//!   channels:
//!     oncall-tg: {type: telegram, bot_token_env: TG_TOKEN, chat_id: "-100123"}
//!     ops-line:  {type: line, channel_token_file: /run/secrets/line, to: Cxxxxxxxx}
//!     ops-slack: {type: slack, webhook_url_env: SLACK_WEBHOOK}
//!     mail:      {type: email, smtp_url: "smtp://relay:25", from: aiops@example.com, to: [ops@example.com]}
//!     hook:      {type: webhook, url: https://example.com/aiops}
//!   routes:
//!     - matchers: ['severity="critical"']
//!       channels: [oncall-tg, ops-line]
//!       continue: true
//!     - name: team-web
//!       matchers: ['app=~"web.*"']
//!       channels: [ops-slack]
//!       events: [escalation, auto_repair_failed, alert_fired]
//! ```
//!
//! Any secret key (`bot_token`, `channel_token`, `webhook_url`, `smtp_url`, `password`, the
//! webhook's `url`) may instead be given as `<key>_env: VARIABLE` or `<key>_file: PATH`.
//!
//! This file reads the section: names, routes, templates, delivery policy. A channel's entry is
//! read in [`super::channel`] (what every type shares: `type`, secrets in three forms,
//! `rate_per_minute`), and each type's own keys next to its channel, by
//! `TelegramConfig::from_keys` in `telegram.rs` and so on. It imports only leaf modules
//! (`secret`, `duration`, `rules`), so `config` can hold these settings without a cycle.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::EventKind;
use super::channel::{Channel, ChannelSpec};
use crate::duration::HumanDuration;
use crate::rules::Matcher;

/// A `notify:` section that cannot work; the message names the key at fault and never shows a
/// secret. `config::Error::Notify` carries it to the settings loader.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SettingsError(pub String);

type Result<T, E = SettingsError> = std::result::Result<T, E>;

/// The `notify:` settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifySettings {
    /// Language of the default templates.
    pub language: Language,
    /// Channels by name, as written (secrets not read yet).
    #[serde(rename = "channels")]
    pub specs: BTreeMap<String, ChannelSpec>,
    /// Channels by name, resolved by [`NotifySettings::resolve`].
    #[serde(skip)]
    pub channels: BTreeMap<String, Channel>,
    /// Label routes, tried in order: the first match wins unless it says `continue: true`.
    pub routes: Vec<Route>,
    /// Per-event template overrides (minijinja).
    pub templates: BTreeMap<EventKind, TemplateOverride>,
    /// Identical messages to one channel within this window are sent once. Default 10m.
    pub dedup_window: HumanDuration,
    /// Retry policy.
    pub retry: RetrySettings,
    /// Timeout of one API call. Default 10s.
    pub timeout: HumanDuration,
    /// How often the dispatcher looks for due messages when not woken. Default 1s.
    pub poll_interval: HumanDuration,
    /// How long a claimed message belongs to one replica before another may take it. Default 2m.
    pub lease: HumanDuration,
}

impl Default for NotifySettings {
    fn default() -> Self {
        NotifySettings {
            language: Language::En,
            specs: BTreeMap::new(),
            channels: BTreeMap::new(),
            routes: Vec::new(),
            templates: BTreeMap::new(),
            dedup_window: HumanDuration(Duration::from_secs(600)),
            retry: RetrySettings::default(),
            timeout: HumanDuration(Duration::from_secs(10)),
            poll_interval: HumanDuration(Duration::from_secs(1)),
            lease: HumanDuration(Duration::from_secs(120)),
        }
    }
}

/// Default template language.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub enum Language {
    /// English.
    #[serde(rename = "en")]
    En,
    /// Traditional Chinese (Taiwan).
    #[serde(rename = "zh-TW", alias = "zh-tw", alias = "zh_TW")]
    ZhTw,
}

/// Retries: exponential backoff with jitter on 5xx, timeouts and connection errors.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetrySettings {
    /// Attempts before giving up (the first included). Default 8.
    pub max_attempts: u32,
    /// Delay before the first retry. Default 5s.
    pub initial_backoff: HumanDuration,
    /// Longest delay between attempts. Default 10m.
    pub max_backoff: HumanDuration,
}

impl Default for RetrySettings {
    fn default() -> Self {
        RetrySettings {
            max_attempts: 8,
            initial_backoff: HumanDuration(Duration::from_secs(5)),
            max_backoff: HumanDuration(Duration::from_secs(600)),
        }
    }
}

/// A subject and/or body template replacing the default of one event.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateOverride {
    /// Subject (one line; email subject, the bold first line elsewhere).
    pub subject: Option<String>,
    /// Body (plain text; channels escape it for their format).
    pub body: Option<String>,
}

/// A label route.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Optional name, so a rule's chain can name the route (`notify: NAME`).
    #[serde(default)]
    pub name: Option<String>,
    /// Alertmanager matchers on the alert's labels, all must match; none matches every alert.
    #[serde(default)]
    pub matchers: Vec<Matcher>,
    /// Channels to send to.
    pub channels: Vec<String>,
    /// Keep trying later routes after this one matched.
    #[serde(default, rename = "continue")]
    pub continue_matching: bool,
    /// Events this route takes; default every event except `alert_fired` (opt-in).
    #[serde(default)]
    pub events: Option<Vec<EventKind>>,
}

impl Route {
    /// Whether this route takes `kind`.
    pub fn takes(&self, kind: EventKind) -> bool {
        match &self.events {
            Some(list) => list.contains(&kind),
            None => kind != EventKind::AlertFired,
        }
    }
}

/// Channel names: what rules, routes and `aiops notify test` use.
fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
}

/// The name a chain step may always use: label routing only, no extra channel.
pub const DEFAULT_ROUTE: &str = "default";

impl NotifySettings {
    /// Reads every channel's secrets (inline, `_env`, `_file`) and validates the section:
    /// names, route channels, templates, durations. Called once by `Settings::load`.
    pub fn resolve(&mut self, env: &dyn Fn(&str) -> Option<String>) -> Result<()> {
        let mut resolved = BTreeMap::new();
        for (name, spec) in &mut self.specs {
            if !valid_name(name) {
                return Err(SettingsError(format!(
                    "notify.channels: {name:?} is not a valid name (letters, digits, - _ .)"
                )));
            }
            resolved.insert(name.clone(), spec.resolve(name, env)?);
        }
        self.channels = resolved;
        let mut route_names = std::collections::BTreeSet::new();
        for (i, r) in self.routes.iter().enumerate() {
            let at = match &r.name {
                Some(n) => format!("notify.routes[{i}] ({n})"),
                None => format!("notify.routes[{i}]"),
            };
            if let Some(n) = &r.name {
                if !valid_name(n) || n == DEFAULT_ROUTE {
                    return Err(SettingsError(format!(
                        "{at}: {n:?} cannot name a route (letters, digits, - _ .; not `default`)"
                    )));
                }
                if self.channels.contains_key(n) || !route_names.insert(n.clone()) {
                    return Err(SettingsError(format!(
                        "{at}: the name {n:?} is already a channel or another route"
                    )));
                }
            }
            if r.channels.is_empty() {
                return Err(SettingsError(format!("{at}: channels is empty")));
            }
            if let Some(c) = r.channels.iter().find(|c| !self.channels.contains_key(*c)) {
                return Err(SettingsError(format!(
                    "{at}: channel {c:?} is not defined in notify.channels"
                )));
            }
        }
        if self.channels.contains_key(DEFAULT_ROUTE) {
            return Err(SettingsError(
                "notify.channels: `default` is reserved (a chain's `notify: default` means label routing only)".into(),
            ));
        }
        if self.retry.max_attempts == 0 {
            return Err(SettingsError(
                "notify.retry.max_attempts must be at least 1".into(),
            ));
        }
        if self.retry.initial_backoff.0.is_zero()
            || self.retry.max_backoff.0 < self.retry.initial_backoff.0
        {
            return Err(SettingsError(
                "notify.retry: initial_backoff must be above 0s and max_backoff at least initial_backoff".into(),
            ));
        }
        if self.timeout.0.is_zero()
            || self.poll_interval.0.is_zero()
            || self.lease.0 <= self.timeout.0
        {
            return Err(SettingsError(
                "notify: timeout and poll_interval must be above 0s, and lease longer than timeout"
                    .into(),
            ));
        }
        super::template::Templates::new(self.language, &self.templates)
            .map_err(|e| SettingsError(format!("notify.templates: {e}")))?;
        Ok(())
    }

    /// Whether a chain step's `notify: NAME` names something: a channel, a route or `default`.
    pub fn knows(&self, name: &str) -> bool {
        name == DEFAULT_ROUTE
            || self.channels.contains_key(name)
            || self.routes.iter().any(|r| r.name.as_deref() == Some(name))
    }
}

#[cfg(test)]
mod tests {
    use super::super::channel::ChannelKind;
    use super::super::telegram::TelegramConfig;
    use super::*;

    fn parse(yaml: &str) -> NotifySettings {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn secrets_come_inline_from_the_environment_or_a_file_and_never_print() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("line");
        std::fs::write(&file, "line-secret-value\n").unwrap();
        let mut s = parse(&format!(
            "channels:\n  tg: {{type: telegram, bot_token: tg-secret-value, chat_id: 1}}\n  ln: {{type: line, channel_token_file: {}, to: U1}}\n  sl: {{type: slack, webhook_url_env: HOOK}}\n",
            file.display()
        ));
        s.resolve(&|k| (k == "HOOK").then(|| "https://hooks.example/slack-secret-value".into()))
            .unwrap();
        let secrets: Vec<_> = s
            .channels
            .values()
            .flat_map(|c| c.kind.secrets().into_iter().map(|x| x.expose().to_string()))
            .collect();
        assert_eq!(
            secrets,
            [
                "line-secret-value",
                "https://hooks.example/slack-secret-value",
                "tg-secret-value"
            ]
        );
        let dump = format!("{s:?}");
        assert!(!dump.contains("secret-value"), "{dump}");
        match &s.channels["tg"].kind {
            ChannelKind::Telegram(TelegramConfig {
                api_url, chat_id, ..
            }) => {
                assert_eq!(
                    (api_url.as_str(), chat_id.as_str()),
                    ("https://api.telegram.org", "1")
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_secret_given_twice_or_not_at_all_is_refused_by_name() {
        let mut s = parse(
            "channels:\n  tg: {type: telegram, bot_token: a, bot_token_env: B, chat_id: 1}\n",
        );
        let err = s.resolve(&|_| None).unwrap_err().to_string();
        assert_eq!(
            err,
            "notify.channels.tg: give exactly one of bot_token, bot_token_env or bot_token_file"
        );
        let mut s = parse("channels:\n  tg: {type: telegram, chat_id: 1}\n");
        let err = s.resolve(&|_| None).unwrap_err().to_string();
        assert!(err.contains("type telegram needs bot_token"), "{err}");
    }

    #[test]
    fn keys_of_another_type_unknown_types_and_unknown_route_channels_are_errors() {
        for (yaml, want) in [
            (
                "channels:\n  s: {type: slack, webhook_url: 'http://x/y', chat_id: 1}\n",
                "does not apply to type slack",
            ),
            (
                "channels:\n  s: {type: pager, url: 'http://x'}\n",
                "unknown type \"pager\"",
            ),
            (
                "channels:\n  s: {type: webhook, url: 'ftp://x'}\n",
                "must be an http or https URL",
            ),
            (
                "routes:\n  - channels: [nope]\n",
                "channel \"nope\" is not defined",
            ),
            (
                "channels:\n  m: {type: email, smtp_url: 'smtp://h', from: 'not an address', to: [a@b.c]}\n",
                "from \"not an address\"",
            ),
        ] {
            let err = parse(yaml).resolve(&|_| None).unwrap_err().to_string();
            assert!(err.contains(want), "{yaml}: {err}");
        }
    }
}
