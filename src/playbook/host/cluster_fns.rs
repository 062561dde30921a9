//! Host functions that read or change the cluster: `restart`, `rollout_status`, `wait_rollout`,
//! `rollback`, `memory`, `set_memory`, `last_terminations`, cleanup, `replicas`.
//!
//! Each change is recorded as a step, reported as a Kubernetes Event and remembered as touched
//! (verification checks its rollout); dry runs go to the backend as dry runs.

use std::time::Instant;

use rhai::{Dynamic, Engine, EvalAltResult, INT, Map};

use super::args::{bytes_arg, duration_arg, opt_int, target_of};
use super::context::ctx;
use super::errors::deadline_reached;
use super::gitops_fns::gate;
use crate::cluster::{self, quantity};
use crate::gitops::{Field, FieldChange};
use crate::rules::ChangeKind;

pub(super) fn status_map(s: &cluster::RolloutStatus) -> Map {
    let mut m = Map::new();
    m.insert("complete".into(), s.complete.into());
    m.insert("failed".into(), s.failed.into());
    m.insert("message".into(), s.message.clone().into());
    m.insert("reason".into(), s.message.clone().into());
    m
}

pub(super) fn wait_rollout(t: Map, timeout: &str) -> Result<Map, Box<EvalAltResult>> {
    let c = ctx()?;
    let target = target_of(&t)?;
    let limit = duration_arg(timeout)?;
    let until = Instant::now() + limit.min(c.remaining());
    let mut retrying = false;
    loop {
        // A passing API error (429, 5xx, a timeout) while the rollout runs is no reason to
        // abandon a change already applied: keep polling until the wait's own limit.
        let status = match c.try_call(c.cluster.rollout_status(&target)) {
            Ok(s) => s,
            Err(e) if e.is_retryable() && Instant::now() < until && !c.remaining().is_zero() => {
                if !retrying {
                    c.record(
                        "wait_rollout",
                        format!("rollout of {target}: {e}; retrying"),
                    );
                    retrying = true;
                }
                let pause = c
                    .settings
                    .rollout_poll
                    .min(until.saturating_duration_since(Instant::now()));
                c.handle.block_on(tokio::time::sleep(pause));
                continue;
            }
            Err(e) => return Err(c.to_script_error("rollout status", e)),
        };
        if !(status.complete || status.failed || c.dry_run) && c.remaining().is_zero() {
            // The run's deadline, not the wait's own timeout, cut this wait short.
            c.record(
                "wait_rollout",
                format!(
                    "rollout of {target}: still waiting at the run's deadline ({})",
                    status.message
                ),
            );
            return Err(deadline_reached());
        }
        if status.complete || status.failed || c.dry_run || Instant::now() >= until {
            let verdict = if status.complete {
                "complete"
            } else if status.failed {
                "failed"
            } else if c.dry_run {
                "not waited for (dry run)"
            } else {
                "not finished in time"
            };
            c.record(
                "wait_rollout",
                format!("rollout of {target}: {verdict} ({})", status.message),
            );
            return Ok(status_map(&status));
        }
        let pause = c
            .settings
            .rollout_poll
            .min(until.saturating_duration_since(Instant::now()));
        c.handle.block_on(tokio::time::sleep(pause));
    }
}

