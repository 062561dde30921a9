//! What follows a job that did not repair: the next step of its chain, or humans.
//!
//! [`plan`] decides, as a pure function of the job's spec, how it ended and what is known
//! (its place in the chain, the cap, the knowledge base's success rates, the storm brake), so
//! every combination is unit-tested without a store. [`apply`] writes the decision inside the
//! transaction that fails the job: the escalation rows and the next job, which the store may
//! still refuse (another repair holds the target), in which case the chain goes to humans.
//!
//! The rules, in order:
//! - an interrupted job goes to humans (the cluster may be half-changed; never re-run);
//! - a reverted one too (another field manager, usually Argo CD or Flux, set the repair back:
//!   the next playbook would be set back as well, and only a change in Git keeps it);
//! - a skipped one too (the change belongs in Git: the target's GitOps policy said so);
//! - an inconclusive one too (an unmeasured result must not loop);
//! - a failure at the cap (`playbook.max_chain_steps`) too;
//! - otherwise the chain is walked from the job's position: `notify` steps are collected, the
//!   first `playbook` (or `choose: best`, resolved by success rate) becomes the next job unless
//!   the storm brake is engaged; a chain with no further playbook goes to humans.

use std::collections::BTreeMap;

use crate::job::{Alternative, ChainStep, JobSpec, Params};
use crate::notify as notify_;
use crate::store::{self, Job, NewEscalation, NewJob};

use super::Result;

/// How the job that escalates ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// The playbook (or its verification) measured that the repair did not work.
    Failure,
    /// The result could not be measured.
    Inconclusive,
    /// Its process stopped or lost its lease while it ran.
    Interrupted,
    /// The repair was applied, then set back by another field manager during verification.
    Reverted,
    /// The run stopped before a change the target's GitOps owner keeps in Git.
    Skipped,
}

/// What is known when a failure is escalated.
#[derive(Clone, Debug, Default)]
pub struct History<'a> {
    /// The job's place in its chain (0: the rule's own playbook).
    pub position: usize,
    /// `playbook.max_chain_steps`: jobs a chain may run in all.
    pub cap: usize,
    /// The alert's name, for the `choose: best` explanation.
    pub alertname: &'a str,
    /// The knowledge base's success rate over the last 30 days of each playbook for this
    /// alert (`None`: never finished one); read for the alternatives of `choose: best`.
    pub rates: BTreeMap<String, Option<f64>>,
    /// Whether the storm brake is engaged (it pauses every automatic action).
    pub storm_open: bool,
}

/// The next job of a chain.
#[derive(Clone, Debug, PartialEq)]
pub struct NextStep {
    /// Index of the chain step it runs; the new job's `chain_index` is one more.
    pub index: usize,
    /// Its playbook.
    pub playbook: String,
    /// Its parameters.
    pub params: Params,
    /// How `choose: best` picked it, when it did.
    pub chosen: Option<String>,
    /// The notify steps met on the way, told that this step failed and what runs next; and
    /// the humans to tell if the next job cannot be created.
    pub routes: Vec<String>,
}

/// A hand-off to humans.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Handoff {
    /// Why automation stops here.
    pub why: String,
    /// The routes to tell (none: the default human route).
    pub routes: Vec<String>,
}

/// What to do after a job did not repair.
#[derive(Clone, Debug, PartialEq)]
pub enum Escalation {
    /// Create the next job of the chain.
    Next(NextStep),
    /// Stop and tell humans.
    ToHumans(Handoff),
}

/// The hand-off of a job its process never finished.
pub fn interrupted(spec: &JobSpec) -> Handoff {
    Handoff {
        why: "interrupted: its process stopped or lost its lease while it ran; the target may be half-changed".to_string(),
        routes: spec.routes(),
    }
}

