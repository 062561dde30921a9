//! The `aiops` command line: serve, check, simulate, kb, manifests, test-playbook, render, deploy.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use aiops::config::Settings;
use aiops::pipeline::{Definitions, Pipeline, RuleVerdict};
use aiops::telemetry::{self, LogFormat};

/// Turns Prometheus Alertmanager alerts into safe, verified repairs on Kubernetes.
///
/// Settings come from an optional YAML file (--config or AIOPS_CONFIG), overridden by AIOPS_*
/// environment variables: AIOPS_LISTEN, AIOPS_DATABASE_URL, AIOPS_WEBHOOK_TOKEN,
/// AIOPS_WEBHOOK_TOKEN_FILE, AIOPS_RULES_DIR, AIOPS_PLAYBOOKS_DIR, AIOPS_MAX_BODY_BYTES,
/// AIOPS_INTAKE_RATE_LIMIT, AIOPS_WORKERS, AIOPS_QUEUE_CAPACITY, AIOPS_POLL_INTERVAL,
/// AIOPS_STORM_MAX_TARGETS, AIOPS_STORM_WINDOW, AIOPS_ALLOW_NAMESPACES, AIOPS_DENY_NAMESPACES,
/// AIOPS_JWT_SECRET, AIOPS_JWT_SECRET_FILE, AIOPS_RETENTION_ALERTS, AIOPS_RETENTION_REPAIRS,
/// AIOPS_RETENTION_INTERVAL, AIOPS_API_MAX_BODY_BYTES, AIOPS_API_MAX_DEPTH,
/// AIOPS_HTTP_HEADER_READ_TIMEOUT, AIOPS_HTTP_BODY_READ_TIMEOUT, AIOPS_HTTP_IDLE_TIMEOUT,
/// AIOPS_HTTP_MAX_CONNECTIONS, AIOPS_HTTP_AUTH_FAILURES_PER_MINUTE, AIOPS_HTTP_AUTH_FAILURE_BURST,
/// AIOPS_DEPLOY_WEBHOOK_URL, AIOPS_DEPLOY_TEMPLATES, AIOPS_DEPLOY_TIMEOUT, AIOPS_DEPLOY_POLL;
/// AIOPS_LOG sets the log filter (default info).
#[derive(Parser, Debug)]
#[command(name = "aiops", version, about, long_about)]
struct Cli {
    /// YAML settings file (optional; every key has a default).
    #[arg(long, global = true, env = "AIOPS_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Log format.
    #[arg(long, global = true, value_enum, default_value = "pretty")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the daemon: listen for Alertmanager webhooks (default 127.0.0.1:9095) and repair.
    ///
    /// SIGTERM/SIGINT stop it gracefully; SIGHUP (or POST /-/reload) reloads rules and playbooks.
    Serve,
    /// Validate settings, rules and playbooks; exit 0 when valid, 1 with file:line messages otherwise.
    ///
    /// Says which rules and playbooks are in use: a directory, or the set embedded in the binary
    /// (used when rules_dir/playbooks_dir are unset and ./rules, ./playbooks do not exist).
    Check {
        /// Also check the cluster: the API server answers (its URL and version), and every
        /// permission the playbooks need is granted (SelfSubjectAccessReview); missing ones are
        /// listed with the ClusterRole rule to add. Exit 1 when anything is missing.
        #[arg(long)]
        cluster: bool,
    },
    /// Write a settings file (DIR/aiops.yaml, every key commented with its default), the
    /// shipped rules (DIR/rules) and playbooks (DIR/playbooks) for a team to edit.
    ///
    /// Then: aiops --config DIR/aiops.yaml check. Existing files are never overwritten
    /// without --force.
    Init {
        /// The directory (created if needed).
        dir: PathBuf,
        /// Overwrite files that already exist.
        #[arg(long)]
        force: bool,
    },
    /// Show what the daemon would do with an Alertmanager payload, changing nothing.
    ///
    /// Prints, per alert: the dedup verdict (against the configured store), the matching rule,
    /// the guard verdict, the plan, and a dry run of the playbook against the configured
    /// cluster (cluster.state_file) listing the actions it would take.
    Simulate {
        /// An Alertmanager webhook payload (JSON).
        file: PathBuf,
        /// Print the verdicts as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Render an app's Kubernetes objects, monitoring and Alertmanager route from its spec.
    ///
    /// Prints one YAML stream (for kubectl apply -f -): Namespace, ServiceAccount, ConfigMap,
    /// NetworkPolicy, Service, Deployment (and for django the migrations Job and the Celery
    /// worker), Ingress, cert-manager Certificate, ServiceMonitor, PrometheusRule (alerts
    /// labelled for the shipped auto-repair rules) and the Grafana dashboard ConfigMap, then the
    /// Alertmanager route + receiver snippet as a comment. With -o DIR, one file per object,
    /// plus DIR/alertmanager/route.yaml and DIR/grafana/APP.json. Changes nothing.
    Render {
        /// The app spec (YAML or JSON): name, domain, framework, image, plan, ...
        file: PathBuf,
        /// Write one file per object into DIR instead of printing.
        #[arg(short = 'o', long = "output", value_name = "DIR")]
        output: Option<PathBuf>,
        #[command(flatten)]
        templates: TemplateArgs,
    },
    /// Deploy an app: render, server-side apply (field manager aiops), wait for the rollout.
    ///
    /// Needs a cluster (cluster.kubeconfig or cluster.in_cluster, as for serve) and the store:
    /// the app is registered and the deployment recorded there (version, image, status), then
    /// announced (deploy_success). For django the migrations Job must complete before the
    /// Deployment is applied. Exit 0 when every rollout completed, 1 otherwise (the failed
    /// deployment is recorded with the reason).
    Deploy {
        /// The app spec (YAML or JSON).
        file: PathBuf,
        #[command(flatten)]
        templates: TemplateArgs,
        /// How long to wait for the migrations Job and for each rollout (default
        /// deploy.rollout_timeout, 5m).
        #[arg(long, value_name = "DURATION")]
        timeout: Option<String>,
    },
    /// Knowledge base: how repairs went.
    #[command(subcommand)]
    Kb(KbCommand),
    /// API tokens (JWT HS256 signed with api.jwt_secret / AIOPS_JWT_SECRET).
    #[command(subcommand)]
    Token(TokenCommand),
    /// Notifications: try a channel.
    #[command(subcommand)]
    Notify(NotifyCommand),
    /// Print the Kubernetes manifests that run the daemon in a cluster (for kubectl apply -f -),
    /// or with --deploy-role the ClusterRole that `aiops deploy` needs.
    Manifests(aiops::manifests::Args),
    /// Run one playbook offline against a described cluster state; print its steps and outcome.
    ///
    /// The target and params come from the first rule that matches the alert and uses the
    /// playbook (or the default target labels); --param overrides params. The cluster is the
    /// in-memory one described by --state (empty without it); changes apply to it, and are
    /// printed, unless --dry-run.
    TestPlaybook {
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
    },
}

/// Template options shared by render and deploy.
#[derive(clap::Args, Debug)]
struct TemplateArgs {
    /// A directory whose files override the embedded templates of the same name
    /// (default deploy.templates_dir, AIOPS_DEPLOY_TEMPLATES).
    #[arg(long, value_name = "DIR")]
    templates: Option<PathBuf>,
    /// The daemon's webhook URL for the Alertmanager snippet (default deploy.webhook_url,
    /// AIOPS_DEPLOY_WEBHOOK_URL, http://aiops.aiops.svc:9095/webhook/alertmanager).
    #[arg(long, value_name = "URL")]
    webhook_url: Option<String>,
}

#[derive(Subcommand, Debug)]
enum KbCommand {
    /// Success rate and time to recover per alert and playbook, and per target.
    Stats {
        /// The window, e.g. 7d, 24h.
        #[arg(long, default_value = "7d")]
        since: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// The last repairs of one target.
    History {
        /// NAMESPACE/NAME (a Deployment) or NAMESPACE/KIND/NAME.
        target: String,
        /// How many.
        #[arg(long, default_value_t = 20)]
        limit: i64,
    },
}

#[derive(Subcommand, Debug)]
enum TokenCommand {
    /// Mint a token for the /api; prints a summary, then the token alone on the last line.
    ///
    /// Example: aiops token issue --sub alice --apps shop,blog --role editor --ttl 24h
    Issue {
        /// Who the token is for (recorded in the audit log).
        #[arg(long)]
        sub: String,
        /// Apps (namespaces) it may see, comma separated; admins see every app.
        #[arg(long, value_delimiter = ',')]
        apps: Vec<String>,
        /// admin, editor (read and write) or viewer (read only).
        #[arg(long, default_value = "viewer")]
        role: String,
        /// How long it is valid, e.g. 24h, 30d.
        #[arg(long, default_value = "24h")]
        ttl: String,
    },
}

#[derive(Subcommand, Debug)]
enum NotifyCommand {
    /// Send a test message to one channel of notify.channels and print the API's answer;
    /// exit 1 when the channel refuses or cannot be reached.
    Test {
        /// The channel name.
        channel: String,
        /// The text (default: a line naming the channel and the host).
        #[arg(long)]
        message: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init(cli.log_format);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        match cli.command {
            Command::Serve => serve(cli.config.as_deref()).await,
            Command::Check { cluster } => check(cli.config.as_deref(), cluster).await,
            Command::Init { dir, force } => init(&dir, force),
            Command::Simulate { file, json } => simulate(cli.config.as_deref(), &file, json).await,
            Command::Kb(cmd) => kb(cli.config.as_deref(), cmd).await,
            Command::Token(cmd) => token(cli.config.as_deref(), cmd),
            Command::Notify(NotifyCommand::Test { channel, message }) => {
                notify_test(cli.config.as_deref(), &channel, message).await
            }
            Command::Render {
                file,
                output,
                templates,
            } => render(cli.config.as_deref(), &file, output.as_deref(), &templates),
            Command::Deploy {
                file,
                templates,
                timeout,
            } => deploy(cli.config.as_deref(), &file, &templates, timeout.as_deref()).await,
            Command::Manifests(args) => Ok(args.print()?),
            Command::TestPlaybook {
                name,
                alert,
                state,
                params,
                dry_run,
            } => {
                test_playbook(
                    cli.config.as_deref(),
                    &name,
                    &alert,
                    state.as_deref(),
                    &params,
                    dry_run,
                )
                .await
            }
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Option<&Path>) -> Result<ExitCode> {
    let settings = Settings::load(config)?;
    let (reload_tx, reload_rx) = tokio::sync::mpsc::channel(4);
    let shutdown = signals(reload_tx)?;
    aiops::daemon::run(settings, shutdown, reload_rx).await?;
    Ok(ExitCode::SUCCESS)
}

/// Completes on SIGTERM or SIGINT; forwards SIGHUP as reload requests.
fn signals(reload: tokio::sync::mpsc::Sender<()>) -> Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut hup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading rules and playbooks");
            if reload.send(()).await.is_err() {
                return;
            }
        }
    });
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
    })
}

