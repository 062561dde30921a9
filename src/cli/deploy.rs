//! `aiops deploy FILE`: render, server-side apply, wait for the rollouts, record and announce
//! the deployment. The Kubernetes client, the store and the outbox are the daemon's
//! ([`aiops::app`]); the announcement is sent at once, so people hear of it without a daemon.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;

use aiops::app::{self, StoreAccess};
use aiops::config::Settings;
use aiops::notify::Outbox;
use aiops::store::{DeploymentRecord, Notification, Store};

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
}

/// Deploys; exit 0 when every rollout completed, 1 otherwise.
pub async fn run(config: Option<&Path>, args: Args) -> Result<ExitCode> {
    let (settings, mut spec) = load(config, &args.file, &args.templates)?;
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
    if let Some(d) = detect(&spec).await? {
        println!("framework: {} ({})", d.framework, d.evidence.join(", "));
        spec.framework = Some(d.framework);
    }
    // Reading the kubeconfig sends nothing to the API server yet.
    let cluster = app::kube_cluster(&settings)
        .await?
        .ok_or_else(|| anyhow::anyhow!(NEEDS_A_CLUSTER))?;
    let mut opts = aiops::deploy::apply::Options {
        timeout: settings.deploy.rollout_timeout.0,
        poll: settings.deploy.poll.0,
    };
    if let Some(t) = &args.timeout {
        opts.timeout =
            aiops::config::parse_duration(t).map_err(|e| anyhow::anyhow!("--timeout: {e}"))?;
    }
    let store = app::open_store(&settings, StoreAccess::ReadWrite).await?;
    if let Some(recorded) = store.app(&spec.name).await?
        && spec.keep_namespace(&recorded.namespace)
    {
        println!(
            "app {} is registered in namespace {}; it stays there (write `namespace:` to choose)",
            spec.name, recorded.namespace
        );
    }
    let rendered = render_with(&settings, &spec)?;
    println!(
        "deploying {} {} ({}) to namespace {}",
        spec.name,
        spec.version(),
        spec.image().unwrap_or_default(),
        spec.namespace()
    );
    let outbox = app::outbox(&settings)?;
    let (record, result) = aiops::deploy::apply::deploy(
        &cluster,
        &store,
        &spec,
        &rendered,
        &opts,
        "cli",
        Some(&outbox),
        &[gate.to_string()],
    )
    .await?;
    let notified = deliver_now(&settings, &store, &outbox, record.started_at).await?;
    store.close().await;
    print!("{}", Notified(&notified));
    match result {
        Ok(outcome) => {
            print!(
                "{}",
                Deployed {
                    record: &record,
                    outcome: &outcome
                }
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("deployment {} of {} failed: {e}", record.id, record.app);
            Ok(ExitCode::FAILURE)
        }
    }
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
/// deployment's announcements as they stand.
async fn deliver_now(
    settings: &Settings,
    store: &Store,
    outbox: &Outbox,
    since: i64,
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
        .filter(|n| n.created_at >= since && n.event == "deploy_success")
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

/// A deployment whose rollouts completed.
struct Deployed<'a> {
    record: &'a DeploymentRecord,
    outcome: &'a aiops::deploy::apply::Outcome,
}

impl fmt::Display for Deployed<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for o in &self.outcome.applied {
            writeln!(f, "  applied {o}")?;
        }
        for r in &self.outcome.rollouts {
            writeln!(f, "  {r}")?;
        }
        writeln!(
            f,
            "deployment {} of {}: {}",
            self.record.id, self.record.app, self.record.status
        )
    }
}