/// Decides what follows a job that ended without a repair. Pure: see the module doc.
pub fn plan(spec: &JobSpec, ended: Ended, history: &History<'_>) -> Escalation {
    let to_humans = |why: String| {
        Escalation::ToHumans(Handoff {
            why,
            routes: spec.routes(),
        })
    };
    match ended {
        Ended::Interrupted => return Escalation::ToHumans(interrupted(spec)),
        Ended::Reverted => {
            return to_humans(
                "the repair was set back by another field manager; it is not retried: make the change in Git"
                    .to_string(),
            );
        }
        Ended::Skipped => {
            return to_humans(
                "the target's GitOps owner keeps this change in Git: make it there".to_string(),
            );
        }
        Ended::Inconclusive => return to_humans("the result could not be measured".to_string()),
        Ended::Failure if history.position + 1 >= history.cap => {
            return to_humans(format!(
                "the chain reached its cap of {} steps",
                history.cap
            ));
        }
        Ended::Failure => {}
    }
    let mut routes: Vec<String> = Vec::new();
    for (index, step) in spec.chain.iter().enumerate().skip(history.position) {
        let (playbook, params, chosen) = match step {
            ChainStep::Notify { route } => {
                routes.push(route.clone());
                continue;
            }
            ChainStep::Playbook { playbook, params } => (playbook, params, None),
            ChainStep::ChooseBest { from, .. } => match choose_best(from, history) {
                Some((alt, why)) => (&alt.playbook, &alt.params, Some(why)),
                // The loader requires two alternatives; an empty list has nothing to run.
                None => continue,
            },
        };
        if history.storm_open {
            // A storm pauses every automatic action, chains already in flight included: the
            // routes met so far first, then the rest of the chain's.
            let rest: Vec<String> = spec
                .routes()
                .into_iter()
                .filter(|r| !routes.contains(r))
                .collect();
            routes.extend(rest);
            return Escalation::ToHumans(Handoff {
                why: "the storm brake is engaged".to_string(),
                routes,
            });
        }
        return Escalation::Next(NextStep {
            index,
            playbook: playbook.clone(),
            params: params.clone(),
            chosen,
            routes,
        });
    }
    Escalation::ToHumans(Handoff {
        why: "the escalation chain is exhausted".to_string(),
        routes,
    })
}

/// The alternative the knowledge base favours: the best success rate for this alert. One that
/// never worked ranks below an untried one; ties and cold starts keep chain order.
fn choose_best<'s>(
    from: &'s [Alternative],
    history: &History<'_>,
) -> Option<(&'s Alternative, String)> {
    let mut best: Option<(f64, &Alternative)> = None;
    let mut seen = Vec::with_capacity(from.len());
    for alt in from {
        let rate = history.rates.get(&alt.playbook).copied().flatten();
        let score = match rate {
            Some(r) if r > 0.0 => r,
            Some(_) => -1.0,
            None => 0.0,
        };
        seen.push(match rate {
            Some(r) => format!("{} {:.0}%", alt.playbook, r * 100.0),
            None => format!("{} untried", alt.playbook),
        });
        if best.is_none_or(|(s, _)| score > s) {
            best = Some((score, alt));
        }
    }
    best.map(|(_, alt)| {
        let why = format!(
            "chose {} by success rate for {} ({})",
            alt.playbook,
            history.alertname,
            seen.join(", ")
        );
        (alt, why)
    })
}

/// The playbooks whose success rates `plan` may need: the alternatives of every `choose: best`
/// step from the job's position on.
pub fn alternatives(spec: &JobSpec, position: usize) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for step in spec.chain.iter().skip(position) {
        match step {
            ChainStep::ChooseBest { from, .. } => {
                for alt in from {
                    if !names.contains(&alt.playbook) {
                        names.push(alt.playbook.clone());
                    }
                }
            }
            ChainStep::Playbook { .. } | ChainStep::Notify { .. } => {}
        }
    }
    names
}

/// What an escalation tells humans: the chain's jobs so far, and the knowledge base's hint.
pub(super) struct Past<'a> {
    /// The chain from its root to the job that ended.
    pub jobs: &'a [Job],
    /// "Last time, X fixed this", when the knowledge base knows.
    pub hint: Option<&'a str>,
}

/// What [`apply`] wrote.
pub(super) struct Escalated {
    /// One line for the job's event and the log.
    pub summary: String,
    /// One metric label per escalation row (`notify`, `playbook`, `human`).
    pub kinds: Vec<&'static str>,
    /// The job created, if any.
    pub next_job: Option<i64>,
    /// Routes (or channels) the chain named for this hand-off.
    pub routes: Vec<String>,
    /// Why it went to humans, when it did.
    pub to_humans: Option<String>,
}

