//! The app spec: what a team writes to onboard an app (YAML or JSON), and its validation.
//!
//! Every problem of a spec is reported at once, each bad field once, with its line and column
//! (`app.yaml:3:12: framework: unknown value "flaks" (expected one of flask, …)`), so one edit
//! fixes a spec: what serde finds (YAML syntax, unknown keys, wrong types, unknown values) and
//! what the checks find after it (DNS-1123 names, the domain, ports, paths).
//!
//! Resources come from the plan. Requests are the (basic 256Mi/250m, standard
//! 512Mi/500m, advanced 1Gi/1000m, professional 2Gi/2000m); **limits are twice the requests
//! for both CPU and memory**. Twice, not equal: the shipped `scale_memory`/`oom_handler`
//! playbooks raise the memory limit by ×1.2 up to 4Gi, so the limit must start below that cap
//! for auto-repair to have room (professional starts at the cap: it is escalated, not raised).
//!
//! Files: this one holds the spec and its checks; `collect` reads a text into a spec collecting
//! every problem, with `source` giving each node its position; `options` the vocabulary a spec
//! is written in (framework, plan, add-ons, ingress and monitoring options) and their defaults;
//! `checks` the checks of single strings. The unit tests are in `tests.rs`.

mod checks;
mod collect;
mod options;
mod source;

use std::collections::BTreeMap;

use crate::k8s_name;
use serde::{Deserialize, Serialize};

pub use checks::label_key_problem;
pub use options::{
    Addon, Django, Framework, IngressOptions, Monitoring, Plan, Resources, STANDARD_LABELS,
    SourceType,
};
pub use source::Position;

use checks::{domain_problem, is_env_name, is_python_module, label_value_problem};
use options::{default_monitoring_namespace, default_replicas, yes};
use source::Part;

/// A spec that cannot be used, with every problem found.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The spec could not be read at all (a missing file, not UTF-8).
    #[error("{source_name}: {message}")]
    Parse {
        /// The file (or "request body").
        source_name: String,
        /// What is wrong.
        message: String,
    },
    /// The text is not a usable app spec: YAML syntax, unknown keys, wrong types, unknown
    /// values, failed checks. One line per problem, `app.yaml:5:12: framework: …`, each bad
    /// field once, in the order of the text.
    #[error("{}", problems.iter().map(|p| p.line(source_name)).collect::<Vec<_>>().join("\n"))]
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

    /// The invalid fields, empty when the spec could not be read.
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
    /// The field path, e.g. `name`, `env.MY-VAR`, `secrets[1]`; empty for a syntax error.
    pub field: String,
    /// What is wrong and what would be right.
    pub message: String,
    /// Where in the text: the value, or the key when the key is what is wrong. `None` for a
    /// spec that was not parsed from text ([`AppSpec::problems`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<Position>,
}

