//! The durable store: SQLite by default, PostgreSQL by URL, through sqlx's Any driver.
//!
//! The store is the source of truth for everything that must survive a restart or be shared by
//! replicas: which alert occurrences were seen (dedup), which repairs exist and in which state,
//! what each guard refused and why. Timestamps are epoch milliseconds and JSON is TEXT so one
//! query text serves both backends; each backend has its own migration folder.
//!
//! SQLite allows one writer at a time. Rather than letting concurrent transactions collide and
//! sleep in SQLite's busy handler, writers queue on an in-process mutex ([`Store::begin_write`]).
//! PostgreSQL needs no such lock: its row locks and unique indexes arbitrate between replicas.
//!
//! Every query of the crate lives under this module, behind typed methods: neither the pool nor
//! a [`WriteTx`]'s transaction is reachable from outside, so a schema change is checked here.
//! Submodules are split by concern: `intake` (alerts, decisions, guard counts), `jobs`,
//! `kb` (rollups, notes, the knowledge base's reads), `listing` (the API's pages and audit
//! log), `notify` (the outbox), `deploy`, `maintenance` (windows, summaries), `retention`,
//! `approvals` (approve mode's clicks, used link nonces, the expiry sweep's reads), `shadow`
//! (shadow mode's evidence), `history` (the recorded history as a timeline, and its replay into
//! a scratch store for `aiops replay`), `timeline` (the console's repair timeline: a job's
//! notifications with their attempts, the rest of its chain), `hand` (the occurrence a repair
//! run by hand against a target is recorded as).

mod alert_center;
mod approvals;
mod catalog;
mod console;
mod deploy;
mod gitops;
mod hand;
mod history;
mod inbox;
mod intake;
mod jobs;
mod kb;
mod listing;
mod maintenance;
mod memo;
mod notify;
mod retention;
pub mod rfc3339;
mod shadow;
mod timeline;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{Any, AnyPool, AssertSqlSafe, Transaction};
use tokio::sync::{Mutex, OwnedMutexGuard};

pub use alert_center::Automation;
pub use approvals::{ApprovalRecord, ApprovalTarget, NewApproval};
pub use console::{ConsoleSession, ConsoleUser};
pub use deploy::{AppRecord, DeploymentRecord, NewDeployment, StepRecord, StepStatus};
pub use gitops::{Hold, NewHold};
pub use history::{CopiedRow, HistoryAlert, HistoryItem, HistoryTable, Position, RecordedDecision};
pub use inbox::AwaitingApproval;
pub use intake::{Decision, NewAlertEvent, StoredAlert};
pub use jobs::{Escalation, Job, JobEvent, JobState, NewEscalation, NewJob, Record, Step};
pub use kb::{DAY_MS, LastFix, NewNote, Note, RollupSum, TargetRollup, TtrSample};
pub use listing::{AlertDecision, AlertRecord, AlertState, AuditEntry, ListFilter};
pub use maintenance::{HeldAlert, StoredWindow};
pub use memo::Mark;
pub use notify::{
    AttemptEnd, NewNotification, Notification, NotificationAttempt, NotificationState,
    OccurrenceJob,
};
pub use retention::{Cutoffs, Pruned};
pub use shadow::{ShadowFilter, ShadowJob, ShadowStep};
pub use timeline::JobNotification;

/// Store failures. All of them mean "could not record": intake answers 503 so Alertmanager retries.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database refused or could not be reached.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A migration failed at start-up.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A SQLite file could not be opened (SQLITE_CANTOPEN): a missing directory, no
    /// permission, or a file that does not exist without `mode=rwc`.
    #[error(
        "cannot open the SQLite file {path}: {reason}. Its directory must exist and be writable, and \
         `?mode=rwc` at the end of the URL lets aiops create the file (the default is \
         `sqlite://aiops.db?mode=rwc`)"
    )]
    SqliteOpen {
        /// The file, as the URL names it.
        path: String,
        /// SQLite's message.
        reason: String,
    },
    /// A stored value could not be decoded.
    #[error("corrupt stored value in {column}: {message}")]
    Corrupt {
        /// Column name.
        column: &'static str,
        /// What is wrong.
        message: String,
    },
}

