//! Each shipped playbook, run offline through the library against the in-memory cluster: the
//! repair, the failure verification must see, and every guard path. The knowledge-base cases run
//! with a real (in-memory SQLite) store; the last tests drive `aiops test-playbook`.

use crate::common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use aiops::alert::{Alert, Payload};
use aiops::cluster::memory::{MemoryCluster, State, Workload};
use aiops::cluster::{self, Cluster, Memory, Replicas, Rollback, RolloutStatus, Scaled, Target};
use aiops::definitions::Definitions;
use aiops::playbook::host::{HostSettings, Outcome, RunContext, RunInput, RunResult, Runner};
use aiops::playbook::offline;
use aiops::playbook::sandbox::Sandbox;
use aiops::store::{JobState, NewAlertEvent, NewJob, Store};
use common::{repo, run_cli};

const MI: i64 = 1 << 20;
const GI: i64 = 1 << 30;

fn defs() -> Definitions {
    Definitions::load(
        &aiops::embedded::Source::Dir(repo().join("rules")),
        &aiops::embedded::Source::Dir(repo().join("playbooks")),
    )
    .unwrap_or_else(|p| panic!("the shipped rules and playbooks load: {p:#?}"))
}

/// A firing alert with these labels, parsed the way the webhook parses it.
fn alert(labels: &[(&str, &str)]) -> Alert {
    let mut alert = common::payload::alert("firing", labels, "2026-11-26T03:00:00Z");
    alert["annotations"] = serde_json::json!({"summary": "test"});
    let body = common::payload::group(vec![alert]).to_string();
    Payload::from_slice(body.as_bytes())
        .unwrap()
        .alerts
        .remove(0)
}

/// An alert for `playbook` (its `auto_repair` label picks the shipped rule) on prod/`name`.
fn alert_for(playbook: &str, name: &str) -> Alert {
    alert(&[
        ("alertname", "Test"),
        ("auto_repair", playbook),
        ("namespace", "prod"),
        ("deployment", name),
        ("severity", "critical"),
    ])
}

fn web() -> Target {
    Target {
        namespace: "prod".into(),
        kind: "Deployment".into(),
        name: "web".into(),
    }
}

/// prod/web: 2 replicas at revision 3 with history [1, 2], one container `app`.
fn web_state(extra: &str, request: &str, limit: &str) -> String {
    format!(
        "workloads:\n  - namespace: prod\n    name: web\n    replicas: 2\n    revision: 3\n    history: [1, 2]\n{extra}    containers:\n      - name: app\n        memory: {{request: {request}, limit: {limit}}}\n"
    )
}

fn cluster(yaml: &str) -> Arc<MemoryCluster> {
    Arc::new(MemoryCluster::from_yaml(yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}")))
}

fn host_settings() -> HostSettings {
    HostSettings {
        rollout_poll: Duration::from_millis(10),
        ..HostSettings::default()
    }
}

/// Runs `playbook` through `offline::{plan, run}` as `aiops test-playbook` does.
async fn run_offline(
    playbook: &str,
    alert: &Alert,
    overrides: &[(&str, serde_json::Value)],
    cluster: Arc<MemoryCluster>,
    dry_run: bool,
) -> RunResult {
    let defs = defs();
    let overrides: Vec<(String, serde_json::Value)> = overrides
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    let plan = offline::plan(&defs, playbook, alert, &overrides).unwrap();
    let sandbox = Sandbox::with_host(cluster, host_settings(), Duration::from_secs(30));
    offline::run(&sandbox, &defs, playbook, alert, &plan, dry_run)
        .await
        .unwrap()
}

/// Runs `playbook` for an alert on prod/`name` with the shipped rule's params (plus overrides).
async fn run(
    playbook: &str,
    name: &str,
    overrides: &[(&str, serde_json::Value)],
    cluster: Arc<MemoryCluster>,
) -> RunResult {
    run_offline(
        playbook,
        &alert_for(playbook, name),
        overrides,
        cluster,
        false,
    )
    .await
}

/// Runs `playbook` through `Runner`/`RunContext` directly, with a store for the knowledge base.
async fn run_with_store(
    playbook: &str,
    name: &str,
    cluster: Arc<dyn Cluster>,
    store: Option<Store>,
) -> RunResult {
    let defs = defs();
    let alert = alert_for(playbook, name);
    let plan = offline::plan(&defs, playbook, &alert, &[]).unwrap();
    let pb = defs.playbooks.get(playbook).unwrap().clone();
    let input = RunInput::new(
        &alert.labels,
        &alert.annotations,
        &alert.fingerprint,
        &alert
            .starts_at
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        alert.status.as_str(),
        &plan.params,
        &plan.target,
    );
    let ctx = Arc::new(RunContext::new(
        cluster,
        store,
        None,
        tokio::runtime::Handle::current(),
        false,
        host_settings(),
        reqwest::Client::new(),
        Duration::from_secs(30),
    ));
    let runner = Arc::new(Runner::new());
    tokio::task::spawn_blocking(move || runner.run(&pb, input, ctx))
        .await
        .unwrap()
}

fn workload<'a>(state: &'a State, name: &str) -> &'a Workload {
    state
        .workloads
        .iter()
        .find(|w| w.name == name)
        .unwrap_or_else(|| panic!("no workload {name} in {state:#?}"))
}

/// (request, limit) of web's first container.
fn web_memory(c: &MemoryCluster) -> (Option<i64>, Option<i64>) {
    let s = c.snapshot();
    let m = &workload(&s, "web").containers[0].memory;
    (m.request, m.limit)
}

fn assert_success(r: &RunResult, contains: &str) {
    match &r.outcome {
        Outcome::Success(m) => assert!(m.contains(contains), "{m:?} lacks {contains:?}"),
        other => panic!("expected success containing {contains:?}, got {other:?}; {r:#?}"),
    }
}

