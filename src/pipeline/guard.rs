//! Guards: the checks between "a rule matched" and "a job exists".
//!
//! Every guard reads the store inside the intake transaction, so the answer is the same for a
//! restarted process and for a second replica. Order matters and is fixed: a target must be
//! resolvable to valid Kubernetes names and in an allowed namespace, and held by no open
//! maintenance window; the storm brake then looks at the whole cluster; then
//! the target must be free, out of cooldown and within its budget; finally the queue must have room.
//!
//! The rule's trust mode (`Ctx::trust`, the settings' `trust:` section) is resolved here and
//! snapshotted into the job (`JobSpec::for_rule_in`). A shadow rule takes the same decision in a
//! lane of its own: its target lock, cooldown and budget count only shadow jobs (so "would act"
//! is what the rule would really have done, given its own history), real repairs never see its
//! jobs, and it reads the storm brake without feeding or engaging it. Its job is a dry run.
//!
//! A repair run by hand (`POST /api/repairs`, `pipeline::hand`) is decided here too, by the rule
//! that governs it (`Ctx::by_hand` set): the same guards in the same order, recorded the same
//! way. What differs: the job's spec and the decision carry who asked ([`crate::job::ByHand`],
//! `decisions.requested_by`), and, because a person is waiting for the answer, a full queue is
//! a recorded `queue_full` refusal rather than a failed webhook (no Alertmanager retries it).

use std::collections::HashSet;
use std::time::Duration;

use serde::Serialize;

use super::{Plan, RuleVerdict};
use crate::alert::Alert;
use crate::config;
use crate::job::{ByHand, JobSpec};
use crate::rules::{Mode, Rule, Trust};
use crate::store::{self, Decision, NewEscalation, NewJob, WriteTx};

/// Why a guard refused. Also the `reason` label of `aiops_guard_refusals_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Refusal {
    /// The alert's labels do not name a target.
    NoTarget,
    /// The labels name a target whose namespace or name is not a valid Kubernetes name
    /// (`default/../kube-system`, `web?dryRun=All`, `web/status`).
    InvalidTarget,
    /// The target's namespace is denied or not allowed.
    NamespaceDenied,
    /// Too many distinct targets recently: the storm brake is on.
    StormBrake,
    /// Another repair is active on the target.
    TargetBusy,
    /// This rule acted on this target too recently.
    Cooldown,
    /// This rule used its repair budget for this target.
    Budget,
    /// A maintenance window covering the target's namespace, app or rule is open.
    Maintenance,
    /// A shadow rule, or a repair run by hand, found its lane's queue at
    /// `jobs.queue_capacity`. A real decision on an alert that finds its lane full is not
    /// refused this way: it fails the webhook with a 503, so Alertmanager retries it.
    QueueFull,
}

impl Refusal {
    /// Every reason, so metrics can start at zero.
    pub const ALL: [Refusal; 9] = [
        Refusal::NoTarget,
        Refusal::InvalidTarget,
        Refusal::NamespaceDenied,
        Refusal::Maintenance,
        Refusal::StormBrake,
        Refusal::TargetBusy,
        Refusal::Cooldown,
        Refusal::Budget,
        Refusal::QueueFull,
    ];

    /// The stored and metric name.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::NoTarget => "no_target",
            Refusal::InvalidTarget => "invalid_target",
            Refusal::NamespaceDenied => "namespace_denied",
            Refusal::StormBrake => "storm_brake",
            Refusal::TargetBusy => "target_busy",
            Refusal::Cooldown => "cooldown",
            Refusal::Budget => "budget",
            Refusal::Maintenance => "maintenance",
            Refusal::QueueFull => "queue_full",
        }
    }
}

pub(super) enum Error {
    QueueFull,
    Store(store::Error),
}

impl From<store::Error> for Error {
    fn from(e: store::Error) -> Self {
        Error::Store(e)
    }
}

pub(super) enum Outcome {
    Job(RuleVerdict),
    /// The refusal, and whether it opened a storm-brake episode (escalated once).
    Refused(RuleVerdict, bool),
}

pub(super) struct Ctx<'a> {
    pub guard: &'a config::Guard,
    pub queue_capacity: usize,
    /// The time the guards decide at (epoch ms); no guard reads the clock. The intake passes
    /// the time its batch began (every webhook of a batch is decided at one time, so the storm
    /// window and the queue count carry from one to the next); `simulate --at` a time of the
    /// operator's choosing.
    pub now: i64,
    pub outbox: Option<&'a crate::notify::Outbox>,
    /// The maintenance windows as they were when the webhook arrived.
    pub maintenance: &'a crate::maintenance::Snapshot,
    /// The settings' `trust:` section: each rule's mode (and approval policy) is resolved
    /// against it when its job is created.
    pub trust: &'a Trust,
    /// Who asked, when a person runs the repair by hand (`None` for an alert's decision).
    pub by_hand: Option<&'a ByHand>,
}

