//! The GitOps gate: what every host function that changes a workload does first, and
//! `gitops(target)` for playbooks.
//!
//! Argo CD and Flux re-apply what Git holds, so a change to a workload they own may be undone
//! minutes later. Before `restart`, `rollback`, `set_memory` and `scale` change a workload, the
//! gate reads who owns it (`Cluster::object_info` → [`gitops::detect`]), records that on the
//! job, and applies the run's policy for the kind of change
//! (`gitops.defaults.policy(rule's gitops, kind)`; objects nobody owns are always changed):
//!
//! - `act`: change it as today;
//! - `hold`: pause the controller for this object (extending an open hold rather than placing
//!   a second), change it, and announce the hold loudly (`gitops_hold`) with the Git change to
//!   make; a hold that cannot be placed (no RBAC, an ApplicationSet) or recorded becomes a skip;
//! - `skip`: change nothing and stop the run `inconclusive` with the exact change to make in
//!   Git and the owner ([`GitopsRun::skipped`]): the playbook cannot continue around it.
//!
//! After an applied change (owned or not) the changed fields are read back (`Cluster::observe`)
//! into an [`Applied`]: verification watches them for a revert. Dry runs (dry_run rules,
//! shadow mode, `aiops simulate`, `aiops test-playbook`) say what they would do and never place
//! or record a hold. One implementation for every changing function, so none can forget it.

use rhai::{Array, Dynamic, Engine, EvalAltResult, Map};

use super::args::target_of;
use super::context::{RunContext, ctx};
use super::outcome::{Applied, Outcome, Skipped};
use super::script_fns::finish;
use crate::cluster::Target;
use crate::gitops::{
    self, Controller, Field, FieldChange, FieldState, GitChange, GitopsSettings, HoldMechanism,
    Ownership,
};
use crate::rules::{ChangeKind, GitopsPolicy};
use crate::store::NewHold;

/// What a run's gate applies: the settings' `gitops:` section and the job's `spec.gitops`.
#[derive(Clone, Debug, Default)]
pub struct GitopsConfig {
    /// `gitops:` of the settings (detection, defaults, how long a hold lasts).
    pub settings: GitopsSettings,
    /// The rule's `gitops:` as the job snapshotted it (`None`: the defaults per kind).
    pub rule_policy: Option<GitopsPolicy>,
}

impl GitopsConfig {
    /// The policy this run applies to `kind` on an object `ownership` describes.
    pub fn policy(&self, ownership: &Ownership, kind: ChangeKind) -> GitopsPolicy {
        match ownership.controller {
            // Nobody re-applies it: a change stays, so it is made.
            None => GitopsPolicy::Act,
            Some(_) => self.settings.defaults.policy(self.rule_policy, kind),
        }
    }
}

/// A hold a change is made under.
#[derive(Clone, Debug)]
struct HoldUsed {
    id: i64,
    mechanism: HoldMechanism,
    until_ms: i64,
    /// Placed by this change (released again if the change fails).
    placed_now: bool,
    /// Whether people must hear of it: a new hold, or an open one now asked for another change.
    announce: bool,
}

/// The gate's decision for one change the run is about to make: hand the change's result to
/// [`Gate::checked`], then call [`Gate::applied`] once it is made.
pub(super) struct Gate {
    target: Target,
    kind: ChangeKind,
    owner: Option<Controller>,
    git: Option<GitChange>,
    hold: Option<HoldUsed>,
}

/// What a change is about to set, for the Git change of an owned object, and for a rollback
/// the revision it goes back to: `None` when the change would do nothing at all (a rollback
/// with no previous revision), which then goes on to report that itself.
pub(super) type Plan<'a> =
    &'a dyn Fn(&RunContext) -> Result<Option<(Vec<FieldChange>, Option<i64>)>, Box<EvalAltResult>>;

