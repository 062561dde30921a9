//! `aiops deploy` against a real control plane (`tests/control_plane`), with the upstream
//! ServiceMonitor, PrometheusRule and Certificate CRDs installed (tests/kube-env/crds.txt), run
//! as a ServiceAccount bound to exactly the ClusterRole `aiops manifests --deploy-role` prints:
//! server-side apply of every object `aiops render` produces, a redeploy, field ownership (`aiops`
//! as field manager) and a conflict with another manager. Without any one rule of that role the
//! deploy stops at the first object the rule covers, with a clear final error: the role is
//! minimal.
//!
//! Its own binary (and control plane) beside tests/real_cluster.rs, which proves the daemon's
//! repair role: the two roles are separate, and so are their tests. The role tests deploy the
//! django case (every kind deploy applies), each into a namespace of its own.
//!
//! The "done when" is here too: the original design's registration of a git app through
//! `POST /api/apps` (its framework detected from a repository served by `git http-backend`),
//! deployed by the daemon through `POST /api/apps/{name}/deploy` as the same role, its DNS
//! checked against dnsmasq and its image "built" by the Kaniko Job, with `GET` showing each
//! step while it runs.

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

// ---------------------------------------------------------------------------------------------
// The "done when": the original design's registration, deployed through the API.

const SECRET: &str = "0123456789abcdef0123456789abcdef-test";

/// The ingress address the app's domain must resolve to.
const INGRESS: &str = "10.0.0.5";

/// Where builds push (nothing is pushed: see the test).
const REGISTRY: &str = "registry.aiops.test/apps";

/// A small flask app, as a developer's repository holds it: detection finds flask in
/// requirements.txt; the Dockerfile is what Kaniko would build (the build Job names no other).
const FLASK_APP: &[(&str, &str)] = &[
    ("requirements.txt", "flask==3.0.3\ngunicorn==22.0.0\n"),
    (
        "app.py",
        "from flask import Flask\n\napp = Flask(__name__)\n\n\n@app.get(\"/\")\ndef index():\n    return \"shop\"\n\n\n@app.get(\"/healthz\")\ndef healthz():\n    return \"ok\"\n",
    ),
    (
        "Dockerfile",
        "FROM python:3.12-slim\nWORKDIR /app\nCOPY requirements.txt .\nRUN pip install -r requirements.txt\nCOPY . .\nCMD [\"gunicorn\", \"-b\", \"0.0.0.0:8000\", \"app:app\"]\n",
    ),
];

/// `(name, status, detail)` of each step of a deployment as the API shows it.
fn steps_of(view: &Value) -> Vec<(String, String, String)> {
    view["steps"]
        .as_array()
        .unwrap_or_else(|| panic!("no steps: {view:#}"))
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_string(),
                s["status"].as_str().unwrap().to_string(),
                s["detail"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// What one poll of the deployment showed: its status and each step's.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Snapshot {
    status: String,
    steps: Vec<(String, String)>,
}

impl Snapshot {
    fn of(view: &Value) -> Snapshot {
        Snapshot {
            status: view["status"].as_str().unwrap_or_default().to_string(),
            steps: steps_of(view).into_iter().map(|(n, s, _)| (n, s)).collect(),
        }
    }

    /// The step running, when every step before it has finished (succeeded or skipped) and none
    /// after it has started: a deployment caught mid-way, as a portal shows it.
    fn running_step(&self) -> Option<&str> {
        let at = self.steps.iter().position(|(_, s)| s == "running")?;
        let before = self.steps[..at]
            .iter()
            .all(|(_, s)| s == "succeeded" || s == "skipped");
        let after = self.steps[at + 1..].iter().all(|(_, s)| s == "pending");
        (before && after).then(|| self.steps[at].0.as_str())
    }
}

impl std::fmt::Display for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let steps: Vec<String> = self.steps.iter().map(|(n, s)| format!("{n}={s}")).collect();
        write!(f, "{}: {}", self.status, steps.join(" "))
    }
}

