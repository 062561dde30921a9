//! Rules: which Alertmanager alert triggers which repair playbook.
//!
//! Rules live in `rules/*.yaml` (and `*.yml`). Files are read in file-name order; rules keep
//! file order, then their position in the file. For an alert, rules are tried in that order and
//! the first matching rule wins, unless it sets `continue: true`, in which case later matching
//! rules apply too (as in Alertmanager routes).
//!
//! ```yaml
//! rules:
//!   - name: restart-on-down            # required, unique across all files, [a-z0-9_.-]+
//!     matchers:                        # required, Alertmanager matcher syntax, all must match
//!       - auto_repair="restart"
//!       - severity!="info"
//!     # or one string in Alertmanager's braces form (quote it, or YAML reads a mapping):
//!     # matchers: '{auto_repair="restart", severity!="info"}'
//!     playbook: restart                # required: playbooks/<name>.rhai; [a-z0-9_-]+
//!     params: {timeout: 5m}            # optional mapping passed to the playbook; default {}
//!     target:                          # optional; which Kubernetes object, from the labels
//!       namespace: $namespace          # "$label" = that label's value; anything else = literal
//!       kind: [$target_kind, Deployment]   # a list = the first that resolves
//!       name: [$deployment, $app]
//!     wait: 2m                         # optional, default 0s: act only if still firing after this
//!     cooldown: 10m                    # optional, default 0s: per rule x target
//!     budget: {max: 3, window: 1h}     # optional: at most `max` repairs per rule x target per window
//!     dry_run: false                   # optional, default false
//!     continue: false                  # optional, default false: otherwise the first match wins
//!     timeout: 5m                      # optional: wall-clock limit of one playbook run
//!     verify:                          # optional; after the playbook reports success
//!       rollout: true                  # changed workloads must finish rolling out (default true)
//!       rollout_timeout: 2m            # how long that may take (default 2m)
//!       health_url: http://web.prod.svc/healthz   # optional: must answer 2xx
//!       resolved_within: 10m           # optional: the alert must resolve within this
//!     mode: approve                    # optional: shadow | approve | auto (default: the
//!                                      #   settings' trust.default_mode, itself auto)
//!     approval:                        # optional, for mode: approve (defaults: trust.approval)
//!       expires: 30m                   #   then the repair escalates to humans
//!       approvers: [telegram:123456789, slack:U024BE7LH, email:oncall-mail]
//!     gitops: hold                     # optional: act | hold | skip, for objects Argo CD or Flux
//!                                      #   owns (default: the settings' gitops.defaults, which
//!                                      #   restart and skip rollback, memory and scale)
//!     escalate:                        # optional chain, tried in order when a step fails
//!       - playbook: rollback
//!         params: {}
//!       - notify: oncall               # a notification route name
//!       - choose: best                 # or: the alternative with the best recent success
//!         from:                        #   rate for this alert (ties, cold start: first listed)
//!           - playbook: scale_memory
//!           - playbook: restart
//! ```
//!
//! Details:
//! - Matchers: `name op value`, op one of `=`, `!=`, `=~`, `!~`; the value double-quoted
//!   (escapes `\"`, `\\`, `\n`, `\t`) or unquoted when it has no spaces or special characters.
//!   Regexes are anchored at both ends, as in Alertmanager. An absent label matches as `""`, so
//!   `foo=""` matches alerts without `foo` and `foo!="x"` matches them too.
//! - Target defaults, per omitted field: namespace `[$namespace]`; kind
//!   `[$target_kind, Deployment]`; name `[$target_name, $deployment, $statefulset, $daemonset, $app]`.
//!   An absent or empty label does not resolve. The kind must be Deployment, StatefulSet or
//!   DaemonSet (any letter case); a literal that is not is a load error, a label value that is
//!   not means the rule has no target for that alert.
//! - Durations are strings with units: `30s`, `10m`, `1h30m`, `1h 30m`. A bare number is an
//!   error, because seconds-or-minutes is exactly the ambiguity a safety setting cannot have.
//! - Unknown keys are errors everywhere, for the same reason. A file may be empty or `rules: []`.
//! - `budget.max` must be at least 1 and `budget.window` longer than zero.
//!
//! Problems are reported all at once, one per line, as `file:line:column: message`, like a
//! compiler (at most one problem per rule, since a rule is read up to its first error).

