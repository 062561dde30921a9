//! The playbook sandbox, seen through the running daemon: runaway scripts (imports, endless
//! loops, huge strings, deep recursion, host calls in a loop, a run past its deadline) are
//! stopped with `file:line:column` and a specific reason, handed to humans, and never stop the
//! daemon from serving; a script using `eval` is refused at load (`aiops check`, reload).

use crate::both_backends;
use crate::common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use aiops::store::{Job, JobState};
use common::files::{definitions_env, write_definitions};
use common::{Db, Spawn, TestApp, TestDb, payload, run_cli};
use serde_json::Value;

/// (playbook, source, target deployment in tests/fixtures/cluster-state.yaml, where it stops,
/// what the error must say).
const RUNAWAYS: &[(&str, &str, &str, &str, &str)] = &[
    (
        "sb_import",
        "// loads a module from disk\nimport \"x\" as y;\nsuccess(\"imported\");\n",
        "demo",
        "sb_import.rhai:2:8",
        "Module not found",
    ),
    (
        "sb_loop",
        "log(\"spinning\");\nwhile true {}\n",
        "web",
        "sb_loop.rhai:2:12",
        "stopped: more than 5000000 operations",
    ),
    (
        "sb_string",
        "let s = \"x\";\nloop {\n    s += s;\n}\n",
        "api",
        "sb_string.rhai:3:7",
        "exceeds the sandbox's size limit",
    ),
    (
        "sb_recurse",
        "fn down(n) {\n    down(n + 1)\n}\ndown(0);\n",
        "other",
        "sb_recurse.rhai:4:1",
        "stopped: calls nested too deeply",
    ),
    (
        "sb_hostcalls",
        "loop {\n    log(\"x\");\n}\n",
        "calm",
        "sb_hostcalls.rhai:2:5",
        "stopped: too many host calls in one run",
    ),
];

fn rule(name: &str, extra: &str) -> String {
    format!(
        "  - name: {name}\n    matchers: ['auto_repair=\"{name}\"']\n    playbook: {name}\n{extra}"
    )
}

fn alert_labels<'a>(auto_repair: &'a str, deployment: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("alertname", "Runaway"),
        ("auto_repair", auto_repair),
        ("namespace", "prod"),
        ("deployment", deployment),
    ]
}

/// A directory with `rules/test.yaml` and `playbooks/*.rhai`, and a fresh store for it.
async fn layout(
    db: Db,
    rules: &str,
    playbooks: &[(&str, &str)],
) -> (Arc<tempfile::TempDir>, Arc<TestDb>) {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let test_db = Arc::new(TestDb::new(db, dir.path()).await);
    let playbooks: Vec<(String, &str)> = playbooks
        .iter()
        .map(|(name, source)| (format!("{name}.rhai"), *source))
        .collect();
    let playbooks: Vec<(&str, &str)> = playbooks.iter().map(|(n, s)| (n.as_str(), *s)).collect();
    write_definitions(dir.path(), &[("test.yaml", rules)], &playbooks);
    (dir, test_db)
}

/// `text` names `file` at a `LINE:COL` (any), as in `…/file:12:5: message`.
fn has_position(text: &str, file: &str) -> bool {
    text.match_indices(file).any(|(i, _)| {
        let rest = &text[i + file.len()..];
        let Some(rest) = rest.strip_prefix(':') else {
            return false;
        };
        let line = rest.bytes().take_while(u8::is_ascii_digit).count();
        let Some(rest) = rest[line..].strip_prefix(':') else {
            return false;
        };
        let col = rest.bytes().take_while(u8::is_ascii_digit).count();
        line > 0 && col > 0 && rest[col..].starts_with(": ")
    })
}

async fn healthy(app: &TestApp) -> u16 {
    app.get_status("/-/healthy").await
}

fn by_playbook<'a>(jobs: &'a [Job], playbook: &str) -> &'a Job {
    jobs.iter()
        .find(|j| j.playbook == playbook)
        .unwrap_or_else(|| panic!("no job of {playbook}: {jobs:#?}"))
}

