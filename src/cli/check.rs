//! `aiops check [--cluster]`: settings, rules and playbooks (they compile, and call only
//! functions that exist), and optionally the cluster's reachability and permissions. What
//! passed goes to stdout, what is wrong to stderr.

use std::fmt;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;

use aiops::app;
use aiops::config::Settings;
use aiops::playbook::calls;

/// `aiops check`'s arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Also check the cluster: the API server answers (its URL and version), and every
    /// permission the playbooks need is granted (SelfSubjectAccessReview); missing ones are
    /// listed with the ClusterRole rule to add. Exit 1 when anything is missing.
    #[arg(long)]
    cluster: bool,
}

/// Checks, in order: settings, channels, rules and playbooks, the playbooks' calls, then the
/// cluster. A broken channel or an unknown function does not hide what follows (one run lists
/// every problem it can); unreadable settings or definitions stop there, and the cluster is
/// checked only when everything before it passed.
pub async fn run(config: Option<&Path>, args: Args) -> Result<ExitCode> {
    let settings = match Settings::load(config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let source = config.map_or_else(
        || "defaults and environment".to_string(),
        |p| p.display().to_string(),
    );
    println!("settings: OK ({source})");
    if let Err(e) = settings.check_listen_is_safe() {
        eprintln!("settings: {e}");
        return Ok(ExitCode::FAILURE);
    }
    let mut failed = false;
    if settings.notify.broken.is_empty() {
        println!(
            "notify: OK ({} channels, {} routes)",
            settings.notify.channels.len(),
            settings.notify.routes.len()
        );
    } else {
        for problem in settings.notify.broken.values() {
            eprintln!("{problem}");
        }
        eprintln!(
            "notify: {} channel(s) cannot work",
            settings.notify.broken.len()
        );
        failed = true;
    }
    let defs = match app::load_definitions(&settings) {
        Ok(defs) => defs,
        Err(app::Error::Definitions(problems)) => {
            eprint!("{}", Problems(&problems));
            return Ok(ExitCode::FAILURE);
        }
        Err(e) => return Err(e.into()),
    };
    println!(
        "rules: {} ({} rules)",
        settings.rules_source(),
        defs.rules.len()
    );
    // Rhai resolves calls when it runs them: a misspelt or missing function is found here,
    // not in the middle of a repair.
    let runner = aiops::playbook::host::Runner::new();
    let known = calls::KnownFunctions::of(runner.engine());
    let unknown: Vec<String> = calls::unknown_calls(&known, &defs.playbooks)
        .iter()
        .map(ToString::to_string)
        .collect();
    if unknown.is_empty() {
        println!(
            "playbooks: {} ({} playbooks)",
            settings.playbooks_source(),
            defs.playbooks.len()
        );
    } else {
        eprint!("{}", Problems(&unknown));
        failed = true;
    }
    if failed {
        return Ok(ExitCode::FAILURE);
    }
    if !args.cluster {
        return Ok(ExitCode::SUCCESS);
    }
    let connect = match aiops::preflight::connect_of(&settings) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cluster: {e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let report =
        match aiops::preflight::run(&connect, &defs, &settings.guard.namespaces.allow).await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("cluster: {e}");
                return Ok(ExitCode::FAILURE);
            }
        };
    let lines = report.lines();
    if report.passed() {
        for l in &lines {
            println!("{l}");
        }
        Ok(ExitCode::SUCCESS)
    } else {
        // The reachable line goes to stdout like every passed check, and the optional GitOps
        // line (information, never a failure); what is wrong to stderr.
        for l in &lines {
            let information = l.starts_with(aiops::preflight::OPTIONAL_PREFIX);
            if information || l.starts_with("cluster: API server") && report.unreachable.is_none() {
                println!("{l}");
            } else {
                eprintln!("{l}");
            }
        }
        Ok(ExitCode::FAILURE)
    }
}

/// Rules or playbooks that failed: one `file:line: message` each (`file:line:column` for a
/// playbook), then the count.
struct Problems<'a>(&'a [String]);

impl fmt::Display for Problems<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in self.0 {
            writeln!(f, "{p}")?;
        }
        writeln!(f, "check failed: {} problem(s)", self.0.len())
    }
}