impl Error {
    /// A short, bounded label for metrics and logs.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Database(sqlx::Error::PoolTimedOut) => "pool_timeout",
            Error::Database(_) | Error::SqliteOpen { .. } => "database",
            Error::Migrate(_) => "migrate",
            Error::Corrupt { .. } => "corrupt",
        }
    }
}

/// `type Result<T, E = Error>` as in every module of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Which database is behind the Any pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// Embedded single-file database (single replica).
    Sqlite,
    /// Shared database for production and replicas.
    Postgres,
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// Options for opening the store.
#[derive(Clone, Debug)]
pub struct Options {
    /// Connection pool size.
    pub max_connections: u32,
    /// How long to wait for a connection.
    pub acquire_timeout: Duration,
    /// Open without creating or migrating (for read-only commands).
    pub read_only: bool,
    /// SQLite `synchronous`: true = FULL (fsync per commit), false = NORMAL.
    pub sqlite_full_sync: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_connections: 8,
            acquire_timeout: Duration::from_secs(5),
            read_only: false,
            sqlite_full_sync: true,
        }
    }
}

/// Handle to the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    write_lock: Arc<Mutex<()>>,
    /// How long a transaction waits for an intake lock (the pool's acquire timeout).
    lock_timeout: Duration,
}

/// A write transaction; on SQLite it also holds the in-process writer lock until dropped.
///
/// Its statements are the store's methods on it (`insert_job`, `transition`, …): the
/// transaction itself stays inside this module so that no other module builds SQL.
pub struct WriteTx {
    /// The transaction; commit or roll back explicitly, dropping rolls back.
    tx: Transaction<'static, Any>,
    _guard: Option<OwnedMutexGuard<()>>,
    backend: Backend,
    /// The guards' reads kept for the rest of an intake transaction (off elsewhere).
    memo: memo::Memo,
    /// Decisions and storm activity written at [`WriteTx::flush`].
    deferred: memo::Deferred,
    /// Savepoints taken so far (their names).
    savepoints: u32,
    /// See [`Store`]'s field.
    lock_timeout: Duration,
}

impl WriteTx {
    /// Writes the deferred rows, then commits and releases the writer lock.
    pub async fn commit(mut self) -> Result<()> {
        self.flush().await?;
        self.tx.commit().await?;
        Ok(())
    }

    /// Keeps the guards' reads for the rest of this transaction (intake only: see
    /// `store::memo`).
    pub fn memoize(&mut self) {
        self.memo.on = true;
    }

    /// Starts a savepoint: [`WriteTx::rollback_to`] undoes everything after it, including
    /// deferred rows and remembered reads.
    pub async fn savepoint(&mut self) -> Result<Mark> {
        self.savepoints += 1;
        let name = format!("aiops_sp{}", self.savepoints);
        sqlx::query(AssertSqlSafe(format!("SAVEPOINT {name}")))
            .execute(&mut *self.tx)
            .await?;
        Ok(Mark {
            name,
            memo: self.memo.clone(),
            deferred: self.deferred.clone(),
        })
    }

    /// Undoes everything since `mark` and ends the savepoint.
    pub async fn rollback_to(&mut self, mark: Mark) -> Result<()> {
        for sql in [
            format!("ROLLBACK TO SAVEPOINT {}", mark.name),
            format!("RELEASE SAVEPOINT {}", mark.name),
        ] {
            sqlx::query(AssertSqlSafe(sql))
                .execute(&mut *self.tx)
                .await?;
        }
        self.memo = mark.memo;
        self.deferred = mark.deferred;
        Ok(())
    }

    /// Keeps everything since `mark` as part of the transaction.
    pub async fn release(&mut self, mark: Mark) -> Result<()> {
        sqlx::query(AssertSqlSafe(format!("RELEASE SAVEPOINT {}", mark.name)))
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }
    /// Rolls back, then releases the writer lock.
    pub async fn rollback(self) -> Result<()> {
        self.tx.rollback().await?;
        Ok(())
    }
}

