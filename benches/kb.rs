//! Knowledge-base queries on 1,000,000 repairs in SQLite: stats (per alert and playbook, per
//! target) over 7, 30 and 365 days, for everyone (admin) and for one app, and similar incidents.
//!
//! The history is a busy fleet's year: 1,000,000 finished repairs over 365 days (≈2,740 a day),
//! 50 apps (namespaces) × 5 Deployments, 8 alert names handled by 10 rules (alert → playbook),
//! 70% succeeded (with a time to recover between 30 s and 2 h), 20% failed, 10% escalated.
//! Rows are generated with SQL; the rollups are then built from them as migration 0005 builds
//! them from existing history (and checked against the raw rows before measuring).
//!
//! The database is built once into `target/kb-bench-1m-v3.db` (about a minute) and reused; delete it
//! to rebuild. For comparison, `raw_group_by_30d` is the plain GROUP BY over `jobs` that the
//! rollup replaces.

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;

use aiops::store::{self, Options, Store};
use criterion::{Criterion, criterion_group, criterion_main};
use sqlx::Row;

const REPAIRS: i64 = 1_000_000;
const DAYS: i64 = 365;
const APPS: i64 = 50;
/// (alertname, playbook): the rules.
const RULES: [(&str, &str); 10] = [
    ("KubeDeploymentDown", "restart"),
    ("KubeDeploymentDown", "rollback"),
    ("ContainerOOMKilled", "oom_handler"),
    ("HighMemoryUsage", "scale_memory"),
    ("High5xxRate", "rollback"),
    ("High5xxRate", "restart"),
    ("CrashLooping", "restart"),
    ("FailedPods", "cleanup"),
    ("FinishedJobsPiling", "cleanup"),
    ("ReadinessFlapping", "restart"),
];

fn db_path() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("kb-bench-1m-v3.db")
}

async fn build(path: &std::path::Path, now: i64) -> Store {
    let tmp = path.with_extension("building");
    let _ = std::fs::remove_file(&tmp);
    let url = url(&tmp);
    let store = Store::connect(
        &url,
        &Options {
            sqlite_full_sync: false,
            ..Options::default()
        },
    )
    .await
    .unwrap();
    // The history is generated with SQL on a pool of the bench's own: the store keeps its
    // connections and SQL to itself.
    let raw = raw_db(&url).await;
    let pool = &raw;
    eprintln!("building {} ({REPAIRS} repairs)…", path.display());
    sqlx::query(
        "INSERT INTO alert_events (fingerprint, status, starts_at, alertname, namespace, labels, annotations, \
         generator_url, receiver, group_key, received_at) VALUES ('f', 'firing', 0, 'x', 'app0', '{}', '{}', '', 'r', '{}', 0)",
    )
    .execute(pool)
    .await
    .unwrap();
    let cases: String = RULES
        .iter()
        .enumerate()
        .map(|(i, (a, p))| format!("WHEN {i} THEN '{a}|{p}' "))
        .collect();
    let start = now - DAYS * store::DAY_MS;
    let step = DAYS * store::DAY_MS / REPAIRS;
    // Pseudo-random but reproducible columns from the row number (multiplicative hashing).
    let sql = format!(
        "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < {last}), \
         r AS (SELECT i, {start} + i * {step} AS t, (i * 2654435761) % 4294967296 AS h FROM n), \
         s AS (SELECT i, t, h, CASE (h / 7) % 10 {cases} END AS ap, 'app' || ((h / 70) % {APPS}) AS ns, \
               'web' || ((h / 3500) % 5) AS dep, \
               CASE WHEN h % 10 < 7 THEN 'succeeded' WHEN h % 10 < 9 THEN 'failed' ELSE 'escalated' END AS st FROM r) \
         INSERT INTO jobs (alert_event_id, fingerprint, alertname, rule, playbook, params, escalate, chain_index, \
           target_namespace, target_kind, target_name, target_key, dry_run, state, not_before, created_at, updated_at, \
           started_at, finished_at, ttr_ms) \
         SELECT 1, 'f' || i, substr(ap, 1, instr(ap, '|') - 1), 'rule', substr(ap, instr(ap, '|') + 1), '{{}}', '[]', 0, \
           ns, 'Deployment', dep, ns || '/Deployment/' || dep, 0, st, t, t, t, t, t + 60000, \
           CASE WHEN st = 'succeeded' THEN 30000 + (h / 13) % 7170000 END FROM s",
        last = REPAIRS - 1,
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .execute(pool)
        .await
        .unwrap();
    // The rollups, built from the rows as migration 0005 builds them from existing history.
    for sql in [
        "INSERT INTO kb_daily (day, namespace, alertname, playbook, runs, succeeded, ttr_count, ttr_sum_ms) \
         SELECT created_at / 86400000, target_namespace, alertname, playbook, COUNT(*), \
         SUM(CASE WHEN state = 'succeeded' THEN 1 ELSE 0 END), \
         SUM(CASE WHEN state = 'succeeded' AND ttr_ms IS NOT NULL THEN 1 ELSE 0 END), \
         COALESCE(SUM(CASE WHEN state = 'succeeded' THEN ttr_ms END), 0) FROM jobs \
         GROUP BY created_at / 86400000, target_namespace, alertname, playbook",
        "INSERT INTO kb_daily_all (day, alertname, playbook, runs, succeeded, ttr_count, ttr_sum_ms) \
         SELECT day, alertname, playbook, SUM(runs), SUM(succeeded), SUM(ttr_count), SUM(ttr_sum_ms) \
         FROM kb_daily GROUP BY day, alertname, playbook",
        "INSERT INTO kb_target_daily (day, namespace, target_key, runs, succeeded) \
         SELECT created_at / 86400000, target_namespace, target_key, COUNT(*), \
         SUM(CASE WHEN state = 'succeeded' THEN 1 ELSE 0 END) FROM jobs \
         GROUP BY created_at / 86400000, target_namespace, target_key",
        "INSERT INTO kb_target_period (period, namespace, target_key, runs, succeeded) \
         SELECT day / 30, namespace, target_key, SUM(runs), SUM(succeeded) FROM kb_target_daily \
         GROUP BY day / 30, namespace, target_key",
    ] {
        sqlx::query(sql).execute(pool).await.unwrap();
    }
    for table in [
        "kb_daily",
        "kb_daily_all",
        "kb_target_daily",
        "kb_target_period",
    ] {
        let n: i64 = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT COUNT(*) AS n FROM {table}"
        )))
        .fetch_one(pool)
        .await
        .unwrap()
        .get("n");
        eprintln!("{table}: {n} rows");
    }
    sqlx::query("ANALYZE").execute(pool).await.unwrap();
    raw.close().await;
    store.close().await;
    std::fs::rename(&tmp, path).unwrap();
    let _ = std::fs::remove_file(tmp.with_extension("building-wal"));
    let _ = std::fs::remove_file(tmp.with_extension("building-shm"));
    open(path).await
}

