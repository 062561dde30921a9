//! The operations, applied to the in-memory state as the API server, the controllers and
//! kubectl would: restart, rollback, memory, rollout status, replicas, scale, last terminations
//! and the cleanup of Failed pods and finished Jobs.
//!
//! Synchronous and lock-free by themselves: [`super::MemoryCluster`] takes the lock and calls
//! them, so each operation sees and leaves one consistent state.

use std::time::{Duration, SystemTime};

use super::gitops::{AIOPS, restored_images};
use super::state::{Container, Job, Kind, MemorySettings, Phase, Pod, RolloutOutcome, Workload};
use super::{AUTO_REPAIR_ANNOTATION, Inner};
use crate::cluster::quantity::format_memory;
use crate::cluster::{Error, Memory, Replicas, Result, Rollback, RolloutStatus, Scaled, Target};

/// How many old revisions a Deployment keeps, as `spec.revisionHistoryLimit` defaults to.
const REVISION_HISTORY_LIMIT: usize = 10;

impl Workload {
    /// `namespace/Kind/name`, as in actions.
    pub(super) fn key(&self) -> String {
        format!("{}/{}/{}", self.namespace, self.kind.as_str(), self.name)
    }

    pub(super) fn describe(&self) -> String {
        format!("{} {}/{}", self.kind.as_str(), self.namespace, self.name)
    }

    /// Refuses changes to a workload opted out of repairs.
    pub(super) fn check_enabled(&self) -> Result<()> {
        match self.annotations.get(AUTO_REPAIR_ANNOTATION) {
            Some(v) if v.trim().eq_ignore_ascii_case("disabled") => Err(Error::Refused(format!(
                "{} is annotated {AUTO_REPAIR_ANNOTATION}=disabled",
                self.describe()
            ))),
            _ => Ok(()),
        }
    }

    pub(super) fn check_not_paused(&self) -> Result<()> {
        if self.paused {
            return Err(Error::Refused(format!(
                "deployment {}/{} is paused",
                self.namespace, self.name
            )));
        }
        Ok(())
    }

    pub(super) fn max_revision(&self) -> i64 {
        self.history
            .iter()
            .copied()
            .chain([self.revision])
            .max()
            .unwrap_or(self.revision)
    }

    /// A new pod template: the current revision joins the history, the template gets a new
    /// revision number and a rollout starts.
    pub(super) fn new_template(&mut self, containers: Vec<Container>) {
        let old = std::mem::replace(&mut self.containers, containers);
        self.templates.insert(self.revision, old);
        self.history.push(self.revision);
        self.revision = self.max_revision() + 1;
        self.prune_history();
        self.current_rollout = self.rollout;
    }

    pub(super) fn prune_history(&mut self) {
        self.history.sort_unstable();
        while self.history.len() > REVISION_HISTORY_LIMIT {
            let oldest = self.history.remove(0);
            self.templates.remove(&oldest);
        }
    }

    /// Replica counts given the latest rollout: complete ⇒ all; stuck ⇒ all updated, one of
    /// them never available; fails ⇒ all updated, none available.
    pub(super) fn replicas(&self) -> Replicas {
        let n = self.replicas;
        let available = match self.current_rollout {
            RolloutOutcome::Complete => n,
            RolloutOutcome::Stuck => (n - 1).max(0),
            RolloutOutcome::Fails => 0,
        };
        Replicas {
            desired: n,
            ready: available,
            available,
            updated: n,
        }
    }

    pub(super) fn rollout_status(&self) -> RolloutStatus {
        let r = self.replicas();
        let name = &self.name;
        let kind = self.kind.kubectl_name();
        let outcome = if r.available == r.desired {
            RolloutOutcome::Complete
        } else {
            self.current_rollout
        };
        let (complete, failed, message) = match (outcome, self.kind) {
            (RolloutOutcome::Complete, Kind::StatefulSet) => (
                true,
                false,
                format!(
                    "statefulset rolling update complete {} pods at revision {name}-{}...",
                    r.desired, self.revision
                ),
            ),
            (RolloutOutcome::Complete, _) => (
                true,
                false,
                format!("{kind} \"{name}\" successfully rolled out"),
            ),
            (RolloutOutcome::Stuck, Kind::StatefulSet) => (
                false,
                false,
                format!("Waiting for {} pods to be ready...", r.desired - r.ready),
            ),
            (RolloutOutcome::Stuck, _) => {
                let unit = if self.kind == Kind::Deployment {
                    "replicas"
                } else {
                    "pods"
                };
                (
                    false,
                    false,
                    format!(
                        "Waiting for {kind} \"{name}\" rollout to finish: {} of {} updated {unit} are available...",
                        r.available, r.updated
                    ),
                )
            }
            (RolloutOutcome::Fails, Kind::Deployment) => (
                false,
                true,
                format!("deployment \"{name}\" exceeded its progress deadline"),
            ),
            (RolloutOutcome::Fails, _) => (
                false,
                true,
                format!(
                    "{kind} \"{name}\" rollout is failing: {} of {} updated pods are available",
                    r.available, r.updated
                ),
            ),
        };
        RolloutStatus {
            complete,
            failed,
            message,
        }
    }
}

