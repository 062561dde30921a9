//! Benchmarks of rule matching (the per-alert hot path) and rule file parsing.
//!
//! The rule mix follows what deployments write: most rules keyed on `alertname` plus a severity
//! regex, some keyed on an `auto_repair` label, and a few regex-only rules that every alert has
//! to be checked against.

use std::hint::black_box;
use std::path::Path;

use aiops::rules::{Labels, RuleSet};
use criterion::{Criterion, criterion_group, criterion_main};

/// 900 alertname rules, 50 auto_repair rules, 50 regex-only rules, interleaved so that the
/// regex-only rules are spread over the whole order like hand-maintained files.
fn rules_yaml() -> String {
    let mut out = String::from("rules:\n");
    let mut auto = 0;
    let mut regex = 0;
    for i in 0..900 {
        out += &format!(
            "  - name: alert-{i}\n    matchers:\n      - alertname=\"Alert{i}\"\n      - severity=~\"critical|warning\"\n    playbook: restart\n    cooldown: 10m\n"
        );
        if i % 18 == 17 {
            out += &format!(
                "  - name: auto-{auto}\n    matchers:\n      - auto_repair=\"action{auto}\"\n      - namespace!=\"kube-system\"\n    playbook: restart\n    budget: {{max: 3, window: 1h}}\n"
            );
            out += &format!(
                "  - name: regex-{regex}\n    matchers: ['alertname=~\"Kube.*OOM-{regex}-.*\"']\n    playbook: bump-memory\n    target: {{kind: [$target_kind, Deployment], name: [$deployment, $app]}}\n"
            );
            auto += 1;
            regex += 1;
        }
    }
    out
}

fn alert(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn typical(alertname: &str, auto_repair: Option<&str>) -> Labels {
    let mut l = alert(&[
        ("alertname", alertname),
        ("severity", "critical"),
        ("namespace", "shop"),
        ("deployment", "cart"),
        ("pod", "cart-7d9f8b6c5-x2x7q"),
        ("instance", "10.0.3.17:8080"),
        ("job", "kubernetes-pods"),
        ("prometheus", "monitoring/k8s"),
    ]);
    if let Some(a) = auto_repair {
        l.insert("auto_repair".to_owned(), a.to_owned());
    }
    l
}

fn matching(c: &mut Criterion) {
    let set = RuleSet::from_rules(
        RuleSet::parse_str(&rules_yaml(), Path::new("bench.yaml")).expect("bench rules parse"),
    );
    assert_eq!(set.len(), 1000);
    let cases = [
        ("early", typical("Alert3", None), Some("alert-3")),
        ("late", typical("Alert897", None), Some("alert-897")),
        (
            "auto_repair",
            typical("Unrelated", Some("action42")),
            Some("auto-42"),
        ),
        (
            "regex_only",
            typical("KubeContainerOOM-37-Killed", None),
            Some("regex-37"),
        ),
        ("nothing", typical("NoSuchAlert", None), None),
    ];
    let mut group = c.benchmark_group("matching_1000_rules");
    for (name, labels, expected) in &cases {
        // A benchmark of the wrong answer is worthless: check it first.
        let got = set.matching(labels);
        assert_eq!(got.first().map(|r| r.name.as_str()), *expected, "{name}");
        group.bench_function(*name, |b| b.iter(|| set.matching(black_box(labels))));
    }
    group.finish();
}

fn parsing(c: &mut Criterion) {
    let text = rules_yaml();
    let mut group = c.benchmark_group("parse");
    group.sample_size(20);
    group.bench_function("rules_file_1000_rules", |b| {
        b.iter(|| RuleSet::parse_str(black_box(&text), Path::new("bench.yaml")).expect("parses"))
    });
    group.bench_function("build_index_1000_rules", |b| {
        let rules = RuleSet::parse_str(&text, Path::new("bench.yaml")).expect("parses");
        b.iter_batched(
            || rules.clone(),
            RuleSet::from_rules,
            criterion::BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, matching, parsing);
criterion_main!(benches);
