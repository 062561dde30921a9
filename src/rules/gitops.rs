//! What a rule does about an object that Argo CD or Flux owns (`gitops:`).
//!
//! A GitOps controller re-applies what is in Git: a repair that changes a field Git holds is
//! undone (Argo CD's self-heal within seconds, Flux on its next interval). So each change a
//! playbook makes to an owned object is one of:
//!
//! - `act`: change it anyway (right for what Git does not hold, such as the `restartedAt`
//!   annotation of a restart);
//! - `hold`: pause the controller for this object for a bounded time, change it, and say
//!   loudly what to change in Git; the hold is released at its expiry or once Git agrees;
//! - `skip`: change nothing and hand the incident to humans with the exact change to make in
//!   Git and the controller that owns the object.
//!
//! A rule's `gitops:` applies to every change its playbooks make; without it each kind of
//! change takes the settings' default for that kind ([`GitopsDefaults`]): a restart acts, a
//! rollback, a memory change and a scale are skipped. Objects no controller owns are always
//! changed. These types are here, in the rules leaf module, because the rule file, the
//! settings and the job contract (`job::JobSpec`) all carry them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// What to do before changing an object a GitOps controller owns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GitopsPolicy {
    /// Change it as if no controller owned it.
    Act,
    /// Pause the controller for the object for a bounded time, then change it.
    Hold,
    /// Change nothing; escalate with the change to make in Git.
    Skip,
}

impl GitopsPolicy {
    /// Every policy.
    pub const ALL: [GitopsPolicy; 3] = [GitopsPolicy::Act, GitopsPolicy::Hold, GitopsPolicy::Skip];

    /// The name used in rules, settings, steps and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            GitopsPolicy::Act => "act",
            GitopsPolicy::Hold => "hold",
            GitopsPolicy::Skip => "skip",
        }
    }
}

impl fmt::Display for GitopsPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for GitopsPolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<GitopsPolicy, String> {
        GitopsPolicy::ALL
            .into_iter()
            .find(|p| p.as_str() == s.trim())
            .ok_or_else(|| format!("gitops {s:?} is not one of act, hold, skip"))
    }
}

/// The kinds of change a playbook can make to a workload, each with its own default policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    /// `restart()`: a new `restartedAt` annotation on the pod template.
    Restart,
    /// `rollback()`: the previous revision's pod template (its images among it).
    Rollback,
    /// `set_memory()` (and the playbooks built on it: scale_memory, oom_handler).
    Memory,
    /// `scale()`: `spec.replicas`.
    Scale,
}

impl ChangeKind {
    /// Every kind.
    pub const ALL: [ChangeKind; 4] = [
        ChangeKind::Restart,
        ChangeKind::Rollback,
        ChangeKind::Memory,
        ChangeKind::Scale,
    ];

    /// The name used in settings, steps and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Restart => "restart",
            ChangeKind::Rollback => "rollback",
            ChangeKind::Memory => "memory",
            ChangeKind::Scale => "scale",
        }
    }
}

impl fmt::Display for ChangeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The settings' `gitops.defaults`: the policy of each kind of change for rules without
/// `gitops:`.
///
/// The defaults follow what the controllers do to each change: a restart's annotation is not
/// in Git, so Argo CD leaves it and Flux leaves it too when its field manager is not
/// `kubectl…` (aiops's is `aiops`); a rollback, a memory change and a scale are fields Git
/// holds, so they would be undone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GitopsDefaults {
    /// Default `act`.
    #[serde(default = "act")]
    pub restart: GitopsPolicy,
    /// Default `skip`.
    #[serde(default = "skip")]
    pub rollback: GitopsPolicy,
    /// Default `skip`.
    #[serde(default = "skip")]
    pub memory: GitopsPolicy,
    /// Default `skip`.
    #[serde(default = "skip")]
    pub scale: GitopsPolicy,
}

fn act() -> GitopsPolicy {
    GitopsPolicy::Act
}

fn skip() -> GitopsPolicy {
    GitopsPolicy::Skip
}

impl Default for GitopsDefaults {
    fn default() -> Self {
        GitopsDefaults {
            restart: GitopsPolicy::Act,
            rollback: GitopsPolicy::Skip,
            memory: GitopsPolicy::Skip,
            scale: GitopsPolicy::Skip,
        }
    }
}

impl GitopsDefaults {
    /// The policy of one kind of change under a rule's `gitops:` (`None`: these defaults).
    pub fn policy(&self, rule: Option<GitopsPolicy>, kind: ChangeKind) -> GitopsPolicy {
        rule.unwrap_or(match kind {
            ChangeKind::Restart => self.restart,
            ChangeKind::Rollback => self.rollback,
            ChangeKind::Memory => self.memory,
            ChangeKind::Scale => self.scale,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rule_without_gitops_restarts_but_skips_the_fields_git_holds() {
        let d = GitopsDefaults::default();
        assert_eq!(d.policy(None, ChangeKind::Restart), GitopsPolicy::Act);
        for kind in [ChangeKind::Rollback, ChangeKind::Memory, ChangeKind::Scale] {
            assert_eq!(d.policy(None, kind), GitopsPolicy::Skip, "{kind}");
        }
    }

    #[test]
    fn a_rules_gitops_key_applies_to_every_kind_of_change() {
        let d = GitopsDefaults::default();
        for kind in ChangeKind::ALL {
            assert_eq!(d.policy(Some(GitopsPolicy::Hold), kind), GitopsPolicy::Hold);
        }
    }

    #[test]
    fn an_unknown_policy_names_the_three() {
        let e = "revert".parse::<GitopsPolicy>().unwrap_err();
        assert!(e.contains("act, hold, skip"), "{e}");
        assert_eq!(" hold ".parse::<GitopsPolicy>(), Ok(GitopsPolicy::Hold));
    }

    #[test]
    fn partial_defaults_keep_the_others() {
        let d: GitopsDefaults = serde_yaml::from_str("memory: hold").unwrap();
        assert_eq!(d.memory, GitopsPolicy::Hold);
        assert_eq!(d.restart, GitopsPolicy::Act);
        assert_eq!(d.scale, GitopsPolicy::Skip);
        assert!(serde_yaml::from_str::<GitopsDefaults>("cpu: act").is_err());
    }
}
