//! What `aiops replay` reports: the decisions that differ from what happened, and totals. The
//! JSON keys are part of the interface (rule authors' CI reads them; README documents them).

use std::fmt;

use serde::Serialize;

use super::{Outcome, Period};
use crate::store::HistoryAlert;

/// How a replayed decision differs from the recorded one, in the order they are checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Nothing was done; the new rules would start a repair.
    WouldAct,
    /// A repair was started; the new rules would start none.
    WouldNotAct,
    /// Repairs both times, by other rules.
    OtherRule,
    /// The same rules repaired, with another playbook.
    OtherPlaybook,
    /// The same repairs, in another trust mode (shadow, approve, auto).
    OtherMode,
    /// Another verdict or reason (a different refusal, no rule matching instead of a refusal, or
    /// a rule refusing beside the same repair).
    OtherVerdict,
}

impl Kind {
    /// The JSON and text name.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::WouldAct => "would_act",
            Kind::WouldNotAct => "would_not_act",
            Kind::OtherRule => "other_rule",
            Kind::OtherPlaybook => "other_playbook",
            Kind::OtherMode => "other_mode",
            Kind::OtherVerdict => "other_verdict",
        }
    }

    /// The kind of difference between two decisions on one alert, `None` when they agree.
    pub(super) fn between(recorded: &[Outcome], replayed: &[Outcome]) -> Option<Kind> {
        if recorded.len() == replayed.len()
            && recorded.iter().zip(replayed).all(|(a, b)| a.same_as(b))
        {
            return None;
        }
        let jobs =
            |o: &[Outcome]| -> Vec<Outcome> { o.iter().filter(|x| x.acted()).cloned().collect() };
        let (before, after) = (jobs(recorded), jobs(replayed));
        let rules = |o: &[Outcome]| -> Vec<String> { o.iter().map(|x| x.rule.clone()).collect() };
        Some(match (before.is_empty(), after.is_empty()) {
            (true, false) => Kind::WouldAct,
            (false, true) => Kind::WouldNotAct,
            (false, false) if rules(&before) != rules(&after) => Kind::OtherRule,
            (false, false)
                if before
                    .iter()
                    .zip(&after)
                    .any(|(a, b)| a.playbook.is_some() && a.playbook != b.playbook) =>
            {
                Kind::OtherPlaybook
            }
            (false, false)
                if before
                    .iter()
                    .zip(&after)
                    .any(|(a, b)| a.mode.is_some() && a.mode != b.mode) =>
            {
                Kind::OtherMode
            }
            _ => Kind::OtherVerdict,
        })
    }
}

/// One alert whose decision differs.
#[derive(Clone, Debug, Serialize)]
pub struct Difference {
    /// How.
    pub kind: Kind,
    /// The `alert_events` id.
    pub alert_id: i64,
    /// When it was received (and decided, then and now).
    #[serde(serialize_with = "crate::store::rfc3339::ms")]
    pub received_at: i64,
    /// Alert name.
    pub alertname: String,
    /// Fingerprint.
    pub fingerprint: String,
    /// What was decided (one entry per matching rule; empty: no rule matched).
    pub recorded: Vec<Outcome>,
    /// What the new rules decide.
    pub replayed: Vec<Outcome>,
}

/// Differences counted by kind; every key is always present.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ByKind {
    /// [`Kind::WouldAct`].
    pub would_act: usize,
    /// [`Kind::WouldNotAct`].
    pub would_not_act: usize,
    /// [`Kind::OtherRule`].
    pub other_rule: usize,
    /// [`Kind::OtherPlaybook`].
    pub other_playbook: usize,
    /// [`Kind::OtherMode`].
    pub other_mode: usize,
    /// [`Kind::OtherVerdict`].
    pub other_verdict: usize,
}

impl ByKind {
    fn count(&mut self, kind: Kind) {
        let n = match kind {
            Kind::WouldAct => &mut self.would_act,
            Kind::WouldNotAct => &mut self.would_not_act,
            Kind::OtherRule => &mut self.other_rule,
            Kind::OtherPlaybook => &mut self.other_playbook,
            Kind::OtherMode => &mut self.other_mode,
            Kind::OtherVerdict => &mut self.other_verdict,
        };
        *n += 1;
    }

