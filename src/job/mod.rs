//! The job contract: what a repair job is asked to do, as one typed value.
//!
//! The guard builds a [`JobSpec`] from the matching rule (`JobSpec::for_rule`), the store keeps
//! it in the `jobs.spec` column (JSON), and the executor reads it back and matches on its
//! [`ChainStep`]s exhaustively. A reload of the rules never changes a spec already stored, so an
//! incident in flight keeps the chain it started with.
//!
//! The stored shape is the one the rule file uses (`escalate:` steps with `playbook`/`params`,
//! `notify`, or `choose: best` with `from`), so a spec reads like the rule it came from and the
//! `/api/repairs` answer keeps its keys (`params`, `escalate`, `verify`).
//!
//! A repair an editor asked for through `POST /api/repairs` carries a [`ByHand`]: who asked
//! and why. It is part of the spec so that every job of its chain keeps it and every reader of
//! a job (the API, the console, the knowledge base's SQL through `jobs.requested_by`) sees it.
//!
//! This module imports only `rules` (the rule model it converts from).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::rules::{ApprovalPolicy, EscalationStep, GitopsPolicy, Mode, Rule, Trust};

pub use crate::rules::Verify;

/// A playbook's parameters: the rule's `params:` mapping, handed to Rhai as the `params` map.
///
/// A map, not a struct, on purpose: each playbook defines its own parameters, and the rules
/// file is data for the script. Keys are sorted so that a spec serializes the same way twice.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Params(BTreeMap<String, serde_json::Value>);

impl Params {
    /// The parameters of a rule or step; anything but a mapping (the loader never produces
    /// one) counts as no parameters.
    pub fn from_value(value: &serde_json::Value) -> Params {
        match value {
            serde_json::Value::Object(map) => {
                Params(map.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            }
            _ => Params::default(),
        }
    }

    /// One parameter.
    pub fn get(&self, key: &str) -> Option<&serde_json::Value> {
        self.0.get(key)
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::ops::Index<&str> for Params {
    type Output = serde_json::Value;

    /// `null` for a missing key, as `serde_json::Value` indexing does.
    fn index(&self, key: &str) -> &serde_json::Value {
        static NULL: serde_json::Value = serde_json::Value::Null;
        self.0.get(key).unwrap_or(&NULL)
    }
}

impl std::fmt::Display for Params {
    /// The parameters as JSON (`{"memory":"512Mi"}`), as `simulate` prints them.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = serde_json::to_string(self).map_err(|_| std::fmt::Error)?;
        f.write_str(&text)
    }
}

impl From<Params> for serde_json::Value {
    fn from(p: Params) -> serde_json::Value {
        serde_json::Value::Object(p.0.into_iter().collect())
    }
}

/// The one strategy `choose:` knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// The alternative with the best recent success rate for the alert.
    Best,
}

/// One alternative of a `choose: best` step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alternative {
    /// Playbook name.
    pub playbook: String,
    /// Its parameters.
    #[serde(default)]
    pub params: Params,
}

/// One step of the escalation chain, taken when the step before it failed.
///
/// Untagged because the stored shape is the rules file's: a step is told apart by its keys
/// (`playbook`, `notify`, or `choose` with `from`), which never overlap.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ChainStep {
    /// Run another playbook.
    Playbook {
        /// Playbook name.
        playbook: String,
        /// Its parameters.
        #[serde(default)]
        params: Params,
    },
    /// Tell a notify route or channel; the chain goes on to the next step.
    Notify {
        /// Route or channel name (`default`: label routing).
        #[serde(rename = "notify")]
        route: String,
    },
    /// Run whichever alternative the knowledge base favours (see `executor::escalate`).
    ChooseBest {
        /// Always `best`.
        choose: Strategy,
        /// The alternatives, in chain order (ties and cold starts take the first).
        from: Vec<Alternative>,
    },
}

