//! `aiops test-playbook NAME --alert FILE`: one playbook, offline, in the daemon's sandbox,
//! against an in-memory cluster described in YAML.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};

use aiops::alert::{Payload, Status};
use aiops::app;
use aiops::cluster::memory::MemoryCluster;
use aiops::config::Settings;
use aiops::definitions::Definitions;
use aiops::playbook::host::{Outcome, RunResult};
use aiops::playbook::{offline, sandbox::Sandbox};

/// `aiops test-playbook`'s arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Playbook name (playbooks/NAME.rhai).
    name: String,
    /// An Alertmanager webhook payload; its first firing alert is used.
    #[arg(long, value_name = "FILE.json")]
    alert: PathBuf,
    /// Cluster state (YAML: workloads, pods, jobs).
    #[arg(long, value_name = "FILE.yaml")]
    state: Option<PathBuf>,
    /// Override a param: --param max_limit=2Gi (value read as YAML).
    #[arg(long = "param", value_name = "KEY=VALUE")]
    params: Vec<String>,
    /// Validate and report changes without applying them.
    #[arg(long)]
    dry_run: bool,
}

/// Runs the playbook; exit 0 when it ends in success.
pub async fn run(config: Option<&Path>, args: Args) -> Result<ExitCode> {
    let settings = Settings::load(config)?;
    // Not `app::load_definitions`: a playbook is tested without the production notify
    // settings, so a chain's `notify:` names are not checked here (`check` does).
    let defs = Definitions::load(&settings.rules_source(), &settings.playbooks_source())
        .map_err(app::Error::Definitions)?;
    let body =
        std::fs::read(&args.alert).with_context(|| format!("reading {}", args.alert.display()))?;
    let payload = Payload::from_slice(&body).with_context(|| args.alert.display().to_string())?;
    let alert = payload
        .alerts
        .iter()
        .find(|a| a.status == Status::Firing)
        .with_context(|| format!("{} has no firing alert", args.alert.display()))?;
    let overrides = args
        .params
        .iter()
        .map(|p| parse_param(p))
        .collect::<Result<Vec<_>>>()?;
    let plan = offline::plan(&defs, &args.name, alert, &overrides).map_err(anyhow::Error::msg)?;
    let cluster = Arc::new(match &args.state {
        Some(path) => MemoryCluster::load(path).map_err(|e| anyhow::anyhow!("{e}"))?,
        None => MemoryCluster::empty(),
    });
    // Printed before the run, so a run that cannot start still says what it was.
    print!(
        "{}",
        Heading {
            name: &args.name,
            plan: &plan,
            dry_run: args.dry_run
        }
    );
    let sandbox =
        Sandbox::new(cluster.clone(), &settings.playbook).with_gitops(settings.gitops.clone());
    let result = offline::run(&sandbox, &defs, &args.name, alert, &plan, args.dry_run)
        .await
        .map_err(anyhow::Error::msg)?;
    let report = Ran {
        result,
        changes: cluster.actions(),
    };
    print!("{report}");
    Ok(match report.result.outcome {
        Outcome::Success(_) => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    })
}

/// `KEY=VALUE`, the value read as YAML (a plain string when it is not valid YAML).
fn parse_param(p: &str) -> Result<(String, serde_json::Value)> {
    let (k, v) = p
        .split_once('=')
        .with_context(|| format!("--param {p}: expected KEY=VALUE"))?;
    let v: serde_json::Value =
        serde_yaml::from_str(v).unwrap_or_else(|_| serde_json::Value::String(v.into()));
    Ok((k.trim().to_string(), v))
}

/// What is about to run: playbook, target, where the params came from.
struct Heading<'a> {
    name: &'a str,
    plan: &'a offline::Plan,
    dry_run: bool,
}

impl fmt::Display for Heading<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "playbook {} on {}{}, params {}{}",
            self.name,
            self.plan.target.key(),
            self.plan
                .rule
                .as_ref()
                .map_or(String::new(), |r| format!(" (from rule {r})")),
            self.plan.params,
            if self.dry_run { ", dry run" } else { "" }
        )
    }
}

/// How the run went: its steps, its outcome, and what it changed in the in-memory cluster.
struct Ran {
    result: RunResult,
    changes: Vec<String>,
}

impl fmt::Display for Ran {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "steps:")?;
        for (i, s) in self.result.steps.iter().enumerate() {
            writeln!(f, "  {}. {}: {}", i + 1, s.action, s.detail)?;
        }
        writeln!(
            f,
            "outcome: {}: {}",
            self.result.outcome.kind(),
            self.result.outcome.message()
        )?;
        if !self.changes.is_empty() {
            writeln!(f, "cluster changes:")?;
            for c in &self.changes {
                writeln!(f, "  - {c}")?;
            }
        }
        Ok(())
    }
}