/// Each lane's count of pending jobs, kept for one intake batch: read from the store at a lane's
/// first decision, then counted up as the batch's own jobs are inserted.
#[derive(Clone, Default)]
pub(super) struct Pending {
    real: Option<i64>,
    shadow: Option<i64>,
}

impl Pending {
    fn slot(&mut self, mode: Mode) -> &mut Option<i64> {
        match mode {
            Mode::Shadow => &mut self.shadow,
            Mode::Approve | Mode::Auto => &mut self.real,
        }
    }

    fn get(&mut self, mode: Mode) -> Option<i64> {
        *self.slot(mode)
    }

    fn set(&mut self, mode: Mode, depth: i64) {
        *self.slot(mode) = Some(depth);
    }

    /// The real lane's depth, once this payload read it (the `aiops_queue_depth` gauge).
    pub(super) fn real(&self) -> Option<i64> {
        self.real
    }
}

/// The storm brake's count of distinct targets, kept for one intake batch (one transaction at one
/// `now`, see `pipeline::batch`) so that intake stays linear.
///
/// The window's count is read once (one range scan); after that each target costs at most one
/// primary-key lookup per batch. The result equals counting the window again for every alert,
/// because within a batch `now` (so the window) is fixed and only [`decide`] writes
/// `target_activity`: every decision recorded after the storm check feeds its target, so a
/// target not yet in the window joins it exactly once. Other replicas wait for the batch's
/// intake lock (PostgreSQL), as they would for SQLite's single writer.
#[derive(Clone, Default)]
pub(super) struct StormTally {
    /// Distinct targets in the window when the payload began; read on first use.
    base: Option<i64>,
    /// Targets this payload brought into the window.
    added: HashSet<String>,
    /// Targets read from the store as already in the window (read once each).
    known: HashSet<String>,
    /// Whether an episode is open, once known in this payload. The count only grows within a
    /// payload, so once engaged it stays engaged until the payload ends.
    open: Option<bool>,
}

impl StormTally {
    /// Distinct targets in the window since `since`, counting `key` as one of them, and
    /// remembering `key` as in the window from now on (its decision will feed it).
    async fn count_with(&mut self, tx: &mut WriteTx, since: i64, key: &str) -> Result<i64, Error> {
        let base = match self.base {
            Some(n) => n,
            None => {
                let n = tx.targets_active_since(since).await?;
                self.base = Some(n);
                n
            }
        };
        if !self.added.contains(key) && !self.known.contains(key) {
            if tx.target_active_since(key, since).await? {
                self.known.insert(key.to_string());
            } else {
                self.added.insert(key.to_string());
            }
        }
        Ok(base + i64::try_from(self.added.len()).unwrap_or(i64::MAX))
    }

    /// The count [`StormTally::count_with`] would return for `key`, without remembering
    /// `key`: a shadow decision reads the brake but never feeds it.
    async fn count_without_feeding(
        &mut self,
        tx: &mut WriteTx,
        since: i64,
        key: &str,
    ) -> Result<i64, Error> {
        let known = self.added.contains(key);
        let counted = self.count_with(tx, since, key).await;
        if !known {
            self.added.remove(key);
        }
        counted
    }

    /// Opens an episode unless one is known open; returns whether this call opened it.
    async fn engage(
        &mut self,
        tx: &mut WriteTx,
        now: i64,
        targets: i64,
        window: i64,
    ) -> Result<bool, Error> {
        if self.open == Some(true) {
            return Ok(false);
        }
        let opened = tx.engage_storm(now, targets, window).await?;
        self.open = Some(true);
        Ok(opened)
    }

    /// Closes the open episode, if any; returns whether one was closed.
    async fn release(&mut self, tx: &mut WriteTx, now: i64) -> Result<bool, Error> {
        let open = match self.open {
            Some(open) => open,
            None => tx.storm_open().await?,
        };
        let released = open && tx.release_storm(now).await?;
        self.open = Some(false);
        Ok(released)
    }
}

fn human(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}

fn at(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map_or_else(|| ms.to_string(), |t| t.to_rfc3339())
}