/// The ownership of `target`, read once per run (the first reading is the one recorded).
fn ownership(
    c: &RunContext,
    action: &str,
    target: &Target,
) -> Result<Ownership, Box<EvalAltResult>> {
    if let Some((_, o)) = c
        .gitops_run
        .lock()
        .expect("gitops lock")
        .owners
        .iter()
        .find(|(t, _)| t == target)
    {
        return Ok(o.clone());
    }
    // Named after the change, so a missing workload reads as it did before the gate existed
    // ("restart: deployment prod/web not found").
    let info = c.call(action, c.cluster.object_info(target))?;
    let o = gitops::detect(&info, target, &c.gitops.settings);
    c.gitops_run
        .lock()
        .expect("gitops lock")
        .owners
        .push((target.clone(), o.clone()));
    // Recorded in dry runs too: a reading, not a change.
    if let Some(sink) = &c.sink {
        let (store, id, o) = (sink.store.clone(), sink.job_id, o.clone());
        if let Err(e) = c
            .handle
            .block_on(async move { store.set_job_gitops(id, &o).await })
        {
            tracing::error!(error = %e, "recording the ownership on the job failed");
        }
    }
    Ok(o)
}

/// `dry run: ` in dry runs: the words of every gate step say whether anything happened.
fn dry(c: &RunContext) -> &'static str {
    if c.dry_run { "dry run: " } else { "" }
}

/// RFC 3339 of an epoch-ms instant (UTC, seconds).
fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// Runs the gate for one change of `kind` to `target`. `Ok` means: make the change (under the
/// returned gate's hold, if any); an error stops the run (a skip ends it `inconclusive`).
pub(super) fn gate(
    c: &RunContext,
    action: &str,
    target: &Target,
    kind: ChangeKind,
    plan: Plan<'_>,
) -> Result<Gate, Box<EvalAltResult>> {
    let o = ownership(c, action, target)?;
    let mut gate = Gate {
        target: target.clone(),
        kind,
        owner: o.controller.clone(),
        git: None,
        hold: None,
    };
    let Some(owner) = o.controller.clone() else {
        return Ok(gate);
    };
    let Some((changes, revision)) = plan(c)? else {
        return Ok(gate);
    };
    let change = GitChange {
        kind,
        target: target.clone(),
        changes,
        owner: owner.clone(),
        revision,
    };
    gate.git = Some(change.clone());
    let policy = c.gitops.policy(&o, kind);
    let meaning = match policy {
        GitopsPolicy::Act => {
            "changing it directly; verification watches whether the controller sets it back"
        }
        GitopsPolicy::Hold => "pausing the controller for this object, then changing it",
        GitopsPolicy::Skip => "not changing it: the change belongs in Git",
    };
    c.record(
        "gitops",
        format!(
            "{}{target} is {o}; gitops policy for {kind} changes: {policy}: {meaning}",
            dry(c)
        ),
    );
    match policy {
        GitopsPolicy::Act => Ok(gate),
        GitopsPolicy::Skip => Err(skip(
            c,
            change,
            format!("the gitops policy for {kind} changes to objects {owner} owns is skip"),
        )),
        // Git holds nothing of a restart: the controller would not set it back, so there is
        // nothing to pause it for. (A rollback with no image difference still changes the
        // template Git holds, so it is held like any other.)
        GitopsPolicy::Hold if kind == ChangeKind::Restart => {
            c.record(
                "gitops_hold",
                format!(
                    "{}no hold needed: {} keeps nothing of a {kind} in Git",
                    dry(c),
                    change.owner
                ),
            );
            Ok(gate)
        }
        GitopsPolicy::Hold => match hold(c, &change) {
            Ok(h) => {
                gate.hold = h;
                Ok(gate)
            }
            Err(reason) => Err(skip(
                c,
                change,
                format!("hold not possible: {reason}; skipped instead"),
            )),
        },
    }
}

/// Records the skip and ends the run `inconclusive` with the change to make in Git.
fn skip(c: &RunContext, change: GitChange, reason: String) -> Box<EvalAltResult> {
    let what = format!(
        "{} owns {}: make this change in Git: {}",
        change.owner,
        change.target,
        change.instruction()
    );
    let would = if c.dry_run {
        "would skip the change: "
    } else {
        "not changed: "
    };
    c.record("gitops_skip", format!("{}{would}{what} ({reason})", dry(c)));
    c.gitops_run.lock().expect("gitops lock").skipped = Some(Skipped { change, reason });
    let message = if c.dry_run {
        format!("dry run: would stop here: {what}")
    } else {
        what
    };
    match finish(Outcome::Inconclusive(message)) {
        Err(e) => e,
        Ok(()) => unreachable!("finish always ends the run"),
    }
}

