//! One place builds the application: from [`Settings`] to the services `aiops serve` and every
//! command use (store, definitions, outbox, metrics, cluster, and the [`Pipeline`] over them).
//!
//! Each service has exactly one constructor here, so a command cannot open the store, the
//! cluster or the rules differently from the daemon: [`Services::build`] wires all of them
//! (`serve`, `simulate`), and a command that needs only one piece (`kb` the store, `deploy` the
//! Kubernetes client, `check` the definitions) calls that piece's constructor.

use std::sync::Arc;

use crate::cluster::kubernetes::{Connect, KubeCluster};
use crate::cluster::memory::MemoryCluster;
use crate::cluster::{Cluster, Unconfigured};
use crate::config::{self, Settings};
use crate::definitions::Definitions;
use crate::metrics::Metrics;
use crate::notify::Outbox;
use crate::pipeline::Pipeline;
use crate::store::{self, Store};

/// Why a service could not be built.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Settings are unsafe or invalid.
    #[error(transparent)]
    Config(#[from] config::Error),
    /// The store could not be opened or migrated.
    #[error("cannot open the store: {0}")]
    Store(#[from] store::Error),
    /// A reporting command found no store to read.
    #[error("no store yet at {0}: nothing has been repaired")]
    NoStore(String),
    /// Rules or playbooks are invalid; one problem per line, `file:line: message`.
    #[error("invalid rules or playbooks:\n{}", .0.join("\n"))]
    Definitions(Vec<String>),
    /// The cluster backend could not be set up.
    #[error("cluster: {0}")]
    Cluster(String),
    /// The notify section could not be turned into an outbox or channels.
    #[error("notify: {0}")]
    Notify(String),
}

/// `type Result<T, E = Error>` as in every module of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How a command opens the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreAccess {
    /// Read-write and migrated, as configured (`serve`, `deploy`).
    ReadWrite,
    /// Read-only, never migrated; a SQLite file that does not exist is [`Error::NoStore`]
    /// (`kb`: a reporting command must not create or migrate the live store).
    ReadOnly,
    /// Read-only when the store exists, an empty in-memory one when its SQLite file does not
    /// (`simulate`: real dedup, cooldowns and budgets, and never a file created).
    Inspect,
}

/// Everything `aiops serve` runs on; `simulate` decides with the same.
pub struct Services {
    /// The settings everything was built from.
    pub settings: Settings,
    /// The store.
    pub store: Store,
    /// The enqueue side of notifications.
    pub outbox: Arc<Outbox>,
    /// The Prometheus registry.
    pub metrics: Metrics,
    /// The cluster playbooks act on.
    pub cluster: Arc<dyn Cluster>,
    /// Intake over the store, holding the definitions (a reload swaps them there, so read
    /// them through [`Services::definitions`]).
    pub pipeline: Arc<Pipeline>,
}

impl Services {
    /// Builds every service from `settings`, opening the store as `access` says.
    pub async fn build(settings: Settings, access: StoreAccess) -> Result<Services> {
        let store = open_store(&settings, access).await?;
        let defs = load_definitions(&settings)?;
        let outbox = Arc::new(outbox(&settings)?);
        let metrics = Metrics::new();
        let windows = maintenance_windows(&settings, &store).await?;
        let pipeline = Arc::new(
            Pipeline::new(store.clone(), defs, &settings, metrics.clone())
                .with_outbox(outbox.clone())
                .with_maintenance(windows),
        );
        let cluster = open_cluster(&settings).await?;
        Ok(Services {
            settings,
            store,
            outbox,
            metrics,
            cluster,
            pipeline,
        })
    }

    /// The rules and playbooks in force now.
    pub fn definitions(&self) -> Arc<Definitions> {
        self.pipeline.definitions()
    }
}

/// Opens the store as configured (`store.*`, `database_url`) with `access`.
pub async fn open_store(settings: &Settings, access: StoreAccess) -> Result<Store> {
    let url = settings.database_url.expose();
    let opts = store::Options {
        max_connections: settings.store.max_connections,
        acquire_timeout: settings.store.acquire_timeout.0,
        read_only: false,
        sqlite_full_sync: settings.store.sqlite_synchronous == config::SqliteSync::Full,
    };
    let (url, opts) = match (access, missing_sqlite_file(settings)) {
        (StoreAccess::ReadWrite, _) => (url, opts),
        (StoreAccess::ReadOnly, Some(path)) => return Err(Error::NoStore(path)),
        (StoreAccess::Inspect, Some(_)) => ("sqlite::memory:", store::Options::default()),
        (StoreAccess::ReadOnly | StoreAccess::Inspect, None) => (
            url,
            // An in-memory store is created empty whatever the options: migrate it.
            store::Options {
                read_only: !url.contains(":memory:"),
                ..store::Options::default()
            },
        ),
    };
    Ok(Store::connect(url, &opts).await?)
}