impl Store {
    /// Connects, applies the backend's migrations and returns the handle.
    pub async fn connect(url: &str, opts: &Options) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            Backend::Postgres
        };
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        // An in-memory SQLite database exists per connection: share one.
        let max = if in_memory {
            1
        } else {
            opts.max_connections.max(1)
        };
        let connect_opts = AnyConnectOptions::from_str(url)?;
        let mut pool_opts = AnyPoolOptions::new()
            .max_connections(max)
            .min_connections(if in_memory { 1 } else { 0 })
            .acquire_timeout(opts.acquire_timeout);
        if in_memory {
            pool_opts = pool_opts.idle_timeout(None).max_lifetime(None);
        }
        if backend == Backend::Sqlite {
            let sync = if opts.sqlite_full_sync {
                "PRAGMA synchronous = FULL"
            } else {
                "PRAGMA synchronous = NORMAL"
            };
            pool_opts = pool_opts.after_connect(move |conn, _meta| {
                Box::pin(async move {
                    // WAL lets readers run beside the writer; FULL sync makes a commit survive
                    // power loss, which is the promise behind answering Alertmanager 2xx.
                    for pragma in [
                        "PRAGMA journal_mode = WAL",
                        sync,
                        "PRAGMA busy_timeout = 5000",
                        "PRAGMA foreign_keys = ON",
                    ] {
                        sqlx::query(pragma).execute(&mut *conn).await?;
                    }
                    Ok(())
                })
            });
        }
        let pool = match pool_opts.connect_with(connect_opts).await {
            Ok(pool) => pool,
            Err(sqlx::Error::Database(e))
                if backend == Backend::Sqlite && e.code().as_deref() == Some("14") =>
            {
                return Err(Error::SqliteOpen {
                    path: sqlite_path(url).to_string(),
                    reason: e.message().to_string(),
                });
            }
            Err(e) => return Err(e.into()),
        };
        let store = Store {
            pool,
            backend,
            write_lock: Arc::new(Mutex::new(())),
            lock_timeout: opts.acquire_timeout,
        };
        if !opts.read_only {
            store.migrate().await?;
        }
        Ok(store)
    }

    /// Applies pending migrations of this backend, one process at a time.
    pub async fn migrate(&self) -> Result<()> {
        match self.backend {
            // Nothing pending (every start but the first after an upgrade): no write lock, so a
            // command opening the store while the daemon writes a large batch does not wait on
            // it. sqlx still checks the applied ones' checksums.
            Backend::Sqlite if !self.sqlite_migrations_pending().await? => {
                SQLITE_MIGRATIONS.run(&self.pool).await?
            }
            Backend::Sqlite => {
                // sqlx takes no lock around SQLite migrations (PostgreSQL's take an advisory
                // lock): two processes starting on one new file (the daemon and `aiops user
                // add`, say) both found migration 1 pending and one failed ("table alert_events
                // already exists"). Run them all in one IMMEDIATE transaction instead: it holds
                // SQLite's write lock, so the second process waits (busy_timeout) and then finds
                // them applied. Each migration is a savepoint of it, and an upgrade that fails
                // half-way leaves the file as it was.
                let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
                // `run_direct`, not `run`: with `run(&mut *tx)` the daemon's future is no longer
                // provably `Send` ("implementation of `Acquire` is not general enough"), the case
                // sqlx keeps this entry point for.
                SQLITE_MIGRATIONS.run_direct(None, &mut *tx, false).await?;
                tx.commit().await?;
            }
            Backend::Postgres => POSTGRES_MIGRATIONS.run(&self.pool).await?,
        }
        Ok(())
    }

    /// Whether one of the embedded SQLite migrations is not recorded as applied (or none is:
    /// a new file). Read without a lock: a migration found pending is checked again under
    /// SQLite's write lock, by sqlx, before it runs.
    async fn sqlite_migrations_pending(&self) -> Result<bool> {
        let table: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
        )
        .fetch_one(&self.pool)
        .await?;
        if table == 0 {
            return Ok(true);
        }
        let applied: Vec<i64> =
            sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success = 1")
                .fetch_all(&self.pool)
                .await?;
        Ok(SQLITE_MIGRATIONS
            .iter()
            .filter(|m| !m.migration_type.is_down_migration())
            .any(|m| !applied.contains(&m.version)))
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Whether the database answers (used by `/-/ready`).
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Starts a write transaction.
    pub async fn begin_write(&self) -> Result<WriteTx> {
        let guard = match self.backend {
            Backend::Sqlite => Some(self.write_lock.clone().lock_owned().await),
            Backend::Postgres => None,
        };
        // IMMEDIATE takes SQLite's write lock at BEGIN: a transaction that reads first can then
        // never fail to upgrade when another process (the CLI, a test) wrote in between.
        let tx = match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        };
        Ok(WriteTx {
            tx,
            _guard: guard,
            backend: self.backend,
            memo: memo::Memo::default(),
            deferred: memo::Deferred::default(),
            savepoints: 0,
            lock_timeout: self.lock_timeout,
        })
    }

    /// Closes the pool, waiting for connections to be returned.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// `items` in chunks for multi-row statements: `max` at a time, the rest in falling powers of
