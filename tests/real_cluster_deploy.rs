//! `aiops deploy` against a real control plane (`tests/control_plane`), with the upstream
//! ServiceMonitor, PrometheusRule and Certificate CRDs installed (tests/kube-env/crds.txt), run
//! as a ServiceAccount bound to exactly the ClusterRole `aiops manifests --deploy-role` prints:
//! server-side apply of every object `aiops render` produces, a redeploy, field ownership (`aiops`
//! as field manager) and a conflict with another manager. Without any one rule of that role the
//! deploy stops at the first object the rule covers, with a clear final error: the role is
//! minimal.
//!
//! Its own binary (and control plane) beside tests/real_cluster.rs, which proves the daemon's
//! repair role: the two roles are separate, and so are their tests. Every test deploys the
//! django case (every kind deploy applies) into a namespace of its own.

mod common;
mod control_plane;

use std::path::PathBuf;

use aiops::deploy::Manifest;
use common::Db;
use control_plane::{
    KubeEnv, TestNamespace, image_of, printed_cluster_role_rules, service_account_kubeconfig,
    service_account_user, wait_deployment_rolled_out, without_rule,
};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use serde_json::{Value, json};

/// The rules of the deploy role, as `aiops manifests --deploy-role` prints them.
fn deploy_role() -> Vec<Value> {
    printed_cluster_role_rules(&["manifests", "--deploy-role"])
}

/// A deploy about to run as a ServiceAccount with exactly some rules.
struct DeployAs {
    /// The ServiceAccount's kubeconfig.
    kubeconfig: PathBuf,
    /// The app spec: the django case (every kind deploy applies) in `app_ns`.
    case: PathBuf,
    /// The objects `aiops render` makes of `case`, in apply order.
    objects: Vec<Manifest>,
    /// The app's namespace, which the deploy creates (deleted at the end).
    app_ns: TestNamespace,
    /// The ServiceAccount's namespace.
    sa_ns: TestNamespace,
    /// Holds the kubeconfig, the case and the SQLite store.
    dir: tempfile::TempDir,
}

/// Arranges a deploy of the django case into a new namespace named after `prefix`, as the
/// ServiceAccount `aiops` bound to exactly `rules`.
async fn deploy_as(env: &KubeEnv, prefix: &str, rules: &[Value]) -> DeployAs {
    let sa_ns = env.namespace(prefix).await;
    let app_ns = env.namespace_to_be_created(&format!("{prefix}-app"));
    let dir = tempfile::tempdir().unwrap();
    let golden = common::repo().join("tests/golden/deploy/django-standard.app.yaml");
    let case = dir.path().join("app.yaml");
    let text = std::fs::read_to_string(golden).unwrap();
    std::fs::write(&case, format!("{text}namespace: {}\n", app_ns.name)).unwrap();
    let spec = aiops::deploy::AppSpec::load(&case).unwrap();
    let objects = aiops::deploy::render(&spec, &Default::default())
        .unwrap()
        .objects;
    let kubeconfig =
        service_account_kubeconfig(env, &sa_ns.name, rules, &dir.path().join("kubeconfig")).await;
    DeployAs {
        kubeconfig,
        case,
        objects,
        app_ns,
        sa_ns,
        dir,
    }
}

