//! How `aiops deploy` acts on the cluster: server-side apply of one rendered object, the waits
//! for a Job and a rollout, and the announcement of a finished deployment. The order, the
//! steps and the record are [`super::steps`]'.
//!
//! - Every object is applied with server-side apply as field manager `aiops`, forcing
//!   conflicts (`kubectl apply --server-side --force-conflicts`, what CD tools do): the spec is
//!   the truth, and a field someone changed by hand (`kubectl set image`) must not block the
//!   next deploy. A consequence worth knowing: a deploy resets memory limits that auto-repair
//!   raised back to the plan's.
//! - Kinds are a static table ([`resource_of`]), not discovery: the templates produce a known
//!   set of kinds, and a CRD that is not installed (cert-manager, the Prometheus Operator)
//!   answers 404, reported as such, naming what to install.
//! - A Job (the migrations, a build) must complete before anything after it is applied; a
//!   Deployment must roll out, judged by the cluster backend's kubectl rollout-status logic
//!   ([`crate::cluster::Cluster::rollout_status`]), within the timeout.
//! - A finished deployment is announced through [`announce`] (a success also to the
//!   notification outbox).

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};

use super::render::Manifest;
use super::spec::AppSpec;
use crate::cluster::kubernetes::KubeCluster;
use crate::cluster::{Cluster, Target};
use crate::notify::EventKind;
use crate::store::{DeploymentRecord, Store};

/// The field manager of every apply.
pub const FIELD_MANAGER: &str = "aiops";

/// Deploy failures. The store keeps the failed deployment with this message.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A rendered object has a kind this module does not know how to apply.
    #[error("{0}: aiops deploy does not apply this kind (known: {known})", known = KINDS.iter().map(|k| k.kind).collect::<Vec<_>>().join(", "))]
    UnknownKind(String),
    /// The API server refused or could not be reached.
    #[error("applying {what}: {message}")]
    Apply {
        /// The object.
        what: String,
        /// Why.
        message: String,
    },
    /// The API server refused the account deploy runs as (403): a missing RBAC rule.
    #[error(
        "applying {what}: {message}; the account aiops deploy runs as needs the ClusterRole that `aiops manifests --deploy-role` prints"
    )]
    Forbidden {
        /// The object.
        what: String,
        /// The API server's message, which names the verb, resource and account.
        message: String,
    },
    /// A custom resource's definition is not installed.
    #[error(
        "applying {what}: the cluster does not serve {api_version} {kind} (404): install {needs} first"
    )]
    MissingCrd {
        /// The object.
        what: String,
        /// Its apiVersion.
        api_version: String,
        /// Its kind.
        kind: String,
        /// What provides it.
        needs: &'static str,
    },
    /// The migrations Job failed.
    #[error("{what} failed: {message}")]
    JobFailed {
        /// The Job.
        what: String,
        /// Its Failed condition's message.
        message: String,
    },
    /// A rollout failed (ProgressDeadlineExceeded) or the cluster refused to report it.
    #[error("rollout of {what}: {message}")]
    Rollout {
        /// The Deployment.
        what: String,
        /// kubectl's message.
        message: String,
    },
    /// Something did not finish in time.
    #[error("{what} did not finish within {timeout:?}: {last}")]
    Timeout {
        /// What was waited for.
        what: String,
        /// The timeout.
        timeout: Duration,
        /// The last state seen.
        last: String,
    },
    /// The store could not record the deployment.
    #[error("store: {0}")]
    Store(#[from] crate::store::Error),
}

impl Error {
    /// A short, bounded label for metrics and logs.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::UnknownKind(_) => "unknown_kind",
            Error::Apply { .. } => "apply",
            Error::Forbidden { .. } => "forbidden",
            Error::MissingCrd { .. } => "missing_crd",
            Error::JobFailed { .. } => "job_failed",
            Error::Rollout { .. } => "rollout",
            Error::Timeout { .. } => "timeout",
            Error::Store(_) => "store",
        }
    }
}

/// `type Result<T, E = Error>` as in every module of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A kind the templates produce, and how to reach it.
#[derive(Clone, Copy, Debug)]
pub struct Kind {
    /// `Deployment`.
    pub kind: &'static str,
    /// API group (`""` for core).
    pub group: &'static str,
    /// API version.
    pub version: &'static str,
    /// Resource name in URLs.
    pub plural: &'static str,
    /// Namespaced (everything but Namespace).
    pub namespaced: bool,
    /// For custom resources: what installs the CRD.
    pub crd_from: Option<&'static str>,
}

const fn k(
    kind: &'static str,
    group: &'static str,
    version: &'static str,
    plural: &'static str,
) -> Kind {
    Kind {
        kind,
        group,
        version,
        plural,
        namespaced: true,
        crd_from: None,
    }
}

