//! Typed settings: an optional YAML file overridden by `AIOPS_*` environment variables.
//!
//! Settings are read and validated once at start-up; everything downstream receives typed values.
//! Secrets are wrapped in [`Secret`], whose `Debug` and `Display` never print the value, so a
//! settings dump in a log or an error cannot leak a token.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// Configuration problems, reported before anything starts.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The config file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The config file is not valid YAML for these settings.
    #[error("{path}:{line}:{column}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// An environment variable has a value of the wrong form.
    #[error("environment variable {name}: {message}")]
    Env {
        /// Variable name.
        name: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The combination of settings is unsafe or impossible.
    #[error("{0}")]
    Invalid(String),
}

/// `type Result<T, E = Error>` as in every module of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A secret value. Never printed: `Debug`/`Display` show `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The value, for the one place that compares or sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

/// A size in bytes, written as a number or a Kubernetes-style quantity (`64Mi`, `256Ki`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// Parses `65536`, `64Mi`, `1G`.
    pub fn parse(s: &str) -> std::result::Result<ByteSize, String> {
        let n = crate::cluster::quantity::parse_memory(s.trim()).map_err(|e| e.to_string())?;
        u64::try_from(n)
            .map(ByteSize)
            .map_err(|_| format!("{s:?}: a size must not be negative"))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Number(n) => Ok(ByteSize(n)),
            Raw::Text(s) => ByteSize::parse(&s).map_err(serde::de::Error::custom),
        }
    }
}

/// A duration written as humantime (`30s`, `5m`, `1h30m`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration(&s)
            .map(HumanDuration)
            .map_err(serde::de::Error::custom)
    }
}

/// Parses `30s`, `5m`, `1h30m` and the like.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("invalid duration {s:?} ({e}); write it like 30s, 5m or 1h30m"))
}

/// All daemon settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Address to listen on. Default 127.0.0.1:9095.
    pub listen: SocketAddr,
    /// `sqlite://FILE?mode=rwc` (default `sqlite://aiops.db?mode=rwc`) or `postgres://…`.
    pub database_url: Secret,
    /// Token Alertmanager must present (Bearer, or basic-auth password).
    pub webhook_token: Option<Secret>,
    /// Read the webhook token from this file (a mounted Kubernetes Secret).
    pub webhook_token_file: Option<PathBuf>,
    /// Directory of rules/*.yaml. Unset: `./rules` when it exists, else the rules embedded in
    /// the binary. Set but missing is an error, never a silent fallback.
    pub rules_dir: Option<PathBuf>,
    /// Directory of playbooks/*.rhai. Unset: `./playbooks` when it exists, else the embedded
    /// playbooks. Set but missing is an error.
    pub playbooks_dir: Option<PathBuf>,
    /// Webhook intake limits.
    pub intake: Intake,
    /// Duplicate detection cache.
    pub dedup: Dedup,
    /// Guards applied before a job exists.
    pub guard: Guard,
    /// Job queue and workers.
    pub jobs: Jobs,
    /// Store connection pool.
    pub store: StoreSettings,
    /// The Kubernetes backend.
    pub cluster: ClusterSettings,
    /// Playbook runtime limits and host API settings.
    pub playbook: PlaybookSettings,
    /// The JSON API under /api.
    pub api: ApiSettings,
    /// Connection limits and timeouts of the HTTP server.
    pub http: HttpSettings,
    /// How long history is kept.
    pub retention: Retention,
    /// `aiops render` / `aiops deploy` (the deploy module).
    pub deploy: DeploySettings,
    /// Notification channels, routes and templates.
    pub notify: crate::notify::NotifySettings,
}

/// The JSON API (`/api`): JWT HS256 tokens signed with this secret.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiSettings {
    /// HS256 secret, at least 32 bytes (AIOPS_JWT_SECRET). Without one, /api answers 401 to
    /// everything except /api/openapi.json.
    pub jwt_secret: Option<Secret>,
    /// Read the secret from this file (AIOPS_JWT_SECRET_FILE).
    pub jwt_secret_file: Option<PathBuf>,
    /// Largest page a listing returns (default 500).
    pub max_page: Option<i64>,
    /// Largest request body under /api (AIOPS_API_MAX_BODY_BYTES); larger ⇒ 413. Default 256 KiB.
    pub max_body_bytes: Option<usize>,
    /// Deepest nesting of brackets and block collections an app spec may have
    /// (AIOPS_API_MAX_DEPTH); deeper ⇒ 400 before the YAML parser sees it. Default 32.
    pub max_depth: Option<usize>,
}

impl ApiSettings {
    /// Default of `api.max_body_bytes`: an app spec or a note is a few KiB.
    pub const DEFAULT_MAX_BODY_BYTES: usize = 256 * 1024;
    /// Default of `api.max_depth`: the deepest app spec nests 4 levels.
    pub const DEFAULT_MAX_DEPTH: usize = 32;
}

