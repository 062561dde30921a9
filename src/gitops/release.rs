//! The release task: ends GitOps holds (`gitops: hold`) so Argo CD or Flux reconciles the
//! object again.
//!
//! Every replica of `aiops serve` runs it (every `gitops.release_interval`): the holds are rows
//! in the store, so whichever replica is alive releases them, after a restart too. One pass
//! ([`Releaser::pass`]) looks at every open hold:
//! - expired → released `expiry`;
//! - else the controller says its source (Git) now agrees with the live object
//!   ([`Cluster::git_agrees`] is `Some(true)`: Argo CD reports it `Synced`) → released `git`;
//!   Flux cannot tell, so its holds end at expiry or by hand.
//!
//! Releasing is [`Cluster::release`] (idempotent: replicas racing both undo the pause, which
//! is harmless) then marking the row released; only the replica whose mark moved the row
//! enqueues `gitops_hold_released`, in the same transaction, so it is announced once. The API's
//! `POST /api/gitops/holds/{id}/release` takes the same path ([`Releaser::release`]).
//!
//! A failed release (no RBAC any more, the API server down) is counted on the hold and tried
//! again at the next pass. A hold that cannot be released leaves the controller paused past its
//! bound, so Git changes stop reaching the object without anyone noticing: after
//! [`ESCALATE_AFTER_ATTEMPTS`] failures in a row people get one `escalation` saying so, with
//! the owner and how to undo the pause by hand (once: the store counts the attempts
//! atomically, so exactly one replica sees that count).

use std::sync::Arc;
use std::time::Duration;

use crate::cluster::{self, Cluster};
use crate::gitops::HoldMechanism;
use crate::notify::{Event, EventKind, GitopsReport, Outbox};
use crate::store::{self, Hold, Store};

/// Failed release attempts after which people are told (about 5 minutes at the default
/// `gitops.release_interval` of 30 s): a transient API-server hiccup never reaches anyone,
/// a lasting one does while the hold is still young.
pub const ESCALATE_AFTER_ATTEMPTS: i64 = 10;

/// The grace before Git agreeing can end a hold, unless [`Releaser::with_grace`] says
/// otherwise: the default `gitops.watch` (Argo CD's 120 s refresh plus its jitter).
pub const GIT_GRACE: Duration = Duration::from_secs(180);

/// Why a release did not happen.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] store::Error),
    /// The cluster refused or failed to undo the pause (recorded on the hold; retried).
    #[error("the cluster could not release the hold: {0}")]
    Cluster(#[from] cluster::Error),
}

/// `type Result<T, E = Error>` as in every module of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What one release attempt came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Released {
    /// This caller released it (and announced it).
    Now,
    /// Another caller (a replica, the API) had released it first: nothing announced here.
    Already,
}

/// What one pass did, for logs and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pass {
    /// Holds this pass released, with why (`expiry`, `git`).
    pub released: Vec<(i64, &'static str)>,
    /// Holds whose release failed this pass (tried again at the next).
    pub failed: Vec<i64>,
}

/// The release path over the store, the cluster and the outbox.
#[derive(Clone)]
pub struct Releaser {
    store: Store,
    cluster: Arc<dyn Cluster>,
    outbox: Arc<Outbox>,
    /// How old a hold must be before Argo CD's `Synced` can end it ([`Releaser::with_grace`]).
    grace: Duration,
}

impl Releaser {
    /// Over the daemon's services.
    pub fn new(store: Store, cluster: Arc<dyn Cluster>, outbox: Arc<Outbox>) -> Releaser {
        Releaser {
            store,
            cluster,
            outbox,
            grace: GIT_GRACE,
        }
    }

    /// How old a hold must be before Git agreeing ends it: the daemon passes `gitops.watch`,
    /// which covers Argo CD's refresh (a `Synced` younger than that may predate the repair).
    pub fn with_grace(mut self, grace: Duration) -> Releaser {
        self.grace = grace;
        self
    }

    /// One pass at `now` (epoch ms) over every open hold: expired ones and those Git agrees
    /// with are released. A hold whose release fails does not stop the others.
    pub async fn pass(&self, now: i64) -> Result<Pass> {
        let mut pass = Pass::default();
        for hold in self.store.open_holds().await? {
            let why = match self.due(&hold, now).await {
                Some(why) => why,
                None => continue,
            };
            match self.release(&hold, why, now).await {
                Ok(Released::Now) => pass.released.push((hold.id, why)),
                Ok(Released::Already) => {}
                Err(Error::Cluster(_)) => pass.failed.push(hold.id),
                Err(e) => return Err(e),
            }
        }
        Ok(pass)
    }