/// Every kind `aiops deploy` applies.
pub const KINDS: &[Kind] = &[
    Kind {
        namespaced: false,
        ..k("Namespace", "", "v1", "namespaces")
    },
    k("ServiceAccount", "", "v1", "serviceaccounts"),
    k("ConfigMap", "", "v1", "configmaps"),
    k("Service", "", "v1", "services"),
    k(
        "NetworkPolicy",
        "networking.k8s.io",
        "v1",
        "networkpolicies",
    ),
    k("Ingress", "networking.k8s.io", "v1", "ingresses"),
    k("Deployment", "apps", "v1", "deployments"),
    k("Job", "batch", "v1", "jobs"),
    Kind {
        crd_from: Some("cert-manager"),
        ..k("Certificate", "cert-manager.io", "v1", "certificates")
    },
    Kind {
        crd_from: Some("the Prometheus Operator (kube-prometheus-stack)"),
        ..k(
            "ServiceMonitor",
            "monitoring.coreos.com",
            "v1",
            "servicemonitors",
        )
    },
    Kind {
        crd_from: Some("the Prometheus Operator (kube-prometheus-stack)"),
        ..k(
            "PrometheusRule",
            "monitoring.coreos.com",
            "v1",
            "prometheusrules",
        )
    },
];

/// The kind entry of a rendered object (apiVersion and kind must both match).
pub fn resource_of(m: &Manifest) -> Result<&'static Kind> {
    KINDS
        .iter()
        .find(|k| {
            let api_version = if k.group.is_empty() {
                k.version.to_string()
            } else {
                format!("{}/{}", k.group, k.version)
            };
            k.kind == m.kind() && api_version == m.api_version()
        })
        .ok_or_else(|| Error::UnknownKind(format!("{} ({})", m.describe(), m.api_version())))
}

/// How long to wait, and how often to look.
#[derive(Clone, Debug)]
pub struct Options {
    /// Limit for the migrations Job and for each rollout. Default 5m.
    pub timeout: Duration,
    /// Poll interval. Default 2s.
    pub poll: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            timeout: Duration::from_secs(300),
            poll: Duration::from_secs(2),
        }
    }
}

fn api_for(client: kube::Client, kind: &Kind, ns: Option<&str>) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(kind.group, kind.version, kind.kind),
        kind.plural,
    );
    match (kind.namespaced, ns) {
        (true, Some(ns)) => Api::namespaced_with(client, ns, &ar),
        _ => Api::all_with(client, &ar),
    }
}

/// Server-side apply of one object.
pub async fn apply_one(client: kube::Client, m: &Manifest) -> Result<()> {
    let kind = resource_of(m)?;
    let what = m.describe();
    let obj: DynamicObject =
        serde_json::from_value(m.object.clone()).map_err(|e| Error::Apply {
            what: what.clone(),
            message: format!("not an object: {e}"),
        })?;
    let api = api_for(client, kind, m.namespace());
    let params = PatchParams::apply(FIELD_MANAGER).force();
    match api.patch(m.name(), &params, &Patch::Apply(&obj)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 && kind.crd_from.is_some() => {
            Err(Error::MissingCrd {
                what,
                api_version: m.api_version().to_string(),
                kind: m.kind().to_string(),
                needs: kind.crd_from.unwrap_or_default(),
            })
        }
        Err(kube::Error::Api(s)) if s.code == 403 => Err(Error::Forbidden {
            what,
            message: s.message,
        }),
        Err(kube::Error::Api(s)) => Err(Error::Apply {
            what,
            message: format!("{} ({} {})", s.message, s.code, s.reason),
        }),
        Err(e) => Err(Error::Apply {
            what,
            message: e.to_string(),
        }),
    }
}

/// Polls `probe` until it says done (Some(Ok)), failed (Some(Err)), or the timeout passes.
async fn poll<F, Fut>(what: &str, opts: &Options, mut probe: F) -> Result<String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(bool, String)>>,
{
    let deadline = tokio::time::Instant::now() + opts.timeout;
    loop {
        let (done, message) = probe().await?;
        if done {
            return Ok(message);
        }
        if tokio::time::Instant::now() + opts.poll > deadline {
            return Err(Error::Timeout {
                what: what.to_string(),
                timeout: opts.timeout,
                last: message,
            });
        }
        tracing::info!(%what, rollout = %message, "waiting");
        tokio::time::sleep(opts.poll).await;
    }
}

pub(super) async fn wait_job(client: kube::Client, m: &Manifest, opts: &Options) -> Result<()> {
    let what = m.describe();
    let api: Api<Job> = Api::namespaced(client, m.namespace().unwrap_or_default());
    let (api, what) = (&api, &what);
    poll(what, opts, || async move {
        let job = api.get(m.name()).await.map_err(|e| Error::Apply {
            what: what.clone(),
            message: e.to_string(),
        })?;
        let conditions = job.status.and_then(|s| s.conditions).unwrap_or_default();
        let is = |t: &str| {
            conditions
                .iter()
                .find(|c| c.type_ == t && c.status == "True")
        };
        if let Some(c) = is("Failed") {
            return Err(Error::JobFailed {
                what: what.clone(),
                message: c.message.clone().unwrap_or_else(|| "no message".into()),
            });
        }
        Ok((is("Complete").is_some(), "not complete yet".to_string()))
    })
    .await
    .map(|_| ())
}

