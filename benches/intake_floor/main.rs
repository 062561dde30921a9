//! The intake's floor with HTTP (issue 20): a webhook receiver that does what aiops must do
//! before it answers a fresh alert, as cheaply as this author could make it, and nothing else.
//!
//! Per webhook: the same HTTP stack and runtime as the daemon and the baseline, the daemon's own
//! typed parse and validation (`aiops::alert::Payload`), and, before answering, every alert
//! recorded durably in the real schema: an `alert_events` row with the columns intake fills for
//! a firing alert (not `resolved_at`: the load is firing alerts only, so intake's read of stored
//! resolves is left out too) and one `decisions` row per stored alert (each of the load's alerts
//! matches one rule). The writes are group-committed by one writer thread that owns its SQLite
//! connection (rusqlite, statements prepared once, one row per step, no hand-off between
//! threads per statement), with the daemon's pragmas: one transaction and one fsync per batch.
//! Left out on purpose: dedup, rules, guards, jobs, notifications, metrics, logs. So it bounds
//! what the daemon's design can reach on a machine (the daemon does all of this and more), and
//! is not a design to copy: `benches/store_floor.py` runs it beside the bare baseline.
//!
//! Run: `cargo run --release --example intake_floor -- DB_FILE` (a file that does not exist yet:
//! it is created and migrated; listens on `FLOOR_LISTEN`, default 127.0.0.1:9097;
//! `FLOOR_SYNC=normal` for synchronous NORMAL; `FLOOR_BATCH` alerts per transaction at most,
//! default 1000, the daemon's `intake.batch_max_alerts`).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};

use aiops::alert::Payload;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use tokio::sync::oneshot;

/// Address used when `FLOOR_LISTEN` is unset; next to the baseline's 9096.
const DEFAULT_LISTEN: &str = "127.0.0.1:9097";

/// One alert's `alert_events` columns, made by its handler (off the writer's serial path).
struct Row {
    fingerprint: String,
    status: &'static str,
    starts_at: i64,
    ends_at: Option<i64>,
    alertname: String,
    namespace: Option<String>,
    labels: String,
    annotations: String,
    generator_url: String,
    severity: Option<String>,
    target_key: String,
}

/// A webhook's rows and where to say they are committed.
struct Job {
    receiver: String,
    group_key: String,
    rows: Vec<Row>,
    done: oneshot::Sender<Result<usize, String>>,
}

/// Webhooks waiting for the writer.
#[derive(Default)]
struct Queue {
    waiting: Mutex<VecDeque<Job>>,
    ready: Condvar,
}

async fn webhook(State(queue): State<Arc<Queue>>, body: Bytes) -> Response {
    let payload = match Payload::from_slice(&body) {
        Ok(p) => p,
        Err(e) => {
            let body = serde_json::json!({ "error": e.to_string() });
            return (StatusCode::BAD_REQUEST, axum::Json(body)).into_response();
        }
    };
    let (good, _rejected) = payload.partition(chrono::Utc::now());
    let rows: Vec<Row> = good
        .into_iter()
        .map(|a| {
            let namespace = a.labels.get("namespace").cloned();
            Row {
                fingerprint: a.fingerprint.clone(),
                status: a.status.as_str(),
                starts_at: a.starts_at_ms(),
                ends_at: a.ends_at.map(|t| t.timestamp_millis()),
                alertname: a.alertname().to_string(),
                labels: serde_json::to_string(&a.labels).expect("string maps serialize"),
                annotations: serde_json::to_string(&a.annotations).expect("string maps serialize"),
                generator_url: a.generator_url.clone(),
                severity: a.labels.get("severity").cloned(),
                target_key: format!(
                    "{}/Deployment/{}",
                    namespace.as_deref().unwrap_or(""),
                    a.labels.get("deployment").map_or("", String::as_str)
                ),
                namespace,
            }
        })
        .collect();
    let (done, answer) = oneshot::channel();
    {
        let mut waiting = queue.waiting.lock().expect("queue lock");
        waiting.push_back(Job {
            receiver: payload.receiver,
            group_key: payload.group_key,
            rows,
            done,
        });
    }
    queue.ready.notify_one();
    match answer.await {
        Ok(Ok(n)) => (
            StatusCode::OK,
            axum::Json(serde_json::json!({ "accepted": n })),
        )
            .into_response(),
        Ok(Err(e)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({ "error": e })),
        )
            .into_response(),
        Err(_) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}

