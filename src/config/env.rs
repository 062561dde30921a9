//! The `AIOPS_*` environment overlay: each variable is one row of [`VARIABLES`], naming the
//! setting it replaces. The environment wins over the file; an empty variable counts as unset;
//! a value of the wrong form is an error naming the variable ([`Error::Env`]).
//!
//! Why a table of our own rather than a crate such as figment's `Env` provider: our variable
//! names are not the settings' key paths (`AIOPS_WORKERS` is `jobs.workers`,
//! `AIOPS_MAX_BODY_BYTES` is `intake.max_body_bytes`), so figment would need a key map with a
//! row per variable anyway; it would then re-deserialize the whole settings tree and report a
//! bad value by its key path rather than by the variable the operator set, and treat an empty
//! variable as a value. A row of (variable, field) over a small [`FromEnv`] parser per type is
//! as short, keeps every message naming the variable, and adds no dependency. The README's
//! table of variables is checked against [`VARIABLES`] by a test.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::{ByteSize, Error, HumanDuration, Result, Secret, Settings, SqliteSync, parse_duration};

/// One environment variable and the setting it replaces.
pub struct Variable {
    /// Its name, `AIOPS_…`.
    pub name: &'static str,
    /// The setting it replaces, as a key path of the settings file (`jobs.workers`).
    pub setting: &'static str,
    /// Parses the value into the setting; the error says what is wrong with the value.
    set: fn(&mut Settings, &str) -> Result<(), String>,
}

/// How a setting's type reads a variable's value.
trait FromEnv: Sized {
    fn from_env(v: &str) -> Result<Self, String>;
}

/// Types written as their `FromStr` form, surrounding blanks ignored.
macro_rules! from_str_types {
    ($($t:ty),*) => {$(
        impl FromEnv for $t {
            fn from_env(v: &str) -> Result<Self, String> {
                v.trim().parse().map_err(|e| format!("{v:?}: {e}"))
            }
        }
    )*};
}
from_str_types!(SocketAddr, usize, u32, bool, crate::rules::Mode);

impl FromEnv for String {
    fn from_env(v: &str) -> Result<Self, String> {
        Ok(v.to_string())
    }
}

impl FromEnv for PathBuf {
    fn from_env(v: &str) -> Result<Self, String> {
        Ok(PathBuf::from(v))
    }
}

impl FromEnv for Secret {
    fn from_env(v: &str) -> Result<Self, String> {
        Ok(Secret::new(v))
    }
}

/// A comma-separated list; blanks around items and empty items are dropped.
impl FromEnv for Vec<String> {
    fn from_env(v: &str) -> Result<Self, String> {
        Ok(v.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect())
    }
}

/// A comma-separated list of IP addresses.
impl FromEnv for Vec<std::net::IpAddr> {
    fn from_env(v: &str) -> Result<Self, String> {
        v.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|a| a.parse().map_err(|e| format!("{a:?}: {e}")))
            .collect()
    }
}

impl FromEnv for HumanDuration {
    fn from_env(v: &str) -> Result<Self, String> {
        parse_duration(v).map(HumanDuration)
    }
}

impl FromEnv for ByteSize {
    fn from_env(v: &str) -> Result<Self, String> {
        ByteSize::parse(v)
    }
}

impl FromEnv for SqliteSync {
    fn from_env(v: &str) -> Result<Self, String> {
        match v.trim().to_ascii_lowercase().as_str() {
            "full" => Ok(SqliteSync::Full),
            "normal" => Ok(SqliteSync::Normal),
            other => Err(format!("{other:?}: expected full or normal")),
        }
    }
}

impl FromEnv for super::SecureCookie {
    fn from_env(v: &str) -> Result<Self, String> {
        match v.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(super::SecureCookie::Auto),
            "always" => Ok(super::SecureCookie::Always),
            "never" => Ok(super::SecureCookie::Never),
            other => Err(format!("{other:?}: expected auto, always or never")),
        }
    }
}

/// A variable sets an optional setting.
impl<T: FromEnv> FromEnv for Option<T> {
    fn from_env(v: &str) -> Result<Self, String> {
        T::from_env(v).map(Some)
    }
}

fn put<T: FromEnv>(field: &mut T, v: &str) -> Result<(), String> {
    *field = T::from_env(v)?;
    Ok(())
}

