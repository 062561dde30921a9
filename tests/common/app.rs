//! A running daemon for one test ([`TestApp`]) in a fresh directory with a fresh store: either
//! `aiops serve` as a child process ([`TestApp::spawn`]) or the same daemon on the test's
//! runtime ([`TestApp::spawn_app`]). Both listen on 127.0.0.1, port 0, and are driven the same
//! way: HTTP, the store, and the waits of this module.

use std::net::SocketAddr;
use std::process::{Child, ExitStatus};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aiops::store::{Job, JobState, Store};

use super::db::{Db, TestDb};
use super::files::{copy_dir, repo};
use super::payload::fixture;
use super::{in_process, process, wait};

/// Options for spawning the daemon.
pub struct Spawn {
    pub db: Db,
    /// Rules YAML written to rules/test.yaml; `None` uses the repository's rules.
    pub rules: Option<String>,
    /// Extra environment.
    pub env: Vec<(String, String)>,
    /// Files written into the daemon's directory (its working directory) before it starts:
    /// (name, contents).
    pub files: Vec<(String, String)>,
}

impl Spawn {
    pub fn new(db: Db) -> Spawn {
        Spawn {
            db,
            rules: None,
            env: Vec::new(),
            files: Vec::new(),
        }
    }
    pub fn rules(mut self, yaml: &str) -> Spawn {
        self.rules = Some(yaml.to_string());
        self
    }
    pub fn env(mut self, k: &str, v: &str) -> Spawn {
        self.env.push((k.into(), v.into()));
        self
    }
    /// Writes `contents` to `name` in the daemon's directory (relative paths in its
    /// configuration resolve there).
    pub fn file(mut self, name: &str, contents: &str) -> Spawn {
        self.files.push((name.into(), contents.into()));
        self
    }
    /// Runs the daemon with this configuration file (aiops.yaml in its directory).
    pub fn config(self, yaml: &str) -> Spawn {
        self.file(CONFIG_FILE, yaml)
    }
}

/// The name [`Spawn::config`] gives the configuration file.
const CONFIG_FILE: &str = "aiops.yaml";

/// How the daemon runs.
enum Runner {
    /// `aiops serve`, a child process.
    Process(Child),
    /// `daemon::run` on the test's runtime.
    InProcess(in_process::Daemon),
    /// Stopped by the test.
    Stopped,
}

/// A running daemon.
pub struct TestApp {
    pub addr: SocketAddr,
    pub dir: Arc<tempfile::TempDir>,
    pub db: Arc<TestDb>,
    pub env: Vec<(String, String)>,
    pub logs: Arc<Mutex<Vec<String>>>,
    pub client: reqwest::Client,
    runner: Runner,
}

impl TestApp {
    /// Spawns `aiops serve` in a fresh directory with a fresh store.
    pub async fn spawn(opts: Spawn) -> TestApp {
        let dir = Arc::new(tempfile::tempdir().unwrap());
        let db = Arc::new(TestDb::new(opts.db, dir.path()).await);
        Self::spawn_in(dir, db, opts).await
    }

    /// Runs the daemon on this test's runtime in a fresh directory with a fresh store: for
    /// tests that need no signal, exit code, resident memory or worker log line.
    pub async fn spawn_app(opts: Spawn) -> TestApp {
        let dir = Arc::new(tempfile::tempdir().unwrap());
        let db = Arc::new(TestDb::new(opts.db, dir.path()).await);
        let (opts, env) = environment(&dir, &db, opts);
        let (daemon, addr, logs) = in_process::start(&env).await;
        TestApp::new(addr, dir, db, opts, logs, Runner::InProcess(daemon))
    }

    /// Spawns a daemon process over an existing directory and store (restart).
    pub async fn spawn_in(dir: Arc<tempfile::TempDir>, db: Arc<TestDb>, opts: Spawn) -> TestApp {
        let (opts, env) = environment(&dir, &db, opts);
        let (child, addr, logs) = process::start(dir.path(), &env).await;
        TestApp::new(addr, dir, db, opts, logs, Runner::Process(child))
    }

