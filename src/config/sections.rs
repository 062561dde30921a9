//! The sections of the settings file, one type each, with their defaults.
//!
//! Plain data: parsing the file is in `config`, the environment overlay in `config::env`, the
//! checks in `config::validate`.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::{HumanDuration, Secret};

/// One entry of the settings file's `maintenance:` list: the same shape as the body of
/// `POST /api/maintenance`, checked by the maintenance module when the settings load.
pub use crate::maintenance::WindowSpec as MaintenanceWindow;

/// Default of `maintenance_refresh`: how stale another replica's view of API-created windows
/// may be, against one small query per replica per interval.
pub const DEFAULT_MAINTENANCE_REFRESH: Duration = Duration::from_secs(15);

/// A size in bytes, written as a number or a Kubernetes-style quantity (`64Mi`, `256Ki`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// Parses `65536`, `64Mi`, `1G`.
    pub fn parse(s: &str) -> std::result::Result<ByteSize, String> {
        let n = crate::quantity::parse_memory(s.trim()).map_err(|e| e.to_string())?;
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

/// The web console under `/ui`: server-rendered pages for people, signed in with the local
/// users of `aiops user add` (see docs/console.md).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UiSettings {
    /// Serve the console (default true). Off: every `/ui` path answers 404.
    pub enabled: bool,
    /// How long a sign-in lasts (default 12h); signing out or a password change ends it sooner.
    pub session_ttl: HumanDuration,
    /// When the session cookie says `Secure`: `auto` (when `external_url` is https or the
    /// request came through a proxy that says `X-Forwarded-Proto: https`), `always`, `never`.
    pub secure_cookie: SecureCookie,
}

impl Default for UiSettings {
    fn default() -> Self {
        UiSettings {
            enabled: true,
            session_ttl: HumanDuration(Duration::from_secs(12 * 3600)),
            secure_cookie: SecureCookie::Auto,
        }
    }
}

/// `ui.secure_cookie`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SecureCookie {
    /// When the console is reached over TLS (external_url https, or X-Forwarded-Proto: https).
    #[default]
    Auto,
    /// Always (the console is only ever reached over TLS).
    Always,
    /// Never (plain-HTTP access on a trusted network, or tests).
    Never,
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
    /// The addresses the ingress is reached at (AIOPS_DEPLOY_INGRESS_ADDRESSES, comma-separated):
    /// before a deploy, the app's domain must resolve to them (A/AAAA, through any CNAME).
    /// Empty (the default): the domain is not checked, and the deployment records that.
    pub ingress_addresses: Vec<std::net::IpAddr>,
    /// Host names the domain may instead be a CNAME of (a load balancer's name).
    pub ingress_hostnames: Vec<String>,
    /// The DNS server asked (AIOPS_DEPLOY_DNS_SERVER, `address:port`). Default: the system's
    /// (/etc/resolv.conf).
    pub dns_server: Option<std::net::SocketAddr>,
    /// The hosts whose repositories `POST /api/apps` may fetch to detect a framework
    /// (AIOPS_DEPLOY_SOURCE_HOSTS, comma-separated, e.g. `github.com,git.example.com`). Empty
    /// (the default): any host. An editor's URL makes the daemon connect out, so a production
    /// daemon should list its git hosts.
    pub source_hosts: Vec<String>,
    /// Where a git app's image is built to (AIOPS_DEPLOY_REGISTRY, e.g.
    /// `registry.example.com/apps`): the image is `<registry>/<name>:<tag>`. Unset: a git app
    /// must name its `image`, and its build_image step fails saying so.
    pub registry: Option<String>,
    /// A `kubernetes.io/dockerconfigjson` Secret in the app's namespace that the build pushes
    /// with (AIOPS_DEPLOY_REGISTRY_SECRET). Unset: the registry takes anonymous pushes.
    pub registry_secret: Option<String>,
    /// The builder (Kaniko's executor) the build Job runs (AIOPS_DEPLOY_BUILDER_IMAGE).
    pub builder_image: String,
    /// How long the build Job may take (AIOPS_DEPLOY_BUILD_TIMEOUT). Default 20m.
    pub build_timeout: HumanDuration,
    /// Whether this daemon runs deployments queued by `POST /api/apps/{name}/deploy` and
    /// `aiops deploy --detach` (AIOPS_DEPLOY_WORKER). Off by default: its account then needs
    /// the deploy ClusterRole (`aiops manifests --deploy-role`) besides the repair role, and a
    /// cluster (`cluster.kubeconfig` or `cluster.in_cluster`).
    pub worker: bool,
    /// How often a process running a deployment says it is alive; a deployment whose owner
    /// has been silent for six of these is failed, visibly, by the next process to look.
    /// Default 10s.
    pub heartbeat: HumanDuration,
}

