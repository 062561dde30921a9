//! Deployments in steps: what `aiops deploy`, `aiops deploy --detach` and
//! `POST /api/apps/{name}/deploy` run, one recorded step at a time.
//!
//! The steps, in order (the original design's, plus a DNS check, detection and a build):
//! `check_dns`, `detect_framework`, `create_namespace`, `build_image`, `deploy_app`,
//! `configure_ingress`, `setup_ssl`, `configure_monitoring`, `setup_auto_repair`. Each rendered
//! object belongs to one step by the template it came from ([`step_of`]); a step with nothing
//! to do is `skipped` and says why (a docker app is not built; TLS off has no Certificate).
//! The first failed step ends the deployment: its reason is recorded on the step and on the
//! deployment, the steps after it are `not_run`.
//!
//! [`queue`] records a deployment with its steps `pending`; [`Runner::run`] runs one
//! (the CLI at once, in its own process), and [`Runner::spawn`] is the daemon's worker, which
//! claims queued deployments one at a time. The process running a deployment beats its
//! heartbeat; one whose heartbeat stops (the process was killed) is failed by the next worker to
//! look, naming the step it died in, and a daemon stopped mid-deployment fails it at once: a
//! deployment is never left `running`. Nothing is resumed: applying is idempotent, so running
//! the deployment again is the resumption, and a person decides to.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};

use super::apply::{self, Options as ApplyOptions};
use super::build::{self, BuildPlan};
use super::detect::{self, DetectOptions, Source};
use super::dns;
use super::grafana::{Grafana, Pushed};
use super::render::{self, Manifest, Rendered};
use super::spec::{AppSpec, SourceType};
use crate::cluster::kubernetes::KubeCluster;
use crate::config::DeploySettings;
use crate::rules::{Labels, RuleSet};
use crate::store::{self, DeploymentRecord, NewDeployment, StepStatus, Store};

/// The steps of every deployment, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// The domain resolves to the ingress ([`dns::gate`]).
    CheckDns,
    /// A git or upload app's framework, from its source ([`detect`]).
    DetectFramework,
    /// Namespace and ServiceAccount.
    CreateNamespace,
    /// A git app's image, built by a Kaniko Job ([`build`]).
    BuildImage,
    /// ConfigMap, NetworkPolicy, Service, the migrations Job, the Deployments, and their
    /// rollouts.
    DeployApp,
    /// The Ingress.
    ConfigureIngress,
    /// The Certificate.
    SetupSsl,
    /// ServiceMonitor, PrometheusRule, the dashboard ConfigMap, and the Grafana push.
    ConfigureMonitoring,
    /// The app's alerts carry labels the loaded rules match, so its repairs will run.
    SetupAutoRepair,
}

impl Step {
    /// Every step, in the order they run.
    pub const ALL: [Step; 9] = [
        Step::CheckDns,
        Step::DetectFramework,
        Step::CreateNamespace,
        Step::BuildImage,
        Step::DeployApp,
        Step::ConfigureIngress,
        Step::SetupSsl,
        Step::ConfigureMonitoring,
        Step::SetupAutoRepair,
    ];

    /// As stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Step::CheckDns => "check_dns",
            Step::DetectFramework => "detect_framework",
            Step::CreateNamespace => "create_namespace",
            Step::BuildImage => "build_image",
            Step::DeployApp => "deploy_app",
            Step::ConfigureIngress => "configure_ingress",
            Step::SetupSsl => "setup_ssl",
            Step::ConfigureMonitoring => "configure_monitoring",
            Step::SetupAutoRepair => "setup_auto_repair",
        }
    }

    /// The names of [`Step::ALL`].
    pub fn names() -> [&'static str; 9] {
        Step::ALL.map(Step::as_str)
    }
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The step that applies the objects of `template` (an override keeps its template's name, so
/// its step).
pub fn step_of(template: &str) -> Step {
    match template {
        "namespace.yaml" | "serviceaccount.yaml" => Step::CreateNamespace,
        "build-job.yaml" => Step::BuildImage,
        "ingress.yaml" => Step::ConfigureIngress,
        "certificate.yaml" => Step::SetupSsl,
        "servicemonitor.yaml" | "prometheusrule.yaml" | "grafana-dashboard.yaml" => {
            Step::ConfigureMonitoring
        }
        _ => Step::DeployApp,
    }
}

/// Why a deployment could not be recorded or run (a step's own failure is recorded on the
/// step, not returned).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] store::Error),
    /// The app of a queued deployment is no longer registered, or its spec no longer parses.
    #[error("{0}")]
    App(String),
    /// Another process failed the deployment while this one ran it (its heartbeat was late):
    /// this one stopped writing to it.
    #[error("deployment {0} was failed by another process while this one ran it; this one stopped")]
    Lost(i64),
}

