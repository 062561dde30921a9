//! The settings loader (`Settings::parse_with`: what `Settings::load` runs on the file's text),
//! with an empty environment.
//!
//! Beyond "never panics": a refused file renders an error (what the operator sees at start-up),
//! and accepted settings print (`Debug`, as a settings dump does) without panicking.
#![no_main]

use std::path::Path;

use aiops::config::Settings;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    match Settings::parse_with(text, Path::new("fuzz.yaml"), |_| None) {
        Ok(s) => {
            let _ = format!("{s:?}");
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
