//! Group commit: the webhooks with new alerts are written by one writer task, many per
//! transaction.
//!
//! Why: every new alert must be durable before its webhook is answered (2xx ⇒ stored), and a
//! durable commit costs an fsync. One transaction per webhook made intake a queue of fsyncs and
//! of round trips to the database, each holding the writer lock. Here a handler hands its
//! webhook to the [`Queue`] and waits; the writer takes every webhook waiting (up to
//! `intake.batch_max_alerts` alerts), decides them in order in one transaction, commits once, and
//! answers each. No artificial wait: while one batch commits, the next gathers, so a lone
//! webhook is written at once and a storm fills batches by itself.
//!
//! Inside a batch, the guards decide exactly as they did per webhook, in arrival order, each
//! webhook seeing the ones before it: the storm tally and the queue counts are carried from one
//! webhook to the next, the guards' reads are remembered and written through
//! (`store::memo`), and decisions are written together at the end.
//!
//! Failure stays per webhook where it can: a webhook refused for a full job queue is rolled
//! back alone (the batch is decided again with a savepoint around each webhook, which only
//! happens when the queue is full), and the others are committed. A batch the store cannot
//! commit fails all of its webhooks with a 503, and nothing of them is recorded.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use super::guard;
use super::{Core, Error, HELD_AGAIN, Report, Result, Simulation, verdict_for};
use crate::alert::{Alert, DedupKey, Status};
use crate::store::{self, NewAlertEvent};

/// Webhooks waiting for the writer at most: beyond it a webhook is answered 503 at once (the
/// store is not keeping up; Alertmanager retries), so memory stays bounded in a storm.
const MAX_WAITING: usize = 4096;

/// One webhook's new alerts, ready for the writer.
pub(super) struct Webhook {
    pub receiver: String,
    pub group_key: String,
    /// The alerts the dedup cache does not know, sorted by their dedup key.
    pub fresh: Vec<(Alert, DedupKey)>,
    /// The report so far: rejections and cached duplicates.
    pub base: Report,
}

impl Webhook {
    /// Its alerts as rows to record, received at `now`: the batch's time, at which they are
    /// also decided. The recorded history pairs an alert with its first decisions by that
    /// equality (`decisions.created_at = alert_events.received_at`), so the two must not differ.
    fn events(&self, now: i64) -> Vec<NewAlertEvent<'_>> {
        self.fresh
            .iter()
            .map(|(alert, _)| NewAlertEvent {
                alert,
                receiver: &self.receiver,
                group_key: &self.group_key,
                received_at: now,
            })
            .collect()
    }
}

/// A webhook and where to send its outcome.
struct Waiting {
    webhook: Webhook,
    /// The outcome goes back with the webhook itself, so that its handler, not the writer,
    /// frees its alerts: the writer is the one serial path of a storm, and freeing a batch's
    /// labels and annotations was a tenth of its time.
    reply: oneshot::Sender<(Result<Report>, Webhook)>,
}

/// The webhooks waiting for the writer, and whether a writer runs.
pub(super) struct Queue {
    state: Mutex<State>,
    max_alerts: usize,
}

#[derive(Default)]
struct State {
    waiting: VecDeque<Waiting>,
    writing: bool,
}