/// `"AIOPS_X" => a.b` becomes a [`Variable`] that parses its value into `settings.a.b`.
macro_rules! variables {
    ($($name:literal => $($field:ident).+,)*) => {
        &[$(Variable {
            name: $name,
            setting: stringify!($($field).+),
            set: |s, v| put(&mut s.$($field).+, v),
        },)*]
    };
}

/// Every `AIOPS_*` variable the settings read, applied in this order.
pub const VARIABLES: &[Variable] = variables![
    "AIOPS_JWT_SECRET" => api.jwt_secret,
    "AIOPS_JWT_SECRET_FILE" => api.jwt_secret_file,
    "AIOPS_API_MAX_BODY_BYTES" => api.max_body_bytes,
    "AIOPS_API_MAX_DEPTH" => api.max_depth,
    "AIOPS_UI_ENABLED" => ui.enabled,
    "AIOPS_UI_SESSION_TTL" => ui.session_ttl,
    "AIOPS_UI_SECURE_COOKIE" => ui.secure_cookie,
    "AIOPS_HTTP_HEADER_READ_TIMEOUT" => http.header_read_timeout,
    "AIOPS_HTTP_BODY_READ_TIMEOUT" => http.body_read_timeout,
    "AIOPS_HTTP_IDLE_TIMEOUT" => http.idle_timeout,
    "AIOPS_HTTP_MAX_CONNECTIONS" => http.max_connections,
    "AIOPS_HTTP_AUTH_FAILURES_PER_MINUTE" => http.auth_failures_per_minute,
    "AIOPS_HTTP_AUTH_FAILURE_BURST" => http.auth_failure_burst,
    "AIOPS_RETENTION_ALERTS" => retention.alerts,
    "AIOPS_RETENTION_REPAIRS" => retention.repairs,
    "AIOPS_RETENTION_INTERVAL" => retention.interval,
    "AIOPS_LISTEN" => listen,
    "AIOPS_DATABASE_URL" => database_url,
    "AIOPS_WEBHOOK_TOKEN" => webhook_token,
    "AIOPS_WEBHOOK_TOKEN_FILE" => webhook_token_file,
    "AIOPS_RULES_DIR" => rules_dir,
    "AIOPS_PLAYBOOKS_DIR" => playbooks_dir,
    "AIOPS_MAX_BODY_BYTES" => intake.max_body_bytes,
    "AIOPS_INTAKE_RATE_LIMIT" => intake.rate_limit_per_second,
    "AIOPS_INTAKE_BATCH_MAX_ALERTS" => intake.batch_max_alerts,
    "AIOPS_WORKERS" => jobs.workers,
    "AIOPS_QUEUE_CAPACITY" => jobs.queue_capacity,
    "AIOPS_STORM_MAX_TARGETS" => guard.storm.max_targets,
    "AIOPS_STORM_WINDOW" => guard.storm.window,
    "AIOPS_SQLITE_SYNCHRONOUS" => store.sqlite_synchronous,
    "AIOPS_POLL_INTERVAL" => jobs.poll_interval,
    "AIOPS_CLUSTER_STATE_FILE" => cluster.state_file,
    "AIOPS_KUBECONFIG" => cluster.kubeconfig,
    "AIOPS_KUBE_CONTEXT" => cluster.context,
    "AIOPS_KUBE_IN_CLUSTER" => cluster.in_cluster,
    "AIOPS_KUBE_API_URL" => cluster.api_url,
    "AIOPS_HTTP_ALLOW" => playbook.http_allow,
    "AIOPS_PLAYBOOK_TIMEOUT" => playbook.timeout,
    "AIOPS_ROLLOUT_POLL" => playbook.rollout_poll,
    "AIOPS_PLAYBOOK_MAX_MEMORY" => playbook.max_memory,
    "AIOPS_PLAYBOOK_MAX_CPU" => playbook.max_cpu,
    "AIOPS_PLAYBOOK_MAX_LOG_LINE" => playbook.max_log_line,
    "AIOPS_PLAYBOOK_MAX_LOG" => playbook.max_log,
    "AIOPS_DEPLOY_WEBHOOK_URL" => deploy.webhook_url,
    "AIOPS_DEPLOY_TEMPLATES" => deploy.templates_dir,
    "AIOPS_DEPLOY_TIMEOUT" => deploy.rollout_timeout,
    "AIOPS_DEPLOY_POLL" => deploy.poll,
    "AIOPS_DEPLOY_INGRESS_ADDRESSES" => deploy.ingress_addresses,
    "AIOPS_DEPLOY_DNS_SERVER" => deploy.dns_server,
    "AIOPS_DEPLOY_SOURCE_HOSTS" => deploy.source_hosts,
    "AIOPS_DEPLOY_REGISTRY" => deploy.registry,
    "AIOPS_DEPLOY_REGISTRY_SECRET" => deploy.registry_secret,
    "AIOPS_DEPLOY_BUILDER_IMAGE" => deploy.builder_image,
    "AIOPS_DEPLOY_BUILD_TIMEOUT" => deploy.build_timeout,
    "AIOPS_DEPLOY_HEARTBEAT" => deploy.heartbeat,
    "AIOPS_DEPLOY_WORKER" => deploy.worker,
    "AIOPS_DENY_NAMESPACES" => guard.namespaces.deny,
    "AIOPS_ALLOW_NAMESPACES" => guard.namespaces.allow,
    "AIOPS_EXTERNAL_URL" => external_url,
    "AIOPS_DEFAULT_MODE" => trust.default_mode,
    "AIOPS_APPROVAL_SECRET" => approval_secret,
    "AIOPS_MAINTENANCE_REFRESH" => maintenance_refresh,
    "AIOPS_PROMETHEUS_URL" => monitoring.prometheus_url,
    "AIOPS_GRAFANA_URL" => monitoring.grafana.url,
];

