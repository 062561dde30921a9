//! The app spec parser (`AppSpec::parse`), as `POST /api/apps` and `aiops render` call it, and
//! what the API does next with an accepted spec.
//!
//! Beyond "never panics": a refused spec names at least one problem, each on its own line (the
//! parser blanks bad entries out and parses again until none is left: it must end), and an
//! accepted spec renders with the embedded templates (a spec that
//! validates but cannot render is a validation gap, answered late and confusingly), and the JSON
//! the API stores parses back to a spec that renders the same objects (`GET
//! /api/apps/{name}/manifests` reads it back; a stored spec that no longer parses is a 5xx).
#![no_main]

use aiops::deploy::{AppSpec, Options, render};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let spec = match AppSpec::parse(text, "fuzz") {
        Ok(spec) => spec,
        Err(e) => {
            let report = e.to_string();
            if let aiops::deploy::spec::Error::Invalid { problems, .. } = &e {
                assert!(!problems.is_empty(), "a refusal without a problem");
                assert!(report.lines().count() >= problems.len(), "{report}");
            }
            return;
        }
    };
    let opts = Options::default();
    let rendered =
        render(&spec, &opts).unwrap_or_else(|e| panic!("an accepted spec does not render: {e}"));
    let stored = serde_json::to_value(&spec).expect("a spec serializes");
    let back: AppSpec = serde_json::from_value(stored)
        .unwrap_or_else(|e| panic!("the stored spec does not parse back: {e}"));
    let again =
        render(&back, &opts).unwrap_or_else(|e| panic!("the stored spec does not render: {e}"));
    assert_eq!(rendered.to_stream(), again.to_stream());
});