/// An empty store of its own (in-memory SQLite, migrated) for work that must never write the
/// configured one: `replay` rebuilds the recorded history in it and decides there.
pub async fn scratch_store() -> Result<Store> {
    Ok(Store::connect("sqlite::memory:", &store::Options::default()).await?)
}

/// The path of the configured SQLite file when it does not exist (`None` for PostgreSQL, an
/// in-memory store, or a file that exists).
pub fn missing_sqlite_file(settings: &Settings) -> Option<String> {
    let url = settings.database_url.expose();
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or_default();
    (!path.is_empty() && !path.contains(":memory:") && !std::path::Path::new(path).exists())
        .then(|| path.to_string())
}

/// Loads the rules and playbooks the settings name and checks them against the settings, as
/// `serve` requires before it starts: every `notify:` step names a channel or route, and every
/// rule in approve mode has someone who may approve it.
pub fn load_definitions(settings: &Settings) -> Result<Definitions> {
    let defs = Definitions::load(&settings.rules_source(), &settings.playbooks_source())
        .map_err(Error::Definitions)?;
    let mut problems = defs.check_notify(&|n| settings.notify.knows(n));
    problems.extend(defs.check_approvers(&settings.trust));
    if problems.is_empty() {
        Ok(defs)
    } else {
        Err(Error::Definitions(problems))
    }
}

/// The maintenance windows: the settings file's, and the stored ones as they are now (a
/// store from before migration 0012, opened read-only, has none: said in the log).
pub async fn maintenance_windows(
    settings: &Settings,
    store: &Store,
) -> Result<crate::maintenance::Windows> {
    let fixed = crate::maintenance::from_settings(&settings.maintenance)
        .map_err(|e| Error::Config(config::Error::Invalid(e)))?;
    let windows = crate::maintenance::Windows::new(fixed);
    if let Err(e) = windows.refresh(store).await {
        tracing::warn!(error = %e, "stored maintenance windows could not be read; only the settings file's apply");
    }
    Ok(windows)
}

/// The outbox of the `notify:` settings (routing and templates), signing approval links when
/// `external_url` and `approval_secret` are set.
pub fn outbox(settings: &Settings) -> Result<Outbox> {
    let outbox = Outbox::new(&settings.notify).map_err(|e| Error::Notify(e.to_string()))?;
    Ok(match crate::approval::Links::from_settings(settings) {
        Some(links) => outbox.with_approval_links(Arc::new(links)),
        None => outbox,
    })
}

/// A Kubernetes client for `cluster.kubeconfig` or `cluster.in_cluster`, `None` when neither is
/// set. No namespace policy: `deploy` applies an app's own objects; [`open_cluster`] adds the
/// policy for playbooks.
pub async fn kube_cluster(settings: &Settings) -> Result<Option<KubeCluster>> {
    let c = &settings.cluster;
    if c.kubeconfig.is_none() && !c.in_cluster {
        return Ok(None);
    }
    let connect = Connect {
        kubeconfig: c.kubeconfig.clone(),
        context: c.context.clone(),
        in_cluster: c.in_cluster,
        api_url: c.api_url.clone(),
    };
    KubeCluster::connect(&connect)
        .await
        .map(Some)
        .map_err(Error::Cluster)
}

/// The cluster backend the settings name: Kubernetes (`cluster.kubeconfig` or
/// `cluster.in_cluster`), the in-memory cluster of `cluster.state_file`, or none (every call
/// fails and repairs end inconclusive). Never inferred from ~/.kube/config: acting on whatever
/// cluster a developer's kubectl points at must be a decision, not a default.
pub async fn open_cluster(settings: &Settings) -> Result<Arc<dyn Cluster>> {
    if let Some(k) = kube_cluster(settings).await? {
        // Nothing has been sent to the API server yet: whether it answers, and with which
        // permissions, is the preflight's to say (`aiops check --cluster`, and at serve).
        tracing::info!(
            in_cluster = settings.cluster.in_cluster,
            "Kubernetes client set up; the cluster preflight reports whether the API server answers"
        );
        return Ok(Arc::new(
            k.with_namespaces(settings.guard.namespaces.clone()),
        ));
    }
    match &settings.cluster.state_file {
        Some(path) => {
            let m = MemoryCluster::load(path).map_err(|e| Error::Cluster(e.to_string()))?;
            tracing::warn!(file = %path.display(), "using the in-memory cluster described in cluster.state_file: nothing real is repaired");
            Ok(Arc::new(m))
        }
        None => {
            tracing::warn!(
                "no Kubernetes backend configured (cluster.kubeconfig or cluster.in_cluster): repairs will end inconclusive and go to humans"
            );
            Ok(Arc::new(Unconfigured))
        }
    }
}
