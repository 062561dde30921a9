//! `aiops kb stats|history|shadow`: how repairs went, and what shadow rules would have done,
//! read from the store without changing it.

use std::fmt;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use serde::Serialize;

use aiops::app::{self, StoreAccess};
use aiops::config::Settings;
use aiops::kb::Report;
use aiops::kb::shadow::{self, RuleReport, ShadowReport};
use aiops::store::Job;

/// `aiops kb`'s subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Success rate and time to recover per alert and playbook, and per target.
    Stats {
        /// The window, e.g. 7d, 24h.
        #[arg(long, default_value = "7d")]
        since: String,
        /// Print JSON: the same keys as GET /api/kb/stats (`since`, `by_alert`, `by_target`).
        #[arg(long)]
        json: bool,
    },
    /// The last repairs of one target.
    History {
        /// NAMESPACE/NAME (a Deployment) or NAMESPACE/KIND/NAME.
        target: String,
        /// How many.
        #[arg(long, default_value_t = 20)]
        limit: i64,
        /// Print JSON: `target` and `repairs`, each repair as GET /api/repairs lists it.
        #[arg(long)]
        json: bool,
    },
    /// Shadow rules' evidence: would-act count, alerts that resolved on their own (count,
    /// share, median time from the decision), and the actions they would have taken.
    Shadow {
        /// Only this rule.
        #[arg(long)]
        rule: Option<String>,
        /// The window, e.g. 7d, 24h.
        #[arg(long, default_value = "7d")]
        since: String,
        /// Print JSON: with --rule the keys of GET /api/kb/rules/{rule} (`since`, `rule`,
        /// `would_act`, …); without, `since` and `rules`, a list of those entries.
        #[arg(long)]
        json: bool,
    },
}

/// Reads the store read-only (never migrated by a reporting command) and prints.
pub async fn run(config: Option<&Path>, cmd: Command) -> Result<ExitCode> {
    let settings = Settings::load(config)?;
    let store = app::open_store(&settings, StoreAccess::ReadOnly).await?;
    match cmd {
        Command::Stats { since, json } => {
            let window = aiops::config::parse_duration(&since).map_err(anyhow::Error::msg)?;
            let from = aiops::store::now_ms() - aiops::store::ms(window);
            let stats = Stats {
                report: aiops::kb::report(&store, from, None).await?,
                since,
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&stats.report)?);
            } else {
                print!("{stats}");
            }
        }
        Command::Shadow { rule, since, json } => {
            let window = aiops::config::parse_duration(&since).map_err(anyhow::Error::msg)?;
            let now = aiops::store::now_ms();
            let from = now - aiops::store::ms(window);
            let report = match &rule {
                Some(rule) => shadow::rule_report(&store, rule, from, now, None)
                    .await
                    .map(|r| ShadowReport {
                        since: r.since,
                        rules: vec![r.evidence],
                    })?,
                None => shadow::report(&store, from, now, None).await?,
            };
            if json {
                let text = match (&rule, report.rules.first()) {
                    (Some(_), Some(evidence)) => serde_json::to_string_pretty(&RuleReport {
                        since: report.since,
                        evidence: evidence.clone(),
                    })?,
                    _ => serde_json::to_string_pretty(&report)?,
                };
                println!("{text}");
            } else {
                print!("{}", ShadowTable { report, since });
            }
        }
        Command::History {
            target,
            limit,
            json,
        } => {
            let key = target_key(&target)?;
            let repairs = aiops::kb::history(&store, &key, limit).await?;
            let history = History {
                target: key,
                repairs,
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&history)?);
            } else {
                print!("{history}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `NAMESPACE/NAME` (a Deployment) or `NAMESPACE/KIND/NAME` as the store keys targets.
fn target_key(target: &str) -> Result<String> {
    Ok(match target.split('/').collect::<Vec<_>>()[..] {
        [ns, name] => format!("{ns}/Deployment/{name}"),
        [ns, kind, name] => format!(
            "{ns}/{}/{name}",
            aiops::rules::canonical_kind(kind).unwrap_or(kind)
        ),
        _ => anyhow::bail!("target must be NAMESPACE/NAME or NAMESPACE/KIND/NAME, got {target:?}"),
    })
}

/// Success rates and times to recover over a window: a table, or with `--json` the report
/// as the API serves it.
struct Stats {
    report: Report,
    /// The window as given (`7d`), for the table's title.
    since: String,
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |s| format!("{s:.0}s"));
        writeln!(
            f,
            "repairs in the last {}, by alert and playbook:",
            self.since
        )?;
        writeln!(
            f,
            "{:<32} {:<16} {:>5} {:>8} {:>8} {:>9} {:>9}",
            "ALERT", "PLAYBOOK", "RUNS", "SUCCESS", "REVERTED", "TTR MEAN", "TTR P90"
        )?;
        for s in &self.report.by_alert {
            writeln!(
                f,
                "{:<32} {:<16} {:>5} {:>7.0}% {:>8} {:>9} {:>9}",
                s.alertname,
                s.playbook,
                s.runs,
                s.success_rate * 100.0,
                s.reverted,
                secs(s.ttr_mean_s),
                secs(s.ttr_p90_s)
            )?;
        }
        writeln!(f, "\nby target:")?;
        writeln!(
            f,
            "{:<48} {:>5} {:>8} {:>8}",
            "TARGET", "RUNS", "SUCCESS", "REVERTED"
        )?;
        for t in &self.report.by_target {
            writeln!(
                f,
                "{:<48} {:>5} {:>7.0}% {:>8}",
                t.target,
                t.runs,
                t.success_rate * 100.0,
                t.reverted
            )?;
        }
        Ok(())
    }
}