    fn pairs(&self) -> [(Kind, usize); 6] {
        [
            (Kind::WouldAct, self.would_act),
            (Kind::WouldNotAct, self.would_not_act),
            (Kind::OtherRule, self.other_rule),
            (Kind::OtherPlaybook, self.other_playbook),
            (Kind::OtherMode, self.other_mode),
            (Kind::OtherVerdict, self.other_verdict),
        ]
    }
}

/// Totals of a replay.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    /// Firing alerts decided again.
    pub replayed: usize,
    /// Decided as recorded.
    pub same: usize,
    /// Decided otherwise.
    pub different: usize,
    /// The differences by kind.
    pub by_kind: ByKind,
}

/// The whole answer of `aiops replay`.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Start of the period (alerts received from then on).
    #[serde(serialize_with = "crate::store::rfc3339::ms")]
    pub since: i64,
    /// End of the period.
    #[serde(serialize_with = "crate::store::rfc3339::ms")]
    pub until: i64,
    /// Counts.
    pub totals: Totals,
    /// Recorded jobs the history could not place (their target already held an active job in
    /// the rebuilt history: rows pruned or written out of order). Normally 0.
    pub unplaced_jobs: usize,
    /// Every alert decided otherwise, in the order received.
    pub differences: Vec<Difference>,
}

impl Report {
    pub(super) fn new(period: Period) -> Report {
        Report {
            since: period.since,
            until: period.until,
            totals: Totals::default(),
            unplaced_jobs: 0,
            differences: Vec::new(),
        }
    }

    pub(super) fn add(
        &mut self,
        alert: &HistoryAlert,
        recorded: Vec<Outcome>,
        replayed: Vec<Outcome>,
    ) {
        self.totals.replayed += 1;
        match Kind::between(&recorded, &replayed) {
            None => self.totals.same += 1,
            Some(kind) => {
                self.totals.different += 1;
                self.totals.by_kind.count(kind);
                self.differences.push(Difference {
                    kind,
                    alert_id: alert.id,
                    received_at: alert.received_at,
                    alertname: alert.labels.get("alertname").cloned().unwrap_or_default(),
                    fingerprint: alert.fingerprint.clone(),
                    recorded,
                    replayed,
                });
            }
        }
    }
}

/// An epoch-ms time as RFC 3339 (UTC, seconds unless it has milliseconds).
pub(super) fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map_or_else(
        || ms.to_string(),
        |t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
    )
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.acted() {
            write!(
                f,
                "rule {}: job, playbook {}",
                self.rule,
                self.playbook.as_deref().unwrap_or("(pruned)")
            )?;
            if let Some(mode) = self.mode {
                write!(f, " ({mode})")?;
            }
            if let Some(t) = &self.target {
                write!(f, " on {t}")?;
            }
            Ok(())
        } else if self.rule.is_empty() {
            write!(f, "refused ({}): {}", self.reason, self.detail)
        } else {
            write!(
                f,
                "rule {}: refused ({}): {}",
                self.rule, self.reason, self.detail
            )
        }
    }
}

fn write_side(f: &mut fmt::Formatter<'_>, label: &str, outcomes: &[Outcome]) -> fmt::Result {
    if outcomes.is_empty() {
        return writeln!(f, "  {label}: no rule matched");
    }
    for o in outcomes {
        writeln!(f, "  {label}: {o}")?;
    }
    Ok(())
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "replayed {} firing alert(s) received {} .. {}; nothing was changed",
            self.totals.replayed,
            rfc3339(self.since),
            rfc3339(self.until)
        )?;
        for d in &self.differences {
            writeln!(
                f,
                "{} {} {} [{}]: {}",
                rfc3339(d.received_at),
                d.alertname,
                d.fingerprint,
                d.alert_id,
                d.kind.as_str()
            )?;
            write_side(f, "recorded", &d.recorded)?;
            write_side(f, "replayed", &d.replayed)?;
        }
        if self.unplaced_jobs > 0 {
            writeln!(
                f,
                "warning: {} recorded job(s) could not be placed in the rebuilt history (their \
                 target already held an active job); decisions near them may differ for that reason",
                self.unplaced_jobs
            )?;
        }
        let t = &self.totals;
        let kinds: Vec<String> = t
            .by_kind
            .pairs()
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(k, n)| format!("{} {n}", k.as_str()))
            .collect();
        write!(
            f,
            "totals: {} replayed, {} same, {} different",
            t.replayed, t.same, t.different
        )?;
        if kinds.is_empty() {
            writeln!(f)
        } else {
            writeln!(f, " ({})", kinds.join(", "))
        }
    }
}
