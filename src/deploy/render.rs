//! Rendering: app spec → Kubernetes objects, the Alertmanager route snippet and the Grafana
//! dashboard, through minijinja templates.
//!
//! The templates live in `src/deploy/templates/` and are embedded in the binary; a directory
//! (`aiops render --templates DIR`) overrides any of them by file name. Templates are text, so
//! an SRE can read and change them like any manifest; what goes in is safe by construction:
//! names are validated DNS labels and every free-text value is written with `tojson` (a JSON
//! string is a YAML scalar) or the `block` filter (a map as indented `"key": "value"` lines).
//! Every rendered object is parsed back as YAML and must name its apiVersion, kind and name;
//! a template that renders to nothing (the Celery worker without Celery, say) is skipped.
//! Printing undefined variables is an error, so a typo in an override does not render silently.
//!
//! The unit tests are in `render/tests.rs`; rendering is one pass over the templates, read whole.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use minijinja::value::Serde;
use minijinja::{AutoEscape, Environment, UndefinedBehavior, Value};
use serde::Serialize;

use super::spec::{AppSpec, Framework, IngressOptions, Resources};

/// The URL Alertmanager posts to when none is configured: the Service `aiops manifests` creates.
pub use crate::config::DEFAULT_WEBHOOK_URL;

/// Every template, by file name, as shipped. Object templates are rendered in this order,
/// which is also the order `aiops deploy` applies them in (the namespace first; a source
/// build's Job before anything runs its image; the migrations Job before the Deployment it
/// must precede; CRD objects last). Each belongs to one deploy step ([`super::steps`]).
pub const TEMPLATES: &[(&str, &str)] = &[
    ("namespace.yaml", include_str!("templates/namespace.yaml")),
    (
        "serviceaccount.yaml",
        include_str!("templates/serviceaccount.yaml"),
    ),
    ("build-job.yaml", include_str!("templates/build-job.yaml")),
    ("configmap.yaml", include_str!("templates/configmap.yaml")),
    (
        "networkpolicy.yaml",
        include_str!("templates/networkpolicy.yaml"),
    ),
    ("service.yaml", include_str!("templates/service.yaml")),
    (
        "migrate-job.yaml",
        include_str!("templates/migrate-job.yaml"),
    ),
    ("deployment.yaml", include_str!("templates/deployment.yaml")),
    ("worker.yaml", include_str!("templates/worker.yaml")),
    ("ingress.yaml", include_str!("templates/ingress.yaml")),
    (
        "certificate.yaml",
        include_str!("templates/certificate.yaml"),
    ),
    (
        "servicemonitor.yaml",
        include_str!("templates/servicemonitor.yaml"),
    ),
    (
        "prometheusrule.yaml",
        include_str!("templates/prometheusrule.yaml"),
    ),
    (
        "grafana-dashboard.yaml",
        include_str!("templates/grafana-dashboard.yaml"),
    ),
    // Not objects: the dashboard (rendered first, then embedded by grafana-dashboard.yaml),
    // the Alertmanager snippet, and the pod template the workloads include.
    ("dashboard.json", include_str!("templates/dashboard.json")),
    (
        "alertmanager-route.yaml",
        include_str!("templates/alertmanager-route.yaml"),
    ),
    ("_pod.yaml", include_str!("templates/_pod.yaml")),
];

const NOT_OBJECTS: [&str; 3] = ["dashboard.json", "alertmanager-route.yaml", "_pod.yaml"];

/// Rendering failures.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The spec lacks what only detection or a build gives (a git or upload app's framework
    /// or image).
    #[error("{field}: {message}")]
    Unresolved {
        /// `framework` or `image`.
        field: &'static str,
        /// What is missing and how to give it.
        message: String,
    },
    /// A template does not compile or fails to render.
    #[error("template {name}: {message}")]
    Template {
        /// The template's file name.
        name: String,
        /// minijinja's message, with the line.
        message: String,
    },
    /// A rendered template is not a Kubernetes object (or the dashboard not JSON).
    #[error("template {name} rendered an invalid {what}: {message}")]
    Output {
        /// The template's file name.
        name: String,
        /// "object", "dashboard"…
        what: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The override directory cannot be read or names an unknown template.
    #[error("templates directory {}: {message}", dir.display())]
    Overrides {
        /// The directory.
        dir: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// An output file could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

impl Error {
    /// A short, bounded label for metrics and logs.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Unresolved { .. } => "unresolved",
            Error::Template { .. } => "template",
            Error::Output { .. } => "output",
            Error::Overrides { .. } => "overrides",
            Error::Write { .. } => "write",
        }
    }
}

