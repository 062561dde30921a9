//! Unit tests of the accept loop: the refusal beyond the connection cap and the deadlines.

use super::*;

#[test]
fn the_refusal_beyond_the_cap_is_a_well_formed_response() {
    let text = std::str::from_utf8(REFUSED).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 503 "));
    assert!(
        head.contains(&format!("content-length: {}", body.len())),
        "{head}"
    );
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    assert!(v["error"].is_string());
}

#[test]
fn the_soft_open_files_limit_is_read_from_proc_limits() {
    let text = "Limit                     Soft Limit           Hard Limit           Units\n\
                    Max processes             127431               127431               processes\n\
                    Max open files            1024                 524288               files\n";
    assert_eq!(soft_open_files(text), Some(1024));
    assert_eq!(
        soft_open_files(
            "Max open files            unlimited            unlimited            files"
        ),
        None
    );
    assert_eq!(soft_open_files(""), None);
}

#[test]
fn a_log_throttle_lets_one_line_through_and_counts_the_rest() {
    let t = LogThrottle::default();
    assert_eq!(t.ready(), Some(0));
    assert_eq!(t.ready(), None);
    assert_eq!(t.ready(), None);
    *t.last.lock().unwrap() = Some(std::time::Instant::now() - LOG_EVERY);
    assert_eq!(t.ready(), Some(2));
}

#[tokio::test(start_paused = true)]
async fn the_watchdog_trips_on_the_phase_that_outlives_its_deadline() {
    let limits = Limits {
        header_read_timeout: Duration::from_secs(2),
        body_read_timeout: Duration::from_secs(3),
        idle_timeout: Duration::from_secs(5),
        max_connections: 1,
    };
    // A fresh connection that never completes its headers: cut at the header timeout.
    let a = Activity::new();
    let started = Instant::now();
    assert_eq!(watchdog(&a, &limits).await, Tripped::Header);
    assert_eq!(started.elapsed(), Duration::from_secs(2));

    // A handler that runs long is never cut; the idle time after it is.
    let a = Arc::new(Activity::new());
    a.set(Phase::Busy);
    let started = Instant::now();
    let dog = {
        let a = a.clone();
        let limits = limits.clone();
        tokio::spawn(async move { watchdog(&a, &limits).await })
    };
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(!dog.is_finished());
    a.set(Phase::Idle);
    assert_eq!(dog.await.unwrap(), Tripped::Idle);
    assert!(started.elapsed() >= Duration::from_secs(65));

    // A shorter deadline beginning while the watchdog waits on a longer one applies at once.
    let limits = Limits {
        header_read_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(1),
        ..limits
    };
    let a = Arc::new(Activity::new());
    let started = Instant::now();
    let dog = {
        let a = a.clone();
        let limits = limits.clone();
        tokio::spawn(async move { watchdog(&a, &limits).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    a.set(Phase::Busy);
    a.set(Phase::Idle);
    assert_eq!(dog.await.unwrap(), Tripped::Idle);
    assert_eq!(started.elapsed(), Duration::from_millis(1100));

    // A response nobody reads is cut at the idle timeout too.
    let a = Activity::new();
    a.set(Phase::Writing);
    let started = Instant::now();
    assert_eq!(watchdog(&a, &limits).await, Tripped::Write);
    assert_eq!(started.elapsed(), Duration::from_secs(1));

    // Bytes on an idle connection start the header clock.
    let a = Activity::new();
    a.set(Phase::Idle);
    a.read_some();
    assert_eq!(a.get().0, Phase::Head);
}
