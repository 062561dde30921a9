//! The rules loader (`RuleSet::parse_str`, what `RuleSet::load_dir` runs on each file) and rule
//! selection.
//!
//! Beyond "never panics": every diagnostic of a refused file points at a line of that file, and
//! for an accepted file the indexed selection (`RuleSet::matching`) picks exactly the rules a
//! plain scan in file order does (first match wins unless `continue: true`), for label sets
//! built from the rules' own matchers. A difference is a repair run for the wrong alert, or none.
#![no_main]

use std::path::Path;

use aiops::rules::{Labels, MatchOp, Rule, RuleSet};
use libfuzzer_sys::fuzz_target;

fn scan<'a>(rules: &'a [Rule], labels: &Labels) -> Vec<&'a str> {
    let mut out = Vec::new();
    for r in rules {
        if r.matches(labels) {
            out.push(r.name.as_str());
            if !r.continue_matching {
                break;
            }
        }
    }
    out
}

/// Label sets that satisfy, or nearly satisfy, each rule's matchers.
fn label_sets(rules: &[Rule]) -> Vec<Labels> {
    let mut sets = vec![Labels::new()];
    for r in rules {
        let mut all = Labels::new();
        for m in &r.matchers {
            // A regex's source is often a value it matches (`critical|warning` is not, but
            // `Kube.*` nearly is); either way it exercises the index's prefix checks.
            let value = match m.op {
                MatchOp::Eq | MatchOp::Re => m.value.replace(".*", ""),
                MatchOp::Ne | MatchOp::NotRe => format!("{}x", m.value),
            };
            let one: Labels = [(m.name.clone(), value.clone())].into();
            sets.push(one);
            all.insert(m.name.clone(), value);
        }
        sets.push(all);
    }
    sets
}

fuzz_target!(|text: &str| {
    let file = Path::new("fuzz.yaml");
    // Lines as YAML counts them: `\r\n`, `\n` and a lone `\r` each end one.
    let lines = text.replace("\r\n", "\n").matches(['\n', '\r']).count() + 1;
    let rules = match RuleSet::parse_str(text, file) {
        Ok(rules) => rules,
        Err(e) => {
            for d in e.diagnostics() {
                assert!(
                    d.location.line >= 1 && d.location.line <= lines + 1,
                    "diagnostic at line {} of a {lines}-line file: {d}",
                    d.location.line
                );
            }
            let _ = e.to_string();
            return;
        }
    };
    let set = RuleSet::from_rules(rules);
    for labels in label_sets(set.rules()) {
        let picked: Vec<&str> = set
            .matching(&labels)
            .iter()
            .map(|r| r.name.as_str())
            .collect();
        assert_eq!(picked, scan(set.rules(), &labels), "labels {labels:?}");
        for r in set.matching(&labels) {
            let _ = r.target_for(&labels);
        }
    }
});