mod gitops;
mod index;
mod loader;
mod matcher;
mod target;
mod trust;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use gitops::{ChangeKind, GitopsDefaults, GitopsPolicy};
pub use matcher::{MatchOp, Matcher, MatcherError, parse_matchers};
pub use target::{SUPPORTED_KINDS, Source, Target, TargetSpec, canonical_kind};
pub use trust::{
    ApprovalPolicy, Approver, DEFAULT_APPROVAL_EXPIRY, Mode, Platform, RuleApproval, Trust,
};

/// Alert labels, name to value.
pub type Labels = BTreeMap<String, String>;

/// Result with this module's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where a rule was defined.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Location {
    /// The rules file.
    pub file: PathBuf,
    /// 1-based line of the rule's `- name:` entry.
    pub line: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// One problem in a rules file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// File and 1-based line.
    pub location: Location,
    /// 1-based column, when known.
    pub column: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.column {
            Some(c) => write!(f, "{}:{}: {}", self.location, c, self.message),
            None => write!(f, "{}: {}", self.location, self.message),
        }
    }
}

/// Errors of the rules module.
#[derive(thiserror::Error, Debug)]
pub enum Error {
    /// The rules directory could not be listed (missing, not a directory, unreadable).
    #[error("rules directory {}: {source}", dir.display())]
    Dir {
        /// The directory.
        dir: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A rules file could not be read.
    #[error("{}: {source}", file.display())]
    Io {
        /// The file.
        file: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The rules have problems; all of them, one per line when displayed.
    #[error("{}", DisplayDiagnostics(.0))]
    Invalid(Vec<Diagnostic>),
}

impl Error {
    /// A short, stable label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Dir { .. } => "dir",
            Error::Io { .. } => "io",
            Error::Invalid(_) => "invalid",
        }
    }

    /// The problems, when the error is [`Error::Invalid`].
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            Error::Invalid(d) => d,
            _ => &[],
        }
    }
}

struct DisplayDiagnostics<'a>(&'a [Diagnostic]);

impl fmt::Display for DisplayDiagnostics<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

/// Attempt budget: at most `max` repairs per rule × target within `window`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Budget {
    /// At least 1.
    pub max: u32,
    /// Longer than zero.
    pub window: Duration,
}

/// What to do next when a repair step fails.
#[derive(Clone, Debug, PartialEq)]
pub enum EscalationStep {
    /// Run another playbook.
    Playbook {
        /// Playbook name.
        playbook: String,
        /// Parameters (a JSON object).
        params: serde_json::Value,
    },
    /// Notify a route/channel and stop.
    Notify {
        /// Notification route name.
        route: String,
    },
    /// `choose: best`: run whichever alternative has the best recent success rate for the
    /// alert (the knowledge base decides); ties and cold starts take the first listed.
    Choose {
        /// (playbook, params) alternatives, in chain order.
        alternatives: Vec<(String, serde_json::Value)>,
    },
}

/// How a repair is verified after its playbook reports success.
///
/// Serialized into each job's spec (`job::JobSpec`) with durations in milliseconds; a key
/// missing from a stored spec takes its default.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Verify {
    /// Check the rollout of every workload the playbook changed (default true).
    pub rollout: bool,
    /// How long that rollout may still take during verification (default 2m).
    #[serde(rename = "rollout_timeout_ms", with = "millis")]
    pub rollout_timeout: Duration,
    /// GET this URL after the repair; a 2xx means healthy.
    pub health_url: Option<String>,
    /// The alert must resolve within this time after the repair.
    #[serde(rename = "resolved_within_ms", with = "millis_opt")]
    pub resolved_within: Option<Duration>,
}