fn assert_failure(r: &RunResult, contains: &str) {
    match &r.outcome {
        Outcome::Failure(m) => assert!(m.contains(contains), "{m:?} lacks {contains:?}"),
        other => panic!("expected failure containing {contains:?}, got {other:?}; {r:#?}"),
    }
}

fn assert_inconclusive(r: &RunResult, contains: &str) {
    match &r.outcome {
        Outcome::Inconclusive(m) => assert!(m.contains(contains), "{m:?} lacks {contains:?}"),
        other => panic!("expected inconclusive containing {contains:?}, got {other:?}; {r:#?}"),
    }
}

fn actions_of(r: &RunResult) -> Vec<&str> {
    r.steps.iter().map(|s| s.action.as_str()).collect()
}

// ------------------------------------------------------------------------------------- restart

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_rolls_the_deployment_to_a_new_revision_and_succeeds() {
    let c = cluster(&web_state("", "256Mi", "512Mi"));
    let r = run("restart", "web", &[], c.clone()).await;
    assert_eq!(
        r.outcome,
        Outcome::Success("restarted Deployment web; rollout complete".into())
    );
    assert_eq!(c.actions(), ["restart prod/Deployment/web"]);
    let s = c.snapshot();
    let w = workload(&s, "web");
    assert_eq!(w.revision, 4);
    assert_eq!(w.history, [1, 2, 3]);
    assert_eq!(
        w.containers[0].memory.limit,
        Some(512 * MI),
        "a restart keeps the template"
    );
    assert_eq!(actions_of(&r), ["restart", "wait_rollout", "outcome"]);
    assert_eq!(
        r.touched,
        [web()],
        "verification checks the restarted workload"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_of_a_paused_deployment_is_a_refused_call_hence_inconclusive() {
    let c = cluster(&web_state("    paused: true\n", "256Mi", "512Mi"));
    let r = run("restart", "web", &[], c.clone()).await;
    assert_inconclusive(&r, "deployment prod/web is paused");
    assert_inconclusive(&r, "restart.rhai:12:");
    assert!(c.actions().is_empty());
    assert_eq!(workload(&c.snapshot(), "web").revision, 3);
    assert!(r.touched.is_empty());
    assert_eq!(
        actions_of(&r),
        ["error"],
        "the script error is the one step"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_whose_rollout_fails_is_a_failure_for_the_chain() {
    let c = cluster(&web_state("    rollout: fails\n", "256Mi", "512Mi"));
    let r = run("restart", "web", &[], c.clone()).await;
    assert_eq!(
        r.outcome,
        Outcome::Failure(
            "restart of web did not roll out: deployment \"web\" exceeded its progress deadline"
                .into()
        )
    );
    assert_eq!(
        c.actions(),
        ["restart prod/Deployment/web"],
        "the restart was applied"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_of_a_workload_annotated_auto_repair_disabled_is_refused() {
    let c = cluster(&web_state(
        "    annotations: {aiops.wooo.work/auto-repair: disabled}\n",
        "256Mi",
        "512Mi",
    ));
    let r = run("restart", "web", &[], c.clone()).await;
    assert_inconclusive(
        &r,
        "refused: Deployment prod/web is annotated aiops.wooo.work/auto-repair=disabled",
    );
    assert!(c.actions().is_empty());
    assert_eq!(workload(&c.snapshot(), "web").revision, 3);
}

// -------------------------------------------------------------------------------- scale_memory

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_memory_raises_512mi_by_the_factor_rounded_up_to_a_whole_mi() {
    // 512Mi × 1.2 = 614.4Mi → 615Mi, which beats 512Mi + 100Mi = 612Mi.
    let c = cluster(&web_state("", "256Mi", "512Mi"));
    let r = run("scale_memory", "web", &[], c.clone()).await;
    assert_eq!(
        r.outcome,
        Outcome::Success("memory limit of app: 512Mi -> 615Mi".into())
    );
    assert_eq!(web_memory(&c), (Some(256 * MI), Some(615 * MI)));
    assert_eq!(
        c.actions(),
        ["set memory prod/Deployment/web container app: request 256Mi, limit 615Mi"]
    );
    assert_eq!(
        workload(&c.snapshot(), "web").revision,
        4,
        "a new template rolls out"
    );
    assert_eq!(r.touched, [web()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_memory_of_a_small_limit_takes_the_minimum_step() {
    // 128Mi × 1.2 = 154Mi < 128Mi + 100Mi = 228Mi.
    let c = cluster(&web_state("", "64Mi", "128Mi"));
    let r = run("scale_memory", "web", &[], c.clone()).await;
    assert_success(&r, "128Mi -> 228Mi");
    assert_eq!(web_memory(&c), (Some(64 * MI), Some(228 * MI)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_memory_never_sets_a_limit_above_max_limit() {
    // 900Mi × 1.2 = 1080Mi, capped at 1Gi.
    let c = cluster(&web_state("", "256Mi", "900Mi"));
    let r = run(
        "scale_memory",
        "web",
        &[("max_limit", serde_json::json!("1Gi"))],
        c.clone(),
    )
    .await;
    assert_success(&r, "900Mi -> 1Gi");
    assert_eq!(web_memory(&c), (Some(256 * MI), Some(GI)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_memory_at_the_cap_fails_without_touching_anything() {
    let c = cluster(&web_state("", "1Gi", "4Gi"));
    let r = run("scale_memory", "web", &[], c.clone()).await;
    assert_eq!(
        r.outcome,
        Outcome::Failure("memory limit 4Gi is already at the cap 4Gi".into())
    );
    assert!(c.actions().is_empty());
    assert_eq!(web_memory(&c), (Some(GI), Some(4 * GI)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_memory_keeps_a_request_below_the_new_limit_unchanged() {
    // Request equal to the old limit: still below the new one, so it is left alone.
    let c = cluster(&web_state("", "512Mi", "512Mi"));
    let r = run("scale_memory", "web", &[], c.clone()).await;
    assert_success(&r, "512Mi -> 615Mi");
    assert_eq!(web_memory(&c), (Some(512 * MI), Some(615 * MI)));
    let step = r.steps.iter().find(|s| s.action == "set_memory").unwrap();
    assert!(step.detail.contains("request unchanged"), "{step:?}");
}

/// A cluster that reports a memory request above the limit the playbook will compute. A valid
/// state file (and Kubernetes) cannot hold request > limit, so this is the only way to reach the
/// branch of scale_memory that lowers the request.
struct ReportsHugeRequest(Arc<MemoryCluster>);

#[async_trait::async_trait]
impl Cluster for ReportsHugeRequest {
    async fn restart(&self, t: &Target, dry_run: bool) -> cluster::Result<()> {
        self.0.restart(t, dry_run).await
    }
    async fn rollout_status(&self, t: &Target) -> cluster::Result<RolloutStatus> {
        self.0.rollout_status(t).await
    }
    async fn rollback(&self, t: &Target, dry_run: bool) -> cluster::Result<Rollback> {
        self.0.rollback(t, dry_run).await
    }
    async fn memory(&self, t: &Target, container: Option<&str>) -> cluster::Result<Memory> {
        let mut m = self.0.memory(t, container).await?;
        m.request = Some(2 * GI);
        Ok(m)
    }
    async fn set_memory(
        &self,
        t: &Target,
        container: &str,
        request: Option<i64>,
        limit: i64,
        dry_run: bool,
    ) -> cluster::Result<()> {
        self.0
            .set_memory(t, container, request, limit, dry_run)
            .await
    }
    async fn last_terminations(&self, t: &Target) -> cluster::Result<Vec<String>> {
        self.0.last_terminations(t).await
    }
    async fn delete_failed_pods(
        &self,
        ns: &str,
        older_than: Duration,
        dry_run: bool,
    ) -> cluster::Result<u64> {
        self.0.delete_failed_pods(ns, older_than, dry_run).await
    }
    async fn delete_finished_jobs(
        &self,
        ns: &str,
        older_than: Duration,
        dry_run: bool,
    ) -> cluster::Result<u64> {
        self.0.delete_finished_jobs(ns, older_than, dry_run).await
    }
    async fn replicas(&self, t: &Target) -> cluster::Result<Replicas> {
        self.0.replicas(t).await
    }
    async fn scale(&self, t: &Target, replicas: i64, dry_run: bool) -> cluster::Result<Scaled> {
        self.0.scale(t, replicas, dry_run).await
    }
    async fn object_info(&self, t: &Target) -> cluster::Result<aiops::gitops::ObjectInfo> {
        self.0.object_info(t).await
    }
    async fn observe(
        &self,
        t: &Target,
        fields: &[aiops::gitops::Field],
    ) -> cluster::Result<Vec<aiops::gitops::FieldState>> {
        self.0.observe(t, fields).await
    }
    async fn hold(
        &self,
        t: &Target,
        c: &aiops::gitops::Controller,
        dry_run: bool,
    ) -> cluster::Result<aiops::gitops::HoldPlacement> {
        self.0.hold(t, c, dry_run).await
    }
    async fn release(
        &self,
        t: &Target,
        c: &aiops::gitops::Controller,
        p: &aiops::gitops::HoldPlacement,
    ) -> cluster::Result<()> {
        self.0.release(t, c, p).await
    }
    async fn git_agrees(
        &self,
        t: &Target,
        c: &aiops::gitops::Controller,
    ) -> cluster::Result<Option<bool>> {
        self.0.git_agrees(t, c).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_memory_lowers_a_request_above_the_new_limit_to_keep_limit_at_least_request() {
    let inner = cluster(&web_state("", "256Mi", "512Mi"));
    let c: Arc<dyn Cluster> = Arc::new(ReportsHugeRequest(inner.clone()));
    let r = run_with_store("scale_memory", "web", c, None).await;
    assert_success(&r, "512Mi -> 615Mi");
    assert_eq!(web_memory(&inner), (Some(615 * MI), Some(615 * MI)));
    assert_eq!(
        inner.actions(),
        ["set memory prod/Deployment/web container app: request 615Mi, limit 615Mi"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_memory_without_max_limit_is_inconclusive() {
    // No rule matches this alert, so the playbook runs with no params at all.
    let alert = alert(&[
        ("alertname", "Test"),
        ("namespace", "prod"),
        ("deployment", "web"),
    ]);
    let c = cluster(&web_state("", "256Mi", "512Mi"));
    let r = run_offline("scale_memory", &alert, &[], c.clone(), false).await;
    assert_eq!(
        r.outcome,
        Outcome::Inconclusive(
            "scale_memory needs the max_limit param (the cap it may never exceed)".into()
        )
    );
    assert!(c.actions().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_memory_whose_rollout_fails_is_a_failure() {
    let c = cluster(&web_state("    rollout: fails\n", "256Mi", "512Mi"));
    let r = run("scale_memory", "web", &[], c.clone()).await;
    assert_failure(
        &r,
        "new memory limit did not roll out: deployment \"web\" exceeded its progress deadline",
    );
    assert_eq!(web_memory(&c).1, Some(615 * MI), "the change was applied");
}

// --------------------------------------------------------------------------------- oom_handler

fn oom_state(terminations: &str, extra: &str) -> String {
    format!(
        "{}pods:\n  - namespace: prod\n    name: web-7d9f-abc\n    owner: web\n    terminations: {terminations}\n  - namespace: prod\n    name: api-1\n    owner: api\n    terminations: [OOMKilled]\n",
        web_state(extra, "256Mi", "512Mi")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oom_handler_raises_the_limit_after_an_oomkill() {
    let c = cluster(&oom_state("[Error, OOMKilled]", ""));
    let r = run("oom_handler", "web", &[], c.clone()).await;
    assert_eq!(
        r.outcome,
        Outcome::Success("OOMKilled: memory limit of app 512Mi -> 615Mi".into())
    );
    assert_eq!(web_memory(&c), (Some(256 * MI), Some(615 * MI)));
    assert_eq!(
        c.actions(),
        ["set memory prod/Deployment/web container app: request 256Mi, limit 615Mi"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oom_handler_without_an_oomkill_on_its_own_pods_is_inconclusive() {
    // Another workload's pod was OOMKilled; web's was not.
    let c = cluster(&oom_state("[Error]", ""));
    let r = run("oom_handler", "web", &[], c.clone()).await;
    assert_inconclusive(&r, "no OOMKilled termination on the pods of web");
    assert!(c.actions().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oom_handler_whose_rollout_fails_is_a_failure() {
    let c = cluster(&oom_state("[OOMKilled]", "    rollout: fails\n"));
    let r = run("oom_handler", "web", &[], c.clone()).await;
    assert_failure(&r, "new memory limit did not roll out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oom_handler_at_the_cap_fails() {
    let c = cluster(&oom_state("[OOMKilled]", "").replace("limit: 512Mi", "limit: 4Gi"));
    let r = run("oom_handler", "web", &[], c.clone()).await;
    assert_failure(&r, "OOMKilled at the cap: limit 4Gi cannot go above 4Gi");
    assert!(c.actions().is_empty());
}

/// Records a finished job of `playbook` on prod/Deployment/`name`, created `ago` before now.
async fn seed_job(
    store: &Store,
    playbook: &str,
    name: &str,
    ago: Duration,
    end: JobState,
    dry_run: bool,
) {
    let now = aiops::store::now_ms();
    let created = now - aiops::store::ms(ago);
    // Each job its own alert occurrence, as real repairs have.
    let mut a = alert_for(playbook, name);
    a.starts_at = chrono::DateTime::from_timestamp_millis(created).unwrap();
    let mut tx = store.begin_write().await.unwrap();
    let event = tx
        .insert_alert_event(&NewAlertEvent {
            alert: &a,
            receiver: "aiops",
            group_key: "{}",
            received_at: created,
        })
        .await
        .unwrap()
        .expect("a new occurrence");
    let (id, state) = tx
        .insert_job(
            &NewJob {
                alert_event_id: event,
                fingerprint: a.fingerprint.clone(),
                alertname: "Test".into(),
                rule: playbook.replace('_', "-"),
                spec: aiops::job::JobSpec::new(playbook),
                chain_index: 0,
                parent_id: None,
                target_namespace: "prod".into(),
                target_kind: "Deployment".into(),
                target_name: name.into(),
                dry_run,
                timeout_ms: None,
                not_before: created,
            },
            created,
        )
        .await
        .unwrap()
        .expect("no other active job on the target");
    tx.commit().await.unwrap();
    assert_eq!(state, JobState::Queued);
    let path: &[JobState] = match end {
        JobState::Succeeded => &[JobState::Running, JobState::Verifying, JobState::Succeeded],
        _ => &[JobState::Running, JobState::Failed, JobState::Escalated],
    };
    if end == JobState::Succeeded {
        // A raise is a run that changed the cluster.
        store
            .add_step(
                id,
                "set_memory",
                "set memory of prod/Deployment/web (seeded)",
            )
            .await
            .unwrap();
    }
    let mut from = JobState::Queued;
    for to in path {
        assert!(
            store
                .transition(id, from, *to, "test: seeded")
                .await
                .unwrap()
        );
        from = *to;
    }
}

async fn memory_store() -> Store {
    Store::connect("sqlite::memory:", &aiops::store::Options::default())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oom_handler_suspects_a_leak_after_three_raises_within_a_day_and_changes_nothing() {
    let store = memory_store().await;
    for hours in [1, 5, 20] {
        seed_job(
            &store,
            "oom_handler",
            "web",
            Duration::from_secs(hours * 3600),
            JobState::Succeeded,
            false,
        )
        .await;
    }
    assert_eq!(
        store
            .changes_by("oom_handler", "prod/Deployment/web", 0)
            .await
            .unwrap(),
        3
    );
    let c = cluster(&oom_state("[OOMKilled]", ""));
    let r = run_with_store("oom_handler", "web", c.clone(), Some(store)).await;
    assert_eq!(
        r.outcome,
        Outcome::Failure(
            "suspected memory leak: memory of web was already raised 3 times within 24h".into()
        )
    );
    assert!(c.actions().is_empty());
    assert!(!actions_of(&r).contains(&"set_memory"), "{r:#?}");
    assert_eq!(web_memory(&c), (Some(256 * MI), Some(512 * MI)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oom_handler_counts_scale_memory_raises_towards_the_leak_too() {
    let store = memory_store().await;
    seed_job(
        &store,
        "oom_handler",
        "web",
        Duration::from_secs(3600),
        JobState::Succeeded,
        false,
    )
    .await;
    seed_job(
        &store,
        "scale_memory",
        "web",
        Duration::from_secs(7200),
        JobState::Succeeded,
        false,
    )
    .await;
    seed_job(
        &store,
        "scale_memory",
        "web",
        Duration::from_secs(9000),
        JobState::Succeeded,
        false,
    )
    .await;
    let c = cluster(&oom_state("[OOMKilled]", ""));
    let r = run_with_store("oom_handler", "web", c.clone(), Some(store)).await;
    assert_failure(&r, "suspected memory leak");
    assert!(c.actions().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oom_handler_still_raises_after_two_raises_or_with_raises_that_do_not_count() {
    let store = memory_store().await;
    let hour = Duration::from_secs(3600);
    // Two real raises within the window…
    seed_job(
        &store,
        "oom_handler",
        "web",
        hour,
        JobState::Succeeded,
        false,
    )
    .await;
    seed_job(
        &store,
        "oom_handler",
        "web",
        2 * hour,
        JobState::Succeeded,
        false,
    )
    .await;
    // …and what must not count: too old, a dry run, a failed run, another target.
    seed_job(
        &store,
        "oom_handler",
        "web",
        25 * hour,
        JobState::Succeeded,
        false,
    )
    .await;
    seed_job(
        &store,
        "oom_handler",
        "web",
        3 * hour,
        JobState::Succeeded,
        true,
    )
    .await;
    seed_job(
        &store,
        "oom_handler",
        "web",
        4 * hour,
        JobState::Escalated,
        false,
    )
    .await;
    seed_job(
        &store,
        "oom_handler",
        "api",
        hour,
        JobState::Succeeded,
        false,
    )
    .await;
    let c = cluster(&oom_state("[OOMKilled]", ""));
    let r = run_with_store("oom_handler", "web", c.clone(), Some(store)).await;
    assert_success(&r, "512Mi -> 615Mi");
    assert_eq!(web_memory(&c).1, Some(615 * MI));
}

// ------------------------------------------------------------------------------------ rollback

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_restores_the_previous_template_under_a_new_revision() {
    let c = cluster(&web_state("", "256Mi", "512Mi"));
    // A memory raise makes revision 4 (615Mi); revision 3 keeps the 512Mi template.
    assert_success(&run("scale_memory", "web", &[], c.clone()).await, "615Mi");
    assert_eq!(workload(&c.snapshot(), "web").revision, 4);

    let r = run("rollback", "web", &[], c.clone()).await;
    assert_eq!(
        r.outcome,
        Outcome::Success("rolled web back to revision 3".into())
    );
    let s = c.snapshot();
    let w = workload(&s, "web");
    assert_eq!(w.revision, 5, "a rollback is recorded as a new revision");
    assert_eq!(
        w.history,
        [1, 2, 4],
        "revision 3 became current again, 4 joined the history"
    );
    assert_eq!(
        (w.containers[0].memory.request, w.containers[0].memory.limit),
        (Some(256 * MI), Some(512 * MI)),
        "the previous template's memory is back"
    );
    assert_eq!(
        c.actions(),
        [
            "set memory prod/Deployment/web container app: request 256Mi, limit 615Mi",
            "rollback prod/Deployment/web to revision 3"
        ]
    );
    assert_eq!(r.touched, [web()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_without_history_fails_with_the_reason() {
    let c = cluster(
        "workloads: [{namespace: prod, name: web, containers: [{name: app, memory: {limit: 512Mi}}]}]",
    );
    let r = run("rollback", "web", &[], c.clone()).await;
    assert_eq!(
        r.outcome,
        Outcome::Failure("no previous revision of deployment prod/web".into())
    );
    assert!(c.actions().is_empty());
    assert_eq!(actions_of(&r), ["rollback_refused", "outcome"]);
    assert!(r.touched.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_of_a_statefulset_is_refused_hence_inconclusive() {
    let c = cluster(
        "workloads: [{namespace: prod, name: db, kind: StatefulSet, revision: 2, history: [1]}]",
    );
    let a = alert(&[
        ("alertname", "Test"),
        ("auto_repair", "rollback"),
        ("namespace", "prod"),
        ("target_kind", "StatefulSet"),
        ("statefulset", "db"),
    ]);
    let r = run_offline("rollback", &a, &[], c.clone(), false).await;
    assert_inconclusive(&r, "rollback is only supported for Deployments");
    assert_inconclusive(&r, "rollback.rhai:9:");
    assert!(c.actions().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_whose_rollout_fails_is_a_failure() {
    let c = cluster(&web_state("    rollout: fails\n", "256Mi", "512Mi"));
    let r = run("rollback", "web", &[], c.clone()).await;
    assert_failure(&r, "rollback to revision 2 did not roll out");
    assert_eq!(c.actions(), ["rollback prod/Deployment/web to revision 2"]);
}

// ------------------------------------------------------------------------------------- cleanup

const CLEANUP_STATE: &str = r#"
workloads:
  - {namespace: prod, name: web}
pods:
  - {namespace: prod, name: web-1, owner: web}
  - {namespace: prod, name: evicted-old, phase: Failed, reason: Evicted, finished_ago: 2h}
  - {namespace: prod, name: failed-old, phase: Failed, finished_ago: 3h}
  - {namespace: prod, name: failed-recent, phase: Failed, finished_ago: 10m}
  - {namespace: prod, name: done-old, phase: Succeeded, finished_ago: 5h}
  - {namespace: staging, name: evicted-elsewhere, phase: Failed, reason: Evicted, finished_ago: 5h}
  - {namespace: prod, name: backup-1-xyz, owner: backup-1, phase: Succeeded, finished_ago: 3h}
jobs:
  - {namespace: prod, name: backup-1, finished_ago: 3h}
  - {namespace: prod, name: backup-2, finished_ago: 10m}
  - {namespace: prod, name: backup-running}
  - {namespace: staging, name: backup-elsewhere, finished_ago: 5h}
"#;

fn names<T>(items: &[T], name: impl Fn(&T) -> &str) -> Vec<String> {
    let mut v: Vec<String> = items.iter().map(|i| name(i).to_string()).collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_deletes_only_failed_pods_and_finished_jobs_older_than_the_threshold() {
    let c = cluster(CLEANUP_STATE);
    let r = run("cleanup", "web", &[], c.clone()).await;
    assert_eq!(
        r.outcome,
        Outcome::Success(
            "cleaned prod: deleted 2 Failed pods and 1 finished Jobs older than 1h".into()
        )
    );
    let s = c.snapshot();
    assert_eq!(
        names(&s.pods, |p| &p.name),
        ["done-old", "evicted-elsewhere", "failed-recent", "web-1"],
        "old Failed pods in prod and the finished Job's pod are gone"
    );
    assert_eq!(
        names(&s.jobs, |j| &j.name),
        ["backup-2", "backup-elsewhere", "backup-running"]
    );
    assert_eq!(
        c.actions(),
        [
            "delete pod prod/evicted-old (Evicted)",
            "delete pod prod/failed-old (Failed)",
            "delete job prod/backup-1"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_follows_the_older_than_param() {
    let c = cluster(CLEANUP_STATE);
    let r = run(
        "cleanup",
        "web",
        &[("older_than", serde_json::json!("5m"))],
        c.clone(),
    )
    .await;
    assert_success(
        &r,
        "deleted 3 Failed pods and 2 finished Jobs older than 5m",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_with_nothing_old_enough_succeeds_saying_so() {
    let c = cluster(
        "pods: [{namespace: prod, name: p, phase: Failed, finished_ago: 5m}]\njobs: [{namespace: prod, name: j, finished_ago: 5m}, {namespace: prod, name: running}]",
    );
    let before = c.snapshot();
    let r = run("cleanup", "web", &[], c.clone()).await;
    assert_eq!(
        r.outcome,
        Outcome::Success(
            "nothing to clean in prod: no Failed pods or finished Jobs older than 1h".into()
        )
    );
    assert!(c.actions().is_empty());
    assert_eq!(c.snapshot(), before);
}

// ------------------------------------------------------------------------------------- dry run

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_playbook_in_a_dry_run_changes_nothing_and_says_what_it_would_do() {
    let state = format!(
        "{}jobs:\n  - {{namespace: prod, name: backup-1, finished_ago: 3h}}\n",
        oom_state("[OOMKilled]", "").replace(
            "pods:\n",
            "pods:\n  - {namespace: prod, name: evicted, phase: Failed, reason: Evicted, finished_ago: 2h}\n"
        )
    );
    let cases = [
        ("restart", "would restart prod/Deployment/web"),
        (
            "scale_memory",
            "would set memory of prod/Deployment/web container app: request unchanged, limit 615Mi",
        ),
        (
            "oom_handler",
            "would set memory of prod/Deployment/web container app: request unchanged, limit 615Mi",
        ),
        (
            "rollback",
            "would roll back prod/Deployment/web to revision 2",
        ),
        (
            "cleanup",
            "would delete 1 Failed/Evicted pods older than 1h in prod",
        ),
    ];
    for (playbook, would) in cases {
        let c = cluster(&state);
        let before = c.snapshot();
        let r = run_offline(playbook, &alert_for(playbook, "web"), &[], c.clone(), true).await;
        assert!(
            matches!(r.outcome, Outcome::Success(_)),
            "{playbook}: {r:#?}"
        );
        assert!(c.actions().is_empty(), "{playbook}: {:?}", c.actions());
        assert_eq!(c.snapshot(), before, "{playbook} changed the state");
        let changes: Vec<_> = r
            .steps
            .iter()
            .filter(|s| !matches!(s.action.as_str(), "outcome" | "wait_rollout" | "log"))
            .collect();
        assert!(!changes.is_empty(), "{playbook}: {r:#?}");
        for s in &changes {
            assert!(s.detail.starts_with("dry run: would "), "{playbook}: {s:?}");
        }
        assert!(
            changes
                .iter()
                .any(|s| s.detail == format!("dry run: {would}")),
            "{playbook}: {changes:#?}"
        );
    }
}

// ------------------------------------------------------------------------- aiops test-playbook

fn fixture(name: &str) -> PathBuf {
    repo().join("tests/fixtures/playbooks").join(name)
}

fn test_playbook(args: &[&str]) -> (Option<i32>, String, String) {
    let args: Vec<&str> = std::iter::once("test-playbook")
        .chain(args.iter().copied())
        .collect();
    let (status, out, err) = run_cli(&repo(), &args, &HashMap::new());
    (status.code(), out, err)
}

fn arg(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn test_playbook_runs_a_shipped_playbook_against_a_state_file() {
    let alert = fixture("alert-restart-web.json");
    let (code, out, err) = test_playbook(&[
        "restart",
        "--alert",
        arg(&alert),
        "--state",
        "tests/fixtures/cluster-state.yaml",
    ]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("playbook restart on prod/Deployment/web (from rule restart)"),
        "{out}"
    );
    assert!(
        out.contains("outcome: success: restarted Deployment web; rollout complete"),
        "{out}"
    );
    assert!(out.contains("  - restart prod/Deployment/web"), "{out}");
}

#[test]
fn test_playbook_exits_1_when_the_playbook_fails() {
    let alert = fixture("alert-restart-web.json");
    let state = fixture("failing-rollout.yaml");
    let (code, out, err) =
        test_playbook(&["restart", "--alert", arg(&alert), "--state", arg(&state)]);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(
        out.contains("outcome: failure: restart of web did not roll out"),
        "{out}"
    );
}

#[test]
fn test_playbook_dry_run_prints_no_cluster_changes() {
    let alert = fixture("alert-restart-web.json");
    let (code, out, err) = test_playbook(&[
        "restart",
        "--alert",
        arg(&alert),
        "--state",
        "tests/fixtures/cluster-state.yaml",
        "--dry-run",
    ]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("dry run: would restart prod/Deployment/web"),
        "{out}"
    );
    assert!(!out.contains("cluster changes:"), "{out}");
}

#[test]
fn test_playbook_param_overrides_reach_the_playbook() {
    let alert = fixture("alert-restart-web.json");
    let (code, out, err) = test_playbook(&[
        "scale_memory",
        "--alert",
        arg(&alert),
        "--state",
        "tests/fixtures/cluster-state.yaml",
        "--param",
        "max_limit=512Mi",
    ]);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(
        out.contains("outcome: failure: memory limit 512Mi is already at the cap 512Mi"),
        "{out}"
    );
}

#[test]
fn the_readme_test_playbook_example_succeeds_because_the_state_shows_an_oom_kill() {
    // Exactly the README's command line. oom_handler first checks that the target's pods were
    // OOMKilled (else it is inconclusive: nothing says more memory helps); the state file gives
    // prod/demo's pod that termination, so the limit is raised and the rollout completes.
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    for part in [
        "cargo run -- test-playbook oom_handler --alert tests/fixtures/am-0.25-firing-grouped-3.json",
        "--state tests/fixtures/cluster-state.yaml --param max_limit=2Gi",
    ] {
        assert!(readme.contains(part), "the README no longer shows {part:?}");
    }
    let (code, out, err) = test_playbook(&[
        "oom_handler",
        "--alert",
        "tests/fixtures/am-0.25-firing-grouped-3.json",
        "--state",
        "tests/fixtures/cluster-state.yaml",
        "--param",
        "max_limit=2Gi",
    ]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert_eq!(
        out,
        "playbook oom_handler on prod/Deployment/demo, params {\"max_limit\":\"2Gi\"}\n\
         steps:\n\
         \x20 1. set_memory: set memory of prod/Deployment/demo container app: request unchanged, limit 615Mi\n\
         \x20 2. wait_rollout: rollout of prod/Deployment/demo: complete (deployment \"demo\" successfully rolled out)\n\
         \x20 3. outcome: success: OOMKilled: memory limit of app 512Mi -> 615Mi\n\
         outcome: success: OOMKilled: memory limit of app 512Mi -> 615Mi\n\
         cluster changes:\n\
         \x20 - set memory prod/Deployment/demo container app: request 256Mi, limit 615Mi\n"
    );
}

// ------------------------------------------------------------------------------------- scale()

/// Runs `script` as the playbook `p` (no rule matches, so the target comes from the alert's
/// labels: prod/Deployment/web) with `params`, under `host`.
async fn run_script(
    script: &str,
    params: &[Param<'_>],
    cluster: Arc<MemoryCluster>,
    host: HostSettings,
    dry_run: bool,
) -> RunResult {
    let dir = tempfile::tempdir().unwrap();
    common::files::write_definitions(dir.path(), &[], &[("p.rhai", script)]);
    let defs = Definitions::load(
        &aiops::embedded::Source::Dir(dir.path().join("rules")),
        &aiops::embedded::Source::Dir(dir.path().join("playbooks")),
    )
    .unwrap();
    let alert = alert(&[
        ("alertname", "Busy"),
        ("namespace", "prod"),
        ("deployment", "web"),
    ]);
    let overrides: Vec<(String, serde_json::Value)> = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    let plan = offline::plan(&defs, "p", &alert, &overrides).unwrap();
    let sandbox = Sandbox::with_host(cluster, host, Duration::from_secs(30));
    offline::run(&sandbox, &defs, "p", &alert, &plan, dry_run)
        .await
        .unwrap()
}

/// A param of [`run_script`]'s run: (name, value).
type Param<'a> = (&'a str, serde_json::Value);

const SCALE_UP: &str = r#"
let r = scale(target, params.replicas);
let rollout = wait_rollout(target, "10s");
if rollout.complete { success(`scaled ${target.name} from ${r.from} to ${r.to}`); }
fail(rollout.message);
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_sets_the_replicas_of_a_deployment_and_records_the_step() {
    let c = cluster(&web_state("", "256Mi", "512Mi"));
    let r = run_script(
        SCALE_UP,
        &[("replicas", 3.into()), ("max_replicas", 4.into())],
        c.clone(),
        host_settings(),
        false,
    )
    .await;
    assert_success(&r, "scaled web from 2 to 3");
    assert_eq!(c.replicas(&web()).await.unwrap().desired, 3);
    assert_eq!(
        c.actions(),
        ["scale prod/Deployment/web from 2 to 3 replicas"]
    );
    let step = r.steps.iter().find(|s| s.action == "scale").unwrap();
    assert_eq!(
        step.detail,
        "scale prod/Deployment/web from 2 to 3 replicas"
    );
    assert_eq!(
        r.touched,
        [web()],
        "verification waits for the new replicas"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_scale_says_what_it_would_do_and_changes_nothing() {
    let c = cluster(&web_state("", "256Mi", "512Mi"));
    let r = run_script(
        SCALE_UP,
        &[("replicas", 3.into())],
        c.clone(),
        host_settings(),
        true,
    )
    .await;
    assert_success(&r, "scaled web from 2 to 3");
    let step = r.steps.iter().find(|s| s.action == "scale").unwrap();
    assert_eq!(
        step.detail,
        "dry run: would scale prod/Deployment/web from 2 to 3 replicas"
    );
    assert_eq!(c.replicas(&web()).await.unwrap().desired, 2);
    assert!(c.actions().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_outside_its_bounds_is_refused_before_the_cluster_is_touched() {
    // (params, playbook.max_replicas, the refusal)
    let cases: [(&[Param], u32, &str); 4] = [
        (
            &[("replicas", 5.into()), ("max_replicas", 4.into())],
            10,
            "scale: refused: 5 replicas is above the cap of 4 (the rule's max_replicas)",
        ),
        // A rule cannot raise the settings' cap.
        (
            &[("replicas", 8.into()), ("max_replicas", 20.into())],
            6,
            "scale: refused: 8 replicas is above the cap of 6 (playbook.max_replicas)",
        ),
        (
            &[("replicas", 0.into())],
            10,
            "scale: refused: 0 replicas is below the floor of 1 (min_replicas); scaling to zero needs min_replicas: 0 in the rule's params",
        ),
        (
            &[("replicas", 1.into()), ("min_replicas", 2.into())],
            10,
            "scale: refused: 1 replicas is below the floor of 2 (min_replicas)",
        ),
    ];
    for (params, cap, message) in cases {
        let c = cluster(&web_state("", "256Mi", "512Mi"));
        let host = HostSettings {
            max_replicas: cap.into(),
            ..host_settings()
        };
        let r = run_script(SCALE_UP, params, c.clone(), host, false).await;
        assert_inconclusive(&r, message);
        assert!(c.actions().is_empty(), "{message}: {:?}", c.actions());
        assert_eq!(c.replicas(&web()).await.unwrap().desired, 2);
    }
    // Zero is allowed when the rule says so.
    let c = cluster(&web_state("", "256Mi", "512Mi"));
    let r = run_script(
        SCALE_UP,
        &[("replicas", 0.into()), ("min_replicas", 0.into())],
        c.clone(),
        host_settings(),
        false,
    )
    .await;
    assert_success(&r, "from 2 to 0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quantity_helper_named_scale_still_multiplies_bytes() {
    let c = cluster(&web_state("", "256Mi", "512Mi"));
    let r = run_script(
        "success(format_memory(scale(quantity(\"512Mi\"), 1.2)));",
        &[],
        c,
        host_settings(),
        false,
    )
    .await;
    assert_success(&r, "615Mi");
}

// ------------------------------------------------------------------------------ aiops check

#[test]
fn check_reports_calls_to_functions_that_do_not_exist_with_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    common::files::write_definitions(
        dir.path(),
        &[],
        &[
            (
                "grow.rhai",
                "// grow: more replicas\nlet n = 3;\nif n > 2 {\n    set_replicas(target, n);\n}\nrestart(target, \"now\");\nsuccess(\"ok\");\n",
            ),
            (
                "fine.rhai",
                "fn helper(t) { replicas(t) }\nlet r = helper(target);\nscale(target, r.desired + 1);\nsuccess(\"ok\");\n",
            ),
        ],
    );
    let env =
        common::files::definitions_env(&dir.path().join("rules"), &dir.path().join("playbooks"));
    let (status, out, err) = run_cli(dir.path(), &["check"], &env);
    assert_eq!(status.code(), Some(1), "{out}{err}");
    let grow = dir.path().join("playbooks/grow.rhai").display().to_string();
    let problems: Vec<&str> = err.lines().filter(|l| l.contains(".rhai")).collect();
    assert_eq!(
        problems,
        [
            format!("{grow}:4:5: unknown function set_replicas (did you mean scale?)"),
            format!("{grow}:6:1: unknown function restart with 2 arguments (restart takes 1)"),
        ]
    );
    assert!(err.contains("check failed: 2 problem(s)"), "{err}");
    assert!(!out.contains("playbooks:"), "not reported as OK: {out}");

    // The shipped playbooks pass.
    let env = common::files::definitions_env(&repo().join("rules"), &repo().join("playbooks"));
    let (status, out, err) = run_cli(dir.path(), &["check"], &env);
    assert_eq!(status.code(), Some(0), "{out}{err}");
    assert!(out.contains("(5 playbooks)"), "{out}");
}

// -------------------------------------------------------------------------------------- gitops

/// prod/web owned by the Flux Kustomization flux-system/apps: container `web` at image web:v2
/// (web:v1 in the history revisions), memory 256Mi/512Mi.
fn flux_web_state() -> String {
    "workloads:\n  - namespace: prod\n    name: web\n    replicas: 2\n    revision: 3\n    history: [1, 2]\n    labels:\n      kustomize.toolkit.fluxcd.io/name: apps\n      kustomize.toolkit.fluxcd.io/namespace: flux-system\n    managers:\n      - {name: kustomize-controller, operation: Apply}\n    containers:\n      - name: web\n        image: web:v2\n        previous_image: web:v1\n        memory: {request: 256Mi, limit: 512Mi}\n".to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_memory_on_a_flux_owned_deployment_changes_nothing_and_names_the_git_change() {
    let c = cluster(&flux_web_state());
    let r = run("scale_memory", "web", &[], c.clone()).await;
    assert_inconclusive(
        &r,
        "Flux Kustomization flux-system/apps owns prod/Deployment/web: make this change in Git: set resources.limits.memory of container web to 615Mi",
    );
    assert!(c.actions().is_empty(), "{:?}", c.actions());
    assert_eq!(web_memory(&c), (Some(256 * MI), Some(512 * MI)));
    let skipped = r.gitops.skipped.as_ref().expect("the skipped change");
    assert!(skipped.reason.contains("skip"), "{}", skipped.reason);
    assert!(actions_of(&r).contains(&"gitops_skip"), "{r:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_on_a_flux_owned_deployment_says_which_image_git_must_revert_to() {
    let c = cluster(&flux_web_state());
    let r = run("rollback", "web", &[], c.clone()).await;
    assert_inconclusive(
        &r,
        "make this change in Git: revert image of container web to web:v1",
    );
    assert!(c.actions().is_empty(), "{:?}", c.actions());
    assert_eq!(workload(&c.snapshot(), "web").revision, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_on_a_flux_owned_deployment_acts_and_records_the_annotation_it_set() {
    let c = cluster(&flux_web_state());
    let r = run("restart", "web", &[], c.clone()).await;
    assert_success(&r, "restarted");
    assert_eq!(c.actions(), ["restart prod/Deployment/web"]);
    let applied = &r.gitops.applied;
    assert_eq!(applied.len(), 1, "{r:#?}");
    assert_eq!(
        applied[0].changes[0].field,
        aiops::gitops::Field::RestartedAt
    );
    assert!(applied[0].owner.is_some() && applied[0].hold_id.is_none());
    assert!(c.snapshot().holds.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shipped_playbooks_on_an_unowned_deployment_take_no_gitops_step_and_record_the_change() {
    let c = cluster(&web_state("", "256Mi", "512Mi"));
    let r = run("scale_memory", "web", &[], c.clone()).await;
    assert_success(&r, "512Mi -> 615Mi");
    assert!(
        !actions_of(&r).iter().any(|a| a.starts_with("gitops")),
        "{r:#?}"
    );
    assert_eq!(r.gitops.applied.len(), 1);
    assert_eq!(r.gitops.applied[0].changes[0].value, "615Mi");
    assert_eq!(r.gitops.owners[0].1.controller, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_on_a_flux_owned_deployment_says_it_would_stop_and_holds_nothing() {
    let c = cluster(&flux_web_state());
    let r = run_offline(
        "scale_memory",
        &alert_for("scale_memory", "web"),
        &[],
        c.clone(),
        true,
    )
    .await;
    assert_inconclusive(
        &r,
        "dry run: would stop here: Flux Kustomization flux-system/apps owns",
    );
    assert!(c.actions().is_empty());
    assert!(c.snapshot().holds.is_empty());
    assert!(r.gitops.applied.is_empty());
}
