//! The command line and reloads: `check`, `simulate`, `POST /-/reload`, SIGHUP; what the
//! binary logs (JSON keys, levels, colour) and what `--help` lists.

use crate::both_backends;
use crate::common;

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::time::Duration;

use aiops::store::JobState;
use common::files::{definitions_env, write_definitions};
use common::stand_ins::{Answer, StandIn};
use common::{Db, Spawn, TestApp, payload, repo, run_cli, wait};
use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::Value;

#[test]
fn check_passes_on_the_shipped_rules_and_playbooks() {
    let (status, out, err) = run_cli(&repo(), &["check"], &HashMap::new());
    assert!(status.success(), "{out}{err}");
    // Run from the checkout: its ./rules and ./playbooks win over the embedded copies.
    assert!(out.contains("rules: rules (5 rules)\n"), "{out}");
    assert!(
        out.contains("playbooks: playbooks (5 playbooks)\n"),
        "{out}"
    );
}

#[test]
fn check_fails_with_file_and_line_for_each_problem() {
    let dir = tempfile::tempdir().unwrap();
    write_definitions(
        dir.path(),
        &[(
            "a.yaml",
            "rules:\n  - name: ok\n    matchers: ['a=\"b\"']\n    playbook: missing\n  - name: typo\n    matchers: ['a=\"b\"']\n    playbook: fix\n    cooldwn: 5m\n",
        )],
        &[("fix.rhai", "let x = 1;\nlet = 2;\n")],
    );
    let env = definitions_env(&dir.path().join("rules"), &dir.path().join("playbooks"));
    let (status, _out, err) = run_cli(dir.path(), &["check"], &env);
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(
        err.contains("a.yaml:8:"),
        "unknown field with its line: {err}"
    );
    assert!(err.contains("cooldwn"), "{err}");
    assert!(
        err.contains("fix.rhai:2:"),
        "playbook syntax error with its line: {err}"
    );
}

#[test]
fn check_reports_a_missing_playbook_at_the_rule_that_names_it() {
    let dir = tempfile::tempdir().unwrap();
    write_definitions(
        dir.path(),
        &[(
            "a.yaml",
            "rules:\n  - name: one\n    matchers: ['a=\"b\"']\n    playbook: restart\n    escalate:\n      - playbook: nosuch\n",
        )],
        &[],
    );
    let env = definitions_env(&dir.path().join("rules"), &repo().join("playbooks"));
    let (status, _out, err) = run_cli(dir.path(), &["check"], &env);
    assert_eq!(status.code(), Some(1));
    assert!(err.contains("a.yaml:2") && err.contains("nosuch"), "{err}");
}

#[test]
fn check_and_serve_refuse_a_rule_in_approve_mode_that_nobody_may_approve() {
    let dir = tempfile::tempdir().unwrap();
    // `nobody` takes the settings' default mode (approve) and its empty approver list; `own`
    // names its approvers; `watch` and `act` are not in approve mode.
    write_definitions(
        dir.path(),
        &[(
            "a.yaml",
            "rules:\n  - name: nobody\n    matchers: ['a=\"b\"']\n    playbook: restart\n  - name: own\n    matchers: ['a=\"c\"']\n    playbook: restart\n    approval: {approvers: [telegram:1]}\n  - name: watch\n    mode: shadow\n    matchers: ['a=\"d\"']\n    playbook: restart\n  - name: act\n    mode: auto\n    matchers: ['a=\"e\"']\n    playbook: restart\n",
        )],
        &[],
    );
    let mut env = definitions_env(&dir.path().join("rules"), &repo().join("playbooks"));
    env.insert(
        "AIOPS_DATABASE_URL",
        format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("aiops.db").display()
        ),
    );
    env.insert("AIOPS_LISTEN", "127.0.0.1:0".into());
    let cfg = dir.path().join("aiops.yaml");
    let expected = "a.yaml:2: rule \"nobody\" is in approve mode but nobody may approve it: set approval.approvers or trust.approval.approvers";

    std::fs::write(&cfg, "trust:\n  default_mode: approve\n").unwrap();
    let config = cfg.to_str().unwrap();
    let (status, _out, err) = run_cli(dir.path(), &["--config", config, "check"], &env);
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains(expected), "{err}");
    assert_eq!(err.matches("approve mode").count(), 1, "{err}");
    // `serve` goes through the same check and refuses to start.
    let (status, out, err) = run_cli(dir.path(), &["--config", config, "serve"], &env);
    assert!(!status.success(), "{out}{err}");
    assert!(err.contains(expected), "{err}");

    // Approvers in the settings make the default-mode rule approvable.
    std::fs::write(
        &cfg,
        "trust:\n  default_mode: approve\n  approval: {approvers: [slack:U1]}\n",
    )
    .unwrap();
    let (status, out, err) = run_cli(dir.path(), &["--config", config, "check"], &env);
    assert!(status.success(), "{out}{err}");
}

