//! Typed settings: an optional YAML file overridden by `AIOPS_*` environment variables.
//!
//! Settings are read and validated once at start-up; everything downstream receives typed values.
//! Secrets are wrapped in [`Secret`], whose `Debug` and `Display` never print the value, so a
//! settings dump in a log or an error cannot leak a token.
//!
//! The parts, in the order [`Settings::load`] applies them:
//! - this file: [`Settings`], its defaults, reading and parsing the file;
//! - [`sections`]: the type of each section (`intake:`, `jobs:`, `playbook:`, …);
//! - [`env`]: the `AIOPS_*` overlay, one table row per variable (environment over file);
//! - `validate`: secrets read from files, then the checks that refuse unsafe combinations.
//!
//! `config` imports the settings type of the modules it aggregates (`notify`) and the leaf
//! value types ([`crate::secret`], [`crate::duration`]); nothing it imports imports it back.

pub mod env;
pub mod sections;
mod validate;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use crate::duration::{HumanDuration, parse_duration};
use crate::notify::NotifySettings;
pub use crate::secret::Secret;
pub use sections::*;

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
    /// The `notify:` section cannot work (the message names the key at fault).
    #[error(transparent)]
    Notify(#[from] crate::notify::config::SettingsError),
}

/// `type Result<T, E = Error>` as in every module of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Shortest webhook token accepted, in bytes: a shorter one can be guessed.
pub const MIN_WEBHOOK_TOKEN_BYTES: usize = 16;

/// Default of `deploy.webhook_url`: the daemon's webhook behind the Service that
/// `aiops manifests` creates (namespace `aiops`, port 9095). Here rather than in `deploy`, so
/// the settings do not import the module they configure; `deploy::render` re-exports it.
pub const DEFAULT_WEBHOOK_URL: &str = "http://aiops.aiops.svc:9095/webhook/alertmanager";

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
    /// The web console (`/ui`).
    pub ui: UiSettings,
    /// Connection limits and timeouts of the HTTP server.
    pub http: HttpSettings,
    /// How long history is kept.
    pub retention: Retention,
    /// `aiops render` / `aiops deploy` (the deploy module).
    pub deploy: DeploySettings,
    /// Notification channels, routes and templates.
    pub notify: NotifySettings,
    /// The address people reach this daemon at (`https://aiops.example.com`), used to build the
    /// links messages carry (signed approval links). Unset: messages carry no links to it.
    pub external_url: Option<String>,
    /// The trust ladder: the mode of rules that set none, and approval defaults.
    pub trust: crate::rules::Trust,
    /// The key that signs approval links (HMAC-SHA256, at least 32 bytes;
    /// `AIOPS_APPROVAL_SECRET`). Links need it and `external_url`; without either, messages say
    /// how else to approve. Replicas must share it.
    pub approval_secret: Option<Secret>,
    /// Maintenance windows of the settings file (windows created through the API are stored).
    pub maintenance: Vec<MaintenanceWindow>,
    /// How often every replica reloads the stored windows and sends the summaries of windows
    /// that closed (default 15s): a window created through another replica holds alerts
    /// here within this time.
    pub maintenance_refresh: HumanDuration,
    /// Prometheus and Grafana: where `/api/monitor` reads and dashboards are pushed.
    pub monitoring: MonitoringSettings,
    /// What repairs do to objects Argo CD or Flux owns: tracking, the default policy of each
    /// kind of change, holds and the revert watch.
    pub gitops: crate::gitops::GitopsSettings,
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
            ui: UiSettings::default(),
            http: HttpSettings::default(),
            retention: Retention::default(),
            deploy: DeploySettings::default(),
            notify: NotifySettings::default(),
            external_url: None,
            trust: crate::rules::Trust::default(),
            approval_secret: None,
            maintenance: Vec::new(),
            maintenance_refresh: HumanDuration(DEFAULT_MAINTENANCE_REFRESH),
            gitops: crate::gitops::GitopsSettings::default(),
            monitoring: MonitoringSettings::default(),
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
        env::apply(&mut s, &env)?;
        // Channel secrets may come from the environment (`<key>_env`) or files (`<key>_file`).
        s.notify.resolve(&env)?;
        s.monitoring.grafana.resolve(&env).map_err(Error::Invalid)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// An environment made of `pairs`, for [`Settings::load_with`].
    pub(super) fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
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
}
