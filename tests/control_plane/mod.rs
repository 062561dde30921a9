//! A real Kubernetes control plane for a test binary: etcd, kube-apiserver (RBAC),
//! kube-controller-manager, kube-scheduler and fake Ready nodes (`tests/kube-env`, started by
//! `scripts/kube-env up`). Named for what it is, as `tests/fakeapi` is for its fake.
//!
//! One control plane per test binary, started on first use in its own temp directory; it stops
//! when the binary exits: the supervisor watches this process's PID (statics are never dropped,
//! and a panicking binary must not leave etcd behind) and its components die with it
//! (PR_SET_PDEATHSIG). `AIOPS_TEST_KUBECONFIG` points the tests at a control plane already
//! running instead (`scripts/kube-env up` by hand). Binaries not built: outside CI the tests say
//! how to build them and skip; in CI (`CI=true`) that is a failure.
//!
//! Each test works in its own namespace ([`KubeEnv::namespace`]), so tests share the cluster
//! without seeing each other's objects.

#![allow(dead_code)]

pub mod reconciler;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::{Value, json};

/// The running control plane this binary's tests use.
pub struct KubeEnv {
    /// An admin (system:masters) kubeconfig.
    pub kubeconfig: PathBuf,
}

/// The CRDs of `tests/kube-env/crds.txt` (ServiceMonitor, PrometheusRule, Certificate), as
/// their upstream modules ship them, installed by server-side apply; waits until the API
/// server serves each (Established).
async fn install_crds(kubeconfig: &Path, dir: &Path) -> Result<(), String> {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let api: Api<CustomResourceDefinition> = Api::all(client_from(kubeconfig).await);
    let mut names = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for file in files {
        let text = std::fs::read_to_string(&file).map_err(|e| e.to_string())?;
        let crd: CustomResourceDefinition =
            serde_yaml::from_str(&text).map_err(|e| format!("{}: {e}", file.display()))?;
        let name = crd.metadata.name.clone().unwrap();
        api.patch(
            &name,
            &kube::api::PatchParams::apply("aiops-tests").force(),
            &kube::api::Patch::Apply(&crd),
        )
        .await
        .map_err(|e| format!("installing CRD {name}: {e}"))?;
        names.push(name);
    }
    for name in names {
        wait_until(&format!("CRD {name} Established"), TIMEOUT, || async {
            api.get(&name).await.is_ok_and(|c| {
                c.status
                    .and_then(|s| s.conditions)
                    .unwrap_or_default()
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True")
            })
        })
        .await;
    }
    Ok(())
}

static ENV: OnceLock<Result<KubeEnv, String>> = OnceLock::new();

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/kube-env")
}

fn start() -> Result<KubeEnv, String> {
    let cached = Command::new(script())
        .arg("cached")
        .output()
        .map_err(|e| format!("running scripts/kube-env: {e}"))?;
    let env = if cached.status.success() {
        up()?
    } else if let Ok(path) = std::env::var("AIOPS_TEST_KUBECONFIG") {
        return Err(format!(
            "the control plane binaries (and their CRDs) are not built: run `scripts/kube-env build` \
             to use the control plane at {path}"
        ));
    } else {
        return Err(
            "the control plane binaries are not built: run `scripts/kube-env build` \
             (the first build compiles Kubernetes from Go modules: 30+ minutes on two cores), \
             or point AIOPS_TEST_KUBECONFIG at a running one (`scripts/kube-env up`)"
                .into(),
        );
    };
    let bin = PathBuf::from(String::from_utf8_lossy(&cached.stdout).trim());
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(install_crds(&env.kubeconfig, &bin.join("crds")))?;
    Ok(env)
}