/// Commands started together on a new SQLite file (a daemon and `aiops user add` in a fresh
/// install, say) each migrate it on opening; none may fail because another is migrating. Before
/// the migrations took SQLite's write lock, about 6 in 10 of these commands failed with "table …
/// already exists" or "duplicate column name".
#[test]
fn commands_started_together_on_a_new_sqlite_file_all_open_and_migrate_it() {
    use std::io::Write;
    use std::process::{Command, Stdio};
    for round in 0..3 {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("new.db").display());
        let children: Vec<_> = (0..4)
            .map(|i| {
                let mut child = Command::new(env!("CARGO_BIN_EXE_aiops"))
                    .args(["user", "add", &format!("user{i}"), "--role", "admin"])
                    .current_dir(dir.path())
                    .env_clear()
                    .env("PATH", std::env::var("PATH").unwrap_or_default())
                    .env("AIOPS_DATABASE_URL", &url)
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap();
                let mut stdin = child.stdin.take().unwrap();
                writeln!(stdin, "a password of user{i}").unwrap();
                child
            })
            .collect();
        for child in children {
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "round {round}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let env = HashMap::from([("AIOPS_DATABASE_URL", url.clone())]);
        let (status, out, err) = run_cli(dir.path(), &["user", "list"], &env);
        assert!(status.success(), "{out}{err}");
        for i in 0..4 {
            assert!(out.contains(&format!("user{i} ")), "{out}");
        }
    }
}

#[test]
fn check_rejects_an_invalid_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("aiops.yaml");
    std::fs::write(&cfg, "listen: 127.0.0.1:9095\njobs:\n  workerz: 3\n").unwrap();
    let (status, _out, err) = run_cli(
        &repo(),
        &["--config", cfg.to_str().unwrap(), "check"],
        &HashMap::new(),
    );
    assert_eq!(status.code(), Some(1));
    assert!(
        err.contains("aiops.yaml:3:") && err.contains("workerz"),
        "{err}"
    );
}

#[test]
fn serve_on_a_sqlite_file_it_cannot_open_names_the_file_and_the_fix_once() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-dir").join("aiops.db");
    let mut env = definitions_env(&repo().join("rules"), &repo().join("playbooks"));
    env.insert(
        "AIOPS_DATABASE_URL",
        format!("sqlite://{}?mode=rwc", missing.display()),
    );
    env.insert("AIOPS_LISTEN", "127.0.0.1:0".into());
    let (status, _out, err) = run_cli(dir.path(), &["serve"], &env);
    assert_eq!(status.code(), Some(1), "{err}");
    let line = err
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no error line in: {err}"));
    assert!(line.contains(&missing.display().to_string()), "{line}");
    assert!(line.contains("?mode=rwc"), "{line}");
    // Each cause once: the chain used to repeat SQLite's words four times.
    assert_eq!(
        line.matches("unable to open database file").count(),
        1,
        "{line}"
    );
    assert!(!missing.parent().unwrap().exists(), "nothing was created");
}

