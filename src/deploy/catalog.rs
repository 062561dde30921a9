//! The template catalog (`GET /api/templates`): what an app spec can ask for, read from the same
//! code that renders and detects, so the catalog cannot drift from what a deploy does.
//!
//! - **Frameworks**: each one's defaults (port, start command, health path, metrics), what
//!   proves it in a source ([`super::detect::proof`]), and the objects a spec of it renders to,
//!   found by rendering an example spec with the daemon's templates (overrides included).
//! - **Plans**: requests and limits ([`Plan::resources`]).
//! - **Source types**: what each requires and whether the framework is detected and the image
//!   built.
//! - **Parameters**: the spec's fields, when each is required, and its default.

use serde::Serialize;

use super::render::{self, Options};
use super::spec::{AppSpec, Framework, Plan, Resources, SourceType};

/// Why the catalog could not be made: the templates refuse an example spec (an override
/// template that is broken), which every deploy would hit too.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Rendering the example of a framework failed.
    #[error("the {framework} template does not render: {source}")]
    Render {
        /// The framework whose example failed.
        framework: Framework,
        /// Why.
        source: render::Error,
    },
}

/// Everything `GET /api/templates` answers.
#[derive(Clone, Debug, Serialize)]
pub struct Catalog {
    /// One entry per framework.
    pub frameworks: Vec<FrameworkTemplate>,
    /// The plans, smallest first.
    pub plans: Vec<PlanEntry>,
    /// Where an app's code may come from.
    pub source_types: Vec<SourceEntry>,
    /// The fields of an app spec.
    pub parameters: Vec<Parameter>,
}

/// A framework's template.
#[derive(Clone, Debug, Serialize)]
pub struct FrameworkTemplate {
    /// The name a spec uses.
    pub name: Framework,
    /// The container port unless the spec sets `port`.
    pub port: u16,
    /// The start command unless the spec sets `command` (`None`: the image's own).
    pub command: Option<Vec<String>>,
    /// The probes' path unless the spec sets `health_path`.
    pub health_path: &'static str,
    /// Whether the app is scraped unless the spec sets `metrics`.
    pub metrics: bool,
    /// What proves this framework when it is detected from a source.
    pub detected_by: &'static str,
    /// The objects an app of this framework renders to, `Kind/name` for an app named `example`,
    /// in apply order.
    pub objects: Vec<String>,
}

/// A plan and the resources it gives each container.
#[derive(Clone, Debug, Serialize)]
pub struct PlanEntry {
    /// The name a spec uses.
    pub name: Plan,
    /// Requests and limits.
    pub resources: Resources,
}

/// A source type.
#[derive(Clone, Debug, Serialize)]
pub struct SourceEntry {
    /// The name a spec uses.
    pub name: SourceType,
    /// The fields a spec of this source must have besides name and domain.
    pub requires: Vec<&'static str>,
    /// Whether the framework is detected from the source when the spec names none.
    pub detects_framework: bool,
    /// Whether the image is built from the source.
    pub builds_image: bool,
}

/// One field of an app spec.
#[derive(Clone, Debug, Serialize)]
pub struct Parameter {
    /// The field.
    pub name: &'static str,
    /// `always`, a source type list (`docker`, `git, upload`), or `no`.
    pub required: &'static str,
    /// Its default, in words, when it has one.
    pub default: Option<&'static str>,
    /// What it is.
    pub description: &'static str,
}

/// The fields of a spec, in the order the README documents them.
const PARAMETERS: &[(&str, &str, Option<&str>, &str)] = &[
    (
        "name",
        "always",
        None,
        "DNS-1035 label of at most 40 characters; names the objects",
    ),
    (
        "display_name",
        "no",
        Some("the name"),
        "dashboard title and alert summaries",
    ),
    (
        "namespace",
        "no",
        Some("app-<name>"),
        "where the objects go; a token's apps claim lists namespaces",
    ),
    (
        "domain",
        "always",
        None,
        "the Ingress host and the Certificate; its DNS must point at the ingress",
    ),
    ("source_type", "no", Some("docker"), "docker, git or upload"),
    (
        "source_url",
        "git, upload",
        None,
        "the repository or archive the app is built from; never with credentials",
    ),
    (
        "framework",
        "docker",
        Some("detected from the source"),
        "flask, django, nodejs, nextjs, static or go",
    ),
    (
        "image",
        "docker",
        Some("built from the source"),
        "the image to run (docker) or to push the build to",
    ),
    (
        "version",
        "no",
        Some("the image tag"),
        "recorded with each deployment",
    ),
    (
        "plan",
        "no",
        Some("basic"),
        "basic, standard, advanced or professional",
    ),
    ("replicas", "no", Some("2"), "1 to 50"),
    ("port", "no", Some("the framework's"), "the container port"),
    (
        "health_path",
        "no",
        Some("/healthz (static: /)"),
        "the probes' path",
    ),
    (
        "metrics",
        "no",
        Some("true (static: false)"),
        "ServiceMonitor and scrape annotations",
    ),
    (
        "metrics_path",
        "no",
        Some("/metrics"),
        "the metrics endpoint",
    ),
    (
        "command",
        "no",
        Some("the framework's"),
        "the start command",
    ),
    (
        "env",
        "no",
        None,
        "plain environment (a ConfigMap); never secrets",
    ),
    (
        "secrets",
        "no",
        None,
        "Secrets you create, whose keys become environment variables",
    ),
    (
        "addons",
        "no",
        None,
        "postgresql, redis: backing services the NetworkPolicy lets the app reach",
    ),
    ("notifications", "no", None, "routes told about deployments"),
    (
        "auto_repair",
        "no",
        Some("true"),
        "whether aiops may repair the app",
    ),
    (
        "django",
        "no",
        Some("{migrate: true}"),
        "django only: the migrations Job and a Celery worker",
    ),
    (
        "ingress",
        "no",
        Some("nginx, letsencrypt-prod ClusterIssuer"),
        "IngressClass, cert-manager issuer, controller namespace",
    ),
    (
        "monitoring_namespace",
        "no",
        Some("monitoring"),
        "the namespace Prometheus scrapes from",
    ),
    (
        "monitoring",
        "no",
        None,
        "extra labels and annotations of the ServiceMonitor and PrometheusRule",
    ),
];

