//! Every console page rendered by the daemon with 100,000 alerts and 10,000 repairs in a SQLite
//! store, signed in as an admin (every app) and as an editor of one app, one measurement per
//! page and viewer. The target is under 100 ms server-side per page.
//!
//! The history: 100,000 alerts over 30 days across 50 apps (namespaces) and 8 alert names, each
//! with its decision (one in ten a repair job, the rest no rule matched or a guard refused), and
//! 10,000 repairs (70 % succeeded, 20 % failed, 10 % escalated). Rows are generated with
//! multi-row SQL (recursive CTEs) in seconds. The database is built once into
//! `target/console-bench-v2.db` and reused; delete it to rebuild.
//!
//! Pages are fetched from `aiops serve` (the binary cargo built for this bench) on 127.0.0.1,
//! port 0, over plain HTTP with a session cookie: what is measured is the daemon's answer, the
//! loopback round trip included. A page that does not answer 200 is reported and not measured.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aiops::auth::Role;
use aiops::store::{self, Options, Store};
use aiops::ui::session::{SESSION_COOKIE, random_token, token_hash};
use criterion::{Criterion, criterion_group, criterion_main};

const ALERTS: i64 = 100_000;
const REPAIRS: i64 = 10_000;
const APPS: i64 = 50;
const DAYS: i64 = 30;
/// The page-time target, server-side.
const TARGET: Duration = Duration::from_millis(100);

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"))
}

fn url(path: &Path) -> String {
    format!("sqlite://{}?mode=rwc", path.display())
}

/// Builds the history into `path` (through a temporary file, so an interrupted build is not
/// reused).
async fn build(path: &Path) {
    let tmp = path.with_extension("building");
    let _ = std::fs::remove_file(&tmp);
    // Connecting migrates: the schema is the daemon's own.
    let store = Store::connect(
        &url(&tmp),
        &Options {
            sqlite_full_sync: false,
            ..Options::default()
        },
    )
    .await
    .unwrap();
    let raw = sqlx::AnyPool::connect(&url(&tmp)).await.unwrap();
    let now = store::now_ms();
    let start = now - DAYS * store::DAY_MS;
    let step = DAYS * store::DAY_MS / ALERTS;
    let day = store::DAY_MS;
    eprintln!(
        "building {} ({ALERTS} alerts, {REPAIRS} repairs)…",
        path.display()
    );
    let names = "CASE h % 8 WHEN 0 THEN 'KubePodCrashLooping' WHEN 1 THEN 'HighLatency' \
                 WHEN 2 THEN 'ContainerOOMKilled' WHEN 3 THEN 'High5xxRate' WHEN 4 THEN 'DiskAlmostFull' \
                 WHEN 5 THEN 'KubeDeploymentDown' WHEN 6 THEN 'HighMemoryUsage' ELSE 'ReadinessFlapping' END";
    let severity = "CASE (h / 8) % 3 WHEN 0 THEN 'critical' WHEN 1 THEN 'warning' ELSE 'info' END";
    for sql in [
        // Alerts: the last day's still firing, the rest resolved.
        format!(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {ALERTS}), \
             r AS (SELECT i, {start} + i * {step} AS t, (i * 2654435761) % 4294967296 AS h FROM n), \
             s AS (SELECT i, t, h, {names} AS a, 'app' || ((h / 24) % {APPS}) AS ns, {severity} AS sev FROM r) \
             INSERT INTO alert_events (fingerprint, status, starts_at, alertname, namespace, severity, labels, \
               annotations, generator_url, receiver, group_key, received_at, resolved_at) \
             SELECT 'f' || (i % 5000), 'firing', t, a, ns, sev, \
               '{{\"alertname\":\"' || a || '\",\"namespace\":\"' || ns || '\",\"severity\":\"' || sev || '\",\"deployment\":\"web\"}}', \
               '{{\"summary\":\"bench\"}}', 'http://prometheus.example/graph', 'aiops', '{{}}', t, \
               CASE WHEN t < {now} - {day} THEN t + 600000 END FROM s"
        ),
        // One repair for every tenth alert.
        format!(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {REPAIRS}), \
             s AS (SELECT i, e.id AS aid, e.alertname AS a, e.namespace AS ns, e.received_at AS t, \
               CASE WHEN i % 10 < 7 THEN 'succeeded' WHEN i % 10 < 9 THEN 'failed' ELSE 'escalated' END AS st \
               FROM n JOIN alert_events e ON e.id = i * 10) \
             INSERT INTO jobs (alert_event_id, fingerprint, alertname, rule, playbook, spec, chain_index, \
               target_namespace, target_kind, target_name, target_key, dry_run, state, not_before, created_at, \
               updated_at, started_at, finished_at, ttr_ms) \
             SELECT aid, 'f' || (aid % 5000), a, 'restart', 'restart', \
               '{{\"playbook\":\"restart\",\"params\":{{}},\"escalate\":[],\"verify\":{{}},\"mode\":\"auto\"}}', 0, \
               ns, 'Deployment', 'web', \
               ns || '/Deployment/web', 0, st, t, t, t + 60000, t + 1000, t + 60000, \
               CASE WHEN st = 'succeeded' THEN 60000 END FROM s"
        ),
        // The decisions: the job's, else no rule matched (or, one in five, a guard refused).
        "INSERT INTO decisions (alert_event_id, rule, target_key, verdict, reason, detail, job_id, created_at) \
         SELECT e.id, CASE WHEN j.id IS NULL AND e.id % 5 <> 0 THEN '' ELSE 'restart' END, \
           CASE WHEN j.id IS NULL AND e.id % 5 <> 0 THEN NULL ELSE e.namespace || '/Deployment/web' END, \
           CASE WHEN j.id IS NOT NULL THEN 'job' WHEN e.id % 5 = 0 THEN 'refused' ELSE 'skipped' END, \
           CASE WHEN j.id IS NOT NULL THEN 'plan' WHEN e.id % 5 = 0 THEN 'cooldown' ELSE 'no_rule' END, \
           '', j.id, e.received_at FROM alert_events e LEFT JOIN jobs j ON j.alert_event_id = e.id"
            .to_string(),
        "ANALYZE".to_string(),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&raw)
            .await
            .unwrap();
    }
    raw.close().await;
    store.close().await;
    std::fs::rename(&tmp, path).unwrap();
    for ext in ["building-wal", "building-shm"] {
        let _ = std::fs::remove_file(tmp.with_extension(ext));
    }
}

