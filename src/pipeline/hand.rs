//! Repairs run by hand: a person (an editor's API token, `POST /api/repairs`) asks for a named
//! playbook against a target or a stored alert, and it is decided exactly as an alert's match
//! is: [`guard::decide`] with the rule that governs it, in a write transaction of its own that
//! takes the intake's lock, so the storm count and the queue bound stay exact across replicas.
//! A job runs through the normal executor; a refusal is a recorded decision with the guard's
//! reason.
//!
//! Two steps, so the caller can check what the plan touches (the alert's app, the target's
//! namespace) before anything is written: [`Pipeline::plan_by_hand`] reads and checks, and
//! [`Pipeline::run_by_hand`] decides and records.
//!
//! **Which rule governs a run.** Cooldowns and budgets are counted per rule × target, so a run
//! by hand answers to the rule that would have run that playbook: the first rule, in rules
//! order, that runs it as its own playbook and matches the alert (a run from an alert), else
//! the first rule that runs it at all. That rule's cooldown and budget hold the run back (a
//! restart by hand right after the `restart` rule acted is refused `cooldown`) and the run
//! counts against them; its escalation chain, verification, timeout, dry run and GitOps policy
//! apply. For a run from an alert, the rule's `target:` resolves the target from the alert's
//! labels, as for the alert's own repair. Not taken from it: `wait` (a person asked now) and,
//! for a run against a target, `verify.resolved_within` (no alert will resolve). A playbook
//! no rule runs is governed by [`adhoc_rule_name`]: no cooldown, budget or chain, verified by
//! default.
//!
//! **Which mode.** See [`HandRun::mode`]: the trust settings' mode for that rule, or a more
//! cautious one the person asks for, never a bolder one.
//!
//! **A run against a target** has no alert, but jobs and decisions point to an alert
//! occurrence: the request itself is recorded as one ([`MANUAL_ALERTNAME`], labels naming the
//! target, marked `requested_by`; `store::hand`), which no alert listing shows.

use std::time::Duration;

use super::{Pipeline, Plan, Refusal, RuleVerdict, guard};
use crate::alert::{Alert, Labels, Status};
use crate::job::{ByHand, Params};
use crate::rules::{Mode, Rule, Source as LabelSource, Target, TargetSpec};
use crate::store::{self, JobState};

/// The `alertname` of the occurrence a run against a target is recorded as: what the job,
/// its messages and the console show as its alert.
pub const MANUAL_ALERTNAME: &str = "ManualRepair";

/// The rule name a run by hand is recorded under when no rule runs its playbook. The `:` is
/// outside the rule names' alphabet (`[a-z0-9_.-]`), so it can never share a loaded rule's
/// cooldown or budget.
pub fn adhoc_rule_name(playbook: &str) -> String {
    format!("by-hand:{playbook}")
}

/// What a run by hand acts on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// This workload ([`parse_target`] checks it).
    Target(Target),
    /// The stored alert occurrence of this id (as `GET /api/alerts/{id}` names it), firing
    /// now: its labels resolve the target, and the job belongs to it (its resolve cancels the
    /// job while it waits, its time to recover is recorded, the playbook sees its labels).
    Alert(i64),
}

/// A request to run a playbook by hand, as the API read it; checked by
/// [`Pipeline::plan_by_hand`].
#[derive(Clone, Debug)]
pub struct HandRun {
    /// A loaded playbook's name.
    pub playbook: String,
    /// The target, or the alert it comes from.
    pub source: Source,
    /// Parameters; each key given replaces the governing rule's, the others keep the rule's
    /// (its caps, `max_limit` say, stay unless named).
    pub params: Option<Params>,
    /// The trust mode asked for. `None` takes what the trust settings give the governing rule
    /// (`trust.mode_of`: its `mode:`, else `trust.default_mode`; for a playbook no rule runs,
    /// `trust.default_mode`), so a run by hand is trusted exactly as the same repair on an
    /// alert would be. A person may ask for a more cautious mode (`shadow` < `approve` <
    /// `auto`), never a bolder one: an editor's token is no approver, so a rule that waits for
    /// approval waits for it by hand too ([`Error::ModeAboveTrust`]).
    pub mode: Option<Mode>,
    /// Who asked (the token's subject) and why.
    pub by: ByHand,
}