pub(super) async fn wait_rollout(
    cluster: &KubeCluster,
    m: &Manifest,
    opts: &Options,
) -> Result<String> {
    let what = m.describe();
    let target = Target {
        namespace: m.namespace().unwrap_or_default().to_string(),
        kind: "Deployment".into(),
        name: m.name().to_string(),
    };
    let (target, what) = (&target, &what);
    poll(what, opts, || async move {
        let status = cluster
            .rollout_status(target)
            .await
            .map_err(|e| Error::Rollout {
                what: what.clone(),
                message: e.to_string(),
            })?;
        if status.failed {
            return Err(Error::Rollout {
                what: what.clone(),
                message: status.message,
            });
        }
        Ok((status.complete, status.message))
    })
    .await
}

/// Tells people how a deployment ended: logs it and queues `deploy_success` or
/// `deploy_failed` in the notification outbox, to the routes matching the app's `app` and
/// `namespace` labels and to the channels or routes its spec names. `spec` is `None` when the
/// registered spec is gone or no longer parses (a deployment failed by another process): the
/// message then goes by the labels alone. A notification that cannot be queued is logged,
/// never turned into a failed deploy: the cluster already runs what it runs.
pub async fn announce(
    store: &Store,
    outbox: Option<&crate::notify::Outbox>,
    spec: Option<&AppSpec>,
    record: &DeploymentRecord,
) {
    let succeeded = record.status == "succeeded";
    let event = if succeeded {
        EventKind::DeploySuccess
    } else {
        EventKind::DeployFailed
    };
    tracing::info!(
        event = event.as_str(),
        deployment = record.id,
        app = %record.app,
        namespace = %record.namespace,
        version = %record.version,
        image = %record.image,
        detail = record.detail.as_deref().unwrap_or_default(),
        "deployment finished"
    );
    let Some(outbox) = outbox else {
        return;
    };
    let labels = [
        ("app".to_string(), record.app.clone()),
        ("namespace".to_string(), record.namespace.clone()),
    ]
    .into_iter()
    .collect();
    let message = announcement(spec.and_then(|s| s.display_name.as_deref()), record);
    let explicit = spec.map(|s| s.notifications.as_slice()).unwrap_or_default();
    if let Err(e) = outbox
        .deploy_finished(store, event, &labels, &message, explicit)
        .await
    {
        tracing::error!(error = %e, app = %record.app, event = event.as_str(), "could not queue the deployment's notification");
    }
}

/// The message of [`announce`]: what was deployed where, or which deployment failed and why
/// (its detail names the failed step), with where to follow it up.
fn announcement(display_name: Option<&str>, record: &DeploymentRecord) -> String {
    let name = display_name.unwrap_or(&record.app);
    if record.status == "succeeded" {
        format!(
            "{name} {} deployed to {} ({}): {}",
            record.version,
            record.namespace,
            record.image,
            record.detail.as_deref().unwrap_or("rolled out")
        )
    } else {
        format!(
            "Deployment {} of {name} {} to {} failed: {}\nDetails: GET /api/apps/{}/deployments/{}, or the console's app page",
            record.id,
            record.version,
            record.namespace,
            record.detail.as_deref().unwrap_or("no reason was recorded"),
            record.app,
            record.id
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_the_templates_render_is_one_deploy_can_apply() {
        for fw in super::super::spec::Framework::ALL {
            let spec = AppSpec::parse(
                &format!(
                    "name: shop\ndomain: shop.example.com\nframework: {}\nimage: shop:1\n{}",
                    fw.as_str(),
                    if fw.as_str() == "django" {
                        "django: {celery: shop}\n"
                    } else {
                        ""
                    }
                ),
                "x",
            )
            .unwrap();
            let r = super::super::render(&spec, &Default::default()).unwrap();
            for m in &r.objects {
                resource_of(m).unwrap();
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn polling_gives_up_at_the_timeout_with_the_last_state() {
        let opts = Options {
            timeout: Duration::from_secs(10),
            poll: Duration::from_secs(2),
        };
        let mut calls = 0;
        let e = poll("Deployment shop/shop", &opts, || {
            calls += 1;
            let n = calls;
            async move { Ok((false, format!("look {n}"))) }
        })
        .await
        .unwrap_err();
        assert!(
            // Looks at 0, 2, 4, 6, 8 and 10 s; the next would be past the deadline.
            matches!(&e, Error::Timeout { last, .. } if last == "look 6"),
            "{e}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn polling_stops_as_soon_as_the_probe_is_done() {
        let mut calls = 0;
        let got = poll("x", &Options::default(), || {
            calls += 1;
            let n = calls;
            async move { Ok((n == 3, format!("look {n}"))) }
        })
        .await
        .unwrap();
        assert_eq!(got, "look 3");
    }
}
