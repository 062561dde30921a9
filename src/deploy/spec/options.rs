//! The choices a spec names and their defaults: framework, plan (and the resources it gives),
//! add-ons, Django and monitoring options, ingress options.
//!
//! Kept apart from [`AppSpec`](super::AppSpec) because these are the vocabulary a spec is
//! written in: a reader looking up what `plan: standard` gives finds it here, and the spec's
//! parsing and validation read better without them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

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

/// The name used in specs (`flask`), for messages.
impl std::fmt::Display for Framework {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
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

/// Where the app's code comes from (the original design's `source_type`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceType {
    /// A built image, named by `image`. The default, so specs written before sources existed
    /// mean what they meant. The framework cannot be read from an image: the spec names it.
    #[default]
    Docker,
    /// A git repository at `source_url`, cloned shallowly; the framework is detected from it
    /// when the spec names none, and a build Job makes the image.
    Git,
    /// An archive (`.tar.gz`, `.tgz`, `.tar` or `.zip`) at `source_url`; detected and built as
    /// a git source is.
    Upload,
}

impl SourceType {
    /// Every source type, for messages.
    pub const ALL: [SourceType; 3] = [SourceType::Docker, SourceType::Git, SourceType::Upload];

    /// The name used in specs.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceType::Docker => "docker",
            SourceType::Git => "git",
            SourceType::Upload => "upload",
        }
    }

    /// Whether the image is built from source here (git, upload) rather than given.
    pub fn is_built(self) -> bool {
        self != SourceType::Docker
    }
}

pub(super) fn yes() -> bool {
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
pub(super) fn default_monitoring_namespace() -> String {
    "monitoring".into()
}
pub(super) fn default_replicas() -> i32 {
    2
}