/// Applies every variable of [`VARIABLES`] that `env` has with a non-empty value.
pub(super) fn apply(s: &mut Settings, env: &impl Fn(&str) -> Option<String>) -> Result<()> {
    for var in VARIABLES {
        if let Some(v) = env(var.name).filter(|v| !v.is_empty()) {
            (var.set)(s, &v).map_err(|message| Error::Env {
                name: var.name,
                message,
            })?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::time::Duration;

    use super::super::tests::env;
    use super::*;

    #[test]
    fn a_bad_environment_value_names_the_variable() {
        let err = Settings::load_with(None, env(&[("AIOPS_WORKERS", "many")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("AIOPS_WORKERS"), "{err}");
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

    #[test]
    fn the_readme_lists_exactly_the_variables_the_settings_read() {
        let readme = include_str!("../../README.md");
        let section = readme
            .split("\n## Settings\n")
            .nth(1)
            .and_then(|s| s.split("\n## ").next())
            .expect("README has a Settings section");
        let documented: BTreeSet<&str> = section
            .lines()
            .filter(|l| l.starts_with('|'))
            .flat_map(|l| l.split('`'))
            .filter(|w| w.starts_with("AIOPS_"))
            .collect();
        let read: BTreeSet<&str> = VARIABLES.iter().map(|v| v.name).collect();
        assert_eq!(read.len(), VARIABLES.len(), "a variable is listed twice");
        assert_eq!(documented, read);
    }

    #[test]
    fn an_empty_variable_counts_as_unset_and_blanks_around_numbers_are_ignored() {
        let s = Settings::load_with(
            None,
            env(&[("AIOPS_WORKERS", ""), ("AIOPS_QUEUE_CAPACITY", " 7 ")]),
        )
        .unwrap();
        assert_eq!((s.jobs.workers, s.jobs.queue_capacity), (4, 7));
    }

    #[test]
    fn every_kind_of_value_reaches_its_setting() {
        let s = Settings::load_with(
            None,
            env(&[
                ("AIOPS_DATABASE_URL", "postgres://u@h/db"),
                ("AIOPS_JWT_SECRET", "0123456789abcdef0123456789abcdef"),
                ("AIOPS_KUBE_IN_CLUSTER", "true"),
                ("AIOPS_KUBE_CONTEXT", "prod"),
                ("AIOPS_DENY_NAMESPACES", " a, ,b "),
                ("AIOPS_SQLITE_SYNCHRONOUS", "NORMAL"),
                ("AIOPS_PLAYBOOK_MAX_MEMORY", "2Mi"),
                ("AIOPS_STORM_WINDOW", "90s"),
                ("AIOPS_DEPLOY_TEMPLATES", "/t"),
            ]),
        )
        .unwrap();
        assert_eq!(s.database_url.expose(), "postgres://u@h/db");
        assert_eq!(
            s.api.jwt_secret.as_ref().map(Secret::expose),
            Some("0123456789abcdef0123456789abcdef")
        );
        assert!(s.cluster.in_cluster);
        assert_eq!(s.cluster.context.as_deref(), Some("prod"));
        assert_eq!(s.guard.namespaces.deny, ["a", "b"]);
        assert_eq!(s.store.sqlite_synchronous, SqliteSync::Normal);
        assert_eq!(s.playbook.max_memory, ByteSize(2 << 20));
        assert_eq!(s.guard.storm.window.0, Duration::from_secs(90));
        assert_eq!(s.deploy.templates_dir, Some(PathBuf::from("/t")));
    }

    #[test]
    fn monitoring_urls_are_checked_and_grafanas_token_is_read_by_reference() {
        let dir = tempfile::tempdir().unwrap();
        let file = |yaml: &str| {
            let f = dir.path().join("aiops.yaml");
            std::fs::write(&f, yaml).unwrap();
            f
        };
        let s = Settings::load_with(
            Some(&file("monitoring: {grafana: {token_env: GRAFANA_TOKEN}}\n")),
            env(&[
                ("AIOPS_PROMETHEUS_URL", "http://prometheus:9090/"),
                ("AIOPS_GRAFANA_URL", "https://grafana.example.com/grafana/"),
                ("GRAFANA_TOKEN", "glsa_token-value-123"),
            ]),
        )
        .unwrap();
        let m = &s.monitoring;
        assert_eq!(m.prometheus_url.as_deref(), Some("http://prometheus:9090"));
        assert_eq!(
            m.grafana.url.as_deref(),
            Some("https://grafana.example.com/grafana")
        );
        assert_eq!(
            m.grafana.resolved_token.as_ref().map(Secret::expose),
            Some("glsa_token-value-123")
        );
        assert!(!format!("{s:?}").contains("token-value-123"));

        for (yaml, vars, says) in [
            (
                "",
                vec![("AIOPS_PROMETHEUS_URL", "prometheus:9090")],
                "monitoring.prometheus_url (AIOPS_PROMETHEUS_URL) must be an http:// or https://",
            ),
            (
                "",
                vec![("AIOPS_GRAFANA_URL", "http://grafana")],
                "monitoring.grafana: give exactly one of token, token_env or token_file",
            ),
            (
                "monitoring: {grafana: {token_env: NOPE}}\n",
                vec![("AIOPS_GRAFANA_URL", "http://grafana")],
                "monitoring.grafana: token_env: environment variable NOPE is not set",
            ),
            (
                "monitoring: {grafana: {token: t}}\n",
                vec![],
                "a token is given but no url",
            ),
            (
                "",
                vec![(
                    "AIOPS_PROMETHEUS_URL",
                    "http://admin:pr0m-pass@prometheus:9090",
                )],
                "monitoring.prometheus_url (AIOPS_PROMETHEUS_URL) must not carry credentials",
            ),
        ] {
            let err = Settings::load_with(Some(&file(yaml)), env(&vars))
                .unwrap_err()
                .to_string();
            assert!(err.contains(says), "{yaml} {vars:?}: {err}");
            assert!(
                !err.contains("pr0m-pass"),
                "the password is repeated: {err}"
            );
        }
    }

    #[test]
    fn a_bad_value_of_each_kind_is_an_error_naming_the_variable_and_the_value() {
        for (name, value, says) in [
            ("AIOPS_LISTEN", "nowhere", "\"nowhere\": "),
            ("AIOPS_KUBE_IN_CLUSTER", "yes", "\"yes\": "),
            (
                "AIOPS_SQLITE_SYNCHRONOUS",
                " Off ",
                "\"off\": expected full or normal",
            ),
            (
                "AIOPS_STORM_WINDOW",
                "soon",
                "write it like 30s, 5m or 1h30m",
            ),
            ("AIOPS_PLAYBOOK_MAX_MEMORY", "lots", "lots"),
        ] {
            let err = Settings::load_with(None, env(&[(name, value)]))
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with(&format!("environment variable {name}: ")) && err.contains(says),
                "{name}: {err}"
            );
        }
    }
}