/// Writes `escalation` for `job` inside `tx`: the escalation rows and, for a next step, the
/// next job. `reason` is how the job ended.
pub(super) async fn apply(
    tx: &mut store::WriteTx,
    job: &Job,
    escalation: &Escalation,
    past: &Past<'_>,
    reason: &str,
    now: i64,
) -> Result<Escalated> {
    let step = match escalation {
        Escalation::ToHumans(handoff) => {
            return to_humans(tx, job, past, reason, handoff, now).await;
        }
        Escalation::Next(step) => step,
    };
    let next = NewJob {
        alert_event_id: job.alert_event_id,
        fingerprint: job.fingerprint.clone(),
        alertname: job.alertname.clone(),
        rule: job.rule.clone(),
        spec: job.spec.next(&step.playbook, &step.params),
        chain_index: i64::try_from(step.index + 1).unwrap_or(i64::MAX),
        parent_id: Some(job.id),
        target_namespace: job.target_namespace.clone(),
        target_kind: job.target_kind.clone(),
        target_name: job.target_name.clone(),
        dry_run: job.dry_run,
        timeout_ms: job.timeout_ms,
        not_before: now,
    };
    let Some((id, _)) = tx.insert_job(&next, now).await? else {
        // Another repair holds the target: the chain cannot go on without it.
        let handoff = Handoff {
            why: "the escalation chain is exhausted".to_string(),
            routes: step.routes.clone(),
        };
        let mut out = to_humans(tx, job, past, reason, &handoff, now).await?;
        out.summary = format!(
            "next step {} blocked: another repair holds the target; {}",
            step.playbook, out.summary
        );
        return Ok(out);
    };
    let mut kinds = Vec::new();
    let mut parts = Vec::new();
    // Routes met on the way are told that this step failed and what runs next.
    let note = format!("{reason}; next step: {}", step.playbook);
    for route in &step.routes {
        tx.insert_escalation(&NewEscalation::for_job(job, "notify", route, &note), now)
            .await?;
        kinds.push("notify");
        parts.push(format!("notified {route}"));
    }
    let why = match &step.chosen {
        Some(chosen) => format!("{reason}; {chosen}"),
        None => reason.to_string(),
    };
    tx.insert_escalation(
        &NewEscalation::for_job(job, "playbook", &step.playbook, &why),
        now,
    )
    .await?;
    kinds.push("playbook");
    parts.push(format!("next step: job {id} runs {}", step.playbook));
    Ok(Escalated {
        summary: parts.join("; "),
        kinds,
        next_job: Some(id),
        routes: step.routes.clone(),
        to_humans: None,
    })
}

/// "Manual intervention required", with everything the chain tried, to the hand-off's routes,
/// or to the default human route when it names none.
async fn to_humans(
    tx: &mut store::WriteTx,
    job: &Job,
    past: &Past<'_>,
    reason: &str,
    handoff: &Handoff,
    now: i64,
) -> Result<Escalated> {
    let why = &handoff.why;
    let tried: Vec<String> = tried(job, past.jobs, reason)
        .iter()
        .map(|t| format!("job {} {} → {}", t.job, t.playbook, t.result))
        .collect();
    let mut text = format!(
        "manual intervention required on {}: {why}. Tried: {}",
        job.target_key,
        tried.join("; ")
    );
    if let Some(hint) = past.hint {
        text.push_str(&format!(". Knowledge base: {hint}"));
    }
    if handoff.routes.is_empty() {
        tx.insert_escalation(&NewEscalation::for_job(job, "human", "default", &text), now)
            .await?;
        return Ok(Escalated {
            summary: format!("handed to humans ({why})"),
            kinds: vec!["human"],
            next_job: None,
            routes: Vec::new(),
            to_humans: Some(why.clone()),
        });
    }
    for route in &handoff.routes {
        tx.insert_escalation(&NewEscalation::for_job(job, "notify", route, &text), now)
            .await?;
    }
    Ok(Escalated {
        summary: format!("handed to humans via {} ({why})", handoff.routes.join(", ")),
        kinds: vec!["notify"; handoff.routes.len()],
        next_job: None,
        routes: handoff.routes.clone(),
        to_humans: Some(why.clone()),
    })
}

/// Each job of the chain and how it ended (the current one by `reason`).
pub(super) fn tried(job: &Job, jobs: &[Job], reason: &str) -> Vec<notify_::Tried> {
    jobs.iter()
        .map(|j| notify_::Tried {
            job: j.id,
            playbook: j.playbook.clone(),
            result: if j.id == job.id {
                reason.to_string()
            } else {
                j.error
                    .clone()
                    .or_else(|| j.outcome.clone())
                    .unwrap_or_else(|| j.state.to_string())
            },
        })
        .collect()
}

#[cfg(test)]
mod tests;