/// Registers the cluster functions.
pub(super) fn register(engine: &mut Engine) {
    engine.register_fn("restart", |t: Map| -> Result<(), Box<EvalAltResult>> {
        let c = ctx()?;
        let target = target_of(&t)?;
        // Git holds nothing of a restart (the restartedAt annotation is live-only).
        let gate = gate(&c, "restart", &target, ChangeKind::Restart, &|_| {
            Ok(Some((Vec::new(), None)))
        })?;
        gate.checked(&c, c.call("restart", c.cluster.restart(&target, c.dry_run)))?;
        gate.applied(&c, &[Field::RestartedAt]);
        c.record("restart", format!("restart {target}"));
        c.event(
            &target,
            "AutoRepairRestart",
            &format!("rollout restart of {target}"),
        );
        c.touch(&target);
        Ok(())
    });
    engine.register_fn(
        "rollout_status",
        |t: Map| -> Result<Map, Box<EvalAltResult>> {
            let c = ctx()?;
            let target = target_of(&t)?;
            Ok(status_map(&c.call(
                "rollout status",
                c.cluster.rollout_status(&target),
            )?))
        },
    );
    engine.register_fn("wait_rollout", |t: Map, timeout: &str| {
        wait_rollout(t, timeout)
    });
    engine.register_fn("wait_rollout", |t: Map| wait_rollout(t, "5m"));
    engine.register_fn("rollback", |t: Map| -> Result<Map, Box<EvalAltResult>> {
        let c = ctx()?;
        let target = target_of(&t)?;
        // The images the rollback would put back are what Git would have to say.
        let gate = gate(&c, "rollback", &target, ChangeKind::Rollback, &|c| {
            let r = c.call("rollback", c.cluster.rollback(&target, true))?;
            Ok(r.done.then_some((r.restores, r.revision)))
        })?;
        let r = gate.checked(
            &c,
            c.call("rollback", c.cluster.rollback(&target, c.dry_run)),
        )?;
        if r.done {
            let fields: Vec<Field> = r.restores.iter().map(|f| f.field.clone()).collect();
            gate.applied(&c, &fields);
            c.record(
                "rollback",
                format!(
                    "roll back {target} to revision {}",
                    r.revision.map_or("?".into(), |v| v.to_string())
                ),
            );
            c.event(
                &target,
                "AutoRepairRollback",
                &format!(
                    "rollback of {target} to revision {}",
                    r.revision.map_or("?".into(), |v| v.to_string())
                ),
            );
            c.touch(&target);
        } else {
            gate.abandon(&c);
            c.record(
                "rollback_refused",
                format!("no rollback of {target}: {}", r.reason),
            );
        }
        let mut m = Map::new();
        m.insert("done".into(), r.done.into());
        m.insert("revision".into(), opt_int(r.revision));
        m.insert("reason".into(), r.reason.into());
        Ok(m)
    });
    fn memory(t: Map, container: Option<&str>) -> Result<Map, Box<EvalAltResult>> {
        let c = ctx()?;
        let target = target_of(&t)?;
        let mem = c.call("memory", c.cluster.memory(&target, container))?;
        let mut m = Map::new();
        m.insert("container".into(), mem.container.into());
        m.insert("request".into(), opt_int(mem.request));
        m.insert("limit".into(), opt_int(mem.limit));
        Ok(m)
    }
    engine.register_fn("memory", |t: Map| memory(t, None));
    engine.register_fn("memory", |t: Map, container: &str| {
        memory(t, Some(container))
    });
    engine.register_fn(
        "set_memory",
        |t: Map,
         container: &str,
         request: Dynamic,
         limit: Dynamic|
         -> Result<(), Box<EvalAltResult>> {
            let c = ctx()?;
            let target = target_of(&t)?;
            let request = if request.is_unit() {
                None
            } else {
                Some(bytes_arg(&request, "set_memory request")?)
            };
            let limit = bytes_arg(&limit, "set_memory limit")?;
            let mut fields = vec![Field::MemoryLimit {
                container: container.to_string(),
            }];
            let mut planned = vec![FieldChange {
                field: fields[0].clone(),
                value: quantity::format_memory(limit),
            }];
            if let Some(request) = request {
                fields.push(Field::MemoryRequest {
                    container: container.to_string(),
                });
                planned.push(FieldChange {
                    field: fields[1].clone(),
                    value: quantity::format_memory(request),
                });
            }
            let gate = gate(&c, "set_memory", &target, ChangeKind::Memory, &|_| {
                Ok(Some((planned.clone(), None)))
            })?;
            gate.checked(
                &c,
                c.call(
                    "set_memory",
                    c.cluster
                        .set_memory(&target, container, request, limit, c.dry_run),
                ),
            )?;
            gate.applied(&c, &fields);
            c.record(
                "set_memory",
                format!(
                    "set memory of {target} container {container}: request {}, limit {}",
                    request.map_or("unchanged".into(), quantity::format_memory),
                    quantity::format_memory(limit)
                ),
            );
            c.event(
                &target,
                "AutoRepairMemory",
                &format!(
                    "memory limit of container {container} set to {}",
                    quantity::format_memory(limit)
                ),
            );
            c.touch(&target);
            Ok(())
        },
    );
    engine.register_fn(
        "last_terminations",
        |t: Map| -> Result<rhai::Array, Box<EvalAltResult>> {
            let c = ctx()?;
            let target = target_of(&t)?;
            let reasons = c.call("last terminations", c.cluster.last_terminations(&target))?;
            Ok(reasons.into_iter().map(Dynamic::from).collect())
        },
    );
    engine.register_fn(
        "delete_failed_pods",
        |ns: &str, age: &str| -> Result<INT, Box<EvalAltResult>> {
            let c = ctx()?;
            let age = duration_arg(age)?;
            let n = c.call(
                "delete failed pods",
                c.cluster.delete_failed_pods(ns, age, c.dry_run),
            )?;
            c.record(
                "delete_failed_pods",
                format!(
                    "delete {n} Failed/Evicted pods older than {} in {ns}",
                    humantime::format_duration(age)
                ),
            );
            if n > 0
                && let Some((t, _)) = &c.event_context
            {
                c.event(
                    t,
                    "AutoRepairCleanup",
                    &format!("deleted {n} Failed/Evicted pods in {ns}"),
                );
            }
            Ok(n as INT)
        },
    );
    engine.register_fn(
        "delete_finished_jobs",
        |ns: &str, age: &str| -> Result<INT, Box<EvalAltResult>> {
            let c = ctx()?;
            let age = duration_arg(age)?;
            let n = c.call(
                "delete finished jobs",
                c.cluster.delete_finished_jobs(ns, age, c.dry_run),
            )?;
            c.record(
                "delete_finished_jobs",
                format!(
                    "delete {n} finished Jobs older than {} in {ns}",
                    humantime::format_duration(age)
                ),
            );
            if n > 0
                && let Some((t, _)) = &c.event_context
            {
                c.event(
                    t,
                    "AutoRepairCleanup",
                    &format!("deleted {n} finished Jobs in {ns}"),
                );
            }
            Ok(n as INT)
        },
    );
    engine.register_fn("replicas", |t: Map| -> Result<Map, Box<EvalAltResult>> {
        let c = ctx()?;
        let target = target_of(&t)?;
        let r = c.call("replicas", c.cluster.replicas(&target))?;
        let mut m = Map::new();
        m.insert("desired".into(), Dynamic::from_int(r.desired));
        m.insert("ready".into(), Dynamic::from_int(r.ready));
        m.insert("available".into(), Dynamic::from_int(r.available));
        m.insert("updated".into(), Dynamic::from_int(r.updated));
        Ok(m)
    });
}
