//! Rules and playbooks, loaded, cross-checked and swapped together.
//!
//! Its own module so that the pipeline (which decides with them) and offline playbook runs
//! (`aiops simulate`, `aiops test-playbook`) can both use them without importing each other:
//! `pipeline` → `definitions` ← `playbook::offline`, and `definitions` → `playbook`, `rules`.

use std::sync::Arc;

use crate::embedded::Source;
use crate::playbook::{self, Catalog};
use crate::rules::{EscalationStep, RuleSet};

/// Rules and playbooks, loaded together and swapped together on reload.
#[derive(Clone)]
pub struct Definitions {
    /// The rules.
    pub rules: Arc<RuleSet>,
    /// The compiled playbooks.
    pub playbooks: Catalog,
}

impl std::fmt::Debug for Definitions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Definitions")
            .field("rules", &self.rules.len())
            .field("playbooks", &self.playbooks)
            .finish()
    }
}

impl Definitions {
    /// Loads rules and playbooks and checks that every playbook a rule names exists.
    /// Returns every problem found, each as `file:line: message`.
    /// Each comes from a directory or the copies embedded in the binary.
    pub fn load(rules_dir: &Source, playbooks_dir: &Source) -> Result<Definitions, Vec<String>> {
        let engine = playbook::sandboxed_engine();
        let mut problems = Vec::new();
        let rules =
            RuleSet::load(rules_dir).map_err(|e| problems.extend(split_lines(&e.to_string())));
        let playbooks = Catalog::load(&engine, playbooks_dir)
            .map_err(|e| problems.extend(split_lines(&e.to_string())));
        let (Ok(rules), Ok(playbooks)) = (rules, playbooks) else {
            return Err(problems);
        };
        for rule in rules.rules() {
            for name in rule.playbooks() {
                if !playbooks.contains(name) {
                    problems.push(format!(
                        "{}: rule {:?} uses playbook {name:?}, but {} has no {name}.rhai",
                        rule.location,
                        rule.name,
                        match playbooks_dir {
                            Source::Dir(d) => d.display().to_string(),
                            Source::Embedded => "the embedded set".to_string(),
                        }
                    ));
                }
            }
        }
        if problems.is_empty() {
            Ok(Definitions {
                rules: Arc::new(rules),
                playbooks,
            })
        } else {
            Err(problems)
        }
    }

    /// Every chain step `notify: NAME` must name a notify channel, a named route, or
    /// `default` (label routing only); `known` says which names exist. One problem per step,
    /// as `file:line: message`.
    pub fn check_notify(&self, known: &dyn Fn(&str) -> bool) -> Vec<String> {
        let mut problems = Vec::new();
        for rule in self.rules.rules() {
            for step in &rule.escalate {
                if let EscalationStep::Notify { route } = step
                    && !known(route)
                {
                    problems.push(format!(
                        "{}: rule {:?} escalates to notify {route:?}, which is neither a channel in notify.channels, a named route in notify.routes, nor `default`",
                        rule.location, rule.name
                    ));
                }
            }
        }
        problems
    }

    /// Every rule that runs in `approve` mode under `trust` must have someone who may approve
    /// it: with an empty allow-list each of its repairs would wait, escalate and refuse every
    /// click. One problem per rule, as `file:line: message`.
    pub fn check_approvers(&self, trust: &crate::rules::Trust) -> Vec<String> {
        self.rules
            .rules()
            .iter()
            .filter(|rule| {
                trust.mode_of(rule) == crate::rules::Mode::Approve
                    && trust.approval_of(rule).approvers.is_empty()
            })
            .map(|rule| {
                format!(
                    "{}: rule {:?} is in approve mode but nobody may approve it: set approval.approvers or trust.approval.approvers",
                    rule.location, rule.name
                )
            })
            .collect()
    }
}

fn split_lines(s: &str) -> Vec<String> {
    s.lines().map(String::from).collect()
}