/// The catalog, with the templates `opts` renders with.
pub fn catalog(opts: &Options) -> Result<Catalog, Error> {
    let mut frameworks = Vec::new();
    for fw in Framework::ALL {
        frameworks.push(FrameworkTemplate {
            name: fw,
            port: fw.default_port(),
            command: fw.default_command(),
            health_path: fw.default_health_path(),
            metrics: fw.default_metrics(),
            detected_by: super::detect::proof(fw),
            objects: example_objects(fw, opts)?,
        });
    }
    Ok(Catalog {
        frameworks,
        plans: [
            Plan::Basic,
            Plan::Standard,
            Plan::Advanced,
            Plan::Professional,
        ]
        .into_iter()
        .map(|p| PlanEntry {
            name: p,
            resources: p.resources(),
        })
        .collect(),
        source_types: SourceType::ALL
            .into_iter()
            .map(|t| SourceEntry {
                name: t,
                requires: if t.is_built() {
                    vec!["source_url"]
                } else {
                    vec!["framework", "image"]
                },
                detects_framework: t.is_built(),
                builds_image: t.is_built(),
            })
            .collect(),
        parameters: PARAMETERS
            .iter()
            .map(|&(name, required, default, description)| Parameter {
                name,
                required,
                default,
                description,
            })
            .collect(),
    })
}

/// `Kind/name` of what an app named `example` of `framework` renders to.
fn example_objects(framework: Framework, opts: &Options) -> Result<Vec<String>, Error> {
    let spec = AppSpec::parse(
        &format!(
            "name: example\ndomain: example.example.com\nframework: {framework}\nimage: example:1\n"
        ),
        "example",
    )
    .expect("the example spec is valid for every framework");
    let rendered =
        render::render(&spec, opts).map_err(|source| Error::Render { framework, source })?;
    Ok(rendered
        .objects
        .iter()
        .map(|m| format!("{}/{}", m.kind(), m.name()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_framework_plan_and_source_type_is_in_the_catalog_with_what_it_renders() {
        let c = catalog(&Options::default()).unwrap();
        assert_eq!(c.frameworks.len(), Framework::ALL.len());
        assert_eq!(c.plans.len(), 4);
        assert_eq!(c.source_types.len(), SourceType::ALL.len());
        let django = c
            .frameworks
            .iter()
            .find(|f| f.name == Framework::Django)
            .unwrap();
        assert_eq!(django.port, 8000);
        assert!(django.detected_by.contains("manage.py"));
        // Django's migrations Job comes before its Deployment: the objects are the real render.
        let job = django
            .objects
            .iter()
            .position(|o| o.starts_with("Job/example-migrate-"));
        let dep = django
            .objects
            .iter()
            .position(|o| o == "Deployment/example");
        assert!(job.is_some() && job < dep, "{:?}", django.objects);
        let stat = c
            .frameworks
            .iter()
            .find(|f| f.name == Framework::Static)
            .unwrap();
        assert!(!stat.metrics);
        assert!(
            !stat
                .objects
                .iter()
                .any(|o| o.starts_with("ServiceMonitor/")),
            "{:?}",
            stat.objects
        );
        let pro = c
            .plans
            .iter()
            .find(|p| p.name == Plan::Professional)
            .unwrap();
        assert_eq!(pro.resources.memory_limit, "4Gi");
    }

    #[test]
    fn the_parameters_are_exactly_the_fields_of_a_spec() {
        // Every field a spec serializes (a full docker spec with every option set) is listed,
        // and nothing else: adding a field to AppSpec without documenting it here fails.
        let spec = AppSpec::parse(
            "name: x\ndomain: x.example.com\nframework: django\nimage: x:1\ndisplay_name: X\n\
             namespace: x\nversion: '1'\nport: 80\nhealth_path: /h\nmetrics: true\n\
             metrics_path: /m\ncommand: [a]\nsource_url: null\ndjango: {migrate: true}\n\
             monitoring: {labels: {release: r}}\n",
            "t",
        )
        .unwrap();
        let value = serde_json::to_value(&spec).unwrap();
        let mut fields: Vec<&str> = value
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        fields.sort_unstable();
        let mut listed: Vec<&str> = PARAMETERS.iter().map(|p| p.0).collect();
        listed.sort_unstable();
        assert_eq!(fields, listed);
    }

    #[test]
    fn a_broken_override_template_names_the_framework_it_breaks() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("deployment.yaml"), "{{ broken").unwrap();
        let opts = Options {
            templates_dir: Some(dir.path().to_path_buf()),
            ..Options::default()
        };
        let e = catalog(&opts).unwrap_err().to_string();
        assert!(
            e.starts_with("the flask template does not render: template deployment.yaml"),
            "{e}"
        );
    }
}
