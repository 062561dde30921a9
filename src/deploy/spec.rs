//! The app spec: what a team writes to onboard an app (YAML or JSON), and its validation.
//!
//! Parsing names the field that is wrong (`framework: unknown variant "rails", expected one of
//! …`); validation then checks what serde cannot (DNS-1123 names, the domain, ports, paths) and
//! reports every problem at once, each naming its field, so one edit fixes a spec.
//!
//! Resources come from the plan. Requests are the issue's (basic 256Mi/250m, standard
//! 512Mi/500m, advanced 1Gi/1000m, professional 2Gi/2000m); **limits are twice the requests
//! for both CPU and memory**. Twice, not equal: the shipped `scale_memory`/`oom_handler`
//! playbooks raise the memory limit by ×1.2 up to 4Gi, so the limit must start below that cap
//! for auto-repair to have room (professional starts at the cap: it is escalated, not raised).

use std::collections::BTreeMap;

use crate::k8s_name;
use serde::{Deserialize, Serialize};

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

/// The application framework; templates differ where the frameworks do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Framework {
    /// Python WSGI app (gunicorn in the image), port 8000.
    Flask,
    /// Django: port 8000, a migrations Job per image, an optional Celery worker.
    Django,
    /// Node.js: port 3000, `npm start`.
    Nodejs,
    /// Next.js standalone output: port 3000, `node server.js`.
    Nextjs,
    /// Static files served by nginx (unprivileged image, port 8080); no app metrics.
    Static,
    /// A Go binary, port 8080.
    Go,
}

impl Framework {
    /// Every framework, for messages.
    pub const ALL: [Framework; 6] = [
        Framework::Flask,
        Framework::Django,
        Framework::Nodejs,
        Framework::Nextjs,
        Framework::Static,
        Framework::Go,
    ];

    /// The name used in specs and templates.
    pub fn as_str(self) -> &'static str {
        match self {
            Framework::Flask => "flask",
            Framework::Django => "django",
            Framework::Nodejs => "nodejs",
            Framework::Nextjs => "nextjs",
            Framework::Static => "static",
            Framework::Go => "go",
        }
    }

    /// The port the framework's usual server listens on.
    pub fn default_port(self) -> u16 {
        match self {
            Framework::Flask | Framework::Django => 8000,
            Framework::Nodejs | Framework::Nextjs => 3000,
            Framework::Static | Framework::Go => 8080,
        }
    }

    /// The start command, when the framework's images do not start the app by themselves
    /// (node images run a REPL by default; Next.js standalone output starts with server.js).
    pub fn default_command(self) -> Option<Vec<String>> {
        match self {
            Framework::Nodejs => Some(vec!["npm".into(), "start".into()]),
            Framework::Nextjs => Some(vec!["node".into(), "server.js".into()]),
            _ => None,
        }
    }

    /// Whether the app serves Prometheus metrics by default (nginx serving files has none).
    pub fn default_metrics(self) -> bool {
        self != Framework::Static
    }

    /// The health path probes use when the spec names none.
    pub fn default_health_path(self) -> &'static str {
        match self {
            Framework::Static => "/",
            _ => "/healthz",
        }
    }
}

/// The resource plan.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Plan {
    /// 256Mi / 250m requests.
    #[default]
    Basic,
    /// 512Mi / 500m requests.
    Standard,
    /// 1Gi / 1000m requests.
    Advanced,
    /// 2Gi / 2000m requests.
    Professional,
}

/// Container resources as Kubernetes quantities.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Resources {
    /// Memory request, e.g. `256Mi`.
    pub memory_request: String,
    /// CPU request, e.g. `250m`.
    pub cpu_request: String,
    /// Memory limit (2 × request).
    pub memory_limit: String,
    /// CPU limit (2 × request).
    pub cpu_limit: String,
}

impl Plan {
    /// The name used in specs.
    pub fn as_str(self) -> &'static str {
        match self {
            Plan::Basic => "basic",
            Plan::Standard => "standard",
            Plan::Advanced => "advanced",
            Plan::Professional => "professional",
        }
    }

    /// (memory request in MiB, CPU request in millicores).
    fn requests(self) -> (u32, u32) {
        match self {
            Plan::Basic => (256, 250),
            Plan::Standard => (512, 500),
            Plan::Advanced => (1024, 1000),
            Plan::Professional => (2048, 2000),
        }
    }

    /// Requests from the plan; limits twice the requests (see the module docs for why).
    pub fn resources(self) -> Resources {
        let (mem, cpu) = self.requests();
        Resources {
            memory_request: mebibytes(mem),
            cpu_request: format!("{cpu}m"),
            memory_limit: mebibytes(mem * 2),
            cpu_limit: format!("{}m", cpu * 2),
        }
    }
}

/// `1024` → `1Gi`, `512` → `512Mi`: the form people write.
fn mebibytes(mi: u32) -> String {
    if mi.is_multiple_of(1024) {
        format!("{}Gi", mi / 1024)
    } else {
        format!("{mi}Mi")
    }
}