/// `type Result<T, E = Error>` as in every module of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Records a deployment of `spec` (already registered) with every step `pending`: `queued`
/// for a daemon's worker, or, with `run_by`, `running` in that process's name. The image
/// recorded is the spec's, or where its build will push it (empty when it cannot be built:
/// the build step then says why). Returns the id.
pub async fn queue(
    store: &Store,
    settings: &DeploySettings,
    spec: &AppSpec,
    requested_by: &str,
    skip_dns_check: bool,
    run_by: Option<&str>,
) -> Result<i64> {
    let now = store::now_ms();
    let image = match build::plan(spec, settings, now) {
        Ok(Some(p)) => p.destination,
        _ => spec.image().unwrap_or_default().to_string(),
    };
    let version = version_of(spec, &image);
    let names = Step::names();
    let id = store
        .queue_deployment(&NewDeployment {
            app: &spec.name,
            namespace: &spec.namespace(),
            version: &version,
            image: &image,
            requested_by,
            skip_dns_check,
            steps: &names,
            run_by,
            queued_at: now,
        })
        .await?;
    Ok(id)
}

/// The version recorded: the spec's, else the tag of `image`.
fn version_of(spec: &AppSpec, image: &str) -> String {
    if spec.version.is_some() || image.is_empty() {
        return spec.version();
    }
    let mut with_image = spec.clone();
    with_image.image = Some(image.to_string());
    with_image.version()
}

/// What the caller checked before the run (`aiops deploy` checks DNS and detects the
/// framework before it even reads the kubeconfig); the run records it in its steps.
#[derive(Clone, Debug)]
pub struct Prechecked {
    /// The DNS check.
    pub dns: DnsCheck,
    /// The framework detected from the source (already written into the spec).
    pub detected: Option<detect::Detection>,
}

/// The DNS check of a run: asked by the run, or already done by the caller.
#[derive(Clone, Debug)]
pub enum DnsCheck {
    /// Ask now; `skip` on request.
    Ask {
        /// `--skip-dns-check`.
        skip: bool,
    },
    /// The caller's result.
    Done(dns::Gate),
}

/// What a step reports as it starts and ends ([`Runner::run`]'s `progress`).
#[derive(Clone, Debug)]
pub struct Progress<'a> {
    /// 1-based position.
    pub number: usize,
    /// The step.
    pub step: Step,
    /// `running`, then how it ended.
    pub status: StepStatus,
    /// What it did or why (empty while running).
    pub detail: &'a str,
}

impl std::fmt::Display for Progress<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "[{}/{}] {}: {}",
            self.number,
            Step::ALL.len(),
            self.step,
            self.status.as_str()
        )?;
        if !self.detail.is_empty() {
            write!(f, " ({})", self.detail)?;
        }
        Ok(())
    }
}

/// How a run ended.
#[derive(Clone, Debug)]
pub struct Finished {
    /// The deployment as recorded at its end.
    pub record: DeploymentRecord,
    /// The objects applied, `Kind ns/name`, in order.
    pub applied: Vec<String>,
    /// The failed step and its reason, when one failed.
    pub failed: Option<(Step, String)>,
}

/// Where the rules come from: the daemon's in force now (a reload swaps them), or the
/// CLI's, loaded once.
pub type RulesSource = Arc<dyn Fn() -> Arc<RuleSet> + Send + Sync>;

/// Runs deployments: the cluster, store and settings every step needs.
#[derive(Clone)]
pub struct Runner {
    store: Store,
    cluster: KubeCluster,
    settings: DeploySettings,
    render: render::Options,
    dns: (dns::Expected, dns::Options),
    apply: ApplyOptions,
    grafana: Option<Arc<Grafana>>,
    rules: RulesSource,
    outbox: Option<Arc<crate::notify::Outbox>>,
    owner: String,
    /// The CLI may read any source its user can (file://, ssh, a local archive); the daemon
    /// only what [`detect::remote_source_allowed`] allows, on an API caller's behalf.
    local_sources: bool,
}

