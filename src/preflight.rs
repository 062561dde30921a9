//! Cluster preflight: before the first alert, is the API server reachable and may aiops do what
//! its playbooks need?
//!
//! Run by `aiops check --cluster` and, in the background, by `aiops serve` at start-up and then
//! periodically (logged, exported as `aiops_cluster_preflight{check}` and
//! `aiops_cluster_permission_missing{verb,resource}`, shown in `/-/ready`'s `cluster` detail).
//! Readiness itself never depends on it: a slow or briefly unreachable API server must not take
//! the webhook out of its Service, since intake records alerts whatever the cluster does.
//!
//! The permissions come from [`crate::rbac`]: the host functions the configured playbooks call,
//! plus the daemon's own Events. Each is asked of the API server with a SelfSubjectAccessReview
//! (`authorization.k8s.io/v1`) as the identity the daemon uses: cluster-wide, or in each
//! namespace of `guard.namespaces.allow` when that list is set (RoleBindings are enough then).

use std::sync::{Arc, RwLock};
use std::time::Duration;

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};
use serde::Serialize;

use crate::cluster::kubernetes::Connect;
use crate::config::Settings;
use crate::definitions::Definitions;
use crate::rbac::{self, Permission};

/// Why the preflight could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No Kubernetes backend is configured.
    #[error(
        "no Kubernetes backend configured: set cluster.kubeconfig (AIOPS_KUBECONFIG) or cluster.in_cluster (AIOPS_KUBE_IN_CLUSTER=true)"
    )]
    NotConfigured,
    /// The kubeconfig or in-cluster configuration could not be read.
    #[error("{0}")]
    Config(String),
}

/// How long the version request and each review may take: a black-holed server must not hang
/// `aiops check` or keep the start-up check from reporting.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The answer for one permission.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "result", content = "detail")]
pub enum Outcome {
    /// Granted.
    Allowed,
    /// Refused (with the authorizer's reason when it gave one).
    Denied(String),
    /// The review itself failed.
    Error(String),
}

/// One permission asked of the API server.
#[derive(Clone, Debug, Serialize)]
pub struct Check {
    /// The permission.
    #[serde(serialize_with = "describe")]
    pub permission: Permission,
    /// The namespace asked about; `None`: all namespaces.
    pub namespace: Option<String>,
    /// Who needs it: `host function (playbooks)`, or the daemon's Events.
    pub needed_by: Vec<String>,
    /// The answer.
    pub outcome: Outcome,
}

fn describe<S: serde::Serializer>(p: &Permission, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&p.describe())
}

/// Everything the preflight found.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The API server URL it tried.
    pub server: String,
    /// The server's version (`v1.34.4`) when it answered.
    pub version: Option<String>,
    /// Why it could not be reached, when it could not.
    pub unreachable: Option<String>,
    /// The permission checks (none when unreachable).
    pub checks: Vec<Check>,
    /// The optional GitOps permissions ([`rbac::GITOPS`]), cluster-wide: information only,
    /// never a failure (without them `gitops: hold` on Argo CD and HelmRelease owners is a skip).
    #[serde(default)]
    pub optional: Vec<Check>,
}

impl Report {
    /// Reachable, and every permission granted.
    pub fn passed(&self) -> bool {
        self.unreachable.is_none() && self.checks.iter().all(|c| c.outcome == Outcome::Allowed)
    }

