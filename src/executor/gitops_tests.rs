//! The revert watch, the `reverted` end and the GitOps skip, end to end through the pipeline
//! and the executor's workers on the in-memory cluster (a Flux-owned workload), with the
//! knowledge base's numbers computed by hand. The cluster is at hand here (the daemon builds
//! its own from `cluster.state_file`), so a test sets a field back as Flux would while the
//! watch runs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::{Executor, Runtime};
use crate::alert::Payload;
use crate::cluster::Target;
use crate::cluster::memory::MemoryCluster;
use crate::config::{Jobs, PlaybookSettings, Settings};
use crate::definitions::Definitions;
use crate::duration::HumanDuration;
use crate::gitops::{Field, GitopsSettings};
use crate::metrics::Metrics;
use crate::pipeline::Pipeline;
use crate::rules::RuleSet;
use crate::store::{self, Job, JobState, Store};

/// prod/web, applied by the Flux Kustomization flux-system/apps, with an OOM-killed pod.
const FLUX_OWNED: &str = r#"
workloads:
  - namespace: prod
    name: web
    labels:
      kustomize.toolkit.fluxcd.io/name: apps
      kustomize.toolkit.fluxcd.io/namespace: flux-system
    managers:
      - {name: kustomize-controller, operation: Apply}
    containers:
      - name: app
        memory: {request: 256Mi, limit: 512Mi}
pods:
  - namespace: prod
    name: web-7d9f-abc
    owner: web
    phase: Running
    terminations: [OOMKilled]
"#;

/// How long the tests watch an owned target after the change.
const WATCH: Duration = Duration::from_secs(2);

fn rule(policy: &str) -> String {
    format!(
        "rules:\n  - name: oom\n    matchers: ['auto_repair=\"oom_handler\"']\n    playbook: oom_handler\n    \
         params: {{factor: 1.2, min_step: 100Mi, max_limit: 4Gi, leak_bumps: 3, leak_window: 24h}}\n    \
         cooldown: 15m\n    gitops: {policy}\n"
    )
}

fn web() -> Target {
    Target {
        namespace: "prod".into(),
        kind: "Deployment".into(),
        name: "web".into(),
    }
}

fn limit() -> Field {
    Field::MemoryLimit {
        container: "app".into(),
    }
}

struct Fixture {
    executor: Arc<Executor>,
    cluster: Arc<MemoryCluster>,
    store: Store,
    stop: watch::Sender<bool>,
}

/// A pipeline over a fresh in-memory SQLite store with the shipped playbooks and `rules`.
pub(super) async fn pipeline(rules: &str) -> Arc<Pipeline> {
    let settings = Settings::default();
    let store = Store::connect("sqlite::memory:", &store::Options::default())
        .await
        .unwrap();
    let mut defs =
        Definitions::load(&settings.rules_source(), &settings.playbooks_source()).unwrap();
    let rules = RuleSet::parse_str(rules, std::path::Path::new("test.yaml")).unwrap();
    defs.rules = Arc::new(RuleSet::from_rules(rules));
    Arc::new(Pipeline::new(store, defs, &settings, Metrics::new()))
}

async fn fixture(policy: &str) -> Fixture {
    let pipeline = pipeline(&rule(policy)).await;
    let store = pipeline.store().clone();
    let cluster = Arc::new(MemoryCluster::from_yaml(FLUX_OWNED).unwrap());
    let playbook = PlaybookSettings {
        rollout_poll: HumanDuration(Duration::from_millis(50)),
        ..PlaybookSettings::default()
    };
    let gitops = GitopsSettings {
        watch: HumanDuration(WATCH),
        ..GitopsSettings::default()
    };
    let jobs = Jobs {
        workers: 1,
        poll_interval: HumanDuration(Duration::from_millis(20)),
        ..Jobs::default()
    };
    let executor = Arc::new(Executor::new(
        pipeline,
        jobs,
        Runtime::new(cluster.clone(), playbook).with_gitops(gitops),
    ));
    let (stop, stopped) = watch::channel(false);
    // The workers stop when `stop` is sent or dropped with the fixture.
    let workers = executor.spawn(stopped);
    tokio::spawn(async move {
        let mut workers = workers;
        while workers.join_next().await.is_some() {}
    });
    Fixture {
        executor,
        cluster,
        store,
        stop,
    }
}