/// Limits of the HTTP server. Alertmanager keeps connections alive between notifications and
/// sends at most a few at once, so the defaults leave it untouched while bounding what a slow,
/// idle or unauthenticated client can hold.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSettings {
    /// A request's headers must arrive complete within this, counted from the connection's
    /// start or from the first byte of a kept-alive connection's next request. Default 10s.
    pub header_read_timeout: HumanDuration,
    /// A request's whole body must arrive within this after its headers; later ⇒ 408. Default 30s.
    pub body_read_timeout: HumanDuration,
    /// A kept-alive connection with no request in progress is closed after this. Default 60s.
    pub idle_timeout: HumanDuration,
    /// Open connections served at once; more are answered 503 and closed. Default 512.
    pub max_connections: usize,
    /// Failed authentications (wrong webhook token, invalid API token) a client address may
    /// make per minute before its requests are answered 429 unread; 0 disables. Default 30.
    pub auth_failures_per_minute: u32,
    /// Failed authentications allowed in a burst before the rate applies. Default 10.
    pub auth_failure_burst: u32,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            header_read_timeout: HumanDuration(Duration::from_secs(10)),
            body_read_timeout: HumanDuration(Duration::from_secs(30)),
            idle_timeout: HumanDuration(Duration::from_secs(60)),
            max_connections: 512,
            auth_failures_per_minute: 30,
            auth_failure_burst: 10,
        }
    }
}

/// Shortest webhook token accepted, in bytes: a shorter one can be guessed.
pub const MIN_WEBHOOK_TOKEN_BYTES: usize = 16;

/// How long history is kept; a background task prunes older rows every `interval`.
///
/// The knowledge base's statistics (`aiops kb stats`, /api/kb/stats) read a per-day rollup kept
/// for `stats`, so they outlive the repairs they count. Reading raw repairs — `kb_success_rate`,
/// `kb_count`, `kb_recent` in playbooks, `choose: best` (a 30-day window), similar incidents,
/// history, exact p90 — only sees what `repairs` keeps: a `repairs` below 30d shortens those
/// windows, which is why it may not be set below 30d.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Retention {
    /// Alert occurrences and guard decisions not tied to a kept repair (default 30d).
    pub alerts: HumanDuration,
    /// Finished repairs with their steps, events and escalations (default 180d, at least 30d).
    pub repairs: HumanDuration,
    /// The knowledge base's per-day rollup (default 730d).
    pub stats: HumanDuration,
    /// The API's audit log (default 365d).
    pub audit: HumanDuration,
    /// How often to prune (default 1h; 0s disables pruning).
    pub interval: HumanDuration,
}

impl Default for Retention {
    fn default() -> Self {
        let days = |d: u64| HumanDuration(Duration::from_secs(d * 86_400));
        Retention {
            alerts: days(30),
            repairs: days(180),
            stats: days(730),
            audit: days(365),
            interval: HumanDuration(Duration::from_secs(3600)),
        }
    }
}

/// Settings of the deploy module.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeploySettings {
    /// The daemon's webhook URL written into the Alertmanager route snippet.
    /// Default `http://aiops.aiops.svc:9095/webhook/alertmanager` (the Service of `aiops manifests`).
    pub webhook_url: String,
    /// A directory of templates overriding the embedded ones by file name.
    pub templates_dir: Option<PathBuf>,
    /// How long `aiops deploy` waits for the migrations Job and for each rollout. Default 5m.
    pub rollout_timeout: HumanDuration,
    /// How often it looks. Default 2s.
    pub poll: HumanDuration,
}

impl Default for DeploySettings {
    fn default() -> Self {
        DeploySettings {
            webhook_url: crate::deploy::render::DEFAULT_WEBHOOK_URL.into(),
            templates_dir: None,
            rollout_timeout: HumanDuration(Duration::from_secs(300)),
            poll: HumanDuration(Duration::from_secs(2)),
        }
    }
}

/// Which cluster playbooks act on.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterSettings {
    /// An in-memory cluster described in YAML (the `--state` format of `aiops test-playbook`),
    /// for demos and end-to-end tests. Without it (and until the Kubernetes backend lands),
    /// every cluster call fails and repairs end inconclusive, escalated to humans.
    pub state_file: Option<PathBuf>,
    /// A kubeconfig file for the Kubernetes backend.
    pub kubeconfig: Option<PathBuf>,
    /// Its context (default: the current-context).
    pub context: Option<String>,
    /// Use the pod's service account (running inside the cluster).
    pub in_cluster: bool,
    /// Override the API server URL.
    pub api_url: Option<String>,
}