/// A checked run by hand: what will be decided, before anything is written.
#[derive(Clone, Debug)]
pub struct HandPlan {
    /// The governing rule, with the run's target, parameters and mode put in (see the module
    /// doc for what is and is not taken from it).
    rule: Rule,
    /// The stored alert: its id and contents; `None` for a run against a target.
    alert: Option<(i64, Alert)>,
    target: Target,
    mode: Mode,
    by: ByHand,
}

impl HandPlan {
    /// The rule the run is recorded under and whose guards hold it back.
    pub fn rule(&self) -> &str {
        &self.rule.name
    }

    /// The workload it acts on.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// The trust mode it will run in.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The playbook it runs.
    pub fn playbook(&self) -> &str {
        &self.rule.playbook
    }

    /// The id of the stored alert it comes from, if any.
    pub fn alert_id(&self) -> Option<i64> {
        self.alert.as_ref().map(|(id, _)| *id)
    }
}

/// What came of a run by hand.
#[derive(Clone, Debug)]
pub enum HandOutcome {
    /// A job was created; the executor takes it from there.
    Job {
        /// The job's id (`GET /api/repairs/{id}`).
        job_id: i64,
        /// `queued`, or `awaiting_approval` in approve mode.
        state: JobState,
        /// What it will do.
        plan: Plan,
    },
    /// A guard refused; the refusal is recorded as a decision.
    Refused {
        /// Which guard.
        reason: Refusal,
        /// The guard's words.
        detail: String,
    },
}

/// Why a run by hand was not decided: nothing was written. All but `Store` are the caller's
/// to fix.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The target is not `namespace/Kind/name` of valid Kubernetes names and a supported kind.
    #[error("target {given:?}: {problem}")]
    MalformedTarget {
        /// What was given.
        given: String,
        /// What is wrong with it.
        problem: String,
    },
    /// No loaded playbook has this name.
    #[error("no playbook {playbook:?} is loaded")]
    UnknownPlaybook {
        /// The name asked for.
        playbook: String,
    },
    /// No stored alert has this id, or the caller may not see it (answered alike, so another
    /// app's alert is not disclosed).
    #[error("alert not found")]
    UnknownAlert,
    /// The target is in a namespace the caller may not see (answered as a missing app).
    #[error("app not found")]
    HiddenApp,
    /// The alert is not firing now (a resolve notification, or an occurrence that ended): its
    /// repair could neither be verified by its resolve nor approved (approvals refuse a
    /// resolved alert's repair).
    #[error(
        "alert {id} is not firing now (a resolve, or an occurrence that ended); run against its target instead"
    )]
    NotFiring {
        /// The alert id.
        id: i64,
    },
    /// The alert's labels name no target for the governing rule.
    #[error(
        "the labels of alert {id} name no namespace, kind and name for rule {rule}'s target; give target instead"
    )]
    NoTarget {
        /// The alert id.
        id: i64,
        /// The governing rule.
        rule: String,
    },
    /// The alert's labels resolve to names Kubernetes would not accept.
    #[error("the labels of alert {id} name an invalid target: {problem}")]
    InvalidTarget {
        /// The alert id.
        id: i64,
        /// What is wrong.
        problem: String,
    },
    /// The mode asked for is bolder than the trust settings give this repair.
    #[error(
        "rule {rule} runs in {allowed} mode under the trust settings; a run by hand may ask for that or a more cautious mode (shadow < approve < auto), not {asked}"
    )]
    ModeAboveTrust {
        /// The governing rule.
        rule: String,
        /// What the trust settings give it.
        allowed: Mode,
        /// What was asked for.
        asked: Mode,
    },
    /// Approve mode was asked for, but nobody may approve this rule's repairs.
    #[error(
        "nobody may approve rule {rule}'s repairs (approval.approvers, trust.approval.approvers): a run in approve mode would wait until it expires"
    )]
    NoApprovers {
        /// The governing rule.
        rule: String,
    },
    /// A real repair found the queue full outside a guard's decision (never expected: the
    /// guard refuses a run by hand `queue_full`); nothing was recorded.
    #[error("job queue full ({capacity} jobs queued or waiting)")]
    QueueFull {
        /// `jobs.queue_capacity`.
        capacity: usize,
    },
    /// The store failed: nothing was recorded; a retry may work.
    #[error("store unavailable: {0}")]
    Store(#[from] store::Error),
}