/// A backing service the app talks to, installed in its namespace (e.g. by a Helm chart whose
/// pods carry `app.kubernetes.io/name: postgresql|redis`): the NetworkPolicy lets the app reach it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Addon {
    /// PostgreSQL, port 5432.
    Postgresql,
    /// Redis, port 6379.
    Redis,
}

impl Addon {
    /// The name used in specs and as the pods' `app.kubernetes.io/name`.
    pub fn as_str(self) -> &'static str {
        match self {
            Addon::Postgresql => "postgresql",
            Addon::Redis => "redis",
        }
    }
    /// Its service port.
    pub fn port(self) -> u16 {
        match self {
            Addon::Postgresql => 5432,
            Addon::Redis => 6379,
        }
    }
}

/// Django-only options.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Django {
    /// Run `python manage.py migrate --noinput` in a Job before each rollout. Default true.
    #[serde(default = "yes")]
    pub migrate: bool,
    /// The Celery app module (`celery -A MODULE worker`); a worker Deployment when set.
    #[serde(default)]
    pub celery: Option<String>,
}

impl Default for Django {
    fn default() -> Self {
        Django {
            migrate: true,
            celery: None,
        }
    }
}

fn yes() -> bool {
    true
}

/// Extra metadata for the monitoring objects (ServiceMonitor, PrometheusRule), e.g. the
/// `release: kube-prometheus-stack` label a Prometheus Operator install selects on.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Monitoring {
    /// Labels added to both objects (Kubernetes label keys and values).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Annotations added to both objects.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

/// The labels aiops sets on every rendered object; `monitoring.labels` may not replace them
/// (the ServiceMonitor's own selector and the dashboards rely on them).
pub const STANDARD_LABELS: [&str; 5] = [
    "app",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/name",
    "app.kubernetes.io/version",
];

/// Ingress and TLS options.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngressOptions {
    /// IngressClass. Default `nginx` (the 5xx alert and dashboard use ingress-nginx metrics).
    #[serde(default = "default_ingress_class")]
    pub class: String,
    /// cert-manager issuer of the Certificate. Default `letsencrypt-prod`.
    #[serde(default = "default_issuer")]
    pub issuer: String,
    /// `ClusterIssuer` (default) or `Issuer`.
    #[serde(default = "default_issuer_kind")]
    pub issuer_kind: String,
    /// Namespace of the ingress controller, allowed in by the NetworkPolicy. Default `ingress-nginx`.
    #[serde(default = "default_ingress_namespace")]
    pub controller_namespace: String,
}

impl Default for IngressOptions {
    fn default() -> Self {
        IngressOptions {
            class: default_ingress_class(),
            issuer: default_issuer(),
            issuer_kind: default_issuer_kind(),
            controller_namespace: default_ingress_namespace(),
        }
    }
}

fn default_ingress_class() -> String {
    "nginx".into()
}
fn default_issuer() -> String {
    "letsencrypt-prod".into()
}
fn default_issuer_kind() -> String {
    "ClusterIssuer".into()
}
fn default_ingress_namespace() -> String {
    "ingress-nginx".into()
}
fn default_monitoring_namespace() -> String {
    "monitoring".into()
}
fn default_replicas() -> i32 {
    2
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

fn domain_problem(s: &str) -> Option<String> {
    if s.starts_with("*.") {
        return Some("is a wildcard; name the host the app serves".into());
    }
    if s.ends_with('.') {
        return Some("ends with '.'".into());
    }
    if !s.contains('.') {
        return Some("has a single label".into());
    }
    if let Err(e) = k8s_name::dns1123_subdomain(s) {
        return Some(e.to_string());
    }
    // Kubernetes sets no per-part limit on a subdomain; DNS does, and a host must resolve.
    s.split('.')
        .find(|part| part.len() > k8s_name::LABEL_MAX)
        .map(|part| {
            format!(
                "has a part {} characters long, above {} (a DNS limit)",
                part.len(),
                k8s_name::LABEL_MAX
            )
        })
}

/// Why `s` cannot be a label value (`app.kubernetes.io/version`).
fn label_value_problem(s: &str) -> Option<String> {
    if s.is_empty() || s.len() > 63 {
        return Some("must be 1 to 63 characters".into());
    }
    if !s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        || !s.starts_with(|c: char| c.is_ascii_alphanumeric())
        || !s.ends_with(|c: char| c.is_ascii_alphanumeric())
    {
        return Some(
            "must be letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
                .into(),
        );
    }
    None
}

/// Why `s` cannot be a label or annotation key: an optional DNS-1123 subdomain prefix and
/// `/`, then a name of 1 to 63 letters, digits, '-', '_' or '.', starting and ending with a
/// letter or digit (`release`, `prometheus.io/scrape`).
pub fn label_key_problem(s: &str) -> Option<String> {
    let (prefix, name) = match s.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, s),
    };
    if let Some(prefix) = prefix
        && let Err(why) = k8s_name::dns1123_subdomain(prefix)
    {
        return Some(format!(
            "has a prefix {prefix:?} that {why}; a prefix is a DNS subdomain such as example.com"
        ));
    }
    label_value_problem(name).map(|why| format!("has a name part that {why}"))
}