/// Playbook runtime settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PlaybookSettings {
    /// Wall-clock deadline of one run (a rule's `timeout` overrides it). Default 5m.
    pub timeout: HumanDuration,
    /// Timeout of one host call (cluster, HTTP, knowledge base). Default 30s.
    pub call_timeout: HumanDuration,
    /// How often `wait_rollout` polls. Default 2s.
    pub rollout_poll: HumanDuration,
    /// Hosts (`host` or `host:port`) that `http_get` may reach. Default none.
    pub http_allow: Vec<String>,
    /// Most steps one incident's chain may take before it goes to humans. Default 5.
    pub max_chain_steps: u32,
    /// Most memory one run may hold (every Rhai value, key and captured argument it keeps
    /// alive); over it the run stops `inconclusive`. Default 64Mi.
    pub max_memory: ByteSize,
    /// Most CPU time one run may use (its thread's; time waiting in host calls does not count).
    /// Default 10s.
    pub max_cpu: HumanDuration,
    /// Longest text one step keeps (a `log()` line, a notify message, an error); longer is cut
    /// and says so. Default 8Ki.
    pub max_log_line: ByteSize,
    /// Most step text one run may record; past it the run stops `inconclusive` ("log output
    /// truncated"), though a change to the cluster is always recorded. Default 256Ki.
    pub max_log: ByteSize,
}

impl Default for PlaybookSettings {
    fn default() -> Self {
        PlaybookSettings {
            timeout: HumanDuration(Duration::from_secs(300)),
            call_timeout: HumanDuration(Duration::from_secs(30)),
            rollout_poll: HumanDuration(Duration::from_secs(2)),
            http_allow: Vec::new(),
            max_chain_steps: 5,
            max_memory: ByteSize(64 << 20),
            max_cpu: HumanDuration(Duration::from_secs(10)),
            max_log_line: ByteSize(8 << 10),
            max_log: ByteSize(256 << 10),
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            listen: SocketAddr::from(([127, 0, 0, 1], 9095)),
            database_url: Secret::new("sqlite://aiops.db?mode=rwc"),
            webhook_token: None,
            webhook_token_file: None,
            rules_dir: None,
            playbooks_dir: None,
            intake: Intake::default(),
            dedup: Dedup::default(),
            guard: Guard::default(),
            jobs: Jobs::default(),
            store: StoreSettings::default(),
            cluster: ClusterSettings::default(),
            playbook: PlaybookSettings::default(),
            api: ApiSettings::default(),
            http: HttpSettings::default(),
            retention: Retention::default(),
            deploy: DeploySettings::default(),
            notify: crate::notify::NotifySettings::default(),
        }
    }
}

/// Webhook intake limits.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Intake {
    /// Largest accepted body; larger ⇒ 413. Default 1 MiB.
    pub max_body_bytes: usize,
    /// Requests per second per client address; 0 disables. Over it ⇒ 503 so Alertmanager retries.
    pub rate_limit_per_second: u32,
    /// Burst allowed above the rate.
    pub rate_limit_burst: u32,
}

impl Default for Intake {
    fn default() -> Self {
        Intake {
            max_body_bytes: 1024 * 1024,
            rate_limit_per_second: 0,
            rate_limit_burst: 100,
        }
    }
}

/// In-memory dedup cache in front of the store.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Dedup {
    /// Entries kept. Default 100,000.
    pub cache_capacity: u64,
    /// How long an entry lives; Alertmanager re-sends firing alerts every repeat_interval (4 h).
    pub cache_ttl: HumanDuration,
}

impl Default for Dedup {
    fn default() -> Self {
        Dedup {
            cache_capacity: 100_000,
            cache_ttl: HumanDuration(Duration::from_secs(24 * 3600)),
        }
    }
}

/// Guards applied before a job is created.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Guard {
    /// Namespace allow/deny lists.
    pub namespaces: Namespaces,
    /// The storm brake.
    pub storm: Storm,
}

/// Namespaces the daemon may act in. Deny wins over allow; an empty allow list allows all.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Namespaces {
    /// Only these (empty = any).
    pub allow: Vec<String>,
    /// Never these. Default: kube-system.
    pub deny: Vec<String>,
}

impl Default for Namespaces {
    fn default() -> Self {
        Namespaces {
            allow: Vec::new(),
            deny: vec!["kube-system".into()],
        }
    }
}

impl Namespaces {
    /// Whether acting in `ns` is allowed.
    pub fn allows(&self, ns: &str) -> bool {
        !self.deny.iter().any(|d| d == ns)
            && (self.allow.is_empty() || self.allow.iter().any(|a| a == ns))
    }
}

/// Storm brake: more than `max_targets` distinct targets within `window` ⇒ stop acting.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Storm {
    /// Distinct targets tolerated in the window. 0 disables the brake.
    pub max_targets: u32,
    /// The sliding window.
    pub window: HumanDuration,
}

impl Default for Storm {
    fn default() -> Self {
        Storm {
            max_targets: 10,
            window: HumanDuration(Duration::from_secs(300)),
        }
    }
}

/// Job queue and workers.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Jobs {
    /// Concurrent repairs in this process.
    pub workers: usize,
    /// Jobs queued or waiting before intake answers 503.
    pub queue_capacity: usize,
    /// A running job whose heartbeat is older than this belongs to a dead replica.
    pub lease: HumanDuration,
    /// How often idle workers look for due jobs (also woken on each new job).
    pub poll_interval: HumanDuration,
    /// On SIGTERM, how long running jobs may take to finish.
    pub shutdown_grace: HumanDuration,
}