/// `namespace/Kind/name` (as `GET /api/repairs?target=` spells it) as a [`Target`]: three
/// non-empty parts, a supported kind in any letter case (stored in its canonical spelling), and
/// names an API path can hold.
pub fn parse_target(given: &str) -> Result<Target, Error> {
    let bad = |problem: String| Error::MalformedTarget {
        given: given.to_string(),
        problem,
    };
    let parts: Vec<&str> = given.split('/').collect();
    let [namespace, kind, name] = parts[..] else {
        return Err(bad("write it namespace/Kind/name".into()));
    };
    if [namespace, kind, name].iter().any(|p| p.is_empty()) {
        return Err(bad("write it namespace/Kind/name".into()));
    }
    let kind = crate::rules::canonical_kind(kind).ok_or_else(|| {
        bad(format!(
            "kind {kind:?} is not one of {}",
            crate::rules::SUPPORTED_KINDS.join(", ")
        ))
    })?;
    let target = Target {
        namespace: namespace.to_string(),
        kind: kind.to_string(),
        name: name.to_string(),
    };
    target.check_names().map_err(|e| bad(e.to_string()))?;
    Ok(target)
}

/// A mode's rung on the trust ladder: higher trusts more.
fn rung(mode: Mode) -> usize {
    Mode::ALL.iter().position(|m| *m == mode).unwrap_or(0)
}

/// A target as a rule's `target:` of literals, so the guard resolves exactly it.
fn literal(target: &Target) -> TargetSpec {
    let lit = |v: &str| vec![LabelSource::Literal(v.to_string())];
    TargetSpec {
        namespace: lit(&target.namespace),
        kind: lit(&target.kind),
        name: lit(&target.name),
    }
}

/// A stored alert as the guard and the executor read an alert.
fn alert_of(record: &store::AlertRecord) -> Alert {
    let at = |ms: i64| chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default();
    Alert {
        status: Status::Firing,
        labels: record.labels.clone(),
        annotations: record.annotations.clone(),
        starts_at: at(record.starts_at),
        ends_at: record.ends_at.map(at),
        generator_url: record.generator_url.clone(),
        fingerprint: record.fingerprint.clone(),
    }
}

