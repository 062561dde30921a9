//! The app spec: what a team writes to onboard an app (YAML or JSON), and its validation.
//!
//! Parsing names the field that is wrong (`framework: unknown variant "rails", expected one of
//! …`); validation then checks what serde cannot (DNS-1123 names, the domain, ports, paths) and
//! reports every problem at once, each naming its field, so one edit fixes a spec.
//!
//! Resources come from the plan. Requests are the (basic 256Mi/250m, standard
//! 512Mi/500m, advanced 1Gi/1000m, professional 2Gi/2000m); **limits are twice the requests
//! for both CPU and memory**. Twice, not equal: the shipped `scale_memory`/`oom_handler`
//! playbooks raise the memory limit by ×1.2 up to 4Gi, so the limit must start below that cap
//! for auto-repair to have room (professional starts at the cap: it is escalated, not raised).
//!
//! Files: this one holds the spec, its parsing and its validation; `options` the vocabulary it
//! is written in (framework, plan, add-ons, ingress and monitoring options) and their defaults;
//! `checks` the checks of single strings. The unit tests are in `tests.rs`.

mod checks;
mod options;

use std::collections::BTreeMap;

use crate::k8s_name;
use serde::{Deserialize, Serialize};

pub use checks::label_key_problem;
pub use options::{
    Addon, Django, Framework, IngressOptions, Monitoring, Plan, Resources, STANDARD_LABELS,
};

use checks::{domain_problem, is_env_name, is_python_module, label_value_problem};
use options::{default_monitoring_namespace, default_replicas, yes};

/// A spec that cannot be used, with every problem found.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The text is not YAML/JSON of an app spec (names the field path).
    #[error("{source_name}: {message}")]
    Parse {
        /// The file (or "request body").
        source_name: String,
        /// What is wrong, starting with the field path.
        message: String,
    },
    /// The spec parsed but some fields are invalid.
    #[error("{source_name}: invalid app spec:\n{}", problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid {
        /// The file (or "request body").
        source_name: String,
        /// One entry per bad field.
        problems: Vec<Problem>,
    },
}

impl Error {
    /// A short, bounded label for metrics and logs.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Parse { .. } => "parse",
            Error::Invalid { .. } => "invalid",
        }
    }

    /// The invalid fields, empty for a parse error.
    pub fn problems(&self) -> &[Problem] {
        match self {
            Error::Parse { .. } => &[],
            Error::Invalid { problems, .. } => problems,
        }
    }
}

/// `type Result<T, E = Error>` as in every module of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One invalid field.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The field path, e.g. `name`, `env.MY-VAR`, `secrets[1]`.
    pub field: String,
    /// What is wrong and what would be right.
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// An app spec as written (`aiops render app.yaml`, `POST /api/apps`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppSpec {
    /// The app's name: a DNS-1035 label of at most 40 characters (it names the Deployment,
    /// Service and, with suffixes, the other objects).
    pub name: String,
    /// Human-readable name (dashboard title). Default: the name.
    #[serde(default)]
    pub display_name: Option<String>,
    /// Namespace. Default: the name.
    #[serde(default)]
    pub namespace: Option<String>,
    /// The public host name, e.g. `shop.example.com`.
    pub domain: String,
    /// flask, django, nodejs, nextjs, static or go.
    pub framework: Framework,
    /// Container image reference.
    pub image: String,
    /// Version recorded with each deployment and set as `app.kubernetes.io/version`.
    /// Default: the image tag (`latest` without one).
    #[serde(default)]
    pub version: Option<String>,
    /// basic, standard, advanced or professional. Default basic.
    #[serde(default)]
    pub plan: Plan,
    /// Replicas. Default 2 (anti-affinity spreads them; one replica cannot roll without downtime).
    #[serde(default = "default_replicas")]
    pub replicas: i32,
    /// Container port. Default: the framework's.
    #[serde(default)]
    pub port: Option<u16>,
    /// Path of the liveness/readiness probes. Default `/healthz` (`/` for static).
    #[serde(default)]
    pub health_path: Option<String>,
    /// Whether the app serves Prometheus metrics (ServiceMonitor, scrape annotations).
    /// Default true, false for static.
    #[serde(default)]
    pub metrics: Option<bool>,
    /// Path of the metrics endpoint. Default `/metrics`.
    #[serde(default)]
    pub metrics_path: Option<String>,
    /// Start command, overriding the framework's.
    #[serde(default)]
    pub command: Option<Vec<String>>,
    /// Plain environment (a ConfigMap). Secrets go in `secrets`, never here.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Secrets (created by you) whose keys become environment variables (envFrom).
    #[serde(default)]
    pub secrets: Vec<String>,
    /// Backing services in the namespace the app may reach: postgresql, redis.
    #[serde(default)]
    pub addons: Vec<Addon>,
    /// Notification routes told about deployments (e.g. `default`, `team-shop`).
    #[serde(default)]
    pub notifications: Vec<String>,
    /// Whether aiops may repair the app (`aiops.wooo.work/auto-repair`). Default true.
    #[serde(default = "yes")]
    pub auto_repair: bool,
    /// Django-only options.
    #[serde(default)]
    pub django: Option<Django>,
    /// Ingress and TLS.
    #[serde(default)]
    pub ingress: IngressOptions,
    /// Namespace of Prometheus, allowed in by the NetworkPolicy. Default `monitoring`.
    #[serde(default = "default_monitoring_namespace")]
    pub monitoring_namespace: String,
    /// Extra labels and annotations of the ServiceMonitor and PrometheusRule.
    #[serde(default, skip_serializing_if = "is_default_monitoring")]
    pub monitoring: Monitoring,
}

