//! Test harness: spawns the real `aiops serve` binary on port 0 and talks HTTP to it.
//!
//! Each test gets its own working directory and store: a SQLite file, or a fresh PostgreSQL
//! database created on 127.0.0.1:5432 (`AIOPS_TEST_PG_URL` overrides the server URL) and dropped
//! afterwards. Without PostgreSQL the PostgreSQL variants skip, except in CI (`CI=true`), where
//! a missing service is a failure.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aiops::store::{Job, JobState, Store};

/// Which store backend a test runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// Runs an async test body on both backends: `both_backends!(name);` expects
/// `async fn name(db: Db)` in scope and generates `name::on_sqlite` and `name::on_postgres`.
#[macro_export]
macro_rules! both_backends {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn on_sqlite() {
                super::$name($crate::common::Db::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn on_postgres() {
                if let Some(()) = $crate::common::postgres_available().await {
                    super::$name($crate::common::Db::Postgres).await
                }
            }
        }
    };
}

pub fn pg_server_url() -> String {
    std::env::var("AIOPS_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// `Some(())` when PostgreSQL answers; `None` (skip) when it does not, outside CI.
pub async fn postgres_available() -> Option<()> {
    sqlx::any::install_default_drivers();
    match pg_connect(&pg_server_url()).await {
        Ok(_) => Some(()),
        Err(e) => {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!(
                    "PostgreSQL is required in CI but {} is unreachable: {e}",
                    pg_server_url()
                );
            }
            eprintln!(
                "skipping: PostgreSQL unreachable at {}: {e}",
                pg_server_url()
            );
            None
        }
    }
}

async fn pg_connect(url: &str) -> Result<sqlx::AnyConnection, sqlx::Error> {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    sqlx::AnyConnection::connect(url).await
}

/// A pool of the test's own on a test database, to arrange what the store's API never writes
/// (backdated or bulk history): the store keeps its connections and SQL to itself.
pub async fn raw_db(url: &str) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    sqlx::AnyPool::connect(url).await.unwrap()
}

/// The cutoffs of a pruning pass at `now` with the default windows (`retention.*`), but
/// `repairs_days` for repairs.
pub fn cutoffs(now: i64, repairs_days: i64) -> aiops::store::Cutoffs {
    let day = aiops::store::DAY_MS;
    aiops::store::Cutoffs {
        alerts: now - 30 * day,
        repairs: now - repairs_days * day,
        stats: now - 730 * day,
        audit: now - 365 * day,
        activity: now - day,
    }
}

/// The rows of `table`, counted through a [`raw_db`] pool.
pub async fn count_rows(raw: &sqlx::AnyPool, table: &str) -> i64 {
    let sql = format!("SELECT COUNT(*) AS n FROM {table}");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .fetch_one(raw)
        .await
        .unwrap();
    sqlx::Row::get(&row, "n")
}

/// A database for one test; a PostgreSQL one is dropped when this is dropped.
pub struct TestDb {
    pub url: String,
    pg_name: Option<String>,
}

impl TestDb {
    pub async fn new(db: Db, dir: &Path) -> TestDb {
        match db {
            Db::Sqlite => TestDb {
                url: format!("sqlite://{}?mode=rwc", dir.join("aiops.db").display()),
                pg_name: None,
            },
            Db::Postgres => {
                use sqlx::Executor;
                sqlx::any::install_default_drivers();
                let name = format!("aiops_t_{}", uuid::Uuid::new_v4().simple());
                let mut conn = pg_connect(&pg_server_url()).await.unwrap();
                conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .await
                    .unwrap();
                let base = pg_server_url();
                let (prefix, _) = base.rsplit_once('/').unwrap();
                TestDb {
                    url: format!("{prefix}/{name}"),
                    pg_name: Some(name),
                }
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some(name) = self.pg_name.take() else {
            return;
        };
        // Drop needs its own runtime: the test's may be shutting down.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                use sqlx::Executor;
                if let Ok(mut c) = pg_connect(&pg_server_url()).await {
                    let _ = c
                        .execute(sqlx::AssertSqlSafe(format!(
                            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                        )))
                        .await;
                }
            });
        })
        .join();
    }
}

/// Options for spawning the daemon.
pub struct Spawn {
    pub db: Db,
    /// Rules YAML written to rules/test.yaml; `None` uses the repository's rules.
    pub rules: Option<String>,
    /// Extra environment.
    pub env: Vec<(String, String)>,
}

