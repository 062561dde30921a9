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

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::EventKind;
use crate::config::{Error, HumanDuration, Result, Secret};
use crate::rules::Matcher;

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
        let bad = |m: String| Error::Invalid(format!("notify.channels.{channel}: {m}"));
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

/// The channel kinds, with their resolved settings.
#[derive(Clone, Debug)]
pub enum ChannelKind {
    /// Telegram Bot API `sendMessage`.
    Telegram {
        /// Bot token.
        bot_token: Secret,
        /// Chat id (a number, or `@channelname`).
        chat_id: String,
        /// API base URL (default `https://api.telegram.org`).
        api_url: String,
    },
    /// LINE Messaging API push.
    Line {
        /// Channel access token.
        channel_token: Secret,
        /// User, group or room id.
        to: String,
        /// API base URL (default `https://api.line.me`).
        api_url: String,
    },
    /// Slack incoming webhook.
    Slack {
        /// The webhook URL (it is the secret).
        webhook_url: Secret,
    },
    /// Email over SMTP.
    Email {
        /// `smtp://host:25` (plain, for a local relay), `smtp://host:587?tls=required`
        /// (STARTTLS), `smtps://host:465` (implicit TLS); credentials may be in the URL.
        smtp_url: Secret,
        /// Sender.
        from: String,
        /// Recipients.
        to: Vec<String>,
        /// SMTP user (with `password`), when not in the URL.
        username: Option<String>,
        /// SMTP password.
        password: Option<Secret>,
    },
    /// Generic webhook: POST the event as JSON.
    Webhook {
        /// The URL (may carry a token, so it is treated as a secret).
        url: Secret,
    },
}

