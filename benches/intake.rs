//! One webhook of N matching alerts for N distinct targets, through the whole intake pipeline
//! (dedup, rule match, target check, storm brake, decisions) on a fresh SQLite store.
//!
//! The storm brake used to count the window once per alert, so this grew with N²; it now reads
//! the window once per payload and looks each target up by key. Compare `alerts/2000` with
//! `alerts/4000`: linear means about twice the time, not four times.

use std::sync::Arc;
use std::time::Duration;

use aiops::alert::Payload;
use aiops::config::Settings;
use aiops::definitions::Definitions;
use aiops::metrics::Metrics;
use aiops::pipeline::Pipeline;
use aiops::playbook::Catalog;
use aiops::rules::RuleSet;
use aiops::store::{Options, Store};
use criterion::{BatchSize, BenchmarkId, Criterion, criterion_group, criterion_main};

const RULES: &str =
    "rules:\n  - name: restart\n    matchers: ['auto_repair=\"restart\"']\n    playbook: restart\n";

fn payload(n: usize) -> Payload {
    let starts_at = (chrono::Utc::now() - chrono::Duration::minutes(5)).to_rfc3339();
    let alerts: Vec<serde_json::Value> = (0..n)
        .map(|i| {
            serde_json::json!({"status": "firing", "startsAt": starts_at,
                "labels": {"alertname": "Down", "auto_repair": "restart", "namespace": "prod",
                           "app": format!("app-{i}")}})
        })
        .collect();
    let body = serde_json::json!({"version": "4", "alerts": alerts}).to_string();
    Payload::from_slice(body.as_bytes()).expect("a valid payload")
}

async fn pipeline() -> Pipeline {
    let store = Store::connect("sqlite::memory:", &Options::default())
        .await
        .expect("in-memory store");
    let rules = RuleSet::parse_str(RULES, std::path::Path::new("bench.yaml")).expect("rules");
    let defs = Definitions {
        rules: Arc::new(RuleSet::from_rules(rules)),
        playbooks: Catalog::default(),
    };
    Pipeline::new(store, defs, &Settings::default(), Metrics::new())
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let mut group = c.benchmark_group("alerts");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20));
    for n in [1000, 2000, 4000] {
        let body = payload(n);
        group.bench_with_input(BenchmarkId::from_parameter(n), &body, |b, body| {
            b.iter_batched(
                || rt.block_on(pipeline()),
                |p| {
                    let report = rt.block_on(p.ingest(body)).expect("ingest");
                    assert_eq!(report.accepted, body.alerts.len());
                },
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