/// Decides on one rule match and records the decision (and the job) in `tx`.
pub(super) async fn decide(
    tx: &mut WriteTx,
    ctx: &Ctx<'_>,
    rule: &Rule,
    alert: &Alert,
    event_id: i64,
    pending: &mut Pending,
    storm_tally: &mut StormTally,
) -> Result<Outcome, Error> {
    let now = ctx.now;
    let mode = ctx.trust.mode_of(rule);
    let Some(target) = rule.target.resolve(&alert.labels) else {
        let detail =
            "the alert's labels do not name a namespace, kind and name for this rule's target"
                .to_string();
        return refuse(
            tx,
            rule,
            mode,
            None,
            Refusal::NoTarget,
            detail,
            event_id,
            ctx,
            false,
        )
        .await;
    };
    // Before anything compares or stores them: a label value is any string, and only a valid
    // name can neither climb out of the namespace in an API path nor slip past the deny list.
    if let Err(e) = target.check_names() {
        let detail = format!("invalid target: {e}");
        return refuse(
            tx,
            rule,
            mode,
            None,
            Refusal::InvalidTarget,
            detail,
            event_id,
            ctx,
            false,
        )
        .await;
    }
    let key = target.key();
    if !ctx.guard.namespaces.allows(&target.namespace) {
        let detail = format!(
            "namespace {} is not allowed (guard.namespaces)",
            target.namespace
        );
        return refuse(
            tx,
            rule,
            mode,
            Some(&target),
            Refusal::NamespaceDenied,
            detail,
            event_id,
            ctx,
            false,
        )
        .await;
    }
    // Planned work: hold the alert, after the checks that say the target is not ours anyway.
    let app = alert.labels.get("app").unwrap_or(&target.name);
    if let Some(hold) = ctx
        .maintenance
        .holding(&target.namespace, app, &rule.name, now)
    {
        let detail = hold.detail;
        return refuse(
            tx,
            rule,
            mode,
            Some(&target),
            Refusal::Maintenance,
            detail,
            event_id,
            ctx,
            false,
        )
        .await;
    }

    let storm = &ctx.guard.storm;
    if storm.max_targets > 0 {
        let window = store::ms(storm.window.0);
        let targets = if mode == Mode::Shadow {
            storm_tally
                .count_without_feeding(tx, now - window, &key)
                .await?
        } else {
            storm_tally.count_with(tx, now - window, &key).await?
        };
        if targets > i64::from(storm.max_targets) {
            // A shadow rule is refused as a real one would be, but opens no episode.
            let opened =
                mode != Mode::Shadow && storm_tally.engage(tx, now, targets, window).await?;
            let detail = format!(
                "storm brake: {targets} distinct targets in {} (max {}); automatic repairs paused",
                human(storm.window.0),
                storm.max_targets
            );
            if opened {
                tracing::warn!(targets, window = %human(storm.window.0), "storm brake engaged; escalating to humans");
                tx.insert_escalation(
                    &NewEscalation {
                        job_id: None,
                        rule: Some(&rule.name),
                        target_key: Some(&key),
                        kind: "human",
                        destination: "default",
                        reason: &detail,
                    },
                    now,
                )
                .await?;
                if let Some(outbox) = ctx.outbox {
                    // Told in the transaction that engages the brake: once per episode.
                    let mut event = crate::notify::Event::for_alert(
                        crate::notify::EventKind::StormBrake,
                        &alert.labels,
                        &alert.annotations,
                        &alert.generator_url,
                    );
                    event.target = key.clone();
                    event.rule = rule.name.clone();
                    event.reason = detail.clone();
                    outbox.enqueue(tx, &event, &[], now).await?;
                }
            }
            return refuse(
                tx,
                rule,
                mode,
                Some(&target),
                Refusal::StormBrake,
                detail,
                event_id,
                ctx,
                opened,
            )
            .await;
        } else if mode != Mode::Shadow && storm_tally.release(tx, now).await? {
            tracing::info!(targets, "storm brake released; automatic repairs resume");
        }
    }

    if let Some(job) = tx.active_job_for_target(&key, mode).await? {
        let detail = format!("job {job} is already repairing {key}");
        return refuse(
            tx,
            rule,
            mode,
            Some(&target),
            Refusal::TargetBusy,
            detail,
            event_id,
            ctx,
            false,
        )
        .await;
    }
    if !rule.cooldown.is_zero()
        && let Some(last) = tx.last_activity(&rule.name, &key, mode).await?
        && last > now - store::ms(rule.cooldown)
    {
        let detail = format!(
            "rule {} last acted on {key} at {}; cooldown {} lasts until {}",
            rule.name,
            at(last),
            human(rule.cooldown),
            at(last + store::ms(rule.cooldown))
        );
        return refuse(
            tx,
            rule,
            mode,
            Some(&target),
            Refusal::Cooldown,
            detail,
            event_id,
            ctx,
            false,
        )
        .await;
    }
    if let Some(budget) = &rule.budget {
        let used = tx
            .repairs_since(&rule.name, &key, now - store::ms(budget.window), mode)
            .await?;
        if used >= i64::from(budget.max) {
            let detail = format!(
                "rule {} already started {used} repairs of {key} in the last {} (budget {})",
                rule.name,
                human(budget.window),
                budget.max
            );
            return refuse(
                tx,
                rule,
                mode,
                Some(&target),
                Refusal::Budget,
                detail,
                event_id,
                ctx,
                false,
            )
            .await;
        }
    }

    // The queue bound is the store's count of pending jobs in the decision's lane, so it holds
    // across replicas, and shadow jobs never take room a real repair needs.
    let depth = match pending.get(mode) {
        Some(n) => n,
        None => tx.pending_jobs(mode).await?,
    };
    if depth >= i64::try_from(ctx.queue_capacity).unwrap_or(i64::MAX) {
        if mode != Mode::Shadow && ctx.by_hand.is_none() {
            return Err(Error::QueueFull);
        }
        // Evidence is not worth a retry: the shadow rule's alert is refused, the webhook's
        // real decisions stand. A person running a repair by hand is told now, and retries.
        let lane = if mode == Mode::Shadow {
            "shadow"
        } else {
            "real"
        };
        let detail = format!(
            "{depth} {lane} jobs are already pending (jobs.queue_capacity {})",
            ctx.queue_capacity
        );
        return refuse(
            tx,
            rule,
            mode,
            Some(&target),
            Refusal::QueueFull,
            detail,
            event_id,
            ctx,
            false,
        )
        .await;
    }

    let not_before = if rule.wait.is_zero() {
        now
    } else {
        (alert.starts_at_ms() + store::ms(rule.wait)).max(now)
    };
    let job = NewJob {
        alert_event_id: event_id,
        fingerprint: alert.fingerprint.clone(),
        alertname: alert.alertname().to_string(),
        rule: rule.name.clone(),
        spec: JobSpec {
            by_hand: ctx.by_hand.cloned(),
            ..JobSpec::for_rule_in(rule, ctx.trust)
        },
        chain_index: 0,
        parent_id: None,
        target_namespace: target.namespace.clone(),
        target_kind: target.kind.clone(),
        target_name: target.name.clone(),
        // A shadow job is a dry run: the playbook's changes are validated, never applied.
        dry_run: rule.dry_run || mode == Mode::Shadow,
        timeout_ms: rule.timeout.map(store::ms),
        not_before,
    };
    let Some((job_id, state)) = tx.insert_job(&job, now).await? else {
        // Another transaction (another replica) took the target between our check and insert.
        let detail = format!("another repair of {key} started concurrently");
        return refuse(
            tx,
            rule,
            mode,
            Some(&target),
            Refusal::TargetBusy,
            detail,
            event_id,
            ctx,
            false,
        )
        .await;
    };
    pending.set(mode, depth + 1);
    let plan = Plan {
        playbook: job.spec.playbook,
        params: job.spec.params,
        not_before,
        dry_run: job.dry_run,
        escalate: job.spec.chain,
        mode,
    };
    let reason = format!(
        "{} on {key}{}",
        rule.playbook,
        match (mode, rule.dry_run) {
            (Mode::Shadow, _) => " (shadow: dry run, changes nothing)",
            (_, true) => " (dry run)",
            (_, false) => "",
        }
    );
    tx.record_decision(&Decision {
        alert_event_id: event_id,
        rule: &rule.name,
        target_key: Some(&key),
        verdict: "job",
        reason: "plan",
        detail: &reason,
        job_id: Some(job_id),
        created_at: now,
        mode,
        requested_by: ctx.by_hand.map(|h| h.by.as_str()),
    })
    .await?;
    Ok(Outcome::Job(RuleVerdict::Job {
        rule: rule.name.clone(),
        target,
        job_id,
        state,
        plan,
    }))
}