impl Queue {
    /// A queue whose batches hold up to `max_alerts` alerts (at least one webhook).
    pub fn new(max_alerts: usize) -> Queue {
        Queue {
            state: Mutex::new(State::default()),
            max_alerts: max_alerts.max(1),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The next batch, or `None` (and the writer stops) when nothing waits.
    fn next_batch(&self) -> Option<Vec<Waiting>> {
        let mut state = self.state();
        if state.waiting.is_empty() {
            state.writing = false;
            return None;
        }
        let mut batch = Vec::new();
        let mut alerts = 0;
        while let Some(w) = state.waiting.front() {
            let n = w.webhook.fresh.len();
            if !batch.is_empty() && alerts + n > self.max_alerts {
                break;
            }
            alerts += n;
            batch.extend(state.waiting.pop_front());
        }
        Some(batch)
    }
}

/// Stops the writer's claim on the queue however the writer ends: if it panicked, the webhooks
/// still waiting are answered (their senders dropped: 503) rather than left hanging.
struct WriterGuard(Arc<Queue>);

impl Drop for WriterGuard {
    fn drop(&mut self) {
        // Only a panic: a writer that ran out of work already gave up the queue in
        // `next_batch`, and a new writer may own it by now.
        if !std::thread::panicking() {
            return;
        }
        let mut state = self.0.state();
        state.writing = false;
        state.waiting.clear();
    }
}

/// Hands `webhook` to the writer (starting one if none runs) and waits for its batch.
pub(super) async fn submit(
    core: &Arc<Core>,
    queue: &Arc<Queue>,
    webhook: Webhook,
) -> Result<Report> {
    let (reply, answer) = oneshot::channel();
    let start = {
        let mut state = queue.state();
        if state.waiting.len() >= MAX_WAITING {
            drop(state);
            tracing::warn!(
                waiting = MAX_WAITING,
                "intake writer is behind; answering 503 so Alertmanager retries"
            );
            return Err(Error::Unavailable("intake_backlog"));
        }
        state.waiting.push_back(Waiting { webhook, reply });
        !std::mem::replace(&mut state.writing, true)
    };
    if start {
        start_writer(core.clone(), queue.clone());
    }
    match answer.await {
        Ok((outcome, _webhook)) => outcome,
        Err(_) => Err(Error::Unavailable("intake_writer_lost")),
    }
}

/// Starts the writer, apart from the handlers: a handler dropped mid-batch (a client gone) must
/// not abort the transaction the other webhooks of its batch wait for.
///
/// On a multi-threaded runtime it runs on a thread of its own (`Handle::block_on`, so it still
/// uses the runtime's timers and sockets). A task would share the workers' queues with every
/// request: each of its statements wakes it from the database's thread, and such a wake-up
/// waits behind the requests already queued, which made every batch wait tens of milliseconds
/// under load. On a current-thread runtime (tests, benchmarks, one-shot commands) only the
/// runtime's own thread can drive its drivers, so it stays a task there.
fn start_writer(core: Arc<Core>, queue: Arc<Queue>) {
    let handle = tokio::runtime::Handle::current();
    if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread {
        tokio::spawn(write(core, queue));
        return;
    }
    let (core2, queue2) = (core.clone(), queue.clone());
    let spawned = std::thread::Builder::new()
        .name("aiops-intake".into())
        .spawn(move || handle.block_on(write(core2, queue2)));
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "no thread for the intake writer; running it as a task");
        tokio::spawn(write(core, queue));
    }
}

/// The writer: batches until nothing waits.
async fn write(core: Arc<Core>, queue: Arc<Queue>) {
    let _guard = WriterGuard(queue.clone());
    while let Some(batch) = queue.next_batch() {
        let (webhooks, replies): (Vec<Webhook>, Vec<_>) =
            batch.into_iter().map(|w| (w.webhook, w.reply)).unzip();
        let outcomes = core.write_batch(&webhooks, store::now_ms()).await;
        for ((reply, outcome), webhook) in replies.into_iter().zip(outcomes).zip(webhooks) {
            // A handler that stopped waiting lost nothing: its alerts are stored.
            let _ = reply.send((outcome, webhook));
        }
    }
}

/// What a batch carries from one webhook to the next (see [`guard::Pending`] and
/// [`guard::StormTally`]): valid for one transaction at one `now`.
#[derive(Clone, Default)]
struct Carried {
    pending: guard::Pending,
    storm: guard::StormTally,
}

/// Why a batch stopped before its commit.
enum Stop {
    /// A webhook found the job queue full while the batch ran without savepoints: decide it
    /// again with them.
    Isolate,
    /// The store failed: every webhook of the batch fails.
    Store(store::Error),
}

impl From<store::Error> for Stop {
    fn from(e: store::Error) -> Self {
        Stop::Store(e)
    }
}

impl Core {
    /// Writes a batch and returns each webhook's outcome, in order.
    async fn write_batch(&self, webhooks: &[Webhook], now: i64) -> Vec<Result<Report>> {
        let started = std::time::Instant::now();
        let sim = Simulation::default();
        let decided = match self.decide_batch(webhooks, now, sim, false, true).await {
            Err(Stop::Isolate) => self.decide_batch(webhooks, now, sim, true, true).await,
            other => other,
        };
        let (tx, outcomes, carried, woke) = match decided {
            Ok(done) => done,
            Err(e) => return self.failed_batch(webhooks.len(), e),
        };
        let decided_in = started.elapsed();
        if let Err(e) = tx.commit().await {
            return self.failed_batch(webhooks.len(), Stop::Store(e));
        }
        tracing::debug!(
            webhooks = webhooks.len(),
            decided_us = decided_in.as_micros() as u64,
            committed_us = (started.elapsed() - decided_in).as_micros() as u64,
            "intake batch committed"
        );
        self.metrics.intake_batch.observe(webhooks.len() as f64);
        if woke && let Some(outbox) = &self.outbox {
            outbox.wake();
        }
        if let Some(depth) = carried.pending.real() {
            self.metrics.queue_depth.set(depth);
        }
        let mut out = Vec::with_capacity(webhooks.len());
        for (w, outcome) in webhooks.iter().zip(outcomes) {
            out.push(outcome.map(|(mut report, escalations)| {
                // Only now is it true that these occurrences are stored. A held one stays out
                // of the cache: its re-send must reach the store to be decided again.
                for ((_, key), verdict) in w.fresh.iter().zip(&report.alerts) {
                    if !verdict.held() {
                        self.dedup.insert(key);
                    }
                }
                self.account(&mut report, escalations);
                report
            }));
        }
        out
    }

