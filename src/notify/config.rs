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
//!       events: [escalation, auto_repair_failed, alert_fired, no_action]
//!   no_action: {group_wait: 30s, group_interval: 10m}   # how refusals are grouped
//! ```
//!
//! Any secret key (`bot_token`, `channel_token`, `webhook_url`, `smtp_url`, `password`, the
//! webhook's `url`, Slack's `signing_secret`, LINE's `channel_secret`) may instead be given as
//! `<key>_env: VARIABLE` or `<key>_file: PATH`. Approvals from chat: Telegram's
//! `approvals: true`, Slack's `signing_secret` and LINE's `channel_secret` turn on the Approve /
//! Reject buttons of that channel (`crate::chat` receives the clicks).
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
#[derive(Clone, Debug, thiserror::Error)]
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
    /// Channels by name, resolved by [`NotifySettings::resolve`]: the ones that work.
    #[serde(skip)]
    pub channels: BTreeMap<String, Channel>,
    /// Channels that cannot work (a missing `*_env` variable, an unreadable `*_file`, a bad
    /// key), by name, with the problem (`notify.channels.NAME: …`, never a secret). Kept apart
    /// so one broken channel affects only itself: `aiops notify test` on another works,
    /// `aiops check` lists each, and `aiops serve` refuses to start ([`NotifySettings::check_channels`]).
    #[serde(skip)]
    pub broken: BTreeMap<String, SettingsError>,
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
    /// How `no_action` messages are grouped.
    pub no_action: NoActionSettings,
}

/// Grouping of `no_action` messages, Alertmanager's way: the first refusal of a reason opens
/// a group per channel that is sent `group_wait` later with every refusal of that reason that
/// joined it meanwhile; the next group of that reason to that channel goes out no sooner than
/// `group_interval` after the previous one. A storm of refusals is a few messages, not one
/// per alert.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NoActionSettings {
    /// How long the first refusal waits for others of its reason. Default 30s.
    pub group_wait: HumanDuration,
    /// Shortest time between two messages of one reason to one channel. Default 10m.
    pub group_interval: HumanDuration,
}

impl Default for NoActionSettings {
    fn default() -> Self {
        NoActionSettings {
            group_wait: HumanDuration(Duration::from_secs(30)),
            group_interval: HumanDuration(Duration::from_secs(600)),
        }
    }
}

