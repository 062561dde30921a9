//! Waiting on a condition with a deadline: the one way these tests synchronise with the daemon,
//! its store and the stand-ins. A fixed sleep either wastes time or, on a loaded machine, is not
//! long enough; a probe with a deadline is as fast as the system and fails with what it saw.

use std::fmt::Debug;
use std::time::{Duration, Instant};

/// How often a condition is probed. It bounds how long a test waits after the condition holds;
/// it is not a synchronisation delay.
pub const PROBE_EVERY: Duration = Duration::from_millis(50);

/// The deadline most waits on the daemon use: generous for a loaded CI machine, and a test that
/// passes never waits for it.
pub const DEFAULT_WITHIN: Duration = Duration::from_secs(20);

/// Probes until `probe` answers `Ok`; after `within`, panics naming `what`, the last `Err` the
/// probe answered (the state it saw) and `context()` (logs, typically), computed only then.
pub async fn until_ok<T, E: Debug>(
    what: &str,
    within: Duration,
    mut probe: impl AsyncFnMut() -> Result<T, E>,
    context: impl FnOnce() -> String,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        let last = match probe().await {
            Ok(v) => return v,
            Err(e) => e,
        };
        if Instant::now() > deadline {
            panic!(
                "timed out after {within:?} waiting for {what}; last seen: {last:#?}\n{}",
                context()
            );
        }
        tokio::time::sleep(PROBE_EVERY).await;
    }
}

/// Probes until `probe` answers `Some`; after `within`, panics naming `what` and `context()`.
pub async fn until<T>(
    what: &str,
    within: Duration,
    mut probe: impl AsyncFnMut() -> Option<T>,
    context: impl FnOnce() -> String,
) -> T {
    /// What a probe answering `None` saw, for the failure message.
    #[derive(Debug)]
    struct NotYet;
    until_ok(what, within, async || probe().await.ok_or(NotYet), context).await
}