    fn new(
        addr: SocketAddr,
        dir: Arc<tempfile::TempDir>,
        db: Arc<TestDb>,
        opts: Spawn,
        logs: Arc<Mutex<Vec<String>>>,
        runner: Runner,
    ) -> TestApp {
        TestApp {
            addr,
            dir,
            db,
            env: opts.env,
            logs,
            client: reqwest::Client::new(),
            runner,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Posts a body to the webhook as Alertmanager would.
    pub async fn post_webhook(&self, body: impl Into<reqwest::Body>) -> reqwest::Response {
        let mut req = self
            .client
            .post(self.url("/webhook/alertmanager"))
            .header("content-type", "application/json")
            .body(body);
        if let Some((_, token)) = self.env.iter().find(|(k, _)| k == "AIOPS_WEBHOOK_TOKEN") {
            req = req.bearer_auth(token);
        }
        req.send().await.unwrap()
    }

    /// Posts a body to the webhook and returns the daemon's JSON answer (jobs, refusals …).
    pub async fn post_webhook_json(&self, body: impl Into<reqwest::Body>) -> serde_json::Value {
        self.post_webhook(body).await.json().await.unwrap()
    }

    /// `GET path` without a token, and its JSON body.
    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        let r = self.client.get(self.url(path)).send().await.unwrap();
        r.json().await.unwrap()
    }

    /// Posts a payload recorded from Alertmanager (tests/fixtures).
    pub async fn post_fixture(&self, name: &str) -> reqwest::Response {
        self.post_webhook(fixture(name)).await
    }

    /// Opens the daemon's store from the test (it is safe to share: SQLite in WAL mode).
    pub async fn store(&self) -> Store {
        Store::connect(&self.db.url, &aiops::store::Options::default())
            .await
            .unwrap()
    }

    /// `GET path` without a token; the status.
    pub async fn get_status(&self, path: &str) -> u16 {
        let r = self.client.get(self.url(path)).send().await.unwrap();
        r.status().as_u16()
    }

    /// The Prometheus text the daemon serves on /metrics.
    pub async fn metrics(&self) -> String {
        self.client
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Waits until /metrics contains `series` (e.g. `name{label="v"} 1`).
    pub async fn wait_for_metric(&self, series: &str, within: Duration) {
        wait::until(
            &format!("{series} on /metrics"),
            within,
            async || self.metrics().await.contains(series).then_some(()),
            || self.log_text(),
        )
        .await
    }

    /// The daemon's process id (to signal it or read /proc/PID/status).
    pub fn pid(&self) -> u32 {
        match &self.runner {
            Runner::Process(child) => child.id(),
            Runner::InProcess(_) => panic!("an in-process daemon has no pid: use TestApp::spawn"),
            Runner::Stopped => panic!("the daemon was stopped"),
        }
    }

    /// Sends a signal to the daemon process.
    pub fn signal(&self, sig: &str) {
        process::signal(self.pid(), sig);
    }

    /// SIGTERM and wait for exit.
    pub fn stop(&mut self) -> ExitStatus {
        let pid = self.pid();
        let Runner::Process(mut child) = std::mem::replace(&mut self.runner, Runner::Stopped)
        else {
            unreachable!("pid() answered, so this is a process")
        };
        process::signal(pid, "TERM");
        // A blocking wait on the child, bounded: this is what `stop` is for, not a delay.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("daemon did not stop within 30 s of SIGTERM");
            }
            std::thread::sleep(wait::PROBE_EVERY);
        }
    }

    /// SIGKILL (no chance to record anything) and wait for the exit.
    pub fn kill(&mut self) -> ExitStatus {
        let Runner::Process(mut child) = std::mem::replace(&mut self.runner, Runner::Stopped)
        else {
            panic!("only a daemon process can be killed: use TestApp::spawn")
        };
        child.kill().unwrap();
        child.wait().unwrap()
    }

    /// Stops this daemon and starts another over the same directory and store.
    pub async fn restart(mut self) -> TestApp {
        let status = self.stop();
        assert!(status.success(), "clean exit on SIGTERM, got {status}");
        // `spawn_in` reuses this app's directory and database; `db` only matters to `spawn`.
        let opts = Spawn {
            env: self.env.clone(),
            ..Spawn::new(Db::Sqlite)
        };
        TestApp::spawn_in(self.dir.clone(), self.db.clone(), opts).await
    }