pub(super) fn age(now: SystemTime, finished_at: SystemTime) -> Duration {
    now.duration_since(finished_at).unwrap_or_default()
}

impl Inner {
    pub(super) fn workload(&self, target: &Target) -> Result<&Workload> {
        self.state
            .workloads
            .iter()
            .find(|w| {
                w.namespace == target.namespace
                    && w.name == target.name
                    && w.kind.as_str().eq_ignore_ascii_case(&target.kind)
            })
            .ok_or_else(|| {
                Error::NotFound(format!(
                    "{} {}/{}",
                    target.kind, target.namespace, target.name
                ))
            })
    }

    pub(super) fn workload_mut(&mut self, target: &Target) -> Result<&mut Workload> {
        self.workload(target)?;
        Ok(self
            .state
            .workloads
            .iter_mut()
            .find(|w| {
                w.namespace == target.namespace
                    && w.name == target.name
                    && w.kind.as_str().eq_ignore_ascii_case(&target.kind)
            })
            .expect("found above"))
    }

    pub(super) fn restart(&mut self, target: &Target, dry_run: bool) -> Result<()> {
        let w = self.workload_mut(target)?;
        w.check_enabled()?;
        w.check_not_paused()?;
        if dry_run {
            return Ok(());
        }
        let before = w.clone();
        let containers = w.containers.clone();
        w.restarted_at = Some(format!("{:.0}", k8s_openapi::jiff::Timestamp::now()));
        w.new_template(containers);
        w.take_changed(&before, AIOPS, "Update");
        let action = format!("restart {}", w.key());
        self.actions.push(action);
        Ok(())
    }

    pub(super) fn rollback(&mut self, target: &Target, dry_run: bool) -> Result<Rollback> {
        let w = self.workload_mut(target)?;
        w.check_enabled()?;
        if w.kind != Kind::Deployment {
            return Err(Error::Refused(
                "rollback is only supported for Deployments".to_owned(),
            ));
        }
        w.check_not_paused()?;
        let Some(previous) = w.history.iter().copied().max() else {
            return Ok(Rollback {
                restores: Vec::new(),
                done: false,
                revision: None,
                reason: format!(
                    "no previous revision of deployment {}/{}",
                    w.namespace, w.name
                ),
            });
        };
        let restores = match w.templates.get(&previous) {
            Some(template) => restored_images(&w.containers, template),
            None => Vec::new(),
        };
        if !dry_run {
            // As the controller does: the old ReplicaSet becomes current under a new revision
            // number; the old number leaves the history and the current one joins it.
            let before = w.clone();
            let template = w
                .templates
                .remove(&previous)
                .unwrap_or_else(|| w.containers.clone());
            w.history.retain(|r| *r != previous);
            w.new_template(template);
            w.take_changed(&before, AIOPS, "Update");
            let action = format!("rollback {} to revision {previous}", w.key());
            self.actions.push(action);
        }
        Ok(Rollback {
            restores,
            done: true,
            revision: Some(previous),
            reason: String::new(),
        })
    }

    pub(super) fn memory(&self, target: &Target, container: Option<&str>) -> Result<Memory> {
        let w = self.workload(target)?;
        let c = match container {
            None => w
                .containers
                .first()
                .ok_or_else(|| Error::NotFound(format!("containers of {}", w.describe())))?,
            Some(name) => w
                .containers
                .iter()
                .find(|c| c.name == name)
                .ok_or_else(|| Error::NotFound(format!("container {name} in {}", w.describe())))?,
        };
        Ok(Memory {
            container: c.name.clone(),
            request: c.memory.request,
            limit: c.memory.limit,
        })
    }