/// two (`max` a power of two). Each chunk size is its own prepared statement in every
/// connection's cache, so a batch of any size uses at most log₂(max) + 1 of them instead of
/// `max` (each a large statement: they filled the daemon's memory).
pub(crate) fn pow2_chunks<T>(items: &[T], max: usize) -> Vec<&[T]> {
    debug_assert!(max.is_power_of_two());
    let mut out = Vec::new();
    let mut rest = items;
    while !rest.is_empty() {
        let n = if rest.len() >= max {
            max
        } else {
            1 << rest.len().ilog2()
        };
        let (chunk, tail) = rest.split_at(n);
        out.push(chunk);
        rest = tail;
    }
    out
}

/// The `VALUES` list of a multi-row statement: `rows` copies of `row`, a tuple whose `?`s mark
/// its parameters, numbered `$1…` across the list on PostgreSQL. SQLite gets anonymous `?`s:
/// sqlx-sqlite looks every numbered parameter's name up with a linear search inside SQLite,
/// which is quadratic in a statement's parameters (it was a sixth of intake's CPU).
pub(crate) fn values_list(backend: Backend, rows: usize, row: &str) -> String {
    let mut out = String::with_capacity(rows * (row.len() + 32));
    let mut n = 0;
    for i in 0..rows {
        if i > 0 {
            out.push_str(", ");
        }
        match backend {
            Backend::Sqlite => out.push_str(row),
            Backend::Postgres => {
                for (j, part) in row.split('?').enumerate() {
                    if j > 0 {
                        n += 1;
                        out.push_str(&format!("${n}"));
                    }
                    out.push_str(part);
                }
            }
        }
    }
    out
}

/// The file a `sqlite:` URL names: without the scheme and the query.
fn sqlite_path(url: &str) -> &str {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    rest.split('?').next().unwrap_or(rest)
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Duration as milliseconds, saturating.
pub fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::pow2_chunks;

    #[test]
    fn multi_row_chunks_are_full_then_falling_powers_of_two() {
        let items: Vec<u32> = (0..203).collect();
        let sizes: Vec<usize> = pow2_chunks(&items, 64).iter().map(|c| c.len()).collect();
        assert_eq!(sizes, [64, 64, 64, 8, 2, 1]);
        let flat: Vec<u32> = pow2_chunks(&items, 64).concat();
        assert_eq!(flat, items, "every item once, in order");
        assert!(pow2_chunks::<u32>(&[], 64).is_empty());
    }

    #[test]
    fn a_values_list_numbers_parameters_on_postgresql_and_leaves_them_anonymous_on_sqlite() {
        use super::{Backend, values_list};
        assert_eq!(
            values_list(Backend::Postgres, 2, "(?, (SELECT ? + ?))"),
            "($1, (SELECT $2 + $3)), ($4, (SELECT $5 + $6))"
        );
        assert_eq!(values_list(Backend::Sqlite, 2, "(?, ?)"), "(?, ?), (?, ?)");
    }
}