/// `type Result<T, E = Error>` as in every module of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What varies outside the spec.
#[derive(Clone, Debug)]
pub struct Options {
    /// The daemon's webhook URL, for the Alertmanager snippet.
    pub webhook_url: String,
    /// Templates overriding the embedded ones, by file name.
    pub templates_dir: Option<PathBuf>,
    /// The image build of a git source ([`super::build::plan`]): rendered as a Job, and its
    /// destination is the image when the spec names none.
    pub build: Option<super::build::BuildPlan>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            webhook_url: DEFAULT_WEBHOOK_URL.into(),
            templates_dir: None,
            build: None,
        }
    }
}

impl Options {
    /// The deploy settings' webhook URL and templates, no build.
    pub fn from_settings(deploy: &crate::config::DeploySettings) -> Options {
        Options {
            webhook_url: deploy.webhook_url.clone(),
            templates_dir: deploy.templates_dir.clone(),
            build: None,
        }
    }
}

/// One rendered Kubernetes object.
#[derive(Clone, Debug, PartialEq)]
pub struct Manifest {
    /// The template it came from.
    pub template: String,
    /// The rendered text (comments kept), as printed.
    pub text: String,
    /// The object, parsed.
    pub object: serde_json::Value,
}

impl Manifest {
    /// `apiVersion`.
    pub fn api_version(&self) -> &str {
        self.object["apiVersion"].as_str().unwrap_or_default()
    }
    /// `kind`.
    pub fn kind(&self) -> &str {
        self.object["kind"].as_str().unwrap_or_default()
    }
    /// `metadata.name`.
    pub fn name(&self) -> &str {
        self.object["metadata"]["name"].as_str().unwrap_or_default()
    }
    /// `metadata.namespace` (None for cluster-scoped objects).
    pub fn namespace(&self) -> Option<&str> {
        self.object["metadata"]["namespace"].as_str()
    }
    /// `Kind/namespace/name`, for messages.
    pub fn describe(&self) -> String {
        match self.namespace() {
            Some(ns) => format!("{} {ns}/{}", self.kind(), self.name()),
            None => format!("{} {}", self.kind(), self.name()),
        }
    }
}

/// Everything rendered for one app.
#[derive(Clone, Debug, PartialEq)]
pub struct Rendered {
    /// The objects, in apply order.
    pub objects: Vec<Manifest>,
    /// The Alertmanager route + receiver snippet (YAML, to merge into alertmanager.yml).
    pub alertmanager: String,
    /// The Grafana dashboard (JSON), also inside the dashboard ConfigMap.
    pub dashboard: String,
}

impl Rendered {
    /// One multi-document YAML stream for `kubectl apply -f -`, the Alertmanager snippet after
    /// it as a comment (it is not a Kubernetes object).
    pub fn to_stream(&self) -> String {
        let mut out = String::new();
        for m in &self.objects {
            out.push_str("---\n");
            out.push_str(m.text.trim_end());
            out.push('\n');
        }
        out.push_str("---\n");
        for line in self.alertmanager.trim_end().lines() {
            out.push_str(if line.starts_with('#') { "" } else { "# " });
            out.push_str(line);
            out.push('\n');
        }
        out
    }

