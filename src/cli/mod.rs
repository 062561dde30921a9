//! The `aiops` command line: one file per command, each with its clap args and a `run()`
//! that builds what it needs through [`aiops::app`] and prints a report type (`Display`, and
//! `Serialize` behind `--json`).
//!
//! `anyhow` is used here and in `main.rs` only: a command's error is printed once, as
//! `error: …` with its causes, and nothing matches on it.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

use aiops::config::env::VARIABLES;
use aiops::telemetry::{self, LogFormat, Verbosity};

mod check;
mod deploy;
mod init;
mod kb;
mod manifests;
mod notify;
mod render;
mod replay;
mod serve;
mod simulate;
mod test_playbook;
mod token;
mod user;

/// The environment variable naming the settings file.
const CONFIG_ENV: &str = "AIOPS_CONFIG";

/// Turns Prometheus Alertmanager alerts into safe, verified repairs on Kubernetes.
///
/// Settings come from an optional YAML file (--config or AIOPS_CONFIG), overridden by the
/// AIOPS_* environment variables listed below. `serve` logs at info; every other command logs
/// warnings only, so that its output is what it prints (AIOPS_LOG overrides both).
#[derive(Parser, Debug)]
#[command(name = "aiops", version, about, long_about, after_long_help = environment_help())]
pub struct Cli {
    /// YAML settings file (optional; every key has a default).
    #[arg(long, global = true, env = CONFIG_ENV, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Log format, for every command: human lines (coloured only on a terminal) or one JSON
    /// object per line. Logs go to stderr.
    #[arg(long, global = true, value_enum, default_value = "pretty")]
    pub log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the daemon: listen for Alertmanager webhooks (default 127.0.0.1:9095) and repair.
    ///
    /// SIGTERM/SIGINT stop it gracefully; SIGHUP (or POST /-/reload) reloads rules and playbooks.
    Serve,
    /// Validate settings, rules and playbooks (syntax, and calls to functions that do not exist); exit 0 when valid, 1 with file:line messages otherwise.
    ///
    /// Says which rules and playbooks are in use: a directory, or the set embedded in the binary
    /// (used when rules_dir/playbooks_dir are unset and ./rules, ./playbooks do not exist).
    Check(check::Args),
    /// Write a settings file (DIR/aiops.yaml, every key commented with its default), the
    /// shipped rules (DIR/rules) and playbooks (DIR/playbooks) for a team to edit.
    ///
    /// Then: aiops --config DIR/aiops.yaml check. Existing files are never overwritten
    /// without --force.
    Init(init::Args),
    /// Show what the daemon would do with an Alertmanager payload, changing nothing.
    ///
    /// Prints, per alert: the dedup verdict (against the configured store), the matching rule,
    /// the guard verdict, the plan, and a dry run of the playbook against the configured
    /// cluster (cluster.state_file) listing the actions it would take.
    Simulate(simulate::Args),
    /// Decide the stored alerts of a period again under a (changed) rule set, with the
    /// recorded history as it was at each alert's time; print the decisions that differ.
    ///
    /// Compares each alert's recorded decision (per rule: job with its playbook and mode, or
    /// the guard's refusal) with the daemon's decision under --rules/--playbooks, made at the
    /// time the alert arrived over the history as it was then (rebuilt in a scratch store;
    /// the configured store is only read). Prints each difference and totals; --json for CI.
    /// Exit 0, or 1 with --fail-on-diff when a decision differs; 2 when it cannot replay.
    Replay(replay::Args),
    /// Render an app's Kubernetes objects, monitoring and Alertmanager route from its spec.
    ///
    /// Prints one YAML stream (for kubectl apply -f -): Namespace, ServiceAccount, ConfigMap,
    /// NetworkPolicy, Service, Deployment (and for django the migrations Job and the Celery
    /// worker), Ingress, cert-manager Certificate, ServiceMonitor, PrometheusRule (alerts
    /// labelled for the shipped auto-repair rules) and the Grafana dashboard ConfigMap, then the
    /// Alertmanager route + receiver snippet as a comment. With -o DIR, one file per object,
    /// plus DIR/alertmanager/route.yaml and DIR/grafana/APP.json. Changes nothing.
    Render(render::Args),
    /// Deploy an app in recorded steps: check its DNS, detect its framework, create its
    /// namespace, build its image, deploy it, then its ingress, TLS, monitoring and auto-repair.
    ///
    /// First the domain must resolve to deploy.ingress_addresses (or CNAME to
    /// deploy.ingress_hostnames); --skip-dns-check skips that, and with no ingress configured it
    /// does not run: the first line printed and the recorded deployment say which. A git or
    /// upload app naming no framework has it detected from its source_url. Then it needs a
    /// cluster (cluster.kubeconfig or cluster.in_cluster, as for serve) and the store: the app
    /// is registered, the deployment and each step recorded (printed as each ends), objects
    /// applied by server-side apply (field manager aiops), a git app without an image built by
    /// a Kaniko Job (deploy.registry), the migrations Job (django) waited for before the
    /// Deployment, every rollout waited for, and the result announced (deploy_success or
    /// deploy_failed). Exit 0 when every step succeeded or had nothing to do, 1 otherwise (the
    /// failed step is recorded with the reason). With --detach, the deployment is queued for a
    /// daemon with a cluster, and `GET /api/apps/NAME/deployments/ID` follows it.
    Deploy(deploy::Args),
    /// Knowledge base: how repairs went.
    #[command(subcommand)]
    Kb(kb::Command),
    /// API tokens (JWT HS256 signed with api.jwt_secret / AIOPS_JWT_SECRET).
    #[command(subcommand)]
    Token(token::Command),
    /// Web console users (sign-in at /ui/login): add, change, list, remove.
    #[command(subcommand)]
    User(user::Command),
    /// Notifications: try a channel.
    #[command(subcommand)]
    Notify(notify::Command),
    /// Print the Kubernetes manifests that run the daemon in a cluster (for kubectl apply -f -).
    Manifests(manifests::Args),
    /// Run one playbook offline against a described cluster state; print its steps and outcome.
    ///
    /// The target and params come from the first rule that matches the alert and uses the
    /// playbook (or the default target labels); --param overrides params. The cluster is the
    /// in-memory one described by --state (empty without it); changes apply to it, and are
    /// printed, unless --dry-run.
    TestPlaybook(test_playbook::Args),
}