    pub(super) fn set_memory(
        &mut self,
        target: &Target,
        container: &str,
        request: Option<i64>,
        limit: i64,
        dry_run: bool,
    ) -> Result<()> {
        let w = self.workload_mut(target)?;
        w.check_enabled()?;
        w.check_not_paused()?;
        let what = w.describe();
        let index = w
            .containers
            .iter()
            .position(|c| c.name == container)
            .ok_or_else(|| Error::NotFound(format!("container {container} in {what}")))?;
        if limit <= 0 || request.is_some_and(|r| r < 0) {
            return Err(Error::Refused(format!(
                "memory must be positive (container {container} of {what})"
            )));
        }
        let new_request = request.or(w.containers[index].memory.request);
        if let Some(r) = new_request
            && limit < r
        {
            return Err(Error::Refused(format!(
                "limit below request: limit {} < request {} (container {container} of {what})",
                format_memory(limit),
                format_memory(r)
            )));
        }
        if dry_run {
            return Ok(());
        }
        let settings = MemorySettings {
            request: new_request,
            limit: Some(limit),
        };
        if w.containers[index].memory != settings {
            // A template change: a new revision and a rollout. Patching identical values is a
            // no-op for the API server; the call is still recorded below.
            let before = w.clone();
            let mut containers = w.containers.clone();
            containers[index].memory = settings;
            w.new_template(containers);
            w.take_changed(&before, AIOPS, "Update");
        }
        let action = format!(
            "set memory {} container {container}: request {}, limit {}",
            w.key(),
            new_request.map_or_else(|| "unset".to_owned(), format_memory),
            format_memory(limit)
        );
        self.actions.push(action);
        Ok(())
    }

    /// `kubectl scale`: a new spec.replicas, not a new template (no revision, no rollout of the
    /// template); the replicas follow the workload's current rollout state.
    pub(super) fn scale(
        &mut self,
        target: &Target,
        replicas: i64,
        dry_run: bool,
    ) -> Result<Scaled> {
        let w = self.workload_mut(target)?;
        w.check_enabled()?;
        if w.kind == Kind::DaemonSet {
            return Err(Error::Refused(format!(
                "{} runs one pod per node: it has no replica count to scale",
                w.describe()
            )));
        }
        if replicas < 0 {
            return Err(Error::Refused(format!(
                "replicas must not be negative (got {replicas} for {})",
                w.describe()
            )));
        }
        let from = w.replicas;
        if dry_run {
            return Ok(Scaled { from, to: replicas });
        }
        let before = w.clone();
        w.replicas = replicas;
        w.take_changed(&before, AIOPS, "Update");
        let action = format!("scale {} from {from} to {replicas} replicas", w.key());
        self.actions.push(action);
        Ok(Scaled { from, to: replicas })
    }

    pub(super) fn last_terminations(&self, target: &Target) -> Result<Vec<String>> {
        let w = self.workload(target)?;
        let prefix = format!("{}-", w.name);
        let mut reasons: Vec<String> = Vec::new();
        let pods = self.state.pods.iter().filter(|p| {
            p.namespace == w.namespace
                && match &p.owner {
                    Some(owner) => *owner == w.name,
                    None => p.name.starts_with(&prefix),
                }
        });
        for reason in pods.flat_map(|p| &p.terminations) {
            if !reasons.contains(reason) {
                reasons.push(reason.clone());
            }
        }
        Ok(reasons)
    }

    pub(super) fn delete_failed_pods(
        &mut self,
        namespace: &str,
        older_than: Duration,
        dry_run: bool,
    ) -> u64 {
        let now = SystemTime::now();
        let doomed = |p: &Pod| {
            p.namespace == namespace
                && p.phase == Phase::Failed
                && p.finished_at.is_none_or(|at| age(now, at) >= older_than)
        };
        let count = self.state.pods.iter().filter(|p| doomed(p)).count() as u64;
        if !dry_run {
            let (gone, kept) = std::mem::take(&mut self.state.pods)
                .into_iter()
                .partition(doomed);
            self.state.pods = kept;
            let gone: Vec<Pod> = gone;
            for p in gone {
                let reason = if p.reason.is_empty() {
                    "Failed"
                } else {
                    &p.reason
                };
                self.actions
                    .push(format!("delete pod {}/{} ({reason})", p.namespace, p.name));
            }
        }
        count
    }

    /// Deletes finished Jobs; as `kubectl delete job` (background propagation), their pods go too.
    pub(super) fn delete_finished_jobs(
        &mut self,
        namespace: &str,
        older_than: Duration,
        dry_run: bool,
    ) -> u64 {
        let now = SystemTime::now();
        let doomed = |j: &Job| {
            j.namespace == namespace && j.finished_at.is_some_and(|at| age(now, at) >= older_than)
        };
        let count = self.state.jobs.iter().filter(|j| doomed(j)).count() as u64;
        if !dry_run {
            let (gone, kept): (Vec<Job>, Vec<Job>) = std::mem::take(&mut self.state.jobs)
                .into_iter()
                .partition(doomed);
            self.state.jobs = kept;
            for j in gone {
                self.state.pods.retain(|p| {
                    !(p.namespace == j.namespace && p.owner.as_deref() == Some(j.name.as_str()))
                });
                self.actions
                    .push(format!("delete job {}/{}", j.namespace, j.name));
            }
        }
        count
    }
}
