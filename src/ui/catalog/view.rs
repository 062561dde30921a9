//! Building the catalog's views from the loaded rules, the settings and the knowledge base:
//! plain data in, typed `Serialize` structs out, testable without HTTP.

use std::collections::HashMap;

use serde::Serialize;

use crate::kb::Stat;
use crate::kb::shadow::RuleEvidence;
use crate::rules::{EscalationStep, Rule, Trust};
use crate::store::{Job, JobState};
use crate::ui::render::duration_ms;

/// One setting of a rule: the word key of its name and its value.
#[derive(Debug, Serialize, PartialEq)]
pub struct Setting {
    /// `catalog.guard.*` or `catalog.verify.*`.
    pub key: &'static str,
    /// The value as written in a rule file.
    pub value: String,
}

/// The knowledge base's numbers for one (alert name, playbook) group of a rule.
#[derive(Debug, Serialize, PartialEq)]
pub struct Group {
    /// Alert name.
    pub alertname: String,
    /// Playbook.
    pub playbook: String,
    /// Finished repairs.
    pub runs: i64,
    /// Of which succeeded.
    pub succeeded: i64,
    /// Success rate, `87%`.
    pub success: String,
    /// Mean time to recover, `3m 20s`.
    pub ttr_mean: Option<String>,
    /// p90 time to recover.
    pub ttr_p90: Option<String>,
}

/// A shadow rule's evidence: what would have been done, and how often the alert went away alone.
#[derive(Debug, Serialize, PartialEq)]
pub struct Shadow {
    /// Alerts it would have acted on.
    pub would_act: i64,
    /// Of which resolved without anyone acting.
    pub self_resolved: i64,
    /// That share, `40%` (None while nothing is decided yet).
    pub self_resolved_share: Option<String>,
    /// Median time to resolve alone.
    pub self_resolve_median: Option<String>,
}

/// What the knowledge base knows about a rule, over the viewer's apps.
#[derive(Debug, Serialize, PartialEq)]
pub struct Evidence {
    /// Finished repairs of every group.
    pub runs: i64,
    /// Success rate over them, None without runs.
    pub success: Option<String>,
    /// Mean time to recover: the group's when the rule has exactly one (a mean of means
    /// would weigh groups wrongly; the rule page lists each).
    pub ttr_mean: Option<String>,
    /// p90 time to recover, as `ttr_mean`.
    pub ttr_p90: Option<String>,
    /// Per (alert name, playbook).
    pub groups: Vec<Group>,
    /// Shadow-mode evidence, when the rule has shadow runs in the window.
    pub shadow: Option<Shadow>,
}

/// One rule as the catalog shows it.
#[derive(Debug, Serialize, PartialEq)]
pub struct RuleRow {
    /// Name (the row's `data-rule`).
    pub name: String,
    /// `file:line`.
    pub location: String,
    /// `auto`, `approve` or `shadow` (its own or the settings' default).
    pub mode: &'static str,
    /// Whether the mode is the settings' `trust.default_mode`.
    pub mode_is_default: bool,
    /// For `approve`: who may approve (`telegram:123`, `console:alice`).
    pub approvers: Vec<String>,
    /// For `approve`: how long a repair waits.
    pub approval_expires: Option<String>,
    /// Matchers in Alertmanager syntax.
    pub matchers: Vec<String>,
    /// The main playbook.
    pub playbook: String,
    /// How the target is found (`$namespace/$kind/$name`).
    pub target: String,
    /// Guards and limits.
    pub guards: Vec<Setting>,
    /// Verification.
    pub verify: Vec<Setting>,
    /// The escalation chain, in order, as words of the rule file.
    pub chain: Vec<ChainStep>,
    /// `act`, `hold`, `skip`, or None (the settings' `gitops.defaults` per kind of change).
    pub gitops: Option<&'static str>,
    /// The knowledge base's numbers.
    pub evidence: Evidence,
}