impl Spawn {
    pub fn new(db: Db) -> Spawn {
        Spawn {
            db,
            rules: None,
            env: Vec::new(),
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
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(repo().join("tests/fixtures").join(name)).unwrap()
}

/// A running daemon.
pub struct TestApp {
    pub addr: SocketAddr,
    pub dir: Arc<tempfile::TempDir>,
    pub db: Arc<TestDb>,
    pub env: Vec<(String, String)>,
    pub logs: Arc<Mutex<Vec<String>>>,
    pub client: reqwest::Client,
    child: Option<Child>,
}

impl TestApp {
    /// Spawns `aiops serve` in a fresh directory with a fresh store.
    pub async fn spawn(opts: Spawn) -> TestApp {
        let dir = Arc::new(tempfile::tempdir().unwrap());
        let db = Arc::new(TestDb::new(opts.db, dir.path()).await);
        Self::spawn_in(dir, db, opts).await
    }

    /// Spawns a daemon over an existing directory and store (restart).
    pub async fn spawn_in(dir: Arc<tempfile::TempDir>, db: Arc<TestDb>, opts: Spawn) -> TestApp {
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
        let (child, addr, logs) = start(dir.path(), &env).await;
        TestApp {
            addr,
            dir,
            db,
            env: opts.env,
            logs,
            client: reqwest::Client::new(),
            child: Some(child),
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

    pub async fn post_fixture(&self, name: &str) -> reqwest::Response {
        self.post_webhook(fixture(name)).await
    }

    /// Opens the daemon's store from the test (it is safe to share: SQLite in WAL mode).
    pub async fn store(&self) -> Store {
        Store::connect(&self.db.url, &aiops::store::Options::default())
            .await
            .unwrap()
    }

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

    /// Sends a signal to the daemon.
    pub fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().unwrap().id();
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &pid.to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// SIGTERM and wait for exit.
    pub fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("daemon did not stop within 30 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops this daemon and starts another over the same directory and store.
    pub async fn restart(mut self) -> TestApp {
        let status = self.stop();
        assert!(status.success(), "clean exit on SIGTERM, got {status}");
        // `spawn_in` reuses this app's directory and database; `db` only matters to `spawn`.
        let opts = Spawn {
            db: Db::Sqlite,
            rules: None,
            env: self.env.clone(),
        };
        TestApp::spawn_in(self.dir.clone(), self.db.clone(), opts).await
    }

    /// The daemon's process id (to read /proc/PID/status).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn log_text(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    /// Polls the store until `pred` holds for the jobs (integration tests only; unit tests use
    /// a paused clock).
    pub async fn wait_for_jobs(&self, what: &str, pred: impl Fn(&[Job]) -> bool) -> Vec<Job> {
        self.wait_for_jobs_within(what, Duration::from_secs(20), pred)
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
        let deadline = Instant::now() + limit;
        loop {
            let jobs = store.jobs().await.unwrap();
            if pred(&jobs) {
                return jobs;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out waiting for {what}; jobs: {jobs:#?}\nlogs:\n{}",
                    self.log_text()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn wait_all_jobs_in(&self, states: &[JobState]) -> Vec<Job> {
        self.wait_for_jobs("jobs to settle", |jobs| {
            jobs.iter().all(|j| states.contains(&j.state))
        })
        .await
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn copy_dir(from: &Path, to: &Path) {
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// Starts the binary and waits for its "listening" log line (JSON) to learn the port.
pub async fn start(
    cwd: &Path,
    env: &[(String, String)],
) -> (Child, SocketAddr, Arc<Mutex<Vec<String>>>) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_aiops"));
    cmd.args(["--log-format", "json", "serve"])
        .current_dir(cwd)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn aiops");
    let stderr = child.stderr.take().unwrap();
    let logs = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    {
        let logs = logs.clone();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addr) = listening_addr(&line)
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(addr);
                }
                logs.lock().unwrap().push(line);
            }
        });
    }
    let addr = tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(30)))
        .await
        .unwrap();
    match addr {
        Ok(addr) => (child, addr, logs),
        Err(_) => {
            let _ = child.kill();
            panic!(
                "daemon did not start; logs:\n{}",
                logs.lock().unwrap().join("\n")
            );
        }
    }
}

fn listening_addr(line: &str) -> Option<SocketAddr> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    if v.get("message")?.as_str()? != "listening" {
        return None;
    }
    v.get("addr")?.as_str()?.parse().ok()
}

/// Runs the binary to completion with a command line, returning (status, stdout, stderr).
pub fn run_cli(
    cwd: &Path,
    args: &[&str],
    env: &HashMap<&str, String>,
) -> (ExitStatus, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_aiops"))
        .args(args)
        .current_dir(cwd)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A webhook payload with the given alerts (labels, status).
pub fn payload(alerts: &[(&[(&str, &str)], &str)], starts_at: &str) -> String {
    let alerts: Vec<serde_json::Value> = alerts
        .iter()
        .map(|(labels, status)| {
            let labels: serde_json::Map<String, serde_json::Value> = labels
                .iter()
                .map(|(k, v)| (k.to_string(), serde_json::json!(v)))
                .collect();
            serde_json::json!({
                "status": status, "labels": labels, "annotations": {},
                "startsAt": starts_at, "endsAt": "0001-01-01T00:00:00Z", "generatorURL": ""
            })
        })
        .collect();
    serde_json::json!({"version": "4", "status": "firing", "receiver": "aiops", "groupKey": "{}", "alerts": alerts})
        .to_string()
}

/// An RFC 3339 `startsAt` this many minutes before now: tests whose rule waits (`wait: 24h`)
/// need an alert that started recently, or the wait has already passed and the job runs at once.
pub fn minutes_ago(minutes: i64) -> String {
    (chrono::Utc::now() - chrono::Duration::minutes(minutes))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}
