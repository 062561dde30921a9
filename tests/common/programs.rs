//! Real programs a test starts (Prometheus, PostgreSQL, git daemon, dnsmasq …): finding them,
//! skipping without them outside CI, a free port to give them, and a guard that stops one by
//! its PID. Shared by the end-to-end harness (tests/e2e/harness.rs) and the deploy tests.

use std::fs::File;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::in_ci;
use super::stand_ins::closed_addr;

/// Finds `name` on PATH (or at an absolute path).
pub fn which(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        return Path::new(name).is_file().then(|| PathBuf::from(name));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The programs a test needs, or `None` (skip, with the reason and `install` printed) outside
/// CI. In CI a missing program is a failure: .ci/run installs them.
pub fn require(names: &[&str], install: &str) -> Option<Vec<PathBuf>> {
    let mut found = Vec::new();
    for name in names {
        match which(name) {
            Some(p) => found.push(p),
            None if in_ci() => {
                panic!("{name} is required in CI but not on PATH (.ci/run installs it: {install})")
            }
            None => {
                eprintln!("skipping: {name} not on PATH ({install})");
                return None;
            }
        }
    }
    Some(found)
}

/// A free loopback port (the programs started here take a port on their command line and do
/// not report one chosen for them).
pub fn free_port() -> u16 {
    closed_addr().port()
}

/// A child process that is killed (by PID) and reaped when dropped; its output goes to a file.
pub struct Proc {
    name: String,
    child: Option<Child>,
    log: PathBuf,
}

impl Proc {
    /// Starts `cmd` with stdout and stderr appended to `log`.
    pub fn spawn(name: &str, mut cmd: Command, log: PathBuf) -> Proc {
        let out = File::options()
            .create(true)
            .append(true)
            .open(&log)
            .expect("open log");
        let err = out.try_clone().expect("clone log handle");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Proc {
            name: name.into(),
            child: Some(child),
            log,
        }
    }

    /// The last lines of its log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let from = lines.len().saturating_sub(40);
        format!(
            "--- {} log ({}):\n{}",
            self.name,
            self.log.display(),
            lines[from..].join("\n")
        )
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts a server that takes its port on the command line, on a free port, and waits until
/// the port accepts TCP connections; tries another port when the one picked was taken in
/// between (tests run concurrently).
pub async fn start_listening(
    name: &str,
    log_dir: &Path,
    command: impl Fn(u16) -> Command,
) -> (Proc, u16) {
    let mut last = String::new();
    for attempt in 0..3 {
        let port = free_port();
        let log = log_dir.join(format!("{}-{attempt}.log", name.replace(' ', "-")));
        let log_name = log.display().to_string();
        let mut proc = Proc::spawn(name, command(port), log);
        let up = super::wait::until(
            &format!("{name} to listen on 127.0.0.1:{port} (or exit)"),
            Duration::from_secs(20),
            async || {
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    Some(true)
                } else if !proc.running() {
                    Some(false)
                } else {
                    None
                }
            },
            move || format!("its log: {log_name}"),
        )
        .await;
        if up {
            return (proc, port);
        }
        last = proc.log_tail();
        if !last.contains("in use") {
            break;
        }
    }
    panic!("{name} did not start\n{last}")
}
