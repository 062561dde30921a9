//! `aiops deploy FILE`: check DNS, detect the framework, then run the deployment's steps
//! ([`aiops::deploy::steps`]) in this process, printing each as it ends, and announce it; or,
//! with `--detach`, queue it for the daemon. The Kubernetes client, the store and the outbox
//! are the daemon's ([`aiops::app`]); the announcement is sent at once, so people hear of it
//! without a daemon.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;

use std::sync::Arc;

use aiops::app::{self, StoreAccess};
use aiops::config::Settings;
use aiops::deploy::grafana::Grafana;
use aiops::deploy::steps::{self, DnsCheck, Finished, Prechecked, Runner};
use aiops::notify::Outbox;
use aiops::store::{Notification, StepStatus, Store};

use super::render::{TemplateArgs, load, render_with};

const NEEDS_A_CLUSTER: &str = "aiops deploy needs a cluster: set cluster.kubeconfig (AIOPS_KUBECONFIG) or cluster.in_cluster (AIOPS_KUBE_IN_CLUSTER=true)";

/// `aiops deploy`'s arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The app spec (YAML or JSON).
    file: PathBuf,
    #[command(flatten)]
    templates: TemplateArgs,
    /// How long to wait for the migrations Job and for each rollout (default
    /// deploy.rollout_timeout, 5m).
    #[arg(long, value_name = "DURATION")]
    timeout: Option<String>,
    /// Deploy without checking that the domain resolves to the ingress
    /// (deploy.ingress_addresses); the deployment records that it was not checked.
    #[arg(long)]
    skip_dns_check: bool,
    /// Queue the deployment and return: a daemon with a cluster runs its steps, which
    /// `GET /api/apps/NAME/deployments/ID` and the console show as they go.
    #[arg(long)]
    detach: bool,
}

