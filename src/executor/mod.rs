//! Workers that take jobs from the store and move them through their states:
//! running → verifying → succeeded, or failed → escalated along the job's chain.
//!
//! The queue *is* the store: a worker claims the next due job with a conditional UPDATE, so a
//! job is run by exactly one worker of one replica, and jobs survive restarts. Workers are
//! woken when intake creates a job and otherwise poll every `jobs.poll_interval` (which is also
//! how `waiting` jobs become due).
//!
//! A run has three possible results. `success` is then verified (the rollouts of what the
//! playbook changed, an optional health URL, optionally the alert resolving within a time);
//! `failure` (measured bad) walks the job's escalation chain, capped at
//! `playbook.max_chain_steps`; `inconclusive` (could not measure: a script error, a timeout, an
//! unreachable cluster) goes straight to humans and never loops.
//!
//! The parts, each in its own file:
//! - [`worker`]: claim, lease heartbeat, the reaper and start-up recovery;
//! - [`run`]: the playbook in its sandbox, then verification on success;
//! - [`verify`]: the checks after a success, with their decisions as pure functions;
//! - [`escalate`]: what follows a failure, decided by the pure [`escalate::plan`] and written by
//!   the thin transactional [`escalate::apply`];
//! - [`finish`]: the last transaction of a job (success, or failure and escalation) and the
//!   messages it enqueues.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

use crate::cluster::Cluster;
use crate::config::{Jobs, PlaybookSettings};
use crate::gitops::GitopsSettings;
use crate::metrics::Metrics;
use crate::pipeline::Pipeline;
use crate::playbook::host::{HostSettings, Runner};
use crate::store::{self, Store};

pub mod escalate;
mod finish;
mod run;
pub mod verify;
mod worker;

#[cfg(test)]
pub(crate) mod gitops_tests;

/// Executor failures (all come from the store; a worker logs them and carries on).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] store::Error),
}

/// `type Result<T, E = Error>` as in every module of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What runs playbooks: the shared engine, the cluster and the host settings.
#[derive(Clone)]
pub struct Runtime {
    /// The engine with the host API.
    pub runner: Arc<Runner>,
    /// The cluster backend.
    pub cluster: Arc<dyn Cluster>,
    /// Host API settings.
    pub host: HostSettings,
    /// Runtime limits.
    pub settings: PlaybookSettings,
    /// HTTP client (health checks).
    pub http: reqwest::Client,
    /// The settings' `gitops:` section: the playbook host's gate decides with it, and the
    /// revert watch keeps looking at an owned target's changed fields for `watch`.
    pub gitops: GitopsSettings,
}

impl Runtime {
    /// Builds the runtime around a cluster backend.
    pub fn new(cluster: Arc<dyn Cluster>, settings: PlaybookSettings) -> Runtime {
        // The one builder of playbook runs, shared with `simulate` and `test-playbook`.
        let sandbox = crate::playbook::sandbox::Sandbox::new(cluster, &settings);
        Runtime {
            runner: sandbox.runner,
            cluster: sandbox.cluster,
            host: sandbox.host,
            http: sandbox.http,
            settings,
            gitops: GitopsSettings::default(),
        }
    }

    /// The same runtime with the settings' `gitops:` section (without it: the defaults).
    pub fn with_gitops(mut self, gitops: GitopsSettings) -> Runtime {
        self.gitops = gitops;
        self
    }
}

/// The job workers of this process.
pub struct Executor {
    pipeline: Arc<Pipeline>,
    rt: Runtime,
    /// Set when the shutdown grace has passed: running playbooks stop at their next step.
    stopping: Arc<AtomicBool>,
    store: Store,
    metrics: Metrics,
    cfg: Jobs,
    owner: String,
    wake: Arc<Notify>,
}

impl Executor {
    /// Creates the executor; `owner` identifies this process in job records.
    pub fn new(pipeline: Arc<Pipeline>, cfg: Jobs, rt: Runtime) -> Executor {
        let owner = format!(
            "{}-{}",
            std::env::var("HOSTNAME").unwrap_or_else(|_| "aiops".into()),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        Executor {
            store: pipeline.store().clone(),
            metrics: pipeline.metrics().clone(),
            wake: pipeline.wake(),
            pipeline,
            rt,
            stopping: Arc::new(AtomicBool::new(false)),
            cfg,
            owner,
        }
    }

    /// This process's owner id.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Waits for `wake` or a poll tick; used by tests that drive the executor directly.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Stops running playbooks at their next step (after the shutdown grace). Their jobs stay
    /// `running` and are interrupted and escalated at the next start.
    pub fn stop_running_playbooks(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    /// How long shutdown waits for running jobs.
    pub fn shutdown_grace(&self) -> Duration {
        self.cfg.shutdown_grace.0
    }
}