impl Default for Verify {
    fn default() -> Self {
        Verify {
            rollout: true,
            rollout_timeout: Duration::from_secs(120),
            health_url: None,
            resolved_within: None,
        }
    }
}

/// A `Duration` as whole milliseconds (the unit of every stored time in this crate).
mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

/// An optional `Duration` as whole milliseconds, `null` when absent.
mod millis_opt {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => super::millis::serialize(d, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Option::<u64>::deserialize(d).map(|ms| ms.map(Duration::from_millis))
    }
}

/// One rule. See the module documentation for the file format.
#[derive(Clone, Debug)]
pub struct Rule {
    /// Unique name.
    pub name: String,
    /// Where it was defined.
    pub location: Location,
    /// All must match.
    pub matchers: Vec<Matcher>,
    /// Main playbook.
    pub playbook: String,
    /// Parameters for the playbook (always a JSON object).
    pub params: serde_json::Value,
    /// How to find the target object.
    pub target: TargetSpec,
    /// Act only if still firing after this.
    pub wait: Duration,
    /// Minimum time between repairs per rule × target.
    pub cooldown: Duration,
    /// Attempt budget per rule × target.
    pub budget: Option<Budget>,
    /// Record what would be done, change nothing.
    pub dry_run: bool,
    /// `continue:` keep evaluating later rules after this one matched.
    pub continue_matching: bool,
    /// Wall-clock limit of one playbook run (None = engine default).
    pub timeout: Option<Duration>,
    /// Escalation chain, in order.
    pub escalate: Vec<EscalationStep>,
    /// Verification after a successful playbook run.
    pub verify: Verify,
    /// `mode:` shadow, approve or auto; `None` takes the settings' `trust.default_mode`.
    pub mode: Option<Mode>,
    /// `approval:` for `mode: approve`; omitted keys come from the settings' `trust.approval`.
    pub approval: RuleApproval,
    /// `gitops:` act, hold or skip for every change to an object Argo CD or Flux owns;
    /// `None` takes the settings' `gitops.defaults` per kind of change.
    pub gitops: Option<GitopsPolicy>,
}

impl Rule {
    /// A rule with every optional setting at its default; the location is `<memory>:0`.
    /// Handy in tests and for rules built in code.
    pub fn new(
        name: impl Into<String>,
        matchers: Vec<Matcher>,
        playbook: impl Into<String>,
    ) -> Rule {
        Rule {
            name: name.into(),
            location: Location {
                file: PathBuf::from("<memory>"),
                line: 0,
            },
            matchers,
            playbook: playbook.into(),
            params: serde_json::Value::Object(serde_json::Map::new()),
            target: TargetSpec::default(),
            wait: Duration::ZERO,
            cooldown: Duration::ZERO,
            budget: None,
            dry_run: false,
            continue_matching: false,
            timeout: None,
            escalate: Vec::new(),
            verify: Verify::default(),
            mode: None,
            approval: RuleApproval::default(),
            gitops: None,
        }
    }

    /// Whether every matcher matches the labels.
    #[inline]
    pub fn matches(&self, labels: &Labels) -> bool {
        self.matchers.iter().all(|m| m.matches(labels))
    }

    /// The main playbook, then the escalation playbooks, in order.
    pub fn playbooks(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.playbook.as_str()).chain(
            self.escalate
                .iter()
                .filter_map(|s| match s {
                    EscalationStep::Playbook { playbook, .. } => Some(vec![playbook.as_str()]),
                    EscalationStep::Notify { .. } => None,
                    EscalationStep::Choose { alternatives } => {
                        Some(alternatives.iter().map(|(p, _)| p.as_str()).collect())
                    }
                })
                .flatten(),
        )
    }

    /// The target this rule acts on for these labels, if it resolves.
    pub fn target_for(&self, labels: &Labels) -> Option<Target> {
        self.target.resolve(labels)
    }
}