impl Default for Jobs {
    fn default() -> Self {
        Jobs {
            workers: 4,
            queue_capacity: 1000,
            lease: HumanDuration(Duration::from_secs(60)),
            poll_interval: HumanDuration(Duration::from_secs(1)),
            shutdown_grace: HumanDuration(Duration::from_secs(20)),
        }
    }
}

/// Store connection pool.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSettings {
    /// Pool size.
    pub max_connections: u32,
    /// How long to wait for a connection before answering 503.
    pub acquire_timeout: HumanDuration,
    /// SQLite durability: `full` (a commit survives power loss; default) or `normal` (survives a
    /// crash of the process, not of the machine; several times faster for new alerts).
    pub sqlite_synchronous: SqliteSync,
}

/// SQLite's `synchronous` pragma, as exposed in settings.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SqliteSync {
    /// fsync on every commit.
    #[default]
    Full,
    /// fsync at checkpoints only (WAL).
    Normal,
}

impl Default for StoreSettings {
    fn default() -> Self {
        StoreSettings {
            max_connections: 8,
            acquire_timeout: HumanDuration(Duration::from_secs(5)),
            sqlite_synchronous: SqliteSync::Full,
        }
    }
}

impl Settings {
    /// Where the rules come from: `rules_dir`, else `./rules` if it exists, else embedded.
    pub fn rules_source(&self) -> crate::embedded::Source {
        crate::embedded::Source::resolve(self.rules_dir.as_deref(), "rules")
    }

    /// Where the playbooks come from: `playbooks_dir`, else `./playbooks` if it exists, else
    /// embedded.
    pub fn playbooks_source(&self) -> crate::embedded::Source {
        crate::embedded::Source::resolve(self.playbooks_dir.as_deref(), "playbooks")
    }

    /// Loads the file (if any) then applies the process environment.
    pub fn load(file: Option<&Path>) -> Result<Settings> {
        Self::load_with(file, |k| std::env::var(k).ok())
    }

