//! One channel's settings: as written under `notify.channels` ([`ChannelSpec`], secrets inline,
//! `<key>_env` or `<key>_file`), and resolved ([`Channel`], [`ChannelKind`]). What every type
//! shares is read here; each type's own keys are checked next to its channel
//! (`TelegramConfig::from_keys` in `telegram.rs`, …) through [`Keys`].

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::config::SettingsError;
use super::email::EmailConfig;
use super::line::LineConfig;
use super::slack::SlackConfig;
use super::telegram::TelegramConfig;
use super::webhook::WebhookConfig;
use crate::secret::{Secret, SecretInput};

type Result<T, E = SettingsError> = std::result::Result<T, E>;

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
            ChannelKind::Line(c) => std::iter::once(&c.channel_token)
                .chain(c.channel_secret.iter())
                .collect(),
            ChannelKind::Slack(c) => std::iter::once(&c.webhook_url)
                .chain(c.signing_secret.iter())
                .collect(),
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
    approvals: Option<bool>,
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
    #[serde(default)]
    signing_secret: Option<Secret>,
    #[serde(default)]
    signing_secret_env: Option<String>,
    #[serde(default)]
    signing_secret_file: Option<PathBuf>,
    #[serde(default)]
    channel_secret: Option<Secret>,
    #[serde(default)]
    channel_secret_env: Option<String>,
    #[serde(default)]
    channel_secret_file: Option<PathBuf>,
}

/// A channel as written, before its secrets are read (see [`super::config::NotifySettings::resolve`]).
#[derive(Clone, Debug)]
pub struct ChannelSpec {
    kind: String,
    rate_per_minute: Option<u32>,
    api_url: Option<String>,
    chat_id: Option<String>,
    to: Vec<String>,
    from: Option<String>,
    username: Option<String>,
    approvals: Option<bool>,
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
                    secrets.insert(k, SecretInput::new(value, env, file));
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
        put(
            "signing_secret",
            raw.signing_secret,
            raw.signing_secret_env,
            raw.signing_secret_file,
        );
        put(
            "channel_secret",
            raw.channel_secret,
            raw.channel_secret_env,
            raw.channel_secret_file,
        );
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
            approvals: raw.approvals,
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
    /// `approvals` (Telegram: poll the bot for Approve/Reject clicks).
    pub approvals: Option<bool>,
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