impl Runner {
    /// A runner named `owner` in deployment records. `local_sources`: the CLI's (reads what
    /// its user can), not the daemon's.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Store,
        cluster: KubeCluster,
        settings: &crate::config::Settings,
        rules: RulesSource,
        outbox: Option<Arc<crate::notify::Outbox>>,
        grafana: Option<Arc<Grafana>>,
        owner: String,
        local_sources: bool,
    ) -> Runner {
        let d = &settings.deploy;
        Runner {
            store,
            cluster,
            settings: d.clone(),
            render: render::Options::from_settings(d),
            dns: (
                dns::Expected {
                    addresses: d.ingress_addresses.clone(),
                    hostnames: d.ingress_hostnames.clone(),
                },
                dns::Options {
                    nameserver: d.dns_server,
                    ..Default::default()
                },
            ),
            apply: ApplyOptions {
                timeout: d.rollout_timeout.0,
                poll: d.poll.0,
            },
            grafana,
            rules,
            outbox,
            owner,
            local_sources,
        }
    }

    /// The rollout timeout (`aiops deploy --timeout`).
    pub fn with_timeout(mut self, timeout: Duration) -> Runner {
        self.apply.timeout = timeout;
        self
    }

    /// This runner's name in deployment records.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Runs deployment `record` (owned by this runner) of `spec` step by step, recording each
    /// step and the end, and announcing it. `progress` hears each step start and end.
    pub async fn run(
        &self,
        record: &DeploymentRecord,
        spec: AppSpec,
        pre: Prechecked,
        progress: &(dyn Fn(&Progress<'_>) + Send + Sync),
    ) -> Result<Finished> {
        let id = record.id;
        // Aborted when the run ends, however it ends (an error or a panic included).
        let _heartbeat = AbortOnDrop(self.beat(id));
        let mut run = Run {
            runner: self,
            spec,
            dns_check: Some(pre.dns),
            detected: pre.detected,
            // Built from the time it was queued, so the destination is the one recorded.
            build: None,
            build_refused: None,
            rendered: None,
            applied: Vec::new(),
            summary: Vec::new(),
            queued_at: record.started_at,
        };
        let mut failed = None;
        for (position, step) in Step::ALL.into_iter().enumerate() {
            let number = position + 1;
            let position = position as i64;
            if !self.store.start_step(id, &self.owner, position).await? {
                return Err(Error::Lost(id));
            }
            progress(&Progress {
                number,
                step,
                status: StepStatus::Running,
                detail: "",
            });
            let (status, detail) = match run.step(step).await {
                Ok(Done::Succeeded(d)) => (StepStatus::Succeeded, d),
                Ok(Done::Skipped(d)) => (StepStatus::Skipped, d),
                Err(why) => (StepStatus::Failed, why),
            };
            if !self
                .store
                .finish_step(id, &self.owner, position, status, &detail)
                .await?
            {
                return Err(Error::Lost(id));
            }
            progress(&Progress {
                number,
                step,
                status,
                detail: &detail,
            });
            if status == StepStatus::Failed {
                failed = Some((step, detail));
                break;
            }
        }
        let detail = match &failed {
            Some((step, why)) => run
                .summary
                .iter()
                .cloned()
                .chain(std::iter::once(format!("{step} failed: {why}")))
                .collect::<Vec<_>>()
                .join("; "),
            None => run.summary.join("; "),
        };
        let record = self
            .store
            .finish_owned_deployment(id, &self.owner, failed.is_none(), &detail)
            .await?
            .ok_or(Error::Lost(id))?;
        apply::announce(
            &self.store,
            self.outbox.as_deref(),
            Some(&run.spec),
            &record,
        )
        .await;
        Ok(Finished {
            record,
            applied: run.applied,
            failed,
        })
    }

    /// Beats deployment `id`'s heartbeat until aborted.
    fn beat(&self, id: i64) -> tokio::task::JoinHandle<()> {
        let (store, owner, every) = (
            self.store.clone(),
            self.owner.clone(),
            self.settings.heartbeat.0,
        );
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                match store.heartbeat_deployment(id, &owner).await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!(
                            deployment = id,
                            "this deployment was failed by another process (its heartbeat was late); finishing the step under way"
                        );
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(deployment = id, error = %e, "deployment heartbeat failed")
                    }
                }
            }
        })
    }

    /// How long a silent owner is given before its deployment is failed.
    pub fn stale_after(&self) -> Duration {
        self.settings.heartbeat.0 * 6
    }

    /// The daemon's worker: fails deployments whose owner went silent, claims queued ones and
    /// runs them, one at a time, until `stop`; woken at once by `wake` (a new deployment).
    /// Stopped mid-deployment, it fails that deployment, naming the step, rather than leave it
    /// running.
    pub fn spawn(
        self,
        wake: Arc<Notify>,
        mut stop: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let every = self.settings.poll.0.max(Duration::from_millis(50));
            loop {
                if *stop.borrow() {
                    return;
                }
                if let Err(e) = self.once(&mut stop).await {
                    tracing::error!(error = %e, "deploy worker");
                }
                tokio::select! {
                    _ = wake.notified() => {}
                    _ = tokio::time::sleep(every) => {}
                    _ = stop.changed() => {}
                }
            }
        })
    }

    /// Fails the deployments whose owner stopped beating their heartbeat (a killed daemon
    /// or `aiops deploy`), announces each (`deploy_failed`: nobody else will, the process
    /// that ran it is gone) and returns them.
    pub async fn fail_stale(&self) -> Result<Vec<DeploymentRecord>> {
        let failed = self
            .store
            .fail_stale_deployments(
                self.stale_after(),
                "the process running this deployment stopped",
            )
            .await?;
        for d in &failed {
            tracing::warn!(deployment = d.id, app = %d.app, detail = d.detail.as_deref().unwrap_or_default(), "deployment failed: its process stopped");
            self.announce_failed(d).await;
        }
        Ok(failed)
    }

    /// One look: stale deployments failed, then every queued deployment run in turn.
    async fn once(&self, stop: &mut watch::Receiver<bool>) -> Result<()> {
        if !self.store.has_active_deployments().await? {
            return Ok(());
        }
        self.fail_stale().await?;
        while let Some(record) = self.store.claim_deployment(&self.owner).await? {
            if *stop.borrow() {
                self.abandon(
                    &record,
                    "the daemon was stopping when it claimed this deployment",
                )
                .await?;
                return Ok(());
            }
            let spec = match self.registered_spec(&record).await {
                Ok(spec) => spec,
                Err(why) => {
                    self.abandon(&record, &why.to_string()).await?;
                    continue;
                }
            };
            tracing::info!(deployment = record.id, app = %record.app, requested_by = record.requested_by.as_deref().unwrap_or_default(), "deployment started");
            let pre = Prechecked {
                dns: DnsCheck::Ask {
                    skip: record.skip_dns_check,
                },
                detected: None,
            };
            // Its own task, so a panic in a step fails this deployment, not the worker.
            let mut run = tokio::spawn({
                let (me, record) = (self.clone(), record.clone());
                async move {
                    let log = |p: &Progress<'_>| {
                        tracing::info!(deployment = record.id, step = %p.step, status = p.status.as_str(), detail = p.detail, "deploy step");
                    };
                    me.run(&record, spec, pre, &log).await
                }
            });
            tokio::select! {
                done = &mut run => match done {
                    Ok(Ok(done)) => {
                        tracing::info!(deployment = record.id, app = %record.app, status = %done.record.status, "deployment finished");
                    }
                    Ok(Err(Error::Lost(id))) => {
                        tracing::warn!(deployment = id, "another process failed this deployment while it ran; stopped");
                    }
                    Ok(Err(e)) => {
                        self.abandon(&record, &format!("the deploy worker failed: {e}")).await?;
                    }
                    Err(e) => {
                        self.abandon(&record, &format!("the deploy worker failed: {e}")).await?;
                    }
                },
                _ = stop.changed() => {
                    run.abort();
                    self.abandon(&record, "the daemon running this deployment was stopped").await?;
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// Fails a deployment that will not run on (its process is stopping): its running step
    /// (if any) failed with `why`, the rest not run.
    pub async fn abandon(&self, record: &DeploymentRecord, why: &str) -> Result<()> {
        let steps = self.store.deployment_steps(record.id).await?;
        let at = steps
            .iter()
            .find(|s| s.status == StepStatus::Running)
            .map(|s| (s.position, s.name.clone()));
        if let Some((position, _)) = at {
            self.store
                .finish_step(record.id, &self.owner, position, StepStatus::Failed, why)
                .await?;
        }
        let detail = match at {
            Some((_, name)) => format!("{name} failed: {why}"),
            None => why.to_string(),
        };
        // Not ours any more (failed as stale by another process): left as that one wrote it.
        if let Some(r) = self
            .store
            .finish_owned_deployment(record.id, &self.owner, false, &detail)
            .await?
        {
            tracing::warn!(deployment = r.id, app = %r.app, detail, "deployment failed");
            self.announce_failed(&r).await;
        }
        Ok(())
    }

    /// Announces a deployment this process failed without running it to its end (stale or
    /// abandoned), with the registered spec's channels. The spec may be why it failed (no
    /// longer registered or parsed): then the message goes by the app's labels alone.
    async fn announce_failed(&self, record: &DeploymentRecord) {
        let spec = self.registered_spec(record).await.ok();
        apply::announce(&self.store, self.outbox.as_deref(), spec.as_ref(), record).await;
    }

    /// The spec registered for a queued deployment's app, in the namespace it was queued for.
    async fn registered_spec(&self, record: &DeploymentRecord) -> Result<AppSpec> {
        let app = self
            .store
            .app(&record.app)
            .await?
            .filter(|a| a.namespace == record.namespace)
            .ok_or_else(|| {
                Error::App(format!(
                    "app {} is no longer registered in namespace {}",
                    record.app, record.namespace
                ))
            })?;
        let mut spec: AppSpec = serde_json::from_value(app.spec)
            .map_err(|e| Error::App(format!("the registered spec no longer parses: {e}")))?;
        spec.keep_namespace(&app.namespace);
        Ok(spec)
    }
}

/// Aborts a task when dropped: the heartbeat must stop with its run, however the run ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// How a step ended when it did not fail.
enum Done {
    Succeeded(String),
    Skipped(String),
}

/// One deployment's state between steps.
struct Run<'a> {
    runner: &'a Runner,
    spec: AppSpec,
    dns_check: Option<DnsCheck>,
    detected: Option<detect::Detection>,
    build: Option<BuildPlan>,
    build_refused: Option<String>,
    rendered: Option<Rendered>,
    applied: Vec<String>,
    /// The lines the deployment's detail is made of (the DNS check, the rollouts).
    summary: Vec<String>,
    queued_at: i64,
}

impl Run<'_> {
    async fn step(&mut self, step: Step) -> Result<Done, String> {
        match step {
            Step::CheckDns => self.check_dns().await,
            Step::DetectFramework => self.detect_framework().await,
            Step::CreateNamespace => {
                self.render()?;
                self.apply_step(step, "").await
            }
            Step::BuildImage => self.build_image().await,
            Step::DeployApp => {
                let done = self.apply_step(step, "").await?;
                if let Done::Succeeded(d) = &done {
                    self.summary.push(d.clone());
                }
                Ok(done)
            }
            Step::ConfigureIngress => self.apply_step(step, "the spec renders no Ingress").await,
            Step::SetupSsl => {
                self.apply_step(step, "the spec renders no Certificate (TLS is off)")
                    .await
            }
            Step::ConfigureMonitoring => self.configure_monitoring().await,
            Step::SetupAutoRepair => self.setup_auto_repair(),
        }
    }

    async fn check_dns(&mut self) -> Result<Done, String> {
        let (expected, opts) = &self.runner.dns;
        let gate = match self
            .dns_check
            .take()
            .unwrap_or(DnsCheck::Ask { skip: false })
        {
            DnsCheck::Done(g) => g,
            DnsCheck::Ask { skip } => dns::gate(&self.spec.domain, expected, opts, skip)
                .await
                .map_err(|e| e.to_string())?,
        };
        let line = gate.to_string();
        self.summary.push(line.clone());
        Ok(match gate {
            dns::Gate::Passed(_) => Done::Succeeded(line),
            dns::Gate::Skipped | dns::Gate::NotConfigured => Done::Skipped(line),
        })
    }

    async fn detect_framework(&mut self) -> Result<Done, String> {
        if let Some(d) = self.detected.take() {
            return Ok(Done::Succeeded(format!(
                "{} ({})",
                d.framework.as_str(),
                d.evidence.join(", ")
            )));
        }
        if let Some(fw) = self.spec.framework {
            return Ok(Done::Skipped(match self.spec.source_type {
                SourceType::Docker => format!("the spec names {}", fw.as_str()),
                // `POST /api/apps` stores what it detected in the spec.
                _ => format!(
                    "the spec names {} (written, or detected when the app was registered)",
                    fw.as_str()
                ),
            }));
        }
        let url = self
            .spec
            .source_url
            .clone()
            .ok_or("the spec names no framework and no source_url to detect it from")?;
        let source = match self.spec.source_type {
            SourceType::Docker => {
                return Err("a docker app must name its framework".into());
            }
            SourceType::Git => {
                if !self.runner.local_sources {
                    detect::remote_source_allowed(&url, &self.runner.settings.source_hosts)?;
                }
                Source::Git {
                    url: url.clone(),
                    reference: None,
                }
            }
            SourceType::Upload => {
                let local = url
                    .strip_prefix("file://")
                    .or(url.starts_with('/').then_some(url.as_str()));
                match local {
                    Some(path) if self.runner.local_sources => {
                        Source::Archive(std::path::PathBuf::from(path))
                    }
                    _ => {
                        // The reason is recorded and sent to chat: a presigned URL's query
                        // carries its token, so a URL is shown as steps show URLs (without
                        // it), a local path as it is.
                        let shown = reqwest::Url::parse(url.as_str())
                            .map(|u| crate::playbook::host::redact(&u))
                            .unwrap_or_else(|_| url.clone());
                        return Err(format!(
                            "an upload at {shown} is read where `aiops deploy` runs, from a local path: run it there, or name the framework"
                        ));
                    }
                }
            }
        };
        let d = detect::detect(&source, &DetectOptions::default())
            .await
            .map_err(|e| e.to_string())?;
        self.spec.framework = Some(d.framework);
        Ok(Done::Succeeded(format!(
            "{} ({})",
            d.framework.as_str(),
            d.evidence.join(", ")
        )))
    }

    /// Renders the app once its framework is known, with its build when it needs one.
    fn render(&mut self) -> Result<(), String> {
        match build::plan(&self.spec, &self.runner.settings, self.queued_at) {
            Ok(plan) => self.build = plan,
            // The build step says why, in its place; rendering goes on without an image (a
            // name nothing runs), so the namespace is still created and nothing after the
            // build is applied.
            Err(e) => self.build_refused = Some(e.to_string()),
        }
        // The daemon fetches nothing an API caller could not have it fetch, and neither does
        // the build it starts in the cluster.
        if let (Some(_), Some(url), false) = (
            &self.build,
            &self.spec.source_url,
            self.runner.local_sources,
        ) && let Err(why) =
            detect::remote_source_allowed(url, &self.runner.settings.source_hosts)
        {
            self.build = None;
            self.build_refused = Some(why);
        }
        let mut opts = self.runner.render.clone();
        opts.build = self.build.clone();
        let mut spec = self.spec.clone();
        if self.build_refused.is_some() && spec.image.is_none() {
            spec.image = Some(format!("unbuilt.invalid/{}:unbuilt", spec.name));
        }
        let rendered = render::render(&spec, &opts).map_err(|e| e.to_string())?;
        for m in &rendered.objects {
            apply::resource_of(m).map_err(|e| e.to_string())?;
        }
        self.rendered = Some(rendered);
        Ok(())
    }

    fn objects(&self, step: Step) -> Vec<Manifest> {
        self.rendered
            .iter()
            .flat_map(|r| &r.objects)
            .filter(|m| step_of(&m.template) == step)
            .cloned()
            .collect()
    }

    /// Applies the step's objects in order, waiting for each Job (the build's with the build
    /// timeout) and, at the end, for the step's Deployments to roll out.
    async fn apply_step(&mut self, step: Step, nothing: &str) -> Result<Done, String> {
        if self.rendered.is_none() {
            return Err("nothing was rendered".into());
        }
        let objects = self.objects(step);
        if objects.is_empty() {
            return Ok(Done::Skipped(nothing.to_string()));
        }
        let client = self.runner.cluster.client();
        let mut done = Vec::new();
        let mut deployments = Vec::new();
        for m in &objects {
            apply::apply_one(client.clone(), m)
                .await
                .map_err(|e| e.to_string())?;
            tracing::info!(object = %m.describe(), %step, "applied");
            self.applied.push(m.describe());
            done.push(m.describe());
            match m.kind() {
                "Job" => {
                    let mut opts = self.runner.apply.clone();
                    if step == Step::BuildImage {
                        opts.timeout = self.runner.settings.build_timeout.0;
                    }
                    apply::wait_job(client.clone(), m, &opts)
                        .await
                        .map_err(|e| e.to_string())?;
                }
                "Deployment" => deployments.push(m.clone()),
                _ => {}
            }
        }
        if deployments.is_empty() {
            return Ok(Done::Succeeded(format!("applied {}", done.join(", "))));
        }
        let mut rollouts = Vec::new();
        for m in &deployments {
            rollouts.push(
                apply::wait_rollout(&self.runner.cluster, m, &self.runner.apply)
                    .await
                    .map_err(|e| e.to_string())?,
            );
        }
        Ok(Done::Succeeded(rollouts.join("; ")))
    }

    async fn build_image(&mut self) -> Result<Done, String> {
        if let Some(why) = &self.build_refused {
            return Err(why.clone());
        }
        let Some(plan) = self.build.clone() else {
            let image = self.spec.image().unwrap_or_default();
            return Ok(Done::Skipped(match self.spec.source_type {
                SourceType::Docker => format!("a docker app runs its image {image}"),
                _ => format!("the spec names its image {image}"),
            }));
        };
        match self.apply_step(Step::BuildImage, "").await? {
            Done::Succeeded(_) => Ok(Done::Succeeded(format!(
                "built {} from {} (Job {}/{})",
                plan.destination,
                self.spec.source_url.as_deref().unwrap_or_default(),
                self.spec.namespace(),
                plan.job_name(&self.spec.name)
            ))),
            // A template override that renders no build Job builds nothing.
            Done::Skipped(_) => Err("the build-job.yaml template rendered no Job".into()),
        }
    }

    async fn configure_monitoring(&mut self) -> Result<Done, String> {
        let applied = self
            .apply_step(
                Step::ConfigureMonitoring,
                "the spec renders no monitoring objects",
            )
            .await?;
        let Some(grafana) = &self.runner.grafana else {
            return Ok(applied);
        };
        let (Some(rendered), Done::Succeeded(mut detail)) = (&self.rendered, applied) else {
            return Ok(Done::Skipped("nothing to push to Grafana".into()));
        };
        let title = self
            .spec
            .display_name
            .clone()
            .unwrap_or_else(|| self.spec.name.clone());
        let note = format!("aiops deploy of {} {}", self.spec.name, self.spec.version());
        // The app is rolled out and monitored in the cluster by now: a Grafana that refuses the
        // dashboard is recorded on the step, and the deployment stands.
        match grafana
            .push_app(&self.spec.name, &title, &rendered.dashboard, &note)
            .await
        {
            Ok(Pushed::Created { url, version, .. }) => {
                detail.push_str(&format!(
                    "; Grafana dashboard created ({url}, version {version})"
                ));
            }
            Ok(Pushed::Updated {
                url,
                previous,
                version,
                ..
            }) => detail.push_str(&format!(
                "; Grafana dashboard updated ({url}, version {previous} → {version})"
            )),
            Ok(Pushed::Unchanged { version, .. }) => {
                detail.push_str(&format!(
                    "; Grafana dashboard unchanged (version {version})"
                ));
            }
            Err(e) => {
                tracing::warn!(app = %self.spec.name, error = %e, "Grafana push failed");
                detail.push_str(&format!("; Grafana push failed: {e}"));
            }
        }
        Ok(Done::Succeeded(detail))
    }

    /// Every alert of the app's PrometheusRule that asks for a repair (`auto_repair`) is
    /// matched by a loaded rule running that playbook: otherwise the app would page people
    /// with alerts nothing repairs.
    fn setup_auto_repair(&self) -> Result<Done, String> {
        if !self.spec.auto_repair {
            return Ok(Done::Skipped(
                "auto_repair is false: aiops will not repair this app".into(),
            ));
        }
        let rules = (self.runner.rules)();
        let mut routed = Vec::new();
        let mut missing = Vec::new();
        for alert in self.alert_rules() {
            let Some(repair) = alert.get("auto_repair").cloned() else {
                continue;
            };
            let name = alert.get("alertname").cloned().unwrap_or_default();
            match rules
                .matching(&alert)
                .into_iter()
                .find(|r| r.playbook == repair)
            {
                Some(rule) => {
                    routed.push(format!("{name} → {} (rule {})", rule.playbook, rule.name))
                }
                None => missing.push(format!("{name} (auto_repair={repair})")),
            }
        }
        if !missing.is_empty() {
            return Err(format!(
                "no loaded rule runs the playbook these alerts ask for, so they would not be repaired: {}",
                missing.join(", ")
            ));
        }
        if routed.is_empty() {
            return Ok(Done::Skipped(
                "the app's alert rules ask for no repair".into(),
            ));
        }
        Ok(Done::Succeeded(routed.join(", ")))
    }

    /// The labels (with `alertname`) of each alert rule the app's PrometheusRule holds.
    fn alert_rules(&self) -> Vec<Labels> {
        let mut out = Vec::new();
        let rules = self
            .rendered
            .iter()
            .flat_map(|r| &r.objects)
            .filter(|m| m.kind() == "PrometheusRule");
        for m in rules {
            let groups = m.object["spec"]["groups"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            for rule in groups
                .iter()
                .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            {
                let Some(alert) = rule["alert"].as_str() else {
                    continue;
                };
                let mut labels: Labels = rule["labels"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                    .collect();
                labels.insert("alertname".into(), alert.to_string());
                out.push(labels);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_belongs_to_the_step_named_in_the_original_design() {
        let names: Vec<&str> = render::TEMPLATES.iter().map(|(n, _)| *n).collect();
        let step = |n: &str| step_of(n).as_str();
        assert_eq!(step("namespace.yaml"), "create_namespace");
        assert_eq!(step("serviceaccount.yaml"), "create_namespace");
        assert_eq!(step("build-job.yaml"), "build_image");
        for n in [
            "configmap.yaml",
            "networkpolicy.yaml",
            "service.yaml",
            "migrate-job.yaml",
            "deployment.yaml",
            "worker.yaml",
        ] {
            assert!(names.contains(&n), "{n}");
            assert_eq!(step(n), "deploy_app", "{n}");
        }
        assert_eq!(step("ingress.yaml"), "configure_ingress");
        assert_eq!(step("certificate.yaml"), "setup_ssl");
        for n in [
            "servicemonitor.yaml",
            "prometheusrule.yaml",
            "grafana-dashboard.yaml",
        ] {
            assert_eq!(step(n), "configure_monitoring", "{n}");
        }
    }

    #[test]
    fn the_steps_run_in_an_order_where_each_objects_step_follows_the_ones_it_needs() {
        // Applying step by step must keep the template order's guarantees: the namespace
        // before everything, the build before the app, the app before what fronts it.
        let order = |s: Step| Step::ALL.iter().position(|x| *x == s).unwrap();
        let mut last = 0;
        for (name, _) in render::TEMPLATES.iter().filter(|(n, _)| {
            !["dashboard.json", "alertmanager-route.yaml", "_pod.yaml"].contains(n)
        }) {
            let at = order(step_of(name));
            assert!(
                at >= last,
                "{name} is applied by an earlier step than the template before it"
            );
            last = at;
        }
        assert_eq!(
            Step::names(),
            [
                "check_dns",
                "detect_framework",
                "create_namespace",
                "build_image",
                "deploy_app",
                "configure_ingress",
                "setup_ssl",
                "configure_monitoring",
                "setup_auto_repair"
            ]
        );
    }

    #[test]
    fn progress_reads_as_a_numbered_line() {
        let p = Progress {
            number: 4,
            step: Step::BuildImage,
            status: StepStatus::Skipped,
            detail: "a docker app runs its image shop:1",
        };
        assert_eq!(
            p.to_string(),
            "[4/9] build_image: skipped (a docker app runs its image shop:1)"
        );
    }
}