    /// Writes one file per object (`NN-kind-name.yaml`, NN the apply order), the snippet as
    /// `alertmanager/route.yaml` and the dashboard as `grafana/NAME.json`: sub-directories, so
    /// `kubectl apply -f DIR` reads only the objects. Returns the files written.
    pub fn write_dir(&self, dir: &Path) -> Result<Vec<PathBuf>> {
        let mut written = Vec::new();
        let mut write = |path: PathBuf, text: &str| -> Result<()> {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|source| Error::Write {
                    path: parent.to_path_buf(),
                    source,
                })?;
            }
            std::fs::write(&path, text).map_err(|source| Error::Write {
                path: path.clone(),
                source,
            })?;
            written.push(path);
            Ok(())
        };
        for (i, m) in self.objects.iter().enumerate() {
            let file = format!(
                "{:02}-{}-{}.yaml",
                i + 1,
                m.kind().to_ascii_lowercase(),
                m.name()
            );
            write(dir.join(file), &format!("{}\n", m.text.trim_end()))?;
        }
        write(
            dir.join("alertmanager").join("route.yaml"),
            &format!("{}\n", self.alertmanager.trim_end()),
        )?;
        let app = self
            .objects
            .iter()
            .find(|m| m.kind() == "Deployment")
            .map_or("app", Manifest::name);
        write(
            dir.join("grafana").join(format!("{app}.json")),
            &format!("{}\n", self.dashboard.trim_end()),
        )?;
        Ok(written)
    }
}

/// The values templates see. Field names are the template variables.
#[derive(Serialize)]
struct Context<'a> {
    name: &'a str,
    namespace: std::borrow::Cow<'a, str>,
    display_name: String,
    domain: &'a str,
    framework: &'static str,
    image: &'a str,
    version: String,
    plan: &'static str,
    replicas: i32,
    port: u16,
    health_path: String,
    metrics: bool,
    metrics_path: String,
    command: Option<Vec<String>>,
    env: &'a BTreeMap<String, String>,
    secrets: &'a [String],
    addons: Vec<AddonCtx>,
    notifications: &'a [String],
    /// `enabled` or `disabled`, the value of `aiops.wooo.work/auto-repair`.
    auto_repair: &'static str,
    ingress: &'a IngressOptions,
    monitoring_namespace: &'a str,
    resources: Resources,
    /// The labels every object carries.
    labels: BTreeMap<&'static str, String>,
    /// The monitoring objects' labels: `labels` plus the spec's `monitoring.labels`.
    monitoring_labels: BTreeMap<String, String>,
    /// The spec's `monitoring.annotations`.
    monitoring_annotations: &'a BTreeMap<String, String>,
    /// Changes when the environment changes, so pods roll.
    config_hash: String,
    /// The migrations Job's name (django with migrate), else None.
    migrate_job: Option<String>,
    /// The Celery app module (django), else None.
    celery: Option<String>,
    /// CamelCase of the name, prefixing alert names (`ShopApiDown`).
    alert_prefix: String,
    webhook_url: &'a str,
    /// The image build, for build-job.yaml.
    build: Option<BuildCtx<'a>>,
    /// Set after dashboard.json is rendered.
    dashboard_json: String,
}

#[derive(Serialize)]
struct BuildCtx<'a> {
    job: String,
    context: &'a str,
    destination: &'a str,
    builder_image: &'a str,
    pull_method: Option<&'static str>,
    push_secret: Option<&'a str>,
}

#[derive(Serialize)]
struct AddonCtx {
    name: &'static str,
    port: u16,
}

