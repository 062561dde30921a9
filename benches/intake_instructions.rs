//! Deterministic instruction counts of the intake hot path, under Valgrind's Callgrind
//! (iai-callgrind): parsing the grouped-3 webhook, one `Pipeline::ingest` of it with fresh
//! alerts into a SQLite store in a temp file, and 64 such webhooks ingested concurrently; each
//! after an uncounted warm-up of the same shape, so the count is a running daemon's (statements
//! prepared, schema read), not a first start's.
//!
//! Wall-clock benches move with whatever else runs on the machine; an instruction count does
//! not, so a change of a few percent here is a real change of the code's work, on any machine.
//! It does not see what costs time without costing instructions: fsync, lock waits, scheduling.
//! `benches/load.sh` measures those.
//!
//! How the counting is scoped: the store's SQLite work runs on sqlx's worker threads, which a
//! per-function toggle (iai-callgrind's default entry point) would never count. So every thread
//! collects from the start into one profile (`--separate-threads=no`), `--zero-before` clears it
//! when the benchmark function is entered and `--dump-after` writes it when the function returns:
//! `part: 1` of an ingest benchmark is the benchmark function on every thread (setup excluded),
//! `part: 2` the rest of the process (teardown: dropping the runtime, pool and temp dir, and
//! exit), which varies by a few percent from run to run. Watch part 1; `Total` is their sum.
//!
//! Run: `cargo bench --bench intake_instructions` (needs `valgrind` and `iai-callgrind-runner`
//! at the same version as the `iai-callgrind` dev-dependency; see benches/README.md).

use std::hint::black_box;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use aiops::alert::Payload;
use aiops::config::Settings;
use aiops::definitions::Definitions;
use aiops::embedded::Source;
use aiops::metrics::Metrics;
use aiops::pipeline::{Pipeline, Report};
use aiops::store::{Options, Store};
use iai_callgrind::{
    Callgrind, EntryPoint, LibraryBenchmarkConfig, OutputFormat, library_benchmark,
    library_benchmark_group, main,
};
use tempfile::TempDir;
use tokio::runtime::Runtime;

/// The fixture `benches/parse.rs` and `benches/load.sh` use.
const GROUPED_3: &[u8] = include_bytes!("../tests/fixtures/am-0.25-firing-grouped-3.json");

/// Webhooks in the concurrent batch.
const BATCH: usize = 64;

/// What an ingest benchmark needs, built outside the counted function.
struct Setup {
    runtime: Runtime,
    pipeline: Pipeline,
    payloads: Vec<Payload>,
    /// Holds the SQLite file until the benchmark is over.
    _dir: TempDir,
}

/// `n` copies of the grouped-3 webhook whose alerts all have fingerprints no other alert has.
fn fresh_payloads(n: usize) -> Vec<Payload> {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    (0..n)
        .map(|_| {
            let mut payload = Payload::from_slice(GROUPED_3).expect("the grouped-3 fixture parses");
            for alert in &mut payload.alerts {
                alert.fingerprint = format!("{:016x}", NEXT.fetch_add(1, Ordering::Relaxed));
            }
            payload
        })
        .collect()
}

/// A pipeline as `aiops serve` builds it (the repository's rules and playbooks, default
/// settings, SQLite with its default durability) over a migrated store in a fresh temp file, on
/// a current-thread runtime; plus `n` fresh webhooks.
fn setup(n: usize) -> Setup {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread tokio runtime");
    let dir = tempfile::tempdir().expect("a temp dir for the SQLite store");
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("bench.db").display()
    );
    let defs = Definitions::load(
        &Source::Dir(root.join("rules")),
        &Source::Dir(root.join("playbooks")),
    )
    .unwrap_or_else(|problems| panic!("the repository's rules and playbooks: {problems:?}"));
    let store = runtime
        .block_on(Store::connect(&url, &Options::default()))
        .unwrap_or_else(|e| panic!("SQLite store at {url}: {e}"));
    let pipeline = Pipeline::new(store, defs, &Settings::default(), Metrics::new());
    // Warm-up, uncounted: the same shape of ingest twice, so the counted one finds what a
    // running daemon has: its statements prepared in the pool's connections (a first prepare
    // of a multi-row insert costs more than the rest of the batch), SQLite's schema read, and
    // the target busy with the repair the first alert started (the storm path: later alerts of
    // the same target are refused, which is what most alerts of a storm are).
    for _ in 0..2 {
        let warm = fresh_payloads(n);
        let reports = runtime.block_on(futures_util::future::join_all(
            warm.iter().map(|p| pipeline.ingest(p)),
        ));
        for (report, payload) in reports.iter().zip(&warm) {
            check(report.as_ref().expect("warm-up ingest"), payload);
        }
    }
    Setup {
        runtime,
        pipeline,
        payloads: fresh_payloads(n),
        _dir: dir,
    }
}

fn setup_one() -> Setup {
    setup(1)
}

fn setup_batch() -> Setup {
    setup(BATCH)
}

/// Every alert must have been new: a duplicate would mean the dedup path was measured.
fn check(report: &Report, payload: &Payload) {
    assert_eq!(
        report.duplicates, 0,
        "a fresh alert was counted a duplicate"
    );
    assert_eq!(
        report.accepted,
        payload.alerts.len(),
        "not every alert was recorded"
    );
}

#[library_benchmark]
fn parse_grouped_3() -> Payload {
    black_box(Payload::from_slice(black_box(GROUPED_3)).expect("the grouped-3 fixture parses"))
}

#[library_benchmark]
#[bench::fresh(setup = setup_one)]
fn ingest_one(s: Setup) -> Setup {
    let payload = &s.payloads[0];
    let report = s
        .runtime
        .block_on(s.pipeline.ingest(payload))
        .expect("ingest");
    check(&report, payload);
    s
}

#[library_benchmark]
#[bench::fresh(setup = setup_batch)]
fn ingest_batch_64(s: Setup) -> Setup {
    let reports = s.runtime.block_on(futures_util::future::join_all(
        s.payloads.iter().map(|p| s.pipeline.ingest(p)),
    ));
    for (report, payload) in reports.iter().zip(&s.payloads) {
        check(report.as_ref().expect("ingest"), payload);
    }
    s
}

/// All threads counted, zeroed when the benchmark function is entered, dumped when it returns
/// (see the module documentation).
fn all_threads(function: &str) -> LibraryBenchmarkConfig {
    // The function as `#[library_benchmark]` wraps it (its `wrapper` calls the setup first).
    let pattern = format!("*::__iai_callgrind_wrapper_mod::{function}");
    LibraryBenchmarkConfig::default()
        .tool(
            Callgrind::with_args([
                "--collect-atstart=yes".to_string(),
                // One profile for all threads: zeroing and dumping then act on every thread's
                // counts, not only on the thread that enters the function.
                "--separate-threads=no".to_string(),
                format!("--zero-before={pattern}"),
                format!("--dump-after={pattern}"),
            ])
            .entry_point(EntryPoint::None),
        )
        .output_format(OutputFormat::default().show_intermediate(true))
        .clone()
}

library_benchmark_group!(
    name = parse;
    benchmarks = parse_grouped_3
);

library_benchmark_group!(
    name = ingest_one_group;
    config = all_threads("ingest_one");
    benchmarks = ingest_one
);

library_benchmark_group!(
    name = ingest_batch_group;
    config = all_threads("ingest_batch_64");
    benchmarks = ingest_batch_64
);

main!(
    library_benchmark_groups = parse,
    ingest_one_group,
    ingest_batch_group
);