/// The occurrence a run against `target` is recorded as, at `now`: its labels name the target
/// (what playbooks and notification routes read), its annotations say who asked and why, and
/// its fingerprint is the request's own.
fn occurrence(plan: &HandPlan, now: i64) -> Alert {
    let t = &plan.target;
    let labels: Labels = [
        ("alertname", MANUAL_ALERTNAME),
        ("namespace", t.namespace.as_str()),
        ("target_kind", t.kind.as_str()),
        ("target_name", t.name.as_str()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let mut annotations = Labels::new();
    annotations.insert(
        "summary".into(),
        format!("{} run by hand by {}", plan.rule.playbook, plan.by.by),
    );
    if let Some(reason) = &plan.by.reason {
        annotations.insert("description".into(), reason.clone());
    }
    Alert {
        status: Status::Firing,
        labels,
        annotations,
        starts_at: chrono::DateTime::from_timestamp_millis(now).unwrap_or_default(),
        ends_at: None,
        generator_url: String::new(),
        fingerprint: format!("hand:{}", uuid::Uuid::new_v4().simple()),
    }
}

impl Pipeline {
    /// Checks a run by hand against the loaded definitions, the store and what the caller may
    /// see (`may_see(namespace)`: `None` is an alert without a namespace label), and plans it.
    /// Writes nothing.
    pub async fn plan_by_hand(
        &self,
        run: HandRun,
        may_see: &(dyn Fn(Option<&str>) -> bool + Sync),
    ) -> Result<HandPlan, Error> {
        let defs = self.definitions();
        if !defs.playbooks.contains(&run.playbook) {
            return Err(Error::UnknownPlaybook {
                playbook: run.playbook,
            });
        }
        // The alert (its id and contents) a run from an alert answers, checked first: another
        // app's must read as missing before anything else is said about it.
        let (alert, given) = match run.source {
            Source::Target(t) => (None, Some(t)),
            Source::Alert(id) => {
                let record = self
                    .store()
                    .alert(id)
                    .await?
                    .filter(|a| may_see(a.namespace.as_deref()))
                    .ok_or(Error::UnknownAlert)?;
                if record.state != store::AlertState::Firing {
                    return Err(Error::NotFiring { id });
                }
                (Some((id, alert_of(&record))), None)
            }
        };
        let runs = |r: &&Rule| r.playbook == run.playbook;
        let governing = alert
            .as_ref()
            .and_then(|(_, a)| {
                defs.rules
                    .rules()
                    .iter()
                    .filter(runs)
                    .find(|r| r.matches(&a.labels))
            })
            .or_else(|| defs.rules.rules().iter().find(runs));
        let mut rule = match governing {
            Some(rule) => rule.clone(),
            None => Rule::new(adhoc_rule_name(&run.playbook), Vec::new(), &run.playbook),
        };
        let target = match (given, &alert) {
            (Some(t), _) => t,
            (None, Some((id, a))) => {
                let target = rule
                    .target
                    .resolve(&a.labels)
                    .ok_or_else(|| Error::NoTarget {
                        id: *id,
                        rule: rule.name.clone(),
                    })?;
                target.check_names().map_err(|e| Error::InvalidTarget {
                    id: *id,
                    problem: e.to_string(),
                })?;
                target
            }
            // Not reachable: one of the two is set above. Answered as the alert missing.
            (None, None) => return Err(Error::UnknownAlert),
        };
        if !may_see(Some(&target.namespace)) {
            return Err(Error::HiddenApp);
        }
        let trust = self.trust();
        let allowed = trust.mode_of(&rule);
        let mode = run.mode.unwrap_or(allowed);
        if rung(mode) > rung(allowed) {
            return Err(Error::ModeAboveTrust {
                rule: rule.name,
                allowed,
                asked: mode,
            });
        }
        rule.mode = Some(mode);
        if mode == Mode::Approve && trust.approval_of(&rule).approvers.is_empty() {
            return Err(Error::NoApprovers { rule: rule.name });
        }
        rule.target = literal(&target);
        rule.wait = Duration::ZERO;
        if alert.is_none() {
            rule.verify.resolved_within = None;
        }
        if let Some(params) = run.params {
            let mut merged = match std::mem::take(&mut rule.params) {
                serde_json::Value::Object(map) => map,
                _ => serde_json::Map::new(),
            };
            if let serde_json::Value::Object(given) = serde_json::Value::from(params) {
                merged.extend(given);
            }
            rule.params = serde_json::Value::Object(merged);
        }
        Ok(HandPlan {
            rule,
            alert,
            target,
            mode,
            by: run.by,
        })
    }

    /// Decides `plan` as an alert's match is decided (the same guards, in the same order) and
    /// records it: a job, or a refusal with its reason. Runs in a write transaction of its own
    /// under the intake's lock; counted in the metrics and the workers woken after the commit.
    pub async fn run_by_hand(&self, plan: HandPlan) -> Result<HandOutcome, Error> {
        let core = &self.core;
        let now = store::now_ms();
        let mut tx = core.store.begin_write().await?;
        // As an intake batch: the storm count and the queue bound read below are exact across
        // replicas, and the no_action groups' lock comes before any row lock.
        tx.lock_intake().await?;
        if let Some(outbox) = &core.outbox
            && outbox.groups_no_action()
        {
            tx.lock_no_action_groups().await?;
        }
        let (event_id, alert) = match &plan.alert {
            Some((id, alert)) => (*id, alert.clone()),
            None => {
                let alert = occurrence(&plan, now);
                let id = tx.insert_hand_occurrence(&alert, &plan.by.by, now).await?;
                (id, alert)
            }
        };
        let maintenance = core.maintenance.snapshot();
        let ctx = guard::Ctx {
            guard: &core.guard,
            queue_capacity: core.queue_capacity,
            now,
            outbox: core.outbox.as_deref(),
            maintenance: &maintenance,
            trust: &core.trust,
            by_hand: Some(&plan.by),
        };
        let decided = guard::decide(
            &mut tx,
            &ctx,
            &plan.rule,
            &alert,
            event_id,
            &mut guard::Pending::default(),
            &mut guard::StormTally::default(),
        )
        .await;
        let (verdict, storm_opened) = match decided {
            Ok(guard::Outcome::Job(v)) => (v, false),
            Ok(guard::Outcome::Refused(v, opened)) => (v, opened),
            Err(guard::Error::Store(e)) => return Err(e.into()),
            Err(guard::Error::QueueFull) => {
                return Err(Error::QueueFull {
                    capacity: core.queue_capacity,
                });
            }
        };
        let notified = core.decided(&mut tx, &alert, &verdict, now).await?;
        tx.commit().await?;
        if storm_opened {
            core.metrics.escalations.with_label_values(&["human"]).inc();
        }
        if (notified > 0 || storm_opened)
            && let Some(outbox) = &core.outbox
        {
            outbox.wake();
        }
        if core.count_verdict(&verdict).is_some() {
            core.wake_workers();
        }
        let repair_target = plan.target.key();
        Ok(match verdict {
            RuleVerdict::Job {
                job_id,
                state,
                plan: job_plan,
                ..
            } => {
                tracing::info!(job = job_id, by = %plan.by.by, rule = %plan.rule.name, playbook = %plan.rule.playbook, %repair_target, mode = job_plan.mode.as_str(), "repair run by hand");
                HandOutcome::Job {
                    job_id,
                    state,
                    plan: job_plan,
                }
            }
            RuleVerdict::Refused { reason, detail, .. } => {
                tracing::info!(by = %plan.by.by, rule = %plan.rule.name, playbook = %plan.rule.playbook, %repair_target, reason = reason.as_str(), "repair run by hand refused");
                HandOutcome::Refused { reason, detail }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_is_namespace_kind_and_name_with_the_kind_spelled_canonically() {
        let t = parse_target("prod/deployment/web").unwrap();
        assert_eq!(
            (t.namespace.as_str(), t.kind.as_str(), t.name.as_str()),
            ("prod", "Deployment", "web")
        );
        assert_eq!(t.key(), "prod/Deployment/web");
    }

    #[test]
    fn a_target_that_is_not_three_valid_names_of_a_supported_kind_is_refused() {
        for bad in [
            "web",
            "prod/web",
            "prod/Deployment/web/extra",
            "prod//web",
            "/Deployment/web",
            "prod/Pod/web",
            "prod/Deployment/Web?dryRun=All",
            "../kube-system/Deployment/web",
            "",
        ] {
            assert!(
                matches!(parse_target(bad), Err(Error::MalformedTarget { .. })),
                "{bad:?} was accepted"
            );
        }
    }

    #[test]
    fn the_trust_ladder_orders_shadow_below_approve_below_auto() {
        assert!(rung(Mode::Shadow) < rung(Mode::Approve));
        assert!(rung(Mode::Approve) < rung(Mode::Auto));
    }

    #[test]
    fn an_adhoc_rule_name_can_never_be_a_loaded_rules_name() {
        let name = adhoc_rule_name("cleanup");
        assert!(
            !name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_.-".contains(c)),
            "{name}"
        );
    }
}