    /// The daemon's log so far, one JSON object a line.
    pub fn log_text(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    /// Polls the store until `pred` holds for the jobs (integration tests only; unit tests use
    /// a paused clock).
    pub async fn wait_for_jobs(&self, what: &str, pred: impl Fn(&[Job]) -> bool) -> Vec<Job> {
        self.wait_for_jobs_within(what, wait::DEFAULT_WITHIN, pred)
            .await
    }

    /// As [`TestApp::wait_for_jobs`] with another deadline: repairs on a real control plane
    /// wait for its controllers.
    pub async fn wait_for_jobs_within(
        &self,
        what: &str,
        limit: Duration,
        pred: impl Fn(&[Job]) -> bool,
    ) -> Vec<Job> {
        let store = self.store().await;
        wait::until_ok(
            what,
            limit,
            async || {
                let jobs = store.jobs().await.unwrap();
                if pred(&jobs) { Ok(jobs) } else { Err(jobs) }
            },
            || format!("logs:\n{}", self.log_text()),
        )
        .await
    }

    /// Waits until every job is in one of `states`.
    pub async fn wait_all_jobs_in(&self, states: &[JobState]) -> Vec<Job> {
        self.wait_for_jobs("jobs to settle", |jobs| {
            jobs.iter().all(|j| states.contains(&j.state))
        })
        .await
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        // Stop the daemon before the fields go, its store among them (a PostgreSQL database is
        // dropped with its last reference).
        match std::mem::replace(&mut self.runner, Runner::Stopped) {
            Runner::Process(mut c) => {
                let _ = c.kill();
                let _ = c.wait();
            }
            Runner::InProcess(daemon) => drop(daemon),
            Runner::Stopped => {}
        }
    }
}

/// Prepares the daemon's directory and returns its environment: the test's directory for rules
/// and playbooks (copied from the repository unless the test wrote its own rules), its store,
/// port 0, short polls, the in-memory cluster of tests/fixtures/cluster-state.yaml; then the
/// test's own variables. The test's files are written; a configuration file becomes
/// `AIOPS_CONFIG` in the options' environment, so a restart keeps it.
fn environment(
    dir: &tempfile::TempDir,
    db: &TestDb,
    mut opts: Spawn,
) -> (Spawn, Vec<(String, String)>) {
    for (name, contents) in &opts.files {
        std::fs::write(dir.path().join(name), contents).unwrap();
        if name == CONFIG_FILE {
            let path = dir.path().join(name).display().to_string();
            opts.env.push(("AIOPS_CONFIG".into(), path));
        }
    }
    opts.files.clear();
    let rules_dir = dir.path().join("rules");
    let playbooks_dir = dir.path().join("playbooks");
    if !rules_dir.exists() {
        std::fs::create_dir_all(&rules_dir).unwrap();
        match &opts.rules {
            Some(yaml) => std::fs::write(rules_dir.join("test.yaml"), yaml).unwrap(),
            None => copy_dir(&repo().join("rules"), &rules_dir),
        }
        std::fs::create_dir_all(&playbooks_dir).unwrap();
        copy_dir(&repo().join("playbooks"), &playbooks_dir);
    }
    let mut env: Vec<(String, String)> = vec![
        ("AIOPS_LISTEN".into(), "127.0.0.1:0".into()),
        ("AIOPS_DATABASE_URL".into(), db.url.clone()),
        ("AIOPS_RULES_DIR".into(), rules_dir.display().to_string()),
        (
            "AIOPS_PLAYBOOKS_DIR".into(),
            playbooks_dir.display().to_string(),
        ),
        ("AIOPS_POLL_INTERVAL".into(), "200ms".into()),
        ("AIOPS_ROLLOUT_POLL".into(), "100ms".into()),
        (
            "AIOPS_CLUSTER_STATE_FILE".into(),
            repo()
                .join("tests/fixtures/cluster-state.yaml")
                .display()
                .to_string(),
        ),
        ("AIOPS_LOG".into(), "info,sqlx=warn".into()),
    ];
    env.extend(opts.env.iter().cloned());
    (opts, env)
}