/// Starts a control plane for this binary, or takes the one of `AIOPS_TEST_KUBECONFIG`.
fn up() -> Result<KubeEnv, String> {
    if let Ok(path) = std::env::var("AIOPS_TEST_KUBECONFIG") {
        return Ok(KubeEnv {
            kubeconfig: PathBuf::from(path),
        });
    }
    let dir = std::env::temp_dir().join(format!(
        "aiops-kube-env-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    let started = Instant::now();
    let out = Command::new(script())
        .arg("up")
        .env("KUBE_ENV_DIR", &dir)
        .env("KUBE_ENV_PARENT_PID", std::process::id().to_string())
        .env("KUBE_ENV_REMOVE_DIR", "1")
        .output()
        .map_err(|e| format!("running scripts/kube-env up: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(format!(
            "scripts/kube-env up failed ({}):\n{stderr}",
            out.status
        ));
    }
    let kubeconfig = stdout
        .lines()
        .last()
        .map(PathBuf::from)
        .ok_or_else(|| format!("scripts/kube-env up printed no kubeconfig:\n{stderr}"))?;
    eprintln!(
        "kube-env: control plane up in {:.1}s ({})",
        started.elapsed().as_secs_f64(),
        kubeconfig.display()
    );
    Ok(KubeEnv { kubeconfig })
}

impl KubeEnv {
    /// The shared control plane, started on first use. `None` (skip) when the binaries are not
    /// built, outside CI only.
    pub async fn get() -> Option<&'static KubeEnv> {
        let env = tokio::task::spawn_blocking(|| ENV.get_or_init(start))
            .await
            .expect("starting the control plane panicked");
        match env {
            Ok(env) => Some(env),
            Err(why) if in_ci() => panic!("a real control plane is required in CI: {why}"),
            Err(why) => {
                if why.contains("not built") {
                    eprintln!("skipping: {why}");
                    None
                } else {
                    panic!("{why}")
                }
            }
        }
    }

    /// A new client as the admin. One per test: a kube client belongs to the runtime that made it.
    pub async fn client(&self) -> kube::Client {
        client_from(&self.kubeconfig).await
    }

    /// Creates a fresh namespace named after the test; deleted again when the guard drops.
    pub async fn namespace(&self, prefix: &str) -> TestNamespace {
        let ns = self.namespace_to_be_created(prefix);
        let name = ns.name.clone();
        let api: Api<Namespace> = Api::all(self.client().await);
        api.create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": name}})).unwrap(),
        )
        .await
        .unwrap();
        // Pods are refused until the ServiceAccount controller made `default` in it.
        let sa: Api<k8s_openapi::api::core::v1::ServiceAccount> =
            Api::namespaced(self.client().await, &name);
        wait_until(
            "the namespace's default ServiceAccount",
            TIMEOUT,
            || async { sa.get_opt("default").await.unwrap().is_some() },
        )
        .await;
        ns
    }

    /// A fresh namespace name (the test's `prefix` and 8 random hex digits) that the code under
    /// test is to create, as `aiops deploy` applies the app's Namespace; deleted, with all in
    /// it, when the guard drops.
    pub fn namespace_to_be_created(&self, prefix: &str) -> TestNamespace {
        let name = format!(
            "{}-{}",
            prefix
                .replace('_', "-")
                .chars()
                .take(40)
                .collect::<String>(),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        TestNamespace {
            name,
            kubeconfig: self.kubeconfig.clone(),
        }
    }
}

/// A kube client from a kubeconfig file.
pub async fn client_from(kubeconfig: &Path) -> kube::Client {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).unwrap();
    let config =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .unwrap();
    kube::Client::try_from(config).unwrap()
}

/// A namespace of one test.
pub struct TestNamespace {
    pub name: String,
    kubeconfig: PathBuf,
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        let (name, kubeconfig) = (self.name.clone(), self.kubeconfig.clone());
        // Drop needs its own runtime: the test's may be shutting down. A cluster reused through
        // AIOPS_TEST_KUBECONFIG would otherwise fill up with test namespaces.
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async move {
                    let api: Api<Namespace> = Api::all(client_from(&kubeconfig).await);
                    let _ = api.delete(&name, &DeleteParams::background()).await;
                });
        })
        .join();
    }
}