/// Deploys; exit 0 when every step succeeded (or had nothing to do), 1 otherwise. With
/// `--detach`, queues the deployment for the daemon and exits 0 at once.
pub async fn run(config: Option<&Path>, args: Args) -> Result<ExitCode> {
    let (settings, mut spec) = load(config, &args.file, &args.templates)?;
    if args.detach {
        return detach(&settings, spec, args.skip_dns_check).await;
    }
    // Before anything else (even the cluster): the domain must lead to the ingress, or the
    // record says why it was not checked.
    let expected = aiops::deploy::dns::Expected {
        addresses: settings.deploy.ingress_addresses.clone(),
        hostnames: settings.deploy.ingress_hostnames.clone(),
    };
    let dns_opts = aiops::deploy::dns::Options {
        nameserver: settings.deploy.dns_server,
        ..Default::default()
    };
    let gate =
        aiops::deploy::dns::gate(&spec.domain, &expected, &dns_opts, args.skip_dns_check).await?;
    println!("{gate}");
    let detected = detect(&spec).await?;
    if let Some(d) = &detected {
        println!("framework: {} ({})", d.framework, d.evidence.join(", "));
        spec.framework = Some(d.framework);
    }
    // Reading the kubeconfig sends nothing to the API server yet.
    let cluster = app::kube_cluster(&settings)
        .await?
        .ok_or_else(|| anyhow::anyhow!(NEEDS_A_CLUSTER))?;
    let timeout = match &args.timeout {
        Some(t) => {
            Some(aiops::config::parse_duration(t).map_err(|e| anyhow::anyhow!("--timeout: {e}"))?)
        }
        None => None,
    };
    // The rules the app's alerts must reach (setup_auto_repair), as the daemon loads them.
    let rules = app::load_definitions(&settings)?.rules;
    let store = app::open_store(&settings, StoreAccess::ReadWrite).await?;
    register(&store, &mut spec).await?;
    println!(
        "deploying {} {} to namespace {}",
        spec.name,
        spec.version(),
        spec.namespace()
    );
    let outbox = Arc::new(app::outbox(&settings)?);
    let grafana = match Grafana::from_settings(&settings.monitoring.grafana) {
        Some(g) => Some(Arc::new(g?)),
        None => None,
    };
    let owner = format!("cli-{}", std::process::id());
    let mut runner = Runner::new(
        store.clone(),
        cluster,
        &settings,
        Arc::new(move || rules.clone()),
        Some(outbox.clone()),
        grafana,
        owner.clone(),
        true,
    );
    if let Some(t) = timeout {
        runner = runner.with_timeout(t);
    }
    let id = steps::queue(
        &store,
        &settings.deploy,
        &spec,
        "cli",
        args.skip_dns_check,
        Some(&owner),
    )
    .await?;
    let record = store
        .deployment(id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("deployment {id} vanished from the store"))?;
    let pre = Prechecked {
        dns: DnsCheck::Done(gate),
        detected,
    };
    // An earlier `aiops deploy` killed mid-way (no daemon with a cluster may be running to
    // notice) is failed now rather than left running.
    for stale in runner.fail_stale().await? {
        println!(
            "deployment {} of {} was left running by a process that stopped: failed",
            stale.id, stale.app
        );
    }
    // What is queued from here on is this deployment's announcement: a stale one's, queued just
    // above, is delivered below as well, but is not this command's to report.
    let since = aiops::store::now_ms();
    let print = |p: &steps::Progress<'_>| {
        // Starts are for the log; each step's end is a line a person reads.
        if p.status != StepStatus::Running {
            println!("{p}");
        }
    };
    let finished = tokio::select! {
        done = runner.run(&record, spec, pre, &print) => done?,
        // Ctrl-C: the deployment is recorded failed at its step, not left running.
        _ = tokio::signal::ctrl_c() => {
            runner.abandon(&record, "aiops deploy was interrupted (Ctrl-C)").await?;
            // Told like any failure, unless a second Ctrl-C says not to wait for the channels:
            // then a daemon delivers it.
            let notified = tokio::select! {
                n = deliver_now(&settings, &store, &outbox, since, &record.app) => n?,
                _ = tokio::signal::ctrl_c() => Vec::new(),
            };
            print!("{}", Notified(&notified));
            store.close().await;
            eprintln!("deployment {} of {} interrupted: recorded as failed", record.id, record.app);
            return Ok(ExitCode::from(130));
        }
    };
    let notified = deliver_now(&settings, &store, &outbox, since, &record.app).await?;
    store.close().await;
    print!("{}", Notified(&notified));
    match &finished.failed {
        None => {
            print!("{}", Deployed(&finished));
            Ok(ExitCode::SUCCESS)
        }
        Some((_, why)) => {
            eprintln!(
                "deployment {} of {} failed: {why}",
                finished.record.id, finished.record.app
            );
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Registers `spec` (an app registered before the `app-<name>` default keeps its namespace).
async fn register(store: &Store, spec: &mut aiops::deploy::AppSpec) -> Result<()> {
    if let Some(recorded) = store.app(&spec.name).await?
        && spec.keep_namespace(&recorded.namespace)
    {
        println!(
            "app {} is registered in namespace {}; it stays there (write `namespace:` to choose)",
            spec.name, recorded.namespace
        );
    }
    let spec_json = serde_json::to_value(&*spec)?;
    store
        .upsert_app(&spec.name, &spec.namespace(), &spec_json, "cli")
        .await?;
    Ok(())
}

/// `--detach`: registers the app and queues its deployment for a daemon with a cluster, which
/// runs every step (the DNS check and detection included) and records them.
async fn detach(
    settings: &Settings,
    mut spec: aiops::deploy::AppSpec,
    skip_dns: bool,
) -> Result<ExitCode> {
    // The daemon's render must accept it: refuse now what would fail at once there.
    if let Err(e) = render_with(settings, &spec)
        && !e
            .downcast_ref::<aiops::deploy::render::Error>()
            .is_some_and(|e| matches!(e, aiops::deploy::render::Error::Unresolved { .. }))
    {
        return Err(e);
    }
    let store = app::open_store(settings, StoreAccess::ReadWrite).await?;
    register(&store, &mut spec).await?;
    let id = steps::queue(&store, &settings.deploy, &spec, "cli", skip_dns, None).await?;
    let steps = store.deployment_steps(id).await?;
    store.close().await;
    println!(
        "deployment {id} of {} queued: a daemon with a cluster runs it ({})",
        spec.name,
        steps
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "follow it: GET /api/apps/{}/deployments/{id}, or the console's app page",
        spec.name
    );
    Ok(ExitCode::SUCCESS)
}

/// The framework of a git or upload app that names none, detected from its source (here, on
/// the machine running the command, `file://` and ssh sources are read as git would).
async fn detect(spec: &aiops::deploy::AppSpec) -> Result<Option<aiops::deploy::detect::Detection>> {
    use aiops::deploy::detect::{DetectOptions, Source};
    use aiops::deploy::spec::SourceType;
    let (Some(url), None) = (&spec.source_url, spec.framework) else {
        return Ok(None);
    };
    let source = match spec.source_type {
        SourceType::Docker => return Ok(None),
        SourceType::Git => Source::Git {
            url: url.clone(),
            reference: None,
        },
        SourceType::Upload => match url
            .strip_prefix("file://")
            .or(url.starts_with('/').then_some(url.as_str()))
        {
            Some(path) => Source::Archive(PathBuf::from(path)),
            None => anyhow::bail!(
                "source_url: an upload at {url} is read from this machine only: download the archive and give its path, or name the framework"
            ),
        },
    };
    let d = aiops::deploy::detect::detect(&source, &DetectOptions::default())
        .await
        .map_err(|e| anyhow::anyhow!("framework: {e}"))?;
    Ok(Some(d))
}

/// Sends the notifications a command just queued, so `aiops deploy` tells people even when no
/// daemon runs; retries that are not due yet are left to the daemon's dispatcher. Returns the
/// deployment's announcements (app `app`'s, queued from `since` on) as they stand.
async fn deliver_now(
    settings: &Settings,
    store: &Store,
    outbox: &Outbox,
    since: i64,
    app: &str,
) -> Result<Vec<Notification>> {
    let notifiers = aiops::notify::notifiers(&settings.notify)?;
    if notifiers.is_empty() {
        return Ok(Vec::new());
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
    Ok(store
        .notifications()
        .await?
        .into_iter()
        .filter(|n| {
            n.created_at >= since
                && n.app.as_deref() == Some(app)
                && matches!(n.event.as_str(), "deploy_success" | "deploy_failed")
        })
        .collect())
}

/// Where the announcement went, one line per channel.
struct Notified<'a>(&'a [Notification]);

impl fmt::Display for Notified<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for n in self.0 {
            writeln!(
                f,
                "  notified {}: {}{}",
                n.channel,
                n.state.as_str(),
                n.last_error
                    .as_deref()
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default()
            )?;
        }
        Ok(())
    }
}

/// A deployment whose steps all succeeded.
struct Deployed<'a>(&'a Finished);

impl fmt::Display for Deployed<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for o in &self.0.applied {
            writeln!(f, "  applied {o}")?;
        }
        writeln!(
            f,
            "deployment {} of {}: {}",
            self.0.record.id, self.0.record.app, self.0.record.status
        )
    }
}