/// FNV-1a 64: a hash that is stable across Rust releases (std's is not), so golden files and
/// Job names do not change with the toolchain.
pub(super) fn fnv64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn camel(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut c = part.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

fn context<'a>(spec: &'a AppSpec, opts: &'a Options) -> Result<Context<'a>> {
    // A git or upload app is rendered once detection and the build have filled these in.
    let fw = spec.framework().ok_or_else(|| Error::Unresolved {
        field: "framework",
        message: format!(
            "app {} names no framework and none was detected yet; write one ({}) or deploy it from its source_url, which detects it",
            spec.name,
            Framework::ALL.map(Framework::as_str).join(", ")
        ),
    })?;
    let built = opts.build.as_ref().map(|b| b.destination.as_str());
    let image = spec.image().or(built).ok_or_else(|| Error::Unresolved {
        field: "image",
        message: format!(
            "app {} has no image yet: a {} source gets one when it is built; write `image` to render it before",
            spec.name,
            spec.source_type.as_str()
        ),
    })?;
    let version = spec.version();
    let labels = BTreeMap::from([
        ("app", spec.name.clone()),
        ("app.kubernetes.io/instance", spec.name.clone()),
        ("app.kubernetes.io/managed-by", "aiops".to_string()),
        ("app.kubernetes.io/name", spec.name.clone()),
        ("app.kubernetes.io/version", version.clone()),
    ]);
    let env_text = serde_json::to_string(&spec.env).unwrap_or_default();
    let django = spec.django.clone().unwrap_or_default();
    let is_django = fw == Framework::Django;
    Ok(Context {
        name: &spec.name,
        namespace: spec.namespace(),
        display_name: spec
            .display_name
            .clone()
            .unwrap_or_else(|| spec.name.clone()),
        domain: &spec.domain,
        framework: fw.as_str(),
        image,
        version,
        plan: spec.plan.as_str(),
        replicas: spec.replicas,
        port: spec.port.unwrap_or(fw.default_port()),
        health_path: spec
            .health_path
            .clone()
            .unwrap_or_else(|| fw.default_health_path().into()),
        metrics: spec.metrics.unwrap_or(fw.default_metrics()),
        metrics_path: spec
            .metrics_path
            .clone()
            .unwrap_or_else(|| "/metrics".into()),
        command: spec.command.clone().or_else(|| fw.default_command()),
        env: &spec.env,
        secrets: &spec.secrets,
        addons: spec
            .addons
            .iter()
            .map(|a| AddonCtx {
                name: a.as_str(),
                port: a.port(),
            })
            .collect(),
        notifications: &spec.notifications,
        auto_repair: if spec.auto_repair {
            "enabled"
        } else {
            "disabled"
        },
        ingress: &spec.ingress,
        monitoring_namespace: &spec.monitoring_namespace,
        resources: spec.plan.resources(),
        monitoring_labels: labels
            .iter()
            .map(|(k, v)| ((*k).to_string(), v.clone()))
            .chain(spec.monitoring.labels.clone())
            .collect(),
        monitoring_annotations: &spec.monitoring.annotations,
        labels,
        config_hash: format!("{:016x}", fnv64(env_text.as_bytes())),
        migrate_job: (is_django && django.migrate).then(|| {
            format!(
                "{}-migrate-{:08x}",
                spec.name,
                fnv64(image.as_bytes()) & 0xffff_ffff
            )
        }),
        celery: if is_django { django.celery } else { None },
        alert_prefix: camel(&spec.name),
        webhook_url: &opts.webhook_url,
        build: opts.build.as_ref().map(|b| BuildCtx {
            job: b.job_name(&spec.name),
            context: &b.context,
            destination: &b.destination,
            builder_image: &b.builder_image,
            pull_method: b.pull_method,
            push_secret: b.push_secret.as_deref(),
        }),
        dashboard_json: String::new(),
    })
}

/// `{{ map | block(indent) }}`: the map as `"key": "value"` lines indented by `indent` spaces
/// (`{}` when empty). Keys and values are JSON strings, so nothing in them can break the YAML
/// (a value like `on` or `1.10` stays a string).
fn block(map: Value, indent: usize) -> std::result::Result<String, minijinja::Error> {
    let pad = " ".repeat(indent);
    let mut lines = Vec::new();
    for key in map.try_iter()? {
        let value = map.get_item(&key)?;
        let k = serde_json::to_string(&key.to_string()).unwrap_or_default();
        let v = serde_json::to_string(&value.to_string()).unwrap_or_default();
        lines.push(format!("{pad}{k}: {v}"));
    }
    if lines.is_empty() {
        return Ok(format!("{pad}{{}}"));
    }
    Ok(lines.join("\n"))
}

/// The template sources: the embedded ones, replaced by same-named files of `dir`.
fn sources(dir: Option<&Path>) -> Result<Vec<(String, String)>> {
    let mut out: Vec<(String, String)> = TEMPLATES
        .iter()
        .map(|(n, s)| ((*n).to_string(), (*s).to_string()))
        .collect();
    let Some(dir) = dir else {
        return Ok(out);
    };
    let overrides_err = |message: String| Error::Overrides {
        dir: dir.to_path_buf(),
        message,
    };
    let entries = std::fs::read_dir(dir).map_err(|e| overrides_err(e.to_string()))?;
    for entry in entries {
        let entry = entry.map_err(|e| overrides_err(e.to_string()))?;
        if !entry.path().is_file() {
            continue;
        }
        let file = entry.file_name().to_string_lossy().into_owned();
        let Some(slot) = out.iter_mut().find(|(n, _)| *n == file) else {
            // A misspelt override would otherwise be ignored without a word.
            let known: Vec<&str> = TEMPLATES.iter().map(|(n, _)| *n).collect();
            return Err(overrides_err(format!(
                "{file} is not a template name; the templates are {}",
                known.join(", ")
            )));
        };
        slot.1 = std::fs::read_to_string(entry.path())
            .map_err(|e| overrides_err(format!("{file}: {e}")))?;
    }
    Ok(out)
}

fn template_err(name: &str, e: &minijinja::Error) -> Error {
    let mut message = e.to_string();
    if let Some(line) = e.line() {
        message = format!("line {line}: {message}");
    }
    Error::Template {
        name: name.to_string(),
        message,
    }
}

/// Renders every object, the Alertmanager snippet and the dashboard of a validated spec.
pub fn render(spec: &AppSpec, opts: &Options) -> Result<Rendered> {
    let mut env = Environment::new();
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.set_undefined_behavior(UndefinedBehavior::SemiStrict);
    env.add_filter("block", block);
    for (name, source) in sources(opts.templates_dir.as_deref())? {
        env.add_template_owned(name.clone(), source)
            .map_err(|e| template_err(&name, &e))?;
    }
    let run = |name: &str, ctx: &Context<'_>| -> Result<String> {
        env.get_template(name)
            .and_then(|t| t.render(Value::from(Serde(ctx))))
            .map_err(|e| template_err(name, &e))
    };
    let mut ctx = context(spec, opts)?;
    let dashboard = run("dashboard.json", &ctx)?;
    let parsed: serde_json::Value =
        serde_json::from_str(&dashboard).map_err(|e| Error::Output {
            name: "dashboard.json".into(),
            what: "dashboard",
            message: format!("not JSON: {e}"),
        })?;
    // Compact inside the ConfigMap; pretty in its own file.
    ctx.dashboard_json = parsed.to_string();
    let dashboard = serde_json::to_string_pretty(&parsed).unwrap_or(dashboard);
    let alertmanager = run("alertmanager-route.yaml", &ctx)?;
    serde_yaml::from_str::<serde_json::Value>(&alertmanager).map_err(|e| Error::Output {
        name: "alertmanager-route.yaml".into(),
        what: "Alertmanager snippet",
        message: e.to_string(),
    })?;
    let mut objects = Vec::new();
    for (name, _) in TEMPLATES.iter().filter(|(n, _)| !NOT_OBJECTS.contains(n)) {
        let text = run(name, &ctx)?;
        if text.lines().all(|l| {
            let l = l.trim();
            l.is_empty() || l.starts_with('#')
        }) {
            continue;
        }
        let object = parse_object(name, &text)?;
        objects.push(Manifest {
            template: (*name).to_string(),
            text: text.trim().to_string(),
            object,
        });
    }
    Ok(Rendered {
        objects,
        alertmanager: alertmanager.trim().to_string(),
        dashboard,
    })
}

fn parse_object(name: &str, text: &str) -> Result<serde_json::Value> {
    let bad = |message: String| Error::Output {
        name: name.to_string(),
        what: "object",
        message,
    };
    let object: serde_json::Value = serde_yaml::from_str(text).map_err(|e| {
        bad(format!(
            "not YAML: {e}\n--- rendered text ---\n{}",
            numbered(text)
        ))
    })?;
    for pointer in ["/apiVersion", "/kind", "/metadata/name"] {
        if object.pointer(pointer).and_then(|v| v.as_str()).is_none() {
            return Err(bad(format!("{pointer} is missing or not a string")));
        }
    }
    Ok(object)
}

fn numbered(text: &str) -> String {
    text.lines()
        .enumerate()
        .map(|(i, l)| format!("{:>4} {l}", i + 1))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests;