/// Another open hold (not `except`) that already pauses the controller object of `owner` as a
/// whole: an Argo CD Application or a HelmRelease pauses every workload it deploys at once,
/// while holds are one per workload. Its placement is the one to share: the live object is
/// already paused, so reading it again would "save" the paused state and a release would put
/// that back. (A Flux Kustomization's hold is the workload's own annotation: never shared.)
fn sharing_hold(
    c: &RunContext,
    owner: &Controller,
    except: Option<i64>,
) -> Result<Option<crate::store::Hold>, String> {
    let Some(store) = &c.store else {
        return Ok(None);
    };
    let store = store.clone();
    let open = c
        .handle
        .block_on(async move { store.open_holds().await })
        .map_err(|e| format!("reading the open holds failed: {e}"))?;
    Ok(open.into_iter().find(|h| {
        Some(h.id) != except
            && h.hold.controller == *owner
            && matches!(
                h.hold.placement.mechanism,
                HoldMechanism::ArgoAutomatedOff | HoldMechanism::FluxHelmReleaseSuspend
            )
    }))
}

/// Places (or extends) the hold for `change`, or says why it cannot; in a dry run, only says
/// what would happen. `Ok(None)`: a dry run, which holds nothing.
fn hold(c: &RunContext, change: &GitChange) -> Result<Option<HoldUsed>, String> {
    let settings = &c.gitops.settings;
    let hold_for = humantime::format_duration(settings.hold_for.0).to_string();
    let target = &change.target;
    let owner = &change.owner;
    let instruction = change.instruction();
    let now = crate::store::now_ms();
    let until_ms = now + i64::try_from(settings.hold_for.0.as_millis()).unwrap_or(i64::MAX / 2);
    let open = match &c.store {
        Some(store) => {
            let store = store.clone();
            let t = target.clone();
            c.handle
                .block_on(async move { store.open_hold(&t).await })
                .map_err(|e| format!("reading the open holds failed: {e}"))?
        }
        None => None,
    };
    if c.dry_run {
        let what = match &open {
            Some(h) => format!(
                "would extend hold #{} on {target} by {hold_for} (until about {})",
                h.id,
                rfc3339(until_ms)
            ),
            None => match sharing_hold(c, owner, None)? {
                Some(shared) => format!(
                    "would hold {owner} for {target} for {hold_for}, sharing the pause of hold #{} on {}",
                    shared.id, shared.hold.target
                ),
                None => {
                    let placement = c
                        .try_call(c.cluster.hold(target, owner, true))
                        .map_err(|e| e.to_string())?;
                    format!(
                        "would hold {owner} for {target} for {hold_for} ({})",
                        placement.mechanism.describe()
                    )
                }
            },
        };
        c.record(
            "gitops_hold",
            format!("dry run: {what}, then change it; make this change in Git: {instruction}"),
        );
        return Ok(None);
    }
    let (Some(store), Some(sink)) = (&c.store, &c.sink) else {
        return Err(
            "this run has no job in a store to record the hold in (an offline run), so nothing could release it"
                .to_string(),
        );
    };
    if let Some(h) = open {
        let (s, id, ch) = (store.clone(), h.id, change.clone());
        let extended = c
            .handle
            .block_on(async move { s.extend_hold(id, until_ms, &ch).await })
            .map_err(|e| format!("extending hold #{id} failed: {e}"))?;
        if extended {
            c.record(
                "gitops_hold",
                format!(
                    "{owner} was already paused for {target} (hold #{}, {}): extended until {}; make this change in Git before then: {instruction}",
                    h.id,
                    h.hold.placement.mechanism.describe(),
                    rfc3339(until_ms)
                ),
            );
            return Ok(Some(HoldUsed {
                id: h.id,
                mechanism: h.hold.placement.mechanism,
                until_ms,
                placed_now: false,
                announce: h.hold.change.changes != change.changes,
            }));
        }
        // Released between the reading and the extension: place a new one below.
    }
    let shared = sharing_hold(c, owner, None)?;
    let placement = match &shared {
        Some(h) => h.hold.placement.clone(),
        None => c
            .try_call(c.cluster.hold(target, owner, false))
            .map_err(|e| e.to_string())?,
    };
    let new = NewHold {
        job_id: sink.job_id,
        target: target.clone(),
        controller: owner.clone(),
        placement: placement.clone(),
        change: change.clone(),
        created_at: now,
        expires_at: until_ms,
    };
    let s = store.clone();
    let recorded = c.handle.block_on(async move { s.record_hold(&new).await });
    let id = match recorded {
        Ok(id) => id,
        Err(e) => {
            // A hold nobody recorded is a hold nobody releases: take it back at once (unless
            // it is another hold's pause, which that hold still needs).
            if shared.is_none()
                && let Err(r) = c.try_call(c.cluster.release(target, owner, &placement))
            {
                tracing::error!(error = %r, repair_target = %target, "releasing an unrecorded hold failed");
            }
            return Err(format!("recording the hold failed: {e}"));
        }
    };
    let paused = match &shared {
        Some(h) => format!(
            "{owner} is already paused by hold #{} on {}",
            h.id, h.hold.target
        ),
        None => format!("paused {owner}"),
    };
    c.record(
        "gitops_hold",
        format!(
            "{paused} for {target} until {} (hold #{id}: {}); make this change in Git before then: {instruction}",
            rfc3339(until_ms),
            placement.mechanism.describe()
        ),
    );
    Ok(Some(HoldUsed {
        id,
        mechanism: placement.mechanism,
        until_ms,
        placed_now: true,
        announce: true,
    }))
}