/// One step of an escalation chain.
#[derive(Debug, Serialize, PartialEq)]
pub struct ChainStep {
    /// `playbook`, `notify` or `choose`.
    pub kind: &'static str,
    /// The playbook, the route, or the alternatives.
    pub names: Vec<String>,
}

/// A recent repair of a rule (a link to its timeline).
#[derive(Debug, Serialize, PartialEq)]
pub struct Outcome {
    /// Job id.
    pub id: i64,
    /// Job state code.
    pub state: &'static str,
    /// Badge colour of the state (the word is always next to it).
    pub tone: &'static str,
    /// The playbook that ran.
    pub playbook: String,
    /// `namespace/Kind/name`.
    pub target: String,
    /// Created (epoch ms).
    pub created_at: i64,
    /// RFC 3339 for `<time datetime>`.
    pub created_rfc3339: String,
}

/// Epoch ms as RFC 3339 (UTC), for `<time datetime>`.
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// A percentage without decimals.
fn percent(share: f64) -> String {
    format!("{:.0}%", share * 100.0)
}

/// Seconds as a short duration.
fn seconds(s: f64) -> String {
    duration_ms((s * 1000.0).round() as i64)
}

/// The badge tone of a job state.
pub fn tone(state: JobState) -> &'static str {
    match state {
        JobState::Succeeded => "ok",
        JobState::Failed | JobState::Reverted | JobState::Interrupted => "bad",
        JobState::Escalated | JobState::AwaitingApproval => "warn",
        JobState::Cancelled => "neutral",
        JobState::Queued | JobState::Waiting | JobState::Running | JobState::Verifying => "info",
    }
}

/// Whether the knowledge base's group (alert name, playbook) belongs to `rule`: one of its
/// playbooks, and an alert name its `alertname` matchers accept (a rule without one may
/// repair any alert, so every alert name of its playbooks counts).
fn is_of(rule: &Rule, stat: &Stat) -> bool {
    rule.playbooks().any(|p| p == stat.playbook)
        && rule
            .matchers
            .iter()
            .filter(|m| m.name == "alertname")
            .all(|m| m.matches_value(&stat.alertname))
}

fn group(stat: &Stat) -> Group {
    Group {
        alertname: stat.alertname.clone(),
        playbook: stat.playbook.clone(),
        runs: stat.runs,
        succeeded: stat.succeeded,
        success: percent(stat.success_rate),
        ttr_mean: stat.ttr_mean_s.map(seconds),
        ttr_p90: stat.ttr_p90_s.map(seconds),
    }
}

fn shadow(e: &RuleEvidence) -> Shadow {
    Shadow {
        would_act: e.would_act,
        self_resolved: e.self_resolved,
        self_resolved_share: e.self_resolved_share.map(percent),
        self_resolve_median: e.self_resolve_median_s.map(seconds),
    }
}

/// A rule's evidence from the knowledge base's groups and the shadow report.
pub fn evidence(rule: &Rule, stats: &[Stat], shadows: &HashMap<&str, &RuleEvidence>) -> Evidence {
    let groups: Vec<Group> = stats.iter().filter(|s| is_of(rule, s)).map(group).collect();
    let runs: i64 = groups.iter().map(|g| g.runs).sum();
    let succeeded: i64 = groups.iter().map(|g| g.succeeded).sum();
    let (ttr_mean, ttr_p90) = match groups.as_slice() {
        [only] => (only.ttr_mean.clone(), only.ttr_p90.clone()),
        _ => (None, None),
    };
    Evidence {
        runs,
        success: (runs > 0).then(|| percent(succeeded as f64 / runs as f64)),
        ttr_mean,
        ttr_p90,
        groups,
        shadow: shadows
            .get(rule.name.as_str())
            .filter(|e| e.would_act > 0)
            .map(|e| shadow(e)),
    }
}

