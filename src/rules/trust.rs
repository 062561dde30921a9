//! The trust ladder: how far a rule's repairs are trusted (`mode:`), and who may approve them.
//!
//! A rule runs in one of three modes: `shadow` (decide and dry-run everything, change nothing,
//! and record whether the alert resolved on its own), `approve` (wait for a named person to
//! approve each repair from chat or a signed link), `auto` (act alone). A rule without `mode:`
//! takes the settings' `trust.default_mode`, which is `auto`, so rules written before the
//! ladder keep their behaviour.
//!
//! Approvers are platform user ids, written `platform:id` (`telegram:123456789`,
//! `slack:U024BE7LH`, `line:U4af4980629…`); for the signed links sent by email and generic
//! webhooks the id is the channel's name (`email:oncall-mail`), since a link identifies the
//! channel it was sent to, not a person. These types are here, in the rules leaf module,
//! because the rule file, the settings and the job contract (`job::JobSpec`) all carry them.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How far a rule's repairs are trusted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Decide and dry-run the playbook, change nothing; record what would have been done and
    /// whether the alert resolved on its own.
    Shadow,
    /// Wait for an allow-listed person to approve each repair.
    Approve,
    /// Act alone (the behaviour before the ladder existed).
    #[default]
    Auto,
}

impl Mode {
    /// Every mode, in ladder order.
    pub const ALL: [Mode; 3] = [Mode::Shadow, Mode::Approve, Mode::Auto];

    /// The name used in rules, settings, the store, the API and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Shadow => "shadow",
            Mode::Approve => "approve",
            Mode::Auto => "auto",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Mode {
    type Err = String;

    fn from_str(s: &str) -> Result<Mode, String> {
        Mode::ALL
            .into_iter()
            .find(|m| m.as_str() == s.trim())
            .ok_or_else(|| format!("mode {s:?} is not one of shadow, approve, auto"))
    }
}

/// Where an approval can come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Platform {
    /// A Telegram user id (the `from.id` of a callback query).
    Telegram,
    /// A Slack user id (`user.id` of an interaction payload).
    Slack,
    /// A LINE user id (`source.userId` of a postback event).
    Line,
    /// A signed link sent by an email channel; the id is the channel's name.
    Email,
    /// A signed link sent by a generic webhook channel; the id is the channel's name.
    Webhook,
    /// A user of the web console (`aiops user add`); the id is the user's name.
    Console,
}

impl Platform {
    /// Every platform.
    pub const ALL: [Platform; 6] = [
        Platform::Telegram,
        Platform::Slack,
        Platform::Line,
        Platform::Email,
        Platform::Webhook,
        Platform::Console,
    ];

    /// The prefix used in approver ids.
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Telegram => "telegram",
            Platform::Slack => "slack",
            Platform::Line => "line",
            Platform::Email => "email",
            Platform::Webhook => "webhook",
            Platform::Console => "console",
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One allow-listed approver (or the one who clicked): `platform:id`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Approver {
    /// Where the id comes from.
    pub platform: Platform,
    /// The platform's user id (or, for links, the channel's name). Never empty.
    pub id: String,
}

impl fmt::Display for Approver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.platform, self.id)
    }
}

impl FromStr for Approver {
    type Err = String;

    fn from_str(s: &str) -> Result<Approver, String> {
        let form = "approvers are written platform:id, e.g. telegram:123456789, slack:U024BE7LH, \
                    line:U4af4980629, email:<channel>, webhook:<channel>, console:<user>";
        let (platform, id) = s
            .split_once(':')
            .ok_or_else(|| format!("approver {s:?}: {form}"))?;
        let platform = Platform::ALL
            .into_iter()
            .find(|p| p.as_str() == platform.trim())
            .ok_or_else(|| format!("approver {s:?}: unknown platform {platform:?}; {form}"))?;
        let id = id.trim();
        if id.is_empty() || id.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!(
                "approver {s:?}: the id must be non-empty, without spaces"
            ));
        }
        Ok(Approver {
            platform,
            id: id.to_owned(),
        })
    }
}

impl TryFrom<String> for Approver {
    type Error = String;

    fn try_from(s: String) -> Result<Approver, String> {
        s.parse()
    }
}

impl From<Approver> for String {
    fn from(a: Approver) -> String {
        a.to_string()
    }
}

/// The default time a repair waits for approval before it escalates to humans.
pub const DEFAULT_APPROVAL_EXPIRY: Duration = Duration::from_secs(30 * 60);

/// What `mode: approve` needs: how long a repair waits, and who may decide.
///
/// Snapshotted into each awaiting job's spec (`job::JobSpec::approval`), so a reload never
/// changes who may approve a repair already waiting.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalPolicy {
    /// How long the repair waits; then it escalates to humans.
    #[serde(rename = "expires_ms", with = "super::millis")]
    pub expires: Duration,
    /// Who may approve or reject (a click from anyone else is refused and recorded).
    pub approvers: Vec<Approver>,
}