    /// The secret http(s) URL `key` of a type whose only key it is (Slack's `webhook_url`, the
    /// webhook's `url`): the URL is the address, so every other key is refused.
    pub fn secret_url_only(&self, key: &'static str) -> Result<Secret, String> {
        self.only(
            self.api_url.is_some(),
            &format!("api_url (the {key} is the address)"),
        )?;
        self.only(
            self.chat_id.is_some()
                || !self.to.is_empty()
                || self.from.is_some()
                || self.username.is_some(),
            "chat_id/to/from/username",
        )?;
        let url = self.secret(key)?;
        check_http_secret(&url).map_err(|m| format!("{key}: {m}"))?;
        Ok(url)
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
    pub(super) fn resolve(
        &mut self,
        name: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Channel> {
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
        if self.approvals.is_some() && self.kind != "telegram" {
            // Slack and LINE receive clicks at the daemon's endpoints: their secret is the switch.
            return Err(bad(format!(
                "approvals does not apply to type {} (Slack takes approvals with signing_secret, LINE with channel_secret)",
                self.kind
            )));
        }
        let mut secrets: BTreeMap<&'static str, Secret> = BTreeMap::new();
        for (key, input) in &mut self.secrets {
            secrets.insert(key, input.resolve(key, env).map_err(bad)?);
        }
        let keys = Keys {
            kind: &self.kind,
            api_url: self.api_url.as_deref(),
            chat_id: self.chat_id.as_deref(),
            to: &self.to,
            from: self.from.as_deref(),
            username: self.username.as_deref(),
            approvals: self.approvals,
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
fn check_http_secret(s: &Secret) -> Result<(), String> {
    match reqwest::Url::parse(s.expose()) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => Ok(()),
        Ok(_) => Err("must be an http or https URL".into()),
        Err(e) => Err(format!("not a URL ({e})")),
    }
}

#[cfg(test)]
mod tests {
    use super::super::config::NotifySettings;

    fn parse(yaml: &str) -> NotifySettings {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn each_type_has_its_default_rate_and_refuses_keys_it_cannot_use() {
        let mut s = parse(
            "channels:\n  t: {type: telegram, bot_token: x, chat_id: 1}\n  l: {type: line, channel_token: x, to: U1}\n  s: {type: slack, webhook_url: 'https://h/x'}\n  w: {type: webhook, url: 'https://h/y'}\n  m: {type: email, smtp_url: 'smtp://h', from: a@b.c, to: a@b.c}\n",
        );
        s.resolve(&|_| None).unwrap();
        let rates: Vec<_> = s
            .channels
            .iter()
            .map(|(n, c)| (n.as_str(), c.kind.type_name(), c.rate_per_minute))
            .collect();
        assert_eq!(
            rates,
            [
                ("l", "line", 60),
                ("m", "email", 30),
                ("s", "slack", 60),
                ("t", "telegram", 20),
                ("w", "webhook", 60)
            ]
        );
        for (yaml, want) in [
            (
                "x: {type: line, channel_token: a, to: [U1, U2]}",
                "notify.channels.x: type line needs one `to` (a user, group or room id)",
            ),
            (
                "x: {type: email, smtp_url: 'smtp://h', from: a@b.c, to: a@b.c, username: u}",
                "notify.channels.x: username and password go together",
            ),
            (
                "x: {type: webhook, url: 'https://h/y', api_url: 'https://h'}",
                "notify.channels.x: api_url (the url is the address) does not apply to type webhook",
            ),
            (
                "x: {type: slack, webhook_url: 'https://h/y', to: a}",
                "notify.channels.x: chat_id/to/from/username does not apply to type slack",
            ),
            (
                "x: {type: telegram, bot_token: a, chat_id: 1, api_url: 'ftp://h'}",
                "notify.channels.x: api_url \"ftp://h\" must be http or https",
            ),
        ] {
            let mut s = parse(&format!("channels:\n  {yaml}\n"));
            s.resolve(&|_| None).unwrap();
            let err = s.check_channels().unwrap_err().to_string();
            assert_eq!(err, want, "{yaml}");
        }
    }

    #[test]
    fn approvals_is_telegram_s_key_and_the_click_secrets_are_slack_s_and_line_s_own() {
        use super::ChannelKind;
        let mut s = parse(
            "channels:\n  t: {type: telegram, bot_token: x, chat_id: 1, approvals: true}\n  s: {type: slack, webhook_url: 'https://h/x', signing_secret: sign-secret-value}\n  l: {type: line, channel_token: x, to: U1, channel_secret_env: LINE_SECRET}\n",
        );
        s.resolve(&|k| (k == "LINE_SECRET").then(|| "line-secret-value".into()))
            .unwrap();
        s.check_channels().unwrap();
        assert!(matches!(&s.channels["t"].kind, ChannelKind::Telegram(t) if t.approvals));
        let secrets: Vec<String> = s
            .channels
            .values()
            .flat_map(|c| c.kind.secrets().into_iter().map(|x| x.expose().to_string()))
            .collect();
        assert!(
            secrets.contains(&"sign-secret-value".to_string()),
            "redacted like the others"
        );
        assert!(secrets.contains(&"line-secret-value".to_string()));
        for (yaml, want) in [
            (
                "channels:\n  s: {type: slack, webhook_url: 'https://h/x', approvals: true}\n",
                "approvals does not apply to type slack",
            ),
            (
                "channels:\n  t: {type: telegram, bot_token: x, chat_id: 1, signing_secret: y}\n",
                "signing_secret does not apply to type telegram",
            ),
            (
                "channels:\n  s: {type: slack, webhook_url: 'https://h/x', channel_secret: y}\n",
                "channel_secret does not apply to type slack",
            ),
        ] {
            let mut s = parse(yaml);
            s.resolve(&|_| None).unwrap();
            let err = s.check_channels().unwrap_err().to_string();
            assert!(err.contains(want), "{yaml}: {err}");
        }
    }
}