/// `simulate`'s report says the restart rule would restart the fixture's workload now.
fn assert_restarts_demo_now(out: &str) {
    assert!(
        out.contains("rule restart: allowed by every guard -> would create a job (queued)"),
        "{out}"
    );
    assert!(
        out.contains("plan: run playbook restart on prod/Deployment/demo now"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulate_prints_each_verdict_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = repo().join("tests/fixtures/am-0.25-firing-grouped-3.json");
    let env = definitions_env(&repo().join("rules"), &repo().join("playbooks"));
    let (status, out, err) = run_cli(dir.path(), &["simulate", fixture.to_str().unwrap()], &env);
    assert!(status.success(), "{out}{err}");
    assert_restarts_demo_now(&out);
    assert!(out.contains("refused (target_busy)"), "{out}");
    assert!(out.contains("refused (no_target)"), "{out}");
    assert!(
        !dir.path().join("aiops.db").exists(),
        "simulate never creates the store"
    );

    // Against a store that has seen the payload, the verdict is "duplicate"; the store is unchanged.
    let app = TestApp::spawn(Spawn::new(Db::Sqlite)).await;
    app.post_fixture("am-0.25-firing-grouped-3.json").await;
    app.wait_all_jobs_in(&[JobState::Succeeded]).await;
    let mut env = env.clone();
    env.insert("AIOPS_DATABASE_URL", app.db.url.clone());
    let fresh = payload(
        &[(
            &[
                ("auto_repair", "restart"),
                ("namespace", "prod"),
                ("app", "other"),
            ],
            "firing",
        )],
        "2026-11-26T01:00:00Z",
    );
    let fresh_file = dir.path().join("fresh.json");
    std::fs::write(&fresh_file, fresh).unwrap();
    let (status, out, _) = run_cli(
        dir.path(),
        &["simulate", "--json", fixture.to_str().unwrap()],
        &env,
    );
    assert!(status.success());
    let verdicts: Value = serde_json::from_str(&out).unwrap();
    assert!(
        verdicts
            .as_array()
            .unwrap()
            .iter()
            .all(|v| v["dedup"] == "duplicate"),
        "{verdicts}"
    );
    let (status, out, _) = run_cli(
        dir.path(),
        &["simulate", fresh_file.to_str().unwrap()],
        &env,
    );
    assert!(status.success());
    assert!(out.contains("would create a job (queued)"), "{out}");
    let store = app.store().await;
    assert_eq!(
        store.count_alert_events().await.unwrap(),
        3,
        "simulate recorded nothing"
    );
    assert_eq!(store.jobs().await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_reload_keeps_the_running_rules_and_says_why() {
    let app = TestApp::spawn(Spawn::new(Db::Sqlite)).await;
    let rules_file = app.dir.path().join("rules/auto-repair.yaml");
    let original = std::fs::read_to_string(&rules_file).unwrap();
    std::fs::write(
        &rules_file,
        format!(
            "{original}\n  - name: broken\n    matchers: ['a=~\"(\"']\n    playbook: restart\n"
        ),
    )
    .unwrap();
    let resp = app.client.post(app.url("/-/reload")).send().await.unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    let problems = body["problems"].to_string();
    assert!(problems.contains("auto-repair.yaml:"), "{problems}");
    // The running rules still act.
    app.post_fixture("am-0.25-firing-grouped-3.json").await;
    let jobs = app.wait_all_jobs_in(&[JobState::Succeeded]).await;
    assert_eq!(jobs.len(), 1);
    assert!(
        app.metrics()
            .await
            .contains("aiops_reloads_total{result=\"failure\"} 1")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_rules_so_a_new_rule_matches() {
    let app = TestApp::spawn(Spawn::new(Db::Sqlite).rules("rules: []\n")).await;
    let alert = payload(
        &[(
            &[("alertname", "Down"), ("namespace", "prod"), ("app", "web")],
            "firing",
        )],
        "2026-11-26T01:00:00Z",
    );
    let body: Value = app.post_webhook(alert.clone()).await.json().await.unwrap();
    assert_eq!(body["jobs"].as_array().unwrap().len(), 0);
    std::fs::write(
        app.dir.path().join("rules/test.yaml"),
        "rules:\n  - name: down\n    matchers: ['alertname=\"Down\"']\n    playbook: restart\n",
    )
    .unwrap();
    app.signal("HUP");
    app.wait_for_metric(
        "aiops_reloads_total{result=\"success\"} 1",
        std::time::Duration::from_secs(10),
    )
    .await;
    let next = alert.replace("01:00:00Z", "01:05:00Z");
    let body: Value = app.post_webhook(next).await.json().await.unwrap();
    assert_eq!(body["jobs"].as_array().unwrap().len(), 1, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_needs_the_webhook_token_when_one_is_set() {
    let app = TestApp::spawn(
        Spawn::new(Db::Sqlite).env("AIOPS_WEBHOOK_TOKEN", "reload-token-0123456789"),
    )
    .await;
    let resp = app.client.post(app.url("/-/reload")).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let resp = app
        .client
        .post(app.url("/-/reload"))
        .bearer_auth("reload-token-0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_cleanly_and_leaves_pending_jobs_queued_for_the_next_start() {
    let rules = "rules:\n  - name: later\n    matchers: ['auto_repair=\"restart\"']\n    playbook: restart\n    wait: 24h\n";
    let mut app = TestApp::spawn(Spawn::new(Db::Sqlite).rules(rules)).await;
    // The wait counts from startsAt: a fixed date would make the job due once it is 24 h old.
    let alert = payload(
        &[(
            &[
                ("auto_repair", "restart"),
                ("namespace", "prod"),
                ("app", "web"),
            ],
            "firing",
        )],
        &chrono::Utc::now().to_rfc3339(),
    );
    assert_eq!(app.post_webhook(alert).await.status(), 200);
    let status = app.stop();
    assert!(status.success(), "{status}");
    assert!(app.log_text().contains("stopped"));
    let store = app.store().await;
    assert_eq!(
        store.jobs().await.unwrap()[0].state,
        JobState::Waiting,
        "{}",
        app.log_text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_password_never_appears_in_logs_or_errors() {
    let dir = tempfile::tempdir().unwrap();
    let mut env = definitions_env(&repo().join("rules"), &repo().join("playbooks"));
    // Port 9 (discard) on loopback refuses connections: the error path runs.
    env.insert(
        "AIOPS_DATABASE_URL",
        "postgres://aiops:hunter2-pw@127.0.0.1:9/aiops".into(),
    );
    let (status, out, err) = run_cli(dir.path(), &["serve"], &env);
    assert!(!status.success());
    assert!(
        !out.contains("hunter2") && !err.contains("hunter2"),
        "{out}{err}"
    );
    assert!(err.contains("cannot open the store"), "{err}");
}

/// The keys of one JSON object in the order written, repeats kept: `serde_json::Value` would keep
/// only the last of a repeated key, which is the very loss these tests look for.
struct Keys(Vec<String>);

impl<'de> Deserialize<'de> for Keys {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Keys, D::Error> {
        struct KeysVisitor;
        impl<'de> Visitor<'de> for KeysVisitor {
            type Value = Keys;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Keys, A::Error> {
                let mut keys = Vec::new();
                while let Some((k, IgnoredAny)) = map.next_entry::<String, IgnoredAny>()? {
                    keys.push(k);
                }
                Ok(Keys(keys))
            }
        }
        d.deserialize_map(KeysVisitor)
    }
}

/// The keys the README's table of JSON log fields documents.
fn documented_log_keys() -> Vec<String> {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let section = readme
        .split("\n### Logs\n")
        .nth(1)
        .and_then(|s| s.split("\n#").next())
        .expect("README has a Logs section");
    let keys: Vec<String> = section
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .map(String::from)
        .collect();
    assert!(keys.len() > 10, "the table of keys: {keys:?}");
    keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_hold_each_key_once_and_every_documented_field_during_a_repair() {
    // Arrange: a channel whose first answer fails, so a retry (with its error) is logged too.
    let hook = StandIn::start().await;
    hook.script(vec![Answer::new(500, "down")]);
    let config = format!(
        "notify:\n  retry: {{initial_backoff: 100ms}}\n  channels:\n    wh: {{type: webhook, url: \"{}/hook\"}}\n  routes:\n    - channels: [wh]\n",
        hook.url
    );
    let mut app = TestApp::spawn(Spawn::new(Db::Sqlite).config(&config)).await;

    // Act: three alerts: one repaired on the in-memory cluster, one refused as target_busy,
    // one as no_target; then the messages (a failure and its retry), then a clean stop.
    app.post_fixture("am-0.25-firing-grouped-3.json").await;
    app.wait_all_jobs_in(&[JobState::Succeeded]).await;
    hook.wait_for("repair_started (retried) and auto_repair_success", |r| {
        r.iter().filter(|r| r.status == 200).count() >= 2
    })
    .await;
    assert!(app.stop().success());
    wait::until(
        "the daemon's last log line",
        Duration::from_secs(10),
        async || {
            app.log_text()
                .contains(r#""message":"stopped""#)
                .then_some(())
        },
        || app.log_text(),
    )
    .await;

    // Assert: every line is an object whose keys are unique; each documented key shows up.
    let lines: Vec<String> = app.logs.lock().unwrap().clone();
    let mut seen = BTreeSet::new();
    for line in &lines {
        let Keys(keys) = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        let unique: BTreeSet<&String> = keys.iter().collect();
        assert_eq!(unique.len(), keys.len(), "a key is repeated: {line}");
        seen.extend(keys);
    }
    let missing: Vec<String> = documented_log_keys()
        .into_iter()
        .filter(|k| !seen.contains(k))
        .collect();
    assert!(
        missing.is_empty(),
        "documented but never logged: {missing:?}\n{}",
        app.log_text()
    );
    let started: Value = lines
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|v| v["message"] == "job started")
        .expect("a job started line");
    assert_eq!(
        started["repair_target"], "prod/Deployment/demo",
        "{started}"
    );
    assert_eq!(started["target"], "aiops::executor::worker", "{started}");
}

#[test]
fn a_command_logs_warnings_only_without_colour_when_its_stderr_is_redirected() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = repo().join("tests/fixtures/am-0.25-firing-grouped-3.json");
    let mut env = definitions_env(&repo().join("rules"), &repo().join("playbooks"));
    let args = ["simulate", fixture.to_str().unwrap()];

    // Simulating refuses two alerts, which the daemon logs at INFO; no cluster is configured,
    // which is a warning.
    let (status, out, err) = run_cli(dir.path(), &args, &env);
    assert!(status.success(), "{out}{err}");
    assert!(out.contains("refused (no_target)"), "{out}");
    assert!(
        err.contains("WARN") && err.contains("no Kubernetes backend configured"),
        "{err}"
    );
    assert!(!err.contains("INFO"), "{err}");
    assert!(
        !err.contains('\x1b'),
        "escape sequences in redirected stderr: {err:?}"
    );

    // AIOPS_LOG still decides.
    env.insert("AIOPS_LOG", "info".into());
    let (status, _, err) = run_cli(dir.path(), &args, &env);
    assert!(status.success());
    assert!(
        err.contains("INFO") && err.contains("repair refused"),
        "{err}"
    );
    assert!(!err.contains('\x1b'), "{err:?}");

    // --log-format, after the command too: every line is JSON.
    let (status, _, err) = run_cli(
        dir.path(),
        &[
            "simulate",
            "--log-format",
            "json",
            fixture.to_str().unwrap(),
        ],
        &env,
    );
    assert!(status.success());
    let levels: Vec<String> = err
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            v["level"].as_str().unwrap().to_string()
        })
        .collect();
    assert!(levels.iter().any(|l| l == "INFO"), "{err}");
}

#[test]
fn help_lists_every_environment_variable_the_program_reads_with_its_setting() {
    let (status, out, err) = run_cli(&repo(), &["--help"], &HashMap::new());
    assert!(status.success(), "{err}");
    let listed: BTreeSet<&str> = out
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("AIOPS_") && w.len() > "AIOPS_".len())
        .collect();
    let mut read: BTreeSet<&str> = aiops::config::env::VARIABLES
        .iter()
        .map(|v| v.name)
        .collect();
    read.extend(["AIOPS_CONFIG", "AIOPS_LOG"]);
    assert_eq!(listed, read);
    let workers = out
        .lines()
        .find(|l| l.trim_start().starts_with("AIOPS_WORKERS "))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(workers.trim_end().ends_with(" jobs.workers"), "{workers}");
}

async fn simulate_evaluates_a_recorded_alert_again_with_ignore_dedup_and_at_a_later_time_with_at(
    db: Db,
) {
    // Arrange: a daemon that repaired the fixture's target; the restart rule's cooldown is 10m.
    let app = TestApp::spawn(Spawn::new(db)).await;
    app.post_fixture("am-0.25-firing-grouped-3.json").await;
    app.wait_all_jobs_in(&[JobState::Succeeded]).await;
    let dir = tempfile::tempdir().unwrap();
    let fixture = repo().join("tests/fixtures/am-0.25-firing-grouped-3.json");
    let fixture = fixture.to_str().unwrap();
    let mut env = definitions_env(&repo().join("rules"), &repo().join("playbooks"));
    env.insert("AIOPS_DATABASE_URL", app.db.url.clone());
    let simulate = |extra: &[&str]| {
        let mut args = vec!["simulate"];
        args.extend(extra);
        args.push(fixture);
        run_cli(dir.path(), &args, &env)
    };

    // Act + Assert: without the flags, the store's answer is "duplicate".
    let (status, out, err) = simulate(&[]);
    assert!(status.success(), "{err}");
    assert!(out.contains("already recorded: no action"), "{out}");
    assert!(!out.contains("rule restart"), "{out}");

    // As if it arrived again now: the rule matches and the repair's cooldown refuses it.
    let (status, out, err) = simulate(&["--ignore-dedup"]);
    assert!(status.success(), "{err}");
    assert!(
        out.contains("evaluated as if it arrived again (--ignore-dedup)"),
        "{out}"
    );
    assert!(out.contains("rule restart: refused (cooldown)"), "{out}");
    assert!(!out.contains("would create a job"), "{out}");

    // As if it arrived again once the cooldown is over: a job and its plan.
    let (status, out, err) = simulate(&["--ignore-dedup", "--at", "+11m"]);
    assert!(status.success(), "{err}");
    assert!(out.contains(" as of "), "{out}");
    assert_restarts_demo_now(&out);
    assert!(!out.contains("refused (cooldown)"), "{out}");
    let later = (chrono::Utc::now() + chrono::Duration::minutes(11)).to_rfc3339();
    let (status, out, err) = simulate(&["--json", "--ignore-dedup", "--at", &later]);
    assert!(status.success(), "{err}");
    let verdicts: Value = serde_json::from_str(&out).unwrap();
    let verdicts = verdicts.as_array().unwrap();
    assert!(
        verdicts.iter().all(|v| v["dedup"] == "duplicate"),
        "{verdicts:?}"
    );
    let jobs = verdicts
        .iter()
        .flat_map(|v| v["rules"].as_array().unwrap())
        .filter(|r| r["verdict"] == "job")
        .count();
    assert_eq!(
        jobs, 1,
        "one job, then target_busy for the same target: {verdicts:?}"
    );

    // A time in the past is refused: the history since would count as if before it.
    let (status, _, err) = simulate(&["--at", "2026-01-01T10:00:00Z"]);
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(
        err.contains("--at 2026-01-01T10:00:00+00:00 is in the past"),
        "{err}"
    );

    // Nothing was recorded.
    let store = app.store().await;
    assert_eq!(store.count_alert_events().await.unwrap(), 3);
    assert_eq!(store.jobs().await.unwrap().len(), 1);
}
both_backends!(
    simulate_evaluates_a_recorded_alert_again_with_ignore_dedup_and_at_a_later_time_with_at
);