    /// The checks that did not come back allowed.
    pub fn missing(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| c.outcome != Outcome::Allowed)
    }

    /// What `aiops check --cluster` prints, one line each; the same text is logged at serve.
    pub fn lines(&self) -> Vec<String> {
        let mut out = self.required_lines();
        if let Some(line) = self.optional_line() {
            out.push(line);
        }
        out
    }

    /// The line about the optional GitOps permissions, when they were asked about.
    fn optional_line(&self) -> Option<String> {
        if self.optional.is_empty() {
            return None;
        }
        let missing: Vec<String> = self
            .optional
            .iter()
            .filter(|c| c.outcome != Outcome::Allowed)
            .map(|c| c.permission.describe())
            .collect();
        Some(if missing.is_empty() {
            "cluster: optional GitOps permissions granted: `gitops: hold` can pause Argo CD \
             Applications and Flux HelmReleases"
                .to_string()
        } else {
            format!(
                "cluster: optional GitOps permissions not granted ({}): without them `gitops: hold` \
                 on Argo CD and HelmRelease objects becomes skip (aiops manifests --gitops adds them; \
                 docs/gitops.md)",
                missing.join(", ")
            )
        })
    }

    fn required_lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(why) = &self.unreachable {
            out.push(format!(
                "cluster: API server {} unreachable: {why}",
                self.server
            ));
            return out;
        }
        out.push(format!(
            "cluster: API server {} reachable (Kubernetes {})",
            self.server,
            self.version.as_deref().unwrap_or("version unknown")
        ));
        let scope = |ns: &Option<String>| match ns {
            Some(ns) => format!(" in namespace {ns}"),
            None => String::new(),
        };
        let missing: Vec<&Check> = self.missing().collect();
        if missing.is_empty() {
            let distinct: std::collections::BTreeSet<_> =
                self.checks.iter().map(|c| c.permission).collect();
            out.push(format!(
                "cluster: all {} permissions the playbooks need are granted{}",
                distinct.len(),
                match self.namespaces().as_slice() {
                    [] => " in every namespace".to_string(),
                    ns => format!(" in namespaces {}", ns.join(", ")),
                }
            ));
            return out;
        }
        for c in &missing {
            let what = match &c.outcome {
                Outcome::Error(e) => format!(" (the review failed: {e})"),
                _ => String::new(),
            };
            out.push(format!(
                "cluster: missing permission: {}{} (needed by {}){what}",
                c.permission.describe(),
                scope(&c.namespace),
                c.needed_by.join(", ")
            ));
        }
        out.push(format!(
            "cluster: add to the ClusterRole{} (rules:):",
            if self.namespaces().is_empty() {
                ""
            } else {
                " bound in those namespaces"
            }
        ));
        let mut perms = std::collections::BTreeMap::new();
        for c in &missing {
            perms
                .entry(c.permission)
                .or_insert_with(|| c.needed_by.clone());
        }
        for rule in rbac::rules(&perms) {
            for line in rule.to_yaml(2).lines() {
                out.push(line.to_string());
            }
        }
        out
    }

    /// The namespaces asked about (empty: cluster-wide).
    fn namespaces(&self) -> Vec<String> {
        let mut ns: Vec<String> = self
            .checks
            .iter()
            .filter_map(|c| c.namespace.clone())
            .collect();
        ns.dedup();
        ns
    }

    /// Sets the preflight metrics from this report.
    pub fn export(&self, metrics: &crate::metrics::Metrics) {
        let reachable = self.unreachable.is_none();
        metrics
            .cluster_preflight
            .with_label_values(&["reachable"])
            .set(i64::from(reachable));
        metrics
            .cluster_preflight
            .with_label_values(&["permissions"])
            .set(i64::from(reachable && self.passed()));
        metrics.cluster_permission_missing.reset();
        for c in self.missing() {
            let resource = if c.permission.group.is_empty() {
                c.permission.resource.to_string()
            } else {
                format!("{}/{}", c.permission.group, c.permission.resource)
            };
            metrics
                .cluster_permission_missing
                .with_label_values(&[c.permission.verb, resource.as_str()])
                .set(1);
        }
    }
}

/// The connection settings of `settings`, or [`Error::NotConfigured`].
pub fn connect_of(settings: &Settings) -> Result<Connect, Error> {
    let c = &settings.cluster;
    if c.kubeconfig.is_none() && !c.in_cluster {
        return Err(Error::NotConfigured);
    }
    Ok(Connect {
        kubeconfig: c.kubeconfig.clone(),
        context: c.context.clone(),
        in_cluster: c.in_cluster,
        api_url: c.api_url.clone(),
    })
}

/// Runs the preflight: the server's version, then a review of every permission the rules'
/// playbooks need (in each of `allow`'s namespaces, or cluster-wide when it is empty).
pub async fn run(connect: &Connect, defs: &Definitions, allow: &[String]) -> Result<Report, Error> {
    let config = connect.config().await.map_err(Error::Config)?;
    let server = config.cluster_url.to_string();
    let server = server.trim_end_matches('/').to_string();
    let client = kube::Client::try_from(config)
        .map_err(|e| Error::Config(format!("Kubernetes client: {e}")))?;
    let mut report = Report {
        server,
        version: None,
        unreachable: None,
        checks: Vec::new(),
        optional: Vec::new(),
    };
    match tokio::time::timeout(CALL_TIMEOUT, client.apiserver_version()).await {
        Ok(Ok(info)) => report.version = Some(info.git_version),
        Ok(Err(e)) => {
            report.unreachable = Some(e.to_string());
            return Ok(report);
        }
        Err(_) => {
            report.unreachable = Some(format!("no answer within {CALL_TIMEOUT:?}"));
            return Ok(report);
        }
    }
    let namespaces: Vec<Option<String>> = if allow.is_empty() {
        vec![None]
    } else {
        allow.iter().cloned().map(Some).collect()
    };
    let reviews: Api<SelfSubjectAccessReview> = Api::all(client);
    let used = defs.rules.playbooks();
    for (permission, needed_by) in rbac::needed(&defs.playbooks, &used) {
        for namespace in &namespaces {
            let outcome = review(&reviews, permission, namespace.as_deref()).await;
            report.checks.push(Check {
                permission,
                namespace: namespace.clone(),
                needed_by: needed_by.clone(),
                outcome,
            });
        }
    }
    // Applications and HelmReleases may live in any namespace: asked cluster-wide.
    for &permission in rbac::GITOPS {
        let outcome = review(&reviews, permission, None).await;
        report.optional.push(Check {
            permission,
            namespace: None,
            needed_by: vec![rbac::GITOPS_USER.to_string()],
            outcome,
        });
    }
    Ok(report)
}