/// What `aiops deploy` said.
struct Deployed {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl Deployed {
    fn text(&self) -> String {
        format!("stdout:\n{}\nstderr:\n{}", self.stdout, self.stderr)
    }
}

impl DeployAs {
    /// Runs `aiops deploy` on the case, as the ServiceAccount, with a SQLite store kept across
    /// runs (so a redeploy is the app's second deployment).
    async fn run(&self) -> Deployed {
        let db = common::TestDb::new(Db::Sqlite, self.dir.path()).await;
        let envs = std::collections::HashMap::from([
            ("AIOPS_KUBECONFIG", self.kubeconfig.display().to_string()),
            ("AIOPS_DATABASE_URL", db.url.clone()),
            ("AIOPS_DEPLOY_POLL", "100ms".to_string()),
            ("AIOPS_DEPLOY_TIMEOUT", "90s".to_string()),
            ("AIOPS_LOG", "warn".to_string()),
        ]);
        let (dir, case) = (
            self.dir.path().to_path_buf(),
            self.case.display().to_string(),
        );
        let (status, stdout, stderr) =
            tokio::task::spawn_blocking(move || common::run_cli(&dir, &["deploy", &case], &envs))
                .await
                .unwrap();
        Deployed {
            ok: status.success(),
            stdout,
            stderr,
        }
    }
}

fn managers(obj: &Value) -> Vec<(String, String)> {
    obj["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["manager"].as_str().unwrap().to_string(),
                f["operation"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The object `m` as the API server holds it (through discovery, as kubectl finds it).
async fn server_copy(
    client: &kube::Client,
    discovery: &kube::Discovery,
    m: &Manifest,
) -> Option<Value> {
    let (group, version) = m
        .api_version()
        .rsplit_once('/')
        .unwrap_or(("", m.api_version()));
    let gvk = kube::api::GroupVersionKind::gvk(group, version, m.kind());
    let (ar, caps) = discovery
        .resolve_gvk(&gvk)
        .unwrap_or_else(|| panic!("{gvk:?} is not served"));
    let api: Api<DynamicObject> = match caps.scope {
        kube::discovery::Scope::Namespaced => {
            Api::namespaced_with(client.clone(), m.namespace().unwrap(), &ar)
        }
        kube::discovery::Scope::Cluster => Api::all_with(client.clone(), &ar),
    };
    api.get_opt(m.name())
        .await
        .unwrap()
        .map(|o| serde_json::to_value(o).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn as_the_printed_deploy_role_deploy_applies_every_rendered_object_and_a_redeploy_takes_back_a_hand_edit()
 {
    let Some(env) = KubeEnv::get().await else {
        return;
    };
    let client = env.client().await;
    let setup = deploy_as(env, "deploy-role", &deploy_role()).await;
    let out = setup.run().await;
    assert!(out.ok, "{}", out.text());

    // Every object `aiops render` produces exists on the real server, applied by aiops.
    assert!(setup.objects.len() >= 13, "{}", setup.objects.len());
    let discovery = kube::Discovery::new(client.clone()).run().await.unwrap();
    for m in &setup.objects {
        let got = server_copy(&client, &discovery, m)
            .await
            .unwrap_or_else(|| panic!("{} was not applied", m.describe()));
        assert!(
            managers(&got).contains(&("aiops".into(), "Apply".into())),
            "{}: {:?}",
            m.describe(),
            managers(&got)
        );
    }
    let ns = setup.app_ns.name.as_str();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let d = wait_deployment_rolled_out(&client, ns, "blog").await;
    let pod = d.spec.clone().unwrap().template.spec.unwrap();
    let container = pod.containers[0].name.clone();
    let image = image_of(&d, &container);

    // Someone changes the image by hand (another field manager)...
    deployments
        .patch(
            "blog",
            &PatchParams { field_manager: Some("hand-edit".into()), ..PatchParams::default() },
            &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [{"name": container, "image": "blog:hotfix"}]}}}})),
        )
        .await
        .unwrap();
    // ...which an apply without force would now conflict on: the server's own conflict.
    let unforced = deployments
        .patch(
            "blog",
            &PatchParams::apply("aiops"),
            &Patch::Apply(json!({"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "blog", "namespace": ns},
                "spec": {"template": {"spec": {"containers": [{"name": container, "image": image}]}}}})),
        )
        .await;
    assert!(
        matches!(&unforced, Err(kube::Error::Api(s)) if s.code == 409),
        "{unforced:?}"
    );

    // The redeploy (patch only: everything exists) forces, as documented: the spec wins, and
    // aiops owns the image again.
    let out = setup.run().await;
    assert!(out.ok, "{}", out.text());
    assert!(
        out.stdout.contains("deployment 2 of blog: succeeded"),
        "{}",
        out.text()
    );
    let d = wait_deployment_rolled_out(&client, ns, "blog").await;
    assert_eq!(image_of(&d, &container), image);
    let fields = serde_json::to_value(&d.metadata.managed_fields).unwrap();
    let owner_of_image = fields
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["fieldsV1"].to_string().contains("f:image"))
        .map(|f| f["manager"].as_str().unwrap().to_string())
        .collect::<Vec<_>>();
    assert_eq!(owner_of_image, ["aiops"], "{fields:#}");
}

