//! The daemon on the test's own runtime, on port 0: what `aiops serve` runs
//! (`aiops::daemon::run`), without a process. A test that needs no signal, exit code, resident
//! memory or worker log line uses it (`TestApp::spawn_app`): a failure is a panic in the test's
//! own process, with the daemon's state at hand. Measured on this suite it is not faster than the
//! binary (a repair's polls dominate, and the daemon shares the test's two worker threads).
//!
//! The one seam to the library is [`start`]: settings from the same environment the process
//! gets, then `daemon::run`. When the application gains one builder (`App::build`), only this
//! function changes.
//!
//! Logs: the daemon's own task logs (start-up, "listening", shutdown) are captured as the
//! process's JSON lines are; tasks it spawns (workers, dispatcher) log to the test's default
//! subscriber, which is none. Tests that read worker logs spawn the process.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aiops::config::Settings;
use tracing::instrument::WithSubscriber;
use tracing_subscriber::fmt::MakeWriter;

use super::process::listening_addr;
use super::wait;

/// A daemon running on the test's runtime; stopped (its shutdown future completes) when dropped.
pub struct Daemon {
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), aiops::daemon::Error>>,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(stop) = self.shutdown.take() {
            let _ = stop.send(());
        }
        // The test is over: nothing waits for the graceful shutdown, as SIGKILL for a process.
        self.task.abort();
    }
}

/// Log lines of the daemon's own task, one JSON object each (the process's `--log-format json`).
#[derive(Clone)]
struct Capture(Arc<Mutex<Vec<String>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        let mut logs = self.0.lock().unwrap();
        logs.extend(text.lines().filter(|l| !l.is_empty()).map(str::to_string));
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Capture {
        self.clone()
    }
}

/// Loads settings from `env` (the `AIOPS_*` variables the process would get; a later entry wins,
/// as with a command's environment) and runs the daemon until it listens.
pub async fn start(env: &[(String, String)]) -> (Daemon, SocketAddr, Arc<Mutex<Vec<String>>>) {
    let var = |k: &str| {
        env.iter()
            .rev()
            .find(|(name, _)| name == k)
            .map(|(_, v)| v.clone())
    };
    // The configuration file too, as `aiops serve` reads it (`AIOPS_CONFIG`, which
    // `Spawn::config` sets).
    let file = var("AIOPS_CONFIG").map(std::path::PathBuf::from);
    let settings =
        Settings::load_with(file.as_deref(), var).expect("settings from the test's environment");
    let logs = Arc::new(Mutex::new(Vec::new()));
    let subscriber = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            var("AIOPS_LOG").unwrap_or_else(|| "info".into()),
        ))
        .with_writer(Capture(logs.clone()))
        .finish();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    // No reload requests: the sender is dropped, so the daemon's reloader ends at once.
    let (_, reload_rx) = tokio::sync::mpsc::channel(1);
    let shutdown = async move {
        let _ = stop_rx.await;
    };
    let task =
        tokio::spawn(aiops::daemon::run(settings, shutdown, reload_rx).with_subscriber(subscriber));
    let listening = wait::until(
        "the in-process daemon to listen",
        Duration::from_secs(30),
        async || {
            if task.is_finished() {
                return Some(None);
            }
            let logs = logs.lock().unwrap();
            logs.iter().find_map(|l| listening_addr(l)).map(Some)
        },
        || logs.lock().unwrap().join("\n"),
    )
    .await;
    let Some(addr) = listening else {
        let result = task.await;
        panic!(
            "the in-process daemon stopped before listening: {result:?}\nlogs:\n{}",
            logs.lock().unwrap().join("\n")
        );
    };
    let daemon = Daemon {
        shutdown: Some(stop_tx),
        task,
    };
    (daemon, addr, logs)
}
