//! The real programs an end-to-end test starts: Debian's Prometheus and Alertmanager, a private
//! PostgreSQL, and a tiny exporter that publishes the fake cluster's state as metrics.
//!
//! Everything listens on 127.0.0.1 (ephemeral ports), lives in a temporary directory, keeps its
//! log in a file for failure messages, and is stopped by PID when its guard is dropped.
//! A missing binary skips a test with a printed reason, except in CI (`CI=true`), where it fails.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::routing::get;

use crate::common::programs;
pub use crate::common::programs::{Proc, free_port};
use crate::common::{in_ci, wait};
use crate::fakeapi::FakeApi;

/// The binaries an end-to-end test needs, or `None` (skip, with the reason printed) outside
/// CI; in CI a missing binary is a failure: .ci/run installs them.
pub fn require(names: &[&str]) -> Option<Vec<PathBuf>> {
    programs::require(names, "apt-get install prometheus prometheus-alertmanager")
}

/// Polls `url` until it answers 2xx; `Err` with `proc`'s log when it exits or `within` passes.
pub async fn wait_ready(proc: &mut Proc, url: &str, within: Duration) -> Result<(), String> {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + within;
    loop {
        if let Ok(r) = client.get(url).send().await
            && r.status().is_success()
        {
            return Ok(());
        }
        if !proc.running() || Instant::now() > deadline {
            return Err(format!("{url} never became ready\n{}", proc.log_tail()));
        }
        tokio::time::sleep(wait::PROBE_EVERY).await;
    }
}

/// Starts a program that takes its port on the command line, on a free port; tries again on
/// another port when the one picked was taken in between (other tests run concurrently).
async fn start_on_free_port(
    name: &str,
    log: PathBuf,
    command: impl Fn(u16) -> Command,
    within: Duration,
) -> (Proc, u16) {
    let mut last = String::new();
    for _ in 0..3 {
        let port = free_port();
        let mut proc = Proc::spawn(name, command(port), log.clone());
        match wait_ready(
            &mut proc,
            &format!("http://127.0.0.1:{port}/-/ready"),
            within,
        )
        .await
        {
            Ok(()) => return (proc, port),
            Err(e) if e.contains("address already in use") => last = e,
            Err(e) => panic!("{e}"),
        }
    }
    panic!("{name}: no free port after 3 tries\n{last}")
}

/// One webhook receiver of Alertmanager: an aiops replica.
pub struct Webhook {
    /// `http://127.0.0.1:PORT/webhook/alertmanager`
    pub url: String,
    /// The bearer token (AIOPS_WEBHOOK_TOKEN).
    pub token: String,
}

/// Alertmanager's timing for the route.
#[derive(Clone, Copy)]
pub struct Timing {
    /// `group_interval` (also how soon a failed notification's group is sent again).
    pub group_interval: &'static str,
    /// `repeat_interval`: how often an unchanged firing group is sent again (duplicates).
    pub repeat_interval: &'static str,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            group_interval: "1s",
            repeat_interval: "1h",
        }
    }
}