/// How long a condition on the real cluster may take: controllers and the fake kubelet react in
/// well under a second, but the machine is shared and loaded.
pub const TIMEOUT: Duration = Duration::from_secs(90);

/// Polls `cond` every 100 ms until it holds; panics naming `what` after `limit`.
pub async fn wait_until<F, Fut>(what: &str, limit: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if cond().await {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// RBAC: a ServiceAccount bound to exactly a printed ClusterRole.

/// The `rules` of the ClusterRole that `aiops ARGS` prints: `["manifests"]` for the daemon's
/// repair role, `["manifests", "--deploy-role"]` for the role of `aiops deploy`.
pub fn printed_cluster_role_rules(args: &[&str]) -> Vec<Value> {
    // No environment and a directory without settings: the role printed by default.
    let out = Command::new(env!("CARGO_BIN_EXE_aiops"))
        .args(args)
        .current_dir(std::env::temp_dir())
        .env_clear()
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let role = serde_yaml::Deserializer::from_str(&stdout)
        .map(|doc| <Value as serde::Deserialize>::deserialize(doc).unwrap())
        .find(|doc| doc["kind"] == "ClusterRole")
        .unwrap_or_else(|| panic!("a ClusterRole in aiops {}", args.join(" ")));
    role["rules"].as_array().unwrap().clone()
}

/// `rules` without the one rule whose resources include `resource` (exactly one is removed).
pub fn without_rule(rules: &[Value], resource: &str) -> Vec<Value> {
    let kept: Vec<Value> = rules
        .iter()
        .filter(|r| {
            !r["resources"]
                .as_array()
                .unwrap()
                .iter()
                .any(|x| x == resource)
        })
        .cloned()
        .collect();
    assert_eq!(kept.len(), rules.len() - 1, "one rule names {resource}");
    kept
}

/// The user name the API server gives ServiceAccount `aiops` of `ns` (what a refusal names).
pub fn service_account_user(ns: &str) -> String {
    format!("system:serviceaccount:{ns}:aiops")
}

/// A kubeconfig (written to `out`) for a new ServiceAccount `aiops` in `sa_ns`, bound by a
/// ClusterRoleBinding to a new ClusterRole `aiops-SA_NS` with exactly `rules`, authenticated by
/// a token from the TokenRequest API. Waits until the authorizer knows the binding.
pub async fn service_account_kubeconfig(
    env: &KubeEnv,
    sa_ns: &str,
    rules: &[Value],
    out: &Path,
) -> PathBuf {
    use k8s_openapi::api::authentication::v1::TokenRequest;
    use k8s_openapi::api::authorization::v1::SelfSubjectRulesReview;
    use k8s_openapi::api::core::v1::ServiceAccount;
    use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
    let admin = env.client().await;
    let sas: Api<ServiceAccount> = Api::namespaced(admin.clone(), sa_ns);
    sas.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "aiops"}})).unwrap(),
    )
    .await
    .unwrap();
    let role_name = format!("aiops-{sa_ns}");
    Api::<ClusterRole>::all(admin.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": role_name}, "rules": rules}))
                .unwrap(),
        )
        .await
        .unwrap();
    Api::<ClusterRoleBinding>::all(admin.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": role_name},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role_name},
                "subjects": [{"kind": "ServiceAccount", "name": "aiops", "namespace": sa_ns}]
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let token = sas
        .create_token_request(
            "aiops",
            &PostParams::default(),
            &serde_json::from_value::<TokenRequest>(json!({"spec": {"expirationSeconds": 3600}}))
                .unwrap(),
        )
        .await
        .unwrap()
        .status
        .unwrap()
        .token;
    let mut kc = kube::config::Kubeconfig::read_from(&env.kubeconfig).unwrap();
    for auth in &mut kc.auth_infos {
        auth.auth_info = Some(kube::config::AuthInfo {
            token: Some(token.clone().into()),
            ..kube::config::AuthInfo::default()
        });
    }
    std::fs::write(out, serde_yaml::to_string(&kc).unwrap()).unwrap();
    // The authorizer learns bindings from a watch: wait until it lists every rule of the role
    // for this account (for a role without rules, until the token authenticates at all).
    let reviews: Api<SelfSubjectRulesReview> = Api::all(client_from(out).await);
    wait_until("RBAC to know the new binding", TIMEOUT, || async {
        let review = reviews
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"spec": {"namespace": sa_ns}})).unwrap(),
            )
            .await;
        let Ok(review) = review else { return false };
        let known: Vec<Value> = review
            .status
            .map(|s| s.resource_rules)
            .unwrap_or_default()
            .into_iter()
            .map(|r| json!({"resources": r.resources, "verbs": r.verbs}))
            .collect();
        rules.iter().all(|rule| {
            known.contains(&json!({"resources": rule["resources"], "verbs": rule["verbs"]}))
        })
    })
    .await;
    out.to_path_buf()
}

