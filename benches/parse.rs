//! Benchmarks of webhook parsing: `Payload::from_slice` on every real Alertmanager fixture and on
//! a generated 1,000-alert group, with untyped `serde_json::Value` parsing as a reference point.
//!
//! Parsing runs once per webhook before anything is recorded, so its cost bounds intake
//! throughput from below; the untyped reference shows what the typed model, the field-path errors
//! (serde_path_to_error) and validation add over plain JSON parsing. Throughput is in bytes so
//! the small fixtures and the large group compare on one scale.

use std::hint::black_box;

use aiops::alert::{Labels, Payload, fingerprint};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

/// The real Alertmanager 0.25 payloads the tests use; embedded so the bench needs no files at run time.
const FIXTURES: [(&str, &[u8]); 4] = [
    (
        "am-0.25-firing-single",
        include_bytes!("../tests/fixtures/am-0.25-firing-single.json"),
    ),
    (
        "am-0.25-firing-grouped-3",
        include_bytes!("../tests/fixtures/am-0.25-firing-grouped-3.json"),
    ),
    (
        "am-0.25-group-firing-with-1-resolved",
        include_bytes!("../tests/fixtures/am-0.25-group-firing-with-1-resolved.json"),
    ),
    (
        "am-0.25-resolved-grouped-2",
        include_bytes!("../tests/fixtures/am-0.25-resolved-grouped-2.json"),
    ),
];

/// The fixture used for the untyped reference and by `benches/load.sh`.
const GROUPED_3: &[u8] = include_bytes!("../tests/fixtures/am-0.25-firing-grouped-3.json");

/// A group of `n` alerts shaped like Alertmanager's: distinct label sets (so distinct
/// fingerprints, as a real storm has), nanosecond `startsAt`, Go's zero `endsAt` on firing alerts,
/// and one in ten already resolved inside a firing group.
fn generated_payload(n: usize) -> Vec<u8> {
    let alerts: Vec<serde_json::Value> = (0..n)
        .map(|i| {
            let labels: Labels = [
                ("alertname", "KubePodCrashLooping".to_string()),
                ("namespace", format!("team-{}", i % 17)),
                ("pod", format!("web-{i}-7c9f8b6d5-x{:04}", i % 9973)),
                ("container", "app".to_string()),
                ("severity", if i % 3 == 0 { "critical" } else { "warning" }.to_string()),
                ("auto_repair", "restart".to_string()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
            let resolved = i % 10 == 9;
            serde_json::json!({
                "status": if resolved { "resolved" } else { "firing" },
                "fingerprint": fingerprint(&labels),
                "labels": labels,
                "annotations": {
                    "summary": format!("Pod web-{i} is restarting {} times / 10 minutes", i % 7 + 1),
                    "runbook_url": "https://runbooks.example/KubePodCrashLooping",
                },
                "startsAt": format!("2026-11-26T03:{:02}:{:02}.{:09}Z", i / 60 % 60, i % 60, i * 7919 % 1_000_000_000),
                "endsAt": if resolved { "2026-11-26T04:00:00.000000001Z" } else { "0001-01-01T00:00:00Z" },
                "generatorURL": "http://prometheus:9090/graph?g0.expr=rate%28kube_pod_container_status_restarts_total%5B10m%5D%29+%3E+0",
            })
        })
        .collect();
    let payload = serde_json::json!({
        "receiver": "remediator",
        "status": "firing",
        "alerts": alerts,
        "groupLabels": {"alertname": "KubePodCrashLooping"},
        "commonLabels": {"alertname": "KubePodCrashLooping", "container": "app", "auto_repair": "restart"},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "version": "4",
        "groupKey": "{}:{alertname=\"KubePodCrashLooping\"}",
        "truncatedAlerts": 0,
    });
    serde_json::to_vec(&payload).expect("a generated payload serializes")
}

fn bench_payload_from_slice(c: &mut Criterion) {
    let large = generated_payload(1_000);
    // A bench of a payload the daemon rejects would measure the error path; fail loudly instead.
    let parsed = Payload::from_slice(&large).expect("the generated payload is valid");
    assert_eq!(parsed.alerts.len(), 1_000);

    let mut group = c.benchmark_group("Payload::from_slice");
    for (name, body) in FIXTURES {
        Payload::from_slice(body)
            .unwrap_or_else(|e| panic!("fixture {name} no longer parses: {e}"));
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_function(name, |b| b.iter(|| Payload::from_slice(black_box(body))));
    }
    group.throughput(Throughput::Bytes(large.len() as u64));
    group.bench_function("generated-1000-alerts", |b| {
        b.iter(|| Payload::from_slice(black_box(&large)))
    });
    group.finish();

    let mut group = c.benchmark_group("serde_json::Value");
    group.throughput(Throughput::Bytes(GROUPED_3.len() as u64));
    group.bench_function("am-0.25-firing-grouped-3", |b| {
        b.iter(|| serde_json::from_slice::<serde_json::Value>(black_box(GROUPED_3)))
    });
    group.finish();
}

criterion_group!(benches, bench_payload_from_slice);
criterion_main!(benches);