/// The line `aiops deploy` ends with when the API server refuses `verb` on the first object of
/// `setup` whose resource is `resource`: the server's own words, then what to grant.
fn refusal(setup: &DeployAs, resource: &str, verb: &str) -> (String, Manifest) {
    let m = setup
        .objects
        .iter()
        .find(|m| aiops::deploy::apply::resource_of(m).unwrap().plural == resource)
        .unwrap_or_else(|| panic!("the django case renders no {resource}"))
        .clone();
    let group = aiops::deploy::apply::resource_of(&m).unwrap().group;
    // Every object deploy applies is namespaced but the Namespace, which the real API server
    // places in itself ("in the namespace X", not "at the cluster scope").
    let ns = m.namespace().unwrap_or(m.name());
    let line = format!(
        "deployment 1 of blog failed: applying {}: {resource}{} \"{}\" is forbidden: User \"{}\" \
         cannot {verb} resource \"{resource}\" in API group \"{group}\" in the namespace \"{ns}\"; \
         the account aiops \
         deploy runs as needs the ClusterRole that `aiops manifests --deploy-role` prints",
        m.describe(),
        if group.is_empty() {
            String::new()
        } else {
            format!(".{group}")
        },
        m.name(),
        service_account_user(&setup.sa_ns.name),
    );
    (line, m)
}

/// Deploys as the printed deploy role without the rule on `resource`: the deploy fails at the
/// first object that rule covers, with the server's refusal and what to grant as its final
/// line, and that object is not on the server.
async fn without_rule_deploy_stops_at_the_first_object_it_covers(prefix: &str, resource: &str) {
    let Some(env) = KubeEnv::get().await else {
        return;
    };
    let setup = deploy_as(env, prefix, &without_rule(&deploy_role(), resource)).await;
    let out = setup.run().await;
    assert!(!out.ok, "{}", out.text());
    let (expected, refused) = refusal(&setup, resource, "patch");
    assert_eq!(
        out.stderr
            .lines()
            .filter(|l| l.starts_with("deployment "))
            .collect::<Vec<_>>(),
        [expected.as_str()],
        "{}",
        out.text()
    );
    let client = env.client().await;
    let discovery = kube::Discovery::new(client.clone()).run().await.unwrap();
    assert!(
        server_copy(&client, &discovery, &refused).await.is_none(),
        "{} must not exist",
        refused.describe()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_core_rule_deploy_is_refused_at_the_namespace() {
    without_rule_deploy_stops_at_the_first_object_it_covers("deploy-core", "namespaces").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_networking_rule_deploy_is_refused_at_the_network_policy() {
    without_rule_deploy_stops_at_the_first_object_it_covers("deploy-net", "networkpolicies").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_deployments_rule_deploy_is_refused_at_the_first_deployment() {
    without_rule_deploy_stops_at_the_first_object_it_covers("deploy-apps", "deployments").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_jobs_rule_deploy_is_refused_at_the_migrations_job() {
    without_rule_deploy_stops_at_the_first_object_it_covers("deploy-jobs", "jobs").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_cert_manager_rule_deploy_is_refused_at_the_certificate() {
    without_rule_deploy_stops_at_the_first_object_it_covers("deploy-cert", "certificates").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_monitoring_rule_deploy_is_refused_at_the_service_monitor() {
    without_rule_deploy_stops_at_the_first_object_it_covers("deploy-mon", "servicemonitors").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_create_a_first_deploy_is_refused_at_the_namespace_it_would_create() {
    let Some(env) = KubeEnv::get().await else {
        return;
    };
    // The printed role with only the verbs of a redeploy: server-side apply of an object that
    // does not exist yet is also checked as `create`.
    let rules: Vec<Value> = deploy_role()
        .into_iter()
        .map(|mut r| {
            let verbs: Vec<Value> = r["verbs"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|v| *v != "create")
                .cloned()
                .collect();
            r["verbs"] = Value::Array(verbs);
            r
        })
        .collect();
    let setup = deploy_as(env, "deploy-nocreate", &rules).await;
    let out = setup.run().await;
    assert!(!out.ok, "{}", out.text());
    let (expected, _) = refusal(&setup, "namespaces", "create");
    assert_eq!(
        out.stderr
            .lines()
            .filter(|l| l.starts_with("deployment "))
            .collect::<Vec<_>>(),
        [expected.as_str()],
        "{}",
        out.text()
    );
}
