//! Playbook overhead: one run of a shipped playbook on the in-memory cluster, dry run and real,
//! excluding any network I/O. Target (issue 3): ≤ 50 µs a run.
//!
//! What is measured: installing the run context, evaluating the precompiled AST in the shared
//! sandboxed engine, every host call (each one a `Handle::block_on` into tokio, as in the
//! daemon) and recording the steps in memory.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use aiops::alert::Payload;
use aiops::cluster::memory::MemoryCluster;
use aiops::cluster::{Cluster, Target};
use aiops::definitions::Definitions;
use aiops::playbook::host::{HostSettings, Outcome, RunContext, RunInput, Runner};
use criterion::{Criterion, criterion_group, criterion_main};

fn bench(c: &mut Criterion) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let defs = Definitions::load(
        &aiops::embedded::Source::Dir(root.join("rules")),
        &aiops::embedded::Source::Dir(root.join("playbooks")),
    )
    .expect("shipped definitions load");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let state = std::fs::read_to_string(root.join("tests/fixtures/cluster-state.yaml")).unwrap();
    let payload = Payload::from_slice(include_bytes!(
        "../tests/fixtures/am-0.25-firing-grouped-3.json"
    ))
    .unwrap();
    let alert = &payload.alerts[0];
    let target = Target {
        namespace: "prod".into(),
        kind: "Deployment".into(),
        name: "web".into(),
    };
    let runner = Runner::new();
    let http = reqwest::Client::new();
    let mut group = c.benchmark_group("playbook_run");
    for (name, params, dry_run) in [
        ("restart", serde_json::json!({}), true),
        ("restart", serde_json::json!({}), false),
        (
            "scale_memory",
            serde_json::json!({"max_limit": "64Gi"}),
            true,
        ),
        ("cleanup", serde_json::json!({}), true),
    ] {
        let pb = defs.playbooks.get(name).unwrap().clone();
        let cluster: Arc<dyn Cluster> = Arc::new(MemoryCluster::from_yaml(&state).unwrap());
        let label = format!("{name}/{}", if dry_run { "dry_run" } else { "applied" });
        group.bench_function(label, |b| {
            b.iter(|| {
                let input = RunInput::new(
                    &alert.labels,
                    &alert.annotations,
                    &alert.fingerprint,
                    "2026-11-26T03:35:56Z",
                    "firing",
                    &params,
                    &target,
                );
                let ctx = Arc::new(RunContext::new(
                    cluster.clone(),
                    None,
                    None,
                    rt.handle().clone(),
                    dry_run,
                    HostSettings::default(),
                    http.clone(),
                    Duration::from_secs(60),
                ));
                let result = runner.run(&pb, input, ctx);
                assert!(
                    matches!(result.outcome, Outcome::Success(_)),
                    "{:?}",
                    result.outcome
                );
                result
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
