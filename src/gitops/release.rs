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
use crate::notify::{Event, EventKind, GitopsReport, Outbox};
use crate::store::{self, Hold, Store};

/// Failed release attempts after which people are told (about 5 minutes at the default
/// `gitops.release_interval` of 30 s): a transient API-server hiccup never reaches anyone,
/// a lasting one does while the hold is still young.
pub const ESCALATE_AFTER_ATTEMPTS: i64 = 10;

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
}

impl Releaser {
    /// Over the daemon's services.
    pub fn new(store: Store, cluster: Arc<dyn Cluster>, outbox: Arc<Outbox>) -> Releaser {
        Releaser {
            store,
            cluster,
            outbox,
        }
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
        match self.cluster.git_agrees(&h.target, &h.controller).await {
            Ok(Some(true)) => Some("git"),
            Ok(_) => None,
            Err(e) => {
                // Not knowing is not agreeing: the hold stays until the next pass or expiry.
                tracing::debug!(hold = hold.id, target = %h.target, error = %e, "could not ask the controller whether Git agrees");
                None
            }
        }
    }

    /// Releases `hold` now, recorded as released by `by` (`expiry`, `git`, `api:<subject>`):
    /// undoes the pause in the cluster, marks the row, and the caller that marked it announces
    /// it. A cluster failure is recorded on the hold (and escalated once after
    /// [`ESCALATE_AFTER_ATTEMPTS`]) and returned.
    pub async fn release(&self, hold: &Hold, by: &str, now: i64) -> Result<Released> {
        let h = &hold.hold;
        if let Err(e) = self
            .cluster
            .release(&h.target, &h.controller, &h.placement)
            .await
        {
            // Cluster errors name objects and statuses, never credentials.
            tracing::warn!(hold = hold.id, target = %h.target, owner = %h.controller, error = %e, "releasing a GitOps hold failed; retrying at the next pass");
            let attempts = self
                .store
                .hold_release_failed(hold.id, &e.to_string())
                .await?;
            if attempts == Some(ESCALATE_AFTER_ATTEMPTS) {
                self.escalate_stuck(hold, &e, now).await?;
            }
            return Err(e.into());
        }
        // Read before the write transaction: an in-memory store has one connection.
        let mut event = self.event(EventKind::GitopsHoldReleased, hold, now).await?;
        if let Some(report) = event.gitops.as_mut() {
            report.released_by = by.to_string();
        }
        let mut tx = self.store.begin_write().await?;
        if !tx.mark_hold_released(hold.id, by, now).await? {
            tx.rollback().await?;
            return Ok(Released::Already);
        }
        self.outbox.enqueue(&mut tx, &event, &[], now).await?;
        tx.commit().await?;
        self.outbox.wake();
        tracing::info!(hold = hold.id, target = %h.target, owner = %h.controller, by, "GitOps hold released: the controller reconciles the object again");
        Ok(Released::Now)
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