async fn check(config: Option<&Path>, cluster: bool) -> Result<ExitCode> {
    let settings = match Settings::load(config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let source = config.map_or_else(
        || "defaults and environment".to_string(),
        |p| p.display().to_string(),
    );
    println!("settings: OK ({source})");
    if let Err(e) = settings.check_listen_is_safe() {
        eprintln!("settings: {e}");
        return Ok(ExitCode::FAILURE);
    }
    println!(
        "notify: OK ({} channels, {} routes)",
        settings.notify.channels.len(),
        settings.notify.routes.len()
    );
    let (rules_source, playbooks_source) = (settings.rules_source(), settings.playbooks_source());
    let defs = match Definitions::load(&rules_source, &playbooks_source) {
        Ok(defs) => defs,
        Err(problems) => {
            for p in &problems {
                eprintln!("{p}");
            }
            eprintln!("check failed: {} problem(s)", problems.len());
            return Ok(ExitCode::FAILURE);
        }
    };
    let problems = defs.check_notify(&|n| settings.notify.knows(n));
    if !problems.is_empty() {
        for p in &problems {
            eprintln!("{p}");
        }
        eprintln!("check failed: {} problem(s)", problems.len());
        return Ok(ExitCode::FAILURE);
    }
    println!("rules: {rules_source} ({} rules)", defs.rules.len());
    println!(
        "playbooks: {playbooks_source} ({} playbooks)",
        defs.playbooks.len()
    );
    if !cluster {
        return Ok(ExitCode::SUCCESS);
    }
    let connect = match aiops::preflight::connect_of(&settings) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cluster: {e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let report =
        match aiops::preflight::run(&connect, &defs, &settings.guard.namespaces.allow).await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("cluster: {e}");
                return Ok(ExitCode::FAILURE);
            }
        };
    let lines = report.lines();
    if report.passed() {
        for l in &lines {
            println!("{l}");
        }
        Ok(ExitCode::SUCCESS)
    } else {
        // The reachable line goes to stdout like every passed check; what is wrong to stderr.
        for l in &lines {
            if l.starts_with("cluster: API server") && report.unreachable.is_none() {
                println!("{l}");
            } else {
                eprintln!("{l}");
            }
        }
        Ok(ExitCode::FAILURE)
    }
}

