//! `aiops simulate FILE`: what the daemon would decide for a webhook payload, changing nothing.
//!
//! The decisions are the daemon's own ([`Pipeline::simulate`] over the services `serve` builds,
//! in a transaction that is rolled back); each job it would create is then dry-run through the
//! daemon's playbook sandbox against the configured cluster.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};

use aiops::alert::{Payload, Rejection, Status};
use aiops::app::{self, Services, StoreAccess};
use aiops::config::Settings;
use aiops::pipeline::{AlertVerdict, Pipeline, RuleVerdict};
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
}

/// Decides, dry-runs and prints; `--json` prints the verdicts alone.
pub async fn run(config: Option<&Path>, args: Args) -> Result<ExitCode> {
    let settings = Settings::load(config)?;
    let body =
        std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let payload = Payload::from_slice(&body).with_context(|| format!("{}", args.file.display()))?;
    // Read the configured store when it exists, so dedup, cooldowns and budgets are real; never
    // create it. Every write happens in a transaction that is rolled back.
    let store_absent = app::missing_sqlite_file(&settings).is_some();
    let services = Services::build(settings, StoreAccess::Inspect).await?;
    if args.json {
        let decided = services.pipeline.simulate(&payload).await?;
        println!("{}", serde_json::to_string_pretty(&decided.alerts)?);
        return Ok(ExitCode::SUCCESS);
    }
    let report = Report::build(&services, &payload, &args.file, store_absent).await?;
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
    ) -> Result<Report> {
        let pipeline: &Pipeline = &services.pipeline;
        let decided = pipeline.simulate(payload).await?;
        let now = aiops::store::now_ms();
        let sandbox = Sandbox::new(services.cluster.clone(), &services.settings.playbook);
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
        })
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "simulating {} alert(s) from {}{}; nothing is recorded",
            self.alerts_in_payload,
            self.file.display(),
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
            a.write(f, self.now)?;
        }
        Ok(())
    }
}

impl Simulated {
    fn write(&self, f: &mut fmt::Formatter<'_>, now: i64) -> fmt::Result {
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
            return writeln!(f, "  already recorded: no action");
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
                        format!(
                            "waiting until {}",
                            chrono::DateTime::from_timestamp_millis(plan.not_before)
                                .map_or_else(String::new, |t| t.to_rfc3339())
                        )
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
        let report = Report::build(&services, &payload, Path::new("alert.json"), false)
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