async fn runaway_playbooks_are_stopped_with_their_place_and_reason_while_the_daemon_serves(db: Db) {
    let mut rules = String::from("rules:\n");
    for (name, ..) in RUNAWAYS {
        rules.push_str(&rule(name, ""));
    }
    rules.push_str(&rule("sb_ok", ""));
    let mut playbooks: Vec<(&str, &str)> = RUNAWAYS.iter().map(|r| (r.0, r.1)).collect();
    playbooks.push(("sb_ok", "success(\"fine\");\n"));
    let (dir, test_db) = layout(db, &rules, &playbooks).await;
    let app = TestApp::spawn_in(
        dir.clone(),
        test_db,
        Spawn::new(db).env("AIOPS_WORKERS", "8"),
    )
    .await;

    let started = Instant::now();
    let labels: Vec<Vec<(&str, &str)>> = RUNAWAYS.iter().map(|r| alert_labels(r.0, r.2)).collect();
    let alerts: Vec<(&[(&str, &str)], &str)> =
        labels.iter().map(|l| (l.as_slice(), "firing")).collect();
    let now = chrono::Utc::now().to_rfc3339();
    let body: Value = app.post_webhook_json(payload(&alerts, &now)).await;
    assert_eq!(
        body["jobs"].as_array().unwrap().len(),
        RUNAWAYS.len(),
        "{body}"
    );

    // While they run: the daemon answers, takes new alerts, and runs other repairs.
    assert_eq!(healthy(&app).await, 200);
    let probe = app
        .post_webhook(payload(&[(&alert_labels("sb_ok", "app0"), "firing")], &now))
        .await;
    assert_eq!(probe.status(), 200);
    let probe: Value = probe.json().await.unwrap();
    let probe_id = probe["jobs"][0].as_i64().unwrap();

    // A reload that brings a playbook calling eval is refused with file:line:column, and the
    // running definitions stay.
    std::fs::write(
        dir.path().join("playbooks/sb_eval.rhai"),
        "// evaluates a string\nlet x = eval(\"1\");\nsuccess(\"evaluated\");\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("rules/test.yaml"),
        format!("{rules}{}", rule("sb_eval", "")),
    )
    .unwrap();
    let reload = app.client.post(app.url("/-/reload")).send().await.unwrap();
    assert_eq!(reload.status(), 400);
    let reload: Value = reload.json().await.unwrap();
    let problems = reload["problems"].to_string();
    assert!(
        problems.contains("sb_eval.rhai:2:9: reserved keyword 'eval' is disabled"),
        "{reload}"
    );
    assert_eq!(healthy(&app).await, 200);

    let jobs = app
        .wait_for_jobs("every runaway to be stopped and escalated", |jobs| {
            jobs.len() == RUNAWAYS.len() + 1 && jobs.iter().all(|j| j.state.is_terminal())
        })
        .await;
    let elapsed = started.elapsed();
    let store = app.store().await;
    let probe_job = jobs.iter().find(|j| j.id == probe_id).unwrap();
    assert_eq!(probe_job.state, JobState::Succeeded, "{probe_job:#?}");

    let escalations = store.escalations().await.unwrap();
    for (name, _, target, place, message) in RUNAWAYS {
        let job = by_playbook(&jobs, name);
        assert_eq!(job.state, JobState::Escalated, "{job:#?}");
        assert_eq!(job.target_name, *target);
        let error = job.error.clone().unwrap_or_default();
        assert!(
            error.starts_with("inconclusive: "),
            "{name}: a stopped script could not measure anything: {error}"
        );
        assert!(
            error.contains(&format!("/{place}: ")),
            "{name}: {error:?} lacks {place}"
        );
        assert!(
            error.contains(message),
            "{name}: {error:?} lacks {message:?}"
        );
        let human: Vec<_> = escalations
            .iter()
            .filter(|e| e.job_id == Some(job.id))
            .collect();
        assert_eq!(human.len(), 1, "{name}: {escalations:#?}");
        assert_eq!(
            (human[0].kind.as_str(), human[0].destination.as_str()),
            ("human", "default")
        );
        assert!(human[0].reason.contains(message), "{name}: {human:#?}");
        assert!(
            human[0].reason.contains("the result could not be measured"),
            "{name}: {human:#?}"
        );
        let path: Vec<_> = store
            .job_events(job.id)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.to)
            .collect();
        assert_eq!(path, ["queued", "running", "failed", "escalated"], "{name}");
    }

    // The host-call loop is cut at the budget (500 calls), not left to flood the store.
    let hostcalls = by_playbook(&jobs, "sb_hostcalls");
    let steps = store.job_steps(hostcalls.id).await.unwrap();
    assert!(
        (500..=501).contains(&steps.len()),
        "{} steps recorded",
        steps.len()
    );
    assert!(steps[..500].iter().all(|s| s.action == "log"));
    assert_eq!(steps.last().unwrap().action, "error");

    // The import never ran its success().
    let import_steps = store
        .job_steps(by_playbook(&jobs, "sb_import").id)
        .await
        .unwrap();
    assert!(
        !import_steps.iter().any(|s| s.detail.contains("imported")),
        "{import_steps:#?}"
    );

    assert!(
        elapsed < Duration::from_secs(20),
        "the sandbox stopped them promptly: {elapsed:?}"
    );
    assert_eq!(healthy(&app).await, 200);
    let after = app
        .post_webhook(payload(
            &[(&alert_labels("sb_ok", "app1"), "firing")],
            &chrono::Utc::now().to_rfc3339(),
        ))
        .await;
    assert_eq!(after.status(), 200, "still taking alerts afterwards");
}
both_backends!(runaway_playbooks_are_stopped_with_their_place_and_reason_while_the_daemon_serves);