fn url(path: &std::path::Path) -> String {
    format!("sqlite://{}?mode=rwc", path.display())
}

async fn open(path: &std::path::Path) -> Store {
    Store::connect(&url(path), &Options::default())
        .await
        .unwrap()
}

/// A pool beside the store's, for the SQL the bench runs itself (after `Store::connect`, which
/// installed the drivers).
async fn raw_db(url: &str) -> sqlx::AnyPool {
    sqlx::AnyPool::connect(url).await.unwrap()
}

/// The store, built on first use; `now` is when its history ends (stored beside it so that the
/// windows cover the same rows on every run).
async fn store() -> (Store, i64) {
    let path = db_path();
    let stamp = path.with_extension("now");
    if let (true, Ok(text)) = (path.exists(), std::fs::read_to_string(&stamp)) {
        return (open(&path).await, text.trim().parse().unwrap());
    }
    let now = store::now_ms();
    let s = build(&path, now).await;
    std::fs::write(&stamp, now.to_string()).unwrap();
    (s, now)
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (store, now) = rt.block_on(store());
    let raw = rt.block_on(raw_db(&url(&db_path())));
    let day = store::DAY_MS;

    // The rollup agrees with the rows it summarises.
    rt.block_on(async {
        let raw = sqlx::query(
            "SELECT COUNT(*) AS n, SUM(CASE WHEN state = 'succeeded' THEN 1 ELSE 0 END) AS ok FROM jobs \
             WHERE created_at >= $1",
        )
        .bind((now - 30 * day).div_euclid(day) * day)
        .fetch_one(&raw)
        .await
        .unwrap();
        let stats = aiops::kb::stats(&store, now - 30 * day, None).await.unwrap();
        let runs: i64 = stats.iter().map(|s| s.runs).sum();
        let ok: i64 = stats.iter().map(|s| s.succeeded).sum();
        assert_eq!((runs, ok), (raw.get::<i64, _>("n"), raw.get::<i64, _>("ok")));
        assert!(stats.iter().all(|s| s.ttr_p90_s.is_some()));
    });

    let mut g = c.benchmark_group("kb_1m");
    g.sample_size(20).measurement_time(Duration::from_secs(4));
    let app = ["app7".to_string()];
    for days in [7, 30, 365] {
        g.bench_function(format!("stats_{days}d_all_apps"), |b| {
            b.iter(|| {
                rt.block_on(aiops::kb::stats(&store, now - days * day, None))
                    .unwrap()
            })
        });
        g.bench_function(format!("stats_{days}d_one_app"), |b| {
            b.iter(|| {
                rt.block_on(aiops::kb::stats(&store, now - days * day, Some(&app)))
                    .unwrap()
            })
        });
        g.bench_function(format!("target_stats_{days}d_all_apps"), |b| {
            b.iter(|| {
                rt.block_on(aiops::kb::target_stats(&store, now - days * day, None))
                    .unwrap()
            })
        });
    }
    g.bench_function("similar_10", |b| {
        b.iter(|| {
            rt.block_on(aiops::kb::similar(
                &store,
                black_box("KubeDeploymentDown"),
                "app7",
                10,
            ))
            .unwrap()
        })
    });
    g.bench_function("raw_group_by_30d", |b| {
        b.iter(|| {
            rt.block_on(
                sqlx::query(
                    "SELECT alertname, playbook, COUNT(*), SUM(CASE WHEN state = 'succeeded' THEN 1 ELSE 0 END), \
                     AVG(ttr_ms) FROM jobs WHERE created_at >= $1 AND dry_run = 0 \
                     AND state IN ('succeeded', 'failed', 'escalated') GROUP BY alertname, playbook",
                )
                .bind(now - 30 * day)
                .fetch_all(&raw),
            )
            .unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
