//! `aiops replay --since 7d`: the stored alerts of a period decided again under a (changed)
//! rule set, with the recorded history as it was at each alert's time; prints the decisions
//! that differ from what happened and totals. Changes nothing: the configured store is opened
//! read-only and never migrated, and the decisions are made in a scratch store of its own
//! (how, and what it cannot know: [`aiops::replay`]).
//!
//! Exit status: 0 after a replay (whatever it found, unless `--fail-on-diff`), 1 with
//! `--fail-on-diff` when a decision differs, 2 when it could not replay (bad arguments, rules
//! or playbooks with errors, no store).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use chrono::{DateTime, Utc};

use aiops::app::{self, StoreAccess};
use aiops::config::Settings;
use aiops::replay::{self, Period};

/// `aiops replay`'s arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Start of the period: a duration before now (7d, 36h) or an RFC 3339 time
    /// (2026-11-23T00:00:00Z).
    #[arg(long, value_name = "WHEN", value_parser = parse_when)]
    since: DateTime<Utc>,
    /// End of the period (default: now): a duration before now or an RFC 3339 time.
    #[arg(long, value_name = "WHEN", value_parser = parse_when)]
    until: Option<DateTime<Utc>>,
    /// Rules to decide with (default: the configured rules_dir).
    #[arg(long, value_name = "DIR")]
    rules: Option<PathBuf>,
    /// Playbooks the rules may name (default: the configured playbooks_dir).
    #[arg(long, value_name = "DIR")]
    playbooks: Option<PathBuf>,
    /// Print the report as JSON (keys documented in the README).
    #[arg(long)]
    json: bool,
    /// Exit 1 when any decision differs (for CI); without it a replay exits 0.
    #[arg(long)]
    fail_on_diff: bool,
}

/// A time given as `7d` (that long before now) or RFC 3339.
fn parse_when(v: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(v) {
        return Ok(t.to_utc());
    }
    let d = aiops::config::parse_duration(v).map_err(|e| {
        format!(
            "{v:?} is neither a duration (7d, 36h) nor an RFC 3339 time (2026-11-23T00:00:00Z): {e}"
        )
    })?;
    let d = chrono::TimeDelta::from_std(d).map_err(|e| format!("{v:?}: {e}"))?;
    Utc::now()
        .checked_sub_signed(d)
        .ok_or_else(|| format!("{v:?} reaches too far back"))
}

/// Replays and prints; an error is printed here and exits 2 (clap's status for bad usage),
/// so that CI tells "could not replay" from "differences found".
pub async fn run(config: Option<&Path>, args: Args) -> Result<ExitCode> {
    match decide_again(config, &args).await {
        Ok(report) => {
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{report}");
            }
            Ok(if args.fail_on_diff && report.totals.different > 0 {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            Ok(ExitCode::from(2))
        }
    }
}

async fn decide_again(config: Option<&Path>, args: &Args) -> Result<replay::Report> {
    let mut settings = Settings::load(config)?;
    if let Some(dir) = &args.rules {
        settings.rules_dir = Some(dir.clone());
    }
    if let Some(dir) = &args.playbooks {
        settings.playbooks_dir = Some(dir.clone());
    }
    let period = Period {
        since: args.since.timestamp_millis(),
        until: args.until.unwrap_or_else(Utc::now).timestamp_millis(),
    };
    // The rules first: a set with errors is refused before the store is touched.
    let defs = app::load_definitions(&settings)?;
    let source = app::open_store(&settings, StoreAccess::ReadOnly).await?;
    let scratch = app::scratch_store().await?;
    let report = replay::run(&source, scratch, defs, &settings, period).await;
    source.close().await;
    Ok(report?)
}