fn is_default_monitoring(m: &Monitoring) -> bool {
    *m == Monitoring::default()
}

impl AppSpec {
    /// Parses YAML (JSON is YAML too) and validates. `source_name` prefixes every error.
    pub fn parse(text: &str, source_name: &str) -> Result<AppSpec> {
        let de = serde_yaml::Deserializer::from_str(text);
        let spec: AppSpec = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let location = inner
                .location()
                .map(|l| format!(" (line {}, column {})", l.line(), l.column()))
                .unwrap_or_default();
            let message = if path == "." {
                format!("{inner}")
            } else {
                format!("{path}: {inner}{location}")
            };
            Error::Parse {
                source_name: source_name.to_string(),
                message,
            }
        })?;
        spec.validate(source_name)?;
        Ok(spec)
    }

    /// Reads and parses a spec file.
    pub fn load(path: &std::path::Path) -> Result<AppSpec> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| Error::Parse {
            source_name: name.clone(),
            message: format!("cannot read: {e}"),
        })?;
        AppSpec::parse(&text, &name)
    }

    /// Every problem of the spec, each naming its field.
    pub fn problems(&self) -> Vec<Problem> {
        let mut p = Vec::new();
        let mut bad = |field: &str, message: String| {
            p.push(Problem {
                field: field.to_string(),
                message,
            })
        };
        if let Some(why) = k8s_name::dns1035_label(&self.name, 40).err() {
            bad(
                "name",
                format!(
                    "{:?} {why}; a name is a DNS-1035 label of at most 40 characters (lowercase letters, digits, '-', starting with a letter; suffixes like -worker are added), e.g. shop",
                    self.name
                ),
            );
        }
        if let Some(ns) = &self.namespace
            && let Some(why) = k8s_name::dns1123_label(ns, 63).err()
        {
            bad(
                "namespace",
                format!("{ns:?} {why}; a namespace is a DNS-1123 label, e.g. shop"),
            );
        }
        if let Some(why) = domain_problem(&self.domain) {
            bad(
                "domain",
                format!(
                    "{:?} {why}; a domain is a lowercase DNS name with at least two labels, e.g. shop.example.com",
                    self.domain
                ),
            );
        }
        if self.image.trim().is_empty() {
            bad("image", "is empty; e.g. ghcr.io/acme/shop:1.4.2".into());
        } else if self
            .image
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
        {
            bad(
                "image",
                format!("{:?} contains whitespace or control characters", self.image),
            );
        }
        if let Some(v) = &self.version
            && let Some(why) = label_value_problem(v)
        {
            bad("version", format!("{v:?} {why}"));
        }
        if let Some(d) = &self.display_name
            && (d.chars().count() > 100 || d.chars().any(char::is_control))
        {
            bad(
                "display_name",
                "must be at most 100 characters without control characters".into(),
            );
        }
        if !(1..=50).contains(&self.replicas) {
            bad(
                "replicas",
                format!("{} is out of range: 1 to 50", self.replicas),
            );
        }
        if self.port == Some(0) {
            bad("port", "0 is not a port: 1 to 65535".into());
        }
        for (field, path) in [
            ("health_path", &self.health_path),
            ("metrics_path", &self.metrics_path),
        ] {
            if let Some(path) = path
                && (!path.starts_with('/')
                    || path.chars().any(|c| c.is_whitespace() || c.is_control()))
            {
                bad(
                    field,
                    format!("{path:?} must start with '/' and contain no whitespace"),
                );
            }
        }
        if let Some(cmd) = &self.command
            && (cmd.is_empty() || cmd.iter().any(|c| c.is_empty()))
        {
            bad(
                "command",
                "must be a non-empty list of non-empty strings, e.g. [gunicorn, app:app]".into(),
            );
        }
        for key in self.env.keys() {
            if !is_env_name(key) {
                bad(
                    &format!("env.{key}"),
                    "is not an environment variable name: letters, digits and '_', not starting with a digit".into(),
                );
            }
        }
        for (i, s) in self.secrets.iter().enumerate() {
            if let Some(why) = k8s_name::dns1123_subdomain(s).err() {
                bad(
                    &format!("secrets[{i}]"),
                    format!("{s:?} {why}; a Secret name is a DNS-1123 subdomain"),
                );
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, a) in self.addons.iter().enumerate() {
            if !seen.insert(a.as_str()) {
                bad(
                    &format!("addons[{i}]"),
                    format!("{} is listed twice", a.as_str()),
                );
            }
        }
        for (i, n) in self.notifications.iter().enumerate() {
            if n.is_empty()
                || !n
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                bad(
                    &format!("notifications[{i}]"),
                    format!("{n:?} is not a route name: letters, digits, '-' and '_'"),
                );
            }
        }
        match (&self.django, self.framework) {
            (Some(_), f) if f != Framework::Django => bad(
                "django",
                format!("only applies to framework django, not {}", f.as_str()),
            ),
            (
                Some(Django {
                    celery: Some(module),
                    ..
                }),
                _,
            ) if !is_python_module(module) => bad(
                "django.celery",
                format!("{module:?} is not a Python module path, e.g. shop or shop.celery"),
            ),
            _ => {}
        }
        for (field, v) in [
            ("ingress.class", &self.ingress.class),
            ("ingress.issuer", &self.ingress.issuer),
        ] {
            if let Some(why) = k8s_name::dns1123_subdomain(v).err() {
                bad(field, format!("{v:?} {why}"));
            }
        }
        if !matches!(
            self.ingress.issuer_kind.as_str(),
            "ClusterIssuer" | "Issuer"
        ) {
            bad(
                "ingress.issuer_kind",
                format!(
                    "{:?}: expected ClusterIssuer or Issuer",
                    self.ingress.issuer_kind
                ),
            );
        }
        for (field, v) in [
            (
                "ingress.controller_namespace",
                &self.ingress.controller_namespace,
            ),
            ("monitoring_namespace", &self.monitoring_namespace),
        ] {
            if let Some(why) = k8s_name::dns1123_label(v, 63).err() {
                bad(field, format!("{v:?} {why}"));
            }
        }
        for (k, v) in &self.monitoring.labels {
            let field = format!("monitoring.labels.{k}");
            if let Some(why) = label_key_problem(k) {
                bad(&field, format!("key {k:?} {why}"));
            } else if STANDARD_LABELS.contains(&k.as_str()) {
                bad(
                    &field,
                    format!("{k:?} is set by aiops on every object and cannot be replaced"),
                );
            }
            if !v.is_empty()
                && let Some(why) = label_value_problem(v)
            {
                bad(&field, format!("value {v:?} {why}"));
            }
        }
        for k in self.monitoring.annotations.keys() {
            if let Some(why) = label_key_problem(k) {
                bad(
                    &format!("monitoring.annotations.{k}"),
                    format!("key {k:?} {why}"),
                );
            }
        }
        p
    }

    /// Fails with every problem, or passes.
    pub fn validate(&self, source_name: &str) -> Result<()> {
        let problems = self.problems();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Error::Invalid {
                source_name: source_name.to_string(),
                problems,
            })
        }
    }

    /// The namespace (default: the name).
    pub fn namespace(&self) -> &str {
        self.namespace.as_deref().unwrap_or(&self.name)
    }

    /// The version: as written, else the image tag, else `latest` (a digest-only image gives
    /// the first 12 hex digits of the digest).
    pub fn version(&self) -> String {
        if let Some(v) = &self.version {
            return v.clone();
        }
        let (without_digest, digest) = match self.image.split_once('@') {
            Some((i, d)) => (i, Some(d)),
            None => (self.image.as_str(), None),
        };
        let last = without_digest.rsplit('/').next().unwrap_or(without_digest);
        if let Some((_, tag)) = last.split_once(':')
            && label_value_problem(tag).is_none()
        {
            return tag.to_string();
        }
        if let Some(d) = digest {
            let hex = d.rsplit(':').next().unwrap_or(d);
            return hex.chars().take(12).collect();
        }
        "latest".into()
    }
}

#[cfg(test)]
mod tests;