/// The `--help` list of environment variables, built from the tables the program reads
/// (`config::env::VARIABLES`, each with the setting it replaces) so it cannot drift from them.
fn environment_help() -> String {
    let own = [
        (CONFIG_ENV, "the settings file (--config)"),
        (
            telemetry::LOG_ENV,
            "log filter, RUST_LOG syntax (default: info for serve, warn for other commands)",
        ),
    ];
    let rows: Vec<(&str, &str)> = own
        .into_iter()
        .chain(VARIABLES.iter().map(|v| (v.name, v.setting)))
        .collect();
    let width = rows.iter().map(|(name, _)| name.len()).max().unwrap_or(0);
    let mut help = String::from("Environment variables:\n");
    for (name, what) in rows {
        help.push_str(&format!("  {name:width$}  {what}\n"));
    }
    help
}

impl Cli {
    /// How much the command logs unless AIOPS_LOG says otherwise.
    pub fn verbosity(&self) -> Verbosity {
        match self.command {
            Command::Serve => Verbosity::Daemon,
            _ => Verbosity::Command,
        }
    }

    /// Runs the command; its exit code, or the error to print.
    pub async fn run(self) -> Result<ExitCode> {
        let config = self.config.as_deref();
        match self.command {
            Command::Serve => serve::run(config).await,
            Command::Check(args) => check::run(config, args).await,
            Command::Init(args) => init::run(args),
            Command::Simulate(args) => simulate::run(config, args).await,
            Command::Replay(args) => replay::run(config, args).await,
            Command::Render(args) => render::run(config, args),
            Command::Deploy(args) => deploy::run(config, args).await,
            Command::Kb(cmd) => kb::run(config, cmd).await,
            Command::Token(cmd) => token::run(config, cmd),
            Command::Notify(cmd) => notify::run(config, cmd).await,
            Command::User(cmd) => user::run(config, cmd).await,
            Command::Manifests(args) => manifests::run(args),
            Command::TestPlaybook(args) => test_playbook::run(config, args).await,
        }
    }
}