// ---------------------------------------------------------------------------------------------
// Deployments as the real controller reports them.

/// kubectl's rollout-status condition for a Deployment, read from the real controller's status.
pub fn deployment_rolled_out(d: &Deployment) -> bool {
    let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let s = d.status.clone().unwrap_or_default();
    d.metadata.generation <= s.observed_generation
        && s.updated_replicas == Some(want)
        && s.replicas == Some(want)
        && s.available_replicas == Some(want)
}

/// Waits until Deployment `ns/name` rolled out ([`deployment_rolled_out`]); returns it.
pub async fn wait_deployment_rolled_out(client: &kube::Client, ns: &str, name: &str) -> Deployment {
    let api: Api<Deployment> = Api::namespaced(client.clone(), ns);
    wait_until(
        &format!("deployment {ns}/{name} to roll out"),
        TIMEOUT,
        || async { deployment_rolled_out(&api.get(name).await.unwrap()) },
    )
    .await;
    api.get(name).await.unwrap()
}

/// The image of `container` in a Deployment's pod template.
pub fn image_of(d: &Deployment, container: &str) -> String {
    d.spec
        .clone()
        .unwrap()
        .template
        .spec
        .unwrap()
        .containers
        .into_iter()
        .find(|c| c.name == container)
        .unwrap()
        .image
        .unwrap()
}

/// The ReplicaSets the deployment controller made for `name`, by revision.
pub async fn replica_sets(
    client: &kube::Client,
    ns: &str,
    name: &str,
) -> std::collections::BTreeMap<i64, k8s_openapi::api::apps::v1::ReplicaSet> {
    let api: Api<k8s_openapi::api::apps::v1::ReplicaSet> = Api::namespaced(client.clone(), ns);
    api.list(&kube::api::ListParams::default().labels(&format!("app={name}")))
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|rs| {
            let revision = rs
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get("deployment.kubernetes.io/revision"))
                .and_then(|r| r.parse().ok())
                .unwrap();
            (revision, rs)
        })
        .collect()
}

/// The pod template's annotations of a Deployment.
pub fn template_annotations(d: &Deployment) -> std::collections::BTreeMap<String, String> {
    d.spec
        .clone()
        .unwrap()
        .template
        .metadata
        .unwrap()
        .annotations
        .unwrap_or_default()
}

/// (request, limit) of a container's memory in a pod spec.
pub fn memory_in(
    spec: &k8s_openapi::api::core::v1::PodSpec,
    container: &str,
) -> (Option<String>, Option<String>) {
    let c = spec
        .containers
        .iter()
        .find(|c| c.name == container)
        .unwrap();
    let r = c.resources.clone().unwrap_or_default();
    let get = |m: Option<
        std::collections::BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
    >| { m.and_then(|m| m.get("memory").map(|q| q.0.clone())) };
    (get(r.requests), get(r.limits))
}