    /// Every webhook of a batch fails: logged once, answered 503 each.
    fn failed_batch(&self, n: usize, stop: Stop) -> Vec<Result<Report>> {
        let label = match &stop {
            Stop::Store(e) => {
                tracing::error!(error = %e, kind = e.metric_label(), webhooks = n, "intake batch not recorded; answering 503");
                e.metric_label()
            }
            Stop::Isolate => "isolate",
        };
        (0..n).map(|_| Err(Error::Unavailable(label))).collect()
    }

    /// Decides `webhook` as `aiops simulate` asks, then rolls back.
    pub(super) async fn simulate(
        &self,
        webhook: Webhook,
        now: i64,
        sim: Simulation,
    ) -> Result<Report> {
        let webhooks = [webhook];
        let decided = self.decide_batch(&webhooks, now, sim, true, false).await;
        let (tx, mut outcomes, _, _) = match decided {
            Ok(done) => done,
            Err(Stop::Store(e)) => return Err(e.into()),
            Err(Stop::Isolate) => unreachable!("isolated batches never ask to isolate"),
        };
        tx.rollback().await?;
        outcomes.remove(0).map(|(report, _)| report)
    }

    /// Decides every webhook of the batch in one transaction, in order. With `isolate`, each
    /// webhook runs inside a savepoint and a full queue rolls back that webhook alone; without,
    /// a full queue stops the batch ([`Stop::Isolate`]). `commit` is false for a simulation
    /// (which counts nothing in the metrics).
    #[allow(clippy::type_complexity)]
    async fn decide_batch(
        &self,
        webhooks: &[Webhook],
        now: i64,
        sim: Simulation,
        isolate: bool,
        commit: bool,
    ) -> std::result::Result<(store::WriteTx, Vec<Result<(Report, u64)>>, Carried, bool), Stop>
    {
        let mut tx = self.store.begin_write().await?;
        tx.memoize();
        tx.lock_intake().await?;
        if let Some(outbox) = &self.outbox
            && outbox.groups_no_action()
        {
            tx.lock_no_action_groups().await?;
        }
        // Without savepoints, every webhook's alerts go in together: a few statements for the
        // whole batch. With them, each webhook inserts its own inside its savepoint.
        let mut ids = if isolate {
            Vec::new()
        } else {
            self.insert_batch(&mut tx, webhooks, now).await?
        }
        .into_iter();
        let mut carried = Carried::default();
        let mut outcomes = Vec::with_capacity(webhooks.len());
        let mut woke = false;
        for w in webhooks {
            let mark = if isolate {
                Some((tx.savepoint().await?, carried.clone()))
            } else {
                None
            };
            let inserted = match ids.next() {
                Some(ids) => ids,
                None => tx.insert_alert_events(&w.events(now)).await?,
            };
            let decided = self
                .decide_webhook(&mut tx, w, inserted, now, sim, &mut carried)
                .await;
            match decided {
                Ok((report, escalations, notified)) => {
                    if let Some((mark, _)) = mark {
                        tx.release(mark).await?;
                    }
                    woke |= notified > 0 || escalations > 0;
                    outcomes.push(Ok((report, escalations)));
                }
                Err(guard::Error::QueueFull) => {
                    let Some((mark, before)) = mark else {
                        drop(tx.rollback().await);
                        return Err(Stop::Isolate);
                    };
                    tx.rollback_to(mark).await?;
                    carried = before;
                    if commit {
                        self.metrics.queue_full.inc();
                    }
                    outcomes.push(Err(Error::QueueFull {
                        capacity: self.queue_capacity,
                    }));
                }
                Err(guard::Error::Store(e)) => return Err(Stop::Store(e)),
            }
        }
        Ok((tx, outcomes, carried, woke))
    }

    /// Records every webhook's new alerts, in order: each one's ids (`None`: already stored, or
    /// earlier in the batch).
    async fn insert_batch(
        &self,
        tx: &mut store::WriteTx,
        webhooks: &[Webhook],
        now: i64,
    ) -> store::Result<Vec<Vec<Option<i64>>>> {
        let events: Vec<NewAlertEvent<'_>> = webhooks.iter().flat_map(|w| w.events(now)).collect();
        let mut ids = tx.insert_alert_events(&events).await?.into_iter();
        Ok(webhooks
            .iter()
            .map(|w| ids.by_ref().take(w.fresh.len()).collect())
            .collect())
    }