async fn review(
    api: &Api<SelfSubjectAccessReview>,
    p: Permission,
    namespace: Option<&str>,
) -> Outcome {
    // A subresource (`deployments/scale`) is asked for as resource + subresource, as the API
    // server's authorizer sees the request.
    let (resource, subresource) = match p.resource.split_once('/') {
        Some((r, sub)) => (r, Some(sub.to_string())),
        None => (p.resource, None),
    };
    let body = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                group: Some(p.group.to_string()),
                resource: Some(resource.to_string()),
                subresource,
                verb: Some(p.verb.to_string()),
                namespace: namespace.map(str::to_string),
                ..ResourceAttributes::default()
            }),
            ..SelfSubjectAccessReviewSpec::default()
        },
        ..SelfSubjectAccessReview::default()
    };
    match tokio::time::timeout(CALL_TIMEOUT, api.create(&PostParams::default(), &body)).await {
        Ok(Ok(r)) => match r.status {
            Some(s) if s.allowed => Outcome::Allowed,
            Some(s) => Outcome::Denied(s.reason.unwrap_or_default()),
            None => Outcome::Error("the review came back without a status".into()),
        },
        Ok(Err(e)) => Outcome::Error(e.to_string()),
        Err(_) => Outcome::Error(format!("no answer within {CALL_TIMEOUT:?}")),
    }
}

/// The latest preflight result, shared with `/-/ready` (which shows it, never waits on it).
#[derive(Clone, Debug)]
pub struct Shared(Arc<RwLock<serde_json::Value>>);

impl Default for Shared {
    fn default() -> Self {
        Shared(Arc::new(RwLock::new(
            serde_json::json!({"status": "not configured"}),
        )))
    }
}

impl Shared {
    /// The detail `/-/ready` shows under `cluster`.
    pub fn snapshot(&self) -> serde_json::Value {
        self.0.read().map(|v| v.clone()).unwrap_or_default()
    }

    fn set(&self, v: serde_json::Value) {
        if let Ok(mut g) = self.0.write() {
            *g = v;
        }
    }

    /// Records a report: `{"status": "ok" | "missing permissions" | "unreachable", ...}`.
    pub fn record(&self, report: &Report) {
        let status = if report.unreachable.is_some() {
            "unreachable"
        } else if report.passed() {
            "ok"
        } else {
            "missing permissions"
        };
        let missing: Vec<String> = report
            .missing()
            .map(|c| match &c.namespace {
                Some(ns) => format!("{} in namespace {ns}", c.permission.describe()),
                None => c.permission.describe(),
            })
            .collect();
        self.set(serde_json::json!({
            "status": status,
            "server": report.server,
            "version": report.version,
            "error": report.unreachable,
            "missing": missing,
            "checked_at": chrono::Utc::now().to_rfc3339(),
        }));
    }
}

/// How often `aiops serve` repeats the preflight: soon while something is wrong (a binding
/// being fixed shows up within a minute), rarely once all is well.
const RECHECK_FAILING: Duration = Duration::from_secs(60);
const RECHECK_PASSING: Duration = Duration::from_secs(600);