impl ChannelKind {
    /// `telegram`, `line`, `slack`, `email`, `webhook`.
    pub fn type_name(&self) -> &'static str {
        match self {
            ChannelKind::Telegram { .. } => "telegram",
            ChannelKind::Line { .. } => "line",
            ChannelKind::Slack { .. } => "slack",
            ChannelKind::Email { .. } => "email",
            ChannelKind::Webhook { .. } => "webhook",
        }
    }

    /// Every secret value of the channel (for tests that prove none leaks).
    pub fn secrets(&self) -> Vec<&Secret> {
        match self {
            ChannelKind::Telegram { bot_token, .. } => vec![bot_token],
            ChannelKind::Line { channel_token, .. } => vec![channel_token],
            ChannelKind::Slack { webhook_url } => vec![webhook_url],
            ChannelKind::Email {
                smtp_url, password, ..
            } => std::iter::once(smtp_url).chain(password.iter()).collect(),
            ChannelKind::Webhook { url } => vec![url],
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

impl ChannelSpec {
    /// Reads the secrets and checks the keys the channel's type needs.
    fn resolve(&mut self, name: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Channel> {
        let bad = |m: String| Error::Invalid(format!("notify.channels.{name}: {m}"));
        let allowed: &[&str] = match self.kind.as_str() {
            "telegram" => &["bot_token"],
            "line" => &["channel_token"],
            "slack" => &["webhook_url"],
            "email" => &["smtp_url", "password"],
            "webhook" => &["url"],
            other => {
                return Err(bad(format!(
                    "unknown type {other:?}; one of telegram, line, slack, email, webhook"
                )));
            }
        };
        if let Some(k) = self.secrets.keys().find(|k| !allowed.contains(k)) {
            return Err(bad(format!("{k} does not apply to type {}", self.kind)));
        }
        let mut resolved: BTreeMap<&'static str, Secret> = BTreeMap::new();
        for (key, input) in &mut self.secrets {
            resolved.insert(key, input.resolve(name, key, env)?);
        }
        let kind = self.kind.clone();
        let secret = |key: &'static str| -> Result<Secret> {
            resolved.get(key).cloned().ok_or_else(|| {
                bad(format!(
                    "type {kind} needs {key} (or {key}_env / {key}_file)"
                ))
            })
        };
        let http_base = |v: &Option<String>, default: &str| -> Result<String> {
            let url = v.clone().unwrap_or_else(|| default.to_string());
            let parsed =
                reqwest::Url::parse(&url).map_err(|e| bad(format!("api_url {url:?}: {e}")))?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(bad(format!("api_url {url:?} must be http or https")));
            }
            Ok(url.trim_end_matches('/').to_string())
        };
        let only = |cond: bool, what: &str| -> Result<()> {
            if cond {
                Err(bad(format!("{what} does not apply to type {}", self.kind)))
            } else {
                Ok(())
            }
        };
        let kind = match self.kind.as_str() {
            "telegram" => {
                only(
                    !self.to.is_empty() || self.from.is_some() || self.username.is_some(),
                    "to/from/username",
                )?;
                ChannelKind::Telegram {
                    bot_token: secret("bot_token")?,
                    chat_id: self
                        .chat_id
                        .clone()
                        .filter(|c| !c.is_empty())
                        .ok_or_else(|| bad("type telegram needs chat_id".into()))?,
                    api_url: http_base(&self.api_url, "https://api.telegram.org")?,
                }
            }
            "line" => {
                only(
                    self.chat_id.is_some() || self.from.is_some() || self.username.is_some(),
                    "chat_id/from/username",
                )?;
                let [to] = self.to.as_slice() else {
                    return Err(bad(
                        "type line needs one `to` (a user, group or room id)".into()
                    ));
                };
                ChannelKind::Line {
                    channel_token: secret("channel_token")?,
                    to: to.clone(),
                    api_url: http_base(&self.api_url, "https://api.line.me")?,
                }
            }
            "slack" => {
                only(
                    self.api_url.is_some(),
                    "api_url (the webhook_url is the address)",
                )?;
                only(
                    self.chat_id.is_some()
                        || !self.to.is_empty()
                        || self.from.is_some()
                        || self.username.is_some(),
                    "chat_id/to/from/username",
                )?;
                let webhook_url = secret("webhook_url")?;
                check_http_secret(&webhook_url).map_err(|m| bad(format!("webhook_url: {m}")))?;
                ChannelKind::Slack { webhook_url }
            }
            "webhook" => {
                only(self.api_url.is_some(), "api_url (the url is the address)")?;
                only(
                    self.chat_id.is_some()
                        || !self.to.is_empty()
                        || self.from.is_some()
                        || self.username.is_some(),
                    "chat_id/to/from/username",
                )?;
                let url = secret("url")?;
                check_http_secret(&url).map_err(|m| bad(format!("url: {m}")))?;
                ChannelKind::Webhook { url }
            }
            _ => {
                only(
                    self.api_url.is_some() || self.chat_id.is_some(),
                    "api_url/chat_id (smtp_url is the address)",
                )?;
                let smtp_url = secret("smtp_url")?;
                let password = resolved.get("password").cloned();
                if password.is_some() != self.username.is_some() {
                    return Err(bad("username and password go together".into()));
                }
                let from = self
                    .from
                    .clone()
                    .ok_or_else(|| bad("type email needs from".into()))?;
                if self.to.is_empty() {
                    return Err(bad("type email needs at least one address in to".into()));
                }
                super::email::check(&smtp_url, &from, &self.to).map_err(&bad)?;
                ChannelKind::Email {
                    smtp_url,
                    from,
                    to: self.to.clone(),
                    username: self.username.clone(),
                    password,
                }
            }
        };
        let rate_per_minute = self.rate_per_minute.unwrap_or(match &kind {
            // Telegram allows about 20 messages a minute to one group; LINE and Slack about one a second.
            ChannelKind::Telegram { .. } => 20,
            ChannelKind::Email { .. } => 30,
            _ => 60,
        });
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
fn check_http_secret(s: &Secret) -> Result<(), String> {
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
                return Err(Error::Invalid(format!(
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
                    return Err(Error::Invalid(format!(
                        "{at}: {n:?} cannot name a route (letters, digits, - _ .; not `default`)"
                    )));
                }
                if self.channels.contains_key(n) || !route_names.insert(n.clone()) {
                    return Err(Error::Invalid(format!(
                        "{at}: the name {n:?} is already a channel or another route"
                    )));
                }
            }
            if r.channels.is_empty() {
                return Err(Error::Invalid(format!("{at}: channels is empty")));
            }
            if let Some(c) = r.channels.iter().find(|c| !self.channels.contains_key(*c)) {
                return Err(Error::Invalid(format!(
                    "{at}: channel {c:?} is not defined in notify.channels"
                )));
            }
        }
        if self.channels.contains_key(DEFAULT_ROUTE) {
            return Err(Error::Invalid(
                "notify.channels: `default` is reserved (a chain's `notify: default` means label routing only)".into(),
            ));
        }
        if self.retry.max_attempts == 0 {
            return Err(Error::Invalid(
                "notify.retry.max_attempts must be at least 1".into(),
            ));
        }
        if self.retry.initial_backoff.0.is_zero()
            || self.retry.max_backoff.0 < self.retry.initial_backoff.0
        {
            return Err(Error::Invalid(
                "notify.retry: initial_backoff must be above 0s and max_backoff at least initial_backoff".into(),
            ));
        }
        if self.timeout.0.is_zero()
            || self.poll_interval.0.is_zero()
            || self.lease.0 <= self.timeout.0
        {
            return Err(Error::Invalid(
                "notify: timeout and poll_interval must be above 0s, and lease longer than timeout"
                    .into(),
            ));
        }
        super::template::Templates::new(self.language, &self.templates)
            .map_err(|e| Error::Invalid(format!("notify.templates: {e}")))?;
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
            ChannelKind::Telegram {
                api_url, chat_id, ..
            } => {
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