/// The "done when": the original design's example registration (name, display name,
/// domain, git source, no framework, plan) is accepted by `POST /api/apps` with its framework
/// detected from a repository served over smart HTTP by `git http-backend`; `POST
/// /api/apps/{name}/deploy` then runs, in the daemon (a process, as the ServiceAccount bound to
/// exactly the printed deploy role), the DNS check against dnsmasq, the Kaniko build Job and
/// every other step on the real control plane, while `GET` shows each step's status.
///
/// Nothing is pushed to the registry: nodesim completes the build Job's pod without running
/// Kaniko (or any container), so the image is named but never built, and the Deployment's
/// pods become Ready all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_original_designs_registration_is_detected_dns_checked_built_and_deployed_through_the_api_with_its_steps_visible()
 {
    use aiops::auth::Role;
    use common::{Spawn, TestApp, git, git_http::GitHttp};
    use k8s_openapi::api::batch::v1::Job;

    let Some(env) = KubeEnv::get().await else {
        return;
    };
    let Some(git_bin) = git::git_bin() else {
        return;
    };
    let domain = "shop.example.com";
    // The zone's own server: example.com is answered here (no AAAA record is NODATA, as from
    // an authoritative server; without --local dnsmasq would refuse what it cannot forward).
    let host_record = format!("--host-record={domain},{INGRESS}");
    let Some(dns) =
        common::dnsmasq::Dnsmasq::require(&["--local=/example.com/", host_record.as_str()]).await
    else {
        return;
    };

    // The repository, served over http as a git host serves it.
    let repos = tempfile::tempdir().unwrap();
    git::bare_repo(&git_bin, repos.path(), "shop", FLASK_APP);
    let server = GitHttp::start(&git_bin, repos.path()).await;
    let source_url = server.url("shop.git");

    // The daemon, as the ServiceAccount bound to exactly the printed deploy role.
    let sa_ns = env.namespace("deploy-e2e").await;
    let app_ns = env.namespace_to_be_created("deploy-e2e-app");
    let ns = app_ns.name.as_str();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = service_account_kubeconfig(
        env,
        &sa_ns.name,
        &deploy_role(),
        &dir.path().join("kubeconfig"),
    )
    .await;
    let app = TestApp::spawn(
        Spawn::new(Db::Sqlite)
            .env("AIOPS_JWT_SECRET", SECRET)
            .env("AIOPS_CLUSTER_STATE_FILE", "")
            .env("AIOPS_KUBECONFIG", &kubeconfig.display().to_string())
            .env("AIOPS_DEPLOY_INGRESS_ADDRESSES", INGRESS)
            .env("AIOPS_DEPLOY_DNS_SERVER", &dns.addr.to_string())
            .env("AIOPS_DEPLOY_SOURCE_HOSTS", "127.0.0.1")
            .env("AIOPS_DEPLOY_REGISTRY", REGISTRY)
            .env("AIOPS_DEPLOY_WORKER", "true")
            .env("AIOPS_DEPLOY_POLL", "100ms")
            .env("AIOPS_DEPLOY_TIMEOUT", "90s"),
    )
    .await;
    let editor = common::api::token(SECRET, Role::Editor, &[ns]);
    let context = || {
        format!(
            "{}\n--- git http-backend served:\n{}\n{}",
            app.log_text(),
            server.served().join("\n"),
            dns.proc.log_tail()
        )
    };

    // The original design's registration, in a namespace of this test's.
    let (status, registered) = app
        .api_register_app(
            &editor,
            format!(
                "name: shop\ndisplay_name: Shop\ndomain: {domain}\nsource_type: git\n\
                 source_url: {source_url}\nplan: standard\nnamespace: {ns}\n"
            ),
        )
        .await;
    assert_eq!(status, 201, "{registered}\n{}", context());
    assert_eq!(registered["namespace"], ns);
    assert_eq!(registered["spec"]["framework"], "flask", "{registered:#}");
    assert_eq!(registered["spec"]["display_name"], "Shop");
    // Detected by a fetch over smart HTTP (gix), through the real git http-backend.
    let served = server.served();
    assert!(
        served
            .iter()
            .any(|r| r.starts_with("GET /shop.git/info/refs?service=git-upload-pack → 200"))
            && served
                .iter()
                .any(|r| r == "POST /shop.git/git-upload-pack → 200"),
        "{served:#?}"
    );

    // The deployment: 202 with its nine steps, then followed until it ends.
    let r = app
        .client
        .post(app.url("/api/apps/shop/deploy"))
        .bearer_auth(&editor)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    let queued: Value = r.json().await.unwrap();
    assert_eq!(
        location,
        format!("/api/apps/shop/deployments/{}", queued["id"])
    );
    assert_eq!(
        steps_of(&queued)
            .iter()
            .map(|s| s.0.as_str())
            .collect::<Vec<_>>(),
        aiops::deploy::steps::Step::names()
    );
    let image = queued["image"].as_str().unwrap().to_string();
    assert!(
        image.starts_with(&format!("{REGISTRY}/shop:b")),
        "{queued:#}"
    );

    let mut seen: Vec<Snapshot> = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(180);
    let done = loop {
        let (status, view) = app.api_get(&editor, &location).await;
        assert_eq!(status, 200, "{view}");
        let snapshot = Snapshot::of(&view);
        if seen.last() != Some(&snapshot) {
            seen.push(snapshot);
        }
        if matches!(view["status"].as_str(), Some("succeeded" | "failed")) {
            break view;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the deployment did not finish: {view:#}\n{}",
            context()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    for s in &seen {
        eprintln!("seen: {s}");
    }
    assert_eq!(done["status"], "succeeded", "{done:#}\n{}", context());
    let running: Vec<&str> = seen
        .iter()
        .filter(|s| s.status == "running")
        .filter_map(Snapshot::running_step)
        .collect();
    eprintln!("steps seen running: {running:?}");
    assert!(
        !running.is_empty(),
        "no snapshot showed a step running after the ones before it ended: {seen:#?}"
    );

    let by_name: std::collections::HashMap<String, (String, String)> = steps_of(&done)
        .into_iter()
        .map(|(n, s, d)| (n, (s, d)))
        .collect();
    let is = |name: &str, status: &str, says: &str| {
        let (s, d) = &by_name[name];
        assert!(
            s == status && d.contains(says),
            "{name}: {s} ({d}), wanted {status} saying {says:?}"
        );
    };
    is(
        "check_dns",
        "succeeded",
        &format!("dns: {domain} → {INGRESS} (the ingress)"),
    );
    // Detected at registration and stored: the deployment reads it from the spec.
    is("detect_framework", "skipped", "the spec names flask");
    is("create_namespace", "succeeded", &format!("Namespace {ns}"));
    is(
        "build_image",
        "succeeded",
        &format!("built {image} from {source_url} (Job {ns}/shop-build-"),
    );
    is("deploy_app", "succeeded", "successfully rolled out");
    is(
        "configure_ingress",
        "succeeded",
        &format!("Ingress {ns}/shop"),
    );
    is(
        "setup_ssl",
        "succeeded",
        &format!("Certificate {ns}/shop-tls"),
    );
    is(
        "configure_monitoring",
        "succeeded",
        &format!("PrometheusRule {ns}/shop"),
    );
    is("setup_auto_repair", "succeeded", "→ restart");

    // On the real server: the build Job, as Kaniko would have run it, completed...
    let client = env.client().await;
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
    let builds = jobs
        .list(&kube::api::ListParams::default().labels("app.kubernetes.io/component=build"))
        .await
        .unwrap()
        .items;
    assert_eq!(builds.len(), 1, "{builds:#?}");
    let job = &builds[0];
    let container = &job.spec.clone().unwrap().template.spec.unwrap().containers[0];
    let port = server.addr.port();
    assert_eq!(
        container.args.clone().unwrap_or_default(),
        [
            format!("--context=git://127.0.0.1:{port}/shop.git"),
            format!("--destination={image}"),
        ]
    );
    let env_vars: Vec<(String, String)> = container
        .env
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|e| (e.name, e.value.unwrap_or_default()))
        .collect();
    assert_eq!(
        env_vars,
        [("GIT_PULL_METHOD".to_string(), "http".to_string())]
    );
    // What Kaniko would clone (the context's host and path, over GIT_PULL_METHOD's scheme) is
    // the repository, Dockerfile and all. In a real cluster the repository would be on a git
    // host the pod reaches; here nodesim runs no container, so the test's 127.0.0.1 is fine.
    let clone = tempfile::tempdir().unwrap();
    let kaniko_url = format!("http://127.0.0.1:{port}/shop.git");
    git::git(
        &git_bin,
        clone.path(),
        &["clone", "-q", &kaniko_url, "shop"],
    );
    assert!(clone.path().join("shop/Dockerfile").is_file());
    let status = job.status.clone().unwrap_or_default();
    assert_eq!(status.succeeded, Some(1), "{status:#?}");
    assert!(
        status
            .conditions
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Complete" && c.status == "True"),
        "{:#?}",
        job.status
    );

    // ...and the Deployment runs exactly the image it named, rolled out.
    let d = wait_deployment_rolled_out(&client, ns, "shop").await;
    let pod = d.spec.clone().unwrap().template.spec.unwrap();
    assert_eq!(pod.containers.len(), 1, "{pod:#?}");
    assert_eq!(image_of(&d, &pod.containers[0].name), image);
}