fn guards(rule: &Rule) -> Vec<Setting> {
    let d = |d: std::time::Duration| duration_ms(i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let mut out = vec![
        Setting {
            key: "catalog.guard.wait",
            value: d(rule.wait),
        },
        Setting {
            key: "catalog.guard.cooldown",
            value: d(rule.cooldown),
        },
    ];
    if let Some(b) = rule.budget {
        out.push(Setting {
            key: "catalog.guard.budget",
            value: format!("{} / {}", b.max, d(b.window)),
        });
    }
    if let Some(t) = rule.timeout {
        out.push(Setting {
            key: "catalog.guard.timeout",
            value: d(t),
        });
    }
    if rule.dry_run {
        out.push(Setting {
            key: "catalog.guard.dry_run",
            value: "dry_run: true".into(),
        });
    }
    if rule.continue_matching {
        out.push(Setting {
            key: "catalog.guard.continue",
            value: "continue: true".into(),
        });
    }
    out
}

fn verify(rule: &Rule) -> Vec<Setting> {
    let v = &rule.verify;
    let ms = |d: std::time::Duration| duration_ms(i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let mut out = Vec::new();
    if v.rollout {
        out.push(Setting {
            key: "catalog.verify.rollout",
            value: ms(v.rollout_timeout),
        });
    }
    if let Some(u) = &v.health_url {
        out.push(Setting {
            key: "catalog.verify.health_url",
            value: u.clone(),
        });
    }
    if let Some(r) = v.resolved_within {
        out.push(Setting {
            key: "catalog.verify.resolved_within",
            value: ms(r),
        });
    }
    out
}

fn chain(rule: &Rule) -> Vec<ChainStep> {
    rule.escalate
        .iter()
        .map(|s| match s {
            EscalationStep::Playbook { playbook, .. } => ChainStep {
                kind: "playbook",
                names: vec![playbook.clone()],
            },
            EscalationStep::Notify { route } => ChainStep {
                kind: "notify",
                names: vec![route.clone()],
            },
            EscalationStep::Choose { alternatives } => ChainStep {
                kind: "choose",
                names: alternatives.iter().map(|(p, _)| p.clone()).collect(),
            },
        })
        .collect()
}

fn sources(s: &[crate::rules::Source]) -> String {
    s.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("|")
}

/// One rule's row, under `trust`, with its evidence.
pub fn rule_row(rule: &Rule, trust: &Trust, evidence: Evidence) -> RuleRow {
    let mode = trust.mode_of(rule);
    let approval = (mode == crate::rules::Mode::Approve).then(|| trust.approval_of(rule));
    RuleRow {
        name: rule.name.clone(),
        location: rule.location.to_string(),
        mode: mode.as_str(),
        mode_is_default: rule.mode.is_none(),
        approvers: approval
            .as_ref()
            .map(|a| a.approvers.iter().map(ToString::to_string).collect())
            .unwrap_or_default(),
        approval_expires: approval
            .map(|a| duration_ms(i64::try_from(a.expires.as_millis()).unwrap_or(i64::MAX))),
        matchers: rule.matchers.iter().map(ToString::to_string).collect(),
        playbook: rule.playbook.clone(),
        target: format!(
            "{}/{}/{}",
            sources(&rule.target.namespace),
            sources(&rule.target.kind),
            sources(&rule.target.name)
        ),
        guards: guards(rule),
        verify: verify(rule),
        chain: chain(rule),
        gitops: rule.gitops.map(|g| g.as_str()),
        evidence,
    }
}

/// A recent repair as a link to its timeline.
pub fn outcome(job: &Job) -> Outcome {
    Outcome {
        id: job.id,
        state: job.state.as_str(),
        tone: tone(job.state),
        playbook: job.playbook.clone(),
        target: job.target_key.clone(),
        created_at: job.created_at,
        created_rfc3339: rfc3339(job.created_at),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::{Mode, parse_matchers};

    fn stat(alertname: &str, playbook: &str, runs: i64, ok: i64, mean: Option<f64>) -> Stat {
        Stat {
            alertname: alertname.into(),
            playbook: playbook.into(),
            runs,
            succeeded: ok,
            reverted: 0,
            success_rate: ok as f64 / runs as f64,
            ttr_mean_s: mean,
            ttr_p90_s: mean.map(|m| m * 2.0),
        }
    }

    fn rule(matchers: &str, playbook: &str) -> Rule {
        Rule::new("r", parse_matchers(matchers).unwrap(), playbook)
    }

    #[test]
    fn a_rule_counts_the_groups_of_its_playbooks_for_the_alert_names_it_matches() {
        let r = rule(r#"alertname=~"KubePod.*",severity="critical""#, "restart");
        let stats = [
            stat("KubePodCrashLooping", "restart", 4, 3, Some(200.0)),
            stat("KubePodNotReady", "restart", 6, 6, Some(60.0)),
            stat("KubeNodeDown", "restart", 9, 0, None),
            stat("KubePodCrashLooping", "rollback", 5, 5, None),
        ];
        let e = evidence(&r, &stats, &HashMap::new());
        assert_eq!(e.runs, 10);
        assert_eq!(e.success.as_deref(), Some("90%"));
        assert_eq!(e.groups.len(), 2);
        // Two groups: no made-up mean of means.
        assert_eq!(e.ttr_mean, None);
        assert_eq!(e.shadow, None);
    }

    #[test]
    fn a_rule_with_one_group_shows_its_time_to_recover() {
        let r = rule(r#"alertname="KubePodCrashLooping""#, "restart");
        let stats = [stat("KubePodCrashLooping", "restart", 4, 3, Some(200.0))];
        let e = evidence(&r, &stats, &HashMap::new());
        assert_eq!(e.success.as_deref(), Some("75%"));
        assert_eq!(e.ttr_mean.as_deref(), Some("3m 20s"));
        assert_eq!(e.ttr_p90.as_deref(), Some("6m 40s"));
    }

    #[test]
    fn a_rule_without_runs_says_so_rather_than_zero_percent() {
        let r = rule(r#"alertname="X""#, "restart");
        let e = evidence(&r, &[], &HashMap::new());
        assert_eq!((e.runs, e.success), (0, None));
    }

    #[test]
    fn shadow_evidence_gives_the_self_resolve_share() {
        let r = rule(r#"alertname="X""#, "restart");
        let ev = RuleEvidence {
            rule: "r".into(),
            would_act: 10,
            self_resolved: 4,
            undecided: 1,
            self_resolved_share: Some(4.0 / 9.0),
            self_resolve_median_s: Some(90.0),
            actions: Vec::new(),
        };
        let shadows = HashMap::from([("r", &ev)]);
        let s = evidence(&r, &[], &shadows).shadow.unwrap();
        assert_eq!(s.self_resolved_share.as_deref(), Some("44%"));
        assert_eq!(s.self_resolve_median.as_deref(), Some("1m 30s"));
    }

    #[test]
    fn an_approve_rule_names_who_approves_from_the_settings_when_it_names_nobody() {
        let mut r = rule(r#"alertname="X""#, "restart");
        r.mode = Some(Mode::Approve);
        let trust = Trust {
            default_mode: Mode::Auto,
            approval: crate::rules::ApprovalPolicy {
                expires: std::time::Duration::from_secs(600),
                approvers: vec!["console:alice".parse().unwrap()],
            },
        };
        let row = rule_row(&r, &trust, evidence(&r, &[], &HashMap::new()));
        assert_eq!(row.mode, "approve");
        assert!(!row.mode_is_default);
        assert_eq!(row.approvers, ["console:alice"]);
        assert_eq!(row.approval_expires.as_deref(), Some("10m 0s"));
        assert_eq!(row.matchers, [r#"alertname="X""#]);
        let auto = rule_row(
            &rule(r#"a="b""#, "p"),
            &trust,
            evidence(&r, &[], &HashMap::new()),
        );
        assert_eq!((auto.mode, auto.mode_is_default), ("auto", true));
        assert!(auto.approvers.is_empty());
    }
}
