//! The Alertmanager matcher parser (`parse_matchers`, `Matcher::parse`) and matcher evaluation,
//! as rules files and notification routes use them.
//!
//! Input: the matcher text, optionally followed by NUL-separated label values to try.
//! Beyond "never panics": a matcher's canonical form (`Display`) parses back to the same
//! matcher, and the fast paths of regex matchers (literal prefix, glob form) give exactly the
//! answer of the anchored regex `^(?:re)$` that Alertmanager evaluates. A difference there is a
//! rule that fires, or stays silent, on the wrong alert.
#![no_main]

use aiops::rules::{MatchOp, Matcher, parse_matchers};
use libfuzzer_sys::fuzz_target;
use regex::Regex;

fuzz_target!(|input: &str| {
    let mut parts = input.split('\0');
    let text = parts.next().unwrap_or_default();
    let mut probes: Vec<String> = parts.map(str::to_owned).collect();
    let _ = Matcher::parse(text).map_err(|e| e.to_string());
    let matchers = match parse_matchers(text) {
        Ok(m) => m,
        Err(e) => {
            assert!(
                e.column >= 1 && e.column <= text.chars().count() + 1,
                "column {} outside {text:?}",
                e.column
            );
            return;
        }
    };
    for m in &matchers {
        let canonical = m.to_string();
        let again = Matcher::parse(&canonical)
            .unwrap_or_else(|e| panic!("canonical form {canonical:?} does not parse: {e}"));
        assert_eq!(&again, m, "canonical form {canonical:?}");

        let negate = match m.op {
            MatchOp::Re => false,
            MatchOp::NotRe => true,
            MatchOp::Eq | MatchOp::Ne => {
                for v in &probes {
                    assert_eq!(m.matches_value(v), (*v == m.value) == (m.op == MatchOp::Eq));
                }
                continue;
            }
        };
        let oracle = Regex::new(&format!("^(?:{})$", m.value))
            .unwrap_or_else(|e| panic!("accepted regex {:?} does not compile: {e}", m.value));
        // Values near the pattern reach the interesting branches: the pattern's own text, its
        // `.*` filled or emptied, with a newline (which `.` does not match).
        let near = [
            m.value.clone(),
            m.value.replace(".*", ""),
            m.value.replace(".*", "x\n"),
            m.value.replace(".*", "\n"),
            m.value.replace('|', ""),
            String::new(),
            "\n".to_owned(),
        ];
        probes.extend(near);
        for v in &probes {
            assert_eq!(
                m.matches_value(v),
                oracle.is_match(v) != negate,
                "{m} on {v:?}"
            );
        }
    }
});