/// Kaniko's executor, pinned (a build must not change under a moving tag).
pub const DEFAULT_BUILDER_IMAGE: &str = "gcr.io/kaniko-project/executor:v1.23.2";

impl Default for DeploySettings {
    fn default() -> Self {
        DeploySettings {
            webhook_url: super::DEFAULT_WEBHOOK_URL.into(),
            templates_dir: None,
            rollout_timeout: HumanDuration(Duration::from_secs(300)),
            poll: HumanDuration(Duration::from_secs(2)),
            ingress_addresses: Vec::new(),
            ingress_hostnames: Vec::new(),
            dns_server: None,
            source_hosts: Vec::new(),
            registry: None,
            registry_secret: None,
            builder_image: DEFAULT_BUILDER_IMAGE.into(),
            build_timeout: HumanDuration(Duration::from_secs(1200)),
            heartbeat: HumanDuration(Duration::from_secs(10)),
            worker: false,
        }
    }
}

/// Where the apps' monitoring lives: the Prometheus `/api/monitor` reads (each query confined
/// to its app's namespace) and the Grafana the apps' dashboards are pushed to.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MonitoringSettings {
    /// Prometheus's base URL, such as `http://prometheus-operated.monitoring.svc:9090`
    /// (AIOPS_PROMETHEUS_URL). Unset: `/api/monitor` answers 503 and says so.
    pub prometheus_url: Option<String>,
    /// How long one query may take, sent to Prometheus as its `timeout` too. Default 30s.
    pub query_timeout: HumanDuration,
    /// Grafana, for the apps' dashboards.
    pub grafana: GrafanaSettings,
}

impl Default for MonitoringSettings {
    fn default() -> Self {
        MonitoringSettings {
            prometheus_url: None,
            query_timeout: HumanDuration(Duration::from_secs(30)),
            grafana: GrafanaSettings::default(),
        }
    }
}

/// Grafana's HTTP API, reached with a service-account token.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrafanaSettings {
    /// Grafana's base URL, such as `http://grafana.monitoring.svc` (AIOPS_GRAFANA_URL).
    /// Unset: dashboards are not pushed.
    pub url: Option<String>,
    /// The service-account token inline (prefer `token_env` or `token_file`).
    pub token: Option<Secret>,
    /// The environment variable holding the token.
    pub token_env: Option<String>,
    /// The file holding the token (a mounted Kubernetes Secret).
    pub token_file: Option<PathBuf>,
    /// The token, read from whichever of the three is given when the settings load.
    #[serde(skip)]
    pub resolved_token: Option<Secret>,
    /// Timeout of one API call. Default 10s.
    pub timeout: HumanDuration,
}

impl Default for GrafanaSettings {
    fn default() -> Self {
        GrafanaSettings {
            url: None,
            token: None,
            token_env: None,
            token_file: None,
            resolved_token: None,
            timeout: HumanDuration(Duration::from_secs(10)),
        }
    }
}

impl GrafanaSettings {
    /// Reads the token when a URL is set (a token without a URL is refused, as a URL without
    /// one is): the message names the key, never the value.
    pub fn resolve(&mut self, env: &dyn Fn(&str) -> Option<String>) -> Result<(), String> {
        let mut input = crate::secret::SecretInput::new(
            self.token.clone(),
            self.token_env.clone(),
            self.token_file.clone(),
        );
        match &self.url {
            None if input.is_given() => {
                Err("monitoring.grafana: a token is given but no url (AIOPS_GRAFANA_URL)".into())
            }
            None => Ok(()),
            Some(_) => {
                let token = input
                    .resolve("token", env)
                    .map_err(|m| format!("monitoring.grafana: {m}"))?;
                self.resolved_token = Some(token);
                Ok(())
            }
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
    /// The most replicas `scale()` may ever set, whatever a rule's `max_replicas` says.
    /// Default 10.
    pub max_replicas: u32,
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
            max_replicas: 10,
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
    /// New alerts written in one transaction at most (group commit: webhooks waiting together
    /// share one commit, each answered once it is durable). Bounds a batch's time and memory.
    pub batch_max_alerts: usize,
}

impl Default for Intake {
    fn default() -> Self {
        Intake {
            max_body_bytes: 1024 * 1024,
            rate_limit_per_second: 0,
            rate_limit_burst: 100,
            batch_max_alerts: 1000,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deny_wins_over_allow_and_kube_system_is_denied_by_default() {
        let mut n = Namespaces::default();
        assert!(!n.allows("kube-system"));
        assert!(n.allows("prod"));
        n.allow = vec!["prod".into(), "kube-system".into()];
        assert!(!n.allows("kube-system"));
        assert!(!n.allows("dev"));
    }
}