#[test]
fn check_refuses_a_playbook_that_calls_eval_naming_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    write_definitions(
        dir.path(),
        &[("test.yaml", &format!("rules:\n{}", rule("sb_eval", "")))],
        &[(
            "sb_eval.rhai",
            "// evaluates a string\nlet x = eval(\"1\");\nsuccess(\"evaluated\");\n",
        )],
    );
    let env = definitions_env(&dir.path().join("rules"), &dir.path().join("playbooks"));
    let (status, out, err) = run_cli(dir.path(), &["check"], &env);
    assert_eq!(status.code(), Some(1), "{out}{err}");
    assert!(
        err.contains("sb_eval.rhai:2:9: reserved keyword 'eval' is disabled"),
        "{err}"
    );
    assert!(!out.contains("playbooks: "), "{out}");

    // The same file without eval passes: the refusal is about eval, not the rest.
    std::fs::write(
        dir.path().join("playbooks/sb_eval.rhai"),
        "let x = 1;\nsuccess(\"ok\");\n",
    )
    .unwrap();
    let (status, out, err) = run_cli(dir.path(), &["check"], &env);
    assert!(status.success(), "{out}{err}");
}

const POLL: &str = "// waits for a rollout that never finishes\nloop {\n    let r = wait_rollout(target, \"10m\");\n    if r.complete {\n        success(\"rolled out\");\n    }\n}\n";

async fn post(app: &TestApp, rule: &str, deployment: &str) -> i64 {
    let resp = app
        .post_webhook(payload(
            &[(&alert_labels(rule, deployment), "firing")],
            &chrono::Utc::now().to_rfc3339(),
        ))
        .await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    body["jobs"][0]
        .as_i64()
        .unwrap_or_else(|| panic!("no job: {body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_timeout_stops_a_playbook_polling_a_stuck_rollout_at_its_deadline() {
    let rules = format!(
        "rules:\n{}{}",
        rule("sb_poll", "    timeout: 200ms\n"),
        rule("sb_hold", "    timeout: 4s\n")
    );
    let (dir, test_db) = layout(Db::Sqlite, &rules, &[("sb_poll", POLL), ("sb_hold", POLL)]).await;
    let state = common::repo().join("tests/fixtures/playbooks/stuck-rollout.yaml");
    let app = TestApp::spawn_in(
        dir,
        test_db,
        Spawn::new(Db::Sqlite).env("AIOPS_CLUSTER_STATE_FILE", state.to_str().unwrap()),
    )
    .await;
    let store = app.store().await;

    // A playbook blocked polling for 4 s: the daemon must go on serving meanwhile.
    let held = post(&app, "sb_hold", "held").await;
    app.wait_for_jobs("the held run to start", |jobs| {
        jobs.iter()
            .any(|j| j.id == held && j.state == JobState::Running)
    })
    .await;

    let started = Instant::now();
    assert_eq!(healthy(&app).await, 200);
    let id = post(&app, "sb_poll", "stuck").await;
    let jobs = app
        .wait_for_jobs("the stuck poll to hit its deadline", |jobs| {
            jobs.iter().any(|j| j.id == id && j.state.is_terminal())
        })
        .await;
    let elapsed = started.elapsed();
    assert_eq!(
        store.job(held).await.unwrap().unwrap().state,
        JobState::Running,
        "the other repair was served while the held run still polled"
    );

    let job = jobs.iter().find(|j| j.id == id).unwrap();
    assert_eq!(job.timeout_ms, Some(200));
    assert_eq!(job.state, JobState::Escalated, "{job:#?}");
    let error = job.error.clone().unwrap_or_default();
    assert!(
        error.starts_with("inconclusive: ")
            && error.contains("stopped: the playbook ran past its wall-clock deadline"),
        "{error}"
    );
    assert!(has_position(&error, "/sb_poll.rhai"), "{error}");
    let ran = job.finished_at.unwrap() - job.started_at.unwrap();
    assert!(
        (200..5_000).contains(&ran),
        "stopped at its 200ms deadline, not after wait_rollout's 10m: ran {ran} ms"
    );
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
    let steps = store.job_steps(id).await.unwrap();
    assert!(
        steps.iter().any(|s| s.action == "wait_rollout"
            && s.detail.contains("still waiting at the run's deadline")),
        "{steps:#?}"
    );
    assert!(steps.len() < 100, "{} steps", steps.len());
    let esc: Vec<_> = store
        .escalations()
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.job_id == Some(id))
        .collect();
    assert_eq!(esc.len(), 1, "{esc:#?}");
    assert_eq!(esc[0].kind, "human");
    assert!(esc[0].reason.contains("deadline"), "{esc:#?}");

    // The held run meets its own deadline, about 4 s after it started.
    let jobs = app
        .wait_for_jobs("the held run to hit its deadline", |jobs| {
            jobs.iter().any(|j| j.id == held && j.state.is_terminal())
        })
        .await;
    let held = jobs.iter().find(|j| j.id == held).unwrap();
    assert_eq!(held.state, JobState::Escalated);
    assert!(
        held.error
            .as_deref()
            .unwrap_or_default()
            .contains("deadline"),
        "{held:#?}"
    );
    let ran = held.finished_at.unwrap() - held.started_at.unwrap();
    assert!((4_000..9_000).contains(&ran), "ran {ran} ms");
}