/// A running Debian `prometheus-alertmanager` (0.25): no clustering, storage in a temp dir,
/// `group_wait: 0s`, one group per namespace/deployment/seq, one webhook_config per receiver.
pub struct Alertmanager {
    pub proc: Proc,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Alertmanager {
    /// Starts it and waits for `/-/ready`.
    pub async fn start(bin: &Path, hooks: &[Webhook], timing: Timing) -> Alertmanager {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut configs = String::new();
        for h in hooks {
            configs.push_str(&format!(
                "      - url: {}\n        send_resolved: true\n        max_alerts: 0\n        http_config:\n          authorization:\n            type: Bearer\n            credentials: {}\n",
                h.url, h.token
            ));
        }
        let config = format!(
            "route:\n  receiver: aiops\n  group_by: [alertname, namespace, deployment, seq]\n  group_wait: 0s\n  group_interval: {gi}\n  repeat_interval: {ri}\nreceivers:\n  - name: aiops\n    webhook_configs:\n{configs}",
            gi = timing.group_interval,
            ri = timing.repeat_interval,
        );
        let config_path = dir.path().join("alertmanager.yml");
        std::fs::write(&config_path, config).expect("write alertmanager.yml");
        let data = dir.path().join("data");
        let (proc, port) = start_on_free_port(
            "alertmanager",
            dir.path().join("alertmanager.log"),
            |port| {
                let mut cmd = Command::new(bin);
                cmd.arg(format!("--config.file={}", config_path.display()))
                    .arg(format!("--storage.path={}", data.display()))
                    .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                    .arg("--cluster.listen-address=")
                    .arg("--log.level=debug");
                cmd
            },
            Duration::from_secs(30),
        )
        .await;
        Alertmanager {
            proc,
            port,
            _dir: dir,
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Posts alerts as Prometheus does (`POST /api/v2/alerts`).
    pub async fn post_alerts(&self, alerts: &[AmAlert]) {
        let body: Vec<serde_json::Value> = alerts.iter().map(AmAlert::to_json).collect();
        let r = reqwest::Client::new()
            .post(format!("{}/api/v2/alerts", self.url()))
            .json(&body)
            .send()
            .await
            .expect("post alerts to Alertmanager");
        assert!(
            r.status().is_success(),
            "Alertmanager refused alerts: {}\n{}",
            r.status(),
            self.proc.log_tail()
        );
    }

    /// Alertmanager's own metrics.
    pub async fn metrics(&self) -> String {
        reqwest::get(format!("{}/metrics", self.url()))
            .await
            .expect("Alertmanager metrics")
            .text()
            .await
            .unwrap_or_default()
    }
}

/// An alert to post to Alertmanager.
#[derive(Clone)]
pub struct AmAlert {
    pub labels: Vec<(String, String)>,
    pub starts_at: SystemTime,
    /// `None`: firing until Alertmanager's resolve_timeout; `Some(past)`: resolved.
    pub ends_at: Option<SystemTime>,
}

impl AmAlert {
    /// A firing alert starting now.
    pub fn firing(labels: &[(&str, &str)]) -> AmAlert {
        AmAlert {
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            starts_at: SystemTime::now(),
            ends_at: None,
        }
    }

    fn to_json(&self) -> serde_json::Value {
        let labels: serde_json::Map<String, serde_json::Value> = self
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::json!(v)))
            .collect();
        let mut v = serde_json::json!({
            "labels": labels,
            "annotations": {"summary": "end-to-end test alert"},
            "startsAt": rfc3339(self.starts_at),
            "generatorURL": "http://127.0.0.1/e2e",
        });
        if let Some(end) = self.ends_at {
            v["endsAt"] = serde_json::json!(rfc3339(end));
        }
        v
    }
}

/// RFC 3339 with milliseconds, as Alertmanager accepts.
pub fn rfc3339(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A running Debian `prometheus` with 1 s scrape and evaluation intervals, one scrape target,
/// alerting to one Alertmanager, and the rule file given by the test.
pub struct Prometheus {
    pub proc: Proc,
    /// Its HTTP port on 127.0.0.1. Read by tests/monitor.rs (which queries it), not by
    /// tests/e2e.rs, which also compiles this file.
    #[allow(dead_code)]
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts it and waits for `/-/ready`.
    pub async fn start(bin: &Path, target: &str, alertmanager: &str, rules: &str) -> Prometheus {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("rules.yml"), rules).expect("write rules");
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: [rules.yml]\nalerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['{alertmanager}']\nscrape_configs:\n  - job_name: cluster\n    static_configs:\n      - targets: ['{target}']\n"
        );
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).expect("write prometheus.yml");
        let data = dir.path().join("data");
        let (proc, port) = start_on_free_port(
            "prometheus",
            dir.path().join("prometheus.log"),
            |port| {
                let mut cmd = Command::new(bin);
                cmd.arg(format!("--config.file={}", config_path.display()))
                    .arg(format!("--storage.tsdb.path={}", data.display()))
                    .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                    .current_dir(dir.path());
                cmd
            },
            Duration::from_secs(60),
        )
        .await;
        Prometheus {
            proc,
            port,
            _dir: dir,
        }
    }
}

/// A kube-state-metrics stand-in: serves, from the fake API server's pods in `namespace`,
/// `kube_pod_container_status_last_terminated_reason{namespace, pod, container, reason,
/// deployment} 1` for every container whose last termination has a reason. The `deployment`
/// label comes from the pod's `app` label (kube-state-metrics would need a join for it).
pub struct Exporter {
    pub addr: std::net::SocketAddr,
    server: tokio::task::JoinHandle<()>,
}

