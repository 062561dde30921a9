//! The worker loop: claim the next due job, keep its lease alive while it runs, and the reaper
//! that interrupts jobs whose lease expired (another replica died, or this one lost the store)
//! and, on the same tick, escalates approvals that expired (approve mode).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::watch;
use tokio::task::JoinSet;

use super::escalate;
use super::{Executor, Result};
use crate::notify::EventKind;
use crate::store::{self, Job};

impl Executor {
    /// Start-up recovery: jobs left running by a dead process become `interrupted` and are
    /// escalated to humans. They are never re-run: the cluster may be half-changed, and a
    /// person must look. On SQLite every running job is orphaned (one process owns the file);
    /// on PostgreSQL only those whose lease expired.
    pub async fn recover(&self) -> Result<usize> {
        let all = self.store.backend() == store::Backend::Sqlite;
        self.reap(all).await
    }

    async fn reap(&self, all: bool) -> Result<usize> {
        let jobs = self
            .store
            .interrupt_orphans(store::now_ms(), store::ms(self.cfg.lease.0), all)
            .await?;
        for job in &jobs {
            tracing::warn!(job = job.id, rule = %job.rule, repair_target = %job.target_key, "job interrupted (its process stopped or lost its lease); escalated to humans");
            self.metrics.jobs.entered("interrupted", job.spec.mode);
            self.metrics.jobs.entered("escalated", job.spec.mode);
            if job.spec.mode != crate::rules::Mode::Shadow {
                self.metrics.escalations.with_label_values(&["human"]).inc();
            }
            let handoff = escalate::interrupted(&job.spec);
            self.notify_now(job, EventKind::Escalation, Some(&handoff))
                .await;
        }
        Ok(jobs.len())
    }

    /// Approve mode's expiry: awaiting jobs past their expiry go to humans (escalated, with
    /// the escalation message). Runs with the reaper on every replica; the store's conditional
    /// UPDATE makes each expiry happen once.
    async fn expire_approvals(&self) {
        let outbox = self.pipeline.outbox().map(|o| o.as_ref());
        match crate::approval::expire_due(&self.store, outbox, store::now_ms()).await {
            Ok(jobs) => {
                for _ in &jobs {
                    self.metrics
                        .jobs
                        .entered("escalated", crate::rules::Mode::Approve);
                    self.metrics.escalations.with_label_values(&["human"]).inc();
                }
            }
            Err(e) => tracing::error!(error = %e, "approval expiry sweep failed"),
        }
    }

    /// Starts the workers; they stop claiming when `shutdown` becomes true and return after
    /// finishing the job in hand.
    pub fn spawn(self: &Arc<Self>, shutdown: watch::Receiver<bool>) -> JoinSet<()> {
        let mut set = JoinSet::new();
        for i in 0..self.cfg.workers {
            let me = self.clone();
            let rx = shutdown.clone();
            set.spawn(async move { me.worker(i, rx).await });
        }
        {
            // A replica may die mid-repair at any time, and a worker whose store writes failed
            // leaves its job behind: expired leases are interrupted and escalated, on both backends.
            let me = self.clone();
            let mut rx = shutdown;
            set.spawn(async move {
                let mut tick = tokio::time::interval(me.cfg.lease.0 / 2);
                loop {
                    tokio::select! {
                        _ = tick.tick() => {
                            if let Err(e) = me.reap(false).await {
                                tracing::error!(error = %e, "lease reaper failed");
                            }
                            me.expire_approvals().await;
                        }
                        _ = rx.changed() => if *rx.borrow() { return },
                    }
                }
            });
        }
        set
    }

