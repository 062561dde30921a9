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
//! This file reads the section and what every channel shares (its name, `type`, secrets in
//! three forms, `rate_per_minute`); each channel's own keys are checked next to the channel, by
//! `TelegramConfig::from_keys` in `telegram.rs` and so on. It imports only leaf modules
//! (`secret`, `duration`, `rules`), so `config` can hold these settings without a cycle.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::EventKind;
use super::email::EmailConfig;
use super::line::LineConfig;
use super::slack::SlackConfig;
use super::telegram::TelegramConfig;
use super::webhook::WebhookConfig;
use crate::duration::HumanDuration;
use crate::rules::Matcher;
use crate::secret::Secret;

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

/// A secret given inline, by environment variable or by file; resolved once at load.
#[derive(Clone, Debug, Default)]
pub struct SecretInput {
    value: Option<Secret>,
    env: Option<String>,
    file: Option<PathBuf>,
}

impl SecretInput {
    fn resolve(
        &mut self,
        channel: &str,
        key: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Secret> {
        let bad = |m: String| SettingsError(format!("notify.channels.{channel}: {m}"));
        let given = [
            self.value.is_some(),
            self.env.is_some(),
            self.file.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if given != 1 {
            return Err(bad(format!(
                "give exactly one of {key}, {key}_env or {key}_file"
            )));
        }
        let secret = if let Some(v) = &self.value {
            v.clone()
        } else if let Some(var) = &self.env {
            Secret::new(
                env(var)
                    .filter(|v| !v.trim().is_empty())
                    .ok_or_else(|| {
                        bad(format!("{key}_env: environment variable {var} is not set"))
                    })?
                    .trim(),
            )
        } else if let Some(path) = &self.file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| bad(format!("{key}_file: cannot read {}: {e}", path.display())))?;
            Secret::new(text.trim())
        } else {
            unreachable!("exactly one source was counted")
        };
        if secret.expose().is_empty() {
            return Err(bad(format!("{key} is empty")));
        }
        self.value = Some(secret.clone());
        Ok(secret)
    }
}

/// One channel: its kind, and how fast it may be sent to.
#[derive(Clone, Debug)]
pub struct Channel {
    /// Kind and settings.
    pub kind: ChannelKind,
    /// Messages per minute to this channel (governor); default by kind.
    pub rate_per_minute: u32,
}

/// The channel kinds, with their resolved settings (each defined next to its channel).
#[derive(Clone, Debug)]
pub enum ChannelKind {
    /// Telegram Bot API `sendMessage`.
    Telegram(TelegramConfig),
    /// LINE Messaging API push.
    Line(LineConfig),
    /// Slack incoming webhook.
    Slack(SlackConfig),
    /// Email over SMTP.
    Email(EmailConfig),
    /// Generic webhook: POST the event as JSON.
    Webhook(WebhookConfig),
}

impl ChannelKind {
    /// `telegram`, `line`, `slack`, `email`, `webhook`.
    pub fn type_name(&self) -> &'static str {
        match self {
            ChannelKind::Telegram(_) => "telegram",
            ChannelKind::Line(_) => "line",
            ChannelKind::Slack(_) => "slack",
            ChannelKind::Email(_) => "email",
            ChannelKind::Webhook(_) => "webhook",
        }
    }

    /// Every secret value of the channel (for tests that prove none leaks).
    pub fn secrets(&self) -> Vec<&Secret> {
        match self {
            ChannelKind::Telegram(c) => vec![&c.bot_token],
            ChannelKind::Line(c) => vec![&c.channel_token],
            ChannelKind::Slack(c) => vec![&c.webhook_url],
            ChannelKind::Email(c) => std::iter::once(&c.smtp_url)
                .chain(c.password.iter())
                .collect(),
            ChannelKind::Webhook(c) => vec![&c.url],
        }
    }
}

