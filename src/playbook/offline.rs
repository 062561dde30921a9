//! Running a playbook outside the daemon: `aiops test-playbook` and `aiops simulate`.
//!
//! The same engine, host API and sandbox as a daemon run, against a cluster the caller chooses
//! (usually an in-memory one described in YAML) and without the store, so the knowledge base
//! reads as empty.

use super::host::{RunInput, RunResult};
use super::sandbox::Sandbox;
use crate::alert::Alert;
use crate::cluster::Target;
use crate::definitions::Definitions;
use crate::rules::{EscalationStep, TargetSpec};

/// What a test run needs to know about its alert.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The target resolved from the alert's labels.
    pub target: Target,
    /// Params: the rule's (or its escalation step's), with overrides applied.
    pub params: serde_json::Value,
    /// The rule that supplied target and params, if any.
    pub rule: Option<String>,
    /// That rule's `gitops:` policy (`None`: `gitops.defaults` per kind of change).
    pub gitops: Option<crate::rules::GitopsPolicy>,
}

/// Finds the first rule that matches `alert` and uses `playbook` (as its playbook or in its
/// chain), and takes the target and params from it; without one, the default target spec and
/// no params. `overrides` (name, value) replace params.
pub fn plan(
    defs: &Definitions,
    playbook: &str,
    alert: &Alert,
    overrides: &[(String, serde_json::Value)],
) -> Result<Plan, String> {
    let mut found: Option<(&crate::rules::Rule, serde_json::Value)> = None;
    for rule in defs.rules.rules() {
        if !rule.matches(&alert.labels) {
            continue;
        }
        if rule.playbook == playbook {
            found = Some((rule, rule.params.clone()));
            break;
        }
        if let Some(params) = rule.escalate.iter().find_map(|s| match s {
            EscalationStep::Playbook {
                playbook: p,
                params,
            } if p == playbook => Some(params.clone()),
            EscalationStep::Choose { alternatives } => alternatives
                .iter()
                .find(|(p, _)| p == playbook)
                .map(|(_, params)| params.clone()),
            _ => None,
        }) {
            found = Some((rule, params));
            break;
        }
    }
    let (spec, mut params, rule, gitops) = match found {
        Some((rule, params)) => (
            rule.target.clone(),
            params,
            Some(rule.name.clone()),
            rule.gitops,
        ),
        None => (TargetSpec::default(), serde_json::json!({}), None, None),
    };
    let target = spec.resolve(&alert.labels).ok_or_else(|| {
        "the alert's labels do not name a target (namespace, kind, name); add labels such as namespace and deployment"
            .to_string()
    })?;
    if let Some(obj) = params.as_object_mut() {
        for (k, v) in overrides {
            obj.insert(k.clone(), v.clone());
        }
    }
    Ok(Plan {
        target,
        params,
        rule,
        gitops,
    })
}

/// Runs `playbook` for `alert` in `sandbox` (its cluster, host settings and deadline), without
/// the store; `dry_run` validates and answers changes without applying them.
pub async fn run(
    sandbox: &Sandbox,
    defs: &Definitions,
    playbook: &str,
    alert: &Alert,
    plan: &Plan,
    dry_run: bool,
) -> Result<RunResult, String> {
    let pb = defs.playbooks.get(playbook).cloned().ok_or_else(|| {
        format!(
            "no playbook named {playbook} (known: {})",
            defs.playbooks.names().collect::<Vec<_>>().join(", ")
        )
    })?;
    let input = RunInput::new(
        &alert.labels,
        &alert.annotations,
        &alert.fingerprint,
        // The same form the daemon gives playbooks.
        &alert
            .starts_at
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        alert.status.as_str(),
        &plan.params,
        &plan.target,
    );
    // The GitOps gate as the daemon would apply it: the settings' section, the rule's policy.
    let ctx = sandbox
        .context(None, None, dry_run, sandbox.timeout)
        .with_gitops(sandbox.gitops.clone(), plan.gitops);
    sandbox.run(pb, input, ctx).await
}