/// A console user and a session of theirs; answers the session cookie.
async fn session(store: &Store, name: &str, role: Role, apps: &[&str]) -> String {
    let now = store::now_ms();
    let apps: Vec<String> = apps.iter().map(|a| a.to_string()).collect();
    let token = random_token();
    let mut tx = store.begin_write().await.unwrap();
    tx.put_console_user(name, "!bench, no password", role, &apps, now)
        .await
        .unwrap();
    tx.insert_console_session(
        &token_hash(&token),
        name,
        &random_token(),
        now,
        now + 3_600_000,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    format!("{SESSION_COOKIE}={token}")
}

/// `aiops serve` over the bench's store; stopped (by its id) when dropped.
struct Daemon {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Daemon {
    fn start(db: &Path) -> Daemon {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_aiops"))
            .args(["--log-format", "json", "serve"])
            .current_dir(dir.path())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("AIOPS_LISTEN", "127.0.0.1:0")
            .env("AIOPS_DATABASE_URL", url(db))
            .env("AIOPS_RULES_DIR", repo.join("rules"))
            .env("AIOPS_PLAYBOOKS_DIR", repo.join("playbooks"))
            .env(
                "AIOPS_CLUSTER_STATE_FILE",
                repo.join("tests/fixtures/cluster-state.yaml"),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("aiops serve");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let addr = lines.by_ref().map_while(Result::ok).find_map(|line| {
            let v: serde_json::Value = serde_json::from_str(&line).ok()?;
            (v.get("message")?.as_str()? == "listening")
                .then(|| v.get("addr")?.as_str()?.parse().ok())
                .flatten()
        });
        // Keep reading its log so that the daemon never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        let Some(addr) = addr else {
            let _ = child.kill();
            panic!("aiops serve stopped before listening");
        };
        Daemon {
            child,
            addr,
            _dir: dir,
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = target_dir().join("console-bench-v2.db");
    if !db.exists() {
        rt.block_on(build(&db));
    }
    let (admin, editor) = rt.block_on(async {
        let store = Store::connect(&url(&db), &Options::default())
            .await
            .unwrap();
        let cookies = (
            session(&store, "bench-admin", Role::Admin, &[]).await,
            session(&store, "bench-editor", Role::Editor, &["app7"]).await,
        );
        store.close().await;
        cookies
    });
    let daemon = Daemon::start(&db);
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let base = format!("http://{}", daemon.addr);
    let get = |path: &str, cookie: &str| {
        let req = http.get(format!("{base}{path}")).header("cookie", cookie);
        async move {
            let r = req.send().await.unwrap();
            let status = r.status();
            let body = r.bytes().await.unwrap();
            (status, body.len())
        }
    };

    let pages = [
        ("alerts", "/ui/alerts".to_string()),
        (
            "alerts_filtered",
            "/ui/alerts?severity=critical&automation=failed&state=resolved".into(),
        ),
        (
            "alerts_older_page",
            format!("/ui/alerts?before={}", ALERTS / 2),
        ),
        ("alert", "/ui/alerts/{alert}".into()),
        ("repairs", "/ui/repairs".into()),
        ("repairs_failed", "/ui/repairs?state=failed".into()),
        ("repair", "/ui/repairs/{repair}".into()),
        ("rules", "/ui/rules".into()),
        ("rule", "/ui/rules/restart".into()),
        ("inbox", "/ui/inbox".into()),
        ("apps", "/ui/apps".into()),
    ];
    // Ids of app7's rows, so that the editor can open them too.
    let (alert_id, repair_id) = rt.block_on(app7_ids(&db));
    let mut g = c.benchmark_group("console_pages");
    g.sample_size(20).measurement_time(Duration::from_secs(3));
    let mut summary = Vec::new();
    for (who, cookie) in [("admin", &admin), ("editor_app7", &editor)] {
        for (name, path) in &pages {
            let path = path
                .replace("{alert}", &alert_id.to_string())
                .replace("{repair}", &repair_id.to_string());
            let (status, _) = rt.block_on(get(&path, cookie));
            if status != reqwest::StatusCode::OK {
                eprintln!("{name} ({who}): {path} answered {status}: not measured");
                continue;
            }
            // A median of its own for the summary, then criterion's measurement.
            let mut times: Vec<Duration> = (0..15)
                .map(|_| {
                    let t = Instant::now();
                    rt.block_on(get(&path, cookie));
                    t.elapsed()
                })
                .collect();
            times.sort();
            summary.push((format!("{name} ({who})"), times[times.len() / 2]));
            g.bench_function(format!("{name}/{who}"), |b| {
                b.iter(|| rt.block_on(get(&path, cookie)))
            });
        }
    }
    g.finish();
    eprintln!("\nmedian per page ({ALERTS} alerts, {REPAIRS} repairs; target {TARGET:?}):");
    for (page, t) in &summary {
        let flag = if *t > TARGET { "  OVER TARGET" } else { "" };
        eprintln!("  {page:<32} {:>8.2} ms{flag}", t.as_secs_f64() * 1000.0);
    }
    drop(daemon);
}

/// The id of one alert and one repair of app7.
async fn app7_ids(db: &Path) -> (i64, i64) {
    use sqlx::Row;
    let raw = sqlx::AnyPool::connect(&url(db)).await.unwrap();
    let row = sqlx::query(
        "SELECT alert_event_id AS a, id AS j FROM jobs WHERE target_namespace = 'app7' ORDER BY id DESC LIMIT 1",
    )
    .fetch_one(&raw)
    .await
    .unwrap();
    let ids = (row.get::<i64, _>("a"), row.get::<i64, _>("j"));
    raw.close().await;
    ids
}

criterion_group!(benches, bench);
criterion_main!(benches);
