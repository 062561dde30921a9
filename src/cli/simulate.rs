//! `aiops simulate FILE`: what the daemon would decide for a webhook payload, changing nothing.
//!
//! The decisions are the daemon's own ([`Pipeline::simulate`] over the services `serve` builds,
//! in a transaction that is rolled back); each job it would create is then dry-run through the
//! daemon's playbook sandbox against the configured cluster.
//!
//! `--ignore-dedup` evaluates an alert the store already holds as if it arrived again, and
//! `--at TIME` decides as of a later time (cooldowns, budgets, the storm window, `wait`); both
//! go through the same [`Pipeline::simulate`], so the answer stays the daemon's own.
//!
//! On SQLite the decisions take the write lock for as long as they last (milliseconds; the dry
//! runs come after the rollback): the guards are the intake's statements in the intake's
//! transaction, and the alerts of one payload see each other's effects (the job the first
//! creates makes the target busy for the second) only because those rows are written. A
//! read-only snapshot would need a second, in-memory implementation of every guard's count,
//! free to drift from the one that decides for real. The daemon's writers wait for the lock
//! (`busy_timeout`), they do not fail.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};

use aiops::alert::{Payload, Rejection, Status};
use aiops::app::{self, Services, StoreAccess};
use aiops::config::Settings;
use aiops::pipeline::{AlertVerdict, Pipeline, RuleVerdict, Simulation};
use aiops::playbook::host::RunResult;
use aiops::playbook::{offline, sandbox::Sandbox};

/// `aiops simulate`'s arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// An Alertmanager webhook payload (JSON).
    file: PathBuf,
    /// Print the verdicts as JSON.
    #[arg(long)]
    json: bool,
    /// Evaluate alerts the store already holds as if they arrived again (rule, guards, plan,
    /// dry run) instead of answering "duplicate"; still records nothing.
    #[arg(long)]
    ignore_dedup: bool,
    /// Decide as of TIME instead of now: RFC 3339 (2026-12-01T10:00:00Z) or a duration from
    /// now (+90m, +2h). Cooldowns, budgets, the storm window and `wait` are measured from it.
    /// The history is the store's as it is now, so TIME may not be in the past.
    #[arg(long, value_name = "TIME", value_parser = parse_at)]
    at: Option<DateTime<Utc>>,
}

/// `--at`'s value: an RFC 3339 time, or `+DURATION` from now.
fn parse_at(v: &str) -> Result<DateTime<Utc>, String> {
    let at = match v.strip_prefix('+') {
        Some(d) => {
            let d = aiops::config::parse_duration(d)?;
            let d = chrono::TimeDelta::from_std(d).map_err(|e| e.to_string())?;
            Utc::now()
                .checked_add_signed(d)
                .ok_or_else(|| format!("{v:?} is too far ahead"))?
        }
        None => DateTime::parse_from_rfc3339(v)
            .map_err(|e| {
                format!(
                    "{v:?}: {e}; write an RFC 3339 time (2026-12-01T10:00:00Z) or +DURATION (+2h)"
                )
            })?
            .to_utc(),
    };
    Ok(at)
}

impl Args {
    /// What the simulation departs from the intake by; a TIME in the past is refused, because
    /// what the store recorded since would count as if it had happened before it.
    fn simulation(&self, now: DateTime<Utc>) -> Result<Simulation> {
        if let Some(at) = self.at
            && at < now
        {
            bail!(
                "--at {} is in the past: the store's history as it is now (repairs since then \
                 included) would count as if it had happened before it; give a time from now on",
                at.to_rfc3339()
            );
        }
        Ok(Simulation {
            at: self.at.map(|t| t.timestamp_millis()),
            ignore_dedup: self.ignore_dedup,
        })
    }
}

/// Decides, dry-runs and prints; `--json` prints the verdicts alone.
pub async fn run(config: Option<&Path>, args: Args) -> Result<ExitCode> {
    let settings = Settings::load(config)?;
    let sim = args.simulation(Utc::now())?;
    let body =
        std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let payload = Payload::from_slice(&body).with_context(|| format!("{}", args.file.display()))?;
    // Read the configured store when it exists, so dedup, cooldowns and budgets are real; never
    // create it. Every write happens in a transaction that is rolled back.
    let store_absent = app::missing_sqlite_file(&settings).is_some();
    let services = Services::build(settings, StoreAccess::Inspect).await?;
    if args.json {
        let decided = services.pipeline.simulate(&payload, sim).await?;
        println!("{}", serde_json::to_string_pretty(&decided.alerts)?);
        return Ok(ExitCode::SUCCESS);
    }
    let report = Report::build(&services, &payload, &args.file, store_absent, sim).await?;
    print!("{report}");
    Ok(ExitCode::SUCCESS)
}

