//! Unit tests of the worker loop and the reaper, on an in-memory SQLite store and the in-memory
//! cluster: claiming, running to an end, and interrupting what a dead or stalled owner left.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::super::{Executor, Runtime};
use crate::alert::Payload;
use crate::cluster::memory::{MemoryCluster, State};
use crate::config::{Jobs, PlaybookSettings};
use crate::store::{self, JobState};

const RESTART: &str =
    "rules:\n  - name: restart\n    matchers: ['auto_repair=\"restart\"']\n    playbook: restart\n";

/// An executor over a fresh store with the shipped playbooks and one rule, and no workloads in
/// its cluster (a restart then ends in a refusal, which is enough to see a job end).
async fn executor(jobs: Jobs) -> Arc<Executor> {
    let pipeline = super::super::gitops_tests::pipeline(RESTART).await;
    let cluster = Arc::new(MemoryCluster::from_state(State::default()).unwrap());
    Arc::new(Executor::new(
        pipeline,
        jobs,
        Runtime::new(cluster, PlaybookSettings::default()),
    ))
}

/// Queues one restart job per app through the pipeline, as a webhook would.
async fn queue(executor: &Executor, apps: &[&str]) {
    let alerts: Vec<String> = apps
        .iter()
        .map(|app| {
            format!(
                r#"{{"status":"firing","labels":{{"alertname":"Down","auto_repair":"restart","namespace":"prod","app":"{app}"}},"startsAt":"2026-01-01T00:00:00Z"}}"#
            )
        })
        .collect();
    let body = format!(
        r#"{{"version":"4","status":"firing","alerts":[{}]}}"#,
        alerts.join(",")
    );
    let report = executor
        .pipeline
        .ingest(&Payload::from_slice(body.as_bytes()).unwrap())
        .await
        .unwrap();
    assert_eq!(report.jobs.len(), apps.len(), "{report:?}");
}

fn interrupted(executor: &Executor) -> u64 {
    executor
        .metrics
        .jobs
        .get("interrupted", crate::rules::Mode::Auto)
}

#[tokio::test]
async fn a_job_left_running_by_a_dead_process_is_interrupted_at_start_up_and_escalated() {
    let executor = executor(Jobs::default()).await;
    queue(&executor, &["web"]).await;
    let claimed = executor
        .store
        .claim_next("a-process-that-died", store::now_ms())
        .await
        .unwrap()
        .expect("the queued job");
    assert_eq!(claimed.state, JobState::Running);

    // SQLite has one owner process: at start-up every running job is an orphan.
    assert_eq!(executor.recover().await.unwrap(), 1);
    let job = &executor.store.jobs().await.unwrap()[0];
    assert_eq!(job.state, JobState::Escalated, "{job:?}");
    assert_eq!(interrupted(&executor), 1);
    // Never re-run: nothing is left for a worker to claim.
    assert!(
        executor
            .store
            .claim_next(executor.owner(), store::now_ms())
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn the_reaper_interrupts_only_jobs_whose_lease_expired() {
    let lease = Duration::from_millis(100);
    let executor = executor(Jobs {
        lease: crate::duration::HumanDuration(lease),
        ..Jobs::default()
    })
    .await;
    queue(&executor, &["stalled", "alive"]).await;
    let stalled = executor
        .store
        .claim_next("stalled-owner", store::now_ms())
        .await
        .unwrap()
        .unwrap();
    // The lease running out is what is under test: its owner stopped renewing it.
    tokio::time::sleep(lease * 3).await;
    let alive = executor
        .store
        .claim_next("live-owner", store::now_ms())
        .await
        .unwrap()
        .unwrap();

    assert_eq!(executor.reap(false).await.unwrap(), 1);
    let jobs = executor.store.jobs().await.unwrap();
    let state = |id| jobs.iter().find(|j| j.id == id).unwrap().state;
    assert_eq!(state(stalled.id), JobState::Escalated);
    assert_eq!(state(alive.id), JobState::Running);
    assert_eq!(interrupted(&executor), 1);
}

#[tokio::test]
async fn a_worker_claims_a_queued_job_runs_it_to_an_end_and_stops_on_shutdown() {
    let executor = executor(Jobs {
        workers: 1,
        poll_interval: crate::duration::HumanDuration(Duration::from_millis(20)),
        ..Jobs::default()
    })
    .await;
    queue(&executor, &["web"]).await;
    let (stop, stopped) = watch::channel(false);
    let mut workers = executor.spawn(stopped);
    executor.wake();

    let deadline = Instant::now() + Duration::from_secs(20);
    let job = loop {
        let job = executor.store.jobs().await.unwrap().remove(0);
        if !matches!(
            job.state,
            JobState::Queued | JobState::Waiting | JobState::Running | JobState::Verifying
        ) {
            break job;
        }
        assert!(Instant::now() < deadline, "the job never ended: {job:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(job.owner.as_deref(), Some(executor.owner()), "{job:?}");
    assert!(job.finished_at.is_some(), "{job:?}");

    stop.send(true).unwrap();
    let joined = tokio::time::timeout(Duration::from_secs(5), async {
        while workers.join_next().await.is_some() {}
    })
    .await;
    assert!(
        joined.is_ok(),
        "the workers and the reaper stop on shutdown"
    );
}
