//! Unit tests of the host API under the sandbox: memory, CPU, log and outcome limits.

use std::time::Duration;

use super::*;
use crate::cluster::memory::MemoryCluster;

/// Small limits, so each hostile script is stopped in well under a second.
fn tight() -> HostSettings {
    HostSettings {
        max_memory: 8 << 20,
        max_cpu: Duration::from_millis(500),
        max_log_line: 1024,
        max_log: 16 << 10,
        ..HostSettings::default()
    }
}

/// Runs `source` as playbook `t.rhai` (dry run, empty cluster).
fn run(source: &str, settings: HostSettings) -> RunResult {
    run_on(source, settings, MemoryCluster::empty(), true)
}

fn run_on(
    source: &str,
    settings: HostSettings,
    cluster: MemoryCluster,
    dry_run: bool,
) -> RunResult {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    // As on the daemon's blocking threads: inside the runtime's context, not on a worker.
    let _context = rt.enter();
    let runner = Runner::new();
    let playbook = super::super::Playbook {
        name: "t".into(),
        path: "t.rhai".into(),
        ast: runner.engine().compile(source).unwrap(),
        source: source.into(),
    };
    let target = Target {
        namespace: "prod".into(),
        kind: "deployment".into(),
        name: "web".into(),
    };
    let input = RunInput::new(
        &Default::default(),
        &Default::default(),
        "fp",
        "2026-11-30T00:00:00Z",
        "firing",
        &serde_json::json!({}),
        &target,
    );
    let http = http_client(&settings);
    let ctx = Arc::new(RunContext::new(
        Arc::new(cluster),
        None,
        None,
        rt.handle().clone(),
        dry_run,
        settings,
        http,
        Duration::from_secs(60),
    ));
    runner.run(&playbook, input, ctx)
}

fn stopped_for(source: &str, reason: &str) -> RunResult {
    let started = Instant::now();
    let r = run(source, tight());
    assert_eq!(r.outcome.kind(), "inconclusive", "{:?}", r.outcome);
    assert!(
        r.outcome.message().contains(reason),
        "{:?} lacks {reason:?}",
        r.outcome
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "stopped promptly: {:?}",
        started.elapsed()
    );
    r
}

/// A 512 KiB string, so `big + i` stays under Rhai's 1 MiB string limit.
const BIG: &str = "let big = \"x\"; while big.len() < 500000 { big += big; }\n";

#[test]
fn a_map_grown_by_index_assignment_is_stopped_at_the_memory_limit() {
    stopped_for(
        &format!("{BIG}let m = #{{}}; let i = 0;\nloop {{ m[\"k\" + i] = big + i; i += 1; }}\n"),
        "memory limit exceeded",
    );
}

#[test]
fn big_map_keys_are_stopped_at_the_memory_limit() {
    stopped_for(
        &format!("{BIG}let m = #{{}}; let i = 0;\nloop {{ m[big + i] = i; i += 1; }}\n"),
        "memory limit exceeded",
    );
}

#[test]
fn a_curry_loop_is_stopped_at_the_memory_limit() {
    stopped_for(
        "fn f(a) { a }\nlet f = Fn(\"f\");\nloop { f = f.curry(f); }\n",
        "memory limit exceeded",
    );
}

#[test]
fn arrays_of_maps_and_closures_capturing_big_values_are_stopped_at_the_memory_limit() {
    // (Strings inside an array's maps are summed by Rhai's own check; their keys are not.)
    stopped_for(
        &format!("{BIG}let a = [];\nloop {{ let m = #{{}}; m[big + a.len()] = 1; a.push(m); }}\n"),
        "memory limit exceeded",
    );
    stopped_for(
        &format!("{BIG}let fs = [];\nloop {{ let s = big + fs.len(); fs.push(|| s); }}\n"),
        "memory limit exceeded",
    );
}

#[test]
fn a_string_heavy_loop_is_stopped_at_the_cpu_limit_not_the_deadline() {
    // Few operations, each scanning a megabyte: the operation limit never triggers.
    let r = stopped_for(
        &format!("{BIG}let n = 0;\nloop {{ n += big.index_of(\"y\"); }}\n"),
        "CPU time limit exceeded",
    );
    assert!(r.outcome.message().contains("t.rhai:"), "{:?}", r.outcome);
}

#[test]
fn waiting_in_a_host_call_does_not_spend_cpu_time() {
    let state = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/playbooks/stuck-rollout.yaml"
    ))
    .unwrap();
    let settings = HostSettings {
        max_cpu: Duration::from_millis(100),
        rollout_poll: Duration::from_millis(20),
        ..tight()
    };
    // 600 ms waiting on a rollout that never finishes: six times the CPU budget in wall
    // time, but the run's thread sleeps between polls. The loop after it crosses many
    // progress checks, where a wall-clock count would stop the run.
    let started = Instant::now();
    let r = run_on(
        "let t = #{namespace: \"prod\", kind: \"deployment\", name: \"stuck\"};\nlet s = wait_rollout(t, \"600ms\");\nlet n = 0;\nfor i in 0..5000 { n += i; }\nsuccess(\"waited: \" + s.complete);\n",
        settings,
        MemoryCluster::from_yaml(&state).unwrap(),
        false,
    );
    assert!(started.elapsed() >= Duration::from_millis(600));
    assert_eq!(r.outcome, Outcome::Success("waited: false".into()), "{r:?}");
}

#[test]
fn a_log_flood_is_truncated_per_line_and_stopped_at_the_run_total() {
    let r = stopped_for(
        &format!("{BIG}loop {{ log(big); }}\n"),
        "log output truncated",
    );
    let logs: Vec<_> = r.steps.iter().filter(|s| s.action == "log").collect();
    assert!(logs.len() >= 2, "{:#?}", r.steps);
    assert!(
        logs[0].detail.len() <= 1024
            && logs[0]
                .detail
                .ends_with("more bytes; log output truncated]"),
        "{}",
        logs[0].detail
    );
    let total: usize = r.steps.iter().map(|s| s.detail.len()).sum();
    assert!(total < (16 << 10) + 3 * 1024, "{total} bytes of steps");
    assert!(
        logs.last()
            .unwrap()
            .detail
            .starts_with("log output truncated: the run recorded more than 16 KiB"),
        "{:#?}",
        logs.last()
    );
}

#[test]
fn a_huge_outcome_message_is_capped() {
    let r = run(&format!("{BIG}fail(big);\n"), tight());
    assert_eq!(r.outcome.kind(), "failure");
    assert!(
        r.outcome.message().len() <= 1024,
        "{}",
        r.outcome.message().len()
    );
    assert!(r.outcome.message().ends_with("log output truncated]"));
}

#[test]
fn an_ordinary_playbook_runs_within_the_default_limits() {
    let r = run(
        &format!(
            "{BIG}let m = #{{}};\nfor i in 0..100 {{ m[\"k\" + i] = i; }}\nlog(\"keys: \" + m.len());\nsuccess(\"fine\");\n"
        ),
        HostSettings::default(),
    );
    assert_eq!(r.outcome, Outcome::Success("fine".into()), "{r:?}");
    assert!(r.steps.iter().any(|s| s.detail == "keys: 100"));
}

#[test]
fn cap_text_cuts_on_a_character_boundary_and_says_how_much() {
    let s = "é".repeat(1000);
    let c = cap_text(s.clone(), 300);
    assert!(c.len() <= 300, "{}", c.len());
    assert!(c.ends_with("more bytes; log output truncated]"), "{c}");
    assert_eq!(cap_text("short".into(), 300), "short");
}