/// Everything `simulate` prints: the verdicts, and a dry run of each job it would create.
pub struct Report {
    file: PathBuf,
    store_absent: bool,
    alerts_in_payload: usize,
    rejected: Vec<Rejection>,
    alerts: Vec<Simulated>,
    /// When the decisions were made (epoch ms): a plan due later says until when it waits.
    now: i64,
    /// How the evaluation departed from the intake's.
    sim: Simulation,
}

/// One alert's verdict, with the dry run of each job (index-aligned with its rules).
struct Simulated {
    verdict: AlertVerdict,
    dry_runs: Vec<Option<DryRun>>,
}

/// A playbook's dry run: its result, or why it could not run.
struct DryRun {
    playbook: String,
    result: Result<RunResult, String>,
}

impl Report {
    /// Decides on `payload` as the daemon would (rolled back), then dry-runs each job's
    /// playbook in the daemon's sandbox on the configured cluster.
    pub async fn build(
        services: &Services,
        payload: &Payload,
        file: &Path,
        store_absent: bool,
        sim: Simulation,
    ) -> Result<Report> {
        let pipeline: &Pipeline = &services.pipeline;
        let decided = pipeline.simulate(payload, sim).await?;
        let now = sim.at.unwrap_or_else(aiops::store::now_ms);
        let sandbox = Sandbox::new(services.cluster.clone(), &services.settings.playbook)
            .with_gitops(services.settings.gitops.clone());
        let defs = services.definitions();
        let mut alerts = Vec::with_capacity(decided.alerts.len());
        for verdict in decided.alerts {
            let mut dry_runs = Vec::with_capacity(verdict.rules.len());
            for rv in &verdict.rules {
                let alert = payload
                    .alerts
                    .iter()
                    .find(|x| x.fingerprint == verdict.fingerprint);
                let dry_run = match (rv, alert) {
                    (
                        RuleVerdict::Job {
                            rule, target, plan, ..
                        },
                        Some(alert),
                    ) => {
                        let p = offline::Plan {
                            target: target.clone(),
                            params: plan.params.clone().into(),
                            rule: Some(rule.clone()),
                            gitops: defs
                                .rules
                                .rules()
                                .iter()
                                .find(|r| r.name == *rule)
                                .and_then(|r| r.gitops),
                        };
                        // Always a dry run: what the playbook would do to the cluster, now.
                        let result =
                            offline::run(&sandbox, &defs, &plan.playbook, alert, &p, true).await;
                        Some(DryRun {
                            playbook: plan.playbook.clone(),
                            result,
                        })
                    }
                    _ => None,
                };
                dry_runs.push(dry_run);
            }
            alerts.push(Simulated { verdict, dry_runs });
        }
        Ok(Report {
            file: file.to_path_buf(),
            store_absent,
            alerts_in_payload: payload.alerts.len(),
            rejected: decided.rejected,
            alerts,
            now,
            sim,
        })
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "simulating {} alert(s) from {}{}{}; nothing is recorded",
            self.alerts_in_payload,
            self.file.display(),
            match self.sim.at {
                Some(at) => format!(" as of {}", rfc3339(at)),
                None => String::new(),
            },
            if self.store_absent {
                " (store file absent: empty history)"
            } else {
                ""
            }
        )?;
        for r in &self.rejected {
            writeln!(
                f,
                "alert {:?} (alerts[{}]) rejected, as the webhook would answer 400: {} {}",
                r.alertname, r.index, r.field, r.reason
            )?;
        }
        for a in &self.alerts {
            a.write(f, self.now, self.sim.ignore_dedup)?;
        }
        Ok(())
    }
}

impl Simulated {
    fn write(&self, f: &mut fmt::Formatter<'_>, now: i64, ignore_dedup: bool) -> fmt::Result {
        let a = &self.verdict;
        writeln!(
            f,
            "alert {} {} [{}]: {}",
            a.alertname,
            a.fingerprint,
            a.status.as_str(),
            a.dedup
        )?;
        if a.dedup == "duplicate" {
            if !ignore_dedup {
                return writeln!(f, "  already recorded: no action");
            }
            writeln!(
                f,
                "  already recorded; evaluated as if it arrived again (--ignore-dedup)"
            )?;
        }
        if a.status == Status::Resolved {
            return writeln!(
                f,
                "  resolved: would cancel {} queued/waiting job(s)",
                a.cancelled_jobs.len()
            );
        }
        if a.rules.is_empty() {
            writeln!(f, "  no rule matched: recorded only")?;
        }
        for (rv, dry_run) in a.rules.iter().zip(&self.dry_runs) {
            match rv {
                RuleVerdict::Job {
                    rule,
                    target,
                    state,
                    plan,
                    ..
                } => {
                    let when = if plan.not_before > now {
                        format!("waiting until {}", rfc3339(plan.not_before))
                    } else {
                        "now".to_string()
                    };
                    writeln!(
                        f,
                        "  rule {rule}: allowed by every guard -> would create a job ({state})"
                    )?;
                    writeln!(
                        f,
                        "    plan: run playbook {} on {} {when}{}, params {}",
                        plan.playbook,
                        target.key(),
                        if plan.dry_run { " (dry run)" } else { "" },
                        plan.params
                    )?;
                    writeln!(
                        f,
                        "    on failure: {}",
                        serde_json::to_string(&plan.escalate).unwrap_or_default()
                    )?;
                    if let Some(d) = dry_run {
                        write!(f, "{d}")?;
                    }
                }
                RuleVerdict::Refused {
                    rule,
                    reason,
                    detail,
                    ..
                } => {
                    writeln!(f, "  rule {rule}: refused ({}) - {detail}", reason.as_str())?;
                }
            }
        }
        Ok(())
    }
}