/// Starts the serve-time preflight in the background (none when no Kubernetes backend is
/// configured): logs each result as it changes, exports the metrics, records it for `/-/ready`.
pub fn spawn(
    settings: &Settings,
    definitions: impl Fn() -> Arc<Definitions> + Send + 'static,
    metrics: crate::metrics::Metrics,
    shared: Shared,
) -> Option<tokio::task::JoinHandle<()>> {
    let connect = connect_of(settings).ok()?;
    let allow = settings.guard.namespaces.allow.clone();
    shared.set(serde_json::json!({"status": "checking"}));
    Some(tokio::spawn(async move {
        let mut last: Option<Vec<String>> = None;
        loop {
            let defs = definitions();
            let wait = match run(&connect, &defs, &allow).await {
                Ok(report) => {
                    report.export(&metrics);
                    shared.record(&report);
                    let lines = report.lines();
                    // Logged when it changes, not every ten minutes.
                    if last.as_ref() != Some(&lines) {
                        if report.passed() {
                            tracing::info!(
                                server = %report.server,
                                version = report.version.as_deref().unwrap_or(""),
                                "{}",
                                lines.join("\n")
                            );
                        } else {
                            tracing::warn!(server = %report.server, "{}", lines.join("\n"));
                        }
                        last = Some(lines);
                    }
                    if report.passed() {
                        RECHECK_PASSING
                    } else {
                        RECHECK_FAILING
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cluster preflight could not run");
                    shared.set(serde_json::json!({"status": "error", "error": e.to_string()}));
                    RECHECK_FAILING
                }
            };
            tokio::time::sleep(wait).await;
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn perm(group: &'static str, resource: &'static str, verb: &'static str) -> Permission {
        Permission {
            group,
            resource,
            verb,
        }
    }

    fn report(checks: Vec<Check>) -> Report {
        Report {
            server: "https://127.0.0.1:6443".into(),
            version: Some("v1.34.4".into()),
            unreachable: None,
            checks,
            optional: Vec::new(),
        }
    }

    fn gitops_checks(outcome: &Outcome) -> Vec<Check> {
        rbac::GITOPS
            .iter()
            .map(|&permission| Check {
                permission,
                namespace: None,
                needed_by: vec![rbac::GITOPS_USER.into()],
                outcome: outcome.clone(),
            })
            .collect()
    }

    #[test]
    fn missing_gitops_permissions_are_information_that_hold_becomes_skip_never_a_failure() {
        let mut r = report(Vec::new());
        r.optional = gitops_checks(&Outcome::Denied(String::new()));
        assert!(r.passed());
        let last = r.lines().pop().unwrap();
        assert!(
            last.contains("optional GitOps permissions not granted"),
            "{last}"
        );
        assert!(last.contains("get argoproj.io/applications"), "{last}");
        assert!(
            last.contains(
                "without them `gitops: hold` on Argo CD and HelmRelease objects becomes skip"
            ),
            "{last}"
        );
        let m = crate::metrics::Metrics::new();
        r.export(&m);
        assert!(
            m.render()
                .contains("aiops_cluster_preflight{check=\"permissions\"} 1")
        );
        r.optional = gitops_checks(&Outcome::Allowed);
        let last = r.lines().pop().unwrap();
        assert!(
            last.contains("optional GitOps permissions granted"),
            "{last}"
        );
    }

    #[test]
    fn a_missing_permission_is_named_with_who_needs_it_and_the_rule_to_add() {
        let r = report(vec![
            Check {
                permission: perm("apps", "deployments", "get"),
                namespace: None,
                needed_by: vec!["restart (restart)".into()],
                outcome: Outcome::Allowed,
            },
            Check {
                permission: perm("apps", "deployments", "patch"),
                namespace: None,
                needed_by: vec!["restart (restart)".into()],
                outcome: Outcome::Denied(String::new()),
            },
        ]);
        assert!(!r.passed());
        assert_eq!(
            r.lines(),
            [
                "cluster: API server https://127.0.0.1:6443 reachable (Kubernetes v1.34.4)",
                "cluster: missing permission: patch apps/deployments (needed by restart (restart))",
                "cluster: add to the ClusterRole (rules:):",
                "  - apiGroups: [\"apps\"]",
                "    resources: [\"deployments\"]",
                "    verbs: [\"patch\"]",
            ]
        );
        let m = crate::metrics::Metrics::new();
        r.export(&m);
        let text = m.render();
        assert!(
            text.contains(
                "aiops_cluster_permission_missing{resource=\"apps/deployments\",verb=\"patch\"} 1"
            ),
            "{text}"
        );
        assert!(text.contains("aiops_cluster_preflight{check=\"permissions\"} 0"));
        assert!(text.contains("aiops_cluster_preflight{check=\"reachable\"} 1"));
    }

    #[test]
    fn an_unreachable_server_is_named_by_its_url() {
        let r = Report {
            unreachable: Some("connection refused".into()),
            version: None,
            ..report(Vec::new())
        };
        assert!(!r.passed());
        assert_eq!(
            r.lines(),
            ["cluster: API server https://127.0.0.1:6443 unreachable: connection refused"]
        );
        let shared = Shared::default();
        shared.record(&r);
        assert_eq!(shared.snapshot()["status"], "unreachable");
    }

    #[test]
    fn without_a_kubeconfig_there_is_nothing_to_check() {
        let err = connect_of(&Settings::default()).unwrap_err();
        assert!(err.to_string().contains("cluster.kubeconfig"), "{err}");
    }
}