impl Gate {
    /// Passes the change's result through; a failed change gives back the hold it placed (the
    /// controller must not stay paused for a change that was never made).
    pub(super) fn checked<T>(
        &self,
        c: &RunContext,
        result: Result<T, Box<EvalAltResult>>,
    ) -> Result<T, Box<EvalAltResult>> {
        if result.is_err() {
            self.abandon(c);
        }
        result
    }

    /// The change was not made (failed, or refused by the backend): release a hold placed for it.
    pub(super) fn abandon(&self, c: &RunContext) {
        let (Some(h), Some(owner), Some(store)) = (&self.hold, &self.owner, &c.store) else {
            return;
        };
        if !h.placed_now {
            return;
        }
        let (store, id) = (store.clone(), h.id);
        // The placement (what to put back) is the recorded one.
        let held = match c.handle.block_on(async { store.hold(id).await }) {
            Ok(Some(held)) => held,
            Ok(None) => return,
            Err(e) => {
                tracing::error!(error = %e, hold = id, "reading the hold of a failed change failed; it ends at its expiry");
                return;
            }
        };
        // Another open hold sharing the paused controller object keeps it paused: this hold
        // only ends.
        let released = match sharing_hold(c, owner, Some(id)) {
            Ok(Some(_)) => Ok(()),
            Ok(None) => c
                .try_call(c.cluster.release(&self.target, owner, &held.hold.placement))
                .map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        match released {
            Ok(()) => {
                let now = crate::store::now_ms();
                let _ = c
                    .handle
                    .block_on(async { store.claim_hold_release(id, "change_failed", now).await });
                c.record(
                    "gitops_hold",
                    format!(
                        "the change was not made: released hold #{id} on {}",
                        self.target
                    ),
                );
            }
            Err(e) => {
                tracing::error!(error = %e, hold = id, "releasing the hold of a failed change failed; it ends at its expiry")
            }
        }
    }

    /// The change was made: reads the changed `fields` back for verification's revert watch
    /// and announces a hold. Nothing is recorded in a dry run (nothing changed). Called right
    /// after the write, before anything else of the run (steps, Events), so the read-back is as
    /// close to the change as the cluster allows.
    ///
    /// For an owned target the planned value of a field is what the watch expects, not the
    /// read-back: a controller that sets the field back between the write and the read-back
    /// (its interval can be that short) would otherwise have its value taken for the repair's,
    /// and the revert would never be seen.
    pub(super) fn applied(self, c: &RunContext, fields: &[Field]) {
        if c.dry_run {
            return;
        }
        let planned = self.git.as_ref().map_or(&[][..], |g| g.changes.as_slice());
        let observed = match c.try_call(c.cluster.observe(&self.target, fields)) {
            Ok(states) => states
                .into_iter()
                .filter_map(|s| expected(planned, s))
                .collect(),
            Err(e) => {
                // Without the values read back, the planned ones are the best record there is.
                tracing::warn!(error = %e, repair_target = %self.target, "reading the changed fields back failed");
                self.git
                    .as_ref()
                    .map(|g| g.changes.clone())
                    .unwrap_or_default()
            }
        };
        if let (Some(h), Some(git)) = (&self.hold, &self.git)
            && h.announce
        {
            announce(c, git, h);
        }
        c.gitops_run
            .lock()
            .expect("gitops lock")
            .applied
            .push(Applied {
                target: self.target,
                kind: self.kind,
                changes: observed,
                owner: self.owner,
                git: self.git,
                hold_id: self.hold.map(|h| h.id),
            });
    }
}

/// What the revert watch expects of field `live` right after the change: the planned value
/// when there is one and the live value no longer holds it (already set back), else the live
/// value (the cluster's own spelling of it); nothing for an unset field without a plan.
fn expected(planned: &[FieldChange], live: FieldState) -> Option<FieldChange> {
    if let Some(p) = planned.iter().find(|p| p.field == live.field)
        && !p.holds(&live)
    {
        return Some(p.clone());
    }
    live.value.map(|value| FieldChange {
        field: live.field,
        value,
    })
}

/// The loud `gitops_hold` message: the controller is paused, until when, and what Git needs.
fn announce(c: &RunContext, change: &GitChange, h: &HoldUsed) {
    let (Some((outbox, event)), Some(store)) = (&c.notify, &c.store) else {
        return;
    };
    let until = rfc3339(h.until_ms);
    let mut event = event.clone();
    event.kind = crate::notify::EventKind::GitopsHold;
    event.message = format!(
        "aiops paused {} for {} until {until} and changed it. Make this change in Git before then, or the controller sets it back: {}",
        change.owner,
        change.target,
        change.instruction()
    );
    event.at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    event.gitops = Some(crate::notify::GitopsReport {
        owner: change.owner.to_string(),
        change: change.instruction(),
        hold: h.mechanism.describe().to_string(),
        hold_until: until,
        hold_id: Some(h.id),
        ..Default::default()
    });
    let limit = c.settings.call_timeout.min(c.remaining());
    let res = c.handle.block_on(async {
        tokio::time::timeout(limit, outbox.enqueue_now(store, &event, &[])).await
    });
    let detail = match res {
        Ok(Ok(n)) => format!("announced hold #{} (queued for {n} channel(s))", h.id),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "enqueueing the gitops_hold message failed");
            format!("announcing hold #{} failed: {e}", h.id)
        }
        Err(_) => format!("announcing hold #{} timed out", h.id),
    };
    c.record("notify", detail);
}