    /// Like [`Settings::load`] with an injectable environment, for tests.
    pub fn load_with(
        file: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Settings> {
        match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
                    path: path.to_path_buf(),
                    source,
                })?;
                Self::parse_with(&text, path, env)
            }
            None => Self::parse_with("", Path::new("<defaults>"), env),
        }
    }

    /// What [`Settings::load_with`] does once the file is read: parses `text` (`path` only
    /// names it in errors), applies the environment, resolves secrets and validates. Public so
    /// the fuzz target runs the real loader without a file.
    pub fn parse_with(
        text: &str,
        path: &Path,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Settings> {
        let mut s = Self::from_yaml(text, path)?;
        s.apply_env(&env)?;
        // Channel secrets may come from the environment (`<key>_env`) or files (`<key>_file`).
        s.notify.resolve(&env)?;
        s.finish()?;
        Ok(s)
    }

    /// Parses YAML text; an empty file gives the defaults.
    pub fn from_yaml(text: &str, path: &Path) -> Result<Settings> {
        if text.trim().is_empty() {
            return Ok(Settings::default());
        }
        serde_yaml::from_str(text).map_err(|e| {
            let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
            Error::Parse {
                path: path.to_path_buf(),
                line,
                column,
                message: e.to_string(),
            }
        })
    }

    fn apply_env(&mut self, env: &impl Fn(&str) -> Option<String>) -> Result<()> {
        fn parsed<T: std::str::FromStr>(name: &'static str, v: &str) -> Result<T>
        where
            T::Err: std::fmt::Display,
        {
            v.trim().parse().map_err(|e: T::Err| Error::Env {
                name,
                message: format!("{v:?}: {e}"),
            })
        }
        fn duration(name: &'static str, v: &str) -> Result<HumanDuration> {
            parse_duration(v)
                .map(HumanDuration)
                .map_err(|message| Error::Env { name, message })
        }
        fn bytes(name: &'static str, v: &str) -> Result<ByteSize> {
            ByteSize::parse(v).map_err(|message| Error::Env { name, message })
        }
        let get = |k: &str| env(k).filter(|v| !v.is_empty());
        if let Some(v) = get("AIOPS_JWT_SECRET") {
            self.api.jwt_secret = Some(Secret::new(v));
        }
        if let Some(v) = get("AIOPS_JWT_SECRET_FILE") {
            self.api.jwt_secret_file = Some(PathBuf::from(v));
        }
        if let Some(v) = get("AIOPS_API_MAX_BODY_BYTES") {
            self.api.max_body_bytes = Some(parsed("AIOPS_API_MAX_BODY_BYTES", &v)?);
        }
        if let Some(v) = get("AIOPS_API_MAX_DEPTH") {
            self.api.max_depth = Some(parsed("AIOPS_API_MAX_DEPTH", &v)?);
        }
        if let Some(v) = get("AIOPS_HTTP_HEADER_READ_TIMEOUT") {
            self.http.header_read_timeout = duration("AIOPS_HTTP_HEADER_READ_TIMEOUT", &v)?;
        }
        if let Some(v) = get("AIOPS_HTTP_BODY_READ_TIMEOUT") {
            self.http.body_read_timeout = duration("AIOPS_HTTP_BODY_READ_TIMEOUT", &v)?;
        }
        if let Some(v) = get("AIOPS_HTTP_IDLE_TIMEOUT") {
            self.http.idle_timeout = duration("AIOPS_HTTP_IDLE_TIMEOUT", &v)?;
        }
        if let Some(v) = get("AIOPS_HTTP_MAX_CONNECTIONS") {
            self.http.max_connections = parsed("AIOPS_HTTP_MAX_CONNECTIONS", &v)?;
        }
        if let Some(v) = get("AIOPS_HTTP_AUTH_FAILURES_PER_MINUTE") {
            self.http.auth_failures_per_minute = parsed("AIOPS_HTTP_AUTH_FAILURES_PER_MINUTE", &v)?;
        }
        if let Some(v) = get("AIOPS_HTTP_AUTH_FAILURE_BURST") {
            self.http.auth_failure_burst = parsed("AIOPS_HTTP_AUTH_FAILURE_BURST", &v)?;
        }
        if let Some(v) = get("AIOPS_RETENTION_ALERTS") {
            self.retention.alerts = duration("AIOPS_RETENTION_ALERTS", &v)?;
        }
        if let Some(v) = get("AIOPS_RETENTION_REPAIRS") {
            self.retention.repairs = duration("AIOPS_RETENTION_REPAIRS", &v)?;
        }
        if let Some(v) = get("AIOPS_RETENTION_INTERVAL") {
            self.retention.interval = duration("AIOPS_RETENTION_INTERVAL", &v)?;
        }
        if let Some(v) = get("AIOPS_LISTEN") {
            self.listen = parsed("AIOPS_LISTEN", &v)?;
        }
        if let Some(v) = get("AIOPS_DATABASE_URL") {
            self.database_url = Secret::new(v);
        }
        if let Some(v) = get("AIOPS_WEBHOOK_TOKEN") {
            self.webhook_token = Some(Secret::new(v));
        }
        if let Some(v) = get("AIOPS_WEBHOOK_TOKEN_FILE") {
            self.webhook_token_file = Some(PathBuf::from(v));
        }
        if let Some(v) = get("AIOPS_RULES_DIR") {
            self.rules_dir = Some(PathBuf::from(v));
        }
        if let Some(v) = get("AIOPS_PLAYBOOKS_DIR") {
            self.playbooks_dir = Some(PathBuf::from(v));
        }
        if let Some(v) = get("AIOPS_MAX_BODY_BYTES") {
            self.intake.max_body_bytes = parsed("AIOPS_MAX_BODY_BYTES", &v)?;
        }
        if let Some(v) = get("AIOPS_INTAKE_RATE_LIMIT") {
            self.intake.rate_limit_per_second = parsed("AIOPS_INTAKE_RATE_LIMIT", &v)?;
        }
        if let Some(v) = get("AIOPS_WORKERS") {
            self.jobs.workers = parsed("AIOPS_WORKERS", &v)?;
        }
        if let Some(v) = get("AIOPS_QUEUE_CAPACITY") {
            self.jobs.queue_capacity = parsed("AIOPS_QUEUE_CAPACITY", &v)?;
        }
        if let Some(v) = get("AIOPS_STORM_MAX_TARGETS") {
            self.guard.storm.max_targets = parsed("AIOPS_STORM_MAX_TARGETS", &v)?;
        }
        if let Some(v) = get("AIOPS_STORM_WINDOW") {
            self.guard.storm.window = duration("AIOPS_STORM_WINDOW", &v)?;
        }
        if let Some(v) = get("AIOPS_SQLITE_SYNCHRONOUS") {
            self.store.sqlite_synchronous = match v.trim().to_ascii_lowercase().as_str() {
                "full" => SqliteSync::Full,
                "normal" => SqliteSync::Normal,
                other => {
                    return Err(Error::Env {
                        name: "AIOPS_SQLITE_SYNCHRONOUS",
                        message: format!("{other:?}: expected full or normal"),
                    });
                }
            };
        }
        if let Some(v) = get("AIOPS_POLL_INTERVAL") {
            self.jobs.poll_interval = duration("AIOPS_POLL_INTERVAL", &v)?;
        }
        if let Some(v) = get("AIOPS_CLUSTER_STATE_FILE") {
            self.cluster.state_file = Some(PathBuf::from(v));
        }
        if let Some(v) = get("AIOPS_KUBECONFIG") {
            self.cluster.kubeconfig = Some(PathBuf::from(v));
        }
        if let Some(v) = get("AIOPS_KUBE_CONTEXT") {
            self.cluster.context = Some(v);
        }
        if let Some(v) = get("AIOPS_KUBE_IN_CLUSTER") {
            self.cluster.in_cluster = parsed("AIOPS_KUBE_IN_CLUSTER", &v)?;
        }
        if let Some(v) = get("AIOPS_KUBE_API_URL") {
            self.cluster.api_url = Some(v);
        }
        if let Some(v) = get("AIOPS_HTTP_ALLOW") {
            self.playbook.http_allow = split_list(&v);
        }
        if let Some(v) = get("AIOPS_PLAYBOOK_TIMEOUT") {
            self.playbook.timeout = duration("AIOPS_PLAYBOOK_TIMEOUT", &v)?;
        }
        if let Some(v) = get("AIOPS_ROLLOUT_POLL") {
            self.playbook.rollout_poll = duration("AIOPS_ROLLOUT_POLL", &v)?;
        }
        if let Some(v) = get("AIOPS_PLAYBOOK_MAX_MEMORY") {
            self.playbook.max_memory = bytes("AIOPS_PLAYBOOK_MAX_MEMORY", &v)?;
        }
        if let Some(v) = get("AIOPS_PLAYBOOK_MAX_CPU") {
            self.playbook.max_cpu = duration("AIOPS_PLAYBOOK_MAX_CPU", &v)?;
        }
        if let Some(v) = get("AIOPS_PLAYBOOK_MAX_LOG_LINE") {
            self.playbook.max_log_line = bytes("AIOPS_PLAYBOOK_MAX_LOG_LINE", &v)?;
        }
        if let Some(v) = get("AIOPS_PLAYBOOK_MAX_LOG") {
            self.playbook.max_log = bytes("AIOPS_PLAYBOOK_MAX_LOG", &v)?;
        }
        if let Some(v) = get("AIOPS_DEPLOY_WEBHOOK_URL") {
            self.deploy.webhook_url = v;
        }
        if let Some(v) = get("AIOPS_DEPLOY_TEMPLATES") {
            self.deploy.templates_dir = Some(PathBuf::from(v));
        }
        if let Some(v) = get("AIOPS_DEPLOY_TIMEOUT") {
            self.deploy.rollout_timeout = duration("AIOPS_DEPLOY_TIMEOUT", &v)?;
        }
        if let Some(v) = get("AIOPS_DEPLOY_POLL") {
            self.deploy.poll = duration("AIOPS_DEPLOY_POLL", &v)?;
        }
        if let Some(v) = get("AIOPS_DENY_NAMESPACES") {
            self.guard.namespaces.deny = split_list(&v);
        }
        if let Some(v) = get("AIOPS_ALLOW_NAMESPACES") {
            self.guard.namespaces.allow = split_list(&v);
        }
        Ok(())
    }

    /// Resolves indirections and refuses unsafe combinations.
    fn finish(&mut self) -> Result<()> {
        if let Some(path) = &self.webhook_token_file {
            let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
                path: path.clone(),
                source,
            })?;
            self.webhook_token = Some(Secret::new(text.trim()));
        }
        if let Some(t) = &self.webhook_token
            && t.expose().len() < MIN_WEBHOOK_TOKEN_BYTES
        {
            // The length may be said; the value never is.
            return Err(Error::Invalid(format!(
                "the webhook token (webhook_token / AIOPS_WEBHOOK_TOKEN / webhook_token_file) must be at least {MIN_WEBHOOK_TOKEN_BYTES} bytes, it has {}: a short token can be guessed. Generate one with `head -c 24 /dev/urandom | base64` and give Alertmanager the same value",
                t.expose().len()
            )));
        }
        if let Some(path) = &self.api.jwt_secret_file {
            let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
                path: path.clone(),
                source,
            })?;
            self.api.jwt_secret = Some(Secret::new(text.trim()));
        }
        if self
            .api
            .jwt_secret
            .as_ref()
            .is_some_and(|s| s.expose().len() < 32)
        {
            return Err(Error::Invalid(
                "the JWT secret (api.jwt_secret / AIOPS_JWT_SECRET) must be at least 32 bytes"
                    .into(),
            ));
        }
        if self.api.max_page.is_some_and(|n| n < 1) {
            return Err(Error::Invalid("api.max_page must be at least 1".into()));
        }
        if self.api.max_body_bytes.is_some_and(|n| n < 1024) {
            return Err(Error::Invalid(
                "api.max_body_bytes must be at least 1024".into(),
            ));
        }
        if self.api.max_depth.is_some_and(|n| n < 4) {
            return Err(Error::Invalid(
                "api.max_depth must be at least 4 (an app spec nests 4 levels)".into(),
            ));
        }
        let h = &self.http;
        if h.header_read_timeout.0.is_zero()
            || h.body_read_timeout.0.is_zero()
            || h.idle_timeout.0.is_zero()
        {
            return Err(Error::Invalid(
                "http.header_read_timeout, http.body_read_timeout and http.idle_timeout must be above 0s".into(),
            ));
        }
        if h.max_connections == 0 {
            return Err(Error::Invalid(
                "http.max_connections must be at least 1".into(),
            ));
        }
        let day = Duration::from_secs(86_400);
        if self.retention.repairs.0 < 30 * day {
            return Err(Error::Invalid(
                "retention.repairs must be at least 30d: choose: best and the playbooks' kb_* functions read 30 days of repairs".into(),
            ));
        }
        if self.retention.alerts.0 < day || self.retention.audit.0 < day {
            return Err(Error::Invalid(
                "retention.alerts and retention.audit must be at least 1d".into(),
            ));
        }
        if self.retention.stats.0 < self.retention.repairs.0 {
            return Err(Error::Invalid(
                "retention.stats must be at least retention.repairs: the rollup outlives the repairs it counts".into(),
            ));
        }
        if self.intake.max_body_bytes < 1024 {
            return Err(Error::Invalid(
                "intake.max_body_bytes must be at least 1024".into(),
            ));
        }
        if self.jobs.workers == 0 {
            return Err(Error::Invalid("jobs.workers must be at least 1".into()));
        }
        if self.jobs.queue_capacity == 0 {
            return Err(Error::Invalid(
                "jobs.queue_capacity must be at least 1".into(),
            ));
        }
        if self.cluster.state_file.is_some()
            && (self.cluster.kubeconfig.is_some() || self.cluster.in_cluster)
        {
            return Err(Error::Invalid(
                "cluster.state_file (the in-memory cluster) and a Kubernetes backend (cluster.kubeconfig or cluster.in_cluster) exclude each other".into(),
            ));
        }
        if self.playbook.max_chain_steps == 0 {
            return Err(Error::Invalid(
                "playbook.max_chain_steps must be at least 1".into(),
            ));
        }
        if self.playbook.timeout.0.is_zero() || self.playbook.call_timeout.0.is_zero() {
            return Err(Error::Invalid(
                "playbook.timeout and playbook.call_timeout must be above 0s".into(),
            ));
        }
        // Below these a shipped playbook cannot run at all: the engine and its inputs alone
        // take a few hundred KiB.
        if self.playbook.max_memory.0 < 1 << 20 {
            return Err(Error::Invalid(
                "playbook.max_memory must be at least 1Mi".into(),
            ));
        }
        if self.playbook.max_cpu.0 < Duration::from_millis(10) {
            return Err(Error::Invalid(
                "playbook.max_cpu must be at least 10ms".into(),
            ));
        }
        if self.playbook.max_log_line.0 < 256
            || self.playbook.max_log.0 < self.playbook.max_log_line.0
        {
            return Err(Error::Invalid(
                "playbook.max_log_line must be at least 256 bytes and playbook.max_log at least playbook.max_log_line".into(),
            ));
        }
        if self.jobs.poll_interval.0.is_zero() {
            return Err(Error::Invalid("jobs.poll_interval must be above 0s".into()));
        }
        let hook = &self.deploy.webhook_url;
        if !(hook.starts_with("http://") || hook.starts_with("https://"))
            || hook.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(Error::Invalid(format!(
                "deploy.webhook_url {hook:?} must be an http:// or https:// URL (AIOPS_DEPLOY_WEBHOOK_URL)"
            )));
        }
        if self.deploy.poll.0.is_zero() || self.deploy.rollout_timeout.0.is_zero() {
            return Err(Error::Invalid(
                "deploy.poll and deploy.rollout_timeout must be above 0s".into(),
            ));
        }
        let url = self.database_url.expose();
        if !(url.starts_with("sqlite:")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://"))
        {
            return Err(Error::Invalid(
                "database_url must start with sqlite: or postgres:// (AIOPS_DATABASE_URL)".into(),
            ));
        }
        Ok(())
    }

    /// `serve` refuses a non-loopback address without a token: anyone reaching the port could
    /// otherwise trigger repairs.
    pub fn check_listen_is_safe(&self) -> Result<()> {
        if self.webhook_token.is_none() && !self.listen.ip().is_loopback() {
            return Err(Error::Invalid(format!(
                "refusing to listen on {} without a webhook token: anyone who can reach it could trigger repairs. \
                 Set AIOPS_WEBHOOK_TOKEN (or webhook_token / webhook_token_file in the config file) and give \
                 Alertmanager the same token in http_config.authorization.credentials",
                self.listen
            )));
        }
        Ok(())
    }
}