impl Exporter {
    /// Binds 127.0.0.1:0 and serves `/metrics`.
    pub async fn start(api: Arc<FakeApi>, namespace: &'static str) -> Exporter {
        let app = Router::new().route(
            "/metrics",
            get(move || {
                let api = api.clone();
                async move {
                    let mut out = String::from(
                        "# TYPE kube_pod_container_status_last_terminated_reason gauge\n",
                    );
                    for pod in api.pods(namespace) {
                        let name = pod.metadata.name.clone().unwrap_or_default();
                        let app = pod
                            .metadata
                            .labels
                            .as_ref()
                            .and_then(|l| l.get("app").cloned())
                            .unwrap_or_default();
                        let statuses = pod
                            .status
                            .and_then(|s| s.container_statuses)
                            .unwrap_or_default();
                        for c in statuses {
                            let reason = c
                                .last_state
                                .and_then(|s| s.terminated)
                                .and_then(|t| t.reason);
                            if let Some(reason) = reason {
                                out.push_str(&format!(
                                    "kube_pod_container_status_last_terminated_reason{{namespace=\"{namespace}\",pod=\"{name}\",container=\"{}\",reason=\"{reason}\",deployment=\"{app}\"}} 1\n",
                                    c.name
                                ));
                            }
                        }
                    }
                    (
                        [("content-type", "text/plain; version=0.0.4")],
                        out,
                    )
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind exporter");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("exporter");
        });
        Exporter { addr, server }
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// A private PostgreSQL cluster for a test that stops the database: never the machine's shared
/// server on 5432, which other tests use at the same time. PostgreSQL refuses to run as root,
/// so it runs as the `postgres` OS user in a temp dir that user owns.
pub struct PrivatePg {
    pub port: u16,
    bin: PathBuf,
    dir: PathBuf,
    as_root: bool,
}

impl PrivatePg {
    /// initdb + start on a free port; `None` (skip) outside CI when PostgreSQL's server
    /// binaries are missing.
    pub fn start() -> Option<PrivatePg> {
        let bin = std::fs::read_dir("/usr/lib/postgresql").ok().and_then(|d| {
            let mut v: Vec<PathBuf> = d
                .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
                .filter(|p| p.join("initdb").is_file())
                .collect();
            v.sort();
            v.pop()
        });
        let Some(bin) = bin else {
            if in_ci() {
                panic!("PostgreSQL server binaries (/usr/lib/postgresql/*/bin) are required in CI");
            }
            eprintln!("skipping: no /usr/lib/postgresql/*/bin/initdb");
            return None;
        };
        // Root must switch to the postgres user; `id -u` avoids a libc dependency for geteuid.
        let as_root = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false);
        let dir =
            std::env::temp_dir().join(format!("aiops-e2e-pg-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("create pg dir");
        let pg = PrivatePg {
            port: free_port(),
            bin,
            dir,
            as_root,
        };
        if as_root {
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&pg.dir)
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "chown of {} to postgres failed", pg.dir.display());
        }
        let data = pg.dir.join("data");
        pg.run(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
            ],
        );
        pg.pg_ctl_start();
        Some(pg)
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let exe = self.bin.join(tool);
        let out = if self.as_root {
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(&exe)
                .args(args)
                .current_dir(&self.dir)
                .output()
        } else {
            Command::new(&exe)
                .args(args)
                .current_dir(&self.dir)
                .output()
        }
        .unwrap_or_else(|e| panic!("cannot run {tool}: {e}"));
        assert!(
            out.status.success(),
            "{tool} {args:?} failed: {}\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(self.dir.join("pg.log")).unwrap_or_default()
        );
    }

    fn pg_ctl_start(&self) {
        let data = self.dir.join("data");
        let log = self.dir.join("pg.log");
        let opts = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off",
            self.port,
            self.dir.display()
        );
        self.run(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-l",
                log.to_str().unwrap(),
                "-o",
                &opts,
                "-w",
                "-t",
                "30",
                "start",
            ],
        );
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres`
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Stops the server (fast shutdown: clients are disconnected, as in an outage).
    pub fn stop(&self) {
        let data = self.dir.join("data");
        self.run(
            "pg_ctl",
            &["-D", data.to_str().unwrap(), "-m", "fast", "-w", "stop"],
        );
    }

    /// Starts it again on the same port.
    pub fn restart(&self) {
        self.pg_ctl_start();
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        let pid_file = data.join("postmaster.pid");
        if pid_file.exists() {
            let args = [
                "-D",
                data.to_str().unwrap_or(""),
                "-m",
                "immediate",
                "-w",
                "stop",
            ];
            let exe = self.bin.join("pg_ctl");
            let _ = if self.as_root {
                Command::new("runuser")
                    .args(["-u", "postgres", "--"])
                    .arg(&exe)
                    .args(args)
                    .output()
            } else {
                Command::new(&exe).args(args).output()
            };
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Sums the samples of a metric family in Prometheus text format whose line contains `filter`
/// (e.g. `code="200"`; empty for all).
pub fn metric_sum(text: &str, name: &str, filter: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter(|l| l.contains(filter))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Nearest-rank percentile (p in 0..=100) of unsorted values.
pub fn percentile(values: &[Duration], p: f64) -> Duration {
    let mut v = values.to_vec();
    v.sort();
    if v.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * v.len() as f64).ceil().max(1.0) as usize;
    v[rank.min(v.len()) - 1]
}