fn init(dir: &Path, force: bool) -> Result<ExitCode> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    // Absolute, so the settings file works from any working directory.
    let dir = dir
        .canonicalize()
        .with_context(|| format!("resolving {}", dir.display()))?;
    let files = aiops::embedded::init_files(&dir, &aiops::embedded::settings_file(&dir));
    aiops::embedded::write_files(&files, force)?;
    for (path, _) in &files {
        println!("wrote {}", path.display());
    }
    println!(
        "next: aiops --config {} check",
        dir.join("aiops.yaml").display()
    );
    Ok(ExitCode::SUCCESS)
}

async fn simulate(config: Option<&Path>, file: &Path, json: bool) -> Result<ExitCode> {
    let settings = Settings::load(config)?;
    let body = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let payload =
        aiops::alert::Payload::from_slice(&body).with_context(|| format!("{}", file.display()))?;
    let defs = Definitions::load(&settings.rules_source(), &settings.playbooks_source())
        .map_err(|p| anyhow::anyhow!("invalid rules or playbooks:\n{}", p.join("\n")))?;
    // Read the configured store when it exists, so dedup, cooldowns and budgets are real; never
    // create it. Every write happens in a transaction that is rolled back.
    let url = settings.database_url.expose();
    let (url, note) = match sqlite_path(url) {
        Some(path) if !Path::new(&path).exists() => (
            "sqlite::memory:".to_string(),
            " (store file absent: empty history)",
        ),
        _ => (url.to_string(), ""),
    };
    // Read-only: never migrate the live store; the decision transaction is rolled back.
    let opts = aiops::store::Options {
        read_only: !url.contains(":memory:"),
        ..aiops::store::Options::default()
    };
    let store = aiops::store::Store::connect(&url, &opts)
        .await
        .context("opening the store")?;
    let pipeline = Pipeline::new(store, defs, &settings, aiops::metrics::Metrics::new());
    let report = pipeline.simulate(&payload).await?;
    let cluster = aiops::daemon::open_cluster(&settings).await?;
    let runner = Arc::new(aiops::playbook::host::Runner::new());
    if json {
        println!("{}", serde_json::to_string_pretty(&report.alerts)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "simulating {} alert(s) from {}{note}; nothing is recorded",
        payload.alerts.len(),
        file.display()
    );
    for r in &report.rejected {
        println!(
            "alert {:?} (alerts[{}]) rejected, as the webhook would answer 400: {} {}",
            r.alertname, r.index, r.field, r.reason
        );
    }
    for a in &report.alerts {
        println!(
            "alert {} {} [{}]: {}",
            a.alertname,
            a.fingerprint,
            a.status.as_str(),
            a.dedup
        );
        if a.dedup == "duplicate" {
            println!("  already recorded: no action");
            continue;
        }
        if a.status == aiops::alert::Status::Resolved {
            println!(
                "  resolved: would cancel {} queued/waiting job(s)",
                a.cancelled_jobs.len()
            );
            continue;
        }
        if a.rules.is_empty() {
            println!("  no rule matched: recorded only");
        }
        for rv in &a.rules {
            match rv {
                RuleVerdict::Job {
                    rule,
                    target,
                    state,
                    plan,
                    ..
                } => {
                    let when = if plan.not_before > aiops::store::now_ms() {
                        format!(
                            "waiting until {}",
                            chrono::DateTime::from_timestamp_millis(plan.not_before)
                                .map_or_else(String::new, |t| t.to_rfc3339())
                        )
                    } else {
                        "now".to_string()
                    };
                    println!(
                        "  rule {rule}: allowed by every guard -> would create a job ({state})"
                    );
                    println!(
                        "    plan: run playbook {} on {} {when}{}, params {}",
                        plan.playbook,
                        target.key(),
                        if plan.dry_run { " (dry run)" } else { "" },
                        plan.params
                    );
                    println!("    on failure: {}", plan.escalate);
                    // Run the playbook as a dry run: what it would do to the cluster, now.
                    let Some(alert) = payload
                        .alerts
                        .iter()
                        .find(|x| x.fingerprint == a.fingerprint)
                    else {
                        continue;
                    };
                    let p = aiops::playbook::offline::Plan {
                        target: target.clone(),
                        params: plan.params.clone(),
                        rule: Some(rule.clone()),
                    };
                    let opts = aiops::playbook::offline::Options {
                        cluster: cluster.clone(),
                        dry_run: true,
                        timeout: settings.playbook.timeout.0,
                        host: (&settings.playbook).into(),
                    };
                    let defs = pipeline.definitions();
                    match aiops::playbook::offline::run(
                        runner.clone(),
                        &defs,
                        &plan.playbook,
                        alert,
                        &p,
                        opts,
                    )
                    .await
                    {
                        Ok(r) => {
                            println!("    dry run of {}:", plan.playbook);
                            for s in &r.steps {
                                println!("      {}: {}", s.action, s.detail);
                            }
                            println!("      -> {}: {}", r.outcome.kind(), r.outcome.message());
                        }
                        Err(e) => println!("    dry run of {} not possible: {e}", plan.playbook),
                    }
                }
                RuleVerdict::Refused {
                    rule,
                    reason,
                    detail,
                    ..
                } => {
                    println!("  rule {rule}: refused ({}) - {detail}", reason.as_str());
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn test_playbook(
    config: Option<&Path>,
    name: &str,
    alert_file: &Path,
    state: Option<&Path>,
    params: &[String],
    dry_run: bool,
) -> Result<ExitCode> {
    use aiops::cluster::memory::MemoryCluster;
    use aiops::playbook::offline;
    let settings = Settings::load(config)?;
    let defs = Definitions::load(&settings.rules_source(), &settings.playbooks_source())
        .map_err(|p| anyhow::anyhow!("invalid rules or playbooks:\n{}", p.join("\n")))?;
    let body =
        std::fs::read(alert_file).with_context(|| format!("reading {}", alert_file.display()))?;
    let payload = aiops::alert::Payload::from_slice(&body)
        .with_context(|| alert_file.display().to_string())?;
    let alert = payload
        .alerts
        .iter()
        .find(|a| a.status == aiops::alert::Status::Firing)
        .with_context(|| format!("{} has no firing alert", alert_file.display()))?;
    let overrides = params
        .iter()
        .map(|p| {
            let (k, v) = p
                .split_once('=')
                .with_context(|| format!("--param {p}: expected KEY=VALUE"))?;
            let v: serde_json::Value =
                serde_yaml::from_str(v).unwrap_or_else(|_| serde_json::Value::String(v.into()));
            Ok((k.trim().to_string(), v))
        })
        .collect::<Result<Vec<_>>>()?;
    let plan = offline::plan(&defs, name, alert, &overrides).map_err(anyhow::Error::msg)?;
    let cluster = Arc::new(match state {
        Some(path) => MemoryCluster::load(path).map_err(|e| anyhow::anyhow!("{e}"))?,
        None => MemoryCluster::empty(),
    });
    println!(
        "playbook {name} on {}{}, params {}{}",
        plan.target.key(),
        plan.rule
            .as_ref()
            .map_or(String::new(), |r| format!(" (from rule {r})")),
        plan.params,
        if dry_run { ", dry run" } else { "" }
    );
    let opts = offline::Options {
        cluster: cluster.clone(),
        dry_run,
        timeout: settings.playbook.timeout.0,
        host: (&settings.playbook).into(),
    };
    let result = offline::run(
        Arc::new(aiops::playbook::host::Runner::new()),
        &defs,
        name,
        alert,
        &plan,
        opts,
    )
    .await
    .map_err(anyhow::Error::msg)?;
    println!("steps:");
    for (i, s) in result.steps.iter().enumerate() {
        println!("  {}. {}: {}", i + 1, s.action, s.detail);
    }
    println!(
        "outcome: {}: {}",
        result.outcome.kind(),
        result.outcome.message()
    );
    let changes = cluster.actions();
    if !changes.is_empty() {
        println!("cluster changes:");
        for c in changes {
            println!("  - {c}");
        }
    }
    Ok(match result.outcome {
        aiops::playbook::host::Outcome::Success(_) => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    })
}

fn token(config: Option<&Path>, cmd: TokenCommand) -> Result<ExitCode> {
    let TokenCommand::Issue {
        sub,
        apps,
        role,
        ttl,
    } = cmd;
    let settings = Settings::load(config)?;
    let secret = settings.api.jwt_secret.clone().context(
        "no JWT secret configured: set AIOPS_JWT_SECRET (or api.jwt_secret / api.jwt_secret_file in the config file)",
    )?;
    let key = aiops::auth::Key::new(secret)?;
    let role: aiops::auth::Role = role.parse()?;
    let ttl = aiops::config::parse_duration(&ttl).map_err(anyhow::Error::msg)?;
    if ttl.is_zero() {
        anyhow::bail!("--ttl must be above 0s");
    }
    let apps: Vec<String> = apps
        .into_iter()
        .map(|a| a.trim().to_string())
        .filter(|a| !a.is_empty())
        .collect();
    if role != aiops::auth::Role::Admin && apps.is_empty() {
        anyhow::bail!(
            "a {} token needs --apps (the namespaces it may see)",
            role.as_str()
        );
    }
    let now = chrono::Utc::now().timestamp();
    let claims = aiops::auth::Claims {
        sub,
        role,
        apps,
        exp: now.saturating_add(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX)),
        iat: now,
        nbf: None,
    };
    let token = key.issue(&claims)?;
    let expires = chrono::DateTime::from_timestamp(claims.exp, 0)
        .map(|t| t.to_rfc3339())
        .unwrap_or_default();
    eprintln!(
        "token for {} (role {}, apps {}), expires {expires}:",
        claims.sub,
        claims.role.as_str(),
        if claims.role == aiops::auth::Role::Admin {
            "all".to_string()
        } else {
            claims.apps.join(",")
        }
    );
    println!("{token}");
    Ok(ExitCode::SUCCESS)
}

async fn kb(config: Option<&Path>, cmd: KbCommand) -> Result<ExitCode> {
    let settings = Settings::load(config)?;
    let url = settings.database_url.expose();
    if sqlite_path(url).is_some_and(|p| !Path::new(&p).exists()) {
        anyhow::bail!(
            "no store yet at {}: nothing has been repaired",
            sqlite_path(url).unwrap_or_default()
        );
    }
    // Read-only: never migrate the live store from a reporting command.
    let opts = aiops::store::Options {
        read_only: true,
        ..aiops::store::Options::default()
    };
    let store = aiops::store::Store::connect(url, &opts)
        .await
        .context("opening the store")?;
    match cmd {
        KbCommand::Stats { since, json } => {
            let window = aiops::config::parse_duration(&since).map_err(anyhow::Error::msg)?;
            let from = aiops::store::now_ms() - aiops::store::ms(window);
            let stats = aiops::kb::stats(&store, from, None).await?;
            let targets = aiops::kb::target_stats(&store, from, None).await?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(
                        &serde_json::json!({"by_alert": stats, "by_target": targets})
                    )?
                );
                return Ok(ExitCode::SUCCESS);
            }
            let secs = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |s| format!("{s:.0}s"));
            println!("repairs in the last {since}, by alert and playbook:");
            println!(
                "{:<32} {:<16} {:>5} {:>8} {:>9} {:>9}",
                "ALERT", "PLAYBOOK", "RUNS", "SUCCESS", "TTR MEAN", "TTR P90"
            );
            for s in &stats {
                println!(
                    "{:<32} {:<16} {:>5} {:>7.0}% {:>9} {:>9}",
                    s.alertname,
                    s.playbook,
                    s.runs,
                    s.success_rate * 100.0,
                    secs(s.ttr_mean_s),
                    secs(s.ttr_p90_s)
                );
            }
            println!("\nby target:");
            println!("{:<48} {:>5} {:>8}", "TARGET", "RUNS", "SUCCESS");
            for t in &targets {
                println!(
                    "{:<48} {:>5} {:>7.0}%",
                    t.target,
                    t.runs,
                    t.success_rate * 100.0
                );
            }
        }
        KbCommand::History { target, limit } => {
            let key = match target.split('/').collect::<Vec<_>>()[..] {
                [ns, name] => format!("{ns}/Deployment/{name}"),
                [ns, kind, name] => format!(
                    "{ns}/{}/{name}",
                    aiops::rules::canonical_kind(kind).unwrap_or(kind)
                ),
                _ => anyhow::bail!(
                    "target must be NAMESPACE/NAME or NAMESPACE/KIND/NAME, got {target:?}"
                ),
            };
            let jobs = aiops::kb::history(&store, &key, limit).await?;
            if jobs.is_empty() {
                println!("no repairs of {key}");
            }
            for j in jobs {
                let when = chrono::DateTime::from_timestamp_millis(j.created_at)
                    .map_or_else(String::new, |t| t.to_rfc3339());
                let result = j.error.clone().or(j.outcome.clone()).unwrap_or_default();
                let ttr = j.ttr_ms.map_or(String::new(), |ms| {
                    format!(" (recovered in {}s)", ms / 1000)
                });
                println!(
                    "{when} job {} {} [{}] {}: {result}{ttr}",
                    j.id, j.playbook, j.rule, j.state
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Loads settings and the spec, and renders it with the command line's template options.
fn load_and_render(
    config: Option<&Path>,
    file: &Path,
    args: &TemplateArgs,
) -> Result<(Settings, aiops::deploy::AppSpec, aiops::deploy::Rendered)> {
    let mut settings = Settings::load(config)?;
    if let Some(url) = &args.webhook_url {
        settings.deploy.webhook_url = url.clone();
    }
    if let Some(dir) = &args.templates {
        settings.deploy.templates_dir = Some(dir.clone());
    }
    let spec = aiops::deploy::AppSpec::load(file)?;
    let opts = aiops::deploy::Options {
        webhook_url: settings.deploy.webhook_url.clone(),
        templates_dir: settings.deploy.templates_dir.clone(),
    };
    let rendered = aiops::deploy::render(&spec, &opts)?;
    Ok((settings, spec, rendered))
}

fn render(
    config: Option<&Path>,
    file: &Path,
    output: Option<&Path>,
    args: &TemplateArgs,
) -> Result<ExitCode> {
    let (_, _, rendered) = load_and_render(config, file, args)?;
    match output {
        None => print!("{}", rendered.to_stream()),
        Some(dir) => {
            for path in rendered.write_dir(dir)? {
                println!("{}", path.display());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn deploy(
    config: Option<&Path>,
    file: &Path,
    args: &TemplateArgs,
    timeout: Option<&str>,
) -> Result<ExitCode> {
    let (settings, spec, rendered) = load_and_render(config, file, args)?;
    let c = &settings.cluster;
    if c.kubeconfig.is_none() && !c.in_cluster {
        anyhow::bail!(
            "aiops deploy needs a cluster: set cluster.kubeconfig (AIOPS_KUBECONFIG) or cluster.in_cluster (AIOPS_KUBE_IN_CLUSTER=true)"
        );
    }
    let mut opts = aiops::deploy::apply::Options {
        timeout: settings.deploy.rollout_timeout.0,
        poll: settings.deploy.poll.0,
    };
    if let Some(t) = timeout {
        opts.timeout =
            aiops::config::parse_duration(t).map_err(|e| anyhow::anyhow!("--timeout: {e}"))?;
    }
    let connect = aiops::cluster::kubernetes::Connect {
        kubeconfig: c.kubeconfig.clone(),
        context: c.context.clone(),
        in_cluster: c.in_cluster,
        api_url: c.api_url.clone(),
    };
    let cluster = aiops::cluster::kubernetes::KubeCluster::connect(&connect)
        .await
        .map_err(|e| anyhow::anyhow!("cluster: {e}"))?;
    let store = aiops::daemon::open_store(&settings).await?;
    println!(
        "deploying {} {} ({}) to namespace {}",
        spec.name,
        spec.version(),
        spec.image,
        spec.namespace()
    );
    let outbox = aiops::notify::Outbox::new(&settings.notify)?;
    let (record, result) = aiops::deploy::apply::deploy(
        &cluster,
        &store,
        &spec,
        &rendered,
        &opts,
        "cli",
        Some(&outbox),
    )
    .await?;
    deliver_now(&settings, &store, &outbox, record.started_at).await?;
    store.close().await;
    match result {
        Ok(outcome) => {
            for o in &outcome.applied {
                println!("  applied {o}");
            }
            for r in &outcome.rollouts {
                println!("  {r}");
            }
            println!(
                "deployment {} of {}: {}",
                record.id, record.app, record.status
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("deployment {} of {} failed: {e}", record.id, record.app);
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Sends the notifications a command just queued, so `aiops deploy` tells people even when no
/// daemon runs; retries that are not due yet are left to the daemon's dispatcher.
async fn deliver_now(
    settings: &Settings,
    store: &aiops::store::Store,
    outbox: &aiops::notify::Outbox,
    since: i64,
) -> Result<()> {
    let notifiers = aiops::notify::notifiers(&settings.notify)?;
    if notifiers.is_empty() {
        return Ok(());
    }
    let owner = format!("cli-{}", std::process::id());
    let dispatcher = aiops::notify::dispatch::Dispatcher::new(
        store.clone(),
        &settings.notify,
        notifiers,
        aiops::metrics::Metrics::new(),
        &owner,
        outbox.wake_handle(),
    );
    while dispatcher.run_once().await? > 0 {}
    for n in store
        .notifications()
        .await?
        .iter()
        .filter(|n| n.created_at >= since && n.event == "deploy_success")
    {
        println!(
            "  notified {}: {}{}",
            n.channel,
            n.state.as_str(),
            n.last_error
                .as_deref()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        );
    }
    Ok(())
}

async fn notify_test(
    config: Option<&Path>,
    channel: &str,
    message: Option<String>,
) -> Result<ExitCode> {
    use aiops::notify::{self, Event, EventKind, Message};
    let settings = Settings::load(config)?;
    let Some(ch) = settings.notify.channels.get(channel) else {
        let known: Vec<_> = settings.notify.channels.keys().cloned().collect();
        anyhow::bail!(
            "no channel {channel:?} in notify.channels (configured: {})",
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        );
    };
    let notifier = notify::notifier(
        &ch.kind,
        &notify::http_client(settings.notify.timeout.0),
        settings.notify.timeout.0,
    )?;
    let outbox = notify::Outbox::new(&settings.notify)?;
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "aiops".into());
    let event = Event {
        kind: EventKind::Test,
        message: message.unwrap_or_else(|| {
            format!(
                "aiops notify test: channel {channel} ({}) from {host} works.",
                ch.kind.type_name()
            )
        }),
        at: chrono::Utc::now().to_rfc3339(),
        ..Event::default()
    };
    let (subject, body) = outbox.templates().render(&event);
    let msg = Message {
        subject,
        body,
        event_json: serde_json::to_string(&event)?,
        retry_key: uuid::Uuid::new_v4().to_string(),
        event: EventKind::Test.as_str().to_string(),
    };
    let redactor = notify::dispatch::Redactor::new(ch.kind.secrets());
    match notifier.send(&msg).await {
        Ok(receipt) => {
            println!(
                "sent to {channel} ({}): {} {}",
                ch.kind.type_name(),
                receipt.status,
                redactor.redact(&receipt.detail)
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            let e = redactor.error(e);
            eprintln!(
                "error: {channel} ({}) refused the test message: {}{}",
                ch.kind.type_name(),
                e,
                if e.is_retryable() {
                    " (temporary: the daemon would retry)"
                } else {
                    ""
                }
            );
            Ok(ExitCode::FAILURE)
        }
    }
}

fn sqlite_path(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or_default();
    (!path.is_empty() && !path.contains(":memory:")).then(|| path.to_string())
}