fn split_list(v: &str) -> Vec<String> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn zero_config_gives_loopback_sqlite_and_repo_dirs() {
        let s = Settings::load_with(None, env(&[])).unwrap();
        assert_eq!(s.listen.to_string(), "127.0.0.1:9095");
        assert_eq!(s.database_url.expose(), "sqlite://aiops.db?mode=rwc");
        assert_eq!(s.rules_dir, None, "unset: ./rules or the embedded rules");
        assert!(s.check_listen_is_safe().is_ok());
    }

    #[test]
    fn environment_overrides_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("aiops.yaml");
        std::fs::write(
            &f,
            "listen: 127.0.0.1:1000\nrules_dir: /x\njobs: {workers: 2}\n",
        )
        .unwrap();
        let s = Settings::load_with(Some(&f), env(&[("AIOPS_LISTEN", "127.0.0.1:2000")])).unwrap();
        assert_eq!(s.listen.port(), 2000);
        assert_eq!(s.rules_dir, Some(PathBuf::from("/x")));
        assert_eq!(s.jobs.workers, 2);
    }

    #[test]
    fn a_typo_in_the_file_is_an_error_with_its_line() {
        let err = Settings::from_yaml(
            "listen: 127.0.0.1:1\nguard:\n  storm: {max_target: 3}\n",
            Path::new("a.yaml"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("a.yaml:3:"), "{err}");
        assert!(err.contains("max_target"), "{err}");
    }

    #[test]
    fn a_public_address_without_a_token_is_refused_with_how_to_fix_it() {
        let s = Settings::load_with(None, env(&[("AIOPS_LISTEN", "0.0.0.0:9095")])).unwrap();
        let err = s.check_listen_is_safe().unwrap_err().to_string();
        assert!(err.contains("AIOPS_WEBHOOK_TOKEN"), "{err}");
        let s = Settings::load_with(
            None,
            env(&[
                ("AIOPS_LISTEN", "0.0.0.0:9095"),
                ("AIOPS_WEBHOOK_TOKEN", "a-token-of-24-characters"),
            ]),
        )
        .unwrap();
        assert!(s.check_listen_is_safe().is_ok());
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let s = Settings::load_with(
            None,
            env(&[
                ("AIOPS_WEBHOOK_TOKEN", "hunter2-hunter2-hunter2"),
                ("AIOPS_DATABASE_URL", "postgres://u:pw-secret@h/db"),
            ]),
        )
        .unwrap();
        let dump = format!("{s:?}");
        assert!(
            !dump.contains("hunter2-hunter2-hunter2") && !dump.contains("pw-secret"),
            "{dump}"
        );
    }

    #[test]
    fn a_bad_environment_value_names_the_variable() {
        let err = Settings::load_with(None, env(&[("AIOPS_WORKERS", "many")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("AIOPS_WORKERS"), "{err}");
    }

    #[test]
    fn deny_wins_over_allow_and_kube_system_is_denied_by_default() {
        let mut n = Namespaces::default();
        assert!(!n.allows("kube-system"));
        assert!(n.allows("prod"));
        n.allow = vec!["prod".into(), "kube-system".into()];
        assert!(!n.allows("kube-system"));
        assert!(!n.allows("dev"));
    }

    #[test]
    fn a_webhook_token_under_16_bytes_is_refused_without_showing_it() {
        let err = Settings::load_with(None, env(&[("AIOPS_WEBHOOK_TOKEN", "fifteen-chars!!")]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("at least 16 bytes") && err.contains("it has 15"),
            "{err}"
        );
        assert!(!err.contains("fifteen-chars"), "{err}");
        let s = Settings::load_with(None, env(&[("AIOPS_WEBHOOK_TOKEN", "sixteen-chars!!!")]));
        assert!(s.is_ok());
    }

    #[test]
    fn http_limits_have_defaults_and_environment_overrides() {
        let s = Settings::load_with(None, env(&[])).unwrap();
        assert_eq!(s.http.header_read_timeout.0, Duration::from_secs(10));
        assert_eq!(s.http.max_connections, 512);
        let s = Settings::load_with(
            None,
            env(&[
                ("AIOPS_HTTP_HEADER_READ_TIMEOUT", "2s"),
                ("AIOPS_HTTP_BODY_READ_TIMEOUT", "3s"),
                ("AIOPS_HTTP_IDLE_TIMEOUT", "4s"),
                ("AIOPS_HTTP_MAX_CONNECTIONS", "7"),
                ("AIOPS_HTTP_AUTH_FAILURES_PER_MINUTE", "5"),
                ("AIOPS_HTTP_AUTH_FAILURE_BURST", "2"),
                ("AIOPS_API_MAX_BODY_BYTES", "4096"),
                ("AIOPS_API_MAX_DEPTH", "8"),
            ]),
        )
        .unwrap();
        let h = &s.http;
        assert_eq!(
            (
                h.header_read_timeout.0,
                h.body_read_timeout.0,
                h.idle_timeout.0
            ),
            (
                Duration::from_secs(2),
                Duration::from_secs(3),
                Duration::from_secs(4)
            )
        );
        assert_eq!(
            (
                h.max_connections,
                h.auth_failures_per_minute,
                h.auth_failure_burst
            ),
            (7, 5, 2)
        );
        assert_eq!(
            (s.api.max_body_bytes, s.api.max_depth),
            (Some(4096), Some(8))
        );
        let err = Settings::load_with(None, env(&[("AIOPS_HTTP_MAX_CONNECTIONS", "0")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("http.max_connections"), "{err}");
    }
}