    async fn worker(&self, index: usize, mut shutdown: watch::Receiver<bool>) {
        loop {
            if *shutdown.borrow() {
                return;
            }
            // Register interest before looking, so a wake between the look and the wait is kept.
            let notified = self.wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match self.store.claim_next(&self.owner, store::now_ms()).await {
                Ok(Some(job)) => {
                    if self.defer_if_held(&job).await {
                        continue;
                    }
                    self.metrics.jobs.entered("running", job.spec.mode);
                    self.refresh_depth().await;
                    tracing::info!(worker = index, job = job.id, rule = %job.rule, playbook = %job.playbook, repair_target = %job.target_key, "job started");
                    self.notify_now(&job, EventKind::RepairStarted, None).await;
                    if let Err(e) = self.run(job).await {
                        tracing::error!(error = %e, "recording a job's progress failed; it will be reaped as interrupted");
                    }
                    continue;
                }
                Ok(None) => {}
                Err(e) => tracing::error!(worker = index, error = %e, "claiming a job failed"),
            }
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep(self.cfg.poll_interval.0) => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    /// The guard holds alerts that arrive during a maintenance window, but a job created
    /// before the window (approved during it, its rule's `wait` ending inside it, a chain's
    /// next step) becomes due while it is open; every run passes here, so this is where "no
    /// action during a window" holds for all of them. A claimed job whose target a window
    /// holds (the guard's test: namespace, the alert's `app` label else the target's name,
    /// rule) goes back to `waiting` until the occurrence ends, before any playbook step; after
    /// it, it runs if the alert still fires (a resolve cancels waiting jobs). Returns whether
    /// the job was deferred (or is no longer ours), so the worker must not run it.
    async fn defer_if_held(&self, job: &Job) -> bool {
        let labels = match self.store.alert_event(job.alert_event_id).await {
            Ok(alert) => alert.map(|a| a.labels).unwrap_or_default(),
            Err(e) => {
                // Without the labels the app falls back to the target's name, as in the guard.
                tracing::warn!(job = job.id, error = %e, "reading the job's alert for the maintenance check failed");
                Default::default()
            }
        };
        let app = labels.get("app").unwrap_or(&job.target_name);
        let snapshot = self.pipeline.maintenance().snapshot();
        let Some(hold) = snapshot.holding(&job.target_namespace, app, &job.rule, store::now_ms())
        else {
            return false;
        };
        let note = format!(
            "not run: {}; deferred to the window's end, it runs then if the alert still fires",
            hold.detail
        );
        match self
            .store
            .defer_claimed(job.id, &self.owner, hold.until, &note)
            .await
        {
            Ok(true) => {
                self.metrics.jobs.entered("waiting", job.spec.mode);
                tracing::info!(job = job.id, rule = %job.rule, repair_target = %job.target_key, window = %hold.label, "job deferred: a maintenance window holds its target");
                true
            }
            Ok(false) => true,
            Err(e) => {
                // The job stays claimed and unrun: the reaper interrupts it and hands it to
                // humans, which is no action on the cluster either.
                tracing::error!(job = job.id, error = %e, "deferring a job held by a maintenance window failed");
                true
            }
        }
    }

    async fn refresh_depth(&self) {
        if let Ok(n) = self.store.pending_count().await {
            self.metrics.queue_depth.set(n);
        }
    }

    /// Runs one claimed job to a terminal state, keeping its lease alive meanwhile.
    async fn run(&self, job: Job) -> Result<()> {
        let store = self.store.clone();
        let owner = self.owner.clone();
        let id = job.id;
        let lease = self.cfg.lease.0;
        let lost = Arc::new(AtomicBool::new(false));
        let heartbeat = {
            let lost = lost.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(lease / 3);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    match store.heartbeat(id, &owner).await {
                        Ok(true) => {}
                        Ok(false) => {
                            tracing::error!(
                                job = id,
                                "lost the job's lease (it was interrupted elsewhere); stopping its playbook"
                            );
                            lost.store(true, Ordering::SeqCst);
                            return;
                        }
                        Err(e) => tracing::warn!(job = id, error = %e, "heartbeat failed"),
                    }
                }
            })
        };
        let result = self.run_and_verify(&job, &lost).await;
        heartbeat.abort();
        match result? {
            Some((state, end)) if !lost.load(Ordering::SeqCst) => {
                self.finish(&job, state, end).await
            }
            _ => {
                tracing::warn!(
                    job = id,
                    "the job is no longer ours; leaving it as the reaper recorded it"
                );
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests;
