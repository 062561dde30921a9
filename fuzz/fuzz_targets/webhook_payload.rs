//! The webhook body parser (`Payload::from_slice`: Alertmanager's version 4, Grafana's version 1),
//! exactly as `POST /webhook/alertmanager` calls it on an authenticated body.
//!
//! Beyond "never panics": an accepted payload comes from a known sender; of it, every alert the per-alert check keeps
//! (`Payload::partition`, which the intake applies before writing) has a fingerprint the store
//! can hold (1..=64 characters), and the payload survives its own serialization with the same
//! dedup keys, so what the daemon logs or re-sends means the same alert.
#![no_main]

use aiops::alert::{DedupKey, Payload};
use libfuzzer_sys::fuzz_target;

fn keys(p: &Payload) -> Vec<DedupKey> {
    p.alerts.iter().map(|a| a.dedup_key()).collect()
}

fuzz_target!(|data: &[u8]| {
    let payload = match Payload::from_slice(data) {
        Ok(p) => p,
        Err(e) => {
            // The error is what Alertmanager's log shows: it must render, and name a field.
            assert!(!e.field.is_empty(), "a rejection names no field: {e}");
            let _ = e.to_string();
            return;
        }
    };
    assert!(
        payload.sender().is_some(),
        "accepted version {:?}",
        payload.version
    );
    let (kept, _rejected) = payload.partition(chrono::Utc::now());
    for a in kept {
        assert!(
            (1..=64).contains(&a.fingerprint.len()),
            "fingerprint {:?} out of bounds",
            a.fingerprint
        );
        let _ = a.alertname();
    }
    let json = serde_json::to_vec(&payload).expect("a parsed payload serializes");
    let again = Payload::from_slice(&json).expect("a serialized payload parses again");
    assert_eq!(keys(&payload), keys(&again));
});