impl From<&EscalationStep> for ChainStep {
    fn from(step: &EscalationStep) -> ChainStep {
        match step {
            EscalationStep::Playbook { playbook, params } => ChainStep::Playbook {
                playbook: playbook.clone(),
                params: Params::from_value(params),
            },
            EscalationStep::Notify { route } => ChainStep::Notify {
                route: route.clone(),
            },
            EscalationStep::Choose { alternatives } => ChainStep::ChooseBest {
                choose: Strategy::Best,
                from: alternatives
                    .iter()
                    .map(|(playbook, params)| Alternative {
                        playbook: playbook.clone(),
                        params: Params::from_value(params),
                    })
                    .collect(),
            },
        }
    }
}

/// Who started a repair by hand (`POST /api/repairs`), and why.
///
/// Snapshotted into the spec like the mode: every job of the chain the run starts keeps it,
/// since the next step is part of the repair a person asked for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ByHand {
    /// The API token's subject (`sub`).
    pub by: String,
    /// The free text given with the request, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What a job does: its playbook and parameters, the chain that follows a failure, and how a
/// success is verified. Snapshotted from the rule when the job is created.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobSpec {
    /// The playbook this job runs.
    pub playbook: String,
    /// Its parameters.
    #[serde(default)]
    pub params: Params,
    /// The rule's whole escalation chain (every job of a chain carries all of it; the job's
    /// `chain_index` says where it stands). Serialized as `escalate`, the rules file's key.
    #[serde(rename = "escalate", default)]
    pub chain: Vec<ChainStep>,
    /// Verification after a successful run.
    #[serde(default)]
    pub verify: Verify,
    /// The rule's trust mode when the job was created (specs stored before the ladder existed
    /// read as `auto`, which is what they did). Every job of a chain keeps the first one's.
    #[serde(default)]
    pub mode: Mode,
    /// Who may approve and for how long, for `mode: approve` (`None` in the other modes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<ApprovalPolicy>,
    /// The rule's `gitops:` when the job was created; `None` takes the settings'
    /// `gitops.defaults` for each kind of change. Every job of a chain keeps the first one's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gitops: Option<GitopsPolicy>,
    /// Set when a person started the repair through `POST /api/repairs` (`None`: an alert
    /// matched the rule). Every job of a chain keeps the first one's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by_hand: Option<ByHand>,
}

impl JobSpec {
    /// A spec that runs `playbook` without parameters or chain, verified by default.
    pub fn new(playbook: impl Into<String>) -> JobSpec {
        JobSpec {
            playbook: playbook.into(),
            params: Params::default(),
            chain: Vec::new(),
            verify: Verify::default(),
            mode: Mode::Auto,
            approval: None,
            gitops: None,
            by_hand: None,
        }
    }

    /// The spec of a rule's first job under the default trust settings (`auto` unless the
    /// rule sets a mode).
    pub fn for_rule(rule: &Rule) -> JobSpec {
        JobSpec::for_rule_in(rule, &Trust::default())
    }

    /// The spec of a rule's first job: its mode and approval policy resolved against the
    /// settings' `trust:` section, then snapshotted.
    pub fn for_rule_in(rule: &Rule, trust: &Trust) -> JobSpec {
        let mode = trust.mode_of(rule);
        JobSpec {
            playbook: rule.playbook.clone(),
            params: Params::from_value(&rule.params),
            chain: rule.escalate.iter().map(ChainStep::from).collect(),
            verify: rule.verify.clone(),
            mode,
            approval: (mode == Mode::Approve).then(|| trust.approval_of(rule)),
            gitops: rule.gitops,
            by_hand: None,
        }
    }

    /// The spec of the next job of the same chain: another playbook, the same chain and
    /// verification.
    pub fn next(&self, playbook: &str, params: &Params) -> JobSpec {
        JobSpec {
            playbook: playbook.to_string(),
            params: params.clone(),
            chain: self.chain.clone(),
            verify: self.verify.clone(),
            mode: self.mode,
            approval: self.approval.clone(),
            gitops: self.gitops,
            by_hand: self.by_hand.clone(),
        }
    }

    /// Every notify route the chain names, in order: the humans to tell when automation
    /// gives up.
    pub fn routes(&self) -> Vec<String> {
        self.chain
            .iter()
            .filter_map(|s| match s {
                ChainStep::Notify { route } => Some(route.clone()),
                ChainStep::Playbook { .. } | ChainStep::ChooseBest { .. } => None,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