const ALERT: &str = r#"{"version":"4","status":"firing","alerts":[{"status":"firing","labels":{"alertname":"OOMKilled","auto_repair":"oom_handler","namespace":"prod","app":"web"},"startsAt":"2026-11-30T03:00:00Z"}]}"#;

impl Fixture {
    /// Posts the alert as a webhook would; returns how many jobs it created.
    async fn alert(&self) -> usize {
        let report = self
            .executor
            .pipeline
            .ingest(&Payload::from_slice(ALERT.as_bytes()).unwrap())
            .await
            .unwrap();
        self.executor.wake();
        report.jobs.len()
    }

    /// Waits until the only job is in one of `states`.
    async fn job_in(&self, states: &[JobState]) -> Job {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let job = self.store.jobs().await.unwrap().remove(0);
            if states.contains(&job.state) {
                return job;
            }
            assert!(
                Instant::now() < deadline,
                "never reached {states:?}: {job:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn kb(&self) -> crate::kb::Report {
        crate::kb::report(&self.store, 0, None).await.unwrap()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_raise_flux_sets_back_during_the_watch_ends_reverted_escalates_once_and_is_not_retried()
 {
    let f = fixture("act").await;
    assert_eq!(f.alert().await, 1);
    let verifying = f.job_in(&[JobState::Verifying]).await;
    // The raise is live, applied by aiops...
    let live = f.cluster.snapshot();
    let container = &live.workloads[0].containers[0];
    assert_eq!(container.memory.limit, Some(615 * 1024 * 1024), "{live:?}");
    // ...until Flux applies Git's value again.
    f.cluster
        .revert_field(&web(), &limit(), "512Mi", "kustomize-controller")
        .unwrap();
    let job = f
        .job_in(&[JobState::Reverted, JobState::Succeeded, JobState::Escalated])
        .await;
    assert_eq!(job.state, JobState::Reverted, "{job:?}");
    assert_eq!(job.id, verifying.id);
    assert_eq!(
        job.error.as_deref(),
        Some(
            "reverted: resources.limits.memory of container app of prod/Deployment/web was set \
             back to 512Mi by kustomize-controller (the repair set 615Mi)"
        )
    );
    let escalations = f.store.escalations().await.unwrap();
    assert_eq!(escalations.len(), 1, "{escalations:?}");
    let e = &escalations[0];
    assert_eq!(
        (e.kind.as_str(), e.destination.as_str()),
        ("human", "default")
    );
    assert!(
        e.reason.contains("make the change in Git") && e.reason.contains("by kustomize-controller"),
        "{}",
        e.reason
    );
    // The ownership the gate recorded is on the job.
    let owned = f.store.job_gitops(job.id).await.unwrap().expect("recorded");
    assert_eq!(
        owned.controller.map(|c| c.to_string()).as_deref(),
        Some("Flux Kustomization flux-system/apps")
    );

    // Alertmanager re-sends the firing alert: the cooldown holds, nothing is retried.
    assert_eq!(f.alert().await, 0);
    assert_eq!(f.store.jobs().await.unwrap().len(), 1);
    assert_eq!(f.store.escalations().await.unwrap().len(), 1);

    // One run, not a success, one revert: 0 / 1.
    let kb = f.kb().await;
    let s = &kb.by_alert[0];
    assert_eq!(
        (s.playbook.as_str(), s.runs, s.succeeded, s.reverted),
        ("oom_handler", 1, 0, 1)
    );
    assert_eq!(s.success_rate, 0.0);
    let t = &kb.by_target[0];
    assert_eq!(
        (t.target.as_str(), t.runs, t.succeeded, t.reverted),
        ("prod/Deployment/web", 1, 0, 1)
    );
    // And `choose: best` reads it as a run that did not work.
    assert_eq!(
        f.store
            .success_rate("oom_handler", "OOMKilled", 0)
            .await
            .unwrap(),
        Some(0.0)
    );
    assert_eq!(
        f.executor
            .metrics
            .jobs
            .get("reverted", crate::rules::Mode::Auto),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_raise_nobody_sets_back_succeeds_once_the_watch_is_over() {
    let f = fixture("act").await;
    assert_eq!(f.alert().await, 1);
    let job = f
        .job_in(&[JobState::Reverted, JobState::Succeeded, JobState::Escalated])
        .await;
    assert_eq!(job.state, JobState::Succeeded, "{job:?}");
    let outcome = job.outcome.as_deref().unwrap();
    assert!(
        outcome.contains("the 1 changed field held for 2s after the change"),
        "{outcome}"
    );
    let events = f.store.job_events(job.id).await.unwrap();
    let at = |state: JobState| events.iter().find(|e| e.to == state.as_str()).unwrap().at;
    assert!(
        at(JobState::Succeeded) - at(JobState::Verifying) >= WATCH.as_millis() as i64,
        "{events:?}"
    );
    let kb = f.kb().await;
    let s = &kb.by_alert[0];
    assert_eq!((s.runs, s.succeeded, s.reverted), (1, 1, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_skipped_raise_escalates_with_the_exact_git_change_changes_nothing_and_is_not_counted() {
    let f = fixture("skip").await;
    assert_eq!(f.alert().await, 1);
    let job = f
        .job_in(&[JobState::Reverted, JobState::Succeeded, JobState::Escalated])
        .await;
    assert_eq!(job.state, JobState::Escalated, "{job:?}");
    assert!(f.cluster.actions().is_empty(), "{:?}", f.cluster.actions());
    let escalations = f.store.escalations().await.unwrap();
    assert_eq!(escalations.len(), 1, "{escalations:?}");
    let reason = &escalations[0].reason;
    assert!(
        reason.contains("set resources.limits.memory of container app to 615Mi")
            && reason.contains("Flux Kustomization flux-system/apps")
            && reason.contains("the target's GitOps owner keeps this change in Git"),
        "{reason}"
    );
    // It changed nothing: no run of the playbook in the knowledge base, and no rate.
    let kb = f.kb().await;
    assert!(kb.by_alert.is_empty(), "{kb:?}");
    assert!(kb.by_target.is_empty(), "{kb:?}");
    assert_eq!(
        f.store
            .success_rate("oom_handler", "OOMKilled", 0)
            .await
            .unwrap(),
        None
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_that_would_skip_ends_as_a_dry_run_without_escalating_to_humans() {
    // The rule's YAML is built by `rule`: its `gitops:` line is the last, so the dry run
    // follows it as one more key of the same rule.
    let f = fixture("skip\n    dry_run: true").await;
    assert_eq!(f.alert().await, 1);
    let job = f
        .job_in(&[JobState::Reverted, JobState::Succeeded, JobState::Escalated])
        .await;
    assert!(job.dry_run, "{job:?}");
    assert_eq!(job.state, JobState::Succeeded, "{job:?}");
    let outcome = job.outcome.as_deref().unwrap_or_default();
    assert!(
        outcome.contains("dry run: would stop here: Flux Kustomization flux-system/apps owns"),
        "{outcome}"
    );
    assert!(f.cluster.actions().is_empty(), "{:?}", f.cluster.actions());
    let escalations = f.store.escalations().await.unwrap();
    assert!(escalations.is_empty(), "{escalations:?}");
    let steps = f.store.job_steps(job.id).await.unwrap();
    let detail = |action: &str| {
        steps
            .iter()
            .find(|s| s.action == action)
            .map(|s| s.detail.clone())
            .unwrap_or_else(|| panic!("no {action} step: {steps:?}"))
    };
    assert!(
        detail("gitops_skip").contains("would skip the change"),
        "{steps:?}"
    );
    assert_eq!(
        detail("verify"),
        "dry run: nothing changed, nothing to verify"
    );
}