impl Default for NotifySettings {
    fn default() -> Self {
        NotifySettings {
            language: Language::En,
            specs: BTreeMap::new(),
            channels: BTreeMap::new(),
            broken: BTreeMap::new(),
            routes: Vec::new(),
            templates: BTreeMap::new(),
            dedup_window: HumanDuration(Duration::from_secs(600)),
            retry: RetrySettings::default(),
            timeout: HumanDuration(Duration::from_secs(10)),
            poll_interval: HumanDuration(Duration::from_secs(1)),
            lease: HumanDuration(Duration::from_secs(120)),
            no_action: NoActionSettings::default(),
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
    /// Events this route takes; default every event except the opt-in ones
    /// ([`EventKind::is_opt_in`]: `alert_fired`, `no_action`).
    #[serde(default)]
    pub events: Option<Vec<EventKind>>,
}

impl Route {
    /// Whether this route takes `kind`.
    pub fn takes(&self, kind: EventKind) -> bool {
        match &self.events {
            Some(list) => list.contains(&kind),
            None => !kind.is_opt_in(),
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
    ///
    /// A channel whose entry cannot work is set aside in [`NotifySettings::broken`] rather than
    /// failing the whole section: what it breaks is that channel, and the commands decide
    /// (`serve` refuses, `check` lists, `notify test` on another channel goes on).
    pub fn resolve(&mut self, env: &dyn Fn(&str) -> Option<String>) -> Result<()> {
        let mut resolved = BTreeMap::new();
        let mut broken = BTreeMap::new();
        for (name, spec) in &mut self.specs {
            if !valid_name(name) {
                return Err(SettingsError(format!(
                    "notify.channels: {name:?} is not a valid name (letters, digits, - _ .)"
                )));
            }
            match spec.resolve(name, env) {
                Ok(channel) => {
                    resolved.insert(name.clone(), channel);
                }
                Err(e) => {
                    broken.insert(name.clone(), e);
                }
            }
        }
        self.channels = resolved;
        self.broken = broken;
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
                if self.specs.contains_key(n) || !route_names.insert(n.clone()) {
                    return Err(SettingsError(format!(
                        "{at}: the name {n:?} is already a channel or another route"
                    )));
                }
            }
            if r.channels.is_empty() {
                return Err(SettingsError(format!("{at}: channels is empty")));
            }
            if let Some(c) = r.channels.iter().find(|c| !self.specs.contains_key(*c)) {
                return Err(SettingsError(format!(
                    "{at}: channel {c:?} is not defined in notify.channels"
                )));
            }
        }
        if self.specs.contains_key(DEFAULT_ROUTE) {
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
        if self.no_action.group_wait.0.is_zero()
            || self.no_action.group_interval.0 < self.no_action.group_wait.0
        {
            return Err(SettingsError(
                "notify.no_action: group_wait must be above 0s and group_interval at least group_wait"
                    .into(),
            ));
        }
        super::template::Templates::new(self.language, &self.templates)
            .map_err(|e| SettingsError(format!("notify.templates: {e}")))?;
        Ok(())
    }

    /// Every broken channel's problem, one per line (channel-name order), or `Ok` when every
    /// configured channel can work. What `aiops serve` refuses to start with.
    pub fn check_channels(&self) -> Result<()> {
        if self.broken.is_empty() {
            return Ok(());
        }
        let lines: Vec<String> = self.broken.values().map(|e| e.0.clone()).collect();
        Err(SettingsError(lines.join("\n")))
    }

    /// Whether a chain step's `notify: NAME` names something: a channel (working or not: a
    /// broken one is reported as such, not as unknown), a route or `default`.
    pub fn knows(&self, name: &str) -> bool {
        name == DEFAULT_ROUTE
            || self.specs.contains_key(name)
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
        s.resolve(&|_| None).unwrap();
        let err = s.check_channels().unwrap_err().to_string();
        assert_eq!(
            err,
            "notify.channels.tg: give exactly one of bot_token, bot_token_env or bot_token_file"
        );
        let mut s = parse("channels:\n  tg: {type: telegram, chat_id: 1}\n");
        s.resolve(&|_| None).unwrap();
        let err = s.check_channels().unwrap_err().to_string();
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
            let mut s = parse(yaml);
            let err = match s.resolve(&|_| None) {
                Err(e) => e.to_string(),
                Ok(()) => s.check_channels().unwrap_err().to_string(),
            };
            assert!(err.contains(want), "{yaml}: {err}");
        }
    }

    #[test]
    fn a_broken_channel_is_set_aside_and_the_others_resolve() {
        let mut s = parse(
            "channels:\n  a: {type: slack, webhook_url_env: A_URL}\n  b: {type: telegram, bot_token: t, chat_id: 1}\n  c: {type: line, channel_token_env: C_TOKEN, to: U1}\nroutes:\n  - channels: [a, b]\n",
        );
        s.resolve(&|_| None).unwrap();
        assert_eq!(s.channels.keys().collect::<Vec<_>>(), ["b"]);
        assert_eq!(s.broken.keys().collect::<Vec<_>>(), ["a", "c"]);
        assert!(
            s.knows("a"),
            "a broken channel is still a name rules may use"
        );
        assert_eq!(
            s.check_channels().unwrap_err().to_string(),
            "notify.channels.a: webhook_url_env: environment variable A_URL is not set\n\
             notify.channels.c: channel_token_env: environment variable C_TOKEN is not set"
        );
    }

    #[test]
    fn no_action_is_opt_in_like_alert_fired() {
        let s = parse(
            "channels:\n  b: {type: telegram, bot_token: t, chat_id: 1}\nroutes:\n  - channels: [b]\n  - channels: [b]\n    events: [no_action]\n",
        );
        assert!(!s.routes[0].takes(EventKind::NoAction));
        assert!(!s.routes[0].takes(EventKind::AlertFired));
        assert!(s.routes[0].takes(EventKind::AlertRecovered));
        assert!(s.routes[1].takes(EventKind::NoAction));
    }
}
