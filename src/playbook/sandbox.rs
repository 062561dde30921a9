//! The one builder of playbook runs: what every run of a process shares (the engine with its
//! host API, the cluster, the host settings with `playbook.http_allow` and the limits, the
//! HTTP client and its redirect policy) and the [`RunContext`] of each run.
//!
//! The daemon's executor (`executor::Runtime::new`), `aiops simulate` and `aiops test-playbook`
//! all start here, so an offline run cannot drift from a daemon run: it once built its own
//! HTTP client that followed redirects, which let `http_get` leave `playbook.http_allow`.

use std::sync::Arc;
use std::time::Duration;

use super::Playbook;
use super::host::{HostSettings, RunContext, RunInput, RunResult, Runner, StepSink};
use crate::cluster::Cluster;
use crate::config::PlaybookSettings;
use crate::store::Store;

/// What every playbook run of this process shares; cheap to clone.
#[derive(Clone)]
pub struct Sandbox {
    /// The sandboxed engine with the host API.
    pub runner: Arc<Runner>,
    /// The cluster runs act on.
    pub cluster: Arc<dyn Cluster>,
    /// Host API settings: the allow-list of `http_get`, timeouts, the run's limits.
    pub host: HostSettings,
    /// The HTTP client of `http_get` and of repair verification (never follows a redirect).
    pub http: reqwest::Client,
    /// A run's wall-clock deadline unless its job says otherwise (`playbook.timeout`).
    pub timeout: Duration,
    /// The settings' `gitops:` section, for the GitOps gate of offline runs
    /// ([`Sandbox::with_gitops`]; the defaults until set).
    pub gitops: crate::gitops::GitopsSettings,
}

impl Sandbox {
    /// Everything a run needs, from the `playbook:` settings.
    pub fn new(cluster: Arc<dyn Cluster>, settings: &PlaybookSettings) -> Sandbox {
        Sandbox::with_host(cluster, HostSettings::from(settings), settings.timeout.0)
    }

    /// Everything a run needs, from host settings given directly (tests, benchmarks); the HTTP
    /// client is still derived from them, so its policy is the daemon's.
    pub fn with_host(cluster: Arc<dyn Cluster>, host: HostSettings, timeout: Duration) -> Sandbox {
        Sandbox {
            runner: Arc::new(Runner::new()),
            cluster,
            http: super::host::http_client(&host),
            host,
            timeout,
            gitops: crate::gitops::GitopsSettings::default(),
        }
    }

    /// The settings' `gitops:` section the GitOps gate of offline runs applies (detection,
    /// defaults per kind of change, how long a hold would last).
    pub fn with_gitops(mut self, gitops: crate::gitops::GitopsSettings) -> Sandbox {
        self.gitops = gitops;
        self
    }

    /// The context of one run on the current tokio runtime. `store` serves the `kb_*` calls
    /// and `sink` persists steps (both `None` offline); `timeout` is the run's deadline.
    pub fn context(
        &self,
        store: Option<Store>,
        sink: Option<StepSink>,
        dry_run: bool,
        timeout: Duration,
    ) -> RunContext {
        RunContext::new(
            self.cluster.clone(),
            store,
            sink,
            tokio::runtime::Handle::current(),
            dry_run,
            self.host.clone(),
            self.http.clone(),
            timeout,
        )
    }

    /// Runs `playbook` on a blocking thread (host calls block on the runtime); a panic of the
    /// run is returned as an error rather than taking the caller down.
    pub async fn run(
        &self,
        playbook: Arc<Playbook>,
        input: RunInput,
        ctx: RunContext,
    ) -> Result<RunResult, String> {
        let runner = self.runner.clone();
        let ctx = Arc::new(ctx);
        tokio::task::spawn_blocking(move || runner.run(&playbook, input, ctx))
            .await
            .map_err(|e| format!("the playbook run crashed: {e}"))
    }
}