/// The channel as written: `type` plus that type's keys; secrets in any of three forms.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawChannel {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    rate_per_minute: Option<u32>,
    #[serde(default)]
    api_url: Option<String>,
    #[serde(default)]
    chat_id: Option<serde_yaml::Value>,
    #[serde(default)]
    to: Option<serde_yaml::Value>,
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    bot_token: Option<Secret>,
    #[serde(default)]
    bot_token_env: Option<String>,
    #[serde(default)]
    bot_token_file: Option<PathBuf>,
    #[serde(default)]
    channel_token: Option<Secret>,
    #[serde(default)]
    channel_token_env: Option<String>,
    #[serde(default)]
    channel_token_file: Option<PathBuf>,
    #[serde(default)]
    webhook_url: Option<Secret>,
    #[serde(default)]
    webhook_url_env: Option<String>,
    #[serde(default)]
    webhook_url_file: Option<PathBuf>,
    #[serde(default)]
    smtp_url: Option<Secret>,
    #[serde(default)]
    smtp_url_env: Option<String>,
    #[serde(default)]
    smtp_url_file: Option<PathBuf>,
    #[serde(default)]
    password: Option<Secret>,
    #[serde(default)]
    password_env: Option<String>,
    #[serde(default)]
    password_file: Option<PathBuf>,
    #[serde(default)]
    url: Option<Secret>,
    #[serde(default)]
    url_env: Option<String>,
    #[serde(default)]
    url_file: Option<PathBuf>,
}

/// A channel as written, before its secrets are read (see [`NotifySettings::resolve`]).
#[derive(Clone, Debug)]
pub struct ChannelSpec {
    kind: String,
    rate_per_minute: Option<u32>,
    api_url: Option<String>,
    chat_id: Option<String>,
    to: Vec<String>,
    from: Option<String>,
    username: Option<String>,
    secrets: BTreeMap<&'static str, SecretInput>,
}

impl<'de> Deserialize<'de> for ChannelSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = RawChannel::deserialize(d)?;
        let scalar = |v: serde_yaml::Value| -> Result<String, String> {
            match v {
                serde_yaml::Value::String(s) => Ok(s),
                serde_yaml::Value::Number(n) => Ok(n.to_string()),
                other => Err(format!("expected a string, got {other:?}")),
            }
        };
        let to = match raw.to {
            None => Vec::new(),
            Some(serde_yaml::Value::Sequence(items)) => items
                .into_iter()
                .map(scalar)
                .collect::<Result<_, _>>()
                .map_err(serde::de::Error::custom)?,
            Some(v) => vec![scalar(v).map_err(serde::de::Error::custom)?],
        };
        let mut secrets = BTreeMap::new();
        let mut put =
            |k: &'static str, value: Option<Secret>, env: Option<String>, file: Option<PathBuf>| {
                if value.is_some() || env.is_some() || file.is_some() {
                    secrets.insert(k, SecretInput { value, env, file });
                }
            };
        put(
            "bot_token",
            raw.bot_token,
            raw.bot_token_env,
            raw.bot_token_file,
        );
        put(
            "channel_token",
            raw.channel_token,
            raw.channel_token_env,
            raw.channel_token_file,
        );
        put(
            "webhook_url",
            raw.webhook_url,
            raw.webhook_url_env,
            raw.webhook_url_file,
        );
        put(
            "smtp_url",
            raw.smtp_url,
            raw.smtp_url_env,
            raw.smtp_url_file,
        );
        put(
            "password",
            raw.password,
            raw.password_env,
            raw.password_file,
        );
        put("url", raw.url, raw.url_env, raw.url_file);
        Ok(ChannelSpec {
            kind: raw.kind,
            rate_per_minute: raw.rate_per_minute,
            api_url: raw.api_url,
            chat_id: raw
                .chat_id
                .map(scalar)
                .transpose()
                .map_err(serde::de::Error::custom)?,
            to,
            from: raw.from,
            username: raw.username,
            secrets,
        })
    }
}

/// A channel's keys with its secrets read: what each channel's `from_keys` builds its
/// settings from. Errors are the message after `notify.channels.NAME: `.
#[derive(Debug)]
pub struct Keys<'a> {
    /// `type`, as written.
    pub kind: &'a str,
    /// `api_url`, as written.
    pub api_url: Option<&'a str>,
    /// `chat_id` (a number or a string in YAML).
    pub chat_id: Option<&'a str>,
    /// `to`: one id or address, or a list.
    pub to: &'a [String],
    /// `from`.
    pub from: Option<&'a str>,
    /// `username`.
    pub username: Option<&'a str>,
    secrets: BTreeMap<&'static str, Secret>,
}