/// Opens the database with the daemon's pragmas and applies the real SQLite migrations.
fn open(path: &Path, full: bool) -> rusqlite::Result<rusqlite::Connection> {
    let conn = rusqlite::Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", if full { "FULL" } else { "NORMAL" })?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlite");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "sql"))
        .collect();
    files.sort();
    for f in files {
        let sql = std::fs::read_to_string(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        conn.execute_batch(&sql)?;
    }
    Ok(conn)
}

/// Writes one batch in one transaction; the count of alerts stored per webhook.
fn write_batch(conn: &mut rusqlite::Connection, jobs: &[Job]) -> rusqlite::Result<Vec<usize>> {
    let now = chrono::Utc::now().timestamp_millis();
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut counts = Vec::with_capacity(jobs.len());
    {
        let mut alert = tx.prepare_cached(
            "INSERT INTO alert_events (fingerprint, status, starts_at, ends_at, alertname, namespace, \
             labels, annotations, generator_url, receiver, group_key, received_at, severity) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13) ON CONFLICT DO NOTHING",
        )?;
        let mut decision = tx.prepare_cached(
            "INSERT INTO decisions (alert_event_id, rule, target_key, verdict, reason, detail, job_id, created_at) \
             VALUES (?1, 'restart', ?2, 'refused', 'cooldown', 'rule restart acted on the target 3s ago (cooldown 10m)', NULL, ?3)",
        )?;
        for job in jobs {
            let mut stored = 0;
            for r in &job.rows {
                let n = alert.execute(rusqlite::params![
                    r.fingerprint,
                    r.status,
                    r.starts_at,
                    r.ends_at,
                    r.alertname,
                    r.namespace,
                    r.labels,
                    r.annotations,
                    r.generator_url,
                    job.receiver,
                    job.group_key,
                    now,
                    r.severity,
                ])?;
                if n == 1 {
                    decision.execute(rusqlite::params![
                        tx.last_insert_rowid(),
                        r.target_key,
                        now
                    ])?;
                    stored += 1;
                }
            }
            counts.push(stored);
        }
    }
    tx.commit()?;
    Ok(counts)
}

/// The writer: takes every waiting webhook (up to `max_alerts` alerts), writes, answers.
fn writer(mut conn: rusqlite::Connection, queue: Arc<Queue>, max_alerts: usize) {
    loop {
        let mut batch = Vec::new();
        {
            let mut waiting = queue.waiting.lock().expect("queue lock");
            while waiting.is_empty() {
                waiting = queue.ready.wait(waiting).expect("queue lock");
            }
            let mut alerts = 0;
            while let Some(job) = waiting.front() {
                if !batch.is_empty() && alerts + job.rows.len() > max_alerts {
                    break;
                }
                alerts += job.rows.len();
                batch.extend(waiting.pop_front());
            }
        }
        let outcome = write_batch(&mut conn, &batch);
        for (i, job) in batch.into_iter().enumerate() {
            let answer = match &outcome {
                Ok(counts) => Ok(counts[i]),
                Err(e) => Err(e.to_string()),
            };
            let _ = job.done.send(answer);
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let db = std::env::args()
        .nth(1)
        .ok_or("usage: intake_floor DB_FILE (a new file is made and migrated)")?;
    let addr: SocketAddr = std::env::var("FLOOR_LISTEN")
        .ok()
        .filter(|v| !v.is_empty())
        .as_deref()
        .unwrap_or(DEFAULT_LISTEN)
        .parse()?;
    if Path::new(&db).exists() {
        return Err(format!("{db} exists; intake_floor creates and migrates a new file").into());
    }
    let full = std::env::var("FLOOR_SYNC").map_or(true, |v| v != "normal");
    let max_alerts: usize = std::env::var("FLOOR_BATCH")
        .ok()
        .map(|v| v.parse())
        .transpose()?
        .unwrap_or(1000);
    let conn = open(Path::new(&db), full)?;
    let queue = Arc::new(Queue::default());
    let q = queue.clone();
    std::thread::Builder::new()
        .name("floor-writer".into())
        .spawn(move || writer(conn, q, max_alerts.max(1)))?;
    // Built the way the daemon's main.rs builds its runtime: default worker count, all drivers.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        println!("listening on {}", listener.local_addr()?);
        let app = Router::new()
            .route("/webhook/alertmanager", post(webhook))
            .with_state(queue);
        axum::serve(listener, app).await?;
        Ok(())
    })
}