#[allow(clippy::too_many_arguments)]
async fn refuse(
    tx: &mut WriteTx,
    rule: &Rule,
    mode: Mode,
    target: Option<&crate::rules::Target>,
    reason: Refusal,
    detail: String,
    event_id: i64,
    ctx: &Ctx<'_>,
    storm_opened: bool,
) -> Result<Outcome, Error> {
    // The API and the logs show the detail: a shadow rule's refusal withheld nothing real, and
    // must not read like a real repair's.
    let detail = if mode == Mode::Shadow {
        format!("shadow rule {} (changes nothing): {detail}", rule.name)
    } else {
        detail
    };
    let key = target.map(|t| t.key());
    tx.record_decision(&Decision {
        alert_event_id: event_id,
        rule: &rule.name,
        target_key: key.as_deref(),
        verdict: "refused",
        reason: reason.as_str(),
        detail: &detail,
        job_id: None,
        created_at: ctx.now,
        mode,
        requested_by: ctx.by_hand.map(|h| h.by.as_str()),
    })
    .await?;
    tracing::info!(rule = %rule.name, repair_target = key.as_deref().unwrap_or("-"), reason = reason.as_str(), %detail, "repair refused");
    Ok(Outcome::Refused(
        RuleVerdict::Refused {
            rule: rule.name.clone(),
            target: target.cloned(),
            reason,
            detail,
            mode,
        },
        storm_opened,
    ))
}