impl Problem {
    /// `app.yaml:5:12: framework: unknown value …`, as compilers and linters print.
    pub fn line(&self, source_name: &str) -> String {
        match self.position {
            Some(p) => format!("{source_name}:{}:{}: {self}", p.line, p.column),
            None => format!("{source_name}: {self}"),
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
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
    /// Namespace. Default `app-<name>`, as the original design put every app (an app
    /// registered before that default keeps the namespace it was registered in: see
    /// [`AppSpec::keep_namespace`]).
    #[serde(default)]
    pub namespace: Option<String>,
    /// The public host name, e.g. `shop.example.com`.
    pub domain: String,
    /// docker (default: `image` is run as it is), git or upload (built from `source_url`).
    #[serde(default)]
    pub source_type: SourceType,
    /// The source of a git or upload app: a git URL (`https://`, `http://`, `git://`,
    /// `ssh://`, `file://` or `git@host:path`) or an archive (`https://`, `http://`,
    /// `file://` or an absolute path). Credentials never go here: a URL is shown and stored.
    #[serde(default)]
    pub source_url: Option<String>,
    /// flask, django, nodejs, nextjs, static or go. Required for a docker source (an image
    /// does not say); detected from a git or upload source when not given.
    #[serde(default)]
    pub framework: Option<Framework>,
    /// Container image reference. Required for a docker source; for a git or upload source,
    /// where the build pushes the image (default: the deploy settings' registry, the name and
    /// the version).
    #[serde(default)]
    pub image: Option<String>,
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
    /// Parses YAML (JSON is YAML too) and validates, reporting every problem at once with its
    /// line and column (see `collect.rs`). `source_name` prefixes every line of the error.
    pub fn parse(text: &str, source_name: &str) -> Result<AppSpec> {
        collect::parse(text).map_err(|problems| Error::Invalid {
            source_name: source_name.to_string(),
            problems,
        })
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

    /// Every problem of the spec, each naming its field (without a position: the spec is not
    /// tied to a text here; [`AppSpec::parse`] adds them).
    pub fn problems(&self) -> Vec<Problem> {
        self.checks(&[]).into_iter().map(|(p, _)| p).collect()
    }

    /// The checks serde cannot make, each problem with the part of its entry it is about.
    /// `substituted` names required fields whose written value was unusable and replaced by a
    /// placeholder: checks of other fields still run, those involving these do not.
    fn checks(&self, substituted: &[&str]) -> Vec<(Problem, Part)> {
        let mut p = Vec::new();
        let mut bad = |part: Part, field: &str, message: String| {
            if !substituted.contains(&field) {
                p.push((
                    Problem {
                        field: field.to_string(),
                        message,
                        position: None,
                    },
                    part,
                ));
            }
        };
        if let Some(why) = k8s_name::dns1035_label(&self.name, 40).err() {
            bad(
                Part::Value,
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
                Part::Value,
                "namespace",
                format!("{ns:?} {why}; a namespace is a DNS-1123 label, e.g. shop"),
            );
        }
        if let Some(why) = domain_problem(&self.domain) {
            bad(
                Part::Value,
                "domain",
                format!(
                    "{:?} {why}; a domain is a lowercase DNS name with at least two labels, e.g. shop.example.com",
                    self.domain
                ),
            );
        }
        // What each source requires is only known when the source type was readable.
        let source_known = !substituted.contains(&"source_type");
        if source_known && self.framework.is_none() && self.source_type == SourceType::Docker {
            bad(
                Part::Key,
                "framework",
                format!(
                    "is missing; it cannot be detected from an image, so a docker source names it: one of {}",
                    Framework::ALL.map(Framework::as_str).join(", ")
                ),
            );
        }
        match &self.image {
            None if source_known && self.source_type == SourceType::Docker => bad(
                Part::Key,
                "image",
                "is missing; a docker source runs this image, e.g. ghcr.io/acme/shop:1.4.2 (or set source_type: git with a source_url to build one)".into(),
            ),
            None => {}
            Some(image) if image.trim().is_empty() => bad(
                Part::Value,
                "image",
                "is empty; e.g. ghcr.io/acme/shop:1.4.2".into(),
            ),
            Some(image) if image.chars().any(|c| c.is_whitespace() || c.is_control()) => bad(
                Part::Value,
                "image",
                format!("{image:?} contains whitespace or control characters"),
            ),
            Some(_) => {}
        }
        match (&self.source_url, self.source_type) {
            _ if !source_known => {}
            (Some(_), SourceType::Docker) => bad(
                Part::Key,
                "source_url",
                "only applies to source_type git or upload; a docker source names its image in `image`".into(),
            ),
            (None, t) if t.is_built() => bad(
                Part::Key,
                "source_url",
                format!(
                    "is missing; a {} source is built from it, e.g. {}",
                    t.as_str(),
                    if t == SourceType::Git {
                        "https://github.com/acme/shop.git"
                    } else {
                        "https://files.example.com/shop.tar.gz"
                    }
                ),
            ),
            (Some(url), t) => {
                if let Some(why) = checks::source_url_problem(url, t) {
                    bad(Part::Value, "source_url", why);
                }
            }
            (None, _) => {}
        }
        if let Some(v) = &self.version
            && let Some(why) = label_value_problem(v)
        {
            bad(Part::Value, "version", format!("{v:?} {why}"));
        }
        if let Some(d) = &self.display_name
            && (d.chars().count() > 100 || d.chars().any(char::is_control))
        {
            bad(
                Part::Value,
                "display_name",
                "must be at most 100 characters without control characters".into(),
            );
        }
        if !(1..=50).contains(&self.replicas) {
            bad(
                Part::Value,
                "replicas",
                format!("{} is out of range: 1 to 50", self.replicas),
            );
        }
        if self.port == Some(0) {
            bad(Part::Value, "port", "0 is not a port: 1 to 65535".into());
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
                    Part::Value,
                    field,
                    format!("{path:?} must start with '/' and contain no whitespace"),
                );
            }
        }
        if let Some(cmd) = &self.command
            && (cmd.is_empty() || cmd.iter().any(|c| c.is_empty()))
        {
            bad(
                Part::Value,
                "command",
                "must be a non-empty list of non-empty strings, e.g. [gunicorn, app:app]".into(),
            );
        }
        for key in self.env.keys() {
            if !is_env_name(key) {
                bad(
                    Part::Key,
                    &format!("env.{key}"),
                    "is not an environment variable name: letters, digits and '_', not starting with a digit".into(),
                );
            }
        }
        for (i, s) in self.secrets.iter().enumerate() {
            if let Some(why) = k8s_name::dns1123_subdomain(s).err() {
                bad(
                    Part::Value,
                    &format!("secrets[{i}]"),
                    format!("{s:?} {why}; a Secret name is a DNS-1123 subdomain"),
                );
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, a) in self.addons.iter().enumerate() {
            if !seen.insert(a.as_str()) {
                bad(
                    Part::Value,
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
                    Part::Value,
                    &format!("notifications[{i}]"),
                    format!("{n:?} is not a route name: letters, digits, '-' and '_'"),
                );
            }
        }
        match (&self.django, self.framework) {
            (Some(_), Some(f)) if f != Framework::Django && !substituted.contains(&"framework") => {
                bad(
                    Part::Key,
                    "django",
                    format!("only applies to framework django, not {}", f.as_str()),
                )
            }
            (
                Some(Django {
                    celery: Some(module),
                    ..
                }),
                _,
            ) if !is_python_module(module) => bad(
                Part::Value,
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
                bad(Part::Value, field, format!("{v:?} {why}"));
            }
        }
        if !matches!(
            self.ingress.issuer_kind.as_str(),
            "ClusterIssuer" | "Issuer"
        ) {
            bad(
                Part::Value,
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
                bad(Part::Value, field, format!("{v:?} {why}"));
            }
        }
        for (k, v) in &self.monitoring.labels {
            let field = format!("monitoring.labels.{k}");
            if let Some(why) = label_key_problem(k) {
                bad(Part::Key, &field, format!("key {k:?} {why}"));
            } else if STANDARD_LABELS.contains(&k.as_str()) {
                bad(
                    Part::Value,
                    &field,
                    format!("{k:?} is set by aiops on every object and cannot be replaced"),
                );
            }
            if !v.is_empty()
                && let Some(why) = label_value_problem(v)
            {
                bad(Part::Value, &field, format!("value {v:?} {why}"));
            }
        }
        for k in self.monitoring.annotations.keys() {
            if let Some(why) = label_key_problem(k) {
                bad(
                    Part::Key,
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

    /// The namespace: as written, else `app-<name>`.
    pub fn namespace(&self) -> std::borrow::Cow<'_, str> {
        match &self.namespace {
            Some(ns) => ns.as_str().into(),
            None => format!("app-{}", self.name).into(),
        }
    }

    /// An app registered before the `app-<name>` default (in the namespace named like the
    /// app) stays where it is: a spec that names no namespace takes the one `recorded` for the
    /// app, so a re-deploy never starts a second copy elsewhere. Returns whether it did.
    pub fn keep_namespace(&mut self, recorded: &str) -> bool {
        if self.namespace.is_some() || recorded == self.namespace() {
            return false;
        }
        self.namespace = Some(recorded.to_string());
        true
    }

    /// The framework, when the spec names one (or detection filled it in).
    pub fn framework(&self) -> Option<Framework> {
        self.framework
    }

    /// The image, when the spec names one (or a build filled it in).
    pub fn image(&self) -> Option<&str> {
        self.image.as_deref()
    }

    /// The version: as written, else the image tag, else `latest` (a digest-only image gives
    /// the first 12 hex digits of the digest).
    pub fn version(&self) -> String {
        if let Some(v) = &self.version {
            return v.clone();
        }
        let image = self.image.as_deref().unwrap_or_default();
        let (without_digest, digest) = match image.split_once('@') {
            Some((i, d)) => (i, Some(d)),
            None => (image, None),
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