/// `gitops(target)`: who owns the workload and the policy this run applies to each kind of
/// change, so a playbook can choose (a restart where a rollback would be skipped).
fn gitops_map(t: Map) -> Result<Map, Box<EvalAltResult>> {
    let c = ctx()?;
    let target = target_of(&t)?;
    let o = ownership(&c, "gitops", &target)?;
    let (controller, name, namespace) = match &o.controller {
        Some(Controller::ArgoCd {
            application,
            namespace,
        }) => ("argocd", application.clone(), namespace.clone()),
        Some(Controller::FluxKustomization { name, namespace }) => {
            ("flux_kustomization", name.clone(), namespace.clone())
        }
        Some(Controller::FluxHelmRelease { name, namespace }) => {
            ("flux_helmrelease", name.clone(), namespace.clone())
        }
        None => ("", String::new(), String::new()),
    };
    let mut policy = Map::new();
    for kind in ChangeKind::ALL {
        policy.insert(
            kind.as_str().into(),
            c.gitops.policy(&o, kind).as_str().into(),
        );
    }
    let managers: Array = o
        .managers
        .iter()
        .map(|m| Dynamic::from(m.name.clone()))
        .collect();
    let mut m = Map::new();
    m.insert("owned".into(), o.controller.is_some().into());
    m.insert("controller".into(), controller.into());
    m.insert(
        "owner".into(),
        o.controller
            .as_ref()
            .map_or(String::new(), ToString::to_string)
            .into(),
    );
    m.insert("name".into(), name.into());
    m.insert("namespace".into(), namespace.into());
    m.insert("managers".into(), managers.into());
    m.insert("policy".into(), policy.into());
    Ok(m)
}

/// Registers `gitops(target)`.
pub(super) fn register(engine: &mut Engine) {
    engine.register_fn("gitops", gitops_map);
}