fn is_env_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn is_python_module(s: &str) -> bool {
    !s.is_empty()
        && s.split('.').all(|part| {
            !part.is_empty()
                && !part.starts_with(|c: char| c.is_ascii_digit())
                && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str =
        "name: shop\ndomain: shop.example.com\nframework: flask\nimage: ghcr.io/acme/shop:1.4.2\n";

    #[test]
    fn a_minimal_spec_gets_the_documented_defaults() {
        let s = AppSpec::parse(MINIMAL, "app.yaml").unwrap();
        assert_eq!(s.namespace(), "shop");
        assert_eq!(s.plan, Plan::Basic);
        assert_eq!(s.replicas, 2);
        assert!(s.auto_repair);
        assert_eq!(s.version(), "1.4.2");
        assert_eq!(s.ingress.class, "nginx");
    }

    #[test]
    fn json_is_accepted_as_well_as_yaml() {
        let s = AppSpec::parse(
            r#"{"name":"api","domain":"api.example.com","framework":"go","image":"api:2","plan":"advanced"}"#,
            "body",
        )
        .unwrap();
        assert_eq!(s.plan, Plan::Advanced);
        assert_eq!(s.framework.default_port(), 8080);
    }

    #[test]
    fn plans_give_the_issues_requests_and_limits_twice_as_large() {
        let got: Vec<_> = [
            Plan::Basic,
            Plan::Standard,
            Plan::Advanced,
            Plan::Professional,
        ]
        .into_iter()
        .map(|p| {
            let r = p.resources();
            (r.memory_request, r.cpu_request, r.memory_limit, r.cpu_limit)
        })
        .collect();
        let s = |a: &str, b: &str, c: &str, d: &str| (a.into(), b.into(), c.into(), d.into());
        assert_eq!(
            got,
            vec![
                s("256Mi", "250m", "512Mi", "500m"),
                s("512Mi", "500m", "1Gi", "1000m"),
                s("1Gi", "1000m", "2Gi", "2000m"),
                s("2Gi", "2000m", "4Gi", "4000m"),
            ]
        );
    }

    #[test]
    fn an_unknown_framework_is_named_with_the_known_ones() {
        let e = AppSpec::parse(&MINIMAL.replace("flask", "rails"), "app.yaml").unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("framework"), "{msg}");
        assert!(msg.contains("rails") && msg.contains("nextjs"), "{msg}");
    }

    #[test]
    fn an_unknown_plan_and_an_unknown_key_are_named() {
        let e = AppSpec::parse(&format!("{MINIMAL}plan: huge\n"), "app.yaml").unwrap_err();
        assert!(e.to_string().contains("plan"), "{e}");
        let e = AppSpec::parse(&format!("{MINIMAL}replica: 3\n"), "app.yaml").unwrap_err();
        assert!(e.to_string().contains("replica"), "{e}");
    }

    #[test]
    fn every_bad_field_is_reported_at_once_by_name() {
        let text = "name: Shop_1\ndomain: localhost\nframework: static\nimage: ''\nreplicas: 0\n\
                    health_path: healthz\nenv: {1BAD: x}\nsecrets: [Bad_Secret]\n\
                    django: {migrate: true}\n";
        let e = AppSpec::parse(text, "app.yaml").unwrap_err();
        let fields: Vec<&str> = e.problems().iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "name",
                "domain",
                "image",
                "replicas",
                "health_path",
                "env.1BAD",
                "secrets[0]",
                "django"
            ],
            "{e}"
        );
        assert!(
            e.to_string().starts_with("app.yaml: invalid app spec"),
            "{e}"
        );
    }

    #[test]
    fn names_that_cannot_name_a_service_are_refused() {
        for bad in ["1shop", "-shop", "shop-", "a".repeat(41).as_str()] {
            let e = AppSpec::parse(
                &MINIMAL.replace("name: shop", &format!("name: '{bad}'")),
                "x",
            )
            .unwrap_err();
            assert_eq!(e.problems()[0].field, "name", "{bad}: {e}");
        }
    }

    #[test]
    fn domains_must_be_lowercase_multi_label_names() {
        for bad in [
            "Shop.example.com",
            "*.example.com",
            "shop",
            "shop..com",
            "shop.com.",
        ] {
            let e = AppSpec::parse(
                &MINIMAL.replace("shop.example.com", &format!("'{bad}'")),
                "x",
            )
            .unwrap_err();
            assert_eq!(e.problems()[0].field, "domain", "{bad}: {e}");
        }
    }

    #[test]
    fn the_version_comes_from_the_tag_or_the_digest_or_says_latest() {
        let v = |image: &str| {
            AppSpec::parse(&MINIMAL.replace("ghcr.io/acme/shop:1.4.2", image), "x")
                .unwrap()
                .version()
        };
        assert_eq!(v("registry:5000/acme/shop"), "latest");
        assert_eq!(v("registry:5000/acme/shop:v2"), "v2");
        assert_eq!(v("acme/shop@sha256:0123456789abcdef0123"), "0123456789ab");
    }
}