/// An ordered, indexed set of rules. Cheap to clone (shared), `Send + Sync`.
#[derive(Clone, Debug, Default)]
pub struct RuleSet {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    rules: Vec<Rule>,
    index: index::Index,
}

impl RuleSet {
    /// Loads every `*.yaml` / `*.yml` file of `dir` (not recursively; dot-files skipped), in
    /// file-name order. Reports every problem of every file in one [`Error::Invalid`].
    pub fn load_dir(dir: &Path) -> Result<RuleSet> {
        loader::load_dir(dir).map(RuleSet::from_rules)
    }

    /// Loads the rules compiled into the binary ([`crate::embedded::RULES`]); their locations
    /// read `embedded:rules/FILE:LINE`.
    pub fn load_embedded() -> Result<RuleSet> {
        let files = crate::embedded::RULES
            .iter()
            .map(|(name, text)| {
                (
                    crate::embedded::display_path("rules", name),
                    Some((*text).to_string()),
                )
            })
            .collect();
        loader::load_texts(files).map(RuleSet::from_rules)
    }

    /// Loads the rules of `source`: a directory or the embedded copies.
    pub fn load(source: &crate::embedded::Source) -> Result<RuleSet> {
        match source {
            crate::embedded::Source::Dir(dir) => RuleSet::load_dir(dir),
            crate::embedded::Source::Embedded => RuleSet::load_embedded(),
        }
    }

    /// Parses one file's text; `file` is only used in locations. Checks names are unique
    /// within the text.
    pub fn parse_str(text: &str, file: &Path) -> Result<Vec<Rule>> {
        let (rules, mut diags) = loader::parse_file(text, file);
        diags.extend(loader::duplicate_names(&rules));
        if diags.is_empty() {
            Ok(rules)
        } else {
            Err(Error::Invalid(diags))
        }
    }

    /// Builds a set (and its index) from rules in evaluation order.
    pub fn from_rules(rules: Vec<Rule>) -> RuleSet {
        let index = index::Index::build(&rules);
        RuleSet {
            inner: Arc::new(Inner { rules, index }),
        }
    }

    /// All rules, in evaluation order.
    pub fn rules(&self) -> &[Rule] {
        &self.inner.rules
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.inner.rules.len()
    }

    /// Whether there are no rules.
    pub fn is_empty(&self) -> bool {
        self.inner.rules.is_empty()
    }

    /// The rule with this name.
    pub fn get(&self, name: &str) -> Option<&Rule> {
        self.inner.rules.iter().find(|r| r.name == name)
    }

    /// Every playbook referenced by any rule (main and escalation), for checking they exist.
    pub fn playbooks(&self) -> BTreeSet<&str> {
        self.inner.rules.iter().flat_map(Rule::playbooks).collect()
    }

    /// Rules that apply to an alert, in order: stops after the first matching rule whose
    /// `continue` is false. Allocates only when something matches.
    pub fn matching(&self, labels: &Labels) -> Vec<&Rule> {
        self.matching_iter(labels).collect()
    }

    /// Like [`matching`](Self::matching), lazily and without allocating.
    pub fn matching_iter<'a, 'l>(&'a self, labels: &'l Labels) -> Matching<'a, 'l> {
        Matching {
            rules: &self.inner.rules,
            labels,
            lists: self.inner.index.candidates(labels),
            done: false,
        }
    }
}

/// Iterator over the rules that apply to an alert; see [`RuleSet::matching_iter`].
pub struct Matching<'a, 'l> {
    rules: &'a [Rule],
    labels: &'l Labels,
    lists: index::Lists<'a>,
    done: bool,
}

impl<'a> Iterator for Matching<'a, '_> {
    type Item = &'a Rule;

    fn next(&mut self) -> Option<&'a Rule> {
        if self.done {
            return None;
        }
        while let Some(i) = self.lists.pop_min() {
            let rule = &self.rules[i as usize];
            if rule.matches(self.labels) {
                self.done = !rule.continue_matching;
                return Some(rule);
            }
        }
        self.done = true;
        None
    }
}

#[cfg(test)]
mod tests;