    /// Why the hold should end now, if it should.
    async fn due(&self, hold: &Hold, now: i64) -> Option<&'static str> {
        if hold.hold.expires_at <= now {
            return Some("expiry");
        }
        let h = &hold.hold;
        // `Synced` right after the hold was placed is Argo CD's comparison from before the
        // repair (it re-compares every few minutes); only a hold older than the grace has been
        // compared against the repaired object.
        if now - h.created_at < self.grace_ms() {
            return None;
        }
        match self.cluster.git_agrees(&h.target, &h.controller).await {
            Ok(Some(true)) => {}
            Ok(_) => return None,
            Err(e) => {
                // Not knowing is not agreeing: the hold stays until the next pass or expiry.
                tracing::debug!(hold = hold.id, repair_target = %h.target, error = %e, "could not ask the controller whether Git agrees");
                return None;
            }
        }
        // `Synced` also when the live object went back to Git (someone pressed Sync): only
        // when the live object still holds every value of the repair does Git carry it.
        let fields: Vec<_> = h.change.changes.iter().map(|c| c.field.clone()).collect();
        let live = match self.cluster.observe(&h.target, &fields).await {
            Ok(live) => live,
            Err(e) => {
                tracing::debug!(hold = hold.id, repair_target = %h.target, error = %e, "could not read the held fields");
                return None;
            }
        };
        let kept = h.change.changes.iter().all(|c| {
            live.iter()
                .any(|state| state.field == c.field && c.holds(state))
        });
        kept.then_some("git")
    }

    fn grace_ms(&self) -> i64 {
        i64::try_from(self.grace.as_millis()).unwrap_or(i64::MAX)
    }

    /// Releases `hold` now, recorded as released by `by` (`expiry`, `git`, `api:<subject>`).
    ///
    /// Claim first, then act: the row is marked released (re-checking the expiry for
    /// `expiry`) before the cluster is touched, so a hold a job just extended, or one another
    /// replica released already (maybe with a newer hold on the object since), is never
    /// undone in the cluster. Only the claimant undoes the pause (unless another open hold
    /// still needs the same controller paused) and announces it. A cluster failure undoes the
    /// claim, is recorded on the hold (and escalated once after [`ESCALATE_AFTER_ATTEMPTS`])
    /// and returned.
    pub async fn release(&self, hold: &Hold, by: &str, now: i64) -> Result<Released> {
        let h = &hold.hold;
        // Read before the write transaction: an in-memory store has one connection.
        let mut event = self.event(EventKind::GitopsHoldReleased, hold, now).await?;
        if !self.store.claim_hold_release(hold.id, by, now).await? {
            return Ok(Released::Already);
        }
        let sharing = self.sharing(hold).await?;
        if let Some(other) = &sharing {
            tracing::info!(hold = hold.id, other = other.id, owner = %h.controller, "GitOps hold released; its controller stays paused for another open hold");
        } else if let Err(e) = self
            .cluster
            .release(&h.target, &h.controller, &h.placement)
            .await
        {
            return Err(self.failed(hold, e, now).await?);
        }
        if let Some(report) = event.gitops.as_mut() {
            report.released_by = by.to_string();
            if let Some(other) = &sharing {
                report.hold = format!(
                    "{} (kept: {} stays paused for the open hold {} of {})",
                    report.hold, h.controller, other.id, other.hold.target
                );
            }
        }
        let mut tx = self.store.begin_write().await?;
        self.outbox.enqueue(&mut tx, &event, &[], now).await?;
        tx.commit().await?;
        self.outbox.wake();
        tracing::info!(hold = hold.id, repair_target = %h.target, owner = %h.controller, by, "GitOps hold released: the controller reconciles the object again");
        Ok(Released::Now)
    }

    /// Another open hold that needs the same controller object paused, if any: undoing a pause
    /// of the Application or HelmRelease itself would end that hold too. (A hold by the
    /// object's own annotation pauses nothing else: it is always undone.)
    async fn sharing(&self, hold: &Hold) -> Result<Option<Hold>> {
        let shared = |m: HoldMechanism| {
            matches!(
                m,
                HoldMechanism::ArgoAutomatedOff | HoldMechanism::FluxHelmReleaseSuspend
            )
        };
        if !shared(hold.hold.placement.mechanism) {
            return Ok(None);
        }
        Ok(self.store.open_holds().await?.into_iter().find(|o| {
            o.id != hold.id
                && o.hold.controller == hold.hold.controller
                && shared(o.hold.placement.mechanism)
        }))
    }

    /// Undoes the claim of a hold whose cluster release failed, so it is retried (escalating
    /// once when it persists); returns the error to give back.
    async fn failed(&self, hold: &Hold, e: cluster::Error, now: i64) -> Result<Error> {
        let h = &hold.hold;
        let mut tx = self.store.begin_write().await?;
        let (attempts, reopened) = tx.unclaim_hold_release(hold.id, &e.to_string()).await?;
        tx.commit().await?;
        if reopened {
            // Cluster errors name objects and statuses, never credentials.
            tracing::warn!(hold = hold.id, repair_target = %h.target, owner = %h.controller, error = %e, "releasing a GitOps hold failed; retrying at the next pass");
        } else {
            tracing::warn!(hold = hold.id, repair_target = %h.target, owner = %h.controller, error = %e, "releasing a GitOps hold failed, and a newer hold on the object was opened meanwhile: this one stays released (the failure is recorded on it), the newer one is released in its turn");
        }
        if attempts == ESCALATE_AFTER_ATTEMPTS {
            self.escalate_stuck(hold, &e, now).await?;
        }
        Ok(e.into())
    }

    /// Tells people once that a hold cannot be released: the controller stays paused.
    async fn escalate_stuck(&self, hold: &Hold, error: &cluster::Error, now: i64) -> Result<()> {
        let mut event = self.event(EventKind::Escalation, hold, now).await?;
        event.reason = format!(
            "the GitOps hold {} could not be released after {ESCALATE_AFTER_ATTEMPTS} attempts \
             (last error: {error}): {} stays paused for {} until the hold is undone by hand ({}); \
             aiops keeps trying",
            hold.id,
            hold.hold.controller,
            hold.hold.target,
            hold.hold.placement.mechanism.describe(),
        );
        let mut tx = self.store.begin_write().await?;
        self.outbox.enqueue(&mut tx, &event, &[], now).await?;
        tx.commit().await?;
        self.outbox.wake();
        Ok(())
    }

    /// The message about `hold`: the app and labels of the alert whose repair placed it (so
    /// it routes as that repair's messages did), the target, the job, and the GitOps report.
    async fn event(&self, kind: EventKind, hold: &Hold, now: i64) -> Result<Event> {
        let h = &hold.hold;
        let job = self.store.job(h.job_id).await?;
        let alert = match &job {
            Some(j) => self.store.alert_event(j.alert_event_id).await?,
            None => None,
        };
        let mut event = match &alert {
            Some(a) => Event::for_alert(kind, &a.labels, &a.annotations, &a.generator_url),
            None => Event {
                kind,
                ..Event::default()
            },
        };
        if event.app.is_empty() {
            event.app = h.target.name.clone();
        }
        event.namespace = h.target.namespace.clone();
        event.target = h.target.to_string();
        // A job pruned by retention is no longer referenced (the outbox row points to jobs).
        event.job_id = job.as_ref().map(|j| j.id);
        if let Some(j) = &job {
            event.rule = j.rule.clone();
            event.action = j.playbook.clone();
            event.mode = j.spec.mode.as_str().to_string();
        }
        event.at = store::rfc3339::format(now).unwrap_or_default();
        event.gitops = Some(GitopsReport {
            owner: h.controller.to_string(),
            change: h.change.instruction(),
            hold: h.placement.mechanism.describe().to_string(),
            hold_until: store::rfc3339::format(h.expires_at).unwrap_or_default(),
            hold_id: Some(hold.id),
            ..GitopsReport::default()
        });
        Ok(event)
    }

    /// Runs passes every `every` (the first at once) until aborted.
    pub fn spawn(self, every: Duration) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match self.pass(store::now_ms()).await {
                    Ok(p) if !p.failed.is_empty() => {
                        tracing::warn!(
                            failed = p.failed.len(),
                            released = p.released.len(),
                            "some GitOps holds could not be released; retrying at the next pass"
                        );
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "GitOps release pass failed; retrying at the next pass")
                    }
                }
            }
        })
    }
}

#[cfg(test)]
mod tests;