impl Default for ApprovalPolicy {
    fn default() -> Self {
        ApprovalPolicy {
            expires: DEFAULT_APPROVAL_EXPIRY,
            approvers: Vec::new(),
        }
    }
}

impl ApprovalPolicy {
    /// Whether `who` is on the allow-list.
    pub fn allows(&self, who: &Approver) -> bool {
        self.approvers.contains(who)
    }
}

/// A rule's own `approval:` block; each key it omits comes from the settings' `trust.approval`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RuleApproval {
    /// `approval.expires`.
    pub expires: Option<Duration>,
    /// `approval.approvers` (a rule's list replaces the settings' list, it does not extend it).
    pub approvers: Option<Vec<Approver>>,
}

/// The settings' `trust:` section: the mode of rules that set none, and the approval defaults.
///
/// ```yaml
/// trust:
///   default_mode: auto           # shadow | approve | auto
///   approval:
///     expires: 30m
///     approvers: [telegram:123456789, slack:U024BE7LH]
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Trust {
    /// The mode of a rule without `mode:` (default `auto`).
    pub default_mode: Mode,
    /// Approval defaults for rules in `approve` mode.
    pub approval: ApprovalPolicy,
}

impl Trust {
    /// The mode a rule runs in under these settings.
    pub fn mode_of(&self, rule: &super::Rule) -> Mode {
        rule.mode.unwrap_or(self.default_mode)
    }

    /// The approval policy of a rule: its own keys, else these defaults.
    pub fn approval_of(&self, rule: &super::Rule) -> ApprovalPolicy {
        ApprovalPolicy {
            expires: rule.approval.expires.unwrap_or(self.approval.expires),
            approvers: rule
                .approval
                .approvers
                .clone()
                .unwrap_or_else(|| self.approval.approvers.clone()),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTrust {
    #[serde(default)]
    default_mode: Mode,
    #[serde(default)]
    approval: RawApprovalDefaults,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApprovalDefaults {
    #[serde(default)]
    expires: Option<String>,
    #[serde(default)]
    approvers: Vec<Approver>,
}

impl<'de> Deserialize<'de> for Trust {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Trust, D::Error> {
        let raw = RawTrust::deserialize(d)?;
        let expires = match raw.approval.expires {
            None => DEFAULT_APPROVAL_EXPIRY,
            Some(s) => humantime::parse_duration(s.trim())
                .map_err(|e| serde::de::Error::custom(format!("trust.approval.expires: {e}")))?,
        };
        if expires.is_zero() {
            return Err(serde::de::Error::custom(
                "trust.approval.expires must be longer than 0s",
            ));
        }
        Ok(Trust {
            default_mode: raw.default_mode,
            approval: ApprovalPolicy {
                expires,
                approvers: raw.approval.approvers,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_approver_reads_as_platform_and_id_and_prints_back() {
        let a: Approver = "slack:U024BE7LH".parse().unwrap();
        assert_eq!(a.platform, Platform::Slack);
        assert_eq!(a.id, "U024BE7LH");
        assert_eq!(a.to_string(), "slack:U024BE7LH");
    }

    #[test]
    fn an_approver_without_a_known_platform_or_an_id_is_refused() {
        for bad in ["U024BE7LH", "discord:1", "telegram:", "telegram:a b"] {
            assert!(bad.parse::<Approver>().is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn a_rule_takes_the_default_mode_and_approval_unless_it_sets_its_own() {
        let trust = Trust {
            default_mode: Mode::Shadow,
            approval: ApprovalPolicy {
                expires: Duration::from_secs(600),
                approvers: vec!["telegram:1".parse().unwrap()],
            },
        };
        let mut rule = super::super::Rule::new("r", vec![], "restart");
        assert_eq!(trust.mode_of(&rule), Mode::Shadow);
        assert_eq!(trust.approval_of(&rule), trust.approval);
        rule.mode = Some(Mode::Approve);
        rule.approval.expires = Some(Duration::from_secs(60));
        assert_eq!(trust.mode_of(&rule), Mode::Approve);
        let own = trust.approval_of(&rule);
        assert_eq!(own.expires, Duration::from_secs(60));
        assert_eq!(own.approvers, trust.approval.approvers);
    }

    #[test]
    fn the_trust_section_reads_its_defaults_and_refuses_unknown_keys() {
        let t: Trust = serde_yaml::from_str("{}").unwrap();
        assert_eq!(t, Trust::default());
        let t: Trust = serde_yaml::from_str(
            "default_mode: approve\napproval: {expires: 15m, approvers: [line:U1]}",
        )
        .unwrap();
        assert_eq!(t.default_mode, Mode::Approve);
        assert_eq!(t.approval.expires, Duration::from_secs(900));
        assert!(serde_yaml::from_str::<Trust>("mode: auto").is_err());
        assert!(serde_yaml::from_str::<Trust>("default_mode: yolo").is_err());
    }
}