/// The last repairs of one target, newest first: lines, or JSON with `--json`.
#[derive(Serialize)]
struct History {
    /// `namespace/Kind/name`.
    target: String,
    /// Newest first, serialized as the API's repairs.
    repairs: Vec<Job>,
}

impl fmt::Display for History {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.repairs.is_empty() {
            writeln!(f, "no repairs of {}", self.target)?;
        }
        for j in &self.repairs {
            let when = aiops::store::rfc3339::format(j.created_at).unwrap_or_default();
            let result = j.error.clone().or(j.outcome.clone()).unwrap_or_default();
            let ttr = j.ttr_ms.map_or(String::new(), |ms| {
                format!(" (recovered in {}s)", ms / 1000)
            });
            writeln!(
                f,
                "{when} job {} {} [{}] {}: {result}{ttr}",
                j.id, j.playbook, j.rule, j.state
            )?;
        }
        Ok(())
    }
}

/// Shadow rules' evidence as a table per rule, then each rule's would-be actions.
struct ShadowTable {
    report: ShadowReport,
    /// The window as given (`7d`), for the title.
    since: String,
}

impl fmt::Display for ShadowTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "shadow rules in the last {} (dry runs: nothing was changed):",
            self.since
        )?;
        if self.report.rules.is_empty() {
            return writeln!(f, "no shadow jobs");
        }
        writeln!(
            f,
            "{:<32} {:>9} {:>13} {:>9} {:>10} {:>14}",
            "RULE", "WOULD ACT", "SELF-RESOLVED", "SHARE", "UNDECIDED", "MEDIAN TO SELF"
        )?;
        for r in &self.report.rules {
            writeln!(
                f,
                "{:<32} {:>9} {:>13} {:>9} {:>10} {:>14}",
                r.rule,
                r.would_act,
                r.self_resolved,
                r.self_resolved_share
                    .map_or_else(|| "-".to_string(), |s| format!("{:.0}%", s * 100.0)),
                r.undecided,
                r.self_resolve_median_s
                    .map_or_else(|| "-".to_string(), |s| format!("{s:.0}s")),
            )?;
        }
        for r in self.report.rules.iter().filter(|r| !r.actions.is_empty()) {
            writeln!(f, "\nrule {} would have:", r.rule)?;
            for a in &r.actions {
                writeln!(f, "  {:>5}x {}: {}", a.count, a.action, a.detail)?;
            }
        }
        Ok(())
    }
}