    /// Decides on each of one webhook's alerts (recorded as `inserted` says), in the batch's
    /// transaction. Returns its report, the storm escalations it opened and the notifications
    /// it queued.
    async fn decide_webhook(
        &self,
        tx: &mut store::WriteTx,
        w: &Webhook,
        inserted: Vec<Option<i64>>,
        now: i64,
        sim: Simulation,
        carried: &mut Carried,
    ) -> std::result::Result<(Report, u64, usize), guard::Error> {
        let defs = self.definitions();
        let maintenance = self.maintenance.snapshot();
        let mut report = w.base.clone();
        let mut escalations = 0u64;
        let mut notified = 0usize;
        let events = w.events(now);
        for (((alert, key), inserted), event) in w.fresh.iter().zip(inserted).zip(&events) {
            let (event_id, dedup) = match inserted {
                Some(id) => (id, "new"),
                None => {
                    // A simulation may go on with the occurrence already recorded; a firing
                    // occurrence a maintenance window held is decided again on its re-send.
                    let recorded = if sim.ignore_dedup {
                        tx.alert_event_id(key).await?.map(|id| (id, "duplicate"))
                    } else if alert.status == Status::Firing {
                        tx.held_occurrence(key).await?.map(|id| (id, HELD_AGAIN))
                    } else {
                        None
                    };
                    let Some((id, dedup)) = recorded else {
                        report.duplicates += 1;
                        report.alerts.push(verdict_for(alert, "duplicate"));
                        continue;
                    };
                    report.duplicates += usize::from(dedup == "duplicate");
                    (id, dedup)
                }
            };
            report.accepted += usize::from(dedup == "new");
            let mut verdict = verdict_for(alert, dedup);
            match alert.status {
                Status::Resolved => {
                    if dedup == "new" {
                        tx.end_firing_row(event).await?;
                    }
                    verdict.cancelled_jobs = tx
                        .cancel_pending_for_fingerprint(&alert.fingerprint, now)
                        .await?;
                    if !verdict.cancelled_jobs.is_empty() {
                        // The queue is shorter now: the next decision counts it again.
                        carried.pending = guard::Pending::default();
                    }
                    verdict.cancelled_modes = tx.job_modes(&verdict.cancelled_jobs).await?;
                    // The loop closes: successful repairs of this occurrence get their time to
                    // recover, and the people told of the repair hear that it held.
                    let ended = alert.ends_at.map_or(now, |t| t.timestamp_millis());
                    let starts_at = alert.starts_at_ms();
                    tx.record_ttr(&alert.fingerprint, starts_at, (ended - starts_at).max(0))
                        .await?;
                    if let Some(outbox) = &self.outbox {
                        let resolved = crate::notify::Resolved {
                            labels: &alert.labels,
                            annotations: &alert.annotations,
                            generator_url: &alert.generator_url,
                            fingerprint: &alert.fingerprint,
                            starts_at,
                        };
                        notified += outbox.recovered(tx, &resolved, now).await?;
                    }
                }
                Status::Firing => {
                    // A held occurrence's re-send is decided again but fired once: alert_fired
                    // goes with the occurrence's first record only. Only routes that opt in take
                    // it; most alerts enqueue nothing.
                    if let Some(outbox) = self.outbox.as_ref().filter(|_| dedup == "new") {
                        notified += outbox
                            .alert_fired(
                                tx,
                                &alert.labels,
                                &alert.annotations,
                                &alert.generator_url,
                                now,
                            )
                            .await?;
                    }
                    for rule in defs.rules.matching(&alert.labels) {
                        let ctx = guard::Ctx {
                            guard: &self.guard,
                            queue_capacity: self.queue_capacity,
                            now,
                            outbox: self.outbox.as_deref(),
                            maintenance: &maintenance,
                            trust: &self.trust,
                            by_hand: None,
                        };
                        let outcome = guard::decide(
                            tx,
                            &ctx,
                            rule,
                            alert,
                            event_id,
                            &mut carried.pending,
                            &mut carried.storm,
                        )
                        .await?;
                        let rv = match outcome {
                            guard::Outcome::Job(rv) => rv,
                            guard::Outcome::Refused(rv, storm_escalated) => {
                                escalations += u64::from(storm_escalated);
                                rv
                            }
                        };
                        notified += self.decided(tx, alert, &rv, now).await?;
                        verdict.rules.push(rv);
                    }
                }
            }
            report.alerts.push(verdict);
        }
        Ok((report, escalations, notified))
    }
}
