//! `aiops serve`: runs what [`crate::app::Services::build`] builds (store, definitions,
//! pipeline, outbox, cluster) with the workers, the HTTP server, the notification dispatcher,
//! the Telegram approval pollers (`chat::telegram`), the retention, preflight, maintenance and
//! GitOps release ([`crate::gitops::release`]) tasks, and, with a Kubernetes cluster, the
//! deploy worker ([`crate::deploy::steps::Runner::spawn`]), until SIGTERM or SIGINT.
//!
//! Shutdown order keeps every job recoverable: stop accepting connections, let in-flight webhooks
//! finish (their transactions commit or roll back as a unit), stop workers from claiming, give
//! running jobs `jobs.shutdown_grace` to finish. A job still running after that stays `running`
//! in the store and becomes `interrupted` (and escalated) at the next start.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::watch;

use crate::app::{self, Services, StoreAccess};
use crate::config::Settings;
use crate::executor::{self, Executor};
use crate::http::{self, AppState};
use crate::metrics::Metrics;
use crate::store::{self, Store};

/// Why the daemon could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A service could not be built: settings, store, definitions, cluster, notify.
    #[error(transparent)]
    App(#[from] app::Error),
    /// A configured notification channel cannot work: the daemon would lose its messages,
    /// so it does not start (every other command still runs; `aiops check` lists them).
    #[error("refusing to start: notification channels that cannot work (fix or remove them):\n{0}")]
    BrokenChannels(crate::notify::config::SettingsError),
    /// Start-up recovery failed.
    #[error("start-up recovery failed: {0}")]
    Recover(#[from] executor::Error),
    /// The address could not be bound or served.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// `type Result<T, E = Error>` as in every module of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Runs the daemon until `shutdown` completes; each message on `reload` (SIGHUP) reloads
/// rules and playbooks.
pub async fn run(
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
    mut reload: tokio::sync::mpsc::Receiver<()>,
) -> Result<()> {
    settings
        .check_listen_is_safe()
        .map_err(app::Error::Config)?;
    settings
        .notify
        .check_channels()
        .map_err(Error::BrokenChannels)?;
    let (rules_source, playbooks_source) = (settings.rules_source(), settings.playbooks_source());
    let Services {
        settings,
        store,
        outbox,
        metrics,
        cluster,
        pipeline,
    } = Services::build(settings, StoreAccess::ReadWrite).await?;
    // The deploy worker's client, read from the kubeconfig now, with the playbooks' one, before
    // anything listens.
    let deploy_cluster = if settings.deploy.worker {
        let cluster = app::kube_cluster(&settings).await?;
        if cluster.is_none() {
            tracing::warn!(
                "deploy.worker is on but no Kubernetes cluster is configured (cluster.kubeconfig or cluster.in_cluster): queued deployments are not run"
            );
        }
        cluster
    } else {
        None
    };
    let notifiers = crate::notify::notifiers(&settings.notify)
        .map_err(|e| app::Error::Notify(e.to_string()))?;
    if notifiers.is_empty() {
        tracing::warn!(
            "no notification channels configured (notify.channels): escalations are recorded, not sent"
        );
    } else {
        tracing::info!(
            channels = notifiers.len(),
            routes = settings.notify.routes.len(),
            "notification channels configured"
        );
    }
    let defs = pipeline.definitions();
    tracing::info!(rules = defs.rules.len(), rules_from = %rules_source, playbooks = defs.playbooks.len(), playbooks_from = %playbooks_source, backend = ?store.backend(), "definitions loaded");

    // Publish every series at zero so dashboards and `increase()` see the first event.
    for state in store::JobState::ALL {
        metrics.jobs.publish(state.as_str());
    }
    for reason in crate::pipeline::Refusal::ALL {
        metrics.publish_refusal(reason.as_str());
    }
    for status in ["firing", "resolved"] {
        metrics.alerts_received.with_label_values(&[status]);
    }
    // GitOps holds are released by every replica, with the cluster the playbooks act on.
    let releaser =
        crate::gitops::release::Releaser::new(store.clone(), cluster.clone(), outbox.clone())
            .with_grace(settings.gitops.watch.0);
    let runtime = executor::Runtime::new(cluster, settings.playbook.clone())
        .with_gitops(settings.gitops.clone());
    let executor = Arc::new(Executor::new(
        pipeline.clone(),
        settings.jobs.clone(),
        runtime,
    ));
    let interrupted = executor.recover().await?;
    if interrupted > 0 {
        tracing::warn!(
            jobs = interrupted,
            "jobs left running by a previous process were interrupted and escalated"
        );
    }
    metrics
        .queue_depth
        .set(store.pending_count().await.map_err(app::Error::Store)?);

    let listener = http::bind(settings.listen)
        .await
        .map_err(|source| Error::Listen {
            addr: settings.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| Error::Listen {
        addr: settings.listen,
        source,
    })?;
    tracing::info!(%addr, owner = executor.owner(), "listening");

    let (stop_tx, stop_rx) = watch::channel(false);
    // The dispatcher stops after the workers, so what the last repairs enqueued goes out.
    let (notify_stop_tx, notify_stop_rx) = watch::channel(false);
    let dispatcher = Arc::new(crate::notify::dispatch::Dispatcher::new(
        store.clone(),
        &settings.notify,
        notifiers,
        metrics.clone(),
        executor.owner(),
        outbox.wake_handle(),
    ))
    .spawn(notify_stop_rx);
    let mut workers = executor.spawn(stop_rx);

    // Approval clicks from Telegram: one long-polling task per bot with `approvals: true`.
    let (chat_stop_tx, chat_stop_rx) = watch::channel(false);
    let deciding = crate::chat::Deciding::new(
        store.clone(),
        Some(outbox.clone()),
        settings.notify.language,
        pipeline.maintenance().clone(),
    );
    let pollers: Vec<_> = crate::chat::telegram::pollers(&settings.notify, &deciding)
        .into_iter()
        .map(|p| p.spawn(chat_stop_rx.clone()))
        .collect();

    let pruner = spawn_retention(&settings, store.clone(), metrics.clone());
    let maintenance = crate::maintenance::summary::Summaries::new(
        pipeline.maintenance().clone(),
        store.clone(),
        outbox.clone(),
        crate::notify::route::Router::new(&settings.notify),
    )
    .spawn(settings.maintenance_refresh.0);
    let holds = releaser.clone().spawn(settings.gitops.release_interval.0);

    let reloader = {
        let pipeline = pipeline.clone();
        let (rules_dir, playbooks_dir) = (rules_source.clone(), playbooks_source.clone());
        tokio::spawn(async move {
            while reload.recv().await.is_some() {
                let (p, r, b) = (pipeline.clone(), rules_dir.clone(), playbooks_dir.clone());
                let _ = tokio::task::spawn_blocking(move || p.reload(&r, &b)).await;
            }
        })
    };

    // Deployments queued through the API or `aiops deploy --detach`, run by this daemon when it
    // has a Kubernetes cluster (the deploy role's; the playbooks' namespace guard is theirs).
    let (deploy_stop_tx, deploy_stop_rx) = watch::channel(false);
    let deployer = match deploy_cluster {
        Some(cluster) => {
            let grafana = match crate::deploy::grafana::Grafana::from_settings(
                &settings.monitoring.grafana,
            ) {
                Some(Ok(g)) => Some(Arc::new(g)),
                Some(Err(e)) => {
                    tracing::error!(error = %e, "cannot push dashboards to the Grafana of monitoring.grafana.url");
                    None
                }
                None => None,
            };
            let rules = {
                let pipeline = pipeline.clone();
                Arc::new(move || pipeline.definitions().rules.clone())
            };
            let runner = crate::deploy::steps::Runner::new(
                store.clone(),
                cluster,
                &settings,
                rules,
                Some(outbox.clone()),
                grafana,
                format!("{}-deploy", executor.owner()),
                false,
            );
            let wake = Arc::new(tokio::sync::Notify::new());
            Some((wake.clone(), runner.spawn(wake, deploy_stop_rx)))
        }
        None => None,
    };
    let mut state = AppState::new(pipeline.clone(), &settings);
    state.gitops = Some(releaser);
    state.deployer = deployer.as_ref().map(|(wake, _)| wake.clone());
    let preflight = {
        let pipeline = pipeline.clone();
        crate::preflight::spawn(
            &settings,
            move || pipeline.definitions(),
            metrics.clone(),
            state.preflight.clone(),
        )
    };
    let app = http::router(state);
    http::server::serve(
        listener,
        app,
        http::server::Limits::new(&settings.http),
        metrics.clone(),
        async move {
            shutdown.await;
            tracing::info!("shutting down: no new connections, finishing in-flight requests");
        },
    )
    .await;
    reloader.abort();
    // A deployment under way is failed now, naming its step, rather than left running.
    let _ = deploy_stop_tx.send(true);
    if let Some((_, worker)) = deployer
        && tokio::time::timeout(std::time::Duration::from_secs(10), worker)
            .await
            .is_err()
    {
        tracing::warn!("the deploy worker did not stop within 10 s");
    }
    // The pollers stop taking clicks with the HTTP endpoints, and confirm what they handled.
    let _ = chat_stop_tx.send(true);
    if tokio::time::timeout(
        std::time::Duration::from_secs(10),
        futures_util::future::join_all(pollers),
    )
    .await
    .is_err()
    {
        tracing::warn!("Telegram pollers still stopping after 10 s; left behind");
    }
    if let Some(p) = preflight {
        p.abort();
    }
    if let Some(p) = pruner {
        p.abort();
    }
    maintenance.abort();
    // A release cut short here is retried by another replica or at the next start: the cluster
    // call is idempotent and the hold stays open until a release is recorded.
    holds.abort();
    let _ = stop_tx.send(true);
    let grace = executor.shutdown_grace();
    let drained = tokio::time::timeout(grace, async {
        while workers.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(grace = ?grace, "jobs still running after the grace period: stopping their playbooks; they will be escalated as interrupted at the next start");
        // Stop the scripts themselves (they run on blocking threads an abort cannot reach),
        // then give the workers a moment to record that.
        executor.stop_running_playbooks();
        if tokio::time::timeout(std::time::Duration::from_secs(5), async {
            while workers.join_next().await.is_some() {}
        })
        .await
        .is_err()
        {
            workers.abort_all();
        }
    }
    // Messages the last repairs enqueued go out now if they can; the rest stay in the outbox
    // for the next start (or another replica).
    let _ = notify_stop_tx.send(true);
    if tokio::time::timeout(std::time::Duration::from_secs(10), dispatcher)
        .await
        .is_err()
    {
        tracing::warn!(
            "notifications still sending after 10 s; the rest are sent at the next start"
        );
    }
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// Starts the retention task: prunes at start-up and then every `retention.interval` (none when
/// the interval is 0s). Each pass deletes in small batches, so intake is never held up long.
fn spawn_retention(
    settings: &Settings,
    store: Store,
    metrics: Metrics,
) -> Option<tokio::task::JoinHandle<()>> {
    let r = settings.retention.clone();
    if r.interval.0.is_zero() {
        tracing::info!("retention disabled (retention.interval is 0s)");
        return None;
    }
    // The storm brake counts targets seen within its window: older activity is never read.
    let activity = settings
        .guard
        .storm
        .window
        .0
        .max(std::time::Duration::from_secs(86_400));
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(r.interval.0);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let now = store::now_ms();
            let cutoffs = store::Cutoffs {
                alerts: now - store::ms(r.alerts.0),
                repairs: now - store::ms(r.repairs.0),
                stats: now - store::ms(r.stats.0),
                audit: now - store::ms(r.audit.0),
                activity: now - store::ms(activity),
            };
            match store.prune(&cutoffs).await {
                Ok(p) => {
                    for (table, n) in [
                        ("alerts", p.alerts),
                        ("repairs", p.repairs),
                        ("stats", p.stats),
                        ("audit", p.audit),
                        ("activity", p.activity),
                    ] {
                        metrics.pruned.with_label_values(&[table]).inc_by(n);
                    }
                    if p != store::Pruned::default() {
                        tracing::info!(
                            alerts = p.alerts,
                            repairs = p.repairs,
                            stats = p.stats,
                            audit = p.audit,
                            activity = p.activity,
                            "retention pruned old rows"
                        );
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "retention pass failed; retrying at the next interval")
                }
            }
        }
    }))
}
