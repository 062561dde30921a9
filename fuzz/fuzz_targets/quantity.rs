//! Kubernetes quantities (`parse_memory`, `parse_cpu`), as playbooks and state files read them.
//!
//! Beyond "never panics" (no overflow in the i128 arithmetic, no slicing inside a character):
//! an accepted quantity is not negative, and its canonical form (`format_memory`, `format_cpu`,
//! what actions and reports print) parses back to the same value.
#![no_main]

use aiops::cluster::quantity::{format_cpu, format_memory, parse_cpu, parse_memory};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|s: &str| {
    if let Ok(bytes) = parse_memory(s) {
        assert!(bytes >= 0, "{s:?} parsed to negative {bytes}");
        let canonical = format_memory(bytes);
        assert_eq!(parse_memory(&canonical), Ok(bytes), "{s:?} → {canonical:?}");
    }
    if let Ok(millis) = parse_cpu(s) {
        assert!(millis >= 0, "{s:?} parsed to negative {millis}");
        let canonical = format_cpu(millis);
        assert_eq!(parse_cpu(&canonical), Ok(millis), "{s:?} → {canonical:?}");
    }
});