impl Keys<'_> {
    /// A secret the type needs.
    pub fn secret(&self, key: &'static str) -> Result<Secret, String> {
        self.optional_secret(key)
            .ok_or_else(|| format!("type {} needs {key} (or {key}_env / {key}_file)", self.kind))
    }

    /// A secret the type may have.
    pub fn optional_secret(&self, key: &'static str) -> Option<Secret> {
        self.secrets.get(key).cloned()
    }

    /// Refuses keys of another type: `given` says whether any of `what` was written.
    pub fn only(&self, given: bool, what: &str) -> Result<(), String> {
        if given {
            Err(format!("{what} does not apply to type {}", self.kind))
        } else {
            Ok(())
        }
    }

    /// `api_url`, or `default`: an http(s) base URL without a trailing `/`.
    pub fn api_base(&self, default: &str) -> Result<String, String> {
        let url = self.api_url.unwrap_or(default);
        let parsed = reqwest::Url::parse(url).map_err(|e| format!("api_url {url:?}: {e}"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(format!("api_url {url:?} must be http or https"));
        }
        Ok(url.trim_end_matches('/').to_string())
    }
}

impl ChannelSpec {
    /// Reads the secrets and checks the keys the channel's type needs.
    fn resolve(&mut self, name: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Channel> {
        let bad = |m: String| SettingsError(format!("notify.channels.{name}: {m}"));
        let allowed: &[&str] = match self.kind.as_str() {
            "telegram" => TelegramConfig::SECRETS,
            "line" => LineConfig::SECRETS,
            "slack" => SlackConfig::SECRETS,
            "email" => EmailConfig::SECRETS,
            "webhook" => WebhookConfig::SECRETS,
            other => {
                return Err(bad(format!(
                    "unknown type {other:?}; one of telegram, line, slack, email, webhook"
                )));
            }
        };
        if let Some(k) = self.secrets.keys().find(|k| !allowed.contains(k)) {
            return Err(bad(format!("{k} does not apply to type {}", self.kind)));
        }
        let mut secrets: BTreeMap<&'static str, Secret> = BTreeMap::new();
        for (key, input) in &mut self.secrets {
            secrets.insert(key, input.resolve(name, key, env)?);
        }
        let keys = Keys {
            kind: &self.kind,
            api_url: self.api_url.as_deref(),
            chat_id: self.chat_id.as_deref(),
            to: &self.to,
            from: self.from.as_deref(),
            username: self.username.as_deref(),
            secrets,
        };
        let (kind, default_rate) = match self.kind.as_str() {
            "telegram" => (
                ChannelKind::Telegram(TelegramConfig::from_keys(&keys).map_err(bad)?),
                TelegramConfig::RATE_PER_MINUTE,
            ),
            "line" => (
                ChannelKind::Line(LineConfig::from_keys(&keys).map_err(bad)?),
                LineConfig::RATE_PER_MINUTE,
            ),
            "slack" => (
                ChannelKind::Slack(SlackConfig::from_keys(&keys).map_err(bad)?),
                SlackConfig::RATE_PER_MINUTE,
            ),
            "webhook" => (
                ChannelKind::Webhook(WebhookConfig::from_keys(&keys).map_err(bad)?),
                WebhookConfig::RATE_PER_MINUTE,
            ),
            _ => (
                ChannelKind::Email(EmailConfig::from_keys(&keys).map_err(bad)?),
                EmailConfig::RATE_PER_MINUTE,
            ),
        };
        let rate_per_minute = self.rate_per_minute.unwrap_or(default_rate);
        if rate_per_minute == 0 {
            return Err(bad("rate_per_minute must be at least 1".into()));
        }
        Ok(Channel {
            kind,
            rate_per_minute,
        })
    }
}

/// A URL held as a secret must still be an http(s) URL; the message never shows it.
pub(super) fn check_http_secret(s: &Secret) -> Result<(), String> {
    match reqwest::Url::parse(s.expose()) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => Ok(()),
        Ok(_) => Err("must be an http or https URL".into()),
        Err(e) => Err(format!("not a URL ({e})")),
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