/// An epoch-ms time as RFC 3339.
fn rfc3339(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms).map_or_else(|| ms.to_string(), |t| t.to_rfc3339())
}

impl fmt::Display for DryRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.result {
            Ok(r) => {
                writeln!(f, "    dry run of {}:", self.playbook)?;
                for s in &r.steps {
                    writeln!(f, "      {}: {}", s.action, s.detail)?;
                }
                writeln!(f, "      -> {}: {}", r.outcome.kind(), r.outcome.message())
            }
            Err(e) => writeln!(f, "    dry run of {} not possible: {e}", self.playbook),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A server on 127.0.0.1 that answers every connection with `response` (raw HTTP); counts
    /// the connections it accepted.
    async fn serve(response: String) -> (u16, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let hits = Arc::new(AtomicUsize::new(0));
        let counted = hits.clone();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                let mut request = [0u8; 4096];
                let _ = conn.read(&mut request).await;
                let _ = conn.write_all(response.as_bytes()).await;
            }
        });
        (port, hits)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn simulate_does_not_follow_a_redirect_to_a_host_outside_http_allow() {
        // Arrange: an allowed host that redirects to another port nobody allowed.
        let (outside, outside_hits) =
            serve("HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecret".to_string()).await;
        let (allowed, allowed_hits) = serve(format!(
            "HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:{outside}/steal?token=abc\r\nContent-Length: 0\r\n\r\n"
        ))
        .await;
        let dir = tempfile::tempdir().unwrap();
        let (rules, playbooks) = (dir.path().join("rules"), dir.path().join("playbooks"));
        std::fs::create_dir_all(&rules).unwrap();
        std::fs::create_dir_all(&playbooks).unwrap();
        std::fs::write(
            rules.join("probe.yaml"),
            "rules:\n  - name: probe\n    matchers: ['auto_repair=\"probe\"']\n    playbook: probe\n",
        )
        .unwrap();
        std::fs::write(
            playbooks.join("probe.rhai"),
            format!(
                "let r = http_get(\"http://127.0.0.1:{allowed}/health\");\nif r.ok {{ success(\"reached: \" + r.body); }} else {{ fail(\"health answered \" + r.status); }}\n"
            ),
        )
        .unwrap();
        let mut settings = Settings {
            rules_dir: Some(rules),
            playbooks_dir: Some(playbooks),
            database_url: aiops::config::Secret::new("sqlite::memory:"),
            ..Settings::default()
        };
        settings.playbook.http_allow = vec![format!("127.0.0.1:{allowed}")];
        let services = Services::build(settings, StoreAccess::Inspect)
            .await
            .unwrap();
        let payload = Payload::from_slice(
            br#"{"version":"4","status":"firing","alerts":[{"status":"firing","labels":{"alertname":"Probe","auto_repair":"probe","namespace":"prod","deployment":"web"},"startsAt":"2026-11-30T00:00:00Z"}]}"#,
        )
        .unwrap();

        // Act
        let report = Report::build(
            &services,
            &payload,
            Path::new("alert.json"),
            false,
            Simulation::default(),
        )
        .await
        .unwrap()
        .to_string();

        // Assert: the allowed host was asked once; the redirect was not followed.
        assert_eq!(allowed_hits.load(Ordering::SeqCst), 1, "{report}");
        assert_eq!(
            outside_hits.load(Ordering::SeqCst),
            0,
            "the redirect out of http_allow was followed: {report}"
        );
        assert!(
            report.contains(&format!(
                "http_get: GET http://127.0.0.1:{allowed}/health -> 302 (redirect to 127.0.0.1:{outside} not followed"
            )),
            "{report}"
        );
        assert!(
            report.contains("-> failure: health answered 302"),
            "{report}"
        );
        assert!(!report.contains("token=abc"), "{report}");
    }
}
